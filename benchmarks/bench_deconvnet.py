"""Training speed of the deconvnet demo's convnet against the same net in PyTorch CPU.

    python benchmarks/bench_deconvnet.py                    # shapes 32x32x3, 5 timed epochs each
    python benchmarks/bench_deconvnet.py --dataset digits --images 1000 --repeats 7 --threads 2

The net is the demo's (the post's, on pixels - 0.5): conv 5x5 32 'same', ReLU, max-pool 2;
conv 5x5 64, ReLU, max-pool 2; FC 1024, ReLU; FC 10; softmax cross-entropy, Adam, batch 50.
One "epoch" here is `--images` training images in batches of 50, shuffled, each step forward +
backward + Adam: the demo's inner loop (seconds per epoch of the demo = the figure here x its
train_size / images).

Protocol: benchmarks/interleave.py (one warm-up epoch each, then the two engines alternate
epoch by epoch, who goes first rotating), medians and the ratio of medians from the same run,
with the spread (interquartile range over the median). PyTorch gets the same thread count
as OpenBLAS. OPENBLAS_THREAD_TIMEOUT=4 keeps idle OpenBLAS threads from spinning on a core
PyTorch needs. The same images and starting weights go into both nets.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")  # before numpy is imported
if "--threads" in sys.argv:  # OpenBLAS reads its thread count once, when NumPy is imported
    os.environ["OPENBLAS_NUM_THREADS"] = sys.argv[sys.argv.index("--threads") + 1]

import argparse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # interleave.py

import interleave
import numpy as np

from minimal import data, optim
from minimal import functional as F
from minimal.autograd import Tensor
from minimal.demos.deconvnet import ConvNet
from minimal.kernels.process import tune_process

try:
    import torch
except ImportError:  # the demo never needs torch; the comparison is skipped
    torch = None

BATCH = 50
TARGET = 1.5


def ours(images: np.ndarray, labels: np.ndarray, rng: np.random.Generator):
    model = ConvNet(images.shape[1], images.shape[2:], rng)
    adam = optim.Adam(model.parameters(), lr=1e-4)

    def epoch():
        order = rng.permutation(len(images))
        for start in range(0, len(images) - BATCH + 1, BATCH):
            batch = order[start:start + BATCH]
            loss = F.cross_entropy(model(Tensor(images[batch])), labels[batch])
            adam.zero_grad()
            loss.backward()
            adam.step()

    return model, epoch


def theirs(images: np.ndarray, labels: np.ndarray, weights: dict, rng: np.random.Generator):
    nn = torch.nn
    side = images.shape[2] // 4
    model = nn.Sequential(
        nn.Conv2d(images.shape[1], 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(64 * side * side, 1024), nn.ReLU(), nn.Linear(1024, 10))
    names = ("conv1", "conv2", "fc1", "fc2")
    with torch.no_grad():  # the same starting point as ours
        for layer, name in zip([model[0], model[3], model[7], model[9]], names):
            layer.weight.copy_(torch.from_numpy(weights[f"{name}.weight"]))
            layer.bias.copy_(torch.from_numpy(weights[f"{name}.bias"]))
    adam = torch.optim.Adam(model.parameters(), lr=1e-4)
    x, y = torch.from_numpy(images), torch.from_numpy(labels)

    def epoch():
        order = torch.from_numpy(rng.permutation(len(images)))
        for start in range(0, len(images) - BATCH + 1, BATCH):
            batch = order[start:start + BATCH]
            loss = torch.nn.functional.cross_entropy(model(x[batch] - 0.5), y[batch])
            adam.zero_grad()
            loss.backward()
            adam.step()

    return epoch


def measure(epochs: dict, repeats: int) -> dict:
    """(median seconds per epoch, spread in percent) of each engine, interleaved."""
    times = interleave.interleaved(epochs, repeats, block=1, warmup=1)  # s per 100 epochs
    summary = {}
    for name, values in times.items():
        q1, median, q3 = np.percentile(np.asarray(values) / 100, [25, 50, 75])
        summary[name] = (median, 100 * (q3 - q1) / median)
    return summary


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", choices=("shapes", "digits"), default="shapes")
    parser.add_argument("--images", type=int, default=1000,
                        help="training images per timed epoch (default 1000)")
    parser.add_argument("--repeats", type=int, default=5, help="timed epochs per engine")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="OpenBLAS and PyTorch threads (default: one per core)")
    args = parser.parse_args(argv)
    if args.images < BATCH or args.repeats < 1 or args.threads < 1:
        parser.error(f"need --images >= {BATCH}, --repeats >= 1, --threads >= 1")

    images, labels = data.load(args.dataset, args.images, seed=0)
    images = np.ascontiguousarray(images[:, None] if images.ndim == 3
                                  else images.transpose(0, 3, 1, 2), dtype=np.float32)
    model, our_epoch = ours(images, labels, np.random.default_rng(0))
    epochs = {"ours": our_epoch}
    if torch is not None:
        torch.set_num_threads(args.threads)
        epochs["torch"] = theirs(images, labels, model.state_dict(), np.random.default_rng(0))
    summary = measure(epochs, args.repeats)

    print(f"deconvnet convnet, {args.dataset} {images.shape[1:]}, {args.images} images per "
          f"epoch, batch {BATCH}, {args.threads} thread(s), {args.repeats} timed epochs each")
    for name, (median, spread) in summary.items():
        print(f"  {name:6s} {median:7.2f} s/epoch  ({1000 * median / args.images:.2f} ms/image,"
              f" spread {spread:.0f}%)")
    if "torch" in summary:
        ratio = summary["ours"][0] / summary["torch"][0]
        verdict = "within" if ratio <= TARGET else "above"
        print(f"  ratio ours / torch: {ratio:.2f}x ({verdict} the target {TARGET}x)")
    else:
        print("  (torch is not installed: no comparison)")


if __name__ == "__main__":
    tune_process()  # the entry points' process settings: minimal/kernels/process.py
    main()
