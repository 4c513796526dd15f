"""Model-free prediction and control: Monte-Carlo, TD, n-step TD, TD(lambda), SARSA, Q-learning.

Follows the post on model-free RL (Sutton & Barto chapters 5-7 and 12, David Silver's lectures 4
and 5). Without the transition table, values are learned from sampled experience only. The file
is about 600 lines because it holds the post's seven methods side by side, each a short
function, run on the book's random walks, cliff and windy gridworld and on the post's two doors.

Prediction (estimate v_pi of a fixed policy; alpha the step size, gamma = 1 on the random walks)::

    Monte-Carlo      V(S_t) += alpha * (G_t - V(S_t))                 G_t = the whole return
    TD(0)            V(S_t) += alpha * (R_{t+1} + V(S_{t+1}) - V(S_t))
    n-step TD        target R_{t+1} + ... + R_{t+n} + V(S_{t+n})     (n = 1 TD, n = inf MC)
    TD(lambda)       delta = R + V(S') - V(S);  e = lambda * e;  e(S) += 1;  V += alpha*delta*e
                     (eligibility traces spread each TD error back over recently visited states)

Control (learn q and act epsilon-greedily on it)::

    SARSA            Q(S,A) += alpha * (R + gamma * Q(S',A') - Q(S,A))      A' = the next action
    Q-learning       Q(S,A) += alpha * (R + gamma * max_a Q(S',a) - Q(S,A))
    SARSA(lambda)    delta as in SARSA, spread over (state, action) traces as in TD(lambda)

Run:  python -m minimal.demos.model_free [--quick] [--seed 0]

Figures (in out_dir), one per experiment:
    random_walk_td_vs_mc.png    example 6.2 / figure 6.2: TD(0)'s estimates on the 5-state walk
                                after 0, 1, 10, 100 episodes, and the RMS error against the true
                                values 1/6..5/6 for TD and constant-alpha first-visit MC
    random_walk_nstep.png       figure 7.2: RMS error over the first 10 episodes of the 19-state
                                walk against alpha for n = 1, 2, 4, ..., 512: intermediate n win
    random_walk_td_lambda.png   figure 12.6: the same for online TD(lambda) with accumulating
                                traces; lambda = 0 is TD(0), lambda = 1 is like MC
    cliff_walk.png              example 6.6: reward per episode of SARSA and Q-learning with
                                epsilon = 0.1, and their greedy paths on the grid: Q-learning
                                learns the optimal path along the edge (and falls off while
                                exploring), SARSA learns the safe path it can follow with epsilon.
                                With epsilon decaying linearly to 0 the falls stop: Q-learning's
                                online reward climbs to the optimal -13 and overtakes SARSA's,
                                which keeps the safe path it learned while exploring
    windy_gridworld.png         example 6.5: episodes completed against time steps for SARSA and
                                SARSA(lambda), and the 15-step path they learn against the wind
    two_doors.png               the post's two doors (+1 always, or +100 one time in ten): a greedy
                                agent settles for +1; epsilon-greedy finds the door worth 10

Settings that matter: alpha (too large and the long walks' errors blow up, see the alpha
sweeps) and epsilon (it sets the price SARSA pays for safety and Q-learning for its optimism).

Departures: in each run all prediction methods learn from the same sampled episodes (common
random numbers), which makes their curves comparable with fewer runs. SARSA(lambda) uses
replacing traces and, on the windy grid, epsilon decaying to 0 (the book's example 6.5 uses
plain SARSA with a constant 0.1). The post's Q-learning code had bugs that are not reproduced
here: its SARSA bootstrapped with max (that is Q-learning), and it used an argmax index as a
value. The network value function with experience replay and a frozen target network is the
DQN demo (dqn.py), which has the engine for it.

Results (seed 0, 2 cores):

    measure                                         quick (~40 s)    full (defaults)
    5-state walk RMS after 100 episodes, TD / MC    0.037 / 0.127    0.037 / 0.128
    19-state walk best RMS, n-step TD / TD(lambda)  0.259 / 0.260    0.255 / 0.251
    cliff: Q-learning edge path / SARSA off edge    100% / 88%       50/50 / 43/50
    cliff, epsilon decayed: final reward Q / SARSA  -13 / -17.1      -13.5 / -17
    windy: SARSA(lambda) speed-up, 50 episodes      1.78x            1.7x
    two doors: prefer +100, greedy / epsilon        13% / 99.3%      11% / 99.5%

With epsilon 0.1 the online reward is about -25 for SARSA and -50 for Q-learning (the book's
figure 6.4).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import matplotlib
import matplotlib.pyplot as plt
import numpy as np

from minimal.app import cli, viz
from minimal.errors import ConfigError
from minimal.rl import envs
from minimal.rl.tabular import epsilon_greedy, greedy_path

matplotlib.use("Agg")  # figures go to files; no display needed


@dataclass
class Config:
    seed: int = 0  # seed for every random number in the run
    walk_runs: int = 100  # independent runs averaged for each random-walk curve
    walk_episodes: int = 100  # episodes on the 5-state walk (example 6.2)
    td_alphas: tuple = (0.15, 0.1, 0.05)  # TD(0) step sizes on the 5-state walk
    mc_alphas: tuple = (0.01, 0.02, 0.03, 0.04)  # Monte-Carlo step sizes on the 5-state walk
    long_walk_runs: int = 100  # runs for the 19-state n-step TD and TD(lambda) sweeps
    long_walk_episodes: int = 10  # episodes whose RMS error is averaged (figure 7.2)
    n_steps: tuple = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)  # n of n-step TD
    lambdas: tuple = (0.0, 0.4, 0.8, 0.9, 0.95, 0.975, 0.99, 1.0)  # lambda of TD(lambda)
    alpha_points: int = 11  # step sizes from 0 to 1 tried on the 19-state walk
    cliff_runs: int = 50  # runs averaged on the cliff walk
    cliff_episodes: int = 500  # episodes per cliff run
    cliff_alpha: float = 0.5  # SARSA / Q-learning step size on the cliff
    epsilon: float = 0.1  # exploration rate (the start value when it decays)
    windy_runs: int = 10  # runs averaged on the windy gridworld
    windy_episodes: int = 170  # episodes per windy run (example 6.5)
    windy_alpha: float = 0.5  # SARSA / SARSA(lambda) step size on the windy gridworld
    windy_lambda: float = 0.8  # trace decay of SARSA(lambda) (replacing traces)
    door_runs: int = 1000  # agents in the two-door experiment
    door_tries: int = 1000  # times each agent picks a door
    out_dir: str = "outputs/model_free"  # where figures are written

    def __post_init__(self):
        cli.validate(self, whole=("seed",),
                     counts=("walk_runs", "walk_episodes", "long_walk_runs",
                             "long_walk_episodes", "n_steps", "cliff_runs", "cliff_episodes",
                             "windy_runs", "windy_episodes", "door_runs", "door_tries"),
                     nonempty=("td_alphas", "mc_alphas", "n_steps", "lambdas"),
                     positive=("td_alphas", "mc_alphas", "cliff_alpha", "windy_alpha"),
                     fractions=("td_alphas", "mc_alphas", "lambdas", "cliff_alpha", "epsilon",
                                "windy_alpha", "windy_lambda"))
        cli.validate(self, counts=("alpha_points",))
        if self.alpha_points < 2:  # a sweep from 0 to 1 needs both ends
            raise ConfigError(f"alpha_points (--alpha-points) must be a whole number >= 2, "
                              f"got {self.alpha_points!r}")


QUICK = {"walk_runs": 30, "long_walk_runs": 8, "alpha_points": 6, "cliff_runs": 8,
         "windy_runs": 4, "door_runs": 150}

TARGETS = {
    "walk5_td_final_rms": ("<=", 0.08),  # TD(0) alpha 0.05 after 100 episodes (book: ~0.05)
    "walk19_best_nstep_rms": ("<=", 0.35),  # best n and alpha, first 10 episodes (book: ~0.27)
    "walk19_best_td_lambda_rms": ("<=", 0.35),
    "cliff_qlearning_edge_rate": (">=", 0.9),  # runs whose greedy path is the 13-step edge path
    "cliff_sarsa_safe_rate": (">=", 0.75),  # runs whose greedy path keeps off the edge
    "cliff_sarsa_reward_advantage": (">=", 10.0),  # SARSA's online reward minus Q-learning's
    "cliff_decayed_qlearning_final_reward": (">=", -14.0),  # optimum -13 once epsilon is ~0
    "windy_sarsa_lambda_path_steps": ("<=", 17.0),  # median greedy path (the optimum is 15)
    "windy_lambda_speedup": (">=", 1.3),  # SARSA's steps for 50 episodes / SARSA(lambda)'s
    "doors_epsilon_best_rate": (">=", 0.9),  # epsilon-greedy agents that prefer the +100 door
    "doors_greedy_best_rate": ("<=", 0.3),  # greedy agents that do
}


# --- prediction on the random walks -------------------------------------------------------
Walk = tuple[list[int], list[float]]  # states S_0..S_T (S_T terminal), rewards R_1..R_T


def play_random_walk(env: envs.RandomWalk) -> Walk:
    """One episode of the walk (the environment must already be seeded)."""
    state, _ = env.reset()
    states, rewards, terminated = [state], [], False
    while not terminated:
        state, reward, terminated, _, _ = env.step(0)
        states.append(state)
        rewards.append(reward)
    return states, rewards


def monte_carlo_update(values: np.ndarray, episode: Walk, alpha: float) -> None:
    """First-visit constant-alpha MC: move V(S_t) toward the return that followed it."""
    states, rewards = episode
    returns = np.cumsum(rewards[::-1])[::-1]  # G_t = R_{t+1} + ... + R_T (gamma = 1)
    seen = set()
    for state, ret in zip(states[:-1], returns):
        if state not in seen:
            seen.add(state)
            values[state] += alpha * (ret - values[state])


def td0_update(values: np.ndarray, episode: Walk, alpha: float) -> None:
    """TD(0), step by step: the target is one reward plus the current estimate of the next state.
    Terminal states keep value 0, so no special case is needed."""
    states, rewards = episode
    for t, reward in enumerate(rewards):
        values[states[t]] += alpha * (reward + values[states[t + 1]] - values[states[t]])


def n_step_td_update(values: np.ndarray, episode: Walk, alpha: float, n: int) -> None:
    """n-step TD (Sutton & Barto 7.1): the target sums n rewards and then bootstraps.

    Updating tau = 0, 1, ... in order reads each bootstrap value at the same moment the online
    algorithm would (time tau + n), so replaying a recorded episode gives the same result.
    """
    states, rewards = episode
    final = len(rewards)
    for tau in range(final):
        horizon = min(tau + n, final)
        target = sum(rewards[tau:horizon])
        if horizon < final:
            target += values[states[horizon]]
        values[states[tau]] += alpha * (target - values[states[tau]])


def td_lambda_update(values: np.ndarray, episode: Walk, alpha: float, lam: float) -> None:
    """Online TD(lambda) with accumulating eligibility traces (the backward view)."""
    states, rewards = episode
    traces = np.zeros_like(values)
    for t, reward in enumerate(rewards):
        delta = reward + values[states[t + 1]] - values[states[t]]
        traces *= lam  # gamma = 1
        traces[states[t]] += 1.0
        values += alpha * delta * traces


def rms_error(values: np.ndarray, true_values: np.ndarray) -> float:
    return float(np.sqrt(np.mean((values[1:-1] - true_values) ** 2)))


def learning_curve(update, episodes: list[Walk], initial: np.ndarray, true_values,
                   **settings) -> np.ndarray:
    """RMS error after each episode (index 0 = before learning)."""
    values = initial.copy()
    errors = [rms_error(values, true_values)]
    for episode in episodes:
        update(values, episode, **settings)
        errors.append(rms_error(values, true_values))
    return np.array(errors)


def td_versus_mc(config: Config) -> dict:
    """Example 6.2 on the 5-state walk."""
    env = envs.RandomWalk(5)
    env.reset(seed=config.seed)
    true_values = env.true_values()
    initial = np.full(env.n_states, 0.5)
    initial[[0, -1]] = 0.0  # terminal states are worth nothing
    # keyed by (method, alpha); the figure writes the label
    curves = {("TD", a): [] for a in config.td_alphas}
    curves.update({("MC", a): [] for a in config.mc_alphas})
    snapshots = {}
    progress = cli.Progress(config.walk_runs, label="5-state walk run")
    for run in range(config.walk_runs):
        episodes = [play_random_walk(env) for _ in range(config.walk_episodes)]
        for alpha in config.td_alphas:
            curves["TD", alpha].append(
                learning_curve(td0_update, episodes, initial, true_values, alpha=alpha))
        for alpha in config.mc_alphas:
            curves["MC", alpha].append(learning_curve(
                monte_carlo_update, episodes, initial, true_values, alpha=alpha))
        if run == 0:  # the left panel of figure 6.2: one run of TD(0), alpha 0.1
            values = initial.copy()
            snapshots[0] = values[1:-1].copy()
            for count, episode in enumerate(episodes, start=1):
                td0_update(values, episode, 0.1)
                if count in (1, 10, 100):
                    snapshots[count] = values[1:-1].copy()
        progress.update(run + 1)
    return {"curves": {name: np.mean(c, axis=0) for name, c in curves.items()},
            "snapshots": snapshots, "true_values": true_values}


def long_walk_sweep(config: Config, update, parameter: str, settings: tuple
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Figures 7.2 / 12.6: mean RMS error over the first episodes, for each setting and alpha."""
    env = envs.RandomWalk(19)
    env.reset(seed=config.seed + 1)
    true_values = env.true_values()
    alphas = np.linspace(0.0, 1.0, config.alpha_points)
    errors = np.zeros((len(settings), len(alphas)))
    initial = np.zeros(env.n_states)
    progress = cli.Progress(config.long_walk_runs, label=f"19-state walk run ({parameter})")
    for run in range(config.long_walk_runs):
        episodes = [play_random_walk(env) for _ in range(config.long_walk_episodes)]
        for i, setting in enumerate(settings):
            for j, alpha in enumerate(alphas):
                with np.errstate(over="ignore", invalid="ignore"):  # big alpha may diverge
                    curve = learning_curve(update, episodes, initial, true_values,
                                           alpha=alpha, **{parameter: setting})
                errors[i, j] += np.mean(curve[1:]) / config.long_walk_runs
        progress.update(run + 1)
    return alphas, np.nan_to_num(errors, nan=np.inf)


