"""minimal: one small NumPy engine (autograd, conv, LSTM, Adam) and one demo per blog post."""

import os

# OpenBLAS's idle worker threads spin for a long while after each matrix product, holding the
# core that the next NumPy step needs. With many small products (the demos' nets) on 2 cores,
# the deepcolor quick preset took 120 s that way and 35 s with a 4-unit timeout, with the same
# numbers. It only takes effect when set before NumPy loads OpenBLAS (so before `import numpy`
# in a script that imports minimal later); a value already in the environment is kept.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

from minimal.allocator import keep_freed_memory  # noqa: E402 - after the variable above

keep_freed_memory()  # big temporaries are reused instead of page-faulting each step
