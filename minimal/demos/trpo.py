"""Parallel TRPO with adaptive step sizes.

Follows the post on speeding up Trust Region Policy Optimization (Schulman et al., 2015) with
parallel rollout workers and on adapting two of its settings while it trains. (Past TRPO
itself, the file holds the post's two experiments, each with its figure: the workers' speed-up
and the adaptive settings; hence its length.)

Idea. A policy-gradient step moves the parameters a fixed distance in parameter space, but what
matters is how much the policy's behaviour changes. TRPO maximises the surrogate advantage
subject to a limit on the average KL divergence between the old and the new policy:

    maximise  L(theta) = mean_t [ pi_theta(a_t|s_t) / pi_old(a_t|s_t) * A_t ]
    subject to  mean_t KL(pi_old(.|s_t) || pi_theta(.|s_t)) <= max_kl

Key equations (g = grad L, F = the Fisher matrix = Hessian of the KL at theta_old):

    s     = F^-1 g              conjugate gradient, 10 products F v, each by double backprop
                                of the self-KL (minimal/natural.py), plus damping * v
    step  = s / sqrt(0.5 s'Fs / max_kl)      the quadratic KL model then equals max_kl
    theta = theta + 2^-k step   first k = 0..9 whose real improvement is > 0.1 of the linear
                                model's g'step 2^-k and whose measured KL is <= 1.5 max_kl
    A_t   = GAE(gamma, lambda) with a learned value baseline V(s), standardised over the batch
            (lambda = 1: discounted returns minus V, the post's version; 0.97 the default here)

Parallel rollouts (minimal/rl/rollouts/): N worker processes (or Ray actors, `--backend ray`),
each its own environment and a NumPy copy of the policy; the learner sends the parameters each
iteration as one flat array and hands out episode numbers; episode k is seeded from (seed, k),
so the batch is bit-identical for any number of workers and either backend. The iteration's
time splits into *collect* (waiting for the workers) and *learn* (value fit, policy gradient,
CG, line search).

Adaptive settings (the post's second half). Every 10 iterations, compare the summed mean
reward of the last 10 iterations with that of the 10 before. If it did not improve by the margin
(5% of |previous| in the margin variant, 0 otherwise): more steps per update (steps_delta, up to
a cap) and a smaller max_kl (kl_delta, down to a floor), i.e. more careful updates; if it did:
fewer steps and a larger max_kl, i.e. faster ones.

Run:  python -m minimal.demos.trpo [--quick] [--seed 0] [--workers 2] [--env-ids Pendulum-v1]
      python -m minimal.demos.trpo --preset mujoco [--env-ids Humanoid-v5 --total-steps 2000000]
      python -m minimal.demos.trpo --backend ray [--ray-address HEAD:6379 --workers 32]
MuJoCo tasks need `pip install -e .[mujoco]`, Ray `pip install -e .[ray]`. Without an address
Ray starts a private local instance and stops it on exit (Ctrl-C included); on a cluster, run
`ray start --head` on one node and `ray start --address HEAD:6379` on the others (each with this
project installed; RAY_AUTH_MODE=token and the cluster's token if it uses token authentication).

Figures and files (in out_dir):
    reward_<env>.png      mean episode return per iteration against environment steps and
                          against wall-clock seconds
    tasks.png             with several environments: every task's curve, against steps and
                          against seconds, the published 1M-step figure dashed
    policy_<env>.npz      the trained policy: PolicySpec, the shipped vector (parameters, then
                          the normaliser's mean and std) and the normaliser's count/mean/var;
                          load_policy(path) -> (spec, vector, normaliser); Actor(spec, vector)
    episode_<env>.gif     one episode of the trained policy, its mean action (minimal/rl/render.py)
    workers_speed.png     the post's speed-up figure: collect and learn seconds per iteration
                          for 1, 2, ... workers (same batches), and the collect speed-up
    adaptive.png          fixed settings against adaptive steps/update, adaptive max_kl, both,
                          and both with the 5% margin: return, steps/update and max_kl per step

Settings that matter: max_kl (0.01 is safe; larger learns faster on CartPole), steps_per_update
(more = less noisy gradient, fewer updates), init_log_std and obs_norm on MuJoCo, gae_lambda.
Safe to leave alone: cg_iters 10, cg_damping 0.1, the line search's 10 tries (9 halvings) and
0.1 ratio. The default environments are CartPole-v1 and Pendulum-v1.

The MuJoCo preset (--preset mujoco: HalfCheetah, Swimmer, Reacher, Hopper, 1M steps each) adds
what the strong public TRPO implementations use: running observation normalisation (the policy
and the value network see clip((obs - mean) / std, -10, 10), the statistics updated by the
learner from each batch and shipped to the workers with the parameters), 2000 steps per update,
a smaller initial action noise (log std -0.5), and for Hopper a larger KL limit (0.02, the
setting --task-max-kl Hopper-v5=0.02). A flag given explicitly wins over the preset
(--preset mujoco --obs-norm false). Each addition's effect is in benchmarks/README.md.

Departures from the post's code: (1) it computed the backtracking line search and then always
applied the full step; here the line search's result is what is applied (and the old parameters
are kept when no fraction passes). (2) Its adaptive-history dictionary was never initialised;
here AdaptiveSchedule starts with an empty history and only adapts once 20 iterations exist.
(3) The value baseline is an MLP fitted with Adam (the post used a linear/L-BFGS fit; L-BFGS is
value_fit=lbfgs). (4) The post's Humanoid runs (4+ cores) are scaled down to 1M steps.

Results (seed 0 unless said; the per-run record, the worker speed-ups, the adaptive runs and
the timings are in benchmarks/README.md):

    run                                  result
    quick: CartPole-v1, 45k steps        best return 500, >= 450 after 37k steps, KL <= 0.81
                                         of the limit; ~50 s
    CartPole-v1, 150k steps              >= 450 after 66k steps; last-5 mean 493
    Pendulum-v1, 1M steps                last-5 mean -145 (best iteration -108); 7 min
    collect, 1 worker / 2 workers        1.6-2.0x on 2 otherwise idle cores (the post: ~2x
                                         with 4 workers on 4 cores)
    Humanoid-v5, --preset mujoco, 1M     637.5: it stands and staggers ~120 steps; walking
                                         needs tens of millions of steps

--preset mujoco, 1M steps, seeds 0-4 (training: the mean of the last 10 iterations' episodes;
mean action: 10 episodes of the deterministic policy after training; published: OpenAI
baselines' TRPO at 1M steps, a mean over its seeds):
    task          training: mean (sd)  worst   mean action: mean  worst   published
    HalfCheetah   4854 (882)           3238    5300               3615    1290
    Swimmer       123.1 (8.9)          105.9   124.7              106.5   95
    Reacher       -3.89 (0.12)         -3.97   -3.62              -4.41   -4.8
    Hopper        2264 (257)           1927    2814               1868    1910
Every task's mean is above the published figure, and every seed of the first three by a wide
margin. Hopper's worst seed only just clears 1910 (its mean action does not), and runs are not
bit-identical across machines, so for Hopper what holds is the mean, not every seed.
"""
from __future__ import annotations

