"""Dynamic programming against Sutton & Barto's gridworld (example 4.1, figure 4.1)."""

import gymnasium as gym
import numpy as np
import pytest

from minimal.app import cli
from minimal.demos import dynamic_programming as dp
from minimal.rl import envs

GRID = envs.GridWorld()
RANDOM = dp.random_policy(GRID.P)
STEPS_TO_CORNER = np.array([[0, 1, 2, 3], [1, 2, 3, 2], [2, 3, 2, 1], [3, 2, 1, 0]])


def synchronous_values(sweeps: int) -> np.ndarray:
    values = np.zeros(16)
    for _ in range(sweeps):
        values = dp.evaluation_sweep(GRID.P, RANDOM, values, gamma=1.0)
    return values.reshape(4, 4)


def test_first_sweeps_match_figure_4_1():
    np.testing.assert_array_equal(synchronous_values(0), np.zeros((4, 4)))
    expected_1 = -np.ones((4, 4))
    expected_1[0, 0] = expected_1[3, 3] = 0
    np.testing.assert_array_equal(synchronous_values(1), expected_1)
    # k = 2: next to a corner one of four moves ends the episode: -1 - 3/4 * 1 = -1.75.
    a, b = -1.75, -2.0
    np.testing.assert_allclose(synchronous_values(2), [[0, a, b, b], [a, b, b, b],
                                                       [b, b, b, a], [b, b, a, 0]])
    # k = 3, exactly (the book prints these rounded: -2.4, -2.9, -3.0).
    a, b, c, d = -2.4375, -2.9375, -3.0, -2.875
    np.testing.assert_allclose(synchronous_values(3), [[0, a, b, c], [a, d, c, b],
                                                       [b, c, d, a], [c, b, a, 0]])
    book_10 = [[0, -6.1, -8.4, -9.0], [-6.1, -7.7, -8.4, -8.4], [-8.4, -8.4, -7.7, -6.1],
               [-9.0, -8.4, -6.1, 0]]
    np.testing.assert_allclose(synchronous_values(10), book_10, atol=0.05)


def test_random_policy_values_converge_to_exact_solution():
    exact = dp.exact_policy_values(GRID.P, RANDOM, 1.0).reshape(4, 4)
    book = [[0, -14, -20, -22], [-14, -18, -20, -20], [-20, -20, -18, -14], [-22, -20, -14, 0]]
    np.testing.assert_allclose(exact, book, atol=1e-9)
    sync, _, sync_changes = dp.evaluate_policy(GRID.P, RANDOM, 1.0, 1e-8)
    in_place, _, in_place_changes = dp.evaluate_policy(GRID.P, RANDOM, 1.0, 1e-8, in_place=True)
    np.testing.assert_allclose(sync.reshape(4, 4), book, atol=1e-6)
    np.testing.assert_allclose(in_place.reshape(4, 4), book, atol=1e-6)
    # Using fresh values within the sweep converges in clearly fewer sweeps.
    assert len(in_place_changes) < 0.8 * len(sync_changes)


def test_greedy_after_three_sweeps_is_already_optimal():
    greedy = dp.greedy_policy(GRID.P, synchronous_values(3).ravel(), 1.0)
    assert_optimal(greedy)
    # After one sweep it is not: most states still tie between all four moves.
    assert (dp.greedy_policy(GRID.P, synchronous_values(1).ravel(), 1.0) > 0).sum() > 40


def assert_optimal(policy: np.ndarray) -> None:
    """Every action the policy may take moves one step closer to a terminal corner."""
    for state in range(16):
        if GRID.is_terminal(state):
            continue
        for action in np.flatnonzero(policy[state] > 0):
            row, col = GRID.cell(GRID.moved(state, action))
            assert STEPS_TO_CORNER[row, col] == STEPS_TO_CORNER.flat[state] - 1


def test_policy_iteration_and_value_iteration_find_the_optimum():
    policy, values, improvements, _ = dp.policy_iteration(GRID.P, 1.0, 1e-10)
    assert_optimal(policy)
    assert np.all(policy.sum(axis=1) == 1) and set(np.unique(policy)) == {0.0, 1.0}
    np.testing.assert_allclose(values.reshape(4, 4), -STEPS_TO_CORNER, atol=1e-9)
    assert improvements == 1  # greedy w.r.t. the random policy's values is already optimal
    v_star, changes = dp.value_iteration(GRID.P, 1.0, 1e-10)
    np.testing.assert_array_equal(v_star.reshape(4, 4), -STEPS_TO_CORNER)
    assert len(changes) == 4  # 3 sweeps to reach the far cells, 1 to see nothing change


def test_discounting_shrinks_the_values():
    values, _, _ = dp.evaluate_policy(GRID.P, RANDOM, 0.9, 1e-10)
    exact = dp.exact_policy_values(GRID.P, RANDOM, 0.9)
    np.testing.assert_allclose(values, exact, atol=1e-8)
    assert np.all(values[1:-1] > -10) and np.all(values[1:-1] < -1)  # -1/(1-0.9) bounds it


def test_frozen_lake_from_gymnasium_table():
    P = gym.make("FrozenLake-v1").unwrapped.P
    policy, values, _, _ = dp.policy_iteration(P, 1.0, 1e-12)
    v_star, _ = dp.value_iteration(P, 1.0, 1e-12)
    np.testing.assert_allclose(values, v_star, atol=1e-6)
    assert v_star[0] == pytest.approx(14 / 17, abs=1e-6)  # the known optimum of the 4x4 lake
    assert policy[0].argmax() == 0  # famously: at the start, push left, into the wall


def test_run_reaches_targets(tmp_path):
    config = cli.make_config(dp.Config, dp.QUICK, lake_episodes=400, out_dir=str(tmp_path))
    metrics = dp.run(config)
    assert metrics["v_pi_max_error"] < 1e-6
    assert metrics["v_star_max_error"] == 0
    assert metrics["lake_policies_agree"] == 1.0
    assert abs(metrics["lake_success_rate"] - 14 / 17) < 4 * np.sqrt(0.15 / 400)
    for name, (op, bound) in dp.TARGETS.items():
        assert metrics[name] >= bound if op == ">=" else metrics[name] <= bound, name
    assert (tmp_path / "gridworld_policy_evaluation.png").stat().st_size > 10_000
    assert (tmp_path / "frozenlake.png").exists()


def test_playing_the_lake_is_seeded():
    env = gym.make("FrozenLake-v1")
    policy, _, _, _ = dp.policy_iteration(env.unwrapped.P, 1.0, 1e-6)
    rates = [dp.success_rate(env, policy, 200, seed) for seed in (3, 3, 4)]
    assert rates[0] == rates[1] != rates[2]
