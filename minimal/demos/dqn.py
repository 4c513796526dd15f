"""DQN on CartPole: a network Q-function, experience replay and a frozen target network.

Follows the model-free post's last part (David Silver's lecture 6; Mnih et al. 2015). Tabular
Q-learning does not scale; a network Q(s, a; theta) does, but naive online Q-learning with a
network is unstable. The post argues for two tricks, and this demo shows what each is worth by
taking it away:

* experience replay: store transitions in a memory and train on uniformly drawn mini-batches,
  so updates are not dominated by the last few, strongly correlated, steps (minimal/replay.py);
* a frozen target network theta^-: the bootstrapped target is computed with a copy of the
  weights that is synced only every N steps, so the target does not move with every update.

Key equations (one update per environment step, mini-batch of transitions (s, a, r, s', done))::

    target   y = r + gamma * (1 - terminated) * max_a' Q(s', a'; theta^-)
    loss     L = mean huber(Q(s, a; theta) - y)         (Adam; gradient norm clipped)
             huber(e) = e^2 / 2 for |e| <= 1, |e| - 1/2 beyond (DQN's error clipping)
    sync     theta^- <- theta every `target_sync` steps
    acting   epsilon-greedy, epsilon decaying linearly from 1 to 0.05

A time-limit cut (CartPole-v1 stops at 500 steps) is not a terminal state: its target still
bootstraps, only a fall has value 0 after it.

Run:  python -m minimal.demos.dqn [--quick] [--seed 0]

Figures (in out_dir):
    dqn_ablations.png   return of each training episode against environment steps, mean and
                        spread over seeds, for DQN and the two ablations; and the final greedy
                        return of every seed

Settings: gymnasium ``CartPole-v1`` (500 steps); every episode seeded with reset(seed=...)
from the demo's rng. Variants, with the same seeds for each:
    dqn          replay memory of 20000 transitions + target network
    no_replay    the memory holds only the last `batch_size` transitions, so each update trains
                 on the most recent, consecutive steps (what online learning sees)
    no_target    the target uses the current weights theta (synced every step)
Acting and the target's forward pass are plain NumPy on the network's weights (no graph
needed); the update runs on the engine (Linear, Adam).

Departures: the post's network trick is shown on CartPole rather than on its own problem; the
post's Q-learning code's bugs (weights initialised with std 0, a target network created but
never used) are not reproduced: Linear initialises like PyTorch and the target network is used.

Results (seed 0, 2 cores; greedy return at the end / training return over the last quarter of
the steps, mean over seeds; the full record is in benchmarks/README.md):

    variant      quick (2 seeds x 6000 steps, MSE)    full (3 seeds x 20000 steps, Huber)
    dqn          276 / 311                            154 / 141
    no_replay    147 / 219                            145 / 154
    no_target    177 / 167                            9.4 / 9.6 (every seed diverges)
    time         ~50 s                                ~5 minutes

Without the target network the full runs diverge: bootstrapping from the network being updated
feeds its own over-estimates back into its targets and the policy collapses onto pushing one
way. Removing replay hurt much less at this budget.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import gymnasium as gym
import matplotlib
import numpy as np

from minimal import cli, nn, optim, viz
from minimal import functional as F
from minimal.autograd import Tensor
from minimal.replay import ReplayMemory

matplotlib.use("Agg")
import matplotlib.pyplot as plt

VARIANTS = ("dqn", "no_replay", "no_target")
LOSSES = ("huber", "mse")


@dataclass
class Config:
    seed: int = 0  # seed for every random number in the run
    seeds: int = 3  # independent runs per variant
    total_steps: int = 20000  # environment steps per run
    hidden: int = 64  # units in each of the two hidden layers
    lr: float = 5e-4  # Adam step
    loss: str = "huber"  # TD loss: huber (DQN's error clipping) or mse
    gamma: float = 0.99  # discount
    batch_size: int = 64  # transitions per update
    memory_size: int = 20000  # replay memory capacity (dqn and no_target)
    learning_starts: int = 500  # steps of experience before the first update
    train_every: int = 1  # environment steps per update
    target_sync: int = 500  # steps between copies of theta into the target network
    epsilon_start: float = 1.0  # exploration at the start
    epsilon_end: float = 0.05  # exploration after the decay
    epsilon_decay_steps: int = 8000  # steps over which epsilon falls linearly
    max_grad_norm: float = 10.0  # gradient norm clip per update
    eval_episodes: int = 10  # greedy episodes at the end of each run
    variants: tuple = VARIANTS  # which of dqn, no_replay, no_target to run
    out_dir: str = "outputs/dqn"  # where figures are written

    def __post_init__(self):
        cli.validate(self, whole=("seed", "learning_starts"),
                     counts=("seeds", "total_steps", "hidden", "batch_size", "memory_size",
                             "train_every", "target_sync", "epsilon_decay_steps",
                             "eval_episodes"),
                     positive=("lr", "max_grad_norm"),
                     fractions=("gamma", "epsilon_start", "epsilon_end"),
                     choices={"loss": ("huber", "mse"), "variants": VARIANTS})


# quick: a short run learns faster with a bigger step and the plain squared error
QUICK = {"seeds": 2, "total_steps": 6000, "epsilon_decay_steps": 3000, "train_every": 2,
         "target_sync": 250, "eval_episodes": 5, "lr": 1e-3, "loss": "mse"}

TARGETS = {
    "dqn_final_return": (">=", 150.0),  # greedy return, mean over seeds (500 is the maximum)
}


# --- the Q-network -------------------------------------------------------------------------
def make_q_network(hidden: int, rng: np.random.Generator) -> nn.Sequential:
    return nn.Sequential(nn.Linear(4, hidden, rng=rng), nn.ReLU(),
                         nn.Linear(hidden, hidden, rng=rng), nn.ReLU(),
                         nn.Linear(hidden, 2, rng=rng))


def q_values(weights: list[np.ndarray], obs: np.ndarray) -> np.ndarray:
    """The Q-network's forward pass in plain NumPy: weights = [W1, b1, W2, b2, W3, b3]."""
    x = obs
    for layer in range(0, len(weights), 2):
        x = x @ weights[layer].T + weights[layer + 1]
        if layer + 2 < len(weights):
            x = np.maximum(x, 0)
    return x