import difflib
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from itertools import pairwise

import gymnasium as gym
import matplotlib
import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np
from scipy.signal import lfilter

from minimal import functional as F
from minimal import nn
from minimal.app import cli, files, viz
from minimal.autograd import Parameter, Tensor, no_grad
from minimal.distributions import Categorical, DiagGaussian
from minimal.errors import ConfigError
from minimal.kernels.process import limit_blas_threads
from minimal.natural import (
    fisher_vector_product,
    flat_grad,
    flat_parameters,
    line_search,
    natural_direction,
    set_flat_parameters,
)
from minimal.optim import Adam
from minimal.rl.envs import make as make_env
from minimal.rl.render import episode_frames, greedy_return, is_mujoco
from minimal.rl.rollouts import (
    Actor,
    Episode,
    PolicySpec,
    RunningMeanStd,
    check_backend,
    make_pool,
)
from minimal.rl.rollouts.speed import time_worker_counts

matplotlib.use("Agg")  # figures go to files; no display needed


@dataclass
class Config:
    seed: int = 0  # seed for the networks and for every episode (episode k uses (seed, k))
    env_ids: tuple = ("CartPole-v1", "Pendulum-v1")  # environments, trained one after another
    total_steps: int = 1_000_000  # environment steps per environment
    steps_per_update: int = 5000  # steps collected per TRPO iteration (whole episodes)
    max_kl: float = 0.01  # KL limit of each update
    task_max_kl: tuple = ()  # max_kl for particular environments, as ENV=VALUE pairs
    # (--preset mujoco gives Hopper-v5=0.02; --task-max-kl "" drops it)
    cg_damping: float = 0.1  # damping added to the Fisher matrix, F + damping * I
    cg_iters: int = 10  # conjugate-gradient iterations
    fisher_subsample: int = 5  # Fisher-vector products use every n-th state of the batch
    gamma: float = 0.99  # discount
    gae_lambda: float = 0.97  # GAE lambda (1.0: discounted returns minus the baseline)
    hidden: tuple = (64, 64)  # hidden layer widths of the policy and of the value network
    activation: str = "relu"  # hidden activation of the policy: relu (the post) or tanh
    value_fit: str = "adam"  # how the baseline is fitted: adam (minibatch epochs) or lbfgs
    value_lr: float = 1e-3  # Adam learning rate of the value baseline
    value_epochs: int = 5  # passes over the batch to fit the baseline each iteration (adam)
    value_iters: int = 25  # L-BFGS iterations on the whole batch per fit (lbfgs)
    obs_norm: bool = False  # normalise observations by their running mean and std
    init_log_std: float = 0.0  # initial log std of a Gaussian policy (0: std 1)
    workers: int = 2  # rollout worker processes (0: collect in the learner's process)
    adaptive_steps: bool = False  # adapt steps/update every 10 iterations
    adaptive_kl: bool = False  # adapt max_kl every 10 iterations
    margin: float = 0.0  # improvement margin of the adaptive rule (0.05 = the post's 5%)
    speed_workers: tuple = (1, 2)  # worker counts timed for the speed-up figure (empty: skip)
    speed_iterations: int = 5  # timed iterations per worker count, median reported (0: skip)
    compare_env: str = "Pendulum-v1"  # environment of the fixed-vs-adaptive figure
    compare_steps: int = 300_000  # steps per run in the fixed-vs-adaptive comparison (0: skip)
    gif: bool = True  # GIF of one episode per trained policy (CartPole, or MuJoCo through EGL)
    eval_episodes: int = 10  # after training: episodes of the mean action, its average return
    out_dir: str = "outputs/trpo"  # where figures are written
    backend: str = "process"  # rollout workers: process (this machine) or ray (Ray actors)
    ray_address: str = ""  # Ray cluster to join, e.g. HEAD:6379 (empty: start Ray locally)

    def __post_init__(self):
        cli.validate(self, whole=("seed", "workers", "speed_iterations", "compare_steps",
                                  "eval_episodes"),
                     counts=("total_steps", "steps_per_update", "cg_iters", "fisher_subsample",
                             "hidden", "value_epochs", "value_iters", "speed_workers"),
                     nonempty=("env_ids", "hidden"),
                     positive=("max_kl", "value_lr"), non_negative=("cg_damping", "margin"),
                     fractions=("gamma", "gae_lambda"),
                     choices={"activation": ("relu", "tanh"), "value_fit": ("adam", "lbfgs")})
        # an unknown id is refused here, not by gym.make after the first environment trained
        named = [("env_ids", env_id) for env_id in self.env_ids] + [("compare_env",
                                                                     self.compare_env)]
        named += [("task_max_kl", env_id) for env_id in task_max_kl(self)]
        for name, env_id in named:
            if env_id not in gym.registry:
                close = difflib.get_close_matches(str(env_id), list(gym.registry), n=3)
                hint = f"did you mean {', '.join(close)}?" if close else \
                    "expected a gymnasium id such as CartPole-v1"
                raise ConfigError(f"{name} (--{name.replace('_', '-')}): unknown environment "
                                  f"{env_id!r}; {hint}")
        check_backend(self.backend, self.workers, self.ray_address)


