"""Rollouts on worker processes: each its own environment and copy of the policy.

The parallel-TRPO post's speed-up: gathering experience is most of the time in TRPO, episodes
are independent given the policy, so N processes can gather N times as fast. Here:

- The learner starts N workers (`RolloutPool(..., workers=N)`). Each builds its environment
  with `gymnasium.make(env_id)` and keeps a NumPy copy of the policy (`Actor`).
- Each iteration the learner sends the current parameters as one flat float64 array, then hands
  out episode numbers k = next, next + 1, ... one at a time to whichever worker is free.
- Episode k is seeded from (seed, k) alone with `np.random.SeedSequence([seed, k])`: one child
  seeds `env.reset`, the other the generator that samples the actions. So an episode's data
  depends on the parameters, the seed and k, never on which worker ran it or when.
- The batch is the shortest run of episodes next, next + 1, ... holding at least `min_steps`
  steps. Up to two episodes are queued per worker, but no more are handed out once those in
  flight will probably fill the batch (at the mean episode length seen so far). Workers that
  are still busy with later episodes when it is complete finish them while the learner learns;
  their results (tagged with the iteration's number) are thrown away at the start of the next
  collect, and the next iteration starts at the first unused k. Hence the batch is
  bit-identical for 0 (in-process), 1, 2 or N workers.

Messages are raw float64 arrays (`send_bytes`), no pickles: a command code followed by data one
way, an episode packed into one array the other way.

Start method: 'forkserver' by default, for three reasons. 'fork' copies the learner as it is,
BLAS thread pools and locks included (a known source of deadlocks; Python 3.12 warns about it),
and every forked worker inherits the other workers' pipe ends, so a worker would not see the
learner's end close. 'spawn' is safe but imports NumPy and gymnasium (MuJoCo too) afresh in
every worker, about a second each. 'forkserver' imports them once in a clean server process
(`set_forkserver_preload`) and forks workers from it.

Failure and exit: the learner never blocks without a timeout; it waits on the pipes with
`multiprocessing.connection.wait(..., timeout)` and checks the workers' exit codes between
waits, so a worker that dies (killed, or an exception, whose traceback it sends back) raises
`WorkerError` in the learner within a second. Workers ignore SIGINT: Ctrl-C raises
KeyboardInterrupt in the learner only, whose `with RolloutPool(...)` block (or, failing that, an
atexit hook) stops, joins and if need be terminates them, so no process is left behind.
Gaussian actions are drawn with the episode's own generator (`rng.standard_normal`), not
`action_space.sample()`, which costs 26-53 us a call here, up to half a MuJoCo step.
"""

from __future__ import annotations

import multiprocessing as mp
import signal
import sys
import time
import traceback
import warnings
import weakref
from dataclasses import dataclass, field
from itertools import pairwise
from multiprocessing.connection import wait

import gymnasium as gym
import numpy as np

from minimal.errors import NonFiniteLossError
from minimal.rl.envs import make as make_env

# A forkserver worker re-runs the learner's main module by name although the server has
# preloaded it (see _modules_to_preload); runpy warns about exactly that, harmlessly.
warnings.filterwarnings("ignore", message=r"'.*' found in sys\.modules after import of package",
                        category=RuntimeWarning)


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


# ===== message packing: episodes and commands as flat float64 arrays =======================

_SET_PARAMS, _RUN_EPISODE, _STOP = 0.0, 1.0, 2.0
# the two commands under public names, for workers on another transport (minimal/rl/rollouts_ray.py)
SET_PARAMS, RUN_EPISODE = _SET_PARAMS, _RUN_EPISODE


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


