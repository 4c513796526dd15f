"""DCGAN: a generator learns to draw images by fooling a discriminator.

Follows the post on generative adversarial networks (a DCGAN in the style of Radford, Metz and
Chintala, 2016). Two networks play a game. The discriminator D sees real images and the
generator's images and learns to tell them apart; the generator G turns a noise vector z into
an image and learns to make D call it real. Neither ever sees a formula for "a good image":
G's only teacher is D's gradient.

Key equations (D outputs a logit; sigma is the sigmoid, so D(x) = sigma(logit) is the
probability D gives to "real"; BCE is the binary cross-entropy)::

    z ~ U(-1, 1)^100
    D loss   L_D = BCE(D(x), 1) + BCE(D(G(z)), 0)
               = -log D(x) - log(1 - D(G(z)))
    G loss   L_G = BCE(D(G(z)), 1) = -log D(G(z))         (the "non-saturating" loss)

The minimax game of the paper has G minimise log(1 - D(G(z))), whose gradient vanishes exactly
when G is bad and D is sure (D(G(z)) near 0); -log D(G(z)) has the same fixed point and a
strong gradient there. Each iteration takes one Adam step on D (a batch of real images and a
batch of G's, batch norm statistics per batch as in the paper's code) and then one on G, on the
same noise, through the just-updated D.

Architecture (DCGAN's rules): no pooling, strided convolutions down in D and transposed
convolutions up in G, batch norm in both except D's input layer and G's output layer, ReLU in G
with tanh out, leaky ReLU 0.2 in D, all weights from N(0, 0.02), Adam 2e-4 with beta1 0.5.
Kernels 5x5 (--kernel 4 for 4x4), stride 2, as in the post. With g = d = 32, for 32x32 images:

    G  z (100) -> linear -> 4x4x128 -> BN, ReLU -> tconv 64 -> 8x8 -> BN, ReLU
       -> tconv 32 -> 16x16 -> BN, ReLU -> tconv 3 -> 32x32 -> tanh
    D  32x32x3 -> conv 32 -> leaky -> conv 64 -> BN, leaky -> conv 128 -> BN, leaky
       -> 4x4x128 -> linear -> 1 logit

64x64 images (--dataset faces) get one more layer on each side (G starts at 4x4x256, D ends
with 256 channels). Images are scaled to [-1, 1] to match tanh. Sampling uses batch norm in
evaluation mode (running statistics), so a sample does not depend on the others in its batch.

A quality number that can fail: the Frechet distance (minimal/app/metrics.py). FID compares
Inception-v3 features of generated and real images; nothing is downloaded here, so a small
classifier is trained on the real training images (the digit for `digits`, the shape class for
`shapes`, which of four rotations was applied for unlabelled images such as faces) and its
penultimate layer (128 features for 32x32 images, 256 for 64x64) stands in. With mean m and
covariance S of each feature set::

    FD = |m_r - m_g|^2 + tr(S_r + S_g - 2 (S_r^1/2 S_g S_r^1/2)^1/2)

It is 0 for identical statistics. It is reported against held-out real images, next to two
references measured the same way with the same number of images: the floor (real training
images against held-out ones: what sampling noise alone gives) and the untrained generator
(the ceiling). The classifier is cached in out_dir (feature_net.npz, keyed by the data, the
seed, its settings and the BLAS thread count, which changes float32 sums), so later runs skip
its training and still give the numbers a fresh run would.

Run:  python -m minimal.demos.gan [--quick] [--dataset shapes|digits|faces] [--data PATH]
      --data PATH: CIFAR-10 binary batches (shapes), MNIST IDX files (digits) or a folder of
      images (faces, e.g. CelebA); --resume continues a stopped run bit for bit, and
      --resume --iterations N trains a finished one on to N iterations.

Figures (in out_dir):
    samples_NNNNN.png       the same 64 noise vectors through G at each checkpoint
    samples.gif             those grids over training, one frame per checkpoint
    latent_walk.png         one noise vector with all values fixed but one, which goes from -1
                            to 1 left to right; one row per value (the values that change the
                            image most, found by trying all 100)
    interpolation.png       straight lines z = (1 - t) z_a + t z_b between pairs of noises
    training_curves.png     D and G losses; mean D(x) and D(G(z)); the Frechet distance at each
                            checkpoint with the floor and the untrained generator
    nearest.png             generated samples (left column) and their nearest training images
                            by pixel distance: G makes new images, it does not copy

Settings: the full preset trains on the shapes (20000 images, g = d = 32, batch 64, Adam
2e-4, 3000 iterations); the quick preset on digits (5000 images, g = d = 16, batch 32, Adam
5e-4, 900 iterations). In a minute the shapes (textured, coloured backgrounds, ten shapes at
random sizes and angles) only get as far as coloured noise; the digits, one grey stroke on a
plain background, become readable in the same time, which is what the post shows.

Departures from the post: sizes scaled for a CPU (32x32 synthetic shapes instead of CIFAR-10,
g = d = 32, 3000 iterations); batch 64 (the paper used 128); biases dropped before batch norm
(its mean cancels them); digits are padded from 28x28 to 32x32 so the 32x32 nets fit them; the
post's CIFAR mode read only the first ~9.7k images of one batch, here every training image is
used; the Frechet distance on a small classifier's features stands in for FID (its numbers are
not comparable with published FIDs). The quick preset trains on digits (above), halves both
nets (g = d = 16) and takes batch 32 with Adam 5e-4: more updates in its minute.

Results (seed 0, 1 BLAS thread; Frechet distance on the classifier's features, untrained G and
end of run; not comparable with published FIDs, see above):
    preset          untrained  end   floor  accuracy    D(x) / D(G(z))  time
    quick (digits)  469.0      5.7   0.32   0.89        0.69 / 0.32     45 s of CPU
    full (shapes)   37.2       3.0   0.11   0.49        0.92 / 0.08     32 min wall (loaded)
The quick run's samples go from flat grey to the same stripes in all 64 cells (G ignores z at
first) to varied digits with ragged edges by iteration 900; the nearest training images are
other digits of a similar outline, never a copy. The full run's samples are single objects on
plain or graded backgrounds, one colour each: where and how big the object is, but rarely
which shape; D pulls ahead in its second half and the distance stops falling. Other thread
counts, the distance at each checkpoint and the settings tried are in benchmarks/README.md.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import matplotlib
import numpy as np

from minimal import data, nn, optim
from minimal import functional as F
from minimal.app import cli, metrics, training, viz
from minimal.autograd import Tensor, no_grad
from minimal.errors import ConfigError, DataError

matplotlib.use("Agg")
import matplotlib.pyplot as plt

DATASETS = ("shapes", "digits", "faces")


@dataclass
class Config:
    seed: int = 0  # seed for every random number in the run
    dataset: str = "shapes"  # shapes (32x32 colour), digits (32x32 grey), faces (64x64 colour)
    data: str = ""  # real data instead of the synthetic set: CIFAR-10 binary, MNIST IDX, images
    train_images: int = 20000  # real training images
    test_images: int = 2000  # held-out real images for the Frechet distance
    iterations: int = 3000  # training iterations (one D step and one G step each)
    batch_size: int = 64  # images per batch (real and generated)
    z_dim: int = 100  # noise values per sample, each from U(-1, 1)
    g_width: int = 32  # g: channels of G's last hidden layer (doubling towards 4x4)
    d_width: int = 32  # d: channels of D's first layer (doubling towards 4x4)
    kernel: int = 5  # kernel size of every (transposed) conv, 5 as in the post or 4
    lr: float = 2e-4  # Adam step, both networks
    beta1: float = 0.5  # Adam beta1, both networks
    checkpoint_every: int = 250  # iterations between checkpoints (samples, distance, save)
    eval_images: int = 2000  # generated (and real) images per Frechet distance
    classifier_epochs: int = 3  # epochs of the feature classifier on the training images
    walk_rows: int = 6  # rows of the latent walk (one noise value each)
    out_dir: str = "outputs/gan"  # where figures and the checkpoint are written
    resume: bool = False  # continue from out_dir/checkpoint.npz

    def __post_init__(self):
        cli.validate(self, counts=("train_images", "test_images", "iterations", "batch_size",
                                   "z_dim", "g_width", "d_width", "checkpoint_every",
                                   "eval_images", "classifier_epochs", "walk_rows"),
                     positive=("lr",), fractions=("beta1",), choices={"dataset": DATASETS,
                                                                 "kernel": (4, 5)})
        if self.batch_size < 2:
            raise ConfigError(f"batch_size (--batch-size) must be at least 2 (batch norm "
                                  f"needs two images), got {self.batch_size}")


# quick: digits (see the docstring: the textured shapes need far more than a minute), fewer
# images, half-width nets, batch 32 and a bigger step (more updates per second)
QUICK = {"dataset": "digits", "train_images": 5000, "test_images": 1000, "iterations": 900,
         "checkpoint_every": 150, "eval_images": 1000, "classifier_epochs": 2, "g_width": 16,
         "d_width": 16, "batch_size": 32, "lr": 5e-4}

TARGETS = {
    "frechet_distance": ("<=", 12.0),  # measured 5.7 (seed 0), the untrained generator 469
}


# --- data ------------------------------------------------------------------------------------
def image_shape(dataset: str) -> tuple[int, int]:
    """(channels, size) of the images the nets see."""
    return {"shapes": (3, 32), "digits": (1, 32), "faces": (3, 64)}[dataset]


def _to_model_layout(images: np.ndarray, dataset: str) -> np.ndarray:
    """(N, H, W[, C]) in [0, 1] -> (N, C, S, S) in [-1, 1], the tanh range."""
    if dataset == "digits":  # 28x28 grey, padded with background to 32x32 (4x4 doubled 3 times)
        images = np.pad(images.reshape(-1, 28, 28), ((0, 0), (2, 2), (2, 2)))[:, None]
    else:
        images = images.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(images * 2 - 1, dtype=np.float32)


def load_images(config: Config):
    """(train, train_labels, test, test_labels): images (N, C, S, S) in [-1, 1]; labels int64,
    or None when the data have none (faces, a folder of images)."""
    path = config.data or None
    n_train, n_test = config.train_images, config.test_images
    try:
        if config.dataset == "faces":
            images = data.load("faces", n_train + n_test, config.seed, path=path, size=64)
            if len(images) < n_train + n_test // 4:
                raise DataError(f"{path}: {len(images)} images; the demo needs at least "
                                f"{n_train + n_test // 4} (training plus held-out)")
            train, test = images[:n_train], images[n_train:n_train + n_test]
            train_labels = test_labels = None
        else:
            train, train_labels = data.load(config.dataset, n_train, config.seed, path=path)
            test, test_labels = data.load(config.dataset, n_test, config.seed, path=path,
                                          split="test")
    except (FileNotFoundError, ValueError) as error:
        if isinstance(error, DataError):
            raise
        raise DataError(str(error)) from None
    return (_to_model_layout(train, config.dataset), train_labels,
            _to_model_layout(test, config.dataset), test_labels)


# --- the two networks -------------------------------------------------------------------------
def _dcgan_init(module: nn.Module, rng: np.random.Generator) -> None:
    """DCGAN's initialisation: every conv and linear weight from N(0, 0.02), biases 0; batch
    norm starts as the identity (scale 1, shift 0)."""
    for _, layer in module.named_modules():
        if isinstance(layer, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            layer.weight.data = nn.normal(layer.weight.shape, 0.02, rng)
            if layer.bias is not None:
                layer.bias.data = np.zeros(layer.bias.shape, np.float32)


class Generator(nn.Module):
    """z (B, z_dim) -> images (B, channels, size, size) in (-1, 1)."""

    def __init__(self, z_dim: int, width: int, channels: int, size: int,
                 rng: np.random.Generator, kernel: int = 5):
        super().__init__()
        pad, extra = (kernel - 1) // 2, kernel % 2  # exactly doubles the size for 4 or 5
        layers = int(math.log2(size // 4))  # transposed convs: 4 -> 8 -> ... -> size
        self.top = width * 2 ** (layers - 1)  # channels at 4x4 (4g for 32x32, 8g for 64x64)
        self.project = nn.Linear(z_dim, 4 * 4 * self.top, bias=False, rng=rng)
        self.norm0 = nn.BatchNorm2d(self.top)
        ups, norms, c = [], [], self.top
        for _ in range(layers - 1):
            ups.append(nn.ConvTranspose2d(c, c // 2, kernel, 2, pad, extra, bias=False, rng=rng))
            norms.append(nn.BatchNorm2d(c // 2))
            c //= 2
        self.ups = nn.ModuleList(ups)
        self.norms = nn.ModuleList(norms)
        self.out = nn.ConvTranspose2d(c, channels, kernel, 2, pad, extra, rng=rng)
        _dcgan_init(self, rng)

    def forward(self, z: Tensor) -> Tensor:
        h = self.project(z).reshape(-1, self.top, 4, 4)  # (B, 8g, 4, 4)
        h = F.relu(self.norm0(h))
        for up, norm in zip(self.ups, self.norms):
            h = F.relu(norm(up(h)))  # (B, C/2, 2H, 2W)
        return F.tanh(self.out(h))  # (B, channels, size, size)


class Discriminator(nn.Module):
    """images (B, channels, size, size) -> one logit per image (B, 1)."""

    def __init__(self, width: int, channels: int, size: int, rng: np.random.Generator,
                 kernel: int = 5):
        super().__init__()
        layers = int(math.log2(size // 4))  # strided convs: size -> ... -> 4
        pad = (kernel - 1) // 2  # halves the size for 4 or 5
        self.first = nn.Conv2d(channels, width, kernel, 2, pad, rng=rng)  # no batch norm here
        downs, norms, c = [], [], width
        for _ in range(layers - 1):
            downs.append(nn.Conv2d(c, 2 * c, kernel, 2, pad, bias=False, rng=rng))
            norms.append(nn.BatchNorm2d(2 * c))
            c *= 2
        self.downs = nn.ModuleList(downs)
        self.norms = nn.ModuleList(norms)
        self.out = nn.Linear(4 * 4 * c, 1, rng=rng)
        _dcgan_init(self, rng)

    def forward(self, x: Tensor) -> Tensor:
        h = F.leaky_relu(self.first(x), 0.2)  # (B, d, S/2, S/2)
        for down, norm in zip(self.downs, self.norms):
            h = F.leaky_relu(norm(down(h)), 0.2)  # (B, 2C, H/2, W/2)
        return self.out(h.reshape(len(h.data), -1))  # (B, 1)


def discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """-log D(x) - log(1 - D(G(z))), averaged over each batch."""
    ones = np.ones(real_logits.shape, real_logits.dtype)
    zeros = np.zeros(fake_logits.shape, fake_logits.dtype)
    return (F.binary_cross_entropy_with_logits(real_logits, ones)
            + F.binary_cross_entropy_with_logits(fake_logits, zeros))


def generator_loss(fake_logits: Tensor) -> Tensor:
    """The non-saturating loss -log D(G(z)): G wants D to call its images real."""
    return F.binary_cross_entropy_with_logits(
        fake_logits, np.ones(fake_logits.shape, fake_logits.dtype))


def sample_noise(rng: np.random.Generator, count: int, z_dim: int) -> np.ndarray:
    return rng.uniform(-1.0, 1.0, (count, z_dim)).astype(np.float32)


def _set_requires_grad(module: nn.Module, flag: bool) -> None:
    for param in module.parameters():
        param.requires_grad = flag


def train_step(generator: Generator, discriminator: Discriminator, g_adam: optim.Adam,
               d_adam: optim.Adam, real: np.ndarray, z: np.ndarray,
               check=None) -> dict[str, float]:
    """One D step then one G step on the same noise. `check(term, value)` runs after each
    forward pass and before its update (the NaN guard)."""
    fake = generator(Tensor(z))  # (B, C, S, S), G in training mode
    # D step: G's images are constants here (detach), so only D learns from this loss
    real_logits = discriminator(Tensor(real))
    fake_logits = discriminator(fake.detach())
    d_loss = discriminator_loss(real_logits, fake_logits)
    if check is not None:
        check("discriminator", d_loss)
    d_adam.zero_grad()
    d_loss.backward()
    d_adam.step()
    # G step through the updated D; D's weights need no gradient here (skips their products)
    _set_requires_grad(discriminator, False)
    try:
        g_loss = generator_loss(discriminator(fake))
        if check is not None:
            check("generator", g_loss)
        g_adam.zero_grad()
        g_loss.backward()
    finally:
        _set_requires_grad(discriminator, True)
    g_adam.step()
    return {"d_loss": float(d_loss.data), "g_loss": float(g_loss.data),
            "d_real": float(_sigmoid(real_logits.data).mean()),
            "d_fake": float(_sigmoid(fake_logits.data).mean())}


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1 + np.tanh(0.5 * x))


def generate(generator: Generator, z: np.ndarray, batch: int = 500) -> np.ndarray:
    """G's images for noise z with batch norm in evaluation mode (running statistics)."""
    was_training = generator.training
    generator.eval()
    try:
        with no_grad():
            return np.concatenate([generator(Tensor(z[i:i + batch])).data
                                   for i in range(0, len(z), batch)])
    finally:
        generator.train(was_training)


