"""Atomic file writes: a file is either the old one or the complete new one, never half-written.

    with atomic_file("outputs/model.npz") as file:
        np.savez(file, **arrays)

The data go to a temporary file in the same folder; only when writing finished without an error
is it flushed to disk and renamed over the target (a rename within one folder is atomic). On any
error, Ctrl-C included, the temporary file is removed and the target is left as it was.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """A binary file to write that replaces `path` only once the `with` block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
