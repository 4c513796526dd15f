"""Speed paths: faster twins of some of the engine's definitions, kept apart from them.

The engine (autograd.py, conv.py, functional.py, nn.py, optim.py) defines every op by its
reference implementation: a NumPy forward and a backward written as the textbook writes it.
This package holds faster versions of some of those definitions: NumPy backwards that skip
recording a graph, fused backwards of whole compositions (batch norm, the LSTM layer, the
losses, DRAW's attention), other roads to a transposed convolution, passes split over threads,
Adam in cache-sized chunks. Each computes what its reference computes (tests/kernels/ checks
every one against its reference: values, first and second derivatives, the shapes where its
rule switches, channels-last and non-contiguous inputs).

How a kernel plugs in: by name, through `TABLE` below, looked up by `find(name)` and nowhere
else. The engine marks each definition that has a twin, in one of two ways:

- ``@fast_path("linear")`` on an op (autograd.fast_path): the kernel gets the op's arguments
  with Tensors replaced by their arrays and returns ``(value, backward)``; ``backward(g,
  needs)`` returns one NumPy gradient per argument. When a graph is being recorded through the
  backward pass (create_graph=True), the reference is differentiated instead, so derivatives
  of every order are the reference's.
- ``@kernels.replaceable("im2col")`` on an array function (below): the kernel takes the same
  arguments and returns the same result.

Either kind returns NotImplemented when its rule does not cover the arguments it was given:
the reference then runs (so a bad argument meets the reference's own error message).

The switch: kernels are on by default. ``MINIMAL_KERNELS=reference`` in the environment, or
``kernels.set_enabled(False)`` (``with kernels.enabled(False):`` for a block) from Python, runs
everything on the references: slower, the same numbers up to float rounding.

Process settings (BLAS threads, malloc) are not kernels but belong with them: see process.py,
whose `tune_process()` the command-line entry points call; importing minimal changes nothing.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from minimal.kernels import (
    adam,
    attention,
    conv,
    dense,
    elementwise,
    graph,
    losses,
    lstm,
    norm,
    pool,
)


@dataclass(frozen=True)
class Kernel:
    run: Callable  # the faster twin
    replaces: str  # the reference it stands in for
    when: str  # its selection rule: when it is taken rather than the reference
    why: str  # what it gains


# Every speed path of the engine, by name: the one place to see what has a fast path and when.
TABLE: dict[str, Kernel] = {
    # ----- autograd.py ----------------------------------------------------------------------
    "leaf_gradients": Kernel(
        graph.leaf_gradients, "autograd._leaf_gradients",
        "always", "hands a leaf the gradient array itself where nothing else can hold it, "
        "instead of a copy per leaf per step"),
    "linear": Kernel(
        dense.linear, "autograd.linear",
        "always (outside create_graph)", "a NumPy backward: 3 products, no graph of 5-7 nodes"),
    "sigmoid": Kernel(
        elementwise.sigmoid, "autograd._sigmoid",
        "always", "in place, and no np.where branching on the signs"),
    "relu_mask": Kernel(
        elementwise.relu_mask, "autograd._relu_mask", "always", "one pass, no bool array"),
    "leaky_relu_slopes": Kernel(
        elementwise.leaky_relu_slopes, "autograd._leaky_relu_slopes",
        "always", "arithmetic on the mask instead of np.where (~5x faster on random signs)"),
    "add_at": Kernel(
        elementwise.add_rows_at, "autograd._add_at",
        "an integer array picking whole rows (an embedding's backward)",
        "np.add.at on flat entries is ~3x faster than on rows"),
    # ----- conv.py --------------------------------------------------------------------------
    "channels_last": Kernel(
        conv.channels_last, "conv._channels_last",
        "always", "the copy split over the BLAS threads"),
    "padded_channels_last": Kernel(
        conv.padded_channels_last, "conv._padded_channels_last",
        "always", "one copy (zeros only on the border), split over the threads"),
    "im2col": Kernel(
        conv.im2col, "conv._im2col", "always", "the copy split over the threads"),
    "col2im": Kernel(
        conv.col2im, "conv._col2im",
        "always", "the tap slices remembered per shape, the adds split over the threads"),
    "conv_transpose": Kernel(
        conv.conv_transpose, "conv._conv_transpose_arrays",
        f"into < {conv.FEW_CHANNELS} channels: by stride phases, channels-first; from <= "
        f"{conv.TAP_INPUTS} channels over > {conv.TAP_MIN_PIXELS} pixels: one product per tap",
        "adds of long contiguous runs instead of C numbers at a time (0.5-0.9x the time)"),
    "conv_weight_gradient": Kernel(
        conv.weight_gradient, "conv._weight_gradient",
        "always", "the product the way round OpenBLAS runs ~10% faster"),
    "conv_bias_gradient": Kernel(
        conv.bias_gradient, "conv._bias_gradient",
        "a channels-last gradient (outside create_graph)", "a BLAS product with ones, ~4x "
        "faster than NumPy's sum over three axes"),
    "max_pool2d": Kernel(
        pool.max_pool2d, "conv._max_pool",
        "stride = kernel and no NaN in the input", "a running max over the kh*kw taps (no "
        "window copy, no argmax), backward by strided multiplies"),
    "batch_norm": Kernel(
        norm.batch_norm, "conv._batch_norm_training",
        "always (outside create_graph)", "one node with a NumPy backward and fewer passes, "
        "split over the threads, instead of ~12 nodes"),
    # ----- functional.py --------------------------------------------------------------------
    "cross_entropy": Kernel(
        losses.cross_entropy, "functional.cross_entropy",
        "(N, C) logits, integer targets in range, mean or sum", "one pass forward and one "
        "backward over the biggest array a language model has"),
    "binary_cross_entropy_with_logits": Kernel(
        losses.binary_cross_entropy_with_logits, "functional.binary_cross_entropy_with_logits",
        "mean or sum of equal shapes", "one node instead of softplus, product, difference, sum"),
    # ----- nn.py ----------------------------------------------------------------------------
    "lstm_layer": Kernel(
        lstm.lstm_layer, "nn._lstm_layer",
        "always (outside create_graph)", "the backward through time in NumPy: ~15 small "
        "nodes per step cost more in bookkeeping than the arithmetic"),
    # ----- optim.py -------------------------------------------------------------------------
    "adam_update": Kernel(
        adam.adam_update, "optim._adam_update",
        "contiguous arrays", "cache-sized chunks, split over the threads"),
    # ----- minimal/demos/draw.py --------------------------------------------------------------
    "draw_window_filterbank": Kernel(
        attention.window_filterbank, "draw.window_filterbank",
        "always (outside create_graph)", "one node with a NumPy backward instead of ~40"),
    "draw_read": Kernel(
        attention.read_patches, "draw.read_patches", "always (outside create_graph)",
        "one node instead of four"),
    "draw_write": Kernel(
        attention.write_patches, "draw.write_patches", "always (outside create_graph)",
        "one node instead of four"),
}

_enabled = os.environ.get("MINIMAL_KERNELS", "").strip().lower() != "reference"


def find(name: str) -> Callable | None:
    """The kernel registered as `name` when kernels are on, else None: the engine's one lookup."""
    return TABLE[name].run if _enabled else None


def is_enabled() -> bool:
    return _enabled


def set_enabled(on: bool) -> None:
    """Kernels on (the default) or off (every op on its reference), for the whole process."""
    global _enabled
    _enabled = bool(on)


@contextlib.contextmanager
def enabled(on: bool) -> Iterator[None]:
    """``with kernels.enabled(False):`` runs a block on the references."""
    previous = _enabled
    set_enabled(on)
    try:
        yield
    finally:
        set_enabled(previous)


def replaceable(name: str) -> Callable:
    """Mark an array function as the reference of kernel `name` (see the module docstring)."""
    def mark(reference: Callable) -> Callable:
        @functools.wraps(reference)
        def call(*args, **kwargs):
            kernel = find(name)
            if kernel is not None:
                result = kernel(*args, **kwargs)
                if result is not NotImplemented:
                    return result
            return reference(*args, **kwargs)

        call.reference = reference
        return call

    return mark