def _worker_main(conn, env_id: str, env_kwargs: dict, spec: PolicySpec, seed: int) -> None:
    """A worker's loop: set parameters, run episode k, or stop. Errors go back as text."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the learner's to handle
    try:
        env = make_env(env_id, **env_kwargs)
        actor, generation = None, -1
        while True:
            try:
                command = np.frombuffer(conn.recv_bytes(), dtype=np.float64)
            except EOFError:  # the learner is gone
                return
            if command[0] == _STOP:
                return
            if command[0] == _SET_PARAMS:
                generation = int(command[1])
                actor = Actor(spec, command[2:])
            elif command[0] == _RUN_EPISODE:
                episode = run_episode(env, actor, seed, int(command[1]))
                conn.send_bytes(b"D" + pack_episode(episode, generation))
    # any error: report it (the learner raises WorkerError with this text), then die
    except Exception:  # noqa: BLE001
        try:
            conn.send_bytes(b"E" + traceback.format_exc().encode())
        except OSError:
            pass
        raise SystemExit(1)


# ===== the pool ============================================================================


class WorkerError(RuntimeError):
    """A rollout worker died or raised; the learner cannot go on with a partial pool."""


@dataclass
class _Worker:
    process: mp.process.BaseProcess
    conn: object
    busy: int = 0                   # episodes of the current iteration sent, not yet back
    stale: int = 0                  # replies still due from earlier iterations (discarded)


@dataclass
class CollectStats:
    seconds: float = 0.0            # wall time of the last collect
    episodes_run: int = 0           # episodes played, the discarded surplus included
    discarded: list[int] = field(default_factory=list)


class RolloutPool:
    """Collects batches of whole episodes with `workers` processes (0: in this process).

        with RolloutPool("CartPole-v1", spec, seed=0, workers=2) as pool:
            episodes = pool.collect(flat_params, min_steps=5000)
    """

    def __init__(self, env_id: str, spec: PolicySpec, seed: int, workers: int = 1,
                 env_kwargs: dict | None = None, start_method: str = "forkserver",
                 poll_seconds: float = 0.5, queue_depth: int = 2):
        self.env_id, self.spec, self.seed = env_id, spec, seed
        self.env_kwargs = dict(env_kwargs or {})
        self.poll_seconds = poll_seconds
        # episodes queued per worker: 2 keeps a worker busy while its last result travels
        # back and the learner hands out the next number (short episodes are ~1 ms each)
        self.queue_depth = queue_depth
        self.next_index = 0          # k of the first episode of the next batch
        self._mean_length = 0.0      # episode length seen so far (0: unknown, queue freely)
        self.generation = 0          # the iteration number, tags replies
        self.stats = CollectStats()
        self.workers: list[_Worker] = []
        self._stopped: str | None = None  # why collect() can no longer work, once it can't
        # a pool that is never closed is still cleaned up when it is garbage-collected or, at
        # the latest, when the interpreter exits (weakref.finalize registers an atexit hook)
        self._finalizer = weakref.finalize(self, _shutdown, self.workers)
        if workers < 0:
            raise ValueError(f"RolloutPool: workers must be >= 0, got {workers}")
        self._env = make_env(env_id, **self.env_kwargs) if workers == 0 else None
        if workers:
            context = mp.get_context(start_method)
            if start_method == "forkserver":
                context.set_forkserver_preload(_modules_to_preload())
            try:
                for _ in range(workers):
                    learner_end, worker_end = context.Pipe(duplex=True)
                    process = context.Process(
                        target=_worker_main, daemon=True,
                        args=(worker_end, env_id, self.env_kwargs, spec, seed))
                    process.start()
                    worker_end.close()  # only the worker holds it now: its death gives EOF
                    self.workers.append(_Worker(process, learner_end))
            except BaseException:
                self.close()
                raise

    def __enter__(self) -> RolloutPool:  # noqa: PYI034 (Self needs Python 3.11)
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop the workers: ask, wait a second, then terminate; close the pipes."""
        if self._stopped is None:
            self._stopped = "the pool was closed"
        _shutdown(self.workers)
        if self._env is not None:
            self._env.close()
            self._env = None

    # ----- collecting --------------------------------------------------------------------
    def collect(self, flat_params: np.ndarray, min_steps: int) -> list[Episode]:
        """Episodes next_index, next_index + 1, ... until they hold >= min_steps steps."""
        if self._stopped is not None:
            raise (WorkerError if self._stopped != "the pool was closed" else RuntimeError)(
                f"RolloutPool.collect: {self._stopped}; make a new RolloutPool to go on")
        start = time.perf_counter()
        flat_params = np.asarray(flat_params, dtype=np.float64)
        if flat_params.shape != (self.spec.num_parameters(),):
            raise ValueError(f"RolloutPool.collect: expected {self.spec.num_parameters()} "
                             f"parameters for {self.spec}, got shape {flat_params.shape}")
        bad = np.flatnonzero(~np.isfinite(flat_params))
        if len(bad):  # a diverged update: acting on it would give garbage episodes, not errors
            raise NonFiniteLossError(
                f"RolloutPool.collect: the policy parameters hold {len(bad)} NaN or inf values "
                f"(the first at index {bad[0]}); nothing was collected. The last policy update "
                "diverged (try a smaller step size)")
        if self.workers:
            episodes = self._collect_parallel(flat_params, min_steps)
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

    def _collect_parallel(self, flat_params: np.ndarray, min_steps: int) -> list[Episode]:
        # First take in the surplus episodes of the last iteration (finished while the learner
        # was learning, so this rarely waits). Every worker is then idle, reading its pipe:
        # sending it a large parameter vector cannot deadlock against a large episode it is
        # sending back.
        while any(worker.stale for worker in self.workers):
            self._receive()
        first = self.next_index
        message = np.concatenate([[_SET_PARAMS, self.generation], flat_params]).tobytes()
        for worker in self.workers:
            self._send(worker, message)
        done: dict[int, Episode] = {}
        next_to_assign = first
        prefix_end, prefix_steps = first, 0  # episodes first..prefix_end-1 are all done
        done_steps = 0  # steps in all finished episodes of this batch
        while prefix_steps < min_steps:
            for worker in self.workers:  # keep every worker busy with the next numbers...
                while worker.busy < self.queue_depth:
                    # ... unless the episodes already handed out will probably be enough:
                    # surplus episodes are thrown away (with 500-step episodes and 10 to a
                    # batch, blind queueing wasted up to 3 of them per iteration)
                    in_flight = next_to_assign - first - len(done)
                    if done_steps + in_flight * self._mean_length >= min_steps:
                        break
                    self._send(worker, np.array([_RUN_EPISODE, next_to_assign]).tobytes())
                    worker.busy += 1
                    next_to_assign += 1
            generation, episode, worker = self._receive()
            if generation != self.generation:
                continue  # a leftover from an earlier iteration, with old parameters
            worker.busy -= 1
            done[episode.index] = episode
            done_steps += len(episode)
            self._mean_length = done_steps / len(done)
            while prefix_end in done and prefix_steps < min_steps:
                prefix_steps += len(done[prefix_end])
                prefix_end += 1
        # episodes still queued belong to this generation: discard them when they arrive
        for worker in self.workers:
            worker.busy, worker.stale = 0, worker.stale + worker.busy
        self.stats.episodes_run += len(done)
        self.stats.discarded = sorted(k for k in done if k >= prefix_end)
        self.next_index = prefix_end
        return [done[k] for k in range(first, prefix_end)]

    def _send(self, worker: _Worker, payload: bytes) -> None:
        try:
            worker.conn.send_bytes(payload)
        except (BrokenPipeError, ConnectionResetError, OSError):
            self._raise_dead(worker)

    def _receive(self) -> tuple[int, Episode, _Worker]:
        """The next reply from any worker; raises WorkerError if one has died."""
        by_conn = {worker.conn: worker for worker in self.workers}
        while True:
            ready = wait(list(by_conn), timeout=self.poll_seconds)
            for conn in ready:
                worker = by_conn[conn]
                try:
                    payload = conn.recv_bytes()
                except (EOFError, OSError):
                    self._raise_dead(worker)
                if payload[:1] == b"E":
                    self._fail(f"rollout worker {worker.process.pid} raised:\n"
                               f"{payload[1:].decode()}")
                generation, episode = unpack_episode(payload[1:], self.spec)
                if worker.stale and generation != self.generation:
                    worker.stale -= 1
                return generation, episode, worker
            for worker in self.workers:  # nothing arrived: is everybody still alive?
                if worker.process.exitcode is not None:
                    self._raise_dead(worker)

    def _raise_dead(self, worker: _Worker) -> None:
        worker.process.join(timeout=1.0)
        self._fail(f"rollout worker {worker.process.pid} died (exit code "
                   f"{worker.process.exitcode}); stopping the other workers")

    def _fail(self, message: str) -> None:
        summary = message.strip().splitlines()[-1] if message.strip() else message  # the error
        self._stopped = f"the pool stopped after a worker failure ({summary})"
        self.close()
        raise WorkerError(message)


