"""Tests for minimal.data: determinism, ranges, the cache, line art and hints, the loaders, and
a check that the digits are neither trivial nor noise (softmax regression vs a small MLP)."""

from __future__ import annotations

import gzip
import io
import itertools
import os
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from minimal import data
from minimal.data import _cache, cartoons, handwriting


@pytest.fixture(autouse=True)
def isolated_data_dir(tmp_path, monkeypatch):
    """Every test gets its own data folder: nothing is read from or written to datasets/."""
    folder = tmp_path / "datasets"
    monkeypatch.setenv("MINIMAL_DATA_DIR", str(folder))
    return folder


@pytest.fixture(scope="module")
def digit_sets(tmp_path_factory):
    """10 000 training and 2 000 held-out digits, generated once for the module."""
    folder = tmp_path_factory.mktemp("digits")
    return data.digits(10_000, 0, "train", cache_dir=folder), data.digits(2000, 0, "test",
                                                                         cache_dir=folder)


# ----------------------------------------------------------------------- determinism, ranges

@pytest.mark.parametrize("make", [
    lambda seed: data.digits(40, seed, cache=False),
    lambda seed: data.shapes(40, seed, cache=False),
    lambda seed: (data.faces(12, seed, cache=False),),
    lambda seed: (data.illustrations(4, seed, size=64, cache=False),),
], ids=["digits", "shapes", "faces", "illustrations"])
def test_same_seed_same_bytes_different_seed_different_data(make):
    first, again, other = make(3), make(3), make(4)
    for a, b in zip(first, again):
        assert a.tobytes() == b.tobytes()
    assert first[0].tobytes() != other[0].tobytes()


def test_chat_is_deterministic():
    assert data.chat_log(2000, 1, cache=False) == data.chat_log(2000, 1, cache=False)
    assert data.chat_log(2000, 1, cache=False) != data.chat_log(2000, 2, cache=False)


def test_small_requests_are_prefixes_of_large_ones():
    small_images, small_labels = data.digits(70, 5, cache=False)
    large_images, large_labels = data.digits(300, 5, cache=False)
    np.testing.assert_array_equal(small_images, large_images[:70])
    np.testing.assert_array_equal(small_labels, large_labels[:70])
    np.testing.assert_array_equal(data.shapes(30, 2, cache=False)[0],
                                  data.shapes(600, 2, cache=False)[0][:30])


def test_train_and_test_splits_differ():
    train, _ = data.digits(50, 0, "train", cache=False)
    test, _ = data.digits(50, 0, "test", cache=False)
    assert not np.array_equal(train, test)
    assert not np.array_equal(data.shapes(20, 0, cache=False)[0],
                              data.shapes(20, 0, cache=False, split="test")[0])
    with pytest.raises(ValueError, match="split"):
        data.digits(5, split="validation", cache=False)


def test_digits_look_like_mnist_statistics(digit_sets):
    (images, labels), _ = digit_sets
    assert images.shape == (10_000, 28, 28) and images.dtype == np.float32
    assert labels.dtype == np.int64 and set(np.unique(labels)) == set(range(10))
    assert images.min() == 0.0 and images.max() == 1.0
    # MNIST: mean pixel 0.13, ink centred by centre of mass, digits fit a 20x20 box.
    assert 0.08 < images.mean() < 0.2
    rows = np.arange(28)
    mass = images.sum(axis=(1, 2))
    centre_y = (images.sum(axis=2) @ rows) / mass
    centre_x = (images.sum(axis=1) @ rows) / mass
    assert abs(centre_y.mean() - 13.5) < 1.0 and abs(centre_x.mean() - 13.5) < 1.0
    inked_rows = (images > 0.3).any(axis=2)
    heights = 28 - inked_rows.argmax(1) - inked_rows[:, ::-1].argmax(1)
    assert 15 <= np.median(heights) <= 22
    assert (images[:, 0, :] > 0.5).mean() < 0.01  # borders stay mostly black
    counts = np.bincount(labels, minlength=10)
    assert counts.min() > 800  # about 1000 of each digit


def test_shapes_ranges_and_classes():
    images, labels = data.shapes(600, 0, cache=False)
    assert images.shape == (600, 32, 32, 3) and images.dtype == np.float32
    assert 0 <= images.min() and images.max() <= 1
    assert labels.dtype == np.int64 and set(np.unique(labels)) == set(range(10))
    assert len(data.SHAPE_CLASSES) == 10
    assert images.std() > 0.15  # colourful, not blank


