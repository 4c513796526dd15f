"""Which road a transposed convolution takes: one product + col2im, or a product per tap.

    python benchmarks/bench_conv_transpose.py             # every shape below, 2 threads
    python benchmarks/bench_conv_transpose.py --threads 1 --repeats 15

minimal/conv.py computes a transposed convolution (also every conv2d's input gradient) from O
channels to C >= 16 channels in one of two ways:
  col2im    one (N*h*w, O) x (O, kh*kw*C) product, then one strided add per kernel tap whose
            inner loop moves C numbers (the taps of a pixel lie side by side);
  taps      kh*kw products (N*h*w, O) x (O, C), one per tap, each added as whole image rows
            into its stride phase, the phases woven into the output at the end.
It takes `taps` when O <= conv._TAP_INPUTS (64) and N*h*w > conv._TAP_MIN_PIXELS (256). This
times both on the shapes of the demos and around them (N images, O -> C channels, h x w in,
k x k kernel, stride s, padding k // 2 and the output s times the input), alternating the two,
and prints the medians and the ratio taps / col2im: the rule should pick the faster one
wherever the ratio is far from 1.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")  # before numpy is imported
if "--threads" in sys.argv:  # OpenBLAS reads its thread count once, when NumPy is imported
    os.environ["OPENBLAS_NUM_THREADS"] = sys.argv[sys.argv.index("--threads") + 1]

import argparse
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from minimal import conv
from minimal.kernels.process import tune_process

SHAPES = [  # N, O, C, h (= w), k, s
    (50, 64, 32, 16, 5, 1),  # the deconvnet's conv2 input gradient
    (50, 64, 16, 16, 5, 1), (50, 32, 32, 32, 5, 1), (32, 32, 16, 32, 5, 1), (8, 64, 32, 64, 5, 1),
    (64, 64, 24, 16, 3, 1), (64, 64, 32, 16, 3, 1), (16, 64, 32, 32, 3, 1), (32, 32, 64, 32, 3, 1),
    (64, 64, 64, 16, 3, 1), (64, 64, 128, 16, 3, 1), (64, 64, 256, 8, 3, 1),
    (50, 64, 48, 16, 5, 1), (64, 96, 32, 16, 3, 1), (64, 128, 32, 16, 3, 1),
    (64, 128, 64, 16, 5, 1), (64, 256, 32, 8, 3, 1),
    (4, 64, 32, 4, 5, 2), (4, 64, 16, 8, 5, 2), (4, 32, 16, 8, 5, 2),  # deepcolor, quick nets
    (4, 64, 32, 32, 5, 2), (4, 256, 128, 8, 5, 2),  # deepcolor, full nets at 128 px
    (100, 64, 32, 7, 5, 2),  # the VAE's conv2 input gradient
    (64, 64, 32, 8, 5, 2), (16, 64, 32, 16, 5, 2), (64, 32, 16, 16, 4, 2),
    (64, 128, 64, 8, 5, 2), (64, 256, 128, 4, 5, 2),  # the DCGAN's middle layers
]


def median_ms(step, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def compare(shape, repeats: int, rng: np.random.Generator) -> tuple[float, float]:
    n, o, c, h, k, s = shape
    pad, stride = (k // 2, k // 2), (s, s)
    size = (h - 1) * s - 2 * pad[0] + k
    size += s * h - size if s > 1 else 0  # output padding to s times the input
    y = np.ascontiguousarray(rng.standard_normal((n, h, h, o), dtype=np.float32))
    y = y.transpose(0, 3, 1, 2)  # channels-last in memory, as every conv output is
    weight = rng.standard_normal((o, c, k, k), dtype=np.float32)
    matrix = conv._weight_matrix(weight)
    # the (_TAP_INPUTS, _TAP_MIN_PIXELS) that force each road
    roads = {"col2im": (0, 1 << 62), "taps": (1 << 30, -1)}
    times = {name: [] for name in roads}
    saved = conv._TAP_INPUTS, conv._TAP_MIN_PIXELS
    try:
        for turn in range(4):  # alternate, so both see the same machine
            for name in (roads if turn % 2 == 0 else reversed(list(roads))):
                conv._TAP_INPUTS, conv._TAP_MIN_PIXELS = roads[name]

                def step():
                    conv._conv_transpose_forward(y, weight, None, stride, pad, (size, size),
                                                 matrix)

                step()  # warm-up
                times[name].append(median_ms(step, repeats))
    finally:
        conv._TAP_INPUTS, conv._TAP_MIN_PIXELS = saved
    return min(times["col2im"]), min(times["taps"])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed calls per block (>= 1)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="OpenBLAS threads (default: one per core)")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.threads < 1:
        parser.error("need --repeats >= 1 and --threads >= 1")
    rng = np.random.default_rng(0)
    print(f"transposed conv, {args.threads} thread(s), ms (best of 2 medians of "
          f"{args.repeats}); the rule takes taps when O <= {conv._TAP_INPUTS} and N*h*w > "
          f"{conv._TAP_MIN_PIXELS}")
    print("     N    O    C    h  k  s    col2im     taps  taps/col2im  rule")
    for shape in SHAPES:
        col2im, taps = compare(shape, args.repeats, rng)
        pixels = shape[0] * shape[3] ** 2
        rule = "taps" if shape[1] <= conv._TAP_INPUTS and pixels > conv._TAP_MIN_PIXELS \
            else "col2im"
        print("  {:4d} {:4d} {:4d} {:4d} {:2d} {:2d}".format(*shape)
              + f"  {col2im:8.2f} {taps:8.2f}  {taps / col2im:11.2f}  {rule}")


if __name__ == "__main__":
    tune_process()  # the entry points' process settings: minimal/kernels/process.py
    main()
