"""Deconvnet: seeing what a convnet's features respond to (Zeiler & Fergus).

Follows the post on visualising a convnet's features. Train a small convnet to classify images,
then ask of one feature map: which pixels of this image made it fire? Zeiler & Fergus answer by
running the net backwards: keep that one feature map, zero every other, and go down to the input
through the layers in reverse -- undo the pooling, rectify, and filter with the same filters
transposed. The result is a picture, in pixel space, of the pattern the feature picked out.
The file is longer than most demos because that one projection is shown several ways (two
unpoolings; the deconvnet next to the gradient and guided backprop) and beside the paper's
occlusion experiment, in eight figures.

The net (the post's; 'same' padding, so 32 -> 16 -> 8 pixels):

    conv 5x5 32, ReLU, max-pool 2  ->  conv 5x5 64, ReLU, max-pool 2  ->  FC 1024, ReLU  ->  10

Projecting feature k of layer L (a_L = the pooled output of layer L; W_l the filters of layer l):

    s = a_L with every map but k set to 0
    for l = L, ..., 1:
        s = unpool(s)                      # switches: each value back where its max came from
                                           # fill: each value copied over its whole 2x2 window
        s = relu(s)                        # rectify the signal going down
        s = conv_transpose(s, W_l)         # the same filters, transposed; biases left out
    picture = s                            # (channels, H, W), shown contrast-stretched

The paper's switches record, at each pooling window, where its maximum was, so the projection
lands back on the exact pixels that won; the post filled the 2x2 window instead, which smears
it. Both run here side by side. Going down is very nearly the gradient: the gradient of a_L[k]
with respect to the pixels takes the same path (the gradient of a max-pool *is* unpooling with
the switches, that of a conv *is* the transposed conv), except at a ReLU, where it passes the
signal only where the *forward input* was positive, while the deconvnet passes it only where the
*signal* is positive. Guided backpropagation (Springenberg et al.) requires both:

    deconvnet   s_below = s * [s > 0]
    gradient    s_below = s * [x > 0]                  (x: the ReLU's input on the way up)
    guided      s_below = s * [s > 0] * [x > 0]

At layer 1 the three give the same picture (the kept map is positive exactly where the ReLU's
input was); they part from layer 2 on, where the signal arrives through transposed filters
with both signs: so one_feature.png shows a layer-2 feature by default.

Beyond the post: the gradient (a saliency map) and guided backprop next to the deconvnet on the
same images, and the paper's occlusion experiment: slide a grey square over the image and map
the probability of the true class at each position: it drops where the evidence was.

Run:  python -m minimal.demos.deconvnet [--quick] [--seed 0] [--dataset digits] [--data PATH]

--data takes CIFAR-10's binary batches (with --dataset shapes) or a folder of MNIST IDX files
(with --dataset digits); the default is the synthetic stand-in, shapes (10 classes of coloured
shapes on busy backgrounds, 32x32 RGB).

Figures (in out_dir; projections are drawn grey = 0, contrast-stretched per picture):
    training.png             training loss and held-out accuracy per epoch
    layer1_features.png      one held-out image and all 32 layer-1 features projected to
                             pixels, by switches (top) and by filling (bottom)
    one_feature.png          one feature across many held-out images: the image, the deconvnet
                             with switches and with filling, the gradient, guided backprop
    top_images_layer1.png    for every layer-1 feature, the held-out image (of a batch) that
                             activates it most, next to that feature's projection
    top_images_layer2.png    the same for the 64 layer-2 features (their larger patterns)
    filters_layer1.png       the 32 learned 5x5 layer-1 filters (each stretched to [0, 1]), and
                             what training changed in them (the filter minus its random start)
    photo.png                a real photograph (matplotlib's sample) through the same
                             projections: layer-1 features by switches and by filling, and its
                             most active layer-2 features
    occlusion.png            per image: the image, p(true class) with a grey square centred at
                             each pixel, and the most probable class there

Metrics: held-out accuracy (and the untrained net's, for scale); the identity check: a layer
whose filters are the identity (a centred 1 in each 5x5 kernel) and whose input has one
non-zero per pooling window; projecting its pooled output back must give the input exactly with
switches (error ~0), while filling copies every value over its window (error sqrt(3) = 1.73).

Settings: the full preset trains on 20000 images for 5 epochs (2000 Adam steps), the quick
preset on 4000 images for 3 epochs; both with Adam 3e-4.

Departures from the original: the post unpooled by filling the 2x2 window and picked the image
to show by argmin of the activation; here switches (the paper) and filling both run, and the
top image is the argmax. Biases are left out of the way down, as in the paper. The net sees
pixels - 0.5 (the post fed [0, 1]) and trains with Adam 3e-4 (the post: 1e-4) for ~2000 steps
rather than the post's 20000, both for the CPU budget: in this budget the post's 1e-4 learns
too slowly, and 1e-3 leaves most layer-2 features dead (never firing). The data are a
synthetic CIFAR stand-in (or synthetic digits) rather than MNIST.

Results (seed 0, shapes, held-out images; occlusion drop: how far p(true class) falls, on
average, where the grey square hides most; silent: layer-2 features that never fire on the
probe images; CPU time at 1 BLAS thread; on synthetic shapes, so no number of the post's is
comparable):
    preset (images, epochs)  accuracy (untrained)  identity error  occlusion  silent  CPU
                                                   switches / fill drop
    quick (4000, 3)          0.381 (0.11)          0 / 1.732       0.32       0/64    42 s
    full (20000, 5)          0.562 (0.10)          0 / 1.732       0.51       12/64   260 s
The full run is not converged (its accuracy still rises by 2-4 points an epoch); its layer-2
features pick out parts: the top edge of an object, a ring's rim.
What the figures show: with switches a projection is sharp, on the pixels that won each pool
(and speckled: each winning pixel stamps a copy of a 5x5 filter); filling spreads every value
over its window and gives smooth blobs at the right place, so the post's pictures were blurred
by its unpooling, not by the net. Guided backprop is the cleanest of the three at layer 2: it
keeps only what both the net's forward pass and the signal's sign agree on. Early in training
the layer-1 filters are still mostly their random start; what training changed in them (the
second panel) is colour blobs: shapes' classes carry some colour, and colour is learned first.
The learning rates tried, other thread counts, a run on digits and the timing records are in
benchmarks/README.md.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import matplotlib
import numpy as np

from minimal import data, nn, optim
from minimal import functional as F
from minimal.app import cli, training, viz
from minimal.autograd import Tensor, no_grad
from minimal.errors import ConfigError, DataError

matplotlib.use("Agg")  # figures go to files; no display needed
import matplotlib.pyplot as plt

DATASETS = ("shapes", "digits")
RULES = ("deconvnet", "gradient", "guided")  # how a projection passes a ReLU going down
UNPOOLS = ("switches", "fill")  # how it undoes a max-pool
KERNEL, PAD, POOL = 5, 2, 2
WIDTHS = (32, 64)  # feature maps of conv layers 1 and 2 (the post's)


@dataclass
class Config:
    seed: int = 0  # seed for every random number in the run
    dataset: str = "shapes"  # shapes (CIFAR-10 stand-in, 32x32 RGB) or digits (MNIST, 28x28)
    data: str = ""  # CIFAR-10 binary batches or MNIST IDX files (empty = synthetic data)
    train_size: int = 20000  # training images
    test_size: int = 2000  # held-out images (accuracy, top images, occlusion)
    epochs: int = 5  # passes over the training images
    batch_size: int = 50  # images per Adam step (the post's)
    lr: float = 3e-4  # Adam step (the post's 1e-4 is slower in a CPU budget, see above)
    hidden: int = 1024  # units of the fully connected layer (the post's)
    layer: int = 2  # layer (1 or 2) of the feature in one_feature.png
    feature: int = -1  # that feature's index; -1 = the most selective one on held-out images
    probe_size: int = 500  # held-out images searched for each feature's top image
    occlusion_images: int = 6  # images in occlusion.png
    occlusion_size: int = 8  # side of the grey square, in pixels
    occlusion_stride: int = 2  # pixels between square centres
    resume: bool = False  # continue from out_dir/checkpoint.npz (same settings; more epochs ok)
    out_dir: str = "outputs/deconvnet"  # where figures and the checkpoint are written

    def __post_init__(self):
        cli.validate(self, counts=("train_size", "test_size", "epochs", "batch_size", "hidden",
                                   "probe_size", "occlusion_images", "occlusion_size",
                                   "occlusion_stride"),
                     positive=("lr",), choices={"dataset": DATASETS, "layer": (1, 2)})
        count = WIDTHS[self.layer - 1]
        if not isinstance(self.feature, int) or not -1 <= self.feature < count:
            raise ConfigError(f"feature (--feature) must be -1 or a layer-{self.layer} feature "
                              f"index from 0 to {count - 1}, got {self.feature!r}")


# quick: a fifth of the images for 3 epochs, fewer probe and occlusion images
QUICK = {"train_size": 4000, "test_size": 1000, "epochs": 3, "probe_size": 300,
         "occlusion_images": 4}

TARGETS = {
    "held_out_accuracy": (">=", 0.32),  # measured 0.381 (untrained 0.11)
    "identity_error_switches": ("<=", 1e-6),  # measured 0
    "silent_features_layer2": ("<=", 8.0),  # measured 0
}


# ===== the convnet ============================================================================

@dataclass
class Trace:
    """What a forward pass leaves for the way down: per conv layer its pre-ReLU output (the
    ReLU masks of the gradient and guided backprop), pooled output and switches."""
    pre: list = field(default_factory=list)  # (N, C_l, H_l, W_l) Tensors before the ReLU
    pooled: list = field(default_factory=list)  # (N, C_l, H_l / 2, W_l / 2) Tensors
    switches: list = field(default_factory=list)  # flat argmax index of each pooling window
    logits: Tensor | None = None  # (N, classes)


class ConvNet(nn.Module):
    """conv 5x5 (same) -> ReLU -> max-pool 2, twice; FC hidden -> ReLU -> FC classes.

    The net sees pixels - centre: zero-centred inputs train faster (benchmarks/README.md); the
    projections come out in pixel units either way, since a constant shift changes no
    derivative and no switch.
    """

    def __init__(self, channels: int, size, rng: np.random.Generator,
                 widths: tuple[int, int] = WIDTHS, hidden: int = 1024, classes: int = 10,
                 centre: float = 0.5):
        super().__init__()
        self.centre = centre
        self.conv1 = nn.Conv2d(channels, widths[0], KERNEL, padding=PAD, rng=rng)
        self.conv2 = nn.Conv2d(widths[0], widths[1], KERNEL, padding=PAD, rng=rng)
        height, width = (size, size) if np.isscalar(size) else size  # of the input images
        self.fc1 = nn.Linear(widths[1] * (height // 4) * (width // 4), hidden, rng=rng)
        self.fc2 = nn.Linear(hidden, classes, rng=rng)

    @property
    def convs(self) -> list[nn.Conv2d]:
        return [self.conv1, self.conv2]

    def trace(self, x: Tensor) -> Trace:
        trace = Trace()
        h = x - self.centre  # (N, C, H, W)
        for conv in self.convs:
            pre = conv(h)  # (N, C_l, H_l, W_l)
            h, switches = F.max_pool2d(pre.relu(), POOL, return_indices=True)
            trace.pre.append(pre)
            trace.pooled.append(h)
            trace.switches.append(switches)
        h = self.fc1(h.reshape(len(h.data), -1)).relu()  # (N, hidden)
        trace.logits = self.fc2(h)  # (N, classes)
        return trace

    def forward(self, x: Tensor) -> Tensor:
        return self.trace(x).logits


# ===== the way down: deconvnet, gradient, guided backprop ====================================

def relu_down(signal: Tensor, pre_activation: Tensor, rule: str) -> Tensor:
    """Pass a ReLU going down. deconvnet: rectify the signal (Zeiler & Fergus). gradient: keep
    it where the ReLU's forward input was positive (the chain rule). guided: both."""
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}; expected one of {RULES}")
    out = signal.relu() if rule in ("deconvnet", "guided") else signal
    if rule in ("gradient", "guided"):
        out = out * Tensor((pre_activation.data > 0).astype(signal.dtype))
    return out


