"""minimal/kernels/process.py: importing minimal changes nothing in the process; tune_process()
applies the settings it documents (malloc, OpenBLAS's thread timeout) and limit_blas_threads
pins BLAS."""

import ctypes
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from minimal.kernels import process

ROOT = Path(__file__).resolve().parents[2]
LINUX = sys.platform.startswith("linux")

# Run in a fresh interpreter: is a freed 64 MB block given back to the kernel (glibc's default
# for big blocks: mmap / munmap), or kept in the heap (what keep_freed_memory asks for)? And
# what did the environment end up holding?
PROBE = """
import ctypes, json, os, sys
before = dict(os.environ)
{setup}
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
class Info(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks",
        "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc.mallinfo2.restype = Info
block = libc.malloc(64 << 20)
mapped = libc.mallinfo2().hblkhd  # bytes in blocks served by mmap
libc.free(block)
changed = sorted(k for k in set(before) | set(os.environ) if before.get(k) != os.environ.get(k))
print(json.dumps({{"mapped": mapped >= 64 << 20, "changed": changed,
                   "timeout": os.environ.get("OPENBLAS_THREAD_TIMEOUT")}}))
"""


def probe(setup: str) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("OPENBLAS_THREAD_TIMEOUT", "MINIMAL_MALLOC")}
    out = subprocess.run([sys.executable, "-c", PROBE.format(setup=setup)], cwd=ROOT, env=env,
                         capture_output=True, text=True, check=True, timeout=120)
    return json.loads(out.stdout)


@pytest.mark.skipif(not LINUX, reason="glibc's malloc")
def test_importing_minimal_changes_nothing_in_the_process():
    """Every module of the engine, the kernels and a demo imported: the environment is as it
    was and malloc still maps big blocks (no tuning happened on import)."""
    setup = ("import minimal, minimal.autograd, minimal.conv, minimal.nn, minimal.optim, "
             "minimal.functional, minimal.kernels, minimal.demos.gan")
    seen = probe(setup)
    assert seen["changed"] == [] and seen["mapped"] is True


@pytest.mark.skipif(not LINUX, reason="glibc's malloc")
def test_tune_process_keeps_big_blocks_in_the_heap_and_sets_the_thread_timeout():
    seen = probe("import numpy\nfrom minimal.kernels.process import tune_process\ntune_process()")
    assert seen["mapped"] is False  # served from the heap: freed, it is reused
    assert seen["timeout"] == str(process.THREAD_TIMEOUT)


@pytest.mark.skipif(not LINUX, reason="tunes glibc's malloc")
def test_big_temporaries_reuse_freed_memory():
    """A training step's temporaries, allocated and freed again, must reuse their pages. With
    glibc's defaults three 3 MB arrays fault in ~1,500 fresh pages on every repetition here
    (the heap top is trimmed back to the kernel on free); kept, they fault in none."""
    if not process.keep_freed_memory():
        pytest.skip("not glibc, or MINIMAL_MALLOC=default")

    def faults_of_one_step():
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        temporaries = [np.ones(3 << 18, np.float32) for _ in range(3)]  # every page written
        del temporaries
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    for _ in range(2):
        faults_of_one_step()
    assert faults_of_one_step() < 100


def test_malloc_opt_out(monkeypatch):
    monkeypatch.setenv("MINIMAL_MALLOC", "default")
    assert process.keep_freed_memory() is False


@pytest.mark.skipif(not LINUX, reason="reads /proc/self/maps")
def test_limit_blas_threads_tells_the_loaded_openblas(monkeypatch):
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.setenv(name, os.environ.get(name, "1"))  # restored after the test
    told = process.limit_blas_threads(1)
    assert told >= 1 and os.environ["OPENBLAS_NUM_THREADS"] == "1"
    library = process._loaded_blas_libraries()[0]
    getter = next(getattr(library, name) for name in (
        "scipy_openblas_get_num_threads64_", "openblas_get_num_threads64_",
        "openblas_get_num_threads") if hasattr(library, name))
    getter.restype = ctypes.c_int
    assert getter() == 1
