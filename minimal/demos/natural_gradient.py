"""The natural gradient, twice: the Fisher matrix as the Hessian of the self-KL.

Follows the two posts on the natural gradient. A gradient step moves the parameters a small
distance in parameter space, but the same parameter change can change the *distribution* a
little or a lot. Move a Gaussian's mean by 1: if its std is 2 the two distributions overlap
almost entirely (KL 0.125); if its std is 0.1 they hardly overlap at all (KL 50). The natural
gradient measures step length by the KL divergence between the distributions instead.

Key equations (theta the parameters, p_theta the distribution, g = grad loss):

    KL(p_theta || p_theta+d) ~= 0.5 * sum_ij d_i F_ij d_j         (second-order, small d)
    F = Hessian of theta' -> KL(p_theta || p_theta') at theta' = theta
      = E[grad log p grad log p^T]                                 (the Fisher matrix)
    natural step  d = -lr * F^-1 g                                 (steepest descent in KL)
    Gaussian in (mean, log std):  F = diag(1/sigma^2, 2)
    softmax in its logits:        F = diag(p) - p p^T
    F = I  =>  natural step = plain step

F x = g is solved by conjugate gradient (minimal/natural.py) from Fisher-vector products, each
one double backprop of the self-KL with its first argument held fixed
(`grad(..., create_graph=True)`, then a second `grad`); F is never formed.

Run:  python -m minimal.demos.natural_gradient [--quick] [--seed 0]

Figures (in out_dir):
    gaussians_mean_shift.png  a narrow and a wide Gaussian, each moved by the same mean shift,
                              with the KL of the move: same parameter distance, very different
                              change of distribution
    plain_vs_natural.png      fitting a Gaussian (mean, log std) to a target by plain and by
                              natural gradient descent: paths in parameter space over the loss
                              contours, the loss, and the KL of each step (nearly constant for
                              the natural gradient, wildly varying for the plain one)
    metric_and_cg.png         left: exact KL of small random moves of a softmax against the
                              quadratic form 0.5 d'Fd written correctly (sum_ij d_i F_ij d_j)
                              and with the post's loop's bug (d_i d_i for d_i d_j); right: CG
                              residual per iteration solving F x = g for a small network's
                              Fisher, and the distance to numpy.linalg.solve

Settings: natural descent with lr 0.5 and each step's KL capped at 0.5, from std 0.15; plain
descent tries six learning rates (three in the quick preset) and keeps the best.

Departures from the post: its distance loop multiplied delta[i] * delta[i] where
delta[i] * delta[j] is meant; here the metric is written correctly and the buggy form is drawn
only to show how far off it is. The Fisher matrix comes from double backprop of the KL rather
than from a hand-written formula, and the hand-written formulas are the tests' oracles.

Results (seed 0, 2 cores):

    measure                                        quick (~15 s)       full
    natural descent: steps to fit (KL 1e-3)        13                  13
    plain descent, best rate: fitted after         not in 60 steps     not in 200 (loss 0.68)
    0.5 d'Fd against the exact KL (moves of 0.05)  1.5% off            1.5% off
    the post's loop's form                         100% off            100% off
    CG, 164-parameter Fisher: error after 10 its   1.2%                0.4-1% (1e-14 after 40)

At std 0.15 the mean's gradient is 44 times that at std 1, so any plain rate safe there crawls
later. The post's form is 0 for a softmax, whose Fisher rows sum to 0.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

import matplotlib
import matplotlib.pyplot as plt
import numpy as np

from minimal import nn
from minimal.app import cli, viz
from minimal.autograd import Tensor, grad
from minimal.distributions import Categorical, DiagGaussian
from minimal.natural import conjugate_gradient, fisher_vector_product

matplotlib.use("Agg")  # figures go to files; no display needed


@dataclass
class Config:
    seed: int = 0  # seed for the random moves and the small network
    shift: float = 1.0  # mean shift applied to both Gaussians of the first figure
    narrow_std: float = 0.1  # std of the narrow Gaussian
    wide_std: float = 2.0  # std of the wide Gaussian
    target_mean: float = 2.0  # the distribution being fitted: its mean
    target_std: float = 1.0  # ... and its std
    start_mean: float = -1.0  # where both descents start: mean
    start_std: float = 0.15  # ... and std (narrow: the plain gradient's hard case)
    steps: int = 200  # descent steps of each method
    natural_lr: float = 0.5  # natural gradient step size
    max_step_kl: float = 0.5  # the natural step is shortened so its quadratic KL is <= this
    plain_lrs: tuple = (0.3, 0.1, 0.03, 0.01, 0.003, 0.001)  # plain step sizes tried; the best
    # (fewest steps to fit, else lowest final loss) is shown: a tuned baseline
    tolerance: float = 1e-3  # loss (KL to the target) counted as "fitted"
    moves: int = 200  # random small moves of the softmax for the metric check
    move_size: float = 0.05  # their length
    out_dir: str = "outputs/natural_gradient"  # where figures are written

    def __post_init__(self):
        cli.validate(self, whole=("seed",), counts=("steps", "moves"),
                     nonempty=("plain_lrs",),
                     positive=("narrow_std", "wide_std", "target_std", "start_std",
                               "natural_lr", "max_step_kl", "plain_lrs", "tolerance",
                               "move_size"),
                     finite=("shift", "target_mean", "start_mean"))


# fewer steps and learning rates: a few seconds (the natural descent fits in about 13 steps)
QUICK = {"steps": 60, "plain_lrs": (0.03, 0.01, 0.003), "moves": 100}

TARGETS = {
    "natural_steps_to_fit": ("<=", 60.0),
    "natural_speedup_over_plain": (">=", 3.0),
    "identity_fisher_max_difference": ("<=", 1e-12),
    "metric_relative_error": ("<=", 0.05),
    "cg_relative_error": ("<=", 1e-6),
}


# ===== the Gaussian being fitted ===========================================================

def gaussian(theta: Tensor) -> DiagGaussian:
    """theta = (mean, log std) of a 1-D Gaussian."""
    return DiagGaussian(theta[0:1], theta[1:2])


def fit_loss(theta: Tensor, target: DiagGaussian) -> Tensor:
    """KL(target || model): the expected negative log-likelihood of target samples, up to a
    constant, in closed form so the descent paths have no sampling noise."""
    return target.kl(gaussian(theta))


def natural_step_direction(theta: np.ndarray, gradient: np.ndarray) -> np.ndarray:
    """F^-1 g by CG, F from double backprop of the self-KL (2 parameters: 2 CG steps)."""
    t = Tensor(theta, requires_grad=True)
    model = gaussian(t)
    fvp = fisher_vector_product(model.detach().kl(model), [t])
    return conjugate_gradient(fvp, gradient, iters=10, tol=1e-30)


def descend(config: Config, lr: float, natural: bool) -> dict[str, np.ndarray]:
    """Gradient descent on fit_loss; records the path, the loss and each step's KL."""
    target = DiagGaussian(Tensor([config.target_mean], dtype=np.float64),
                          Tensor([math.log(config.target_std)], dtype=np.float64))
    theta = np.array([config.start_mean, math.log(config.start_std)])
    path, losses, step_kls = [theta.copy()], [], []
    for _ in range(config.steps):
        t = Tensor(theta, requires_grad=True)
        loss = fit_loss(t, target).sum()
        gradient = grad(loss, [t])[0].data
        losses.append(float(loss.data))
        if natural:
            direction = natural_step_direction(theta, gradient)
            # the quadratic KL of the step lr * direction is 0.5 lr^2 g'F^-1 g: cap it at
            # max_step_kl (a trust region, as in TRPO), so a huge loss cannot fling theta away
            quadratic_kl = 0.5 * lr * lr * float(gradient @ direction)
            scale = min(1.0, math.sqrt(config.max_step_kl / quadratic_kl)) if quadratic_kl > 0 \
                else 1.0
            new_theta = theta - scale * lr * direction
        else:
            new_theta = theta - lr * gradient
        if not np.all(np.isfinite(new_theta)) or new_theta[1] > 20:
            break
        step_kl = gaussian(Tensor(theta)).kl(gaussian(Tensor(new_theta)))
        step_kls.append(float(step_kl.data))
        theta = new_theta
        path.append(theta.copy())
    losses.append(float(fit_loss(Tensor(theta), target).data))
    return {"path": np.array(path), "loss": np.array(losses), "step_kl": np.array(step_kls),
            "lr": lr}