def test_shapes_masks_mark_the_object_and_leave_the_images_as_they_are(tmp_path):
    images, labels = data.shapes(600, 0, cache=False)
    with_masks = data.shapes(600, 0, cache=False, masks=True)
    np.testing.assert_array_equal(with_masks[0], images)  # the same images and labels
    np.testing.assert_array_equal(with_masks[1], labels)
    masks = with_masks[2]
    assert masks.shape == (600, 32, 32) and masks.dtype == np.float32
    assert 0 <= masks.min() and masks.max() <= 1
    share = masks.mean(axis=(1, 2))
    assert share.min() > 0.01 and 0.1 < share.mean() < 0.3  # one object, a fifth of the image
    # the object is painted where its mask is: inside it (mask 1) the colour differs from the
    # pixels just outside it (mask 0 within 2 pixels of the object) in nearly every image
    inside = masks == 1
    grown = np.zeros_like(inside)
    for dy, dx in itertools.product(range(-2, 3), repeat=2):
        grown |= np.roll(inside, (dy, dx), axis=(1, 2))
    ring = grown & (masks == 0)
    usable = (inside.sum(axis=(1, 2)) > 0) & (ring.sum(axis=(1, 2)) > 0)
    mean_in = (images * inside[..., None]).sum(axis=(1, 2)) / inside.sum(axis=(1, 2))[:, None]
    mean_ring = (images * ring[..., None]).sum(axis=(1, 2)) / ring.sum(axis=(1, 2))[:, None]
    contrast = np.abs(mean_in - mean_ring).max(axis=1)[usable]
    assert usable.mean() > 0.95 and np.mean(contrast > 0.05) > 0.8
    # and exactly there: the image changes most sharply along the mask's soft edge (measured
    # 2.4x the image's mean change, median over images; 1.4x for the mask one pixel off)
    change = (np.abs(np.diff(images, axis=1)).sum(-1)[:, :, :-1]
              + np.abs(np.diff(images, axis=2)).sum(-1)[:, :-1, :])  # (n, 31, 31)
    edge = ((masks > 0.05) & (masks < 0.95))[:, :-1, :-1]
    sharpness = ((change * edge).sum(axis=(1, 2)) / np.maximum(edge.sum(axis=(1, 2)), 1)
                 / change.mean(axis=(1, 2)))
    assert np.median(sharpness) > 2
    # prefixes and the cache keep them too
    np.testing.assert_array_equal(data.shapes(30, 0, cache=False, masks=True)[2], masks[:30])
    cached = data.shapes(30, 0, cache_dir=tmp_path, masks=True)[2]
    np.testing.assert_array_equal(data.shapes(30, 0, cache_dir=tmp_path, masks=True)[2], cached)
    np.testing.assert_array_equal(cached, masks[:30])


def test_faces_and_illustrations_ranges():
    faces = data.faces(8, 0, size=64, cache=False)
    assert faces.shape == (8, 64, 64, 3) and faces.dtype == np.float32
    assert 0 <= faces.min() and faces.max() <= 1
    # Faces sit in the middle: the centre patch differs from face to face (skin, eyes).
    assert faces[:, 24:40, 24:40].std(axis=0).mean() > 0.05
    for size in (64, 256):
        scenes = data.illustrations(2, 0, size=size, cache=False)
        assert scenes.shape == (2, size, size, 3) and scenes.dtype == np.float32
        # Flat colours with dark outlines: the line art has both paper and lines.
        lines = data.line_art(scenes[0])
        assert 0.02 < 1 - lines.mean() < 0.4
    for bad_size in (0, -3, 2.5):
        with pytest.raises(ValueError, match="image size"):
            data.faces(2, 0, size=bad_size, cache=False)
        with pytest.raises(ValueError, match="image size"):
            data.illustrations(2, 0, size=bad_size, cache=False)


def test_chat_log_shape_of_language():
    messages = data.chat_log(100_000, 0, cache=False)
    assert len(messages) == 100_000
    assert all(isinstance(m, str) and m and "\n" not in m for m in messages[:1000])
    counts: dict[str, int] = {}
    for message in messages:
        counts[message] = counts.get(message, 0) + 1
    long_repeats = [m for m, c in counts.items() if len(m.split()) >= 12 and c >= 200]
    assert len(long_repeats) >= 3  # copypastas, pasted again and again
    assert any(len(set(m.split())) == 1 and len(m.split()) >= 4 for m in messages[:500])  # spam
    words: dict[str, int] = {}
    for message in messages:
        for word in message.split():
            words[word] = words.get(word, 0) + 1
    frequencies = np.sort(np.array(list(words.values())))[::-1]
    assert len(words) > 3000  # a long tail ...
    assert (frequencies <= 2).sum() > 300  # ... of words seen once or twice
    assert frequencies[:10].sum() > 0.2 * frequencies.sum()  # and a few very common ones


def test_sample_photo_is_a_real_photograph():
    photo = data.sample_photo()
    assert photo.ndim == 3 and photo.shape[2] == 3 and photo.dtype == np.float32
    assert photo.shape[0] >= 256 and photo.shape[1] >= 256
    assert 0 <= photo.min() and photo.max() <= 1 and photo.std() > 0.1
    assert data.sample_photo(size=96).shape == (96, 96, 3)


# ------------------------------------------------------------------------------------ cache

def test_cache_hit_parameter_change_and_damaged_file(isolated_data_dir, monkeypatch):
    images, labels = data.digits(30, 1)
    files = sorted(isolated_data_dir.glob("digits-*.npz"))
    assert len(files) == 1

    def must_not_build(*args, **kwargs):
        raise AssertionError("cache hit expected, generator called")

    monkeypatch.setattr(handwriting, "generate", must_not_build)
    again_images, again_labels = data.digits(30, 1)
    np.testing.assert_array_equal(images, again_images)
    np.testing.assert_array_equal(labels, again_labels)
    monkeypatch.undo()
    monkeypatch.setenv("MINIMAL_DATA_DIR", str(isolated_data_dir))

    data.digits(30, 2)  # another seed: another file, the first untouched
    data.digits(31, 1)  # another size: another file
    assert len(list(isolated_data_dir.glob("digits-*.npz"))) == 3

    # Damage the first file: flip bytes in the middle of the pixel data.
    raw = bytearray(files[0].read_bytes())
    middle = len(raw) // 2
    raw[middle:middle + 16] = bytes(255 - b for b in raw[middle:middle + 16])
    files[0].write_bytes(bytes(raw))
    with pytest.warns(RuntimeWarning, match="damaged|cannot read"):
        rebuilt, _ = data.digits(30, 1)
    np.testing.assert_array_equal(rebuilt, images)
    _cache.load_arrays(files[0])  # the rebuilt file is valid again

    # A truncated file is detected too.
    files[0].write_bytes(files[0].read_bytes()[:200])
    with pytest.warns(RuntimeWarning):
        rebuilt, _ = data.digits(30, 1)
    np.testing.assert_array_equal(rebuilt, images)
    assert not list(isolated_data_dir.glob("*.tmp"))


