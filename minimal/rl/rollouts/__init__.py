"""Rollouts on workers: each its own environment and copy of the policy.

The parallel-TRPO post's speed-up: gathering experience is most of the time in TRPO, episodes
are independent given the policy, so N workers can gather N times as fast. Here:

- The learner starts N workers (`RolloutPool(..., workers=N)`: processes on this machine, or
  `RayRolloutPool`: Ray actors on a cluster; `make_pool` picks by name). Each builds its
  environment with `gymnasium.make(env_id)` and keeps a NumPy copy of the policy (`Actor`).
- Each batch the learner sends the current parameters as one flat float64 array, then hands
  out episode numbers k = next, next + 1, ... one at a time to whichever worker is free.
- Episode k is seeded from (seed, k) alone with `np.random.SeedSequence([seed, k])`: one child
  seeds `env.reset`, the other the generator that samples the actions. So an episode's data
  depends on the parameters, the seed and k, never on which worker ran it or when.
- The batch is the shortest run of episodes next, next + 1, ... holding at least `min_steps`
  steps. Up to two episodes are queued per worker, but no more are handed out once those in
  flight will probably fill the batch (at the mean episode length seen so far). Workers that
  are still busy with later episodes when it is complete finish them while the learner learns;
  their results (tagged with the batch's number) are thrown away at the start of the next
  collect, and the next batch starts at the first unused k. Hence the batch is bit-identical
  for 0 (in-process), 1, 2 or N workers, on either backend.

protocol.py holds all of that (the policy in NumPy, one episode, the messages, the learner's
`Collector`); processes.py and ray_actors.py only carry the messages. Gaussian actions are drawn
with the episode's own generator (`rng.standard_normal`), not `action_space.sample()`, which
costs 26-53 us a call here, up to half a MuJoCo step.
"""

from __future__ import annotations

from minimal.errors import ConfigError
from minimal.rl.rollouts.processes import RolloutPool
from minimal.rl.rollouts.protocol import (
    OBS_CLIP,
    Actor,
    Collector,
    CollectStats,
    Episode,
    EpisodeRunner,
    PolicySpec,
    RunningMeanStd,
    WorkerError,
    episode_seeds,
    normalize_observations,
    pack_episode,
    run_episode,
    unpack_episode,
)

__all__ = [
    "BACKENDS",
    "OBS_CLIP",
    "Actor",
    "CollectStats",
    "Collector",
    "Episode",
    "EpisodeRunner",
    "PolicySpec",
    "RolloutPool",
    "RunningMeanStd",
    "WorkerError",
    "check_backend",
    "episode_seeds",
    "make_pool",
    "normalize_observations",
    "pack_episode",
    "run_episode",
    "unpack_episode",
]

BACKENDS = ("process", "ray")


def check_backend(backend: str, workers: int, ray_address: str = "") -> None:
    """Refuse, in one line, settings the backend cannot run: an unknown backend, Ray without
    workers or not installed, a Ray address for the process backend."""
    if backend not in BACKENDS:
        raise ConfigError(f"backend (--backend) must be one of {', '.join(BACKENDS)}, got "
                          f"{backend!r}")
    if backend == "process":
        if ray_address:
            raise ConfigError("--ray-address needs --backend ray, got --backend process")
        return
    if workers < 1:
        raise ConfigError(f"--workers must be >= 1 with --backend ray (0 collects in the "
                          f"learner's process), got {workers}")
    from minimal.rl.rollouts.ray_actors import import_ray

    import_ray()


def make_pool(backend: str, env_id: str, spec: PolicySpec, seed: int, workers: int,
              ray_address: str = "", ray_cpus: int | None = None) -> Collector:
    """The rollout pool of a backend: worker processes here, or Ray actors anywhere.

    With Ray, one instance serves the whole program: the first pool starts it (locally, with
    `ray_cpus` CPUs, by default the pool's workers) or joins `ray_address`; it stops when the
    program exits (Ctrl-C included).
    """
    if backend == "process":
        return RolloutPool(env_id, spec, seed, workers)
    from minimal.rl.rollouts.ray_actors import RayRolloutPool, start_ray

    start_ray(ray_address or None, num_cpus=ray_cpus or workers)
    return RayRolloutPool(env_id, spec, seed, workers)
