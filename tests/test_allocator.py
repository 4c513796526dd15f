import resource
import sys

import numpy as np
import pytest

from minimal import allocator


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="tunes glibc's malloc")
def test_big_temporaries_reuse_freed_memory():
    """A training step's temporaries, allocated and freed again, must reuse their pages. With
    glibc's defaults three 3 MB arrays fault in ~1,500 fresh pages on every repetition here
    (the heap top is trimmed back to the kernel on free); kept, they fault in none."""
    if not allocator.keep_freed_memory():
        pytest.skip("not glibc, or MINIMAL_MALLOC=default")

    def faults_of_one_step():
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        temporaries = [np.ones(3 << 18, np.float32) for _ in range(3)]  # every page written
        del temporaries
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    for _ in range(2):
        faults_of_one_step()
    assert faults_of_one_step() < 100


def test_opt_out(monkeypatch):
    monkeypatch.setenv("MINIMAL_MALLOC", "default")
    assert allocator.keep_freed_memory() is False
