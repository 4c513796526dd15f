"""Replay memory: stores what was pushed, overwrites the oldest, samples uniformly."""

import numpy as np
import pytest

from minimal.rl.replay import ReplayMemory


def push_numbered(memory: ReplayMemory, start: int, stop: int) -> None:
    """Transition i has obs (i, -i), action i % 2, reward i, next_obs (i + 1, ...)."""
    for i in range(start, stop):
        memory.push([i, -i], i % 2, float(i), [i + 1, -i - 1], terminated=i % 3 == 0)


def test_stores_transitions_field_by_field():
    memory = ReplayMemory(capacity=5, obs_shape=(2,))
    push_numbered(memory, 0, 3)
    assert len(memory) == 3
    np.testing.assert_array_equal(memory.obs[:3], [[0, 0], [1, -1], [2, -2]])
    np.testing.assert_array_equal(memory.action[:3], [0, 1, 0])
    np.testing.assert_array_equal(memory.reward[:3], [0, 1, 2])
    np.testing.assert_array_equal(memory.next_obs[:3, 0], [1, 2, 3])
    np.testing.assert_array_equal(memory.terminated[:3], [1, 0, 0])
    batch = memory.sample(50, np.random.default_rng(0))
    # every sampled row is one consistent transition
    np.testing.assert_array_equal(batch.obs[:, 0], batch.reward)
    np.testing.assert_array_equal(batch.next_obs[:, 0], batch.reward + 1)
    np.testing.assert_array_equal(batch.action, batch.reward.astype(int) % 2)
    assert set(batch.reward) <= {0.0, 1.0, 2.0}


def test_overwrites_the_oldest_when_full():
    memory = ReplayMemory(capacity=4, obs_shape=(2,))
    push_numbered(memory, 0, 6)  # 0 and 1 are overwritten by 4 and 5
    assert len(memory) == 4
    assert sorted(memory.reward) == [2, 3, 4, 5]
    np.testing.assert_array_equal(memory.reward, [4, 5, 2, 3])  # slots 0, 1 reused in order
    push_numbered(memory, 6, 7)
    assert sorted(memory.reward) == [3, 4, 5, 6]  # then 2, the oldest left
    batch = memory.sample(400, np.random.default_rng(1))
    assert set(batch.reward) == {3.0, 4.0, 5.0, 6.0}


def test_samples_uniformly():
    memory = ReplayMemory(capacity=10, obs_shape=(2,))
    push_numbered(memory, 0, 10)
    draws = 20000
    counts = np.bincount(memory.sample(draws, np.random.default_rng(2)).reward.astype(int),
                         minlength=10)
    expected = draws / 10
    chi_square = ((counts - expected) ** 2 / expected).sum()
    assert chi_square < 27.9  # the 99.9% point of chi-square with 9 degrees of freedom
    # and a partly filled memory samples only what it holds, still uniformly
    partial = ReplayMemory(capacity=10, obs_shape=(2,))
    push_numbered(partial, 0, 4)
    counts = np.bincount(partial.sample(8000, np.random.default_rng(3)).reward.astype(int),
                         minlength=10)
    assert counts[4:].sum() == 0
    assert np.all(np.abs(counts[:4] - 2000) < 4 * np.sqrt(2000 * 0.75))


def test_same_rng_same_batch_and_empty_memory_refuses():
    memory = ReplayMemory(capacity=10, obs_shape=(2,))
    with pytest.raises(ValueError, match="empty"):
        memory.sample(1, np.random.default_rng(0))
    push_numbered(memory, 0, 7)
    a = memory.sample(16, np.random.default_rng(5))
    b = memory.sample(16, np.random.default_rng(5))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
