"""A sample-quality number for generative demos: the Frechet distance on a classifier's features.

FID (Heusel et al., 2017) fits a Gaussian to Inception-v3 features of real images and another
to those of generated images, and reports the distance between the two Gaussians. Nothing is
downloaded here, so a small classifier is trained on the demo's own training images instead
(on their labels when there are any, else on which of four quarter turns was applied to each
image) and its penultimate layer gives the features. With mean m and covariance S of each set::

    FD = |m_a - m_b|^2 + tr(S_a + S_b - 2 (S_a^1/2 S_b S_a^1/2)^1/2)

It is 0 for identical statistics and symmetric in the two sets. A number alone means little,
so a demo reports it next to the floor: real training images against held-out real ones, as
many of each, which is what sampling noise alone gives. The numbers are not comparable with
published FIDs (other features, other images).

Use (images (N, C, S, S) in [-1, 1], S a power of 2 from 8 up; labels int64 or None)::

    net, accuracy = train_feature_net(train, labels, seed=0, epochs=3,
                                      cache_path="outputs/gan/feature_net.npz",
                                      source={"dataset": "digits", "data": ""})
    held_out = features_of(net, test_images)
    floor = frechet_floor(net, train, held_out, np.random.default_rng([0, 2]))
    score = feature_frechet_distance(features_of(net, generated), held_out)

The classifier's weights are cached at cache_path under a key naming what they depend on: the
`source` description, the seed, the number of training images, the epochs, a hash of a sample
of the images, and the BLAS thread count (float32 sums round differently with another count,
so a classifier trained with one would give other distances than a fresh run with another).
A cache with another key, or a damaged one, is trained afresh and overwritten.
"""

from __future__ import annotations

import hashlib
import json
import math
import os

import numpy as np

from minimal import functional as F
from minimal import nn, optim
from minimal.app import files
from minimal.autograd import Tensor, no_grad
from minimal.kernels import threads


