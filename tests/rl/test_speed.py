"""minimal/rl/rollouts/speed.py: every worker count times the same batches, counts in turn."""

import numpy as np

from minimal.rl.rollouts import Collector, PolicySpec, RolloutPool
from minimal.rl.rollouts.speed import time_worker_counts

SPEC = PolicySpec(obs_dim=4, act_dim=2, hidden=(8,), discrete=True)


def test_each_count_learns_from_identical_batches_and_the_pools_are_closed():
    flat = np.random.default_rng(0).normal(0, 0.3, SPEC.num_parameters())
    pools = {0: RolloutPool("CartPole-v1", SPEC, seed=4, workers=0),
             1: RolloutPool("CartPole-v1", SPEC, seed=4, workers=1)}
    seen = []

    def learn(episodes):
        seen.append([e.rewards.sum() for e in episodes])

    timings = time_worker_counts(pools, flat, 300, learn, iterations=2)
    assert set(timings) == {0, 1}
    assert all(t["collect"] > 0 and t["learn"] >= 0 for t in timings.values())
    assert seen[0] == seen[1] and seen[2] == seen[3]  # the counts took turns, same batches
    assert seen[0] != seen[2]  # the next batch is new episodes
    assert all(isinstance(p, Collector) and p._stopped for p in pools.values())
