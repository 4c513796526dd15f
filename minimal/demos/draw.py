"""DRAW: a recurrent VAE that draws an image over T steps, with and without attention.

Follows the posts on DRAW (Gregor et al. 2015, "DRAW: A Recurrent Neural Network For Image
Generation") and on DRAW for colour images. A VAE encodes a whole image into one code and
decodes it in one go. DRAW instead builds the image on a canvas over T steps: at each step an
encoder LSTM looks at the image and at what is still missing, sends a few numbers z_t through
the VAE bottleneck, and a decoder LSTM adds something to the canvas. With attention, each step
reads only an N x N glimpse of the image and writes only an N x N patch, placed, scaled and
blurred by five numbers the decoder chooses: the model learns where to look and where to draw.

Key equations (per step t = 1..T; x the image, c the canvas, sigma the logistic sigmoid):

    x_hat = x - sigma(c_{t-1})                          the error image
    r_t   = read(x, x_hat, h_dec_{t-1})
    h_enc = LSTM_enc(h_enc, [r_t, h_dec_{t-1}])
    z_t   = mu(h_enc) + exp(log_sigma(h_enc)) * eps_t   eps_t ~ N(0, I), fresh at every step
    h_dec = LSTM_dec(h_dec, z_t)
    c_t   = c_{t-1} + write(h_dec)                      output: sigma(c_T)
    loss  = -log p(x | c_T) + sum_t KL(N(mu_t, sigma_t^2) || N(0, I))
          KL_t = 1/2 sum_j (mu_tj^2 + sigma_tj^2 - log sigma_tj^2 - 1)

  without attention: read = [x, x_hat] (whole images), write = linear(h_dec) (a whole image).
  with attention: (g~X, g~Y, log sigma^2, log delta~, log gamma) = linear(h_dec), then
    gX = (W + 1)/2 (g~X + 1),  gY = (H + 1)/2 (g~Y + 1),  delta = (max(H, W) - 1)/(N - 1) delta~
    filter centres  mu_X,i = gX + (i - N/2 - 0.5) delta,  mu_Y,j = gY + (j - N/2 - 0.5) delta
    Fx[i, a] = exp(-(a - mu_X,i)^2 / (2 sigma^2)) / Z_i   (rows sum to one; Fy likewise)
    read  = gamma [Fy x Fx^T, Fy x_hat Fx^T]              two N x N patches
    write = (1 / gamma) Fy^T w Fx,  w = linear(h_dec) an N x N patch

Loss: the summed binary cross-entropy of sigma(c_T) against binarised digits (nats per image),
or with --color true the summed squared error (L2) of each colour image, plus the T KL terms.

Run:  python -m minimal.demos.draw [--quick] [--seed 0] [--data MNIST_FOLDER]
      python -m minimal.demos.draw --color true --dataset faces --out-dir outputs/draw_color
Both models, the plain recurrent VAE and the attention model, are trained with the same
settings on the same data and compared at the same T.

Figures (in out_dir; attention model unless said):
    canvas_test.png / .gif     sigma(canvas) after each step for test images (rows), the target
                               last; the write window drawn as a green box on every step
    samples.png / .gif         the same for images drawn from the prior (z_t ~ N(0, I))
    attention_vs_plain.png     the two models side by side on the same test images, same T
    read_write_patches.png     for one image: the read window on the image, the two read
                               patches (image and error image), the written patch, the canvas
    loss_curves.png            reconstruction and KL terms while training, test loss points,
                               and the share of the test KL spent at each step

Scale: the paper's MNIST model has T 64, read 2x2, write 5x5, z 100 and trains for days on a
GPU. The defaults here keep the post's T 10, LSTM 256, z 10, batch 64, Adam 1e-3 with beta1
0.5 and gradient norm clipped at 5, on 28x28 synthetic digits, with 12x12 read and write
windows and offset initial window biases (see the departures and the T sweep below).
The quick preset: LSTM 64, 400 iterations of batch 64, Adam 3e-3.

Departures from the original code (the first five are bugs fixed, each with a test):
  - the colour version built Fy from the x centres (gX); here Fy comes from gY;
  - delta = (max(H, W) - 1)/(N - 1) * exp(log delta~): one version divided by the exponential;
  - eps_t is drawn fresh at every step (one version drew one sample and reused it T times);
  - the filter's exponent is the squared distance over 2 sigma^2, not the squared ratio;
  - the KL's constant is -1/2 per latent unit and step (the -T/2 of one version is right only
    when T equals the latent size);
  - the rows of the filterbanks are normalised as a softmax: the same division as the paper's,
    but exact when the variance is tiny or the window far outside the image (no 0/0, no eps);
  - the canvas starts at --canvas-start (-3, nearly black after the sigmoid) rather than 0,
    which is grey after the sigmoid, so the first writes need not first erase a grey sheet;
  - the windows are 12x12 (--read-n, --write-n; the post's are 5x5). T steps of an N x N write
    lay down T N^2 patch values: at T 10 a 5x5 write has 250 for a 784-pixel image, so the
    model widens its window over the whole digit (filters 5-7 pixels apart) and draws blurred
    strokes, and a 5x5 read sees the digit as coarsely. Attention beats no attention only with
    more room: more glimpses (T 32 or 64, as in the paper) or larger windows (12x12 at T 10,
    which costs no more time). With 12x12 windows at T 10 the windows start on the middle of
    the digit and widen to cover it, so the digit is drawn coarse to fine rather than stroke
    by stroke; strokes under small moving windows appear with 5x5 windows at T 32;
  - the windows' initial biases are offset: --write-log-gamma -3 (writes 20 times stronger),
    --read-log-gamma 1 and --log-delta -0.7 (windows half the image's width); 0, 0, 0 is the
    post's initialisation. A write spreads each patch value over a few pixels with weights
    summing to one, so at the post's initialisation the decoder cannot yet use what the encoder
    sends, and for the first ~1000 full-size iterations every image becomes the same blob;
  - one window for R, G and B: the filterbanks broadcast over the channel axis, the same
    products as the colour post's batch stretched three-fold with the filters repeated.

Results (synthetic binarised digits, test negative ELBO in nats per image, one sample of z per
image; advantage = no attention - attention; CPU seconds at one BLAS thread):
    preset, seed                  attention  no attention  advantage  untrained     CPU
    quick, 0                      103.4      118.4         15.1       464.7 / 411.5  ~50 s
    quick, 1                      105.7      119.5         13.8
    quick, 2                      104.4      120.2         15.8
    full (3000 iterations), 0     73.1       79.1          6.0        383.4 / 398.1  ~17 min
    full (3000 iterations), 1     72.9       80.2          7.3        356.0 / 392.6  ~18 min
    colour quick (faces, L2+KL)   71.7       79.9          8.2        758 / 738      ~2 min
The full preset with the post's 5x5 windows and initialisation (--read-n 5 --write-n 5
--write-log-gamma 0 --read-log-gamma 0 --log-delta 0) gives 108.9 with attention and 79.1
without.
T sweep and window sizes (the quick preset's model and 400 iterations, so a larger T costs more
CPU; attention / no attention, nats; the no-attention model is the same at the same T, and its
numbers move by a few nats between rows because the batches drawn after the attention model's
weights differ):
    T   read  write  seed 0          seed 1          seed 2          CPU per run
    10  5     5      120.0 / 121.1   120.8 / 118.5   131.3 / 120.7   ~45 s
    20  5     5      113.4 / 117.0   117.9 / 116.6                   ~90 s
    32  5     5      111.2 / 121.2   118.9 / 118.0                   ~145 s
    64  5     5      116.4 / 125.5   117.4 / 124.6                   ~280 s
    10  5     8      115.2 / 121.2   108.3 / 120.3   113.9 / 121.3   ~45 s
    10  5     12     111.0 / 122.0   105.7 / 118.4   107.2 / 121.9   ~45 s
    20  5     12     107.1 / 118.0   104.8 / 115.3                   ~95 s
    32  5     12     103.6 / 119.2                                   ~140 s
    10  12    12     103.4 / 118.4   105.7 / 119.5   104.4 / 120.2   ~50 s (the quick preset)
With 5x5 windows attention gains from more glimpses (T 10 -> 32: 120-131 -> 111-119 nats)
while the plain model does not (115-125 at every T); it wins on both seeds at T 64 (by 7 and
9 nats) and on one of two at T 20 and T 32. A larger write gains at every T.
Real handwriting: scikit-learn's 1797 digits (8x8, scaled to 20x20 in a 28x28 frame as MNIST's
are; benchmarks/sklearn_digits_to_idx.py writes them as IDX files for --data), 1497 to train
and 300 to test, quick preset: 71.4 / 73.6, 69.1 / 74.9, 69.1 / 75.0 (seeds 0, 1, 2); with
5x5 windows attention loses on all three (85.6 / 75.7, 80.7 / 75.4, 90.7 / 75.5).
The paper reports <= 80.97 nats on MNIST with T 64 and z 100 after about two days on a GPU.
The settings tried with the post's 5x5 windows, and the speed against PyTorch, are in
benchmarks/README.md.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np

from minimal import data, nn, optim
from minimal import functional as F
from minimal.app import cli, training, viz
from minimal.autograd import Tensor, concatenate, fast_path, no_grad, split
from minimal.errors import ConfigError, DataError

matplotlib.use("Agg")  # figures go to files; no display needed


@dataclass
class Config:
    seed: int = 0  # seed for the weights, the batches and every noise sample
    color: bool = False  # colour DRAW on faces or shapes with an L2 loss (else binarised digits)
    dataset: str = "faces"  # the colour data set (with --color): faces or shapes
    image_size: int = 32  # side in pixels of the faces (shapes are 32, digits 28)
    steps: int = 10  # T, the number of glimpses (the paper's MNIST model uses 64)
    read_n: int = 12  # N of the read window: an N x N grid of Gaussian filters (post: 5)
    write_n: int = 12  # N of the write window (post: 5, which wants more steps: see T sweep)
    hidden: int = 256  # units of the encoder LSTM and of the decoder LSTM
    z_size: int = 10  # latent units drawn at each step
    canvas_start: float = -3.0  # the canvas before the first write (0 starts grey after sigmoid)
    write_log_gamma: float = -3.0  # offset on the write window's first log gamma (writes 20x)
    read_log_gamma: float = 1.0  # offset on the read window's first log gamma (reads times e)
    log_delta: float = -0.7  # offset on both windows' first log stride (halves the stride)
    iterations: int = 3000  # training iterations (batches) of each of the two models
    batch_size: int = 64  # images per batch
    lr: float = 1e-3  # Adam learning rate
    beta1: float = 0.5  # Adam beta1
    clip: float = 5.0  # gradients are scaled to at most this joint norm
    train_size: int = 20000  # training images (synthetic, or the first ones of --data)
    test_size: int = 1000  # held-out images for the test loss
    eval_every: int = 500  # iterations between test-loss points on the curves
    save_every: int = 250  # iterations between checkpoints
    examples: int = 8  # images in the canvas figures and GIFs
    data: str = ""  # MNIST IDX folder (or CIFAR-10 / image folder with --color); empty: synthetic
    resume: bool = False  # continue from out_dir/checkpoint.npz (same settings; more iterations ok)
    out_dir: str = "outputs/draw"  # where figures, run.json and the checkpoint are written

    def __post_init__(self):
        cli.validate(self, counts=("image_size", "steps", "read_n", "write_n", "hidden",
                                   "z_size", "iterations", "batch_size", "train_size",
                                   "test_size", "eval_every", "save_every", "examples"),
                     positive=("lr", "clip"), fractions=("beta1",),
                     finite=("canvas_start", "write_log_gamma", "read_log_gamma", "log_delta"),
                     choices={"dataset": ("faces", "shapes")})
        for name in ("read_n", "write_n"):
            if getattr(self, name) < 2:
                raise ConfigError(f"{name} (--{name.replace('_', '-')}) must be at least 2 "
                                  f"(the stride is spread over N - 1 gaps), got "
                                  f"{getattr(self, name)}")
        if self.beta1 >= 1:
            raise ConfigError(f"beta1 (--beta1) must be below 1, got {self.beta1}")


# ~50 s of CPU at one thread: two small models (LSTM 64) of 10 steps, 400 batches each, and
# a larger learning rate
QUICK = {"hidden": 64, "iterations": 400, "train_size": 5000, "test_size": 500,
         "eval_every": 100, "save_every": 100, "lr": 3e-3}

# measured with the quick preset, seeds 0, 1, 2: attention 103.4, 105.7, 104.4 nats, no
# attention 118.4, 119.5, 120.2, so attention ahead by 15.1, 13.8, 15.8 (untrained, seed 0:
# 464.7 and 411.5)
TARGETS = {
    "test_nll_attention": ("<=", 112.0),
    "test_nll_plain": ("<=", 132.0),
    "attention_advantage_nats": (">=", 8.0),  # no attention - attention, same T and budget
}


# ===== the attention: a grid of Gaussian filters ===========================================

def filterbank(centre: Tensor, delta: Tensor, log_var: Tensor, n: int, size: int) -> Tensor:
    """F[b, i, a] = exp(-(a - mu_i)^2 / (2 sigma^2)) / Z, one row per filter, for one axis.

    centre, delta, log_var: (B, 1). Pixels a = 1..size, filter centres
    mu_i = centre + (i - n/2 - 0.5) delta for i = 1..n (the paper's 1-based indices). Each row
    is normalised to sum to one; written as a softmax over a it is the same division, and it
    stays exact when the variance is tiny and every exponential underflows.
    """
    offsets = np.arange(1, n + 1, dtype=centre.dtype) - n / 2 - 0.5  # (n,)
    mu = centre + delta * Tensor(offsets)  # (B, n)
    pixels = Tensor(np.arange(1, size + 1, dtype=centre.dtype))  # (size,)
    distance = pixels - mu.reshape(mu.shape + (1,))  # (B, n, size)
    # the squared *distance* over 2 sigma^2 (one public version squared the ratio instead)
    exponent = -(distance * distance) / (2 * log_var.exp()).reshape(log_var.shape + (1,))
    return F.softmax(exponent, axis=-1)


@fast_path("draw_window_filterbank")  # minimal/kernels/attention.py: one node, NumPy backward
def window_filterbank(params: Tensor, height: int, width: int, n: int, axis: str) -> Tensor:
    """The window's filterbank along `axis`: Fx (B, N, W) for "x", Fy (B, N, H) for "y".

    params (B, 5) are the five numbers linear(h_dec) gives, as the paper reads them: g~x, g~y
    in about [-1, 1] place the grid's centre, gX = (W + 1)/2 (g~x + 1), gY likewise; the stride
    delta = (max(H, W) - 1)/(N - 1) exp(log delta~) (multiplied: dividing by the exponential,
    as one public version did, turns a bigger output into a smaller window); the variance
    sigma^2 = exp(log sigma^2). Fy comes from the y centre (the post's colour version built it
    from gX).
    """
    gx_tilde, gy_tilde, log_var, log_delta, _ = split(params, 5, axis=-1)  # (B, 1) each
    size, g_tilde = (width, gx_tilde) if axis == "x" else (height, gy_tilde)
    centre = (size + 1) / 2 * (g_tilde + 1)
    delta = (max(height, width) - 1) / (n - 1) * log_delta.exp()
    return filterbank(centre, delta, log_var, n, size)


def window(params: Tensor, height: int, width: int, n: int) -> dict[str, Tensor]:
    """The attention window from linear(h_dec)'s five numbers (B, 5): the filterbanks fx
    (B, N, W) and fy (B, N, H) (`window_filterbank`), the intensity gamma = exp(log gamma)
    (B, 1), and gx, gy, delta (B, 1) as values, for drawing the window (no gradient)."""
    p = params.data
    return {"fx": window_filterbank(params, height, width, n, "x"),
            "fy": window_filterbank(params, height, width, n, "y"),
            "gamma": params[:, 4:5].exp(),
            "gx": Tensor((width + 1) / 2 * (p[:, 0:1] + 1)),
            "gy": Tensor((height + 1) / 2 * (p[:, 1:2] + 1)),
            "delta": Tensor((max(height, width) - 1) / (n - 1) * np.exp(p[:, 3:4]))}


@fast_path("draw_read")  # minimal/kernels/attention.py: one node, NumPy backward
def read_patches(images: Tensor, fx: Tensor, fy: Tensor) -> Tensor:
    """Fy x Fx^T for every image and channel: (B, C, H, W) -> (B, C, N, N).

    One window for all channels: the filterbanks (B, 1, N, .) broadcast over the channel axis,
    the same products as the post's batch stretched three-fold with the filters repeated.
    """
    return _per_channel(fy) @ images @ _per_channel(fx).swapaxes(-1, -2)


@fast_path("draw_write")  # minimal/kernels/attention.py: one node, NumPy backward
def write_patches(patches: Tensor, fx: Tensor, fy: Tensor) -> Tensor:
    """Fy^T w Fx: (B, C, N, N) -> (B, C, H, W), the adjoint of read_patches."""
    return _per_channel(fy).swapaxes(-1, -2) @ patches @ _per_channel(fx)


def _per_channel(bank: Tensor) -> Tensor:
    """(B, N, size) -> (B, 1, N, size): one filterbank broadcast over the channels."""
    return bank.reshape((bank.shape[0], 1) + bank.shape[1:])


def box(win: dict[str, Tensor], n: int) -> np.ndarray:
    """The window's extent as (top, left, bottom, right) in 0-based pixels, (B, 4): the outer
    filter centres, gX +- (N - 1)/2 delta."""
    half = (n - 1) / 2 * win["delta"].data[:, 0]
    gx, gy = win["gx"].data[:, 0] - 1, win["gy"].data[:, 0] - 1  # 1-based -> 0-based
    return np.stack([gy - half, gx - half, gy + half, gx + half], axis=1)


# ===== the model ===========================================================================

class Draw(nn.Module):
    """Encoder LSTM, decoder LSTM, a canvas, and read/write with or without attention.

    Per step t (x the image, c the canvas, h_dec the decoder's last output):
        x_hat = x - sigmoid(c_prev)                    the error image
        r     = read(x, x_hat, h_dec_prev)             whole images, or two N x N glimpses
        h_enc = LSTM_enc([r, h_dec_prev])
        z     = mu(h_enc) + sigma(h_enc) * eps_t       fresh eps at every step
        h_dec = LSTM_dec(z)
        c     = c_prev + write(h_dec)                  a whole image, or an N x N patch
    """

    def __init__(self, channels: int, height: int, width: int, config: Config,
                 attention: bool, rng: np.random.Generator):
        super().__init__()
        self.shape = (channels, height, width)
        self.attention = attention
        self.read_n, self.write_n = config.read_n, config.write_n
        self.canvas_start = config.canvas_start
        pixels = channels * height * width
        read_size = 2 * channels * config.read_n ** 2 if attention else 2 * pixels
        write_size = channels * config.write_n ** 2 if attention else pixels
        self.encoder = nn.LSTMCell(read_size + config.hidden, config.hidden, rng=rng)
        self.mu = nn.Linear(config.hidden, config.z_size, rng=rng)
        self.log_sigma = nn.Linear(config.hidden, config.z_size, rng=rng)
        self.decoder = nn.LSTMCell(config.z_size, config.hidden, rng=rng)
        self.write_layer = nn.Linear(config.hidden, write_size, rng=rng)
        if attention:
            self.read_window = nn.Linear(config.hidden, 5, rng=rng)
            self.write_window = nn.Linear(config.hidden, 5, rng=rng)
            # offsets on the initial biases of (g~x, g~y, log sigma^2, log delta~, log gamma):
            # a write spreads each patch value over a few pixels with weights summing to one,
            # so at the post's initialisation it moves the canvas by a fraction of a unit;
            # 1/gamma scales it (and its gradient) up, and a smaller stride starts the windows
            # inside the image instead of over all of it
            self.read_window.bias.data[3:] += np.float32([config.log_delta,
                                                          config.read_log_gamma])
            self.write_window.bias.data[3:] += np.float32([config.log_delta,
                                                           config.write_log_gamma])

    def read(self, x: Tensor, x_hat: Tensor, h_dec: Tensor, record: dict | None = None
             ) -> Tensor:
        batch = x.shape[0]
        both = concatenate([x, x_hat], axis=1)  # (B, 2C, H, W)
        if not self.attention:
            return both.reshape(batch, -1)
        _, height, width = self.shape
        win = window(self.read_window(h_dec), height, width, self.read_n)
        patches = read_patches(both, win["fx"], win["fy"])  # (B, 2C, N, N)
        if record is not None:
            record["read_box"].append(box(win, self.read_n))
            record["read_patch"].append(patches.data * win["gamma"].data[:, :, None, None])
        return patches.reshape(batch, -1) * win["gamma"]

    def write(self, h_dec: Tensor, record: dict | None = None) -> Tensor:
        batch = h_dec.shape[0]
        channels, height, width = self.shape
        out = self.write_layer(h_dec)
        if not self.attention:
            return out.reshape(batch, channels, height, width)
        win = window(self.write_window(h_dec), height, width, self.write_n)
        patch = out.reshape(batch, channels, self.write_n, self.write_n)
        if record is not None:
            record["write_box"].append(box(win, self.write_n))
            record["write_patch"].append(patch.data / win["gamma"].data[:, :, None, None])
        return write_patches(patch, win["fx"], win["fy"]) / win["gamma"].reshape(batch, 1, 1, 1)

    def initial(self, batch: int, dtype) -> tuple[Tensor, Tensor, Tensor]:
        zeros = Tensor(np.zeros((batch, self.decoder.hidden_size), dtype))
        canvas = Tensor(np.full((batch,) + self.shape, self.canvas_start, dtype))
        return zeros, zeros, canvas

    def forward(self, x: Tensor, noise: Tensor, record: dict | None = None
                ) -> tuple[Tensor, list[Tensor]]:
        """x (B, C, H, W) in [0, 1], noise (T, B, z) -> final canvas (logits) and the T KL
        terms, each (B,). `record` (a dict of lists) collects what the figures show."""
        batch = x.shape[0]
        h_dec, zeros, canvas = self.initial(batch, x.dtype)
        enc_state, dec_state = (zeros, zeros), (zeros, zeros)
        kls = []
        for t in range(noise.shape[0]):
            x_hat = x - canvas.sigmoid()
            r = self.read(x, x_hat, h_dec, record)  # (B, read_size)
            enc_state = self.encoder(concatenate([r, h_dec], axis=-1), enc_state)
            h_enc = enc_state[0]
            mu, log_sigma = self.mu(h_enc), self.log_sigma(h_enc)  # (B, z)
            z = mu + log_sigma.exp() * noise[t]
            dec_state = self.decoder(z, dec_state)
            h_dec = dec_state[0]
            canvas = canvas + self.write(h_dec, record)
            # KL(N(mu, sigma^2) || N(0, 1)) = 1/2 sum_j (mu^2 + sigma^2 - 2 log sigma - 1): the
            # -1 once per latent unit and step (the -T/2 of one version is right only when T
            # equals the latent size)
            kls.append(0.5 * (mu * mu + (2 * log_sigma).exp() - 2 * log_sigma - 1).sum(axis=-1))
            if record is not None:
                record["canvas"].append(canvas.data.copy())
        return canvas, kls

    def generate(self, noise: np.ndarray, record: dict) -> np.ndarray:
        """Draw from the prior: z_t = noise[t] (T, B, z), decoder and writes only. Returns the
        final picture sigmoid(c_T); `record` collects canvases, write boxes and patches."""
        with no_grad():
            batch = noise.shape[1]
            _, zeros, canvas = self.initial(batch, noise.dtype)
            dec_state = (zeros, zeros)
            for t in range(noise.shape[0]):
                dec_state = self.decoder(Tensor(noise[t]), dec_state)
                canvas = canvas + self.write(dec_state[0], record)
                record["canvas"].append(canvas.data.copy())
        return canvas.sigmoid().data


def new_record() -> dict[str, list]:
    return {"canvas": [], "read_box": [], "write_box": [], "read_patch": [], "write_patch": []}


def losses(model: Draw, x: np.ndarray, noise: np.ndarray, binary: bool,
           record: dict | None = None) -> tuple[Tensor, Tensor, list[Tensor]]:
    """Per-image averages over the batch: (negative ELBO, reconstruction, [KL_1..KL_T]).

    Reconstruction: the summed binary cross-entropy of sigmoid(c_T) against the binarised
    image (nats), or for colour the summed squared error (L2) of sigmoid(c_T).
    """
    batch = x.shape[0]
    canvas, kls = model(Tensor(x), Tensor(noise), record)
    if binary:
        reconstruction = F.binary_cross_entropy_with_logits(canvas, x, reduction="sum")
    else:
        error = canvas.sigmoid() - Tensor(x)
        reconstruction = (error * error).sum()
    reconstruction = reconstruction / batch
    kl_steps = [kl.sum() / batch for kl in kls]
    total = reconstruction
    for kl in kl_steps:
        total = total + kl
    return total, reconstruction, kl_steps


# ===== data ================================================================================

def load_images(config: Config) -> tuple[np.ndarray, np.ndarray, bool]:
    """(train, test) as float32 (n, C, H, W), and whether they are binary (digits)."""
    path = config.data or None
    n = config.train_size + config.test_size
    try:
        if not config.color:
            train = data.load("digits", config.train_size, config.seed, path, split="train")[0]
            test = data.load("digits", config.test_size, config.seed, path, split="test")[0]
            # binarised digits, so the reconstruction term is a likelihood in nats
            return ((train > 0.5).astype(np.float32)[:, None],
                    (test > 0.5).astype(np.float32)[:, None], True)
        if config.dataset == "shapes":
            train = data.load("shapes", config.train_size, config.seed, path, split="train")[0]
            test = data.load("shapes", config.test_size, config.seed, path, split="test")[0]
        else:  # a folder of faces has no split: the last test_size images are held out
            images = data.load("faces", n, config.seed, path, size=config.image_size)
            train, test = images[:config.train_size], images[config.train_size:]
    except (OSError, ValueError) as error:
        if isinstance(error, DataError):
            raise
        raise DataError(f"--data {config.data}: {error}") from None
    if len(train) < config.batch_size or len(test) == 0:
        raise DataError(f"--data {config.data}: needs at least a batch ({config.batch_size}) "
                        f"of training images and one test image (the test images come after "
                        f"the training ones), found {len(train)} + {len(test)}")
    return (train.transpose(0, 3, 1, 2).astype(np.float32),
            test.transpose(0, 3, 1, 2).astype(np.float32), False)


# ===== training and evaluation =============================================================

def evaluate(model: Draw, images: np.ndarray, noise: np.ndarray, binary: bool,
             batch: int = 250) -> tuple[float, float, np.ndarray]:
    """Mean over images of (negative ELBO, reconstruction, KL per step (T,)), one sample of z
    per image from the fixed `noise` (T, n, z)."""
    total, recon, kl = 0.0, 0.0, np.zeros(noise.shape[0])
    with no_grad():
        for start in range(0, len(images), batch):
            x = images[start:start + batch]
            loss, reconstruction, kl_steps = losses(model, x, noise[:, start:start + batch],
                                                    binary)
            total += float(loss.data) * len(x)
            recon += float(reconstruction.data) * len(x)
            kl += np.array([float(k.data) for k in kl_steps]) * len(x)
    return total / len(images), recon / len(images), kl / len(images)


def train(name: str, model: Draw, adam: optim.Adam, images: np.ndarray, test: np.ndarray,
          test_noise: np.ndarray, binary: bool, config: Config, state: training.TrainingState,
          rng: np.random.Generator) -> None:
    """config.iterations Adam steps on random batches; curves in state.history[name + ...].

    Every batch and noise sample comes from `rng`, and checkpoints are written after whole
    iterations, so the counters say everything about where a resumed run is.
    """
    history = state.history
    start = state.counters.get(name, 0)
    progress = cli.Progress(config.iterations, label=f"{name} it", first=start)
    for it in range(start, config.iterations):
        x = images[rng.integers(0, len(images), config.batch_size)]
        noise = rng.standard_normal((config.steps, config.batch_size, config.z_size)
                                    ).astype(np.float32)
        loss, reconstruction, kl_steps = losses(model, x, noise, binary)
        kl = sum(float(k.data) for k in kl_steps)
        state.check_finite(f"{name} model, iteration {it + 1}", loss=loss,
                           reconstruction=reconstruction, kl=kl)
        adam.zero_grad()
        loss.backward()
        optim.clip_grad_norm(adam.params, config.clip)
        adam.step()
        history.setdefault(f"{name}_reconstruction", []).append(float(reconstruction.data))
        history.setdefault(f"{name}_kl", []).append(kl)
        if (it + 1) % config.eval_every == 0 or it + 1 == config.iterations:
            subset = slice(0, min(len(test), 500))
            nll = evaluate(model, test[subset], test_noise[:, subset], binary)[0]
            history.setdefault(f"{name}_test_at", []).append(it + 1)
            history.setdefault(f"{name}_test", []).append(nll)
        if (it + 1) % config.save_every == 0 or it + 1 == config.iterations:
            state.counters[name] = it + 1
            state.save()
        progress.update(it + 1, loss=float(loss.data))


def build(config: Config, shape: tuple[int, int, int]
          ) -> tuple[np.random.Generator, dict[str, Draw], dict[str, optim.Adam]]:
    """The run's generator, and both models and their optimisers, all from config.seed."""
    rng = np.random.default_rng(config.seed)
    models = {name: Draw(*shape, config, attention=name == "attention", rng=rng)
              for name in ("plain", "attention")}
    adams = {name: optim.Adam(model.parameters(), lr=config.lr, betas=(config.beta1, 0.999))
             for name, model in models.items()}
    return rng, models, adams


# With --color true the loss is a squared error, not a negative log-likelihood in nats.
COLOR_METRIC_NAMES = {"test_nll_attention": "test_loss_attention",
                      "test_nll_plain": "test_loss_plain",
                      "untrained_nll_attention": "untrained_loss_attention",
                      "untrained_nll_plain": "untrained_loss_plain",
                      "attention_advantage_nats": "attention_advantage_loss"}


def run(config: Config) -> dict[str, float]:
    began = time.perf_counter()
    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    train_images, test_images, binary = load_images(config)
    shape = train_images.shape[1:]
    rng, models, adams = build(config, shape)
    # fixed noise for the test loss and the figures, drawn before training from the same rng
    test_noise = rng.standard_normal((config.steps, len(test_images), config.z_size)
                                     ).astype(np.float32)
    sample_noise = rng.standard_normal((config.steps, config.examples, config.z_size)
                                       ).astype(np.float32)
    untrained = {name: evaluate(model, test_images, test_noise, binary)[0]
                 for name, model in models.items()}
    # a resumed run may train on for more iterations (both models continue from their counters)
    state = training.TrainingState("draw", config, models, adams, rng,
                                   may_differ=("eval_every", "save_every"),
                                   length=("iterations", "*"))
    if config.resume:
        state.resume()
    for name in ("plain", "attention"):
        train(name, models[name], adams[name], train_images, test_images, test_noise, binary,
              config, state, rng)

    results = {name: evaluate(model, test_images, test_noise, binary)
               for name, model in models.items()}
    write_figures(config, models, test_images, sample_noise, test_noise, binary, state.history,
                  results)
    kl_share = results["attention"][2] / results["attention"][2].sum()
    metrics = {"test_nll_attention": results["attention"][0],
               "test_nll_plain": results["plain"][0],
               "test_reconstruction_attention": results["attention"][1],
               "test_kl_attention": float(results["attention"][2].sum()),
               "untrained_nll_attention": untrained["attention"],
               "untrained_nll_plain": untrained["plain"],
               # positive when attention wins: the paper's claim at the same T and budget
               "attention_advantage_nats": results["plain"][0] - results["attention"][0]}
    if not binary:  # the colour loss is a squared error, not nats: name it a loss
        metrics = {COLOR_METRIC_NAMES.get(key, key): value for key, value in metrics.items()}
    metrics.update({f"kl_share_step_{t + 1}": float(share) for t, share in enumerate(kl_share)})
    metrics["seconds"] = time.perf_counter() - began
    return metrics


# ===== figures =============================================================================

def to_rgb(images: np.ndarray) -> np.ndarray:
    """(B, C, H, W) in [0, 1] -> (B, H, W, 3)."""
    images = images.transpose(0, 2, 3, 1)
    return np.repeat(images, 3, axis=3) if images.shape[3] == 1 else images


GREEN = (0.1, 0.85, 0.1)


def frames_with_boxes(record: dict, boxes: str = "write_box") -> np.ndarray:
    """(T, B, H, W, 3): sigmoid(canvas) at each step, with the window drawn in green."""
    frames = []
    for t, canvas in enumerate(record["canvas"]):
        picture = to_rgb(0.5 + 0.5 * np.tanh(0.5 * canvas))  # the sigmoid, no overflow
        if record[boxes]:
            picture = viz.draw_boxes(picture, record[boxes][t], colour=GREEN)
        frames.append(picture)
    return np.stack(frames)


def shown_steps(steps: int, most: int = 16) -> np.ndarray:
    return np.unique(np.linspace(0, steps - 1, min(steps, most)).round().astype(int))


def strip(frames: np.ndarray, targets: np.ndarray | None, steps: np.ndarray) -> np.ndarray:
    """Rows = images, columns = the chosen steps (then the target, if given)."""
    columns = [frames[t] for t in steps] + ([to_rgb(targets)] if targets is not None else [])
    tiles = np.stack(columns, axis=1)  # (B, columns, H, W, 3)
    return viz.image_grid(tiles.reshape((-1,) + tiles.shape[2:]), nrow=len(columns))


def write_figures(config: Config, models: dict[str, Draw], test_images: np.ndarray,
                  sample_noise: np.ndarray, test_noise: np.ndarray, binary: bool,
                  history: dict, results: dict) -> None:
    out = Path(config.out_dir)
    count = min(config.examples, len(test_images))
    x, noise = test_images[:count], test_noise[:, :count]
    scale = max(1, 96 // x.shape[-1])
    steps = shown_steps(config.steps)
    records = {}
    for name, model in models.items():
        records[name] = new_record()
        with no_grad():
            losses(model, x, noise, binary, records[name])
    frames = frames_with_boxes(records["attention"])
    viz.save_image(strip(frames, x, steps), out / "canvas_test.png", scale=scale)
    last = [viz.image_grid(frame, nrow=count) for frame in frames]
    viz.save_gif(last + [last[-1]] * 4, out / "canvas_test.gif", duration=0.3, scale=scale)

    sample_record = new_record()
    models["attention"].generate(sample_noise, sample_record)
    sample_frames = frames_with_boxes(sample_record)
    viz.save_image(strip(sample_frames, None, steps), out / "samples.png", scale=scale)
    last = [viz.image_grid(frame, nrow=len(frame)) for frame in sample_frames]
    viz.save_gif(last + [last[-1]] * 4, out / "samples.gif", duration=0.3, scale=scale)

    plot_side_by_side(records, x, steps, out / "attention_vs_plain.png", results, binary)
    plot_patches(records["attention"], x, steps, config, out / "read_write_patches.png")
    plot_losses(history, results, binary, out / "loss_curves.png")


def plot_side_by_side(records: dict, x: np.ndarray, steps: np.ndarray, path: Path,
                      results: dict, binary: bool) -> None:
    unit = "nats" if binary else "L2 + KL"
    columns = len(steps) + 1
    figure, axes = plt.subplots(1, 2, figsize=(12, 5.5 * len(x) / columns + 0.9))
    for axis, name in zip(axes, ("plain", "attention")):
        axis.imshow(strip(frames_with_boxes(records[name]), x, steps), interpolation="nearest")
        shown = ", ".join(str(t + 1) for t in steps)
        axis.set_title(f"{'no attention' if name == 'plain' else 'attention'}: test loss "
                       f"{results[name][0]:.1f} {unit}\nsteps {shown}, then the target",
                       fontsize=9)
        axis.axis("off")
    viz.save_figure(figure, path)


def plot_patches(record: dict, x: np.ndarray, steps: np.ndarray, config: Config,
                 path: Path) -> None:
    """For the first test image: the read window on the image, what it read (image and error
    image), what the write wrote, and the canvas with the write window."""
    image = to_rgb(x[:1])[0]
    channels = x.shape[1]
    rows = ["read window", "read: image", "read: error", "written patch", "canvas"]
    figure, axes = plt.subplots(len(rows), len(steps), figsize=(1.1 * len(steps) + 1, 6.2),
                                squeeze=False)
    for column, t in enumerate(steps):
        read = record["read_patch"][t][0]  # (2C, N, N)
        pictures = [
            viz.draw_boxes(image[None], record["read_box"][t][:1], colour=GREEN)[0],
            to_rgb(read[None, :channels])[0],
            to_rgb(read[None, channels:])[0],
            to_rgb(record["write_patch"][t][:1])[0],
            frames_with_boxes({"canvas": [record["canvas"][t][:1]],
                               "write_box": [record["write_box"][t][:1]]})[0, 0],
        ]
        for row, picture in enumerate(pictures):
            axis = axes[row, column]
            if row in (1, 2, 3):  # patch values are not in [0, 1]: stretch each one
                low, high = picture.min(), picture.max()
                picture = (picture - low) / (high - low + 1e-12)
            axis.imshow(np.clip(picture, 0, 1), interpolation="nearest")
            axis.set_xticks([])
            axis.set_yticks([])
            if column == 0:
                axis.set_ylabel(rows[row], fontsize=8)
            if row == 0:
                axis.set_title(f"t={t + 1}", fontsize=8)
    figure.suptitle(f"read {config.read_n}x{config.read_n}, write {config.write_n}x"
                    f"{config.write_n}: patches stretched to their own range", fontsize=9)
    viz.save_figure(figure, path)


def plot_losses(history: dict, results: dict, binary: bool, path: Path) -> None:
    unit = "nats per image" if binary else "per image"
    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    for index, name in enumerate(("plain", "attention")):
        label = "no attention" if name == "plain" else "attention"
        colour = f"C{index}"
        recon = np.asarray(history.get(f"{name}_reconstruction", []))
        kl = np.asarray(history.get(f"{name}_kl", []))
        window = max(1, len(recon) // 50)
        axes[0].plot(viz.smooth(recon, window), color=colour, label=f"{label}: reconstruction")
        axes[0].plot(viz.smooth(kl, window), color=colour, linestyle="--",
                     label=f"{label}: KL (sum of T steps)")
        axes[0].plot(history.get(f"{name}_test_at", []), history.get(f"{name}_test", []),
                     "o:", color=colour, label=f"{label}: test reconstruction + KL")
        kl_steps = results[name][2]
        axes[1].bar(np.arange(1, len(kl_steps) + 1) + (index - 0.5) * 0.4,
                    kl_steps / kl_steps.sum(), width=0.4, color=colour, label=label)
    axes[0].set_yscale("log")
    axes[0].set_xlabel("iteration")
    axes[0].set_ylabel(unit)
    axes[0].set_title("training loss, its two terms, and the test loss")
    axes[0].legend(fontsize=7)
    axes[0].grid(alpha=0.3)
    axes[1].set_xlabel("step t")
    axes[1].set_ylabel("share of the test KL")
    axes[1].set_title("where the KL (the information sent) is spent")
    axes[1].legend(fontsize=8)
    axes[1].grid(alpha=0.3)
    viz.save_figure(figure, path)


if __name__ == "__main__":
    cli.main(__name__)
