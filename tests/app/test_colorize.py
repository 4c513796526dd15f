"""minimal.app.colorize with a stand-in colouring (no trained net): user files are read as RGB
or refused in one line; a drawing of any size reaches the colouring traced at the trained size
and comes back at its own size with its lines on top; --colorize reads the files before it
loads the net, then writes the PNG; the page gets the loaded net and the examples; a UserError
ends a command with one line. (tests/demos/test_deepcolor*.py run the same with the demo's net.)"""


import numpy as np
import pytest
from PIL import Image

from minimal import data
from minimal.app import colorize
from minimal.errors import CheckpointError, DataError


def save(path, array, mode=None):
    Image.fromarray(array, mode).save(path)
    return str(path)


def test_user_images_are_rgb_with_transparency_as_white_paper(tmp_path):
    grey = np.full((5, 7), 200, np.uint8)
    picture = colorize.read_user_image(save(tmp_path / "grey.png", grey, "L"), "--colorize")
    assert picture.shape == (5, 7, 3) and picture.dtype == np.float32
    np.testing.assert_allclose(picture, 200 / 255, atol=1e-6)
    rgba = np.zeros((4, 6, 4), np.uint8)  # transparent black everywhere but one opaque pixel
    rgba[1, 2] = (255, 0, 0, 255)
    picture = colorize.read_user_image(save(tmp_path / "rgba.png", rgba, "RGBA"), "--hint")
    np.testing.assert_allclose(picture[1, 2], [1, 0, 0])
    np.testing.assert_allclose(picture[0, 0], [1, 1, 1])


def test_bad_user_files_are_one_line_data_errors_naming_the_flag(tmp_path, bomb_png):
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("not a picture\n")
    bomb_png(tmp_path / "bomb.png")
    cases = {"missing.png": "no such file", "empty.png": "the file is empty",
             "text.png": "not an image PIL can read", "bomb.png": "decompression bomb"}
    for name, message in cases.items():
        with pytest.raises(DataError) as error:
            colorize.read_user_image(tmp_path / name, "--hint")
        text = str(error.value)
        assert text.startswith(f"--hint {tmp_path / name}: ") and message in text, text
        assert "\n" not in text


def test_resize_keeps_a_same_size_image_and_averages_areas_when_shrinking():
    image = np.random.default_rng(0).random((4, 6, 3)).astype(np.float32)
    np.testing.assert_array_equal(colorize.resize(image, 4, 6), image)
    small = colorize.resize(image, 2, 3)
    blocks = image.reshape(2, 2, 3, 2, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(small, blocks, atol=1e-6)
    grey = colorize.resize(image[..., 0], 9, 13)  # enlarging (bicubic) stays in [0, 1]
    assert grey.shape == (9, 13) and grey.min() >= 0 and grey.max() <= 1


def drawing(height, width):
    """Line art of a cartoon: black lines (0) on white paper (1)."""
    picture = data.illustrations(1, seed=3, size=max(height, width))[0][:height, :width]
    return data.line_art(picture)


def test_a_drawing_is_coloured_at_the_trained_size_and_returned_at_its_own():
    calls = []

    def colour_small(line, hint):
        calls.append((line, hint))
        return np.stack([line, np.full_like(line, 0.5), np.ones_like(line)], axis=-1)

    line = drawing(45, 70)
    hint = np.full((9, 14, 3), 0.25, np.float32)
    out = colorize.colour_drawing(colour_small, np.repeat(line[..., None], 3, 2), hint, 32)
    traced, small_hint = calls[-1]
    assert traced.shape == (21, 32) and set(np.unique(traced)) <= {0.0, 1.0}  # 45 * 32 / 70
    assert small_hint.shape == (21, 32, 3)
    np.testing.assert_allclose(small_hint, 0.25, atol=1e-6)
    assert out.shape == (45, 70, 3) and out.dtype == np.float32
    assert np.all(out[line == 0] == 0)  # the drawing's own lines stay black on top
    colorize.colour_drawing(colour_small, line, None, 32)
    assert calls[-1][1] is None
    # a colouring that leaves the paper white gives back the drawing itself
    white = colorize.colour_drawing(lambda line, hint: np.ones(line.shape + (3,)), line, None, 32)
    np.testing.assert_allclose(white, np.repeat(line[..., None], 3, 2), atol=1e-6)


def test_colorize_file_reads_first_then_loads_then_writes_the_png(tmp_path, capsys):
    line_path = save(tmp_path / "line.png", (drawing(37, 53) * 255).astype(np.uint8), "L")
    hint_path = save(tmp_path / "hint.png", np.full((9, 14, 3), (200, 40, 40), np.uint8))
    seen = []

    def load():
        seen.append("load")
        return (lambda line, hint: seen.append(getattr(hint, "shape", None)) or line * 0.5,
                "the stand-in net")

    out = colorize.colorize_file(line_path, hint_path, str(tmp_path / "out.png"), load)
    with Image.open(out) as image:
        assert image.size == (53, 37) and image.mode == "RGB"
    assert seen == ["load", (9, 14, 3)]  # the hint as read, at its own size
    assert capsys.readouterr().out == (f"coloured {line_path} (53x37) with the stand-in net and "
                                       f"the hint {hint_path}: {out}\n")

    def never():
        raise AssertionError("a bad drawing must be reported before the model loads")

    with pytest.raises(DataError, match="no such file"):
        colorize.colorize_file(str(tmp_path / "none.png"), "", str(tmp_path / "x.png"), never)
    with pytest.raises(DataError, match=r"unknown picture format '\.xyz'"):
        colorize.colorize_file(line_path, "", str(tmp_path / "out.xyz"), load)
    assert not (tmp_path / "out.xyz").exists() and not (tmp_path / "x.png").exists()


def test_serve_loads_the_net_then_hands_the_page_its_colouring_and_examples(monkeypatch):
    from minimal.app import webapp

    handed = {}

    def fake_serve(colour, examples, **options):
        handed.update(colour=colour, examples=examples, **options)

    def colour(line, hint):
        return line

    monkeypatch.setattr(webapp, "serve", fake_serve)
    colorize.serve(lambda: (colour, "the stand-in net"), title="a page", host="127.0.0.1",
                   port=0, example_seed=7)
    assert handed["colour"] is colour and handed["about"] == "the stand-in net"
    assert (handed["title"], handed["host"], handed["port"]) == ("a page", "127.0.0.1", 0)
    names = [name for name, _ in handed["examples"]]
    assert len(names) == 5 and "photograph" in names[-1] and "never saw" in names[0]
    for _, line in handed["examples"]:
        assert line.shape == (256, 256) and set(np.unique(line)) <= {0.0, 1.0}
    again = colorize.example_drawings(7)  # the examples depend only on the seed
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(again, handed["examples"]))


def test_a_command_ends_with_one_line_on_a_user_error(capsys):
    def missing():
        raise CheckpointError("out/checkpoint.npz: no checkpoint; train one first")

    with pytest.raises(SystemExit) as stop:
        colorize.command("deepcolor", missing)
    assert stop.value.code == 1
    assert capsys.readouterr().err == "deepcolor: out/checkpoint.npz: no checkpoint; train " \
                                      "one first\n"
    colorize.command("deepcolor", lambda: None)  # no error: returns
    with pytest.raises(ZeroDivisionError):  # a bug is not a user's error: it is not hidden
        colorize.command("deepcolor", lambda: 1 / 0)
