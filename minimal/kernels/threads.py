"""Split big NumPy passes over the batch axis, so they use every core BLAS uses.

The matrix products already run on every core (OpenBLAS has its own threads), but the NumPy
work around them -- im2col copies, col2im adds, layout changes, batch norm's passes -- runs on
one. NumPy releases the GIL inside its loops over large arrays, so plain Python threads that
each handle a block of the batch really do run at the same time.

`for_blocks(fn, count, size)` calls fn(lo, hi) on consecutive blocks [lo, hi) of range(count)
that together cover it, one block per thread, and returns when all are done. The caller writes
fn so that each block touches only its own slice of the output. Each output element is then
computed by exactly one thread, by the same operations in the same order as one call
fn(0, count) would use, so the results are the same bit for bit as the serial path.

Small arrays (below MIN_ELEMENTS) and a single BLAS thread (OPENBLAS_NUM_THREADS=1 etc.) take
the serial path: there a thread hand-off (~50 us) would cost more than it saves.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

MIN_ELEMENTS = 1 << 18  # about 1 MB of float32 to touch, before a second thread is worth it


def _blas_threads() -> int:
    """The thread count BLAS was told to use (it reads these when NumPy is imported)."""
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        value = os.environ.get(name, "")
        if value.strip().isdigit() and int(value) > 0:
            return int(value)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)


THREADS = _blas_threads()
_pool: ThreadPoolExecutor | None = None  # started at first use, shared by every call


def for_blocks(fn: Callable[[int, int], None], count: int, size: int) -> None:
    """fn(lo, hi) for blocks of range(count) split over THREADS threads, if `size` (the
    number of elements the whole job touches) is worth it; otherwise one call fn(0, count)."""
    blocks = min(THREADS, count)
    if blocks < 2 or size < MIN_ELEMENTS:
        fn(0, count)
        return
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(THREADS - 1, thread_name_prefix="minimal")
    edges = [count * k // blocks for k in range(blocks + 1)]
    # the calling thread does the first block itself while the pool does the others
    futures = [_pool.submit(fn, lo, hi) for lo, hi in itertools.pairwise(edges[1:])]
    fn(edges[0], edges[1])
    for future in futures:
        future.result()  # re-raises an exception from a worker
