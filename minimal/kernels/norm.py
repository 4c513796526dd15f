"""Batch normalisation in training mode as one node with a NumPy backward (reference:
conv._batch_norm_training, a composition of ~12 Tensor ops)."""

from __future__ import annotations

import numpy as np

from minimal.kernels.threads import for_blocks


def batch_norm(x: np.ndarray, weight: np.ndarray | None, bias: np.ndarray | None, eps: float):
    """(value, backward, batch mean, batch variance) of the reference, the statistics
    (1, C, 1, ...) as it returns them. The elementwise passes run on batch blocks in parallel
    (the same bits as one pass); the per-channel sums between them stay serial. Buffers are
    reused in place where the plain code would allocate: a fresh array costs page faults too."""
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    count = x.size // x.shape[1]
    w = None if weight is None else weight.reshape(shape)
    b = None if bias is None else bias.reshape(shape)
    mean = x.mean(axis=axes, keepdims=True)
    normalised = np.empty_like(x)  # first the centred values
    out = np.empty_like(x)

    def centre(lo, hi):
        np.subtract(x[lo:hi], mean, out=normalised[lo:hi])

    for_blocks(centre, len(x), x.size)
    variance = (_sum_of_products(normalised, normalised, axes) / count).astype(x.dtype)
    inv_std = (1 / np.sqrt(variance + eps)).astype(x.dtype)

    def scale_and_shift(lo, hi):
        normalised[lo:hi] *= inv_std
        out[lo:hi] = normalised[lo:hi] if w is None else normalised[lo:hi] * w
        if b is not None:
            out[lo:hi] += b

    for_blocks(scale_and_shift, len(x), 2 * x.size)

    def backward(g: np.ndarray, needs: tuple[bool, ...]):
        """d x = scale (g - mean(g) - x_hat mean(g x_hat)), scale = inv_std * weight, written
        as g scale + x_hat slope + shift with per-channel slope and shift (fewer passes); the
        weight's gradient is sum(g x_hat), the bias's sum(g), per channel."""
        g_sum = g.sum(axis=axes, keepdims=True)
        g_dot = _sum_of_products(g, normalised, axes)
        gx = np.empty_like(g, dtype=np.result_type(g, normalised))
        scale = inv_std if w is None else inv_std * w
        slope, shift = -scale * (g_dot / count), -scale * (g_sum / count)

        def input_gradient(lo, hi):
            np.multiply(g[lo:hi], scale, out=gx[lo:hi])
            gx[lo:hi] += shift
            gx[lo:hi] += normalised[lo:hi] * slope

        for_blocks(input_gradient, len(g), 2 * g.size)
        return (gx, None if weight is None else g_dot.reshape(-1),
                None if bias is None else g_sum.reshape(-1), None)

    return out, backward, mean, variance


def _sum_of_products(a: np.ndarray, b: np.ndarray, axes) -> np.ndarray:
    """sum(a * b) over every axis but the channels (axis 1), keeping dims.

    When both lie channels-last in memory (as convolution outputs do) this is one einsum over
    their (pixels, channels) rows, ~3x faster than a product array and then its sum.
    """
    rows = [np.moveaxis(v, 1, -1) for v in (a, b)]
    if all(r.flags.c_contiguous for r in rows):
        channels = a.shape[1]
        total = np.einsum("mc,mc->c", rows[0].reshape(-1, channels), rows[1].reshape(-1, channels))
        return total.reshape((1, channels) + (1,) * (a.ndim - 2))
    return (a * b).sum(axis=axes, keepdims=True)
