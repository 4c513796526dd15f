"""The image ops: convolution, transposed convolution, max pooling with switches, unpooling,
upsampling and batch norm (the primitive ops are in autograd.py, the losses in functional.py,
the layers that hold weights in nn.py).

Shapes and semantics are PyTorch's: images are (N, C, H, W); a convolution's weight is
(out_channels, in_channels, kh, kw); a transposed convolution's weight is (in_channels,
out_channels, kh, kw). Everything here is differentiable to any order.

How the convolution works (im2col): every kh x kw patch of the padded input is copied into one
row of a matrix `cols` (one row per output pixel), and one BLAS matrix product with the weight
gives every output pixel at once. The backward pass needs two more products:

    d input  = the transposed convolution of the output gradient with the same weight
    d weight = output gradient (as rows) times cols

and a transposed convolution is the same thing run backwards: one matrix product, then every
row is added back onto its patch ("col2im": one strided add per kernel tap, never `np.add.at`).
So three kernels -- conv, conv-transpose and the weight gradient -- are each other's derivatives
(all three are linear in each argument), and building each backward from them gives exact
second derivatives with no extra code.

Why the arrays are channels-last in memory: the matrix product naturally produces one row per
pixel with the channels along it, i.e. (N, H, W, C). We return that array as an (N, C, H, W)
*view* (a transpose, no copy). NumPy's elementwise functions keep the memory order of their
inputs, so the next batch norm, ReLU or convolution reads it without any copy either. Only the
shape the user sees is PyTorch's. (Two shapes take another road to the same sums: a
transposed convolution to fewer than 16 channels, e.g. a generator's RGB output, works
channels-first, see `_transpose_channels_first`; one from at most 64 channels makes one
product per kernel tap, see `_transpose_by_taps`.)

Batch norm is one node with a hand-written NumPy backward; under create_graph=True its formula
is rebuilt from Tensor ops and differentiated instead (`autograd.fused`), so it too is exact
at every order. nn.py and functional.py use `fused` the same way for the LSTM layer and the losses.
"""

from __future__ import annotations

import functools

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from minimal.autograd import (
    Tensor,
    as_tensor,
    fused,
    is_grad_enabled,
    node,
)
from minimal.parallel import for_blocks

__all__ = ["batch_norm", "conv2d", "conv_transpose2d", "max_pool2d", "max_unpool2d", "upsample"]


# ===== argument checks ======================================================================

def int_pair(value, name: str, op: str) -> tuple[int, int]:
    """A size given as an int or a pair of ints (kernel, stride, padding) as (height, width);
    anything else is an error naming the op and the argument. nn.Conv2d checks with it too."""
    pair = tuple(value) if np.iterable(value) else (value, value)
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) for v in pair):
        raise ValueError(f"{op}: {name} must be an int or a pair of ints, got {value!r}")
    return int(pair[0]), int(pair[1])


def _check_image(op: str, x: Tensor, name: str = "input") -> None:
    if x.ndim != 4:
        raise ValueError(f"{op}: {name} must be (N, C, H, W), got shape {x.shape}")


# ===== NumPy kernels (channels-last: (N, H, W, C)) ==========================================

def _channels_last(x: np.ndarray) -> np.ndarray:
    """(N, C, H, W) array -> contiguous (N, H, W, C); free when it already lies that way."""
    source = x.transpose(0, 2, 3, 1)
    if source.flags.c_contiguous:
        return source
    out = np.empty(source.shape, x.dtype)

    def copy(lo, hi):
        out[lo:hi] = source[lo:hi]

    for_blocks(copy, len(out), out.size)  # the copy on every core, see parallel.py
    return out


def _padded_channels_last(x: np.ndarray, pad: tuple[int, int]) -> np.ndarray:
    ph, pw = pad
    if ph == 0 and pw == 0:
        return _channels_last(x)
    n, c, h, w = x.shape
    out = np.empty((n, h + 2 * ph, w + 2 * pw, c), x.dtype)  # zeros only on the border:
    out[:, :ph], out[:, ph + h:] = 0, 0  # every other entry is written once, below
    out[:, ph:ph + h, :pw], out[:, ph:ph + h, pw + w:] = 0, 0

    def copy(lo, hi):
        out[lo:hi, ph:ph + h, pw:pw + w] = x[lo:hi].transpose(0, 2, 3, 1)

    for_blocks(copy, n, out.size)
    return out


