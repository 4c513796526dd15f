"""Policy gradient and actor-critic on CartPole-v1: REINFORCE, with a baseline, and the TD error.

Follows the post on policy gradients and actor-critic (David Silver's lecture 7; Sutton & Barto
chapter 13). The policy pi(a|s; theta) is a small network with a softmax output, improved along
the policy gradient; the three methods differ only in the weight A_t of each step, from
noisiest to least noisy. A baseline lowers the variance without biasing the gradient; a critic
that bootstraps lets the actor learn before the episode ends, at the price of bias.

Key equations:

    grad J = E[ grad log pi(a_t|s_t) * A_t ]
    REINFORCE             A_t = G_t = r_t + gamma r_{t+1} + ...   (the Monte-Carlo return)
    REINFORCE + baseline  A_t = G_t - V(s_t)        V a critic network fitted to G_t
    actor-critic          A_t = delta_t = r_t + gamma V(s_{t+1}) - V(s_t)   (one-step TD error;
                                                    V fitted to r_t + gamma V(s_{t+1}))
    policy loss  -mean_t log pi(a_t|s_t) A_t  (A_t held fixed; log pi from
                 distributions.Categorical);  critic loss  mean (V(s_t) - target_t)^2

After a fall V(s_{t+1}) is 0; when CartPole-v1's 500-step limit cuts an episode, the state is
not terminal and the TD target still bootstraps.

Run:  python -m minimal.demos.actor_critic [--quick] [--seed 0]

Figures (in out_dir):
    learning_curves.png   the 100-episode average return of each method over several seeds
                          (thin: single seeds; thick: mean, band: +-1 std), the 475 line, and
                          how many episodes each seed needed to reach it

Settings: gymnasium ``CartPole-v1`` (up to 500 steps; solved at an average of 475 over 100
consecutive episodes), every episode seeded with reset(seed=...) from the rng. The post gives no
sizes for CartPole-v1, so these are the demo's choice, the same for every method: 4-32-2 policy,
4-32-1 critic, Adam 5e-3 (policy) and 3e-2 (critic), gamma 0.99.

Departures: the actor-critic updates every `update_every` steps (and at each episode's end) on
the one-step TD errors of those steps, instead of after every single step: the same estimator
in batches of 16 steps, 16 times fewer engine calls. The critic takes 4 gradient steps per
batch (targets recomputed each time) before the actor's TD errors are computed with it: a
critic that lags behind gives TD errors that are positive almost everywhere and the policy
collapses onto one action.

Results (seed 0, 2 cores; best = best 100-episode average, mean over seeds; the longer record
is in benchmarks/README.md):

    preset               REINFORCE        REINFORCE + baseline     actor-critic       time
    quick (2 x 300 ep.)  best 104         best 416, 1/2 solve      best 60            ~50 s
    full  (3 x 800 ep.)  best 293, 0/3    3/3 solve (336 ep.)      best 287, 0/3      6 min

The baseline's effect is the clear result: same data, same learning rates, a far less noisy
gradient. The one-step TD critic trades that variance for bias and was the least stable here.
"""
from __future__ import annotations

import itertools
import os
from dataclasses import dataclass

import gymnasium as gym
import matplotlib
import numpy as np

from minimal import cli, nn, optim, viz
from minimal import functional as F
from minimal.autograd import Tensor
from minimal.distributions import Categorical

matplotlib.use("Agg")
import matplotlib.pyplot as plt

METHODS = ("reinforce", "reinforce_baseline", "actor_critic")


@dataclass
class Config:
    seed: int = 0  # seed for every random number in the run
    seeds: int = 3  # independent runs per method
    max_episodes: int = 800  # a run stops here, or once it reaches the target average
    target_average: float = 475.0  # CartPole-v1 is solved at this average over 100 episodes
    hidden: int = 32  # hidden units of the policy and of the critic
    policy_lr: float = 5e-3  # Adam step of the policy
    critic_lr: float = 3e-2  # Adam step of the critic
    gamma: float = 0.99  # discount
    update_every: int = 16  # actor-critic: steps between updates
    critic_steps: int = 4  # actor-critic: critic gradient steps per update (targets refreshed)
    policy_first: bool = False  # actor-critic: update the actor before refitting the critic
    methods: tuple = METHODS  # which of reinforce, reinforce_baseline, actor_critic to run
    out_dir: str = "outputs/actor_critic"  # where figures are written

    def __post_init__(self):
        cli.validate(self, whole=("seed",),
                     counts=("seeds", "max_episodes", "hidden", "update_every", "critic_steps"),
                     positive=("policy_lr", "critic_lr"), fractions=("gamma",),
                     finite=("target_average",), choices={"methods": METHODS})


