"""Categorical and DiagGaussian against closed forms and Monte-Carlo estimates."""

import math

import numpy as np
import pytest

from minimal.autograd import Tensor, grad
from minimal.distributions import Categorical, DiagGaussian
from minimal.gradcheck import check_grads

SAMPLES = 200_000


def within_standard_errors(samples: np.ndarray, expected: float, how_many: float = 4.0) -> None:
    """The sample mean is within `how_many` standard errors of the expected value."""
    error = samples.std() / math.sqrt(len(samples))
    assert abs(samples.mean() - expected) <= how_many * error + 1e-12, (
        samples.mean(), expected, error)


def test_categorical_sample_frequencies_match_probabilities():
    logits = np.array([[0.3, -1.0, 2.0, 0.0]])
    dist = Categorical(Tensor(np.repeat(logits, SAMPLES, axis=0), dtype=np.float64))
    draws = dist.sample(np.random.default_rng(0))
    probs = np.exp(logits[0]) / np.exp(logits[0]).sum()
    for k in range(4):
        within_standard_errors((draws == k).astype(float), probs[k])


def test_categorical_log_prob_entropy_kl_closed_forms():
    rng = np.random.default_rng(1)
    logits_p, logits_q = rng.standard_normal((2, 5, 3))
    p = Categorical(Tensor(logits_p, dtype=np.float64))
    q = Categorical(Tensor(logits_q, dtype=np.float64))
    probs_p = np.exp(logits_p) / np.exp(logits_p).sum(-1, keepdims=True)
    probs_q = np.exp(logits_q) / np.exp(logits_q).sum(-1, keepdims=True)
    actions = np.array([0, 2, 1, 1, 0])
    np.testing.assert_allclose(p.log_prob(actions).data, np.log(probs_p[np.arange(5), actions]))
    np.testing.assert_allclose(p.entropy().data, -(probs_p * np.log(probs_p)).sum(-1))
    np.testing.assert_allclose(p.kl(q).data, (probs_p * np.log(probs_p / probs_q)).sum(-1))
    np.testing.assert_allclose(p.kl(p).data, 0, atol=1e-15)


def test_categorical_entropy_and_kl_by_monte_carlo():
    logits_p, logits_q = np.array([1.0, 0.0, -0.5]), np.array([0.0, 0.5, 0.2])
    p = Categorical(Tensor(np.tile(logits_p, (SAMPLES, 1)), dtype=np.float64))
    q = Categorical(Tensor(np.tile(logits_q, (SAMPLES, 1)), dtype=np.float64))
    draws = p.sample(np.random.default_rng(2))
    log_p, log_q = p.log_prob(draws).data, q.log_prob(draws).data
    within_standard_errors(-log_p, p.entropy().data[0])
    within_standard_errors(log_p - log_q, p.kl(q).data[0])


