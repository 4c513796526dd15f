"""Data for the demos: embedded synthetic data sets, and loaders for the real ones.

By default everything is generated here, deterministically from a seed, and cached under
``datasets/`` (or ``$MINIMAL_DATA_DIR``, or the ``cache_dir`` argument):

    digits(n, seed, split)       MNIST stand-in: (n, 28, 28) grey in [0, 1], labels 0-9
    shapes(n, seed)              CIFAR-10 stand-in: (n, 32, 32, 3), labels index SHAPE_CLASSES
                                 (masks=True: also each object's mask, (n, 32, 32))
    faces(n, seed, size=64)      CelebA stand-in: (n, size, size, 3) drawn faces
    illustrations(n, seed, size) flat-coloured outlined scenes for the colouriser,
                                 with line_art(image) and colour_hint(image, rng, train)
    chat_log(n_messages, seed)   list of chat lines for the chat LSTM
    sample_photo(size)           a real photograph that ships with matplotlib

Images are float32 in [0, 1], channels last; labels int64. The same arguments always give the
same bytes; the first k samples of a large request equal a request for k samples.

Real data are used the moment they are there: pass a path to the loader (load_mnist,
load_cifar10, load_image_folder, load_text_lines) or to ``load(name, n, seed, path=...)``, or
put them where datasets/README.md says and ``load`` finds them by itself.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from . import cartoons, chatlog, handwriting, objects, portraits
from ._cache import cached, resolve_dir
from .cartoons import colour_hint, line_art
from .loaders import (
    folder_fingerprint,
    list_images,
    load_cifar10,
    load_image_folder,
    load_mnist,
    load_text_lines,
    read_idx,
    read_image,
)
from .objects import SHAPE_CLASSES

__all__ = [
    "SHAPE_CLASSES", "chat_log", "colour_hint", "data_dir", "digits", "faces", "find_real",
    "illustrations", "line_art", "load", "load_cifar10", "load_image_folder", "load_mnist",
    "load_text_lines", "read_idx", "read_image", "sample_photo", "shapes", "source",
]

# Bump a generator's version whenever its output changes, so old cache files are not reused.
VERSIONS = {"digits": 2, "shapes": 3, "faces": 2, "illustrations": 1, "chat": 2}

PathLike = str | os.PathLike


def data_dir(cache_dir: PathLike | None = None) -> Path:
    """The data folder: `cache_dir` if given, else $MINIMAL_DATA_DIR, else <repo>/datasets."""
    return resolve_dir(cache_dir)


def _check_count(n: int) -> int:
    if int(n) != n or n < 0:
        raise ValueError(f"the number of samples must be a non-negative integer, got {n!r}")
    return int(n)


def _check_size(size: int) -> int:
    if int(size) != size or size < 1:
        raise ValueError(f"the image size must be a positive integer (pixels per side), "
                         f"got {size!r}")
    return int(size)


def _split_stream(split: str) -> int:
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    return {"train": 0, "test": 1}[split]


def digits(n: int, seed: int = 0, split: str = "train", cache_dir: PathLike | None = None,
           cache: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """n synthetic hand-written digits: images float32 (n, 28, 28) in [0, 1], labels int64.

    split "train" and "test" are independent streams for the same seed (held-out digits).
    """
    n = _check_count(n)
    stream = _split_stream(split)
    params = {"version": VERSIONS["digits"], "n": n, "seed": seed, "split": split}
    arrays = cached("digits", params, lambda: handwriting.generate(n, seed, stream), cache_dir,
                    cache)
    return arrays["images"].astype(np.float32) / 255.0, arrays["labels"].astype(np.int64)


def shapes(n: int, seed: int = 0, cache_dir: PathLike | None = None, cache: bool = True,
           split: str = "train", masks: bool = False) -> tuple[np.ndarray, ...]:
    """n synthetic object images: float32 (n, 32, 32, 3) in [0, 1], labels int64 indexing
    SHAPE_CLASSES (circle, triangle, square, hexagon, star, cross, heart, crescent, ring,
    arrow). split "test" is an independent stream for held-out images. masks=True adds a third
    array: how much of each pixel the object covers, float32 (n, 32, 32) in [0, 1] (0 on the
    background and the distractor blobs)."""
    n = _check_count(n)
    stream = _split_stream(split)
    params = {"version": VERSIONS["shapes"], "n": n, "seed": seed}
    if stream:  # keeps the train files' names (and caches) as they were before splits existed
        params["split"] = split
    arrays = cached("shapes", params, lambda: objects.generate(n, seed, stream), cache_dir,
                    cache)
    images, labels = arrays["images"].astype(np.float32) / 255.0, arrays["labels"].astype(np.int64)
    if masks:
        return images, labels, arrays["masks"].astype(np.float32) / 255.0
    return images, labels


def faces(n: int, seed: int = 0, size: int = 64, cache_dir: PathLike | None = None,
          cache: bool = True) -> np.ndarray:
    """n drawn faces, float32 (n, size, size, 3) in [0, 1]."""
    n, size = _check_count(n), _check_size(size)
    params = {"version": VERSIONS["faces"], "n": n, "seed": seed, "size": size}
    arrays = cached("faces", params, lambda: portraits.generate(n, seed, size), cache_dir, cache)
    return arrays["images"].astype(np.float32) / 255.0


def illustrations(n: int, seed: int = 0, size: int = 128, cache_dir: PathLike | None = None,
                  cache: bool = True) -> np.ndarray:
    """n flat-coloured outlined scenes, float32 (n, size, size, 3) in [0, 1] (size 64 to 256
    look right; any size works)."""
    n, size = _check_count(n), _check_size(size)
    params = {"version": VERSIONS["illustrations"], "n": n, "seed": seed, "size": size}
    arrays = cached("illustrations", params, lambda: cartoons.generate(n, seed, size),
                    cache_dir, cache)
    return arrays["images"].astype(np.float32) / 255.0


def chat_log(n_messages: int = 100_000, seed: int = 0, cache_dir: PathLike | None = None,
             cache: bool = True) -> list[str]:
    """A generated chat log: `n_messages` messages, one string each (no newlines inside)."""
    n_messages = _check_count(n_messages)

    def build() -> dict[str, np.ndarray]:
        text = "\n".join(chatlog.generate(n_messages, seed)).encode("utf-8")
        return {"utf8": np.frombuffer(text, np.uint8)}

    params = {"version": VERSIONS["chat"], "n": n_messages, "seed": seed}
    arrays = cached("chat", params, build, cache_dir, cache)
    if n_messages == 0:
        return []
    return arrays["utf8"].tobytes().decode("utf-8").split("\n")


def sample_photo(size: int | None = None) -> np.ndarray:
    """Grace Hopper's portrait (the photo matplotlib ships as sample data), float32 RGB in
    [0, 1]: (600, 512, 3) as shipped, or centre-cropped and resized to (size, size, 3)."""
    from matplotlib import cbook

    path = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    return read_image(path, size)


# ------------------------------------------------------------------------ choosing a source

_ALIASES = {"digits": "digits", "mnist": "digits", "shapes": "shapes", "cifar10": "shapes",
            "cifar": "shapes", "faces": "faces", "celeba": "faces",
            "illustrations": "illustrations", "anime": "illustrations", "chat": "chat",
            "twitch": "chat"}
# Where `load` looks for real data inside the data folder, per data set.
REAL_LOCATIONS = {
    "digits": ("mnist", "MNIST"),
    "shapes": ("cifar-10-batches-bin", "cifar10", "cifar-10"),
    "faces": ("celeba", "img_align_celeba"),
    "illustrations": ("illustrations", "anime"),
    "chat": ("chat.txt", "chat"),
}


def _canonical(name: str) -> str:
    try:
        return _ALIASES[name.lower()]
    except KeyError:
        raise ValueError(f"unknown data set {name!r}; expected one of {sorted(_ALIASES)}") from None


def find_real(name: str, cache_dir: PathLike | None = None) -> Path | None:
    """The real data set for `name` inside the data folder, if someone put it there."""
    root = data_dir(cache_dir)
    for location in REAL_LOCATIONS[_canonical(name)]:
        candidate = root / location
        if candidate.exists():
            return candidate
    return None


def source(name: str, path: PathLike | None = None, cache_dir: PathLike | None = None) -> str:
    """Where `load(name, path=path)` takes its data from: a path, or 'synthetic'."""
    found = Path(path) if path is not None else find_real(name, cache_dir)
    return str(found) if found is not None else "synthetic"


def _first(n: int | None, arrays, name: str, origin: Path):
    """The first n items of real data (all when n is None), warning when there are fewer."""
    count = len(arrays[0]) if isinstance(arrays, tuple) else len(arrays)
    if n is not None and n > count:
        warnings.warn(f"{name}: asked for {n} samples, {origin} holds {count}; using {count}",
                      RuntimeWarning, stacklevel=3)
    if n is None:
        return arrays
    return tuple(a[:n] for a in arrays) if isinstance(arrays, tuple) else arrays[:n]


def load(name: str, n: int | None = None, seed: int = 0, path: PathLike | None = None,
         split: str = "train", size: int | None = None, cache_dir: PathLike | None = None):
    """One entry point for the demos' ``--data PATH``: real data when `path` is given or found
    in the data folder (see REAL_LOCATIONS), the synthetic stand-in otherwise.

    name: digits|mnist, shapes|cifar10, faces|celeba, illustrations|anime, chat|twitch.
    Returns (images, labels) for digits and shapes, images for faces and illustrations, a list
    of strings for chat. Real data keep their file order (first n); synthetic data need n.
    """
    kind = _canonical(name)
    real = Path(path).expanduser() if path is not None else find_real(kind, cache_dir)
    if real is None:
        if n is None:
            raise ValueError(f"load({name!r}) without real data needs n, the number of "
                             f"synthetic samples to generate")
        if kind == "digits":
            return digits(n, seed, split, cache_dir)
        if kind == "shapes":
            return shapes(n, seed, cache_dir, split=split)
        if kind == "faces":
            return faces(n, seed, size or 64, cache_dir)
        if kind == "illustrations":
            return illustrations(n, seed, size or 128, cache_dir)
        return chat_log(n, seed, cache_dir)
    if kind == "digits":
        return _first(n, load_mnist(real, split), name, real)
    if kind == "shapes":
        return _first(n, load_cifar10(real, split), name, real)
    if kind == "chat":
        lines = load_text_lines(real if real.is_file() else real / "chat.txt")
        return _first(n, lines, name, real)
    return _load_folder_cached(real, size or (64 if kind == "faces" else 128), n, cache_dir)


def _load_folder_cached(folder: Path, size: int, n: int | None,
                        cache_dir: PathLike | None) -> np.ndarray:
    """A folder of images, resized, cached by the folder's fingerprint (a big folder such as
    CelebA takes minutes to decode; the second run takes a second)."""
    files = list_images(folder)[:n]
    params = {"folder": str(folder.resolve()), "files": folder_fingerprint(files), "size": size}

    def build() -> dict[str, np.ndarray]:
        images = load_image_folder(folder, size, limit=len(files))
        return {"images": np.round(images * 255).astype(np.uint8)}

    arrays = cached("folder", params, build, cache_dir)
    return arrays["images"].astype(np.float32) / 255.0