QUICK = {"seeds": 2, "max_episodes": 300}

TARGETS = {
    "reinforce_baseline_best_average": (">=", 300.0),  # best 100-episode average, seed mean
    "actor_critic_best_average": (">=", 45.0),  # random play averages about 22
}


# --- networks -------------------------------------------------------------------------------
def mlp(sizes: list[int], rng: np.random.Generator) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(n_in, n_out, rng=rng))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def forward_numpy(weights: list[np.ndarray], x: np.ndarray) -> np.ndarray:
    """The same MLP in plain NumPy (acting needs no graph): weights = [W1, b1, W2, b2, ...]."""
    for layer in range(0, len(weights), 2):
        x = x @ weights[layer].T + weights[layer + 1]
        if layer + 2 < len(weights):
            x = np.maximum(x, 0)
    return x


# --- the estimators -------------------------------------------------------------------------
def discounted_returns(rewards: np.ndarray, gamma: float) -> np.ndarray:
    """G_t = r_t + gamma G_{t+1}, G after the last step = 0."""
    returns = np.zeros(len(rewards), np.float32)
    running = 0.0
    for t in range(len(rewards) - 1, -1, -1):
        running = rewards[t] + gamma * running
        returns[t] = running
    return returns


def td_targets(rewards: np.ndarray, next_values: np.ndarray, terminated: np.ndarray,
               gamma: float) -> np.ndarray:
    """r + gamma V(s') where the episode goes on (or was cut by the time limit), r after a fall."""
    return (rewards + gamma * (1.0 - terminated) * next_values).astype(np.float32)


def td_errors(rewards: np.ndarray, values: np.ndarray, next_values: np.ndarray,
              terminated: np.ndarray, gamma: float) -> np.ndarray:
    """delta_t = r_t + gamma V(s_{t+1}) (1 - terminated_t) - V(s_t)."""
    return td_targets(rewards, next_values, terminated, gamma) - values


def policy_loss(policy: nn.Module, states: np.ndarray, actions: np.ndarray,
                weights: np.ndarray) -> Tensor:
    """-mean_t log pi(a_t|s_t) A_t: its gradient is minus the policy-gradient estimate."""
    return loss_from_logits(policy(Tensor(states)), actions, weights)


def loss_from_logits(logits: Tensor, actions: np.ndarray, weights: np.ndarray) -> Tensor:
    """-mean_t log softmax(z_t)[a_t] A_t; its gradient in z_t is -(onehot(a_t) - pi_t) A_t / n."""
    log_pi = Categorical(logits).log_prob(actions)
    return -(log_pi * Tensor(weights.astype(logits.dtype))).mean()


def critic_loss(critic: nn.Module, states: np.ndarray, targets: np.ndarray) -> Tensor:
    return F.mse_loss(critic(Tensor(states)).reshape(-1), Tensor(targets))


