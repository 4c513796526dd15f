"""Check gradients against finite differences, at first and higher order.

One scalar per check, cheap for big tensors (the idea of HIPS autograd's `check_grads`): pick a
random direction u for the inputs and random weights w for the output, then compare

    analytic:  < grad_x (w . f(x)), u >
    numeric:   (w . f(x + eps u) - w . f(x - eps u)) / (2 eps)

For order 2, the same check is run on the function x -> < grad_x (w . f(x)), u' >, whose own
gradient is computed by differentiating the backward pass (create_graph=True); so a wrong second
derivative, e.g. a backward that uses a detached value, is caught too. Run it in float64.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from minimal.autograd import Tensor, grad


def _weighted_sum(out: Tensor, weights: np.ndarray) -> Tensor:
    return (out * Tensor(weights)).sum()


def _directional_check(f: Callable, inputs: Sequence[np.ndarray], rng: np.random.Generator,
                       eps: float, rtol: float, atol: float, label: str) -> None:
    tensors = [Tensor(x, requires_grad=True) for x in inputs]
    out = f(*tensors)
    weights = rng.standard_normal(out.shape)
    directions = [rng.standard_normal(x.shape) for x in inputs]
    loss = _weighted_sum(out, weights)
    if loss.requires_grad:
        grads = grad(loss, tensors, allow_unused=False)
        analytic = sum(float(np.vdot(g.data, u)) for g, u in zip(grads, directions))
    else:  # the output does not depend on the inputs at all (e.g. 2nd derivative of relu)
        analytic = 0.0

    def value_at(step: float) -> float:
        shifted = [Tensor(x + step * u, requires_grad=True) for x, u in zip(inputs, directions)]
        return float(_weighted_sum(f(*shifted), weights).data)

    numeric = (value_at(eps) - value_at(-eps)) / (2 * eps)
    if not abs(analytic - numeric) <= atol + rtol * max(abs(analytic), abs(numeric)):
        raise AssertionError(f"{label}: analytic directional derivative {analytic!r} differs "
                             f"from the central difference {numeric!r} (eps {eps})")


def check_grads(f: Callable, inputs: Sequence[np.ndarray], order: int = 2, eps: float = 1e-6,
                rtol: float = 1e-5, atol: float = 1e-8, seed: int = 0) -> None:
    """Raise AssertionError unless f's gradients up to `order` match finite differences.

    f takes one Tensor per input array and returns a Tensor of any shape.
    """
    inputs = [np.asarray(x, dtype=np.float64) for x in inputs]
    rng = np.random.default_rng(seed)
    _directional_check(f, inputs, rng, eps, rtol, atol, "order 1")
    current = f
    for level in range(2, order + 1):
        current = _derivative_function(current, inputs, rng)
        _directional_check(current, inputs, rng, eps, rtol, atol, f"order {level}")


def _derivative_function(f: Callable, inputs: Sequence[np.ndarray],
                         rng: np.random.Generator) -> Callable:
    """x -> < grad_x (w . f(x)), u >, a scalar function built with create_graph=True."""
    out_shape = f(*[Tensor(x, requires_grad=True) for x in inputs]).shape
    weights = rng.standard_normal(out_shape)
    directions = [rng.standard_normal(x.shape) for x in inputs]

    def derivative(*tensors: Tensor) -> Tensor:
        loss = _weighted_sum(f(*tensors), weights)
        if not loss.requires_grad:
            return Tensor(np.zeros(()))
        grads = grad(loss, tensors, create_graph=True)
        total = Tensor(np.zeros(()))
        for g, u in zip(grads, directions):
            total = total + (g * Tensor(u)).sum()
        return total

    return derivative
