"""Speed of the engine: forward + backward of the models the demos train, against PyTorch CPU.

    python benchmarks/bench_engine.py                 # every workload, 7 timed runs each
    python benchmarks/bench_engine.py --only mlp dcgan_d --repeats 9 --threads 2
    python benchmarks/bench_engine.py --gemm-floor    # also each workload's matrix products alone

Workloads (float32, forward + backward, gradients of every parameter):
  mlp       VAE-sized MLP 784-500-500-20-500-500-784, ReLU, sigmoid + BCE, batch 100; also
            against a hand-written NumPy forward/backward of the same net (target 1.15x there,
            1.2x against PyTorch: the target column)
  dcgan_d   DCGAN discriminator: batch 64, 3x32x32, conv 5x5 s2 64-128-256, batch norm (not on
            the first), leaky ReLU 0.2, linear to 1, BCE with logits
  dcgan_g   DCGAN generator: z 100 -> linear 4x4x256 -> transposed conv 5x5 s2 128-64-3 with
            batch norm and ReLU, tanh, batch 64
  unet      U-Net: batch 16, 4x64x64 in, five conv 5x5 s2 64-128-256-512-512, five transposed
            convs back with skip concatenations, batch norm, tanh, L1 loss; also peak memory
  lstm      LSTM language model: vocab 5000, embedding 128, hidden 256, 20 steps, batch 64,
            softmax cross-entropy over the vocabulary

Protocol: each workload is warmed up, then timed `--repeats` times, our engine and PyTorch
alternating (who goes first rotates, with a 50 ms pause between runs so that no thread pool is
still spinning from the previous one) so both see the same machine noise; the table gives the
medians and the ratio of medians ours / PyTorch from the same run, with the spread (the
interquartile range as a percent of the median). PyTorch runs at the same thread count as
OpenBLAS (torch.set_num_threads), by default one per core.

OPENBLAS_THREAD_TIMEOUT=4 is set before NumPy is imported: otherwise OpenBLAS's idle threads
keep spinning after each matrix product and steal a core from PyTorch, which flatters NumPy by
about 1.3x on a 2-core machine. Peak memory (the resident high-water mark, VmHWM) is measured
in a fresh process per engine, since it is a mark of the whole process.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")  # before numpy is imported, see above
if "--threads" in sys.argv:  # OpenBLAS reads its thread count once, when NumPy is imported
    os.environ["OPENBLAS_NUM_THREADS"] = sys.argv[sys.argv.index("--threads") + 1]

import argparse
import itertools
import resource
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from minimal import functional as F
from minimal import nn
from minimal.autograd import Tensor, concatenate
from minimal.kernels.process import tune_process

try:
    import torch
except ImportError:  # the engine never needs torch; the comparison is skipped
    torch = None

WORKLOADS = ("mlp", "dcgan_d", "dcgan_g", "unet", "lstm")
TARGETS = {"mlp": 1.2, "dcgan_d": 1.5, "dcgan_g": 1.5, "unet": 1.5, "lstm": 1.2}


# ===== our engine ===========================================================================

MLP_SIZES = (784, 500, 500, 20, 500, 500, 784)


def ours_mlp(rng) -> Callable[[], None]:
    layers = [nn.Linear(a, b, rng=rng) for a, b in itertools.pairwise(MLP_SIZES)]
    model = nn.Sequential(*[m for layer in layers[:-1] for m in (layer, nn.ReLU())], layers[-1])
    x = rng.random((100, 784), dtype=np.float32)

    def step():
        model.zero_grad()
        logits = model(Tensor(x))
        F.binary_cross_entropy_with_logits(logits, x).backward()
    return step


def numpy_mlp(rng) -> Callable[[], None]:
    """The same net by hand: forward, then backward with the chain rule written out."""
    weights = [nn.Linear(a, b, rng=rng) for a, b in itertools.pairwise(MLP_SIZES)]
    params = [(m.weight.data, m.bias.data) for m in weights]
    x = rng.random((100, 784), dtype=np.float32)

    def step():
        activations = [x]
        h = x
        for i, (w, b) in enumerate(params):
            h = h @ w.T + b
            if i < len(params) - 1:
                h = np.maximum(h, 0)
            activations.append(h)
        # mean BCE with logits: softplus(z) - x z, its gradient (sigmoid(z) - x) / size
        z = h
        loss = np.mean(np.maximum(z, 0) - z * x + np.log1p(np.exp(-np.abs(z))))
        g = (1 / (1 + np.exp(-z)) - x) / z.size
        grads = []
        for i in reversed(range(len(params))):
            w, _ = params[i]
            a = activations[i]
            grads.append((g.T @ a, g.sum(0)))
            if i > 0:
                g = (g @ w) * (a > 0)
        return loss, grads
    return step


def _discriminator(rng):
    return nn.Sequential(
        nn.Conv2d(3, 64, 5, 2, 2, rng=rng), nn.LeakyReLU(0.2),
        nn.Conv2d(64, 128, 5, 2, 2, rng=rng), nn.BatchNorm2d(128), nn.LeakyReLU(0.2),
        nn.Conv2d(128, 256, 5, 2, 2, rng=rng), nn.BatchNorm2d(256), nn.LeakyReLU(0.2),
        nn.Flatten(), nn.Linear(256 * 4 * 4, 1, rng=rng))


def ours_dcgan_d(rng):
    model = _discriminator(rng)
    x = rng.uniform(-1, 1, (64, 3, 32, 32)).astype(np.float32)
    target = np.ones((64, 1), np.float32)

    def step():
        model.zero_grad()
        F.binary_cross_entropy_with_logits(model(Tensor(x)), target).backward()
    return step


class _Generator(nn.Module):
    def __init__(self, rng):
        super().__init__()
        self.project = nn.Linear(100, 4 * 4 * 256, rng=rng)
        self.bn0 = nn.BatchNorm2d(256)
        self.body = nn.Sequential(
            nn.ConvTranspose2d(256, 128, 5, 2, 2, 1, rng=rng), nn.BatchNorm2d(128), nn.ReLU(),
            nn.ConvTranspose2d(128, 64, 5, 2, 2, 1, rng=rng), nn.BatchNorm2d(64), nn.ReLU(),
            nn.ConvTranspose2d(64, 3, 5, 2, 2, 1, rng=rng), nn.Tanh())

    def forward(self, z):
        h = F.relu(self.bn0(self.project(z).reshape(-1, 256, 4, 4)))
        return self.body(h)


def ours_dcgan_g(rng):
    model = _Generator(rng)
    z = rng.uniform(-1, 1, (64, 100)).astype(np.float32)
    g_out = Tensor(rng.standard_normal((64, 3, 32, 32)).astype(np.float32))

    def step():
        model.zero_grad()
        (model(Tensor(z)) * g_out).sum().backward()
    return step


UNET_ENCODER = (4, 64, 128, 256, 512, 512)


class _UNet(nn.Module):
    """deepcolor's generator: conv 5x5 s2 down, transposed conv up, skips by concatenation."""

    def __init__(self, rng):
        super().__init__()
        c = UNET_ENCODER
        self.down = nn.ModuleList(nn.Conv2d(a, b, 5, 2, 2, rng=rng)
                                  for a, b in itertools.pairwise(c))
        self.down_bn = nn.ModuleList(nn.BatchNorm2d(b) for b in c[2:])
        # up path: 512 -> 512 -> 256 -> 128 -> 64 -> 3; inputs doubled by the skips
        outs = (512, 256, 128, 64, 3)
        ins = (512, 1024, 512, 256, 128)
        self.up = nn.ModuleList(nn.ConvTranspose2d(a, b, 5, 2, 2, 1, rng=rng)
                                for a, b in zip(ins, outs))
        self.up_bn = nn.ModuleList(nn.BatchNorm2d(b) for b in outs[:-1])

    def forward(self, x):
        skips = []
        for i, conv in enumerate(self.down):
            x = conv(x if i == 0 else F.leaky_relu(x, 0.2))
            if i > 0:
                x = self.down_bn[i - 1](x)
            skips.append(x)
        for i, conv in enumerate(self.up):
            if i > 0:
                x = concatenate([x, skips[-1 - i]], axis=1)
            x = conv(F.relu(x))
            x = self.up_bn[i](x) if i < len(self.up) - 1 else F.tanh(x)
        return x