class Agent:
    """A softmax policy network and (unless plain REINFORCE) a critic, with their optimisers."""

    def __init__(self, config: Config, method: str, rng: np.random.Generator):
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; choose from {METHODS}")
        self.method, self.gamma, self.rng = method, config.gamma, rng
        self.critic_steps, self.policy_first = config.critic_steps, config.policy_first
        self.policy = mlp([4, config.hidden, 2], rng)
        self.policy_params = self.policy.parameters()  # listed once: act() runs every step
        self.policy_optimizer = optim.Adam(self.policy_params, lr=config.policy_lr)
        self.critic = mlp([4, config.hidden, 1], rng)
        self.critic_params = self.critic.parameters()
        self.critic_optimizer = optim.Adam(self.critic_params, lr=config.critic_lr)

    def act(self, obs: np.ndarray) -> int:
        logits = forward_numpy([p.data for p in self.policy_params], obs)
        p_left = 1.0 / (1.0 + np.exp(np.clip(logits[1] - logits[0], -50, 50)))
        return 0 if self.rng.random() < p_left else 1

    def value(self, states: np.ndarray) -> np.ndarray:
        return forward_numpy([p.data for p in self.critic_params], states)[:, 0]

    def _step(self, loss: Tensor, optimizer: optim.Adam) -> None:
        if not np.isfinite(loss.item()):
            raise FloatingPointError(f"{self.method}: loss became {loss.item()}")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    def update_from_episode(self, states, actions, rewards) -> None:
        """REINFORCE (with or without the baseline): one update after the episode."""
        returns = discounted_returns(rewards, self.gamma)
        weights = returns
        if self.method == "reinforce_baseline":
            weights = returns - self.value(states)  # the baseline before this update
            self._step(critic_loss(self.critic, states, returns), self.critic_optimizer)
        self._step(policy_loss(self.policy, states, actions, weights), self.policy_optimizer)

    def update_from_steps(self, states, actions, rewards, next_states, terminated) -> None:
        """Actor-critic: weight each step by its one-step TD error, then fit the critic."""
        if self.policy_first:
            deltas = td_errors(rewards, self.value(states), self.value(next_states), terminated,
                               self.gamma)
            self._step(policy_loss(self.policy, states, actions, deltas), self.policy_optimizer)
        for _ in range(self.critic_steps):
            targets = td_targets(rewards, self.value(next_states), terminated, self.gamma)
            self._step(critic_loss(self.critic, states, targets), self.critic_optimizer)
        if not self.policy_first:
            deltas = td_errors(rewards, self.value(states), self.value(next_states), terminated,
                               self.gamma)
            self._step(policy_loss(self.policy, states, actions, deltas), self.policy_optimizer)


def train(config: Config, method: str, seed: int) -> np.ndarray:
    """Returns of each episode, until the 100-episode average reaches the target."""
    rng = np.random.default_rng(seed)
    agent = Agent(config, method, rng)
    env = gym.make("CartPole-v1")
    returns: list[float] = []
    progress = cli.Progress(config.max_episodes, label="episode", every=5.0)
    for episode in range(1, config.max_episodes + 1):
        obs, _ = env.reset(seed=int(rng.integers(2**31)))
        steps: list[tuple] = []  # (s, a, r, s', terminated) since the last update
        episode_return, done = 0.0, False
        while not done:
            action = agent.act(obs)
            next_obs, reward, terminated, truncated, _ = env.step(action)
            steps.append((obs, action, reward, next_obs, float(terminated)))
            episode_return += reward
            obs, done = next_obs, terminated or truncated
            if method == "actor_critic" and (len(steps) == config.update_every or done):
                agent.update_from_steps(*_columns(steps))
                steps = []
        if method != "actor_critic":
            states, actions, rewards, _, _ = _columns(steps)
            agent.update_from_episode(states, actions, rewards)
        returns.append(episode_return)
        average = float(np.mean(returns[-100:]))
        progress.update(episode, average=average)
        if len(returns) >= 100 and average >= config.target_average:
            break
    env.close()
    return np.array(returns)


def _columns(steps: list[tuple]) -> tuple[np.ndarray, ...]:
    states, actions, rewards, next_states, terminated = zip(*steps)
    return (np.array(states), np.array(actions), np.array(rewards, np.float32),
            np.array(next_states), np.array(terminated, np.float32))


def trailing_average(returns: np.ndarray, window: int = 100) -> np.ndarray:
    """Mean of the last `window` episodes (fewer at the start), after each episode."""
    cumulative = np.concatenate([[0.0], np.cumsum(returns)])
    end = np.arange(1, len(returns) + 1)
    start = np.maximum(end - window, 0)
    return (cumulative[end] - cumulative[start]) / (end - start)


def episodes_to_reach(returns: np.ndarray, target: float, window: int = 100) -> float:
    """First episode at which the last `window` episodes average >= target (nan if never)."""
    average = trailing_average(returns, window)
    hits = np.flatnonzero((np.arange(1, len(returns) + 1) >= window) & (average >= target))
    return float(hits[0] + 1) if len(hits) else float("nan")


