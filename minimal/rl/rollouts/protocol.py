"""What every rollout backend shares: the policy in NumPy, one episode, the messages, and the
learner's side of collecting a batch.

A backend (processes.py: worker processes on this machine; ray_actors.py: Ray actors on a
cluster) supplies only the transport. Its workers each hold an `EpisodeRunner` (an environment
and a NumPy copy of the policy) and hand it every message they receive; the learner holds a
`Collector` subclass, whose `collect` does the numbering, queueing and assembling below and
calls the backend's `send` and `receive`:

    set parameters   np.array([SET_PARAMS, generation, *flat_params])   one per worker, per batch
    run episode k    np.array([RUN_EPISODE, k])                         as workers are free
    stop             np.array([STOP])
    replies          b"D" + pack_episode(episode, generation), or b"E" + a traceback's text

Messages are raw float64 arrays, never pickles. With no workers, `Collector` runs the episodes
in the learner's own process, the same numbers in the same order.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from itertools import pairwise

import gymnasium as gym
import numpy as np

from minimal.errors import NonFiniteLossError
from minimal.rl.envs import make as make_env

# ===== the policy, in NumPy, for acting =====================================================


@dataclass(frozen=True)
class PolicySpec:
    """An MLP policy: obs -> hidden layers -> logits (discrete) or action mean (continuous).

    Flat parameter layout (the order the learner's model must use): for each Linear layer its
    weight (out, in) row-major then its bias (out,); then, for a Gaussian policy, the
    state-independent log std (act_dim,); then, with `obs_norm`, the observation normaliser's
    mean (obs_dim,) and std (obs_dim,). The normaliser travels with the parameters, so any
    backend that builds an Actor from the shipped vector normalises exactly as the learner.
    """

    obs_dim: int
    act_dim: int                    # number of actions (discrete) or action dimensions
    hidden: tuple[int, ...] = (64, 64)
    discrete: bool = True
    activation: str = "relu"        # "relu" (the post) or "tanh"
    obs_norm: bool = False          # the policy sees clip((obs - mean) / std, -10, 10)

    def __post_init__(self) -> None:
        # anything else would silently act as relu in Actor and in the learner's policy
        if self.activation not in ("relu", "tanh"):
            raise ValueError(f"PolicySpec: activation must be 'relu' or 'tanh', got "
                             f"{self.activation!r}")

    def layer_sizes(self) -> list[tuple[int, int]]:
        widths = (self.obs_dim,) + tuple(self.hidden) + (self.act_dim,)
        return list(pairwise(widths))

    def num_policy_parameters(self) -> int:
        """The learner's trainable numbers: the layers and, if Gaussian, the log std."""
        total = sum(n_in * n_out + n_out for n_in, n_out in self.layer_sizes())
        return total + (0 if self.discrete else self.act_dim)

    def num_parameters(self) -> int:
        """Length of the shipped vector: the policy's parameters, then the normaliser's."""
        return self.num_policy_parameters() + (2 * self.obs_dim if self.obs_norm else 0)


OBS_CLIP = 10.0  # normalised observations are clipped to +-10 standard deviations


def normalize_observations(observations: np.ndarray, mean: np.ndarray,
                           std: np.ndarray) -> np.ndarray:
    """clip((obs - mean) / std, -OBS_CLIP, OBS_CLIP): the one formula learner and workers use."""
    # minimum/maximum rather than np.clip: the same numbers, without np.clip's Python-level
    # overhead, which was a tenth of a HalfCheetah step in the workers
    x = (np.asarray(observations, np.float64) - mean) / std
    return np.minimum(np.maximum(x, -OBS_CLIP), OBS_CLIP)


class RunningMeanStd:
    """Mean and variance of every observation seen so far, updated a batch at a time.

    Chan et al.'s pairwise update: with the stream so far (n, mean, var) and a batch
    (m, batch_mean, batch_var), delta = batch_mean - mean,
        mean' = mean + delta * m / (n + m)
        var'  = (var * n + batch_var * m + delta^2 * n * m / (n + m)) / (n + m)
    which equals NumPy's mean and (population) variance of the whole stream. The learner
    updates it from each collected batch, which is the same for any number of workers, so the
    statistics are too.
    """

    def __init__(self, dim: int, epsilon: float = 1e-8):
        self.count = 0
        self.mean = np.zeros(dim)
        self.var = np.ones(dim)      # before any data: the identity transform
        self.epsilon = epsilon       # keeps a constant feature's std away from 0

    def update(self, batch: np.ndarray) -> None:
        batch = np.asarray(batch, np.float64).reshape(-1, len(self.mean))
        m = len(batch)
        if m == 0:
            return
        batch_mean, batch_var = batch.mean(axis=0), batch.var(axis=0)
        if self.count == 0:
            self.count, self.mean, self.var = m, batch_mean, batch_var
            return
        n, total = self.count, self.count + m
        delta = batch_mean - self.mean
        self.mean = self.mean + delta * m / total
        self.var = (self.var * n + batch_var * m + delta ** 2 * n * m / total) / total
        self.count = total

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(self.var + self.epsilon)

    def normalize(self, observations: np.ndarray) -> np.ndarray:
        return normalize_observations(observations, self.mean, self.std)

    def state(self) -> dict[str, np.ndarray]:
        return {"norm_count": np.array(self.count), "norm_mean": self.mean.copy(),
                "norm_var": self.var.copy()}

    @classmethod
    def from_state(cls, state) -> RunningMeanStd:
        normalizer = cls(len(state["norm_mean"]))
        normalizer.count = int(state["norm_count"])
        normalizer.mean = np.array(state["norm_mean"], np.float64)
        normalizer.var = np.array(state["norm_var"], np.float64)
        return normalizer


class Actor:
    """Samples actions from a PolicySpec with the given flat parameters, NumPy only."""

    def __init__(self, spec: PolicySpec, flat_params: np.ndarray):
        flat = np.asarray(flat_params, dtype=np.float64)
        if flat.shape != (spec.num_parameters(),):
            raise ValueError(f"Actor: expected {spec.num_parameters()} parameters for {spec}, "
                             f"got shape {flat.shape}")
        self.spec = spec
        self.layers = []
        offset = 0
        for n_in, n_out in spec.layer_sizes():
            weight = flat[offset:offset + n_in * n_out].reshape(n_out, n_in)
            offset += n_in * n_out
            bias = flat[offset:offset + n_out]
            offset += n_out
            self.layers.append((np.ascontiguousarray(weight.T), bias))
        self.std = None if spec.discrete else np.exp(flat[offset:offset + spec.act_dim])
        offset += 0 if spec.discrete else spec.act_dim
        self.obs_mean = self.obs_std = None
        if spec.obs_norm:
            self.obs_mean = flat[offset:offset + spec.obs_dim]
            self.obs_std = flat[offset + spec.obs_dim:offset + 2 * spec.obs_dim]
        self.hidden_fn = np.tanh if spec.activation == "tanh" else _relu

    def output(self, observations: np.ndarray) -> np.ndarray:
        """Logits or action means for raw observations (..., obs_dim)."""
        x = np.asarray(observations, dtype=np.float64)
        if self.obs_mean is not None:
            x = normalize_observations(x, self.obs_mean, self.obs_std)
        for i, (weight_t, bias) in enumerate(self.layers):
            x = x @ weight_t + bias
            if i < len(self.layers) - 1:
                x = self.hidden_fn(x)
        return x

    def act(self, observation: np.ndarray, rng: np.random.Generator):
        out = self.output(observation)
        if self.spec.discrete:
            # inverse CDF with one uniform, like distributions.Categorical.sample
            probs = np.exp(out - out.max())
            cumulative = np.cumsum(probs)
            u = rng.random() * cumulative[-1]
            return int(min(np.count_nonzero(u >= cumulative), len(cumulative) - 1))
        return out + self.std * rng.standard_normal(self.spec.act_dim)


def _relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0)


