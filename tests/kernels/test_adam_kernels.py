"""kernels/adam.py: Adam's update in chunks gives the reference's bits (threads: see
test_threads_kernels.py)."""

import numpy as np
import pytest

from minimal.kernels import adam as adam_kernel
from minimal.optim import _adam_update

rng = np.random.default_rng(7)


@pytest.mark.parametrize("size", [5, adam_kernel.CHUNK, adam_kernel.CHUNK * 2 + 3])
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_chunked_update_has_the_reference_bits(size, weight_decay):
    start = [rng.standard_normal(size).astype(np.float32) for _ in range(4)]
    start[3] = np.abs(start[3])  # v >= 0
    fast, plain = [a.copy() for a in start], [a.copy() for a in start]
    settings = (1e-2 / (1 - 0.9 ** 3), 1 - 0.999 ** 3, 0.9, 0.999, 1e-8, weight_decay)
    assert adam_kernel.adam_update(*fast, *settings) is None
    _adam_update.reference(*plain, *settings)
    for a, b in zip(fast, plain):
        assert np.array_equal(a, b)
    assert not np.array_equal(fast[0], start[0])  # it did update


def test_non_contiguous_arrays_are_left_to_the_reference():
    p = rng.standard_normal((4, 6)).T
    arrays = [p, np.ones_like(p), np.zeros_like(p), np.zeros_like(p)]
    assert adam_kernel.adam_update(*arrays, 0.1, 0.1, 0.9, 0.999, 1e-8, 0.0) is NotImplemented
