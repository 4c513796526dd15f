"""The small textbook environments, with gymnasium's API and their exact transition tables.

Every environment here is a finite Markov decision process, so each one carries the table that
dynamic programming needs, in the same layout as gymnasium's toy_text environments::

    env.P[state][action] = [(probability, next_state, reward, terminated), ...]

and it can also be *played* like any gymnasium environment, which is all that model-free methods
may do::

    state, info = env.reset(seed=0)
    state, reward, terminated, truncated, info = env.step(action)

A terminal state keeps looping to itself with reward 0 and ``terminated=True`` (as in gymnasium's
FrozenLake), so "the value of a terminal state is 0" falls out of any backup that multiplies the
next value by ``(1 - terminated)``.

Grid worlds number their cells row by row, ``state = row * n_cols + col``, row 0 at the top, and
share the action numbering of gymnasium's CliffWalking: 0 up, 1 right, 2 down, 3 left.

    GridWorld         Sutton & Barto example 4.1: 4x4, -1 per step, two terminal corners
    RandomWalk        examples 6.2 (5 states) and 7.1 (19 states): a Markov reward process
    WindyGridworld    example 6.5: a crosswind pushes the agent up
    CliffWalk         example 6.6: the edge of a cliff, -100 for falling
    DynaMaze          example 8.1: the maze Dyna-Q learns in a few episodes
    TwoDoors          the post's exploration example: +1 always, or +100 one time in ten
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

Transition = tuple[float, int, float, bool]
TransitionTable = dict[int, dict[int, list[Transition]]]

UP, RIGHT, DOWN, LEFT = 0, 1, 2, 3
MOVES = ((-1, 0), (0, 1), (1, 0), (0, -1))  # (row, col) change of each action
ARROWS = "↑→↓←"  # how figures draw each action


class TabularEnv(gym.Env):
    """A finite MDP played from its transition table ``P`` and start distribution."""

    metadata: ClassVar[dict] = {"render_modes": ["ansi"]}

    def __init__(self, P: TransitionTable, start_distribution: np.ndarray,
                 render_mode: str | None = None):
        self.P = P
        self.n_states = len(P)
        self.n_actions = len(P[0])
        self.observation_space = spaces.Discrete(self.n_states)
        self.action_space = spaces.Discrete(self.n_actions)
        self.start_distribution = np.asarray(start_distribution, dtype=float)
        self.render_mode = render_mode
        self.state = int(np.argmax(self.start_distribution))

    def reset(self, *, seed: int | None = None, options: dict | None = None
              ) -> tuple[int, dict[str, Any]]:
        super().reset(seed=seed)  # seeds self.np_random
        self.state = self._sample(self.start_distribution)
        return self.state, {"prob": float(self.start_distribution[self.state])}

    def step(self, action: int) -> tuple[int, float, bool, bool, dict[str, Any]]:
        try:
            transitions = self.P[self.state][int(action)]
        except KeyError:
            raise ValueError(f"action {action!r} is not one of {self.action_space}") from None
        chosen = 0 if len(transitions) == 1 else self._sample([t[0] for t in transitions])
        prob, next_state, reward, terminated = transitions[chosen]
        self.state = next_state
        return next_state, float(reward), terminated, False, {"prob": prob}

    def _sample(self, probs) -> int:
        """An index drawn with the given probabilities (one uniform number, as gymnasium does).
        Plain Python: for a handful of outcomes it is several times faster than NumPy calls."""
        uniform = self.np_random.random()
        cumulative = 0.0
        for index, prob in enumerate(probs):
            cumulative += prob
            if uniform < cumulative:
                return index
        return len(probs) - 1

    def render(self) -> str | None:
        return None


class GridEnv(TabularEnv):
    """A rectangular grid of cells, four moves; subclasses say where the walls and rewards are.

    ``layout`` is a list of strings, one per row: ``S`` start, ``G`` goal (terminal), ``T``
    terminal, ``C`` cliff, ``#`` wall, ``.`` free.
    """

    def __init__(self, layout: tuple[str, ...], render_mode: str | None = None):
        self.layout = [list(row) for row in layout]
        self.shape = (len(layout), len(layout[0]))
        P = {s: {a: [self.transition(s, a)] for a in range(4)} for s in range(self.n_cells)}
        super().__init__(P, self.start_states_distribution(), render_mode)

    # --- geometry -------------------------------------------------------------------------
    @property
    def n_cells(self) -> int:
        return self.shape[0] * self.shape[1]

    def cell(self, state: int) -> tuple[int, int]:
        return divmod(int(state), self.shape[1])

    def state_of(self, row: int, col: int) -> int:
        return row * self.shape[1] + col

    def kind(self, state: int) -> str:
        row, col = self.cell(state)
        return self.layout[row][col]

    def is_terminal(self, state: int) -> bool:
        return self.kind(state) in "GT"

    def start_states_distribution(self) -> np.ndarray:
        starts = np.array([self.kind(s) == "S" for s in range(self.n_cells)], dtype=float)
        return starts / starts.sum()

    def moved(self, state: int, action: int) -> int:
        """The cell one step away in the action's direction; edges and walls stop the move."""
        row, col = self.cell(state)
        d_row, d_col = MOVES[action]
        new_row = min(max(row + d_row, 0), self.shape[0] - 1)
        new_col = min(max(col + d_col, 0), self.shape[1] - 1)
        if self.layout[new_row][new_col] == "#":
            return state
        return self.state_of(new_row, new_col)

    # --- dynamics: one deterministic outcome per (state, action) ---------------------------
    def transition(self, state: int, action: int) -> Transition:
        raise NotImplementedError

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        return self.draw(agent=self.state)

    def draw(self, path: list[int] | None = None, agent: int | None = None) -> str:
        """The grid as text; ``path`` cells are marked ``*`` and the agent ``A``."""
        rows = [list(row) for row in self.layout]
        for state in path or []:
            row, col = self.cell(state)
            if rows[row][col] in ".":
                rows[row][col] = "*"
        if agent is not None:
            row, col = self.cell(agent)
            rows[row][col] = "A"
        return "\n".join("".join(row) for row in rows)


