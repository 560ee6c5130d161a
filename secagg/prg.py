"""Masks: AES-256-CTR keystreams expanded into vectors modulo ``2**bits``.

A 32-byte seed keys AES-256 in counter mode from a zero counter block; the keystream is read
as little-endian words of the vector's dtype and reduced modulo ``2**bits`` (a power of two
divides the word size, so the result is exactly uniform). The keystream is written straight
into the output array: no intermediate copies, which keeps mask generation at the speed of
AES itself.
"""

from __future__ import annotations

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from privagg.encoding.modular import modulus_mask, uint_dtype

__all__ = ["expand_mask", "keystream_into"]

_ZERO_BLOCK = bytes(16)
_ZEROS = bytearray(1 << 20)  # a shared zero plaintext, fed to the cipher chunk by chunk


def keystream_into(seed: bytes, out: np.ndarray) -> np.ndarray:
    """Fill ``out`` (any contiguous array) with the AES-256-CTR keystream of ``seed``."""
    if len(seed) != 32:
        raise ValueError("mask seeds are 32 bytes")
    encryptor = Cipher(algorithms.AES(seed), modes.CTR(_ZERO_BLOCK)).encryptor()
    buffer = memoryview(out).cast("B")
    chunk = len(_ZEROS)
    for start in range(0, len(buffer), chunk):
        end = min(start + chunk, len(buffer))
        # update_into wants room for one extra block; the last chunk goes through update().
        if end - start == chunk:
            encryptor.update_into(memoryview(_ZEROS)[: chunk - 16], buffer[start : end - 16])
            buffer[end - 16 : end] = encryptor.update(bytes(16))
        else:
            buffer[start:end] = encryptor.update(bytes(end - start))
    return out


def expand_mask(seed: bytes, length: int, bits: int) -> np.ndarray:
    """The mask vector of ``length`` values in ``[0, 2**bits)`` derived from ``seed``."""
    out = np.empty(length, dtype=uint_dtype(bits).newbyteorder("<"))
    keystream_into(seed, out)
    out = out.astype(uint_dtype(bits), copy=False)
    if bits not in (32, 64):
        np.bitwise_and(out, modulus_mask(bits), out=out)
    return out
