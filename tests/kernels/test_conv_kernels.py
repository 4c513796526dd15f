"""kernels/conv.py against conv.py's references: each array step on its own (layouts, the
shapes where the transposed convolution's rule switches roads), then whole convolutions
through autograd at first and second order."""

import numpy as np
import pytest
from agree import assert_agree, channels_last, strided, taken

from minimal import conv, kernels
from minimal import functional as F
from minimal.kernels import conv as conv_kernels

rng = np.random.default_rng(2)
LAYOUTS = {"contiguous": lambda x: x, "channels-last": channels_last, "strided": strided}


def reference(fn, *args):
    """fn's reference with every step inside it on its reference too."""
    with kernels.enabled(False):
        return fn.reference(*args)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("pad", [(0, 0), (1, 2)])
def test_layout_copies_equal_their_references(layout, pad):
    x = LAYOUTS[layout](rng.standard_normal((3, 4, 5, 6)))
    np.testing.assert_array_equal(conv_kernels.channels_last(x), reference(conv._channels_last, x))
    padded = conv_kernels.padded_channels_last(x, pad)
    np.testing.assert_array_equal(padded, reference(conv._padded_channels_last, x, pad))
    assert padded.flags.c_contiguous


@pytest.mark.parametrize("kernel, stride, pad", [
    ((3, 3), (1, 1), (1, 1)), ((5, 3), (2, 1), (2, 0)), ((4, 4), (2, 2), (1, 1)),
    ((1, 1), (3, 3), (0, 0))])
def test_im2col_and_col2im_equal_their_references(kernel, stride, pad):
    n, c, h, w = 2, 3, 9, 8
    x = rng.standard_normal((n, c, h, w))
    padded = conv_kernels.padded_channels_last(x, pad)
    out_hw = ((h + 2 * pad[0] - kernel[0]) // stride[0] + 1,
              (w + 2 * pad[1] - kernel[1]) // stride[1] + 1)
    cols = conv_kernels.im2col(padded, kernel, stride, out_hw)
    np.testing.assert_array_equal(cols, reference(conv._im2col, padded, kernel, stride, out_hw))
    g = rng.standard_normal(cols.shape)
    args = (g, (n, h, w, c), kernel, stride, pad, out_hw)
    np.testing.assert_allclose(conv_kernels.col2im(*args), reference(conv._col2im, *args),
                               rtol=1e-13, atol=1e-13)


# (N, O, h, w) input, C output channels, kernel, stride, padding, and the road expected: the
# rule's edges are C 15 | 16, O 64 | 65, N*h*w 256 | 257
ROADS = [
    ((2, 8, 5, 5), 15, (4, 4), (2, 2), (1, 1), "channels first"),
    ((2, 8, 5, 5), 3, (3, 3), (1, 1), (1, 1), "channels first"),
    ((1, 70, 4, 4), 1, (5, 5), (3, 2), (2, 1), "channels first"),
    ((4, 64, 8, 8), 16, (3, 3), (1, 1), (1, 1), "col2im"),  # 256 pixels: not taps
    ((1, 64, 17, 17), 16, (3, 3), (2, 2), (1, 1), "per tap"),  # 289 > 256
    ((1, 65, 17, 17), 16, (3, 3), (2, 2), (1, 1), "col2im"),
    ((1, 64, 16, 16), 16, (5, 5), (1, 1), (2, 2), "col2im"),  # exactly 256
    ((1, 20, 16, 17), 32, (5, 5), (1, 1), (2, 2), "per tap"),
]


@pytest.mark.parametrize("y_shape, c, kernel, stride, pad, road", ROADS)
def test_transposed_convolution_roads_equal_the_reference(y_shape, c, kernel, stride, pad, road):
    y = channels_last(rng.standard_normal(y_shape))  # as a conv's output lies
    weight = rng.standard_normal((y_shape[1], c) + kernel)
    out_hw = tuple((n - 1) * s - 2 * p + k for n, s, p, k in
                   zip(y_shape[2:], stride, pad, kernel))
    matrix = conv._weight_matrix(weight)
    fast = conv_kernels.conv_transpose(y, weight, matrix, stride, pad, out_hw)
    plain = reference(conv._conv_transpose_arrays, y, weight, matrix, stride, pad, out_hw)
    if road == "col2im":
        assert fast is NotImplemented
        return
    np.testing.assert_allclose(fast, plain, rtol=1e-12, atol=1e-12)
    n, _, h, w = y_shape
    took_taps = c >= conv_kernels.FEW_CHANNELS
    assert took_taps == (road == "per tap")
    assert (n * h * w > conv_kernels.TAP_MIN_PIXELS) or not took_taps


@pytest.mark.parametrize("pixels, patch", [(200, 27), (10, 75)])  # both ways round
def test_weight_gradient_equals_the_reference(pixels, patch):
    cols, g_rows = rng.standard_normal((pixels, patch)), rng.standard_normal((pixels, 4))
    kernel = (3, 3) if patch == 27 else (5, 5)
    fast = conv_kernels.weight_gradient(cols, g_rows, kernel)
    np.testing.assert_allclose(fast, reference(conv._weight_gradient, cols, g_rows, kernel),
                               rtol=1e-12)
    assert fast.flags.c_contiguous


def test_bias_gradient_kernel_only_for_a_channels_last_gradient():
    g = rng.standard_normal((2, 5, 3, 4))
    value, _ = conv_kernels.bias_gradient(channels_last(g))
    np.testing.assert_allclose(value, g.sum(axis=(0, 2, 3)), rtol=1e-12)
    assert conv_kernels.bias_gradient(g) is NotImplemented  # NCHW: NumPy's sum


CONVS = [  # x shape, weight shape, stride, padding
    ((2, 3, 9, 9), (16, 3, 5, 5), 2, 2),
    ((2, 16, 8, 8), (16, 16, 3, 3), 1, 1),
    ((1, 4, 6, 7), (5, 4, 3, 2), (2, 1), (1, 0)),
]


@pytest.mark.parametrize("x_shape, w_shape, stride, pad", CONVS)
def test_conv2d_with_kernels_matches_the_reference(x_shape, w_shape, stride, pad):
    x = channels_last(rng.standard_normal(x_shape))
    w, b = rng.standard_normal(w_shape), rng.standard_normal(w_shape[0])
    with taken("im2col") as calls, taken("conv_bias_gradient") as bias_calls:
        assert_agree(lambda x, w, b: F.conv2d(x, w, b, stride, pad), [x, w, b],
                     layout=channels_last)
    assert calls and bias_calls


@pytest.mark.parametrize("y_shape, c, kernel, stride, pad, road", ROADS[:2] + ROADS[4:6])
def test_conv_transpose2d_with_kernels_matches_the_reference(y_shape, c, kernel, stride, pad,
                                                              road):
    y = channels_last(rng.standard_normal(y_shape))
    w, b = rng.standard_normal((y_shape[1], c) + kernel), rng.standard_normal(c)
    with taken("conv_transpose") as calls:
        assert_agree(lambda y, w, b: F.conv_transpose2d(y, w, b, stride, pad), [y, w, b],
                     rtol=1e-8, atol=1e-9, layout=channels_last)
    assert bool(calls) == (road != "col2im")
