"""Loaders for real data sets in their published formats, each checking what it reads.

Every failure says what was expected, what was found, and where such data come from, because
the person reading the message usually has just downloaded something and put it somewhere.
Nothing here unpickles: CIFAR-10 is read from its binary version only.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import warnings
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from minimal.errors import DataError


class DataNotFoundError(DataError, FileNotFoundError):
    """The data the user pointed at are not there (a FileNotFoundError too)."""


MNIST_SOURCE = ("MNIST comes as four IDX files (train-images-idx3-ubyte.gz, "
                "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) "
                "from Yann LeCun's page or a mirror such as "
                "https://ossci-datasets.s3.amazonaws.com/mnist/ ; see datasets/README.md")
CIFAR_SOURCE = ("CIFAR-10 'binary version' (cifar-10-binary.tar.gz, unpacked to "
                "cifar-10-batches-bin/ with data_batch_1.bin .. data_batch_5.bin and "
                "test_batch.bin) from https://www.cs.toronto.edu/~kriz/cifar.html ; "
                "see datasets/README.md")
IMAGE_SOURCE = ("a folder of .jpg/.png images, e.g. CelebA's img_align_celeba/, a folder of "
                "anime illustrations, or your own drawings; see datasets/README.md")
TEXT_SOURCE = ("a UTF-8 text file with one chat message per line, e.g. a chat log exported "
               "from a stream; see datasets/README.md")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")

# No IDX file of a data set this project reads is near this (MNIST's largest: 47 MB); a header
# that claims more is damaged, and refusing it up front bounds what a .gz can make us inflate.
MAX_IDX_BYTES = 4 << 30
_IDX_CHUNK = 1 << 22

_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


# --------------------------------------------------------------------------------- MNIST / IDX

def read_idx(path: str | os.PathLike, expected_dims: int | None = None) -> np.ndarray:
    """Read one IDX file (gzipped or not): magic 0x0000TTDD (T type code, D dimensions), then D
    big-endian uint32 sizes, then the data. The data length must match the header exactly.

    The header is read first and the data are read against it: a file (or a .gz that inflates)
    to more than the header promises is refused as soon as it holds one byte more, so memory
    never exceeds what the header announced.
    """
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"no IDX file at {path}. Expected {MNIST_SOURCE}")
    with path.open("rb") as plain:
        gzipped = plain.read(2) == b"\x1f\x8b"
    opener = gzip.open if gzipped else open
    try:
        with opener(path, "rb") as file:
            return _read_idx_stream(file, path, expected_dims, gzipped)
    except (OSError, EOFError, zlib.error) as error:  # truncated, or damaged inside
        if not gzipped or isinstance(error, FileNotFoundError):
            raise
        raise DataError(f"{path} looks gzipped but cannot be decompressed ({error}); "
                        f"the download is probably incomplete or damaged. "
                        f"Expected {MNIST_SOURCE}") from error


def _read_idx_stream(file, path: Path, expected_dims: int | None, gzipped: bool) -> np.ndarray:
    magic = file.read(4)
    if len(magic) < 4 or magic[0] != 0 or magic[1] != 0 or magic[2] not in _IDX_TYPES:
        raise DataError(f"{path} is not an IDX file: expected magic bytes 00 00 <type> <dims>, "
                        f"found {magic.hex(' ') or 'an empty file'}. Expected {MNIST_SOURCE}")
    dims = magic[3]
    if expected_dims is not None and dims != expected_dims:
        kind = {3: "images (idx3)", 1: "labels (idx1)"}.get(expected_dims, f"{expected_dims}-d")
        raise DataError(f"{path} holds {dims}-dimensional IDX data, expected {kind}. "
                        f"Are the images and labels files swapped?")
    sizes = file.read(4 * dims)
    if len(sizes) < 4 * dims:
        raise DataError(f"{path} is truncated inside its header ({4 + len(sizes)} bytes)")
    shape = tuple(int.from_bytes(sizes[4 * i:4 * i + 4], "big") for i in range(dims))
    dtype = np.dtype(_IDX_TYPES[magic[2]])
    expected = math.prod(shape) * dtype.itemsize  # Python ints: no overflow
    if expected > MAX_IDX_BYTES:
        raise DataError(f"{path}: header says shape {shape}, {expected:,} bytes of data, more "
                        f"than the {MAX_IDX_BYTES:,} this loader accepts: the header is damaged "
                        f"or this is not an IDX file. Expected {MNIST_SOURCE}")
    if not gzipped:  # the size is known without reading
        found = path.stat().st_size - 4 - 4 * dims
        if found != expected:
            raise DataError(f"{path}: header says shape {shape} ({expected} bytes of data), "
                            f"found {found} bytes: the file is truncated or damaged. "
                            f"Expected {MNIST_SOURCE}")
    data = bytearray()
    while len(data) <= expected:  # one byte beyond the promise is enough to refuse
        chunk = file.read(min(_IDX_CHUNK, expected + 1 - len(data)))
        if not chunk:
            break
        data += chunk
    if len(data) != expected:
        found = "more" if len(data) > expected else f"{len(data)} bytes"
        raise DataError(f"{path}: header says shape {shape} ({expected} bytes of data), found "
                        f"{found}: the file is truncated, damaged or not what it claims. "
                        f"Expected {MNIST_SOURCE}")
    return np.frombuffer(bytes(data), dtype).reshape(shape)


def _find_mnist_files(folder: Path, split: str) -> tuple[Path, Path]:
    prefix = {"train": "train", "test": "t10k"}[split]
    found: dict[str, Path] = {}
    for kind, dims in (("images", 3), ("labels", 1)):
        for name in (f"{prefix}-{kind}-idx{dims}-ubyte", f"{prefix}-{kind}.idx{dims}-ubyte"):
            for suffix in ("", ".gz"):
                candidate = folder / (name + suffix)
                if candidate.is_file() and kind not in found:
                    found[kind] = candidate
    if len(found) < 2:
        present = sorted(p.name for p in folder.iterdir())[:20] if folder.is_dir() else []
        raise DataNotFoundError(
            f"MNIST {split} files not found in {folder}: expected "
            f"{prefix}-images-idx3-ubyte[.gz] and {prefix}-labels-idx1-ubyte[.gz], "
            f"found {present or 'nothing'}. {MNIST_SOURCE}")
    return found["images"], found["labels"]


def load_mnist(folder_or_files: str | os.PathLike | Sequence[str | os.PathLike],
               split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """MNIST from IDX files: a folder holding them, or an (images, labels) pair of paths.

    Returns images float32 (N, 28, 28) in [0, 1] and labels int64 (N,).
    """
    if split not in ("train", "test"):
        raise DataError(f"split must be 'train' or 'test', got {split!r}")
    if isinstance(folder_or_files, (str, os.PathLike)):
        images_path, labels_path = _find_mnist_files(Path(folder_or_files), split)
    else:
        paths = [Path(p) for p in folder_or_files]
        if len(paths) != 2:
            raise DataError(f"load_mnist takes a folder or an (images, labels) pair of paths, "
                            f"got {len(paths)} paths")
        images_path, labels_path = paths
    images = read_idx(images_path, expected_dims=3)
    labels = read_idx(labels_path, expected_dims=1)
    if images.dtype != np.uint8 or labels.dtype != np.uint8:
        raise DataError(f"MNIST files hold unsigned bytes; found {images.dtype} images and "
                        f"{labels.dtype} labels in {images_path}, {labels_path}")
    if len(images) != len(labels):
        raise DataError(f"{images_path} has {len(images)} images but {labels_path} has "
                        f"{len(labels)} labels: the two files are from different sets")
    if labels.size and labels.max() > 9:
        raise DataError(f"{labels_path}: labels must be digits 0-9, found {labels.max()}")
    return images.astype(np.float32) / 255.0, labels.astype(np.int64)


# ------------------------------------------------------------------------------------- CIFAR-10

CIFAR_RECORD = 1 + 32 * 32 * 3


def read_cifar_batch(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 binary batch: records of 1 label byte then 3072 pixel bytes (R, G, B planes
    of 32x32). Returns uint8 images (N, 32, 32, 3) and uint8 labels."""
    path = Path(path)
    raw = path.read_bytes()
    if raw[:1] == b"\x80":  # the pickle opcode PROTO; a binary record starts with a label 0-9
        raise DataError(f"{path} is a Python pickle (the 'python version' of CIFAR-10), which "
                        f"this project never unpickles. Use the {CIFAR_SOURCE}")
    if len(raw) == 0 or len(raw) % CIFAR_RECORD:
        raise DataError(f"{path}: expected a whole number of {CIFAR_RECORD}-byte records "
                        f"(1 label + 3072 pixels; 10000 records = 30730000 bytes), found "
                        f"{len(raw)} bytes: truncated or not CIFAR-10 binary. "
                        f"Expected {CIFAR_SOURCE}")
    records = np.frombuffer(raw, np.uint8).reshape(-1, CIFAR_RECORD)
    labels = records[:, 0]
    if labels.max() > 9:
        raise DataError(f"{path}: CIFAR-10 labels are 0-9, found {labels.max()} (is this "
                        f"CIFAR-100, whose records have two label bytes?). Expected "
                        f"{CIFAR_SOURCE}")
    images = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return images, labels


