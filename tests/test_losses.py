"""cross_entropy and binary_cross_entropy_with_logits against the compositions that define them,
at first and higher order (with kernels on, their single-node kernels: tests/kernels/)."""

import numpy as np
import pytest

from minimal import functional as F
from minimal.autograd import Tensor, grad, softplus
from minimal.gradcheck import check_grads

rng = np.random.default_rng(17)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_fused_cross_entropy_equals_log_softmax_nll(reduction):
    logits = rng.standard_normal((7, 5)) * 4
    target = np.array([0, 4, -100, 2, 2, 1, -100])
    fused_in, plain_in = Tensor(logits, requires_grad=True), Tensor(logits, requires_grad=True)
    fused = F.cross_entropy(fused_in, target, reduction=reduction)
    plain = F.nll_loss(F.log_softmax(plain_in, axis=1), target, reduction=reduction)
    np.testing.assert_allclose(fused.data, plain.data, rtol=1e-12)
    np.testing.assert_allclose(grad(fused, fused_in)[0].data, grad(plain, plain_in)[0].data,
                               rtol=1e-10, atol=1e-14)
    check_grads(lambda x: F.cross_entropy(x, target, reduction=reduction), [logits], order=3)
    assert F.cross_entropy(Tensor(logits.astype(np.float32)), target).dtype == np.float32


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_fused_bce_with_logits_equals_softplus_form(reduction):
    x = rng.standard_normal((4, 6)) * 5
    t = rng.random((4, 6))
    fused_in, plain_in = Tensor(x, requires_grad=True), Tensor(x, requires_grad=True)
    fused = F.binary_cross_entropy_with_logits(fused_in, t, reduction=reduction)
    plain = softplus(plain_in) - plain_in * Tensor(t)
    plain = plain.mean() if reduction == "mean" else plain.sum()
    np.testing.assert_allclose(fused.data, plain.data, rtol=1e-12)
    np.testing.assert_allclose(grad(fused, fused_in)[0].data, grad(plain, plain_in)[0].data,
                               rtol=1e-10, atol=1e-14)
    check_grads(lambda a: F.binary_cross_entropy_with_logits(a, t, reduction=reduction), [x],
                order=3)


def test_grad_outputs_that_depend_on_the_inputs_stay_in_the_graph():
    """d/dx of grad(y, x, grad_outputs=v(x)) must include the v(x) term (PyTorch does)."""
    x = Tensor(np.array([2.0]), requires_grad=True)
    first, = grad(x * x, [x], grad_outputs=x * 3, create_graph=True)  # 2x * 3x = 6x^2
    second, = grad(first.sum(), [x])
    np.testing.assert_allclose(second.data, [24.0])  # 12x
