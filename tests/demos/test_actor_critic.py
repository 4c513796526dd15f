"""Actor-critic demo: returns, TD errors and losses by hand, the 475 criterion, and learning."""

import numpy as np

from minimal.autograd import Tensor
from minimal.demos import actor_critic as ac
from minimal.gradcheck import check_grads


def test_discounted_returns_by_hand():
    np.testing.assert_allclose(ac.discounted_returns(np.array([1.0, 2.0, 4.0]), 0.5),
                               [1 + 0.5 * 2 + 0.25 * 4, 2 + 0.5 * 4, 4])


def test_td_error_by_hand():
    rewards = np.array([1.0, 1.0, 1.0])
    values = np.array([5.0, 4.0, 3.0])
    next_values = np.array([4.0, 3.0, 10.0])
    # the last step fell: nothing after it; a time-limit cut would still bootstrap
    fell = np.array([0.0, 0.0, 1.0])
    np.testing.assert_allclose(ac.td_errors(rewards, values, next_values, fell, 0.9),
                               [1 + 0.9 * 4 - 5, 1 + 0.9 * 3 - 4, 1 - 3], rtol=1e-6)
    cut = np.zeros(3)
    np.testing.assert_allclose(ac.td_errors(rewards, values, next_values, cut, 0.9)[2],
                               1 + 0.9 * 10 - 3, rtol=1e-6)


def test_policy_loss_value_and_gradient():
    rng = np.random.default_rng(0)
    policy = ac.mlp([4, 6, 2], rng)
    states = rng.standard_normal((5, 4)).astype(np.float32)
    actions = np.array([0, 1, 1, 0, 1])
    weights = rng.standard_normal(5)
    logits = ac.forward_numpy([p.data for p in policy.parameters()], states)
    log_pi = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    expected = -np.mean(log_pi[np.arange(5), actions] * weights)
    np.testing.assert_allclose(ac.policy_loss(policy, states, actions, weights).item(), expected,
                               rtol=1e-5)

    # the gradient in the logits: by finite differences, and in closed form
    check_grads(lambda z: ac.loss_from_logits(z, actions, weights), [logits.astype(np.float64)],
                order=2)
    z = Tensor(logits.astype(np.float64), requires_grad=True)
    ac.loss_from_logits(z, actions, weights).backward()
    pi = np.exp(log_pi)
    np.testing.assert_allclose(z.grad, -(np.eye(2)[actions] - pi) * weights[:, None] / 5,
                               rtol=1e-5, atol=1e-7)


def test_episodes_to_reach_the_target_average():
    returns = np.concatenate([np.full(100, 100.0), np.full(150, 500.0)])
    # the last-100 average first reaches 475 when at most 6 of the 100 are the 100s:
    # (6 * 100 + 94 * 500) / 100 = 476 -> after episode 194
    assert ac.episodes_to_reach(returns, 475) == 194
    assert np.isnan(ac.episodes_to_reach(np.full(99, 500.0), 475))  # needs 100 episodes
    np.testing.assert_allclose(ac.trailing_average(np.array([1.0, 3.0, 5.0]), 2), [1, 2, 4])


def test_actor_critic_learns_with_a_fixed_seed():
    config = ac.Config(max_episodes=250)  # seed 0: 20-episode average first 100 at episode 177
    returns = ac.train(config, "actor_critic", seed=0)
    assert ac.trailing_average(returns, 20).max() >= 100  # random play lasts about 22 steps


def test_reinforce_with_baseline_learns_with_a_fixed_seed():
    config = ac.Config(max_episodes=150)
    returns = ac.train(config, "reinforce_baseline", seed=0)
    assert ac.trailing_average(returns, 20).max() >= 100
