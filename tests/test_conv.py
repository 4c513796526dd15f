"""conv2d and conv_transpose2d against slow loop versions kept here, forward and every gradient;
gradient checks at first, second and third order; shape errors; the layers' shapes and init."""

import numpy as np
import pytest

from minimal import functional as F
from minimal import kernels, nn
from minimal.autograd import Tensor, grad
from minimal.gradcheck import check_grads

# ===== the obviously-correct loop versions ===================================================


def conv2d_loop(x, w, b, stride, padding):
    """Every output value is a dot product of one padded patch with one filter."""
    (sh, sw), (ph, pw) = stride, padding
    n, _, h, width = x.shape
    o, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    oh, ow = (h + 2 * ph - kh) // sh + 1, (width + 2 * pw - kw) // sw + 1
    out = np.zeros((n, o, oh, ow))
    for i in range(n):
        for f in range(o):
            for r in range(oh):
                for c in range(ow):
                    patch = xp[i, :, r * sh:r * sh + kh, c * sw:c * sw + kw]
                    out[i, f, r, c] = np.sum(patch * w[f]) + b[f]
    return out


def conv2d_loop_grads(x, w, g, stride, padding):
    """d<g, conv(x, w)> by the same loop: each output sends g times the filter to its patch."""
    (sh, sw), (ph, pw) = stride, padding
    o, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    gxp, gw = np.zeros_like(xp), np.zeros_like(w)
    for i in range(g.shape[0]):
        for f in range(o):
            for r in range(g.shape[2]):
                for c in range(g.shape[3]):
                    rows, cols = slice(r * sh, r * sh + kh), slice(c * sw, c * sw + kw)
                    gxp[i, :, rows, cols] += g[i, f, r, c] * w[f]
                    gw[f] += g[i, f, r, c] * xp[i, :, rows, cols]
    gx = gxp[:, :, ph:ph + x.shape[2], pw:pw + x.shape[3]]
    return gx, gw, g.sum(axis=(0, 2, 3))


def conv_transpose2d_loop(y, w, b, stride, padding, output_padding):
    """Every input pixel adds (pixel value) x (its kernel) onto the output, s apart; then the
    padding is cropped off."""
    (sh, sw), (ph, pw), (qh, qw) = stride, padding, output_padding
    n, ci, h, width = y.shape
    _, co, kh, kw = w.shape
    out_h = (h - 1) * sh - 2 * ph + kh + qh
    out_w = (width - 1) * sw - 2 * pw + kw + qw
    full = np.zeros((n, co, (h - 1) * sh + kh + qh, (width - 1) * sw + kw + qw))
    for i in range(n):
        for k in range(ci):
            for r in range(h):
                for c in range(width):
                    full[i, :, r * sh:r * sh + kh, c * sw:c * sw + kw] += y[i, k, r, c] * w[k]
    return full[:, :, ph:ph + out_h, pw:pw + out_w] + b.reshape(1, -1, 1, 1)


def conv_transpose2d_loop_grads(y, w, g, stride, padding, output_padding):
    (sh, sw), (ph, pw), (qh, qw) = stride, padding, output_padding
    n, ci, h, width = y.shape
    _, _, kh, kw = w.shape
    g_full = np.zeros((n, w.shape[1], (h - 1) * sh + kh + qh, (width - 1) * sw + kw + qw))
    g_full[:, :, ph:ph + g.shape[2], pw:pw + g.shape[3]] = g
    gy, gw = np.zeros_like(y), np.zeros_like(w)
    for i in range(n):
        for k in range(ci):
            for r in range(h):
                for c in range(width):
                    patch = g_full[i, :, r * sh:r * sh + kh, c * sw:c * sw + kw]
                    gy[i, k, r, c] = np.sum(patch * w[k])
                    gw[k] += y[i, k, r, c] * patch
    return gy, gw, g.sum(axis=(0, 2, 3))


# ===== forward and gradients against the loops ==============================================

rng = np.random.default_rng(3)

CONV_CASES = [  # (N, C, H, W), (O, kh, kw), stride, padding
    ((2, 3, 7, 9), (4, 3, 3), (1, 1), (0, 0)),
    ((2, 3, 7, 8), (5, 5, 5), (2, 2), (2, 2)),
    ((1, 2, 9, 6), (3, 3, 2), (2, 1), (1, 0)),
    ((3, 1, 6, 7), (2, 2, 3), (2, 2), (1, 2)),
    ((2, 4, 5, 5), (3, 5, 5), (1, 1), (2, 2)),
    ((2, 2, 6, 6), (3, 1, 1), (2, 2), (0, 0)),
    # input gradients into >= 16 channels: from <= 64 outputs per-tap products (any stride;
    # on cases this small only when tap_rule forces them), from more one product and col2im
    ((2, 17, 5, 6), (3, 3, 3), (2, 2), (1, 1)),
    ((2, 17, 6, 5), (3, 3, 3), (1, 1), (1, 1)),
    ((1, 16, 5, 4), (2, 5, 3), (1, 1), (2, 0)),
    ((1, 16, 4, 4), (65, 3, 3), (1, 1), (1, 1)),
    ((1, 16, 5, 5), (65, 3, 3), (2, 2), (1, 1)),
]