# ===== one episode ==========================================================================


@dataclass
class Episode:
    index: int                      # k: the episode's number, which fixed its seeds
    observations: np.ndarray        # (T, obs_dim)
    actions: np.ndarray             # (T,) integers or (T, act_dim), as sampled (not clipped)
    rewards: np.ndarray             # (T,)
    terminated: bool                # ended in a terminal state (False: cut by the time limit)
    final_observation: np.ndarray   # the observation after the last step (for bootstrapping)

    def __len__(self) -> int:
        return len(self.rewards)

    @property
    def total_reward(self) -> float:
        return float(self.rewards.sum())


def episode_seeds(seed: int, index: int) -> tuple[int, np.random.Generator]:
    """(seed for env.reset, generator for the actions) of episode `index`, from (seed, index)."""
    env_sequence, action_sequence = np.random.SeedSequence([seed, index]).spawn(2)
    return int(env_sequence.generate_state(1)[0]), np.random.default_rng(action_sequence)


def run_episode(env: gym.Env, actor: Actor, seed: int, index: int) -> Episode:
    """Play episode `index` to its end (termination or the env's time limit)."""
    env_seed, rng = episode_seeds(seed, index)
    observation, _ = env.reset(seed=env_seed)
    box = isinstance(env.action_space, gym.spaces.Box)
    low, high = (env.action_space.low, env.action_space.high) if box else (None, None)
    observations, actions, rewards = [], [], []
    terminated = truncated = False
    while not (terminated or truncated):
        action = actor.act(observation, rng)
        env_action = np.clip(action, low, high) if box else action
        observations.append(observation)
        actions.append(action)
        observation, reward, terminated, truncated, _ = env.step(env_action)
        rewards.append(reward)
    return Episode(index, np.asarray(observations, np.float64), np.asarray(actions),
                   np.asarray(rewards, np.float64), bool(terminated),
                   np.asarray(observation, np.float64))


