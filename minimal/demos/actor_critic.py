"""Policy gradient and actor-critic on CartPole-v1: REINFORCE, with a baseline, and the TD error.

Follows the post on policy gradients and actor-critic (David Silver's lecture 7; Sutton & Barto
chapter 13). The policy pi(a|s; theta) is a small network with a softmax output, improved along
the policy gradient; the methods differ only in the weight A_t of each step, from noisiest to
least noisy. A baseline lowers the variance without biasing the gradient; a critic that
bootstraps lowers it further, at the price of bias. Beyond the post, `a2c` is the advantage
actor-critic most code uses today: several environments stepped together, GAE, an entropy bonus.

Key equations:

    grad J = E[ grad log pi(a_t|s_t) * A_t ]
    REINFORCE             A_t = G_t = r_t + gamma r_{t+1} + ...   (the Monte-Carlo return)
    REINFORCE + baseline  A_t = G_t - V(s_t)        V a critic network fitted to G_t
    actor-critic          A_t = delta_t = r_t + gamma V(s_{t+1}) - V(s_t)   (one-step TD error;
                                                    V fitted to r_t + gamma V(s_{t+1}))
    A2C                   A_t = delta_t + (gamma lambda) delta_{t+1} + ...  (GAE, to the end of
                          the episode or of the 16-step batch; V fitted to A_t + V(s_t))
    policy loss  -mean_t log pi(a_t|s_t) A_t  (A_t held fixed; log pi from
                 distributions.Categorical; A2C: A_t standardised, minus 0.01 * entropy)
    critic loss  mean (V(s_t) - target_t)^2

After a fall V(s_{t+1}) is 0; when CartPole-v1's 500-step limit cuts an episode, the state is
not terminal and the target still bootstraps (for A2C on the state the episode ended in, which
gymnasium's vector env keeps in info["final_obs"] when it resets that environment).

Run:  python -m minimal.demos.actor_critic [--quick] [--seed 0] [--methods actor_critic,a2c]
      --update-every 16   the post's online updates, every 16 steps (unstable, see below)

Figures (in out_dir):
    learning_curves.png   the 100-episode average return of each method: mean over the seeds,
                          band = their range, the 475 line, each curve's area; right: how many
                          episodes each seed needed to reach 475

Settings: gymnasium ``CartPole-v1`` (up to 500 steps; solved at an average of 475 over 100
consecutive episodes), episodes seeded with reset(seed=...) from the rng (A2C: its 8
environments seeded once, seed + i). The post gives no sizes for CartPole-v1, so these are the
demo's choice: 4-32-2 policy and 4-32-1 critic for every method, Adam 5e-3 (policy) and 3e-2
(critic), gamma 0.99. A2C: 8 environments x 16 steps per update, lambda 0.95, entropy 0.01,
critic Adam 1e-2 on V / 100.

Departures from the post: the actor-critic keeps the post's estimator (the one-step TD error)
but updates once per episode, on the TD errors of all its steps (REINFORCE's schedule);
`--update-every 16` runs the post's online form, which is unstable here: an Adam step moves each
weight by about the learning rate whatever its batch holds, so 16-step updates move the policy
31 times in a 500-step episode and shake it hardest just as it gets good. The TD errors come
from the critic as it was before the update (a critic first fitted to the very targets it then
judges leaves the actor mostly its residuals), and the critic then takes 8 steps, its targets
recomputed after each, so that it keeps up. A2C is beyond the post; its critic predicts V / 100
(`value_scale`) so that Adam's steps move V as fast as the returns grow. The measurements behind
these choices are in benchmarks/README.md.

Results (2 cores, CPU seconds; best = best 100-episode average and area = mean of the
100-episode average over the budget, a solved run held, both mean over seeds; the longer record
is in benchmarks/README.md):

    preset               method                solved  episodes to 475   best   area  CPU s
    quick (2 x 450 ep.)  REINFORCE             0/2     -                 224     90     5
                         REINFORCE + baseline  2/2     312 (238, 385)    475    269     7
                         actor-critic          2/2     370 (344, 396)    475    230    10
                         A2C                   1/2     399               282    107     4
    full  (3 x 800 ep.)  REINFORCE             0/3     -                 263    114    15
                         REINFORCE + baseline  3/3     312 (238-385)     475    366    12
                         actor-critic          3/3     365 (344-396)     476    341    16
                         A2C                   3/3     554 (399-766)     477    223     9

The baseline is the clearest gain; the TD critic also solves every seed, far ahead of plain
REINFORCE, a little behind the Monte-Carlo baseline (its bias). Counted in episodes A2C is
slower: its strength is many environments per update, not fewer episodes.
"""
from __future__ import annotations

