"""CartPole: random search, hill climbing, and a policy gradient with a value baseline.

Follows the post "Simple reinforcement learning methods to learn CartPole". A cart carries an
upright pole; each step the agent pushes the cart left or right and earns +1 while the pole stays
within 12 degrees and the cart within 2.4 units of the centre. Episodes last at most 200 steps,
and an agent "solves" the task the first time it lasts a whole 200-step episode. Three ways to
find a policy, from blind to gradient-based: guess linear weights at random, perturb the best
weights so far (hill climbing, which gets stuck; two fixes unstick it), and follow the policy
gradient with a learned value baseline (the smallest use of the engine in the project).

Key equations (obs = (x, x_dot, theta, theta_dot))::

    sign policy        action = 1 (push right) if w . obs >= 0 else 0,   w in R^4
    random search      draw w ~ U[-1, 1]^4 afresh every episode until one lasts 200 steps
    hill climbing      w' = w + noise * U[-1, 1]^4; keep w' if its return is strictly better
                       fix 1 (growing noise): noise *= growth after each try that is not better,
                       back to the base noise after one that is (capped at max_noise)
                       fix 2 (several episodes): a try's return is the mean over k episodes
    policy gradient    pi(a|s) = softmax(s W), W (4, 2);  G_t = sum_k 0.97^k r_{t+k}
                       A_t = G_t - V(s_t) with V a 4-10-1 ReLU network
                       policy loss = -sum_t log pi(a_t|s_t) A_t            (Adam 0.01)
                       value loss  = 1/2 sum_t (V(s_t) - G_t)^2            (Adam 0.1)
                       one update of each per episode; stop at the first 200-step episode

Each solution is checked: its weights are played for 100 more episodes and the mean return
reported (a lucky 200 in one episode may average far less).

Run:  python -m minimal.demos.cartpole [--quick] [--seed 0]

Figures (in out_dir):
    random_search.png      histogram of episodes needed over the trials, mean vs the post's 13.53
    hill_climbing.png      histograms of episodes needed for hill climbing done right and with
                           each fix (and both), with the fraction of trials stuck after 2000 tries
    policy_gradient.png    episodes needed over many seeds, and the learning curves (return per
                           episode until solved, every seed, with their mean and spread)

Settings: gymnasium's ``CartPole-v0`` (the 200-step version; gymnasium 1.x still registers it
with a deprecation warning, silenced here). Random search and hill climbing run thousands of
short episodes, so they use ``batch_returns``: ``cartpole_step``, a NumPy re-implementation of
gymnasium's equations, steps many carts at once (tests/demos/test_cartpole.py checks it step for
step against gymnasium's CartPole); its start states are drawn from the demo's rng with
gymnasium's distribution, U(-0.05, 0.05)^4. The policy gradient plays gymnasium's env itself,
seeding every episode with ``reset(seed=...)`` from the rng.

Departures from the post: hill climbing uses each episode's return (the post's snippet reset
the reward to 0 and ignored the return, so it never moved; its 7.43 could not be reproduced);
the fixes are this demo's concrete versions of the two the post proposes in words (noise x1.1
per failed try, at most 2.0; 5 episodes per try). For speed, a climber that keeps failing plays
its next tries together (they all start from the same w, so this is exact; see `hill_climbing`).

Results (seed 0, 2 cores; episodes to solve, mean / median over trials; "stuck" = not solved
after 2000 tries; "check" = mean return of the found weights over 100 fresh episodes; the post's
numbers in brackets; the full record is in benchmarks/README.md):

    method               quick (200 trials, 8 seeds)    full (1000 trials, 50 seeds)
    random search        15.1, check 179                13.65 [13.53], check 176
    hill climbing        61% stuck; 230 / 50.5          55% stuck; 181 / 19.5 [7.43]
    + growing noise      0% stuck; 59 / 55              0% stuck; 54 / 44
    + 5 episodes/try     54% stuck; 1417 / 505          56% stuck; 1247 / 325
    + both fixes         0% stuck; 360 / 290            0.1% stuck; 398 / 320
    policy gradient      8/8 solve, mean 207            50/50 solve, mean 184
    time                 ~70 s                          3 minutes

A climber is stuck when no weights within 0.1 of its own beat its best return so far; growing
the noise while stuck turns it into a random searcher until it finds a better region.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import gymnasium as gym
import matplotlib
import numpy as np

from minimal import functional as F
from minimal import nn, optim
from minimal.app import cli, viz
from minimal.autograd import Parameter, Tensor
from minimal.distributions import Categorical

matplotlib.use("Agg")
import matplotlib.pyplot as plt

POST_RANDOM_SEARCH_MEAN = 13.53
POST_HILL_CLIMBING_MEAN = 7.43


@dataclass
class Config:
    seed: int = 0  # seed for every random number in the run
    max_steps: int = 200  # episode length; a 200-step episode solves the task
    random_search_trials: int = 1000  # independent random-search runs
    random_search_max_episodes: int = 10000  # give up a random-search run after this many
    hill_climbing_trials: int = 1000  # independent hill-climbing runs per variant
    hill_climbing_tries: int = 2000  # tries before a hill-climbing run counts as stuck
    hill_climbing_noise: float = 0.1  # w' = w + noise * U[-1, 1]^4
    noise_growth: float = 1.1  # fix 1: noise multiplied by this after each failed try
    max_noise: float = 2.0  # fix 1: the noise never grows beyond this
    episodes_per_try: int = 5  # fix 2: a try's return is the mean over this many episodes
    check_episodes: int = 100  # episodes used to check each solution's weights
    pg_seeds: int = 50  # independent policy-gradient runs
    pg_max_episodes: int = 2000  # give up a policy-gradient run after this many episodes
    pg_policy_lr: float = 0.01  # Adam step for the softmax policy
    pg_value_lr: float = 0.1  # Adam step for the value network
    pg_hidden: int = 10  # hidden units of the value network
    gamma: float = 0.97  # discount of the policy gradient's returns
    out_dir: str = "outputs/cartpole"  # where figures are written

    def __post_init__(self):
        cli.validate(self, whole=("seed",),
                     counts=("max_steps", "random_search_trials", "random_search_max_episodes",
                             "hill_climbing_trials", "hill_climbing_tries", "episodes_per_try",
                             "check_episodes", "pg_seeds", "pg_max_episodes", "pg_hidden"),
                     positive=("hill_climbing_noise", "noise_growth", "max_noise",
                               "pg_policy_lr", "pg_value_lr"),
                     fractions=("gamma",))


QUICK = {"random_search_trials": 200, "hill_climbing_trials": 200, "pg_seeds": 8}

TARGETS = {
    "random_search_mean_episodes": ("<=", 20.0),  # the post: 13.53
    "hill_climbing_stuck_fraction": (">=", 0.3),  # the post: more than half
    "hill_climbing_growing_noise_stuck_fraction": ("<=", 0.05),  # fix 1 unsticks it
    "policy_gradient_solved_fraction": (">=", 0.9),
}


def make_env(max_steps: int = 200) -> gym.Env:
    """gymnasium's 200-step CartPole-v0 (or v1 cut to max_steps when that is not 200)."""
    if max_steps == 200:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # "v0 is out of date"
            return gym.make("CartPole-v0")
    return gym.make("CartPole-v1", max_episode_steps=max_steps)