def test_cache_file_without_checksum_is_rejected(tmp_path):
    path = tmp_path / "plain.npz"
    np.savez(path, images=np.zeros(3))
    with pytest.raises(ValueError, match="checksum"):
        _cache.load_arrays(path)


def test_cache_file_claiming_a_huge_array_is_damage_not_an_allocation(tmp_path):
    member = io.BytesIO()  # a well-formed member (right CRC) whose header claims 400 GB
    np.lib.format.write_array_header_1_0(
        member, {"descr": "<f4", "fortran_order": False, "shape": (10 ** 11,)})
    member.write(bytes(8))
    path = tmp_path / "claims.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("images.npy", member.getvalue())
    with pytest.raises(ValueError, match=r"images.npy claims an array of shape"):
        _cache.load_arrays(path)


def test_failed_build_leaves_no_file(tmp_path):
    def broken():
        raise RuntimeError("generator crashed")

    with pytest.raises(RuntimeError):
        _cache.cached("thing", {"a": 1}, broken, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_cache_keys_differ_by_every_parameter():
    keys = {_cache.cache_key("digits", p) for p in (
        {"n": 1, "seed": 0}, {"n": 2, "seed": 0}, {"n": 1, "seed": 1}, {"n": 1, "seed": 0,
                                                                         "split": "test"})}
    assert len(keys) == 4
    assert _cache.cache_key("x", {"a": 1, "b": 2}) == _cache.cache_key("x", {"b": 2, "a": 1})


# ------------------------------------------------------------------------- line art, hints

def adaptive_threshold_loop(grey: np.ndarray, block: int = 9, c: int = 2) -> np.ndarray:
    """OpenCV's ADAPTIVE_THRESH_MEAN_C + THRESH_BINARY written out pixel by pixel."""
    height, width = grey.shape
    half = block // 2
    out = np.zeros((height, width), np.float32)
    for y in range(height):
        for x in range(width):
            total = 0
            for dy in range(-half, half + 1):
                for dx in range(-half, half + 1):
                    yy = min(max(y + dy, 0), height - 1)  # BORDER_REPLICATE
                    xx = min(max(x + dx, 0), width - 1)
                    total += int(grey[yy, xx])
            mean = int(np.rint(total / (block * block)))
            out[y, x] = 1.0 if int(grey[y, x]) - mean > -c else 0.0
    return out


def test_line_art_matches_the_opencv_rule_written_as_a_loop():
    rng = np.random.default_rng(0)
    image = rng.random((13, 17, 3)).astype(np.float32)
    image[4:9, 3:12] *= 0.2  # a dark patch so both outcomes appear
    expected = adaptive_threshold_loop(cartoons.grey_255(image))
    np.testing.assert_array_equal(data.line_art(image), expected)
    assert 0 < expected.mean() < 1


def test_line_art_finds_a_dark_line_on_paper():
    image = np.ones((20, 20, 3), np.float32)
    image[:, 9:11] = 0.1
    lines = data.line_art(image)
    assert lines.dtype == np.float32 and lines.shape == (20, 20)
    assert (lines[:, 9:11] == 0).all() and (lines[:, :5] == 1).all()
    assert (data.line_art(np.full((8, 8, 3), 0.4)) == 1).all()  # flat grey: all paper
    with pytest.raises(ValueError, match="line_art"):
        data.line_art(np.zeros((4, 4, 2)))


def test_colour_hint_training_and_use():
    image = np.zeros((64, 64, 3), np.float32)
    image[:, :32, 0] = 1.0  # red left half, black right half
    hint = data.colour_hint(image, np.random.default_rng(1), train=True)
    again = data.colour_hint(image, np.random.default_rng(1), train=True)
    other = data.colour_hint(image, np.random.default_rng(2), train=True)
    assert hint.shape == (64, 64, 3) and hint.dtype == np.float32
    np.testing.assert_array_equal(hint, again)
    assert not np.array_equal(hint, other)
    assert image.max() == 1.0 and image[:, 32:].max() == 0.0  # input untouched
    # White squares lighten the image; the blur keeps red on the left, not the right.
    assert hint.mean() > image.mean()
    assert hint[:, :16, 0].mean() > hint[:, 48:, 0].mean()
    assert hint[:, :16, 1].mean() < hint[:, :16, 0].mean()
    # At use time: 0.3 * image + 0.7 * white, blurred (a flat image stays flat).
    flat = np.full((40, 40, 3), 0.5, np.float32)
    np.testing.assert_allclose(data.colour_hint(flat, None, train=False), 0.85, atol=1e-6)
    with pytest.raises(ValueError, match="rng"):
        data.colour_hint(image, None, train=True)


# ------------------------------------------------------------------------------------ loaders

def write_idx(path: Path, array: np.ndarray, compress: bool = False) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(s).to_bytes(4, "big") for s in array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if compress else raw)


