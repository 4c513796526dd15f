"""Speed of a DRAW training iteration, ours against the same model in PyTorch CPU.

    python benchmarks/bench_draw.py                     # attention, 1 thread, 9 x 3 iterations
    python benchmarks/bench_draw.py --threads 2 --repeats 15 --no-attention

The model of the issue: batch 64, T 10 glimpses, read and write N 5, LSTM 256 (encoder and
decoder), z 10, 28x28 binarised digits; one iteration = forward over the T steps, summed BCE +
the T KL terms, backward, gradient clipping at norm 5, an Adam step. The PyTorch model is built
from our weights and given the same batch and noise, and its loss is checked against ours first
(so the two are the same model, not just the same sizes).

Protocol: benchmarks/interleave.py (warm-up, then timed blocks of --block iterations with ours
and PyTorch alternating, who goes first rotating), medians, spreads (interquartile range over
the median) and the ratio of medians ours / PyTorch from the same run. PyTorch runs at the
same thread count as OpenBLAS. On a shared machine the absolute times move with the others'
load; the ratio, measured in one run, is the number to read.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")  # before numpy is imported
# OpenBLAS reads its thread count once, when NumPy is imported: set it from --threads (default 1)
os.environ["OPENBLAS_NUM_THREADS"] = (sys.argv[sys.argv.index("--threads") + 1]
                                      if "--threads" in sys.argv else "1")

import argparse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # interleave.py

import interleave
import numpy as np

from minimal import optim
from minimal.demos import draw
from minimal.kernels.process import tune_process

try:
    import torch
except ImportError:  # the engine never needs torch; the comparison is skipped
    torch = None


def ours(config: draw.Config, attention: bool, x: np.ndarray, noise: np.ndarray):
    model = draw.Draw(1, 28, 28, config, attention, np.random.default_rng(0))
    adam = optim.Adam(model.parameters(), lr=config.lr, betas=(config.beta1, 0.999))

    def step() -> float:
        loss = draw.losses(model, x, noise, binary=True)[0]
        adam.zero_grad()
        loss.backward()
        optim.clip_grad_norm(adam.params, config.clip)
        adam.step()
        return float(loss.data)

    return model, step


def torch_filterbank(centre, delta, log_var, n: int, size: int):
    offsets = torch.arange(1, n + 1, dtype=centre.dtype) - n / 2 - 0.5
    mu = centre + delta * offsets  # (B, n)
    pixels = torch.arange(1, size + 1, dtype=centre.dtype)
    distance = pixels - mu[..., None]
    return torch.softmax(-distance ** 2 / (2 * log_var.exp())[..., None], dim=-1)


def torch_window(params, height: int, width: int, n: int):
    gxt, gyt, log_var, log_delta, log_gamma = params.split(1, dim=-1)
    gx, gy = (width + 1) / 2 * (gxt + 1), (height + 1) / 2 * (gyt + 1)
    delta = (max(height, width) - 1) / (n - 1) * log_delta.exp()
    return (torch_filterbank(gx, delta, log_var, n, width),
            torch_filterbank(gy, delta, log_var, n, height), log_gamma.exp())


class TorchDraw(torch.nn.Module if torch else object):
    """The same model as draw.Draw, for the timing, loaded with draw.Draw's weights."""

    def __init__(self, model: draw.Draw):
        super().__init__()
        nn = torch.nn
        self.shape, self.attention = model.shape, model.attention
        self.read_n, self.write_n, self.canvas_start = model.read_n, model.write_n, \
            model.canvas_start
        hidden, z = model.decoder.hidden_size, model.mu.weight.shape[0]
        self.encoder = nn.LSTMCell(model.encoder.input_size, hidden)
        self.mu, self.log_sigma = nn.Linear(hidden, z), nn.Linear(hidden, z)
        self.decoder = nn.LSTMCell(z, hidden)
        self.write_layer = nn.Linear(hidden, model.write_layer.weight.shape[0])
        if self.attention:
            self.read_window, self.write_window = nn.Linear(hidden, 5), nn.Linear(hidden, 5)
        self.load_state_dict({k: torch.from_numpy(v.copy())
                              for k, v in model.state_dict().items()})

    def forward(self, x, noise):
        batch = x.shape[0]
        channels, height, width = self.shape
        h_dec = x.new_zeros(batch, self.decoder.hidden_size)
        enc, dec = (h_dec, h_dec), (h_dec, h_dec)
        canvas = torch.full_like(x, self.canvas_start)
        kl = 0
        for eps in noise:
            both = torch.cat([x, x - torch.sigmoid(canvas)], dim=1)
            if self.attention:
                fx, fy, gamma = torch_window(self.read_window(h_dec), height, width,
                                             self.read_n)
                r = (fy[:, None] @ both @ fx[:, None].transpose(-1, -2)).reshape(batch, -1)
                r = r * gamma
            else:
                r = both.reshape(batch, -1)
            enc = self.encoder(torch.cat([r, h_dec], dim=-1), enc)
            mu, log_sigma = self.mu(enc[0]), self.log_sigma(enc[0])
            dec = self.decoder(mu + log_sigma.exp() * eps, dec)
            h_dec = dec[0]
            w = self.write_layer(h_dec)
            if self.attention:
                fx, fy, gamma = torch_window(self.write_window(h_dec), height, width,
                                             self.write_n)
                patch = w.reshape(batch, channels, self.write_n, self.write_n)
                w = (fy[:, None].transpose(-1, -2) @ patch @ fx[:, None]) / gamma[..., None,
                                                                                    None]
            canvas = canvas + w.reshape(x.shape)
            kl = kl + 0.5 * (mu ** 2 + (2 * log_sigma).exp() - 2 * log_sigma - 1).sum()
        bce = torch.nn.functional.binary_cross_entropy_with_logits(canvas, x, reduction="sum")
        return (bce + kl) / batch


