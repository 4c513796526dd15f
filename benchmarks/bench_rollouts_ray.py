"""Collect seconds per 5000-step batch: the process pool against Ray actors, 1 and 2 workers.

    python benchmarks/bench_rollouts_ray.py [--repeats 7] [--steps 5000]

Three workloads, the TRPO demo's (64, 64) ReLU policy, the same episodes for every backend:
CartPole with an untrained policy (about 22 steps an episode: ~230 episodes, so ~230 messages
per batch), CartPole with a balancing policy (500-step episodes, 10 per batch, as late in
training) and Pendulum (200-step episodes, 25 per batch). All four pools are made first
(one local Ray instance, 3 CPUs, serves both Ray pools), then timed in turns with
benchmarks/interleave.py's protocol; medians and spreads are printed, and the ratio Ray / pool.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from interleave import interleaved

from minimal.demos.trpo import MLPPolicy, policy_spec_for
from minimal.kernels.process import limit_blas_threads, tune_process
from minimal.natural import flat_parameters
from minimal.rl.rollouts import PolicySpec, RolloutPool
from minimal.rl.rollouts.ray_actors import RayRolloutPool, start_ray


def balancing_cartpole(spec: PolicySpec, gain: float = 30.0) -> np.ndarray:
    """(64, 64) ReLU weights that act as the linear rule push right iff w . obs > 0 (with
    probability sigmoid(gain * w . obs)): relu(w.x) - relu(-w.x) passed through layer 2."""
    w = np.array([0.1, 0.5, 10.0, 2.0])  # cart position, velocity, pole angle, angular velocity
    first = np.zeros((spec.hidden[0], spec.obs_dim))
    first[0], first[1] = w, -w
    second = np.zeros((spec.hidden[1], spec.hidden[0]))
    second[0, 0] = second[1, 1] = 1.0
    last = np.zeros((spec.act_dim, spec.hidden[1]))
    last[1, 0], last[1, 1] = gain, -gain
    return np.concatenate([first.ravel(), np.zeros(spec.hidden[0]), second.ravel(),
                           np.zeros(spec.hidden[1]), last.ravel(), np.zeros(spec.act_dim)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=5000)
    args = parser.parse_args()
    limit_blas_threads(1)
    start_ray(None, num_cpus=3)
    workloads = []
    for env_id in ("CartPole-v1", "Pendulum-v1"):
        spec = policy_spec_for(env_id, (64, 64), "relu")
        untrained = flat_parameters(MLPPolicy(spec, np.random.default_rng(0))
                                    .ordered_parameters())
        workloads.append((f"{env_id} untrained", env_id, spec, untrained))
        if env_id == "CartPole-v1":
            workloads.append((f"{env_id} balancing", env_id, spec, balancing_cartpole(spec)))
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the start; "
          f"{args.steps} steps per batch, {args.repeats} batches per engine, medians")
    print(f"{'workload':26} {'episodes':>8} " + " ".join(
        f"{name:>14}" for name in ("pool 1", "ray 1", "pool 2", "ray 2")) + "  ray/pool 1, 2")
    for label, env_id, spec, params in workloads:
        pools = {"pool 1": RolloutPool(env_id, spec, 0, 1),
                 "ray 1": RayRolloutPool(env_id, spec, 0, 1),
                 "pool 2": RolloutPool(env_id, spec, 0, 2),
                 "ray 2": RayRolloutPool(env_id, spec, 0, 2)}
        episodes = []
        try:
            def engine(pool, params=params, episodes=episodes):
                return lambda: episodes.append(len(pool.collect(params, args.steps)))

            start = time.perf_counter()
            times = interleaved({name: engine(pool) for name, pool in pools.items()},
                                repeats=args.repeats, block=1, warmup=1)
            seconds = {name: float(np.median(values)) / 100 for name, values in times.items()}
            spread = {name: (np.percentile(values, 75) - np.percentile(values, 25))
                      / np.median(values) for name, values in times.items()}
            cells = " ".join(f"{seconds[n]:8.3f} ({spread[n]:3.0%})" for n in pools)
            print(f"{label:26} {np.median(episodes):8.0f} {cells}  "
                  f"{seconds['ray 1'] / seconds['pool 1']:.2f}, "
                  f"{seconds['ray 2'] / seconds['pool 2']:.2f}   "
                  f"[{time.perf_counter() - start:.0f} s]", flush=True)
        finally:
            for pool in pools.values():
                pool.close()


if __name__ == "__main__":
    tune_process()  # the entry points' process settings: minimal/kernels/process.py
    main()