@pytest.fixture(params=["size rule", "taps on any size"])
def tap_rule(request, monkeypatch):
    """Run a test as the engine runs (per-tap products only above TAP_MIN_PIXELS), and again
    with the per-tap road (minimal/kernels/conv.py) taken whatever the size, so the small cases
    here cover both roads."""
    if request.param == "taps on any size":
        monkeypatch.setattr(kernels.conv, "TAP_MIN_PIXELS", -1)
    return request.param


@pytest.mark.parametrize("x_shape, w_shape, stride, padding", CONV_CASES)
def test_conv2d_matches_loop_forward_and_gradients(x_shape, w_shape, stride, padding, tap_rule):
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal((w_shape[0], x_shape[1]) + w_shape[1:])
    b = rng.standard_normal(w_shape[0])
    xt, wt, bt = (Tensor(a, requires_grad=True) for a in (x, w, b))
    out = F.conv2d(xt, wt, bt, stride, padding)
    expected = conv2d_loop(x, w, b, stride, padding)
    assert out.shape == expected.shape
    np.testing.assert_allclose(out.data, expected, rtol=1e-10, atol=1e-12)
    # the channels-last memory must not leak: flattening gives PyTorch's (C, H, W) order
    np.testing.assert_allclose(out.reshape(out.shape[0], -1).data,
                               expected.reshape(expected.shape[0], -1), rtol=1e-10, atol=1e-12)
    g = rng.standard_normal(expected.shape)
    got = grad(out, [xt, wt, bt], Tensor(g))
    for ours, theirs in zip(got, conv2d_loop_grads(x, w, g, stride, padding)):
        np.testing.assert_allclose(ours.data, theirs, rtol=1e-10, atol=1e-12)


TRANSPOSED_CASES = [  # (N, C_in, H, W), (C_out, kh, kw), stride, padding, output_padding
    ((2, 3, 4, 5), (4, 3, 3), (1, 1), (0, 0), (0, 0)),
    ((2, 3, 4, 3), (2, 5, 5), (2, 2), (2, 2), (1, 1)),
    ((1, 2, 3, 4), (3, 3, 2), (2, 1), (1, 0), (1, 0)),
    ((2, 4, 3, 3), (3, 4, 4), (2, 2), (1, 1), (0, 0)),
    ((3, 1, 5, 4), (2, 3, 3), (2, 2), (0, 2), (1, 1)),
    ((2, 2, 4, 4), (3, 2, 2), (2, 2), (0, 0), (1, 1)),  # output_padding > padding
    ((2, 3, 3, 4), (5, 4, 5), (3, 2), (1, 2), (2, 1)),  # stride 3: 9 phases, uneven taps
    ((2, 3, 4, 3), (17, 3, 3), (2, 2), (1, 1), (1, 1)),  # >= 16 outputs, <= 64 inputs:
    ((1, 2, 3, 3), (16, 5, 5), (2, 2), (2, 2), (1, 1)),  # per-tap products
    ((2, 3, 4, 5), (17, 3, 3), (1, 1), (1, 1), (0, 0)),
    ((2, 3, 4, 3), (16, 5, 2), (1, 1), (0, 1), (0, 0)),
    ((1, 4, 3, 4), (16, 4, 5), (3, 2), (1, 2), (2, 1)),
    ((1, 65, 3, 3), (16, 3, 3), (1, 1), (1, 1), (0, 0)),  # > 64 inputs: one product, col2im
    ((1, 65, 3, 2), (16, 3, 3), (2, 2), (1, 1), (1, 0)),
]


@pytest.mark.parametrize("y_shape, w_shape, stride, padding, output_padding", TRANSPOSED_CASES)
def test_conv_transpose2d_matches_loop_forward_and_gradients(y_shape, w_shape, stride, padding,
                                                             output_padding, tap_rule):
    y = rng.standard_normal(y_shape)
    w = rng.standard_normal((y_shape[1], w_shape[0]) + w_shape[1:])
    b = rng.standard_normal(w_shape[0])
    yt, wt, bt = (Tensor(a, requires_grad=True) for a in (y, w, b))
    out = F.conv_transpose2d(yt, wt, bt, stride, padding, output_padding)
    expected = conv_transpose2d_loop(y, w, b, stride, padding, output_padding)
    assert out.shape == expected.shape
    np.testing.assert_allclose(out.data, expected, rtol=1e-10, atol=1e-12)
    g = rng.standard_normal(expected.shape)
    got = grad(out, [yt, wt, bt], Tensor(g))
    loops = conv_transpose2d_loop_grads(y, w, g, stride, padding, output_padding)
    for ours, theirs in zip(got, loops):
        np.testing.assert_allclose(ours.data, theirs, rtol=1e-10, atol=1e-12)


