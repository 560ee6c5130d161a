"""The model in Flower's ``ArrayRecord`` as the flat vector privagg aggregates, and back.

Clients aggregate, by default, their *delta* (trained model minus the model they received)
rather than the trained weights: a delta is small, so it fits the fixed-point clipping range
and a DP clipping norm, and ``global + mean(delta)`` is FedAvg's uniform mean of the trained
models. ``update="weights"`` aggregates the weights themselves (their range must then fit
the encoding). Everything goes through :func:`privagg.flatten`, exact for every dtype; the
server rebuilds the record with the model's own keys, shapes and dtypes.

:func:`model_digest` is what active security binds every signature to: the SHA-256 transcript
of the model a node received, so nodes given different models refuse each other's keys.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from flwr.app import Array, ArrayRecord

from privagg.encoding.structure import UpdateSpec, flatten, unflatten
from privagg.errors import InvalidUpdate
from privagg.transcript import Transcript

__all__ = ["ModelLayout", "flatten_record", "update_vector", "apply_aggregate", "model_digest"]

_DIGEST_LABEL = b"privagg/flower/model/v1"


@dataclass(frozen=True)
class ModelLayout:
    """The keys of an ``ArrayRecord`` and the spec of its flattened arrays."""

    keys: tuple[str, ...]
    spec: UpdateSpec

    @property
    def size(self) -> int:
        return self.spec.size


def flatten_record(record: ArrayRecord) -> tuple[npt.NDArray[np.float64], ModelLayout]:
    """One float64 vector of every value in ``record`` (in key order), and its layout."""
    if not isinstance(record, ArrayRecord) or not len(record):
        raise InvalidUpdate("the model must be a non-empty ArrayRecord")
    try:
        arrays = record.to_numpy_ndarrays()
    except (TypeError, ValueError) as exc:
        raise InvalidUpdate(f"the model's arrays cannot be read as numpy arrays: {exc}") from None
    vector, spec = flatten(list(arrays))
    return vector, ModelLayout(tuple(record.keys()), spec)


def update_vector(received: tuple[npt.NDArray[np.float64], ModelLayout], trained: ArrayRecord,
                  update: str) -> npt.NDArray[np.float64]:
    """What a client aggregates: ``trained - received`` (``"delta"``) or ``trained`` (``"weights"``).

    ``received`` is the flattened model as it arrived (taken before ``train`` may consume the
    record). The trained record must have its keys, shapes and dtypes: anything else is an
    :class:`InvalidUpdate` raised on the client, before any byte leaves it.
    """
    base, layout = received
    vector, trained_layout = flatten_record(trained)
    if trained_layout != layout:
        raise InvalidUpdate(
            f"train returned arrays {list(trained_layout.keys)[:6]} of {trained_layout.size} values, "
            f"not the model it received ({list(layout.keys)[:6]}, {layout.size} values, same shapes and dtypes)")
    if not np.isfinite(vector).all():
        raise InvalidUpdate("train returned non-finite values")
    if update == "delta":
        return vector - base
    if update == "weights":
        return vector
    raise InvalidUpdate(f"update must be 'delta' or 'weights', got {update!r}")


def apply_aggregate(model: ArrayRecord, mean: npt.NDArray[np.float64], update: str) -> ArrayRecord:
    """The next global model: ``model + mean`` for deltas, ``mean`` for weights, in the model's dtypes."""
    base, layout = flatten_record(model)
    if mean.shape != base.shape:
        raise InvalidUpdate(f"aggregate of {mean.shape[0]} values for a model of {base.shape[0]}")
    vector = base + mean if update == "delta" else mean
    arrays = unflatten(vector, layout.spec)
    return ArrayRecord({key: Array(np.asarray(a)) for key, a in zip(layout.keys, arrays)})


def model_digest(record: ArrayRecord) -> bytes:
    """32 bytes naming exactly this model: SHA-256 over each array's name, dtype, shape and bytes.

    The arrays go in the record's own order, the order :func:`flatten_record` flattens them in,
    so equal digests mean equal layouts as well as equal values (a node handed the same arrays
    in another order would otherwise sum its update into the wrong coordinates). Each field is
    labelled and length-prefixed (:class:`~privagg.transcript.Transcript`): no two models hash
    alike by re-cutting names and bytes. The node computes it from the record it received; a
    server or a test computes it from the record it sent.
    """
    if not isinstance(record, ArrayRecord):
        raise InvalidUpdate(f"the model must be an ArrayRecord, got {type(record).__name__}")
    transcript = Transcript(_DIGEST_LABEL).int("arrays", len(record))
    for name, array in record.items():
        try:
            values = np.asarray(array.numpy())
        except (TypeError, ValueError) as exc:
            raise InvalidUpdate(f"array {name!r} of the model cannot be read: {exc}") from None
        transcript.text("name", name).text("dtype", values.dtype.str).ints("shape", values.shape)
        transcript.bytes("data", values.tobytes(order="C"))
    return transcript.digest()
