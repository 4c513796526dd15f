"""batch_norm and nn.BatchNorm1d/2d: values against the per-channel formula, running statistics,
train/eval, gradients to third order, affine parameters that learn."""

import numpy as np
import pytest

from minimal import functional as F
from minimal import nn, optim
from minimal.autograd import Tensor, grad
from minimal.gradcheck import check_grads

rng = np.random.default_rng(11)


def batch_norm_loop(x, weight, bias, eps):
    """Channel by channel: (x - mean) / sqrt(var + eps) * weight + bias, var biased."""
    out = np.empty_like(x)
    for c in range(x.shape[1]):
        values = x[:, c]
        mean = values.sum() / values.size
        var = ((values - mean) ** 2).sum() / values.size
        out[:, c] = (values - mean) / np.sqrt(var + eps) * weight[c] + bias[c]
    return out


@pytest.mark.parametrize("shape", [(5, 3), (4, 3, 7), (3, 2, 5, 4), "channels-last"])
def test_training_mode_matches_formula_and_updates_running_stats(shape):
    if shape == "channels-last":  # (N, C, H, W) over (N, H, W, C) memory, as conv outputs are
        x = (rng.standard_normal((3, 5, 4, 2)) * 3 + 1).transpose(0, 3, 1, 2)
        shape = x.shape
    else:
        x = rng.standard_normal(shape) * 3 + 1
    weight, bias = rng.standard_normal(shape[1]), rng.standard_normal(shape[1])
    running_mean, running_var = rng.standard_normal(shape[1]), rng.random(shape[1]) + 0.5
    start_mean, start_var = running_mean.copy(), running_var.copy()
    out = F.batch_norm(Tensor(x), running_mean, running_var, Tensor(weight), Tensor(bias),
                       training=True, momentum=0.3, eps=1e-3)
    np.testing.assert_allclose(out.data, batch_norm_loop(x, weight, bias, 1e-3), rtol=1e-10)
    axes = (0,) + tuple(range(2, x.ndim))
    np.testing.assert_allclose(running_mean, 0.7 * start_mean + 0.3 * x.mean(axis=axes))
    np.testing.assert_allclose(running_var,  # the running variance is the unbiased one
                               0.7 * start_var + 0.3 * x.var(axis=axes, ddof=1))


def test_gradients_to_third_order_with_and_without_affine():
    x, weight, bias = rng.standard_normal((4, 3, 3, 2)), rng.standard_normal(3), \
        rng.standard_normal(3)
    check_grads(lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True), [x, weight, bias],
                order=3)
    check_grads(lambda x: F.batch_norm(x, None, None, training=True), [x], order=2)
    check_grads(lambda x, w: F.batch_norm(x, None, None, w, None, training=True).tanh(),
                [rng.standard_normal((6, 4)), rng.standard_normal(4)], order=2)
    mean, var = rng.standard_normal(3), rng.random(3) + 0.5
    check_grads(lambda x, w, b: F.batch_norm(x, mean, var, w, b, training=False),
                [x, weight, bias], order=2)


@pytest.mark.parametrize("layout", ["channels-first", "channels-last", "mixed"])
def test_fast_backward_equals_the_composed_backward(layout):
    """The hand-written first-order backward agrees with differentiating the formula, for
    input and gradient in either memory order (channels-last takes the einsum path)."""
    weight, bias = rng.standard_normal(3), rng.standard_normal(3)
    last = rng.standard_normal((5, 4, 4, 3)).transpose(0, 3, 1, 2)
    x = last if layout != "channels-first" else np.ascontiguousarray(last)
    g = rng.standard_normal((5, 4, 4, 3)).transpose(0, 3, 1, 2)
    g = g if layout == "channels-last" else np.ascontiguousarray(g)
    tensors = [Tensor(a, requires_grad=True) for a in (x, weight, bias)]
    fast = grad(F.batch_norm(*tensors[:1], None, None, *tensors[1:], training=True), tensors,
                Tensor(g))
    centred = tensors[0] - tensors[0].mean(axis=(0, 2, 3), keepdims=True)
    variance = (centred * centred).mean(axis=(0, 2, 3), keepdims=True)
    formula = centred / (variance + 1e-5).sqrt() * tensors[1].reshape(1, 3, 1, 1) \
        + tensors[2].reshape(1, 3, 1, 1)
    slow = grad(formula, tensors, Tensor(g))
    for a, b in zip(fast, slow):
        np.testing.assert_allclose(a.data, b.data, rtol=1e-9, atol=1e-12)


