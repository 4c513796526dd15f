"""Speed of the deepcolor demo's training iteration, against the same nets in PyTorch CPU.

    python benchmarks/bench_deepcolor.py                  # 64 px, batch 4, the quick nets
    python benchmarks/bench_deepcolor.py --width 32 --depth 5 --repeats 5 --threads 2

One iteration is rung 4's step in minimal/demos/deepcolor.py: the U-Net generator on line art
+ hint (4 channels), a discriminator step (D on the real and on the generated picture next to
the inputs, BCE with logits, backward, Adam), then a generator step through the updated D
(non-saturating BCE + 100 x L1; D's weights need no gradient there, in both engines), Adam.
The nets are the demo's (5x5 stride-2 convs, batch norm, leaky ReLU / ReLU, skips, tanh; D
conv 4 layers with the last at stride 1, linear to one logit).

Protocol: warm-up, then `--repeats` timed blocks of `--block` iterations each, ours and
PyTorch alternating (who goes first rotates, a 50 ms pause between) so both see the same
machine noise; medians as seconds per 100 iterations and the ratio of medians from the same
run. PyTorch runs at the same thread count as OpenBLAS. Peak memory: the traced NumPy
allocations of one of our iterations (tracemalloc's peak), and the process's resident
high-water mark at the end (both engines loaded).
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")  # idle OpenBLAS threads would spin
if "--threads" in sys.argv:  # OpenBLAS reads its thread count once, when NumPy is imported
    os.environ["OPENBLAS_NUM_THREADS"] = sys.argv[sys.argv.index("--threads") + 1]

import argparse
import resource
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # interleave.py

import interleave
import numpy as np

from minimal import optim
from minimal.app import training
from minimal.demos import deepcolor as dc
from minimal.kernels.process import tune_process

try:
    import torch
except ImportError:  # the demo never needs torch; the comparison is skipped
    torch = None

TARGET = 1.5  # ours / PyTorch, seconds per iteration


def ours(rng: np.random.Generator, size: int, batch: int, width: int, depth: int):
    config = dc.Config(size=size, width=width, depth=depth, batch_size=batch, rungs=(4,),
                       out_dir="/tmp/bench_deepcolor")
    generator, discriminator = dc.make_rung(4, config, rng)
    adam_g = optim.Adam(generator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    adam_d = optim.Adam(discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    state = training.TrainingState("bench", config, {}, {}, rng)  # only its NaN guard is used
    inputs = rng.uniform(-1, 1, (batch, 4, size, size)).astype(np.float32)
    targets = rng.uniform(-1, 1, (batch, 3, size, size)).astype(np.float32)

    def iteration():
        dc.train_step(generator, discriminator, adam_g, adam_d, inputs, targets, config, state,
                      "bench")
    return iteration


def theirs(size: int, batch: int, width: int, depth: int):
    tnn, tF = torch.nn, torch.nn.functional
    widths = dc.level_widths(width, depth)

    def down(cin, cout, stride=2):
        return tnn.Conv2d(cin, cout, 5, stride, 2)

    def up(cin, cout):
        return tnn.ConvTranspose2d(cin, cout, 5, 2, 2, 1)

    class UNet(tnn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = tnn.ModuleList([down(4, widths[0])] + [
                down(widths[i - 1], widths[i]) for i in range(1, depth)])
            self.encoder_norm = tnn.ModuleList([tnn.BatchNorm2d(w) for w in widths[1:]])
            self.decoder, self.decoder_norm = tnn.ModuleList(), tnn.ModuleList()
            channels = widths[-1]
            for level in range(depth - 2, -1, -1):
                self.decoder.append(up(channels, widths[level]))
                self.decoder_norm.append(tnn.BatchNorm2d(widths[level]))
                channels = 2 * widths[level]
            self.decoder.append(up(channels, 3))

        def forward(self, x):
            features = [self.encoder[0](x)]
            for conv, norm in zip(self.encoder[1:], self.encoder_norm):
                features.append(norm(conv(tF.leaky_relu(features[-1], 0.2))))
            h = features[-1]
            for index, (conv, norm) in enumerate(zip(self.decoder[:-1], self.decoder_norm)):
                h = torch.cat([norm(conv(torch.relu(h))), features[-2 - index]], 1)
            return torch.tanh(self.decoder[-1](torch.relu(h)))

    side = -(-size // 8)
    generator = UNet()
    discriminator = tnn.Sequential(
        down(7, width), tnn.LeakyReLU(0.2),
        down(width, 2 * width), tnn.BatchNorm2d(2 * width), tnn.LeakyReLU(0.2),
        down(2 * width, 4 * width), tnn.BatchNorm2d(4 * width), tnn.LeakyReLU(0.2),
        down(4 * width, 8 * width, 1), tnn.BatchNorm2d(8 * width), tnn.LeakyReLU(0.2),
        tnn.Flatten(), tnn.Linear(8 * width * side * side, 1))
    adam_g = torch.optim.Adam(generator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    adam_d = torch.optim.Adam(discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    x = torch.rand(batch, 4, size, size) * 2 - 1
    y = torch.rand(batch, 3, size, size) * 2 - 1
    ones, zeros = torch.ones(batch, 1), torch.zeros(batch, 1)

    def iteration():
        fake = generator(x)
        d_loss = (tF.binary_cross_entropy_with_logits(discriminator(torch.cat([x, y], 1)), ones)
                  + tF.binary_cross_entropy_with_logits(
                      discriminator(torch.cat([x, fake.detach()], 1)), zeros))
        adam_d.zero_grad()
        d_loss.backward()
        adam_d.step()
        discriminator.requires_grad_(False)
        g_loss = (tF.binary_cross_entropy_with_logits(discriminator(torch.cat([x, fake], 1)),
                                                      ones)
                  + 100 * (fake - y).abs().mean())
        adam_g.zero_grad()
        g_loss.backward()
        discriminator.requires_grad_(True)
        adam_g.step()
    return iteration


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed blocks per engine")
    parser.add_argument("--block", type=int, default=10, help="iterations per timed block")
    parser.add_argument("--size", type=int, default=64, help="picture side in pixels")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--width", type=int, default=dc.QUICK["width"], help="first conv width")
    parser.add_argument("--depth", type=int, default=dc.QUICK["depth"], help="encoder levels")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    shape = (args.size, args.batch, args.width, args.depth)
    engines = {"ours": ours(np.random.default_rng(0), *shape)}
    if torch is not None:
        torch.set_num_threads(args.threads)
        torch.manual_seed(0)
        engines["torch"] = theirs(*shape)
    times = interleave.interleaved(engines, args.repeats, args.block)
    tracemalloc.start()  # one more of our iterations, warm, with its allocations traced
    engines["ours"]()
    traced_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(f"deepcolor iteration (rung 4: one D step + one G step), {args.size} px, batch "
          f"{args.batch}, width {args.width}, depth {args.depth}, {args.threads} thread(s), "
          f"{args.repeats} x {args.block} iterations each")
    interleave.report(times, TARGET)
    high_water = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory: {traced_peak / 2**20:.1f} MiB traced NumPy allocations in one of our "
          f"iterations; process high-water mark {high_water:.0f} MiB (both engines loaded)")


if __name__ == "__main__":
    tune_process()  # the entry points' process settings: minimal/kernels/process.py
    main()