def test_bias_gradient_from_a_channels_last_gradient_matches_the_loop():
    # a gradient that comes back through the net (here 2 * out) lies channels-last in memory,
    # like the conv's own output; its bias gradient is then a BLAS sum of rows, not np.sum
    x = rng.standard_normal((2, 3, 5, 6))
    w, b = rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)
    xt, wt, bt = (Tensor(a, requires_grad=True) for a in (x, w, b))
    out = F.conv2d(xt, wt, bt, 1, 1)
    assert out.data.transpose(0, 2, 3, 1).flags.c_contiguous
    got = grad((out * out).sum(), [bt])[0]
    expected = 2 * conv2d_loop(x, w, b, (1, 1), (1, 1)).sum(axis=(0, 2, 3))
    np.testing.assert_allclose(got.data, expected, rtol=1e-10)
    second = grad(grad((out * out).sum(), [bt], create_graph=True)[0].sum(), [bt])[0]
    np.testing.assert_allclose(second.data, np.full(4, 2.0 * 2 * 5 * 6))  # d^2/db^2 summed


def test_float32_stays_float32_and_int_arguments_match_pairs():
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    out = F.conv2d(Tensor(x), Tensor(w), None, 2, 1)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.data, F.conv2d(Tensor(x), Tensor(w), None, (2, 2),
                                                  (1, 1)).data)
    np.testing.assert_allclose(out.data, conv2d_loop(x.astype(float), w.astype(float),
                                                     np.zeros(4), (2, 2), (1, 1)), rtol=1e-4,
                               atol=1e-5)


def test_conv_transpose2d_is_the_input_gradient_of_conv2d():
    """<conv(x, w), y> = <x, conv_transpose(y, w)>: the two are adjoint."""
    x, w = rng.standard_normal((2, 3, 9, 7)), rng.standard_normal((4, 3, 5, 5))
    y = rng.standard_normal(F.conv2d(Tensor(x), Tensor(w), None, 2, 2).shape)
    lhs = np.vdot(F.conv2d(Tensor(x), Tensor(w), None, 2, 2).data, y)
    back = F.conv_transpose2d(Tensor(y), Tensor(w), None, 2, 2, output_padding=(0, 0))
    rhs = np.vdot(x, back.data)
    np.testing.assert_allclose(lhs, rhs, rtol=1e-10)


# ===== higher order ==========================================================================

def test_conv2d_gradients_to_third_order():
    x, w, b = (rng.standard_normal(s) for s in ((2, 3, 7, 6), (4, 3, 3, 3), (4,)))
    check_grads(lambda x, w, b: F.conv2d(x, w, b, 2, 1), [x, w, b], order=3)
    # through a nonlinearity the second derivative is not just the bilinear cross term
    check_grads(lambda x, w, b: F.conv2d(x, w, b, 1, 2).tanh(), [x, w, b], order=3)


def test_conv_transpose2d_gradients_to_third_order():
    y, w, b = (rng.standard_normal(s) for s in ((2, 3, 4, 5), (3, 2, 3, 3), (2,)))
    check_grads(lambda y, w, b: F.conv_transpose2d(y, w, b, 2, 1, 1), [y, w, b], order=3)
    y, w, b = (rng.standard_normal(s) for s in ((1, 2, 3, 3), (2, 16, 3, 3), (16,)))
    check_grads(lambda y, w, b: F.conv_transpose2d(y, w, b, 2, 1, 1), [y, w, b], order=2)
    check_grads(lambda y, w, b: F.conv_transpose2d(y, w, b, 2, 2, 1).sigmoid(), [y, w, b],
                order=3)


def test_hessian_vector_product_of_a_small_convnet():
    """double backprop through conv -> tanh -> conv_transpose, as TRPO-style code does it."""
    x = rng.standard_normal((2, 2, 6, 6))
    w1, w2 = rng.standard_normal((3, 2, 3, 3)), rng.standard_normal((3, 2, 3, 3))
    check_grads(lambda x, w1, w2: F.conv_transpose2d(F.conv2d(x, w1, None, 2, 1).tanh(), w2,
                                                     None, 2, 1, 1), [x, w1, w2], order=2)


# ===== errors ================================================================================

