"""Reverse-mode automatic differentiation on NumPy arrays, with higher-order gradients.

A `Tensor` wraps an ndarray. Every operation on Tensors that need a gradient records, in the
result, its parents and a `backward` function that turns the gradient of the result into the
gradients of the parents. `backward()` / `grad()` walk that graph from the output back to the
inputs in reverse topological order (iteratively, so a chain of 100,000 ops is fine).

The one idea that gives higher-order gradients for free: every backward function is written with
Tensor operations, not raw NumPy. Normally it runs with recording switched off, so it costs what
NumPy costs. With `grad(..., create_graph=True)` recording stays on while it runs, so the
gradients are themselves Tensors in a graph and can be differentiated again: a Hessian-vector
product is `grad(grad(f, x, create_graph=True)[0] @ v, x)`.

Some definitions have a faster twin in minimal/kernels/ (a NumPy backward that records
nothing, a fused batch norm, ...). An op marked `@fast_path("name")` runs its twin when kernels
are on; its reference here stays the definition, and is what gets differentiated when a graph
is recorded through the backward pass, so every higher derivative is the reference's.

Broadcasting follows NumPy. An input that was broadcast receives the gradient summed back down
to its own shape (`_unbroadcast`). A node used twice receives the sum of both gradients.

Data are float32 unless given as float64 (gradient checks run in float64).

Reading order. The file is laid out to be read from the top: grad mode and `Tensor`; `node`,
the constructor every op calls to record its parents and backward (how to define an op); the
core ops `add`, `mul`, `matmul`; the backward pass (`_topological_order`, `_propagate`, `grad`,
`backward`); and only then the rest of the ops (elementwise functions and activations,
`linear`, reductions, shape ops) and, last, `fast_path`, how an op is connected to its kernel.
Every primitive op with its own backward lives here; functional.py composes them into softmax,
losses and dropout, and conv.py holds the image ops (convolution, pooling, batch norm).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import numbers
import weakref
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from minimal import kernels

_recording = True  # is the graph being recorded? (switched off by no_grad and inside backward)


@contextlib.contextmanager
def set_grad_enabled(enabled: bool):
    global _recording
    previous, _recording = _recording, enabled
    try:
        yield
    finally:
        _recording = previous


def no_grad():
    """Context manager: operations inside record no graph (evaluation, parameter updates)."""
    return set_grad_enabled(False)


def is_grad_enabled() -> bool:
    return _recording


def _as_array(data, dtype=None) -> np.ndarray:
    if isinstance(data, Tensor):
        data = data.data
    array = np.asarray(data, dtype=dtype)
    if dtype is None and array.dtype not in (np.float32, np.float64):
        array = array.astype(np.float32)  # ints, bools, float16, python floats -> float32
    return array


class Tensor:
    """An ndarray that remembers how it was computed, so gradients can flow back through it."""

    __slots__ = ("__weakref__", "_backward", "_op", "_parents", "data", "grad", "requires_grad")
    __array_priority__ = 100  # make `ndarray * Tensor` call Tensor.__rmul__

    def __init__(self, data, requires_grad: bool = False, dtype=None):
        self.data: np.ndarray = _as_array(data, dtype)
        self.grad: np.ndarray | None = None
        self.requires_grad = requires_grad
        self._parents: tuple[Tensor, ...] = ()
        self._backward: Callable | None = None
        self._op = ""

    # ----- basic properties -------------------------------------------------------------
    shape = property(lambda self: self.data.shape)
    dtype = property(lambda self: self.data.dtype)
    ndim = property(lambda self: self.data.ndim)
    size = property(lambda self: self.data.size)

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        flag = ", requires_grad=True" if self.requires_grad else ""
        op = f", op={self._op}" if self._op else ""
        return f"Tensor({self.data!r}{flag}{op})"

    def numpy(self) -> np.ndarray:
        return self.data

    def item(self) -> float:
        return self.data.item()

    def detach(self) -> Tensor:
        """The same values, cut from the graph."""
        return Tensor(self.data)

    def zero_grad(self) -> None:
        self.grad = None

    def backward(self, gradient=None) -> None:
        """Accumulate d(self)/d(leaf) into `.grad` of every leaf that requires a gradient."""
        backward(self, gradient)

    # ----- operators --------------------------------------------------------------------
    def _lift(self, other) -> Tensor:
        return other if isinstance(other, Tensor) else Tensor(np.asarray(other, self.dtype))

    def __add__(self, other):
        return add(self, self._lift(other))

    def __radd__(self, other):
        return add(self._lift(other), self)

    def __sub__(self, other):
        return sub(self, self._lift(other))

    def __rsub__(self, other):
        return sub(self._lift(other), self)

    def __mul__(self, other):
        return mul(self, self._lift(other))

    def __rmul__(self, other):
        return mul(self._lift(other), self)

    def __truediv__(self, other):
        return div(self, self._lift(other))

    def __rtruediv__(self, other):
        return div(self._lift(other), self)

    def __pow__(self, exponent):
        return power(self, exponent)

    def __rpow__(self, base):
        return power(self._lift(base), self)

    def __neg__(self):
        return neg(self)

    def __matmul__(self, other):
        return matmul(self, self._lift(other))

    def __rmatmul__(self, other):
        return matmul(self._lift(other), self)

    def __getitem__(self, index):
        return getitem(self, index)

    # comparisons give plain boolean arrays: they have no gradient
    def __lt__(self, other):
        return self.data < _as_array(other)

    def __le__(self, other):
        return self.data <= _as_array(other)

    def __gt__(self, other):
        return self.data > _as_array(other)

    def __ge__(self, other):
        return self.data >= _as_array(other)

    # ----- methods mirroring the functions below ----------------------------------------
    def exp(self):
        return exp(self)

    def log(self):
        return log(self)

    def sqrt(self):
        return sqrt(self)

    def tanh(self):
        return tanh(self)

    def sigmoid(self):
        return sigmoid(self)

    def relu(self):
        return relu(self)

    def leaky_relu(self, negative_slope=0.01):
        return leaky_relu(self, negative_slope)

    def abs(self):
        return absolute(self)

    def clip(self, low=None, high=None):
        return clip(self, low, high)

    def sum(self, axis=None, keepdims=False):
        return tensor_sum(self, axis, keepdims)

    def mean(self, axis=None, keepdims=False):
        return mean(self, axis, keepdims)

    def var(self, axis=None, keepdims=False, ddof=0):
        return var(self, axis, keepdims, ddof)

    def max(self, axis=None, keepdims=False):
        return tensor_max(self, axis, keepdims)

    def min(self, axis=None, keepdims=False):
        return tensor_min(self, axis, keepdims)

    def reshape(self, *shape):
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return reshape(self, shape)

    def transpose(self, *axes):
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        return transpose(self, axes or None)

    permute = transpose

    def swapaxes(self, axis1, axis2):
        axes = list(range(self.ndim))
        axes[axis1], axes[axis2] = axes[axis2], axes[axis1]
        return transpose(self, tuple(axes))

    @property
    def T(self):
        return transpose(self, None)

    def flatten(self, start_axis=0):
        return reshape(self, self.shape[:start_axis] + (-1,))

    def broadcast_to(self, shape):
        return broadcast_to(self, shape)

    def astype(self, dtype):
        return astype(self, dtype)


class Parameter(Tensor):
    """A Tensor that a model learns: requires_grad is on from the start."""

    __slots__ = ()

    def __init__(self, data, dtype=None):
        super().__init__(data, requires_grad=True, dtype=dtype)

    def __repr__(self) -> str:
        return f"Parameter(shape={self.shape}, dtype={self.dtype})"


def tensor(data, requires_grad: bool = False, dtype=None) -> Tensor:
    return Tensor(data, requires_grad=requires_grad, dtype=dtype)


def as_tensor(value, dtype=None) -> Tensor:
    return value if isinstance(value, Tensor) else Tensor(value, dtype=dtype)


# ===== how an op is defined: a node records its parents and its backward ===================

def node(data: np.ndarray, parents: Sequence[Tensor], backward_fn: Callable, op: str) -> Tensor:
    """The result of an op, as a Tensor that remembers how it was made: every op ends here.

    `data` is the op's value, computed with NumPy. `parents` are the Tensors it was computed
    from. `backward_fn(g)` takes the gradient of the result (a Tensor shaped like `data`) and
    returns one gradient Tensor per parent (None for "no gradient"), written with Tensor ops so
    that under `grad(..., create_graph=True)` it is itself recorded and can be differentiated
    again. `op` names the op in error messages and reprs. Parents and backward are kept only
    when a gradient will be needed (recording on and some parent requires a gradient).

    Defining an op is one call; `mul` below is the pattern:

        def mul(a, b):
            return node(a.data * b.data, (a, b), lambda g: (g * b, g * a), "mul")

    (the real one also sums the gradient back over broadcast axes, `_unbroadcast`).
    """
    out = Tensor.__new__(Tensor)
    out.data, out.grad, out._op = data, None, op
    if _recording and any(p.requires_grad for p in parents):
        out.requires_grad, out._parents, out._backward = True, tuple(parents), backward_fn
    else:
        out.requires_grad, out._parents, out._backward = False, (), None
    return out


def _node_of_result(data: np.ndarray, parents: Sequence[Tensor], backward_fn: Callable,
                    op: str) -> Tensor:
    """`node` for ops whose derivative is written with their own result, e.g. d exp(a) =
    exp(a) da: `backward_fn(g, result)` gets the result node.

    It gets it through a weak reference. A closure holding the node itself would make a
    reference cycle (node -> backward -> node), and a cycle is freed only when Python's cyclic
    garbage collector happens to run: until then it keeps the whole graph under it alive, every
    im2col matrix included (a U-Net ending in tanh grew from 0.77 to 1.5 GB over 9 steps). The
    node is alive whenever its backward runs: the backward pass is holding it.
    """
    ref = None
    result = node(data, parents, lambda g: backward_fn(g, ref()), op)
    ref = weakref.ref(result)
    return result


def fast_path(name: str) -> Callable:
    """Mark an op as the reference of kernels.TABLE[name], its faster twin.

    Called, the op asks `kernels.find(name)` for the twin (None when kernels are off). The twin
    gets the op's arguments with every Tensor replaced by its array, and returns NotImplemented
    (its rule does not cover them: the reference runs) or (value, backward[, extra arrays]), where
    backward(g, needs) gives one NumPy gradient per argument; an op that returns extra arrays
    besides its Tensor (batch norm's statistics, max pooling's switches) returns them after it,
    from the reference and the twin alike. The node records the reference as its definition:
    when a graph is being recorded through the backward pass (create_graph=True), the
    reference is differentiated instead of the twin's NumPy backward, so every higher
    derivative is the reference's.
    """
    def mark(reference: Callable) -> Callable:
        @functools.wraps(reference)
        def op(*args, **settings):
            kernel = kernels.find(name)
            if kernel is not None:
                result = kernel(*(a.data if isinstance(a, Tensor) else a for a in args),
                                **settings)
                if result is not NotImplemented:
                    value, fast_backward, *extra = result
                    out = _kernel_node(value, fast_backward, reference, args, settings, name)
                    return (out, *extra) if extra else out
            return reference(*args, **settings)

        op.reference = reference
        return op

    return mark


def _constant(array: np.ndarray) -> Tensor:
    out = Tensor.__new__(Tensor)
    out.data, out.grad, out.requires_grad, out._parents, out._backward, out._op = (
        array, None, False, (), None, "")
    return out


def _shape_error(op: str, *shapes) -> ValueError:
    return ValueError(f"{op}: incompatible shapes " + " and ".join(str(s) for s in shapes))


def _broadcast_shape(op: str, a: Tensor, b: Tensor) -> None:
    if a.data.shape == b.data.shape:
        return
    try:
        np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise _shape_error(op, a.shape, b.shape) from None


def _unbroadcast(g: Tensor, shape: tuple) -> Tensor:
    """Sum a gradient of a broadcast result back down to the operand's `shape`."""
    if g.shape == shape:
        return g
    extra = g.ndim - len(shape)
    axes = tuple(range(extra)) + tuple(
        i + extra for i, n in enumerate(shape) if n == 1 and g.shape[i + extra] != 1)
    g = tensor_sum(g, axes, keepdims=True) if axes else g
    return reshape(g, shape)


