"""max_pool2d (with switches), max_unpool2d and upsample against loop versions kept here."""

import numpy as np
import pytest

from minimal import functional as F
from minimal import nn
from minimal.autograd import Tensor, grad
from minimal.gradcheck import check_grads

rng = np.random.default_rng(5)


def max_pool_loop(x, k, s):
    """Max of each window and the flat H*W index of its first maximum (row-major scan)."""
    n, c, h, w = x.shape
    oh, ow = (h - k[0]) // s[0] + 1, (w - k[1]) // s[1] + 1
    out, idx = np.zeros((n, c, oh, ow)), np.zeros((n, c, oh, ow), int)
    for i in range(n):
        for j in range(c):
            for r in range(oh):
                for q in range(ow):
                    best = None
                    for a in range(k[0]):
                        for b in range(k[1]):
                            row, col = r * s[0] + a, q * s[1] + b
                            if best is None or x[i, j, row, col] > best:
                                best, where = x[i, j, row, col], row * w + col
                    out[i, j, r, q], idx[i, j, r, q] = best, where
    return out, idx


def unpool_loop(y, idx, out_hw):
    out = np.zeros(y.shape[:2] + tuple(out_hw))
    for i in range(y.shape[0]):
        for j in range(y.shape[1]):
            for r in range(y.shape[2]):
                for q in range(y.shape[3]):
                    p = idx[i, j, r, q]
                    out[i, j, p // out_hw[1], p % out_hw[1]] += y[i, j, r, q]
    return out


@pytest.mark.parametrize("shape, kernel, stride", [
    ((2, 3, 8, 6), (2, 2), (2, 2)),
    ((2, 2, 7, 9), (3, 3), (2, 2)),   # overlapping windows, odd sizes, leftover rows
    ((1, 3, 5, 7), (2, 3), (1, 2)),
])
def test_max_pool_matches_loop_with_switches_and_gradient(shape, kernel, stride):
    x = rng.standard_normal(shape)
    xt = Tensor(x, requires_grad=True)
    out, indices = F.max_pool2d(xt, kernel, stride, return_indices=True)
    expected, expected_idx = max_pool_loop(x, kernel, stride)
    np.testing.assert_array_equal(out.data, expected)
    np.testing.assert_array_equal(indices, expected_idx)
    g = rng.standard_normal(out.shape)
    # the gradient goes to the switch positions, summed where windows share a maximum
    np.testing.assert_allclose(grad(out, xt, Tensor(g))[0].data,
                               unpool_loop(g, expected_idx, shape[2:]), rtol=1e-12)
    check_grads(lambda a: F.max_pool2d(a, kernel, stride), [x], order=2)


def test_max_pool_of_ties_picks_the_first_like_pytorch():
    x = np.zeros((1, 1, 2, 2))
    _, indices = F.max_pool2d(Tensor(x), 2, return_indices=True)
    assert indices.item() == 0


@pytest.mark.parametrize("shape, kernel", [((2, 3, 7, 9), (2, 2)), ((1, 2, 8, 7), (3, 2))])
def test_non_overlapping_pool_fast_path_matches_the_loop_with_ties_and_leftovers(shape, kernel):
    """stride = kernel takes the strided-slices path: small integers make many ties (the first
    max in row order must win), odd sizes leave rows and columns out."""
    x = rng.integers(-1, 2, shape).astype(np.float32)
    x[(x == 0) & (rng.random(shape) < 0.5)] = -0.0  # as a ReLU by mask leaves: a tie with 0.0
    out, indices = F.max_pool2d(Tensor(x), kernel, return_indices=True)
    expected, expected_idx = max_pool_loop(x, kernel, kernel)
    np.testing.assert_array_equal(out.data, expected)
    np.testing.assert_array_equal(indices, expected_idx)
    at_switches = np.take_along_axis(x.reshape(*shape[:2], -1), indices.reshape(*shape[:2], -1),
                                     axis=2).reshape(indices.shape)
    np.testing.assert_array_equal(np.signbit(out.data), np.signbit(at_switches))  # same bits


def test_a_nan_in_a_window_is_its_switch_on_both_paths():
    x = np.arange(16, dtype=np.float64).reshape(1, 1, 4, 4)
    x[0, 0, 1, 0] = np.nan  # in the first 2x2 window, below a smaller value
    for stride in (2, (2, 1)):  # the fast path (stride = kernel) and the general one
        out, indices = F.max_pool2d(Tensor(x), 2, stride, return_indices=True)
        assert np.isnan(out.data[0, 0, 0, 0]) and indices[0, 0, 0, 0] == 4


def test_unpool_puts_values_back_at_the_switches():
    x = rng.standard_normal((2, 3, 6, 7))
    pooled, indices = F.max_pool2d(Tensor(x), 2, return_indices=True)
    restored = F.max_unpool2d(pooled, indices, 2, output_size=(6, 7))
    np.testing.assert_array_equal(restored.data, unpool_loop(pooled.data, indices, (6, 7)))
    kept = restored.data != 0
    np.testing.assert_array_equal(restored.data[kept], x[kept])  # the maxima, where they were
    assert kept.sum() == pooled.size
    even, even_indices = F.max_pool2d(Tensor(x[..., :6]), 2, return_indices=True)
    assert F.max_unpool2d(even, even_indices, 2).shape == (2, 3, 6, 6)  # default size
    y = rng.standard_normal(pooled.shape)
    check_grads(lambda a: F.max_unpool2d(a, indices, 2, output_size=(6, 7)), [y], order=2)


def test_upsample_repeats_each_pixel_in_a_block():
    x = rng.standard_normal((2, 3, 3, 4))
    out = F.upsample(Tensor(x), 2).data
    for r in range(6):
        for c in range(8):
            np.testing.assert_array_equal(out[:, :, r, c], x[:, :, r // 2, c // 2])
    check_grads(lambda a: F.upsample(a, 3), [x], order=2)


def test_pool_errors_name_the_op_and_shapes():
    with pytest.raises(ValueError, match=r"max_pool2d: kernel \(5, 5\).*\(1, 1, 4, 4\)"):
        F.max_pool2d(Tensor(np.zeros((1, 1, 4, 4))), 5)
    with pytest.raises(ValueError, match=r"max_unpool2d: indices shape \(1, 1, 2, 2\)"):
        F.max_unpool2d(Tensor(np.zeros((1, 1, 3, 3))), np.zeros((1, 1, 2, 2), int), 2)
    with pytest.raises(ValueError, match=r"max_unpool2d: indices must lie in \[0, 16\)"):
        F.max_unpool2d(Tensor(np.zeros((1, 1, 2, 2))), np.full((1, 1, 2, 2), 16), 2)


def test_maxpool_module_and_torch_when_installed():
    x = rng.standard_normal((2, 3, 7, 8))
    out, indices = nn.MaxPool2d(3, 2, return_indices=True)(Tensor(x))
    torch = pytest.importorskip("torch")
    t_out, t_idx = torch.nn.functional.max_pool2d(torch.tensor(x), 3, 2, return_indices=True)
    np.testing.assert_array_equal(out.data, t_out.numpy())
    np.testing.assert_array_equal(indices, t_idx.numpy())
    pooled, switches = torch.nn.functional.max_pool2d(torch.tensor(x), 2, return_indices=True)
    np.testing.assert_array_equal(
        F.max_unpool2d(Tensor(pooled.numpy()), switches.numpy(), 2, output_size=(7, 8)).data,
        torch.nn.functional.max_unpool2d(pooled, switches, 2, output_size=(7, 8)).numpy())