def steps_to(losses: np.ndarray, tolerance: float) -> float:
    hits = np.nonzero(losses <= tolerance)[0]
    return float(hits[0]) if len(hits) else float("inf")


def tuned_plain_descent(config: Config) -> dict[str, np.ndarray]:
    """The plain learning rate that fits in the fewest steps (ties, or none fitting: the lowest
    final loss), among those that stay finite for every step (all of them if none does)."""
    runs = [descend(config, lr, natural=False) for lr in config.plain_lrs]
    finished = [run for run in runs if len(run["loss"]) == config.steps + 1] or runs
    return min(finished, key=lambda run: (steps_to(run["loss"], config.tolerance),
                                          run["loss"][-1]))


# ===== the metric: 0.5 d'Fd against the exact KL ===========================================

def softmax_fisher(logits: np.ndarray) -> np.ndarray:
    """F of a softmax in its logits, built column by column from Fisher-vector products."""
    t = Tensor(logits[None], requires_grad=True)
    pi = Categorical(t)
    fvp = fisher_vector_product(pi.detach().kl(pi).mean(), [t])
    n = len(logits)
    return np.stack([fvp(np.eye(n)[j]) for j in range(n)], axis=1)


def metric_distance(delta: np.ndarray, fisher: np.ndarray) -> float:
    """0.5 * sum_ij delta_i F_ij delta_j (the post's loop, written correctly)."""
    total = 0.0
    for i in range(len(delta)):
        for j in range(len(delta)):
            total += delta[i] * fisher[i, j] * delta[j]
    return 0.5 * total


