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
    one_feature.png          one layer-2 feature in the 10 held-out images (of a batch) that
                             activate it most: the image, the deconvnet with switches and with
                             filling, the gradient, guided backprop; on shapes the feature is the
                             one whose projections fall most on the objects
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
On shapes, whose generator knows each object's mask, how much a projection falls on the object:

    on-object ratio = (share of sum |projection| on the mask) / (share of the image the mask is)

1 is a projection spread evenly over the image (or no better placed than that), 1 / (mask
share) (about 5 here) one wholly on the object. It is averaged over the features of
top_images_layer2.png (each in its top image, deconvnet with switches); the same for layer 1,
and for the feature of one_feature.png over its 10 images (picked for a high ratio, so not an
average over features).

Settings: the full preset draws 60000 training images and takes 3 epochs of batch 50 (3600
Adam steps, ~10 min of one core), the quick preset 4000 images for 3 epochs (240 steps). Adam's
step rises from 0 to 1e-3 over the first 5% of the steps, then falls to 0 by half a cosine.

Departures from the original: the post unpooled by filling the 2x2 window and picked the image
to show by argmin of the activation; here switches (the paper) and filling both run, and the
top image is the argmax. Biases are left out of the way down, as in the paper. Training is
shorter than the post's 20000 steps of Adam 1e-4 and set for a CPU budget: Adam 1e-3 with the
warm-up and cosine above; the input standardised per channel (the post fed [0, 1]); the ReLU
layers He-initialised, except that the layer-1 filters start at a tenth of that scale. That
last one is for the pictures: every projection ends in those filters, and filters that stay
close to their random start (at He's scale they do, after thousands of steps) stamp speckle
over every projection. The data are a synthetic CIFAR stand-in (or synthetic digits) rather
than MNIST. The architecture is the post's.

Results (shapes, held-out images; ratio: on-object ratio of layer 2 (layer 1); shown: of the
feature in one_feature.png; occlusion drop: how far p(true class) falls, on average, where the
grey square hides most; silent: layer-2 features that never fire on the probe images; user
CPU time at 1 BLAS thread, data and figures included; on synthetic shapes, so no number of the
post's is comparable):
    preset (images, epochs)  seed  accuracy (untrained)  ratio        shown  occlusion  silent CPU
    quick (4000, 3)          0     0.413 (0.08)          1.94 (2.52)  4.03   0.45       0/64   46 s
                             1     0.385 (0.10)          1.90 (2.73)  4.48   0.29       0/64   46 s
                             2     0.400 (0.10)          1.92 (2.14)  3.36   0.44       0/64   52 s
      the same, layer-1 filters started at He's scale
                             0     0.382 (0.08)          1.07 (0.97)  3.13   0.44       0/64   43 s
    full (60000, 3)          0     0.855 (0.09)          2.28 (2.25)  3.48   0.64       0/64  537 s
                             1     0.857 (0.10)          2.55 (1.71)  4.23   0.86       1/64  576 s
The full runs' accuracy by epoch: 0.741, 0.832, 0.855 (seed 0) and 0.715, 0.833, 0.857 (seed
1): nearly flat at the end, where a longer run (4800 steps) also stopped, at 0.854. The identity
error is 0 with switches and 1.732 with filling in every run.
What the figures show (full preset, seed 0): one_feature.png's layer-2 feature fires on the
upper rim of an object: in each of its 10 images the projection traces the top edge of the
heart, hexagon or arrow as a colour-opposed band and leaves the background grey. In
top_images_layer2.png 41% of a projection's magnitude falls, on average, on an object that
covers 20% of the image; many projections are edges and arcs of the object's outline (a ring's
rim, a crescent's arc, a triangle's side), others lie on background stripes or checks (5 of the
64 features put less on the object than an even spread would). Layer 1's projections trace
outlines too (a ring, a hexagon, a cross) beside some textures, and its learned filters are
colour-opposed edges and bars. Seed 1's feature shown fires on yellow objects; its projections
cover the star or square, striped inside by the layer-1 filters. With the quick preset's 240
steps the feature shown responds to objects of one colour (orange-yellow for seed 0, yellow for
seed 1) and its projections are their silhouettes (triangles, crescents, a ring, a cross, a
star), clearest with filling and guided backprop; for seed 2 they are blobs on the objects with
some spill onto background stripes. Layer 2's top images are a mix of edges and textures after
so few steps.
With switches a projection is sharp, on the pixels that won each pool; filling spreads every
value over its window and gives a smooth band or silhouette at the same place, so the post's
blur came from its unpooling, not from the net. The gradient is the noisiest of the three
rules, guided backprop and the deconvnet look alike at this depth.
The settings tried (learning rates, schedules, initialisations, augmentation, dropout, data
sizes), other thread counts, a run on digits and the timing records are in benchmarks/README.md.
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
SHOWN_IMAGES = 10  # images in one_feature.png: the ones that activate its feature most
FIRST_FILTERS_START = 0.1  # layer-1 filters start at this fraction of He's scale (ConvNet)