def test_gaussian_sample_moments_and_log_prob_closed_form():
    mean, log_std = np.array([0.5, -2.0]), np.array([-0.7, 0.4])
    dist = DiagGaussian(Tensor(np.tile(mean, (SAMPLES, 1)), dtype=np.float64),
                        Tensor(log_std, dtype=np.float64))  # log std broadcast over the batch
    draws = dist.sample(np.random.default_rng(3))
    std = np.exp(log_std)
    for i in range(2):
        within_standard_errors(draws[:, i], mean[i])
        within_standard_errors((draws[:, i] - mean[i]) ** 2, std[i] ** 2)
    x = draws[:3]
    expected = (-0.5 * ((x - mean) / std) ** 2 - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
    np.testing.assert_allclose(dist.log_prob(draws).data[:3], expected)


def test_gaussian_entropy_and_kl_closed_forms_and_monte_carlo():
    m_p, s_p, m_q, s_q = np.array([0.0, 1.0]), np.array([0.5, 2.0]), np.array([1.0, 0.0]), \
        np.array([1.5, 1.0])
    p = DiagGaussian(Tensor(np.tile(m_p, (SAMPLES, 1)), dtype=np.float64),
                     Tensor(np.log(s_p), dtype=np.float64))
    q = DiagGaussian(Tensor(np.tile(m_q, (SAMPLES, 1)), dtype=np.float64),
                     Tensor(np.log(s_q), dtype=np.float64))
    entropy = (np.log(s_p) + 0.5 * (1 + math.log(2 * math.pi))).sum()
    kl = (np.log(s_q / s_p) + (s_p ** 2 + (m_p - m_q) ** 2) / (2 * s_q ** 2) - 0.5).sum()
    np.testing.assert_allclose(p.entropy().data[0], entropy)
    np.testing.assert_allclose(p.kl(q).data[0], kl)
    draws = p.sample(np.random.default_rng(4))
    log_p, log_q = p.log_prob(draws).data, q.log_prob(draws).data
    within_standard_errors(-log_p, entropy)
    within_standard_errors(log_p - log_q, kl)


def test_gaussian_kl_of_equal_width_mean_shift_is_shift_squared_over_two_variances():
    # the natural-gradient post's picture: the same shift means more for a narrow Gaussian
    for std in (0.1, 2.0):
        p = DiagGaussian(Tensor([[0.0]], dtype=np.float64), Tensor([math.log(std)],
                                                                   dtype=np.float64))
        q = DiagGaussian(Tensor([[1.0]], dtype=np.float64), Tensor([math.log(std)],
                                                                   dtype=np.float64))
        assert p.kl(q).data[0] == pytest.approx(1.0 / (2 * std ** 2))


def test_sampling_uses_only_the_given_generator():
    dist = DiagGaussian(Tensor([[0.0, 1.0]]), Tensor([0.0, 0.0]))
    a = dist.sample(np.random.default_rng(7))
    b = dist.sample(np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)
    logits = Categorical(Tensor([[0.0, 0.0, 0.0]] * 50))
    np.testing.assert_array_equal(logits.sample(np.random.default_rng(7)),
                                  logits.sample(np.random.default_rng(7)))


def test_log_prob_entropy_kl_have_correct_first_and_second_derivatives():
    actions = np.array([2, 0])
    check_grads(lambda a, b: Categorical(a).kl(Categorical(b)) + Categorical(a).log_prob(
        actions) + Categorical(b).entropy(), [np.random.default_rng(5).standard_normal((2, 3)),
                                              np.random.default_rng(6).standard_normal((2, 3))])
    x = np.random.default_rng(8).standard_normal((2, 2))
    check_grads(lambda m, s, m2: DiagGaussian(m, s).kl(DiagGaussian(m2, s * 0.5))
                + DiagGaussian(m, s).log_prob(Tensor(x)) + DiagGaussian(m2, s).entropy(),
                [np.random.default_rng(9).standard_normal((2, 2)), np.array([0.1, -0.3]),
                 np.random.default_rng(10).standard_normal((2, 2))])


def test_self_kl_with_first_argument_fixed_is_zero_with_zero_gradient():
    mean = Tensor(np.array([[0.3, -0.2]]), requires_grad=True)
    log_std = Tensor(np.array([0.1, -0.4]), requires_grad=True)
    pi = DiagGaussian(mean, log_std)
    self_kl = pi.detach().kl(pi).sum()
    assert self_kl.data == pytest.approx(0.0, abs=1e-15)
    for g in grad(self_kl, [mean, log_std]):
        np.testing.assert_allclose(g.data, 0, atol=1e-15)


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match="DiagGaussian"):
        DiagGaussian(Tensor(np.zeros((3, 2))), Tensor(np.zeros(3)))
    with pytest.raises(ValueError, match=r"Categorical\.log_prob"):
        Categorical(Tensor(np.zeros((3, 2)))).log_prob(np.zeros(4, int))
    for bad in ([0, -1], [2, 0], [0.5, 1.0]):  # wrapped, out of range, truncated by indexing
        with pytest.raises(ValueError, match=r"whole numbers in 0\.\.1"):
            Categorical(Tensor(np.zeros((2, 2)))).log_prob(np.array(bad))


def test_detach_is_a_frozen_copy_even_when_parameter_arrays_change_in_place():
    log_std = Tensor(np.array([0.0, 0.5]), requires_grad=True)
    pi = DiagGaussian(Tensor(np.zeros((1, 2))), log_std)
    frozen = pi.detach()
    log_std.data += 1.0  # an optimizer step in place
    np.testing.assert_array_equal(frozen.log_std.data, [0.0, 0.5])
    assert float(frozen.kl(frozen).data[0]) == 0.0
