"""Variational autoencoder: the post's convolutional VAE and Kingma & Welling's MLP VAE.

Follows the post on variational autoencoders (and Kingma & Welling, "Auto-Encoding Variational
Bayes", 2014). An autoencoder squeezes an image through a small code and back; a VAE makes the
code a *distribution*: the encoder outputs the mean and log-variance of a Gaussian q(z|x), a
code z is sampled from it, and the decoder turns z into the probability of each pixel being
on. A KL term pulls every q(z|x) towards the prior N(0, I), so the codes fill one smooth region
and any z drawn from the prior decodes to a digit: the autoencoder becomes a generative model.
The file is longer than most demos because it holds two models (the post's and the paper's),
an honest likelihood to compare them by (the importance-weighted bound) and eight figures.

Key equations (x an image of D = 784 pixels, z in R^d):

    encoder      mu, log sigma^2 = enc(x);      q(z|x) = N(mu, diag sigma^2)
    reparam.     z = mu + sigma * eps,  eps ~ N(0, I)   (the noise is an input, so the sample
                 is a differentiable function of mu and sigma)
    decoder      logits l = dec(z);  p(x|z) = prod_i Bernoulli(x_i; sigmoid(l_i))
    recon. term  -log p(x|z) = sum_i softplus(l_i) - x_i l_i   (summed BCE with logits, stable)
    KL term      KL(q(z|x) || N(0, I)) = 1/2 sum_j (mu_j^2 + sigma_j^2 - 1 - log sigma_j^2)
    loss         -ELBO(x) = E_q[-log p(x|z)] + KL >= -log p(x)     (nats per image)
    IWAE bound   log p(x) >= log 1/k sum_i p(x|z_i) p(z_i) / q(z_i|x),  z_i ~ q(z|x);
                 k = 1 is the ELBO, and it tightens to log p(x) as k grows (Burda et al. 2016)

The honest likelihood: a Bernoulli decoder defines a probability only for binary pixels, so the
images are binarised (each pixel on with probability equal to its grey level: freshly at every
pass over the training set, once for the test set) and the test figures are then real
negative log-likelihoods in nats. The importance-weighted estimate with k samples per image
is the number to quote for -log p(x); the negative ELBO is an upper bound on it, and the gap
between the two is what the approximate posterior costs. Active units: latent dimensions whose
posterior mean varies across the test set (Cov_x E_q[z_j] > 0.01, Burda et al.); the others
are switched off by the KL term and carry nothing.

Models:
    conv (the post)  encoder conv 5x5 s2 1->16, leaky ReLU 0.2, conv 5x5 s2 16->32, leaky ReLU,
                     linear 7*7*32 -> mean and log-variance; decoder linear z -> 7*7*32, ReLU,
                     transposed conv 5x5 s2 32->16, ReLU, transposed conv 5x5 s2 16->1 (logits)
    mlp (the paper)  784 -> 500 tanh -> mean and log-variance; z -> 500 tanh -> 784 logits
Training: Adam 1e-3, batch 100, the loss above averaged over the batch.

Run:  python -m minimal.demos.vae [--quick] [--model mlp] [--z-dim 2] [--data PATH]
      (--data: a folder of MNIST IDX files, or a folder of images read as grey 28x28; the
      default is the synthetic digits of minimal.data. A checkpoint is written after every
      epoch; --resume true continues a stopped run, also with a larger --epochs)

Figures (in out_dir):
    reconstructions.png  test digits (top row) and their reconstructions (decoded posterior
                         means) before training and after chosen epochs
    reconstructions.gif  the same over training, several frames per epoch
    samples.png          digits decoded from z ~ N(0, I): the generative model
    interpolation.png    a straight line in z between the codes of two test digits, decoded
    manifold.png         (z = 2 only) the decoder over a lattice of Gaussian quantiles of z
    latent_means.png     the test set's posterior means coloured by digit (z = 2: the plane
                         itself; otherwise their first two principal axes)
    loss_curves.png      train (per step and per epoch) and test negative ELBO, split into the
                         reconstruction and the KL term
    kl_per_dim.png       the test set's mean KL per latent dimension, active units marked

Settings: the full preset trains the conv model (z 20) for 10 epochs of 60000 digits and
scores -log p(x) with k = 1000 samples on 500 test images; the quick preset trains the same
model for 4 epochs of 10000 digits, k = 200 on 200 images.

Departures from the original: the post's transposed convolutions created a bias and never
added it; here it is added (nn.ConvTranspose2d). The post's encoder output the standard
deviation and took log(std^2 + 1e-8) in the KL, which can turn NaN after long training; here
the encoder outputs the log-variance. The post trained on grey levels with a Bernoulli loss
(a cross-entropy, not a likelihood); here the pixels are binarised as described above (turn it
off with --binarize false). The MLP keeps the paper's shape but not its initialisation
N(0, 0.01^2): under Adam 1e-3 (the paper used Adagrad) it trains far slower than with
PyTorch's default initialisation, which is used here (measured in benchmarks/README.md).
Data: synthetic digits instead of MNIST unless --data is given (and no number here is
comparable with published MNIST figures).

Results (seed 0, synthetic digits, binarised; nats per test image; CPU time at 1 BLAS thread;
not comparable with published MNIST figures):
    preset  -ELBO (recon. + KL)  untrained  IWAE -log p(x) (-ELBO, same images)  active  CPU
    full    95.5 (67.2 + 28.3)   496.5      89.1 (94.3)                          20/20   5.5 min
    quick   117.5 (90.6 + 26.9)  496.4      110.6 (117.5)                        20/20   23 s
The gap between the IWAE estimate and the -ELBO (~5 nats) is what the approximate posterior
costs; a model that ignores z scores ~201. Other runs (the mlp with z 2, --z-dim 64) and the
speed against PyTorch are in benchmarks/README.md.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np

from minimal import data, nn, optim
from minimal import functional as F
from minimal.app import cli, training, viz
from minimal.autograd import Tensor, no_grad
from minimal.errors import DataError

matplotlib.use("Agg")  # figures go to files; no display needed
import matplotlib.pyplot as plt

MODELS = ("conv", "mlp")
SIDE = 28  # images are 28 x 28 grey, as MNIST
ACTIVE_THRESHOLD = 0.01  # a unit is active when Cov_x E_q[z_j] exceeds this (Burda et al.)


@dataclass
class Config:
    seed: int = 0  # seed for every random number in the run (weights, noise, batches, data)
    model: str = "conv"  # conv (the post) or mlp (Kingma and Welling, 784-500-z)
    z_dim: int = 20  # size of the latent code z (2 also draws the latent manifold)
    hidden: int = 500  # hidden units of the mlp model
    epochs: int = 10  # passes over the training set
    batch_size: int = 100  # images per Adam step
    lr: float = 1e-3  # Adam learning rate
    n_train: int = 60000  # training images (at most this many from --data)
    n_test: int = 10000  # test images (at most this many from --data)
    binarize: bool = True  # binary pixels drawn with p = grey level, so p(x) is a likelihood
    iw_samples: int = 1000  # k, importance samples per test image for the NLL estimate
    iw_images: int = 500  # test images in the importance-weighted NLL estimate
    frames_per_epoch: int = 4  # reconstruction snapshots per epoch for the GIF
    data: str = ""  # folder of MNIST IDX files or of images; empty = synthetic digits
    resume: bool = False  # continue the run stopped in out_dir, bit for bit
    out_dir: str = "outputs/vae"  # where figures and the checkpoint are written

    def __post_init__(self):
        cli.validate(self, counts=("z_dim", "hidden", "epochs", "batch_size", "n_train",
                                   "n_test", "iw_samples", "iw_images", "frames_per_epoch"),
                     positive=("lr",), choices={"model": MODELS})


# quick: the post's conv model on a sixth of the data for 4 epochs, a smaller IWAE estimate
QUICK = {"epochs": 4, "n_train": 10000, "n_test": 2000, "iw_samples": 200, "iw_images": 200}

TARGETS = {
    "test_neg_elbo": ("<=", 130.0),  # nats per image; measured 117.5, untrained 496
}

# A resumed run may train for more epochs, and evaluate with another k; nothing else may change.
MAY_DIFFER = ("iw_samples", "iw_images")


# ===== the models ===========================================================================

class ConvVAE(nn.Module):
    """The post's model. encode: (N, 1, 28, 28) -> mu, log_var (N, z); decode: z -> logits."""

    def __init__(self, z_dim: int, rng: np.random.Generator, channels: tuple = (16, 32)):
        super().__init__()
        c1, c2 = channels
        self.channels = channels
        # 5x5, stride 2, padding 2: 28 -> 14 -> 7 (TensorFlow's "same")
        self.conv1 = nn.Conv2d(1, c1, 5, stride=2, padding=2, rng=rng)
        self.conv2 = nn.Conv2d(c1, c2, 5, stride=2, padding=2, rng=rng)
        self.to_mean = nn.Linear(7 * 7 * c2, z_dim, rng=rng)
        self.to_log_var = nn.Linear(7 * 7 * c2, z_dim, rng=rng)
        self.from_z = nn.Linear(z_dim, 7 * 7 * c2, rng=rng)
        # output_padding 1 makes 7 -> 14 -> 28 exactly; the bias is used (the post's was not)
        self.deconv1 = nn.ConvTranspose2d(c2, c1, 5, stride=2, padding=2, output_padding=1,
                                          rng=rng)
        self.deconv2 = nn.ConvTranspose2d(c1, 1, 5, stride=2, padding=2, output_padding=1,
                                          rng=rng)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.conv1(x).leaky_relu(0.2)                        # (N, 16, 14, 14)
        h = self.conv2(h).leaky_relu(0.2)                        # (N, 32, 7, 7)
        h = h.reshape(x.shape[0], -1)                            # (N, 1568)
        return self.to_mean(h), self.to_log_var(h)               # (N, z) each

    def decode(self, z: Tensor) -> Tensor:
        h = self.from_z(z).relu().reshape(z.shape[0], self.channels[1], 7, 7)  # (N, 32, 7, 7)
        h = self.deconv1(h).relu()                               # (N, 16, 14, 14)
        return self.deconv2(h)                                   # (N, 1, 28, 28) logits