# --- the environment, many carts at once ----------------------------------------------------
GRAVITY, MASSCART, MASSPOLE, HALF_LENGTH = 9.8, 1.0, 0.1, 0.5
TOTAL_MASS = MASSPOLE + MASSCART
POLEMASS_LENGTH = MASSPOLE * HALF_LENGTH
FORCE_MAG, TAU = 10.0, 0.02
THETA_THRESHOLD = 12 * 2 * np.pi / 360  # the pole falls beyond 12 degrees
X_THRESHOLD = 2.4  # the cart leaves the track beyond 2.4


def cartpole_step(state: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """gymnasium's CartPole dynamics (explicit Euler, tau 0.02) for rows of (x, x_dot, theta,
    theta_dot); action 1 pushes right, 0 left.

    The arithmetic follows gymnasium's CartPoleEnv.step operation by operation, so the states
    agree with it to the last bit (tests/demos/test_cartpole.py checks this).
    """
    x, x_dot, theta, theta_dot = state.T
    force = np.where(actions == 1, FORCE_MAG, -FORCE_MAG)
    costheta, sintheta = np.cos(theta), np.sin(theta)
    temp = (force + POLEMASS_LENGTH * np.square(theta_dot) * sintheta) / TOTAL_MASS
    thetaacc = (GRAVITY * sintheta - costheta * temp) / (
        HALF_LENGTH * (4.0 / 3.0 - MASSPOLE * np.square(costheta) / TOTAL_MASS))
    xacc = temp - POLEMASS_LENGTH * thetaacc * costheta / TOTAL_MASS
    return np.stack([x + TAU * x_dot, x_dot + TAU * xacc,
                     theta + TAU * theta_dot, theta_dot + TAU * thetaacc], axis=1)


def has_fallen(state: np.ndarray) -> np.ndarray:
    x, theta = state[:, 0], state[:, 2]
    return (x < -X_THRESHOLD) | (x > X_THRESHOLD) | (theta < -THETA_THRESHOLD) | (
        theta > THETA_THRESHOLD)


def sign_actions(weights: np.ndarray, observations: np.ndarray) -> np.ndarray:
    """The post's policy: push left (0) if w . obs < 0, else right (1); one row per cart."""
    return (np.einsum("ij,ij->i", observations, weights) >= 0).astype(np.int64)


def batch_returns(weights: np.ndarray, rng: np.random.Generator, max_steps: int) -> np.ndarray:
    """Return of one episode of the sign policy for each row of `weights` (n, 4), played at once.

    Only the carts still standing are stepped, so a batch of mostly short episodes is cheap.
    """
    state = rng.uniform(-0.05, 0.05, size=(len(weights), 4))  # gymnasium's start distribution
    returns = np.zeros(len(weights))
    standing = np.arange(len(weights))
    for _ in range(max_steps):
        actions = sign_actions(weights[standing], state.astype(np.float32))
        state = cartpole_step(state, actions)
        returns[standing] += 1  # +1 for every step, the falling one included (as gymnasium)
        up = ~has_fallen(state)
        if not up.all():
            state, standing = state[up], standing[up]
            if len(standing) == 0:
                break
    return returns


def run_episode(env: gym.Env, weights: np.ndarray, seed: int) -> float:
    """One episode of the sign policy in a gymnasium env; returns the total reward."""
    obs, _ = env.reset(seed=seed)
    total, done = 0.0, False
    while not done:
        action = 0 if np.dot(weights, obs) < 0 else 1
        obs, reward, terminated, truncated, _ = env.step(action)
        total += reward
        done = terminated or truncated
    return total


# --- random search and hill climbing --------------------------------------------------------
def random_search(trials: int, rng: np.random.Generator, max_steps: int = 200,
                  max_episodes: int = 10000) -> tuple[np.ndarray, np.ndarray]:
    """Episodes each trial needed to find a w that lasts max_steps (nan if never), and that w.

    All trials advance together: in round k every unsolved trial plays its k-th episode.
    """
    episodes = np.full(trials, np.nan)
    found = np.zeros((trials, 4))
    for episode in range(1, max_episodes + 1):
        active = np.flatnonzero(np.isnan(episodes))
        if len(active) == 0:
            break
        weights = rng.uniform(-1, 1, size=(len(active), 4))
        solved = batch_returns(weights, rng, max_steps) == max_steps
        episodes[active[solved]] = episode
        found[active[solved]] = weights[solved]
    return episodes, found


@dataclass
class HillClimbing:
    """One hill-climbing variant: base noise, its growth while stuck, episodes per try."""
    name: str
    noise: float = 0.1
    growth: float = 1.0  # 1.0: the noise never grows (the post's method)
    max_noise: float = 2.0
    episodes_per_try: int = 1


def hill_climbing(variants: list[HillClimbing], trials: int, rng: np.random.Generator,
                  tries: int = 2000, max_steps: int = 200, max_lookahead: int = 64
                  ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per variant: episodes each trial needed to solve (nan when stuck) and its final w.

    A try solves when its mean return over its episodes is max_steps (every episode lasted).

    Speed trick, exact: until a try improves, w stays put, so the next tries are independent
    draws around the same w and can be played at once. Each round a trial plays its next M
    tries together and keeps the *first* one that is strictly better; the tries after it are
    thrown away unplayed as far as the count goes, exactly as if the tries had run one by one.
    M doubles while a trial keeps failing (1 right after an improvement), so a stuck trial
    spends 2000 tries in a few dozen rounds. Every trial of every variant is in one batch.

    Each round: `_lookahead_tries` lays out the tries, `_perturbed_weights` draws them,
    `_mean_returns` plays them, and the first strictly better one per trial is kept.
    """
    trials_all = len(variants) * trials
    base_noise = np.repeat([v.noise for v in variants], trials)
    growth = np.repeat([v.growth for v in variants], trials)
    max_noise = np.repeat([v.max_noise for v in variants], trials)
    per_try = np.repeat([v.episodes_per_try for v in variants], trials)
    weights = rng.uniform(-1, 1, size=(trials_all, 4))
    best = np.zeros(trials_all)  # the post starts from bestreward = 0: the first try always wins
    failures = np.zeros(trials_all, dtype=np.int64)  # tries since the last improvement
    tries_done = np.zeros(trials_all, dtype=np.int64)
    episodes_used = np.zeros(trials_all, dtype=np.int64)
    solved_after = np.full(trials_all, np.nan)
    progress = cli.Progress(trials_all, label="trial finished")
    while True:
        active = np.flatnonzero(np.isnan(solved_after) & (tries_done < tries))
        progress.update(trials_all - len(active))
        if len(active) == 0:
            break
        lookahead = np.minimum(np.minimum(failures[active] + 1, max_lookahead),
                               tries - tries_done[active])
        owner, starts, offset = _lookahead_tries(lookahead)
        trial = active[owner]
        # fix 1: the noise after f failures is base * growth^f (capped); growth 1 keeps it fixed
        noise = np.minimum(base_noise[trial] * growth[trial] ** (failures[trial] + offset),
                           max_noise[trial])
        candidates = _perturbed_weights(weights[trial], noise, rng)
        mean_return = _mean_returns(candidates, per_try[trial], rng, max_steps)
        # keep each trial's first strictly better try (as in the post); count what it played
        better = mean_return > best[trial]
        first = np.minimum.reduceat(np.where(better, offset, tries), starts)
        improved = first < tries
        played = np.where(improved, first + 1, lookahead)
        tries_done[active] += played
        episodes_used[active] += played * per_try[active]
        failures[active] = np.where(improved, 0, failures[active] + played)
        winners = starts[improved] + first[improved]
        won = active[improved]
        weights[won] = candidates[winners]
        best[won] = mean_return[winners]
        done = mean_return[winners] == max_steps
        solved_after[won[done]] = episodes_used[won[done]]
    return {v.name: (solved_after[i * trials:(i + 1) * trials],
                     weights[i * trials:(i + 1) * trials])
            for i, v in enumerate(variants)}


def _lookahead_tries(lookahead: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lay out a round's tries, `lookahead[k]` of them for the k-th active trial, in one flat
    batch: each try's owner k, where each owner's tries start, and each try's place j in its
    owner's lookahead."""
    owner = np.repeat(np.arange(len(lookahead)), lookahead)
    starts = np.concatenate([[0], np.cumsum(lookahead)[:-1]])
    offset = np.arange(len(owner)) - starts[owner]
    return owner, starts, offset


def _perturbed_weights(weights: np.ndarray, noise: np.ndarray,
                       rng: np.random.Generator) -> np.ndarray:
    """w + noise * U[-1, 1]^4 for every try (a row of weights and a noise level each)."""
    return weights + noise[:, None] * rng.uniform(-1, 1, (len(weights), 4))


def _mean_returns(candidates: np.ndarray, episodes_each: np.ndarray, rng: np.random.Generator,
                  max_steps: int) -> np.ndarray:
    """Each try's mean return over its own number of episodes (fix 2), all played at once."""
    returns = batch_returns(np.repeat(candidates, episodes_each, axis=0), rng, max_steps)
    episode_owner = np.repeat(np.arange(len(candidates)), episodes_each)
    return np.bincount(episode_owner, returns, len(candidates)) / episodes_each


def check_solutions(weights: np.ndarray, rng: np.random.Generator, episodes: int,
                    max_steps: int = 200) -> np.ndarray:
    """Mean return of each w (rows) over `episodes` fresh episodes."""
    if len(weights) == 0:
        return np.zeros(0)
    returns = batch_returns(np.repeat(weights, episodes, axis=0), rng, max_steps)
    return returns.reshape(len(weights), episodes).mean(1)


# --- policy gradient with a value baseline --------------------------------------------------
def discounted_returns(rewards: np.ndarray, gamma: float) -> np.ndarray:
    """G_t = r_t + gamma r_{t+1} + gamma^2 r_{t+2} + ... for every t of one episode."""
    returns = np.zeros(len(rewards))
    running = 0.0
    for t in range(len(rewards) - 1, -1, -1):
        running = rewards[t] + gamma * running
        returns[t] = running
    return returns


def policy_loss(policy_weights: Tensor, states: Tensor, actions: np.ndarray,
                advantages: Tensor) -> Tensor:
    """-sum_t log pi(a_t|s_t) A_t with pi = softmax(s W): its gradient is the policy gradient."""
    log_pi = Categorical(states @ policy_weights).log_prob(actions)
    return -(log_pi * advantages).sum()


class ValueNet(nn.Module):
    """V(s): 4 -> hidden ReLU -> 1, as in the post."""

    def __init__(self, hidden: int, rng: np.random.Generator):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, hidden, rng=rng), nn.ReLU(),
                                 nn.Linear(hidden, 1, rng=rng))

    def forward(self, states: Tensor) -> Tensor:
        return self.net(states).reshape(-1)