# ===== the core ops: add, mul, matmul (and their siblings sub, div, neg) ===================

def add(a: Tensor, b: Tensor) -> Tensor:
    _broadcast_shape("add", a, b)
    return node(a.data + b.data, (a, b),
                lambda g: (_unbroadcast(g, a.shape), _unbroadcast(g, b.shape)), "add")


def sub(a: Tensor, b: Tensor) -> Tensor:
    _broadcast_shape("sub", a, b)
    return node(a.data - b.data, (a, b),
                lambda g: (_unbroadcast(g, a.shape), _unbroadcast(-g, b.shape)), "sub")


def mul(a: Tensor, b: Tensor) -> Tensor:
    _broadcast_shape("mul", a, b)
    return node(a.data * b.data, (a, b),
                lambda g: (_unbroadcast(g * b, a.shape) if a.requires_grad else None,
                           _unbroadcast(g * a, b.shape) if b.requires_grad else None), "mul")


def div(a: Tensor, b: Tensor) -> Tensor:
    _broadcast_shape("div", a, b)
    return node(a.data / b.data, (a, b),
                lambda g: (_unbroadcast(g / b, a.shape) if a.requires_grad else None,
                           _unbroadcast(-g * a / (b * b), b.shape) if b.requires_grad else None),
                "div")


