"""Drawn faces, a stand-in for CelebA: RGB portraits, head and shoulders on a plain background.

Every face is a stack of layers painted back to front, each a shape from a signed distance
function in the head's own frame (so the whole face tilts together): background, long hair,
shoulders, neck, ears, face, fringe, eyebrows, eyes (white, iris, pupil), nose, mouth, glasses.
What varies: skin tone, hair colour and style (short, long, bob, bun, shaved), fringe shape, eye
colour and openness, brows, smile or open mouth, glasses or sunglasses, clothes, background,
head position, size, tilt (roll) and turn (yaw: features slide sideways, the far half narrows).
"""

from __future__ import annotations

import numpy as np

from . import _draw
from ._cache import block_rngs

BLOCK = 32  # faces drawn together; sample i depends only on (seed, size, i // BLOCK)
HAIR_STYLES = ("short", "long", "bob", "bun", "shaved")

_SKIN_LIGHT = np.array([0.98, 0.86, 0.76], np.float32)
_SKIN_DARK = np.array([0.34, 0.21, 0.14], np.float32)
_HAIR_COLOURS = np.array([
    [0.08, 0.06, 0.05], [0.22, 0.13, 0.07], [0.42, 0.26, 0.13], [0.86, 0.72, 0.42],
    [0.62, 0.24, 0.10], [0.72, 0.72, 0.72], [0.30, 0.30, 0.75], [0.85, 0.35, 0.6],
], np.float32)
_HAIR_WEIGHTS = np.array([0.3, 0.25, 0.15, 0.12, 0.07, 0.06, 0.025, 0.025])
_EYE_COLOURS = np.array([[0.30, 0.18, 0.08], [0.15, 0.10, 0.06], [0.25, 0.45, 0.75],
                         [0.30, 0.50, 0.30], [0.45, 0.48, 0.50]], np.float32)


def _col(values: np.ndarray) -> np.ndarray:
    """Per-sample values (B,) -> (B, 1, 1) float32, to broadcast over pixels."""
    return np.asarray(values, np.float32)[:, None, None]


