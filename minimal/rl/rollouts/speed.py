"""The parallel-rollouts post's measurement: seconds per batch for 1, 2, ... workers."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from minimal.rl.rollouts.protocol import Collector, Episode


def time_worker_counts(pools: dict[int, Collector], flat_params: np.ndarray, steps: int,
                       learn: Callable[[list[Episode]], None],
                       iterations: int) -> dict[int, dict[str, float]]:
    """Median collect and learn seconds per batch, for each pool (keyed by worker count).

    Every pool collects the same batches (episode k is seeded from (seed, k): identical for any
    worker count), and learn(episodes) is timed on each. The counts take turns within each
    repetition, so load from other processes falls on every count alike. Closes the pools.
    """
    timings = {n: {"collect": [], "learn": []} for n in pools}
    try:
        for _ in range(iterations):
            for n, pool in pools.items():
                episodes = pool.collect(flat_params, steps)
                timings[n]["collect"].append(pool.stats.seconds)
                start = time.perf_counter()
                learn(episodes)
                timings[n]["learn"].append(time.perf_counter() - start)
    finally:
        for pool in pools.values():
            pool.close()
    return {n: {key: float(np.median(values)) for key, values in t.items()}
            for n, t in timings.items()}
