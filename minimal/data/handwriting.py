"""Hand-written-looking digits, a stand-in for MNIST: 28x28 grey, white ink on black, labels 0-9.

How one digit is made (all vectorised over a block of samples):

1. Pick a glyph source. Most are *pen glyphs*: each digit has a few hand-written variants
   (a 1 with or without a flag, a 4 open or closed, a 7 with or without a bar, ...) described
   below as pen strokes through control points on a 6 x 10 grid. Every control point is jittered,
   the strokes go through a Catmull-Rom spline and are resampled evenly along their length.
   The rest come from *typefaces* that ship with matplotlib (DejaVu, STIX, Computer Modern, in
   upright, bold and italic cuts), stored once as signed distance fields.
2. Warp: a smooth random displacement (a few low-frequency sine waves: the "elastic" wobble of a
   hand), then an affine map (slant, rotation, squash or stretch).
3. Normalise as MNIST did: scale so the larger side of the bounding box is about 20 pixels,
   then put the centre of mass at the image centre, plus a small random offset.
4. Ink: pixel brightness from the distance to the pen's path (pen glyphs, with a pen width that
   varies along the stroke) or from the typeface's distance field (thickened or thinned at
   random), with a soft edge; then quantised to bytes as MNIST's are.
"""

from __future__ import annotations

import functools
import os

import numpy as np

from . import _draw
from ._cache import block_rngs

SIZE = 28
FONT_FILES = (
    "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSerif.ttf",
    "DejaVuSerif-Italic.ttf", "DejaVuSansMono.ttf", "STIXGeneral.ttf", "STIXGeneralItalic.ttf",
    "STIXGeneralBol.ttf", "cmr10.ttf", "cmss10.ttf", "cmti10.ttf",
)
PEN_FRACTION = 0.7  # share of pen-drawn glyphs; the rest are typeface glyphs
BLOCK = 256  # samples drawn together; sample i depends only on (seed, split, i // BLOCK)

