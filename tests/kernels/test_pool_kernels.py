"""kernels/pool.py: the running-max pool against conv._max_pool's reference (values with the
sign of zero, switches, gradients at first and second order), and where it declines."""

import numpy as np
import pytest
from agree import assert_agree, channels_last, strided, taken

from minimal import conv, kernels
from minimal import functional as F
from minimal.kernels import pool

rng = np.random.default_rng(3)
LAYOUTS = {"contiguous": lambda x: x, "channels-last": channels_last, "strided": strided}


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape, kernel", [((2, 3, 8, 6), (2, 2)), ((2, 2, 7, 9), (3, 3)),
                                           ((1, 2, 5, 6), (2, 3))])
def test_running_max_equals_the_reference_with_ties(layout, shape, kernel):
    x = rng.integers(-2, 3, shape).astype(np.float64)  # many ties
    x[(x == 0) & (rng.random(shape) < 0.5)] = -0.0
    x = LAYOUTS[layout](x)
    value, backward, indices = pool.max_pool2d(x, kernel, kernel)
    with kernels.enabled(False):
        out, ref_indices = conv._max_pool.reference(conv.as_tensor(x), kernel, kernel)
    np.testing.assert_array_equal(indices, ref_indices)
    np.testing.assert_array_equal(value, out.data)
    np.testing.assert_array_equal(np.signbit(value), np.signbit(out.data))
    g = rng.standard_normal(value.shape)
    (gx,) = backward(g, (True,))
    np.testing.assert_array_equal(gx, conv._scatter_planes(conv.as_tensor(g), indices,
                                                           shape[2:]).data)


def test_pool_through_autograd_matches_at_first_and_second_order():
    x = channels_last(rng.standard_normal((2, 3, 8, 8)))
    with taken("max_pool2d") as calls:
        assert_agree(lambda t: F.max_pool2d(t, 2), [x])
    assert calls


@pytest.mark.parametrize("kernel, stride", [((3, 3), (2, 2)), ((2, 2), (1, 1))])
def test_overlapping_windows_are_left_to_the_reference(kernel, stride):
    assert pool.max_pool2d(rng.standard_normal((1, 2, 6, 6)), kernel, stride) is NotImplemented


def test_a_nan_is_left_to_the_reference_which_points_at_it():
    x = rng.standard_normal((1, 1, 4, 4))
    x[0, 0, 1, 0] = np.nan
    assert pool.max_pool2d(x, (2, 2), (2, 2)) is NotImplemented
    out, indices = F.max_pool2d(conv.as_tensor(x), 2, return_indices=True)
    assert np.isnan(out.data[0, 0, 0, 0]) and indices[0, 0, 0, 0] == 4
