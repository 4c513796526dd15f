"""Convolution: the array steps of conv.py's im2col / col2im references, faster.

Layout is the reference's: images (N, C, H, W) whose memory is usually channels-last, im2col
rows (N*oh*ow, kh*kw*C) with the channels innermost, weight matrices (O, kh*kw*C).

- the copies (channels_last, padded_channels_last, im2col) and col2im's adds are split over
  the BLAS threads (threads.for_blocks: same bits as one thread);
- col2im remembers each shape's list of tap slices;
- a transposed convolution takes one of two other roads when its shape suits it (the rule is in
  `conv_transpose`): by stride phases channels-first into few channels, or one product per
  kernel tap from few channels;
- the weight gradient's product runs the way round OpenBLAS is faster at;
- the bias gradient is a BLAS product with a vector of ones.
"""

from __future__ import annotations

import functools

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from minimal.kernels.threads import for_blocks

# the transposed-convolution roads (see `conv_transpose`)
FEW_CHANNELS = 16  # into fewer output channels: stride phases, channels-first
TAP_INPUTS = 64  # from at most this many input channels: one product per kernel tap...
TAP_MIN_PIXELS = 256  # ...over more input pixels (N*h*w); on fewer, kh*kw tiny products cost
# more than the adds save


def channels_last(x: np.ndarray) -> np.ndarray:
    """(N, C, H, W) array -> contiguous (N, H, W, C); free when it already lies that way."""
    source = x.transpose(0, 2, 3, 1)
    if source.flags.c_contiguous:
        return source
    out = np.empty(source.shape, x.dtype)

    def copy(lo, hi):
        out[lo:hi] = source[lo:hi]

    for_blocks(copy, len(out), out.size)
    return out


def padded_channels_last(x: np.ndarray, pad: tuple[int, int]) -> np.ndarray:
    """(N, C, H, W) -> zero-padded contiguous (N, H + 2ph, W + 2pw, C) in one copy."""
    ph, pw = pad
    if ph == 0 and pw == 0:
        return channels_last(x)
    n, c, h, w = x.shape
    out = np.empty((n, h + 2 * ph, w + 2 * pw, c), x.dtype)  # zeros only on the border:
    out[:, :ph], out[:, ph + h:] = 0, 0  # every other entry is written once, below
    out[:, ph:ph + h, :pw], out[:, ph:ph + h, pw + w:] = 0, 0

    def copy(lo, hi):
        out[lo:hi, ph:ph + h, pw:pw + w] = x[lo:hi].transpose(0, 2, 3, 1)

    for_blocks(copy, n, out.size)
    return out


def im2col(padded: np.ndarray, kernel, stride, out_hw) -> np.ndarray:
    """Padded (N, Hp, Wp, C) -> (N*oh*ow, kh*kw*C), the copy split over the threads."""
    (kh, kw), (sh, sw), (oh, ow) = kernel, stride, out_hw
    n, c = padded.shape[0], padded.shape[3]
    windows = sliding_window_view(padded, (kh, kw), axis=(1, 2))  # (N, H', W', C, kh, kw)
    windows = windows[:, :(oh - 1) * sh + 1:sh, :(ow - 1) * sw + 1:sw]
    source = windows.transpose(0, 1, 2, 4, 5, 3)  # channels innermost
    cols = np.empty(source.shape, padded.dtype)

    def copy(lo, hi):
        cols[lo:hi] = source[lo:hi]

    for_blocks(copy, n, cols.size)  # the biggest copy of a convolution: on every core
    return cols.reshape(n * oh * ow, kh * kw * c)