def _modules_to_preload() -> list[str]:
    """What the fork server imports once, so that each worker forked from it need not.

    Like 'spawn', a forkserver child re-runs the learner's main module (as __mp_main__). For a
    demo started with `python -m minimal.demos.trpo` that means importing matplotlib, scipy and
    the rest again in every worker (measured: a 20-25 s first collect on this loaded machine).
    Preloading that module by name in the server leaves the children only its body to re-run.
    (A plain script cannot be preloaded this way in Python 3.11: the server never receives the
    script's path, so '__main__' in the preload list is ignored.)
    """
    modules = ["minimal.rl.rollouts"]
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None and not spec.name.endswith("__main__"):
        modules.append(spec.name)
    return modules


def _shutdown(workers: list[_Worker]) -> None:
    """Ask each worker to stop, give it a second, then terminate (and if need be kill) it."""
    for worker in workers:
        try:
            worker.conn.send_bytes(np.array([_STOP]).tobytes())
        except (OSError, ValueError):
            pass
    deadline = time.monotonic() + 1.0
    for worker in workers:
        worker.process.join(timeout=max(0.0, deadline - time.monotonic()))
        if worker.process.is_alive():
            worker.process.terminate()
            worker.process.join(timeout=1.0)
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join(timeout=1.0)
        try:
            worker.conn.close()
        except OSError:
            pass
    workers.clear()
