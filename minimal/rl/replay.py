"""Experience replay: a fixed-size memory of transitions, sampled uniformly.

An agent that learns from each transition as it arrives sees a stream of strongly correlated
samples (consecutive states of one episode), and forgets what it learned in earlier episodes.
Storing the last `capacity` transitions and training on random mini-batches from them breaks the
correlation and reuses each transition many times (Lin 1992; Mnih et al. 2015, "DQN").

    memory = ReplayMemory(capacity=10000, obs_shape=(4,))
    memory.push(obs, action, reward, next_obs, terminated)
    batch = memory.sample(64, rng)        # batch.obs (64, 4), batch.action (64,), ...

The memory is a ring buffer: once full, each new transition overwrites the oldest one.
`terminated` marks a real end of the episode (the value after it is 0); an episode cut short by
a time limit is not terminated, so its last transition still bootstraps from the next state.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Transitions(NamedTuple):
    obs: np.ndarray  # (n, *obs_shape)
    action: np.ndarray  # (n,) int64
    reward: np.ndarray  # (n,) float32
    next_obs: np.ndarray  # (n, *obs_shape)
    terminated: np.ndarray  # (n,) float32: 1.0 where the episode really ended


class ReplayMemory:
    """The last `capacity` transitions in preallocated arrays; uniform sampling with replacement."""

    def __init__(self, capacity: int, obs_shape: tuple[int, ...], obs_dtype=np.float32):
        if capacity < 1:
            raise ValueError(f"ReplayMemory: capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self.obs = np.zeros((capacity, *obs_shape), obs_dtype)
        self.next_obs = np.zeros((capacity, *obs_shape), obs_dtype)
        self.action = np.zeros(capacity, np.int64)
        self.reward = np.zeros(capacity, np.float32)
        self.terminated = np.zeros(capacity, np.float32)
        self.position = 0  # where the next transition goes: the oldest slot once full
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def push(self, obs, action: int, reward: float, next_obs, terminated: bool) -> None:
        i = self.position
        self.obs[i], self.action[i], self.reward[i] = obs, action, reward
        self.next_obs[i], self.terminated[i] = next_obs, float(terminated)
        self.position = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_size: int, rng: np.random.Generator) -> Transitions:
        """`batch_size` transitions drawn uniformly, with replacement, from those stored."""
        if self.size == 0:
            raise ValueError("ReplayMemory.sample: the memory is empty")
        index = rng.integers(0, self.size, size=batch_size)
        return Transitions(self.obs[index], self.action[index], self.reward[index],
                           self.next_obs[index], self.terminated[index])