def unpool(signal: Tensor, switches: np.ndarray, size: tuple[int, int], how: str) -> Tensor:
    """Undo a 2x2 max-pool. switches: each value back at its window's max, zeros elsewhere
    (the paper). fill: each value copied over its whole window (the post)."""
    if how == "switches":
        return F.max_unpool2d(signal, switches, POOL, output_size=size)
    if how == "fill":
        filled = F.upsample(signal, POOL)
        return filled[:, :, :size[0], :size[1]]  # an odd side lost its last row when pooled
    raise ValueError(f"unknown unpooling {how!r}; expected one of {UNPOOLS}")


def project_down(model: ConvNet, trace: Trace, seed: np.ndarray, layer: int,
                 rule: str = "deconvnet", unpool_with: str = "switches") -> np.ndarray:
    """Take `seed`, a signal at layer `layer`'s pooled output (N, C_layer, h, w), down to the
    pixels: unpool, ReLU rule, transposed conv with the layer's own filters; repeat to layer 1.
    Returns (N, C_in, H, W)."""
    with no_grad():
        signal = Tensor(seed)
        for depth in range(layer, 0, -1):
            pre = trace.pre[depth - 1]
            signal = unpool(signal, trace.switches[depth - 1], pre.shape[2:], unpool_with)
            signal = relu_down(signal, pre, rule)
            # the same filters transposed: conv_transpose2d is conv2d's adjoint (biases left out)
            signal = F.conv_transpose2d(signal, model.convs[depth - 1].weight, padding=PAD)
    return signal.data


