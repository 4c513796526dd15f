"""Layers: Module (parameters, state dict), Linear, Embedding, Sequential, initialisers,
Conv2d, ConvTranspose2d, MaxPool2d, BatchNorm1d/2d, Dropout, LSTMCell, LSTM.

Names, shapes and layouts follow PyTorch (Linear.weight is (out, in)), so a PyTorch state dict
converted to arrays loads here and the results can be compared number for number.

Every layer that draws random initial weights takes `rng`, a numpy Generator: the same seed
gives the same model.

A layer holds weights and calls the ops defined elsewhere (Linear calls autograd's `linear`
through F, Conv2d calls conv.py's `conv2d`). The one op defined here is the LSTM layer over a
whole sequence (`_lstm_layer`, the step `_lstm_gates` T times), because it exists only for
nn.LSTM and LSTMCell; its kernel runs the backward through time in NumPy.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterator, Mapping

import numpy as np

from minimal import functional as F
from minimal.autograd import Parameter, Tensor, fast_path, getitem, split, stack
from minimal.conv import int_pair
from minimal.errors import CheckpointError

# ===== initialisers =======================================================================


def _generator(rng: np.random.Generator | None) -> np.random.Generator:
    return rng if rng is not None else np.random.default_rng()


def fan_in_and_out(shape: tuple) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight: Linear (out, in), conv (out, in, kh, kw)."""
    if len(shape) < 2:
        raise ValueError(f"fan_in_and_out: need a weight of 2 or more axes, got shape {shape}")
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def uniform(shape, low: float, high: float, rng=None, dtype=np.float32) -> np.ndarray:
    return _generator(rng).uniform(low, high, size=shape).astype(dtype)


def normal(shape, std: float = 1.0, rng=None, mean: float = 0.0, dtype=np.float32) -> np.ndarray:
    return (mean + std * _generator(rng).standard_normal(shape)).astype(dtype)


def xavier_uniform(shape, rng=None, gain: float = 1.0, dtype=np.float32) -> np.ndarray:
    """U(-a, a), a = gain * sqrt(6 / (fan_in + fan_out)) (Glorot and Bengio, 2010)."""
    fan_in, fan_out = fan_in_and_out(shape)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform(shape, -bound, bound, rng, dtype)


def xavier_normal(shape, rng=None, gain: float = 1.0, dtype=np.float32) -> np.ndarray:
    fan_in, fan_out = fan_in_and_out(shape)
    return normal(shape, gain * math.sqrt(2.0 / (fan_in + fan_out)), rng, dtype=dtype)


def kaiming_uniform(shape, rng=None, a: float = 0.0, dtype=np.float32) -> np.ndarray:
    """U(-b, b), b = sqrt(6 / ((1 + a^2) fan_in)) (He et al., 2015); a is the leaky slope."""
    fan_in, _ = fan_in_and_out(shape)
    bound = math.sqrt(6.0 / ((1 + a * a) * fan_in))
    return uniform(shape, -bound, bound, rng, dtype)


def kaiming_normal(shape, rng=None, a: float = 0.0, dtype=np.float32) -> np.ndarray:
    fan_in, _ = fan_in_and_out(shape)
    return normal(shape, math.sqrt(2.0 / ((1 + a * a) * fan_in)), rng, dtype=dtype)


# ===== Module =============================================================================


