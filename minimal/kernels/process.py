"""Process settings the engine's speed was measured with, applied by one explicit call.

Importing minimal changes nothing in the process. The command-line entry points (cli.main, so
every `python -m minimal.demos.NAME`, run_all.py and the benchmarks) call `tune_process()`
once, before any work; a script of your own can call it too. It does two things:

- OpenBLAS's thread timeout. After each matrix product OpenBLAS's idle worker threads spin for
  a long while (~2^28 cycles) waiting for the next one, holding the core that the NumPy work
  between products needs. With many small products on 2 cores (the demos' nets) that made the
  deepcolor quick preset ~3.5x slower. `blas_thread_timeout(4)` makes them sleep after 2^4
  cycles: the environment variable for processes started later, and, for an OpenBLAS already
  loaded here, its settings re-read and its threads restarted (they start again at the next
  product with the new timeout). Same numbers either way.
- glibc's malloc (`keep_freed_memory`). A training step allocates and frees the same big arrays
  again and again (a convolution's im2col matrix, its output, the gradients). glibc serves big
  sizes with a fresh mmap and returns them to the kernel on free, so the next step touches
  brand-new pages: one page fault per 4 KB, each with the kernel zeroing the page (on a DCGAN
  discriminator's step ~7,700 faults and a quarter of the step's time). Asking malloc to serve
  allocations up to MMAP_THRESHOLD from its heap and to keep up to TRIM_THRESHOLD of freed memory
  there removes them; the cost is that the process keeps its peak heap until it exits. Set
  MINIMAL_MALLOC=default to leave malloc alone. On other C libraries (macOS, musl) a no-op.

`limit_blas_threads(n)` pins BLAS to n threads: the RL demos and rollout workers use it, since
there the BLAS threads would only fight the environment workers for the cores.
"""

from __future__ import annotations

import ctypes
import os
import sys

MMAP_THRESHOLD = 256 << 20  # bigger arrays are still mapped and unmapped as usual
TRIM_THRESHOLD = 1 << 30  # keep up to 1 GB of freed heap for reuse
THREAD_TIMEOUT = 4  # OpenBLAS's idle threads sleep after 2^4 cycles

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # from glibc's malloc.h
_BLAS_THREAD_SETTERS = ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
                        "openblas_set_num_threads64_", "openblas_set_num_threads",
                        "MKL_Set_Num_Threads")


def tune_process() -> None:
    """The settings above, for this process: called by the entry points, never on import."""
    blas_thread_timeout(THREAD_TIMEOUT)
    keep_freed_memory()


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


def _loaded_blas_libraries() -> list[ctypes.CDLL]:
    """The BLAS libraries loaded in this process (Linux: from /proc/self/maps)."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "blas" in line.lower()
                     or "mkl" in line.lower()}
    except OSError:
        return []
    libraries = []
    for path in sorted(paths):
        try:
            libraries.append(ctypes.CDLL(path))
        except OSError:
            continue
    return libraries


def blas_thread_timeout(units: int) -> bool:
    """OpenBLAS's idle threads sleep after 2^units cycles; True if a loaded OpenBLAS took it.

    A value already in the environment (OPENBLAS_THREAD_TIMEOUT) is kept."""
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", str(units))
    told = False
    for library in _loaded_blas_libraries():
        read_env = getattr(library, "openblas_read_env", None)
        shutdown = getattr(library, "blas_thread_shutdown_", None)
        if read_env is not None and shutdown is not None:
            read_env()  # takes OPENBLAS_THREAD_TIMEOUT from the environment again
            shutdown()  # the threads restart at the next product, with the new timeout
            told = True
    return told


def limit_blas_threads(count: int = 1) -> int:
    """Ask every BLAS library loaded in this process to use `count` threads; returns how many
    libraries were told. Also sets OPENBLAS_NUM_THREADS etc. for processes started later.

    Why: a learner that shares the cores with rollout workers (or other jobs) would have its
    BLAS threads wait for busy cores, and a small product then takes several times longer on
    2 threads than on 1. This is what threadpoolctl does, without the dependency (Linux only;
    a no-op elsewhere).
    """
    for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[variable] = str(count)
    told = 0
    for library in _loaded_blas_libraries():
        for name in _BLAS_THREAD_SETTERS:
            setter = getattr(library, name, None)
            if setter is not None:
                setter(ctypes.c_int(count))
                told += 1
                break
    return told