def keep_one_map(trace: Trace, layer: int, features) -> np.ndarray:
    """Layer `layer`'s pooled output with every feature map zeroed but features[i] in image i."""
    pooled = trace.pooled[layer - 1].data
    features = np.broadcast_to(np.asarray(features), (len(pooled),))
    seed = np.zeros_like(pooled)
    rows = np.arange(len(pooled))
    seed[rows, features] = pooled[rows, features]
    return seed


def project(model: ConvNet, images: np.ndarray, layer: int, features,
            rule: str = "deconvnet", unpool_with: str = "switches") -> np.ndarray:
    """Project feature features[i] (or one feature for all) of `layer` in images[i] to pixels."""
    with no_grad():
        trace = model.trace(Tensor(images))
    return project_down(model, trace, keep_one_map(trace, layer, features), layer, rule,
                        unpool_with)


def project_all_features(model: ConvNet, image: np.ndarray, layer: int,
                         rule: str = "deconvnet", unpool_with: str = "switches") -> np.ndarray:
    """Every feature of `layer` in one image (C, H, W): (features, C, H, W)."""
    count = model.convs[layer - 1].weight.shape[0]
    batch = np.repeat(image[None], count, axis=0)
    return project(model, batch, layer, np.arange(count), rule, unpool_with)