# ===== the messages: commands and episodes as flat float64 arrays ==========================

SET_PARAMS, RUN_EPISODE, STOP = 0.0, 1.0, 2.0


def set_params_message(generation: int, flat_params: np.ndarray) -> bytes:
    return np.concatenate([[SET_PARAMS, generation], flat_params]).tobytes()


def run_episode_message(index: int) -> bytes:
    return np.array([RUN_EPISODE, index]).tobytes()


STOP_MESSAGE = np.array([STOP]).tobytes()


def pack_episode(episode: Episode, generation: int) -> bytes:
    header = np.array([generation, episode.index, len(episode), float(episode.terminated)])
    parts = [header, episode.observations.ravel(), episode.actions.astype(np.float64).ravel(),
             episode.rewards, episode.final_observation.ravel()]
    return np.concatenate(parts).tobytes()


def unpack_episode(payload: bytes, spec: PolicySpec) -> tuple[int, Episode]:
    data = np.frombuffer(payload, dtype=np.float64)
    generation, index, length, terminated = (int(v) for v in data[:4])
    offset = 4
    observations = data[offset:offset + length * spec.obs_dim].reshape(length, spec.obs_dim)
    offset += length * spec.obs_dim
    act_width = 1 if spec.discrete else spec.act_dim
    actions = data[offset:offset + length * act_width]
    offset += length * act_width
    actions = actions.astype(np.int64) if spec.discrete else actions.reshape(length,
                                                                             spec.act_dim)
    rewards = data[offset:offset + length]
    final_observation = data[offset + length:offset + length + spec.obs_dim]
    return generation, Episode(index, observations.copy(), actions, rewards.copy(),
                               bool(terminated), final_observation.copy())


