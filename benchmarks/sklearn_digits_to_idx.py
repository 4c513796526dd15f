"""Write scikit-learn's bundled handwritten digits as MNIST IDX files, for `--data` checks.

load_digits() holds 1797 real digits of 8x8 pixels (values 0-16), written by 43 people (UCI's
optical recognition set). Each is scaled up to 20x20 (bilinear) and centred in 28x28 with a
4-pixel black border, as MNIST's digits are, then stored as bytes. The first 1497 go to the
train files, the last 300 to the t10k (test) files.

    pip install scikit-learn   # a tool for this check only, not a dependency of the project
    python benchmarks/sklearn_digits_to_idx.py /tmp/sk_digits
    python -m minimal.demos.draw --quick --data /tmp/sk_digits
"""

import sys
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits


def write_idx(path: Path, array: np.ndarray) -> None:
    """IDX: magic 00 00 08 <dims> (unsigned bytes), the sizes as big-endian uint32, the data."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(s).to_bytes(4, "big")
                                                      for s in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def main(folder: str, test_count: int = 300) -> None:
    digits = load_digits()
    images = np.zeros((len(digits.images), 28, 28), np.uint8)
    for i, small in enumerate(digits.images):
        picture = Image.fromarray(np.round(small * 255 / 16).astype(np.uint8))
        images[i, 4:24, 4:24] = np.asarray(picture.resize((20, 20), Image.BILINEAR))
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    split = len(images) - test_count
    for prefix, part in (("train", slice(0, split)), ("t10k", slice(split, None))):
        write_idx(out / f"{prefix}-images-idx3-ubyte", images[part])
        write_idx(out / f"{prefix}-labels-idx1-ubyte", digits.target[part])
    print(f"{split} train and {test_count} test digits written to {out}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "sk_digits")
