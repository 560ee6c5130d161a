"""Gaussian flooding noise from a cryptographic keystream.

The noise that hides a decryption's error must be unpredictable to whoever sees the released
values, so it never comes from numpy's or Python's generators: a fresh 256-bit key from the
operating system drives a ChaCha20 keystream (``cryptography``), whose 64-bit words become
uniforms in (0, 1] with 53 bits each, and Box-Muller turns pairs of uniforms into standard
normals. No formal (differential-privacy) guarantee is claimed for this noise; its job is to
drown the encryption error (see :mod:`he.release`).
"""

from __future__ import annotations

import os

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

__all__ = ["gaussian"]


def _uniforms(count: int) -> npt.NDArray[np.float64]:
    """``count`` uniforms in (0, 1] with 53 random bits each."""
    cipher = Cipher(algorithms.ChaCha20(os.urandom(32), os.urandom(16)), mode=None).encryptor()
    words = np.frombuffer(cipher.update(bytes(8 * count)), dtype="<u8")
    return ((words >> np.uint64(11)).astype(np.float64) + 1.0) * 2.0**-53


def gaussian(count: int, std: float) -> npt.NDArray[np.float64]:
    """``count`` independent N(0, std^2) samples (Box-Muller on keystream uniforms)."""
    pairs = (count + 1) // 2
    u = _uniforms(2 * pairs)
    radius = np.sqrt(-2.0 * np.log(u[:pairs]))
    angle = 2.0 * np.pi * u[pairs:]
    out = np.empty(2 * pairs)
    out[0::2] = radius * np.cos(angle)
    out[1::2] = radius * np.sin(angle)
    return out[:count] * std
