"""Fetch a public copy of MNIST or CIFAR-10 (binary version), checked against its published MD5.

Never called by default and never by the tests' network: the demos run on the synthetic
stand-ins unless asked. When a network is there:

    python -m minimal.data.download mnist            # -> datasets/mnist/*.gz
    python -m minimal.data.download cifar10          # -> datasets/cifar-10-batches-bin/*.bin

Each file is downloaded to a temporary name, its MD5 compared with the one the data set's
authors publish, and only then renamed into place (files.atomic_file): a wrong or partial
download leaves nothing, and the temporary file of a killed one is removed by the next attempt.
From the CIFAR-10 archive only the six expected regular .bin members are extracted (no paths
from the archive are trusted, nothing is unpickled).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

from minimal.app.files import atomic_file
from minimal.errors import DataError, UserError

from ._cache import default_data_dir

MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
CIFAR_URL = "https://www.cs.toronto.edu/~kriz/"
CIFAR_ARCHIVE = "cifar-10-binary.tar.gz"
CIFAR_MD5 = {CIFAR_ARCHIVE: "c32a1d4ab5d03f1284b67883e8d87530"}
CIFAR_MEMBERS = tuple(f"data_batch_{i}.bin" for i in range(1, 6)) + ("test_batch.bin",)


def md5_of(path: Path) -> str:
    digest = hashlib.md5()  # the published checksums are MD5: integrity, not security
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(url: str, destination: Path, expected_md5: str, timeout: float = 60.0) -> Path:
    """Download `url` to `destination` if it is not already there with the right MD5."""
    if destination.is_file() and md5_of(destination) == expected_md5:
        return destination
    # atomic_file: the target appears only complete and checked, and the temporary file of a
    # download that was killed is removed by the next attempt
    with atomic_file(destination) as out:
        digest = hashlib.md5()  # the published checksums are MD5: integrity, not security
        try:
            with urllib.request.urlopen(url, timeout=timeout) as src:
                for block in iter(lambda: src.read(1 << 20), b""):
                    digest.update(block)
                    out.write(block)
        except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
            reason = getattr(error, "reason", None) or error
            raise UserError(f"cannot download {url}: {reason}. Is there a network? Without "
                            "one, put the files in place by hand (see datasets/README.md)") \
                from None
        if digest.hexdigest() != expected_md5:
            raise DataError(f"{url}: MD5 {digest.hexdigest()} does not match the published "
                            f"{expected_md5}; the download is damaged or the mirror serves "
                            "another file")
    return destination


def download_mnist(folder: Path, base_url: str = MNIST_URL) -> Path:
    for name, md5 in MNIST_MD5.items():
        fetch(base_url + name, folder / name, md5)
    return folder


def download_cifar10(folder: Path, base_url: str = CIFAR_URL) -> Path:
    """Fetch the binary archive and extract its six .bin batches into folder."""
    archive = fetch(base_url + CIFAR_ARCHIVE, folder.parent / CIFAR_ARCHIVE,
                    CIFAR_MD5[CIFAR_ARCHIVE])
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "r:gz") as tar:
        members = {Path(m.name).name: m for m in tar.getmembers()
                   if m.isfile() and Path(m.name).name in CIFAR_MEMBERS}
        missing = sorted(set(CIFAR_MEMBERS) - set(members))
        if missing:
            raise DataError(f"{archive} lacks {missing}: not the CIFAR-10 binary archive")
        for name, member in members.items():
            with atomic_file(folder / name) as out:
                shutil.copyfileobj(tar.extractfile(member), out, 1 << 20)
    return folder


def download(name: str, root: str | os.PathLike | None = None) -> Path:
    """Fetch a data set into the data folder (or `root`); returns where it is."""
    root = Path(root) if root is not None else default_data_dir()
    if name == "mnist":
        return download_mnist(root / "mnist")
    if name in ("cifar10", "cifar"):
        return download_cifar10(root / "cifar-10-batches-bin")
    raise ValueError(f"can download 'mnist' or 'cifar10', not {name!r}; CelebA, illustrations "
                     f"and chat logs must be put in place by hand (see datasets/README.md)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", choices=("mnist", "cifar10"))
    parser.add_argument("--root", default=None, help="data folder (default: datasets/)")
    args = parser.parse_args(argv)
    try:
        print(download(args.name, args.root))
    except UserError as error:  # no network, a damaged download: one line, no traceback
        print(f"download: {error}", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