import itertools
import os
import time
from dataclasses import dataclass

import gymnasium as gym
import matplotlib
import numpy as np
from gymnasium.vector import AutoresetMode

from minimal import functional as F
from minimal import nn, optim
from minimal.app import cli, viz
from minimal.autograd import Tensor
from minimal.distributions import Categorical

matplotlib.use("Agg")
import matplotlib.pyplot as plt

ENV_ID = "CartPole-v1"
METHODS = ("reinforce", "reinforce_baseline", "actor_critic", "a2c")


@dataclass
class Config:
    seed: int = 0  # seed for every random number in the run
    seeds: int = 3  # independent runs per method (the same seeds for every method)
    max_episodes: int = 800  # a run stops here, or once it reaches the target average
    target_average: float = 475.0  # CartPole-v1 is solved at this average over 100 episodes
    hidden: int = 32  # hidden units of the policy and of the critic
    gamma: float = 0.99  # discount
    policy_lr: float = 5e-3  # Adam step of the policy (every method)
    critic_lr: float = 3e-2  # Adam step of the critic (every method that has one)
    update_every: int = 0  # actor-critic: 0 = one update at each episode's end on all its
    # steps; k = an update every k steps (and at the end), as the post's online form
    critic_steps: int = 8  # actor-critic: critic gradient steps per update (targets refreshed)
    a2c_envs: int = 8  # A2C: environments stepped together (gymnasium's vector API)
    a2c_steps: int = 16  # A2C: steps of each environment between updates
    a2c_critic_lr: float = 1e-2  # A2C: Adam step of its critic, in units of value_scale
    value_scale: float = 100.0  # A2C: V = this times the critic network's output (1/(1-gamma)
    # = 100 is the largest discounted return); at 1 its critic lags far behind
    gae_lambda: float = 0.95  # A2C: GAE's lambda (0 = one-step TD errors, 1 = Monte-Carlo)
    entropy_bonus: float = 0.01  # A2C: weight of the policy's entropy in its loss
    methods: tuple = METHODS  # which of reinforce, reinforce_baseline, actor_critic, a2c to run
    out_dir: str = "outputs/actor_critic"  # where figures are written

    def __post_init__(self):
        cli.validate(self,
                     counts=("seeds", "max_episodes", "hidden", "critic_steps", "a2c_envs",
                             "a2c_steps"),
                     whole=("seed", "update_every"),
                     positive=("policy_lr", "critic_lr", "a2c_critic_lr", "value_scale"),
                     non_negative=("entropy_bonus",), fractions=("gamma", "gae_lambda"),
                     finite=("target_average",), choices={"methods": METHODS})


QUICK = {"seeds": 2, "max_episodes": 450}