def load_cifar10(folder: str | os.PathLike, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10 binary version: data_batch_1..5.bin (train) or test_batch.bin (test) in `folder`
    (or in its cifar-10-batches-bin/). Returns float32 (N, 32, 32, 3) in [0, 1], int64 labels."""
    if split not in ("train", "test"):
        raise DataError(f"split must be 'train' or 'test', got {split!r}")
    folder = Path(folder)
    if (folder / "cifar-10-batches-bin").is_dir():
        folder = folder / "cifar-10-batches-bin"
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] if split == "train" else ["test_batch.bin"]
    paths = [folder / name for name in names if (folder / name).is_file()]
    if not paths:
        present = sorted(p.name for p in folder.iterdir())[:20] if folder.is_dir() else []
        hint = (" (those are the pickled 'python version'; this project reads only the binary "
                "version)") if any(n.startswith("data_batch") and not n.endswith(".bin")
                                   for n in present) else ""
        raise DataNotFoundError(f"no CIFAR-10 {split} batches in {folder}: expected "
                                f"{', '.join(names)}; found {present or 'nothing'}{hint}. "
                                f"{CIFAR_SOURCE}")
    missing = [name for name in names if not (folder / name).is_file()]
    if missing:  # four fifths of the training set, read without a word, would skew any result
        raise DataNotFoundError(
            f"CIFAR-10 in {folder} is incomplete: {', '.join(missing)} missing (found "
            f"{', '.join(p.name for p in paths)}); the {split} split needs all of "
            f"{', '.join(names)}. Unpack the whole archive again: {CIFAR_SOURCE}")
    batches = [read_cifar_batch(path) for path in paths]
    images = np.concatenate([b[0] for b in batches]).astype(np.float32) / 255.0
    return images, np.concatenate([b[1] for b in batches]).astype(np.int64)


# ------------------------------------------------------------------------------ image folders

def list_images(path: str | os.PathLike) -> list[Path]:
    """Image files under `path` (recursively), sorted so the order is the same everywhere."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DataNotFoundError(f"no image folder at {path}. Expected {IMAGE_SOURCE}")
    named = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    files = [p for p in named if p.is_file()]  # follows links: a dangling one is not a file
    skipped = [p for p in named if not p.is_file()]
    if skipped:
        kinds = ", ".join(f"{p} ({'a folder' if p.is_dir() else 'a dangling link'})"
                          for p in skipped[:5])
        warnings.warn(f"{path}: skipping {len(skipped)} entries named like images that are not "
                      f"image files: {kinds}{' ...' if len(skipped) > 5 else ''}",
                      RuntimeWarning, stacklevel=2)
    if not files:
        others = sorted(p.name for p in path.iterdir())[:10]
        raise DataNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {path}; found "
                                f"{others or 'an empty folder'}. Expected {IMAGE_SOURCE}")
    return files