@pytest.fixture
def mnist_folder(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8)
    labels = np.array([3, 1, 4, 1, 5], np.uint8)
    folder = tmp_path / "mnist"
    folder.mkdir()
    write_idx(folder / "train-images-idx3-ubyte.gz", images, compress=True)
    write_idx(folder / "train-labels-idx1-ubyte.gz", labels, compress=True)
    write_idx(folder / "t10k-images-idx3-ubyte", images[:2])
    write_idx(folder / "t10k-labels-idx1-ubyte", labels[:2])
    return folder, images, labels


def test_load_mnist_reads_gzipped_and_plain_idx(mnist_folder):
    folder, images, labels = mnist_folder
    x, y = data.load_mnist(folder, "train")
    assert x.dtype == np.float32 and y.dtype == np.int64
    np.testing.assert_allclose(x, images / 255.0, atol=1e-7)
    np.testing.assert_array_equal(y, labels)
    x, y = data.load_mnist([folder / "t10k-images-idx3-ubyte", folder / "t10k-labels-idx1-ubyte"])
    assert x.shape == (2, 28, 28) and list(y) == [3, 1]


def test_load_mnist_rejects_bad_files(mnist_folder, tmp_path):
    folder, _, _ = mnist_folder
    plain = folder / "t10k-images-idx3-ubyte"
    truncated = tmp_path / "truncated-idx3"
    truncated.write_bytes(plain.read_bytes()[:-100])
    with pytest.raises(ValueError, match="truncated"):
        data.read_idx(truncated)
    wrong_magic = tmp_path / "wrong"
    wrong_magic.write_bytes(b"\x12\x34" + plain.read_bytes()[2:])
    with pytest.raises(ValueError, match=r"not an IDX file.*MNIST"):
        data.read_idx(wrong_magic)
    with pytest.raises(ValueError, match="swapped"):
        data.load_mnist([folder / "t10k-labels-idx1-ubyte", folder / "t10k-labels-idx1-ubyte"])
    with pytest.raises(ValueError, match="different sets"):
        data.load_mnist([folder / "t10k-images-idx3-ubyte",
                         folder / "train-labels-idx1-ubyte.gz"])
    broken_gzip = tmp_path / "broken.gz"
    broken_gzip.write_bytes(gzip.compress(plain.read_bytes())[:60])
    with pytest.raises(ValueError, match="incomplete"):
        data.read_idx(broken_gzip)
    damaged = bytearray(gzip.compress(plain.read_bytes()))
    damaged[10] = 0x07  # the first deflate block header says block type 3, which is invalid
    broken_gzip.write_bytes(bytes(damaged))
    with pytest.raises(ValueError, match="damaged"):
        data.read_idx(broken_gzip)
    bad_labels = tmp_path / "labels"
    write_idx(bad_labels, np.array([1, 2, 12, 0, 0], np.uint8))
    with pytest.raises(ValueError, match="0-9"):
        data.load_mnist([folder / "train-images-idx3-ubyte.gz", bad_labels])
    with pytest.raises(FileNotFoundError, match=r"t10k-images-idx3-ubyte.*found"):
        data.load_mnist(tmp_path / "nowhere", "test")
    with pytest.raises(ValueError, match="pair of paths, got 1"):
        data.load_mnist([folder / "t10k-images-idx3-ubyte"])


def write_cifar(path: Path, labels: list[int], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (len(labels), 3, 32, 32), dtype=np.uint8)
    records = np.concatenate([np.array(labels, np.uint8)[:, None],
                              pixels.reshape(len(labels), -1)], axis=1)
    path.write_bytes(records.tobytes())
    return pixels.transpose(0, 2, 3, 1)  # what the loader must return, channels last