class MlpVAE(nn.Module):
    """Kingma & Welling's MNIST model: one tanh hidden layer each way."""

    def __init__(self, z_dim: int, rng: np.random.Generator, hidden: int = 500):
        super().__init__()
        self.hidden = nn.Linear(SIDE * SIDE, hidden, rng=rng)
        self.to_mean = nn.Linear(hidden, z_dim, rng=rng)
        self.to_log_var = nn.Linear(hidden, z_dim, rng=rng)
        self.from_z = nn.Linear(z_dim, hidden, rng=rng)
        self.to_logits = nn.Linear(hidden, SIDE * SIDE, rng=rng)
        # PyTorch's default initialisation, not the paper's N(0, 0.01^2): see the docstring

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.hidden(x.reshape(x.shape[0], -1)).tanh()        # (N, 500)
        return self.to_mean(h), self.to_log_var(h)               # (N, z) each

    def decode(self, z: Tensor) -> Tensor:
        h = self.from_z(z).tanh()                                # (N, 500)
        return self.to_logits(h).reshape(z.shape[0], 1, SIDE, SIDE)  # (N, 1, 28, 28) logits


def make_model(config: Config, rng: np.random.Generator) -> nn.Module:
    if config.model == "conv":
        return ConvVAE(config.z_dim, rng)
    return MlpVAE(config.z_dim, rng, config.hidden)


