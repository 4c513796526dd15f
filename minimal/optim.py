"""Optimisers that update Parameters in place from their `.grad`: SGD (momentum) and Adam.

    optimizer = Adam(model.parameters(), lr=1e-3)
    optimizer.zero_grad(); loss.backward(); clip_grad_norm(model.parameters(), 5.0)
    optimizer.step()
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np

from minimal import kernels
from minimal.autograd import Parameter
from minimal.errors import CheckpointError, ConfigError, NonFiniteLossError
from minimal.nn import check_state


def _check_setting(owner: str, name: str, value: float, low: float = 0.0,
                   high: float = math.inf, high_open: bool = False) -> float:
    """A hyperparameter must be a finite real number in [low, high] (or [low, high))."""
    is_number = isinstance(value, (int, float, np.integer, np.floating)) and \
        not isinstance(value, bool)
    if not is_number or not math.isfinite(value) or value < low or value > high or \
            (high_open and value >= high):
        bound = f"[{low:g}, {high:g}{')' if high_open else ']'}"
        raise ConfigError(f"{owner}: {name} must be a finite number in {bound}, got {value!r}")
    return value


class Optimizer:
    def __init__(self, params: Iterable[Parameter], lr: float):
        self.params = list(params)
        if not self.params:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        self.lr = _check_setting(type(self).__name__, "learning rate", lr)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def _check_gradients(self) -> None:
        """Refuse a step with a NaN or inf in any gradient, before any parameter (or moment)
        changes: one bad step would otherwise write NaN into every weight it touches."""
        for index, p in enumerate(self.params):
            g = p.grad
            # the sum is one fast pass and is non-finite whenever an entry is (or, rarely,
            # when finite entries overflow it: then the exact test below clears them)
            if g is not None and not math.isfinite(float(np.sum(g))) and \
                    not np.all(np.isfinite(g)):
                bad = np.asarray(g).ravel()[~np.isfinite(np.asarray(g).ravel())][0]
                raise NonFiniteLossError(
                    f"{type(self).__name__}.step: the gradient of parameter {index} (shape "
                    f"{p.shape}) holds {float(bad)}; no parameter was changed. The loss or a "
                    "layer produced a non-finite value (check the inputs and the learning rate)")

    def step(self) -> None:
        raise NotImplementedError


class SGD(Optimizer):
    """p -= lr * v, v = momentum * v + g (+ weight_decay * p), PyTorch's form of momentum."""

    def __init__(self, params, lr: float, momentum: float = 0.0, weight_decay: float = 0.0):
        super().__init__(params, lr)
        self.momentum = _check_setting("SGD", "momentum", momentum)
        self.weight_decay = _check_setting("SGD", "weight_decay", weight_decay)
        self.velocity = [None] * len(self.params)

    def state_dict(self) -> dict[str, np.ndarray]:
        """The momentum buffers that exist so far, as velocity.<i>."""
        return {f"velocity.{i}": v.copy() for i, v in enumerate(self.velocity) if v is not None}

    def load_state_dict(self, state: Mapping[str, object]) -> None:
        """Checked whole before anything is assigned (see nn.check_state)."""
        present = {f"velocity.{i}": (p.shape, p.dtype) for i, p in enumerate(self.params)
                   if f"velocity.{i}" in state}
        checked = check_state(state, present, "SGD.load_state_dict")
        self.velocity = [checked.get(f"velocity.{i}") for i in range(len(self.params))]

    def step(self) -> None:
        self._check_gradients()
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            g = p.grad + self.weight_decay * p.data if self.weight_decay else p.grad
            if self.momentum:
                if self.velocity[i] is None:
                    self.velocity[i] = np.array(g, dtype=p.dtype, copy=True)
                else:
                    self.velocity[i] *= self.momentum
                    self.velocity[i] += g
                g = self.velocity[i]
            p.data -= (self.lr * g).astype(p.dtype, copy=False)


