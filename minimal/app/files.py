"""Safe files: atomic writes (a file is either the old one or the complete new one, never
half-written), and .npz archives checked before NumPy allocates what they claim; named arrays
saved and loaded as .npz without pickles (`save_arrays`, `load_arrays`: a model's weights are
``save_arrays(path, model.state_dict())`` and ``model.load_state_dict(load_arrays(path))``).

    with atomic_file("outputs/model.npz") as file:
        np.savez(file, **arrays)

The data go to a temporary file in the same folder; only when writing finished without an error
is it flushed to disk and renamed over the target (a rename within one folder is atomic). On any
error, Ctrl-C included, the temporary file is removed and the target is left as it was.

The new file gets the mode a plain ``open(path, "wb")`` would give it: the old file's mode when
it replaces one, else 0666 minus the umask (not the 0600 of a bare temporary file, which would
make a shared ``datasets/`` unreadable to others). A process killed mid-write cannot remove its
temporary file; its name (``NAME.PID.XXXX.tmp``) says which process wrote it, and the next write
to the same path removes every one whose process is gone.

An .npy header inside an .npz states its array's shape, and NumPy allocates that much before it
reads a byte: a damaged or hostile file of a few bytes could claim terabytes.
``check_npz_sizes`` refuses a member whose claim is more than its stored bytes can hold.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import stat
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from minimal.errors import BusyError, CheckpointError, OutputError

# a temporary file without a process id in its name (older versions) counts as stale after this
_UNOWNED_STALE_SECONDS = 3600.0


def _umask() -> int:
    try:  # Linux: read it without changing it (os.umask can only set it, racing other threads)
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def default_file_mode() -> int:
    """The mode ``open(path, "w")`` gives a new file: 0666 minus the umask."""
    return 0o666 & ~_umask()


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    except OSError:
        return True
    return True


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Delete the temporary files that interrupted writes to `path` left beside it (their
    writer is no longer running); returns what was removed."""
    path = Path(path)
    pattern = re.compile(re.escape(path.name) + r"\.(?:(\d+)\.)?[^.]+\.tmp")
    removed = []
    try:
        candidates = list(path.parent.glob(_glob_escape(path.name) + ".*.tmp"))
    except OSError:
        return removed
    for candidate in candidates:
        match = pattern.fullmatch(candidate.name)
        if match is None:
            continue
        try:
            if match.group(1) is not None:
                if _process_alive(int(match.group(1))):
                    continue  # a write in progress, perhaps to the same file: leave it
            elif time.time() - candidate.stat().st_mtime < _UNOWNED_STALE_SECONDS:
                continue
            candidate.unlink()
            removed.append(candidate)
        except OSError:
            pass  # gone already, or not ours to remove
    return removed


def _glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """A binary file to write that replaces `path` only once the `with` block succeeds.

    The data are flushed and fsync'ed before the rename, so a crash never leaves a "complete"
    file that is empty or partial. An OSError on the way (a full disk, a folder where the file
    goes, no permission) becomes an OutputError, one line naming the file; what was at `path`
    before is untouched either way.
    """
    path = Path(path)
    check_writable(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path)
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except OSError:
            mode = default_file_mode()
        handle, temporary = tempfile.mkstemp(prefix=f"{path.name}.{os.getpid()}.",
                                             suffix=".tmp", dir=path.parent)
    except OSError as error:
        raise _output_error(path, error) from None
    try:
        with os.fdopen(handle, "wb") as file:
            os.fchmod(file.fileno(), mode)
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except OSError as error:
        Path(temporary).unlink(missing_ok=True)
        raise _output_error(path, error) from None
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def check_writable(path: str | os.PathLike) -> None:
    """Refuse, before any work, a path where a file cannot go: a folder (or anything but a
    regular file) already there, or a parent that is a file."""
    path = Path(path)
    if path.exists() and not path.is_file():
        raise OutputError(f"{path}: is a folder, where a file is to be written; move it away "
                          "or choose another --out-dir")
    check_parents(path, f"{path}: cannot be written")


def check_parents(path: Path, what: str) -> None:
    """Refuse a path below a file: its nearest existing parent must be a folder; `what` opens
    the message."""
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise OutputError(f"{what}, {parent} is a file, not a folder")
            return


def _output_error(path: Path, error: OSError) -> OutputError:
    kept = "the file that was there is intact" if path.is_file() else "nothing was written"
    return OutputError(f"{path}: could not be written ({error.strerror or error}); {kept}")


# deflate cannot expand data by more than about 1032:1 (RFC 1951: 258 bytes from a 2-bit code)
_DEFLATE_MAX_RATIO = 1032


def check_npz_sizes(file: BinaryIO) -> None:
    """Raise ValueError naming the member when an .npz (an open binary file, rewound after)
    holds an array whose header claims more bytes than its stored data could inflate to."""
    start = file.tell()
    file.seek(0, os.SEEK_END)
    archive_size = file.tell()
    file.seek(start)
    try:
        with zipfile.ZipFile(file) as archive:
            for info in archive.infolist():
                if info.compress_size > archive_size:
                    raise ValueError(f"member {info.filename} claims {info.compress_size} "
                                     f"bytes in an archive of {archive_size}")
                if info.compress_type == zipfile.ZIP_STORED:
                    room = info.compress_size
                else:
                    room = info.compress_size * _DEFLATE_MAX_RATIO + 1024
                with archive.open(info) as member:
                    version = np.lib.format.read_magic(member)
                    if version not in ((1, 0), (2, 0), (3, 0)):
                        raise ValueError(f"member {info.filename}: unknown .npy version "
                                         f"{version}")
                    if version == (1, 0):
                        shape, _, dtype = np.lib.format.read_array_header_1_0(member)
                    else:  # 2.0 and 3.0 differ only in the header's text encoding
                        shape, _, dtype = np.lib.format.read_array_header_2_0(member)
                claimed = math.prod(shape) * dtype.itemsize
                if claimed > room:
                    raise ValueError(f"member {info.filename} claims an array of shape {shape} "
                                     f"{dtype} ({claimed} bytes) but stores {info.compress_size} "
                                     f"bytes")
    finally:
        file.seek(start)


