"""DRAW's Gaussian attention as single nodes with NumPy backwards (references in
minimal/demos/draw.py: window_filterbank, read_patches, write_patches).

As recorded small ops, the four filterbanks and two patches of each glimpse cost more in
bookkeeping than in arithmetic (a step of the benchmark's model: ~40 nodes per filterbank).
"""

from __future__ import annotations

import numpy as np


def filterbank(centre: np.ndarray, delta: np.ndarray, log_var: np.ndarray, n: int, size: int):
    """draw.filterbank in NumPy: (bank, backward), backward(g) = the gradients of centre, delta
    and log_var (each (B, 1)) from the gradient g (B, n, size) of the bank."""
    offsets = np.arange(1, n + 1, dtype=centre.dtype) - n / 2 - 0.5  # (n,)
    pixels = np.arange(1, size + 1, dtype=centre.dtype)  # (size,)
    distance = pixels - (centre + delta * offsets)[..., None]  # (B, n, size)
    variance = np.exp(log_var)[..., None]  # (B, 1, 1)
    exponent = -(distance * distance) / (2 * variance)
    bank = np.exp(exponent - exponent.max(axis=-1, keepdims=True))
    bank /= bank.sum(axis=-1, keepdims=True)

    def backward(g: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        # through the softmax, then d exponent / d mu_i = distance / sigma^2 and
        # d exponent / d log sigma^2 = -exponent
        d_exponent = bank * (g - (g * bank).sum(axis=-1, keepdims=True))
        d_mu = (d_exponent * distance).sum(axis=-1) / variance[..., 0]  # (B, n)
        return (d_mu.sum(axis=-1, keepdims=True), (d_mu * offsets).sum(axis=-1, keepdims=True),
                -(d_exponent * exponent).sum(axis=(1, 2))[:, None])

    return bank, backward


def window_filterbank(params: np.ndarray, height: int, width: int, n: int, axis: str):
    """(value, backward) of draw.window_filterbank: the filterbank along `axis` ("x" or "y")
    from the window's five numbers (B, 5); the backward fills params' gradient columns
    directly instead of through a split and the grid's formulas in small ops."""
    column, size = (0, width) if axis == "x" else (1, height)
    centre = (size + 1) / 2 * (params[:, column:column + 1] + 1)
    delta = (max(height, width) - 1) / (n - 1) * np.exp(params[:, 3:4])
    bank, bank_backward = filterbank(centre, delta, params[:, 2:3], n, size)

    def backward(g: np.ndarray, needs: tuple[bool, ...]) -> tuple[np.ndarray]:
        d_centre, d_delta, d_log_var = bank_backward(g)
        d_params = np.zeros_like(params)  # through the formulas above to (g~, log var, log delta~)
        d_params[:, column:column + 1] = d_centre * ((size + 1) / 2)
        d_params[:, 2:3] = d_log_var
        d_params[:, 3:4] = d_delta * delta
        return (d_params,)

    return bank, backward


def read_patches(images: np.ndarray, fx: np.ndarray, fy: np.ndarray):
    """(value, backward) of draw.read_patches: Fy x Fx^T, (B, C, H, W) -> (B, C, N, N)."""
    fy_, fx_ = fy[:, None], fx[:, None]  # (B, 1, N, H), (B, 1, N, W)
    rows = fy_ @ images  # (B, C, N, W)
    out = rows @ fx_.swapaxes(-1, -2)

    def backward(g: np.ndarray, needs: tuple[bool, ...]):
        # out = Fy x Fx^T: d x = Fy^T g Fx, d Fx = sum over channels of g^T (Fy x),
        # d Fy = sum over channels of g (x Fx^T)^T
        columns = images @ fx_.swapaxes(-1, -2)  # (B, C, H, N)
        return (fy_.swapaxes(-1, -2) @ g @ fx_, (g.swapaxes(-1, -2) @ rows).sum(axis=1),
                (g @ columns.swapaxes(-1, -2)).sum(axis=1))

    return out, backward


def write_patches(patches: np.ndarray, fx: np.ndarray, fy: np.ndarray):
    """(value, backward) of draw.write_patches: Fy^T w Fx, (B, C, N, N) -> (B, C, H, W)."""
    fy_, fx_ = fy[:, None], fx[:, None]  # (B, 1, N, H), (B, 1, N, W)
    columns = patches @ fx_  # (B, C, N, W)
    out = fy_.swapaxes(-1, -2) @ columns

    def backward(g: np.ndarray, needs: tuple[bool, ...]):
        # out = Fy^T w Fx: d w = Fy g Fx^T, d Fx = sum over channels of (Fy^T w)^T g,
        # d Fy = sum over channels of (w Fx) g^T
        rows = fy_.swapaxes(-1, -2) @ patches  # (B, C, H, N)
        return (fy_ @ g @ fx_.swapaxes(-1, -2), (rows.swapaxes(-1, -2) @ g).sum(axis=1),
                (columns @ g.swapaxes(-1, -2)).sum(axis=1))

    return out, backward