def neg(a: Tensor) -> Tensor:
    return node(-a.data, (a,), lambda g: (-g,), "neg")


def matmul(a: Tensor, b: Tensor) -> Tensor:
    """NumPy's matmul: 2-D, batched (broadcast leading axes), and 1-D operands."""
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"matmul: scalars are not allowed, got shapes {a.shape} and {b.shape}")
    if a.ndim == 1:
        return reshape(matmul(reshape(a, (1, -1)), b), b.shape[:-2] + b.shape[-1:])
    if b.ndim == 1:
        return reshape(matmul(a, reshape(b, (-1, 1))), a.shape[:-1])
    if a.shape[-1] != b.shape[-2]:
        raise _shape_error("matmul", a.shape, b.shape)
    try:
        out = np.matmul(a.data, b.data)
    except ValueError:
        raise _shape_error("matmul", a.shape, b.shape) from None

    def backward(g):
        ga = _unbroadcast(matmul(g, b.swapaxes(-1, -2)), a.shape) if a.requires_grad else None
        gb = _unbroadcast(matmul(a.swapaxes(-1, -2), g), b.shape) if b.requires_grad else None
        return ga, gb

    return node(out, (a, b), backward, "matmul")


# ===== the backward pass: walk the graph from the output back to the inputs ================

