"""Natural-gradient machinery: conjugate gradient, Fisher-vector products, TRPO's line search.

The natural gradient is F^-1 g, with F the Fisher information matrix of the model's output
distribution. Two facts make it cheap for a network with many parameters:

1. F is the Hessian of the self-KL, KL(pi_old || pi_theta) at theta = theta_old, where pi_old is
   the same distribution held fixed (detached). So F v is a Hessian-vector product: one backward
   pass with create_graph=True gives g(theta) = d KL / d theta, a second backward pass of
   <g(theta), v> gives F v. F is never formed.

2. F x = g can be solved with conjugate gradient, which only needs products F v: about 10 of
   them give a good enough step, whatever the number of parameters.

TRPO (Schulman et al., 2015) scales the natural direction s = F^-1 g to the KL limit:
0.5 s'Fs is the quadratic estimate of the KL of the step s, so step = s * sqrt(max_kl / (0.5
s'Fs)). It then backtracks (halving the step) until the surrogate improves by at least
`accept_ratio` of the improvement the linear model promised, and the measured KL is within the
limit; when no fraction passes, it keeps the old parameters.

Functions here work on flat float64 vectors of all parameters, so the linear algebra is plain
NumPy; `flat_parameters` / `set_flat_parameters` / `flat_grad` convert.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from minimal.autograd import Parameter, Tensor, grad

# ===== flat parameter vectors ==============================================================

def flat_parameters(params: Sequence[Parameter]) -> np.ndarray:
    """All parameters concatenated into one float64 vector (in the order given)."""
    return np.concatenate([p.data.ravel() for p in params]).astype(np.float64)


def set_flat_parameters(params: Sequence[Parameter], flat: np.ndarray) -> None:
    """Copy a flat vector back into the parameters (inverse of flat_parameters)."""
    flat = np.asarray(flat)
    total = sum(p.size for p in params)
    if flat.shape != (total,):
        raise ValueError(f"set_flat_parameters: got a vector of shape {flat.shape}, the "
                         f"parameters hold {total} numbers")
    offset = 0
    for p in params:
        p.data = flat[offset:offset + p.size].reshape(p.shape).astype(p.dtype)
        offset += p.size


def flat_grad(output: Tensor, params: Sequence[Parameter]) -> np.ndarray:
    """d output / d params as one float64 vector."""
    return np.concatenate([g.data.ravel() for g in grad(output, list(params))]).astype(
        np.float64)


# ===== conjugate gradient ================================================================

def conjugate_gradient(Avp: Callable[[np.ndarray], np.ndarray], b: np.ndarray, iters: int = 10,
                       tol: float = 1e-10,
                       callback: Callable[[np.ndarray], None] | None = None) -> np.ndarray:
    """Approximately solve A x = b for symmetric positive-definite A, given only v -> A v.

    Starts at x = 0; each iteration takes one product A p and moves along a direction p that is
    A-conjugate to all earlier ones, so in exact arithmetic n iterations solve an n x n system.
    Stops early when the squared residual |b - A x|^2 drops below `tol`. `callback(x)`, if
    given, sees the iterate after each iteration (to plot convergence).
    """
    b = np.asarray(b, dtype=np.float64)
    x = np.zeros_like(b)
    residual = b.copy()  # b - A x with x = 0
    direction = residual.copy()
    residual_sq = residual @ residual
    for _ in range(iters):
        if residual_sq < tol:
            break
        Ap = np.asarray(Avp(direction), dtype=np.float64)
        curvature = direction @ Ap
        if curvature <= 0:  # A is not positive definite along p: stop with what we have
            break
        alpha = residual_sq / curvature
        x += alpha * direction
        residual -= alpha * Ap
        new_residual_sq = residual @ residual
        direction = residual + (new_residual_sq / residual_sq) * direction
        residual_sq = new_residual_sq
        if callback is not None:
            callback(x.copy())
    return x


# ===== Fisher-vector products ==============================================================

def fisher_vector_product(mean_kl: Tensor, params: Sequence[Parameter],
                          damping: float = 0.0) -> Callable[[np.ndarray], np.ndarray]:
    """v -> (F + damping I) v, F the Hessian of `mean_kl` with respect to `params`.

    `mean_kl` must be the self-KL with its first argument held fixed, e.g.
    `pi.detach().kl(pi).mean()`: its value and gradient are zero at the current parameters, its
    Hessian is the Fisher matrix. The gradient graph is built once (create_graph=True) and each
    call differentiates <grad KL, v> once more, so a CG solve costs one backward pass per
    product. Damping keeps the system well conditioned (F is singular in directions that do not
    change the output distribution).
    """
    params = list(params)
    kl_grads = grad(mean_kl, params, create_graph=True)
    sizes = [p.size for p in params]

    def product(vector: np.ndarray) -> np.ndarray:
        vector = np.asarray(vector, dtype=np.float64)
        pieces = np.split(vector, np.cumsum(sizes)[:-1])
        directional = None
        for g, piece, p in zip(kl_grads, pieces, params):
            term = (g * Tensor(piece.reshape(p.shape).astype(g.dtype))).sum()
            directional = term if directional is None else directional + term
        if not directional.requires_grad:  # the KL does not depend on the parameters at all
            return damping * vector
        hvp = grad(directional, params)
        return np.concatenate([h.data.ravel() for h in hvp]).astype(np.float64) + damping * vector

    return product


def natural_direction(gradient: np.ndarray, fvp: Callable[[np.ndarray], np.ndarray],
                      max_kl: float, cg_iters: int = 10,
                      cg_tol: float = 1e-10) -> tuple[np.ndarray, float]:
    """TRPO's full step: s = F^-1 g by CG, scaled so its quadratic KL 0.5 s'Fs equals max_kl.

    Returns (step, expected_improvement), the latter g . step, what a linear model of the
    objective promises for the full step.
    """
    direction = conjugate_gradient(fvp, gradient, cg_iters, cg_tol)
    quadratic_kl = 0.5 * direction @ fvp(direction)
    if not quadratic_kl > 0:
        return np.zeros_like(direction), 0.0
    step = direction * np.sqrt(max_kl / quadratic_kl)
    return step, float(gradient @ step)


# ===== backtracking line search ============================================================

@dataclass
class LineSearchResult:
    accepted: bool          # did any fraction of the step pass both tests?
    params: np.ndarray      # the new parameters (the old ones when nothing was accepted)
    fraction: float         # the fraction of the full step taken (0 when rejected)
    improvement: float      # actual improvement of the objective
    kl: float               # KL(old || new) measured after the step (0 when rejected)
    tries: int              # how many fractions were evaluated


def line_search(objective: Callable[[np.ndarray], float], x: np.ndarray, full_step: np.ndarray,
                expected_improvement: float, kl: Callable[[np.ndarray], float] | None = None,
                max_kl: float = np.inf, max_backtracks: int = 10,
                accept_ratio: float = 0.1) -> LineSearchResult:
    """Try x + 2^-k full_step for k = 0, 1, ...; take the first that really improves.

    `objective(params)` is the quantity to maximise (the surrogate advantage). A fraction is
    accepted when the actual improvement is positive and at least `accept_ratio` times the
    linear model's prediction (`expected_improvement` times the fraction), and, when `kl` is
    given, KL(old || new) <= max_kl. The caller uses the returned parameters: the old ones when
    no fraction passes.
    """
    x = np.asarray(x, dtype=np.float64)
    base = objective(x)
    fraction = 1.0
    for tries in range(1, max_backtracks + 1):
        candidate = x + fraction * full_step
        improvement = objective(candidate) - base
        expected = expected_improvement * fraction
        ratio = improvement / expected if expected > 0 else -np.inf
        if improvement > 0 and ratio > accept_ratio:
            divergence = kl(candidate) if kl is not None else 0.0
            if divergence <= max_kl:
                return LineSearchResult(True, candidate, fraction, improvement, divergence,
                                        tries)
        fraction *= 0.5
    return LineSearchResult(False, x, 0.0, 0.0, 0.0, max_backtracks)