def test_load_cifar10_binary(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    first = write_cifar(folder / "data_batch_1.bin", [0, 9, 4], seed=1)
    second = write_cifar(folder / "data_batch_2.bin", [7], seed=2)
    rest = [write_cifar(folder / f"data_batch_{i}.bin", [i], seed=i) for i in (3, 4, 5)]
    test = write_cifar(folder / "test_batch.bin", [2, 2], seed=3)
    x, y = data.load_cifar10(tmp_path, "train")  # the parent folder works too
    assert x.shape == (7, 32, 32, 3) and x.dtype == np.float32 and list(y) == [0, 9, 4, 7,
                                                                                3, 4, 5]
    np.testing.assert_allclose(x, np.concatenate([first, second, *rest]) / 255.0, atol=1e-7)
    x, y = data.load_cifar10(folder, "test")
    np.testing.assert_allclose(x, test / 255.0, atol=1e-7)


def test_load_cifar10_rejects_bad_files(tmp_path):
    folder = tmp_path / "cifar"
    folder.mkdir()
    for i in (2, 3, 4, 5):
        write_cifar(folder / f"data_batch_{i}.bin", [1])
    write_cifar(folder / "data_batch_1.bin", [1, 2])
    (folder / "data_batch_1.bin").write_bytes((folder / "data_batch_1.bin").read_bytes()[:-7])
    with pytest.raises(ValueError, match="3073-byte records"):
        data.load_cifar10(folder)
    (folder / "data_batch_1.bin").write_bytes(b"\x80\x02}q\x00" + bytes(3068))
    with pytest.raises(ValueError, match="pickle"):
        data.load_cifar10(folder)
    write_cifar(folder / "data_batch_1.bin", [1, 42])
    with pytest.raises(ValueError, match="labels are 0-9"):
        data.load_cifar10(folder)
    pickled = tmp_path / "python-version"
    pickled.mkdir()
    (pickled / "data_batch_1").write_bytes(b"\x80\x02")
    with pytest.raises(FileNotFoundError, match="binary version"):
        data.load_cifar10(pickled)


def test_load_image_folder_any_mode_centre_cropped(tmp_path):
    folder = tmp_path / "pictures"
    (folder / "sub").mkdir(parents=True)
    wide = np.zeros((20, 60, 3), np.uint8)
    wide[:, :20] = (255, 0, 0)
    wide[:, 20:40] = (0, 255, 0)  # the centre square is green
    wide[:, 40:] = (0, 0, 255)
    Image.fromarray(wide).save(folder / "a_wide.png")
    Image.fromarray(np.full((30, 30), 128, np.uint8)).save(folder / "b_grey.png")
    rgba = np.zeros((16, 16, 4), np.uint8)  # fully transparent: white paper
    Image.fromarray(rgba).save(folder / "c_clear.png")
    Image.fromarray(np.full((24, 24, 3), 200, np.uint8)).save(folder / "sub" / "d.jpg")
    Image.fromarray(np.full((24, 24), 65535, np.uint16)).save(folder / "e_16bit.png")
    (folder / "notes.txt").write_text("not an image")
    images = data.load_image_folder(folder, size=8)
    assert images.shape == (5, 8, 8, 3) and images.dtype == np.float32
    np.testing.assert_allclose(images[0], np.broadcast_to([0, 1, 0], (8, 8, 3)), atol=0.02)
    np.testing.assert_allclose(images[1], 128 / 255, atol=0.01)
    np.testing.assert_allclose(images[2], 1.0)
    np.testing.assert_allclose(images[3], 1.0, atol=0.01)  # 16-bit white
    np.testing.assert_allclose(images[4], 200 / 255, atol=0.03)  # sub/d.jpg sorts last
    assert data.load_image_folder(folder, size=8, limit=2).shape == (2, 8, 8, 3)


@pytest.mark.parametrize("orientation, corner", [(1, (0, 0)), (3, (1, 2)), (6, (0, 1)),
                                                 (8, (2, 0))])
def test_a_photo_is_read_as_a_viewer_shows_it(tmp_path, orientation, corner):
    """A camera stores a portrait photo sideways with an EXIF orientation; every reader here
    (image folders, uploads, --colorize) must turn it upright: the red pixel stored in the top
    left corner of a 2 x 3 picture ends up where a viewer shows it."""
    stored = np.zeros((2, 3, 3), np.uint8)
    stored[0, 0] = (255, 0, 0)
    picture = Image.fromarray(stored)
    exif = picture.getexif()
    exif[0x0112] = orientation
    picture.save(tmp_path / "photo.png", exif=exif.tobytes())
    seen = data.read_image(tmp_path / "photo.png")
    assert seen.shape[:2] == ((2, 3) if orientation in (1, 3) else (3, 2))
    assert tuple(np.argwhere(seen[..., 0] > 0.5)[0]) == corner
    assert data.load_image_folder(tmp_path, size=2).shape == (1, 2, 2, 3)


def test_load_image_folder_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no images"):
        data.load_image_folder(empty, 8)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "x.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 5)
    with pytest.raises(ValueError, match=r"x\.png"):
        data.load_image_folder(broken, 8)


def test_load_text_lines(tmp_path):
    path = tmp_path / "chat.txt"
    path.write_bytes("hello chat\r\n\r\nnaïve emote Kappa\n  \nlast line".encode())
    assert data.load_text_lines(path) == ["hello chat", "naïve emote Kappa", "last line"]
    path.write_bytes("\ufeff \r\n\ufeff  hi\n".encode())  # a BOM alone, then before spaces
    assert data.load_text_lines(path) == ["hi"]
    path.write_bytes(b"fine\nalso fine\nbad \xff\xfe byte\n")
    with pytest.raises(ValueError, match="line 3"):
        data.load_text_lines(path)
    path.write_bytes(b"\n\n")
    with pytest.raises(ValueError, match="no messages"):
        data.load_text_lines(path)
    with pytest.raises(FileNotFoundError):
        data.load_text_lines(tmp_path / "missing.txt")


# ----------------------------------------------------------------------------- dispatcher

def test_load_prefers_real_data_when_present(isolated_data_dir, mnist_folder):
    folder, _, labels = mnist_folder
    synthetic = data.load("mnist", 20, seed=3)
    np.testing.assert_array_equal(synthetic[0], data.digits(20, 3)[0])
    assert data.source("mnist") == "synthetic"
    x, y = data.load("digits", path=folder)
    np.testing.assert_array_equal(y, labels)
    # Put it in the data folder: load finds it without a path.
    isolated_data_dir.mkdir(parents=True, exist_ok=True)
    os.rename(folder, isolated_data_dir / "mnist")
    x, y = data.load("digits", 3)
    assert x.shape == (3, 28, 28) and list(y) == [3, 1, 4]
    assert data.source("digits").endswith("mnist")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        x, _ = data.load("digits", 50)
    assert len(x) == 5 and "holds 5" in str(caught[0].message)
    with pytest.raises(ValueError, match="unknown data set"):
        data.load("imagenet", 5)


def test_load_chat_and_folders(isolated_data_dir, tmp_path):
    isolated_data_dir.mkdir(parents=True, exist_ok=True)
    (isolated_data_dir / "chat.txt").write_text("one\ntwo\nthree\n")
    assert data.load("chat", 2) == ["one", "two"]
    pictures = tmp_path / "faces"
    pictures.mkdir()
    for index in range(3):
        Image.fromarray(np.full((10, 12, 3), 40 * index, np.uint8)).save(pictures / f"{index}.png")
    faces = data.load("celeba", path=pictures, size=6)
    assert faces.shape == (3, 6, 6, 3)
    cached_files = list(isolated_data_dir.glob("folder-*.npz"))
    assert len(cached_files) == 1
    np.testing.assert_array_equal(data.load("celeba", path=pictures, size=6), faces)
    # A broken image: a clear error and no cache file for the failed folder.
    (pictures / "3.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"3\.png"):
        data.load("faces", path=pictures, size=6)
    assert list(isolated_data_dir.glob("folder-*.npz")) == cached_files
    assert not list(isolated_data_dir.glob("*.tmp"))


# ---------------------------------------------------------- neither trivial nor noise

def train_and_score(x_train, y_train, x_test, y_test, hidden: int, epochs: int,
                    seed: int = 0) -> float:
    """Mini-batch Adam on cross-entropy, pure NumPy; hidden=0 is softmax regression.

    float64 throughout: in float32, Adam's squared-gradient averages of rarely used weights
    decay into subnormal numbers, which make every arithmetic step ~50x slower.
    """
    rng = np.random.default_rng(seed)
    x_train = x_train.reshape(len(x_train), -1).astype(np.float64)
    x_test = x_test.reshape(len(x_test), -1).astype(np.float64)
    sizes = [x_train.shape[1]] + ([hidden] if hidden else []) + [10]
    weights = [rng.normal(0, np.sqrt(2 / a), (a, b)) for a, b in itertools.pairwise(sizes)]
    biases = [np.zeros(b) for b in sizes[1:]]
    params = weights + biases
    first = [np.zeros_like(p) for p in params]
    second = [np.zeros_like(p) for p in params]

    def forward(x):
        outputs = [x]
        for layer, (w, b) in enumerate(zip(weights, biases)):
            x = x @ w + b
            if layer < len(weights) - 1:
                x = np.maximum(x, 0)
            outputs.append(x)
        return outputs

    step = 0
    for _ in range(epochs):
        order = rng.permutation(len(x_train))
        for start in range(0, len(order), 100):
            batch = order[start:start + 100]
            outputs = forward(x_train[batch])
            probs = np.exp(outputs[-1] - outputs[-1].max(1, keepdims=True))
            probs /= probs.sum(1, keepdims=True)
            probs[np.arange(len(batch)), y_train[batch]] -= 1
            delta = probs / len(batch)
            grad_w, grad_b = [None] * len(weights), [None] * len(weights)
            for layer in reversed(range(len(weights))):
                grad_w[layer] = outputs[layer].T @ delta
                grad_b[layer] = delta.sum(0)
                if layer:
                    delta = (delta @ weights[layer].T) * (outputs[layer] > 0)
            step += 1
            for i, grad in enumerate(grad_w + grad_b):
                first[i] = 0.9 * first[i] + 0.1 * grad
                second[i] = 0.999 * second[i] + 0.001 * grad * grad
                params[i] -= 2e-3 * (first[i] / (1 - 0.9 ** step)) / (
                    np.sqrt(second[i] / (1 - 0.999 ** step)) + 1e-8)
    return float((forward(x_test)[-1].argmax(1) == y_test).mean())


def test_digits_are_neither_trivial_nor_noise(digit_sets):
    (x_train, y_train), (x_test, y_test) = digit_sets
    linear = train_and_score(x_train, y_train, x_test, y_test, hidden=0, epochs=4)
    mlp = train_and_score(x_train, y_train, x_test, y_test, hidden=48, epochs=4)
    print(f"held-out accuracy: softmax regression {linear:.3f}, MLP {mlp:.3f}")
    assert 0.6 < linear < 0.97  # clearly above chance (0.1), clearly below 100%
    assert mlp > linear + 0.02  # a hidden layer helps, as on MNIST


# ---------------------------------------------------------------- optional downloader

def test_fetch_checks_md5_and_leaves_nothing_on_mismatch(tmp_path):
    from minimal.data import download

    served = tmp_path / "server" / "file.gz"
    served.parent.mkdir()
    served.write_bytes(b"some published bytes")
    url = served.as_uri()  # a file:// URL: the code path of a real download, no network
    good_md5 = download.md5_of(served)
    target = tmp_path / "data" / "file.gz"
    download.fetch(url, target, good_md5)
    assert target.read_bytes() == b"some published bytes"
    other = tmp_path / "data" / "other.gz"
    with pytest.raises(ValueError, match="MD5"):
        download.fetch(url, other, "0" * 32)
    assert sorted(p.name for p in other.parent.iterdir()) == ["file.gz"]


def test_a_killed_download_leaves_nothing_after_the_next_attempt(tmp_path):
    """A download killed mid-way (SIGKILL: no cleanup ran) left its temporary file; the next
    fetch of the same file removes it, and leaves only the checked file."""
    from minimal.data import download

    served = tmp_path / "server" / "file.gz"
    served.parent.mkdir()
    served.write_bytes(b"some published bytes")
    target = tmp_path / "data" / "file.gz"
    target.parent.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a process id that no longer runs: the killed downloader's
    (target.parent / f"file.gz.{dead.pid}.k2j4x.tmp").write_bytes(b"some pub")
    download.fetch(served.as_uri(), target, download.md5_of(served))
    assert sorted(p.name for p in target.parent.iterdir()) == ["file.gz"]


def test_download_cifar10_extracts_only_the_batches(tmp_path, monkeypatch):
    import io
    import tarfile

    from minimal.data import download

    archive = tmp_path / "server" / download.CIFAR_ARCHIVE
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        for name in download.CIFAR_MEMBERS + ("readme.html", "../escape.bin"):
            payload = bytes([1]) + bytes(3072)
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}" if "/" not in name else name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    monkeypatch.setitem(download.CIFAR_MD5, download.CIFAR_ARCHIVE, download.md5_of(archive))
    folder = download.download_cifar10(tmp_path / "data" / "cifar-10-batches-bin",
                                       base_url=archive.parent.as_uri() + "/")
    assert sorted(p.name for p in folder.iterdir()) == sorted(download.CIFAR_MEMBERS)
    assert not (tmp_path / "data" / "escape.bin").exists()
    from minimal.app.files import default_file_mode
    for path in [*folder.iterdir(), tmp_path / "data" / download.CIFAR_ARCHIVE]:
        assert path.stat().st_mode & 0o777 == default_file_mode(), path  # not mkstemp's 0600
    x, y = data.load_cifar10(folder, "test")
    assert x.shape == (1, 32, 32, 3) and list(y) == [1]


def test_shapes_need_the_shape_but_context_helps():
    """Colour and background hint at the class (as sky does for CIFAR's planes), so a linear
    model beats chance; only the outline decides, so it stays far from perfect."""
    x_train, y_train = data.shapes(5000, 0, cache=False)
    x_test, y_test = data.shapes(1000, 0, cache=False, split="test")
    # Every other pixel is plenty for colour and texture, and 4x cheaper to fit.
    linear = train_and_score(x_train[:, ::2, ::2], y_train, x_test[:, ::2, ::2], y_test,
                             hidden=0, epochs=4)
    print(f"shapes, held-out accuracy of softmax regression: {linear:.3f}")
    assert 0.16 < linear < 0.6


# ------------------------------------------------------------------ cache: damage and faults

def test_cache_fuzz_single_byte_flips_load_right_or_are_rebuilt(tmp_path, monkeypatch):
    """Flip one byte of a real cache file, at 400 random positions of its 1042 (a random bit
    pattern each; all positions took 10 s on this machine's slow renames, so a sample):
    the next load returns the right data, either read as it is or rebuilt with a warning, and
    the load after that reads the file without a word: no flip fails, none fails twice."""
    import os
    monkeypatch.setattr(os, "fsync", lambda fd: None)  # hundreds of rewrites: skip the flush
    rng = np.random.default_rng(0)
    truth = {"images": rng.integers(0, 256, (3, 8, 8), dtype=np.uint8),  # the digits' dtypes
             "labels": rng.integers(0, 10, 3)}
    builds = []

    def build():  # the cache's build step, with the real arrays' dtypes (kept small: fast)
        builds.append(1)
        return {name: value.copy() for name, value in truth.items()}

    def load():
        return _cache.cached("digits", {"n": 3, "seed": 5}, build, tmp_path)

    load()
    (path,) = tmp_path.glob("digits-*.npz")
    original = path.read_bytes()
    rebuilt = 0
    positions = np.sort(rng.choice(len(original), size=400, replace=False))
    for position in positions:
        damaged = bytearray(original)
        damaged[position] ^= int(rng.integers(1, 256))
        path.write_bytes(bytes(damaged))
        before = len(builds)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RuntimeWarning)
            arrays = load()
        caught = [w for w in caught if issubclass(w.category, RuntimeWarning)]
        for name, value in truth.items():
            np.testing.assert_array_equal(arrays[name], value, err_msg=f"byte {position}")
        assert len(builds) - before == len(caught) <= 1, f"byte {position}"
        rebuilt += len(caught)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the next load is clean: read, not rebuilt again
            arrays = load()
        np.testing.assert_array_equal(arrays["images"], truth["images"])
        assert len(builds) - before == len(caught), f"byte {position} failed twice"
    assert rebuilt > 0.7 * len(positions), (rebuilt, len(positions))  # measured: 80 percent
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("flag, error", [(0x01, "RuntimeError"), (0x40, "NotImplementedError")])
def test_cache_zip_flag_damage_is_rebuilt_not_fatal(isolated_data_dir, flag, error):
    """Flag bits in the zip directory make np.load raise RuntimeError ('password required') or
    NotImplementedError ('strong encryption'): still damage, so the file is rebuilt."""
    reference, _ = data.digits(3, 5)
    (path,) = isolated_data_dir.glob("digits-*.npz")
    raw = bytearray(path.read_bytes())
    directory = raw.rfind(b"PK\x01\x02")  # the last central-directory entry
    raw[directory + 8] |= flag
    path.write_bytes(bytes(raw))
    with pytest.warns(RuntimeWarning, match=f"cannot read cache file .*{error}"):
        images, _ = data.digits(3, 5)
    np.testing.assert_array_equal(images, reference)
    _cache.load_arrays(path)  # rewritten whole


