"""L2 clipping: the bound on one client's contribution that every DP mechanism starts from."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from privagg.encoding.fixed_point import as_float_vector
from privagg.errors import ConfigurationError

__all__ = ["clip_l2", "check_positive"]


def check_positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ConfigurationError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def clip_l2(vector: npt.ArrayLike, clip_norm: float) -> npt.NDArray[np.float64]:
    """``vector`` scaled down (never up) so that its L2 norm is at most ``clip_norm``.

    The result's norm is checked after scaling, as float rounding could otherwise leave it a
    hair above the bound the noise is calibrated to.
    """
    check_positive("clip_norm", clip_norm)
    vec = as_float_vector(vector)
    norm = float(np.linalg.norm(vec))
    if norm > clip_norm:
        vec *= clip_norm / norm
        while float(np.linalg.norm(vec)) > clip_norm:  # at most a step or two of 1 ulp
            vec *= 1 - 2.0**-52
    return vec
