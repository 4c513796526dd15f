"""Differentiable functions composed from autograd's ops: softmax, log_softmax, the losses, dropout.

Where each kind of op lives (one home each):
- autograd.py: every primitive op, i.e. one graph node with its own backward. That includes the
  activations (relu, leaky_relu, sigmoid, tanh, softplus), logsumexp and linear (matmul plus
  bias as one node). They are defined there because Tensor's methods (x.relu(), x.tanh()) call
  them; they are imported below only so that `F.relu(x)` works as in PyTorch.
- conv.py: the image ops (conv2d, conv_transpose2d, max_pool2d, max_unpool2d, upsample,
  batch_norm), imported below for the same reason.
- here: what is built by composing those: softmax, log_softmax, mse / l1 / nll / cross-entropy
  / binary cross-entropy losses, dropout.

All are short compositions of Tensor operations, so they have first and higher-order gradients
without a hand-written backward. The two losses that see the biggest arrays (cross_entropy over
a vocabulary, binary_cross_entropy_with_logits over images) have kernels (minimal/kernels/
losses.py) that run each as a single node with a NumPy backward.
"""

from __future__ import annotations

import numpy as np

# relu, sigmoid, tanh, linear, ... are defined in autograd.py and the image ops in conv.py;
# they are imported here so that F.relu, F.conv2d, ... work as in PyTorch (see the docstring)
from minimal.autograd import (
    Tensor,
    as_tensor,
    fast_path,
    getitem,
    leaky_relu,
    linear,
    log,
    logsumexp,
    relu,
    scatter_add,
    sigmoid,
    softplus,
    tanh,
)
from minimal.conv import (
    batch_norm,
    conv2d,
    conv_transpose2d,
    max_pool2d,
    max_unpool2d,
    upsample,
)

__all__ = [
    "batch_norm",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "conv2d",
    "conv_transpose2d",
    "cross_entropy",
    "dropout",
    "l1_loss",
    "leaky_relu",
    "linear",
    "log_softmax",
    "logsumexp",
    "max_pool2d",
    "max_unpool2d",
    "mse_loss",
    "nll_loss",
    "relu",
    "sigmoid",
    "softmax",
    "softplus",
    "tanh",
    "upsample",
]


def softmax(x: Tensor, axis: int = -1) -> Tensor:
    return log_softmax(x, axis).exp()


def log_softmax(x: Tensor, axis: int = -1) -> Tensor:
    """x - logsumexp(x): the log-probabilities of a softmax, stable for large logits."""
    return x - logsumexp(x, axis, keepdims=True)


def _reduce(loss: Tensor, reduction: str, op: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"{op}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def nll_loss(log_probs: Tensor, target, ignore_index: int = -100,
             reduction: str = "mean") -> Tensor:
    """Negative log-likelihood of integer targets under log-probabilities (N, C) or (N, C, ...).

    Positions whose target equals `ignore_index` contribute nothing, and the mean is over the
    other positions (as in PyTorch), so padding does not dilute the loss.
    """
    target = np.asarray(target.data if isinstance(target, Tensor) else target)
    if not np.issubdtype(target.dtype, np.integer):
        raise TypeError(f"nll_loss: targets must be integers, got {target.dtype}")
    if log_probs.ndim < 2 or target.shape != log_probs.shape[:1] + log_probs.shape[2:]:
        raise ValueError(f"nll_loss: input shape {log_probs.shape} does not match target "
                         f"shape {target.shape} (expected input (N, C, ...), target (N, ...))")
    target_shape = target.shape
    if log_probs.ndim > 2:  # move classes last, then flatten the positions
        axes = (0,) + tuple(range(2, log_probs.ndim)) + (1,)
        log_probs = log_probs.transpose(axes).reshape(-1, log_probs.shape[1])
        target = target.reshape(-1)
    keep = target != ignore_index
    classes = log_probs.shape[1]
    if np.any((target[keep] < 0) | (target[keep] >= classes)):
        raise ValueError(f"nll_loss: targets must lie in [0, {classes}), got "
                         f"{target[keep].min()}..{target[keep].max()}")
    rows = np.nonzero(keep)[0]
    picked = -getitem(log_probs, (rows, target[rows]))
    if reduction == "none":  # zeros at ignored positions, in the target's shape
        return scatter_add(picked, (rows,), (len(target),)).reshape(target_shape)
    if reduction == "mean" and len(rows) == 0:
        return picked.sum() * np.nan  # PyTorch also gives nan when every target is ignored
    return _reduce(picked, reduction, "nll_loss")


@fast_path("cross_entropy")  # kernels/losses.py: one node, one pass each way
def cross_entropy(logits: Tensor, target, ignore_index: int = -100,
                  reduction: str = "mean") -> Tensor:
    """Softmax cross-entropy of integer targets; logits (N, C) or (N, C, ...) like PyTorch:

        loss_n = -log softmax(x_n)[t_n] = logsumexp(x_n) - x_n[t_n]

    Its gradient in x_n is softmax(x_n) minus one at the target.
    """
    return nll_loss(log_softmax(logits, axis=1), target, ignore_index, reduction)


@fast_path("binary_cross_entropy_with_logits")  # kernels/losses.py: one node
def binary_cross_entropy_with_logits(logits: Tensor, target, reduction: str = "mean") -> Tensor:
    """-[t log sigmoid(x) + (1 - t) log(1 - sigmoid(x))] = softplus(x) - t x, stable for any x;
    its gradient in x is sigmoid(x) - t."""
    target = as_tensor(target, dtype=logits.dtype)
    if target.shape != logits.shape:
        raise ValueError(f"binary_cross_entropy_with_logits: logits shape {logits.shape} "
                         f"and target shape {target.shape} differ")
    return _reduce(softplus(logits) - logits * target, reduction,
                   "binary_cross_entropy_with_logits")


def binary_cross_entropy(probs: Tensor, target, reduction: str = "mean",
                         eps: float = 1e-7) -> Tensor:
    """Cross-entropy of probabilities in (0, 1); clipped away from 0 and 1 by eps."""
    target = as_tensor(target, dtype=probs.dtype)
    if target.shape != probs.shape:
        raise ValueError(f"binary_cross_entropy: input shape {probs.shape} and target shape "
                         f"{target.shape} differ")
    p = probs.clip(eps, 1 - eps)
    return _reduce(-(target * log(p) + (1 - target) * log(1 - p)), reduction,
                   "binary_cross_entropy")


def mse_loss(prediction: Tensor, target, reduction: str = "mean") -> Tensor:
    target = as_tensor(target, dtype=prediction.dtype)
    if target.shape != prediction.shape:
        raise ValueError(f"mse_loss: prediction shape {prediction.shape} and target shape "
                         f"{target.shape} differ")
    diff = prediction - target
    return _reduce(diff * diff, reduction, "mse_loss")


def l1_loss(prediction: Tensor, target, reduction: str = "mean") -> Tensor:
    target = as_tensor(target, dtype=prediction.dtype)
    if target.shape != prediction.shape:
        raise ValueError(f"l1_loss: prediction shape {prediction.shape} and target shape "
                         f"{target.shape} differ")
    return _reduce((prediction - target).abs(), reduction, "l1_loss")


def dropout(x: Tensor, p: float, rng: np.random.Generator, training: bool = True) -> Tensor:
    """Zero each entry with probability p and scale the rest by 1/(1-p) (inverted dropout)."""
    if not 0 <= p < 1:
        raise ValueError(f"dropout: p must be in [0, 1), got {p}")
    if not training or p == 0:
        return x
    keep = (rng.random(x.shape) >= p).astype(x.dtype) / (1 - p)
    return x * keep
