"""The randomized Walsh-Hadamard rotation of the distributed discrete Gaussian mechanism.

Before rounding and noising, DDG (Kairouz, Liu, Steinke, ICML 2021) rotates each client's
vector by ``R = H D / sqrt(d)``: ``D`` is a diagonal of random signs and ``H`` the ``d x d``
Walsh-Hadamard matrix (Sylvester order), ``d`` the length padded to a power of two. ``R`` is
orthogonal, so L2 norms are kept, and it spreads any vector's mass over all coordinates
(a one-hot vector becomes ``+-1/sqrt(d)`` everywhere), which is what makes coordinate-wise
rounding and modular clipping cheap. The server undoes it on the aggregate with
``R^T = D H / sqrt(d)``.

The signs are public but must be the same for every party: they come from a 32-byte seed
through AES-256-CTR (keyed by a SHA-256 of a domain label and the seed, so a seed reused for
masks yields an unrelated stream), bit ``j`` of the keystream, least significant bit of each
byte first, giving the sign of coordinate ``j`` (0 -> +1, 1 -> -1). Nothing depends on numpy's
generators or version.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from privagg.errors import ConfigurationError, InvalidUpdate

__all__ = ["padded_dimension", "rotation_signs", "rotate", "unrotate", "checked_vector"]

_SIGN_DOMAIN = b"privagg/dp/rotation-signs/v1\x00"
SEED_BYTES = 32


def padded_dimension(length: int) -> int:
    """The smallest power of two ``>= length``: the dimension a vector is rotated in."""
    if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 1:
        raise ConfigurationError(f"length must be a positive int, got {length!r}")
    return 1 << (int(length) - 1).bit_length()


def _checked_seed(seed: bytes) -> bytes:
    if not isinstance(seed, (bytes, bytearray, memoryview)):
        raise ConfigurationError(f"the rotation seed must be bytes, not {type(seed).__name__}")
    seed = bytes(seed)
    if len(seed) != SEED_BYTES:
        raise ConfigurationError(f"the rotation seed must be {SEED_BYTES} bytes, got {len(seed)}")
    return seed


def rotation_signs(seed: bytes, dimension: int) -> npt.NDArray[np.float64]:
    """The diagonal of ``D``: ``dimension`` signs (+1.0 / -1.0) derived from ``seed``."""
    seed = _checked_seed(seed)
    if isinstance(dimension, bool) or not isinstance(dimension, (int, np.integer)) or dimension < 1:
        raise ConfigurationError(f"dimension must be a positive int, got {dimension!r}")
    key = hashlib.sha256(_SIGN_DOMAIN + seed).digest()
    encryptor = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor()
    stream = encryptor.update(bytes((int(dimension) + 7) // 8))
    bits = np.unpackbits(np.frombuffer(stream, dtype=np.uint8), bitorder="little")[:dimension]
    return 1.0 - 2.0 * bits.astype(np.float64)


def _walsh_hadamard(vector: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """``H x / sqrt(d)`` for a float64 vector of power-of-two length ``d``, in O(d log d).

    Each pass combines the two halves of every block of ``2h`` entries into their sum and
    difference; ``log2 d`` passes build Sylvester's ``H``. The result is a new array.
    """
    d = vector.size
    out = vector.copy()
    half = 1
    while half < d:
        blocks = out.reshape(-1, 2, half)
        first, second = blocks[:, 0, :], blocks[:, 1, :]
        total = first + second
        np.subtract(first, second, out=second)
        first[...] = total
        half *= 2
    out *= 1.0 / math.sqrt(d)
    return out


def checked_vector(vector: npt.ArrayLike, name: str) -> npt.NDArray[np.float64]:
    """``vector`` as a non-empty 1-D float64 array of finite reals, or ``InvalidUpdate`` naming ``name``."""
    array = np.asarray(vector)
    if array.dtype.kind not in "iuf":
        raise InvalidUpdate(f"{name} must hold real numbers, got dtype {array.dtype}")
    if array.ndim != 1 or array.size == 0:
        raise InvalidUpdate(f"{name} must be a non-empty 1-D array, got shape {array.shape}")
    array = array.astype(np.float64)
    if not np.isfinite(array).all():
        raise InvalidUpdate(f"{name} contains NaN or inf")
    return array


def rotate(vector: npt.ArrayLike, seed: bytes) -> npt.NDArray[np.float64]:
    """``H D x / sqrt(d)`` of ``vector`` zero-padded to ``d = padded_dimension(len)``.

    Returns a new float64 array of length ``d`` with the same L2 norm as ``vector``.
    """
    x = checked_vector(vector, "the vector to rotate")
    d = padded_dimension(x.size)
    padded = np.zeros(d, dtype=np.float64)
    padded[: x.size] = x
    padded *= rotation_signs(seed, d)
    return _walsh_hadamard(padded)


def unrotate(rotated: npt.ArrayLike, seed: bytes, original_length: int) -> npt.NDArray[np.float64]:
    """The inverse of ``rotate``: ``D H y / sqrt(d)``, truncated to ``original_length``."""
    y = checked_vector(rotated, "the rotated vector")
    d = padded_dimension(original_length)
    if y.size != d:
        raise ConfigurationError(
            f"a rotated vector of original length {original_length} has length {d}, got {y.size}"
        )
    x = _walsh_hadamard(y)
    x *= rotation_signs(seed, d)
    return x[: int(original_length)]
