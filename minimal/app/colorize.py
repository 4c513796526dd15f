"""A trained line-art colouring net as a program: a user's drawing file in, a PNG out
(--colorize), or the same in the browser (--serve, through minimal/app/webapp.py).

The demo keeps the algorithm, how its net colours line art with a hint, and hands this module
`colour_small(line, hint) -> picture`: one drawing at the size the net was trained at (line
(h, w) in [0, 1], traced as the training's line art, with its longer side the trained size;
hint (h, w, 3) in [0, 1] or None) coloured as (h, w, 3) in [0, 1]. Around it, this module:

    read_user_image   a file -> float RGB (H, W, 3) in [0, 1], transparency as white paper;
                      a missing, empty, unreadable or oversized file is a one-line DataError
    colour_drawing    a drawing of any size and mode: to grey, scaled so its longer side is the
                      trained size, traced again with data.line_art's adaptive threshold (so it
                      looks like the line art the net learned from), coloured, scaled back to
                      its own size, and its own lines multiplied over the colours (crisp lines)
    colorize_file     --colorize: read the drawing (and hint), load the net, write the PNG
    serve             --serve: the page (webapp.serve) with the loaded net, and as examples
                      cartoons of a seed the net never saw and a photograph's line art
    command           run one of those, a UserError ending the program with its one line
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from minimal import data
from minimal.app import viz
from minimal.errors import DataError, UserError

MAX_PIXELS = 40_000_000  # larger user images are refused: a small file can hold a huge picture

# (line, hint or None) -> picture, all float arrays in [0, 1] (see the module's docstring)
Colour = Callable[[np.ndarray, "np.ndarray | None"], np.ndarray]


def read_user_image(path: str | Path, what: str) -> np.ndarray:
    """A user's picture as float32 RGB (H, W, 3) in [0, 1] (transparency as white paper), or a
    DataError in one line: missing, empty, not an image, or too many pixels to decode safely.
    `what` names the file in the message (the flag it came from, say)."""
    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} {path}: no such file")
    if path.stat().st_size == 0:
        raise DataError(f"{what} {path}: the file is empty (0 bytes); expected a PNG or JPEG")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:  # reads the header only: the size is known cheaply
                pixels = image.size[0] * image.size[1]
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        pixels = MAX_PIXELS + 1
    except (OSError, SyntaxError, ValueError):
        raise DataError(f"{what} {path}: not an image PIL can read; expected a PNG or JPEG "
                        "file") from None
    if pixels > MAX_PIXELS:
        raise DataError(f"{what} {path}: claims more than {MAX_PIXELS:,} pixels (a "
                        "decompression bomb, or simply too big); scale it down first")
    try:
        return data.read_image(path)
    except ValueError as error:
        raise DataError(f"{what} {path}: cannot decode it ({error.__cause__ or error})") \
            from None


def resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize a float image in [0, 1] (H, W) or (H, W, 3); area averaging when shrinking."""
    from PIL import Image

    if image.shape[:2] == (height, width):
        return image.astype(np.float32)
    channels = [image] if image.ndim == 2 else [image[..., c] for c in range(image.shape[2])]
    shrinking = height * width < image.shape[0] * image.shape[1]
    method = Image.BOX if shrinking else Image.BICUBIC
    planes = [np.asarray(Image.fromarray(c.astype(np.float32), mode="F").resize(
        (width, height), method)) for c in channels]
    out = planes[0] if image.ndim == 2 else np.stack(planes, axis=-1)
    return np.clip(out, 0, 1).astype(np.float32)


def colour_drawing(colour_small: Colour, line: np.ndarray, hint: np.ndarray | None,
                   size: int) -> np.ndarray:
    """Colour a drawing of any size: line (H, W) grey or (H, W, 3) in [0, 1], hint (h, w, 3)
    in [0, 1] of any size (stretched to the drawing) or None. Returns (H, W, 3) float32 in
    [0, 1]: colour_small's colouring at the trained `size`, scaled back, times the drawing."""
    line = np.asarray(line, np.float32)
    grey = line if line.ndim == 2 else line @ np.array([0.299, 0.587, 0.114], np.float32)
    height, width = grey.shape
    scale = size / max(height, width)
    small_h, small_w = max(1, round(height * scale)), max(1, round(width * scale))
    traced = data.line_art(resize(grey, small_h, small_w))
    if hint is not None:
        hint = resize(np.asarray(hint, np.float32), small_h, small_w)
    coloured = colour_small(traced, hint)
    return (resize(coloured, height, width) * grey[..., None]).astype(np.float32)


def colorize_file(drawing: str, hint: str, out: str,
                  load: Callable[[], tuple[Colour, str]]) -> Path:
    """--colorize DRAWING --out OUT [--hint HINT]: write the colouring at the drawing's size.

    load() -> (colour, what): the trained net as a colouring of drawings of any size, and what
    it is, for the line printed. It is called once the files have been read, so a bad file is
    reported before any model loads. hint "" means no hint."""
    line = read_user_image(drawing, "--colorize")
    hint_image = read_user_image(hint, "--hint") if hint else None
    colour, what = load()
    result = colour(line, hint_image)
    out = Path(out)
    try:
        viz.save_image(result, out)
    except KeyError:
        raise DataError(f"--out {out}: unknown picture format {out.suffix!r}; use .png") \
            from None
    except (OSError, ValueError) as error:
        raise DataError(f"--out {out}: cannot write the picture there ({error})") from None
    print(f"coloured {drawing} ({line.shape[1]}x{line.shape[0]}) with "
          f"{what}{' and the hint ' + hint if hint else ''}: {out}")
    return out


def example_drawings(seed: int, count: int = 4, size: int = 256) -> list[tuple[str, np.ndarray]]:
    """(name, line art) for the page: `count` cartoons drawn with `seed` (give another seed
    than training's, and the net has never seen them), then the sample photograph's line art."""
    cartoons = data.illustrations(count, seed=seed, size=size)
    examples = [(f"a cartoon the net never saw ({i + 1})", data.line_art(picture))
                for i, picture in enumerate(cartoons)]
    examples.append(("a photograph's line art", data.line_art(data.sample_photo(size))))
    return examples


def serve(load: Callable[[], tuple[Colour, str]], *, title: str, host: str, port: int,
          example_seed: int) -> None:
    """--serve: the colouring page (minimal/app/webapp.py) until Ctrl-C. load() -> (colour,
    about): the trained net as a colouring of drawings of any size, and a line for the page
    saying which model colours; the examples are example_drawings(example_seed)."""
    from minimal.app import webapp

    colour, about = load()
    webapp.serve(colour, example_drawings(example_seed), host=host, port=port, title=title,
                 about=about)


def command(name: str, task: Callable[[], object]) -> None:
    """Run task(); a UserError (a bad file, no checkpoint, a port in use) is printed as
    "name: message" on stderr and ends the program with status 1, without a traceback."""
    try:
        task()
    except UserError as error:
        print(f"{name}: {error}", file=sys.stderr)
        raise SystemExit(1) from None
