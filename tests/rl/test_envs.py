"""The textbook environments: their tables against the book, gymnasium, and their own play."""

import warnings
from collections import deque

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from minimal.rl import envs

ALL_ENVS = {
    "gridworld": envs.GridWorld,
    "windy": envs.WindyGridworld,
    "cliff": envs.CliffWalk,
    "dyna_maze": envs.DynaMaze,
    "random_walk_5": lambda: envs.RandomWalk(5),
    "random_walk_19": lambda: envs.RandomWalk(19),
    "two_doors": envs.TwoDoors,
}


def shortest_path_length(env: envs.TabularEnv, start: int) -> int:
    """Breadth-first search over the table's possible moves: steps to a terminal state."""
    steps = {start: 0}
    queue = deque([start])
    while queue:
        state = queue.popleft()
        for transitions in env.P[state].values():
            for prob, next_state, _, terminated in transitions:
                if prob > 0 and terminated:
                    return steps[state] + 1
                if prob > 0 and next_state not in steps:
                    steps[next_state] = steps[state] + 1
                    queue.append(next_state)
    raise AssertionError("no terminal state reachable")


def is_absorbing(env: envs.TabularEnv, state: int) -> bool:
    """A terminal state: every action loops back to it and ends the episode."""
    return all(next_state == state and terminated
               for transitions in env.P[state].values()
               for _, next_state, _, terminated in transitions)


def random_policy_values(env: envs.TabularEnv, gamma: float = 1.0) -> np.ndarray:
    """v = r + gamma P v solved exactly over the non-terminal states."""
    probs, rewards, continues = envs.transition_arrays(env.P)
    policy_probs = (probs * continues).mean(axis=1)  # equiprobable over actions
    policy_rewards = rewards.mean(axis=1)
    live = [s for s in range(env.n_states) if not is_absorbing(env, s)]
    values = np.zeros(env.n_states)
    matrix = np.eye(len(live)) - gamma * policy_probs[np.ix_(live, live)]
    values[live] = np.linalg.solve(matrix, policy_rewards[live])
    return values


@pytest.mark.parametrize("name", sorted(ALL_ENVS))
def test_gymnasium_api_and_seeding(name):
    env = ALL_ENVS[name]()
    assert isinstance(env, gym.Env)
    trajectories = []
    for _ in range(2):
        state, info = env.reset(seed=7)
        assert env.observation_space.contains(state) and isinstance(info, dict)
        env.action_space.seed(7)
        trajectory = [state]
        for _ in range(30):
            result = env.step(env.action_space.sample())
            assert len(result) == 5
            state, reward, terminated, _, _ = result
            trajectory.append((state, reward, terminated))
            if terminated:
                state, _ = env.reset()
        trajectories.append(trajectory)
    assert trajectories[0] == trajectories[1]


@pytest.mark.parametrize("name", sorted(ALL_ENVS))
def test_gymnasium_env_checker_passes_without_warnings(name):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning from the checker fails the test
        check_env(ALL_ENVS[name](), skip_render_check=True)


@pytest.mark.parametrize("name", sorted(ALL_ENVS))
def test_transition_table_is_a_distribution(name):
    env = ALL_ENVS[name]()
    assert sorted(env.P) == list(range(env.n_states))
    for by_action in env.P.values():
        assert sorted(by_action) == list(range(env.n_actions))
        for transitions in by_action.values():
            assert sum(prob for prob, *_ in transitions) == pytest.approx(1.0)
            assert all(0 <= next_state < env.n_states for _, next_state, _, _ in transitions)


def test_step_samples_follow_the_table():
    # Two doors: the jackpot comes one time in ten, within 4 standard errors over 4000 tries.
    env = envs.TwoDoors()
    env.reset(seed=0)
    jackpots = 0
    for _ in range(4000):
        env.reset()
        _, reward, terminated, _, _ = env.step(1)
        assert terminated
        jackpots += reward == 100.0
    standard_error = np.sqrt(0.1 * 0.9 / 4000)
    assert abs(jackpots / 4000 - 0.1) < 4 * standard_error
    assert env.door_values().tolist() == [1.0, 10.0]


def test_cliff_walk_matches_gymnasium_cliff_walking():
    ours = envs.CliffWalk()
    theirs = gym.make("CliffWalking-v1").unwrapped
    for state in range(ours.n_states):
        if ours.kind(state) not in ".S":
            continue  # cliff cells are never occupied; the goal is terminal
        for action in range(4):
            expected = [(p, int(s), float(r), bool(d)) for p, s, r, d in theirs.P[state][action]]
            assert ours.P[state][action] == expected
    assert ours.P[36][envs.RIGHT] == [(1.0, 36, -100.0, False)]  # into the cliff, back to S


def test_shortest_paths_from_the_book():
    assert shortest_path_length(envs.CliffWalk(), 36) == 13
    assert shortest_path_length(envs.WindyGridworld(), 30) == 15  # example 6.5
    maze = envs.DynaMaze()
    assert maze.start_distribution[maze.state_of(2, 0)] == 1.0
    assert shortest_path_length(maze, maze.state_of(2, 0)) == envs.DynaMaze.SHORTEST_PATH == 14


def test_windy_gridworld_wind_pushes_up():
    env = envs.WindyGridworld()
    # From (3, 6), wind 2: moving right lands two rows up, in column 7.
    assert env.P[env.state_of(3, 6)][envs.RIGHT] == [(1.0, env.state_of(1, 7), -1.0, False)]
    # From (3, 0), no wind: an ordinary move.
    assert env.P[30][envs.RIGHT] == [(1.0, 31, -1.0, False)]
    # Wind can't push past the top edge.
    assert env.P[env.state_of(0, 6)][envs.UP] == [(1.0, env.state_of(0, 6), -1.0, False)]


def test_gridworld_random_policy_values_match_figure_4_1():
    values = random_policy_values(envs.GridWorld()).reshape(4, 4)
    expected = [[0, -14, -20, -22], [-14, -18, -20, -20], [-20, -20, -18, -14],
                [-22, -20, -14, 0]]
    np.testing.assert_allclose(values, expected, atol=1e-9)


@pytest.mark.parametrize("n_states, expected", [
    (5, [1 / 6, 2 / 6, 3 / 6, 4 / 6, 5 / 6]),
    (19, np.round(np.arange(-0.9, 0.95, 0.1), 10)),
])
def test_random_walk_true_values(n_states, expected):
    env = envs.RandomWalk(n_states)
    np.testing.assert_allclose(env.true_values(), expected, atol=1e-12)
    # The closed form agrees with solving the table's Bellman equation.
    np.testing.assert_allclose(random_policy_values(env)[1:-1], expected, atol=1e-9)
    state, _ = env.reset(seed=0)
    assert state == (n_states + 1) // 2


def test_draw_marks_path_and_agent():
    env = envs.DynaMaze()
    text = env.draw(path=[env.state_of(2, 1)], agent=env.state_of(5, 8))
    lines = text.splitlines()
    assert lines[0] == ".......#G"
    assert lines[2] == "S*#....#."
    assert lines[5].endswith("A")


def test_unknown_action_is_a_clear_error():
    env = envs.GridWorld()
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action 4 is not one of Discrete"):
        env.step(4)
