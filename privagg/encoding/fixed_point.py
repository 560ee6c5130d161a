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

from privagg.encoding.modular import UIntArray, _shown, check_bits, reduce_mod, to_signed
from privagg.errors import ConfigurationError, EncodingOverflow, InvalidUpdate

__all__ = ["FixedPoint", "Rounding", "as_float_vector"]

Rounding = Literal["deterministic", "stochastic"]


def as_float_vector(values: npt.ArrayLike, *, what: str = "update") -> npt.NDArray[np.float64]:
    """A 1-D float64 copy of ``values``, refusing non-numeric, complex, NaN and inf entries."""
    try:
        arr = np.asarray(values)
    except (ValueError, TypeError, OverflowError) as exc:  # ragged lists, odd objects
        raise InvalidUpdate(f"{what} is not an array of real numbers: {exc}") from None
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise InvalidUpdate(f"{what} has complex dtype {arr.dtype}; expected real numbers")
    if arr.dtype.kind not in "biuf":  # object, str, bytes, datetime, timedelta, void
        raise InvalidUpdate(f"{what} has unsupported dtype {arr.dtype}; expected real numbers")
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


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _positive_float(name: str, value: object) -> float:
    """``value`` as a positive finite float (ints and numpy reals too, never a bool)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ConfigurationError(f"{name} must be a positive finite number, got {_shown(value)}")
    try:
        number = float(value)
    except OverflowError:  # an int beyond the float range
        raise ConfigurationError(f"{name} must be a positive finite number, got {_shown(value)}") from None
    if not (math.isfinite(number) and number > 0):
        raise ConfigurationError(f"{name} must be a positive finite number, got {_shown(value)}")
    return number


#: The largest power of two a float holds.
_MAX_EXPONENT = 1023
#: Client ids are u64: no round has more clients (larger counts are refused, not printed).
_MAX_CLIENTS = 1 << 64


def _derived_scale(clip: float, per_client: int) -> float | None:
    """The largest power-of-two scale ``2**k`` (``k >= 0``) with ``ceil(clip * 2**k) <= per_client``.

    Exact: ``clip`` is a binary fraction ``p / q``, and ``ceil(clip * 2**k) <= per_client``
    holds iff ``p * 2**k <= per_client * q`` (``per_client`` is an integer), so ``k`` is found with
    integers alone; no float rounding can give a scale one client short. ``None`` if even
    ``k = 0`` does not fit. (``clip * 2**k`` is then exact in floats too.)
    """
    p, q = clip.as_integer_ratio()
    a = per_client * q
    if p > a:
        return None
    k = a.bit_length() - p.bit_length()  # 2**(k-1) < a / p < 2**(k+1)
    if (p << k) > a:
        k -= 1
    return math.ldexp(1.0, min(k, _MAX_EXPONENT))


@dataclass(frozen=True)
class FixedPoint:
    """Encode floats in ``[-clip, clip]`` as integers modulo ``2**bits``.

    Give either ``scale`` (integers per unit) or ``max_clients``, from which the largest
    power-of-two scale that still lets ``max_clients`` inputs sum without overflow is derived,
    exactly (with integers: ``max_clients * ceil(clip * scale) < 2**(bits-1)`` always holds, at
    64 bits too). ``bits`` and ``max_clients`` take Python or numpy integers (never a bool),
    ``clip`` and ``scale`` positive finite Python or numpy reals; they are stored as ``int``
    and ``float``. Anything else is a :class:`ConfigurationError`, a clip and scale whose
    product does not fit an :class:`EncodingOverflow`.
    """

    bits: int = 32
    clip: float = 1.0
    scale: float | None = None
    max_clients: int = 1024
    rounding: Rounding = "deterministic"
    _max_int: int = field(init=False, repr=False, compare=False, default=0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "bits", check_bits(self.bits))
        object.__setattr__(self, "clip", _positive_float("clip", self.clip))
        if not isinstance(self.rounding, str) or self.rounding not in ("deterministic", "stochastic"):
            raise ConfigurationError(
                f"rounding must be 'deterministic' or 'stochastic', got {_shown(self.rounding)}"
            )
        if not _is_int(self.max_clients) or not 1 <= int(self.max_clients) <= _MAX_CLIENTS:
            raise ConfigurationError(
                f"max_clients must be an integer in [1, 2^64], got {_shown(self.max_clients)}"
            )
        object.__setattr__(self, "max_clients", int(self.max_clients))
        half = (1 << (self.bits - 1)) - 1
        if self.scale is None:
            scale = _derived_scale(self.clip, half // self.max_clients)
            if scale is None:
                raise EncodingOverflow(self.max_clients, self.bits, self.clip, 1.0)
        else:
            scale = _positive_float("scale", self.scale)
        object.__setattr__(self, "scale", scale)
        # The largest magnitude encode() can produce: it rounds fl(x * scale) with |x| <= clip,
        # and float multiplication is monotone, so no input goes beyond ceil(fl(clip * scale)).
        top = self.clip * scale
        if not math.isfinite(top) or top > half:
            raise EncodingOverflow(1, self.bits, self.clip, scale)
        object.__setattr__(self, "_max_int", max(1, math.ceil(top)))

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
        if not _is_int(clients) or not 0 <= int(clients) <= _MAX_CLIENTS:
            raise ConfigurationError(f"clients must be an integer in [0, 2^64], got {_shown(clients)}")
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
            coins = rng.random(vec.shape[0])
            # floor(v) + [u >= 1 - frac(v)], which is floor(v + u) computed exactly: the float sum
            # v + u can round up to floor(v) + 2 or, for an integral v, to v + 1, past the bound.
            low = np.floor(vec)
            vec -= low  # the fractional part, in [0, 1]
            np.subtract(1.0, vec, out=vec)
            vec = low + (coins >= vec)
        # Clipping guarantees |vec| <= ceil(clip * scale), the bound check_capacity assumes.
        return reduce_mod(vec.astype(np.int64), self.bits)

    def decode(self, total: UIntArray, *, clients: int | None = None) -> npt.NDArray[np.float64]:
        """Turn a sum of encoded inputs (modulo ``2**bits``) back into floats.

        Give ``clients`` (how many inputs the sum holds) to have the capacity checked too.
        """
        if clients is not None:
            self.check_capacity(clients)
        return to_signed(total, self.bits).astype(np.float64) / float(self.scale)  # type: ignore[arg-type]

    def quantize(self, values: npt.ArrayLike, *, seed: int | None = None) -> npt.NDArray[np.float64]:
        """What one input becomes after encoding and decoding (clipping and rounding applied)."""
        return self.decode(self.encode(values, seed=seed))