def _block(rng: np.random.Generator, size: int) -> np.ndarray:
    batch = BLOCK
    unit = size / 64.0  # every length below is in pixels of a 64-pixel image

    def uniform(low, high):
        return _col(rng.uniform(low, high, batch))

    ys, xs = _draw.pixel_grid(size, size)
    top = _draw.hsv_to_rgb(rng.random(batch), rng.uniform(0, 0.5, batch),
                           rng.uniform(0.3, 1, batch))
    bottom = np.clip(top * rng.uniform(0.6, 1.3, (batch, 1)), 0, 1)
    vertical = (ys / size)[..., None]
    image = top[:, None, None] * (1 - vertical) + bottom[:, None, None] * vertical
    image = image * (0.9 + 0.2 * _draw.smooth_noise(rng, batch, size, size, 3))[..., None]
    image = image.astype(np.float32)  # everything after stays float32: half the memory traffic

    scale = uniform(1.0, 1.28) * unit
    cx = size / 2 + uniform(-3, 3) * unit
    cy = size / 2 + uniform(-1, 2.5) * unit
    roll = uniform(-0.18, 0.18)
    yaw = uniform(-0.35, 0.35)  # -: looking to the viewer's left, +: right
    half_w, half_h = 14.5 * scale * uniform(0.92, 1.08), 18.5 * scale
    u, v = _draw.rotate(xs - cx, ys - cy, roll)  # head frame, origin at the face's centre

    skin_t = rng.beta(1.3, 1.3, batch).astype(np.float32)[:, None]
    skin = _SKIN_LIGHT * (1 - skin_t) + _SKIN_DARK * skin_t
    skin = np.clip(skin * rng.uniform(0.93, 1.07, (batch, 3)), 0, 1).astype(np.float32)
    hair = _HAIR_COLOURS[rng.choice(len(_HAIR_COLOURS), batch, p=_HAIR_WEIGHTS)]
    hair = np.clip(hair * rng.uniform(0.85, 1.15, (batch, 1)), 0, 1).astype(np.float32)
    style = rng.integers(0, len(HAIR_STYLES), batch)

    def paint(alpha, colour):
        nonlocal image
        image = _draw.composite(image, alpha, colour[:, None, None])

    # Hair behind the head: long hair falls to the shoulders, a bob to the jaw.
    is_long, is_bob = _col(style == 1), _col(style == 2)
    back_h = half_h * (1.1 + 0.5 * is_long + 0.15 * is_bob)
    back = _draw.sd_ellipse(u, v - 0.35 * (back_h - half_h), half_w * 1.3, back_h)
    back = np.maximum(back, v - (half_h * (0.2 + 0.9 * is_long + 0.45 * is_bob)))
    paint(_draw.coverage(back) * _col(style != 4) * (is_long + is_bob), hair)

    # Shoulders in clothes, then the neck.
    clothes = _draw.hsv_to_rgb(rng.random(batch), rng.uniform(0, 0.8, batch),
                               rng.uniform(0.15, 0.9, batch))
    shoulders = _draw.sd_ellipse(xs - cx, ys - (cy + half_h * 1.95), half_w * 2.3, half_h * 1.05)
    paint(_draw.coverage(shoulders), clothes)
    neck = _draw.sd_box(u, v - half_h * 0.95, half_w * 0.45, half_h * 0.6)
    paint(_draw.coverage(neck), skin * 0.8)
    if is_long.any():
        # Long hair also falls in front of the shoulders, either side of the neck.
        strands = np.maximum(np.abs(np.abs(u) - half_w * 1.05) - half_w * 0.28,
                             np.abs(v - half_h * 0.75) - half_h * 0.55)
        paint(_draw.coverage(strands) * is_long, hair * 0.9)

    # Ears, the face (an egg: narrower at the chin), with soft shading towards its edge.
    shift = yaw * half_w * 0.55  # features slide towards the turned side
    for side in (-1, 1):
        ear = _draw.sd_ellipse(u - side * half_w * (1 - 0.25 * side * yaw), v, 3.2 * scale,
                               5 * scale)
        paint(_draw.coverage(ear), skin * 0.9)
    taper = 1 - 0.18 * np.clip(v / half_h, 0, 1)
    face = _draw.sd_ellipse((u - shift * 0.3) / taper, v, half_w, half_h)
    radial = np.clip(np.hypot((u - shift * 0.3) / half_w, v / half_h), 0, 1)
    shading = (1.05 - 0.22 * radial ** 3)[..., None]
    alpha = _draw.coverage(face)[..., None]
    image = image * (1 - alpha) + np.clip(skin[:, None, None] * shading, 0, 1) * alpha

    # Hair on top: a cap over the forehead whose lower edge is the fringe (straight, swept,
    # or parted); shaved heads get a thin dark shadow instead.
    cap = _draw.sd_ellipse(u, v + half_h * 0.12, half_w * 1.12, half_h * 1.02)
    fringe_height = uniform(0.25, 0.6) * half_h
    sweep = uniform(-0.5, 0.5) * v.dtype.type(1)
    parting = _col(rng.random(batch) < 0.4)
    fringe_line = -fringe_height + sweep * u + parting * np.abs(u - uniform(-5, 5) * scale) * 0.5
    cap = np.maximum(cap, v - fringe_line)
    shaved = _col(style == 4)
    paint(_draw.coverage(cap) * (1 - 0.75 * shaved), hair)
    bun = _draw.sd_circle(u, v + half_h * 1.1, 6.5 * scale)
    paint(_draw.coverage(bun) * _col(style == 3), hair)

    # Eyes: white, iris, pupil; the eye on the far side of a turned head is narrower.
    eye_y = -0.08 * half_h + uniform(-1, 1) * scale
    eye_gap = half_w * uniform(0.36, 0.44)
    openness = uniform(0.55, 1.1)
    iris_colour = _EYE_COLOURS[rng.integers(0, len(_EYE_COLOURS), batch)]
    glance = uniform(-1.0, 1.0) * scale
    brow_tilt = uniform(-0.25, 0.25)
    brow_lift = uniform(4.5, 7.0) * scale
    for side in (-1, 1):
        width = 3.6 * scale * (1 + 0.5 * side * yaw)
        ex = shift + side * eye_gap * (1 + 0.35 * side * yaw)
        white = _draw.sd_ellipse(u - ex, v - eye_y, width, 2.2 * scale * openness)
        paint(_draw.coverage(white), np.full((batch, 3), 0.95, np.float32))
        iris = np.maximum(_draw.sd_circle(u - ex - glance, v - eye_y, 1.9 * scale), white)
        paint(_draw.coverage(iris), iris_colour)
        pupil = np.maximum(_draw.sd_circle(u - ex - glance, v - eye_y, 0.9 * scale), white)
        paint(_draw.coverage(pupil), np.zeros((batch, 3), np.float32))
        brow = _draw.sd_segment(u, v, ex - width, eye_y - brow_lift + side * brow_tilt * width,
                                ex + width, eye_y - brow_lift - side * brow_tilt * width * 0.3)
        paint(_draw.coverage(brow - 0.9 * scale), hair * 0.8)

    # Nose: a short shadowed stroke; mouth: a smile, a flat line or an open mouth.
    nose = _draw.sd_segment(u, v, shift * 1.2, 0.05 * half_h, shift * 1.35 + 1.5 * scale,
                            0.3 * half_h)
    paint(_draw.coverage(nose - 0.8 * scale) * 0.6, skin * 0.7)
    mouth_y = 0.55 * half_h + uniform(-1, 1.5) * scale
    mouth_w = uniform(4.0, 6.5) * scale
    smile = uniform(-0.04, 0.16) / scale
    mu = u - shift * 1.1
    curve = np.maximum(np.abs(v - mouth_y - smile * (mouth_w ** 2 - mu ** 2) * 0.5) - 0.9 * scale,
                       np.abs(mu) - mouth_w)
    is_open = _col(rng.random(batch) < 0.25)
    open_mouth = _draw.sd_ellipse(mu, v - mouth_y, mouth_w * 0.8, 2.4 * scale)
    lips = np.array([0.55, 0.15, 0.15], np.float32) * rng.uniform(0.7, 1.3, (batch, 1))
    paint(_draw.coverage(curve) * (1 - is_open), np.clip(lips, 0, 1))
    paint(_draw.coverage(open_mouth) * is_open, np.clip(lips * 0.5, 0, 1))

    # Glasses: two rims and a bridge; some are sunglasses with dark lenses.
    wears = _col(rng.random(batch) < 0.3)
    sun = _col(rng.random(batch) < 0.3)
    frame = np.full((batch, 3), 0.08, np.float32) + rng.uniform(0, 0.4, (batch, 1)).astype(
        np.float32) * rng.random((batch, 3)).astype(np.float32)
    for side in (-1, 1):
        ex = shift + side * eye_gap * (1 + 0.35 * side * yaw)
        lens = _draw.sd_ellipse(u - ex, v - eye_y, 5.3 * scale * (1 + 0.4 * side * yaw),
                                4.3 * scale)
        paint(_draw.coverage(lens) * wears * sun * 0.92, np.full((batch, 3), 0.05, np.float32))
        paint(_draw.coverage(np.abs(lens) - 0.6 * scale) * wears, frame)
    bridge = _draw.sd_segment(u, v, shift - eye_gap + 5 * scale, eye_y, shift + eye_gap - 5 * scale,
                              eye_y)
    paint(_draw.coverage(bridge - 0.5 * scale) * wears, frame)

    image = image + rng.normal(0, 0.01, image.shape).astype(np.float32)
    return np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)


def generate(n: int, seed: int, size: int = 64) -> dict[str, np.ndarray]:
    """n faces (n, size, size, 3) uint8."""
    blocks = [_block(rng, size) for rng in block_rngs(seed, 0, n, BLOCK)]
    if not blocks:
        return {"images": np.zeros((0, size, size, 3), np.uint8)}
    return {"images": np.concatenate(blocks)[:n]}