# Pen strokes on a grid x in [0, 6], y in [0, 10] (y grows downwards). A variant is a list of
# strokes, a stroke a list of control points; a stroke that repeats its first point is closed.
# Points written identically in two strokes are the same point (a corner), jittered once.
PEN_VARIANTS: dict[int, list[list[list[tuple[float, float]]]]] = {
    0: [
        [[(3, 0), (5.2, 1.5), (5.7, 5), (5, 8.7), (3, 10), (1, 8.7), (0.3, 5), (0.8, 1.5), (3, 0)]],
        [[(3.6, 0.3), (1.2, 1.6), (0.4, 5.5), (1.5, 9.3), (3.3, 10), (5.2, 8.5), (5.6, 4.5),
          (4.6, 1), (2.8, 0.2)]],
    ],
    1: [
        [[(3.2, 0), (3.1, 3.3), (3, 6.7), (2.9, 10)]],
        [[(1.4, 2), (2.5, 1), (3.3, 0)], [(3.3, 0), (3.1, 5), (3, 10)]],
        [[(1.4, 2), (2.5, 1), (3.3, 0)], [(3.3, 0), (3.1, 5), (3, 10)], [(1.3, 10), (4.7, 10)]],
    ],
    2: [
        [[(0.5, 2.3), (1.8, 0.4), (4, 0.2), (5.3, 2), (4.6, 4.6), (2.4, 7.3), (0.3, 10)],
         [(0.3, 10), (3, 9.9), (5.8, 10)]],
        [[(0.7, 1.8), (2.6, 0.1), (4.8, 0.8), (5, 3), (0.4, 10)],
         [(0.4, 10), (2, 9.1), (3.8, 9.9), (5.9, 9.6)]],
    ],
    3: [
        [[(0.6, 1.3), (2.7, 0), (4.9, 1), (4.9, 3.2), (2.4, 4.8)],
         [(2.4, 4.8), (5.1, 6.1), (5.3, 8.5), (3, 10), (0.4, 8.9)]],
        [[(0.4, 0), (5.4, 0)], [(5.4, 0), (2.4, 4)],
         [(2.4, 4), (4.9, 5.2), (5.3, 8), (3.3, 10), (0.4, 9)]],
    ],
    4: [
        [[(3.8, 0), (0.2, 7), (6, 7)], [(4.6, 2.8), (4.6, 10)]],
        [[(4.5, 0), (0.2, 7)], [(0.2, 7), (6, 7)], [(4.5, 0), (4.5, 10)]],
        [[(0.9, 0), (0.6, 6)], [(0.6, 6), (6, 6)], [(4.8, 0.3), (4.6, 10)]],
    ],
    5: [
        [[(5.5, 0), (1.2, 0)],
         [(1.2, 0), (0.8, 4.6)], [(0.8, 4.6), (3, 3.8), (5.3, 5.2), (5.4, 8), (3.3, 10), (0.4, 9)]],
        [[(5.2, 0.2), (3.4, 0), (1.1, 0.3)],
         [(1.1, 0.3), (0.9, 4.3), (3.4, 3.9), (5.5, 6.3), (4.3, 9.4), (2, 9.9), (0.5, 8.8)]],
    ],
    6: [
        [[(4.8, 0.2), (2.5, 1.5), (0.8, 5), (0.7, 8.2), (2.6, 10), (4.8, 9), (5.3, 7),
          (4, 5.4), (1.8, 5.6), (0.8, 7.2)]],
        [[(4, 0), (1.5, 3.5), (0.6, 7.3), (2.3, 9.9), (4.6, 9.3), (4.9, 6.7), (2.8, 5.6),
          (0.9, 7)]],
    ],
    7: [
        [[(0.2, 0.5), (5.8, 0)], [(5.8, 0), (3.8, 4.5), (2.2, 10)]],
        [[(0.3, 0), (5.8, 0.2)], [(5.8, 0.2), (2.4, 10)], [(1.7, 5), (5.2, 5)]],
        [[(0.4, 1.2), (1, 0.2), (3, 0.5), (5.7, 0.1)], [(5.7, 0.1), (4, 4), (3.2, 10)]],
    ],
    8: [
        [[(5, 1.5), (3, 0), (1, 1.3), (1.3, 3.5), (3, 4.8), (5, 6.5), (5.1, 9), (3, 10),
          (0.9, 9), (1, 6.5), (3, 4.8), (4.8, 3.3), (5, 1.5)]],
        [[(3, 0), (4.8, 1.2), (4.6, 3.6), (3, 4.6), (1.4, 3.6), (1.2, 1.2), (3, 0)],
         [(3, 4.6), (5.4, 6), (5.3, 9), (3, 10), (0.7, 9), (0.6, 6), (3, 4.6)]],
    ],
    9: [
        [[(5, 2.5), (3, 0), (0.8, 1.3), (0.9, 4), (3, 5), (5, 3.5), (5.2, 1)],
         [(5.2, 1), (5, 5), (4.5, 10)]],
        [[(5.1, 1.6), (3.2, 0), (0.9, 0.9), (0.8, 3.6), (2.8, 4.8), (5.1, 3.1), (5.1, 1.6)],
         [(5.1, 1.6), (5.4, 6), (4.2, 9), (1.8, 10)]],
    ],
}


def _catmull_rom(control: np.ndarray, closed: bool, samples_per_segment: int) -> np.ndarray:
    """Points along a Catmull-Rom spline through control points (B, K, 2) -> (B, D, 2)."""
    if closed:
        padded = np.concatenate([control[:, -2:-1], control, control[:, 1:2]], axis=1)
    else:
        padded = np.concatenate([2 * control[:, :1] - control[:, 1:2], control,
                                 2 * control[:, -1:] - control[:, -2:-1]], axis=1)
    t = np.linspace(0, 1, samples_per_segment, endpoint=False, dtype=np.float32)[:, None]
    t2, t3 = t * t, t * t * t
    # Standard uniform Catmull-Rom basis for the segment between p1 and p2.
    w0 = -0.5 * t3 + t2 - 0.5 * t
    w1 = 1.5 * t3 - 2.5 * t2 + 1
    w2 = -1.5 * t3 + 2 * t2 + 0.5 * t
    w3 = 0.5 * t3 - 0.5 * t2
    pieces = []
    for k in range(control.shape[1] - 1):
        p0, p1, p2, p3 = (padded[:, k + j, None, :] for j in range(4))
        pieces.append(w0 * p0 + w1 * p1 + w2 * p2 + w3 * p3)
    pieces.append(control[:, -1:, :])
    return np.concatenate(pieces, axis=1)


