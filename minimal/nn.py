"""Layers: Module (parameters, state dict, save/load), Linear, Embedding, Sequential, initialisers.

Names, shapes and layouts follow PyTorch (Linear.weight is (out, in)), so a PyTorch state dict
converted to arrays loads here and the results can be compared number for number.

Every layer that draws random initial weights takes `rng`, a numpy Generator: the same seed
gives the same model.
"""

from __future__ import annotations

import math
import os
import tempfile
import zipfile
from collections import OrderedDict
from typing import Iterator

import numpy as np

from minimal import functional as F
from minimal.autograd import Parameter, Tensor, getitem

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

    def load_state_dict(self, state: dict) -> None:
        """Copy arrays into the parameters and buffers; names and shapes must match exactly."""
        expected = self.state_dict()
        missing = sorted(set(expected) - set(state))
        unexpected = sorted(set(state) - set(expected))
        if missing or unexpected:
            raise KeyError(f"load_state_dict: missing {missing}, unexpected {unexpected}")
        for prefix, module in self.named_modules():
            for name, param in module._parameters.items():
                value = np.asarray(state[prefix + name])
                if value.shape != param.shape:
                    raise ValueError(f"load_state_dict: {prefix + name} has shape "
                                     f"{value.shape}, the model expects {param.shape}")
                param.data = value.astype(param.dtype, copy=True)
            for name, buffer in module._buffers.items():
                value = np.asarray(state[prefix + name])
                if value.shape != np.shape(buffer):
                    raise ValueError(f"load_state_dict: {prefix + name} has shape "
                                     f"{value.shape}, the model expects {np.shape(buffer)}")
                module._set_buffer(name, value.astype(np.asarray(buffer).dtype, copy=True))

    def save(self, path: str | os.PathLike) -> None:
        save_arrays(path, self.state_dict())

    def load(self, path: str | os.PathLike) -> None:
        self.load_state_dict(load_arrays(path))

    def __repr__(self) -> str:
        inner = "".join(f"\n  ({name}): " + repr(module).replace("\n", "\n  ")
                        for name, module in self._modules.items())
        return f"{type(self).__name__}({self.extra_repr()}{inner}{chr(10) if inner else ''})"

    def extra_repr(self) -> str:
        return ""


def save_arrays(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> None:
    """Write arrays to an .npz atomically: a temporary file in the same folder, then rename.

    A crash half-way leaves the previous file intact, never a truncated one.
    """
    path = os.fspath(path)
    arrays = {name: np.asarray(value) for name, value in arrays.items()}
    for name, value in arrays.items():
        if value.dtype.hasobject:
            raise ValueError(f"save_arrays: {name} is an object array; only numeric arrays "
                             "are saved (no pickles)")
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=folder, suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            np.savez(file, **arrays)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def load_arrays(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read an .npz of plain numeric arrays; object arrays (pickles) are refused."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except ValueError as error:
        if "allow_pickle" in str(error) or "Object arrays" in str(error):
            raise ValueError(f"{path}: holds an object array (a pickle); only plain numeric "
                             "arrays are loaded, since unpickling can run arbitrary code") from None
        raise ValueError(f"{path}: not a readable .npz checkpoint ({error})") from None
    except (zipfile.BadZipFile, EOFError, OSError) as error:
        if isinstance(error, FileNotFoundError):
            raise
        raise ValueError(f"{path}: not a readable .npz checkpoint ({error})") from None


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
        y = x @ self.weight.T
        return y + self.bias if self.bias is not None else y

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
