"""Flatten a model update into one float64 vector and back, exactly.

Supported updates: a numpy array, a list or tuple of arrays, a dict of arrays keyed by
strings, and a PyTorch ``state_dict`` (any mapping of tensors; torch is imported only when
one is met). The :class:`UpdateSpec` remembers every name, shape and dtype, so
``unflatten(*flatten(u))`` gives back ``u`` bit for bit: float16/bfloat16/float32 values are
exactly representable in float64, and integer buffers such as BatchNorm's
``num_batches_tracked`` are exact up to ``2**53`` (larger magnitudes are refused rather than
rounded). When unflattening an *aggregate*, integer and bool entries are rounded to the
nearest representable value.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from privagg.errors import InvalidUpdate, MalformedMessage

__all__ = ["TensorSpec", "UpdateSpec", "flatten", "unflatten"]

UpdateKind = Literal["array", "list", "tuple", "dict", "torch"]

_EXACT_INT_LIMIT = 2**53
_NUMPY_DTYPES = {
    "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float16", "float32", "float64",
}
_TORCH_DTYPES = {
    "bool", "int8", "int16", "int32", "int64", "uint8", "float16", "bfloat16", "float32", "float64",
}
_MAX_SPEC_JSON = 16 * 1024 * 1024


@dataclass(frozen=True)
class TensorSpec:
    """Name (a string key, or the position in a list), shape and dtype name of one tensor."""

    name: str
    shape: tuple[int, ...]
    dtype: str

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1


@dataclass(frozen=True)
class UpdateSpec:
    """The structure of an update: which container, and each tensor's name, shape and dtype."""

    kind: UpdateKind
    tensors: tuple[TensorSpec, ...]

    @property
    def size(self) -> int:
        """Length of the flat vector."""
        return sum(t.size for t in self.tensors)

    def to_json(self) -> str:
        return json.dumps(
            {"kind": self.kind, "tensors": [[t.name, list(t.shape), t.dtype] for t in self.tensors]},
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> UpdateSpec:
        """Parse a spec received from elsewhere; anything malformed raises ``MalformedMessage``."""
        if len(text) > _MAX_SPEC_JSON:
            raise MalformedMessage(f"update spec of {len(text)} bytes exceeds {_MAX_SPEC_JSON}")
        try:
            raw = json.loads(text)
            kind = raw["kind"]
            if kind not in ("array", "list", "tuple", "dict", "torch"):
                raise ValueError(f"unknown kind {kind!r}")
            allowed = _TORCH_DTYPES if kind == "torch" else _NUMPY_DTYPES
            tensors = []
            for name, shape, dtype in raw["tensors"]:
                if not isinstance(name, str) or dtype not in allowed:
                    raise ValueError(f"bad tensor entry {name!r} {dtype!r}")
                if not isinstance(shape, list) or not all(
                    isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 2**40 for d in shape
                ):
                    raise ValueError(f"bad shape {shape!r}")
                tensors.append(TensorSpec(name, tuple(shape), dtype))
            if kind == "array" and len(tensors) != 1:
                raise ValueError("an array spec holds exactly one tensor")
            return cls(kind, tuple(tensors))
        except MalformedMessage:
            raise
        except (ValueError, KeyError, TypeError) as exc:
            raise MalformedMessage(f"invalid update spec: {exc}") from None


def _is_torch_tensor(value: Any) -> bool:
    return type(value).__module__.startswith("torch") and hasattr(value, "detach")


def _numpy_part(name: str, value: Any) -> tuple[TensorSpec, npt.NDArray[np.float64]]:
    arr = np.asarray(value)
    dtype = arr.dtype.name
    if dtype not in _NUMPY_DTYPES:
        raise InvalidUpdate(f"tensor {name!r} has unsupported dtype {arr.dtype}")
    flat = arr.reshape(-1)
    _check_exact_ints(name, flat, dtype)
    return TensorSpec(name, tuple(int(d) for d in arr.shape), dtype), flat.astype(np.float64)


def _torch_part(name: str, tensor: Any) -> tuple[TensorSpec, npt.NDArray[np.float64]]:
    import torch  # lazy: torch is an optional extra

    dtype = str(tensor.dtype).removeprefix("torch.")
    if dtype not in _TORCH_DTYPES:
        raise InvalidUpdate(f"tensor {name!r} has unsupported dtype {tensor.dtype}")
    t = tensor.detach().cpu()
    if dtype in ("bfloat16", "float16"):
        t = t.to(torch.float32)  # exact: both embed in float32
    flat = t.reshape(-1).numpy()
    _check_exact_ints(name, flat, dtype)
    return TensorSpec(name, tuple(int(d) for d in tensor.shape), dtype), flat.astype(np.float64)


def _check_exact_ints(name: str, flat: np.ndarray, dtype: str) -> None:
    if dtype.startswith(("int", "uint")) and flat.size and (
        int(flat.max()) > _EXACT_INT_LIMIT or int(flat.min()) < -_EXACT_INT_LIMIT
    ):
        raise InvalidUpdate(f"tensor {name!r} holds integers beyond 2^53, which float64 cannot carry exactly")


def flatten(update: Any) -> tuple[npt.NDArray[np.float64], UpdateSpec]:
    """One float64 vector holding every value of ``update``, and the spec to rebuild it."""
    if isinstance(update, np.ndarray) or (np.isscalar(update) and not isinstance(update, str)):
        spec, vec = _numpy_part("0", update)
        return vec, UpdateSpec("array", (spec,))
    if isinstance(update, Mapping):
        if not update:
            raise InvalidUpdate("update is an empty mapping")
        values = list(update.values())
        is_torch = [_is_torch_tensor(v) for v in values]
        if any(is_torch) and not all(is_torch):
            raise InvalidUpdate("update mixes torch tensors and other values")
        parts = []
        for key, value in update.items():
            if not isinstance(key, str):
                raise InvalidUpdate(f"update keys must be strings, got {key!r}")
            parts.append(_torch_part(key, value) if is_torch[0] else _numpy_part(key, value))
        kind: UpdateKind = "torch" if is_torch[0] else "dict"
    elif isinstance(update, Sequence) and not isinstance(update, (str, bytes)):
        if not update:
            raise InvalidUpdate("update is an empty sequence")
        parts = [_numpy_part(str(i), v) for i, v in enumerate(update)]
        kind = "tuple" if isinstance(update, tuple) else "list"
    elif _is_torch_tensor(update):
        raise InvalidUpdate("a single torch tensor is not an update; pass a state_dict ({name: tensor})")
    else:
        raise InvalidUpdate(f"cannot flatten an update of type {type(update).__name__}")
    specs = tuple(p[0] for p in parts)
    vector = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0)
    return vector, UpdateSpec(kind, specs)