def _resample_evenly(curves: np.ndarray, count: int) -> np.ndarray:
    """`count` points evenly spaced by arc length along each curve (B, D, 2) -> (B, count, 2)."""
    batch, dense, _ = curves.shape
    steps = np.linalg.norm(np.diff(curves, axis=1), axis=2)
    cumulative = np.concatenate([np.zeros((batch, 1), np.float32), np.cumsum(steps, axis=1)], 1)
    targets = np.linspace(0, 1, count, dtype=np.float32)[None] * cumulative[:, -1:]
    # One searchsorted for the whole batch: shift each row by a big constant so rows don't mix.
    shift = (cumulative[:, -1].max() + 1) * np.arange(batch, dtype=np.float64)[:, None]
    index = np.searchsorted((cumulative + shift).ravel(), (targets + shift).ravel(), "right") - 1
    index = np.clip(index.reshape(batch, count) - np.arange(batch)[:, None] * dense, 0, dense - 2)
    left = np.take_along_axis(cumulative, index, 1)
    right = np.take_along_axis(cumulative, index + 1, 1)
    fraction = ((targets - left) / np.maximum(right - left, 1e-9))[..., None]
    start = np.take_along_axis(curves, index[..., None], 1)
    end = np.take_along_axis(curves, index[..., None] + 1, 1)
    return start + fraction * (end - start)


def _pen_points(variant: list, batch: int, rng: np.random.Generator) -> np.ndarray:
    """Jittered, splined, evenly resampled pen path of one variant, in glyph units.

    Glyph units: the digit is 1 tall, centred on the origin. Returns (B, P, 2) as (x, y).
    """
    unique = sorted({point for stroke in variant for point in stroke})
    table = (np.array(unique, dtype=np.float32) - (3.0, 5.0)) / 10.0
    # Every control point wobbles on its own; the whole glyph also varies its proportions.
    jitter = rng.normal(0, 0.024, (batch, len(unique), 2)).astype(np.float32)
    stretch = rng.normal(1, 0.08, (batch, 1, 2)).astype(np.float32)
    points = table[None] * stretch + jitter
    paths = []
    for stroke in variant:
        index = [unique.index(point) for point in stroke]
        control = points[:, index]
        closed = len(stroke) > 2 and stroke[0] == stroke[-1]
        curve = _catmull_rom(control, closed, 16)
        nominal = np.linalg.norm(np.diff(table[index], axis=0), axis=1).sum()
        paths.append(_resample_evenly(curve, max(8, int(nominal * 50))))
    return np.concatenate(paths, axis=1)


@functools.cache
def _font_templates(resolution: int = 96) -> tuple[np.ndarray, np.ndarray, float]:
    """Signed distance fields of every digit in every font, in glyph units (digit height 1).

    Returns (sdf (F*10, R, R) float32, ink points (F*10, 256, 2) in glyph units, half-width of
    the template in glyph units). Drawn once per process: the rest is array lookups.
    """
    import matplotlib
    from PIL import Image, ImageDraw, ImageFont
    from scipy.ndimage import distance_transform_edt

    font_dir = os.path.join(matplotlib.get_data_path(), "fonts", "ttf")
    glyph_px = resolution * 0.45  # digit height in template pixels
    half_extent = resolution / 2 / glyph_px  # template covers [-half, half] glyph units
    sdfs, inks = [], []
    point_rng = np.random.default_rng(12345)  # fixed: which ink pixels summarise each glyph
    for font_file in FONT_FILES:
        font = ImageFont.truetype(os.path.join(font_dir, font_file), 200)
        for digit in range(10):
            big = Image.new("L", (300, 300), 0)
            ImageDraw.Draw(big).text((50, 20), str(digit), font=font, fill=255)
            ink = np.asarray(big) > 127
            rows, cols = np.nonzero(ink)
            top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
            scale = glyph_px / (bottom - top)
            width = max(1, round((right - left) * scale))
            height = round(glyph_px)
            crop = Image.fromarray(ink[top:bottom, left:right].astype(np.uint8) * 255)
            crop = np.asarray(crop.resize((width, height), Image.LANCZOS)) > 127
            canvas = np.zeros((resolution, resolution), dtype=bool)
            y0, x0 = (resolution - height) // 2, (resolution - width) // 2
            canvas[y0:y0 + height, x0:x0 + width] = crop
            signed = distance_transform_edt(~canvas) - distance_transform_edt(canvas)
            sdfs.append((signed / glyph_px).astype(np.float32))
            ink_rows, ink_cols = np.nonzero(canvas)
            pick = point_rng.choice(len(ink_rows), 256, replace=len(ink_rows) < 256)
            points = np.stack([ink_cols[pick], ink_rows[pick]], 1) + 0.5 - resolution / 2
            inks.append((points / glyph_px).astype(np.float32))
    return np.stack(sdfs), np.stack(inks), float(half_extent)


