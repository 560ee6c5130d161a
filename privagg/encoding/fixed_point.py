"""Fixed-point encoding of float updates as integers modulo ``2**bits``.

A value ``x`` is clipped to ``[-clip, clip]``, multiplied by ``scale``, rounded to an integer
and stored modulo ``2**bits`` (two's complement). The sum of ``n`` encoded inputs decodes
exactly to the sum of the rounded inputs as long as ``n * ceil(clip * scale) < 2**(bits-1)``;
:meth:`FixedPoint.check_capacity` checks that before a round starts, so an overflow can never
show up as a silently wrong sum.

Rounding:

* ``"deterministic"`` rounds to the nearest integer (ties to even). The error per value is at
  most ``0.5 / scale``; it is a fixed function of the input, so the same update always encodes
  to the same integers, but the error is biased for inputs that sit consistently off-grid.
* ``"stochastic"`` rounds up with probability equal to the fractional part. The error per value
  is below ``1 / scale`` but *unbiased* in expectation, which matters when many small updates
  are summed (quantization noise averages out instead of accumulating). The randomness is not
  secret; it comes from a seeded generator when a seed is given, from the OS otherwise.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

from privagg.encoding.modular import UIntArray, check_bits, reduce_mod, to_signed
from privagg.errors import ConfigurationError, EncodingOverflow, InvalidUpdate

__all__ = ["FixedPoint", "Rounding", "as_float_vector"]

Rounding = Literal["deterministic", "stochastic"]


def as_float_vector(values: npt.ArrayLike, *, what: str = "update") -> npt.NDArray[np.float64]:
    """A 1-D float64 copy of ``values``, refusing non-numeric, complex, NaN and inf entries."""
    arr = np.asarray(values)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise InvalidUpdate(f"{what} has unsupported dtype {arr.dtype}; expected real numbers")
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise InvalidUpdate(f"{what} has complex dtype {arr.dtype}; expected real numbers")
    if arr.ndim != 1:
        raise InvalidUpdate(f"{what} must be a flat vector, got shape {arr.shape}; use privagg.flatten")
    vec = arr.astype(np.float64)
    finite = np.isfinite(vec)
    if not finite.all():
        bad = int(np.flatnonzero(~finite)[0])
        kind = "NaN" if math.isnan(vec[bad]) else "inf"
        raise InvalidUpdate(
            f"{what} contains {int((~finite).sum())} non-finite values (first: {kind} at index {bad})"
        )
    return vec


@dataclass(frozen=True)
class FixedPoint:
    """Encode floats in ``[-clip, clip]`` as integers modulo ``2**bits``.

    Give either ``scale`` (integers per unit) or ``max_clients``, from which the largest
    power-of-two scale that still lets ``max_clients`` inputs sum without overflow is derived.
    """

    bits: int = 32
    clip: float = 1.0
    scale: float | None = None
    max_clients: int = 1024
    rounding: Rounding = "deterministic"
    _max_int: int = field(init=False, repr=False, compare=False, default=0)

    def __post_init__(self) -> None:
        check_bits(self.bits)
        if not (isinstance(self.clip, (int, float)) and math.isfinite(self.clip) and self.clip > 0):
            raise ConfigurationError(f"clip must be a positive finite number, got {self.clip!r}")
        if self.rounding not in ("deterministic", "stochastic"):
            raise ConfigurationError(
                f"rounding must be 'deterministic' or 'stochastic', got {self.rounding!r}"
            )
        if not isinstance(self.max_clients, int) or self.max_clients < 1:
            raise ConfigurationError(f"max_clients must be a positive integer, got {self.max_clients!r}")
        half = (1 << (self.bits - 1)) - 1
        scale = self.scale
        if scale is None:
            per_client = half / (self.max_clients * self.clip)
            if per_client < 1:
                raise EncodingOverflow(self.max_clients, self.bits, self.clip, 1.0)
            scale = float(2 ** math.floor(math.log2(per_client)))
            object.__setattr__(self, "scale", scale)
        if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
            raise ConfigurationError(f"scale must be a positive finite number, got {scale!r}")
        object.__setattr__(self, "_max_int", math.ceil(self.clip * scale))
        if self._max_int >= (1 << (self.bits - 1)):
            raise EncodingOverflow(1, self.bits, self.clip, scale)

    @property
    def resolution(self) -> float:
        """The float value of one integer step, ``1 / scale``."""
        return 1.0 / float(self.scale)  # type: ignore[arg-type]

    @property
    def capacity(self) -> int:
        """How many inputs can be summed without wrapping around."""
        return ((1 << (self.bits - 1)) - 1) // self._max_int

    def check_capacity(self, clients: int) -> None:
        """Raise :class:`EncodingOverflow` if ``clients`` inputs could overflow the modulus."""
        if clients > self.capacity:
            raise EncodingOverflow(clients, self.bits, self.clip, float(self.scale))  # type: ignore[arg-type]

    def max_error(self, clients: int) -> float:
        """Bound on ``|decode(sum of encodings) - sum of clipped inputs|`` per coordinate.

        Rounding contributes ``0.5 / scale`` (deterministic) or ``1 / scale`` (stochastic) per
        input; float64 arithmetic (scaling, and converting the integer sum back) a few ulps of
        ``clip`` per input, which only shows at 50+ bits.
        """
        per_value = 0.5 if self.rounding == "deterministic" else 1.0
        return clients * (per_value / float(self.scale) + 4 * self.clip * 2.0**-53)  # type: ignore[arg-type]

    def encode(self, values: npt.ArrayLike, *, seed: int | None = None) -> UIntArray:
        """Clip, scale, round and reduce a flat float vector modulo ``2**bits``.

        ``seed`` only matters for stochastic rounding (reproducible tests); without it the
        rounding coins come from the OS.
        """
        vec = as_float_vector(values)
        np.clip(vec, -self.clip, self.clip, out=vec)
        vec *= float(self.scale)  # type: ignore[arg-type]
        if self.rounding == "deterministic":
            np.rint(vec, out=vec)
        else:
            rng = np.random.default_rng(seed if seed is not None else secrets.randbits(128))
            vec += rng.random(vec.shape[0])
            np.floor(vec, out=vec)
        # Clipping guarantees |vec| <= ceil(clip * scale), the bound check_capacity assumes.
        return reduce_mod(vec.astype(np.int64), self.bits)

    def decode(self, total: UIntArray, *, clients: int | None = None) -> npt.NDArray[np.float64]:
        """Turn a sum of encoded inputs (modulo ``2**bits``) back into floats.

        Give ``clients`` (how many inputs the sum holds) to have the capacity checked too.
        """
        if clients is not None:
            self.check_capacity(clients)
        return to_signed(np.asarray(total), self.bits).astype(np.float64) / float(self.scale)  # type: ignore[arg-type]

    def quantize(self, values: npt.ArrayLike, *, seed: int | None = None) -> npt.NDArray[np.float64]:
        """What one input becomes after encoding and decoding (clipping and rounding applied)."""
        return self.decode(self.encode(values, seed=seed))