def dqn_targets(rewards: np.ndarray, next_q: np.ndarray, terminated: np.ndarray,
                gamma: float) -> np.ndarray:
    """y = r + gamma * (1 - terminated) * max_a' Q_target(s', a')."""
    return (rewards + gamma * (1.0 - terminated) * next_q.max(axis=1)).astype(np.float32)


def huber(error: Tensor) -> Tensor:
    """1/2 e^2 for |e| <= 1, |e| - 1/2 beyond: squared error whose gradient is capped at 1.

    Written as 1/2 c^2 + |e| - |c| with c = clip(e, -1, 1) (the engine has no smooth_l1 yet).
    """
    clipped = error.clip(-1.0, 1.0)
    return 0.5 * clipped * clipped + error.abs() - clipped.abs()


def td_loss(network: nn.Module, obs: np.ndarray, actions: np.ndarray,
            targets: np.ndarray, loss: str = "huber") -> Tensor:
    """mean loss(Q(s, a) - y) over the batch; only the taken action's Q gets a gradient."""
    if loss not in LOSSES:
        raise ValueError(f"dqn: unknown loss {loss!r}; choose from {LOSSES}")
    q = network(Tensor(obs))
    error = q[np.arange(len(actions)), actions] - Tensor(targets)  # Q(s_i, a_i), row by row
    if loss == "mse":
        return F.mse_loss(error, np.zeros(len(targets), np.float32))
    return huber(error).mean()


def epsilon_at(step: int, config: Config) -> float:
    fraction = min(1.0, step / max(1, config.epsilon_decay_steps))
    return config.epsilon_start + fraction * (config.epsilon_end - config.epsilon_start)


