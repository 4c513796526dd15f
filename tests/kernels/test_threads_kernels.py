"""minimal/kernels/threads.py: the blocks cover the range once, and the threaded kernels
(convolution, batch norm, cross-entropy, Adam, max pooling) give the same bits as the serial
ones (each output element is computed by one thread, in the serial order)."""

import numpy as np
import pytest

from minimal import functional as F
from minimal.autograd import Tensor, grad
from minimal.kernels import adam as adam_kernel
from minimal.kernels import threads as parallel


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


def _adam_reference(p, grads, lr, betas, eps, weight_decay):
    """Adam written out on whole arrays, as in its docstring: the obvious version."""
    p, m, v = p.copy(), np.zeros_like(p), np.zeros_like(p)
    for t, g in enumerate(grads, start=1):
        g = g + weight_decay * p if weight_decay else g
        m = betas[0] * m + (1 - betas[0]) * g
        v = betas[1] * v + (1 - betas[1]) * (g * g)
        p = p - (lr / (1 - betas[0] ** t)) * m / (np.sqrt(v / (1 - betas[1] ** t)) + eps)
    return p


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_adam_in_chunks_on_two_threads_matches_the_whole_array_update(monkeypatch, weight_decay):
    from minimal import optim
    from minimal.autograd import Parameter

    monkeypatch.setattr(parallel, "THREADS", 2)
    monkeypatch.setattr(parallel, "MIN_ELEMENTS", 0)
    monkeypatch.setattr(adam_kernel, "CHUNK", 7)  # chunks that do not divide the sizes
    rng = np.random.default_rng(0)
    shapes = [(5, 13), (3,), (40, 3)]
    starts = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    grads = [[rng.standard_normal(s).astype(np.float32) for _ in range(4)] for s in shapes]
    # the last one is a transposed (not C-contiguous) parameter: the whole-array path
    params = [Parameter(starts[0].copy()), Parameter(starts[1].copy()),
              Parameter(np.asfortranarray(starts[2]))]
    adam = optim.Adam(params, lr=1e-2, betas=(0.8, 0.99), weight_decay=weight_decay)
    for step in range(4):
        for p, g in zip(params, grads):
            p.grad = g[step] if p.data.flags.c_contiguous else np.asfortranarray(g[step])
        adam.step()
    for p, start, g in zip(params, starts, grads):
        expected = _adam_reference(start, g, 1e-2, (0.8, 0.99), 1e-8, weight_decay)
        # the same operations on float32, bar the order of the 1/(1 - b1^t) factor
        np.testing.assert_allclose(p.data, expected, rtol=1e-6, atol=1e-7)
    # and chunked/threaded gives the very bits of one unchunked pass
    monkeypatch.setattr(parallel, "THREADS", 1)
    monkeypatch.setattr(adam_kernel, "CHUNK", 1 << 20)
    serial = [Parameter(s.copy()) for s in starts]
    adam = optim.Adam(serial, lr=1e-2, betas=(0.8, 0.99), weight_decay=weight_decay)
    for step in range(4):
        for p, g in zip(serial, grads):
            p.grad = g[step]
        adam.step()
    for p, q in zip(params, serial):
        assert np.array_equal(p.data, q.data)


def test_threaded_max_pool_matches_the_loop_with_ties(monkeypatch):
    """The stride = kernel pool split over images on two threads: the values (with the sign
    of a zero), switches and gradient of the loops in test_pool.py, on a channels-last array
    like a convolution's output, with many ties."""
    from test_pool import max_pool_loop, unpool_loop

    monkeypatch.setattr(parallel, "THREADS", 2)
    monkeypatch.setattr(parallel, "MIN_ELEMENTS", 0)
    rng = np.random.default_rng(3)
    x = rng.integers(-2, 3, (5, 9, 7, 4)).astype(np.float32)
    x[(x == 0) & (rng.random(x.shape) < 0.5)] = -0.0  # ties of 0.0 and -0.0 too
    x = x.transpose(0, 3, 1, 2)  # (5, 4, 9, 7) in channels-last memory
    xt = Tensor(x, requires_grad=True)
    out, indices = F.max_pool2d(xt, 2, return_indices=True)
    expected, expected_idx = max_pool_loop(x, (2, 2), (2, 2))
    np.testing.assert_array_equal(out.data, expected)
    np.testing.assert_array_equal(indices, expected_idx)
    at_switches = np.take_along_axis(x.reshape(5, 4, -1), indices.reshape(5, 4, -1),
                                     axis=2).reshape(indices.shape)
    np.testing.assert_array_equal(np.signbit(out.data), np.signbit(at_switches))
    for layout in ((0, 1, 2, 3), (0, 2, 3, 1)):  # the gradient in either memory order
        g = rng.standard_normal(out.shape).astype(np.float32)
        g_laid = np.ascontiguousarray(g.transpose(layout)).transpose(np.argsort(layout))
        (gx,) = grad(out, [xt], Tensor(g_laid))
        np.testing.assert_array_equal(gx.data, unpool_loop(g, expected_idx, x.shape[2:]))