def _topological_order(roots: Iterable[Tensor]) -> list[Tensor]:
    """Nodes reachable from roots, each after all of its parents (iterative depth-first)."""
    order, visited = [], set()
    pending = [(root, False) for root in roots if root.requires_grad]
    while pending:
        current, parents_done = pending.pop()
        if parents_done:
            order.append(current)
            continue
        if id(current) in visited:
            continue
        visited.add(id(current))
        pending.append((current, True))
        for parent in current._parents:
            if parent.requires_grad and id(parent) not in visited:
                pending.append((parent, False))
    return order


def _propagate(outputs: Sequence[Tensor], grad_outputs: Sequence[Tensor], keep: set[int],
               create_graph: bool, order: list[Tensor] | None = None) -> dict[int, Tensor]:
    """Run every backward function once; return the gradients reaching the leaves and `keep`.

    Gradients of other intermediate nodes are dropped as soon as they have been passed on.
    """
    grads: dict[int, Tensor] = {}
    for out, g in zip(outputs, grad_outputs):
        grads[id(out)] = grads[id(out)] + g if id(out) in grads else g
    if order is None:
        order = _topological_order(outputs)
    with set_grad_enabled(create_graph):
        for current in reversed(order):
            g = grads.get(id(current))
            if g is None or current._backward is None:
                continue
            for parent, pg in zip(current._parents, current._backward(g)):
                if pg is None or not parent.requires_grad:
                    continue
                if pg.shape != parent.shape:  # a bug in an op's backward, never the user's
                    raise RuntimeError(f"{current._op} backward gave a gradient of shape "
                                       f"{pg.shape} for an input of shape {parent.shape}")
                key = id(parent)
                grads[key] = grads[key] + pg if key in grads else pg  # a node used twice
            if id(current) not in keep:
                del grads[id(current)]  # free intermediate gradients early
    return grads


def _seed_gradients(outputs: Sequence[Tensor], grad_outputs,
                    keep_graph: bool = False) -> list[Tensor]:
    if grad_outputs is None:
        grad_outputs = [None] * len(outputs)
    seeds = []
    for out, g in zip(outputs, grad_outputs):
        if g is None:
            if out.size != 1:
                raise ValueError(f"grad: output of shape {out.shape} is not a scalar; "
                                 "pass grad_outputs")
            g = Tensor(np.ones(out.shape, out.dtype))
        if keep_graph and isinstance(g, Tensor) and g.requires_grad:
            # under create_graph a grad_outputs that depends on the inputs stays in the graph,
            # so the result can be differentiated through it too (as in PyTorch)
            g = g if g.dtype == out.dtype else astype(g, out.dtype)
        else:
            g = Tensor(np.array(g.data if isinstance(g, Tensor) else g, dtype=out.dtype))
        if g.shape != out.shape:
            raise _shape_error("grad (grad_outputs vs outputs)", g.shape, out.shape)
        seeds.append(g)
    return seeds


def grad(outputs, inputs, grad_outputs=None, create_graph: bool = False,
         allow_unused: bool = False) -> list[Tensor | None]:
    """Gradients of `outputs` (weighted by grad_outputs) with respect to each of `inputs`.

    With create_graph=True the returned Tensors carry a graph and can be differentiated again.
    An input that the outputs do not depend on gets zeros (or None with allow_unused=True).
    """
    single_output = isinstance(outputs, Tensor)
    outputs = [outputs] if single_output else list(outputs)
    if isinstance(grad_outputs, (Tensor, np.ndarray)):
        grad_outputs = [grad_outputs]
    inputs = [inputs] if isinstance(inputs, Tensor) else list(inputs)
    for out in outputs:
        if not out.requires_grad:
            raise ValueError("grad: an output does not depend on any tensor that requires grad")
    seeds = _seed_gradients(outputs, grad_outputs, keep_graph=create_graph)
    grads = _propagate(outputs, seeds, keep={id(x) for x in inputs}, create_graph=create_graph)
    result = []
    for x in inputs:
        g = grads.get(id(x))
        if g is None and not allow_unused:
            g = Tensor(np.zeros(x.shape, x.dtype))
        if g is not None and not create_graph:
            g = g.detach()
        result.append(g)
    return result