class GridWorld(GridEnv):
    """Sutton & Barto example 4.1: every move costs -1 until a shaded corner is reached.

    ::

        T  1  2  3        actions: 0 up, 1 right, 2 down, 3 left
        4  5  6  7        reward -1 on every move, moves off the grid leave the state unchanged
        8  9 10 11        T: the terminal state (both corners are the same episode end)
       12 13 14  T        episodes start in any non-terminal cell, uniformly

    Under the equiprobable random policy with gamma = 1 the values are (figure 4.1)::

          0 -14 -20 -22
        -14 -18 -20 -20
        -20 -20 -18 -14
        -22 -20 -14   0
    """

    LAYOUT = ("TSSS", "SSSS", "SSSS", "SSST")

    def __init__(self, render_mode: str | None = None):
        super().__init__(self.LAYOUT, render_mode)

    def transition(self, state: int, action: int) -> Transition:
        if self.is_terminal(state):
            return (1.0, state, 0.0, True)
        next_state = self.moved(state, action)
        return (1.0, next_state, -1.0, self.is_terminal(next_state))


class WindyGridworld(GridEnv):
    """Sutton & Barto example 6.5: a crosswind pushes the agent up by the strength under it.

    ::

        . . . . . . . . . .
        . . . . . . . . . .
        . . . . . . . . . .
        S . . . . . . G . .        S start (3, 0), G goal (3, 7)
        . . . . . . . . . .        reward -1 per step until G
        . . . . . . . . . .
        . . . . . . . . . .
        0 0 0 1 1 1 2 2 1 0        wind strength of each column (cells pushed upwards)

    The wind of the column the agent leaves is added to its move, and the grid's edge stops it.
    The shortest path takes 15 steps.
    """

    WIND = (0, 0, 0, 1, 1, 1, 2, 2, 1, 0)
    LAYOUT = ("..........", "..........", "..........", "S......G..",
              "..........", "..........", "..........")

    def __init__(self, render_mode: str | None = None):
        super().__init__(self.LAYOUT, render_mode)

    def transition(self, state: int, action: int) -> Transition:
        if self.is_terminal(state):
            return (1.0, state, 0.0, True)
        row, col = self.cell(state)
        d_row, d_col = MOVES[action]
        new_row = min(max(row + d_row - self.WIND[col], 0), self.shape[0] - 1)
        new_col = min(max(col + d_col, 0), self.shape[1] - 1)
        next_state = self.state_of(new_row, new_col)
        return (1.0, next_state, -1.0, self.is_terminal(next_state))