class Module:
    """Holds Parameters, buffers (saved state that is not learned) and sub-modules.

    Assigning a Parameter, a Module or a list of Modules to an attribute registers it, so
    `parameters()` and `state_dict()` find it; the names in the state dict are the attribute
    paths ("encoder.0.weight").
    """

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise RuntimeError(f"{type(self).__name__}: call super().__init__() first")
        for registry in (self._parameters, self._buffers, self._modules):
            registry.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def register_buffer(self, name: str, value: np.ndarray) -> None:
        """Saved in the state dict but not learned (e.g. batch norm's running mean)."""
        self._buffers[name] = np.asarray(value)
        object.__setattr__(self, name, self._buffers[name])

    def _set_buffer(self, name: str, value: np.ndarray) -> None:
        self._buffers[name] = value
        object.__setattr__(self, name, value)

    def forward(self, *args, **kwargs):
        raise NotImplementedError

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        yield prefix, self
        for name, module in self._modules.items():
            yield from module.named_modules(f"{prefix}{name}.")

    def named_parameters(self) -> Iterator[tuple[str, Parameter]]:
        seen = set()
        for prefix, module in self.named_modules():
            for name, param in module._parameters.items():
                if id(param) not in seen:  # a shared parameter is listed once
                    seen.add(id(param))
                    yield prefix + name, param

    def parameters(self) -> list[Parameter]:
        return [param for _, param in self.named_parameters()]

    def zero_grad(self) -> None:
        for param in self.parameters():
            param.grad = None

    def train(self, mode: bool = True) -> Module:
        for _, module in self.named_modules():
            object.__setattr__(module, "training", mode)
        return self

    def eval(self) -> Module:
        return self.train(False)

    def state_dict(self) -> OrderedDict:
        """Name -> array copy of every parameter and buffer."""
        state = OrderedDict()
        for prefix, module in self.named_modules():
            for name, param in module._parameters.items():
                state[prefix + name] = param.data.copy()
            for name, buffer in module._buffers.items():
                state[prefix + name] = np.array(buffer, copy=True)
        return state

    def load_state_dict(self, state: Mapping[str, object]) -> None:
        """Copy arrays into the parameters and buffers; names and shapes must match exactly.

        Everything is checked before anything is assigned (names, shapes, real finite numbers),
        so a refused state dict leaves the model as it was; the error (CheckpointError, a
        ValueError) names the first entry that does not fit.
        """
        expected = {name: (np.shape(value), np.asarray(value).dtype)
                    for name, value in self.state_dict().items()}
        checked = check_state(state, expected, "load_state_dict")
        for prefix, module in self.named_modules():
            for name, param in module._parameters.items():
                param.data = checked[prefix + name]
            for name in module._buffers:
                module._set_buffer(name, checked[prefix + name])

    def __repr__(self) -> str:
        inner = "".join(f"\n  ({name}): " + repr(module).replace("\n", "\n  ")
                        for name, module in self._modules.items())
        return f"{type(self).__name__}({self.extra_repr()}{inner}{chr(10) if inner else ''})"

    def extra_repr(self) -> str:
        return ""


def check_state(state: Mapping[str, object], expected: Mapping[str, tuple[tuple, np.dtype]],
                what: str) -> dict[str, np.ndarray]:
    """Check a state dict against name -> (shape, dtype) and return converted copies.

    Refuses, with CheckpointError naming the entry: missing or extra names, another shape (no
    broadcasting), anything but real numbers (strings, complex, objects), NaN or inf. Nothing
    is assigned here, so a caller that assigns only after this returns changes nothing on error.
    """
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{what}: expected a mapping of name -> array, got "
                              f"{type(state).__name__}")
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"{what}: the state does not fit: missing {missing}, "
                              f"unexpected {unexpected}")
    checked = {}
    for name, (shape, dtype) in expected.items():
        try:
            value = np.asarray(state[name])
        except (ValueError, TypeError) as error:
            raise CheckpointError(f"{what}: {name} is not an array ({error})") from None
        if value.dtype.kind not in "biuf":
            raise CheckpointError(f"{what}: {name} holds {value.dtype} values; expected real "
                                  f"numbers ({np.dtype(dtype)})")
        if value.shape != tuple(shape):
            raise CheckpointError(f"{what}: {name} has shape {value.shape}, expected "
                                  f"{tuple(shape)}")
        if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
            raise CheckpointError(f"{what}: {name} holds NaN or inf; expected finite numbers")
        converted = value.astype(dtype, copy=True)
        if converted.dtype.kind in "biu" and value.dtype.kind == "f" and \
                not np.array_equal(converted, value):
            raise CheckpointError(f"{what}: {name} holds fractions; expected whole numbers "
                                  f"({np.dtype(dtype)})")
        checked[name] = converted
    return checked


# ===== layers =============================================================================