def folder_fingerprint(files: Sequence[Path]) -> str:
    """Hash of the files' names, sizes and modification times: a cache key that changes when
    the folder does."""
    digest = hashlib.sha256()
    for file in files:
        stat = file.stat()
        digest.update(f"{file}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def read_image(path: str | os.PathLike, size: int | None = None) -> np.ndarray:
    """One image as float32 RGB (H, W, 3) in [0, 1], any file mode (grey, palette, RGBA over
    white, 16-bit, CMYK), turned as a viewer shows it (a photo's EXIF orientation applied);
    with `size`, centre-cropped to a square and resized to size x size."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        image = Image.open(path)  # reads the header only
    except Image.DecompressionBombError as error:  # not an OSError: name the file ourselves
        raise DataError(f"cannot read image {path}: {error} (its header claims more pixels "
                        f"than Pillow accepts: a damaged file or a decompression bomb). "
                        f"Expected {IMAGE_SOURCE}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise DataError(f"cannot read image {path}: {error}. Expected {IMAGE_SOURCE}") from error
    try:
        with image:
            image.load()
            image = ImageOps.exif_transpose(image)  # a camera's sideways photo, upright
            if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P"
                                                       and "transparency" in image.info):
                rgba = image.convert("RGBA")
                white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                image = Image.alpha_composite(white, rgba)
            elif image.mode in ("I;16", "I;16B", "I;16L", "I"):
                scaled = np.asarray(image, np.float64)
                top = 65535.0 if scaled.max() > 255 else 255.0
                image = Image.fromarray(np.round(scaled / top * 255).astype(np.uint8))
            image = image.convert("RGB")
            if size is not None:
                width, height = image.size
                side = min(width, height)
                left, top_edge = (width - side) // 2, (height - side) // 2
                image = image.crop((left, top_edge, left + side, top_edge + side))
                image = image.resize((size, size), Image.LANCZOS)
            return np.asarray(image, np.float32) / 255.0
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise DataError(f"cannot read image {path}: {error}. Expected {IMAGE_SOURCE}") from error


def load_image_folder(path: str | os.PathLike, size: int = 64,
                      limit: int | None = None) -> np.ndarray:
    """Every image under `path`, centre-cropped and resized: float32 (N, size, size, 3) in [0, 1].

    Files are taken in sorted order; `limit` keeps the first that many.
    """
    files = list_images(path)[:limit]
    images = np.empty((len(files), size, size, 3), np.float32)
    for index, file in enumerate(files):
        images[index] = read_image(file, size)
    return images


# ----------------------------------------------------------------------------------- text

def load_text_lines(path: str | os.PathLike) -> list[str]:
    """Messages from a UTF-8 text file, one per line; blank lines dropped, line ends stripped.

    A line that is not valid UTF-8 is reported with its number and the offending bytes.
    """
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"no text file at {path}. Expected {TEXT_SOURCE}")
    lines = []
    for number, raw in enumerate(path.read_bytes().split(b"\n"), start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            bad = raw[error.start:error.end + 3]
            raise DataError(f"{path}, line {number}, byte {error.start}: not UTF-8 "
                            f"({bad!r}). Expected {TEXT_SOURCE}; re-save the file as UTF-8 "
                            f"(e.g. iconv -f latin1 -t utf-8)") from error
        line = line.removeprefix("\ufeff").strip()  # a BOM is not whitespace: drop it first
        if line:
            lines.append(line)
    if not lines:
        raise DataError(f"{path} holds no messages (no non-blank lines). Expected {TEXT_SOURCE}")
    return lines