def test_cache_damaged_file_in_a_read_only_folder_is_built_in_memory(isolated_data_dir,
                                                                    monkeypatch):
    import tempfile
    reference, _ = data.digits(3, 5)
    (path,) = isolated_data_dir.glob("digits-*.npz")
    path.write_bytes(path.read_bytes()[:100])

    def refused(*args, **kwargs):  # what a read-only folder answers (tests may run as root)
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "unlink", refused)
    monkeypatch.setattr(tempfile, "mkstemp", refused)
    with pytest.warns(RuntimeWarning) as caught:
        images, _ = data.digits(3, 5)
    messages = [str(w.message) for w in caught]
    assert any("cannot read cache file" in m for m in messages), messages
    assert any("could not cache digits" in m and "built in memory" in m for m in messages)
    np.testing.assert_array_equal(images, reference)
    with pytest.warns(RuntimeWarning, match="could not cache digits .*built in memory"):
        images, _ = data.digits(2, 5)  # no file yet, folder read-only: built in memory too
    np.testing.assert_array_equal(images, reference[:2])


def test_cache_a_folder_where_the_file_should_be_is_built_in_memory(isolated_data_dir):
    reference, _ = data.digits(3, 5)
    (path,) = isolated_data_dir.glob("digits-*.npz")
    path.unlink()
    path.mkdir()
    with pytest.warns(RuntimeWarning, match="is a folder where the cache file of digits"):
        images, _ = data.digits(3, 5)
    np.testing.assert_array_equal(images, reference)
    assert path.is_dir()  # left as it was


