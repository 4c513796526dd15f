"""Do deepcolor's colours follow a user's strokes on a real photograph's line art?

    python benchmarks/deepcolor_strokes.py [--checkpoint outputs/deepcolor/checkpoint.npz]
                                           [--out outputs/deepcolor_strokes]

Makes the line art of a real photograph (the portrait matplotlib ships, far from the training
cartoons), paints three broad strokes on white paper in colours the net does not pick there by
itself (blue on the background, red and violet on the jacket), and colours the drawing through
the command line a user runs
(`python -m minimal.demos.deepcolor --colorize LINE --hint HINT --out OUT`), without a hint,
with the post's faded hint (--hint-fade 0.3) and with the strokes at full strength
(--hint-fade 1). Per stroke it prints how much the colouring's hue under the stroke agrees with
the stroke's: the cosine between the two colours' chromatic parts (each colour minus its grey
level, so +1 is the same hue, 0 unrelated, -1 the opposite hue), for each colouring, and the
same for the change the full-strength strokes made to the colour there (towards the stroke's
hue: +1). Writes the files and strokes.png (line art, hint, the three colourings) to --out.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from minimal import data

SIZE = 256  # the drawing's side: the line art is traced at about the nets' scale
# (name, colour, points in fractions of the side): broad strokes as a user would paint them
STROKES = [("blue background", (0.20, 0.40, 0.90), [(0.80, 0.08), (0.90, 0.25), (0.86, 0.45)]),
           ("red jacket", (0.85, 0.15, 0.15), [(0.06, 0.80), (0.18, 0.88), (0.30, 0.95)]),
           ("violet jacket", (0.60, 0.20, 0.80), [(0.68, 0.74), (0.80, 0.80), (0.92, 0.90)])]
WIDTH = 0.07  # the brush, as a fraction of the side


def paint(size: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """The hint (size, size, 3) in [0, 1], white paper with the strokes, and each stroke's mask."""
    canvas = Image.new("RGB", (size, size), (255, 255, 255))
    masks = []
    for _, colour, points in STROKES:
        xy = [(x * size, y * size) for x, y in points]
        ImageDraw.Draw(canvas).line(xy, fill=tuple(int(255 * c) for c in colour),
                                    width=round(WIDTH * size), joint="curve")
        mask = Image.new("L", (size, size), 0)
        ImageDraw.Draw(mask).line(xy, fill=255, width=round(WIDTH * size), joint="curve")
        masks.append(np.asarray(mask) > 0)
    return np.asarray(canvas, np.float32) / 255, masks


def chromatic(colour: np.ndarray) -> np.ndarray:
    """A colour (..., 3) minus its grey level: what is left is its hue and saturation."""
    return colour - colour.mean(axis=-1, keepdims=True)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


def colorize(checkpoint: str, line: Path, hint: Path | None, out: Path, fade: float) -> np.ndarray:
    command = [sys.executable, "-m", "minimal.demos.deepcolor", "--colorize", str(line),
               "--out", str(out), "--checkpoint", checkpoint, "--hint-fade", str(fade)]
    if hint is not None:
        command += ["--hint", str(hint)]
    subprocess.run(command, check=True, cwd=ROOT)
    return np.asarray(Image.open(out).convert("RGB"), np.float32) / 255


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="outputs/deepcolor/checkpoint.npz")
    parser.add_argument("--out", default="outputs/deepcolor_strokes")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    line = data.line_art(data.sample_photo(SIZE))
    hint, masks = paint(SIZE)
    Image.fromarray((line * 255).astype(np.uint8)).save(out / "line.png")
    Image.fromarray((hint * 255).astype(np.uint8)).save(out / "hint.png")
    checkpoint = str(Path(args.checkpoint).resolve())
    results = {"no hint": colorize(checkpoint, out / "line.png", None, out / "no_hint.png", 0.3),
               "hint faded 0.3": colorize(checkpoint, out / "line.png", out / "hint.png",
                                          out / "hint_0.3.png", 0.3),
               "hint at full strength": colorize(checkpoint, out / "line.png", out / "hint.png",
                                                 out / "hint_1.png", 1.0)}
    none = results["no hint"]
    print(f"{'stroke':15s}" + "".join(f"{name:>23s}" for name in results)
          + "   shift (full vs none)")
    for (name, colour, _), mask in zip(STROKES, masks):
        own = chromatic(np.array(colour, np.float32))
        cells = [cosine(chromatic(picture[mask].mean(axis=0)), own) for picture in results.values()]
        shift = results["hint at full strength"][mask].mean(axis=0) - none[mask].mean(axis=0)
        print(f"{name:15s}" + "".join(f"{cell:+23.2f}" for cell in cells)
              + f"   {cosine(chromatic(shift), own):+.2f}")
    _figure(line, hint, results, out / "strokes.png")
    print(f"wrote {out}/strokes.png")


def _figure(line: np.ndarray, hint: np.ndarray, results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("a photograph's line art", line), ("the strokes (hint)", hint)] + list(
        results.items())
    figure, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 2.9))
    for axis, (title, picture) in zip(axes, panels):
        axis.imshow(picture, cmap="gray" if picture.ndim == 2 else None, vmin=0, vmax=1)
        axis.set_title(title, fontsize=8)
        axis.axis("off")
    figure.tight_layout()
    figure.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
