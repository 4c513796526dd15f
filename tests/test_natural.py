"""Conjugate gradient, Fisher-vector products by double backprop, and the backtracking search."""

import math

import numpy as np
import pytest

from minimal import nn
from minimal.autograd import Tensor, grad
from minimal.distributions import Categorical, DiagGaussian
from minimal.natural import (
    conjugate_gradient,
    fisher_vector_product,
    flat_parameters,
    line_search,
    natural_direction,
    set_flat_parameters,
)


def explicit_matrix(product, n: int) -> np.ndarray:
    """The matrix of a linear map, built column by column from products with basis vectors."""
    return np.stack([product(np.eye(n)[j]) for j in range(n)], axis=1)


def test_conjugate_gradient_matches_linear_solve():
    rng = np.random.default_rng(0)
    root = rng.standard_normal((12, 12))
    A = root @ root.T + 0.5 * np.eye(12)
    b = rng.standard_normal(12)
    x = conjugate_gradient(lambda v: A @ v, b, iters=50, tol=1e-20)
    np.testing.assert_allclose(x, np.linalg.solve(A, b), rtol=1e-8, atol=1e-10)


def test_conjugate_gradient_solves_n_by_n_in_n_steps_and_few_steps_approximate():
    rng = np.random.default_rng(1)
    A = np.diag(rng.uniform(1, 3, 6))
    b = rng.standard_normal(6)
    np.testing.assert_allclose(conjugate_gradient(lambda v: A @ v, b, iters=6, tol=0),
                               b / np.diag(A), rtol=1e-10)
    # with fewer iterations than distinct eigenvalues the answer is close but not exact
    partial = conjugate_gradient(lambda v: A @ v, b, iters=2, tol=0)
    assert 0 < np.linalg.norm(partial - b / np.diag(A)) < np.linalg.norm(b / np.diag(A))


def test_conjugate_gradient_with_identity_returns_the_right_hand_side():
    b = np.array([0.3, -1.0, 2.0])
    np.testing.assert_array_equal(conjugate_gradient(lambda v: v, b), b)


def test_fisher_of_gaussian_in_mean_and_log_std_is_diag_inverse_variance_and_two():
    sigma = 0.4
    mean = Tensor(np.array([[0.7]]), requires_grad=True)
    log_std = Tensor(np.array([math.log(sigma)]), requires_grad=True)
    pi = DiagGaussian(mean, log_std)
    fvp = fisher_vector_product(pi.detach().kl(pi).mean(), [mean, log_std])
    np.testing.assert_allclose(explicit_matrix(fvp, 2), np.diag([1 / sigma ** 2, 2.0]),
                               rtol=1e-12, atol=1e-12)


def test_fisher_of_softmax_in_logits_is_diag_p_minus_p_p_transpose():
    logits = Tensor(np.array([[0.5, -1.0, 0.2, 1.5]]), requires_grad=True)
    pi = Categorical(logits)
    fvp = fisher_vector_product(pi.detach().kl(pi).mean(), [logits])
    p = pi.probs.data[0]
    np.testing.assert_allclose(explicit_matrix(fvp, 4), np.diag(p) - np.outer(p, p),
                               rtol=1e-10, atol=1e-12)


def test_damping_adds_a_multiple_of_the_identity():
    logits = Tensor(np.array([[0.5, -1.0, 0.2]]), requires_grad=True)
    pi = Categorical(logits)
    kl = pi.detach().kl(pi).mean()
    plain = explicit_matrix(fisher_vector_product(kl, [logits]), 3)
    damped = explicit_matrix(fisher_vector_product(kl, [logits], damping=0.1), 3)
    np.testing.assert_allclose(damped - plain, 0.1 * np.eye(3), atol=1e-12)


def small_policy(seed: int) -> nn.Sequential:
    rng = np.random.default_rng(seed)
    net = nn.Sequential(nn.Linear(3, 4, rng=rng), nn.Tanh(), nn.Linear(4, 3, rng=rng))
    for p in net.parameters():
        p.data = p.data.astype(np.float64)
    return net