def backward(output: Tensor, gradient=None) -> None:
    """Add d(output)/d(leaf) to the .grad array of every leaf that requires a gradient."""
    if not output.requires_grad:
        raise ValueError("backward: the output does not depend on any tensor that requires grad")
    seeds = _seed_gradients([output], [gradient])
    order = _topological_order([output])
    leaves = [t for t in order if t._backward is None]
    grads = _propagate([output], seeds, keep=set(), create_graph=False, order=order)
    fresh = []  # leaves without a .grad yet, and their gradients
    for leaf in leaves:
        g = grads.get(id(leaf))
        if g is None:
            continue
        if leaf.grad is not None:
            leaf.grad = leaf.grad + g.data
        else:
            fresh.append((leaf, g.data))
    for (leaf, _), array in zip(fresh, _leaf_gradients([array for _, array in fresh])):
        leaf.grad = array


@kernels.replaceable("leaf_gradients")
def _leaf_gradients(arrays: list[np.ndarray]) -> list[np.ndarray]:
    """A copy of each gradient, so every leaf's .grad is an array of its own: it may be changed
    in place later (clip_grad_norm scales it), and an op's backward may hand the same array to
    two parents (add does)."""
    return [array.copy() for array in arrays]


# ===== the rest of the ops: powers and elementwise functions ===============================

def power(a: Tensor, exponent) -> Tensor:
    """a ** exponent, for a number or a Tensor exponent."""
    if isinstance(exponent, numbers.Number):
        p = exponent
        out = a.data ** np.asarray(p, a.dtype)
        return node(out, (a,), lambda g: (g * p * a ** (p - 1),), "pow")
    exponent = as_tensor(exponent)
    _broadcast_shape("pow", a, exponent)
    return _node_of_result(a.data ** exponent.data, (a, exponent), lambda g, result: (
        _unbroadcast(g * exponent * a ** (exponent - 1), a.shape) if a.requires_grad else None,
        # log(a) only when the exponent needs it: a constant negative base is fine otherwise
        _unbroadcast(g * result * log(a), exponent.shape) if exponent.requires_grad else None),
        "pow")


def exp(a: Tensor) -> Tensor:
    return _node_of_result(np.exp(a.data), (a,), lambda g, result: (g * result,), "exp")


def log(a: Tensor) -> Tensor:
    return node(np.log(a.data), (a,), lambda g: (g / a,), "log")


def sqrt(a: Tensor) -> Tensor:
    return _node_of_result(np.sqrt(a.data), (a,), lambda g, result: (g / (2 * result),),
                           "sqrt")


def tanh(a: Tensor) -> Tensor:
    return _node_of_result(np.tanh(a.data), (a,),
                           lambda g, result: (g * (1 - result * result),), "tanh")


@kernels.replaceable("sigmoid")
def _sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)), computed as 1 / (1 + e) for x >= 0 and e / (1 + e) below, with
    e = exp(-|x|): exp of a non-positive number only, so no overflow for large |x|."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


def sigmoid(a: Tensor) -> Tensor:
    """sigma(a) = 1 / (1 + exp(-a)); d sigma = sigma (1 - sigma) da."""
    return _node_of_result(_sigmoid(a.data), (a,),
                           lambda g, result: (g * result * (1 - result),), "sigmoid")


def softplus(a: Tensor) -> Tensor:
    """log(1 + exp(a)) without overflow; its derivative is sigmoid(a) (also at a = 0)."""
    x = a.data
    out = np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))
    return node(out.astype(x.dtype, copy=False), (a,), lambda g: (g * sigmoid(a),), "softplus")


def _masked(a: Tensor, mask: np.ndarray, op: str, out: np.ndarray) -> Tensor:
    """An op whose derivative is a constant (piecewise) factor `mask`: relu, abs, clip..."""
    factor = _constant(mask.astype(a.dtype, copy=False))
    return node(out, (a,), lambda g: (g * factor,), op)


@kernels.replaceable("relu_mask")
def _relu_mask(x: np.ndarray) -> np.ndarray:
    """1.0 where x > 0, else 0.0, in x's dtype."""
    return (x > 0).astype(x.dtype)


def relu(a: Tensor) -> Tensor:
    """max(a, 0): a times its mask (1 where a > 0), and the mask is its derivative."""
    mask = _relu_mask(a.data)
    return _masked(a, mask, "relu", a.data * mask)


@kernels.replaceable("leaky_relu_slopes")
def _leaky_relu_slopes(x: np.ndarray, negative_slope: float) -> np.ndarray:
    """1 where x > 0, negative_slope elsewhere, in x's dtype."""
    return np.where(x > 0, 1, negative_slope).astype(x.dtype)


def leaky_relu(a: Tensor, negative_slope: float = 0.01) -> Tensor:
    """a where a > 0, negative_slope * a elsewhere: a times its slopes, which are its
    derivative (constant, so derivatives of every order exist: zero beyond the first)."""
    a = as_tensor(a)
    slopes = _leaky_relu_slopes(a.data, negative_slope)
    return _masked(a, slopes, "leaky_relu", a.data * slopes)