# ===== arrays in .npz files: checkpoints and saved weights =================================

def save_arrays(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> None:
    """Write arrays to an .npz atomically: a temporary file in the same folder, then rename.

    A crash half-way leaves the previous file intact, never a truncated one.
    """
    path = os.fspath(path)
    arrays = {name: np.asarray(value) for name, value in arrays.items()}
    for name, value in arrays.items():
        if value.dtype.hasobject:
            raise ValueError(f"save_arrays: {name} is an object array; only numeric arrays "
                             "are saved (no pickles)")
    with atomic_file(path) as file:
        np.savez(file, **arrays)


def _what_file_is(head: bytes) -> str:
    """A guess at what a file that is not an .npz is, from its first bytes."""
    if not head:
        return "it is empty (0 bytes)"
    if head.startswith(b"\x93NUMPY"):
        return "it is a single .npy array (np.save), not an archive of named arrays"
    if head.startswith(b"\x1f\x8b"):
        return "it is gzip-compressed"
    if head.startswith((b"\x80", b"(dp", b"(lp")):
        return "it looks like a Python pickle, which is never loaded (it can run code)"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as error:
        if error.start < len(head) - 4:  # not just a character cut at the end of the sample
            return f"it starts with the bytes {head[:8].hex(' ')}"
    return "it looks like a text file"


def load_arrays(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read an .npz of plain numeric arrays; object arrays (pickles) are refused.

    A file that is not an .npz archive is reported as what it looks like (a text file, a single
    .npy array, ...); a damaged archive or an object array is a CheckpointError (a ValueError).
    """
    try:
        with open(path, "rb") as file:
            head = file.read(512)
            if not head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
                raise CheckpointError(f"{path}: not an .npz archive: {_what_file_is(head)}")
            file.seek(0)
            check_npz_sizes(file)
            with np.load(file, allow_pickle=False) as archive:
                return {name: archive[name] for name in archive.files}
    except (FileNotFoundError, CheckpointError):
        raise
    except IsADirectoryError:
        raise CheckpointError(f"{path}: is a folder; expected an .npz file") from None
    except OSError as error:  # no permission, an I/O error
        raise CheckpointError(f"{path}: cannot be read ({error.strerror or error})") from None
    except ValueError as error:
        if "allow_pickle" in str(error) or "Object arrays" in str(error):
            raise CheckpointError(
                f"{path}: holds an object array (a pickle); only plain numeric arrays are "
                "loaded, since unpickling can run arbitrary code") from None
        raise CheckpointError(f"{path}: not a readable .npz checkpoint ({error})") from None
    except MemoryError:
        raise
    # zipfile can also raise NotImplementedError, RuntimeError, zlib.error on damaged bytes
    except Exception as error:  # noqa: BLE001
        raise CheckpointError(f"{path}: not a readable .npz checkpoint, the file is damaged "
                              f"({type(error).__name__}: {error})") from None


# ===== one run per output folder =============================================================

LOCK_NAME = ".run.lock"


def _start_time(pid: int) -> str | None:
    """When process `pid` started (Linux: clock ticks since boot), or None where unknown: a
    lock's pid reused by a later process does not count as its owner."""
    try:
        with open(f"/proc/{pid}/stat") as stat_file:
            return stat_file.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _lock_owner(path: Path) -> int | None:
    """The pid of the live process holding the lock file, None if the lock is stale."""
    try:
        pid_text, _, started = path.read_text().strip().partition(" ")
        pid = int(pid_text)
    except (OSError, ValueError):
        return None
    if pid == os.getpid() or not _process_alive(pid):
        return None
    now = _start_time(pid)
    return pid if now is None or not started or now == started else None


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, what: str = "--out-dir") -> Iterator[Path]:
    """Hold `folder` for this process while the block runs, so two runs never write their
    figures and checkpoints into one folder at once: a lock file holding this process's id
    (and start time). Another live owner is a BusyError naming it; a lock left by a process that
    has died is taken over."""
    folder = Path(folder)
    path = folder / LOCK_NAME
    folder.mkdir(parents=True, exist_ok=True)
    for _ in range(3):  # a stale lock removed by two processes at once: one of them wins
        try:
            handle = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = _lock_owner(path)
            if owner is not None:
                raise BusyError(f"{what} {folder} is in use by another run (process {owner}); "
                                f"wait for it to finish, or choose another {what}") from None
            path.unlink(missing_ok=True)
            continue
        except OSError as error:
            raise _output_error(path, error) from None
        with os.fdopen(handle, "w") as file:
            file.write(f"{os.getpid()} {_start_time(os.getpid()) or ''}\n")
        break
    else:
        raise BusyError(f"{what} {folder}: could not take its lock file {path}")
    try:
        yield path
    finally:
        if _lock_owner(path) is None:  # still ours (not taken over as stale by someone else)
            path.unlink(missing_ok=True)
