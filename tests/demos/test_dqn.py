"""DQN demo: the target and the loss by hand, the NumPy forward pass, and learning CartPole."""

import numpy as np
import pytest

from minimal.autograd import Tensor
from minimal.demos import dqn


def test_dqn_target_by_hand():
    rewards = np.array([1.0, 1.0, 0.5])
    next_q = np.array([[2.0, 3.0], [4.0, -1.0], [10.0, 20.0]])
    terminated = np.array([0.0, 0.0, 1.0])
    # y = r + 0.9 * max_a' Q(s', a'), and just r after a terminal step
    np.testing.assert_allclose(dqn.dqn_targets(rewards, next_q, terminated, 0.9),
                               [1 + 0.9 * 3, 1 + 0.9 * 4, 0.5])


def test_numpy_forward_matches_the_network():
    rng = np.random.default_rng(0)
    network = dqn.make_q_network(8, rng)
    obs = rng.standard_normal((5, 4)).astype(np.float32)
    np.testing.assert_allclose(dqn.q_values([p.data for p in network.parameters()], obs),
                               network(Tensor(obs)).data, rtol=1e-5, atol=1e-6)


def test_td_loss_by_hand():
    rng = np.random.default_rng(1)
    network = dqn.make_q_network(8, rng)
    obs = rng.standard_normal((3, 4)).astype(np.float32)
    actions = np.array([0, 1, 1])
    targets = np.array([0.5, -1.0, 2.0], dtype=np.float32)
    q = network(Tensor(obs)).data
    loss = dqn.td_loss(network, obs, actions, targets, loss="mse")
    np.testing.assert_allclose(loss.item(), np.mean((q[[0, 1, 2], actions] - targets) ** 2),
                               rtol=1e-5)
    # the last layer's bias gets 2/3 (Q(s,a) - y) summed over the rows that took each action
    loss.backward()
    error = q[[0, 1, 2], actions] - targets
    expected_bias_grad = [2 / 3 * error[0], 2 / 3 * (error[1] + error[2])]
    np.testing.assert_allclose(network[4].bias.grad, expected_bias_grad, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="unknown loss 'l2'"):  # not silently Huber
        dqn.td_loss(network, obs, actions, targets, loss="l2")


def test_huber_by_hand():
    error = Tensor(np.array([-3.0, -1.0, -0.5, 0.0, 0.25, 2.0]), requires_grad=True)
    loss = dqn.huber(error)
    np.testing.assert_allclose(loss.data, [2.5, 0.5, 0.125, 0.0, 0.03125, 1.5])
    loss.sum().backward()
    np.testing.assert_allclose(error.grad, [-1.0, -1.0, -0.5, 0.0, 0.25, 1.0])


def test_epsilon_decays_linearly_then_stays():
    config = dqn.Config(epsilon_decay_steps=100)
    assert dqn.epsilon_at(0, config) == 1.0
    np.testing.assert_allclose(dqn.epsilon_at(50, config), 0.525)
    np.testing.assert_allclose([dqn.epsilon_at(100, config), dqn.epsilon_at(10_000, config)],
                               0.05)


def test_returns_on_grid_is_a_trailing_mean():
    ends, returns = np.array([10, 30, 60]), np.array([10.0, 20.0, 30.0])
    got = dqn.returns_on_grid(ends, returns, np.array([5, 10, 40, 100]), window=2)
    np.testing.assert_allclose(got, [np.nan, 10.0, 15.0, 25.0])


def test_dqn_learns_cartpole_with_a_fixed_seed():
    config = dqn.Config(**{**dqn.QUICK, "eval_episodes": 3})
    result = dqn.train(config, "dqn", seed=0)
    assert result["final"] >= 150  # a random policy lasts about 22 steps
    assert result["returns"][-10:].mean() >= 100
