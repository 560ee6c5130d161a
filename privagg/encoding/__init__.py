"""Encoding lives here once and every mode uses it: fixed-point integers modulo ``2**bits``,
arithmetic on such vectors, and exact flattening of structured updates."""

from privagg.encoding.fixed_point import FixedPoint, Rounding, as_float_vector
from privagg.encoding.modular import (
    add_mod,
    check_bits,
    modulus_mask,
    neg_mod,
    reduce_mod,
    sub_mod,
    sum_mod,
    to_signed,
    uint_dtype,
)
from privagg.encoding.structure import TensorSpec, UpdateSpec, flatten, unflatten

__all__ = [
    "FixedPoint", "Rounding", "as_float_vector", "add_mod", "check_bits", "modulus_mask",
    "neg_mod", "reduce_mod", "sub_mod", "sum_mod", "to_signed", "uint_dtype",
    "TensorSpec", "UpdateSpec", "flatten", "unflatten",
]