# ===== the identity check and occlusion ======================================================

def identity_check(images: np.ndarray) -> dict[str, float]:
    """Relative error of a projection through a layer that should reproduce its input.

    The layer's filters are identities (each output channel copies its input channel through a
    centred 1) and the input keeps only the largest value of each 2x2 window per channel, so
    pooling loses nothing and the switches say where each value was. Switch unpooling must give
    the input back; filling copies each value four times.
    """
    channels = images.shape[1]
    weight = np.zeros((channels, channels, KERNEL, KERNEL), np.float32)
    weight[np.arange(channels), np.arange(channels), PAD, PAD] = 1.0
    n, c, h, w = images.shape
    h2, w2 = h // 2, w // 2
    windows = images[:, :, :2 * h2, :2 * w2].reshape(n, c, h2, 2, w2, 2).transpose(
        0, 1, 2, 4, 3, 5).reshape(n, c, h2, w2, 4)  # each 2x2 window's values in row order
    keep = np.zeros_like(windows)
    first_max = windows.argmax(axis=-1)[..., None]  # the pixel the switch will point at
    np.put_along_axis(keep, first_max, np.take_along_axis(windows, first_max, -1), axis=-1)
    sparse = np.zeros_like(images)
    sparse[:, :, :2 * h2, :2 * w2] = keep.reshape(n, c, h2, w2, 2, 2).transpose(
        0, 1, 2, 4, 3, 5).reshape(n, c, 2 * h2, 2 * w2)
    rng = np.random.default_rng(0)
    model = ConvNet(c, (h, w), rng, widths=(c, c), hidden=1, centre=0.0)
    model.conv1.weight.data[...] = weight
    model.conv1.bias.data[...] = 0
    with no_grad():
        trace = model.trace(Tensor(sparse))
    scale = float(np.linalg.norm(sparse))
    errors = {}
    for how in UNPOOLS:
        back = project_down(model, trace, trace.pooled[0].data, 1, "deconvnet", how)
        errors[how] = float(np.linalg.norm(back - sparse)) / scale
    return errors