def task_max_kl(config: Config) -> dict[str, float]:
    """--task-max-kl as {environment id: max_kl}; a malformed pair is a ConfigError."""
    limits = {}
    for pair in config.task_max_kl:
        env_id, _, text = str(pair).partition("=")
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not env_id or not math.isfinite(value) or value <= 0:
            raise ConfigError(f"task_max_kl (--task-max-kl) must be ENV=VALUE pairs with a "
                              f"finite VALUE > 0, e.g. Hopper-v5=0.02; got {pair!r}")
        limits[env_id] = value
    return limits


def task_config(config: Config, env_id: str) -> Config:
    """The config one environment trains with: its own max_kl if --task-max-kl names it."""
    limits = task_max_kl(config)
    return replace(config, max_kl=limits[env_id]) if env_id in limits else config


MUJOCO_TASKS = ("HalfCheetah-v5", "Swimmer-v5", "Reacher-v5", "Hopper-v5")
MUJOCO = {  # --preset mujoco (each setting measured; see the docstring)
    "env_ids": MUJOCO_TASKS,
    "total_steps": 1_000_000,
    "obs_norm": True,
    "steps_per_update": 2000,
    "init_log_std": -0.5,
    # Hopper's own KL limit (its runs with each limit: benchmarks/README.md)
    "task_max_kl": ("Hopper-v5=0.02",),
    "speed_iterations": 0,
    "compare_steps": 0,
}
PRESETS = {"mujoco": MUJOCO}  # --preset NAME (cli.py): applied before the flags given

# OpenAI baselines' TRPO benchmark at 1M steps (the -v1 tasks of its time)
PUBLISHED_1M = {"HalfCheetah-v5": 1290.0, "Swimmer-v5": 95.0, "Reacher-v5": -4.8,
                "Hopper-v5": 1910.0}


QUICK = {
    "env_ids": ("CartPole-v1",),
    "total_steps": 45_000,
    "steps_per_update": 3000,
    "max_kl": 0.02,
    "speed_iterations": 3,
    "compare_steps": 0,
}

TARGETS = {
    "CartPole-v1_best_return": (">=", 450.0),  # quick, seed 0: 500, first >= 450 at 37k steps
    "kl_max_over_limit": ("<=", 1.5),
}


def ray_cpus(config: Config) -> int:
    """CPUs a local Ray instance needs: the most actors the run holds at once."""
    return max(config.workers, sum(config.speed_workers))


# ===== the policy and the value baseline ===================================================

class MLPPolicy(nn.Module):
    """obs -> hidden layers -> logits (Categorical) or mean (DiagGaussian, state-independent
    log std). Float64, so the line search's small improvements are not rounding noise."""

    def __init__(self, spec: PolicySpec, rng: np.random.Generator):
        super().__init__()
        self.spec = spec
        self.layers = nn.ModuleList(nn.Linear(n_in, n_out, rng=rng)
                                    for n_in, n_out in spec.layer_sizes())
        # a small last layer: the first policy is close to uniform / zero-mean
        self.layers[-1].weight.data *= 0.01
        self.layers[-1].bias.data *= 0.0
        if not spec.discrete:
            self.log_std = Parameter(np.zeros(spec.act_dim))
        for p in self.parameters():
            p.data = p.data.astype(np.float64)

    def ordered_parameters(self) -> list[Parameter]:
        """In PolicySpec's flat layout: each layer's weight and bias, then log std."""
        params = [p for layer in self.layers for p in (layer.weight, layer.bias)]
        return params + ([] if self.spec.discrete else [self.log_std])

    def forward(self, observations: Tensor) -> Categorical | DiagGaussian:
        x = observations
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = x.tanh() if self.spec.activation == "tanh" else x.relu()
        return Categorical(x) if self.spec.discrete else DiagGaussian(x, self.log_std)


