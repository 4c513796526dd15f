"""Max pooling over non-overlapping windows by a running max (reference: conv._max_pool)."""

from __future__ import annotations

import numpy as np

from minimal.kernels.threads import for_blocks


def max_pool2d(x: np.ndarray, kernel, stride):
    """(value, backward, switches) of the reference when stride = kernel, else NotImplemented.

    The windows' maxima from kh*kw strided slices -- no window copy, no argmax -- keeping the
    winning tap of each window as int8, with every array laid out as the input (a conv's
    channels-last), so each pass runs along memory. The backward places each gradient by kh*kw
    strided multiplies with "tap == k" (~3x faster than the reference's bincount; a zero where
    g < 0 may come out as -0.0, which equals 0.0 in every later operation). None when a window
    holds a NaN (NotImplemented): the reference's argmax then points at the NaN, as PyTorch does.
    """
    (kh, kw), (sh, sw) = kernel, stride
    if (kh, kw) != (sh, sw) or np.isnan(x.max()):  # a NaN never compares greater
        return NotImplemented
    n, c, h, w = x.shape
    oh, ow = (h - kh) // sh + 1, (w - kw) // sw + 1
    maxima = np.empty_like(x[:, :, 0:oh * kh:kh, 0:ow * kw:kw])  # keeps the memory order
    taps, jumps = np.zeros_like(maxima, dtype=np.int8), np.empty_like(maxima, dtype=np.int8)
    indices = np.empty_like(maxima, dtype=np.int64)
    corner = np.arange(oh).reshape(oh, 1) * (kh * w) + np.arange(ow) * kw  # each window's tap 0
    tap_offset = np.array([i * w + j for i in range(kh) for j in range(kw)])

    def pool(lo, hi):  # images lo..hi-1: each thread its own
        best, tap, jump = maxima[lo:hi], taps[lo:hi], jumps[lo:hi]
        best[...] = x[lo:hi, :, 0:oh * kh:kh, 0:ow * kw:kw]
        for k in range(1, kh * kw):
            i, j = divmod(k, kw)
            values = x[lo:hi, :, i:i + oh * kh:kh, j:j + ow * kw:kw]
            np.subtract(np.int8(k), tap, out=jump)
            jump *= values > best  # strictly: ties keep the first, as argmax
            tap += jump  # k where this tap is greater, unchanged elsewhere
            # np.maximum returns its second argument on ties, so the kept first value's
            # sign of zero too: maxima are exactly the values at the indices (tested)
            np.maximum(values, best, out=best)
        np.add(corner, tap_offset[tap], out=indices[lo:hi])

    for_blocks(pool, n, x.size)

    def backward(g: np.ndarray, needs: tuple[bool, ...]) -> tuple[np.ndarray]:
        out = np.zeros((n, h, w, c), g.dtype).transpose(0, 3, 1, 2)

        def place(lo, hi):  # images lo..hi-1: each thread its own
            for k in range(kh * kw):
                i, j = divmod(k, kw)
                np.multiply(g[lo:hi], taps[lo:hi] == k,
                            out=out[lo:hi, :, i:i + oh * kh:kh, j:j + ow * kw:kw])

        for_blocks(place, n, out.size)
        return (out,)

    return maxima, backward, indices
