"""Small vectorised drawing tools shared by the generators: signed distance functions (SDFs),
anti-aliased coverage, batched bilinear sampling, smooth random fields and colour conversion.

A shape is drawn by evaluating its signed distance (negative inside, positive outside, in
pixels) at every pixel centre; `coverage(sdf)` turns that into an anti-aliased alpha in [0, 1].
Everything works on whole batches at once: arrays of shape (B, H, W) with per-sample parameters
broadcast as (B, 1, 1).
"""

from __future__ import annotations

import numpy as np


def pixel_grid(height: int, width: int, batch_dims: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (y, x), each shaped (1,)*batch_dims + (H, W), float32."""
    ys, xs = np.meshgrid(np.arange(height, dtype=np.float32) + 0.5,
                         np.arange(width, dtype=np.float32) + 0.5, indexing="ij")
    shape = (1,) * batch_dims + (height, width)
    return ys.reshape(shape), xs.reshape(shape)


def coverage(sdf: np.ndarray, softness: float | np.ndarray = 1.0) -> np.ndarray:
    """Anti-aliased alpha from a signed distance in pixels: 1 inside, 0 outside, a ramp of width
    `softness` pixels across the edge."""
    return np.clip(0.5 - sdf / softness, 0.0, 1.0)


def rotate(x: np.ndarray, y: np.ndarray, angle: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates rotated by -angle, i.e. into the frame of a shape rotated by +angle."""
    cos, sin = np.cos(angle), np.sin(angle)
    return cos * x + sin * y, -sin * x + cos * y


def sd_circle(x: np.ndarray, y: np.ndarray, radius) -> np.ndarray:
    return np.hypot(x, y) - radius


def sd_ellipse(x: np.ndarray, y: np.ndarray, rx, ry) -> np.ndarray:
    """Approximate SDF of an axis-aligned ellipse (exact on the axes, good enough to draw)."""
    return (np.hypot(x / rx, y / ry) - 1.0) * np.minimum(rx, ry)


def sd_box(x: np.ndarray, y: np.ndarray, half_w, half_h) -> np.ndarray:
    dx, dy = np.abs(x) - half_w, np.abs(y) - half_h
    outside = np.hypot(np.maximum(dx, 0), np.maximum(dy, 0))
    return outside + np.minimum(np.maximum(dx, dy), 0)


def sd_segment(x, y, ax, ay, bx, by) -> np.ndarray:
    """Distance to the segment from (ax, ay) to (bx, by)."""
    ex, ey = bx - ax, by - ay
    wx, wy = x - ax, y - ay
    t = np.clip((wx * ex + wy * ey) / (ex * ex + ey * ey + 1e-12), 0, 1)
    return np.hypot(wx - ex * t, wy - ey * t)


def sd_polygon(x: np.ndarray, y: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Exact SDF of a simple polygon given as a (V, 2) array of (x, y) vertices.

    Distance to the nearest edge, negative where a ray crossing count says "inside" (after
    Inigo Quilez's sdPolygon). The loop is over vertices, never pixels.
    """
    vertices = np.asarray(vertices, dtype=np.float32)
    distance2 = np.full(np.broadcast(x, y).shape, np.inf, dtype=np.float32)
    inside = np.zeros(distance2.shape, dtype=bool)
    previous = vertices[-1]
    for vertex in vertices:
        ex, ey = previous[0] - vertex[0], previous[1] - vertex[1]
        wx, wy = x - vertex[0], y - vertex[1]
        t = np.clip((wx * ex + wy * ey) / (ex * ex + ey * ey), 0, 1)
        distance2 = np.minimum(distance2, (wx - ex * t) ** 2 + (wy - ey * t) ** 2)
        crosses = (y >= vertex[1]) != (y >= previous[1])
        left = ex * wy > ey * wx
        inside ^= crosses & (left == (previous[1] > vertex[1]))
        previous = vertex
    return np.where(inside, -1.0, 1.0) * np.sqrt(distance2)


def regular_polygon(sides: int, radius: float = 1.0, star_inner: float | None = None,
                    phase: float = 0.0) -> np.ndarray:
    """Vertices of a regular polygon, or of a star when star_inner (inner radius ratio) is set."""
    if star_inner is None:
        angles = phase + 2 * np.pi * np.arange(sides) / sides
        radii = np.full(sides, radius)
    else:
        angles = phase + np.pi * np.arange(2 * sides) / sides
        radii = np.where(np.arange(2 * sides) % 2 == 0, radius, radius * star_inner)
    # Angle 0 points up (negative y, since image rows grow downwards).
    return np.stack([radii * np.sin(angles), -radii * np.cos(angles)], axis=1)


def sd_heart(x: np.ndarray, y: np.ndarray, size) -> np.ndarray:
    """Heart of height about 1.1*size centred near the origin, point down (Quilez's sdHeart)."""
    px = np.abs(x) / size
    py = 0.55 - y / size  # his heart has its tip at y=0 pointing down and grows upwards
    upper = np.hypot(px - 0.25, py - 0.75) - np.sqrt(2) / 4
    m = 0.5 * np.maximum(px + py, 0)
    lower = np.sqrt(np.minimum(px ** 2 + (py - 1) ** 2, (px - m) ** 2 + (py - m) ** 2))
    lower = lower * np.sign(px - py)
    return np.where(px + py > 1, upper, lower) * size


def _spline_matrix(length: int, cells: int) -> np.ndarray:
    """(length, cells+3) cubic B-spline weights: row i blends 4 lattice values around pixel i."""
    position = (np.arange(length) + 0.5) / length * cells + 1  # lattice units, past a margin
    base = np.floor(position).astype(int)
    t = position - base
    weights = np.stack([(1 - t) ** 3, 3 * t ** 3 - 6 * t ** 2 + 4,
                        -3 * t ** 3 + 3 * t ** 2 + 3 * t + 1, t ** 3], axis=1) / 6
    matrix = np.zeros((length, cells + 3), np.float32)
    for offset in range(4):
        matrix[np.arange(length), base - 1 + offset] += weights[:, offset]
    return matrix


def smooth_noise(rng: np.random.Generator, batch: int, height: int, width: int,
                 cells: int) -> np.ndarray:
    """Value noise in [0, 1] shaped (B, H, W): a random lattice of about cells x cells values
    per sample, blended by cubic B-splines (two small matrix products, no per-pixel loop).
    Clouds, blotches and textures."""
    lattice = rng.random((batch, cells + 3, cells + 3), dtype=np.float32)
    rows, cols = _spline_matrix(height, cells), _spline_matrix(width, cells)
    field = rows[None] @ lattice @ cols.T[None]
    # B-spline blending shrinks the contrast towards 0.5; stretch it back.
    return np.clip((field - 0.5) * 2.2 + 0.5, 0.0, 1.0)


def hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Vectorised HSV -> RGB, inputs in [0, 1] of any equal shape, output shape + (3,)."""
    h = np.asarray(h, dtype=np.float32) % 1.0
    s = np.asarray(s, dtype=np.float32)
    v = np.asarray(v, dtype=np.float32)
    k = (np.array([5.0, 3.0, 1.0], dtype=np.float32) + h[..., None] * 6) % 6
    ramp = np.clip(np.minimum(k, 4 - k), 0, 1)
    return v[..., None] - v[..., None] * s[..., None] * ramp


def composite(canvas: np.ndarray, alpha: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """Paint `colour` over `canvas` (B, H, W, 3) with `alpha` (B, H, W); colour broadcasts.

    Returns a new float32 canvas: canvas + alpha * (colour - canvas).
    """
    alpha = np.asarray(alpha, np.float32)[..., None]
    colour = np.asarray(colour, np.float32)
    result = colour - canvas
    result *= alpha
    result += canvas
    return result.astype(np.float32, copy=False)