def ours_unet(rng):
    model = _UNet(rng)
    x = rng.uniform(-1, 1, (16, 4, 64, 64)).astype(np.float32)
    target = rng.uniform(-1, 1, (16, 3, 64, 64)).astype(np.float32)

    def step():
        model.zero_grad()
        F.l1_loss(model(Tensor(x)), target).backward()
    return step


class _LanguageModel(nn.Module):
    def __init__(self, rng, vocab=5000, embedding=128, hidden=256):
        super().__init__()
        self.embed = nn.Embedding(vocab, embedding, rng=rng)
        self.lstm = nn.LSTM(embedding, hidden, rng=rng)
        self.out = nn.Linear(hidden, vocab, rng=rng)

    def forward(self, ids):
        h, _ = self.lstm(self.embed(ids))
        return self.out(h)


def ours_lstm(rng):
    model = _LanguageModel(rng)
    ids = rng.integers(0, 5000, (21, 64))

    def step():
        model.zero_grad()
        logits = model(ids[:-1])
        F.cross_entropy(logits.reshape(-1, 5000), ids[1:].reshape(-1)).backward()
    return step


# ===== PyTorch, the same models =============================================================

def torch_models():
    tnn, tF = torch.nn, torch.nn.functional

    def mlp(rng):
        layers = [tnn.Linear(a, b) for a, b in itertools.pairwise(MLP_SIZES)]
        model = tnn.Sequential(*[m for layer in layers[:-1] for m in (layer, tnn.ReLU())],
                               layers[-1])
        x = torch.rand(100, 784)

        def step():
            model.zero_grad()
            tF.binary_cross_entropy_with_logits(model(x), x).backward()
        return step

    def dcgan_d(rng):
        model = tnn.Sequential(
            tnn.Conv2d(3, 64, 5, 2, 2), tnn.LeakyReLU(0.2),
            tnn.Conv2d(64, 128, 5, 2, 2), tnn.BatchNorm2d(128), tnn.LeakyReLU(0.2),
            tnn.Conv2d(128, 256, 5, 2, 2), tnn.BatchNorm2d(256), tnn.LeakyReLU(0.2),
            tnn.Flatten(), tnn.Linear(256 * 4 * 4, 1))
        x = torch.rand(64, 3, 32, 32) * 2 - 1
        target = torch.ones(64, 1)

        def step():
            model.zero_grad()
            tF.binary_cross_entropy_with_logits(model(x), target).backward()
        return step

    def dcgan_g(rng):
        project = tnn.Linear(100, 4 * 4 * 256)
        bn0 = tnn.BatchNorm2d(256)
        body = tnn.Sequential(
            tnn.ConvTranspose2d(256, 128, 5, 2, 2, 1), tnn.BatchNorm2d(128), tnn.ReLU(),
            tnn.ConvTranspose2d(128, 64, 5, 2, 2, 1), tnn.BatchNorm2d(64), tnn.ReLU(),
            tnn.ConvTranspose2d(64, 3, 5, 2, 2, 1), tnn.Tanh())
        modules = tnn.ModuleList([project, bn0, body])
        z = torch.rand(64, 100) * 2 - 1
        g_out = torch.randn(64, 3, 32, 32)

        def step():
            modules.zero_grad()
            h = torch.relu(bn0(project(z).reshape(-1, 256, 4, 4)))
            (body(h) * g_out).sum().backward()
        return step

    def unet(rng):
        c = UNET_ENCODER
        down = tnn.ModuleList(tnn.Conv2d(a, b, 5, 2, 2) for a, b in itertools.pairwise(c))
        down_bn = tnn.ModuleList(tnn.BatchNorm2d(b) for b in c[2:])
        outs, ins = (512, 256, 128, 64, 3), (512, 1024, 512, 256, 128)
        up = tnn.ModuleList(tnn.ConvTranspose2d(a, b, 5, 2, 2, 1) for a, b in zip(ins, outs))
        up_bn = tnn.ModuleList(tnn.BatchNorm2d(b) for b in outs[:-1])
        modules = tnn.ModuleList([down, down_bn, up, up_bn])
        x0 = torch.rand(16, 4, 64, 64) * 2 - 1
        target = torch.rand(16, 3, 64, 64) * 2 - 1

        def step():
            modules.zero_grad()
            x, skips = x0, []
            for i, conv in enumerate(down):
                x = conv(x if i == 0 else tF.leaky_relu(x, 0.2))
                if i > 0:
                    x = down_bn[i - 1](x)
                skips.append(x)
            for i, conv in enumerate(up):
                if i > 0:
                    x = torch.cat([x, skips[-1 - i]], 1)
                x = conv(torch.relu(x))
                x = up_bn[i](x) if i < len(up) - 1 else torch.tanh(x)
            tF.l1_loss(x, target).backward()
        return step

    def lstm(rng):
        embed, cell, out = tnn.Embedding(5000, 128), tnn.LSTM(128, 256), tnn.Linear(256, 5000)
        modules = tnn.ModuleList([embed, cell, out])
        ids = torch.as_tensor(rng.integers(0, 5000, (21, 64)))

        def step():
            modules.zero_grad()
            h, _ = cell(embed(ids[:-1]))
            tF.cross_entropy(out(h).reshape(-1, 5000), ids[1:].reshape(-1)).backward()
        return step

    return {"mlp": mlp, "dcgan_d": dcgan_d, "dcgan_g": dcgan_g, "unet": unet, "lstm": lstm}


