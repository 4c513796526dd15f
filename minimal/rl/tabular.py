"""Small pieces shared by the tabular RL demos: acting on a table of action values.

    greedy_action    the best action, ties broken at random (so an all-zero table doesn't
                     always pick action 0)
    epsilon_greedy   explore with probability epsilon, else the greedy action
    greedy_path      follow the greedy policy of a table through a deterministic environment
"""

from __future__ import annotations

import numpy as np

from minimal.rl.envs import TransitionTable


def greedy_action(action_values: np.ndarray, rng: np.random.Generator) -> int:
    """The best action; among equally good ones, a random one."""
    values = action_values.tolist()  # plain Python: faster than NumPy on 2-4 numbers
    top = max(values)
    best = [action for action, value in enumerate(values) if value == top]
    return best[0] if len(best) == 1 else best[int(rng.integers(len(best)))]


def epsilon_greedy(action_values: np.ndarray, epsilon: float, rng: np.random.Generator) -> int:
    """A random action with probability epsilon, otherwise the greedy one."""
    if rng.random() < epsilon:
        return int(rng.integers(len(action_values)))
    return greedy_action(action_values, rng)


def greedy_path(P: TransitionTable, q: np.ndarray, start: int, max_steps: int = 200
                ) -> tuple[list[int], bool]:
    """States visited by always taking argmax_a q(s, a) (first best on ties) from ``start``.

    Uses the most likely outcome of each move, so it is exact for deterministic environments.
    Returns the visited states (start included) and whether a terminal state was reached
    within ``max_steps`` (a greedy policy can walk in circles).
    """
    path, state = [start], start
    for _ in range(max_steps):
        transitions = P[state][int(np.argmax(q[state]))]
        _, state, _, terminated = max(transitions, key=lambda t: t[0])
        path.append(state)
        if terminated:
            return path, True
    return path, False