def occlusion_maps(model: ConvNet, image: np.ndarray, label: int, size: int, stride: int,
                   fill: float) -> tuple[np.ndarray, np.ndarray]:
    """Slide a fill-coloured size x size square over image (C, H, W), centred every `stride`
    pixels. Returns p(label) at each centre and the most probable class there, both (h, w)."""
    _, height, width = image.shape
    centres_y, centres_x = np.arange(0, height, stride), np.arange(0, width, stride)
    batch = np.repeat(image[None], len(centres_y) * len(centres_x), axis=0)
    half = size // 2
    index = 0
    for cy in centres_y:
        for cx in centres_x:
            batch[index, :, max(0, cy - half):cy - half + size,
                  max(0, cx - half):cx - half + size] = fill
            index += 1
    probs = predict_probs(model, batch)
    shape = (len(centres_y), len(centres_x))
    return probs[:, label].reshape(shape), probs.argmax(axis=1).reshape(shape)


def predict_probs(model: ConvNet, images: np.ndarray, batch: int = 500) -> np.ndarray:
    out = []
    with no_grad():
        for start in range(0, len(images), batch):
            logits = model(Tensor(images[start:start + batch]))
            out.append(F.softmax(logits, axis=1).data)
    return np.concatenate(out)


def accuracy(model: ConvNet, images: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(predict_probs(model, images).argmax(axis=1) == labels))


# ===== data and training =====================================================================