class FeatureNet(nn.Module):
    """A small classifier whose penultimate layer gives the features for the Frechet distance.

    conv 5x5 s2 32 -> 64 -> 128 (-> 256 for 64x64), each with batch norm and ReLU, then the
    average over positions (the features, as FID takes Inception's pooled features), then
    linear to the classes.
    """

    def __init__(self, channels: int, size: int, classes: int, rng: np.random.Generator):
        super().__init__()
        layers = int(math.log2(size // 4))
        convs, norms, c_in, c_out = [], [], channels, 32
        for _ in range(layers):
            convs.append(nn.Conv2d(c_in, c_out, 5, 2, 2, bias=False, rng=rng))
            norms.append(nn.BatchNorm2d(c_out))
            c_in, c_out = c_out, 2 * c_out
        self.convs = nn.ModuleList(convs)
        self.norms = nn.ModuleList(norms)
        self.features_dim = c_in
        self.out = nn.Linear(c_in, classes, rng=rng)

    def features(self, x: Tensor) -> Tensor:
        h = x
        for conv, norm in zip(self.convs, self.norms):
            h = F.relu(norm(conv(h)))  # (B, C, H/2, W/2)
        return h.mean(axis=(2, 3))  # (B, 128): pooled over the 4x4 positions

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.features(x))  # (B, classes)


def rotation_task(images: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """For unlabelled images: each image turned by k quarter turns, k the label (0-3)."""
    turns = rng.integers(0, 4, len(images))
    rotated = np.empty_like(images)
    for k in range(4):
        rotated[turns == k] = np.rot90(images[turns == k], k, axes=(2, 3))
    return rotated, turns


def feature_net_key(train: np.ndarray, seed: int, epochs: int, source: dict) -> str:
    """What a cached classifier depends on, as JSON: the `source` entries (where the images
    came from), the seed, the number of images, the epochs, a hash of every (N // 500)-th
    image, and the BLAS thread count."""
    digest = hashlib.sha256(np.ascontiguousarray(train[:: max(1, len(train) // 500)]).tobytes())
    return json.dumps({**source, "seed": seed, "n": len(train), "epochs": epochs,
                       "images": digest.hexdigest()[:16], "blas_threads": threads.THREADS})


def train_feature_net(train: np.ndarray, labels: np.ndarray | None, seed: int, epochs: int,
                      cache_path: str | None = None, source: dict | None = None,
                      ) -> tuple[FeatureNet, float]:
    """Train the classifier (or load it from cache_path when its key matches) on the first
    nine tenths of `train`; returns it in evaluation mode and its accuracy on the training
    task measured on the last tenth. Adam 2e-3, batches of 64, its own random stream from
    [seed, 1]; labels None: the quarter-turn task."""
    key = feature_net_key(train, seed, epochs, source or {})
    channels, size = train.shape[1], train.shape[2]
    rng = np.random.default_rng([seed, 1])  # its own stream: caching changes nothing else
    classes = 4 if labels is None else int(max(labels.max() + 1, 10))
    net = FeatureNet(channels, size, classes, rng)
    if cache_path and os.path.isfile(cache_path):
        try:
            arrays = files.load_arrays(cache_path)
            if str(arrays.pop("key", "")) == key:
                accuracy = float(arrays.pop("accuracy"))
                net.load_state_dict(arrays)
                return net.eval(), accuracy
        except (ValueError, KeyError):
            pass  # damaged or from other settings: train afresh and overwrite it
    split = len(train) - max(1, len(train) // 10)
    adam = optim.Adam(net.parameters(), lr=2e-3)
    for _ in range(epochs):
        order = rng.permutation(split)
        for start in range(0, split - 63, 64):
            index = order[start:start + 64]
            x, y = ((train[index], labels[index]) if labels is not None
                    else rotation_task(train[index], rng))
            loss = F.cross_entropy(net(Tensor(x)), y)
            adam.zero_grad()
            loss.backward()
            adam.step()
    x, y = ((train[split:], labels[split:]) if labels is not None
            else rotation_task(train[split:], rng))
    net.eval()
    with no_grad():
        accuracy = float((net(Tensor(x)).data.argmax(1) == y).mean())
    if cache_path:
        files.save_arrays(cache_path, {**net.state_dict(), "key": np.array(key),
                                       "accuracy": np.array(accuracy)})
    return net.eval(), accuracy


def features_of(net: FeatureNet, images: np.ndarray, batch: int = 500) -> np.ndarray:
    """The classifier's pooled features of images, (N, features) in float64."""
    with no_grad():
        return np.concatenate([net.features(Tensor(images[i:i + batch])).data
                               for i in range(0, len(images), batch)]).astype(np.float64)


def _symmetric_sqrt(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def frechet_distance(mean_a: np.ndarray, cov_a: np.ndarray, mean_b: np.ndarray,
                     cov_b: np.ndarray) -> float:
    """|m_a - m_b|^2 + tr(S_a + S_b - 2 (S_a^1/2 S_b S_a^1/2)^1/2): the 2-Wasserstein distance
    squared between two Gaussians. The symmetric form needs only eigendecompositions of
    symmetric matrices (no complex parts, unlike sqrtm(S_a S_b))."""
    root_a = _symmetric_sqrt(cov_a)
    middle = root_a @ cov_b @ root_a
    cross = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum()
    return float(np.sum((mean_a - mean_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * cross)


def feature_frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """The Frechet distance between Gaussians fitted to two feature sets (rows are samples)."""
    return frechet_distance(features_a.mean(0), np.cov(features_a, rowvar=False),
                            features_b.mean(0), np.cov(features_b, rowvar=False))


def frechet_floor(net: FeatureNet, train: np.ndarray, held_out: np.ndarray,
                  rng: np.random.Generator) -> float:
    """The distance between as many training images as there are held-out feature rows (drawn
    without replacement by rng; all of them when there are fewer) and the held-out features:
    what two sets of real images of this size score, the best a generator can hope for."""
    count = len(held_out)
    real_train = features_of(net, train[rng.choice(len(train), min(count, len(train)),
                                                   replace=False)])
    return feature_frechet_distance(real_train, held_out)