def _bilinear(images: np.ndarray, which: np.ndarray, ys: np.ndarray, xs: np.ndarray):
    """Sample images[which[b]] at fractional (ys, xs) (B, H, W), clamping at the border."""
    _, height, width = images.shape
    ys = np.clip(ys, 0, height - 1.001)
    xs = np.clip(xs, 0, width - 1.001)
    y0, x0 = ys.astype(np.intp), xs.astype(np.intp)
    fy, fx = ys - y0, xs - x0
    k = which.reshape((-1,) + (1,) * (ys.ndim - 1))
    top = images[k, y0, x0] * (1 - fx) + images[k, y0, x0 + 1] * fx
    bottom = images[k, y0 + 1, x0] * (1 - fx) + images[k, y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


class _Warp:
    """Per-sample smooth displacement plus affine map, glyph units -> normalised glyph units."""

    def __init__(self, batch: int, rng: np.random.Generator):
        waves = 3
        self.freq = rng.normal(0, 1, (batch, waves, 2)).astype(np.float32) * 5.0
        self.phase = rng.uniform(0, 2 * np.pi, (batch, waves, 1)).astype(np.float32)
        self.amp = rng.normal(0, 0.022, (batch, waves, 2)).astype(np.float32)
        slant = np.clip(rng.normal(0.12, 0.2, batch), -0.35, 0.55)
        angle = rng.normal(0, 0.12, batch)
        squash = np.exp(rng.normal(0, 0.12, batch))
        cos, sin = np.cos(angle), np.sin(angle)
        rotation = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], -2)
        shear = np.zeros((batch, 2, 2))
        shear[:, 0, 0], shear[:, 0, 1], shear[:, 1, 1] = squash, -slant, 1.0
        self.matrix = (rotation @ shear).astype(np.float32)  # acts on column vectors (x, y)
        self.inverse = np.linalg.inv(self.matrix).astype(np.float32)
        self.area_scale = np.sqrt(np.abs(np.linalg.det(self.matrix))).astype(np.float32)

    def subset(self, members: np.ndarray) -> _Warp:
        """The warps of some of the block's samples."""
        part = object.__new__(_Warp)
        for name, value in vars(self).items():
            setattr(part, name, value[members])
        return part

    def displacement(self, points: np.ndarray) -> np.ndarray:
        """Smooth wobble at points (B, P, 2): a sum of a few random plane waves."""
        angle = points @ self.freq.transpose(0, 2, 1)  # (B, P, waves)
        return np.sin(angle + self.phase.transpose(0, 2, 1)) @ self.amp

    def forward(self, points: np.ndarray) -> np.ndarray:
        return (points + self.displacement(points)) @ self.matrix.transpose(0, 2, 1)

    def backward(self, points: np.ndarray) -> np.ndarray:
        """Approximate inverse (exact for the affine part; the wobble is small)."""
        unwarped = points @ self.inverse.transpose(0, 2, 1)
        return unwarped - self.displacement(unwarped)


def _placement(points: np.ndarray, weights: np.ndarray, box: np.ndarray, rng):
    """MNIST's normalisation: scale so the bounding box's larger side is `box` pixels and move the
    centre of mass to the image centre (plus up to a pixel of jitter).

    Returns (scale (B,), offset (B, 2)) with pixel = scale * point + offset.
    """
    extent = (points.max(axis=1) - points.min(axis=1)).max(axis=1)
    scale = box / np.maximum(extent, 1e-3)
    centre = (weights[..., None] * points).sum(1) / weights.sum(1)[:, None]
    target = SIZE / 2 + rng.normal(0, 0.6, (len(points), 2))
    return scale.astype(np.float32), (target - scale[:, None] * centre).astype(np.float32)


def _ink(distance_inside: np.ndarray, softness: np.ndarray) -> np.ndarray:
    """Pen profile: solid core, soft edge of about `softness` pixels (smoothstep)."""
    t = np.clip(0.5 + distance_inside / softness, 0, 1)
    return t * t * (3 - 2 * t)


