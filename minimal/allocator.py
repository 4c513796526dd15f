"""Keep freed memory inside the process, so big NumPy temporaries stop page-faulting every step.

A training step allocates and frees the same big arrays again and again: a convolution's
im2col matrix (26 MB in a DCGAN discriminator), its output, the gradients. glibc's malloc
serves such sizes with a fresh mmap and returns them to the kernel on free (and trims the
heap when its top grows free), so the next step touches brand-new pages: one page fault per
4 KB, each with the kernel zeroing the page. Measured on the benchmark machine (a 2-core VM),
the DCGAN discriminator's step took ~7,700 page faults and ~45 ms of kernel time, a quarter
of the step; with the settings below it takes none.

`keep_freed_memory()` asks glibc (mallopt) to serve allocations up to MMAP_THRESHOLD from its
heap and to keep up to TRIM_THRESHOLD of freed memory there for reuse. The cost is that a
process holds on to its peak heap until it exits (the high-water mark, which a training loop
reaches in its first step anyway). Importing `minimal` calls it once; set MINIMAL_MALLOC=default
to leave malloc alone. On other C libraries (macOS, musl) it does nothing.
"""

from __future__ import annotations

import ctypes
import os
import sys

MMAP_THRESHOLD = 256 << 20  # bigger arrays are still mapped and unmapped as usual
TRIM_THRESHOLD = 1 << 30  # keep up to 1 GB of freed heap for reuse

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # from glibc's malloc.h


def keep_freed_memory() -> bool:
    """Tune glibc's malloc as described above; True if it took effect."""
    if not sys.platform.startswith("linux") or os.environ.get("MINIMAL_MALLOC") == "default":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this Python is linked against
    except (OSError, AttributeError):  # not glibc
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