# --- the quality number -----------------------------------------------------------------------
def train_feature_net(train: np.ndarray, labels: np.ndarray | None,
                      config: Config) -> tuple[metrics.FeatureNet, float]:
    """The Frechet distance's classifier (minimal/app/metrics.py) for this run: trained on the
    training images, or loaded from out_dir/feature_net.npz when a run with the same data,
    seed, epochs and BLAS thread count left it there. Returns it and its held-out accuracy."""
    return metrics.train_feature_net(
        train, labels, seed=config.seed, epochs=config.classifier_epochs,
        cache_path=os.path.join(config.out_dir, "feature_net.npz"),
        source={"dataset": config.dataset, "data": config.data})


# --- training ----------------------------------------------------------------------------------
def build(config: Config, channels: int, size: int):
    """Everything the run needs, in a fixed order from one generator: nets, optimisers, noise."""
    rng = np.random.default_rng(config.seed)
    generator = Generator(config.z_dim, config.g_width, channels, size, rng, config.kernel)
    discriminator = Discriminator(config.d_width, channels, size, rng, config.kernel)
    betas = (config.beta1, 0.999)
    g_adam = optim.Adam(generator.parameters(), lr=config.lr, betas=betas)
    d_adam = optim.Adam(discriminator.parameters(), lr=config.lr, betas=betas)
    fixed_noise = sample_noise(rng, 64, config.z_dim)  # the same 64 samples at every checkpoint
    state = training.TrainingState("gan", config, {"generator": generator,
                                                   "discriminator": discriminator},
                                   {"generator_adam": g_adam, "discriminator_adam": d_adam}, rng,
                                   length=("iterations", "iteration"))  # may train on longer
    return rng, generator, discriminator, g_adam, d_adam, fixed_noise, state


