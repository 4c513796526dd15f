"""minimal/parallel.py: the blocks cover the range once, and the threaded convolution and
batch-norm kernels give the same bits as the serial ones (each output element is computed by
one thread, in the serial order)."""

import numpy as np
import pytest

from minimal import functional as F
from minimal import parallel
from minimal.autograd import Tensor


def test_for_blocks_covers_every_index_once(monkeypatch):
    monkeypatch.setattr(parallel, "THREADS", 3)
    monkeypatch.setattr(parallel, "MIN_ELEMENTS", 0)
    hits = np.zeros(10, int)

    def visit(lo, hi):
        hits[lo:hi] += 1

    parallel.for_blocks(visit, 10, 10)
    assert hits.tolist() == [1] * 10
    hits[:] = 0
    parallel.for_blocks(visit, 2, 10)  # fewer items than threads
    assert hits.tolist() == [1, 1] + [0] * 8


def test_for_blocks_reraises_a_worker_error(monkeypatch):
    monkeypatch.setattr(parallel, "THREADS", 2)
    monkeypatch.setattr(parallel, "MIN_ELEMENTS", 0)

    def fail_in_second_block(lo, hi):
        if lo > 0:
            raise ValueError("block failed")

    with pytest.raises(ValueError, match="block failed"):
        parallel.for_blocks(fail_in_second_block, 4, 4)


def _conv_net_gradients(rng_seed: int) -> list[np.ndarray]:
    """Forward + backward through conv, batch norm, leaky ReLU, transposed convs to 32 and to
    3 channels (the channels-first col2im): every array the kernels produce."""
    rng = np.random.default_rng(rng_seed)

    def param(*shape):
        return Tensor(rng.standard_normal(shape).astype(np.float32), requires_grad=True)

    x = param(5, 3, 12, 12)
    w1, b1 = param(32, 3, 5, 5), param(32)
    w2, b2 = param(32, 32, 5, 5), param(32)
    w3, b3 = param(32, 3, 5, 5), param(3)
    gamma, beta = param(32), param(32)
    h = F.conv2d(x, w1, b1, 2, 2)
    h = F.leaky_relu(F.batch_norm(h, None, None, gamma, beta, training=True), 0.2)
    h = F.relu(F.conv_transpose2d(h, w2, b2, 2, 2, 1))
    y = F.conv_transpose2d(h, w3, b3, 1, 2)
    (y * Tensor(rng.standard_normal(y.shape).astype(np.float32))).sum().backward()
    return [y.data] + [t.grad for t in (x, w1, b1, w2, b2, w3, b3, gamma, beta)]


def test_threaded_convolutions_match_the_serial_path_bit_for_bit(monkeypatch):
    monkeypatch.setattr(parallel, "THREADS", 1)
    serial = _conv_net_gradients(0)
    monkeypatch.setattr(parallel, "THREADS", 2)
    monkeypatch.setattr(parallel, "MIN_ELEMENTS", 0)  # every kernel takes the threaded path
    threaded = _conv_net_gradients(0)
    for a, b in zip(serial, threaded, strict=True):
        assert a.shape == b.shape
        assert np.array_equal(a, b)


def _cross_entropy_and_gradient(rng_seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(rng_seed)
    logits = Tensor(rng.standard_normal((37, 11)).astype(np.float32) * 4, requires_grad=True)
    labels = rng.integers(0, 11, 37)
    loss = F.cross_entropy(logits, labels)
    loss.backward()
    return [loss.data, logits.grad]


def test_threaded_cross_entropy_matches_the_serial_path_bit_for_bit(monkeypatch):
    monkeypatch.setattr(parallel, "THREADS", 1)
    serial = _cross_entropy_and_gradient(1)
    monkeypatch.setattr(parallel, "THREADS", 2)
    monkeypatch.setattr(parallel, "MIN_ELEMENTS", 0)
    threaded = _cross_entropy_and_gradient(1)
    for a, b in zip(serial, threaded, strict=True):
        assert np.array_equal(a, b)