class Linear(Module):
    """y = x W^T + b with W (out_features, in_features), initialised like PyTorch:
    U(-1/sqrt(in), 1/sqrt(in)) for weight and bias."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, rng=None):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        bound = 1.0 / math.sqrt(in_features)
        rng = _generator(rng)
        self.weight = Parameter(uniform((out_features, in_features), -bound, bound, rng))
        self.bias = Parameter(uniform((out_features,), -bound, bound, rng)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.in_features:
            raise ValueError(f"Linear: input shape {x.shape} does not end in in_features="
                             f"{self.in_features} (weight shape {self.weight.shape})")
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, bias={self.bias is not None}"


class Embedding(Module):
    """A lookup table: row i of `weight` (num_embeddings, embedding_dim) for id i; N(0, 1) init.

    The id `padding_idx`, if given, always reads as a zero vector and its row gets no gradient.
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None,
                 rng=None):
        super().__init__()
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.padding_idx = padding_idx
        weight = normal((num_embeddings, embedding_dim), 1.0, rng)
        if padding_idx is not None:
            weight[padding_idx] = 0
        self.weight = Parameter(weight)

    def forward(self, ids) -> Tensor:
        ids = np.asarray(ids.data if isinstance(ids, Tensor) else ids)
        if not np.issubdtype(ids.dtype, np.integer):
            raise TypeError(f"Embedding: ids must be integers, got {ids.dtype}")
        if ids.size and (ids.min() < 0 or ids.max() >= self.num_embeddings):
            raise IndexError(f"Embedding: ids must lie in [0, {self.num_embeddings}), got "
                             f"{ids.min()}..{ids.max()}")
        out = getitem(self.weight, ids)
        if self.padding_idx is not None:
            mask = (ids != self.padding_idx)[..., None].astype(out.dtype)
            out = out * mask  # padding reads as zero and passes no gradient
        return out


class Sequential(Module):
    """Modules applied one after the other; sub-modules are named "0", "1", ..."""

    def __init__(self, *modules: Module):
        super().__init__()
        for index, module in enumerate(modules):
            setattr(self, str(index), module)

    def __getitem__(self, index: int) -> Module:
        return list(self._modules.values())[index]

    def __len__(self) -> int:
        return len(self._modules)

    def forward(self, x):
        for module in self._modules.values():
            x = module(x)
        return x


class ModuleList(Module):
    """A list of modules whose parameters are registered ("0.weight", "1.weight", ...)."""

    def __init__(self, modules=()):
        super().__init__()
        for module in modules:
            self.append(module)

    def append(self, module: Module) -> None:
        setattr(self, str(len(self._modules)), module)

    def __getitem__(self, index: int) -> Module:
        return list(self._modules.values())[index]

    def __iter__(self):
        return iter(self._modules.values())

    def __len__(self) -> int:
        return len(self._modules)


class ReLU(Module):
    def forward(self, x):
        return F.relu(x)


class LeakyReLU(Module):
    def __init__(self, negative_slope: float = 0.01):
        super().__init__()
        self.negative_slope = negative_slope

    def forward(self, x):
        return F.leaky_relu(x, self.negative_slope)


class Tanh(Module):
    def forward(self, x):
        return F.tanh(x)


class Sigmoid(Module):
    def forward(self, x):
        return F.sigmoid(x)


class Flatten(Module):
    """(N, ...) -> (N, everything else)."""

    def forward(self, x):
        return x.reshape(x.shape[0], -1)


class Dropout(Module):
    """Zero each entry with probability p while training (scaling the rest by 1/(1-p))."""

    def __init__(self, p: float = 0.5, rng: np.random.Generator | None = None):
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"Dropout: p must be in [0, 1), got {p}")
        self.p, self.rng = p, _generator(rng)

    def forward(self, x):
        return F.dropout(x, self.p, self.rng, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


# ===== convolution layers =================================================================


class Conv2d(Module):
    """F.conv2d with weight (out, in, kh, kw) and bias (out,), initialised like PyTorch:
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = in * kh * kw."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 bias: bool = True, rng=None):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = int_pair(kernel_size, "kernel_size", "Conv2d")
        self.stride = int_pair(stride, "stride", "Conv2d")
        self.padding = int_pair(padding, "padding", "Conv2d")
        rng = _generator(rng)
        bound = 1.0 / math.sqrt(in_channels * self.kernel_size[0] * self.kernel_size[1])
        shape = (out_channels, in_channels) + self.kernel_size
        self.weight = Parameter(uniform(shape, -bound, bound, rng))
        self.bias = Parameter(uniform((out_channels,), -bound, bound, rng)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}")


class ConvTranspose2d(Module):
    """F.conv_transpose2d with weight (in, out, kh, kw) and bias (out,); PyTorch's init takes
    its fan_in from weight axis 1: U(-1/sqrt(out * kh * kw), +...)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 output_padding=0, bias: bool = True, rng=None):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = int_pair(kernel_size, "kernel_size", "ConvTranspose2d")
        self.stride = int_pair(stride, "stride", "ConvTranspose2d")
        self.padding = int_pair(padding, "padding", "ConvTranspose2d")
        self.output_padding = int_pair(output_padding, "output_padding", "ConvTranspose2d")
        rng = _generator(rng)
        bound = 1.0 / math.sqrt(out_channels * self.kernel_size[0] * self.kernel_size[1])
        shape = (in_channels, out_channels) + self.kernel_size
        self.weight = Parameter(uniform(shape, -bound, bound, rng))
        self.bias = Parameter(uniform((out_channels,), -bound, bound, rng)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        return F.conv_transpose2d(x, self.weight, self.bias, self.stride, self.padding,
                                  self.output_padding)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, "
                f"output_padding={self.output_padding}")