def train(config: Config, train_images: np.ndarray, evaluate=None, stop_after: int | None = None):
    """The training loop. evaluate(generator) -> Frechet distance at each checkpoint (None to
    skip); stop_after=k returns after k iterations (tests). Returns (generator, discriminator,
    state, fixed_noise)."""
    channels, size = train_images.shape[1], train_images.shape[2]
    rng, generator, discriminator, g_adam, d_adam, fixed_noise, state = build(
        config, channels, size)
    if config.resume:
        state.resume()
    history = state.history
    start = state.counters.get("iteration", 0)
    if start == 0 and not history:  # the untrained generator: the first frame and the ceiling
        _checkpoint_record(state, generator, fixed_noise, evaluate, 0)
    progress = cli.Progress(config.iterations, label="iteration", every=5.0, first=start)
    for iteration in range(start, config.iterations):
        real = train_images[rng.integers(0, len(train_images), config.batch_size)]
        z = sample_noise(rng, config.batch_size, config.z_dim)

        def check(term, value, iteration=iteration):
            state.check_finite(f"iteration {iteration + 1}", **{f"{term} loss": value})

        stats = train_step(generator, discriminator, g_adam, d_adam, real, z, check)
        for name, value in stats.items():
            history.setdefault(name, []).append(value)
        done = iteration + 1
        if done % config.checkpoint_every == 0 or done == config.iterations:
            _checkpoint_record(state, generator, fixed_noise, evaluate, done)
            state.counters["iteration"] = done
            state.save()
            if config.out_dir and evaluate is not None:
                viz.save_grid(history["frames"][-1], os.path.join(
                    config.out_dir, f"samples_{done:05d}.png"), nrow=8, scale=2)
        progress.update(done, d_loss=stats["d_loss"], g_loss=stats["g_loss"],
                        fd=history["frechet"][-1] if history.get("frechet") else float("nan"))
        if stop_after is not None and done == stop_after:
            break
    return generator, discriminator, state, fixed_noise