def test_module_train_eval_and_learned_affine():
    bn = nn.BatchNorm2d(3, momentum=0.5)
    assert [name for name in bn.state_dict()] == ["weight", "bias", "running_mean",
                                                 "running_var", "num_batches_tracked"]
    x = (rng.standard_normal((8, 3, 4, 4)) * 2 + 5).astype(np.float32)
    out = bn(Tensor(x))
    assert out.dtype == np.float32 and int(bn.num_batches_tracked) == 1
    np.testing.assert_allclose(out.data.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    bn.eval()
    evaluated = bn(Tensor(x[:1])).data  # a batch of one works in eval mode
    expected = (x[:1] - bn.running_mean.reshape(1, 3, 1, 1)) / np.sqrt(
        bn.running_var.reshape(1, 3, 1, 1) + 1e-5)
    np.testing.assert_allclose(evaluated, expected, rtol=1e-5, atol=1e-5)
    assert int(bn.num_batches_tracked) == 1  # eval does not touch the statistics
    bn.train()
    # the affine parameters learn: a constant target 2 is fitted by bias 2 and weight 0
    optimizer = optim.SGD(bn.parameters(), lr=0.1)
    target = np.full(x.shape, 2, np.float32)
    for _ in range(100):
        optimizer.zero_grad()
        F.mse_loss(bn(Tensor(x)), target).backward()
        optimizer.step()
    np.testing.assert_allclose(bn.bias.data, 2, atol=1e-2)
    np.testing.assert_allclose(bn.weight.data, 0, atol=1e-2)


def test_batchnorm1d_accepts_2d_and_3d_and_errors_name_shapes():
    bn = nn.BatchNorm1d(4)
    assert bn(Tensor(rng.standard_normal((6, 4)))).shape == (6, 4)
    assert bn(Tensor(rng.standard_normal((6, 4, 3)))).shape == (6, 4, 3)
    with pytest.raises(ValueError, match=r"BatchNorm1d.*\(6, 4, 3, 2\)"):
        bn(Tensor(np.zeros((6, 4, 3, 2))))
    with pytest.raises(ValueError, match=r"batch_norm: input shape \(6, 5\) has 5 channels"):
        bn(Tensor(np.zeros((6, 5))))
    with pytest.raises(ValueError, match=r"batch_norm: training needs more than one value"):
        bn(Tensor(np.zeros((1, 4))))


def test_against_torch_when_installed():
    torch = pytest.importorskip("torch")
    bn, t_bn = nn.BatchNorm2d(3), torch.nn.BatchNorm2d(3).double()
    weight, bias = rng.standard_normal(3), rng.standard_normal(3)
    bn.weight.data, bn.bias.data = weight.copy(), bias.copy()
    t_bn.weight.data, t_bn.bias.data = torch.tensor(weight), torch.tensor(bias)
    for _ in range(2):
        x = rng.standard_normal((4, 3, 5, 5))
        xt, tx = Tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
        g = rng.standard_normal(x.shape)
        bn(xt).backward(g)
        t_bn(tx).backward(torch.tensor(g))
        np.testing.assert_allclose(xt.grad, tx.grad.numpy(), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(bn.weight.grad, t_bn.weight.grad.numpy(), rtol=1e-8)
    np.testing.assert_allclose(bn.running_var, t_bn.running_var.numpy(), rtol=1e-6)
    bn.eval()
    t_bn.eval()
    x = rng.standard_normal((2, 3, 5, 5))
    np.testing.assert_allclose(bn(Tensor(x)).data, t_bn(torch.tensor(x)).detach().numpy(),
                               rtol=1e-5, atol=1e-6)