def load_data(config: Config) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train images, train labels, test images, test labels), images (N, C, H, W) in [0, 1]."""
    path = config.data or None
    try:
        if path is not None and not os.path.exists(os.path.expanduser(path)):
            raise FileNotFoundError(f"--data {path}: no such file or folder")
        train_x, train_y = data.load(config.dataset, config.train_size, config.seed, path=path)
        test_x, test_y = data.load(config.dataset, config.test_size, config.seed, path=path,
                                   split="test")
    except (ValueError, FileNotFoundError) as error:
        raise DataError(str(error)) from None
    if len(train_x) < config.batch_size:
        raise DataError(f"{len(train_x)} training images are fewer than one batch of "
                        f"{config.batch_size}")

    def channels_first(images: np.ndarray) -> np.ndarray:
        images = images[:, None] if images.ndim == 3 else images.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(images, dtype=np.float32)

    return channels_first(train_x), train_y, channels_first(test_x), test_y


def build(config: Config, channels: int, size: tuple[int, int]):
    rng = np.random.default_rng(config.seed)
    model = ConvNet(channels, size, rng, hidden=config.hidden)
    adam = optim.Adam(model.parameters(), lr=config.lr)
    # more epochs may be asked of a resumed run: the counters say where it stopped
    state = training.TrainingState("deconvnet", config, {"model": model}, {"adam": adam}, rng,
                                   length=("epochs", "epoch"))
    return rng, model, adam, state


def train(config: Config, train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray,
          test_y: np.ndarray) -> tuple[ConvNet, training.TrainingState, float]:
    """Adam on the cross-entropy, a checkpoint after every epoch. Also returns the held-out
    accuracy of the untrained net (for scale)."""
    rng, model, adam, state = build(config, train_x.shape[1], train_x.shape[2:])
    untrained = accuracy(model, test_x, test_y)  # the same for every run of this seed
    if config.resume:
        state.resume()
    steps = len(train_x) // config.batch_size
    first = state.counters.get("epoch", 0)
    progress = cli.Progress(config.epochs * steps, "step", first=first * steps)
    for epoch in range(first, config.epochs):
        order = rng.permutation(len(train_x))
        losses = []
        for step in range(steps):
            batch = order[step * config.batch_size:(step + 1) * config.batch_size]
            loss = F.cross_entropy(model(Tensor(train_x[batch])), train_y[batch])
            state.check_finite(f"epoch {epoch + 1}, step {step + 1}", loss=loss)
            adam.zero_grad()
            loss.backward()
            adam.step()
            losses.append(float(loss.data))
            progress.update(epoch * steps + step + 1, loss=losses[-1])
        state.history.setdefault("train_loss", []).append(float(np.mean(losses)))
        state.history.setdefault("held_out_accuracy", []).append(
            accuracy(model, test_x, test_y))
        state.counters["epoch"] = epoch + 1
        state.save()
    return model, state, untrained


# ===== figures ===============================================================================

def for_display(pictures: np.ndarray) -> np.ndarray:
    """(N, C, H, W) projections -> (N, H, W, C) in [0, 1]: grey is 0, each picture stretched so
    its largest |value| reaches black or white (the projections' scale means nothing)."""
    peak = np.abs(pictures).max(axis=(1, 2, 3), keepdims=True)
    shown = 0.5 + 0.5 * pictures / np.where(peak > 0, peak, 1)
    return shown.transpose(0, 2, 3, 1)


def as_pictures(images: np.ndarray) -> np.ndarray:
    """(N, C, H, W) images in [0, 1] -> (N, H, W, C)."""
    return images.transpose(0, 2, 3, 1)


def show_grid(axis, pictures: np.ndarray, nrow: int, title: str = "") -> None:
    grid = viz.image_grid(pictures, nrow=nrow, padding=1)
    axis.imshow(grid, cmap="gray" if grid.ndim == 2 else None, vmin=0, vmax=1,
                interpolation="nearest")
    axis.set_xticks([])
    axis.set_yticks([])
    if title:
        axis.set_title(title, fontsize=9)


def interleave(images: np.ndarray, projections: np.ndarray) -> np.ndarray:
    """image 0, projection 0, image 1, projection 1, ... (both (N, H, W, C))."""
    pairs = np.stack([images, projections], axis=1)
    return pairs.reshape((-1,) + images.shape[1:])


def most_selective_feature(trace: Trace, layer: int) -> int:
    """The feature whose strongest response varies most across images: it picks something out,
    rather than firing on everything (brightness) or on nothing (a dead unit)."""
    peaks = trace.pooled[layer - 1].data.max(axis=(2, 3))  # (N, features)
    return int(peaks.std(axis=0).argmax())


def top_images(trace: Trace, layer: int) -> np.ndarray:
    """For each feature of `layer`, the index of the image where it fires most (argmax; the post
    took the argmin)."""
    peaks = trace.pooled[layer - 1].data.max(axis=(2, 3))  # (N, features)
    return peaks.argmax(axis=0)


def figure_layer1_features(model: ConvNet, image: np.ndarray, path: str) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), gridspec_kw={"width_ratios": [1, 4, 4]})
    show_grid(axes[0], as_pictures(image[None]), 1, "held-out image")
    for axis, how in zip(axes[1:], UNPOOLS):
        pictures = for_display(project_all_features(model, image, 1, "deconvnet", how))
        show_grid(axis, pictures, 8, f"its 32 layer-1 features, unpooled by {how}")
    viz.save_figure(fig, path)


def figure_one_feature(model: ConvNet, images: np.ndarray, layer: int, feature: int,
                       path: str) -> None:
    rows = [("image", as_pictures(images))]
    for name, rule, how in (("deconvnet,\nswitches", "deconvnet", "switches"),
                            ("deconvnet,\nfill (post)", "deconvnet", "fill"),
                            ("gradient", "gradient", "switches"),
                            ("guided\nbackprop", "guided", "switches")):
        rows.append((name, for_display(project(model, images, layer, feature, rule, how))))
    fig, axes = plt.subplots(len(rows), 1, figsize=(1.1 * len(images) + 1, 1.25 * len(rows)))
    for axis, (name, pictures) in zip(axes, rows):
        show_grid(axis, pictures, len(images))
        axis.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
    axes[0].set_title(f"layer-{layer} feature {feature} in {len(images)} held-out images",
                      fontsize=10)
    viz.save_figure(fig, path)