class CliffWalk(GridEnv):
    """Sutton & Barto example 6.6 (gymnasium's CliffWalking-v1 has the same table).

    ::

        . . . . . . . . . . . .
        . . . . . . . . . . . .     reward -1 per step
        . . . . . . . . . . . .     stepping into C: reward -100 and back to S
        S C C C C C C C C C C G     (the episode goes on); reaching G ends it

    The shortest path (13 steps) runs along the cliff's edge; a path along the top is 17 steps.
    """

    LAYOUT = ("............", "............", "............", "SCCCCCCCCCCG")

    def __init__(self, render_mode: str | None = None):
        super().__init__(self.LAYOUT, render_mode)

    @property
    def start(self) -> int:
        return self.state_of(3, 0)

    def transition(self, state: int, action: int) -> Transition:
        if self.is_terminal(state):
            return (1.0, state, 0.0, True)
        next_state = self.moved(state, action)
        if self.kind(next_state) == "C":
            return (1.0, self.start, -100.0, False)
        return (1.0, next_state, -1.0, self.is_terminal(next_state))


class DynaMaze(GridEnv):
    """Sutton & Barto example 8.1: the maze of figure 8.2.

    ::

        . . . . . . . # G
        . . # . . . . # .       S start (2, 0), G goal (0, 8), # walls
        S . # . . . . # .       reward +1 on reaching G, 0 otherwise (gamma 0.95 in the book)
        . . # . . . . . .
        . . . . . # . . .
        . . . . . . . . .

    The shortest path takes 14 steps.
    """

    LAYOUT = (".......#G", "..#....#.", "S.#....#.", "..#......", ".....#...", ".........")
    SHORTEST_PATH = 14

    def __init__(self, render_mode: str | None = None):
        super().__init__(self.LAYOUT, render_mode)

    def transition(self, state: int, action: int) -> Transition:
        if self.is_terminal(state):
            return (1.0, state, 0.0, True)
        next_state = self.moved(state, action)
        reached_goal = self.is_terminal(next_state)
        return (1.0, next_state, 1.0 if reached_goal else 0.0, reached_goal)