class MaxPool2d(Module):
    def __init__(self, kernel_size, stride=None, return_indices: bool = False):
        super().__init__()
        self.kernel_size, self.stride, self.return_indices = kernel_size, stride, return_indices

    def forward(self, x):
        return F.max_pool2d(x, self.kernel_size, self.stride, self.return_indices)


class _BatchNorm(Module):
    """Batch normalisation over axis 1 with running statistics (PyTorch's buffers: running_mean,
    running_var, num_batches_tracked) and a learned per-channel scale `weight` and shift `bias`.

    train(): normalise with the batch's statistics and update the running ones;
    eval(): normalise with the running statistics (so a batch of one works at test time).
    """

    dims: tuple[int, ...] = ()

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1,
                 affine: bool = True, track_running_stats: bool = True):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.weight = Parameter(np.ones(num_features, np.float32)) if affine else None
        self.bias = Parameter(np.zeros(num_features, np.float32)) if affine else None
        self.track_running_stats = track_running_stats
        if track_running_stats:
            self.register_buffer("running_mean", np.zeros(num_features, np.float32))
            self.register_buffer("running_var", np.ones(num_features, np.float32))
            self.register_buffer("num_batches_tracked", np.zeros((), np.int64))

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim not in self.dims:
            raise ValueError(f"{type(self).__name__}: expected an input with {self.dims} axes, "
                             f"got shape {x.shape}")
        use_batch = self.training or not self.track_running_stats
        if self.training and self.track_running_stats:
            self._set_buffer("num_batches_tracked", self.num_batches_tracked + 1)
        stats = (self.running_mean, self.running_var) if self.track_running_stats else (None,
                                                                                        None)
        return F.batch_norm(x, *stats, self.weight, self.bias, training=use_batch,
                            momentum=self.momentum, eps=self.eps)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"


class BatchNorm1d(_BatchNorm):
    dims = (2, 3)


class BatchNorm2d(_BatchNorm):
    dims = (4,)


# ===== recurrent layers ===================================================================


def _lstm_gates(x_part: Tensor, h: Tensor, c: Tensor, weight_hh: Tensor):
    """One LSTM step from the input's share of the gates, x W_ih^T + b_ih + b_hh.

    Gate order i, f, g, o (PyTorch's): c' = f c + i g, h' = o tanh(c').
    """
    gates = x_part + h @ weight_hh.T
    i, f, g, o = split(gates, 4, axis=-1)
    c_next = F.sigmoid(f) * c + F.sigmoid(i) * F.tanh(g)
    return F.sigmoid(o) * F.tanh(c_next), c_next


@fast_path("lstm_layer")  # kernels/lstm.py: the backward through time in NumPy
def _lstm_layer(x_part: Tensor, h0: Tensor, c0: Tensor, weight_hh: Tensor) -> Tensor:
    """Run one layer over all T steps: x_part (T, B, 4H) is the input's share of the gates
    (x W_ih^T + b_ih + b_hh, one product for the whole sequence); returns (T + 1, B, H), the T
    hidden states and then the final cell state, as one Tensor."""
    h, c, hidden_states = h0, c0, []
    for t in range(x_part.shape[0]):
        h, c = _lstm_gates(x_part[t], h, c, weight_hh)
        hidden_states.append(h)
    return stack(hidden_states + [c], axis=0)