class Adam(Optimizer):
    """Adam (Kingma and Ba, 2015) with bias correction:

        m = b1 m + (1 - b1) g          v = b2 v + (1 - b2) g^2
        p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)

    Without the 1 - b^t factors the first steps would be far too small, since m and v start at 0.
    """

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0):
        super().__init__(params, lr)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ConfigError(f"Adam: betas must be a pair (beta1, beta2), got {betas!r}")
        self.beta1 = _check_setting("Adam", "beta1", betas[0], 0.0, 1.0, high_open=True)
        self.beta2 = _check_setting("Adam", "beta2", betas[1], 0.0, 1.0, high_open=True)
        self.eps = _check_setting("Adam", "eps", eps)
        if self.eps == 0:  # a parameter whose gradient is still 0 would step by 0 / 0
            raise ConfigError("Adam: eps must be > 0 (it keeps m / sqrt(v) defined), got 0")
        self.weight_decay = _check_setting("Adam", "weight_decay", weight_decay)
        self.m = [np.zeros_like(p.data) for p in self.params]
        self.v = [np.zeros_like(p.data) for p in self.params]
        self.t = 0

    def step(self) -> None:
        self._check_gradients()
        self.t += 1
        step_size = self.lr / (1 - self.beta1 ** self.t)
        correction2 = 1 - self.beta2 ** self.t
        for p, m, v in zip(self.params, self.m, self.v):
            if p.grad is not None:
                _adam_update(p.data, p.grad, m, v, step_size, correction2, self.beta1,
                             self.beta2, self.eps, self.weight_decay)

    def state_dict(self) -> dict[str, np.ndarray]:
        state = {"t": np.asarray(self.t)}
        for i, (m, v) in enumerate(zip(self.m, self.v)):
            state[f"m.{i}"], state[f"v.{i}"] = m.copy(), v.copy()
        return state

    def load_state_dict(self, state: Mapping[str, object]) -> None:
        """Checked whole (names, exact shapes, real finite numbers, t a whole number >= 0,
        v >= 0) before anything is assigned, so a refused state leaves Adam as it was."""
        expected = {"t": ((), np.int64)}
        for i, p in enumerate(self.params):
            expected[f"m.{i}"] = expected[f"v.{i}"] = (p.shape, p.dtype)
        checked = check_state(state, expected, "Adam.load_state_dict")
        if checked["t"] < 0:
            raise CheckpointError(f"Adam.load_state_dict: t is {int(checked['t'])}; expected "
                                  "a step count >= 0")
        negative = [f"v.{i}" for i in range(len(self.params)) if np.any(checked[f"v.{i}"] < 0)]
        if negative:
            raise CheckpointError(f"Adam.load_state_dict: {negative[0]} holds negative values; "
                                  "a second moment is >= 0")
        self.t = int(checked["t"])
        self.m = [checked[f"m.{i}"] for i in range(len(self.params))]
        self.v = [checked[f"v.{i}"] for i in range(len(self.params))]


@kernels.replaceable("adam_update")  # kernels/adam.py: in cache-sized chunks, on every core
def _adam_update(p: np.ndarray, grad: np.ndarray, m: np.ndarray, v: np.ndarray,
                 step_size: float, correction2: float, beta1: float, beta2: float, eps: float,
                 weight_decay: float) -> None:
    """One Adam step on one parameter, in place (Adam's docstring; step_size = lr / (1 - b1^t),
    correction2 = 1 - b2^t; weight decay adds weight_decay * p to the gradient)."""
    g = grad + weight_decay * p if weight_decay else grad
    m[...] = beta1 * m + (1 - beta1) * g
    v[...] = beta2 * v + (1 - beta2) * (g * g)
    p -= (step_size * m / (np.sqrt(v / correction2) + eps)).astype(p.dtype, copy=False)


def clip_grad_norm(params: Iterable[Parameter], max_norm: float) -> float:
    """Scale all gradients together so their joint L2 norm is at most max_norm.

    Returns the norm before clipping (useful to log). A non-finite norm is returned unchanged
    and the gradients are left alone, so the caller can detect and stop.
    """
    grads = [p.grad for p in params if p.grad is not None]
    total = math.sqrt(sum(float(np.vdot(g, g)) for g in grads))
    if math.isfinite(total) and total > max_norm:
        scale = max_norm / (total + 1e-6)
        for g in grads:
            g *= scale
    return total