# ===== the loss =============================================================================

def reparameterise(mean: Tensor, log_var: Tensor, rng: np.random.Generator) -> Tensor:
    """z = mu + sigma * eps with eps ~ N(0, I) from the run's generator."""
    eps = rng.standard_normal(mean.shape, dtype=mean.data.dtype)
    return mean + (0.5 * log_var).exp() * Tensor(eps)


def gaussian_kl(mean: Tensor, log_var: Tensor) -> Tensor:
    """KL(N(mu, diag sigma^2) || N(0, I)) per latent dimension, (N, z): summed it is the KL."""
    return 0.5 * (mean * mean + log_var.exp() - 1.0 - log_var)


def negative_elbo_terms(model: nn.Module, x: np.ndarray, rng: np.random.Generator,
                        ) -> tuple[Tensor, Tensor]:
    """The two terms of -ELBO, each averaged over the batch (nats per image): the summed
    Bernoulli cross-entropy of x under one reparameterised sample, and the analytic KL."""
    mean, log_var = model.encode(Tensor(x))
    logits = model.decode(reparameterise(mean, log_var, rng))
    reconstruction = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / len(x)
    kl = gaussian_kl(mean, log_var).sum() / len(x)
    return reconstruction, kl


def bernoulli_log_likelihood(logits: np.ndarray, x: np.ndarray) -> np.ndarray:
    """log p(x|z) per image, summed over pixels: -(softplus(l) - x l), stable for any l."""
    per_pixel = np.maximum(logits, 0) - logits * x + np.log1p(np.exp(-np.abs(logits)))
    return -per_pixel.reshape(len(x), -1).sum(axis=1, dtype=np.float64)