def _weight_matrix(weight: np.ndarray) -> np.ndarray:
    """(O, C, kh, kw) -> (O, kh*kw*C): the column order of `_im2col`."""
    o = weight.shape[0]
    return np.ascontiguousarray(weight.transpose(0, 2, 3, 1)).reshape(o, -1)


def _im2col(padded: np.ndarray, kernel, stride, out_hw) -> np.ndarray:
    """Padded (N, Hp, Wp, C) -> (N*oh*ow, kh*kw*C): row r holds the patch of output pixel r."""
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
    working them out each time cost a few percent of such a step (deepcolor's quick nets)."""
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


def _col2im(cols: np.ndarray, out_shape, kernel, stride, padding, patches_hw) -> np.ndarray:
    """The adjoint of `_im2col`: add every row of cols back onto its patch.

    Returns the unpadded (N, H, W, C): taps that fall on the padding are simply skipped, so
    no padded buffer has to be cropped and copied afterwards. One strided add per kernel tap
    (never np.add.at, which is 5-10x slower).
    """
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


_FEW_CHANNELS = 16


def _phases(kernel, stride, padding, patches_hw, out_hw):
    """How a transposed convolution's output splits by the stride, for the two fast paths below.

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
    """A transposed convolution into few channels (C < 16, e.g. a generator's RGB output):
    y (N, O, h, w) with its `_weight_matrix` -> (C, N, H, W).

    Channels-last adds would move C numbers per inner loop, so this works channels-first, and
    makes each kernel tap's add one long run per image and channel instead of one per image row:

    - The output splits into stride^2 phases (output rows r = u*s + ri, columns v*s + rj);
      tap (i, j) writes only to phase (i mod s, j mod s), at grid offset (i // s, j // s),
      where its h x w block of values lands as a plain (not strided) block.
    - y's rows are padded with zero columns to the phase grid's width V before the product, so
      a tap's h x w block, laid out with rows of length V, is one contiguous run: the zeros of
      each row's tail run on into the next grid row, where adding zero changes nothing.
    - The phases are woven into the output at the end, one strided copy each.

    The adds drop from kh*kw*C*N*h inner loops of w numbers to kh*kw*C*N runs of h*V. Against
    row-by-row adds into the strided output (measured once, benchmarks/README.md) it takes
    0.54-0.88x the time on 1 thread and 0.68-1.06x on 2 on the stride-2 layers of deepcolor,
    the DCGAN and the VAE, but 1.1-1.2x at stride 1 (only the deconvnet's projections).
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


_TAP_INPUTS = 64
_TAP_MIN_PIXELS = 256  # on fewer (N*h*w) the kh*kw tiny products cost more than the adds save


def _transpose_by_taps(rows: np.ndarray, weight: np.ndarray, stride, padding, patches_hw,
                       out_hw) -> np.ndarray:
    """A transposed convolution from at most 64 channels, one product per kernel tap.

    rows (N*h*w, O) channels-last, weight (O, C, kh, kw) -> (N, H, W, C). `_col2im` adds C
    numbers per inner loop (its cols hold all the taps of a pixel side by side); here tap
    (i, j) gets its own (N*h*w, C) product, whose image rows are contiguous runs of w*C
    numbers, added as a plain block into its phase's grid (`_phases`; with stride 1 the one
    grid is the uncropped output), and the grids are woven into the output at the end. The
    kh*kw small products cost a little more than one big one, but the adds get ~2.5x faster.
    benchmarks/bench_conv_transpose.py times both roads on 28 shapes of the demos and around
    them. Where the rule (O <= 64, more than 256 pixels) takes this one it ran in 0.69-0.99x the
    time on 2 threads and 0.66-1.04x on 1 (the deconvnet's conv2 input gradient, 50 images,
    64 -> 32 channels, 16x16, 5x5: 0.85x and 0.82x); where it does not, 0.99-1.54x.
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


def _conv_forward(x, weight, bias, stride, padding, cols=None, matrix=None):
    """Returns the (N, O, oh, ow) result (a view of channels-last memory) and the im2col matrix
    (built here unless the caller already has it; so is `_weight_matrix(weight)`)."""
    n, _, h, w = x.shape
    o, _, kh, kw = weight.shape
    oh = (h + 2 * padding[0] - kh) // stride[0] + 1
    ow = (w + 2 * padding[1] - kw) // stride[1] + 1
    if cols is None:
        cols = _im2col(_padded_channels_last(x, padding), (kh, kw), stride, (oh, ow))
    matrix = _weight_matrix(weight) if matrix is None else matrix
    out = cols @ matrix.T  # (N*oh*ow, O): channels-last
    if bias is not None:
        out += bias
    return out.reshape(n, oh, ow, o).transpose(0, 3, 1, 2), cols


def _conv_transpose_forward(y, weight, bias, stride, padding, out_hw, matrix=None):
    """Adjoint of `_conv_forward` in its input: y (N, O, h, w) -> (N, C, *out_hw)."""
    n, o, h, w = y.shape
    _, c, kh, kw = weight.shape
    matrix = _weight_matrix(weight) if matrix is None else matrix
    if c < _FEW_CHANNELS:  # e.g. the RGB output of a generator
        out = _transpose_channels_first(y, matrix, c, (kh, kw), stride, padding, out_hw)
        if bias is not None:
            out += bias.reshape(-1, 1, 1, 1)
        return out.transpose(1, 0, 2, 3)
    rows = _channels_last(y).reshape(-1, o)
    if o <= _TAP_INPUTS and len(rows) > _TAP_MIN_PIXELS:  # and c >= _FEW_CHANNELS
        out = _transpose_by_taps(rows, weight, stride, padding, (h, w), out_hw)
    else:
        cols = rows @ matrix  # (N*h*w, kh*kw*C)
        out = _col2im(cols, (n, out_hw[0], out_hw[1], c), (kh, kw), stride, padding, (h, w))
    if bias is not None:
        out += bias
    return out.transpose(0, 3, 1, 2)


def _weight_gradient(x, g, kernel, stride, padding, cols=None):
    """d<g, conv(x, W)>/dW for x (N, C, H, W) and g (N, O, oh, ow); returns (O, C, kh, kw)."""
    o, oh, ow = g.shape[1], g.shape[2], g.shape[3]
    if cols is None:
        cols = _im2col(_padded_channels_last(x, padding), kernel, stride, (oh, ow))
    g_rows = _channels_last(g).reshape(-1, o)
    if len(cols) >= cols.shape[1]:
        # many pixels, shorter patches: OpenBLAS is ~10% faster at this product the other way
        # round, (kh*kw*C, O) = cols^T g; the copy into the weight's layout is needed either way
        gw = (cols.T @ g_rows).reshape(kernel[0], kernel[1], -1, o).transpose(3, 2, 0, 1)
    else:
        gw = (g_rows.T @ cols).reshape(o, kernel[0], kernel[1], -1).transpose(0, 3, 1, 2)
    return np.ascontiguousarray(gw)


# ===== differentiable primitives ============================================================
# Each is bilinear, and the three are each other's derivatives, so every order of derivative
# is built from the same three fast kernels.

def _conv(x: Tensor, weight: Tensor, bias: Tensor | None, stride, padding,
          cols: np.ndarray | None = None, matrix: np.ndarray | None = None) -> Tensor:
    """cols, if given, is the im2col matrix of x (see `_conv_t`'s backward); matrix is
    `_weight_matrix(weight.data)`: a forward pass makes it once, its backward reuses it."""
    keep_cols = weight.requires_grad and is_grad_enabled()
    matrix = _weight_matrix(weight.data) if matrix is None else matrix
    out, cols = _conv_forward(x.data, weight.data, None if bias is None else bias.data,
                              stride, padding, cols, matrix)
    cols = cols if keep_cols else None  # reused by the weight gradient; freed with the graph
    parents = (x, weight) if bias is None else (x, weight, bias)
    in_hw = x.shape[2:]

    def backward(g):
        gx = _conv_t(g, weight, None, stride, padding, in_hw, matrix) if x.requires_grad \
            else None
        gw = (_weight_grad(x, g, weight.shape, stride, padding, cols)
              if weight.requires_grad else None)
        if bias is None:
            return gx, gw
        return gx, gw, _bias_gradient(g) if bias.requires_grad else None

    return node(out, parents, backward, "conv2d")


def _conv_t(y: Tensor, weight: Tensor, bias: Tensor | None, stride, padding, out_hw,
            matrix: np.ndarray | None = None) -> Tensor:
    matrix = _weight_matrix(weight.data) if matrix is None else matrix
    out = _conv_transpose_forward(y.data, weight.data, None if bias is None else bias.data,
                                  stride, padding, tuple(out_hw), matrix)
    parents = (y, weight) if bias is None else (y, weight, bias)

    def backward(g):
        # both gradients are products with the im2col matrix of g, the biggest copy of this
        # backward pass: build it once, not once in each
        cols = None
        if y.requires_grad and weight.requires_grad:
            cols = _im2col(_padded_channels_last(g.data, padding), weight.shape[2:], stride,
                           y.shape[2:])
        gy = _conv(g, weight, None, stride, padding, cols, matrix) if y.requires_grad else None
        gw = (_weight_grad(g, y, weight.shape, stride, padding, cols) if weight.requires_grad
              else None)
        if bias is None:
            return gy, gw
        return gy, gw, _bias_gradient(g) if bias.requires_grad else None

    return node(out, parents, backward, "conv_transpose2d")


def _bias_gradient(g: Tensor) -> Tensor:
    """The gradient of a convolution's bias: g (N, C, H, W) summed over all but the channels.

    g is normally channels-last in memory, i.e. a (N*H*W, C) matrix, and one BLAS product
    with a vector of ones sums its rows ~4x faster than NumPy's sum over three axes. Under
    create_graph (or another layout) it is the Tensor sum, differentiable as usual.
    """
    rows = g.data.transpose(0, 2, 3, 1)
    if is_grad_enabled() or not rows.flags.c_contiguous:
        return g.sum(axis=(0, 2, 3))
    rows = rows.reshape(-1, rows.shape[-1])
    return Tensor(np.ones(len(rows), rows.dtype) @ rows)


def _weight_grad(x: Tensor, g: Tensor, weight_shape, stride, padding, cols=None) -> Tensor:
    kernel = tuple(weight_shape[2:])
    out = _weight_gradient(x.data, g.data, kernel, stride, padding, cols)
    in_hw = x.shape[2:]

    def backward(v):  # <out, v> = <g, conv(x, v)> = <x, conv_t(g, v)>
        gx = _conv_t(g, v, None, stride, padding, in_hw) if x.requires_grad else None
        gg = _conv(x, v, None, stride, padding) if g.requires_grad else None
        return gx, gg

    return node(out, (x, g), backward, "conv2d_weight_grad")


# ===== public convolution functions =========================================================

def _check_bias(op: str, bias: Tensor | None, channels: int) -> None:
    if bias is not None and bias.shape != (channels,):
        raise ValueError(f"{op}: bias shape {bias.shape} does not match {channels} output "
                         "channels")


def conv2d(x: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1,
           padding=0) -> Tensor:
    """2-D cross-correlation like torch.nn.functional.conv2d: x (N, C, H, W), weight
    (O, C, kh, kw), bias (O,) -> (N, O, (H + 2p - kh) // s + 1, (W + 2p - kw) // s + 1)."""
    x, weight = as_tensor(x), as_tensor(weight)
    bias = None if bias is None else as_tensor(bias)
    stride, padding = int_pair(stride, "stride", "conv2d"), int_pair(padding, "padding", "conv2d")
    _check_image("conv2d", x)
    _check_image("conv2d", weight, "weight")
    if min(stride) < 1 or min(padding) < 0:
        raise ValueError(f"conv2d: need stride >= 1 and padding >= 0, got {stride}, {padding}")
    if x.shape[1] != weight.shape[1]:
        raise ValueError(f"conv2d: input shape {x.shape} has {x.shape[1]} channels but weight "
                         f"shape {weight.shape} expects {weight.shape[1]}")
    padded = (x.shape[2] + 2 * padding[0], x.shape[3] + 2 * padding[1])
    if padded[0] < weight.shape[2] or padded[1] < weight.shape[3]:
        raise ValueError(f"conv2d: kernel {weight.shape[2:]} (weight shape {weight.shape}) is "
                         f"larger than the padded input {padded} (input shape {x.shape}, "
                         f"padding {padding})")
    _check_bias("conv2d", bias, weight.shape[0])
    return _conv(x, weight, bias, stride, padding)


def conv_transpose2d(x: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1,
                     padding=0, output_padding=0) -> Tensor:
    """Transposed convolution like torch.nn.functional.conv_transpose2d: x (N, C_in, H, W),
    weight (C_in, C_out, kh, kw) -> (N, C_out, (H - 1) s - 2p + kh + output_padding, ...).

    It is the gradient of conv2d with respect to its input: each input pixel adds a copy of
    the kernel, scaled by the pixel, onto the output, s pixels apart.
    """
    x, weight = as_tensor(x), as_tensor(weight)
    bias = None if bias is None else as_tensor(bias)
    op = "conv_transpose2d"
    stride, padding = int_pair(stride, "stride", op), int_pair(padding, "padding", op)
    output_padding = int_pair(output_padding, "output_padding", op)
    _check_image(op, x)
    _check_image(op, weight, "weight")
    if min(stride) < 1 or min(padding) < 0 or min(output_padding) < 0:
        raise ValueError(f"{op}: need stride >= 1, padding >= 0, output_padding >= 0, got "
                         f"{stride}, {padding}, {output_padding}")
    if output_padding[0] >= stride[0] or output_padding[1] >= stride[1]:
        raise ValueError(f"{op}: output_padding {output_padding} must be smaller than the "
                         f"stride {stride}")
    if x.shape[1] != weight.shape[0]:
        raise ValueError(f"{op}: input shape {x.shape} has {x.shape[1]} channels but weight "
                         f"shape {weight.shape} expects {weight.shape[0]}")
    out_hw = tuple((n - 1) * s - 2 * p + k + q for n, s, p, k, q in zip(
        x.shape[2:], stride, padding, weight.shape[2:], output_padding))
    if min(out_hw) < 1:
        raise ValueError(f"{op}: output size {out_hw} would be empty (input shape {x.shape}, "
                         f"weight shape {weight.shape}, padding {padding})")
    _check_bias(op, bias, weight.shape[1])
    return _conv_t(x, weight, bias, stride, padding, out_hw)


# ===== max pooling with switches, unpooling, upsampling =====================================

def _gather_planes(x: Tensor, indices: np.ndarray, values: np.ndarray | None = None,
                   taps: tuple | None = None) -> Tensor:
    """out[n, c, i, j] = x[n, c].flat[indices[n, c, i, j]] (`values`, when the caller already
    has them; `taps`, see `_scatter_planes`)."""
    n, c, h, w = x.shape
    out = values
    if out is None:
        flat = x.data.reshape(n, c, h * w)
        out = np.take_along_axis(flat, indices.reshape(n, c, -1), axis=2).reshape(indices.shape)
    return node(out, (x,), lambda g: (_scatter_planes(g, indices, (h, w), taps),),
                "gather_planes")


def _scatter_planes(g: Tensor, indices: np.ndarray, out_hw, taps: tuple | None = None
                    ) -> Tensor:
    """The adjoint of `_gather_planes`: zeros (N, C, H, W) with g added at the indices.

    taps = (tap, kh, kw) when the indices are the maxima of non-overlapping kh x kw windows
    (`_max_of_blocks`) and tap[n, c, i, j] = which of a window's kh*kw entries each is: then
    every window gets its g by kh*kw strided multiplies, ~3x faster than the general path (and
    a zero where g < 0 may come out as -0.0, which equals 0.0 in every later operation).
    """
    n, c = g.shape[:2]
    if taps is not None:
        tap, kh, kw = taps
        oh, ow = tap.shape[2:]
        out = np.zeros((n,) + tuple(out_hw) + (c,), g.dtype).transpose(0, 3, 1, 2)

        def place(lo, hi):  # images lo..hi-1: each thread its own (see parallel.py)
            for k in range(kh * kw):
                i, j = divmod(k, kw)
                np.multiply(g.data[lo:hi], tap[lo:hi] == k,
                            out=out[lo:hi, :, i:i + oh * kh:kh, j:j + ow * kw:kw])

        for_blocks(place, n, out.size)
    else:
        size = out_hw[0] * out_hw[1]
        offsets = (np.arange(n * c) * size).reshape(n, c, 1, 1)
        # bincount adds repeated indices (overlapping pooling windows) and is fast
        out = np.bincount((indices + offsets).ravel(), weights=g.data.ravel(),
                          minlength=n * c * size)
        out = out.astype(g.dtype, copy=False).reshape(n, c, *out_hw)
    return node(out, (g,), lambda h: (_gather_planes(h, indices),), "scatter_planes")


def max_pool2d(x: Tensor, kernel_size, stride=None, return_indices: bool = False):
    """Max over each kh x kw window, s apart (s defaults to the kernel size).

    With return_indices=True also returns the switches of the deconvnet paper: for every output
    the position of its maximum, as a flat index into its own H x W plane (PyTorch's format).
    """
    x = as_tensor(x)
    _check_image("max_pool2d", x)
    kh, kw = int_pair(kernel_size, "kernel_size", "max_pool2d")
    sh, sw = int_pair(kernel_size if stride is None else stride, "stride", "max_pool2d")
    n, c, h, w = x.shape
    if kh > h or kw > w:
        raise ValueError(f"max_pool2d: kernel {(kh, kw)} is larger than the input shape "
                         f"{x.shape}")
    oh, ow = (h - kh) // sh + 1, (w - kw) // sw + 1
    blocks = _max_of_blocks(x.data, kh, kw, oh, ow) if (kh, kw) == (sh, sw) else None
    if blocks is not None:
        maxima, indices, tap = blocks
        out = _gather_planes(x, indices, values=maxima, taps=(tap, kh, kw))
        return (out, indices) if return_indices else out
    windows = sliding_window_view(x.data, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw][:, :, :oh, :ow]
    local = windows.reshape(n, c, oh, ow, kh * kw).argmax(axis=-1)  # first max, as PyTorch
    rows = np.arange(oh).reshape(oh, 1) * sh + local // kw
    cols = np.arange(ow) * sw + local % kw
    indices = rows * w + cols
    out = _gather_planes(x, indices)
    return (out, indices) if return_indices else out


def _max_of_blocks(data: np.ndarray, kh: int, kw: int, oh: int, ow: int):
    """Non-overlapping windows (stride = kernel): (maxima, flat indices of the first maxima,
    taps), taps (int8) the number of each window's maximum among its kh*kw entries in row
    order. From kh*kw strided slices -- no window copy, no argmax -- with every array laid out
    as the input (a conv's channels-last), so each pass runs along memory (an np.copyto with
    `where` on these strided views was ~6x slower). None when a window holds a NaN (the
    general path's argmax then points at the NaN, as PyTorch does)."""
    if np.isnan(data.max()):  # a NaN never compares greater: let the general path find it
        return None
    w = data.shape[3]
    maxima = np.empty_like(data[:, :, 0:oh * kh:kh, 0:ow * kw:kw])  # keeps the memory order
    taps, jumps = np.zeros_like(maxima, dtype=np.int8), np.empty_like(maxima, dtype=np.int8)
    indices = np.empty_like(maxima, dtype=np.int64)
    corner = np.arange(oh).reshape(oh, 1) * (kh * w) + np.arange(ow) * kw  # each window's tap 0
    tap_offset = np.array([i * w + j for i in range(kh) for j in range(kw)])

    def pool(lo, hi):  # images lo..hi-1: each thread its own (see parallel.py)
        best, tap, jump = maxima[lo:hi], taps[lo:hi], jumps[lo:hi]
        best[...] = data[lo:hi, :, 0:oh * kh:kh, 0:ow * kw:kw]
        for k in range(1, kh * kw):
            i, j = divmod(k, kw)
            values = data[lo:hi, :, i:i + oh * kh:kh, j:j + ow * kw:kw]
            np.subtract(np.int8(k), tap, out=jump)
            jump *= values > best  # strictly: ties keep the first, as argmax
            tap += jump  # k where this tap is greater, unchanged elsewhere
            # np.maximum returns its second argument on ties, so the kept first value's
            # sign of zero too: maxima are exactly the values at the indices (tested)
            np.maximum(values, best, out=best)
        np.add(corner, tap_offset[tap], out=indices[lo:hi])

    for_blocks(pool, len(data), data.size)
    return maxima, indices, taps


def max_unpool2d(x: Tensor, indices, kernel_size, stride=None, output_size=None) -> Tensor:
    """Put each value back where its switch says its maximum came from; zeros elsewhere.

    output_size defaults to (H - 1) * s + k, the size before pooling when it divided evenly.
    """
    x = as_tensor(x)
    indices = np.asarray(indices.data if isinstance(indices, Tensor) else indices)
    _check_image("max_unpool2d", x)
    kh, kw = int_pair(kernel_size, "kernel_size", "max_unpool2d")
    sh, sw = int_pair(kernel_size if stride is None else stride, "stride", "max_unpool2d")
    if indices.shape != x.shape:
        raise ValueError(f"max_unpool2d: indices shape {indices.shape} differs from input "
                         f"shape {x.shape}")
    if output_size is None:
        out_hw = ((x.shape[2] - 1) * sh + kh, (x.shape[3] - 1) * sw + kw)
    else:
        out_hw = tuple(output_size)[-2:]
    if indices.size and (indices.min() < 0 or indices.max() >= out_hw[0] * out_hw[1]):
        raise ValueError(f"max_unpool2d: indices must lie in [0, {out_hw[0] * out_hw[1]}) for "
                         f"output size {out_hw}, got {indices.min()}..{indices.max()}")
    return _scatter_planes(x, indices.astype(np.int64, copy=False), out_hw)


def upsample(x: Tensor, scale_factor: int = 2) -> Tensor:
    """Nearest-neighbour upsampling: every pixel becomes a scale x scale block of itself."""
    x = as_tensor(x)
    _check_image("upsample", x)
    s = int(scale_factor)
    if s < 1:
        raise ValueError(f"upsample: scale_factor must be >= 1, got {scale_factor}")
    n, c, h, w = x.shape
    blocks = x.reshape(n, c, h, 1, w, 1).broadcast_to((n, c, h, s, w, s))
    return blocks.reshape(n, c, h * s, w * s)  # backward: the sum over each block


# ===== batch normalisation ==================================================================

def _bn_composed(x: Tensor, weight: Tensor | None, bias: Tensor | None, axes, shape,
                 eps: float) -> Tensor:
    centred = x - x.mean(axis=axes, keepdims=True)
    variance = (centred * centred).mean(axis=axes, keepdims=True)
    out = centred / (variance + eps).sqrt()
    if weight is not None:
        out = out * weight.reshape(shape)
    if bias is not None:
        out = out + bias.reshape(shape)
    return out


def _sum_of_products(a: np.ndarray, b: np.ndarray, axes) -> np.ndarray:
    """sum(a * b) over every axis but the channels (axis 1), keeping dims.

    When both lie channels-last in memory (as convolution outputs do) this is one einsum over
    their (pixels, channels) rows, ~3x faster than a product array and then its sum.
    """
    rows = [np.moveaxis(v, 1, -1) for v in (a, b)]
    if all(r.flags.c_contiguous for r in rows):
        channels = a.shape[1]
        total = np.einsum("mc,mc->c", rows[0].reshape(-1, channels), rows[1].reshape(-1, channels))
        return total.reshape((1, channels) + (1,) * (a.ndim - 2))
    return (a * b).sum(axis=axes, keepdims=True)


def batch_norm(x: Tensor, running_mean: np.ndarray | None, running_var: np.ndarray | None,
               weight: Tensor | None = None, bias: Tensor | None = None,
               training: bool = False, momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """Normalise each channel (axis 1) of x (N, C) or (N, C, ...), like PyTorch's batch_norm.

    training: use this batch's mean and (biased) variance, and move the running statistics
    towards them in place: running = (1 - momentum) running + momentum batch (the running
    variance takes the unbiased batch variance). Otherwise use the running statistics.

    Parts: `_check_batch_norm` (shapes), `_batch_norm_eval` (running statistics, plain Tensor
    ops), and for training `_batch_norm_forward` (the batch statistics and the normalised
    values) and `_batch_norm_input_gradient` (its NumPy backward).
    """
    x = as_tensor(x)
    weight = None if weight is None else as_tensor(weight)
    bias = None if bias is None else as_tensor(bias)
    _check_batch_norm(x, running_mean, running_var, weight, bias)
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    count = x.size // x.shape[1]
    if not training:
        return _batch_norm_eval(x, running_mean, running_var, weight, bias, shape, eps)
    if count < 2:
        raise ValueError(f"batch_norm: training needs more than one value per channel, got "
                         f"input shape {x.shape}")
    w = None if weight is None else weight.data.reshape(shape)
    b = None if bias is None else bias.data.reshape(shape)
    out, normalised, mean, variance, inv_std = _batch_norm_forward(x.data, w, b, axes, count,
                                                                   eps)
    if running_mean is not None:
        running_mean *= 1 - momentum
        running_mean += momentum * mean.reshape(-1)
    if running_var is not None:
        running_var *= 1 - momentum
        running_var += momentum * variance.reshape(-1) * count / (count - 1)

    parents = (x,) + tuple(p for p in (weight, bias) if p is not None)

    def fast_backward(g):
        gx, g_dot, g_sum = _batch_norm_input_gradient(g.data, normalised, inv_std, w, axes,
                                                      count)
        grads = [Tensor(gx)]
        if weight is not None:
            grads.append(Tensor(g_dot.reshape(-1)))
        if bias is not None:
            grads.append(Tensor(g_sum.reshape(-1)))
        return tuple(grads)

    def composed(x_, *affine):
        affine = list(affine)
        w_ = affine.pop(0) if weight is not None else None
        b_ = affine.pop(0) if bias is not None else None
        return _bn_composed(x_, w_, b_, axes, shape, eps)

    return fused(out, parents, fast_backward, composed, "batch_norm")


def _check_batch_norm(x: Tensor, running_mean, running_var, weight, bias) -> None:
    if x.ndim < 2:
        raise ValueError(f"batch_norm: input must be (N, C) or (N, C, ...), got shape {x.shape}")
    channels = x.shape[1]
    for name, value in (("running_mean", running_mean), ("running_var", running_var),
                        ("weight", weight), ("bias", bias)):
        if value is not None and np.shape(value.data if isinstance(value, Tensor) else value) \
                != (channels,):
            raise ValueError(f"batch_norm: input shape {x.shape} has {channels} channels but "
                             f"{name} has shape {np.shape(getattr(value, 'data', value))}")


def _batch_norm_eval(x: Tensor, running_mean, running_var, weight, bias, shape: tuple,
                     eps: float) -> Tensor:
    """(x - running mean) / sqrt(running var + eps) * weight + bias, in Tensor ops."""
    if running_mean is None or running_var is None:
        raise ValueError("batch_norm: evaluation mode needs running_mean and running_var")
    scale = 1 / np.sqrt(np.asarray(running_var, x.dtype) + eps)
    out = (x - Tensor(np.asarray(running_mean, x.dtype).reshape(shape))) * Tensor(
        scale.reshape(shape))
    if weight is not None:
        out = out * weight.reshape(shape)
    return out + bias.reshape(shape) if bias is not None else out


def _batch_norm_forward(data: np.ndarray, w, b, axes: tuple, count: int, eps: float):
    """Normalise with this batch's statistics: (out, normalised, mean, variance, inv_std).

    The elementwise passes run on batch blocks in parallel (see parallel.py: the same bits
    as one pass); the per-channel sums between them stay serial. Buffers are reused in place
    where the serial code would allocate: a fresh array costs page faults as well.
    """
    mean = data.mean(axis=axes, keepdims=True)
    normalised = np.empty_like(data)  # first the centred values
    out = np.empty_like(data)

    def centre(lo, hi):
        np.subtract(data[lo:hi], mean, out=normalised[lo:hi])

    for_blocks(centre, len(data), data.size)
    variance = (_sum_of_products(normalised, normalised, axes) / count).astype(data.dtype)
    inv_std = (1 / np.sqrt(variance + eps)).astype(data.dtype)

    def scale_and_shift(lo, hi):
        normalised[lo:hi] *= inv_std
        out[lo:hi] = normalised[lo:hi] if w is None else normalised[lo:hi] * w
        if b is not None:
            out[lo:hi] += b

    for_blocks(scale_and_shift, len(data), 2 * data.size)
    return out, normalised, mean, variance, inv_std


def _batch_norm_input_gradient(gd: np.ndarray, normalised: np.ndarray, inv_std: np.ndarray,
                               w, axes: tuple, count: int):
    """The backward of a training batch norm: (d x, sum of g x_hat, sum of g) per channel; the
    last two are the gradients of the weight and the bias."""
    g_sum = gd.sum(axis=axes, keepdims=True)
    gx = np.empty_like(gd, dtype=np.result_type(gd, normalised))
    g_dot = _sum_of_products(gd, normalised, axes)
    scale = inv_std if w is None else inv_std * w

    # d x = scale (g - mean(g) - x_hat mean(g x_hat)), the usual batch-norm backward,
    # as g scale + x_hat slope + shift with per-channel slope and shift: fewer passes
    slope, shift = -scale * (g_dot / count), -scale * (g_sum / count)

    def input_gradient(lo, hi):
        np.multiply(gd[lo:hi], scale, out=gx[lo:hi])
        gx[lo:hi] += shift
        gx[lo:hi] += normalised[lo:hi] * slope

    for_blocks(input_gradient, len(gd), 2 * gd.size)
    return gx, g_dot, g_sum
