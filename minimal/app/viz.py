"""Small picture helpers for the demos: image grids, PNG and GIF files, training curves.

Helpers: image_grid, save_image, save_grid, save_gif, draw_boxes (attention windows), smooth,
save_figure, plot_curves, draw_grid_world (the grid worlds of the tabular RL demos, with paths or
arrows).

Image layouts accepted everywhere a batch is expected:
    (N, H, W)                 grey
    (N, H, W, C), C in {1, 3} channels last (NumPy / matplotlib / PIL order)
    (N, C, H, W), C in {1, 3} channels first (PyTorch order, what conv layers produce)
Channels first is recognised when axis 1 has 1 or 3 entries and the last axis does not; a
batch where both do, e.g. (N, 3, 5, 3), is read as channels last unless `channels_first=True`.
Values are floats in `value_range` (default (0, 1); use (-1, 1) for tanh outputs) and are
clipped into it; uint8 arrays are taken as 0..255.
Files are written to a temporary name and renamed, so an interrupted demo never leaves a
half-written picture.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from minimal.app.files import atomic_file


def to_channels_last(images: np.ndarray, channels_first: bool | None = None) -> np.ndarray:
    """A batch in any accepted layout -> (N, H, W, C) with C in {1, 3}."""
    images = np.asarray(images)
    if images.ndim == 3:
        return images[..., None]
    if images.ndim != 4:
        raise ValueError(f"expected a batch of images (N, H, W), (N, H, W, C) or (N, C, H, W), "
                         f"got shape {images.shape}")
    if channels_first is None:
        channels_first = images.shape[1] in (1, 3) and images.shape[3] not in (1, 3)
    if channels_first:
        images = images.transpose(0, 2, 3, 1)
    if images.shape[3] not in (1, 3):
        raise ValueError(f"images need 1 or 3 channels, got shape {images.shape} "
                         f"(read as channels {'first' if channels_first else 'last'})")
    return images


def _to_unit(images: np.ndarray, value_range: tuple[float, float]) -> np.ndarray:
    if images.dtype == np.uint8:
        return images.astype(np.float32) / 255.0
    low, high = value_range
    return np.clip((images.astype(np.float32) - low) / (high - low), 0.0, 1.0)


def image_grid(images: np.ndarray, nrow: int = 8, padding: int = 1, pad_value: float = 1.0,
               value_range: tuple[float, float] = (0.0, 1.0),
               channels_first: bool | None = None) -> np.ndarray:
    """Tile a batch into one picture, `nrow` images per row (as torchvision's make_grid).

    Returns float32 in [0, 1]: (H', W') for grey images, (H', W', 3) for colour. `padding`
    pixels of `pad_value` separate the tiles and frame the grid.
    """
    batch = _to_unit(to_channels_last(images, channels_first), value_range)
    count, height, width, channels = batch.shape
    if count == 0:
        raise ValueError("image_grid needs at least one image")
    columns = max(1, min(nrow, count))
    rows = -(-count // columns)
    grid = np.full((padding + rows * (height + padding), padding + columns * (width + padding),
                    channels), pad_value, np.float32)
    for index in range(count):
        top = padding + (index // columns) * (height + padding)
        left = padding + (index % columns) * (width + padding)
        grid[top:top + height, left:left + width] = batch[index]
    return grid[..., 0] if channels == 1 else grid


def _as_uint8_picture(image: np.ndarray, scale: int) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
        raise ValueError(f"expected one image (H, W), (H, W, 1), (H, W, 3) or (H, W, 4); got "
                         f"shape {image.shape} (use image_grid for a batch)")
    if image.dtype != np.uint8:
        image = np.round(np.clip(image.astype(np.float32), 0, 1) * 255).astype(np.uint8)
    if scale > 1:  # nearest-neighbour upscaling keeps small pictures (28x28) crisp
        image = image.repeat(scale, axis=0).repeat(scale, axis=1)
    return image


def _atomic_write(path: str | os.PathLike, write) -> Path:
    """write(file) into a binary file that replaces `path` only when it succeeded."""
    with atomic_file(path) as file:
        write(file)
    return Path(path)


def save_image(image: np.ndarray, path: str | os.PathLike, scale: int = 1) -> Path:
    """Write one image (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), floats in [0, 1] or uint8,
    as PNG (or any format PIL knows from the suffix). `scale` enlarges by pixel repetition."""
    from PIL import Image

    picture = Image.fromarray(_as_uint8_picture(image, scale))
    suffix = Path(path).suffix.lstrip(".").upper() or "PNG"
    file_format = {"JPG": "JPEG"}.get(suffix, suffix)
    return _atomic_write(path, lambda temp: picture.save(temp, format=file_format))


def save_gif(frames: Sequence[np.ndarray] | np.ndarray, path: str | os.PathLike,
             duration: float = 0.1, loop: int = 0, scale: int = 1) -> Path:
    """Write frames (each one image as for save_image, all the same size) as an animated GIF.

    duration: seconds per frame; loop: 0 repeats forever.
    """
    from PIL import Image

    pictures = [Image.fromarray(_as_uint8_picture(frame, scale)) for frame in frames]
    if not pictures:
        raise ValueError("save_gif needs at least one frame")
    sizes = {picture.size for picture in pictures}
    if len(sizes) > 1:
        raise ValueError(f"all GIF frames must have the same size, got {sorted(sizes)}")
    milliseconds = max(10, round(duration * 1000))
    return _atomic_write(path, lambda temp: pictures[0].save(
        temp, format="GIF", save_all=True, append_images=pictures[1:], duration=milliseconds,
        loop=loop))


def save_grid(images: np.ndarray, path: str | os.PathLike, nrow: int = 8, scale: int = 1,
              **grid_options) -> Path:
    """image_grid then save_image: the one-liner most demos want for a batch of samples."""
    return save_image(image_grid(images, nrow, **grid_options), path, scale=scale)


def draw_boxes(images: np.ndarray, boxes: np.ndarray, colour=(1.0, 0.0, 0.0),
               channels_first: bool | None = None) -> np.ndarray:
    """Rectangle outlines drawn on copies of a batch, e.g. DRAW's attention windows.

    images: any accepted batch layout, values in [0, 1]. boxes: (N, 4) as (top, left, bottom,
    right) in pixels, floats allowed (rounded, clipped to the image). Returns (N, H, W, 3)
    float32; grey images become RGB so the colour shows.
    """
    batch = _to_unit(to_channels_last(images, channels_first), (0.0, 1.0))
    if batch.shape[3] == 1:
        batch = np.repeat(batch, 3, axis=3)
    batch = batch.copy()
    boxes = np.asarray(boxes, np.float64)
    if boxes.size != 4 * len(batch):
        raise ValueError(f"draw_boxes needs one (top, left, bottom, right) box per image: "
                         f"{len(batch)} x 4 numbers, got boxes of shape {boxes.shape}")
    boxes = boxes.reshape(len(batch), 4)
    height, width = batch.shape[1:3]
    rgb = np.asarray(colour, np.float32)
    for image, (top, left, bottom, right) in zip(batch, np.rint(boxes).astype(int)):
        top, bottom = np.clip([top, bottom], 0, height - 1)
        left, right = np.clip([left, right], 0, width - 1)
        image[top, left:right + 1] = rgb
        image[bottom, left:right + 1] = rgb
        image[top:bottom + 1, left] = rgb
        image[top:bottom + 1, right] = rgb
    return batch


def smooth(values: Sequence[float], window: int) -> np.ndarray:
    """Trailing moving average (the first points average what exists so far)."""
    values = np.asarray(values, np.float64)
    if window <= 1 or len(values) == 0:
        return values
    sums = np.cumsum(np.concatenate([[0.0], values]))
    counts = np.minimum(np.arange(1, len(values) + 1), window)
    return (sums[1:] - sums[np.arange(1, len(values) + 1) - counts]) / counts


def save_figure(figure, path: str | os.PathLike, dpi: int = 110) -> Path:
    """Lay out a matplotlib figure, write it as a PNG (atomically, like every file written
    here) and close it."""
    import matplotlib.pyplot as plt

    figure.tight_layout()
    try:
        return _atomic_write(path, lambda temp: figure.savefig(temp, format="png", dpi=dpi))
    finally:
        plt.close(figure)


def plot_curves(curves: Mapping[str, Sequence[float] | tuple[Sequence[float], Sequence[float]]],
                path: str | os.PathLike, title: str = "", xlabel: str = "step",
                ylabel: str = "", logy: bool = False, smoothing: int = 1,
                hlines: Mapping[str, float] | None = None) -> Path:
    """One line per named curve, written as a PNG.

    A curve is a sequence of y values (x = 0, 1, 2, ...) or an (x, y) pair. smoothing > 1
    draws the raw curve faintly and its moving average on top. hlines: labelled horizontal
    reference lines (a target, a textbook value).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    for index, (label, curve) in enumerate(curves.items()):
        if isinstance(curve, tuple) and len(curve) == 2:
            xs, ys = np.asarray(curve[0]), np.asarray(curve[1], np.float64)
        else:
            ys = np.asarray(curve, np.float64)
            xs = np.arange(len(ys))
        colour = f"C{index % 10}"
        if smoothing > 1:
            axes.plot(xs, ys, color=colour, alpha=0.25, linewidth=0.8)
            axes.plot(xs, smooth(ys, smoothing), color=colour, label=label)
        else:
            axes.plot(xs, ys, color=colour, label=label)
    for label, value in (hlines or {}).items():
        axes.axhline(value, color="grey", linestyle="--", linewidth=1)
        axes.annotate(label, (0.01, value), xycoords=("axes fraction", "data"),
                      textcoords="offset points", xytext=(0, 3), fontsize=8, color="grey")
    if logy:
        axes.set_yscale("log")
    axes.set_title(title)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.grid(alpha=0.3)
    if curves:
        axes.legend()
    return save_figure(figure, path, dpi=100)


# draw_grid_world's cell colours: wall and cliff dark, start orange, goal green; others white
GRID_COLOURS = {"#": "#444444", "C": "#444444", "S": "#fdc086", "G": "#7fc97f"}


def draw_grid_world(ax, layout: Sequence[Sequence[str]],
                    paths: Mapping[str, Sequence[tuple[int, int]]] | None = None,
                    arrows: Mapping[tuple[int, int], tuple[int, int]] | None = None,
                    wind: Sequence[int] | None = None,
                    letters: Mapping[str, object] | None = None) -> None:
    """Draw a grid world of the tabular RL demos on a matplotlib axis, row 0 at the top.

    layout: one string (or list of letters) per row, as ``minimal.rl.envs.GridEnv.layout``;
    walls (#) and cliff cells (C) are dark, the start (S) and goal (G) coloured and lettered
    (``letters``: text settings of those two letters, default size 11).
    paths: label -> the (row, col) cells of a path, drawn as lines (up to three, shifted a
    little so that paths along the same cells stay visible) with a legend under the grid that
    gives each path's number of steps.
    arrows: (row, col) -> (d_row, d_col): an arrow across that cell, e.g. its greedy move.
    wind: the wind strength of each column, written as up-arrows under the grid.
    """
    from matplotlib.patches import Rectangle

    letters = {"fontsize": 11} if letters is None else letters
    arrows = arrows or {}
    rows, cols = len(layout), len(layout[0])
    for row in range(rows):
        for col in range(cols):
            kind = layout[row][col]
            ax.add_patch(Rectangle((col - 0.5, row - 0.5), 1, 1, edgecolor="lightgrey",
                                   facecolor=GRID_COLOURS.get(kind, "white")))
            if kind in ("S", "G"):
                ax.text(col, row, kind, ha="center", va="center", **letters)
            if (row, col) in arrows:
                d_row, d_col = arrows[row, col]
                ax.arrow(col - 0.3 * d_col, row - 0.3 * d_row, 0.6 * d_col, 0.6 * d_row,
                         head_width=0.2, length_includes_head=True, color="black")
    for (label, path), offset in zip((paths or {}).items(), (-0.12, 0.12, 0.0)):
        cells = np.array(path, dtype=float)
        ax.plot(cells[:, 1] + offset, cells[:, 0] + offset, marker="o", markersize=3, lw=2,
                label=f"{label} ({len(path) - 1} steps)")
    if wind is not None:
        for col, strength in enumerate(wind):
            ax.text(col, rows - 0.5 + 0.45, "↑" * strength or "0", ha="center", va="center")
    ax.set_xlim(-0.5, cols - 0.5)
    ax.set_ylim(rows - 0.5 + (0.9 if wind else 0), -0.5)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    if paths:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.02), ncol=2, fontsize=8)