TARGETS = {  # measured (2 seeds): 475, 230, 475, 282; plain REINFORCE: best 224, area 90
    "actor_critic_best_average": (">=", 450.0),  # best 100-episode average, mean over seeds
    "actor_critic_area": (">=", 200.0),  # mean of its 100-episode average over the 450 episodes
    "reinforce_baseline_best_average": (">=", 450.0),
    "a2c_best_average": (">=", 240.0),
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


def gae(rewards: np.ndarray, values: np.ndarray, next_values: np.ndarray,
        terminated: np.ndarray, done: np.ndarray, gamma: float, lam: float) -> np.ndarray:
    """Generalised advantage estimates, arrays (T, n_envs) in time order.

    A_t = delta_t + gamma lam A_{t+1}, the sum stopping at the end of an episode (done: fell
    or cut); delta_t bootstraps unless the pole fell. After the last step of the batch the sum
    stops too (its delta already bootstraps on V of the state reached). lam = 0 gives the
    one-step TD errors, lam = 1 the n-step returns minus V(s_t).
    """
    deltas = td_errors(rewards, values, next_values, terminated, gamma)
    advantages = np.zeros_like(deltas)
    running = np.zeros(deltas.shape[1:], np.float32)
    for t in range(len(deltas) - 1, -1, -1):
        running = deltas[t] + gamma * lam * (1.0 - done[t]) * running
        advantages[t] = running
    return advantages


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
        self.critic_steps = config.critic_steps
        # A2C's critic bootstraps on itself every 16 steps: its network predicts V / value_scale,
        # so that Adam's steps (about lr, whatever the scale) move V as fast as returns grow
        self.value_scale = config.value_scale if method == "a2c" else 1.0
        critic_lr = config.a2c_critic_lr if method == "a2c" else config.critic_lr
        self.policy = mlp([4, config.hidden, 2], rng)
        self.policy_params = self.policy.parameters()  # listed once: act() runs every step
        self.policy_optimizer = optim.Adam(self.policy_params, lr=config.policy_lr)
        self.critic = mlp([4, config.hidden, 1], rng)
        self.critic_params = self.critic.parameters()
        self.critic_optimizer = optim.Adam(self.critic_params, lr=critic_lr)

    def act(self, obs: np.ndarray) -> np.ndarray:
        """Sample actions for one observation (4,) or a batch (n, 4)."""
        logits = forward_numpy([p.data for p in self.policy_params], obs)
        p_left = 1.0 / (1.0 + np.exp(np.clip(logits[..., 1] - logits[..., 0], -50, 50)))
        return (self.rng.random(np.shape(p_left)) >= p_left).astype(np.int64)

    def value(self, states: np.ndarray) -> np.ndarray:
        return self.value_scale * forward_numpy([p.data for p in self.critic_params],
                                                states)[..., 0]

    def _step(self, loss: Tensor, optimizer: optim.Adam) -> None:
        if not np.isfinite(loss.item()):
            raise FloatingPointError(f"{self.method}: loss became {loss.item()}")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    def _fit_critic(self, states: np.ndarray, targets: np.ndarray) -> None:
        self._step(critic_loss(self.critic, states, targets / self.value_scale),
                   self.critic_optimizer)

    def update_from_episode(self, states, actions, rewards) -> None:
        """REINFORCE (with or without the baseline): one update after the episode."""
        returns = discounted_returns(rewards, self.gamma)
        weights = returns
        if self.method == "reinforce_baseline":
            weights = returns - self.value(states)  # the baseline before this update
            self._fit_critic(states, returns)
        self._step(policy_loss(self.policy, states, actions, weights), self.policy_optimizer)

    def update_from_steps(self, states, actions, rewards, next_states, terminated) -> None:
        """Actor-critic: weight each step by its one-step TD error, then move the critic.

        Both use the critic as it was before this batch: a critic first fitted to the very
        targets it then judges leaves the actor only its residuals.
        """
        next_values = self.value(next_states)
        deltas = td_errors(rewards, self.value(states), next_values, terminated, self.gamma)
        self._step(policy_loss(self.policy, states, actions, deltas), self.policy_optimizer)
        self._fit_critic(states, td_targets(rewards, next_values, terminated, self.gamma))
        for _ in range(self.critic_steps - 1):  # refit, with targets from the moved critic
            self._fit_critic(states, td_targets(rewards, self.value(next_states), terminated,
                                                self.gamma))

    def update_from_rollout(self, batch: dict[str, np.ndarray], lam: float,
                            entropy_bonus: float) -> None:
        """A2C: GAE advantages (standardised over the batch) and an entropy bonus."""
        values = self.value(batch["states"])  # (T, n_envs)
        advantages = gae(batch["rewards"], values, self.value(batch["next_states"]),
                         batch["terminated"], batch["done"], self.gamma, lam)
        states = batch["states"].reshape(-1, 4)
        self._fit_critic(states, (advantages + values).reshape(-1))
        weights = advantages.reshape(-1)
        weights = (weights - weights.mean()) / (weights.std() + 1e-8)
        logits = self.policy(Tensor(states))
        loss = loss_from_logits(logits, batch["actions"].reshape(-1), weights)
        if entropy_bonus > 0:
            loss = loss - Categorical(logits).entropy().mean() * entropy_bonus
        self._step(loss, self.policy_optimizer)


# --- playing --------------------------------------------------------------------------------
def play_episode(env: gym.Env, agent: Agent, seed: int, update_every: int) -> float:
    """One episode. The actor-critic learns every `update_every` steps and at the end; the
    REINFORCE methods once, after it. Returns the undiscounted return."""
    obs, _ = env.reset(seed=seed)
    steps: list[tuple] = []  # (s, a, r, s', terminated) since the last update
    episode_return, done = 0.0, False
    while not done:
        action = int(agent.act(obs))
        next_obs, reward, terminated, truncated, _ = env.step(action)
        # terminated: the pole fell (nothing follows); truncated: the time limit cut the episode
        # (the state is not terminal): only `terminated` stops the bootstrap
        steps.append((obs, action, reward, next_obs, float(terminated)))
        episode_return += float(reward)
        obs, done = next_obs, terminated or truncated
        if agent.method == "actor_critic" and (len(steps) == update_every or done):
            agent.update_from_steps(*_columns(steps))
            steps = []
    if agent.method != "actor_critic":
        states, actions, rewards, _, _ = _columns(steps)
        agent.update_from_episode(states, actions, rewards)
    return episode_return


def _columns(steps: list[tuple]) -> tuple[np.ndarray, ...]:
    states, actions, rewards, next_states, terminated = zip(*steps)
    return (np.array(states), np.array(actions), np.array(rewards, np.float32),
            np.array(next_states), np.array(terminated, np.float32))


def make_vector_env(n_envs: int) -> gym.vector.VectorEnv:
    """n CartPoles stepped together; one that ends is reset in the same step, and the state it
    ended in is kept in info["final_obs"] (it is what a cut episode bootstraps from)."""
    return gym.make_vec(ENV_ID, num_envs=n_envs, vectorization_mode="sync",
                        vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP})