def test_shape_errors_name_the_op_and_the_shapes():
    x = Tensor(np.zeros((2, 3, 8, 8)))
    with pytest.raises(ValueError, match=r"conv2d.*\(2, 3, 8, 8\).*\(4, 5, 3, 3\)"):
        F.conv2d(x, Tensor(np.zeros((4, 5, 3, 3))))
    with pytest.raises(ValueError, match=r"conv2d: kernel \(11, 11\).*larger.*\(10, 10\)"):
        F.conv2d(x, Tensor(np.zeros((4, 3, 11, 11))), padding=1)
    with pytest.raises(ValueError, match=r"conv2d.*\(2, 3, 8\)"):
        F.conv2d(Tensor(np.zeros((2, 3, 8))), Tensor(np.zeros((4, 3, 3, 3))))
    with pytest.raises(ValueError, match=r"conv2d: bias shape \(3,\)"):
        F.conv2d(x, Tensor(np.zeros((4, 3, 3, 3))), Tensor(np.zeros(3)))
    with pytest.raises(ValueError, match=r"conv_transpose2d.*\(2, 3, 8, 8\).*\(4, 5, 3, 3\)"):
        F.conv_transpose2d(x, Tensor(np.zeros((4, 5, 3, 3))))
    with pytest.raises(ValueError, match="conv_transpose2d: output_padding"):
        F.conv_transpose2d(x, Tensor(np.zeros((3, 5, 3, 3))), stride=2, output_padding=2)
    with pytest.raises(ValueError, match="conv2d: stride"):
        F.conv2d(x, Tensor(np.zeros((4, 3, 3, 3))), stride=(1, 2, 3))
    # the layers check their arguments when built, not at the first forward
    with pytest.raises(ValueError, match=r"Conv2d: kernel_size .*pair of ints, got \(3, 3, 3\)"):
        nn.Conv2d(3, 8, (3, 3, 3))
    with pytest.raises(ValueError, match=r"ConvTranspose2d: stride .*pair of ints, got 2.5"):
        nn.ConvTranspose2d(3, 8, 3, stride=2.5)
    assert nn.Conv2d(3, 8, np.int64(3)).kernel_size == (3, 3)  # NumPy integers are ints


# ===== layers ================================================================================

def test_conv_layers_have_pytorch_shapes_and_init_bounds():
    conv = nn.Conv2d(3, 8, 5, stride=2, padding=2, rng=np.random.default_rng(0))
    assert conv.weight.shape == (8, 3, 5, 5) and conv.bias.shape == (8,)
    assert np.abs(conv.weight.data).max() <= 1 / np.sqrt(3 * 25)
    assert np.abs(conv.weight.data).max() > 0.9 / np.sqrt(3 * 25)  # fills the range
    assert conv(Tensor(np.zeros((2, 3, 32, 32), np.float32))).shape == (2, 8, 16, 16)
    up = nn.ConvTranspose2d(8, 3, 5, stride=2, padding=2, output_padding=1,
                            rng=np.random.default_rng(0))
    assert up.weight.shape == (8, 3, 5, 5) and up.bias.shape == (3,)
    assert np.abs(up.weight.data).max() <= 1 / np.sqrt(3 * 25)  # fan_in from weight axis 1
    assert up(Tensor(np.zeros((2, 8, 16, 16), np.float32))).shape == (2, 3, 32, 32)
    assert [name for name, _ in nn.Sequential(conv, up).named_parameters()] == [
        "0.weight", "0.bias", "1.weight", "1.bias"]
    same = nn.Conv2d(3, 8, 5, stride=2, padding=2, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(same.weight.data, nn.Conv2d(
        3, 8, 5, stride=2, padding=2, rng=np.random.default_rng(0)).weight.data)


def test_against_torch_when_installed():
    torch = pytest.importorskip("torch")
    x, w, b = (rng.standard_normal(s) for s in ((2, 3, 9, 8), (4, 3, 5, 5), (4,)))
    xt, wt, bt = (Tensor(a, requires_grad=True) for a in (x, w, b))
    out = F.conv2d(xt, wt, bt, 2, 2)
    g = rng.standard_normal(out.shape)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    t_out = torch.nn.functional.conv2d(tx, tw, tb, 2, 2)
    t_out.backward(torch.tensor(g))
    out.backward(g)
    for ours, theirs in ((out, t_out), (xt.grad, tx.grad), (wt.grad, tw.grad),
                         (bt.grad, tb.grad)):
        np.testing.assert_allclose(getattr(ours, "data", ours), theirs.detach().numpy(),
                                   rtol=1e-10, atol=1e-12)
    w2 = rng.standard_normal((4, 3, 5, 5))
    np.testing.assert_allclose(
        F.conv_transpose2d(Tensor(out.data), Tensor(w2), None, 2, 2, 1).data,
        torch.nn.functional.conv_transpose2d(t_out.detach(), torch.tensor(w2), None, 2, 2,
                                             1).numpy(), rtol=1e-10, atol=1e-12)