def policy_gradient_run(config: Config, rng: np.random.Generator, env: gym.Env
                        ) -> tuple[int | None, list[float]]:
    """Train until the first 200-step episode; returns its number (None if never) and returns."""
    # The post's tf.get_variable default: Glorot-uniform weights, W of shape (4, 2).
    policy_weights = Parameter(nn.xavier_uniform((4, 2), rng))
    value = ValueNet(config.pg_hidden, rng)
    policy_optimizer = optim.Adam([policy_weights], lr=config.pg_policy_lr)
    value_optimizer = optim.Adam(value.parameters(), lr=config.pg_value_lr)
    history = []
    for episode in range(1, config.pg_max_episodes + 1):
        obs, _ = env.reset(seed=int(rng.integers(2**31)))
        states, actions, rewards, done = [], [], [], False
        while not done:
            logits = obs @ policy_weights.data  # acting needs no graph: plain NumPy
            p_left = 1.0 / (1.0 + np.exp(logits[1] - logits[0]))
            action = 0 if rng.random() < p_left else 1
            states.append(obs)
            actions.append(action)
            obs, reward, terminated, truncated, _ = env.step(action)
            rewards.append(reward)
            done = terminated or truncated
        history.append(float(sum(rewards)))
        states_t = Tensor(np.array(states))
        returns = discounted_returns(np.array(rewards), config.gamma).astype(np.float32)
        # Advantage with the value *before* this episode's update, as in the post.
        values = value(states_t)
        advantages = returns - values.data
        value_optimizer.zero_grad()
        (0.5 * F.mse_loss(values, Tensor(returns), reduction="sum")).backward()
        value_optimizer.step()
        policy_optimizer.zero_grad()
        policy_loss(policy_weights, states_t, np.array(actions), Tensor(advantages)).backward()
        policy_optimizer.step()
        if history[-1] >= config.max_steps:
            return episode, history
    return None, history


