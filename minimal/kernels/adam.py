"""Adam's update in cache-sized chunks, split over the threads (reference: optim._adam_update)."""

from __future__ import annotations

import numpy as np

from minimal.kernels.threads import for_blocks

# entries per chunk: 512 KB of float32 per array, so the temporaries stay in the L2/L3 caches.
# Smaller chunks mean more NumPy calls, and those hold the GIL, so the threads wait on each
# other (chunk sizes against step times: benchmarks/README.md)
CHUNK = 1 << 17


def adam_update(p: np.ndarray, grad: np.ndarray, m: np.ndarray, v: np.ndarray,
                step_size: float, correction2: float, beta1: float, beta2: float, eps: float,
                weight_decay: float):
    """The reference update on consecutive chunks of contiguous arrays, in place. Every entry
    goes through the reference's operations in the reference's order whatever the slicing, so
    the bits are the same. NotImplemented for other layouts."""
    arrays = (p, grad, m, v)
    if not all(a.flags.c_contiguous for a in arrays):
        return NotImplemented
    flat = [a.reshape(-1) for a in arrays]
    settings = (step_size, correction2, beta1, beta2, eps, weight_decay)

    def update_chunks(lo, hi):
        for start in range(lo * CHUNK, min(hi * CHUNK, len(flat[0])), CHUNK):
            _update(*(a[start:start + CHUNK] for a in flat), *settings)

    for_blocks(update_chunks, -(-p.size // CHUNK), 4 * p.size)
    return None


def _update(p, grad, m, v, step_size, correction2, beta1, beta2, eps, weight_decay) -> None:
    """optim._adam_update's arithmetic, on one chunk."""
    g = grad + weight_decay * p if weight_decay else grad
    m *= beta1
    m += (1 - beta1) * g
    v *= beta2
    v += (1 - beta2) * (g * g)
    denominator = np.sqrt(v / correction2)
    denominator += eps
    p -= (step_size * m / denominator).astype(p.dtype, copy=False)