def _restore_numpy(chunk: np.ndarray, spec: TensorSpec) -> np.ndarray:
    dtype = np.dtype(spec.dtype)
    if dtype == np.bool_:
        return (np.rint(chunk) != 0).reshape(spec.shape)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(chunk), info.min, info.max).astype(dtype).reshape(spec.shape)
    return chunk.astype(dtype).reshape(spec.shape)


def unflatten(vector: npt.ArrayLike, spec: UpdateSpec) -> Any:
    """Rebuild the update described by ``spec`` from a flat vector of ``spec.size`` values."""
    vec = np.asarray(vector, dtype=np.float64)
    if vec.ndim != 1 or vec.shape[0] != spec.size:
        raise InvalidUpdate(f"vector of shape {vec.shape} does not match the spec's {spec.size} values")
    chunks: list[tuple[TensorSpec, np.ndarray]] = []
    offset = 0
    for t in spec.tensors:
        chunks.append((t, vec[offset : offset + t.size]))
        offset += t.size
    if spec.kind == "torch":
        import torch

        out: OrderedDict[str, Any] = OrderedDict()
        for t, chunk in chunks:
            if t.dtype in ("bfloat16", "float16", "float32", "float64"):
                tensor = torch.from_numpy(chunk.astype(np.float64).reshape(t.shape)).to(getattr(torch, t.dtype))
            else:
                tensor = torch.from_numpy(_restore_numpy(chunk, t))
            out[t.name] = tensor
        return out
    arrays = [_restore_numpy(chunk, t) for t, chunk in chunks]
    if spec.kind == "array":
        return arrays[0]
    if spec.kind == "dict":
        return {t.name: a for (t, _), a in zip(chunks, arrays)}
    return tuple(arrays) if spec.kind == "tuple" else arrays
