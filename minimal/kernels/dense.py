"""Dense layers: `linear` with its backward in NumPy (reference: autograd.linear)."""

from __future__ import annotations

import numpy as np


def linear(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None):
    """x @ weight.T + bias, with a NumPy backward: the three products of the reference's
    backward without recording the 5-7 nodes its Tensor ops make (DRAW runs 70 of these per
    iteration). NotImplemented for shapes the reference refuses (it raises the error)."""
    if (np.ndim(weight) != 2 or np.ndim(x) == 0 or x.shape[-1] != weight.shape[1]
            or (bias is not None and bias.shape != weight.shape[:1])):
        return NotImplemented
    out_features, in_features = weight.shape
    out = x.reshape(-1, in_features) @ weight.T
    if bias is not None:
        out += bias

    def backward(g: np.ndarray, needs: tuple[bool, ...]) -> list[np.ndarray | None]:
        rows = g.reshape(-1, out_features)
        return [(rows @ weight).reshape(x.shape) if needs[0] else None,
                rows.T @ x.reshape(-1, in_features) if needs[1] else None,
                rows.sum(axis=0) if len(needs) > 2 and needs[2] else None]

    return out.reshape(x.shape[:-1] + (out_features,)), backward
