"""Elementwise forwards and an indexed add, written for speed (references in autograd.py)."""

from __future__ import annotations

import math

import numpy as np


def sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + e) for x >= 0 and e / (1 + e) below, e = exp(-|x|), as the reference, in place
    on one buffer: these arrays can be as big as the activations. The numerator, 1 or e, is a
    maximum (e <= 1) rather than np.where, which branches on the random signs of x and is ~6x
    slower on activations."""
    e = np.abs(x)
    np.negative(e, out=e)
    np.exp(e, out=e)
    numerator = np.maximum(e, x >= 0, dtype=x.dtype)
    e += 1
    numerator /= e
    return numerator


def relu_mask(x: np.ndarray) -> np.ndarray:
    """1.0 where x > 0, else 0.0, in x's dtype and memory order: one pass, no bool array."""
    return np.greater(x, 0, out=np.empty_like(x))


def leaky_relu_slopes(x: np.ndarray, negative_slope: float) -> np.ndarray:
    """1 where x > 0, negative_slope elsewhere, by arithmetic on the 0/1 mask: np.where branches
    per entry and is ~5x slower on the random signs of activations. Keeps x's dtype and memory
    order (after a convolution, channels-last)."""
    slope = np.asarray(negative_slope, x.dtype)
    factor = relu_mask(x)
    factor *= 1 - slope
    factor += slope
    return factor


def add_rows_at(out: np.ndarray, index, values: np.ndarray):
    """np.add.at(out, index, values) when an integer array picks whole rows of `out` (an
    embedding lookup's backward): np.add.at on the flat positions of the rows' entries is ~3x
    faster than on rows, and adds in the same order. NotImplemented for any other index."""
    shape = out.shape
    if not (isinstance(index, np.ndarray) and index.dtype.kind in "iu" and len(shape) > 1
            and values.shape == index.shape + tuple(shape[1:])):
        return NotImplemented
    row = math.prod(shape[1:])
    starts = (index.reshape(-1, 1) % shape[0]) * row
    np.add.at(out.reshape(-1), (starts + np.arange(row)).reshape(-1), values.reshape(-1))
    return None