class EpisodeRunner:
    """A worker's state and its answer to each message: the environment, the policy last set,
    and the generation (the learner's batch number) that set it. Any backend's worker holds
    one and passes it every message; an error is caught and answered as b"E" + traceback, after
    which the runner stays failed (the learner stops the pool on the first one).
    """

    def __init__(self, env_id: str, env_kwargs: dict, spec: PolicySpec, seed: int):
        self.spec, self.seed = spec, seed
        self.actor: Actor | None = None
        self.generation = -1
        self.error: str | None = None
        try:
            self.env = make_env(env_id, **env_kwargs)
        except Exception:  # noqa: BLE001 (reported as the answer to the first message)
            self.env, self.error = None, traceback.format_exc()

    def handle(self, payload: bytes) -> bytes:
        """The reply to one message: b"" for set-parameters, b"D" + the packed episode, or
        b"E" + the traceback of whatever raised."""
        if self.error is not None:
            return b"E" + self.error.encode()
        try:
            command = np.frombuffer(payload, dtype=np.float64)
            if command[0] == SET_PARAMS:
                self.generation = int(command[1])
                self.actor = Actor(self.spec, command[2:])
                return b""
            if command[0] == RUN_EPISODE:
                episode = run_episode(self.env, self.actor, self.seed, int(command[1]))
                return b"D" + pack_episode(episode, self.generation)
            raise ValueError(f"unknown command {command[0]}")
        except Exception:  # noqa: BLE001
            self.error = traceback.format_exc()
            return b"E" + self.error.encode()


# ===== the learner's side ===================================================================


class WorkerError(RuntimeError):
    """A rollout worker died or raised; the learner cannot go on with a partial pool."""


@dataclass
class Worker:
    """A backend's handle on one worker: what the collector counts, and the backend's own."""

    busy: int = 0                   # episodes of the current batch sent, not yet back
    stale: int = 0                  # replies still due from earlier batches (discarded)


@dataclass
class CollectStats:
    seconds: float = 0.0            # wall time of the last collect
    episodes_run: int = 0           # episodes played, the discarded surplus included
    discarded: list[int] = field(default_factory=list)


