"""kernels/attention.py: DRAW's filterbanks, read and write as single nodes against their
references in minimal/demos/draw.py, at first and second order."""

import numpy as np
import pytest
from agree import assert_agree, taken

from minimal.demos import draw

rng = np.random.default_rng(8)


@pytest.mark.parametrize("axis", ["x", "y"])
def test_window_filterbank_kernel_matches_the_reference(axis):
    params = rng.normal(0, 0.7, (3, 5))
    with taken("draw_window_filterbank") as calls:
        assert_agree(lambda p: draw.window_filterbank(p, 7, 9, 4, axis), [params], rtol=1e-8,
                     atol=1e-10)
    assert calls


@pytest.mark.parametrize("op, name", [(draw.read_patches, "draw_read"),
                                      (draw.write_patches, "draw_write")])
def test_read_and_write_kernels_match_the_reference(op, name):
    batch, channels, height, width, n = 2, 3, 7, 9, 4
    shape = (batch, channels) + ((height, width) if op is draw.read_patches else (n, n))
    arrays = [rng.standard_normal(shape), rng.random((batch, n, width)),
              rng.random((batch, n, height))]
    with taken(name) as calls:
        assert_agree(op, arrays)
    assert calls