# --- figures ---------------------------------------------------------------------------------
def _plot_random_search(episodes: np.ndarray, path: str) -> None:
    solved = episodes[~np.isnan(episodes)]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    bins = np.arange(1, max(solved.max(), 2) + 2) - 0.5 if solved.max() <= 80 else 60
    ax.hist(solved, bins=bins, color="tab:blue", alpha=0.8)
    ax.axvline(solved.mean(), color="black", label=f"mean here {solved.mean():.2f}")
    ax.axvline(POST_RANDOM_SEARCH_MEAN, color="tab:red", ls="--",
               label=f"post's mean {POST_RANDOM_SEARCH_MEAN}")
    ax.set(xlabel="episodes until a 200-step episode", ylabel="trials",
           title=f"Random search over {len(episodes)} trials")
    ax.legend()
    viz.save_figure(fig, path)


def _plot_hill_climbing(results: dict[str, np.ndarray], tries: int, path: str) -> None:
    columns = 2
    rows = (len(results) + 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(11, 3.8 * rows), sharey=True)
    axes = np.atleast_1d(axes).ravel()
    for ax, (name, episodes) in zip(axes, results.items()):
        solved = episodes[~np.isnan(episodes)]
        stuck = np.isnan(episodes).mean()
        if len(solved):
            ax.hist(solved, bins=np.logspace(0, np.log10(max(solved.max(), 10) + 1), 25),
                    color="tab:green", alpha=0.8)
            ax.axvline(solved.mean(), color="black", label=f"mean {solved.mean():.1f}")
            ax.axvline(np.median(solved), color="black", ls=":",
                       label=f"median {np.median(solved):.1f}")
        ax.set_xscale("log")
        if name == "hill climbing":
            ax.axvline(POST_HILL_CLIMBING_MEAN, color="tab:red", ls="--",
                       label=f"post's mean {POST_HILL_CLIMBING_MEAN}")
        ax.set(title=f"{name}\n{stuck:.0%} stuck after {tries} tries",
               xlabel="episodes until solved (log)")
        ax.legend(fontsize=8)
    for ax in axes[::columns]:
        ax.set_ylabel("trials that solve")
    fig.suptitle("Hill climbing (noise 0.1, keep if strictly better); "
                 "a try of k episodes counts k")
    viz.save_figure(fig, path)


