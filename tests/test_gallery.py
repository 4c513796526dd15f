"""The README's gallery: every picture it shows exists, every demo has a row, the set is small."""

import re
from pathlib import Path

import numpy as np
from PIL import Image, ImageSequence

import run_all

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_every_picture_the_readme_shows_exists():
    shown = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", README)
    assert shown, "the README shows no picture"
    missing = [path for path in shown if not (ROOT / path).is_file()]
    assert missing == []


def test_every_demo_has_a_row_and_a_gallery_picture():
    for name in run_all.demo_names():
        assert re.search(rf"^\| `{name}` \|", README, re.M), f"README has no row for {name}"
        figure = run_all.GALLERY_FIGURES[name]
        assert (run_all.GALLERY / f"{name}{Path(figure).suffix}").is_file(), name
        assert f"gallery/{name}{Path(figure).suffix}" in README, f"README does not show {name}"


def test_the_gallery_stays_within_its_budget():
    total = sum(path.stat().st_size for path in run_all.GALLERY.glob("*"))
    assert 0 < total <= run_all.GALLERY_BUDGET


def test_gallery_image_shrinks_pixels_colours_and_frames(tmp_path):
    ramp = np.linspace(0, 255, 900, dtype=np.float32)[None, :, None] * np.ones((100, 1, 3))
    frames = [Image.fromarray(((ramp + 9 * k) % 256).astype(np.uint8))
              for k in range(run_all.GALLERY_GIF_FRAMES + 4)]
    frames[0].save(tmp_path / "big.gif", save_all=True, append_images=frames[1:], duration=50)
    frames[0].save(tmp_path / "big.png")
    run_all.gallery_image(tmp_path / "big.gif", tmp_path / "small.gif")
    run_all.gallery_image(tmp_path / "big.png", tmp_path / "small.png")
    with Image.open(tmp_path / "small.gif") as gif:
        kept = list(ImageSequence.Iterator(gif))
        assert gif.width == run_all.GALLERY_GIF_WIDTH and gif.height == round(100 * 256 / 900)
        assert len(kept) <= run_all.GALLERY_GIF_FRAMES + 1
    with Image.open(tmp_path / "small.png") as png:
        assert png.size == (run_all.GALLERY_WIDTH, 62) and png.mode == "P"
    # a caller may keep more frames, wider (the MuJoCo episodes): of 20 frames every other
    # one and the last
    run_all.gallery_image(tmp_path / "big.gif", tmp_path / "wide.gif", gif_frames=10,
                          gif_width=450)
    with Image.open(tmp_path / "wide.gif") as gif:
        assert gif.width == 450 and len(list(ImageSequence.Iterator(gif))) == 11
        assert gif.info["duration"] == 100  # each kept frame stands for the two it replaces


def test_make_gallery_names_what_is_missing(tmp_path):
    problems = run_all.make_gallery(["vae", "nonexistent"], outputs=tmp_path, gallery=tmp_path)
    assert any("vae" in p and "missing" in p for p in problems)
    assert any("nonexistent: no entry" in p for p in problems)