# ------------------------------------------------------------ loaders: limits and oddities

def test_a_gz_idx_that_inflates_beyond_its_header_stops_reading_at_once(tmp_path):
    """Header: 2 labels. Inflated: 64 MB more. The loader refuses after reading 3 bytes of
    data, so its memory stays far below what the file would inflate to."""
    import tracemalloc

    from minimal.errors import DataError
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    with gzip.open(path, "wb", compresslevel=1) as file:
        file.write(bytes([0, 0, 0x08, 1]) + (2).to_bytes(4, "big") + bytes([3, 1]))
        block = bytes(1 << 20)
        for _ in range(64):
            file.write(block)
    assert path.stat().st_size < 1 << 20  # small on disk
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match=r"header says shape \(2,\) \(2 bytes of data\), "
                                            r"found more"):
            data.read_idx(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, peak  # reading it all first would take 64 MB


def test_an_idx_header_whose_dimensions_overflow_is_a_clear_error(tmp_path):
    from minimal.errors import DataError
    header = bytes([0, 0, 0x08, 3]) + (0xFFFFFFFF).to_bytes(4, "big") * 3
    for name, raw in (("plain-idx3-ubyte", header + bytes(10)),
                      ("gz-idx3-ubyte.gz", gzip.compress(header + bytes(10)))):
        (tmp_path / name).write_bytes(raw)
        with pytest.raises(DataError, match=r"header says shape \(4294967295, 4294967295, "
                                            r"4294967295\).*the header is damaged"):
            data.read_idx(tmp_path / name, expected_dims=3)


def _png_claiming(path: Path, width: int, height: int) -> None:
    """A valid 1x1 PNG whose IHDR then claims width x height (CRC fixed, so only the size
    is wrong: what a decompression bomb or a damaged header looks like)."""
    import struct
    import zlib
    Image.new("RGB", (1, 1)).save(path)
    raw = bytearray(path.read_bytes())
    start = raw.index(b"IHDR")
    raw[start + 4:start + 12] = struct.pack(">II", width, height)
    raw[start + 17:start + 21] = struct.pack(">I", zlib.crc32(bytes(raw[start:start + 17])))
    path.write_bytes(bytes(raw))


def test_a_png_claiming_100000_by_100000_pixels_is_a_data_error_naming_it(tmp_path):
    from minimal.errors import DataError
    folder = tmp_path / "faces"
    folder.mkdir()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(folder / "a.png")
    _png_claiming(folder / "b.png", 100_000, 100_000)
    with pytest.raises(DataError, match=r"cannot read image .*b\.png: Image size "
                                        r"\(10000000000 pixels\) exceeds limit"):
        data.load_image_folder(folder, size=8)


def test_a_folder_or_dangling_link_named_like_an_image_is_skipped_with_a_warning(tmp_path):
    folder = tmp_path / "faces"
    (folder / "album.png").mkdir(parents=True)  # a folder named like an image
    (folder / "gone.jpg").symlink_to(tmp_path / "deleted.jpg")  # a dangling link
    Image.new("RGB", (8, 8), (10, 200, 10)).save(folder / "real.png")
    with pytest.warns(RuntimeWarning, match=r"skipping 2 entries .*album.png \(a folder\).*"
                                            r"gone.jpg \(a dangling link\)"):
        images = data.load_image_folder(folder, size=4)
    assert images.shape == (1, 4, 4, 3) and images[0, 0, 0, 1] > 0.7


def test_cifar10_with_only_some_training_batches_names_the_missing_ones(tmp_path):
    from minimal.errors import DataError
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    for i in (1, 2, 4):
        write_cifar(folder / f"data_batch_{i}.bin", [1])
    with pytest.raises(DataError, match=r"incomplete: data_batch_3.bin, data_batch_5.bin "
                                        r"missing \(found data_batch_1.bin, data_batch_2.bin, "
                                        r"data_batch_4.bin\)"):
        data.load_cifar10(tmp_path)
    with pytest.raises(FileNotFoundError):  # still a FileNotFoundError for older callers
        data.load_cifar10(tmp_path)


def test_download_without_a_network_is_one_line_without_a_traceback(tmp_path, monkeypatch,
                                                                    capsys):
    import urllib.error
    import urllib.request

    from minimal.data import download

    def unreachable(url, timeout=None):
        raise urllib.error.URLError(OSError(101, "Network is unreachable"))

    monkeypatch.setattr(urllib.request, "urlopen", unreachable)
    with pytest.raises(SystemExit) as exit_info:
        download.main(["mnist", "--root", str(tmp_path)])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("download: cannot download https://") and "Network is unreachable" \
        in err and "Is there a network?" in err and len(err.strip().splitlines()) == 1
    assert not list((tmp_path / "mnist").glob("*"))  # no partial file left