def buggy_metric_distance(delta: np.ndarray, fisher: np.ndarray) -> float:
    """The post's loop: delta[i] * delta[i] where delta[i] * delta[j] was meant."""
    total = 0.0
    for i in range(len(delta)):
        for j in range(len(delta)):
            total += delta[i] * fisher[i, j] * delta[i]
    return 0.5 * total


def metric_check(config: Config, rng: np.random.Generator) -> dict[str, np.ndarray]:
    logits = np.array([1.0, -0.5, 0.3, 0.0])
    fisher = softmax_fisher(logits)
    p = Categorical(Tensor(logits[None]))
    exact, correct, buggy = [], [], []
    for _ in range(config.moves):
        delta = rng.standard_normal(len(logits))
        delta *= config.move_size / np.linalg.norm(delta)
        exact.append(float(p.kl(Categorical(Tensor((logits + delta)[None]))).data[0]))
        correct.append(metric_distance(delta, fisher))
        buggy.append(buggy_metric_distance(delta, fisher))
    return {"exact": np.array(exact), "correct": np.array(correct), "buggy": np.array(buggy)}


# ===== CG on a small network's Fisher ======================================================

def cg_on_network(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Solve (F + 0.01 I) x = g for a 5-16-4 softmax network (164 parameters) by CG and by
    numpy.linalg.solve on the explicit matrix; record the residual per CG iteration."""
    net = nn.Sequential(nn.Linear(5, 16, rng=rng), nn.Tanh(), nn.Linear(16, 4, rng=rng))
    params = net.parameters()
    for param in params:
        param.data = param.data.astype(np.float64)
    pi = Categorical(net(Tensor(rng.standard_normal((64, 5)))))
    fvp = fisher_vector_product(pi.detach().kl(pi).mean(), params, damping=0.01)
    n = sum(param.size for param in params)
    fisher = np.stack([fvp(np.eye(n)[j]) for j in range(n)], axis=1)
    g = rng.standard_normal(n)
    exact = np.linalg.solve(fisher, g)
    iterates = [np.zeros(n)]
    conjugate_gradient(fvp, g, iters=60, tol=0.0, callback=iterates.append)
    residuals = [np.linalg.norm(g - fisher @ x) / np.linalg.norm(g) for x in iterates]
    errors = [np.linalg.norm(x - exact) / np.linalg.norm(exact) for x in iterates]
    return {"iterations": np.arange(len(iterates)), "residual": np.array(residuals),
            "error": np.array(errors), "parameters": n}


# ===== figures ============================================================================

def plot_gaussians(config: Config, path: str) -> dict[str, float]:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    kls = {}
    for ax, std, name in ((axes[0], config.narrow_std, "narrow"),
                          (axes[1], config.wide_std, "wide")):
        before = DiagGaussian(Tensor([[0.0]], dtype=np.float64),
                              Tensor([math.log(std)], dtype=np.float64))
        after = DiagGaussian(Tensor([[config.shift]], dtype=np.float64),
                             Tensor([math.log(std)], dtype=np.float64))
        kl = float(before.kl(after).data[0])
        kls[name] = kl
        span = max(4 * std, config.shift + 4 * std)
        x = np.linspace(-4 * std, span, 600)
        for dist, label in ((before, "mean 0"), (after, f"mean {config.shift:g}")):
            density = np.exp(dist.log_prob(Tensor(x[:, None])).data)
            ax.plot(x, density, label=label)
        ax.set_title(f"{name}: std {std:g}, mean shift {config.shift:g}\n"
                     f"KL = shift^2 / (2 std^2) = {kl:.4g}")
        ax.set_xlabel("x")
        ax.set_ylabel("density")
        ax.legend()
        ax.grid(alpha=0.3)
    fig.suptitle("The same parameter change, very different changes of distribution")
    viz.save_figure(fig, path)
    return kls


def plot_descents(config: Config, plain: dict, natural: dict, path: str) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))
    target = DiagGaussian(Tensor([config.target_mean], dtype=np.float64),
                          Tensor([math.log(config.target_std)], dtype=np.float64))
    both = np.concatenate([plain["path"], natural["path"]])
    lo, hi = both.min(axis=0), both.max(axis=0)
    pad = 0.15 * (hi - lo) + 0.1
    means = np.linspace(lo[0] - pad[0], hi[0] + pad[0], 200)
    log_stds = np.linspace(lo[1] - pad[1], hi[1] + pad[1], 200)
    grid_m, grid_s = np.meshgrid(means, log_stds)
    model = DiagGaussian(Tensor(grid_m.reshape(-1, 1)), Tensor(grid_s.reshape(-1, 1)))
    surface = target.kl(model).data.reshape(grid_m.shape)
    axes[0].contour(grid_m, grid_s, np.log10(surface + 1e-6), levels=20, cmap="Greys",
                    linewidths=0.7)
    for run, name, colour in ((plain, "plain", "tab:blue"), (natural, "natural", "tab:red")):
        axes[0].plot(run["path"][:, 0], run["path"][:, 1], ".-", color=colour, markersize=3,
                     linewidth=1, label=f"{name} (lr {run['lr']:g})")
        axes[1].semilogy(run["loss"], color=colour, label=name)
        axes[2].semilogy(np.maximum(run["step_kl"], 1e-16), color=colour, label=name)
    axes[0].plot(config.target_mean, math.log(config.target_std), "k*", markersize=12,
                 label="target")
    axes[0].set_xlabel("mean")
    axes[0].set_ylabel("log std")
    axes[0].set_title("paths in parameter space (contours: log10 loss)")
    axes[1].axhline(config.tolerance, color="grey", linestyle=":", label="tolerance")
    axes[1].set_xlabel("step")
    axes[1].set_ylabel("KL(target || model)")
    axes[1].set_title("loss")
    axes[2].set_xlabel("step")
    axes[2].set_ylabel("KL(model_t || model_t+1)")
    axes[2].set_title("KL moved by each step")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Fitting a Gaussian: plain against natural gradient descent")
    viz.save_figure(fig, path)


def plot_metric_and_cg(metric: dict, cg: dict, path: str) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    top = max(metric["exact"].max(), metric["buggy"].max(), metric["correct"].max()) * 1.05
    axes[0].plot([0, top], [0, top], "k--", linewidth=1, label="equal")
    axes[0].scatter(metric["exact"], metric["correct"], s=10, label="0.5 sum_ij d_i F_ij d_j")
    axes[0].scatter(metric["exact"], metric["buggy"], s=10, marker="x",
                    label="original loop: d_i F_ij d_i (rows of F sum to 0: always 0)")
    axes[0].set_xlabel("exact KL(p_theta || p_theta+d)")
    axes[0].set_ylabel("quadratic estimate")
    axes[0].set_title("softmax, small random moves d")
    axes[0].legend(fontsize=8)
    axes[1].semilogy(cg["iterations"], cg["residual"], "o-", markersize=2,
                     label="|g - F x| / |g|")
    axes[1].semilogy(cg["iterations"], cg["error"], "s-", markersize=2,
                     label="|x - solve(F, g)| / |solve(F, g)|")
    axes[1].axvline(10, color="grey", linestyle=":", label="TRPO's 10 iterations")
    axes[1].set_xlabel("CG iterations (one Fisher-vector product each)")
    axes[1].set_title(f"CG on F x = g, {cg['parameters']}-parameter network")
    axes[1].legend(fontsize=8)
    for ax in axes:
        ax.grid(alpha=0.3)
    viz.save_figure(fig, path)


# ===== the demo ===========================================================================

def run(config: Config) -> dict[str, float]:
    os.makedirs(config.out_dir, exist_ok=True)
    rng = np.random.default_rng(config.seed)
    kls = plot_gaussians(config, os.path.join(config.out_dir, "gaussians_mean_shift.png"))

    natural = descend(config, config.natural_lr, natural=True)
    plain = tuned_plain_descent(config)
    plot_descents(config, plain, natural, os.path.join(config.out_dir, "plain_vs_natural.png"))
    natural_steps = steps_to(natural["loss"], config.tolerance)
    plain_steps = steps_to(plain["loss"], config.tolerance)

    # with F = I the "natural" direction from CG is exactly the plain gradient
    gradient = rng.standard_normal(50)
    identity_difference = float(np.max(np.abs(
        conjugate_gradient(lambda v: v, gradient, iters=10) - gradient)))

    metric = metric_check(config, rng)
    cg = cg_on_network(rng)
    plot_metric_and_cg(metric, cg, os.path.join(config.out_dir, "metric_and_cg.png"))
    return {
        "kl_narrow_shift": kls["narrow"],
        "kl_wide_shift": kls["wide"],
        "natural_steps_to_fit": natural_steps,
        "plain_steps_to_fit": plain_steps,
        "plain_lr_used": float(plain["lr"]),
        "plain_final_loss": float(plain["loss"][-1]),
        # a lower bound when the plain descent does not fit within the step budget at all
        "natural_speedup_over_plain": min(plain_steps, config.steps) / natural_steps,
        "identity_fisher_max_difference": identity_difference,
        "metric_relative_error": float(np.max(np.abs(metric["correct"] - metric["exact"])
                                              / metric["exact"])),
        "buggy_metric_relative_error": float(np.max(np.abs(metric["buggy"] - metric["exact"])
                                                    / metric["exact"])),
        "cg_relative_error": float(cg["error"][-1]),
        "cg_relative_error_10_iterations": float(cg["error"][10]),
    }


if __name__ == "__main__":
    cli.main(__name__)