@dataclass
class Config:
    seed: int = 0  # seed for every random number in the run
    dataset: str = "shapes"  # shapes (CIFAR-10 stand-in, 32x32 RGB) or digits (MNIST, 28x28)
    data: str = ""  # CIFAR-10 binary batches or MNIST IDX files (empty = synthetic data)
    train_size: int = 60000  # training images
    test_size: int = 2000  # held-out images (accuracy, top images, occlusion)
    epochs: int = 3  # passes over the training images
    batch_size: int = 50  # images per Adam step (the post's)
    lr: float = 1e-3  # Adam's largest step (the post's 1e-4 is slow in a CPU budget)
    warmup: float = 0.05  # share of the steps over which the step rises from 0 to lr
    hidden: int = 1024  # units of the fully connected layer (the post's)
    layer: int = 2  # layer (1 or 2) of the feature in one_feature.png
    feature: int = -1  # that feature's index; -1 = the one whose projections fall most on the
    #                    objects (shapes), else the most selective one (see run)
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
                     positive=("lr",), fractions=("warmup",),
                     choices={"dataset": DATASETS, "layer": (1, 2)})
        count = WIDTHS[self.layer - 1]
        if not isinstance(self.feature, int) or not -1 <= self.feature < count:
            raise ConfigError(f"feature (--feature) must be -1 or a layer-{self.layer} feature "
                              f"index from 0 to {count - 1}, got {self.feature!r}")


# quick: a fifth of the images for 3 epochs, fewer probe and occlusion images
QUICK = {"train_size": 4000, "test_size": 1000, "epochs": 3, "probe_size": 300,
         "occlusion_images": 4}