# --- one run --------------------------------------------------------------------------------
def train(config: Config, variant: str, seed: int) -> dict:
    """Train one agent; returns episode end steps, episode returns, and the greedy return."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose from {VARIANTS}")
    rng = np.random.default_rng(seed)
    network = make_q_network(config.hidden, rng)
    params = network.parameters()
    optimizer = optim.Adam(params, lr=config.lr)
    # no_replay: a memory that only ever holds the latest batch of consecutive transitions
    capacity = config.batch_size if variant == "no_replay" else config.memory_size
    memory = ReplayMemory(capacity, obs_shape=(4,))
    frozen = [p.data.copy() for p in params]  # theta^-
    env = gym.make("CartPole-v1")
    obs, _ = env.reset(seed=int(rng.integers(2**31)))
    episode_return, ends, returns = 0.0, [], []
    progress = cli.Progress(config.total_steps, label="step", every=5.0)
    for step in range(1, config.total_steps + 1):
        weights = [p.data for p in params]
        if rng.random() < epsilon_at(step, config):
            action = int(rng.integers(2))
        else:
            action = int(np.argmax(q_values(weights, obs)))
        next_obs, reward, terminated, truncated, _ = env.step(action)
        memory.push(obs, action, reward, next_obs, terminated)
        episode_return += reward
        obs = next_obs
        if terminated or truncated:
            ends.append(step)
            returns.append(episode_return)
            obs, _ = env.reset(seed=int(rng.integers(2**31)))
            episode_return = 0.0
        if step >= config.learning_starts and step % config.train_every == 0:
            batch = memory.sample(config.batch_size, rng)
            target_weights = weights if variant == "no_target" else frozen
            targets = dqn_targets(batch.reward, q_values(target_weights, batch.next_obs),
                                  batch.terminated, config.gamma)
            loss = td_loss(network, batch.obs, batch.action, targets, config.loss)
            if not np.isfinite(loss.item()):
                raise FloatingPointError(f"dqn ({variant}): loss is {loss.item()} at step {step}")
            optimizer.zero_grad()
            loss.backward()
            optim.clip_grad_norm(params, config.max_grad_norm)
            optimizer.step()
        if step % config.target_sync == 0:
            frozen = [p.data.copy() for p in params]
        progress.update(step, last_return=returns[-1] if returns else 0.0)
    final = greedy_return(env, [p.data for p in params], rng, config.eval_episodes)
    env.close()
    return {"ends": np.array(ends), "returns": np.array(returns), "final": final}


def greedy_return(env: gym.Env, weights: list[np.ndarray], rng: np.random.Generator,
                  episodes: int) -> float:
    """Mean return of the greedy policy argmax_a Q(s, a) over fresh episodes."""
    total = 0.0
    for _ in range(episodes):
        obs, _ = env.reset(seed=int(rng.integers(2**31)))
        done = False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(int(np.argmax(q_values(weights,
                                                                                    obs))))
            total += reward
            done = terminated or truncated
    return total / episodes


# --- figures ---------------------------------------------------------------------------------
def returns_on_grid(ends: np.ndarray, returns: np.ndarray, grid: np.ndarray,
                    window: int = 10) -> np.ndarray:
    """At each grid step, the mean return of the last `window` episodes finished by then."""
    if len(returns) == 0:
        return np.full(len(grid), np.nan)
    cumulative = np.concatenate([[0.0], np.cumsum(returns)])
    finished = np.searchsorted(ends, grid, side="right")  # episodes finished by each step
    first = np.maximum(finished - window, 0)
    with np.errstate(invalid="ignore"):
        out = (cumulative[finished] - cumulative[first]) / (finished - first)
    return np.where(finished > 0, out, np.nan)


COLOURS = {"dqn": "tab:blue", "no_replay": "tab:orange", "no_target": "tab:green"}
LABELS = {"dqn": "DQN (replay + target network)", "no_replay": "no replay",
          "no_target": "no target network"}


def plot(runs: dict[str, list[dict]], total_steps: int, path: str) -> None:
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5),
                                      gridspec_kw={"width_ratios": [2.2, 1]})
    grid = np.linspace(0, total_steps, 200)
    for variant, results in runs.items():
        curves = np.array([returns_on_grid(r["ends"], r["returns"], grid) for r in results])
        for curve in curves:
            left.plot(grid, curve, color=COLOURS[variant], alpha=0.25, lw=0.8)
        started = ~np.isnan(curves).any(0)  # every seed has finished an episode
        mean, std = curves[:, started].mean(0), curves[:, started].std(0)
        left.plot(grid[started], mean, color=COLOURS[variant], lw=2,
                  label=f"{LABELS[variant]} (mean of {len(results)} seeds)")
        left.fill_between(grid[started], mean - std, mean + std, color=COLOURS[variant],
                          alpha=0.12)
    left.set(xlabel="environment step", ylabel="training return (10-episode average)",
             title="CartPole-v1: learning curves (thin: single seeds; band: +-1 std)",
             ylim=(0, 520))
    left.legend(loc="upper left", fontsize=9)
    for i, (variant, results) in enumerate(runs.items()):
        finals = [r["final"] for r in results]
        right.scatter(np.full(len(finals), i) + np.linspace(-0.15, 0.15, len(finals)), finals,
                      color=COLOURS[variant])
        right.bar(i, np.mean(finals), color=COLOURS[variant], alpha=0.3)
    right.set_xticks(range(len(runs)), [LABELS[v].split(" (")[0] for v in runs], fontsize=9)
    right.set(ylabel="greedy return after training", ylim=(0, 520),
              title="Final greedy return per seed (bar: mean)")
    viz.save_figure(fig, path)


# --- the experiment --------------------------------------------------------------------------
def run(config: Config) -> dict[str, float]:
    # check every name before the first (minutes-long) run, not when its turn comes
    for variant in config.variants:
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}; choose from {VARIANTS}")
    os.makedirs(config.out_dir, exist_ok=True)
    master = np.random.default_rng(config.seed)
    seeds = [int(s) for s in master.integers(2**31, size=config.seeds)]  # shared by variants
    runs: dict[str, list[dict]] = {}
    metrics: dict[str, float] = {}
    for variant in config.variants:
        runs[variant] = []
        for i, seed in enumerate(seeds):
            print(f"{variant}: seed {i + 1}/{len(seeds)}")
            runs[variant].append(train(config, variant, seed))
        finals = [r["final"] for r in runs[variant]]
        metrics[f"{variant}_final_return"] = float(np.mean(finals))
        # stability: the training return over the last quarter of the steps
        late = [r["returns"][r["ends"] > 0.75 * config.total_steps].mean()
                if (r["ends"] > 0.75 * config.total_steps).any() else 0.0
                for r in runs[variant]]
        metrics[f"{variant}_late_training_return"] = float(np.mean(late))
    plot(runs, config.total_steps, os.path.join(config.out_dir, "dqn_ablations.png"))
    return metrics


if __name__ == "__main__":
    cli.main(__name__)
