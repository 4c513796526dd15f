"""Speed of the VAE demo's training: seconds per epoch of 60,000 digits at batch 100, the conv
(the post) and MLP (the paper) models, against the same model and settings in PyTorch CPU.

    python benchmarks/bench_vae.py                      # both models, 2 threads
    python benchmarks/bench_vae.py --model mlp --repeats 9 --threads 1

One training step = binarise the batch (NumPy, the same in both), encode, reparameterise,
decode, summed BCE with logits + analytic KL, backward, Adam. A timed block is `--steps`
steps; ours and PyTorch's blocks alternate (who goes first rotates, 50 ms pause between) so
both see the same machine noise; the table gives the medians scaled to an epoch (600 steps)
and the ratio of medians ours / PyTorch from the same run. PyTorch starts from our weights,
and the first step's loss of the two is compared, so the two really are the same model.
Targets: 1.3x (MLP), 1.5x (conv). The data are random binary images (speed does not depend on
what the digits look like).
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")  # idle OpenBLAS threads stop spinning
if "--threads" in sys.argv:  # OpenBLAS reads its thread count once, when NumPy is imported
    os.environ["OPENBLAS_NUM_THREADS"] = sys.argv[sys.argv.index("--threads") + 1]

import argparse
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from minimal import optim
from minimal.demos import vae
from minimal.kernels.process import tune_process

try:
    import torch
except ImportError:  # the demo never needs torch; the comparison is skipped
    torch = None

TARGETS = {"mlp": 1.3, "conv": 1.5}
STEPS_PER_EPOCH = 600  # 60,000 digits at batch 100
BATCH, Z = 100, 20


def ours(kind: str, images: np.ndarray, rng: np.random.Generator):
    config = vae.Config(model=kind, z_dim=Z)
    model = vae.make_model(config, rng)
    adam = optim.Adam(model.parameters(), lr=1e-3)
    position = [0]

    def step() -> float:
        start = position[0] % (len(images) - BATCH)
        position[0] += BATCH
        x = vae.binarise(images[start:start + BATCH], rng)
        reconstruction, kl = vae.negative_elbo_terms(model, x, rng)
        loss = reconstruction + kl
        adam.zero_grad()
        loss.backward()
        adam.step()
        return loss.item()

    return model, step


def theirs(kind: str, our_model, images: np.ndarray, rng: np.random.Generator):
    nn, functional = torch.nn, torch.nn.functional

    class ConvVAE(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 16, 5, 2, 2)
            self.conv2 = nn.Conv2d(16, 32, 5, 2, 2)
            self.to_mean = nn.Linear(7 * 7 * 32, Z)
            self.to_log_var = nn.Linear(7 * 7 * 32, Z)
            self.from_z = nn.Linear(Z, 7 * 7 * 32)
            self.deconv1 = nn.ConvTranspose2d(32, 16, 5, 2, 2, output_padding=1)
            self.deconv2 = nn.ConvTranspose2d(16, 1, 5, 2, 2, output_padding=1)

        def encode(self, x):
            h = functional.leaky_relu(self.conv1(x), 0.2)
            h = functional.leaky_relu(self.conv2(h), 0.2).reshape(len(x), -1)
            return self.to_mean(h), self.to_log_var(h)

        def decode(self, z):
            h = functional.relu(self.from_z(z)).reshape(len(z), 32, 7, 7)
            return self.deconv2(functional.relu(self.deconv1(h)))

    class MlpVAE(nn.Module):
        def __init__(self):
            super().__init__()
            self.hidden = nn.Linear(784, 500)
            self.to_mean = nn.Linear(500, Z)
            self.to_log_var = nn.Linear(500, Z)
            self.from_z = nn.Linear(Z, 500)
            self.to_logits = nn.Linear(500, 784)

        def encode(self, x):
            h = torch.tanh(self.hidden(x.reshape(len(x), -1)))
            return self.to_mean(h), self.to_log_var(h)

        def decode(self, z):
            return self.to_logits(torch.tanh(self.from_z(z))).reshape(len(z), 1, 28, 28)

    model = ConvVAE() if kind == "conv" else MlpVAE()
    model.load_state_dict({name: torch.from_numpy(value.copy())
                           for name, value in our_model.state_dict().items()})
    adam = torch.optim.Adam(model.parameters(), lr=1e-3)
    position = [0]

    def step() -> float:
        start = position[0] % (len(images) - BATCH)
        position[0] += BATCH
        x = torch.from_numpy(vae.binarise(images[start:start + BATCH], rng))
        mean, log_var = model.encode(x)
        eps = torch.from_numpy(rng.standard_normal(mean.shape, dtype=np.float32))
        logits = model.decode(mean + torch.exp(0.5 * log_var) * eps)
        reconstruction = functional.binary_cross_entropy_with_logits(
            logits, x, reduction="sum") / len(x)
        kl = 0.5 * (mean * mean + log_var.exp() - 1 - log_var).sum() / len(x)
        loss = reconstruction + kl
        adam.zero_grad()
        loss.backward()
        adam.step()
        return loss.item()

    return step


def timed(step, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", nargs="+", default=["mlp", "conv"], choices=["mlp", "conv"])
    parser.add_argument("--steps", type=int, default=40, help="steps per timed block")
    parser.add_argument("--repeats", type=int, default=7, help="timed blocks per engine")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="BLAS / torch threads (default: one per core)")
    args = parser.parse_args()
    images = np.random.default_rng(2).random((2000, 1, 28, 28), dtype=np.float32)
    if torch is not None:
        torch.set_num_threads(args.threads)
    print(f"threads {args.threads}, {args.steps} steps per block, {args.repeats} blocks each; "
          f"seconds per epoch = median block / {args.steps} x {STEPS_PER_EPOCH}")
    print(f"{'model':6} {'ours s/epoch':>13} {'torch s/epoch':>14} {'ratio':>7} {'target':>7}")
    for kind in args.model:
        rng = np.random.default_rng(0)
        model, ours_step = ours(kind, images, rng)
        if torch is None:
            ours_step()
            times = [timed(ours_step, args.steps) for _ in range(args.repeats)]
            print(f"{kind:6} {np.median(times) / args.steps * STEPS_PER_EPOCH:13.1f} "
                  f"{'(no torch)':>14}")
            continue
        twin = np.random.default_rng()  # the same stream: same batches, same noise
        twin.bit_generator.state = rng.bit_generator.state
        torch_step = theirs(kind, model, images, twin)
        a, b = ours_step(), torch_step()  # same weights, batch and eps: the same loss
        if abs(a - b) > 1e-4 * abs(b):
            raise SystemExit(f"{kind}: first-step losses differ (ours {a}, torch {b}): "
                             "the two models are not the same")
        for step in (ours_step, torch_step):  # warm up: allocations, thread pools
            timed(step, 3)
        ours_times, torch_times = [], []
        for repeat in range(args.repeats):
            order = ((ours_step, ours_times), (torch_step, torch_times))
            for step, times in (order if repeat % 2 == 0 else order[::-1]):
                time.sleep(0.05)
                times.append(timed(step, args.steps))
        ours_epoch = np.median(ours_times) / args.steps * STEPS_PER_EPOCH
        torch_epoch = np.median(torch_times) / args.steps * STEPS_PER_EPOCH
        print(f"{kind:6} {ours_epoch:13.1f} {torch_epoch:14.1f} "
              f"{ours_epoch / torch_epoch:6.2f}x {TARGETS[kind]:6.1f}x", flush=True)


if __name__ == "__main__":
    tune_process()  # the entry points' process settings: minimal/kernels/process.py
    main()
