"""The timing protocol the demo benchmarks share: warm up each engine, then time blocks of
iterations with the engines alternating (who goes first rotates, a short pause between), so both
see the same machine noise; report medians, spreads and the ratio of medians from that one run.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np


def timed(iteration: Callable[[], object], block: int) -> float:
    """Seconds per 100 iterations over one block of `block` calls."""
    start = time.perf_counter()
    for _ in range(block):
        iteration()
    return (time.perf_counter() - start) / block * 100


def interleaved(engines: dict[str, Callable[[], object]], repeats: int, block: int,
                warmup: int = 3) -> dict[str, list[float]]:
    """Seconds per 100 iterations of each engine, `repeats` blocks each, alternating."""
    for run in engines.values():  # warm-up: allocator, BLAS threads, caches
        for _ in range(warmup):
            run()
    times: dict[str, list[float]] = {name: [] for name in engines}
    names = list(engines)
    for repeat in range(repeats):
        order = names[repeat % len(names):] + names[:repeat % len(names)]
        for name in order:
            times[name].append(timed(engines[name], block))
            time.sleep(0.05)
    return times


def report(times: dict[str, list[float]], target: float) -> None:
    """Print each engine's median and spread (interquartile range / median), then the ratio."""
    medians = {name: float(np.median(values)) for name, values in times.items()}
    print(f"{'engine':8} {'s / 100 it':>11} {'spread':>8}")
    for name, values in times.items():
        spread = (np.percentile(values, 75) - np.percentile(values, 25)) / medians[name]
        print(f"{name:8} {medians[name]:11.2f} {spread:8.0%}")
    if "torch" in medians:
        ratio = medians["ours"] / medians["torch"]
        print(f"ratio ours / torch: {ratio:.2f} (target <= {target})")
    else:
        print("torch is not installed: no comparison")
