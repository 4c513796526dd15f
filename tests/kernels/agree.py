"""Helpers for the kernel tests: run a function with kernels on and off and compare, and check
that a kernel was taken (not declined) while doing so."""

from __future__ import annotations

import contextlib
import dataclasses

import numpy as np

from minimal import kernels
from minimal.autograd import Tensor, grad


@contextlib.contextmanager
def taken(name: str):
    """Count the calls of kernel `name` that did not decline (a list, one entry per call)."""
    original = kernels.TABLE[name]
    calls = []

    def run(*args, **kwargs):
        result = original.run(*args, **kwargs)
        if result is not NotImplemented:
            calls.append(name)
        return result

    kernels.TABLE[name] = dataclasses.replace(original, run=run)
    try:
        yield calls
    finally:
        kernels.TABLE[name] = original


def _evaluate(fn, arrays, weights, directions, order):
    """fn's value, the gradient of <fn, weights> for every input, and (order 2) the gradient of
    <that gradient, directions>: what a second-order check differentiates. The first-order
    gradients come from a plain backward pass (where kernels use their NumPy backwards), the
    second from one that records a graph (where the reference is differentiated)."""
    tensors = [Tensor(a, requires_grad=True) for a in arrays]
    out = fn(*tensors)
    grads = grad((out * Tensor(weights)).sum(), tensors, allow_unused=True)
    first = [None if g is None else g.data.copy() for g in grads]
    if order < 2:
        return out.data.copy(), first, None
    tensors = [Tensor(a, requires_grad=True) for a in arrays]
    grads = grad((fn(*tensors) * Tensor(weights)).sum(), tensors, create_graph=True,
                 allow_unused=True)
    total = Tensor(np.zeros(()))
    for g, u in zip(grads, directions):
        if g is not None:
            total = total + (g * Tensor(u)).sum()
    second = (grad(total, tensors, allow_unused=True) if total.requires_grad
              else [None] * len(tensors))
    return out.data.copy(), first, [None if g is None else g.data for g in second]


def assert_agree(fn, arrays, *, order: int = 2, rtol: float = 1e-9, atol: float = 1e-11,
                 seed: int = 0, layout=None) -> None:
    """fn(*Tensors) gives the same value, gradients and second-order gradients with kernels on
    as with every op on its reference (float64 inputs: equal up to rounding). `layout` lays
    out the gradient sent back into fn's output (e.g. `channels_last`, as a conv's gets)."""
    rng = np.random.default_rng(seed)
    with kernels.enabled(False):
        shape = fn(*[Tensor(a) for a in arrays]).shape
    weights = rng.standard_normal(shape)
    weights = weights if layout is None else layout(weights)
    directions = [rng.standard_normal(np.shape(a)) for a in arrays]
    with kernels.enabled(True):
        fast = _evaluate(fn, arrays, weights, directions, order)
    with kernels.enabled(False):
        plain = _evaluate(fn, arrays, weights, directions, order)
    np.testing.assert_allclose(fast[0], plain[0], rtol=rtol, atol=atol, err_msg="values")
    for what, ours, theirs in (("first", fast[1], plain[1]), ("second", fast[2], plain[2])):
        for i, (a, b) in enumerate(zip(ours or [], theirs or [])):
            if a is None or b is None:
                zero = a if b is None else b
                assert zero is None or not np.any(zero), f"{what} derivative {i}: one is absent"
                continue
            np.testing.assert_allclose(a, b, rtol=rtol, atol=atol,
                                       err_msg=f"{what}-order gradient of input {i}")


def channels_last(x: np.ndarray) -> np.ndarray:
    """The same (N, C, H, W) values lying channels-last in memory, as conv outputs do."""
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)


def strided(x: np.ndarray) -> np.ndarray:
    """The same values as a non-contiguous view (every other entry of a bigger array)."""
    big = np.zeros(x.shape[:-1] + (2 * x.shape[-1],), x.dtype)
    big[..., ::2] = x
    return big[..., ::2]
