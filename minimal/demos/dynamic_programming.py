"""Dynamic programming: policy evaluation, policy iteration and value iteration.

Follows the post on planning with a known model (Sutton & Barto chapter 4, David Silver's
lecture 3). When the whole transition table P[s][a] = [(prob, next_state, reward, done)] is
known, no interaction is needed: the Bellman equations can be applied to every state at once.

Key equations (gamma the discount, (1 - done) zeroes the value after a terminal move)::

    q(s, a)       = sum over (p, s', r, done) in P[s][a] of  p * (r + gamma * (1 - done) * v(s'))
    evaluation    v_{k+1}(s) = sum_a pi(a|s) q_k(s, a)        (Bellman expectation backup)
    improvement   pi'(s)     = argmax_a q_pi(s, a)             (greedy, never worse: policy
                                                                improvement theorem)
    value iter.   v_{k+1}(s) = max_a q_k(s, a)                 (Bellman optimality backup)

*Synchronous* evaluation computes v_{k+1} from a frozen copy of v_k, which is what the book's
figure 4.1 shows sweep by sweep; *in-place* evaluation overwrites v(s) as it goes, so later
states in the sweep already use new values and it converges in fewer sweeps. Policy iteration
alternates full evaluation and greedy improvement until the policy stops changing; value
iteration (`value_iteration`, which returns v* and the change per sweep) folds a single sweep
of evaluation into each improvement.

Run:  python -m minimal.demos.dynamic_programming [--quick] [--seed 0]

Figures (in out_dir):
    gridworld_policy_evaluation.png  figure 4.1: v_k of the random policy after k = 0, 1, 2, 3,
                                     10 sweeps and at convergence (top) and the greedy policy for
                                     each (bottom; several arrows where actions tie)
    gridworld_convergence.png        largest change per sweep for synchronous and in-place
                                     evaluation and for value iteration; v* and pi* of the gridworld
    frozenlake.png                   v* on the lake with the optimal actions, and the success rate
                                     of the optimal policy over played episodes against v*(start)

Settings: the 4x4 gridworld of example 4.1 (in minimal/rl/envs.py): -1 per move, two terminal
corners, gamma 1. The random policy's values converge to 0, -14, -20, -22, ... and the greedy
policy with respect to them is already optimal after 3 sweeps. The same solvers then run
unchanged on gymnasium's FrozenLake-v1 (slippery ice: an action goes where intended only one
time in three), reading its own transition table ``env.unwrapped.P``; the optimal policy's value
at the start is checked by actually playing it (5000 episodes; 1000 in the quick preset).

Departures: the figures are drawn from the computed values, not copied; policy iteration breaks
ties in favour of the current action so it cannot cycle between equally good policies.

Results (seed 0, 2 cores; the quick preset differs from the full one only in the number of
FrozenLake episodes played; theta 1e-10):

    measure                                          quick (1000 episodes)   full (5000)
    v_pi, iterative against the linear solve         max error 2e-9          max error 2e-9
    evaluation sweeps, synchronous / in place        426 / 272               426 / 272
    policy iteration improvements / value iteration  1 / 4 sweeps            1 / 4 sweeps
    FrozenLake v*(start)                             14/17 = 0.8235          14/17 = 0.8235
    the optimal policy reaches the goal, played      81%                     82.5%
    time                                             about 7 s               7 s
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import gymnasium as gym
import matplotlib
import matplotlib.pyplot as plt
import numpy as np

from minimal.app import cli, viz
from minimal.errors import ConfigError
from minimal.rl import envs

matplotlib.use("Agg")  # figures go to files; no display needed


@dataclass
class Config:
    seed: int = 0  # seed for playing FrozenLake episodes
    gamma: float = 1.0  # gridworld discount (the book's example is undiscounted)
    theta: float = 1e-10  # evaluation stops when no value changes by more than this
    figure_sweeps: tuple = (0, 1, 2, 3, 10)  # sweeps whose values figure 4.1 shows
    lake_map: str = "4x4"  # FrozenLake map: 4x4 or 8x8
    lake_slippery: bool = True  # slippery ice: the intended move one time in three
    lake_gamma: float = 1.0  # FrozenLake discount (1: v*(start) is the chance to reach the goal)
    lake_episodes: int = 5000  # episodes played with the optimal policy to check v*(start)
    out_dir: str = "outputs/dynamic_programming"  # where figures are written

    def __post_init__(self):
        cli.validate(self, whole=("seed", "figure_sweeps"), counts=("lake_episodes",),
                     positive=("theta",), fractions=("gamma", "lake_gamma"),
                     choices={"lake_map": ("4x4", "8x8")})


QUICK = {"lake_episodes": 1000}

TARGETS = {
    "v_pi_max_error": ("<=", 1e-6),  # iterative evaluation against the exact linear solve
    "v_star_max_error": ("<=", 1e-6),  # value iteration against -(steps to the nearest corner)
    "sweeps_saved_in_place": (">=", 1.0),  # in-place evaluation needs fewer sweeps
    "lake_success_rate": (">=", 0.7),  # the optimal policy reaches the goal this often
    "lake_value_gap": ("<=", 0.05),  # |played success rate - v*(start)|
}

Policy = np.ndarray  # pi[s, a]: probability of action a in state s


# --- the Bellman backups ------------------------------------------------------------------
def action_values(P: envs.TransitionTable, values: np.ndarray, state: int,
                  gamma: float) -> np.ndarray:
    """q(s, .) by one-step look-ahead through the transition table."""
    q = np.zeros(len(P[state]))
    for action, transitions in P[state].items():
        for prob, next_state, reward, done in transitions:
            q[action] += prob * (reward + gamma * (not done) * values[next_state])
    return q


def evaluation_sweep(P: envs.TransitionTable, policy: Policy, values: np.ndarray,
                     gamma: float, in_place: bool = False) -> np.ndarray:
    """One Bellman expectation backup of every state; returns the new values."""
    new_values = values if in_place else values.copy()
    # Synchronous: read the frozen `values`; in-place: read what this sweep already wrote.
    source = new_values if in_place else values
    for state in range(len(P)):
        new_values[state] = policy[state] @ action_values(P, source, state, gamma)
    return new_values


def evaluate_policy(P: envs.TransitionTable, policy: Policy, gamma: float, theta: float,
                    in_place: bool = False, max_sweeps: int = 100_000
                    ) -> tuple[np.ndarray, list[np.ndarray], list[float]]:
    """Iterative policy evaluation from v = 0 until the largest change is below theta.

    Returns the values, the values after each sweep (history[k] = v_k) and the largest change
    of each sweep.
    """
    values = np.zeros(len(P))
    history, changes = [values.copy()], []
    for _ in range(max_sweeps):
        old = values.copy()
        values = evaluation_sweep(P, policy, values, gamma, in_place)
        history.append(values.copy())
        changes.append(float(np.max(np.abs(values - old))))
        if changes[-1] < theta:
            break
    return values, history, changes


def greedy_policy(P: envs.TransitionTable, values: np.ndarray, gamma: float,
                  keep: Policy | None = None, tie_tolerance: float = 1e-9) -> Policy:
    """The policy greedy with respect to v: ties share the probability equally.

    With ``keep`` (a deterministic policy) the current action is kept whenever it is still among
    the best, and otherwise the first best action is taken: what policy iteration needs to stop.
    """
    policy = np.zeros((len(P), len(P[0])))
    for state in range(len(P)):
        q = action_values(P, values, state, gamma)
        best = np.flatnonzero(q >= q.max() - tie_tolerance)
        if keep is None:
            policy[state, best] = 1.0 / len(best)
        else:
            current = int(np.argmax(keep[state]))
            policy[state, current if current in best else best[0]] = 1.0
    return policy


def random_policy(P: envs.TransitionTable) -> Policy:
    return np.full((len(P), len(P[0])), 1.0 / len(P[0]))


def policy_iteration(P: envs.TransitionTable, gamma: float, theta: float
                     ) -> tuple[Policy, np.ndarray, int, int]:
    """Evaluate, improve greedily, repeat until stable.

    Returns the policy, its values, the number of improvements and the total evaluation sweeps.
    """
    # Start from the random policy: with gamma = 1 an arbitrary deterministic one may never
    # reach a terminal state, and its values would run off to minus infinity.
    policy = random_policy(P)
    improvements, sweeps = 0, 0
    while True:
        values, history, _ = evaluate_policy(P, policy, gamma, theta, in_place=True)
        sweeps += len(history) - 1
        improved = greedy_policy(P, values, gamma, keep=policy)
        if np.array_equal(improved, policy):
            return policy, values, improvements, sweeps
        policy, improvements = improved, improvements + 1


def value_iteration(P: envs.TransitionTable, gamma: float, theta: float,
                    max_sweeps: int = 100_000) -> tuple[np.ndarray, list[float]]:
    """v(s) <- max_a q(s, a) in place until the largest change is below theta."""
    values = np.zeros(len(P))
    changes = []
    for _ in range(max_sweeps):
        change = 0.0
        for state in range(len(P)):
            best = action_values(P, values, state, gamma).max()
            change = max(change, abs(best - values[state]))
            values[state] = best
        changes.append(change)
        if change < theta:
            break
    return values, changes


def exact_policy_values(P: envs.TransitionTable, policy: Policy, gamma: float) -> np.ndarray:
    """Solve v = r_pi + gamma P_pi v directly (terminal states fixed at 0)."""
    probs, rewards, continues = envs.transition_arrays(P)
    policy_probs = np.einsum("sa,sat->st", policy, probs * continues)
    policy_rewards = np.einsum("sa,sa->s", policy, rewards)
    return np.linalg.solve(np.eye(len(P)) - gamma * policy_probs, policy_rewards)


# --- playing a policy in the real environment ---------------------------------------------
def success_rate(env: gym.Env, policy: Policy, episodes: int, seed: int) -> float:
    """Fraction of episodes that end with a positive reward (FrozenLake's goal)."""
    successes = 0
    state, _ = env.reset(seed=seed)
    progress = cli.Progress(episodes, label="episode")
    for episode in range(1, episodes + 1):
        done, reward = False, 0.0
        while not done:
            state, reward, terminated, truncated, _ = env.step(int(np.argmax(policy[state])))
            done = terminated or truncated
        successes += reward > 0
        state, _ = env.reset()
        progress.update(episode, success=successes / episode)
    return successes / episodes


# --- figures ------------------------------------------------------------------------------
def draw_values(ax, values: np.ndarray, shape: tuple[int, int], title: str,
                labels: list[str] | None = None, number_format: str = ".3g") -> None:
    grid = values.reshape(shape)
    ax.imshow(grid, cmap="viridis")
    spread = np.ptp(grid) or 1.0
    for (row, col), value in np.ndenumerate(grid):
        text = f"{value:{number_format}}"
        if labels:
            text += f"\n{labels[row * shape[1] + col]}"
        dark_cell = (value - grid.min()) / spread < 0.5
        ax.text(col, row, text, ha="center", va="center", fontsize=8,
                color="white" if dark_cell else "black")
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def draw_arrows(ax, policy: Policy, shape: tuple[int, int], skip: np.ndarray,
                moves: tuple = envs.MOVES, title: str = "") -> None:
    """An arrow for every action with positive probability (ties give several)."""
    ax.set_xlim(-0.5, shape[1] - 0.5)
    ax.set_ylim(shape[0] - 0.5, -0.5)
    for row in range(shape[0] + 1):
        ax.axhline(row - 0.5, color="grey", lw=0.5)
    for col in range(shape[1] + 1):
        ax.axvline(col - 0.5, color="grey", lw=0.5)
    for state in range(shape[0] * shape[1]):
        row, col = divmod(state, shape[1])
        if skip[state]:
            ax.add_patch(plt.Rectangle((col - 0.5, row - 0.5), 1, 1, color="lightgrey"))
            continue
        for action in np.flatnonzero(policy[state] > 0):
            d_row, d_col = moves[action]
            ax.arrow(col, row, 0.3 * d_col, 0.3 * d_row, head_width=0.12, color="black",
                     length_includes_head=True)
    ax.set_aspect("equal")
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def figure_policy_evaluation(P, history, converged, gamma, sweeps_shown, terminal, path):
    columns = [(k, history[k]) for k in sweeps_shown] + [("inf", converged)]
    fig, axes = plt.subplots(2, len(columns), figsize=(2.2 * len(columns), 5.2))
    for column, (k, values) in enumerate(columns):
        draw_values(axes[0, column], values, (4, 4), f"k = {k}")
        draw_arrows(axes[1, column], greedy_policy(P, values, gamma), (4, 4), terminal,
                    title=f"greedy w.r.t. v_{k}")
    axes[0, 0].set_ylabel("v_k for the random policy")
    axes[1, 0].set_ylabel("greedy policy w.r.t. v_k")
    fig.suptitle("Iterative policy evaluation on the 4x4 gridworld (Sutton & Barto fig. 4.1)")
    viz.save_figure(fig, path)


def figure_convergence(changes_sync, changes_in_place, changes_vi, v_star, pi_star, terminal,
                       path):
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8), gridspec_kw={"width_ratios": [2, 1, 1]})
    axes[0].semilogy(range(1, len(changes_sync) + 1), changes_sync, label="synchronous evaluation")
    axes[0].semilogy(range(1, len(changes_in_place) + 1), changes_in_place,
                     label="in-place evaluation")
    # Value iteration's last change is exactly 0 (log scale can't show it): plot the others.
    nonzero = [(k + 1, c) for k, c in enumerate(changes_vi) if c > 0]
    axes[0].semilogy(*zip(*nonzero), label=f"value iteration ({len(changes_vi)} sweeps)",
                     marker="o")
    axes[0].set_xlabel("sweep")
    axes[0].set_ylabel("largest change of v in the sweep")
    axes[0].set_title("Convergence on the gridworld")
    axes[0].legend()
    draw_values(axes[1], v_star, (4, 4), "v* (value iteration)")
    draw_arrows(axes[2], pi_star, (4, 4), terminal, title="an optimal policy (policy iteration)")
    viz.save_figure(fig, path)


