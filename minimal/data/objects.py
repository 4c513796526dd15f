"""Coloured shapes on busy backgrounds, a stand-in for CIFAR-10: 32x32 RGB, ten classes.

Each image holds one object of its class (`SHAPE_CLASSES`) at a random size, rotation, position
and colour, lit by a soft gradient, over a textured or graded background (stripes, checks,
clouds, linear or radial gradients), with a few small distractor blobs and sensor noise. Objects
can run off the edge, colours can be close to the background's: like CIFAR, most images are easy
and some are hard. Shapes are drawn from signed distance functions, anti-aliased, all vectorised.

As in CIFAR (green frogs, planes on sky), colour and background carry some of the class: half
the objects take their class's usual hue and 40% of the backgrounds their class's usual style,
so even a linear model does better than chance while the shape itself is what decides.
"""

from __future__ import annotations

import numpy as np

from . import _draw
from ._cache import block_rngs

SIZE = 32
BLOCK = 512
SHAPE_CLASSES = ("circle", "triangle", "square", "hexagon", "star", "cross", "heart",
                 "crescent", "ring", "arrow")

def _f32(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


_ARROW = np.array([(-0.95, -0.28), (0.15, -0.28), (0.15, -0.7), (0.95, 0), (0.15, 0.7),
                   (0.15, 0.28), (-0.95, 0.28)], dtype=np.float32)


def shape_sdf(kind: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Signed distance of a unit-sized shape (about radius 1) at local coordinates (u, v)."""
    if kind == "circle":
        return _draw.sd_circle(u, v, 0.9)
    if kind == "triangle":
        return _draw.sd_polygon(u, v + 0.2, _draw.regular_polygon(3, 1.15))
    if kind == "square":
        return _draw.sd_box(u, v, 0.75, 0.75)
    if kind == "hexagon":
        return _draw.sd_polygon(u, v, _draw.regular_polygon(6, 0.95))
    if kind == "star":
        return _draw.sd_polygon(u, v + 0.05, _draw.regular_polygon(5, 1.05, star_inner=0.45))
    if kind == "cross":
        return np.minimum(_draw.sd_box(u, v, 0.9, 0.27), _draw.sd_box(u, v, 0.27, 0.9))
    if kind == "heart":
        return _draw.sd_heart(u, v + 0.05, 1.65)
    if kind == "crescent":
        return np.maximum(_draw.sd_circle(u, v, 0.95), -_draw.sd_circle(u - 0.5, v - 0.15, 0.8))
    if kind == "ring":
        return np.abs(_draw.sd_circle(u, v, 0.72)) - 0.22
    if kind == "arrow":
        return _draw.sd_polygon(u, v, _ARROW)
    raise ValueError(f"unknown shape {kind!r}; expected one of {SHAPE_CLASSES}")


# Each class's usual object hue and background style (0 linear, 1 radial, 2 stripes, 3 checks,
# 4 clouds): the "context" that makes CIFAR's classes partly guessable from colour alone.
CLASS_HUES = np.array([0.0, 0.12, 0.6, 0.33, 0.15, 0.95, 0.9, 0.55, 0.05, 0.75])
CLASS_STYLES = np.array([0, 4, 2, 1, 1, 3, 0, 4, 2, 3])


def _backgrounds(rng: np.random.Generator, batch: int, labels: np.ndarray) -> np.ndarray:
    """Textured or graded backgrounds (B, 32, 32, 3): one of five styles per image."""
    ys, xs = _draw.pixel_grid(SIZE, SIZE)
    ys, xs = ys / SIZE - 0.5, xs / SIZE - 0.5
    hue = rng.random(batch)
    first = _draw.hsv_to_rgb(hue, rng.uniform(0, 0.8, batch), rng.uniform(0.15, 1, batch))
    second = _draw.hsv_to_rgb(hue + rng.normal(0, 0.15, batch), rng.uniform(0, 0.8, batch),
                              rng.uniform(0.15, 1, batch))
    angle = _f32(rng.uniform(0, 2 * np.pi, (batch, 1, 1)))
    along = np.cos(angle) * xs + np.sin(angle) * ys
    typical = rng.random(batch) < 0.4
    style = np.where(typical, CLASS_STYLES[labels], rng.integers(0, 5, batch))[:, None, None]
    frequency = _f32(rng.uniform(3, 9, (batch, 1, 1)))
    linear = along + 0.5
    radial = np.hypot(xs - _f32(rng.uniform(-0.4, 0.4, (batch, 1, 1))),
                      ys - _f32(rng.uniform(-0.4, 0.4, (batch, 1, 1)))) * 1.4
    stripes = 0.5 + 0.5 * np.sin(2 * np.pi * frequency * along)
    across = -np.sin(angle) * xs + np.cos(angle) * ys
    checks = ((np.floor(frequency * along) + np.floor(frequency * across)) % 2).astype(np.float32)
    clouds = _draw.smooth_noise(rng, batch, SIZE, SIZE, cells=4)
    mix = np.select([style == 0, style == 1, style == 2, style == 3], [linear, radial, stripes,
                    checks], clouds)
    mix = np.clip(mix, 0, 1).astype(np.float32)[..., None]
    return (first[:, None, None] * (1 - mix) + second[:, None, None] * mix).astype(np.float32)


def _block(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    labels = rng.integers(0, len(SHAPE_CLASSES), BLOCK)
    images = _backgrounds(rng, BLOCK, labels)
    ys, xs = _draw.pixel_grid(SIZE, SIZE)
    # Distractors first, so the object is never hidden behind them.
    for _ in range(3):
        present = rng.random(BLOCK) < 0.35
        cy, cx = (_f32(rng.uniform(0, SIZE, (BLOCK, 1, 1))) for _ in range(2))
        radius = _f32(rng.uniform(1.0, 3.0, (BLOCK, 1, 1)))
        blob = _draw.coverage(_draw.sd_circle(xs - cx, ys - cy, radius)) * present[:, None, None]
        colour = _draw.hsv_to_rgb(rng.random(BLOCK), rng.random(BLOCK), rng.random(BLOCK))
        images = _draw.composite(images, blob, colour[:, None, None])
    size = _f32(rng.uniform(6.5, 13.0, (BLOCK, 1, 1)))
    cx = SIZE / 2 + _f32(rng.normal(0, 3.5, (BLOCK, 1, 1)))
    cy = SIZE / 2 + _f32(rng.normal(0, 3.5, (BLOCK, 1, 1)))
    quarter_turns = rng.integers(0, 4, (BLOCK, 1, 1)).astype(np.float32)
    angle = _f32(rng.uniform(-0.5, 0.5, (BLOCK, 1, 1))) + quarter_turns * np.float32(np.pi / 2)
    aspect = np.exp(_f32(rng.normal(0, 0.08, (BLOCK, 1, 1))))
    u, v = _draw.rotate(xs - cx, ys - cy, angle)
    u, v = u / (size * aspect), v * aspect / size
    alpha = np.zeros((BLOCK, SIZE, SIZE), np.float32)
    for index, kind in enumerate(SHAPE_CLASSES):
        members = labels == index
        if members.any():
            sdf = shape_sdf(kind, u[members], v[members]) * size[members]
            alpha[members] = _draw.coverage(sdf)
    # Object colour: the class's usual hue half the time, else any; lit from a random side.
    usual = (CLASS_HUES[labels] + rng.normal(0, 0.04, BLOCK)) % 1.0
    hue = np.where(rng.random(BLOCK) < 0.5, usual, rng.random(BLOCK))
    colour = _draw.hsv_to_rgb(hue, rng.uniform(0.25, 1, BLOCK),
                              rng.uniform(0.35, 1, BLOCK))
    light = _f32(rng.uniform(0, 2 * np.pi, (BLOCK, 1, 1)))
    shade = 1 + 0.35 * (np.cos(light) * (xs - cx) + np.sin(light) * (ys - cy)) / size
    painted = np.clip(colour[:, None, None] * shade[..., None], 0, 1)
    images = images * (1 - alpha[..., None]) + painted * alpha[..., None]
    images = images + rng.normal(0, 0.025, images.shape).astype(np.float32)
    return (np.round(np.clip(images, 0, 1) * 255).astype(np.uint8), labels.astype(np.uint8),
            np.round(alpha * 255).astype(np.uint8))


def generate(n: int, seed: int, stream: int = 0) -> dict[str, np.ndarray]:
    """n images (n, 32, 32, 3) uint8, labels (n,) uint8 and the objects' masks (n, 32, 32)
    uint8 (the object's anti-aliased coverage of each pixel, 0-255; distractors and background
    are 0); stream 0 train, 1 test."""
    blocks = [_block(rng) for rng in block_rngs(seed, stream, n, BLOCK)]
    if not blocks:
        return {"images": np.zeros((0, SIZE, SIZE, 3), np.uint8), "labels": np.zeros(0, np.uint8),
                "masks": np.zeros((0, SIZE, SIZE), np.uint8)}
    return {"images": np.concatenate([b[0] for b in blocks])[:n],
            "labels": np.concatenate([b[1] for b in blocks])[:n],
            "masks": np.concatenate([b[2] for b in blocks])[:n]}
