"""Flat-coloured cartoon scenes for the line-art colouriser, and the two views the colouriser
is given of an image: its line art and a colour hint.

A scene is a sky (a vertical gradient), maybe a sun and clouds, one or two rolling hills, and a
few objects (houses, trees, flowers, balloons, little characters) placed on the ground. Every
region is one flat colour with soft shading (lighter towards a light direction) and a dark
outline, like a cel-shaded illustration, so that adaptive thresholding finds clean lines, as it
does on anime drawings.

`line_art` follows the original post's OpenCV call,
``cv2.adaptiveThreshold(grey, 255, ADAPTIVE_THRESH_MEAN_C, THRESH_BINARY, 9, 2)``: a pixel is
white when it is brighter than (the mean of its 9x9 neighbourhood - 2), computed here on
the same 0..255 integer grey values with integral images, no OpenCV needed.

`colour_hint` follows the original's `imageblur`: for training, 30 random squares (50x50 at
256 pixels, scaled to the image) are whited out and the result is box-blurred (100x100 at 256
pixels) so only a vague colour layout survives; at use time there are no squares, the image is
faded towards white (0.3 * image + 0.7 * white) and blurred the same way.
"""

from __future__ import annotations

import numpy as np

from . import _draw
from ._cache import block_rngs


def block_size(size: int) -> int:
    """Scenes drawn together: about 131k pixels per layer (32 at 64 px, 2 at 256 px)."""
    return max(1, 2 ** 17 // (size * size))


def _col(values) -> np.ndarray:
    return np.asarray(values, np.float32)[:, None, None]


class _Painter:
    """Paints regions given by signed distances (pixels) with flat colour, soft shading and a
    dark outline, on a batch of canvases."""

    def __init__(self, canvas: np.ndarray, rng: np.random.Generator, line_width: np.ndarray):
        self.canvas = canvas
        self.rng = rng
        self.line_width = line_width  # (B, 1, 1) pixels
        batch, size = canvas.shape[0], canvas.shape[1]
        ys, xs = _draw.pixel_grid(size, size)
        light = rng.uniform(0, 2 * np.pi, batch)
        # Shading ramp across the picture: brighter towards the light, as cel shading does.
        self.ramp = (np.cos(light)[:, None, None] * (xs / size - 0.5)
                     + np.sin(light)[:, None, None] * (ys / size - 0.5)).astype(np.float32)
        self.ink = rng.uniform(0.02, 0.15, (batch, 3)).astype(np.float32)

    def region(self, sdf: np.ndarray, colour: np.ndarray, members=None, shade: float = 0.35):
        """Paint the region sdf < 0 with `colour`, shaded, then its outline.

        `members` (indices into the batch) restricts the paint to some canvases; then sdf and
        colour hold only those canvases' rows.
        """
        rows = slice(None) if members is None else members
        alpha = _draw.coverage(sdf)
        outline = _draw.coverage(np.abs(sdf) - self.line_width[rows] / 2)
        shaded = colour[:, None, None] * (1 + shade * self.ramp[rows])[..., None]
        canvas = _draw.composite(self.canvas[rows], alpha, np.clip(shaded, 0, 1))
        self.canvas[rows] = _draw.composite(canvas, outline, self.ink[rows][:, None, None])


def _random_colour(rng, batch, saturation=(0.3, 0.9), value=(0.5, 1.0), hue=None):
    hue = rng.random(batch) if hue is None else hue
    return _draw.hsv_to_rgb(hue, rng.uniform(*saturation, batch), rng.uniform(*value, batch))


def _block(rng: np.random.Generator, size: int) -> np.ndarray:
    batch = block_size(size)
    ys, xs = _draw.pixel_grid(size, size)
    unit = size / 128.0
    sky_top = _random_colour(rng, batch, (0.2, 0.7), (0.6, 1.0), rng.uniform(0.5, 0.7, batch))
    sky_low = _random_colour(rng, batch, (0.05, 0.5), (0.8, 1.0), rng.uniform(0.0, 0.7, batch))
    height = (ys / size)[..., None]
    canvas = sky_top[:, None, None] * (1 - height) + sky_low[:, None, None] * height
    canvas = np.array(np.broadcast_to(canvas, (batch, size, size, 3)), dtype=np.float32)
    painter = _Painter(canvas, rng, _col(rng.uniform(1.0, 2.0, batch) * unit))

    # Sun and clouds.
    sun = _draw.sd_circle(xs - _col(rng.uniform(0.1, 0.9, batch) * size),
                          ys - _col(rng.uniform(0.08, 0.3, batch) * size),
                          _col(rng.uniform(6, 14, batch) * unit))
    sun_colour = _random_colour(rng, batch, (0.5, 0.9), (0.9, 1.0), rng.uniform(0.02, 0.16, batch))
    shown = np.nonzero(rng.random(batch) < 0.6)[0]
    painter.region(sun[shown], sun_colour[shown], shown, shade=0.1)
    for _ in range(2):
        cx = _col(rng.uniform(0, 1, batch) * size)
        cy = _col(rng.uniform(0.08, 0.35, batch) * size)
        r = _col(rng.uniform(5, 10, batch) * unit)
        puffs = np.minimum(np.minimum(_draw.sd_circle(xs - cx, ys - cy, r),
                                      _draw.sd_circle(xs - cx - 1.2 * r, ys - cy + 0.4 * r, r)),
                           _draw.sd_circle(xs - cx + 1.1 * r, ys - cy + 0.3 * r, 0.8 * r))
        white = np.full((batch, 3), 0.97, np.float32) - rng.uniform(0, 0.1, (batch, 1))
        shown = np.nonzero(rng.random(batch) < 0.6)[0]
        painter.region(puffs[shown], white[shown].astype(np.float32), shown, shade=0.15)

    # Hills: ground below a wavy horizon, back one first.
    horizon = np.zeros((batch, 1, size), np.float32)
    for layer in range(2):
        level = _col(rng.uniform(0.45, 0.62, batch) + 0.1 * layer) * size
        amplitude = _col(rng.uniform(4, 14, batch)) * unit
        frequency, phase = _col(rng.uniform(3, 9, batch)), _col(rng.uniform(0, 6.3, batch))
        wave = amplitude * np.sin(xs / size * frequency + phase)
        ground = (level + wave) - ys
        hue = rng.uniform(0.12, 0.4, batch)
        painter.region(ground, _random_colour(rng, batch, (0.35, 0.8), (0.45, 0.85), hue))
        horizon = level + wave

    # Objects standing on the front hill.
    for _ in range(rng.integers(2, 5)):
        kind = rng.integers(0, 5, batch)
        ox = _col(rng.uniform(0.1, 0.9, batch) * size)
        base = horizon[np.arange(batch), 0, np.clip(ox[:, 0, 0].astype(int), 0, size - 1)]
        oy = base[:, None, None] + _col(rng.uniform(0, 0.2, batch) * size)
        scale = _col(rng.uniform(10, 22, batch)) * unit
        u, v = (xs - ox) / scale, (ys - oy) / scale  # object frame, feet at v=0, 1 unit ~ 1/3 tall
        _object(painter, rng, kind, u, v, scale)
    return np.round(np.clip(painter.canvas, 0, 1) * 255).astype(np.uint8)


def _object(painter: _Painter, rng, kind: np.ndarray, u, v, scale) -> None:
    """One object per sample, of the sample's `kind`: house, tree, flower, balloon, character."""
    batch = len(kind)
    colours = _random_colour(rng, batch)
    seconds = _random_colour(rng, batch)
    leaves = _random_colour(rng, batch, (0.4, 0.9), (0.35, 0.8), rng.uniform(0.2, 0.42, batch))
    for index in range(5):
        members = np.nonzero(kind == index)[0]
        if len(members):
            draw = (_house, _tree, _flower, _balloon, _character)[index]
            colour, second = colours[members], seconds[members]
            draw(painter, members, u[members], v[members], scale[members], colour, second,
                 leaves[members])


def _fixed(rgb, count: int) -> np.ndarray:
    return np.tile(np.asarray(rgb, np.float32), (count, 1))


def _house(painter, members, u, v, scale, colour, second, leaves) -> None:
    painter.region(_draw.sd_box(u, v + 1.0, 1.2, 1.0) * scale, colour, members)
    roof = _draw.sd_polygon(u, v + 2.0, np.array([(-1.55, 0), (1.55, 0), (0, -1.3)], np.float32))
    painter.region(roof * scale, second, members)
    painter.region(_draw.sd_box(u + 0.5, v + 0.55, 0.3, 0.55) * scale, second * 0.7, members)
    painter.region(_draw.sd_box(u - 0.55, v + 1.2, 0.35, 0.3) * scale,
                   _fixed([0.85, 0.9, 0.95], len(members)), members, shade=0.1)


def _tree(painter, members, u, v, scale, colour, second, leaves) -> None:
    painter.region(_draw.sd_box(u, v + 0.9, 0.22, 0.9) * scale,
                   _fixed([0.45, 0.3, 0.15], len(members)), members)
    crown = np.minimum(np.minimum(_draw.sd_circle(u, v + 2.6, 0.95),
                                  _draw.sd_circle(u - 0.7, v + 1.9, 0.7)),
                       _draw.sd_circle(u + 0.7, v + 1.9, 0.7))
    painter.region(crown * scale, leaves, members)


def _flower(painter, members, u, v, scale, colour, second, leaves) -> None:
    painter.region(_draw.sd_box(u, v + 0.8, 0.07, 0.8) * scale,
                   _fixed([0.2, 0.55, 0.2], len(members)), members)
    petals = _draw.sd_polygon(u, v + 1.9, _draw.regular_polygon(6, 0.8, star_inner=0.55))
    painter.region(petals * scale, colour, members)
    painter.region(_draw.sd_circle(u, v + 1.9, 0.3) * scale, second, members)


def _balloon(painter, members, u, v, scale, colour, second, leaves) -> None:
    painter.region(_draw.sd_segment(u, v, 0, 0, 0.2, -1.6) * scale - 0.4, second * 0.5, members)
    painter.region(_draw.sd_ellipse(u - 0.2, v + 2.5, 0.75, 0.95) * scale, colour, members)


def _character(painter, members, u, v, scale, colour, second, leaves) -> None:
    painter.region(_draw.sd_ellipse(u, v + 0.8, 0.7, 0.85) * scale, colour, members)
    painter.region(_draw.sd_circle(u, v + 2.2, 0.75) * scale,
                   _fixed([0.98, 0.85, 0.72], len(members)), members, shade=0.2)
    for side in (-1, 1):
        eye = _draw.sd_circle(u - 0.28 * side, v + 2.25, 0.12) * scale
        painter.region(eye, _fixed([0, 0, 0], len(members)), members, shade=0.0)


def generate(n: int, seed: int, size: int = 128) -> dict[str, np.ndarray]:
    """n scenes (n, size, size, 3) uint8."""
    blocks = [_block(rng, size) for rng in block_rngs(seed, 0, n, block_size(size))]
    if not blocks:
        return {"images": np.zeros((0, size, size, 3), np.uint8)}
    return {"images": np.concatenate(blocks)[:n]}


def grey_255(image: np.ndarray) -> np.ndarray:
    """RGB in [0, 1] -> integer grey 0..255 with OpenCV's weights (0.299, 0.587, 0.114)."""
    rgb = np.round(np.clip(np.asarray(image, np.float64), 0, 1) * 255)
    return np.round(rgb @ np.array([0.299, 0.587, 0.114])).astype(np.int64)


def box_mean_255(grey: np.ndarray, block: int) -> np.ndarray:
    """Rounded mean over block x block windows, border replicated, as OpenCV's boxFilter does
    on 8-bit images. Integral image: every window sum is four lookups."""
    pad = block // 2
    padded = np.pad(grey, pad, mode="edge")
    integral = np.zeros((padded.shape[0] + 1, padded.shape[1] + 1), np.int64)
    integral[1:, 1:] = padded.cumsum(0).cumsum(1)
    height, width = grey.shape
    below, right = slice(block, block + height), slice(block, block + width)
    above, left = slice(0, height), slice(0, width)
    sums = (integral[below, right] - integral[above, right] - integral[below, left]
            + integral[above, left])
    return np.rint(sums / (block * block)).astype(np.int64)


def line_art(image: np.ndarray, block: int = 9, c: int = 2) -> np.ndarray:
    """Line art of an RGB image in [0, 1] (H, W, 3) or a grey one (H, W): float32 (H, W), 1 for
    paper and 0 for lines. Adaptive mean threshold, block 9, C 2, as the original post."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 3:
        grey = grey_255(image)
    elif image.ndim == 2:
        grey = np.round(np.clip(image, 0, 1) * 255).astype(np.int64)
    else:
        raise ValueError(f"line_art expects an image (H, W, 3) or (H, W) in [0, 1], "
                         f"got shape {image.shape}")
    # OpenCV THRESH_BINARY: white where src - mean > -ceil(C).
    return (grey - box_mean_255(grey, block) > -int(np.ceil(c))).astype(np.float32)


def _box_blur(image: np.ndarray, size_y: int, size_x: int) -> np.ndarray:
    """Box blur with OpenCV's default border (reflect without repeating the edge pixel)."""
    from scipy.ndimage import uniform_filter

    return uniform_filter(image, size=(size_y, size_x, 1), mode="mirror")


def colour_hint(image: np.ndarray, rng: np.random.Generator | None = None,
                train: bool = True) -> np.ndarray:
    """Blurred colour hint (H, W, 3) float32 for an RGB image in [0, 1].

    train=True: 30 random squares whited out, then a large box blur (the original's training
    hint). train=False: image * 0.3 + 0.7 * white, then the same blur (what a user's rough
    colouring becomes at use time). Sizes are the original's 50 and 100 pixels at 256, scaled.
    """
    image = np.array(image, dtype=np.float32)  # a copy: the caller's image is not touched
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"colour_hint expects an RGB image (H, W, 3) in [0, 1], "
                         f"got shape {image.shape}")
    height, width = image.shape[:2]
    if train:
        if rng is None:
            raise ValueError("colour_hint(train=True) needs rng, to place its white squares")
        side_y, side_x = max(1, round(50 * height / 256)), max(1, round(50 * width / 256))
        rows = rng.integers(0, max(1, height - side_y + 1), 30)
        cols = rng.integers(0, max(1, width - side_x + 1), 30)
        for row, col in zip(rows, cols):
            image[row:row + side_y, col:col + side_x] = 1.0
    else:
        image = image * 0.3 + 0.7
    blur_y, blur_x = max(1, round(100 * height / 256)), max(1, round(100 * width / 256))
    return _box_blur(image, blur_y, blur_x).astype(np.float32)