def figure_top_images(model: ConvNet, probe: np.ndarray, layer: int, path: str) -> int:
    """Returns how many features never fire on the probe images (dead units: left out)."""
    with no_grad():
        trace = model.trace(Tensor(probe))
    best = top_images(trace, layer)  # (features,)
    peaks = trace.pooled[layer - 1].data.max(axis=(0, 2, 3))
    live = np.flatnonzero(peaks > 0)
    silent = len(best) - len(live)
    projections = project(model, probe[best[live]], layer, live)
    pictures = interleave(as_pictures(probe[best[live]]), for_display(projections))
    columns = 16
    rows = -(-len(pictures) // columns)
    fig, axis = plt.subplots(figsize=(13, 0.85 * rows + 0.8))
    show_grid(axis, pictures, columns, f"each layer-{layer} feature that fires (in index order): "
              f"of {len(probe)} held-out images the one that activates it most, and the feature "
              f"projected to pixels" + (f"\n({silent} of {len(best)} features never fire on "
                                        "these images: not shown)" if silent else ""))
    viz.save_figure(fig, path)
    return silent


def figure_filters(model: ConvNet, initial: np.ndarray, path: str) -> None:
    """The learned layer-1 filters, and what training changed in them (weights minus their
    random start: after a short run the start still dominates the weights themselves)."""
    weight = model.conv1.weight.data  # (32, C, 5, 5)
    low = weight.min(axis=(1, 2, 3), keepdims=True)
    high = weight.max(axis=(1, 2, 3), keepdims=True)
    pictures = ((weight - low) / np.maximum(high - low, 1e-12)).transpose(0, 2, 3, 1)
    fig, axes = plt.subplots(1, 2, figsize=(13, 3.8))
    show_grid(axes[0], pictures, 8, "the 32 learned 5x5 layer-1 filters (each stretched to 0..1)")
    show_grid(axes[1], for_display(weight - initial), 8,
              "what training changed: filter minus its random start (grey = 0)")
    viz.save_figure(fig, path)


def figure_photo(model: ConvNet, photo: np.ndarray, path: str) -> None:
    with no_grad():
        trace = model.trace(Tensor(photo[None]))
    peaks = trace.pooled[1].data[0].max(axis=(1, 2))
    strongest = np.argsort(peaks)[::-1][:8]
    layer2 = project(model, np.repeat(photo[None], len(strongest), 0), 2, strongest)
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.8),
                             gridspec_kw={"width_ratios": [1.2, 4, 4, 2]})
    show_grid(axes[0], as_pictures(photo[None]), 1, "a photograph")
    for axis, how in zip(axes[1:3], UNPOOLS):
        pictures = for_display(project_all_features(model, photo, 1, "deconvnet", how))
        show_grid(axis, pictures, 8, f"layer-1 features, {how}")
    show_grid(axes[3], for_display(layer2), 2, "8 strongest layer-2 features")
    viz.save_figure(fig, path)


def figure_occlusion(model: ConvNet, images: np.ndarray, labels: np.ndarray,
                     class_names: list[str], config: Config, path: str) -> list[float]:
    """Returns, per image, p(true class) unoccluded minus its lowest value under the square."""
    fill = float(images.mean())  # grey: the data's mean level, as the paper's grey square
    count = len(images)
    fig, axes = plt.subplots(count, 3, figsize=(8.4, 2.4 * count), squeeze=False)
    cmap = plt.get_cmap("tab10", len(class_names))
    drops = []
    base = predict_probs(model, images)
    for row, (image, label) in enumerate(zip(images, labels)):
        prob, best = occlusion_maps(model, image, int(label), config.occlusion_size,
                                    config.occlusion_stride, fill)
        drops.append(float(base[row, label] - prob.min()))
        extent = (-0.5, image.shape[2] - 0.5, image.shape[1] - 0.5, -0.5)
        axes[row, 0].imshow(as_pictures(image[None])[0].squeeze(), cmap="gray", vmin=0, vmax=1,
                            interpolation="nearest")
        axes[row, 0].set_title(f"{class_names[label]}  (p = {base[row, label]:.2f})", fontsize=9)
        shown = axes[row, 1].imshow(prob, cmap="inferno", vmin=0, vmax=1, extent=extent,
                                    interpolation="nearest")
        axes[row, 1].set_title(f"p({class_names[label]}), square centred here", fontsize=9)
        fig.colorbar(shown, ax=axes[row, 1], fraction=0.046)
        classes = axes[row, 2].imshow(best, cmap=cmap, vmin=-0.5,
                                      vmax=len(class_names) - 0.5, extent=extent,
                                      interpolation="nearest")
        axes[row, 2].set_title("most probable class", fontsize=9)
        bar = fig.colorbar(classes, ax=axes[row, 2], fraction=0.046,
                           ticks=range(len(class_names)))
        bar.ax.set_yticklabels(class_names, fontsize=6)
        for axis in axes[row]:
            axis.set_xticks([])
            axis.set_yticks([])
    fig.suptitle(f"occlusion: a {config.occlusion_size}x{config.occlusion_size} grey square "
                 "slid over held-out images", fontsize=10)
    viz.save_figure(fig, path)
    return drops