def log_normal(z: np.ndarray, mean: np.ndarray, log_var: np.ndarray) -> np.ndarray:
    """log N(z; mu, diag exp(log_var)), summed over the last axis."""
    return -0.5 * (((z - mean) ** 2) * np.exp(-log_var) + log_var
                   + math.log(2 * math.pi)).sum(axis=-1)


def importance_weighted_bound(log_likelihood, mean: np.ndarray, log_var: np.ndarray, k: int,
                              rng: np.random.Generator, chunk: int = 2000,
                              ) -> tuple[np.ndarray, np.ndarray]:
    """Per image: the k-sample importance-weighted bound on log p(x) and the ELBO estimated
    from the same k samples (the mean of the log weights; Jensen puts it below the bound).

    log_likelihood(z, rows) -> log p(x_rows | z) for codes z (m, d) and image indices rows (m,).
    log w_i = log p(x|z_i) + log N(z_i; 0, I) - log q(z_i|x),  z_i ~ q(z|x).
    """
    n, d = mean.shape
    images_per_pass = max(1, chunk // k)
    bound, elbo = np.empty(n), np.empty(n)
    for start in range(0, n, images_per_pass):
        rows = np.arange(start, min(n, start + images_per_pass))
        mu, lv = mean[rows].astype(np.float64), log_var[rows].astype(np.float64)
        eps = rng.standard_normal((k, len(rows), d))
        z = mu + np.exp(0.5 * lv) * eps                                   # (k, n, d)
        log_q = log_normal(z, mu, lv)
        log_prior = log_normal(z, np.zeros_like(mu), np.zeros_like(lv))
        flat_rows = np.tile(rows, k)
        log_px = log_likelihood(z.reshape(-1, d).astype(mean.dtype), flat_rows)
        log_w = log_px.reshape(k, len(rows)) + log_prior - log_q          # (k, n)
        top = log_w.max(axis=0)
        bound[rows] = top + np.log(np.exp(log_w - top).mean(axis=0))
        elbo[rows] = log_w.mean(axis=0)
    return bound, elbo


# ===== data =================================================================================

def _grey(images: np.ndarray) -> np.ndarray:
    if images.ndim == 4:  # RGB from an image folder: luminance, as PIL's "L" mode
        images = images @ np.array([0.299, 0.587, 0.114], np.float32)
    return images.astype(np.float32)


def load_digits(config: Config) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train images, train labels, test images, test labels), images (N, 1, 28, 28) in [0, 1].

    Synthetic digits by default; --data takes a folder of MNIST IDX files (its own train and
    test files) or a folder of images (grey, 28 x 28, no labels: the last n_test are held out).
    """
    path = config.data or None
    try:
        if path is not None and not Path(path).expanduser().exists():
            raise FileNotFoundError(f"--data {path}: no such file or folder")
        try:
            train_x, train_y = data.load("digits", config.n_train, config.seed, path=path)
            test_x, test_y = data.load("digits", config.n_test, config.seed, path=path,
                                       split="test")
        except FileNotFoundError:
            if path is None or not Path(path).is_dir() or not data.list_images(path):
                raise
            # not MNIST: data.load's image-folder reader (the name only sets its default size)
            images = _grey(data.load("faces", config.n_train + config.n_test, path=path,
                                     size=SIDE))
            n_test = min(config.n_test, len(images) // 6 or 1)
            if len(images) - n_test < config.batch_size:
                raise ValueError(f"--data {path}: {len(images)} images; the demo needs a batch "
                                 f"({config.batch_size}) to train on and one more to test, "
                                 "at least") from None
            train_x, test_x = images[:-n_test], images[-n_test:]
            train_y, test_y = np.full(len(train_x), -1), np.full(len(test_x), -1)
    except (ValueError, FileNotFoundError) as error:
        raise DataError(str(error)) from None
    train_x, test_x = _grey(train_x), _grey(test_x)
    return train_x[:, None], train_y, test_x[:, None], test_y


def binarise(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each pixel on with probability equal to its grey level."""
    return (rng.random(images.shape, dtype=np.float32) < images).astype(np.float32)


# ===== evaluation ===========================================================================