OURS = {"mlp": ours_mlp, "dcgan_d": ours_dcgan_d, "dcgan_g": ours_dcgan_g, "unet": ours_unet,
        "lstm": ours_lstm}


# ===== the matrix products alone ===========================================================
# Each workload's matrix products as our engine calls them (shapes, and which operand is
# transposed), for `--gemm-floor`: the same products through NumPy (OpenBLAS) and through
# torch.mm show how much of the ratio is set by the BLAS before any of our own code runs.
# Entries: (rows, inner, columns, a transposed, b transposed, calls per step).


def _conv_gemms(m, k, o):
    """conv forward cols (m, k) @ W^T; input gradient (m, o) @ W; weight gradient."""
    weight_grad = (k, m, o, True, False, 1) if m >= k else (o, m, k, True, False, 1)
    return [(m, k, o, False, True, 1), (m, o, k, False, False, 1), weight_grad]


GEMMS = {
    "mlp": [g for a, b in itertools.pairwise(MLP_SIZES)
            for g in ((100, a, b, False, True, 1), (100, b, a, False, False, 1),
                      (b, 100, a, True, False, 1))],
    "dcgan_d": [(16384, 75, 64, False, True, 1), (75, 16384, 64, True, False, 1),
                *_conv_gemms(4096, 1600, 128), *_conv_gemms(1024, 3200, 256)],
    # transposed convolutions: forward = (m, o) @ W, backward = conv of the gradient
    "dcgan_g": [(64, 100, 4096, False, True, 1), (4096, 64, 100, True, False, 1),
                *_conv_gemms(1024, 3200, 256), *_conv_gemms(4096, 1600, 128),
                (75, 64, 16384, True, True, 1), (16384, 75, 64, False, True, 1),
                (75, 16384, 64, True, False, 1)],
    # U-Net: first conv (input needs no gradient), three more down, four up (transposed convs
    # are convs of the output gradient), then the RGB layer, which works channels-first
    "unet": [(16384, 100, 64, False, True, 1), (100, 16384, 64, True, False, 1),
             *[g for m, k, o in ((4096, 1600, 128), (1024, 3200, 256), (256, 6400, 512),
                                 (64, 12800, 512), (64, 12800, 512), (256, 6400, 1024),
                                 (1024, 3200, 512), (4096, 1600, 256))
               for g in _conv_gemms(m, k, o)],
             (75, 128, 16384, True, True, 1), (16384, 75, 128, False, True, 1),
             (75, 16384, 128, True, False, 1)],
    "lstm": [(1280, 256, 5000, False, True, 1), (1280, 5000, 256, False, False, 1),
             (5000, 1280, 256, True, False, 1), (1280, 128, 1024, False, True, 1),
             (1280, 1024, 128, False, False, 1), (1024, 1280, 128, True, False, 1),
             (64, 256, 1024, False, False, 20), (64, 1024, 256, False, False, 20),
             (1024, 1280, 256, True, False, 1)],
}


