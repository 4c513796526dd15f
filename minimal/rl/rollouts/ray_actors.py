"""Rollout workers as Ray actors, on one machine or on a cluster: the transport of
protocol.py over Ray.

Only the transport differs from the process pool; everything else is protocol.py's:

- the learner's side is `Collector`'s: `collect(flat_params, min_steps)`, the episode
  numbering, the queueing of up to two episodes per worker, the surplus handling, `.stats` and
  the context manager; `RayRolloutPool` supplies `send`, `receive`, its start and `close()`.
  Episode k is still seeded from (seed, k) alone, so the batches are bit-identical to the
  process pool's and to in-process collection, for any number of actors;
- each actor holds an `EpisodeRunner` and answers the same messages with the same replies
  (the set-parameters message with an empty acknowledgement, so the learner learns of an
  actor's death even then).

What travels each iteration: the parameter vector once (`ray.put`: one copy per node, however
many actors it holds), then two floats per episode out and one packed episode (observations,
actions, rewards, final observation as one float64 array) back. Nothing else is shared.

Where it runs: `address=None` starts a private local Ray instance (address "local": never an
unrelated cluster found on the machine) sized to the workers, with no dashboard, and shuts it
down again in `close()`; `address="HOST:6379"` (or "auto") joins a running cluster started
with `ray start --head`, which `close()` leaves running (only the pool's actors are killed).
If Ray is already initialised in this process (a test, a notebook), the pool uses it as is.

Faults: an actor whose environment raises sends its traceback back and the learner raises
`WorkerError` with it, as with processes; an actor that dies (killed, out of memory, its node
lost) fails its pending calls with Ray's ActorDiedError, which becomes `WorkerError` too. Ctrl-C
raises KeyboardInterrupt in the learner, whose `with` block (or the atexit hook) kills the
actors and shuts a local instance down, all its processes with it. A learner killed outright
(SIGKILL) cleans nothing up: its actors, GCS and raylet die with it, but Ray 2.60 leaves the
local instance's dashboard and runtime-env agents running (they ignore SIGTERM; kill -9 them).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
import weakref
from dataclasses import dataclass, field

import numpy as np

from minimal.errors import ConfigError
from minimal.kernels.process import limit_blas_threads
from minimal.rl.rollouts.protocol import (
    SET_PARAMS,
    Collector,
    Episode,
    EpisodeRunner,
    PolicySpec,
    Worker,
    WorkerError,
    unpack_episode,
)

INSTALL_HINT = "pip install -e .[ray]"


class _QuietDefaults(logging.Filter):
    """Drops Ray's warning that a new local instance uses token authentication, its default
    (nothing the user of a private instance needs to act on); every other record passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Token authentication is enabled")


def import_ray():
    """The ray module, or a one-line ConfigError saying how to install it."""
    try:
        import ray
    except ImportError as error:
        raise ConfigError(f"the ray backend needs Ray, which is not installed ({error}); "
                          f"install it with `{INSTALL_HINT}` (or `pip install ray`)") from None
    logger = logging.getLogger("ray._private.authentication.authentication_token_setup")
    if not any(isinstance(f, _QuietDefaults) for f in logger.filters):
        logger.addFilter(_QuietDefaults())
    return ray


def start_ray(address: str | None = None, num_cpus: int | None = None,
              object_store_mb: int = 256) -> bool:
    """Initialise Ray in this process unless it already is; True if this call did it.

    address None: a new local instance ("local": never a cluster that happens to run on this
    machine) with `num_cpus` CPUs for the actors, no dashboard and a small object store (the
    messages are small; Ray's default reserves 30% of the memory). Otherwise join the cluster
    at `address` ("HOST:PORT" of `ray start --head`, or "auto"). Ray's own atexit hook shuts
    the connection (and a local instance with it) down when the program ends.
    """
    ray = import_ray()
    if ray.is_initialized():
        return False
    if address is None:
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False,
                 object_store_memory=object_store_mb * 1024**2,
                 logging_level=logging.WARNING, log_to_driver=True)
    else:
        check_reachable(address)
        try:
            ray.init(address=address, logging_level=logging.WARNING, log_to_driver=True)
        except ConnectionError as error:
            cause = str(error.__cause__ or "")
            hint = ("; the cluster uses token authentication: set RAY_AUTH_MODE=token and give "
                    "this machine the cluster's token (RAY_AUTH_TOKEN or ~/.ray/auth_token)"
                    if "Authentication" in cause else "")
            raise ConfigError(f"--ray-address {address}: {error}{hint}") from None
    return True


def check_reachable(address: str, timeout: float = 10.0) -> None:
    """Refuse a HOST:PORT where nothing listens, with a one-line ConfigError: Ray itself would
    retry such an address for ever ("auto" and ray:// addresses are left to Ray)."""
    host, _, port = address.rpartition(":")
    if "://" in address or not host or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as error:
        raise ConfigError(f"--ray-address {address}: no Ray cluster answers there ({error}); "
                          "start one with `ray start --head` on that machine, or leave "
                          "--ray-address empty to start Ray locally") from None


# ===== the actor ==========================================================================