def theirs(model: draw.Draw, config: draw.Config, x: np.ndarray, noise: np.ndarray):
    net = TorchDraw(model)
    adam = torch.optim.Adam(net.parameters(), lr=config.lr, betas=(config.beta1, 0.999))
    tx, tnoise = torch.from_numpy(x), torch.from_numpy(noise)

    def step() -> float:
        loss = net(tx, tnoise)
        adam.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), config.clip)
        adam.step()
        return loss.item()

    return net, step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=9, help="timed blocks of each")
    parser.add_argument("--block", type=int, default=3, help="iterations per timed block")
    parser.add_argument("--threads", type=int, default=1, help="BLAS / torch threads")
    parser.add_argument("--no-attention", action="store_true", help="the plain model instead")
    args = parser.parse_args()
    attention = not args.no_attention
    config = draw.Config(steps=10, read_n=5, write_n=5, hidden=256, z_size=10, batch_size=64)
    rng = np.random.default_rng(0)
    x = (draw.data.digits(64, 0)[0] > 0.5).astype(np.float32)[:, None]
    noise = rng.standard_normal((config.steps, 64, config.z_size)).astype(np.float32)
    model, our_step = ours(config, attention, x, noise)
    steps = {"ours": our_step}
    if torch is not None:
        torch.set_num_threads(args.threads)
        _, their_step = theirs(model, config, x, noise)  # built before our first update
        ours_loss, theirs_loss = our_step(), their_step()
        print(f"same model: first loss ours {ours_loss:.4f}, PyTorch {theirs_loss:.4f}")
        assert abs(ours_loss - theirs_loss) < 1e-3 * abs(ours_loss), "the models differ"
        steps["torch"] = their_step
    else:
        print("PyTorch is not installed: timing ours alone")
    times = interleave.interleaved(steps, args.repeats, args.block)
    kind = "attention" if attention else "no attention"
    print(f"DRAW ({kind}), batch 64, T 10, N 5, LSTM 256, 28x28, {args.threads} thread(s), "
          f"{args.repeats} x {args.block} iterations each (s / 100 it = 10 x ms / it)")
    interleave.report(times, 1.5)


if __name__ == "__main__":
    tune_process()  # the entry points' process settings: minimal/kernels/process.py
    main()