class Collector:
    """Collects batches of whole episodes: `collect(flat_params, min_steps)` returns episodes
    next_index, next_index + 1, ... until they hold at least min_steps steps.

    With no workers it plays them in this process. A backend subclass starts its workers
    (appending them to `self.workers`) and supplies the transport:

        send(worker, payload)       deliver one message; a dead worker raises WorkerError
        receive()                   the next reply from any worker, as (generation, episode,
                                    worker); a dead or failed worker raises WorkerError
        close()                     stop the workers (call Collector.close too)

    Episode k is seeded from (seed, k) alone and the batch is the shortest run of episodes
    from next_index holding min_steps steps, so a batch is bit-identical for any backend and
    any number of workers.
    """

    def __init__(self, env_id: str, spec: PolicySpec, seed: int, in_process: bool,
                 env_kwargs: dict | None = None, poll_seconds: float = 0.5,
                 queue_depth: int = 2):
        self.env_id, self.spec, self.seed = env_id, spec, seed
        self.env_kwargs = dict(env_kwargs or {})
        self.poll_seconds = poll_seconds
        # episodes queued per worker: 2 keeps a worker busy while its last result travels
        # back and the learner hands out the next number (short episodes are ~1 ms each)
        self.queue_depth = queue_depth
        self.next_index = 0          # k of the first episode of the next batch
        self._mean_length = 0.0      # episode length seen so far (0: unknown, queue freely)
        self.generation = 0          # the batch number, tags replies
        self.stats = CollectStats()
        self.workers: list[Worker] = []
        self._stopped: str | None = None  # why collect() can no longer work, once it can't
        self._env = make_env(env_id, **self.env_kwargs) if in_process else None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._stopped is None:
            self._stopped = "the pool was closed"
        if self._env is not None:
            self._env.close()
            self._env = None

    # ----- the transport, supplied by a backend ----------------------------------------------
    def send(self, worker: Worker, payload: bytes) -> None:
        raise NotImplementedError

    def receive(self) -> tuple[int, Episode, Worker]:
        raise NotImplementedError

    def fail(self, message: str) -> None:
        """Stop the pool for good and raise WorkerError(message)."""
        summary = message.strip().splitlines()[-1] if message.strip() else message  # the error
        self._stopped = f"the pool stopped after a worker failure ({summary})"
        self.close()
        raise WorkerError(message)

    # ----- collecting --------------------------------------------------------------------
    def collect(self, flat_params: np.ndarray, min_steps: int) -> list[Episode]:
        """Episodes next_index, next_index + 1, ... until they hold >= min_steps steps."""
        name = type(self).__name__
        if self._stopped is not None:
            raise (WorkerError if self._stopped != "the pool was closed" else RuntimeError)(
                f"{name}.collect: {self._stopped}; make a new {name} to go on")
        start = time.perf_counter()
        flat_params = np.asarray(flat_params, dtype=np.float64)
        if flat_params.shape != (self.spec.num_parameters(),):
            raise ValueError(f"{name}.collect: expected {self.spec.num_parameters()} "
                             f"parameters for {self.spec}, got shape {flat_params.shape}")
        bad = np.flatnonzero(~np.isfinite(flat_params))
        if len(bad):  # a diverged update: acting on it would give garbage episodes, not errors
            raise NonFiniteLossError(
                f"{name}.collect: the policy parameters hold {len(bad)} NaN or inf values "
                f"(the first at index {bad[0]}); nothing was collected. The last policy update "
                "diverged (try a smaller step size)")
        if self.workers:
            episodes = self._collect_from_workers(flat_params, min_steps)
        else:
            actor = Actor(self.spec, flat_params)
            episodes, steps = [], 0
            while steps < min_steps:
                episodes.append(run_episode(self._env, actor, self.seed, self.next_index))
                self.next_index += 1
                steps += len(episodes[-1])
            self.stats.episodes_run += len(episodes)
        self.generation += 1
        self.stats.seconds = time.perf_counter() - start
        return episodes

    def _collect_from_workers(self, flat_params: np.ndarray, min_steps: int) -> list[Episode]:
        # First take in the surplus episodes of the last batch (finished while the learner
        # was learning, so this rarely waits). Every worker is then idle, reading its
        # messages: sending it a large parameter vector cannot deadlock against a large
        # episode it is sending back.
        while any(worker.stale for worker in self.workers):
            self._next_reply()
        first = self.next_index
        message = set_params_message(self.generation, flat_params)
        for worker in self.workers:
            self.send(worker, message)
        done: dict[int, Episode] = {}
        next_to_assign = first
        prefix_end, prefix_steps = first, 0  # episodes first..prefix_end-1 are all done
        done_steps = 0  # steps in all finished episodes of this batch
        while prefix_steps < min_steps:
            for worker in self.workers:  # keep every worker busy with the next numbers...
                while worker.busy < self.queue_depth:
                    # ... unless the episodes already handed out will probably be enough:
                    # surplus episodes are thrown away (with 500-step episodes and 10 to a
                    # batch, blind queueing wasted up to 3 of them per batch)
                    in_flight = next_to_assign - first - len(done)
                    if done_steps + in_flight * self._mean_length >= min_steps:
                        break
                    self.send(worker, run_episode_message(next_to_assign))
                    worker.busy += 1
                    next_to_assign += 1
            generation, episode, worker = self._next_reply()
            if generation != self.generation:
                continue  # a leftover from an earlier batch, with old parameters
            worker.busy -= 1
            done[episode.index] = episode
            done_steps += len(episode)
            self._mean_length = done_steps / len(done)
            while prefix_end in done and prefix_steps < min_steps:
                prefix_steps += len(done[prefix_end])
                prefix_end += 1
        # episodes still queued belong to this batch: discard them when they arrive
        for worker in self.workers:
            worker.busy, worker.stale = 0, worker.stale + worker.busy
        self.stats.episodes_run += len(done)
        self.stats.discarded = sorted(k for k in done if k >= prefix_end)
        self.next_index = prefix_end
        return [done[k] for k in range(first, prefix_end)]

    def _next_reply(self) -> tuple[int, Episode, Worker]:
        generation, episode, worker = self.receive()
        if worker.stale and generation != self.generation:
            worker.stale -= 1  # an answer to an earlier batch: one fewer still due
        return generation, episode, worker