class RandomWalk(TabularEnv):
    """Sutton & Barto examples 6.2 and 7.1: a walk that steps left or right with equal odds.

    With 5 states (example 6.2)::

        [T] - A - B - C - D - E - [T]
         0    1   2   3   4   5    6      start at C; reward +1 for leaving on the right, else 0

    With 19 states (example 7.1) the left exit gives -1 instead of 0 and the walk starts in the
    middle (state 10). There is no choice to make: the single action 0 means "take a step",
    so this is a Markov reward process for prediction. With gamma = 1 the true value of state i
    is the probability-weighted exit reward, a straight line from the left reward to the right
    one: 1/6, ..., 5/6 for 5 states and -0.9, -0.8, ..., 0.9 for 19.
    """

    def __init__(self, n_states: int = 5, left_reward: float | None = None,
                 right_reward: float = 1.0, render_mode: str | None = None):
        if left_reward is None:
            left_reward = -1.0 if n_states == 19 else 0.0
        self.n_inner = n_states
        self.left_reward = left_reward
        self.right_reward = right_reward
        last = n_states + 1
        P: TransitionTable = {0: {0: [(1.0, 0, 0.0, True)]}, last: {0: [(1.0, last, 0.0, True)]}}
        for state in range(1, last):
            left = (0.5, state - 1, left_reward if state == 1 else 0.0, state == 1)
            right = (0.5, state + 1, right_reward if state == n_states else 0.0,
                     state == n_states)
            P[state] = {0: [left, right]}
        P = dict(sorted(P.items()))
        start = np.zeros(n_states + 2)
        start[(n_states + 1) // 2] = 1.0
        super().__init__(P, start, render_mode)

    def true_values(self) -> np.ndarray:
        """v(i) for the inner states 1..n (gamma = 1): the exit reward, weighted by its odds."""
        inner = np.arange(1, self.n_inner + 1)
        right_odds = inner / (self.n_inner + 1)
        return self.left_reward * (1 - right_odds) + self.right_reward * right_odds


class TwoDoors(TabularEnv):
    """The post's example of why exploration is needed: one choice, two doors.

    ::

        +--------------------+
        |  door 0    door 1  |     door 0: reward +1, always
        |   [ ]       [ ]    |     door 1: reward +100 one time in ten, else 0
        |        you         |     either way the episode ends (state 1)
        +--------------------+

    Door 1 is worth 10 on average and door 0 only 1, but an agent that acts greedily on its
    first impressions usually meets door 1's zeros, settles for door 0, and never looks back.
    """

    def __init__(self, jackpot: float = 100.0, jackpot_odds: float = 0.1,
                 render_mode: str | None = None):
        self.jackpot = jackpot
        self.jackpot_odds = jackpot_odds
        P: TransitionTable = {
            0: {0: [(1.0, 1, 1.0, True)],
                1: [(jackpot_odds, 1, jackpot, True), (1.0 - jackpot_odds, 1, 0.0, True)]},
            1: {0: [(1.0, 1, 0.0, True)], 1: [(1.0, 1, 0.0, True)]},
        }
        super().__init__(P, np.array([1.0, 0.0]), render_mode)

    def door_values(self) -> np.ndarray:
        return np.array([1.0, self.jackpot * self.jackpot_odds])


def transition_arrays(P: TransitionTable) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The table as arrays: probabilities p[s, a, s'], expected rewards r[s, a], and
    continue[s, a, s'] (1 when the move to s' does not end the episode)."""
    n_states, n_actions = len(P), len(P[0])
    probs = np.zeros((n_states, n_actions, n_states))
    rewards = np.zeros((n_states, n_actions))
    continues = np.ones((n_states, n_actions, n_states))
    for state, by_action in P.items():
        for action, transitions in by_action.items():
            for prob, next_state, reward, terminated in transitions:
                probs[state, action, next_state] += prob
                rewards[state, action] += prob * reward
                if terminated:
                    continues[state, action, next_state] = 0.0
    return probs, rewards, continues


# ===== making gymnasium environments quietly ===============================================

# MuJoCo's compiler warns about this attribute in gymnasium's own half_cheetah.xml (it still
# works); the message says nothing about the user's run, so it alone is dropped.
_SILENCED_MUJOCO_WARNING = "compiler attribute 'settotalmass' is deprecated"


@contextmanager
def quiet_settotalmass() -> Iterator[None]:
    """While inside: MuJoCo's 'settotalmass is deprecated' warning is dropped, and every other
    MuJoCo warning goes on to the handler that was there before (or to stderr in MuJoCo's own
    "WARNING: ..." form). The previous handler is restored on the way out."""
    import mujoco

    previous = mujoco.get_mju_user_warning()

    def handler(message: str) -> None:
        if _SILENCED_MUJOCO_WARNING in message:
            return
        if previous is not None:
            previous(message)
        else:
            print(f"WARNING: {message}", file=sys.stderr)

    mujoco.set_mju_user_warning(handler)
    try:
        yield
    finally:
        mujoco.set_mju_user_warning(previous)


def make(env_id: str, **kwargs: Any) -> gym.Env:
    """gymnasium.make, without MuJoCo's 'settotalmass is deprecated' warning (the model
    compiles inside `quiet_settotalmass`); other environments are made as they are."""
    entry_point = str(getattr(gym.spec(env_id), "entry_point", ""))
    if "mujoco" not in entry_point:
        return gym.make(env_id, **kwargs)
    with quiet_settotalmass():
        return gym.make(env_id, **kwargs)
