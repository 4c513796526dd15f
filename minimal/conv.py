"""The image ops: convolution, transposed convolution, max pooling with switches, unpooling,
upsampling and batch norm (the primitive ops are in autograd.py, the losses in functional.py,
the layers that hold weights in nn.py).

Shapes and semantics are PyTorch's: images are (N, C, H, W); a convolution's weight is
(out_channels, in_channels, kh, kw); a transposed convolution's weight is (in_channels,
out_channels, kh, kw). Everything here is differentiable to any order.

How the convolution works (im2col): every kh x kw patch of the padded input is copied into one
row of a matrix `cols` (one row per output pixel), and one BLAS matrix product with the weight
gives every output pixel at once:

    out[pixel, o] = sum over (i, j, c) of cols[pixel, (i, j, c)] * W[o, c, i, j]  (+ bias[o])

The backward pass needs two more products:

    d input  = the transposed convolution of the output gradient with the same weight
    d weight = output gradient (as rows) times cols
    d bias   = the output gradient summed over images and pixels

and a transposed convolution is the same thing run backwards: one matrix product, then every
row is added back onto its patch ("col2im": one strided add per kernel tap, never `np.add.at`).
So three ops -- conv, conv-transpose and the weight gradient -- are each other's derivatives
(all three are linear in each argument), and building each backward from them gives exact
second derivatives with no extra code.

Why the arrays are channels-last in memory: the matrix product naturally produces one row per
pixel with the channels along it, i.e. (N, H, W, C). We return that array as an (N, C, H, W)
*view* (a transpose, no copy). NumPy's elementwise functions keep the memory order of their
inputs, so the next batch norm, ReLU or convolution reads it without any copy either. Only the
shape the user sees is PyTorch's.

Speed: the array steps marked `@kernels.replaceable` and the ops marked `@fast_path` have
faster twins in minimal/kernels/ (conv.py, pool.py, norm.py there): the same arithmetic with
threads, other roads to a transposed convolution, a fused batch norm.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from minimal import kernels
from minimal.autograd import Tensor, as_tensor, fast_path, node

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


# ===== the array steps: im2col, col2im and the layout (channels-last: (N, H, W, C)) ==========

@kernels.replaceable("channels_last")
def _channels_last(x: np.ndarray) -> np.ndarray:
    """(N, C, H, W) array -> contiguous (N, H, W, C); free when it already lies that way."""
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1))


@kernels.replaceable("padded_channels_last")
def _padded_channels_last(x: np.ndarray, pad: tuple[int, int]) -> np.ndarray:
    """(N, C, H, W) -> (N, H + 2ph, W + 2pw, C), zeros around each image."""
    (ph, pw) = pad
    return np.pad(_channels_last(x), ((0, 0), (ph, ph), (pw, pw), (0, 0)))


def _weight_matrix(weight: np.ndarray) -> np.ndarray:
    """(O, C, kh, kw) -> (O, kh*kw*C): the column order of `_im2col`."""
    o = weight.shape[0]
    return np.ascontiguousarray(weight.transpose(0, 2, 3, 1)).reshape(o, -1)


@kernels.replaceable("im2col")
def _im2col(padded: np.ndarray, kernel, stride, out_hw) -> np.ndarray:
    """Padded (N, Hp, Wp, C) -> (N*oh*ow, kh*kw*C): row r holds the patch of output pixel r."""
    (kh, kw), (sh, sw), (oh, ow) = kernel, stride, out_hw
    n, c = padded.shape[0], padded.shape[3]
    windows = sliding_window_view(padded, (kh, kw), axis=(1, 2))  # (N, H', W', C, kh, kw)
    windows = windows[:, :(oh - 1) * sh + 1:sh, :(ow - 1) * sw + 1:sw]
    patches = windows.transpose(0, 1, 2, 4, 5, 3)  # (N, oh, ow, kh, kw, C): channels innermost
    return np.ascontiguousarray(patches).reshape(n * oh * ow, kh * kw * c)


def _tap_range(tap: int, stride: int, count: int, pad: int, size: int) -> tuple[int, int]:
    """Which of the `count` patch positions put kernel tap `tap` inside the unpadded [0, size)."""
    first = max(0, -((tap - pad) // stride))  # smallest a with tap + a*stride - pad >= 0
    last = min(count, (size - 1 - tap + pad) // stride + 1) if size - 1 - tap + pad >= 0 else 0
    return first, max(first, last)


@kernels.replaceable("col2im")
def _col2im(cols: np.ndarray, out_shape, kernel, stride, padding, patches_hw) -> np.ndarray:
    """The adjoint of `_im2col`: add every row of cols back onto its patch.

    Returns the unpadded (N, H, W, C): taps that fall on the padding are simply skipped, so
    no padded buffer has to be cropped. One strided add per kernel tap (i, j): patch position
    (a, b) puts its tap (i, j) on image pixel (i + a*sh - ph, j + b*sw - pw).
    """
    (kh, kw), (sh, sw), (ph, pw), (oh, ow) = kernel, stride, padding, patches_hw
    n, h, w, c = out_shape
    cols = cols.reshape(n, oh, ow, kh, kw, c)
    out = np.zeros(out_shape, cols.dtype)
    for i in range(kh):
        a0, a1 = _tap_range(i, sh, oh, ph, h)
        for j in range(kw):
            b0, b1 = _tap_range(j, sw, ow, pw, w)
            if a0 < a1 and b0 < b1:
                rows = slice(i + a0 * sh - ph, i + (a1 - 1) * sh - ph + 1, sh)
                columns = slice(j + b0 * sw - pw, j + (b1 - 1) * sw - pw + 1, sw)
                out[:, rows, columns] += cols[:, a0:a1, b0:b1, i, j]
    return out


@kernels.replaceable("conv_transpose")
def _conv_transpose_arrays(y: np.ndarray, weight: np.ndarray, matrix: np.ndarray, stride,
                           padding, out_hw) -> np.ndarray:
    """The adjoint of the convolution in its input: y (N, O, h, w) -> (N, C, *out_hw), with
    weight (O, C, kh, kw) and matrix = `_weight_matrix(weight)`. Each input pixel's row of
    y times the matrix is a patch, added back where conv2d would have read it (col2im)."""
    n, o, h, w = y.shape
    c, kh, kw = weight.shape[1:]
    cols = _channels_last(y).reshape(-1, o) @ matrix  # (N*h*w, kh*kw*C)
    out = _col2im(cols, (n, out_hw[0], out_hw[1], c), (kh, kw), stride, padding, (h, w))
    return out.transpose(0, 3, 1, 2)


@kernels.replaceable("conv_weight_gradient")
def _weight_gradient(cols: np.ndarray, g_rows: np.ndarray, kernel) -> np.ndarray:
    """d<g, conv(x, W)>/dW = g_rows^T cols from x's im2col and g's (pixels, O) rows, as
    (O, C, kh, kw)."""
    o = g_rows.shape[1]
    gw = (g_rows.T @ cols).reshape(o, kernel[0], kernel[1], -1).transpose(0, 3, 1, 2)
    return np.ascontiguousarray(gw)


# ===== differentiable primitives ============================================================
# Each is bilinear, and the three are each other's derivatives, so every order of derivative
# is built from the same three ops.

def _conv(x: Tensor, weight: Tensor, bias: Tensor | None, stride, padding,
          cols: np.ndarray | None = None, matrix: np.ndarray | None = None) -> Tensor:
    """conv2d as a node. cols, if given, is the im2col matrix of x (see `_conv_t`'s backward);
    matrix is `_weight_matrix(weight.data)`: made once here, reused by the backward."""
    n, _, h, w = x.shape
    o, _, kh, kw = weight.shape
    oh = (h + 2 * padding[0] - kh) // stride[0] + 1
    ow = (w + 2 * padding[1] - kw) // stride[1] + 1
    if cols is None:
        cols = _im2col(_padded_channels_last(x.data, padding), (kh, kw), stride, (oh, ow))
    matrix = _weight_matrix(weight.data) if matrix is None else matrix
    out = cols @ matrix.T  # (N*oh*ow, O): channels-last
    if bias is not None:
        out += bias.data
    out = out.reshape(n, oh, ow, o).transpose(0, 3, 1, 2)  # an (N, O, oh, ow) view
    cols = cols if weight.requires_grad else None  # kept for the weight gradient
    parents = (x, weight) if bias is None else (x, weight, bias)

    def backward(g):
        gx = _conv_t(g, weight, None, stride, padding, (h, w), matrix) if x.requires_grad \
            else None
        gw = (_weight_grad(x, g, weight.shape, stride, padding, cols)
              if weight.requires_grad else None)
        if bias is None:
            return gx, gw
        return gx, gw, _bias_gradient(g) if bias.requires_grad else None

    return node(out, parents, backward, "conv2d")


def _conv_t(y: Tensor, weight: Tensor, bias: Tensor | None, stride, padding, out_hw,
            matrix: np.ndarray | None = None) -> Tensor:
    """conv_transpose2d as a node."""
    matrix = _weight_matrix(weight.data) if matrix is None else matrix
    out = _conv_transpose_arrays(y.data, weight.data, matrix, stride, padding, tuple(out_hw))
    if bias is not None:
        out += bias.data.reshape(1, -1, 1, 1)
    parents = (y, weight) if bias is None else (y, weight, bias)

    def backward(g):
        # both gradients are products with the im2col matrix of g: build it once
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


@fast_path("conv_bias_gradient")  # kernels/conv.py: a BLAS product with ones
def _bias_gradient(g: Tensor) -> Tensor:
    """The gradient of a convolution's bias: g (N, C, H, W) summed over all but the channels."""
    return g.sum(axis=(0, 2, 3))


def _weight_grad(x: Tensor, g: Tensor, weight_shape, stride, padding, cols=None) -> Tensor:
    """d<g, conv(x, W)>/dW as a node (bilinear in x and g); cols, if given, is x's im2col."""
    kernel = tuple(weight_shape[2:])
    o, oh, ow = g.shape[1], g.shape[2], g.shape[3]
    if cols is None:
        cols = _im2col(_padded_channels_last(x.data, padding), kernel, stride, (oh, ow))
    out = _weight_gradient(cols, _channels_last(g.data).reshape(-1, o), kernel)
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

def max_pool2d(x: Tensor, kernel_size, stride=None, return_indices: bool = False):
    """Max over each kh x kw window, s apart (s defaults to the kernel size).

    With return_indices=True also returns the switches of the deconvnet paper: for every output
    the position of its maximum, as a flat index into its own H x W plane (PyTorch's format).
    The gradient goes to each window's maximum (the first one, at ties).
    """
    x = as_tensor(x)
    _check_image("max_pool2d", x)
    kh, kw = int_pair(kernel_size, "kernel_size", "max_pool2d")
    sh, sw = int_pair(kernel_size if stride is None else stride, "stride", "max_pool2d")
    if kh > x.shape[2] or kw > x.shape[3]:
        raise ValueError(f"max_pool2d: kernel {(kh, kw)} is larger than the input shape "
                         f"{x.shape}")
    out, indices = _max_pool(x, (kh, kw), (sh, sw))
    return (out, indices) if return_indices else out


@fast_path("max_pool2d")  # kernels/pool.py: a running max when windows do not overlap
def _max_pool(x: Tensor, kernel, stride) -> tuple[Tensor, np.ndarray]:
    """(pooled values, switches): each window's first maximum, found by argmax over a view of
    the windows, then gathered from x (so its gradient is scattered back to that position)."""
    (kh, kw), (sh, sw) = kernel, stride
    n, c, h, w = x.shape
    oh, ow = (h - kh) // sh + 1, (w - kw) // sw + 1
    windows = sliding_window_view(x.data, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw][:, :, :oh, :ow]
    local = windows.reshape(n, c, oh, ow, kh * kw).argmax(axis=-1)  # first max, as PyTorch
    rows = np.arange(oh).reshape(oh, 1) * sh + local // kw
    cols = np.arange(ow) * sw + local % kw
    indices = rows * w + cols
    return _gather_planes(x, indices), indices


def _gather_planes(x: Tensor, indices: np.ndarray) -> Tensor:
    """out[n, c, i, j] = x[n, c].flat[indices[n, c, i, j]]."""
    n, c, h, w = x.shape
    flat = x.data.reshape(n, c, h * w)
    out = np.take_along_axis(flat, indices.reshape(n, c, -1), axis=2).reshape(indices.shape)
    return node(out, (x,), lambda g: (_scatter_planes(g, indices, (h, w)),), "gather_planes")


def _scatter_planes(g: Tensor, indices: np.ndarray, out_hw) -> Tensor:
    """The adjoint of `_gather_planes`: zeros (N, C, H, W) with g added at the indices
    (overlapping windows can pick one position twice: np.bincount adds them up)."""
    n, c = g.shape[:2]
    size = out_hw[0] * out_hw[1]
    offsets = (np.arange(n * c) * size).reshape(n, c, 1, 1)
    out = np.bincount((indices + offsets).ravel(), weights=g.data.ravel(),
                      minlength=n * c * size)
    out = out.astype(g.dtype, copy=False).reshape(n, c, *out_hw)
    return node(out, (g,), lambda h: (_gather_planes(h, indices),), "scatter_planes")


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

def batch_norm(x: Tensor, running_mean: np.ndarray | None, running_var: np.ndarray | None,
               weight: Tensor | None = None, bias: Tensor | None = None,
               training: bool = False, momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """Normalise each channel (axis 1) of x (N, C) or (N, C, ...), like PyTorch's batch_norm:

        out = (x - mean) / sqrt(variance + eps) * weight + bias      (per channel)

    training: mean and (biased) variance of this batch, over every axis but the channels
    (`_batch_norm_training`), and the running statistics move towards them in place:
    running = (1 - momentum) running + momentum batch (the running variance takes the unbiased
    batch variance). Otherwise the running statistics are used.
    """
    x = as_tensor(x)
    weight = None if weight is None else as_tensor(weight)
    bias = None if bias is None else as_tensor(bias)
    _check_batch_norm(x, running_mean, running_var, weight, bias)
    shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    count = x.size // x.shape[1]
    if not training:
        return _batch_norm_eval(x, running_mean, running_var, weight, bias, shape, eps)
    if count < 2:
        raise ValueError(f"batch_norm: training needs more than one value per channel, got "
                         f"input shape {x.shape}")
    out, mean, variance = _batch_norm_training(x, weight, bias, eps)
    if running_mean is not None:
        running_mean *= 1 - momentum
        running_mean += momentum * mean.reshape(-1)
    if running_var is not None:
        running_var *= 1 - momentum
        running_var += momentum * variance.reshape(-1) * count / (count - 1)
    return out


@fast_path("batch_norm")  # kernels/norm.py: one node with a NumPy backward
def _batch_norm_training(x: Tensor, weight: Tensor | None, bias: Tensor | None,
                         eps: float) -> tuple[Tensor, np.ndarray, np.ndarray]:
    """Normalise with this batch's statistics, in Tensor ops (so the gradient flows through the
    mean and the variance too). Returns (out, batch mean, batch variance), the last two as
    (1, C, 1, ...) arrays for the running statistics."""
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    mean = x.mean(axis=axes, keepdims=True)
    centred = x - mean
    variance = (centred * centred).mean(axis=axes, keepdims=True)
    out = centred / (variance + eps).sqrt()
    if weight is not None:
        out = out * weight.reshape(shape)
    if bias is not None:
        out = out + bias.reshape(shape)
    return out, mean.data, variance.data


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