TARGETS = {
    "held_out_accuracy": (">=", 0.34),  # measured 0.385-0.413, seeds 0-2 (untrained 0.08-0.10)
    "identity_error_switches": ("<=", 1e-6),  # measured 0
    "silent_features_layer2": ("<=", 8.0),  # measured 0
    "projection_on_object_ratio": (">=", 1.6),  # measured 1.90-1.94
    "projection_on_object_ratio_feature_shown": (">=", 2.5),  # measured 3.36-4.48
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

    The net sees (pixels - centre) / scale per channel (train() passes the training images'
    mean and standard deviation): standardised inputs train faster. The projections come out in
    pixel units all the same: a shift changes no derivative and no switch, and project_down
    divides by the scale on the way out. The ReLU layers start He-normal (biases 0), which keeps
    the size of their outputs from layer to layer.
    """

    def __init__(self, channels: int, size, rng: np.random.Generator,
                 widths: tuple[int, int] = WIDTHS, hidden: int = 1024, classes: int = 10,
                 centre=0.5, scale=1.0):
        super().__init__()
        self.register_buffer("centre", np.broadcast_to(np.asarray(centre, np.float32),
                                                       (channels,)).reshape(1, -1, 1, 1).copy())
        self.register_buffer("scale", np.broadcast_to(np.asarray(scale, np.float32),
                                                      (channels,)).reshape(1, -1, 1, 1).copy())
        self.conv1 = nn.Conv2d(channels, widths[0], KERNEL, padding=PAD, rng=rng)
        self.conv2 = nn.Conv2d(widths[0], widths[1], KERNEL, padding=PAD, rng=rng)
        height, width = (size, size) if np.isscalar(size) else size  # of the input images
        self.fc1 = nn.Linear(widths[1] * (height // 4) * (width // 4), hidden, rng=rng)
        self.fc2 = nn.Linear(hidden, classes, rng=rng)
        for layer in (self.conv1, self.conv2, self.fc1):  # He: each ReLU layer keeps its scale
            layer.weight.data[...] = nn.kaiming_normal(layer.weight.shape, rng)
            layer.bias.data[...] = 0
        self.conv1.weight.data *= FIRST_FILTERS_START  # so that the learned filters show

    @property
    def convs(self) -> list[nn.Conv2d]:
        return [self.conv1, self.conv2]

    def trace(self, x: Tensor) -> Trace:
        trace = Trace()
        h = (x - Tensor(self.centre)) * Tensor(1 / self.scale)  # (N, C, H, W)
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
    return signal.data / model.scale  # through the input's scaling (its adjoint)


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


def object_ratio(projections: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """How much more of a projection's magnitude falls on the object than chance would put
    there: (sum of |projection| on the mask / sum of |projection|) / (mask area / image area),
    per image, for projections (N, C, H, W) and masks (N, H, W) in [0, 1] (soft at the edge).
    1 means no better than a projection spread evenly over the image; 1 / (mask's share) is
    every bit of it on the object."""
    magnitude = np.abs(projections).sum(axis=1)  # (N, H, W)
    on_object = (magnitude * masks).sum(axis=(1, 2)) / np.maximum(magnitude.sum(axis=(1, 2)),
                                                                  1e-30)
    share = masks.mean(axis=(1, 2))
    return on_object / np.maximum(share, 1e-30)


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

def object_masks(config: Config, count: int) -> np.ndarray | None:
    """The first `count` held-out images' object masks (N, H, W) in [0, 1] when the images are
    the synthetic shapes (which know where their object is), else None."""
    if config.dataset != "shapes" or data.source("shapes", config.data or None) != "synthetic":
        return None
    return data.shapes(count, config.seed, split="test", masks=True)[2]


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


def build(config: Config, channels: int, size: tuple[int, int], centre=0.5, scale=1.0):
    rng = np.random.default_rng(config.seed)
    model = ConvNet(channels, size, rng, hidden=config.hidden, centre=centre, scale=scale)
    adam = optim.Adam(model.parameters(), lr=config.lr)
    # more epochs may be asked of a resumed run: the counters say where it stopped (the
    # learning rate's schedule then spans the new length)
    state = training.TrainingState("deconvnet", config, {"model": model}, {"adam": adam}, rng,
                                   length=("epochs", "epoch"))
    return rng, model, adam, state


def train(config: Config, train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray,
          test_y: np.ndarray) -> tuple[ConvNet, training.TrainingState, float]:
    """Adam on the cross-entropy, a checkpoint after every epoch. Also returns the held-out
    accuracy of the untrained net (for scale)."""
    # per-channel mean and standard deviation of the training images: the net standardises
    centre, scale = train_x.mean(axis=(0, 2, 3)), train_x.std(axis=(0, 2, 3))
    rng, model, adam, state = build(config, train_x.shape[1], train_x.shape[2:], centre, scale)
    untrained = accuracy(model, test_x, test_y)  # the same for every run of this seed
    if config.resume:
        state.resume()
    steps = len(train_x) // config.batch_size
    total = config.epochs * steps
    first = state.counters.get("epoch", 0)
    progress = cli.Progress(config.epochs * steps, "step", first=first * steps)
    for epoch in range(first, config.epochs):
        order = rng.permutation(len(train_x))
        losses = []
        for step in range(steps):
            batch = order[step * config.batch_size:(step + 1) * config.batch_size]
            adam.lr = learning_rate(config, epoch * steps + step, total)
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


def learning_rate(config: Config, step: int, total: int) -> float:
    """Adam's step at `step` of `total`: a linear rise from 0 over the first `warmup` share of
    the steps, then half a cosine from lr down to 0 at the end."""
    rising = config.warmup * total
    if step < rising:
        return config.lr * (step + 1) / rising
    done = (step - rising) / max(total - rising, 1)
    return config.lr * 0.5 * (1 + np.cos(np.pi * done))


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


def most_on_object_feature(model: ConvNet, trace: Trace, probe: np.ndarray, masks: np.ndarray,
                           layer: int, count: int) -> int:
    """The feature whose projections fall most on the object: the highest object_ratio,
    averaged over the `count` probe images that activate it most."""
    peaks = trace.pooled[layer - 1].data.max(axis=(0, 2, 3))  # (features,)
    scores = np.full(len(peaks), -np.inf)
    for feature in np.flatnonzero(peaks > 0):  # features that never fire are left out
        images = strongest_images(trace, layer, feature, count)
        scores[feature] = object_ratio(project(model, probe[images], layer, feature),
                                       masks[images]).mean()
    return int(scores.argmax())


def strongest_images(trace: Trace, layer: int, feature: int, count: int) -> np.ndarray:
    """The `count` images where `feature` fires most, strongest first."""
    peaks = trace.pooled[layer - 1].data[:, feature].max(axis=(1, 2))  # (N,)
    return np.argsort(-peaks, kind="stable")[:count]


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
                       searched: int, chosen: str, path: str) -> None:
    """chosen: how the feature was picked (a line under the title)."""
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
    axes[0].set_title(f"layer-{layer} feature {feature} in the {len(images)} held-out images "
                      f"(of {searched}) that activate it most\n{chosen}", fontsize=10)
    viz.save_figure(fig, path)


def top_image_projections(model: ConvNet, trace: Trace, probe: np.ndarray, layer: int):
    """For each feature of `layer` that fires on the probe images: its index, its top image's
    index, and its projection in that image (deconvnet, switches)."""
    best = top_images(trace, layer)  # (features,)
    peaks = trace.pooled[layer - 1].data.max(axis=(0, 2, 3))
    live = np.flatnonzero(peaks > 0)
    return live, best[live], project(model, probe[best[live]], layer, live)


def figure_top_images(probe: np.ndarray, best: np.ndarray, projections: np.ndarray,
                      count: int, layer: int, path: str) -> None:
    """best, projections: from top_image_projections; count: the layer's features."""
    silent = count - len(best)
    pictures = interleave(as_pictures(probe[best]), for_display(projections))
    columns = 16
    rows = -(-len(pictures) // columns)
    fig, axis = plt.subplots(figsize=(13, 0.85 * rows + 0.8))
    show_grid(axis, pictures, columns, f"each layer-{layer} feature that fires (in index order): "
              f"of {len(probe)} held-out images the one that activates it most, and the feature "
              f"projected to pixels" + (f"\n({silent} of {count} features never fire on "
                                        "these images: not shown)" if silent else ""))
    viz.save_figure(fig, path)


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
    masks = object_masks(config, len(probe))  # (N, H, W), or None when there are none
    with no_grad():
        probe_trace = model.trace(Tensor(probe))
    if config.feature >= 0:
        feature, chosen = config.feature, "(the feature asked for)"
    elif masks is not None:
        feature = most_on_object_feature(model, probe_trace, probe, masks, config.layer,
                                         SHOWN_IMAGES)
        chosen = "(of all its layer's features, the one whose projections fall most on the object)"
    else:
        feature = most_selective_feature(probe_trace, config.layer)
        chosen = "(the one whose strongest response varies most across images)"
    figure_layer1_features(model, test_x[0], os.path.join(out, "layer1_features.png"))
    strongest = strongest_images(probe_trace, config.layer, feature, SHOWN_IMAGES)
    figure_one_feature(model, probe[strongest], config.layer, feature, len(probe), chosen,
                       os.path.join(out, "one_feature.png"))
    silent, ratios = [], []
    for layer in (1, 2):
        live, best, projections = top_image_projections(model, probe_trace, probe, layer)
        count = model.convs[layer - 1].weight.shape[0]
        figure_top_images(probe, best, projections, count, layer,
                          os.path.join(out, f"top_images_layer{layer}.png"))
        silent.append(count - len(live))
        if masks is not None:
            ratios.append(float(object_ratio(projections, masks[best]).mean()))
    if masks is not None:  # the feature in one_feature.png (chosen for this when feature = -1)
        ratios.append(float(object_ratio(project(model, probe[strongest], config.layer, feature),
                                         masks[strongest]).mean()))
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
        **({"projection_on_object_ratio": ratios[1],
            "projection_on_object_ratio_layer1": ratios[0],
            "projection_on_object_ratio_feature_shown": ratios[2]} if ratios else {}),
        "silent_features_layer1": float(silent[0]),
        "silent_features_layer2": float(silent[1]),
        "feature_shown": float(feature),
    }


if __name__ == "__main__":
    cli.main(__name__)
