"""Model-free prediction and control against the book's random walks, cliff and two doors."""

import numpy as np
import pytest

from minimal.app import cli
from minimal.demos import model_free as mf
from minimal.rl import envs
from minimal.rl.tabular import greedy_path


def walk_episodes(n_states: int, count: int, seed: int) -> tuple[envs.RandomWalk, list]:
    env = envs.RandomWalk(n_states)
    env.reset(seed=seed)
    return env, [mf.play_random_walk(env) for _ in range(count)]


def learn(update, episodes, n_values: int, initial: float = 0.0, **settings) -> np.ndarray:
    values = np.full(n_values, initial)
    values[[0, -1]] = 0.0
    for episode in episodes:
        update(values, episode, **settings)
    return values


@pytest.mark.parametrize("update", [mf.td0_update, mf.monte_carlo_update])
def test_five_state_walk_converges_to_true_values(update):
    env, episodes = walk_episodes(5, 3000, seed=0)
    values = learn(update, episodes, env.n_states, initial=0.5, alpha=0.01)
    # True values 1/6 .. 5/6; constant alpha 0.01 leaves a small noise floor.
    np.testing.assert_allclose(values[1:-1], [1 / 6, 2 / 6, 3 / 6, 4 / 6, 5 / 6], atol=0.07)


@pytest.mark.parametrize("update, settings", [(mf.n_step_td_update, {"n": 4}),
                                              (mf.td_lambda_update, {"lam": 0.8})])
def test_nineteen_state_walk_converges_to_true_values(update, settings):
    env, episodes = walk_episodes(19, 300, seed=0)
    values = learn(update, episodes, env.n_states, alpha=0.02, **settings)
    assert mf.rms_error(values, env.true_values()) < 0.05  # starting from 0: RMS 0.55
    np.testing.assert_allclose(values[1:-1], np.linspace(-0.9, 0.9, 19), atol=0.1)


def test_special_cases_are_td0():
    env, episodes = walk_episodes(19, 5, seed=1)
    td0 = learn(mf.td0_update, episodes, env.n_states, alpha=0.3)
    np.testing.assert_allclose(learn(mf.n_step_td_update, episodes, env.n_states, alpha=0.3, n=1),
                               td0, atol=1e-12)
    np.testing.assert_allclose(learn(mf.td_lambda_update, episodes, env.n_states, alpha=0.3,
                                     lam=0.0), td0, atol=1e-12)


def test_first_visit_mc_uses_the_return_from_the_first_visit():
    values = np.zeros(7)
    # C, D, C, B, A then out on the left (reward 0) and a made-up reward on the way.
    episode = ([3, 4, 3, 2, 1, 0], [0.0, 1.0, 0.0, 0.0, 0.0])
    mf.monte_carlo_update(values, episode, alpha=1.0)
    assert values[3] == 1.0  # first visit of C was followed by the reward 1; the second wasn't
    assert values[4] == 1.0 and values[2] == 0.0 and values[1] == 0.0


def test_td_beats_mc_on_the_five_state_walk():
    config = cli.make_config(mf.Config, walk_runs=20)
    result = mf.td_versus_mc(config)
    td = result["curves"]["TD", 0.05][-1]
    assert td < 0.08
    assert all(td < curve[-1] for (method, _), curve in result["curves"].items() if method == "MC")


def test_intermediate_n_is_best_on_the_nineteen_state_walk():
    config = cli.make_config(mf.Config, long_walk_runs=10, alpha_points=6)
    _, errors = mf.long_walk_sweep(config, mf.n_step_td_update, "n", config.n_steps)
    best = errors.min(axis=1)
    assert config.n_steps[int(best.argmin())] in (2, 4, 8)
    assert best.min() < 0.32
    assert best[0] > best.min() + 0.04 and best[-1] > best.min() + 0.1  # n = 1 and n = 512


def test_cliff_qlearning_walks_the_edge_sarsa_keeps_away():
    env = envs.CliffWalk()
    epsilons = np.full(500, 0.1)
    for seed in (0, 1):
        rng = np.random.default_rng(seed)
        q_sarsa, sarsa_rewards, _ = mf.sarsa(env, 500, 0.5, epsilons, rng, seed)
        q_qlearn, qlearn_rewards, _ = mf.q_learning(env, 500, 0.5, epsilons, rng, seed)
        path, reached = greedy_path(env.P, q_qlearn, env.start)
        assert reached and mf.is_edge_path(env, path) and len(path) - 1 == 13
        path, reached = greedy_path(env.P, q_sarsa, env.start)
        assert reached and mf.edge_cells(env, path) <= 2 and len(path) - 1 >= 15
        # Online, Q-learning pays for exploring next to the cliff.
        assert sarsa_rewards[-200:].mean() > qlearn_rewards[-200:].mean() + 10


def test_sarsa_lambda_learns_the_windy_gridworld_faster():
    env = envs.WindyGridworld()
    epsilons = np.full(50, 0.1)
    rng = np.random.default_rng(0)
    _, _, plain = mf.sarsa(env, 50, 0.5, epsilons, rng, seed=0)
    _, _, traced = mf.sarsa_lambda(env, 50, 0.5, epsilons, 0.8, rng, seed=0)
    assert traced.sum() < 0.8 * plain.sum()


def test_two_doors_need_exploration():
    config = cli.make_config(mf.Config, door_runs=100, door_tries=600)
    result = mf.door_experiment(config, np.random.default_rng(0))
    greedy, explorer = result.values()
    assert greedy["best_rate"] < 0.3
    assert explorer["best_rate"] > 0.85
    assert explorer["reward"][-100:].mean() > 3 * greedy["reward"][-100:].mean()


TINY = {"walk_runs": 3, "long_walk_runs": 1, "alpha_points": 3, "n_steps": (1, 4),
        "lambdas": (0.0, 0.8), "cliff_runs": 1, "cliff_episodes": 100, "windy_runs": 1,
        "windy_episodes": 30, "door_runs": 10, "door_tries": 100}


def test_run_is_deterministic_and_writes_figures(tmp_path, monkeypatch):
    first = mf.run(cli.make_config(mf.Config, TINY, out_dir=str(tmp_path)))
    assert set(mf.TARGETS) <= set(first)
    for name in ("random_walk_td_vs_mc", "random_walk_nstep", "random_walk_td_lambda",
                 "cliff_walk", "windy_gridworld", "two_doors"):
        assert (tmp_path / f"{name}.png").stat().st_size > 10_000
    # The numbers again, without drawing (drawing is most of the time).
    for name in dir(mf):
        if name.startswith("figure_"):
            monkeypatch.setattr(mf, name, lambda *args, **kwargs: None)
    second = mf.run(cli.make_config(mf.Config, TINY, out_dir=str(tmp_path)))
    other = mf.run(cli.make_config(mf.Config, TINY, seed=1, out_dir=str(tmp_path)))
    assert first == second
    assert first != other