def test_fisher_vector_product_equals_expected_outer_product_of_scores_on_a_network():
    """F = mean over states of sum_a p(a|s) grad log p(a|s) grad log p(a|s)^T, built exactly
    (all actions enumerated) from first derivatives only: a definition independent of the KL."""
    net = small_policy(0)
    params = net.parameters()
    n = sum(p.size for p in params)
    states = np.random.default_rng(1).standard_normal((5, 3))
    explicit = np.zeros((n, n))
    for s in states:
        pi = Categorical(net(Tensor(s[None])))
        for a in range(3):
            score = np.concatenate([g.data.ravel() for g in grad(pi.log_prob([a]).sum(),
                                                                   params)])
            explicit += float(pi.probs.data[0, a]) * np.outer(score, score) / len(states)
    pi = Categorical(net(Tensor(states)))
    fvp = fisher_vector_product(pi.detach().kl(pi).mean(), params)
    np.testing.assert_allclose(explicit_matrix(fvp, n), explicit, rtol=1e-9, atol=1e-12)


def test_fisher_vector_product_leaves_parameters_unchanged_and_is_repeatable():
    net = small_policy(2)
    params = net.parameters()
    before = flat_parameters(params)
    pi = Categorical(net(Tensor(np.ones((2, 3)))))
    fvp = fisher_vector_product(pi.detach().kl(pi).mean(), params, damping=0.01)
    v = np.random.default_rng(3).standard_normal(before.size)
    np.testing.assert_array_equal(fvp(v), fvp(v))
    np.testing.assert_array_equal(flat_parameters(params), before)


def test_natural_step_has_the_requested_quadratic_kl():
    A = np.diag([4.0, 1.0, 0.25])
    g = np.array([1.0, 1.0, 1.0])
    step, expected = natural_direction(g, lambda v: A @ v, max_kl=0.01)
    assert 0.5 * step @ A @ step == pytest.approx(0.01)
    np.testing.assert_allclose(step / np.linalg.norm(step),
                               np.linalg.solve(A, g) / np.linalg.norm(np.linalg.solve(A, g)))
    assert expected == pytest.approx(g @ step)


def test_flat_parameters_round_trip():
    net = small_policy(4)
    flat = flat_parameters(net.parameters())
    set_flat_parameters(net.parameters(), flat * 2)
    np.testing.assert_array_equal(flat_parameters(net.parameters()), flat * 2)
    with pytest.raises(ValueError, match="set_flat_parameters"):
        set_flat_parameters(net.parameters(), flat[:-1])


def test_line_search_accepts_an_improving_step_and_halves_an_overlong_one():
    def objective(x):
        return -float((x[0] - 1.0) ** 2)

    # gradient at 0 is 2; a full step of 4 overshoots to 4 (worse), half to 2 (equal), 1 is best
    result = line_search(objective, np.array([0.0]), np.array([4.0]), expected_improvement=8.0)
    assert result.accepted and result.fraction == 0.25
    np.testing.assert_allclose(result.params, [1.0])


def test_line_search_rejects_a_step_that_worsens_the_surrogate():
    def objective(x):
        return -float(x @ x)

    x = np.array([0.5, -0.5])
    result = line_search(objective, x, full_step=np.array([1.0, -1.0]), expected_improvement=1.0)
    assert not result.accepted and result.fraction == 0.0
    np.testing.assert_array_equal(result.params, x)


def test_line_search_rejects_a_step_whose_kl_is_too_large():
    def objective(x):
        return float(x.sum())

    def kl(x):
        return float(100 * x @ x)

    result = line_search(objective, np.zeros(2), np.ones(2), expected_improvement=2.0, kl=kl,
                         max_kl=0.01)
    assert result.accepted and result.kl <= 0.01
    assert result.fraction == 2.0 ** -(result.tries - 1)
    assert kl(2 * result.fraction * np.ones(2)) > 0.01  # the previous, larger fraction failed