LAKE_MOVES = ((0, -1), (1, 0), (0, 1), (-1, 0))  # FrozenLake's actions: left, down, right, up


def figure_lake(desc, v_star, pi_star, played_rate, episodes, path):
    shape = desc.shape
    letters = [cell.decode() for cell in desc.ravel()]
    ends = np.array([letter in "HG" for letter in letters])
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.8))
    draw_values(axes[0], v_star, shape, "v*: chance of reaching G", labels=letters,
                number_format=".2f")
    draw_arrows(axes[1], pi_star, shape, ends, moves=LAKE_MOVES,
                title="optimal action (H, G shaded)")
    start = float(v_star[0])
    error = np.sqrt(played_rate * (1 - played_rate) / episodes)
    axes[2].bar(["v*(start)\n(from the table)", f"success rate\n({episodes} episodes)"],
                [start, played_rate], yerr=[0, 2 * error], color=["tab:blue", "tab:orange"],
                capsize=6)
    axes[2].set_ylim(0, 1)
    axes[2].set_ylabel("probability of reaching the goal")
    axes[2].set_title("Planning vs playing")
    fig.suptitle("FrozenLake-v1 solved from its own transition table")
    viz.save_figure(fig, path)


# --- the demo -----------------------------------------------------------------------------
def run(config: Config) -> dict[str, float]:
    os.makedirs(config.out_dir, exist_ok=True)
    grid = envs.GridWorld()
    P, gamma, theta = grid.P, config.gamma, config.theta
    terminal = np.array([grid.is_terminal(s) for s in range(grid.n_states)])

    # Prediction: evaluate the equiprobable random policy, both ways, and exactly.
    uniform = random_policy(P)
    v_sync, history, changes_sync = evaluate_policy(P, uniform, gamma, theta)
    if max(config.figure_sweeps, default=0) >= len(history):  # known once evaluation ran
        raise ConfigError(f"figure_sweeps (--figure-sweeps): evaluation converged after "
                          f"{len(history) - 1} sweeps, so no sweep above that can be shown; "
                          f"got {config.figure_sweeps}")
    v_in_place, _, changes_in_place = evaluate_policy(P, uniform, gamma, theta, in_place=True)
    v_exact = exact_policy_values(P, uniform, gamma)
    print("v_pi of the random policy (synchronous evaluation):")
    print(np.round(v_sync.reshape(4, 4), 2))

    # Control: policy iteration and value iteration.
    pi_star, v_pi_star, improvements, pi_sweeps = policy_iteration(P, gamma, theta)
    v_star, changes_vi = value_iteration(P, gamma, theta)
    rows, cols = np.divmod(np.arange(16), 4)
    steps_to_corner = np.minimum(rows + cols, 6 - rows - cols)
    print(f"policy iteration: {improvements} improvements, {pi_sweeps} evaluation sweeps; "
          f"value iteration: {len(changes_vi)} sweeps")

    figure_policy_evaluation(P, history, v_sync, gamma, config.figure_sweeps, terminal,
                             os.path.join(config.out_dir, "gridworld_policy_evaluation.png"))
    figure_convergence(changes_sync, changes_in_place, changes_vi, v_star, pi_star, terminal,
                       os.path.join(config.out_dir, "gridworld_convergence.png"))

    # The same solvers on FrozenLake, from gymnasium's own table; then play the result.
    lake = gym.make("FrozenLake-v1", map_name=config.lake_map,
                    is_slippery=config.lake_slippery, max_episode_steps=10_000)
    lake_P = lake.unwrapped.P
    lake_pi, _, _, _ = policy_iteration(lake_P, config.lake_gamma, theta)
    lake_v_star, lake_changes = value_iteration(lake_P, config.lake_gamma, theta)
    lake_vi_policy = greedy_policy(lake_P, lake_v_star, config.lake_gamma)
    played = success_rate(lake, lake_pi, config.lake_episodes, config.seed)
    figure_lake(lake.unwrapped.desc, lake_v_star, lake_pi, played, config.lake_episodes,
                os.path.join(config.out_dir, "frozenlake.png"))

    return {
        "eval_sweeps_synchronous": float(len(changes_sync)),
        "eval_sweeps_in_place": float(len(changes_in_place)),
        "sweeps_saved_in_place": float(len(changes_sync) - len(changes_in_place)),
        "v_pi_max_error": float(np.max(np.abs(v_sync - v_exact))),
        "v_pi_in_place_max_error": float(np.max(np.abs(v_in_place - v_exact))),
        "policy_iteration_improvements": float(improvements),
        "value_iteration_sweeps": float(len(changes_vi)),
        "v_star_max_error": float(np.max(np.abs(v_star + steps_to_corner))),
        "policy_vs_value_iteration_gap": float(np.max(np.abs(v_pi_star - v_star))),
        "lake_value_iteration_sweeps": float(len(lake_changes)),
        "lake_policies_agree": float(np.all(lake_vi_policy[np.arange(len(lake_P)),
                                                           lake_pi.argmax(1)] > 0)),
        "lake_v_start": float(lake_v_star[0]),
        "lake_success_rate": played,
        "lake_value_gap": abs(played - float(lake_v_star[0])),
    }


if __name__ == "__main__":
    cli.main(__name__)