def value_network(obs_dim: int, hidden: tuple, rng: np.random.Generator) -> nn.Sequential:
    widths = (obs_dim,) + tuple(hidden)
    layers: list[nn.Module] = []
    for n_in, n_out in pairwise(widths):
        layers += [nn.Linear(n_in, n_out, rng=rng), nn.Tanh()]
    net = nn.Sequential(*layers, nn.Linear(widths[-1], 1, rng=rng))
    for p in net.parameters():
        p.data = p.data.astype(np.float64)
    return net


def fit_value(net: nn.Sequential, optimizer: Adam, observations: np.ndarray, targets: np.ndarray,
              epochs: int, rng: np.random.Generator, batch_size: int = 256) -> float:
    """A few epochs of minibatch regression of V(s) on the targets; returns the last loss."""
    loss_value = 0.0
    for _ in range(epochs):
        order = rng.permutation(len(targets))
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            loss = F.mse_loss(net(Tensor(observations[rows])).reshape(-1), targets[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss_value = float(loss.data)
    return loss_value


def fit_value_lbfgs(net: nn.Sequential, observations: np.ndarray, targets: np.ndarray,
                    iterations: int) -> float:
    """Fit V(s) on the whole batch with scipy's L-BFGS (the original TRPO code's choice):
    a quasi-Newton method needs no learning rate and gets close in a few dozen steps."""
    from scipy.optimize import minimize

    params = list(net.parameters())
    obs = Tensor(observations)

    def loss_and_gradient(flat: np.ndarray) -> tuple[float, np.ndarray]:
        set_flat_parameters(params, flat)
        loss = F.mse_loss(net(obs).reshape(-1), targets)
        return float(loss.data), flat_grad(loss, params)

    result = minimize(loss_and_gradient, flat_parameters(params), jac=True, method="L-BFGS-B",
                      options={"maxiter": iterations})
    set_flat_parameters(params, result.x)
    return float(result.fun)


def predict_values(net: nn.Sequential, observations: np.ndarray) -> np.ndarray:
    with no_grad():
        return net(Tensor(observations)).data.reshape(-1)


# ===== advantages ===========================================================================

def discounted_cumsum(x: np.ndarray, discount: float) -> np.ndarray:
    """y_t = sum_k discount^k x_{t+k}, as a linear filter run backwards."""
    return lfilter([1.0], [1.0, -discount], x[::-1])[::-1]


def advantages_and_targets(episodes: list[Episode], values: list[np.ndarray],
                           final_values: np.ndarray, gamma: float,
                           lam: float) -> tuple[np.ndarray, np.ndarray]:
    """GAE advantages and TD(lambda) value targets, episode by episode.

    An episode cut by the time limit is bootstrapped with V(final observation); one that
    terminated has value 0 after its last step.
    """
    advantages, targets = [], []
    for episode, v, v_final in zip(episodes, values, final_values):
        next_values = np.append(v[1:], 0.0 if episode.terminated else v_final)
        deltas = episode.rewards + gamma * next_values - v
        adv = discounted_cumsum(deltas, gamma * lam)
        advantages.append(adv)
        targets.append(adv + v)
    return np.concatenate(advantages), np.concatenate(targets)


# ===== the TRPO update =====================================================================

@dataclass
class UpdateInfo:
    accepted: bool
    kl: float              # KL(old || new) after the update, mean over the batch
    improvement: float     # surrogate improvement
    fraction: float        # fraction of the full natural step taken


def trpo_update(policy: MLPPolicy, observations: np.ndarray, actions: np.ndarray,
                advantages: np.ndarray, max_kl: float, damping: float, cg_iters: int,
                fisher_subsample: int = 1, kl_tolerance: float = 1.5) -> UpdateInfo:
    """One TRPO step on a batch; the policy's parameters are updated in place.

    The Fisher matrix is estimated on every `fisher_subsample`-th state (OpenAI baselines uses
    every 5th): CG needs 11 products and each costs a pass over those states, while the
    gradient, the line search and the KL check use the whole batch.
    """
    params = policy.ordered_parameters()
    obs = Tensor(observations)
    adv = Tensor(advantages)
    with no_grad():
        # detach() copies: a Gaussian's log_std is the Parameter itself, which the line search
        # changes (a stale std against a new log_std would give negative KLs)
        old = policy(obs).detach()
        old_log_prob = old.log_prob(actions).data

    def surrogate(pi) -> Tensor:
        ratio = (pi.log_prob(actions) - Tensor(old_log_prob)).exp()
        return (ratio * adv).mean()

    gradient = flat_grad(surrogate(policy(obs)), params)
    # the self-KL, first argument held fixed: zero value, zero gradient, Hessian = Fisher
    pi = policy(Tensor(observations[::fisher_subsample]))
    fvp = fisher_vector_product(pi.detach().kl(pi).mean(), params, damping)
    full_step, expected = natural_direction(gradient, fvp, max_kl, cg_iters)
    start = flat_parameters(params)

    def surrogate_at(flat: np.ndarray) -> float:
        set_flat_parameters(params, flat)
        with no_grad():
            return float(surrogate(policy(obs)).data)

    def kl_at(flat: np.ndarray) -> float:
        set_flat_parameters(params, flat)
        with no_grad():
            return float(old.kl(policy(obs)).mean().data)

    result = line_search(surrogate_at, start, full_step, expected, kl=kl_at,
                         max_kl=kl_tolerance * max_kl)
    set_flat_parameters(params, result.params)  # the line search's choice, not the full step
    return UpdateInfo(result.accepted, result.kl, result.improvement, result.fraction)


# ===== adaptive steps/update and max_kl ====================================================

@dataclass
class AdaptiveSchedule:
    """The post's rule, checked every `every` iterations once 2 * every rewards are recorded."""

    steps_per_update: int
    max_kl: float
    adapt_steps: bool = False
    adapt_kl: bool = False
    margin: float = 0.0            # 0.05: must beat the previous window by 5% of |previous|
    every: int = 10
    steps_delta: int = 1000
    steps_bounds: tuple = (1000, 20000)
    kl_delta: float = 0.002
    kl_bounds: tuple = (0.002, 0.05)
    history: list = field(default_factory=list)  # starts empty (the post's code never set it)

    def improved(self) -> bool:
        recent = sum(self.history[-self.every:])
        previous = sum(self.history[-2 * self.every:-self.every])
        return recent > previous + self.margin * abs(previous)

    def record(self, mean_reward: float) -> None:
        """Add this iteration's mean reward; adapt every `every` iterations."""
        self.history.append(float(mean_reward))
        n = len(self.history)
        if n < 2 * self.every or n % self.every:
            return
        # not improving: gather more data and take smaller steps; improving: the reverse
        direction = -1 if self.improved() else 1
        if self.adapt_steps:
            low, high = self.steps_bounds
            self.steps_per_update = int(np.clip(
                self.steps_per_update + direction * self.steps_delta, low, high))
        if self.adapt_kl:
            low, high = self.kl_bounds
            self.max_kl = float(np.clip(self.max_kl - direction * self.kl_delta, low, high))


# ===== training ===========================================================================

def policy_spec_for(env_id: str, hidden: tuple, activation: str,
                    obs_norm: bool = False) -> PolicySpec:
    env = make_env(env_id)
    obs_dim = int(np.prod(env.observation_space.shape))
    if isinstance(env.action_space, gym.spaces.Discrete):
        spec = PolicySpec(obs_dim, int(env.action_space.n), tuple(hidden), True, activation,
                          obs_norm)
    else:
        spec = PolicySpec(obs_dim, int(np.prod(env.action_space.shape)), tuple(hidden), False,
                          activation, obs_norm)
    env.close()
    return spec


def shipped_parameters(policy: MLPPolicy, normalizer: RunningMeanStd | None) -> np.ndarray:
    """What the workers receive: the policy's flat parameters, then the normaliser's mean and
    std (PolicySpec's layout), so any rollout backend normalises exactly as the learner."""
    flat = flat_parameters(policy.ordered_parameters())
    if normalizer is None:
        return flat
    return np.concatenate([flat, normalizer.mean, normalizer.std])


def save_policy(path: str, spec: PolicySpec, shipped: np.ndarray,
                normalizer: RunningMeanStd | None) -> None:
    """The policy as one .npz: its spec, the shipped vector (normaliser included) and the
    normaliser's running statistics (count, mean, var), written atomically."""
    state = normalizer.state() if normalizer is not None else {}
    files.save_arrays(path, {"params": shipped, "obs_dim": spec.obs_dim, "act_dim": spec.act_dim,
                             "hidden": np.array(spec.hidden), "discrete": spec.discrete,
                             "activation": spec.activation, "obs_norm": spec.obs_norm, **state})


def load_policy(path: str) -> tuple[PolicySpec, np.ndarray, RunningMeanStd | None]:
    """(spec, shipped vector, normaliser) as saved: Actor(spec, vector) acts like the policy."""
    data = files.load_arrays(path)
    spec = PolicySpec(int(data["obs_dim"]), int(data["act_dim"]),
                      tuple(int(h) for h in data["hidden"]), bool(data["discrete"]),
                      str(data["activation"]), bool(data["obs_norm"]))
    normalizer = RunningMeanStd.from_state(data) if spec.obs_norm else None
    return spec, data["params"].copy(), normalizer


@dataclass
class Trained:
    """What train() returns besides the records: enough to save, reload and watch the policy."""
    spec: PolicySpec
    shipped: np.ndarray                 # the policy's parameters (+ normaliser), as shipped
    normalizer: RunningMeanStd | None


def train(config: Config, env_id: str, total_steps: int, label: str = "",
          stop_at_return: float | None = None,
          on_iteration: Callable[[dict], None] | None = None
          ) -> tuple[dict[str, np.ndarray], Trained]:
    """TRPO on one environment; returns per-iteration records (steps, seconds, returns...)
    and the final policy (its shipped vector: parameters, then the normaliser's statistics).
    `on_iteration(records)`, if given, sees the records so far after every iteration."""
    limit_blas_threads(1)  # the learner's BLAS must not fight the workers for the cores
    config = task_config(config, env_id)
    rng = np.random.default_rng([config.seed, 1])
    spec = policy_spec_for(env_id, config.hidden, config.activation, config.obs_norm)
    policy = MLPPolicy(spec, rng)
    if not spec.discrete:
        policy.log_std.data[:] = config.init_log_std
    value = value_network(spec.obs_dim, config.hidden, rng)
    value_optimizer = Adam(value.parameters(), lr=config.value_lr)
    normalizer = RunningMeanStd(spec.obs_dim) if config.obs_norm else None
    schedule = AdaptiveSchedule(config.steps_per_update, config.max_kl, config.adaptive_steps,
                                config.adaptive_kl, config.margin)
    records: dict[str, list] = {key: [] for key in (
        "steps", "seconds", "mean_return", "collect_seconds", "learn_seconds", "kl", "max_kl",
        "steps_per_update", "accepted", "entropy", "value_loss", "collect_cpu_seconds",
        "learn_cpu_seconds")}
    steps, start = 0, time.perf_counter()
    progress = cli.Progress(total_steps, label=f"{label or env_id} steps", every=5.0)
    with make_pool(config.backend, env_id, spec, config.seed, config.workers,
                   config.ray_address, ray_cpus(config)) as pool:
        while steps < total_steps:
            # CPU seconds of this process: with workers=0 collect's count is the stepping's own
            # cost, unlike wall seconds, which other jobs on the machine inflate
            collect_cpu = time.process_time()
            episodes = pool.collect(shipped_parameters(policy, normalizer),
                                    schedule.steps_per_update)
            collect_seconds = pool.stats.seconds
            learn_start, learn_cpu = time.perf_counter(), time.process_time()
            collect_cpu = learn_cpu - collect_cpu
            observations = np.concatenate([e.observations for e in episodes])
            final_observations = np.stack([e.final_observation for e in episodes])
            if normalizer is not None:
                # the statistics the workers acted with, so the old policy is exactly theirs;
                # the batch updates them afterwards, for the next iteration
                raw_observations = observations
                observations = normalizer.normalize(raw_observations)
                final_observations = normalizer.normalize(final_observations)
            actions = np.concatenate([e.actions for e in episodes])
            all_values = predict_values(value, observations)
            values = np.split(all_values, np.cumsum([len(e) for e in episodes])[:-1])
            final_values = predict_values(value, final_observations)
            advantages, targets = advantages_and_targets(episodes, values, final_values,
                                                         config.gamma, config.gae_lambda)
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
            info = trpo_update(policy, observations, actions, advantages, schedule.max_kl,
                               config.cg_damping, config.cg_iters, config.fisher_subsample)
            if config.value_fit == "lbfgs":
                value_loss = fit_value_lbfgs(value, observations, targets, config.value_iters)
            else:
                value_loss = fit_value(value, value_optimizer, observations, targets,
                                       config.value_epochs, rng)
            with no_grad():
                entropy = float(policy(Tensor(observations[::config.fisher_subsample]))
                                .entropy().mean().data)
            if normalizer is not None:
                normalizer.update(raw_observations)
            learn_seconds = time.perf_counter() - learn_start
            learn_cpu = time.process_time() - learn_cpu

            steps += len(observations)
            mean_return = float(np.mean([e.total_reward for e in episodes]))
            for key, item in (("steps", steps), ("seconds", time.perf_counter() - start),
                              ("mean_return", mean_return), ("collect_seconds", collect_seconds),
                              ("learn_seconds", learn_seconds), ("kl", info.kl),
                              ("max_kl", schedule.max_kl),
                              ("steps_per_update", schedule.steps_per_update),
                              ("accepted", float(info.accepted)), ("entropy", entropy),
                              ("value_loss", value_loss), ("collect_cpu_seconds", collect_cpu),
                              ("learn_cpu_seconds", learn_cpu)):
                records[key].append(item)
            schedule.record(mean_return)
            progress.update(min(steps, total_steps), mean_return=mean_return, kl=info.kl)
            if on_iteration is not None:
                on_iteration(records)
            if stop_at_return is not None and mean_return >= stop_at_return:
                break
    trained = Trained(spec, shipped_parameters(policy, normalizer), normalizer)
    return {key: np.asarray(items, dtype=np.float64) for key, items in records.items()}, trained


def time_workers(config: Config, env_id: str, trained: Trained, worker_counts: tuple,
                 iterations: int) -> dict:
    """The post's speed-up: collect and learn seconds per iteration for each worker count, on
    identical batches of a trained policy (an untrained CartPole policy plays 20-step episodes,
    where messages, not steps, dominate); the update is timed from the same policy each time."""
    limit_blas_threads(1)
    spec, flat = trained.spec, trained.shipped
    policy = MLPPolicy(spec, np.random.default_rng(0))
    set_flat_parameters(policy.ordered_parameters(), flat[:spec.num_policy_parameters()])

    def learn(episodes: list[Episode]) -> None:
        observations = np.concatenate([e.observations for e in episodes])
        if trained.normalizer is not None:
            observations = trained.normalizer.normalize(observations)
        actions = np.concatenate([e.actions for e in episodes])
        advantages = np.concatenate([discounted_cumsum(e.rewards, config.gamma)
                                     for e in episodes])
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        saved = flat_parameters(policy.ordered_parameters())
        trpo_update(policy, observations, actions, advantages, config.max_kl,
                    config.cg_damping, config.cg_iters, config.fisher_subsample)
        set_flat_parameters(policy.ordered_parameters(), saved)  # the same policy for all

    pools = {n: make_pool(config.backend, env_id, spec, config.seed, n, config.ray_address,
                          ray_cpus(config)) for n in worker_counts}
    return time_worker_counts(pools, flat, config.steps_per_update, learn, iterations)


# ===== figures ============================================================================

def _thousands(ax) -> None:
    """Label a step axis 0, 50k, 100k, ... (full numbers run into each other)."""
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(
        lambda value, _: f"{value / 1e6:g}M" if value >= 1e6 else f"{value / 1e3:g}k"))


def plot_rewards(records: dict, env_id: str, path: str) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    axes[0].plot(records["steps"], records["mean_return"])
    axes[0].set_xlabel("environment steps")
    _thousands(axes[0])
    axes[1].plot(records["seconds"], records["mean_return"], color="tab:orange")
    axes[1].set_xlabel("wall-clock seconds")
    for ax in axes:
        ax.set_ylabel("mean episode return")
        ax.grid(alpha=0.3)
    fig.suptitle(f"TRPO on {env_id}: mean return per iteration")
    viz.save_figure(fig, path)


def plot_workers(timings: dict, env_id: str, steps: int, path: str) -> None:
    counts = sorted(timings)
    collect = [timings[n]["collect"] for n in counts]
    learn = [timings[n]["learn"] for n in counts]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    positions = np.arange(len(counts))
    axes[0].bar(positions, collect, label="collect (workers)")
    axes[0].bar(positions, learn, bottom=collect, label="learn (learner)")
    axes[0].set_xticks(positions, [str(n) for n in counts])
    axes[0].set_xlabel("rollout workers")
    axes[0].set_ylabel("seconds per iteration (median)")
    axes[0].set_title(f"{env_id}, {steps} steps per iteration")
    axes[0].legend()
    speedup = [collect[0] / c for c in collect]
    axes[1].plot(counts, speedup, "o-", label="measured collect speed-up")
    axes[1].plot(counts, [n / counts[0] for n in counts], "k--", label="ideal")
    axes[1].set_xlabel("rollout workers")
    axes[1].set_ylabel(f"collect speed-up over {counts[0]} worker(s)")
    axes[1].set_title(f"{os.cpu_count()} CPU cores")
    axes[1].legend()
    for ax in axes:
        ax.grid(alpha=0.3)
    viz.save_figure(fig, path)


def plot_adaptive(runs: dict, env_id: str, path: str) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for name, records in runs.items():
        axes[0].plot(records["steps"], records["mean_return"], label=name)
        axes[1].plot(records["steps"], records["steps_per_update"], label=name)
        axes[2].plot(records["steps"], records["max_kl"], label=name)
    titles = ("mean episode return", "steps per update", "max KL")
    for ax, title in zip(axes, titles):
        ax.set_xlabel("environment steps")
        _thousands(ax)
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"TRPO on {env_id}: fixed settings against the adaptive rule")
    viz.save_figure(fig, path)


