"""Probability distributions over actions, with differentiable log-prob, entropy and KL.

Two kinds cover the policies of the RL posts:

    Categorical(logits)          p(a) = softmax(logits)[a]            discrete actions
    DiagGaussian(mean, log_std)  p(a) = prod_i N(a_i; mean_i, std_i)  continuous actions

Parameters are Tensors, so `log_prob`, `entropy` and `kl` are Tensors in the autograd graph and
can be differentiated twice (the Fisher-vector products of natural.py need that). Batches work
the usual way: logits (N, K) and mean (N, D) describe N distributions; log_std may be (D,) and is
broadcast (TRPO's state-independent log std).

Closed forms (per row; sums run over the action dimensions i or the classes k):

    Categorical  log p(a) = logits_a - logsumexp(logits)
                 H = -sum_k p_k log p_k
                 KL(p || q) = sum_k p_k (log p_k - log q_k)
    DiagGaussian log p(a) = sum_i -(a_i - m_i)^2 / (2 s_i^2) - log s_i - log(2 pi) / 2
                 H = sum_i log s_i + (1 + log(2 pi)) / 2
                 KL(p || q) = sum_i log(s_q,i / s_p,i)
                              + (s_p,i^2 + (m_p,i - m_q,i)^2) / (2 s_q,i^2) - 1/2

`detach()` gives the same distribution cut from the graph: KL(pi.detach() || pi) is the
"self-KL with the first argument held fixed", zero in value but with the Fisher matrix as its
Hessian.
"""

from __future__ import annotations

import math

import numpy as np

from minimal import functional as F
from minimal.autograd import Tensor, as_tensor, getitem

LOG_2PI = math.log(2 * math.pi)


class Categorical:
    """A batch of categorical distributions given by unnormalised logits (..., K)."""

    def __init__(self, logits):
        self.logits = as_tensor(logits)
        self.log_probs = F.log_softmax(self.logits, axis=-1)

    @property
    def probs(self) -> Tensor:
        return self.log_probs.exp()

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        """Integer samples by inverting the cumulative distribution with one uniform each."""
        probs = np.exp(self.log_probs.data.astype(np.float64))
        cumulative = np.cumsum(probs, axis=-1)
        uniform = rng.random(probs.shape[:-1] + (1,)) * cumulative[..., -1:]
        # first class whose cumulative probability exceeds the uniform draw
        return np.minimum((uniform >= cumulative).sum(axis=-1), probs.shape[-1] - 1)

    def log_prob(self, actions) -> Tensor:
        actions = np.asarray(actions.data if isinstance(actions, Tensor) else actions)
        if actions.shape != self.log_probs.shape[:-1]:
            raise ValueError(f"Categorical.log_prob: actions of shape {actions.shape} for "
                             f"distributions of batch shape {self.log_probs.shape[:-1]}")
        classes = self.log_probs.shape[-1]
        # indexing would silently wrap -1 to the last class and truncate 1.7 to 1
        whole = np.issubdtype(actions.dtype, np.integer) or np.all(actions == np.round(actions))
        if actions.size and (not whole or actions.min() < 0 or actions.max() >= classes):
            raise ValueError(f"Categorical.log_prob: actions must be whole numbers in "
                             f"0..{classes - 1}, got values from {actions.min()} to "
                             f"{actions.max()}")
        actions = actions.astype(np.int64, copy=False)
        flat = self.log_probs.reshape(-1, self.log_probs.shape[-1])
        picked = getitem(flat, (np.arange(flat.shape[0]), actions.reshape(-1)))
        return picked.reshape(actions.shape)

    def entropy(self) -> Tensor:
        return -(self.probs * self.log_probs).sum(axis=-1)

    def kl(self, other: Categorical) -> Tensor:
        """KL(self || other), one value per distribution in the batch."""
        return (self.probs * (self.log_probs - other.log_probs)).sum(axis=-1)

    def detach(self) -> Categorical:
        """A frozen copy: later changes to the parameters' arrays do not reach it."""
        return Categorical(Tensor(self.logits.data.copy()))

    def mode(self) -> np.ndarray:
        return np.argmax(self.logits.data, axis=-1)


class DiagGaussian:
    """Gaussians with diagonal covariance: mean (..., D), log_std broadcastable to it."""

    def __init__(self, mean, log_std):
        self.mean = as_tensor(mean)
        self.log_std = as_tensor(log_std)
        try:
            np.broadcast_shapes(self.mean.shape, self.log_std.shape)
        except ValueError:
            raise ValueError(f"DiagGaussian: mean shape {self.mean.shape} and log_std shape "
                             f"{self.log_std.shape} do not broadcast") from None
        self.std = self.log_std.exp()

    def _full_log_std(self) -> Tensor:
        """log_std broadcast to the mean's shape, so sums over the last axis count every row."""
        if self.log_std.shape == self.mean.shape:
            return self.log_std
        return self.log_std.broadcast_to(np.broadcast_shapes(self.mean.shape,
                                                             self.log_std.shape))

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        """mean + std * noise, the noise drawn from the caller's own generator."""
        shape = np.broadcast_shapes(self.mean.shape, self.log_std.shape)
        return self.mean.data + self.std.data * rng.standard_normal(shape)

    def log_prob(self, actions) -> Tensor:
        actions = as_tensor(actions, dtype=self.mean.dtype)
        z = (actions - self.mean) / self.std
        per_dim = z * z * -0.5 - self._full_log_std() - 0.5 * LOG_2PI
        return per_dim.sum(axis=-1)

    def entropy(self) -> Tensor:
        return (self._full_log_std() + 0.5 * (1 + LOG_2PI)).sum(axis=-1)

    def kl(self, other: DiagGaussian) -> Tensor:
        """KL(self || other), one value per distribution in the batch."""
        diff = self.mean - other.mean
        var_ratio_term = (self.std * self.std + diff * diff) / (other.std * other.std * 2)
        per_dim = other.log_std - self.log_std + var_ratio_term - 0.5
        shape = np.broadcast_shapes(per_dim.shape, self.mean.shape)
        if per_dim.shape != shape:
            per_dim = per_dim.broadcast_to(shape)
        return per_dim.sum(axis=-1)

    def detach(self) -> DiagGaussian:
        """A frozen copy. It copies the arrays: log_std is often a Parameter itself, whose
        array the optimizer or set_flat_parameters replaces or changes in place later."""
        return DiagGaussian(Tensor(self.mean.data.copy()), Tensor(self.log_std.data.copy()))

    def mode(self) -> np.ndarray:
        return self.mean.data
