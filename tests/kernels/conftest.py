"""The kernel tests compare each kernel with its reference, so they run with kernels on even
when the suite runs with MINIMAL_KERNELS=reference."""

import sys
from pathlib import Path

import pytest

from minimal import kernels

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the loop versions in tests/


@pytest.fixture(autouse=True)
def kernels_on():
    with kernels.enabled(True):
        yield