def evaluate(model: nn.Module, images: np.ndarray, rng: np.random.Generator,
             batch: int = 500) -> dict:
    """Test -ELBO and its terms (nats per image, one z sample each), the posterior means and
    log-variances, and the mean KL per latent dimension."""
    recon, means, log_vars = [], [], []
    with no_grad():
        for start in range(0, len(images), batch):
            x = images[start:start + batch]
            mean, log_var = model.encode(Tensor(x))
            logits = model.decode(reparameterise(mean, log_var, rng)).data
            recon.append(-bernoulli_log_likelihood(logits, x))
            means.append(mean.data)
            log_vars.append(log_var.data)
    mean, log_var = np.concatenate(means), np.concatenate(log_vars)
    kl_per_dim = gaussian_kl(Tensor(mean), Tensor(log_var)).data.astype(np.float64)
    reconstruction = float(np.concatenate(recon).mean())
    kl = float(kl_per_dim.sum(axis=1).mean())
    return {"neg_elbo": reconstruction + kl, "reconstruction": reconstruction, "kl": kl,
            "kl_per_dim": kl_per_dim.mean(axis=0), "mean": mean, "log_var": log_var}


def active_units(means: np.ndarray, threshold: float = ACTIVE_THRESHOLD) -> int:
    """Latent dimensions whose posterior mean varies over the data: Var_x E_q[z_j] > 0.01."""
    return int((means.var(axis=0) > threshold).sum())


def decode_probabilities(model: nn.Module, z: np.ndarray, batch: int = 1000) -> np.ndarray:
    """sigmoid(decoder(z)): each pixel's probability of being on, (N, 28, 28)."""
    out = []
    with no_grad():
        for start in range(0, len(z), batch):
            logits = model.decode(Tensor(z[start:start + batch].astype(np.float32))).data
            out.append(0.5 * (1 + np.tanh(0.5 * logits[:, 0])))  # sigmoid without overflow
    return np.concatenate(out)


def reconstruct(model: nn.Module, images: np.ndarray) -> np.ndarray:
    """Decode the posterior means of images: the reconstructions shown in the figures."""
    with no_grad():
        mean, _ = model.encode(Tensor(images))
    return decode_probabilities(model, mean.data)


def test_nll(model: nn.Module, images: np.ndarray, k: int, rng: np.random.Generator,
             ) -> tuple[np.ndarray, np.ndarray]:
    """Importance-weighted -log p(x) (k samples) and the same samples' -ELBO, per image."""
    with no_grad():
        mean, log_var = model.encode(Tensor(images))

    def log_likelihood(z: np.ndarray, rows: np.ndarray) -> np.ndarray:
        with no_grad():
            logits = model.decode(Tensor(z)).data
        return bernoulli_log_likelihood(logits, images[rows])

    bound, elbo = importance_weighted_bound(log_likelihood, mean.data, log_var.data, k, rng)
    return -bound, -elbo


# ===== training =============================================================================

@dataclass
class Trained:
    model: nn.Module
    state: training.TrainingState
    test_x: np.ndarray  # binarised (when binarize) test images
    test_y: np.ndarray
    shown: np.ndarray  # the fixed test images whose reconstructions are shown
    prior_z: np.ndarray  # fixed codes for the samples figure
    pairs: np.ndarray  # (rows, 2) test indices for the interpolation figure


