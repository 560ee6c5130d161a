"""Continuous Gaussian noise for the central and local mechanisms.

The generator is seeded with 128 bits from the operating system's CSPRNG for every draw, never
from a user seed or numpy's global state. Floating-point Gaussian noise carries no formal DP
guarantee on real hardware (Mironov 2012 shows how the gaps between floats can leak); the
mechanisms that use it say so, and the distributed discrete Gaussian, which draws exact integer
noise, is the mode to use where a formal guarantee is required.
"""

from __future__ import annotations

import secrets

import numpy as np
import numpy.typing as npt

__all__ = ["gaussian_noise"]


def gaussian_noise(stddev: float, size: int) -> npt.NDArray[np.float64]:
    rng = np.random.Generator(np.random.PCG64DXSM(secrets.randbits(128)))
    return rng.standard_normal(size) * stddev