def absolute(a: Tensor) -> Tensor:
    return _masked(a, np.sign(a.data), "abs", np.abs(a.data))


def clip(a: Tensor, low=None, high=None) -> Tensor:
    out = np.clip(a.data, low, high)
    inside = np.ones(a.shape, bool)
    if low is not None:
        inside &= a.data >= low
    if high is not None:
        inside &= a.data <= high
    return _masked(a, inside, "clip", out.astype(a.dtype, copy=False))


def maximum(a, b) -> Tensor:
    """Elementwise maximum; at ties the gradient goes to `a`."""
    a, b = as_tensor(a), as_tensor(b)
    _broadcast_shape("maximum", a, b)
    return where(a.data >= b.data, a, b)


def minimum(a, b) -> Tensor:
    a, b = as_tensor(a), as_tensor(b)
    _broadcast_shape("minimum", a, b)
    return where(np.asarray(a.data <= b.data), a, b)


def where(condition, a, b) -> Tensor:
    """`a` where condition holds, else `b` (condition is a boolean array, not differentiated)."""
    cond = condition.data.astype(bool) if isinstance(condition, Tensor) else np.asarray(
        condition, bool)
    a = as_tensor(a)
    b = b if isinstance(b, Tensor) else Tensor(np.asarray(b, a.dtype))
    try:
        out = np.where(cond, a.data, b.data)
    except ValueError:
        raise _shape_error("where", cond.shape, a.shape, b.shape) from None
    zero = _constant(np.zeros((), out.dtype))
    return node(out, (a, b), lambda g: (
        _unbroadcast(where(cond, g, zero), a.shape) if a.requires_grad else None,
        _unbroadcast(where(cond, zero, g), b.shape) if b.requires_grad else None), "where")


def astype(a: Tensor, dtype) -> Tensor:
    source = a.dtype
    return node(a.data.astype(dtype), (a,), lambda g: (astype(g, source),), "astype")


# ===== linear: matmul plus bias as one node =============================================

@fast_path("linear")  # kernels/dense.py: the backward in NumPy, outside create_graph
def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """y = x W^T + b with W (out_features, in_features), as PyTorch's F.linear.

    With g the gradient of y, and x's leading axes flattened into rows:

        dL/dx = g W        dL/dW = g^T x        dL/db = the sum of g's rows

    The same as composing matmul, transpose and add, as one node: a sequence's (T, B, in) is
    one (T*B, in) product rather than T small ones, and the weight's gradient comes out as one
    (out, in) product, g^T x, rather than the transpose of x^T g.
    """
    if weight.ndim != 2 or x.ndim == 0 or x.shape[-1] != weight.shape[1]:
        raise _shape_error("linear (input vs weight (out, in))", x.shape, weight.shape)
    if bias is not None and bias.shape != weight.shape[:1]:
        raise _shape_error("linear (bias vs weight (out, in))", bias.shape, weight.shape)
    out_features, in_features = weight.shape
    out = x.data.reshape(-1, in_features) @ weight.data.T
    if bias is not None:
        out += bias.data
    parents = (x, weight) if bias is None else (x, weight, bias)

    def backward(g):
        g_rows = reshape(g, (-1, out_features))
        grads = [reshape(matmul(g_rows, weight), x.shape) if x.requires_grad else None,
                 matmul(transpose(g_rows), reshape(x, (-1, in_features)))
                 if weight.requires_grad else None]
        if bias is not None:
            grads.append(tensor_sum(g_rows, 0) if bias.requires_grad else None)
        return grads

    return node(out.reshape(x.shape[:-1] + (out_features,)), parents, backward, "linear")


# ===== reductions ==========================================================================

def _normalise_axis(axis, ndim: int) -> tuple:
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    return tuple(sorted(ax % ndim for ax in axes)) if ndim else ()


def _keepdims_shape(shape: tuple, axes: tuple) -> tuple:
    return tuple(1 if i in axes else n for i, n in enumerate(shape))


def broadcast_to(a: Tensor, shape) -> Tensor:
    shape = tuple(shape)
    try:
        out = np.broadcast_to(a.data, shape)
    except ValueError:
        raise _shape_error("broadcast_to", a.shape, shape) from None
    return node(out, (a,), lambda g: (_unbroadcast(g, a.shape),), "broadcast_to")


def tensor_sum(a: Tensor, axis=None, keepdims: bool = False) -> Tensor:
    axes = _normalise_axis(axis, a.ndim)
    out = np.sum(a.data, axis=axes, keepdims=keepdims)
    kept = _keepdims_shape(a.shape, axes)
    return node(np.asarray(out), (a,),
                lambda g: (broadcast_to(reshape(g, kept), a.shape),), "sum")


