"""Tests for minimal.app.viz: grid layouts and tile placement, PNG/GIF round trips, curves."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from minimal.app import viz


def test_grid_places_each_tile_with_padding():
    images = np.stack([np.full((2, 3), value) for value in (0.1, 0.2, 0.3, 0.4, 0.5)])
    grid = viz.image_grid(images, nrow=2, padding=1, pad_value=1.0)
    assert grid.shape == (1 + 3 * (2 + 1), 1 + 2 * (3 + 1))  # 3 rows of 2, grey -> 2-d
    np.testing.assert_allclose(grid[1:3, 1:4], 0.1)
    np.testing.assert_allclose(grid[1:3, 5:8], 0.2)
    np.testing.assert_allclose(grid[4:6, 1:4], 0.3)
    np.testing.assert_allclose(grid[7:9, 1:4], 0.5)
    np.testing.assert_allclose(grid[7:9, 5:8], 1.0)  # the empty sixth cell is padding
    np.testing.assert_allclose(grid[0], 1.0)


def test_grid_accepts_channels_last_and_first_alike():
    rng = np.random.default_rng(0)
    last = rng.random((6, 5, 7, 3)).astype(np.float32)
    from_last = viz.image_grid(last, nrow=3)
    from_first = viz.image_grid(last.transpose(0, 3, 1, 2), nrow=3)
    assert from_last.shape == (1 + 2 * 6, 1 + 3 * 8, 3)
    np.testing.assert_array_equal(from_last, from_first)
    grey = rng.random((4, 1, 6, 6))
    np.testing.assert_array_equal(viz.image_grid(grey), viz.image_grid(grey[:, 0]))
    # Ambiguous (N, 3, H, 3): channels last unless told otherwise.
    ambiguous = rng.random((2, 3, 4, 3))
    assert viz.image_grid(ambiguous, padding=0).shape == (3, 8, 3)
    assert viz.image_grid(ambiguous, padding=0, channels_first=True).shape == (4, 6, 3)
    with pytest.raises(ValueError, match="channels"):
        viz.image_grid(rng.random((2, 5, 5, 2)))
    with pytest.raises(ValueError, match="batch"):
        viz.image_grid(rng.random((5, 5)))


def test_grid_value_range_and_uint8():
    tanh_images = np.array([[[-1.0, 0.0, 1.0, 3.0]]])
    grid = viz.image_grid(tanh_images, padding=0, value_range=(-1, 1))
    np.testing.assert_allclose(grid, [[0.0, 0.5, 1.0, 1.0]])
    grid = viz.image_grid(np.array([[[0, 255]]], np.uint8), padding=0)
    np.testing.assert_allclose(grid, [[0.0, 1.0]])


def test_save_image_round_trip_and_scale(tmp_path):
    rng = np.random.default_rng(1)
    picture = rng.random((5, 4, 3)).astype(np.float32)
    path = viz.save_image(picture, tmp_path / "out" / "picture.png", scale=3)
    with Image.open(path) as saved:
        pixels = np.asarray(saved)
    assert pixels.shape == (15, 12, 3)
    np.testing.assert_array_equal(pixels[::3, ::3], np.round(picture * 255).astype(np.uint8))
    grey = viz.save_image(np.zeros((3, 3, 1)), tmp_path / "grey.png")
    with Image.open(grey) as saved:
        assert saved.mode == "L"
    with pytest.raises(ValueError, match="image_grid"):
        viz.save_image(np.zeros((2, 3, 3, 3)), tmp_path / "batch.png")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["grey.png", "out", "picture.png"]


def test_save_gif_frames_and_duration(tmp_path):
    frames = [np.full((6, 6, 3), value, np.float32) for value in (0.0, 0.5, 1.0)]
    path = viz.save_gif(frames, tmp_path / "anim.gif", duration=0.25)
    with Image.open(path) as gif:
        assert gif.n_frames == 3
        assert gif.info["duration"] == 250
        gif.seek(2)
        assert np.asarray(gif.convert("L")).mean() > 250
    with pytest.raises(ValueError, match="same size"):
        viz.save_gif([np.zeros((4, 4)), np.zeros((5, 5))], tmp_path / "bad.gif")


def test_smooth_is_a_trailing_mean():
    values = np.array([1.0, 3.0, 5.0, 7.0, 9.0])
    expected = [np.mean(values[max(0, i - 2):i + 1]) for i in range(5)]
    np.testing.assert_allclose(viz.smooth(values, 3), expected)
    np.testing.assert_array_equal(viz.smooth(values, 1), values)


def test_plot_curves_writes_a_png(tmp_path):
    steps = np.arange(50)
    curves = {"train": np.exp(-steps / 10), "test": (steps[::10], steps[::10] * 0.01 + 0.01)}
    path = viz.plot_curves(curves, tmp_path / "curves.png", title="loss", ylabel="loss", logy=True,
                           smoothing=5, hlines={"target": 0.1})
    with Image.open(path) as picture:
        assert picture.size == (640, 400)
        pixels = np.asarray(picture.convert("RGB")).astype(int)
    # Two coloured lines were drawn: some pixels are neither white nor grey.
    saturation = pixels.max(axis=2) - pixels.min(axis=2)
    assert (saturation > 100).sum() > 200


def test_draw_boxes_outlines_only_the_rectangle():
    images = np.zeros((2, 1, 8, 8))  # grey, channels first
    boxes = np.array([[1, 2, 5, 6], [-3, -3, 20, 20]])  # the second is clipped to the image
    drawn = viz.draw_boxes(images, boxes, colour=(0, 1, 0))
    assert drawn.shape == (2, 8, 8, 3)
    outline = np.zeros((8, 8), bool)
    outline[1, 2:7] = outline[5, 2:7] = outline[1:6, 2] = outline[1:6, 6] = True
    np.testing.assert_array_equal(drawn[0, ..., 1] == 1, outline)
    assert drawn[0, ..., 0].max() == 0 and drawn[0, 3, 4, 1] == 0  # inside stays untouched
    assert drawn[1, 0, :, 1].all() and drawn[1, :, 7, 1].all()
    assert images.max() == 0  # the input is not modified
    with pytest.raises(ValueError, match=r"one .* box per image"):
        viz.draw_boxes(images, boxes[:1])


def test_save_grid(tmp_path):
    levels = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
    images = np.broadcast_to(levels[:, None, None], (5, 4, 4))
    path = viz.save_grid(images, tmp_path / "grid.png", nrow=5, scale=2, padding=0)
    with Image.open(path) as saved:
        assert saved.size == (40, 8)
        pixels = np.asarray(saved)
    # Tiles in order left to right, each 4 pixels scaled to 8.
    np.testing.assert_array_equal(pixels[:, ::8], np.broadcast_to(np.round(levels * 255), (8, 5)))
    np.testing.assert_array_equal(pixels[:, 7::8], pixels[:, ::8])


def test_save_figure_writes_at_its_dpi_closes_and_keeps_the_old_file_on_failure(tmp_path):
    import matplotlib.pyplot as plt

    path = tmp_path / "figure.png"
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([0, 1], [1, 0])
    viz.save_figure(fig, path, dpi=50)
    assert not plt.fignum_exists(fig.number)  # closed: a demo writing dozens leaks none
    with Image.open(path) as picture:
        assert picture.size == (200, 150)
    before = path.read_bytes()

    broken, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    broken.savefig = lambda *args, **kwargs: (_ for _ in ()).throw(KeyboardInterrupt)
    with pytest.raises(KeyboardInterrupt):
        viz.save_figure(broken, path)
    assert path.read_bytes() == before and sorted(tmp_path.iterdir()) == [path]
    assert not plt.fignum_exists(broken.number)


def test_draw_grid_world_cells_paths_arrows_and_wind():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_hex
    from matplotlib.patches import FancyArrow, Rectangle

    layout = ("S.#", ".CG")
    fig, (plain, windy) = plt.subplots(1, 2)
    path = [(0, 0), (1, 0), (1, 1), (1, 2)]
    viz.draw_grid_world(plain, layout, paths={"walk": path}, arrows={(0, 1): (1, 0)})
    cells = [p for p in plain.patches if isinstance(p, Rectangle)]
    assert len(cells) == 6  # one square per cell, row by row
    assert [to_hex(cell.get_facecolor()) for cell in cells] == [
        "#fdc086", "#ffffff", "#444444", "#ffffff", "#444444", "#7fc97f"]
    assert cells[5].get_xy() == (1.5, 0.5)  # (col - 0.5, row - 0.5): row 1, column 2
    assert sorted(text.get_text() for text in plain.texts) == ["G", "S"]
    assert plain.texts[0].get_fontsize() == 11  # the default letter size
    (arrow,) = [p for p in plain.patches if isinstance(p, FancyArrow)]
    x, y = arrow.get_xy().T  # points down from the middle of cell (0, 1): within its column
    assert np.all(np.abs(x - 1) <= 0.11) and y.min() >= -0.31 and y.max() <= 0.31
    (line,) = plain.lines
    np.testing.assert_allclose(line.get_xdata(), [0 - 0.12, 0 - 0.12, 1 - 0.12, 2 - 0.12])
    np.testing.assert_allclose(line.get_ydata(), [0 - 0.12, 1 - 0.12, 1 - 0.12, 1 - 0.12])
    assert [t.get_text() for t in plain.get_legend().get_texts()] == ["walk (3 steps)"]
    assert plain.get_ylim() == (1.5, -0.5)  # row 0 at the top

    viz.draw_grid_world(windy, layout, wind=(0, 2, 1), letters={"color": "grey"})
    assert windy.get_legend() is None and not windy.lines
    assert windy.get_ylim() == (2.4, -0.5)  # room for the wind row under the grid
    assert [t.get_text() for t in windy.texts] == ["S", "G", "0", "↑↑", "↑"]
    assert to_hex(windy.texts[0].get_color()) == "#808080"
    plt.close(fig)