# --- control on the cliff and the windy gridworld -----------------------------------------
def sarsa(env: envs.TabularEnv, episodes: int, alpha: float, epsilons: np.ndarray,
          rng: np.random.Generator, seed: int, gamma: float = 1.0
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """On-policy TD control. Returns Q, the reward of each episode and its length."""
    q = np.zeros((env.n_states, env.n_actions))
    totals, lengths = np.zeros(episodes), np.zeros(episodes)
    state, _ = env.reset(seed=seed)
    for episode in range(episodes):
        action = epsilon_greedy(q[state], epsilons[episode], rng)
        terminated = False
        while not terminated:
            next_state, reward, terminated, _, _ = env.step(action)
            next_action = epsilon_greedy(q[next_state], epsilons[episode], rng)
            # Bootstrap with the action that will really be taken, exploration included.
            target = reward + gamma * (not terminated) * q[next_state, next_action]
            q[state, action] += alpha * (target - q[state, action])
            state, action = next_state, next_action
            totals[episode] += reward
            lengths[episode] += 1
        state, _ = env.reset()
    return q, totals, lengths


def q_learning(env: envs.TabularEnv, episodes: int, alpha: float, epsilons: np.ndarray,
               rng: np.random.Generator, seed: int, gamma: float = 1.0
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Off-policy TD control: act epsilon-greedily, learn about the greedy policy."""
    q = np.zeros((env.n_states, env.n_actions))
    totals, lengths = np.zeros(episodes), np.zeros(episodes)
    state, _ = env.reset(seed=seed)
    for episode in range(episodes):
        terminated = False
        while not terminated:
            action = epsilon_greedy(q[state], epsilons[episode], rng)
            next_state, reward, terminated, _, _ = env.step(action)
            # Bootstrap with the best next action, whatever the next action will be.
            target = reward + gamma * (not terminated) * q[next_state].max()
            q[state, action] += alpha * (target - q[state, action])
            state = next_state
            totals[episode] += reward
            lengths[episode] += 1
        state, _ = env.reset()
    return q, totals, lengths


def sarsa_lambda(env: envs.TabularEnv, episodes: int, alpha: float, epsilons: np.ndarray,
                 lam: float, rng: np.random.Generator, seed: int, gamma: float = 1.0
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SARSA(lambda) with replacing traces: one reward updates every recent (state, action).

    Replacing (e = 1 rather than e += 1) keeps the traces bounded when an early, wandering
    episode revisits the same cells many times.
    """
    q = np.zeros((env.n_states, env.n_actions))
    totals, lengths = np.zeros(episodes), np.zeros(episodes)
    state, _ = env.reset(seed=seed)
    for episode in range(episodes):
        traces = np.zeros_like(q)
        action = epsilon_greedy(q[state], epsilons[episode], rng)
        terminated = False
        while not terminated:
            next_state, reward, terminated, _, _ = env.step(action)
            next_action = epsilon_greedy(q[next_state], epsilons[episode], rng)
            delta = reward + gamma * (not terminated) * q[next_state, next_action] \
                - q[state, action]
            traces *= gamma * lam
            traces[state, action] = 1.0
            q += alpha * delta * traces
            state, action = next_state, next_action
            totals[episode] += reward
            lengths[episode] += 1
        state, _ = env.reset()
    return q, totals, lengths


def is_edge_path(env: envs.CliffWalk, path: list[int]) -> bool:
    """The optimal path: up from S, right along the row above the cliff, down into G."""
    return len(path) == 14 and all(env.cell(s)[0] >= 2 for s in path)


def edge_cells(env: envs.CliffWalk, path: list[int]) -> int:
    """How many cells of the path lie right above the cliff (row 2, columns 1 to 10)."""
    return sum(env.cell(s)[0] == 2 and 1 <= env.cell(s)[1] <= 10 for s in path)


def keeps_off_the_edge(env: envs.CliffWalk, path: list[int], reached: bool) -> bool:
    """Reaches G with at most 2 of the 10 edge cells (the edge path uses all 10)."""
    return reached and edge_cells(env, path) <= 2


def cliff_experiment(config: Config, rng: np.random.Generator) -> dict:
    env = envs.CliffWalk()
    constant = np.full(config.cliff_episodes, config.epsilon)
    # Decaying exploration: linearly from epsilon to 0, so the last episodes are greedy.
    decaying = config.epsilon * (1 - np.arange(config.cliff_episodes) / config.cliff_episodes)
    methods = {"SARSA": (sarsa, constant), "Q-learning": (q_learning, constant),
               "SARSA, epsilon decaying": (sarsa, decaying),
               "Q-learning, epsilon decaying": (q_learning, decaying)}
    rewards = {name: [] for name in methods}
    paths = {name: [] for name in methods}
    progress = cli.Progress(config.cliff_runs, label="cliff run")
    for run in range(config.cliff_runs):
        for name, (learn, epsilons) in methods.items():
            q, totals, _ = learn(env, config.cliff_episodes, config.cliff_alpha, epsilons, rng,
                                 seed=config.seed + run)
            rewards[name].append(totals)
            paths[name].append(greedy_path(env.P, q, env.start))
        progress.update(run + 1)
    return {"env": env, "rewards": {k: np.mean(v, axis=0) for k, v in rewards.items()},
            "paths": paths}


def windy_experiment(config: Config, rng: np.random.Generator) -> dict:
    env = envs.WindyGridworld()
    # Exploration decays linearly to 0, so the last episodes follow (and fix) the greedy path.
    epsilons = config.epsilon * (1 - np.arange(config.windy_episodes) / config.windy_episodes)
    results = {"SARSA": [], "SARSA(lambda)": []}
    progress = cli.Progress(config.windy_runs, label="windy run")
    for run in range(config.windy_runs):
        seed = config.seed + run
        q, _, lengths = sarsa(env, config.windy_episodes, config.windy_alpha, epsilons, rng, seed)
        results["SARSA"].append((q, lengths))
        q, _, lengths = sarsa_lambda(env, config.windy_episodes, config.windy_alpha, epsilons,
                                     config.windy_lambda, rng, seed)
        results["SARSA(lambda)"].append((q, lengths))
        progress.update(run + 1)
    start = int(np.argmax(env.start_distribution))
    summary = {}
    for name, runs in results.items():
        path_steps = [len(greedy_path(env.P, q, start)[0]) - 1 for q, _ in runs]
        summary[name] = {"lengths": np.array([lengths for _, lengths in runs]),
                         "path": greedy_path(env.P, runs[0][0], start)[0],
                         "median_path_steps": float(np.median(path_steps))}
    labels = {"SARSA": "SARSA", "SARSA(lambda)": f"SARSA(lambda={config.windy_lambda})"}
    return {"env": env, "results": summary, "labels": labels}


# --- exploration: the two doors -----------------------------------------------------------
def door_experiment(config: Config, rng: np.random.Generator) -> dict:
    """Sample-average door values; greedy vs epsilon-greedy agents, each in its own world."""
    env = envs.TwoDoors()
    env.reset(seed=config.seed)
    settings = {"greedy": 0.0, f"epsilon-greedy ({config.epsilon})": config.epsilon}
    out = {}
    for name, epsilon in settings.items():
        rewards = np.zeros((config.door_runs, config.door_tries))
        prefers_jackpot = np.zeros(config.door_runs)
        for run in range(config.door_runs):
            estimates, counts = np.zeros(2), np.zeros(2)
            for t in range(config.door_tries):
                door = epsilon_greedy(estimates, epsilon, rng)
                env.reset()
                _, reward, _, _, _ = env.step(door)
                counts[door] += 1
                estimates[door] += (reward - estimates[door]) / counts[door]  # sample mean
                rewards[run, t] = reward
            prefers_jackpot[run] = estimates[1] > estimates[0]
        out[name] = {"reward": rewards.mean(axis=0), "best_rate": float(prefers_jackpot.mean())}
    return out


# --- figures ------------------------------------------------------------------------------
def figure_td_vs_mc(result: dict, path: str) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    labels = list("ABCDE")
    for count, values in result["snapshots"].items():
        axes[0].plot(labels, values, marker="o", label=f"after {count} episodes")
    axes[0].plot(labels, result["true_values"], "k--", label="true values")
    axes[0].set_xlabel("state")
    axes[0].set_ylabel("estimated value")
    axes[0].set_title("TD(0), alpha 0.1, one run")
    axes[0].legend(fontsize=8)
    for (method, alpha), curve in result["curves"].items():
        axes[1].plot(curve, label=f"{method} alpha={alpha}",
                     linestyle="-" if method == "TD" else "--")
    axes[1].set_xlabel("episodes")
    axes[1].set_ylabel("RMS error, averaged over states and runs")
    axes[1].set_title("Random walk, 5 states (Sutton & Barto fig. 6.2)")
    axes[1].legend(fontsize=8)
    viz.save_figure(fig, path)


def figure_alpha_sweep(alphas, errors, settings, name, title, path):
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for setting, row in zip(settings, errors):
        ax.plot(alphas, np.where(row < 0.55, row, np.nan), marker=".",
                label=f"{name} = {setting}")
    ax.set_ylim(0.2, 0.56)
    ax.set_xlabel("alpha")
    ax.set_ylabel("RMS error, first episodes (curves cut at 0.55)")
    ax.set_title(title)
    ax.legend(fontsize=8, ncol=2)
    viz.save_figure(fig, path)


def figure_cliff(result: dict, path: str) -> None:
    fig = plt.figure(figsize=(13, 7.5))
    top = fig.add_subplot(2, 2, 1)
    for name, curve in result["rewards"].items():
        top.plot(viz.smooth(curve, 10), label=name, lw=1.2)
    top.set_ylim(-110, 0)
    top.set_xlabel("episode")
    top.set_ylabel("sum of rewards in the episode\n(mean over runs, 10-episode window)")
    top.set_title("Cliff walk: online reward, epsilon-greedy")
    top.legend(fontsize=8)
    env = result["env"]
    for position, (names, title) in enumerate([
            (("SARSA", "Q-learning"), "greedy paths after learning, epsilon = 0.1"),
            (("SARSA, epsilon decaying", "Q-learning, epsilon decaying"),
             "greedy paths, epsilon decayed to 0")], start=3):
        ax = fig.add_subplot(2, 2, position)
        paths = {name: [env.cell(s) for s in result["paths"][name][0][0]] for name in names}
        viz.draw_grid_world(ax, env.layout, paths)
        ax.set_title(f"{title} (run 0)")
    ax = fig.add_subplot(2, 2, 2)
    names = list(result["paths"])
    edge = [np.mean([is_edge_path(env, p) for p, _ in result["paths"][n]]) for n in names]
    safe = [np.mean([keeps_off_the_edge(env, p, r) for p, r in result["paths"][n]])
            for n in names]
    x = np.arange(len(names))
    ax.bar(x - 0.2, edge, 0.4, label="greedy path = the edge path (13 steps)")
    ax.bar(x + 0.2, safe, 0.4, label="greedy path keeps off the edge (<= 2 of its 10 cells)")
    ax.set_xticks(x, [CLIFF_TICK_LABELS[n] for n in names], fontsize=8)
    ax.set_ylabel("fraction of runs")
    ax.set_ylim(0, 1.25)
    ax.legend(fontsize=8)
    ax.set_title("Which path each method learns")
    viz.save_figure(fig, path)


CLIFF_TICK_LABELS = {"SARSA": "SARSA", "Q-learning": "Q-learning",
                     "SARSA, epsilon decaying": "SARSA,\nepsilon decaying",
                     "Q-learning, epsilon decaying": "Q-learning,\nepsilon decaying"}


def figure_windy(result: dict, path: str) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    for name, res in result["results"].items():
        steps = np.cumsum(res["lengths"].mean(axis=0))
        axes[0].plot(steps, np.arange(1, len(steps) + 1), label=result["labels"][name])
    axes[0].set_xlabel("time steps (mean over runs)")
    axes[0].set_ylabel("episodes completed")
    axes[0].set_title("Windy gridworld (Sutton & Barto fig. 6.3)")
    axes[0].legend()
    env = result["env"]
    viz.draw_grid_world(axes[1], env.layout,
                        {result["labels"][name]: [env.cell(s) for s in res["path"]]
                         for name, res in result["results"].items()},
                        wind=envs.WindyGridworld.WIND)
    axes[1].set_title("greedy paths after learning (run 0); wind strength below")
    viz.save_figure(fig, path)


def figure_doors(result: dict, tries: int, path: str) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    window = max(1, tries // 20)
    for name, res in result.items():
        axes[0].plot(np.arange(1, tries + 1), viz.smooth(res["reward"], window), label=name)
        axes[1].bar(name, res["best_rate"])
        axes[1].text(name, res["best_rate"] + 0.02, f"{res['best_rate']:.2f}", ha="center")
    axes[0].axhline(10, color="k", ls="--", lw=1, label="always the +100 door (mean 10)")
    axes[0].axhline(1, color="grey", ls=":", lw=1, label="always the +1 door")
    axes[0].set_xlabel("try")
    axes[0].set_ylabel(f"mean reward over agents ({window}-try window)")
    axes[0].set_title("Two doors: +1 always, or +100 one time in ten")
    axes[0].legend(fontsize=8)
    axes[1].set_ylim(0, 1.1)
    axes[1].set_ylabel("fraction of agents that end up preferring +100")
    axes[1].set_title("Without exploration, first impressions stick")
    viz.save_figure(fig, path)


# --- the demo -----------------------------------------------------------------------------
def run(config: Config) -> dict[str, float]:
    os.makedirs(config.out_dir, exist_ok=True)
    rng = np.random.default_rng(config.seed)

    def figure(name: str) -> str:
        return os.path.join(config.out_dir, name)

    walk = td_versus_mc(config)
    figure_td_vs_mc(walk, figure("random_walk_td_vs_mc.png"))
    alphas, nstep_errors = long_walk_sweep(config, n_step_td_update, "n", config.n_steps)
    figure_alpha_sweep(alphas, nstep_errors, config.n_steps, "n",
                       "n-step TD on the 19-state walk (Sutton & Barto fig. 7.2)",
                       figure("random_walk_nstep.png"))
    alphas, lambda_errors = long_walk_sweep(config, td_lambda_update, "lam", config.lambdas)
    figure_alpha_sweep(alphas, lambda_errors, config.lambdas, "lambda",
                       "online TD(lambda), accumulating traces, 19-state walk (fig. 12.6)",
                       figure("random_walk_td_lambda.png"))

    cliff = cliff_experiment(config, rng)
    figure_cliff(cliff, figure("cliff_walk.png"))
    windy = windy_experiment(config, rng)
    figure_windy(windy, figure("windy_gridworld.png"))
    doors = door_experiment(config, rng)
    figure_doors(doors, config.door_tries, figure("two_doors.png"))

    env = cliff["env"]
    last = slice(-100, None)
    td_name, mc_name = ("TD", min(config.td_alphas)), ("MC", min(config.mc_alphas))
    lam_name = "SARSA(lambda)"
    greedy_name, epsilon_name = list(doors)
    return {
        "walk5_td_final_rms": float(walk["curves"][td_name][-1]),
        "walk5_mc_final_rms": float(walk["curves"][mc_name][-1]),
        "walk19_best_nstep_rms": float(nstep_errors.min()),
        "walk19_best_n": float(config.n_steps[np.unravel_index(
            nstep_errors.argmin(), nstep_errors.shape)[0]]),
        "walk19_best_td_lambda_rms": float(lambda_errors.min()),
        "cliff_qlearning_edge_rate": float(np.mean(
            [is_edge_path(env, p) for p, _ in cliff["paths"]["Q-learning"]])),
        "cliff_sarsa_safe_rate": float(np.mean(
            [keeps_off_the_edge(env, p, r) for p, r in cliff["paths"]["SARSA"]])),
        "cliff_sarsa_reward_advantage": float(np.mean(cliff["rewards"]["SARSA"][last])
                                              - np.mean(cliff["rewards"]["Q-learning"][last])),
        "cliff_decayed_qlearning_final_reward": float(
            np.mean(cliff["rewards"]["Q-learning, epsilon decaying"][-20:])),
        "cliff_decayed_sarsa_final_reward": float(
            np.mean(cliff["rewards"]["SARSA, epsilon decaying"][-20:])),
        "windy_sarsa_path_steps": windy["results"]["SARSA"]["median_path_steps"],
        "windy_sarsa_lambda_path_steps": windy["results"][lam_name]["median_path_steps"],
        "windy_lambda_speedup": float(windy["results"]["SARSA"]["lengths"][:, :50].sum()
                                      / windy["results"][lam_name]["lengths"][:, :50].sum()),
        "doors_greedy_best_rate": doors[greedy_name]["best_rate"],
        "doors_epsilon_best_rate": doors[epsilon_name]["best_rate"],
    }


if __name__ == "__main__":
    cli.main(__name__)