def mean(a: Tensor, axis=None, keepdims: bool = False) -> Tensor:
    axes = _normalise_axis(axis, a.ndim)
    count = int(np.prod([a.shape[i] for i in axes])) if axes else 1
    return tensor_sum(a, axes, keepdims) * (1.0 / count)


def var(a: Tensor, axis=None, keepdims: bool = False, ddof: int = 0) -> Tensor:
    """Variance; ddof=0 divides by n (NumPy's default), ddof=1 by n - 1."""
    axes = _normalise_axis(axis, a.ndim)
    count = int(np.prod([a.shape[i] for i in axes])) if axes else 1
    centred = a - mean(a, axes, keepdims=True)
    return tensor_sum(centred * centred, axes, keepdims) * (1.0 / (count - ddof))


def _extremum(a: Tensor, axis, keepdims: bool, reduce: Callable, op: str) -> Tensor:
    axes = _normalise_axis(axis, a.ndim)
    kept = _keepdims_shape(a.shape, axes)
    out = reduce(a.data, axis=axes, keepdims=True)
    # the gradient goes to the winning entries, shared equally among ties
    hits = a.data == out
    share = _constant((hits / hits.sum(axis=axes, keepdims=True)).astype(a.dtype))
    result = out if keepdims else out.reshape([n for i, n in enumerate(kept) if i not in axes])
    return node(result, (a,), lambda g: (broadcast_to(reshape(g, kept), a.shape) * share,), op)


def tensor_max(a: Tensor, axis=None, keepdims: bool = False) -> Tensor:
    return _extremum(a, axis, keepdims, np.max, "max")


def tensor_min(a: Tensor, axis=None, keepdims: bool = False) -> Tensor:
    return _extremum(a, axis, keepdims, np.min, "min")


def logsumexp(a: Tensor, axis=-1, keepdims: bool = False) -> Tensor:
    """log(sum(exp(a))) along axis, shifted by the max so nothing overflows."""
    axes = _normalise_axis(axis, a.ndim)
    shift = _constant(np.max(a.data, axis=axes, keepdims=True))  # any constant shift is exact
    out = log(tensor_sum(exp(a - shift), axes, keepdims=True)) + shift
    return out if keepdims else reshape(out, [n for i, n in enumerate(out.shape) if i not in axes])


# ===== shape ===============================================================================

def reshape(a: Tensor, shape) -> Tensor:
    try:
        out = a.data.reshape(shape)
    except ValueError:
        raise _shape_error("reshape", a.shape, tuple(shape)) from None
    return node(out, (a,), lambda g: (reshape(g, a.shape),), "reshape")


def transpose(a: Tensor, axes=None) -> Tensor:
    axes = tuple(reversed(range(a.ndim))) if axes is None else tuple(ax % a.ndim for ax in axes)
    if sorted(axes) != list(range(a.ndim)):
        raise ValueError(f"transpose: axes {axes} do not fit shape {a.shape}")
    inverse = tuple(np.argsort(axes))
    return node(a.data.transpose(axes), (a,), lambda g: (transpose(g, inverse),), "transpose")


def _has_array_index(index) -> bool:
    parts = index if isinstance(index, tuple) else (index,)
    return any(isinstance(p, (list, np.ndarray, Tensor)) for p in parts)


def _plain_index(index):
    if isinstance(index, Tensor):
        return index.data.astype(np.int64)
    if isinstance(index, tuple):
        return tuple(_plain_index(p) for p in index)
    return index


def getitem(a: Tensor, index) -> Tensor:
    """Indexing and slicing, integer-array (gather) indexing included."""
    index = _plain_index(index)
    try:
        out = a.data[index]
    except IndexError as error:
        raise IndexError(f"getitem: index does not fit shape {a.shape}: {error}") from None
    return node(np.asarray(out), (a,), lambda g: (scatter_add(g, index, a.shape),), "getitem")


def scatter_add(g: Tensor, index, shape: tuple) -> Tensor:
    """zeros(shape) with g added at `index`: the adjoint of getitem (repeated indices add up)."""
    out = np.zeros(shape, g.dtype)
    if _has_array_index(index):
        _add_at(out, index, g.data)
    else:  # slices and integers: no position repeats
        out[index] = g.data
    return node(out, (g,), lambda h: (getitem(h, index),), "scatter_add")


@kernels.replaceable("add_at")
def _add_at(out: np.ndarray, index, values: np.ndarray) -> None:
    """out[index] += values, in place, with repeated positions adding up."""
    np.add.at(out, index, values)


