"""TRPO demo: the policy mirror, advantages, the update's KL, the adaptive rule, learning."""

import numpy as np
import pytest

from minimal import cli
from minimal.autograd import Tensor, no_grad
from minimal.demos import trpo
from minimal.natural import flat_parameters
from minimal.rollouts import Actor, Episode, PolicySpec


@pytest.mark.parametrize("discrete", [True, False])
def test_numpy_actor_of_the_workers_matches_the_learner_policy(discrete):
    spec = PolicySpec(obs_dim=3, act_dim=2, hidden=(8, 8), discrete=discrete)
    policy = trpo.MLPPolicy(spec, np.random.default_rng(0))
    for p in policy.parameters():  # randomise everything, biases and log std included
        p.data = np.random.default_rng(p.size).standard_normal(p.shape)
    obs = np.random.default_rng(1).standard_normal((5, 3))
    actor = Actor(spec, flat_parameters(policy.ordered_parameters()))
    with no_grad():
        dist = policy(Tensor(obs))
    if discrete:
        np.testing.assert_allclose(actor.output(obs), dist.logits.data, rtol=1e-12)
    else:
        np.testing.assert_allclose(actor.output(obs), dist.mean.data, rtol=1e-12)
        np.testing.assert_allclose(actor.std, dist.std.data, rtol=1e-12)


def make_episode(rewards, terminated, obs_dim=1):
    rewards = np.asarray(rewards, float)
    return Episode(0, np.zeros((len(rewards), obs_dim)), np.zeros(len(rewards), int), rewards,
                   terminated, np.zeros(obs_dim))


def test_lambda_one_gives_discounted_returns_minus_the_baseline():
    episode = make_episode([1.0, 2.0, 3.0], terminated=True)
    values = np.array([0.5, 0.2, -0.1])
    adv, targets = trpo.advantages_and_targets([episode], [values], np.array([9.0]), 0.9, 1.0)
    returns = np.array([1 + 0.9 * 2 + 0.81 * 3, 2 + 0.9 * 3, 3.0])
    np.testing.assert_allclose(adv, returns - values)
    np.testing.assert_allclose(targets, returns)  # the final value 9 is ignored: terminated


def test_time_limit_cut_is_bootstrapped_with_the_final_value():
    episode = make_episode([1.0, 1.0], terminated=False)
    values = np.array([0.0, 0.0])
    adv, _ = trpo.advantages_and_targets([episode], [values], np.array([10.0]), 0.5, 1.0)
    np.testing.assert_allclose(adv, [1 + 0.5 * 1 + 0.25 * 10, 1 + 0.5 * 10])


def test_gae_lambda_zero_is_the_one_step_td_error():
    episode = make_episode([1.0, 2.0], terminated=True)
    values = np.array([0.3, 0.7])
    adv, _ = trpo.advantages_and_targets([episode], [values], np.array([0.0]), 0.9, 0.0)
    np.testing.assert_allclose(adv, [1 + 0.9 * 0.7 - 0.3, 2 - 0.7])


def schedule(**kwargs) -> trpo.AdaptiveSchedule:
    return trpo.AdaptiveSchedule(steps_per_update=5000, max_kl=0.01, adapt_steps=True,
                                 adapt_kl=True, **kwargs)


def feed(rule: trpo.AdaptiveSchedule, rewards) -> None:
    for reward in rewards:
        rule.record(reward)


def test_adaptive_rule_waits_for_twenty_iterations_and_starts_with_empty_history():
    rule = schedule()
    assert rule.history == []  # the original's history was never initialised
    feed(rule, [1.0] * 19)
    assert (rule.steps_per_update, rule.max_kl) == (5000, 0.01)


def test_not_improving_means_more_steps_and_smaller_kl():
    rule = schedule()
    feed(rule, [10.0] * 10 + [9.0] * 10)
    assert rule.steps_per_update == 6000 and rule.max_kl == pytest.approx(0.008)


def test_improving_means_fewer_steps_and_larger_kl():
    rule = schedule()
    feed(rule, [10.0] * 10 + [12.0] * 10)
    assert rule.steps_per_update == 4000 and rule.max_kl == pytest.approx(0.012)
    feed(rule, [14.0] * 10)  # checked again every 10 iterations
    assert rule.steps_per_update == 3000 and rule.max_kl == pytest.approx(0.014)


def test_margin_turns_a_small_improvement_into_no_improvement():
    history = [100.0] * 10 + [103.0] * 10  # +3%
    without, with_margin = schedule(), schedule(margin=0.05)
    feed(without, history)
    feed(with_margin, history)
    assert without.steps_per_update == 4000 and without.max_kl == pytest.approx(0.012)
    assert with_margin.steps_per_update == 6000 and with_margin.max_kl == pytest.approx(0.008)
    # the margin is 5% of |previous|, so it works for negative rewards too: -100 -> -96 is +4%
    negative = schedule(margin=0.05)
    feed(negative, [-100.0] * 10 + [-96.0] * 10)
    assert negative.steps_per_update == 6000


