"""Model-based RL: the count model, Dyna-Q's planning speed-up, search, Dyna-2."""

import numpy as np

from minimal.app import cli
from minimal.demos import model_based as mb
from minimal.rl import envs

MAZE = envs.DynaMaze()
START = MAZE.state_of(2, 0)


def config(**overrides) -> mb.Config:
    return cli.make_config(mb.Config, **overrides)


def test_count_model_estimates_probabilities_and_rewards():
    env = envs.TwoDoors()
    env.reset(seed=0)
    model = mb.TableModel(env.n_states, env.n_actions)
    tries = 5000
    for _ in range(tries):
        env.reset()
        next_state, reward, terminated, _, _ = env.step(1)
        model.update(0, 1, reward, next_state, terminated)
    (prob, next_state, mean_reward, done), = model.transition_table()[0][1]
    assert next_state == 1 and done and prob == 1.0
    # The mean reward is 100 * (jackpot share): 10, within 4 standard errors.
    assert abs(mean_reward - 10.0) < 4 * 100 * np.sqrt(0.09 / tries)
    # Pairs never tried: the model assumes nothing happens.
    assert not model.known(0, 0)
    assert model.transition_table()[0][0] == [(1.0, 0, 0.0, False)]
    assert model.sample(0, 0, np.random.default_rng(0)) == (0.0, 0, False)


def test_count_model_samples_in_proportion_to_counts():
    model = mb.TableModel(3, 1)
    for next_state, times in ((1, 300), (2, 100)):
        for _ in range(times):
            model.update(0, 0, float(next_state), next_state, False)
    rng = np.random.default_rng(0)
    draws = [model.sample(0, 0, rng) for _ in range(4000)]
    share = np.mean([s == 2 for _, s, _ in draws])
    assert abs(share - 0.25) < 4 * np.sqrt(0.25 * 0.75 / 4000)
    assert all(reward == s for reward, s, _ in draws)  # each outcome keeps its own reward
    assert model.seen_pairs == [(0, 0)]


def test_learned_frozen_lake_model_improves_with_experience():
    result = mb.learned_model_experiment(config(model_steps=(500, 16000), model_runs=1),
                                         np.random.default_rng(0))
    small, large = result["errors"]
    assert large < small / 3  # ~ 1/sqrt(experience): sqrt(32) = 5.7
    assert result["success"][1] > 0.85 * result["optimum"]
    assert result["optimum"] > 0.5


def episodes_needed(planning_steps: int, episodes: int, seeds=(0, 1, 2)) -> float:
    cfg = config()
    needed = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        _, greedy_steps, _ = mb.dyna_q(MAZE, episodes, planning_steps, cfg, rng, seed)
        needed.append(mb.episodes_to_shortest(greedy_steps, cfg.path_slack))
    return float(np.mean(needed))


def test_more_planning_reaches_the_shortest_path_in_fewer_episodes():
    with_50 = episodes_needed(50, episodes=8)
    with_5 = episodes_needed(5, episodes=15)
    without = episodes_needed(0, episodes=40)
    assert with_50 <= 4  # the book: about 3 episodes
    assert with_50 <= with_5 < without
    assert without >= 12


def test_episodes_to_shortest_counts_from_one():
    steps = np.array([np.inf, 30, 16, 14])
    assert mb.episodes_to_shortest(steps, slack=2) == 3
    assert mb.episodes_to_shortest(steps, slack=0) == 4
    assert mb.episodes_to_shortest(np.array([np.inf, 20]), slack=2) == 3  # never: one past


def test_ucb_tries_everything_then_balances():
    rng = np.random.default_rng(0)
    assert mb.ucb_action(np.array([1, 0, 1, 1.0]), np.array([5, 0, 5, 5.0]), 1.0, rng) == 1
    visits = np.array([10, 10, 10, 10.0])
    assert mb.ucb_action(visits, np.array([0.1, 0.5, 0.2, 0.3]), 1.0, rng) == 1
    # A rarely tried action wins on its bonus.
    assert mb.ucb_action(np.array([100, 100, 1, 100.0]), np.array([0.5, 0.5, 0.3, 0.5]),
                         1.0, rng) == 2


def test_mcts_in_a_learned_model_walks_to_the_goal():
    cfg = config(max_real_steps=100)
    rng = np.random.default_rng(0)
    model = mb.explore_model(MAZE, 2000, rng, seed=0)
    # Next to the goal, one simulation per action already shows the way: up.
    below_goal = MAZE.state_of(1, 8)
    assert mb.mcts(model, below_goal, 20, cfg, rng) == envs.UP
    assert mb.monte_carlo_search(model, below_goal, 20, cfg, rng) == envs.UP
    steps = mb.play_with_search(MAZE, mb.mcts, model, 100, cfg, rng, seed=0)
    assert steps < 60  # the shortest path is 14

    def random_search(model, state, simulations, config, rng):
        return int(rng.integers(4))

    wandering = [mb.play_with_search(MAZE, random_search, model, 0, config(max_real_steps=2000),
                                     rng, seed=seed) for seed in range(5)]
    assert np.mean(wandering) > 5 * steps


def test_dyna2_learns_faster_than_sarsa_alone():
    cfg = config()
    sarsa_steps = mb.dyna2(MAZE, 6, cfg, np.random.default_rng(0), seed=0, simulations=0)
    dyna2_steps = mb.dyna2(MAZE, 6, cfg, np.random.default_rng(0), seed=0, simulations=5)
    # Episodes 2-6: SARSA still wanders (hundreds of steps), Dyna-2's search finds the way.
    assert dyna2_steps[1:].mean() * 2 < sarsa_steps[1:].mean()
    assert dyna2_steps[-3:].mean() < 60


TINY = {"model_steps": (100, 1000), "model_runs": 1, "dyna_runs": 1, "dyna_episodes": 3,
        "planning_steps": (0, 50), "explore_steps": 500, "search_budgets": (10,),
        "search_episodes": 1, "max_real_steps": 20, "rollout_depth": 20, "dyna2_runs": 1,
        "dyna2_episodes": 2}


def test_run_is_deterministic_and_writes_figures(tmp_path, monkeypatch):
    first = mb.run(cli.make_config(mb.Config, TINY, out_dir=str(tmp_path)))
    assert set(mb.TARGETS) <= set(first)
    for name in ("table_model", "dyna_maze", "search", "dyna2"):
        assert (tmp_path / f"{name}.png").stat().st_size > 10_000
    for name in dir(mb):
        if name.startswith("figure_"):
            monkeypatch.setattr(mb, name, lambda *args, **kwargs: None)
    second = mb.run(cli.make_config(mb.Config, TINY, out_dir=str(tmp_path)))
    other = mb.run(cli.make_config(mb.Config, TINY, seed=1, out_dir=str(tmp_path)))
    assert first == second
    assert first != other