def train(config: Config) -> Trained:
    """Build everything from the seed, resume if asked, train to config.epochs epochs."""
    rng = np.random.default_rng(config.seed)
    train_x, _, test_x, test_y = load_digits(config)
    steps = len(train_x) // config.batch_size
    if steps == 0:
        raise DataError(f"{len(train_x)} training images are fewer than one batch of "
                        f"{config.batch_size}; lower --batch-size or give more data")
    model = make_model(config, rng)
    adam = optim.Adam(model.parameters(), lr=config.lr)
    # everything fixed is drawn before the checkpoint's generator state is restored
    if config.binarize:
        test_x = binarise(test_x, rng)
    shown = rng.choice(len(test_x), size=min(12, len(test_x)), replace=False)
    prior_z = rng.standard_normal((64, config.z_dim)).astype(np.float32)
    pairs = _interpolation_pairs(test_y, rng)
    state = training.TrainingState("vae", config, {"model": model}, {"adam": adam}, rng,
                                   may_differ=MAY_DIFFER, length=("epochs", "epoch"))
    if config.resume:
        state.resume()
    history = state.history
    if "untrained" not in history:  # the baseline every trained number is compared with
        before = evaluate(model, test_x, rng)
        history["untrained"] = [before["neg_elbo"], before["reconstruction"], before["kl"]]
        history["frames"] = [reconstruct(model, test_x[shown])]
        history["frame_epochs"] = [0.0]
    frame_steps = set(np.linspace(0, steps, config.frames_per_epoch + 1).astype(int)[1:])
    first = state.counters.get("epoch", 0)
    progress = cli.Progress((config.epochs - first) * steps, label="step", every=5.0)
    for epoch in range(first, config.epochs):
        order = rng.permutation(len(train_x))
        sums = np.zeros(2)
        for step in range(steps):
            x = train_x[order[step * config.batch_size:(step + 1) * config.batch_size]]
            if config.binarize:  # a fresh binary image at every pass (dynamic binarisation)
                x = binarise(x, rng)
            reconstruction, kl = negative_elbo_terms(model, x, rng)
            loss = reconstruction + kl
            # the terms first, so a message names the one that broke
            state.check_finite(f"epoch {epoch + 1}, step {step + 1}",
                               reconstruction=reconstruction, kl=kl, loss=loss)
            adam.zero_grad()
            loss.backward()
            adam.step()
            terms = (reconstruction.item(), kl.item())
            sums += terms
            history.setdefault("step_reconstruction", []).append(terms[0])
            history.setdefault("step_kl", []).append(terms[1])
            if step + 1 in frame_steps:
                history["frames"].append(reconstruct(model, test_x[shown]))
                history["frame_epochs"].append(epoch + (step + 1) / steps)
            progress.update((epoch - first) * steps + step + 1, epoch=epoch + 1,
                            neg_elbo=terms[0] + terms[1])
        test = evaluate(model, test_x, rng)
        history.setdefault("train_reconstruction", []).append(sums[0] / steps)
        history.setdefault("train_kl", []).append(sums[1] / steps)
        history.setdefault("test_reconstruction", []).append(test["reconstruction"])
        history.setdefault("test_kl", []).append(test["kl"])
        print(f"epoch {epoch + 1}/{config.epochs}  train -ELBO {sums.sum() / steps:.2f}  "
              f"test -ELBO {test['neg_elbo']:.2f} (reconstruction {test['reconstruction']:.2f}"
              f" + KL {test['kl']:.2f}) nats", flush=True)
        state.counters["epoch"] = epoch + 1
        state.save()
    return Trained(model, state, test_x, test_y, shown, prior_z, pairs)


def _interpolation_pairs(labels: np.ndarray, rng: np.random.Generator, rows: int = 6,
                         ) -> np.ndarray:
    """Pairs of test indices to interpolate between, with different labels when known."""
    pairs = []
    for _ in range(rows):
        a, b = rng.choice(len(labels), size=2, replace=False)
        for _ in range(20):  # redraw b a few times to get another digit
            if labels[a] != labels[b] or labels[a] < 0:
                break
            b = rng.integers(len(labels))
        pairs.append((a, b))
    return np.array(pairs)


# ===== figures ==============================================================================

def _strip(images: np.ndarray, gap: int = 2) -> np.ndarray:
    """Images side by side with a white gap: (n, H, W) -> (H, n * (W + gap) - gap)."""
    n, h, w = images.shape
    out = np.ones((h, n * (w + gap) - gap), np.float32)
    for i, image in enumerate(images):
        out[:, i * (w + gap):i * (w + gap) + w] = image
    return out