# --- figure and experiment ------------------------------------------------------------------
COLOURS = {"reinforce": "tab:red", "reinforce_baseline": "tab:blue", "actor_critic": "tab:green"}
LABELS = {"reinforce": "REINFORCE", "reinforce_baseline": "REINFORCE + baseline",
          "actor_critic": "actor-critic (TD error)"}
TICK_LABELS = {"reinforce": "REINFORCE", "reinforce_baseline": "REINFORCE\n+ baseline",
               "actor_critic": "actor-critic\n(TD error)"}  # the same, broken to fit a tick


def plot(runs: dict[str, list[np.ndarray]], config: Config, path: str) -> None:
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5),
                                      gridspec_kw={"width_ratios": [2.2, 1]})
    for method, results in runs.items():
        curves = [trailing_average(r) for r in results]
        longest = max(len(c) for c in curves)
        # a run that reached the target stopped there: hold it at its last value
        held = np.array([np.concatenate([c, np.full(longest - len(c), c[-1])]) for c in curves])
        for curve in curves:
            left.plot(np.arange(1, len(curve) + 1), curve, color=COLOURS[method], alpha=0.3,
                      lw=0.8)
        mean, std = held.mean(0), held.std(0)
        x = np.arange(1, longest + 1)
        left.plot(x, mean, color=COLOURS[method], lw=2, label=LABELS[method])
        left.fill_between(x, mean - std, mean + std, color=COLOURS[method], alpha=0.12)
    left.axhline(config.target_average, color="black", ls="--", lw=1,
                 label=f"solved: {config.target_average:g}")
    left.set(xlabel="episode", ylabel="average return of the last 100 episodes",
             title=f"CartPole-v1, {config.seeds} seeds (runs stop once solved; mean holds them)",
             ylim=(0, 510))
    left.legend(loc="upper left", fontsize=9)
    for i, (method, results) in enumerate(runs.items()):
        needed = np.array([episodes_to_reach(r, config.target_average) for r in results])
        reached = needed[~np.isnan(needed)]
        right.scatter(np.full(len(reached), i) + np.linspace(-0.15, 0.15, len(reached)),
                      reached, color=COLOURS[method])
        right.text(i, config.max_episodes * 1.04, f"{len(reached)}/{len(results)} solved",
                   ha="center", fontsize=9)
    right.set_xticks(range(len(runs)), [TICK_LABELS[m] for m in runs], fontsize=9)
    right.set(ylabel=f"episodes to a 100-episode average of {config.target_average:g}",
              ylim=(0, config.max_episodes * 1.12), xlim=(-0.5, len(runs) - 0.5),
              title=f"Episodes to solve (at most {config.max_episodes})")
    viz.save_figure(fig, path)


def run(config: Config) -> dict[str, float]:
    # check every name before the first (minutes-long) run, not when its turn comes
    for method in config.methods:
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; choose from {METHODS}")
    os.makedirs(config.out_dir, exist_ok=True)
    master = np.random.default_rng(config.seed)
    seeds = [int(s) for s in master.integers(2**31, size=config.seeds)]  # shared by methods
    runs: dict[str, list[np.ndarray]] = {}
    metrics: dict[str, float] = {}
    for method in config.methods:
        runs[method] = []
        for i, seed in enumerate(seeds):
            print(f"{method}: seed {i + 1}/{len(seeds)}")
            runs[method].append(train(config, method, seed))
        needed = np.array([episodes_to_reach(r, config.target_average) for r in runs[method]])
        reached = needed[~np.isnan(needed)]
        metrics[f"{method}_episodes_to_solve"] = float(reached.mean()) if len(reached) \
            else float("nan")
        metrics[f"{method}_solved_fraction"] = float(len(reached) / len(needed))
        metrics[f"{method}_best_average"] = float(np.mean(
            [trailing_average(r).max() for r in runs[method]]))
    plot(runs, config, os.path.join(config.out_dir, "learning_curves.png"))
    return metrics


if __name__ == "__main__":
    cli.main(__name__)