def collect_rollout(envs: gym.vector.VectorEnv, obs: np.ndarray, agent: Agent,
                    steps: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """`steps` steps of every environment: arrays (T, n_envs, ...), and the observations to
    continue from. next_states holds the state each step led to, the final one (not the reset
    one) where an episode ended."""
    n = len(obs)
    batch = {"states": np.zeros((steps, n, 4), np.float32),
             "actions": np.zeros((steps, n), np.int64),
             "rewards": np.zeros((steps, n), np.float32),
             "next_states": np.zeros((steps, n, 4), np.float32),
             "terminated": np.zeros((steps, n), np.float32),
             "done": np.zeros((steps, n), np.float32)}
    for t in range(steps):
        actions = agent.act(obs)
        next_obs, rewards, terminated, truncated, info = envs.step(actions)
        done = terminated | truncated
        reached = next_obs.copy()
        if done.any():
            reached[done] = np.stack(info["final_obs"][done])
        batch["states"][t], batch["actions"][t], batch["rewards"][t] = obs, actions, rewards
        batch["next_states"][t], batch["terminated"][t], batch["done"][t] = (
            reached, terminated, done)
        obs = next_obs
    return batch, obs


# --- training -------------------------------------------------------------------------------
def train(config: Config, method: str, seed: int) -> np.ndarray:
    """Returns of each episode, until the 100-episode average reaches the target."""
    if method == "a2c":
        return train_a2c(config, seed)
    rng = np.random.default_rng(seed)
    agent = Agent(config, method, rng)
    env = gym.make(ENV_ID)
    returns: list[float] = []
    progress = cli.Progress(config.max_episodes, label="episode", every=5.0)
    for episode in range(1, config.max_episodes + 1):
        returns.append(play_episode(env, agent, int(rng.integers(2**31)), config.update_every))
        average = float(np.mean(returns[-100:]))
        progress.update(episode, average=average)
        if len(returns) >= 100 and average >= config.target_average:
            break
    env.close()
    return np.array(returns)


def train_a2c(config: Config, seed: int) -> np.ndarray:
    """A2C: returns of the episodes in the order they end (any environment), as train()."""
    rng = np.random.default_rng(seed)
    agent = Agent(config, "a2c", rng)
    envs = make_vector_env(config.a2c_envs)
    obs, _ = envs.reset(seed=int(rng.integers(2**31)))  # environment i gets seed + i
    running = np.zeros(config.a2c_envs)  # return so far of each environment's episode
    returns: list[float] = []
    progress = cli.Progress(config.max_episodes, label="episode", every=5.0)
    while len(returns) < config.max_episodes:
        batch, obs = collect_rollout(envs, obs, agent, config.a2c_steps)
        for rewards, done in zip(batch["rewards"], batch["done"]):
            running += rewards
            returns.extend(running[done > 0])
            running[done > 0] = 0.0
        agent.update_from_rollout(batch, config.gae_lambda, config.entropy_bonus)
        average = float(np.mean(returns[-100:])) if returns else 0.0
        progress.update(min(len(returns), config.max_episodes), average=average)
        if len(returns) >= 100 and average >= config.target_average:
            break
    envs.close()
    return np.array(returns[:config.max_episodes])


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


def held_curve(returns: np.ndarray, episodes: int) -> np.ndarray:
    """The 100-episode average over `episodes` episodes; a run that stopped once solved is held
    at its last value (it would have gone on solving)."""
    curve = trailing_average(returns)
    return np.concatenate([curve, np.full(episodes - len(curve), curve[-1])])


def area_under_curve(returns: np.ndarray, episodes: int) -> float:
    """Mean of the held 100-episode average over the budget: 475+ means solved from the start."""
    return float(held_curve(returns, episodes).mean())


# --- figure and experiment ------------------------------------------------------------------
COLOURS = {"reinforce": "tab:red", "reinforce_baseline": "tab:blue", "actor_critic": "tab:green",
           "a2c": "tab:purple"}
LABELS = {"reinforce": "REINFORCE", "reinforce_baseline": "REINFORCE + baseline",
          "actor_critic": "actor-critic (one-step TD error)",
          "a2c": "A2C (8 envs, GAE, entropy; beyond the post)"}
TICK_LABELS = {"reinforce": "REINFORCE", "reinforce_baseline": "REINFORCE\n+ baseline",
               "actor_critic": "actor-critic\n(TD error)", "a2c": "A2C"}


def plot(runs: dict[str, list[np.ndarray]], config: Config, path: str) -> None:
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.4),
                                      gridspec_kw={"width_ratios": [2.2, 1]})
    x = np.arange(1, config.max_episodes + 1)
    for method, results in runs.items():
        held = np.array([held_curve(r, config.max_episodes) for r in results])
        area = np.mean([area_under_curve(r, config.max_episodes) for r in results])
        left.plot(x, held.mean(0), color=COLOURS[method], lw=2.2,
                  label=f"{LABELS[method]}: area {area:.0f}")
        left.fill_between(x, held.min(0), held.max(0), color=COLOURS[method], alpha=0.15, lw=0)
    left.axhline(config.target_average, color="black", ls=(0, (4, 3)), lw=1.2, zorder=5,
                 label=f"solved: {config.target_average:g}")
    seeds = len(next(iter(runs.values())))
    left.set(xlabel="episode (A2C: episodes ended in any of its environments, in order)",
             ylabel="average return of the last 100 episodes", ylim=(0, 510),
             xlim=(0, config.max_episodes),
             title=f"CartPole-v1: mean of {seeds} seeds, band = their range "
                   "(a solved run stops and is held)")
    left.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2, fontsize=9,
                title="area = mean of the curve over the episodes shown", title_fontsize=8.5)
    for i, (method, results) in enumerate(runs.items()):
        needed = np.array([episodes_to_reach(r, config.target_average) for r in results])
        reached = needed[~np.isnan(needed)]
        right.scatter(np.full(len(reached), i) + np.linspace(-0.15, 0.15, len(reached)),
                      reached, color=COLOURS[method])
        note = f"mean {reached.mean():.0f}" if len(reached) else \
            f"best avg.\n{np.mean([trailing_average(r).max() for r in results]):.0f}"
        right.text(i, config.max_episodes * 1.03, f"{len(reached)}/{len(results)} solved\n{note}",
                   ha="center", va="bottom", fontsize=8.5)
    right.set_xticks(range(len(runs)), [TICK_LABELS[m] for m in runs], fontsize=8.5)
    right.set(ylabel=f"episodes to a 100-episode average of {config.target_average:g}",
              ylim=(0, config.max_episodes * 1.2), xlim=(-0.5, len(runs) - 0.5),
              title=f"Episodes to solve, each seed (at most {config.max_episodes})")
    viz.save_figure(fig, path)


def run(config: Config) -> dict[str, float]:
    os.makedirs(config.out_dir, exist_ok=True)
    master = np.random.default_rng(config.seed)
    seeds = [int(s) for s in master.integers(2**31, size=config.seeds)]  # shared by methods
    runs: dict[str, list[np.ndarray]] = {}
    metrics: dict[str, float] = {}
    for method in config.methods:
        runs[method] = []
        start = time.process_time()  # CPU seconds: other jobs on the machine do not count
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
        metrics[f"{method}_area"] = float(np.mean(
            [area_under_curve(r, config.max_episodes) for r in runs[method]]))
        metrics[f"{method}_cpu_seconds"] = time.process_time() - start
    plot(runs, config, os.path.join(config.out_dir, "learning_curves.png"))
    return metrics


if __name__ == "__main__":
    cli.main(__name__)
