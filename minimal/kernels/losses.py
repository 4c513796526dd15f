"""The two losses that see the biggest arrays, as single nodes (references in functional.py)."""

from __future__ import annotations

import numpy as np

from minimal.kernels.threads import for_blocks


def cross_entropy(logits: np.ndarray, target, ignore_index: int = -100, reduction: str = "mean"):
    """Softmax cross-entropy of (N, C) logits and integer targets, mean or sum, in one pass
    forward and one backward (a language model's softmax over its vocabulary is the biggest
    array it has). NotImplemented for anything else (other shapes, 'none', out-of-range
    targets): the reference then runs and gives the error messages."""
    labels = np.asarray(target)
    if (np.ndim(logits) != 2 or reduction not in ("mean", "sum")
            or labels.shape != logits.shape[:1] or not np.issubdtype(labels.dtype, np.integer)):
        return NotImplemented
    keep = labels != ignore_index
    rows, picked = np.nonzero(keep)[0], labels[keep]
    classes = logits.shape[1]
    if len(rows) == 0 or picked.min() < 0 or picked.max() >= classes:
        return NotImplemented
    x = logits
    shift = np.empty((len(x), 1), x.dtype)
    exps = np.empty(x.shape, x.dtype)  # as big as the logits: computed in place
    totals = np.empty((len(x), 1), x.dtype)

    def softmax_rows(lo, hi):  # each row on its own: blocks of rows run on every core
        np.max(x[lo:hi], axis=1, keepdims=True, out=shift[lo:hi])
        np.subtract(x[lo:hi], shift[lo:hi], out=exps[lo:hi])
        np.exp(exps[lo:hi], out=exps[lo:hi])
        np.sum(exps[lo:hi], axis=1, keepdims=True, out=totals[lo:hi])

    for_blocks(softmax_rows, len(x), 2 * x.size)
    log_z = np.log(totals) + shift  # logsumexp per row
    count = len(rows) if reduction == "mean" else 1
    loss = (log_z[rows, 0] - x[rows, picked]).sum() / count

    def backward(g: np.ndarray, needs: tuple[bool, ...]) -> tuple[np.ndarray]:
        """softmax, minus one at the target, zero on ignored rows; times g / count"""
        scale = g / count
        factor = scale / totals
        d = np.empty_like(exps)

        def rows_of_softmax(lo, hi):
            np.multiply(exps[lo:hi], factor[lo:hi], out=d[lo:hi])

        for_blocks(rows_of_softmax, len(d), d.size)
        d[rows, picked] -= scale
        if len(rows) < len(labels):
            d[~keep] = 0
        return (d,)

    return np.asarray(loss, x.dtype), backward


def binary_cross_entropy_with_logits(logits: np.ndarray, target, reduction: str = "mean"):
    """softplus(x) - t x summed or averaged, one node: its gradient is (sigmoid(x) - t) / count
    for the logits and -x / count for the targets. NotImplemented for other reductions or shapes."""
    t = np.asarray(target, dtype=logits.dtype)
    if reduction not in ("mean", "sum") or t.shape != logits.shape:
        return NotImplemented
    x = logits
    count = x.size if reduction == "mean" else 1
    loss = (np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x)))).sum() / count

    def backward(g: np.ndarray, needs: tuple[bool, ...]):
        probs = 0.5 * (1 + np.tanh(0.5 * x))  # sigmoid without overflow
        return ((probs - t) * (g / count) if needs[0] else None,
                -x * (g / count) if len(needs) > 1 and needs[1] else None)

    return np.asarray(loss, x.dtype), backward
