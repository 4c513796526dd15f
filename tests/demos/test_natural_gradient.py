"""The natural-gradient demo: closed-form Fisher steps, the metric, and its quick preset."""

import math

import numpy as np
import pytest

from minimal.app import cli
from minimal.demos import natural_gradient as ng


def test_natural_direction_of_a_gaussian_is_sigma_squared_g_mean_and_half_g_log_std():
    theta = np.array([0.3, math.log(0.5)])
    g = np.array([1.2, -0.8])
    np.testing.assert_allclose(ng.natural_step_direction(theta, g), [0.25 * 1.2, -0.8 / 2],
                               rtol=1e-10)


def test_metric_distance_is_the_quadratic_form_and_the_original_loop_is_not():
    rng = np.random.default_rng(1)
    root = rng.standard_normal((3, 3))
    fisher = root @ root.T
    delta = rng.standard_normal(3)
    assert ng.metric_distance(delta, fisher) == pytest.approx(0.5 * delta @ fisher @ delta)
    buggy = ng.buggy_metric_distance(delta, fisher)
    assert buggy == pytest.approx(0.5 * np.sum(delta ** 2 * fisher.sum(axis=1)))
    assert buggy != pytest.approx(ng.metric_distance(delta, fisher), rel=1e-3)


def test_softmax_fisher_built_by_double_backprop_is_diag_p_minus_ppt():
    logits = np.array([0.2, -0.4, 1.0])
    p = np.exp(logits) / np.exp(logits).sum()
    np.testing.assert_allclose(ng.softmax_fisher(logits), np.diag(p) - np.outer(p, p),
                               atol=1e-12)


def test_quick_preset_reaches_its_targets_and_writes_figures(tmp_path):
    config = cli.make_config(ng.Config, ng.QUICK, out_dir=str(tmp_path))
    metrics = ng.run(config)
    for name, (op, bound) in ng.TARGETS.items():
        assert metrics[name] <= bound if op == "<=" else metrics[name] >= bound, (name,
                                                                                  metrics[name])
    assert metrics["kl_narrow_shift"] == pytest.approx(50.0)
    assert metrics["kl_wide_shift"] == pytest.approx(0.125)
    assert metrics["buggy_metric_relative_error"] > 0.5
    for figure in ("gaussians_mean_shift.png", "plain_vs_natural.png", "metric_and_cg.png"):
        assert (tmp_path / figure).stat().st_size > 10_000


def test_random_parts_repeat_with_the_same_seed():
    config = cli.make_config(ng.Config, ng.QUICK, moves=20)
    first = ng.metric_check(config, np.random.default_rng(3))
    second = ng.metric_check(config, np.random.default_rng(3))
    for key in first:
        np.testing.assert_array_equal(first[key], second[key])