# ===== watching a trained policy ==========================================================

def write_episode_gif(env_id: str, trained: Trained, path: str, seed: int = 0,
                      max_steps: int = 500) -> float:
    """A GIF of one episode of the trained policy (its mean action, minimal/rl/render.py);
    returns the episode's return."""
    frames, total, seconds = episode_frames(env_id, Actor(trained.spec, trained.shipped), seed,
                                            max_steps)
    viz.save_gif(frames, path, duration=seconds)
    return total


def plot_tasks(runs: dict[str, dict[int, dict]], path: str,
               published: dict[str, float] | None = None, wall_clock: bool = True) -> None:
    """Every task's learning curve for every seed: return against steps (top row) and, with
    wall_clock, against wall-clock seconds (bottom row); a dashed line at the published
    1M-step figure."""
    tasks = list(runs)
    keys = ("steps", "seconds") if wall_clock else ("steps",)
    fig, axes = plt.subplots(len(keys), len(tasks), figsize=(3.6 * len(tasks), 3.1 * len(keys)),
                             squeeze=False)
    for column, env_id in enumerate(tasks):
        for seed, records in sorted(runs[env_id].items()):
            last = float(np.mean(records["mean_return"][-10:]))
            for row, key in enumerate(keys):
                axes[row, column].plot(records[key], records["mean_return"], lw=1,
                                       color=f"C{seed}", label=f"seed {seed}: {last:.0f}"
                                       if abs(last) >= 100 else f"seed {seed}: {last:.2f}")
        for row in range(len(keys)):
            ax = axes[row, column]
            if published and env_id in published:
                ax.axhline(published[env_id], color="grey", ls="--", lw=1)
            ax.grid(alpha=0.3)
        axes[0, column].set_title(env_id)
        axes[0, column].legend(fontsize=7, title="last-10 mean", title_fontsize=7)
        _thousands(axes[0, column])
        axes[0, column].set_xlabel("environment steps")
        if wall_clock:
            axes[1, column].set_xlabel("wall-clock seconds (2 shared cores)")
    for row in range(len(keys)):
        axes[row, 0].set_ylabel("mean episode return")
    fig.suptitle("TRPO, --preset mujoco: every seed (dashed: the published 1M-step TRPO result)")
    fig.tight_layout()
    viz.save_figure(fig, path)


