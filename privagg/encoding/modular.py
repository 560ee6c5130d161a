"""Vectors of unsigned integers modulo ``2**bits``, the group every masking protocol adds in.

Values live in the smallest numpy unsigned type that holds ``bits`` bits (``uint32`` up to 32
bits, ``uint64`` up to 64), so a 32-bit round moves 4 bytes per parameter. Additions are done
in place: the server of a masking protocol keeps one running sum, not every vector.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from privagg.errors import ConfigurationError

__all__ = ["MAX_BITS", "check_bits", "uint_dtype", "modulus_mask", "reduce_mod", "add_mod",
           "sub_mod", "neg_mod", "sum_mod", "to_signed"]

MAX_BITS = 64

UIntArray = npt.NDArray[np.unsignedinteger]


def _shown(value: object, limit: int = 40) -> str:
    """``repr(value)`` cut to ``limit`` characters, for error messages about hostile arguments
    (the repr of an int of more than 4,300 digits even raises ``ValueError``)."""
    try:
        text = repr(value)
    except Exception:
        return f"<{type(value).__name__}>"
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def check_bits(bits: int) -> int:
    """Return ``bits`` if it is a supported modulus width, else raise ``ConfigurationError``."""
    if isinstance(bits, (bool, np.bool_)) or not isinstance(bits, (int, np.integer)) or not 2 <= bits <= MAX_BITS:
        raise ConfigurationError(f"bits must be an integer in [2, {MAX_BITS}], got {_shown(bits)}")
    return int(bits)


def uint_dtype(bits: int) -> np.dtype:
    """The narrowest unsigned dtype that holds values below ``2**bits``."""
    return np.dtype(np.uint32) if check_bits(bits) <= 32 else np.dtype(np.uint64)


def modulus_mask(bits: int) -> np.unsignedinteger:
    """``2**bits - 1`` in the dtype of :func:`uint_dtype`."""
    return uint_dtype(bits).type((1 << check_bits(bits)) - 1)


def _native_wrap(bits: int) -> bool:
    # At exactly the dtype's width the hardware's wrap-around *is* the reduction.
    return bits in (32, 64)


def _integer_array(values: npt.ArrayLike, what: str) -> npt.NDArray[np.integer]:
    try:
        arr = np.asarray(values)
    except (ValueError, TypeError, OverflowError) as exc:  # ragged lists, odd objects
        raise ConfigurationError(f"{what} needs an array of integers: {exc}") from None
    if not np.issubdtype(arr.dtype, np.integer) or arr.dtype.kind not in "iu":
        raise ConfigurationError(f"{what} needs integers, got dtype {arr.dtype}")
    return arr


def reduce_mod(values: npt.ArrayLike, bits: int) -> UIntArray:
    """Reduce integers (any sign, int64 or unsigned) modulo ``2**bits`` into :func:`uint_dtype`."""
    check_bits(bits)
    arr = _integer_array(values, "reduce_mod")
    # int64 -> uint64 is two's complement, which is already correct modulo 2**64.
    wide = arr.astype(np.uint64, copy=False) if arr.dtype != np.uint64 else arr
    if not _native_wrap(bits):
        wide = wide & np.uint64((1 << bits) - 1)
    # Casting uint64 to uint32 keeps the low 32 bits: the reduction modulo 2**32.
    return wide.astype(uint_dtype(bits), copy=False)


def add_mod(acc: UIntArray, other: UIntArray, bits: int) -> UIntArray:
    """``acc += other (mod 2**bits)`` in place; returns ``acc``."""
    np.add(acc, other, out=acc)
    if not _native_wrap(bits):
        np.bitwise_and(acc, modulus_mask(bits), out=acc)
    return acc


def sub_mod(acc: UIntArray, other: UIntArray, bits: int) -> UIntArray:
    """``acc -= other (mod 2**bits)`` in place; returns ``acc``."""
    np.subtract(acc, other, out=acc)
    if not _native_wrap(bits):
        np.bitwise_and(acc, modulus_mask(bits), out=acc)
    return acc


def neg_mod(values: UIntArray, bits: int) -> UIntArray:
    """``-values (mod 2**bits)`` as a new array."""
    out = np.zeros_like(values)
    return sub_mod(out, values, bits)


def sum_mod(vectors: list[UIntArray] | tuple[UIntArray, ...], bits: int, length: int | None = None) -> UIntArray:
    """The sum of ``vectors`` modulo ``2**bits`` (a zero vector of ``length`` when empty)."""
    if not vectors:
        if length is None:
            raise ConfigurationError("sum_mod of no vectors needs a length")
        return np.zeros(length, dtype=uint_dtype(bits))
    acc = np.array(vectors[0], dtype=uint_dtype(bits), copy=True)
    for vec in vectors[1:]:
        add_mod(acc, vec, bits)
    return acc


def to_signed(values: UIntArray, bits: int) -> npt.NDArray[np.int64]:
    """Centre residues modulo ``2**bits`` on zero: ``[2**(bits-1), 2**bits)`` maps to negatives."""
    bits = check_bits(bits)
    wide = _integer_array(values, "to_signed").astype(np.uint64, copy=True)
    if bits < 64:
        # r - 2**bits for the upper half, computed modulo 2**64: the two's complement of it.
        wide[wide >= np.uint64(1 << (bits - 1))] += np.uint64((1 << 64) - (1 << bits))
    return wide.view(np.int64)