def gemm_steps(name: str, rng) -> dict[str, Callable[[], None]]:
    """One step of `name`'s matrix products, through NumPy and (if importable) torch.mm."""
    products = []
    for m, k, n, ta, tb, calls in GEMMS[name]:
        a = rng.standard_normal((k, m) if ta else (m, k), dtype=np.float32)
        b = rng.standard_normal((n, k) if tb else (k, n), dtype=np.float32)
        products.append((a.T if ta else a, b.T if tb else b, calls))
    steps = {"ours": lambda: [a @ b for a, b, calls in products for _ in range(calls)]}
    if torch is not None:  # from_numpy keeps the strides: the same transposed operands
        pairs = [(torch.from_numpy(a), torch.from_numpy(b), calls) for a, b, calls in products]
        steps["torch"] = lambda: [torch.mm(a, b) for a, b, calls in pairs for _ in range(calls)]
    return steps


# ===== timing ===============================================================================

def _time(step: Callable[[], None]) -> float:
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


def measure(steps: dict[str, Callable[[], None]], repeats: int, warmup: int = 2) -> dict:
    """Median seconds per step of each engine, interleaved so they share the machine's noise."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    times = {name: [] for name in steps}
    names = list(steps)
    for repeat in range(repeats):
        # rotate who goes first, and pause between engines: a thread pool that is still
        # spinning after one engine's run (OpenMP's, OpenBLAS's) must not slow the next one
        for name in names[repeat % len(names):] + names[:repeat % len(names)]:
            time.sleep(0.05)
            times[name].append(_time(steps[name]))
    summary = {}
    for name, samples in times.items():
        q1, median, q3 = np.percentile(samples, [25, 50, 75])
        summary[name] = (median, 100 * (q3 - q1) / median)
    return summary


def peak_memory_mb(workload: str, engine: str, threads: int) -> float:
    """ru_maxrss of a fresh process that builds `workload` with `engine` and runs 3 steps."""
    result = subprocess.run(
        [sys.executable, __file__, "--memory-of", workload, engine, "--threads", str(threads)],
        capture_output=True, text=True, check=True)
    return float(result.stdout.strip().splitlines()[-1])


def _memory_child(workload: str, engine: str) -> None:
    rng = np.random.default_rng(0)
    step = OURS[workload](rng) if engine == "ours" else torch_models()[workload](rng)
    for _ in range(3):
        step()
    print(_peak_rss_mb())


def _peak_rss_mb() -> float:
    """Peak resident memory of this process in MB.

    VmHWM from /proc where there is one: ru_maxrss would also count the parent's memory, since
    after fork() the child starts with the parent's pages resident.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=WORKLOADS, default=list(WORKLOADS))
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per engine (>= 5)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="BLAS threads for NumPy and torch.set_num_threads")
    parser.add_argument("--gemm-floor", action="store_true",
                        help="also time each workload's matrix products alone (see GEMMS)")
    parser.add_argument("--memory-of", nargs=2, metavar=("WORKLOAD", "ENGINE"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if torch is not None:
        torch.set_num_threads(args.threads)
        torch.manual_seed(0)
    if args.memory_of:
        _memory_child(*args.memory_of)
        return
    print(f"numpy {np.__version__}, torch {torch.__version__ if torch else 'not installed'}, "
          f"{args.threads} threads, OPENBLAS_THREAD_TIMEOUT="
          f"{os.environ['OPENBLAS_THREAD_TIMEOUT']}, median of {args.repeats} runs")
    print(f"{'workload':10s} {'ours ms':>9s} {'numpy ms':>9s} {'torch ms':>9s} "
          f"{'ours/np':>8s} {'ours/torch':>10s} {'target':>7s}  spread (IQR % of median)")
    for name in args.only:
        rng = np.random.default_rng(0)
        steps = {"ours": OURS[name](rng)}
        if name == "mlp":
            steps["numpy"] = numpy_mlp(np.random.default_rng(0))
        if torch is not None:
            steps["torch"] = torch_models()[name](rng)
        result = measure(steps, args.repeats)
        ms = {k: v[0] * 1e3 for k, v in result.items()}
        ratio_np = f"{ms['ours'] / ms['numpy']:8.2f}" if "numpy" in ms else f"{'':8s}"
        ratio_t = f"{ms['ours'] / ms['torch']:10.2f}" if "torch" in ms else f"{'':10s}"
        spread = ", ".join(f"{k} {v[1]:.0f}%" for k, v in result.items())
        print(f"{name:10s} {ms['ours']:9.1f} {ms.get('numpy', float('nan')):9.1f} "
              f"{ms.get('torch', float('nan')):9.1f} {ratio_np} {ratio_t} "
              f"{TARGETS[name]:7.2f}  {spread}", flush=True)
        if args.gemm_floor:
            gemm = {k: v[0] * 1e3 for k, v in
                    measure(gemm_steps(name, np.random.default_rng(0)), args.repeats).items()}
            ratio = f"{gemm['ours'] / gemm['torch']:10.2f}" if "torch" in gemm else f"{'':10s}"
            print(f"{'  products':10s} {gemm['ours']:9.1f} {'':9s} "
                  f"{gemm.get('torch', float('nan')):9.1f} {'':8s} {ratio}   "
                  f"(its matrix products alone: {100 * gemm['ours'] / ms['ours']:.0f}% of ours"
                  + (f", {100 * gemm['torch'] / ms['torch']:.0f}% of torch)" if "torch" in gemm
                     else ")"), flush=True)
    if "unet" in args.only:
        engines = ["ours"] + (["torch"] if torch is not None else [])
        peaks = ", ".join(f"{e} {peak_memory_mb('unet', e, args.threads):.0f} MB"
                          for e in engines)
        print(f"U-Net peak memory (VmHWM, fresh process, 3 steps): {peaks}")


if __name__ == "__main__":
    tune_process()  # the entry points' process settings: minimal/kernels/process.py
    main()
