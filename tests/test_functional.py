import numpy as np
import pytest

from minimal import functional as F
from minimal.autograd import Tensor
from minimal.gradcheck import check_grads

rng = np.random.default_rng(7)


def test_softmax_and_log_softmax_values():
    x = rng.standard_normal((3, 5)) * 3
    expected = np.exp(x) / np.exp(x).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(F.softmax(Tensor(x)).data, expected, rtol=1e-12)
    np.testing.assert_allclose(F.log_softmax(Tensor(x), axis=0).data,
                               x - np.log(np.exp(x).sum(axis=0, keepdims=True)), rtol=1e-12)
    check_grads(lambda a: F.softmax(a, axis=1), [x], order=2)
    check_grads(lambda a: F.log_softmax(a, axis=0), [x], order=2)


def test_cross_entropy_against_formula_with_ignore_index():
    logits = rng.standard_normal((6, 4))
    target = np.array([0, 3, -100, 2, 1, -100])
    keep = target != -100
    log_p = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    expected = -log_p[np.nonzero(keep)[0], target[keep]].mean()  # mean over kept rows only
    np.testing.assert_allclose(F.cross_entropy(Tensor(logits), target).data, expected, rtol=1e-12)
    summed = F.cross_entropy(Tensor(logits), target, reduction="sum").data
    np.testing.assert_allclose(summed, expected * keep.sum(), rtol=1e-12)
    per_row = F.cross_entropy(Tensor(logits), target, reduction="none").data
    assert per_row.shape == (6,) and np.all(per_row[~keep] == 0)
    check_grads(lambda a: F.cross_entropy(a, target), [logits], order=2)


def test_cross_entropy_with_positions_matches_flattened():
    logits = rng.standard_normal((2, 5, 3))  # (N, C, positions) like PyTorch
    target = rng.integers(0, 5, (2, 3))
    flat = logits.transpose(0, 2, 1).reshape(-1, 5)
    np.testing.assert_allclose(F.cross_entropy(Tensor(logits), target).data,
                               F.cross_entropy(Tensor(flat), target.reshape(-1)).data, rtol=1e-12)
    assert F.cross_entropy(Tensor(logits), target, reduction="none").shape == (2, 3)


def test_cross_entropy_bad_input():
    with pytest.raises(ValueError, match="nll_loss"):
        F.cross_entropy(Tensor(np.zeros((3, 4))), np.array([0, 1]))
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        F.cross_entropy(Tensor(np.zeros((2, 4))), np.array([0, 4]))
    with pytest.raises(TypeError):
        F.cross_entropy(Tensor(np.zeros((2, 4))), np.array([0.0, 1.0]))


def test_bce_with_logits_stable_and_correct():
    x = np.array([-800.0, -3.0, 0.0, 2.0, 800.0])
    t = np.array([1.0, 0.0, 1.0, 0.3, 0.0])
    loss = F.binary_cross_entropy_with_logits(Tensor(x), t, reduction="none").data
    p = 1 / (1 + np.exp(-x[1:4]))
    np.testing.assert_allclose(loss[1:4], -(t[1:4] * np.log(p) + (1 - t[1:4]) * np.log(1 - p)))
    np.testing.assert_allclose(loss[[0, 4]], [800.0, 800.0])
    x32 = Tensor(np.float32(x) , requires_grad=True)
    F.binary_cross_entropy_with_logits(x32, t).backward()
    assert np.all(np.isfinite(x32.grad))
    check_grads(lambda a: F.binary_cross_entropy_with_logits(a, t), [x / 100], order=2)


def test_bce_mse_l1():
    p = rng.uniform(0.1, 0.9, (3, 2))
    t = rng.uniform(0, 1, (3, 2))
    np.testing.assert_allclose(F.binary_cross_entropy(Tensor(p), t).data,
                               -(t * np.log(p) + (1 - t) * np.log(1 - p)).mean())
    np.testing.assert_allclose(F.mse_loss(Tensor(p), t).data, ((p - t) ** 2).mean())
    np.testing.assert_allclose(F.l1_loss(Tensor(p), t, reduction="sum").data, np.abs(p - t).sum())
    check_grads(lambda a: F.binary_cross_entropy(a, t), [p], order=2)
    check_grads(lambda a: F.mse_loss(a, t), [p], order=2)
    with pytest.raises(ValueError, match="mse_loss"):
        F.mse_loss(Tensor(p), t[:2])


def test_dropout_scales_and_is_seeded():
    x = Tensor(np.ones((200, 50), np.float32))
    a = F.dropout(x, 0.3, np.random.default_rng(5)).data
    b = F.dropout(x, 0.3, np.random.default_rng(5)).data
    np.testing.assert_array_equal(a, b)
    assert set(np.unique(a)) <= {0.0, np.float32(1 / 0.7)}
    assert abs((a == 0).mean() - 0.3) < 0.02 and abs(a.mean() - 1) < 0.03
    assert F.dropout(x, 0.3, np.random.default_rng(5), training=False) is x