class RolloutActor:
    """One rollout worker: an EpisodeRunner (its own environment and NumPy policy), made a Ray
    actor by the pool."""

    def __init__(self, env_id: str, env_kwargs: dict, spec: PolicySpec, seed: int):
        limit_blas_threads(1)  # one core per actor; a BLAS thread pool would fight the others
        self.runner = EpisodeRunner(env_id, env_kwargs, spec, seed)

    def where(self) -> tuple[int, str]:
        """(process id, node address): for messages, and for the tests to kill it."""
        import ray

        return os.getpid(), ray.util.get_node_ip_address()

    def handle(self, payload: bytes) -> bytes:
        return self.runner.handle(payload)


@dataclass
class _RayWorker(Worker):
    handle: object = None           # the Ray actor handle
    pid: int = -1
    node: str = "?"
    pending: list = field(default_factory=list)  # ObjectRefs of calls not yet received


# ===== the pool =============================================================================


class RayRolloutPool(Collector):
    """A Collector with `workers` Ray actors (workers >= 1).

        with RayRolloutPool("CartPole-v1", spec, seed=0, workers=2) as pool:     # local Ray
            episodes = pool.collect(flat_params, min_steps=5000)
        RayRolloutPool(..., address="head-node:6379")                        # a cluster
    """

    def __init__(self, env_id: str, spec: PolicySpec, seed: int, workers: int = 1,
                 env_kwargs: dict | None = None, address: str | None = None,
                 poll_seconds: float = 0.5, queue_depth: int = 2,
                 start_timeout: float = 120.0, actor_cpus: float = 1.0,
                 num_cpus: int | None = None):
        ray = import_ray()
        if workers < 1:
            raise ValueError(f"RayRolloutPool: workers must be >= 1, got {workers}")
        super().__init__(env_id, spec, seed, in_process=False, env_kwargs=env_kwargs,
                         poll_seconds=poll_seconds, queue_depth=queue_depth)
        self._ray = ray
        self._put_generation, self._params_ref = -1, None
        self.workers: list[_RayWorker] = []
        # a pool that starts Ray (num_cpus: the local instance's CPUs, by default just enough
        # for this pool's actors) stops it again when it closes
        self.owns_ray = start_ray(address, num_cpus=num_cpus or math.ceil(workers * actor_cpus))
        # as the process pool: cleaned up when garbage-collected or, at the latest, at exit
        self._finalizer = weakref.finalize(self, _shutdown, ray, self.workers, self.owns_ray)
        try:
            remote = ray.remote(num_cpus=actor_cpus, max_restarts=0)(RolloutActor)
            handles = [remote.remote(env_id, self.env_kwargs, spec, seed)
                       for _ in range(workers)]
            places = ray.get([h.where.remote() for h in handles], timeout=start_timeout)
            self.workers.extend(_RayWorker(handle=h, pid=pid, node=node)
                                for h, (pid, node) in zip(handles, places))
        except ray.exceptions.GetTimeoutError:
            self.workers.extend(_RayWorker(handle=h) for h in handles)
            self.close()
            raise WorkerError(
                f"RayRolloutPool: {workers} actors of {actor_cpus:g} CPU each did not start "
                f"within {start_timeout:g} s; the cluster has {ray.cluster_resources()} in "
                "all. Ask for fewer workers or add nodes") from None
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Kill the actors; shut the local Ray instance down if this pool started it."""
        super().close()
        self._finalizer()

    # ----- the transport: what Collector's collect calls --------------------------------
    def send(self, worker: _RayWorker, payload: bytes) -> None:
        if np.frombuffer(payload[:8], dtype=np.float64)[0] == SET_PARAMS:
            # the same parameters go to every actor: put them in the object store once
            if self._put_generation != self.generation:
                self._params_ref = self._ray.put(payload)
                self._put_generation = self.generation
            payload = self._params_ref
        worker.pending.append(worker.handle.handle.remote(payload))

    def receive(self) -> tuple[int, Episode, _RayWorker]:
        """The next episode from any actor; raises WorkerError if one has died or raised."""
        ray = self._ray
        while True:
            by_ref = {ref: worker for worker in self.workers for ref in worker.pending}
            ready, _ = ray.wait(list(by_ref), num_returns=1, timeout=self.poll_seconds)
            if not ready:
                continue
            worker = by_ref[ready[0]]
            worker.pending.remove(ready[0])
            try:
                payload = ray.get(ready[0])
            except ray.exceptions.RayActorError as error:
                self._raise_dead(worker, error)
            if payload[:1] == b"E":
                self.fail(f"rollout worker {worker.pid} (Ray actor on {worker.node}) raised:\n"
                           f"{payload[1:].decode()}")
            if not payload:
                continue  # set-parameters acknowledged
            generation, episode = unpack_episode(payload[1:], self.spec)
            return generation, episode, worker

    def _raise_dead(self, worker: _RayWorker, error: BaseException | None = None) -> None:
        reason = str(error).strip().splitlines()[0] if error is not None else "unknown cause"
        self.fail(f"rollout worker {worker.pid} (Ray actor on {worker.node}) died "
                   f"({reason}); stopping the other workers")


def _shutdown(ray, workers: list[_RayWorker], owns_ray: bool) -> None:
    """Kill the actors (and with them their pending calls); stop Ray if the pool started it."""
    if ray.is_initialized():
        for worker in workers:
            with contextlib.suppress(Exception):  # already dead, or Ray is going down
                ray.kill(worker.handle)
    workers.clear()
    if owns_ray and ray.is_initialized():
        ray.shutdown()
