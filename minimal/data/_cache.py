"""The on-disk cache for generated (and loaded) data sets.

A data set is a dict of NumPy arrays saved as one ``.npz`` file whose name is the data set's name
plus a hash of everything that decides its contents (generator version, size, seed, ...), so a
change of any parameter is a different file and can never be mistaken for the old one.

Each file also stores a SHA-256 of its arrays. A file that fails to open, lacks an array, or whose
checksum disagrees (a crash mid-copy, a disk error, a hand edit) is reported, deleted and rebuilt,
never used. Files are written to a temporary name in the same folder and renamed into place
(``os.replace`` is atomic), so a reader never sees half a file and a failed build leaves nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from minimal.app.files import atomic_file, check_npz_sizes

Arrays = dict[str, np.ndarray]

_CHECKSUM_KEY = "__sha256__"


class DamagedCacheError(ValueError):
    """A cache file that cannot be used as it is; the cache rebuilds it."""


def default_data_dir() -> Path:
    """Where data sets live: $MINIMAL_DATA_DIR if set, else the repository's ``datasets/``
    (when running from a checkout or an editable install), else ``./datasets``."""
    configured = os.environ.get("MINIMAL_DATA_DIR")
    if configured:
        return Path(configured).expanduser()
    # minimal/data/_cache.py -> the repository root is three levels up.
    in_checkout = Path(__file__).resolve().parents[2] / "datasets"
    return in_checkout if in_checkout.is_dir() else Path.cwd() / "datasets"


def resolve_dir(cache_dir: str | os.PathLike | None) -> Path:
    return Path(cache_dir).expanduser() if cache_dir is not None else default_data_dir()


def cache_key(name: str, params: Mapping[str, object]) -> str:
    """File name for a data set: readable prefix plus a hash of the sorted parameters."""
    text = json.dumps(dict(params), sort_keys=True, default=str)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    return f"{name}-{digest}.npz"


def arrays_checksum(arrays: Mapping[str, np.ndarray]) -> str:
    """SHA-256 over each array's name, dtype, shape and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}|{array.dtype.str}|{array.shape}|".encode())
        digest.update(array.data)
    return digest.hexdigest()


def save_arrays(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Write arrays plus their checksum to `path` atomically (temp file, then rename)."""
    checksum = np.frombuffer(arrays_checksum(arrays).encode(), dtype=np.uint8)
    with atomic_file(path) as file:
        np.savez(file, **arrays, **{_CHECKSUM_KEY: checksum})


def load_arrays(path: Path) -> Arrays:
    """Read a file written by `save_arrays`, checking its checksum (which covers every array's
    name, so a missing array fails it too).

    Raises ValueError saying what is wrong when the file is damaged.
    """
    try:
        # our own handle: np.load leaks its file when the archive turns out to be damaged
        with open(path, "rb") as file:
            check_npz_sizes(file)
            with np.load(file, allow_pickle=False) as archive:
                arrays = {key: archive[key] for key in archive.files}
    except MemoryError:
        raise
    # Whatever np.load raises on a damaged file is damage: besides the usual OSError,
    # ValueError and BadZipFile, a flipped flag bit gives NotImplementedError ("strong
    # encryption") or RuntimeError ("password required"), a bad compression byte zlib.error.
    except Exception as error:
        raise DamagedCacheError(f"cannot read cache file {path}: {type(error).__name__}: "
                                f"{error}") from error
    stored = arrays.pop(_CHECKSUM_KEY, None)
    if stored is None:
        raise DamagedCacheError(f"cache file {path} has no checksum")
    if stored.tobytes().decode(errors="replace") != arrays_checksum(arrays):
        raise DamagedCacheError(f"cache file {path} is damaged: its checksum does not match "
                                "its contents")
    return arrays


def cached(
    name: str,
    params: Mapping[str, object],
    build: Callable[[], Arrays],
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
) -> Arrays:
    """Return `build()`'s arrays, from the cache when a valid file for `params` is there.

    A damaged file is reported with a warning and rebuilt (the new file replaces it). When the
    cache folder cannot be written (read-only install), or a folder sits where the file should
    be, the data are built in memory and returned without caching, with a warning.
    """
    if not use_cache:
        return build()
    path = resolve_dir(cache_dir) / cache_key(name, params)
    if path.is_dir():
        warnings.warn(f"{path} is a folder where the cache file of {name} should be; building "
                      "the data in memory (remove the folder to cache them)", RuntimeWarning,
                      stacklevel=3)
        return build()
    if path.exists():
        try:
            return load_arrays(path)
        except DamagedCacheError as error:
            # the rebuilt file replaces it atomically below; if the folder is read-only, the
            # data are built in memory (and the damaged file is reported again next time)
            warnings.warn(f"{error}; rebuilding it", RuntimeWarning, stacklevel=3)
    arrays = build()
    try:
        save_arrays(path, arrays)
    except OSError as error:
        warnings.warn(f"could not cache {name} in {path.parent}: {error}; the data were built "
                      "in memory", RuntimeWarning, stacklevel=3)
    return arrays


def block_rngs(seed: int, stream: int, n: int, block: int) -> list[np.random.Generator]:
    """One generator per block of `block` samples, enough blocks to cover n samples.

    Generators build whole blocks and the caller keeps the first n samples, so sample i depends
    only on (seed, stream, i // block): the first 100 of 10 000 samples are the same 100 samples
    as when asking for 100, and small runs see a prefix of large ones.
    """
    count = -(-n // block)
    return [np.random.default_rng(np.random.SeedSequence([seed, stream, index]))
            for index in range(count)]