def concatenate(tensors: Sequence[Tensor], axis: int = 0) -> Tensor:
    tensors = [as_tensor(t) for t in tensors]
    try:
        out = np.concatenate([t.data for t in tensors], axis=axis)
    except ValueError:
        raise _shape_error("concatenate", *(t.shape for t in tensors)) from None
    axis = axis % out.ndim
    bounds = np.cumsum([0] + [t.shape[axis] for t in tensors])

    def backward(g):
        lead = (slice(None),) * axis
        return tuple(getitem(g, lead + (slice(lo, hi),)) if t.requires_grad else None
                     for t, lo, hi in zip(tensors, bounds[:-1], bounds[1:]))

    return node(out, tensors, backward, "concatenate")


def stack(tensors: Sequence[Tensor], axis: int = 0) -> Tensor:
    tensors = [as_tensor(t) for t in tensors]
    shapes = {t.shape for t in tensors}
    if len(shapes) != 1:
        raise _shape_error("stack", *(t.shape for t in tensors))
    axis = axis % (tensors[0].ndim + 1)
    expanded = [reshape(t, t.shape[:axis] + (1,) + t.shape[axis:]) for t in tensors]
    return concatenate(expanded, axis)


def split(a: Tensor, indices_or_sections, axis: int = 0) -> list[Tensor]:
    """Like np.split: a number of equal sections, or the indices where to cut."""
    axis = axis % a.ndim
    n = a.shape[axis]
    if isinstance(indices_or_sections, int):
        if n % indices_or_sections:
            raise ValueError(f"split: axis of size {n} does not divide into "
                             f"{indices_or_sections} equal sections")
        step = n // indices_or_sections
        cuts = list(range(step, n, step))
    else:
        cuts = list(indices_or_sections)
    edges = [0] + cuts + [n]
    lead = (slice(None),) * axis
    return [getitem(a, lead + (slice(lo, hi),)) for lo, hi in itertools.pairwise(edges)]


def pad(a: Tensor, pad_width, value: float = 0.0) -> Tensor:
    """Constant padding with NumPy's pad_width: ((before, after), ...) per axis."""
    widths = np.broadcast_to(np.asarray(pad_width, dtype=int), (a.ndim, 2))
    out = np.pad(a.data, widths, mode="constant", constant_values=value)
    inner = tuple(slice(lo, lo + n) for (lo, _), n in zip(widths, a.shape))
    return node(out, (a,), lambda g: (getitem(g, inner),), "pad")


# ===== kernel nodes: a fast_path op's node when its kernel ran ============================

def _kernel_node(value: np.ndarray, fast_backward: Callable, reference: Callable, args,
                 settings, name: str) -> Tensor:
    """The node of a kernel's result: its parents are the op's Tensor arguments."""
    positions = [i for i, a in enumerate(args) if isinstance(a, Tensor)]
    parents = tuple(args[i] for i in positions)

    def composed(*tensors: Tensor) -> Tensor:  # the reference, as a function of the parents
        arguments = list(args)
        for i, t in zip(positions, tensors):
            arguments[i] = t
        out = reference(*arguments, **settings)
        return out[0] if isinstance(out, tuple) else out

    def backward(g: Tensor):
        if is_grad_enabled():  # create_graph: differentiate the reference, to any order
            reference_node = composed(*parents)
            if reference_node._parents == parents:  # one node: its own Tensor-op backward
                return reference_node._backward(g)
            # a composition of several nodes: differentiated as one node (_subgraph)
            return tuple(_subgraph(_vjp(composed, k), list(parents) + [g])
                         if p.requires_grad else None for k, p in enumerate(parents))
        needs = tuple(isinstance(a, Tensor) and a.requires_grad for a in args)
        grads = fast_backward(g.data, needs)
        return tuple(_constant(np.asarray(grads[i])) if i < len(grads) and grads[i] is not None
                     and args[i].requires_grad else None for i in positions)

    return node(value, parents, backward, name)


def _subgraph(fn: Callable, inputs: Sequence[Tensor]) -> Tensor:
    """fn(*inputs) recorded as a single node, differentiable to any order.

    fn runs on detached stand-ins of the inputs, so a later grad() through this node never
    walks back past `inputs` into their history. Its backward is the same construction applied
    to fn's vector-Jacobian product (d/d input_i of sum(fn(...) * v)), so every derivative of
    it is again a node of this kind.
    """
    stand_ins = [Tensor(t.data, requires_grad=True) for t in inputs]
    with set_grad_enabled(True):
        out = fn(*stand_ins)

    def backward(v):
        return tuple(_subgraph(_vjp(fn, i), list(inputs) + [v]) if t.requires_grad else None
                     for i, t in enumerate(inputs))

    return node(out.data, tuple(inputs), backward, "subgraph")


def _vjp(fn: Callable, i: int) -> Callable:
    """(x_1..x_n, v) -> d sum(fn(x) * v) / d x_i, as a function of Tensors."""
    def vjp(*args):
        *xs, v = args
        with set_grad_enabled(True):
            return grad((fn(*xs) * v).sum(), [xs[i]], create_graph=True)[0]
    return vjp