def _draw_pen(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    batch = len(labels)
    images = np.zeros((batch, SIZE, SIZE), np.float32)
    variant_index = rng.integers(0, 6, batch)
    pen_width = rng.uniform(1.0, 2.1, batch).astype(np.float32)  # pen radius, pixels
    box = rng.normal(19.5, 1.0, batch).clip(16.5, 22).astype(np.float32)
    softness = rng.uniform(1.0, 2.0, batch).astype(np.float32)
    warp = _Warp(batch, rng)
    gy, gx = _draw.pixel_grid(SIZE, SIZE, batch_dims=0)
    centred = np.stack([gx.ravel(), gy.ravel()], 1) - SIZE / 2  # (784, 2) as (x, y)
    grid_terms = np.concatenate([centred, np.ones((SIZE * SIZE, 1), np.float32)], axis=1)[None]
    grid_norm = (centred ** 2).sum(-1)[None]
    for digit in range(10):
        variants = PEN_VARIANTS[digit]
        for v, variant in enumerate(variants):
            members = np.nonzero((labels == digit) & (variant_index % len(variants) == v))[0]
            if len(members) == 0:
                continue
            points = warp.subset(members).forward(_pen_points(variant, len(members), rng))
            count = points.shape[1]
            # Pen pressure: the radius drifts smoothly along the stroke.
            pressure = 1 + 0.25 * np.sin(np.linspace(0, 1, count)[None] * rng.uniform(3, 9, (
                len(members), 1)) + rng.uniform(0, 6.3, (len(members), 1)))
            radius = pen_width[members, None] * pressure.astype(np.float32)
            scale, offset = _placement(points, radius, box[members] - 2 * pen_width[members], rng)
            pixels = points * scale[:, None, None] + offset[:, None, :]
            # The pen's edge is where |g - p|^2 - r_p^2 = 0 for the nearest point p (a "power
            # distance", exact for a constant radius). Expanding the square,
            # |g - p|^2 - r^2 = |g|^2 + (-2 p).g + (|p|^2 - r^2), so one batched matmul of
            # (gx, gy, 1) with (-2 px, -2 py, |p|^2 - r^2) gives it for every pixel and point.
            pixels = pixels - SIZE / 2  # centred coordinates keep float32 round-off small
            terms = np.concatenate([-2 * pixels, ((pixels ** 2).sum(-1) - radius ** 2)[..., None]],
                                   axis=2)
            power = (grid_terms @ terms.transpose(0, 2, 1)).min(axis=2) + grid_norm  # (B, 784)
            mean_radius = radius.mean(axis=1, keepdims=True)
            inside = mean_radius - np.sqrt(np.maximum(power + mean_radius ** 2, 0))
            images[members] = _ink(inside, softness[members, None]).reshape(-1, SIZE, SIZE)
    return images


def _draw_fonts(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    batch = len(labels)
    sdfs, inks, half_extent = _font_templates()
    which = rng.integers(0, len(FONT_FILES), batch) * 10 + labels
    warp = _Warp(batch, rng)
    box = rng.normal(19.5, 1.0, batch).clip(16.5, 22).astype(np.float32)
    thicken = rng.uniform(0.0, 1.1, batch).astype(np.float32)  # pixels added to the outline
    softness = rng.uniform(1.0, 2.0, batch).astype(np.float32)
    points = warp.forward(inks[which])
    scale, offset = _placement(points, np.ones(points.shape[:2], np.float32), box, rng)
    gy, gx = _draw.pixel_grid(SIZE, SIZE, batch_dims=0)
    grid = np.stack([gx.ravel(), gy.ravel()], 1)[None]  # (1, 784, 2)
    glyph = warp.backward((grid - offset[:, None]) / scale[:, None, None])
    resolution = sdfs.shape[1]
    to_template = resolution / (2 * half_extent)
    cols = glyph[..., 0] * to_template + resolution / 2 - 0.5
    rows = glyph[..., 1] * to_template + resolution / 2 - 0.5
    sdf = _bilinear(sdfs, which, rows, cols) * (scale * warp.area_scale)[:, None]
    return _ink(thicken[:, None] - sdf, softness[:, None]).reshape(batch, SIZE, SIZE)


def _block(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.integers(0, 10, BLOCK)
    use_pen = rng.random(BLOCK) < PEN_FRACTION
    images = np.zeros((BLOCK, SIZE, SIZE), np.float32)
    images[use_pen] = _draw_pen(labels[use_pen], rng)
    images[~use_pen] = _draw_fonts(labels[~use_pen], rng)
    return np.round(images * 255).astype(np.uint8), labels.astype(np.uint8)


def generate(n: int, seed: int, stream: int) -> dict[str, np.ndarray]:
    """n digits as uint8 images (n, 28, 28) and uint8 labels, block by block."""
    blocks = [_block(rng) for rng in block_rngs(seed, stream, n, BLOCK)]
    images = np.concatenate([b[0] for b in blocks])[:n] if blocks else np.zeros((0, 28, 28))
    labels = np.concatenate([b[1] for b in blocks])[:n] if blocks else np.zeros(0)
    return {"images": images.astype(np.uint8), "labels": labels.astype(np.uint8)}
