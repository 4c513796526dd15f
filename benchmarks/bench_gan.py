"""Speed of the GAN demo's training iteration, against the same nets in PyTorch CPU.

    python benchmarks/bench_gan.py                      # 32x32x3, batch 64, g = d = 32
    python benchmarks/bench_gan.py --repeats 9 --block 10 --threads 2

One iteration is what minimal/demos/gan.py does per step: G forward on a batch of noise, a D
step (D on 64 real and on 64 generated images, BCE with logits, backward, Adam), then a G step
through the updated D (D's weights need no gradient there, in both engines), Adam. The nets
are the demo's: G z 100 -> linear 4x4x128 -> transposed conv 5x5 s2 64-32-3 (batch norm,
ReLU, tanh), D conv 5x5 s2 32-64-128 (batch norm after the first, leaky ReLU 0.2) -> linear 1.

Protocol: warm-up, then `--repeats` timed blocks of `--block` iterations each, ours and
PyTorch alternating (who goes first rotates, a 50 ms pause between) so both see the same
machine noise; the table gives medians as seconds per 100 iterations and the ratio of
medians from the same run. PyTorch runs at the same thread count as OpenBLAS.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")  # idle OpenBLAS threads would spin
if "--threads" in sys.argv:  # OpenBLAS reads its thread count once, when NumPy is imported
    os.environ["OPENBLAS_NUM_THREADS"] = sys.argv[sys.argv.index("--threads") + 1]

import argparse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # interleave.py

import interleave
import numpy as np

from minimal import optim
from minimal.demos import gan
from minimal.kernels.process import tune_process

try:
    import torch
except ImportError:  # the demo never needs torch; the comparison is skipped
    torch = None

TARGET = 1.5  # ours / PyTorch, seconds per iteration


def ours(rng: np.random.Generator, batch: int, width: int):
    generator = gan.Generator(100, width, 3, 32, rng)
    discriminator = gan.Discriminator(width, 3, 32, rng)
    g_adam = optim.Adam(generator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    d_adam = optim.Adam(discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    real = rng.uniform(-1, 1, (batch, 3, 32, 32)).astype(np.float32)

    def iteration():
        z = gan.sample_noise(rng, batch, 100)
        gan.train_step(generator, discriminator, g_adam, d_adam, real, z)
    return iteration


def theirs(batch: int, width: int):
    tnn, tF = torch.nn, torch.nn.functional

    class Generator(tnn.Module):
        def __init__(self):
            super().__init__()
            self.top = 4 * width
            self.project = tnn.Linear(100, 16 * self.top, bias=False)
            self.body = tnn.Sequential(
                tnn.BatchNorm2d(self.top), tnn.ReLU(),
                tnn.ConvTranspose2d(4 * width, 2 * width, 5, 2, 2, 1, bias=False),
                tnn.BatchNorm2d(2 * width), tnn.ReLU(),
                tnn.ConvTranspose2d(2 * width, width, 5, 2, 2, 1, bias=False),
                tnn.BatchNorm2d(width), tnn.ReLU(),
                tnn.ConvTranspose2d(width, 3, 5, 2, 2, 1), tnn.Tanh())

        def forward(self, z):
            return self.body(self.project(z).reshape(-1, self.top, 4, 4))

    generator = Generator()
    discriminator = tnn.Sequential(
        tnn.Conv2d(3, width, 5, 2, 2), tnn.LeakyReLU(0.2),
        tnn.Conv2d(width, 2 * width, 5, 2, 2, bias=False), tnn.BatchNorm2d(2 * width),
        tnn.LeakyReLU(0.2),
        tnn.Conv2d(2 * width, 4 * width, 5, 2, 2, bias=False), tnn.BatchNorm2d(4 * width),
        tnn.LeakyReLU(0.2), tnn.Flatten(), tnn.Linear(16 * 4 * width, 1))
    g_adam = torch.optim.Adam(generator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    d_adam = torch.optim.Adam(discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    real = torch.rand(batch, 3, 32, 32) * 2 - 1
    ones, zeros = torch.ones(batch, 1), torch.zeros(batch, 1)

    def iteration():
        fake = generator(torch.rand(batch, 100) * 2 - 1)
        d_loss = (tF.binary_cross_entropy_with_logits(discriminator(real), ones)
                  + tF.binary_cross_entropy_with_logits(discriminator(fake.detach()), zeros))
        d_adam.zero_grad()
        d_loss.backward()
        d_adam.step()
        discriminator.requires_grad_(False)
        g_loss = tF.binary_cross_entropy_with_logits(discriminator(fake), ones)
        g_adam.zero_grad()
        g_loss.backward()
        discriminator.requires_grad_(True)
        g_adam.step()
    return iteration


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed blocks per engine")
    parser.add_argument("--block", type=int, default=10, help="iterations per timed block")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--width", type=int, default=32, help="g = d")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    engines = {"ours": ours(np.random.default_rng(0), args.batch, args.width)}
    if torch is not None:
        torch.set_num_threads(args.threads)
        torch.manual_seed(0)
        engines["torch"] = theirs(args.batch, args.width)
    times = interleave.interleaved(engines, args.repeats, args.block)
    print(f"GAN iteration (one D step + one G step), batch {args.batch}, 32x32x3, "
          f"g = d = {args.width}, {args.threads} thread(s), {args.repeats} x {args.block} "
          "iterations each")
    interleave.report(times, TARGET)


if __name__ == "__main__":
    tune_process()  # the entry points' process settings: minimal/kernels/process.py
    main()