def _checkpoint_record(state, generator, fixed_noise, evaluate, iteration: int) -> None:
    """The fixed-noise grid (uint8, kept for the GIF) and the Frechet distance."""
    frame = np.round((generate(generator, fixed_noise) + 1) * 127.5).clip(0, 255)
    state.history.setdefault("frames", []).append(frame.astype(np.uint8))
    state.history.setdefault("frame_iteration", []).append(iteration)
    if evaluate is not None:
        state.history.setdefault("frechet", []).append(evaluate(generator))


# --- figures ------------------------------------------------------------------------------------
def latent_walk(generator: Generator, z: np.ndarray, rows: int, steps: int = 10) -> np.ndarray:
    """Rows of images from one noise z: all values fixed but one, which goes from -1 to 1.
    The values walked are the `rows` that change the image most (every value is tried)."""
    z_dim = len(z)
    values = np.linspace(-1, 1, steps, dtype=np.float32)
    trials = np.repeat(z[None], z_dim * 2, axis=0)
    trials[np.arange(z_dim) * 2, np.arange(z_dim)] = -1.0
    trials[np.arange(z_dim) * 2 + 1, np.arange(z_dim)] = 1.0
    ends = generate(generator, trials).reshape(z_dim, 2, -1)
    change = np.abs(ends[:, 0] - ends[:, 1]).mean(1)
    chosen = np.argsort(-change)[:rows]
    walks = np.repeat(z[None], rows * steps, axis=0).reshape(rows, steps, z_dim)
    for row, index in enumerate(chosen):
        walks[row, :, index] = values
    return generate(generator, walks.reshape(-1, z_dim)), chosen