def test_adaptive_rule_respects_its_bounds_and_flags():
    rule = schedule()
    feed(rule, [0.0] * 400)  # never improving: steps up to the cap, KL down to the floor
    assert rule.steps_per_update == rule.steps_bounds[1]
    assert rule.max_kl == pytest.approx(rule.kl_bounds[0])
    only_kl = trpo.AdaptiveSchedule(5000, 0.01, adapt_steps=False, adapt_kl=True)
    feed(only_kl, [0.0] * 20)
    assert only_kl.steps_per_update == 5000 and only_kl.max_kl == pytest.approx(0.008)


def test_trpo_update_improves_the_surrogate_within_the_kl_limit():
    rng = np.random.default_rng(0)
    spec = PolicySpec(obs_dim=4, act_dim=2, hidden=(16,), discrete=True)
    policy = trpo.MLPPolicy(spec, rng)
    obs = rng.standard_normal((400, 4))
    actions = rng.integers(0, 2, 400)
    advantages = np.where(actions == (obs[:, 0] > 0), 1.0, -1.0)  # action 1 good when x0 > 0
    for _ in range(5):
        info = trpo.trpo_update(policy, obs, actions, advantages, max_kl=0.01, damping=0.1,
                                cg_iters=10)
        assert info.accepted and info.improvement > 0
        assert 0 < info.kl <= 1.5 * 0.01
    with no_grad():
        probs = policy(Tensor(obs)).probs.data
    agreement = np.mean((probs[:, 1] > 0.5) == (obs[:, 0] > 0))
    assert agreement > 0.9


@pytest.fixture(scope="module")
def cartpole_run():
    config = cli.make_config(trpo.Config, None, workers=2, seed=0)
    records, _ = trpo.train(config, "CartPole-v1", 150_000, stop_at_return=450.0)
    return records


def test_trpo_reaches_450_on_cartpole_within_150k_steps(cartpole_run):
    assert cartpole_run["mean_return"][-1] >= 450.0
    assert cartpole_run["steps"][-1] <= 150_000


def test_kl_after_each_accepted_update_stays_within_one_and_a_half_max_kl(cartpole_run):
    accepted = cartpole_run["accepted"] > 0
    assert accepted.mean() > 0.8
    assert np.all(cartpole_run["kl"][accepted] <= 1.5 * cartpole_run["max_kl"][accepted])
    assert np.all(cartpole_run["kl"][~accepted] == 0)


def test_short_reacher_run_with_workers():
    pytest.importorskip("mujoco")
    config = cli.make_config(trpo.Config, None, workers=2, steps_per_update=1000, seed=0)
    records, trained = trpo.train(config, "Reacher-v5", 3000)
    assert len(records["steps"]) == 3 and records["steps"][-1] == 3000  # 50-step episodes
    assert np.all(np.isfinite(records["mean_return"])) and np.all(records["mean_return"] < 0)
    accepted = records["accepted"] > 0
    assert np.all(records["kl"][accepted] <= 1.5 * config.max_kl)
    assert trained.shipped.shape == (trpo.policy_spec_for("Reacher-v5", (64, 64), "relu")
                                     .num_parameters(),)


def test_run_writes_every_figure(tmp_path):
    config = cli.make_config(
        trpo.Config, None, env_ids=("CartPole-v1",), total_steps=2000, steps_per_update=1000,
        speed_workers=(1, 2), speed_iterations=1, compare_steps=2000, out_dir=str(tmp_path))
    metrics = trpo.run(config)
    for figure in ("reward_CartPole-v1.png", "workers_speed.png", "adaptive.png"):
        assert (tmp_path / figure).stat().st_size > 10_000
    assert 0 < metrics["collect_share"] < 1 and metrics["collect_speedup_2_workers"] > 0
    assert metrics["kl_max_over_limit"] <= 1.5


def test_quick_preset_reaches_its_targets(tmp_path):
    config = cli.make_config(trpo.Config, trpo.QUICK, out_dir=str(tmp_path))
    metrics = trpo.run(config)
    for name, (op, bound) in trpo.TARGETS.items():
        assert metrics[name] <= bound if op == "<=" else metrics[name] >= bound, (name,
                                                                                  metrics[name])


def test_gaussian_trpo_update_kl_is_measured_against_a_frozen_old_policy():
    rng = np.random.default_rng(2)
    spec = PolicySpec(obs_dim=3, act_dim=2, hidden=(16,), discrete=False)
    policy = trpo.MLPPolicy(spec, rng)
    obs = rng.standard_normal((300, 3))
    actions = rng.standard_normal((300, 2))
    advantages = actions[:, 0] * obs[:, 1]  # reward actions that follow obs[:, 1]
    for _ in range(5):
        before = policy.log_std.data.copy()
        with no_grad():
            old = policy(Tensor(obs)).detach()
        info = trpo.trpo_update(policy, obs, actions, advantages, max_kl=0.01, damping=0.1,
                                cg_iters=10)
        with no_grad():
            kl = float(old.kl(policy(Tensor(obs))).mean().data)
        assert info.accepted and info.improvement > 0
        assert info.kl == pytest.approx(kl) and 0 < kl <= 0.015
        assert not np.array_equal(before, policy.log_std.data)