class LSTMCell(Module):
    """One step of an LSTM: weight_ih (4H, in), weight_hh (4H, H), bias_ih, bias_hh (4H,),
    gates i, f, g, o in that order; every entry U(-1/sqrt(H), 1/sqrt(H)) like PyTorch."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, rng=None):
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        rng = _generator(rng)
        bound = 1.0 / math.sqrt(hidden_size)
        self.weight_ih = Parameter(uniform((4 * hidden_size, input_size), -bound, bound, rng))
        self.weight_hh = Parameter(uniform((4 * hidden_size, hidden_size), -bound, bound, rng))
        self.bias_ih = Parameter(uniform((4 * hidden_size,), -bound, bound, rng)) if bias \
            else None
        self.bias_hh = Parameter(uniform((4 * hidden_size,), -bound, bound, rng)) if bias \
            else None

    def forward(self, x: Tensor, state: tuple[Tensor, Tensor] | None = None):
        """x (B, input_size), state (h, c) each (B, H) (zeros if None) -> (h', c')."""
        if x.shape[-1] != self.input_size:
            raise ValueError(f"LSTMCell: input shape {x.shape} does not end in input_size="
                             f"{self.input_size}")
        if state is None:
            zeros = Tensor(np.zeros(x.shape[:-1] + (self.hidden_size,), x.dtype))
            state = (zeros, zeros)
        h, c = state
        bias = self.bias_ih + self.bias_hh if self.bias_ih is not None else None
        x_part = F.linear(x, self.weight_ih, bias)
        if x.ndim == 2 and h.shape == c.shape == x_part.shape[:1] + (self.hidden_size,):
            # one step of the layer: the same gates, and the layer's kernel when it has one
            states = _lstm_layer(x_part.reshape((1,) + x_part.shape), h, c, self.weight_hh)
            return states[0], states[1]
        return _lstm_gates(x_part, h, c, self.weight_hh)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}"


class LSTM(Module):
    """A stack of LSTM layers over a sequence, sequence-first like PyTorch: input (T, B, in).

    Parameters per layer k: weight_ih_l{k}, weight_hh_l{k}, bias_ih_l{k}, bias_hh_l{k}, so a
    PyTorch state dict converted to arrays loads unchanged. Dropout (with its own rng) is
    applied to the outputs of every layer but the last, while training.

    forward(x, (h0, c0)) -> (output (T, B, H), (h_n, c_n)), h0, c0, h_n, c_n (layers, B, H).
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, dropout: float = 0.0, rng=None):
        super().__init__()
        if not 0 <= dropout < 1:
            raise ValueError(f"LSTM: dropout must be in [0, 1), got {dropout}")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.dropout, self.bias = dropout, bias
        self.rng = _generator(rng)
        bound = 1.0 / math.sqrt(hidden_size)
        for k in range(num_layers):
            inputs = input_size if k == 0 else hidden_size
            for name, shape in ((f"weight_ih_l{k}", (4 * hidden_size, inputs)),
                                (f"weight_hh_l{k}", (4 * hidden_size, hidden_size))) + (
                    ((f"bias_ih_l{k}", (4 * hidden_size,)),
                     (f"bias_hh_l{k}", (4 * hidden_size,))) if bias else ()):
                setattr(self, name, Parameter(uniform(shape, -bound, bound, self.rng)))

    def forward(self, x: Tensor, state: tuple[Tensor, Tensor] | None = None):
        if x.ndim != 3 or x.shape[2] != self.input_size:
            raise ValueError(f"LSTM: input must be (T, B, {self.input_size}), got shape "
                             f"{x.shape}")
        steps, batch = x.shape[:2]
        shape = (self.num_layers, batch, self.hidden_size)
        if state is None:
            zeros = Tensor(np.zeros(shape, x.dtype))
            state = (zeros, zeros)
        h0, c0 = state
        if h0.shape != shape or c0.shape != shape:
            raise ValueError(f"LSTM: initial state shapes {h0.shape}, {c0.shape}, expected "
                             f"{shape}")
        final_h, final_c = [], []
        layer_input = x
        for k in range(self.num_layers):
            w_ih, w_hh = getattr(self, f"weight_ih_l{k}"), getattr(self, f"weight_hh_l{k}")
            # the input's share of the gates for every step in one matrix product
            bias = (getattr(self, f"bias_ih_l{k}") + getattr(self, f"bias_hh_l{k}")
                    if self.bias else None)
            x_part = F.linear(layer_input, w_ih, bias)  # (T, B, 4H), one product
            states = _lstm_layer(x_part, h0[k], c0[k], w_hh)  # h_1 .. h_T, then c_T
            layer_input = states[:steps]
            final_h.append(states[steps - 1])
            final_c.append(states[steps])
            if self.dropout and k < self.num_layers - 1:
                layer_input = F.dropout(layer_input, self.dropout, self.rng, self.training)
        return layer_input, (stack(final_h, axis=0), stack(final_c, axis=0))

    def extra_repr(self) -> str:
        return (f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, "
                f"dropout={self.dropout}")