def _tap_range(tap: int, stride: int, count: int, pad: int, size: int) -> tuple[int, int]:
    """Which of the `count` patch positions put kernel tap `tap` inside the unpadded [0, size)."""
    first = max(0, -((tap - pad) // stride))  # smallest a with tap + a*stride - pad >= 0
    last = min(count, (size - 1 - tap + pad) // stride + 1) if size - 1 - tap + pad >= 0 else 0
    return first, max(first, last)


@functools.lru_cache(maxsize=512)
def _taps(kernel, stride, padding, patches_hw, size_hw) -> tuple:
    """For each kernel tap (i, j) that lands inside the unpadded image: (i, j, image rows,
    image columns, patch rows, patch columns), the slices one strided add needs.

    Remembered per shape: a small net's step asks for the same few lists again and again, and
    working them out each time is Python work on every call."""
    (kh, kw), (sh, sw), (ph, pw), (oh, ow), (h, w) = kernel, stride, padding, patches_hw, size_hw
    taps = []
    for i in range(kh):
        a0, a1 = _tap_range(i, sh, oh, ph, h)
        if a0 == a1:
            continue
        rows = slice(i + a0 * sh - ph, i + (a1 - 1) * sh - ph + 1, sh)
        for j in range(kw):
            b0, b1 = _tap_range(j, sw, ow, pw, w)
            if b0 == b1:
                continue
            columns = slice(j + b0 * sw - pw, j + (b1 - 1) * sw - pw + 1, sw)
            taps.append((i, j, rows, columns, slice(a0, a1), slice(b0, b1)))
    return tuple(taps)


def col2im(cols: np.ndarray, out_shape, kernel, stride, padding, patches_hw) -> np.ndarray:
    """The reference's col2im (every row of cols added back onto its patch; unpadded
    (N, H, W, C) out), with the tap slices cached and the images split over the threads."""
    (kh, kw), (oh, ow) = kernel, patches_hw
    n, h, w, c = out_shape
    cols = cols.reshape(n, oh, ow, kh, kw, c)
    out = np.zeros(out_shape, cols.dtype)
    taps = _taps(tuple(kernel), tuple(stride), tuple(padding), tuple(patches_hw), (h, w))

    def add_taps(lo, hi):  # images lo..hi-1, each thread its own
        for i, j, rows, columns, a, b in taps:
            out[lo:hi, rows, columns] += cols[lo:hi, a, b, i, j]

    for_blocks(add_taps, n, cols.size)
    return out


# ===== other roads to a transposed convolution ===============================================

def conv_transpose(y: np.ndarray, weight: np.ndarray, matrix: np.ndarray, stride, padding,
                   out_hw) -> np.ndarray:
    """The reference's y (N, O, h, w) -> (N, C, *out_hw) (weight (O, C, kh, kw), matrix its
    (O, kh*kw*C) form), by another road where one suits the shape:

    - into fewer than FEW_CHANNELS channels (a generator's RGB output, a first layer's input
      gradient): `_transpose_channels_first`, by stride phases in long channels-first runs;
    - from at most TAP_INPUTS channels over more than TAP_MIN_PIXELS input pixels:
      `_transpose_by_taps`, one product per kernel tap.

    Otherwise NotImplemented: the reference's product then col2im (this module's col2im).
    benchmarks/bench_conv_transpose.py times the roads on the demos' shapes and around them.
    """
    n, o, h, w = y.shape
    c, kh, kw = weight.shape[1:]
    if c < FEW_CHANNELS:
        return _transpose_channels_first(y, matrix, c, (kh, kw), stride, padding,
                                         out_hw).transpose(1, 0, 2, 3)
    if o <= TAP_INPUTS and n * h * w > TAP_MIN_PIXELS:
        rows = channels_last(y).reshape(-1, o)
        return _transpose_by_taps(rows, weight, stride, padding, (h, w),
                                  out_hw).transpose(0, 3, 1, 2)
    return NotImplemented


def _phases(kernel, stride, padding, patches_hw, out_hw):
    """How a transposed convolution's output splits by the stride, for the two roads below.

    Output row r = u*s + ri of the full (uncropped) output belongs to phase ri and grid row u
    (columns alike). Kernel tap (i, j) writes only into phase (i mod sh, j mod sw), its h x w
    block of values landing as a plain block at grid offset (i // sh, j // sw): so per phase
    the adds are unstrided. Returns the phases as (ri, rj, first output row, first output
    column, grid row, grid column, rows, columns) -- where each phase's pixels of the cropped
    output are found in its grid -- and a grid size (rows, columns) that holds every tap's
    block and every one of those pixels.
    """
    (kh, kw), (sh, sw), (ph, pw), (h, w), (height, width) = (kernel, stride, padding,
                                                             patches_hw, out_hw)
    phases = []
    for ri in range(sh):
        y0 = (ri - ph) % sh  # the first output row in phase ri
        rows = len(range(y0, height, sh))
        for rj in range(sw):
            x0 = (rj - pw) % sw
            phases.append((ri, rj, y0, x0, (y0 + ph) // sh, (x0 + pw) // sw, rows,
                           len(range(x0, width, sw))))
    grid_h = max([h - 1 + -(-kh // sh)] + [u0 + rows for *_, u0, _, rows, _ in phases])
    grid_w = max([w - 1 + -(-kw // sw)] + [v0 + columns for *_, v0, _, columns in phases])
    return phases, grid_h, grid_w


def _transpose_channels_first(y: np.ndarray, matrix: np.ndarray, channels: int, kernel,
                              stride, padding, out_hw) -> np.ndarray:
    """A transposed convolution into few channels: y (N, O, h, w) -> (C, N, H, W).

    Channels-last adds would move C numbers per inner loop, so this works channels-first, and
    makes each kernel tap's add one long run per image and channel instead of one per image row:

    - The output splits into stride^2 phases (`_phases`): tap (i, j) writes only to phase
      (i mod s, j mod s), at grid offset (i // s, j // s), where its h x w block lands plainly.
    - y's rows are padded with zero columns to the phase grid's width V before the product, so
      a tap's h x w block, laid out with rows of length V, is one contiguous run: the zeros of
      each row's tail run on into the next grid row, where adding zero changes nothing.
    - The phases are woven into the output at the end, one strided copy each.

    The adds drop from kh*kw*C*N*h inner loops of w numbers to kh*kw*C*N runs of h*V.
    """
    n, o, h, w = y.shape
    (kh, kw), (sh, sw) = kernel, stride
    phases, grid_h, grid_w = _phases(kernel, stride, padding, (h, w), out_hw)
    grid_h += 1  # the last tap's run goes on past its block by up to a row's tail
    padded = np.zeros((n, h, grid_w, o), y.dtype)  # channels-last like y: a cheap copy
    padded[:, :, :w] = y.transpose(0, 2, 3, 1)
    cols = (matrix.T @ padded.reshape(-1, o).T).reshape(kh, kw, channels, n, h * grid_w)
    grids = np.zeros((sh, sw, channels, n, grid_h * grid_w), y.dtype)
    out = np.empty((channels, n, *out_hw), y.dtype)  # every entry lies in exactly one phase

    def add_and_weave(lo, hi):  # images lo..hi-1, each thread its own
        for i in range(kh):
            for j in range(kw):
                first = (i // sh) * grid_w + j // sw
                grids[i % sh, j % sw, :, lo:hi, first:first + h * grid_w] += cols[i, j, :, lo:hi]
        for ri, rj, y0, x0, u0, v0, rows, columns in phases:
            grid = grids[ri, rj, :, lo:hi].reshape(channels, hi - lo, grid_h, grid_w)
            out[:, lo:hi, y0::sh, x0::sw] = grid[:, :, u0:u0 + rows, v0:v0 + columns]

    # each call adds one quick run, so a second thread pays off only on bigger batches than a
    # copy's: counting a quarter of the elements was the best of 1, 1/4, 1/25 on 14 shapes
    for_blocks(add_and_weave, n, cols.size // 4)
    return out


def _transpose_by_taps(rows: np.ndarray, weight: np.ndarray, stride, padding, patches_hw,
                       out_hw) -> np.ndarray:
    """A transposed convolution from few channels, one product per kernel tap.

    rows (N*h*w, O) channels-last, weight (O, C, kh, kw) -> (N, H, W, C). col2im adds C
    numbers per inner loop (its cols hold all the taps of a pixel side by side); here tap
    (i, j) gets its own (N*h*w, C) product, whose image rows are contiguous runs of w*C
    numbers, added as a plain block into its phase's grid (`_phases`; with stride 1 the one
    grid is the uncropped output), and the grids are woven into the output at the end. The
    kh*kw small products cost a little more than one big one, but the adds get ~2.5x faster.
    """
    o, c, kh, kw = weight.shape
    (sh, sw), (h, w) = stride, patches_hw
    n = len(rows) // (h * w)
    per_tap = np.ascontiguousarray(weight.transpose(2, 3, 0, 1)).reshape(kh * kw, o, c)
    products = np.matmul(rows, per_tap).reshape(kh, kw, n, h, w, c)  # one per tap
    phases, grid_h, grid_w = _phases((kh, kw), stride, padding, patches_hw, out_hw)
    grids = np.zeros((sh, sw, n, grid_h, grid_w, c), rows.dtype)
    out = np.empty((n, *out_hw, c), rows.dtype)  # every entry lies in exactly one phase

    def add_and_weave(lo, hi):  # images lo..hi-1, each thread its own
        for i in range(kh):
            for j in range(kw):
                u, v = i // sh, j // sw
                grids[i % sh, j % sw, lo:hi, u:u + h, v:v + w] += products[i, j, lo:hi]
        for ri, rj, y0, x0, u0, v0, count_y, count_x in phases:
            out[lo:hi, y0::sh, x0::sw] = grids[ri, rj, lo:hi, u0:u0 + count_y, v0:v0 + count_x]

    for_blocks(add_and_weave, n, products.size // 4)  # see _transpose_channels_first
    return out


# ===== the weight and bias gradients =========================================================

def weight_gradient(cols: np.ndarray, g_rows: np.ndarray, kernel) -> np.ndarray:
    """The reference's (O, C, kh, kw) product g_rows^T cols, the way round OpenBLAS is faster:
    with many pixels and shorter patches, (kh*kw*C, O) = cols^T g is ~10% faster; the copy into
    the weight's layout is needed either way."""
    o = g_rows.shape[1]
    if len(cols) >= cols.shape[1]:
        gw = (cols.T @ g_rows).reshape(kernel[0], kernel[1], -1, o).transpose(3, 2, 0, 1)
    else:
        gw = (g_rows.T @ cols).reshape(o, kernel[0], kernel[1], -1).transpose(0, 3, 1, 2)
    return np.ascontiguousarray(gw)


def bias_gradient(g: np.ndarray):
    """g (N, C, H, W) summed over all but the channels. When g lies channels-last in memory
    (as conv outputs and their gradients do), it is a (N*H*W, C) matrix, and one BLAS product
    with a vector of ones sums its rows ~4x faster than NumPy's sum over three axes."""
    rows = g.transpose(0, 2, 3, 1)
    if not rows.flags.c_contiguous:
        return NotImplemented
    rows = rows.reshape(-1, rows.shape[-1])
    shape = g.shape

    def backward(v: np.ndarray, needs: tuple[bool, ...]) -> tuple[np.ndarray]:
        return (np.broadcast_to(v.reshape(1, -1, 1, 1), shape),)

    return np.ones(len(rows), rows.dtype) @ rows, backward