def figure_training(history: dict, untrained: float, path: str) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    epochs = np.arange(1, len(history["train_loss"]) + 1)
    axes[0].plot(epochs, history["train_loss"], marker="o")
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("training cross-entropy")
    axes[1].plot(epochs, history["held_out_accuracy"], marker="o", label="trained")
    axes[1].axhline(untrained, color="grey", linestyle="--", label="untrained")
    axes[1].set_xlabel("epoch")
    axes[1].set_ylabel("held-out accuracy")
    axes[1].legend()
    viz.save_figure(fig, path)


# ===== the demo ==============================================================================

def run(config: Config) -> dict[str, float]:
    os.makedirs(config.out_dir, exist_ok=True)
    train_x, train_y, test_x, test_y = load_data(config)
    model, state, untrained = train(config, train_x, train_y, test_x, test_y)
    out = config.out_dir
    figure_training(state.history, untrained, os.path.join(out, "training.png"))

    probe = test_x[:config.probe_size]
    with no_grad():
        probe_trace = model.trace(Tensor(probe))
    feature = (config.feature if config.feature >= 0
               else most_selective_feature(probe_trace, config.layer))
    figure_layer1_features(model, test_x[0], os.path.join(out, "layer1_features.png"))
    figure_one_feature(model, test_x[:10], config.layer, feature,
                       os.path.join(out, "one_feature.png"))
    silent = [figure_top_images(model, probe, layer,
                                os.path.join(out, f"top_images_layer{layer}.png"))
              for layer in (1, 2)]
    _, start, _, _ = build(config, train_x.shape[1], train_x.shape[2:])  # the same random start
    figure_filters(model, start.conv1.weight.data, os.path.join(out, "filters_layer1.png"))

    side = train_x.shape[2]
    photo = data.sample_photo(side).transpose(2, 0, 1)  # (3, side, side)
    if train_x.shape[1] == 1:
        photo = (np.array([0.299, 0.587, 0.114], np.float32) @ photo.reshape(3, -1)).reshape(
            1, side, side)
    figure_photo(model, np.ascontiguousarray(photo, np.float32),
                 os.path.join(out, "photo.png"))

    class_names = (list(data.SHAPE_CLASSES) if config.dataset == "shapes"
                   else [str(d) for d in range(10)])
    # as in the paper, images the net gets right (and, when there are enough, with p >= 0.5):
    # the map then shows what a clear answer rested on
    probs = predict_probs(model, probe)
    labels = test_y[:len(probe)]
    right = probs.argmax(axis=1) == labels
    sure = np.flatnonzero(right & (probs[np.arange(len(probe)), labels] >= 0.5))
    shown = np.concatenate([sure, np.flatnonzero(right & ~np.isin(np.arange(len(probe)), sure)),
                            np.flatnonzero(~right)])[:config.occlusion_images]
    drops = figure_occlusion(model, test_x[shown], test_y[shown], class_names, config,
                             os.path.join(out, "occlusion.png"))

    identity = identity_check(test_x[:8])
    return {
        "held_out_accuracy": state.history["held_out_accuracy"][-1],
        "untrained_accuracy": untrained,
        "identity_error_switches": identity["switches"],
        "identity_error_fill": identity["fill"],
        "occlusion_mean_drop": float(np.mean(drops)),
        "silent_features_layer1": float(silent[0]),
        "silent_features_layer2": float(silent[1]),
        "feature_shown": float(feature),
    }


if __name__ == "__main__":
    cli.main(__name__)