# ===== the demo ===========================================================================

ADAPTIVE_VARIANTS = {
    "fixed": {"adaptive_steps": False, "adaptive_kl": False, "margin": 0.0},
    "adaptive steps": {"adaptive_steps": True, "adaptive_kl": False, "margin": 0.0},
    "adaptive KL": {"adaptive_steps": False, "adaptive_kl": True, "margin": 0.0},
    "both": {"adaptive_steps": True, "adaptive_kl": True, "margin": 0.0},
    "both, 5% margin": {"adaptive_steps": True, "adaptive_kl": True, "margin": 0.05},
}
ADAPTIVE_METRICS = {  # each variant's metric, adaptive_KEY_final_return
    "fixed": "fixed", "adaptive steps": "adaptive_steps", "adaptive KL": "adaptive_KL",
    "both": "both", "both, 5% margin": "both_5_margin"}


def first_step_reaching(records: dict, level: float) -> float:
    hits = np.nonzero(records["mean_return"] >= level)[0]
    return float(records["steps"][hits[0]]) if len(hits) else float("nan")


def run(config: Config) -> dict[str, float]:
    os.makedirs(config.out_dir, exist_ok=True)
    metrics: dict[str, float] = {}
    all_kl_ratios, collect_total, learn_total = [], 0.0, 0.0
    trained, all_records = {}, {}
    for env_id in config.env_ids:
        records, trained[env_id] = train(config, env_id, config.total_steps)
        all_records[env_id] = {config.seed: records}
        plot_rewards(records, env_id, os.path.join(config.out_dir, f"reward_{env_id}.png"))
        save_policy(os.path.join(config.out_dir, f"policy_{env_id}.npz"), trained[env_id].spec,
                    trained[env_id].shipped, trained[env_id].normalizer)
        if config.gif and (env_id.startswith("CartPole") or is_mujoco(env_id)):
            try:
                metrics[f"{env_id}_gif_return"] = write_episode_gif(
                    env_id, trained[env_id], os.path.join(config.out_dir, f"episode_{env_id}.gif"),
                    seed=config.seed)
            except Exception as error:  # noqa: BLE001 (no OpenGL here: say so, keep the run)
                print(f"trpo: no GIF of {env_id} ({type(error).__name__}: {error}); "
                      "try MUJOCO_GL=osmesa or egl")
        if config.eval_episodes:  # the mean action, as some published results report
            metrics[f"{env_id}_mean_action_return"] = greedy_return(
                env_id, Actor(trained[env_id].spec, trained[env_id].shipped),
                config.eval_episodes, seed=config.seed + 10**6)  # not a training episode's seed
        metrics[f"{env_id}_final_return"] = float(np.mean(records["mean_return"][-5:]))
        metrics[f"{env_id}_last10_return"] = float(np.mean(records["mean_return"][-10:]))
        metrics[f"{env_id}_best_return"] = float(records["mean_return"].max())
        metrics[f"{env_id}_seconds_per_10k_steps"] = float(
            records["seconds"][-1] / records["steps"][-1] * 1e4)
        if env_id.startswith("CartPole"):
            metrics[f"{env_id}_steps_to_450"] = first_step_reaching(records, 450.0)
        accepted = records["accepted"] > 0
        all_kl_ratios += list(records["kl"][accepted] / records["max_kl"][accepted])
        collect_total += records["collect_seconds"].sum()
        learn_total += records["learn_seconds"].sum()
    if len(config.env_ids) > 1:
        plot_tasks(all_records, os.path.join(config.out_dir, "tasks.png"), PUBLISHED_1M)
    metrics["kl_max_over_limit"] = float(max(all_kl_ratios, default=0.0))
    metrics["collect_share"] = float(collect_total / (collect_total + learn_total))

    if config.speed_workers and config.speed_iterations > 0:
        env_id = config.env_ids[0]
        timings = time_workers(config, env_id, trained[env_id], tuple(config.speed_workers),
                               config.speed_iterations)
        plot_workers(timings, env_id, config.steps_per_update,
                     os.path.join(config.out_dir, "workers_speed.png"))
        counts = sorted(timings)
        for n in counts[1:]:
            metrics[f"collect_speedup_{n}_workers"] = (timings[counts[0]]["collect"]
                                                       / timings[n]["collect"])

    if config.compare_steps > 0:
        runs = {}
        for name, overrides in ADAPTIVE_VARIANTS.items():
            variant = replace(config, **overrides)
            runs[name], _ = train(variant, config.compare_env, config.compare_steps, label=name)
            metrics[f"adaptive_{ADAPTIVE_METRICS[name]}_final_return"] = float(
                np.mean(runs[name]["mean_return"][-5:]))
        plot_adaptive(runs, config.compare_env, os.path.join(config.out_dir, "adaptive.png"))
    return metrics


if __name__ == "__main__":
    cli.main(__name__)