def interpolation(generator: Generator, z_a: np.ndarray, z_b: np.ndarray,
                  steps: int = 10) -> np.ndarray:
    """G((1 - t) z_a + t z_b) for t from 0 to 1, one row per pair (z_a, z_b are (P, z_dim))."""
    t = np.linspace(0, 1, steps, dtype=np.float32)[None, :, None]
    line = (1 - t) * z_a[:, None] + t * z_b[:, None]  # (P, steps, z_dim)
    return generate(generator, line.reshape(-1, z_a.shape[1]))


def nearest_training_images(samples: np.ndarray, train_images: np.ndarray,
                            k: int = 5) -> np.ndarray:
    """Indices (len(samples), k) of the k training images nearest to each sample in pixels."""
    flat_s = samples.reshape(len(samples), -1).astype(np.float64)
    flat_t = train_images.reshape(len(train_images), -1).astype(np.float64)
    distances = (flat_s ** 2).sum(1)[:, None] - 2 * flat_s @ flat_t.T + (flat_t ** 2).sum(1)
    return np.argsort(distances, axis=1)[:, :k]


def plot_training(history: dict, floor: float, path: str) -> None:
    fig, (losses, probs, quality) = plt.subplots(1, 3, figsize=(15, 4.2))
    steps = np.arange(1, len(history["d_loss"]) + 1)
    window = max(1, len(steps) // 50)
    for name, label, colour in (("d_loss", "D loss", "C0"), ("g_loss", "G loss", "C1")):
        losses.plot(steps, history[name], color=colour, alpha=0.2, lw=0.7)
        losses.plot(steps, viz.smooth(history[name], window), color=colour, label=label)
    losses.set(xlabel="iteration", ylabel="loss", title="Losses (faint: each iteration)")
    losses.legend()
    for name, label, colour in (("d_real", "mean D(x), real", "C2"),
                                ("d_fake", "mean D(G(z)), generated", "C3")):
        probs.plot(steps, history[name], color=colour, alpha=0.2, lw=0.7)
        probs.plot(steps, viz.smooth(history[name], window), color=colour, label=label)
    probs.axhline(0.5, color="grey", ls=":", lw=1)
    probs.set(xlabel="iteration", ylabel="probability of 'real'", ylim=(0, 1),
              title="What D believes (0.5: cannot tell)")
    probs.legend()
    iterations, frechet = history["frame_iteration"], history["frechet"]
    quality.plot(iterations, frechet, "o-", color="C4", label="generator (held-out real)")
    quality.axhline(frechet[0], color="C3", ls="--", lw=1,
                    label=f"untrained generator ({frechet[0]:.1f})")
    quality.axhline(floor, color="C2", ls="--", lw=1,
                    label=f"floor: real train vs held-out ({floor:.2f})")
    quality.set_yscale("log")
    quality.set(xlabel="iteration", ylabel="Frechet distance (classifier features)",
                title="Sample quality (lower is better)")
    quality.legend(fontsize=8)
    viz.save_figure(fig, path)


def _labelled_rows(images: np.ndarray, columns: int, row_labels: list[str],
                   column_labels: list[str], title: str, path: str,
                   gaps_after: int | None = None) -> None:
    """A grid of images (rows x columns, value range -1..1) with text labels, via matplotlib."""
    grid = viz.image_grid(images, nrow=columns, padding=2, value_range=(-1, 1))
    rows = len(images) // columns
    tile = images.shape[2] + 2
    fig, axes = plt.subplots(figsize=(1.0 + 0.75 * columns, 0.4 + 0.75 * rows))
    axes.imshow(grid, cmap="gray" if grid.ndim == 2 else None, interpolation="nearest")
    axes.set_yticks([2 + tile * r + tile / 2 - 1 for r in range(rows)], row_labels, fontsize=8)
    axes.set_xticks([2 + tile * c + tile / 2 - 1 for c in range(columns)], column_labels,
                    fontsize=8)
    if gaps_after is not None:
        axes.axvline(2 + tile * gaps_after - 1.5, color="red", lw=2)
    axes.tick_params(length=0)
    axes.set_title(title, fontsize=10)
    viz.save_figure(fig, path)


def write_figures(config: Config, generator: Generator, history: dict, floor: float,
                  fixed_noise: np.ndarray, train_images: np.ndarray) -> None:
    out = config.out_dir
    frames = [viz.image_grid(frame, nrow=8, value_range=(0, 255)) for frame in history["frames"]]
    frames = [(f * 255).astype(np.uint8) for f in frames]
    viz.save_gif(frames, os.path.join(out, "samples.gif"), duration=0.6, scale=2)
    viz.save_grid(history["frames"][-1], os.path.join(out, "samples.png"), nrow=8, scale=2)
    plot_training(history, floor, os.path.join(out, "training_curves.png"))

    walk, chosen = latent_walk(generator, fixed_noise[0], config.walk_rows)
    _labelled_rows(walk, 10, [f"z[{i}]" for i in chosen],
                   [f"{v:+.1f}" for v in np.linspace(-1, 1, 10)],
                   "Latent walk: one noise value from -1 to 1, the other 99 fixed",
                   os.path.join(out, "latent_walk.png"))
    pairs = 5
    line = interpolation(generator, fixed_noise[1:1 + pairs], fixed_noise[1 + pairs:1 + 2 * pairs])
    _labelled_rows(line, 10, [f"pair {p + 1}" for p in range(pairs)],
                   [f"t={t:.2f}" for t in np.linspace(0, 1, 10)],
                   "Interpolation: G((1 - t) z_a + t z_b)", os.path.join(out, "interpolation.png"))
    samples = generate(generator, fixed_noise[:6])
    nearest = nearest_training_images(samples, train_images, k=5)
    rows = np.concatenate([np.concatenate([s[None], train_images[n]])
                           for s, n in zip(samples, nearest)])
    _labelled_rows(rows, 6, [f"sample {i + 1}" for i in range(len(samples))],
                   ["generated"] + [f"nearest {k + 1}" for k in range(5)],
                   "Generated samples and their nearest training images (pixel distance)",
                   os.path.join(out, "nearest.png"), gaps_after=1)


# --- the experiment ----------------------------------------------------------------------------
def run(config: Config) -> dict[str, float]:
    os.makedirs(config.out_dir, exist_ok=True)
    train_images, train_labels, test_images, _ = load_images(config)
    print(f"gan: {len(train_images)} training and {len(test_images)} held-out images "
          f"{train_images.shape[1:]} from {data.source(config.dataset, config.data or None)}")
    feature_net, accuracy = train_feature_net(train_images, train_labels, config)
    held_out = metrics.features_of(feature_net, test_images[:config.eval_images])
    count = len(held_out)  # every distance compares sets of this many images
    floor = metrics.frechet_floor(feature_net, train_images, held_out,
                                  np.random.default_rng([config.seed, 2]))
    print(f"gan: feature classifier accuracy {accuracy:.3f} (held-out training images); "
          f"Frechet floor {floor:.3f} ({count} vs {count} real images)")

    def evaluate(generator: Generator) -> float:
        fake = generate(generator, eval_noise[:count])
        return metrics.feature_frechet_distance(metrics.features_of(feature_net, fake),
                                                held_out)

    eval_noise = build_eval_noise(config)
    generator, _, state, fixed_noise = train(config, train_images, evaluate)
    write_figures(config, generator, state.history, floor, fixed_noise, train_images)
    frechet = state.history["frechet"]
    return {"frechet_distance": float(frechet[-1]), "frechet_floor": float(floor),
            "frechet_untrained": float(frechet[0]),
            "classifier_accuracy": accuracy,
            "final_d_real": float(np.mean(state.history["d_real"][-50:])),
            "final_d_fake": float(np.mean(state.history["d_fake"][-50:]))}


def build_eval_noise(config: Config) -> np.ndarray:
    """The noise for the Frechet distance: its own stream, the same at every checkpoint."""
    return sample_noise(np.random.default_rng([config.seed, 3]), config.eval_images,
                        config.z_dim)


if __name__ == "__main__":
    cli.main(__name__)