def _plot_policy_gradient(solve_episodes: list, histories: list[list[float]], path: str) -> None:
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    solved = np.array([e for e in solve_episodes if e is not None], dtype=float)
    if len(solved):
        left.hist(solved, bins=20, color="tab:purple", alpha=0.8)
        left.axvline(solved.mean(), color="black", label=f"mean {solved.mean():.0f}")
        left.legend()
    left.set(xlabel="episodes until a 200-step episode", ylabel="seeds",
             title=f"Policy gradient: {len(solved)}/{len(solve_episodes)} seeds solve")
    window = 10  # returns of single episodes are noisy: show 10-episode moving averages
    longest = max(len(h) for h in histories)
    padded = np.full((len(histories), longest), np.nan)
    for i, history in enumerate(histories):
        smooth = np.convolve(history, np.ones(window), "full")[:len(history)]
        smooth /= np.minimum(np.arange(1, len(history) + 1), window)
        padded[i, :len(history)] = smooth
        right.plot(np.arange(1, len(history) + 1), smooth, color="tab:purple", alpha=0.3, lw=0.8)
    # mean and spread over the seeds still learning at each episode
    counts = (~np.isnan(padded)).sum(0)
    keep = counts >= max(2, len(histories) // 4)
    mean, std = np.nanmean(padded[:, keep], 0), np.nanstd(padded[:, keep], 0)
    x = np.arange(1, longest + 1)[keep]
    right.plot(x, mean, color="black", label="mean of runs not yet solved")
    right.fill_between(x, mean - std, mean + std, color="black", alpha=0.15, label="+- 1 std")
    right.set(xlabel="episode", ylabel="return", ylim=(0, 210),
              title=f"Learning curves ({window}-episode average), each seed until solved")
    right.legend(loc="upper left")
    viz.save_figure(fig, path)


# --- the experiment --------------------------------------------------------------------------
def run(config: Config) -> dict[str, float]:
    os.makedirs(config.out_dir, exist_ok=True)
    rng = np.random.default_rng(config.seed)
    metrics: dict[str, float] = {}

    print(f"random search: {config.random_search_trials} trials")
    episodes, found = random_search(config.random_search_trials, rng, config.max_steps,
                                    config.random_search_max_episodes)
    solved = ~np.isnan(episodes)
    check = check_solutions(found[solved], rng, config.check_episodes, config.max_steps)
    metrics["random_search_mean_episodes"] = float(np.mean(episodes[solved]))
    metrics["random_search_check_mean_return"] = float(check.mean())
    _plot_random_search(episodes, os.path.join(config.out_dir, "random_search.png"))

    common = {"noise": config.hill_climbing_noise, "max_noise": config.max_noise}
    variants = [
        HillClimbing("hill climbing", **common),
        HillClimbing("growing noise", growth=config.noise_growth, **common),
        HillClimbing(f"{config.episodes_per_try} episodes per try",
                     episodes_per_try=config.episodes_per_try, **common),
        HillClimbing("both fixes", growth=config.noise_growth,
                     episodes_per_try=config.episodes_per_try, **common),
    ]
    keys = ["hill_climbing", "hill_climbing_growing_noise", "hill_climbing_multi_episode",
            "hill_climbing_both_fixes"]
    print(f"hill climbing: {len(variants)} variants x {config.hill_climbing_trials} trials")
    results = hill_climbing(variants, config.hill_climbing_trials, rng,
                            config.hill_climbing_tries, config.max_steps)
    for key, variant in zip(keys, variants):
        episodes, weights = results[variant.name]
        solved = ~np.isnan(episodes)
        metrics[f"{key}_stuck_fraction"] = float(np.mean(~solved))
        metrics[f"{key}_mean_episodes"] = float(np.mean(episodes[solved])) if solved.any() \
            else float("nan")
        metrics[f"{key}_median_episodes"] = float(np.median(episodes[solved])) if solved.any() \
            else float("nan")
        check = check_solutions(weights[solved], rng, config.check_episodes, config.max_steps)
        metrics[f"{key}_check_mean_return"] = float(check.mean()) if solved.any() \
            else float("nan")
    _plot_hill_climbing({v.name: results[v.name][0] for v in variants},
                        config.hill_climbing_tries,
                        os.path.join(config.out_dir, "hill_climbing.png"))

    print(f"policy gradient: {config.pg_seeds} seeds")
    env = make_env(config.max_steps)
    solve_episodes, histories = [], []
    progress = cli.Progress(config.pg_seeds, label="seed", every=0)
    for seed_index in range(config.pg_seeds):
        solved_at, history = policy_gradient_run(config, rng, env)
        solve_episodes.append(solved_at)
        histories.append(history)
        progress.update(seed_index + 1, episodes=float(len(history)))
    env.close()
    solved = [e for e in solve_episodes if e is not None]
    metrics["policy_gradient_mean_episodes"] = float(np.mean(solved)) if solved else float("nan")
    metrics["policy_gradient_solved_fraction"] = len(solved) / config.pg_seeds
    _plot_policy_gradient(solve_episodes, histories,
                          os.path.join(config.out_dir, "policy_gradient.png"))
    return metrics


if __name__ == "__main__":
    cli.main(__name__)