def _image_rows(rows: list[np.ndarray], labels: list[str], title: str, path: str) -> None:
    figure, axes = plt.subplots(len(rows), 1, figsize=(0.62 * rows[0].shape[0] + 1.2,
                                                       0.75 * len(rows) + 0.6), squeeze=False)
    for ax, row, label in zip(axes[:, 0], rows, labels):
        ax.imshow(_strip(row), cmap="gray", vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
    axes[0, 0].set_title(title, fontsize=10)
    viz.save_figure(figure, path)


def chosen_frames(frame_epochs: list[float], epochs: int) -> list[int]:
    """Indices of the frames at the end of epochs 1, 2, 5, 10, 20, ... and the last epoch."""
    wanted = [e for e in (1, 2, 5, 10, 20, 50, 100) if e < epochs] + [epochs]
    found = [frame_epochs.index(float(e)) for e in wanted if float(e) in frame_epochs]
    return [0] + found


def plot_reconstructions(trained: Trained, config: Config) -> None:
    history = trained.state.history
    frames = [np.asarray(f) for f in history["frames"]]
    epochs = [float(e) for e in history["frame_epochs"]]
    originals = trained.test_x[trained.shown][:, 0]
    rows = [originals] + [frames[i] for i in chosen_frames(epochs, config.epochs)]
    labels = ["test\nimage"] + [("untrained" if epochs[i] == 0 else f"epoch {epochs[i]:g}")
                                for i in chosen_frames(epochs, config.epochs)]
    _image_rows(rows, labels, "Reconstructions (decoded posterior means) over training",
                os.path.join(config.out_dir, "reconstructions.png"))
    gif = []
    for frame, epoch in zip(frames, epochs):
        grid = viz.image_grid(np.concatenate([originals, frame])[:, None], nrow=len(originals),
                              padding=2)
        bar = np.ones((4, grid.shape[1]), np.float32)  # training progress, filled in grey
        bar[1:3, :round(grid.shape[1] * epoch / config.epochs)] = 0.5
        gif.append(np.concatenate([grid, bar]))
    viz.save_gif(gif, os.path.join(config.out_dir, "reconstructions.gif"), duration=0.25,
                 scale=3)


def plot_samples_and_interpolation(trained: Trained, config: Config) -> None:
    model = trained.model
    samples = decode_probabilities(model, trained.prior_z)
    figure, ax = plt.subplots(figsize=(5.2, 5.5))
    ax.imshow(viz.image_grid(samples[:, None], nrow=8, padding=2), cmap="gray", vmin=0, vmax=1)
    ax.set_axis_off()
    ax.set_title("Samples: decoder(z), z ~ N(0, I)\n(pixel probabilities)", fontsize=10)
    viz.save_figure(figure, os.path.join(config.out_dir, "samples.png"))

    a, b = trained.pairs[:, 0], trained.pairs[:, 1]
    with no_grad():
        ends = model.encode(Tensor(trained.test_x[np.concatenate([a, b])]))[0].data
    za, zb = ends[:len(a)], ends[len(a):]
    t = np.linspace(0, 1, 10)[:, None, None]
    line = ((1 - t) * za + t * zb).transpose(1, 0, 2).reshape(-1, za.shape[1])
    decoded = decode_probabilities(model, line).reshape(len(a), 10, SIDE, SIDE)
    rows = [np.concatenate([trained.test_x[i][None, 0], d, trained.test_x[j][None, 0]])
            for i, j, d in zip(a, b, decoded)]
    _image_rows(rows, [""] * len(rows), "Interpolation: test digit, decoded (1-t) z_a + t z_b "
                "for t = 0..1, test digit", os.path.join(config.out_dir, "interpolation.png"))


def plot_latent(trained: Trained, test: dict, config: Config) -> None:
    from scipy.stats import norm

    mean, labels = test["mean"], trained.test_y
    if config.z_dim == 2:
        points, axis_names = mean, ("z1", "z2")
        title = "Test posterior means E_q[z | x], by digit"
        # the manifold: decode a lattice of Gaussian quantiles, so equal areas of the figure
        # hold equal prior mass
        n = 20
        grid = norm.ppf(np.linspace(0.05, 0.95, n))
        z = np.array([[x, y] for y in grid[::-1] for x in grid], np.float32)
        images = decode_probabilities(trained.model, z)
        figure, ax = plt.subplots(figsize=(7, 7.3))
        ax.imshow(viz.image_grid(images[:, None], nrow=n, padding=0), cmap="gray",
                  extent=(grid[0], grid[-1], grid[0], grid[-1]), vmin=0, vmax=1)
        ax.set(xlabel="z1 (quantiles 0.05..0.95 of N(0,1))", ylabel="z2",
               title="The learned manifold: decoder over a lattice of Gaussian quantiles")
        viz.save_figure(figure, os.path.join(config.out_dir, "manifold.png"))
    else:
        centred = mean - mean.mean(axis=0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        points, axis_names = centred @ vt[:2].T, ("first principal axis", "second")
        title = f"Test posterior means (z = {config.z_dim}) on their two principal axes"
    figure, ax = plt.subplots(figsize=(6.4, 5.6))
    if (labels >= 0).all():
        scatter = ax.scatter(points[:, 0], points[:, 1], c=labels, cmap="tab10", s=4,
                             vmin=-0.5, vmax=9.5)
        figure.colorbar(scatter, ax=ax, ticks=range(10), label="digit")
    else:
        ax.scatter(points[:, 0], points[:, 1], s=4, color="grey")
    ax.set(xlabel=axis_names[0], ylabel=axis_names[1], title=title)
    viz.save_figure(figure, os.path.join(config.out_dir, "latent_means.png"))


def plot_curves(trained: Trained, config: Config) -> None:
    history = trained.state.history
    step_r, step_k = (np.asarray(history[k]) for k in ("step_reconstruction", "step_kl"))
    steps_x = np.arange(1, len(step_r) + 1) / (len(step_r) / config.epochs)
    epochs_x = np.arange(1, config.epochs + 1)
    untrained = history["untrained"]
    figure, axes = plt.subplots(1, 3, figsize=(14, 4))
    for ax, name, per_step, index in ((axes[0], "negative ELBO", step_r + step_k, 0),
                                      (axes[1], "reconstruction  -log p(x|z)", step_r, 1),
                                      (axes[2], "KL(q(z|x) || p(z))", step_k, 2)):
        train_epoch = (np.add(history["train_reconstruction"], history["train_kl"]) if index == 0
                       else np.asarray(history[["", "train_reconstruction", "train_kl"][index]]))
        test_epoch = (np.add(history["test_reconstruction"], history["test_kl"]) if index == 0
                      else np.asarray(history[["", "test_reconstruction", "test_kl"][index]]))
        ax.plot(steps_x, per_step, color="C0", alpha=0.25, lw=0.6, label="train, per step")
        ax.plot(epochs_x - 0.5, train_epoch, "o-", color="C0", label="train, epoch mean")
        ax.plot(epochs_x, test_epoch, "s-", color="C1", label="test, end of epoch")
        ax.set(xlabel="epoch", ylabel="nats per image", title=name)
        if index < 2:  # the untrained model sits far above; say so instead of squashing
            top = float(np.percentile(per_step, 99)) if len(per_step) > 100 else None
            ax.set_ylim(None, top)
            ax.annotate(f"untrained model: {untrained[index]:.0f}", (0.98, 0.97),
                        xycoords="axes fraction", ha="right", va="top", fontsize=8, color="grey")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="center right")
    viz.save_figure(figure, os.path.join(config.out_dir, "loss_curves.png"))


def plot_kl_per_dim(test: dict, config: Config) -> None:
    kl = test["kl_per_dim"]
    active = test["mean"].var(axis=0) > ACTIVE_THRESHOLD
    order = np.argsort(-kl)
    figure, ax = plt.subplots(figsize=(min(12.0, max(6.0, 0.3 * len(kl) + 2)), 4))
    colours = np.where(active[order], "C0", "lightgrey")
    ax.bar(np.arange(len(kl)), kl[order], color=colours)
    if len(kl) <= 40:  # beyond that the dimension numbers would overlap
        ax.set_xticks(np.arange(len(kl)), [str(j + 1) for j in order],
                      fontsize=7 if len(kl) > 24 else 9)
    ax.set(xlabel="latent dimension (sorted by KL)" if len(kl) <= 40 else "dimensions by rank "
           "of KL", ylabel="mean KL on the test set (nats)",
           title=f"KL per latent dimension: {int(active.sum())} of {len(kl)} active "
                 "(blue: Var_x E[z_j] > 0.01)")
    viz.save_figure(figure, os.path.join(config.out_dir, "kl_per_dim.png"))


# ===== the experiment =======================================================================

def run(config: Config) -> dict[str, float]:
    os.makedirs(config.out_dir, exist_ok=True)
    trained = train(config)
    rng = trained.state.rngs["rng"]  # evaluation draws go on from the training stream
    test = evaluate(trained.model, trained.test_x, rng)
    iw_images = trained.test_x[:config.iw_images]
    print(f"importance-weighted NLL: {len(iw_images)} test images x {config.iw_samples} "
          "samples", flush=True)
    nll, neg_elbo_k = test_nll(trained.model, iw_images, config.iw_samples, rng)
    plot_reconstructions(trained, config)
    plot_samples_and_interpolation(trained, config)
    plot_latent(trained, test, config)
    plot_curves(trained, config)
    plot_kl_per_dim(test, config)
    untrained = trained.state.history["untrained"]
    return {
        "test_neg_elbo": test["neg_elbo"],  # nats per image, the whole test set
        "test_reconstruction": test["reconstruction"],
        "test_kl": test["kl"],
        "test_nll_iw": float(nll.mean()),  # k-sample importance-weighted -log p(x)
        "iw_subset_neg_elbo": float(neg_elbo_k.mean()),  # -ELBO of the same images
        "iw_samples": float(config.iw_samples),
        "active_units": float(active_units(test["mean"])),
        "untrained_neg_elbo": float(untrained[0]),
    }


if __name__ == "__main__":
    cli.main(__name__)
