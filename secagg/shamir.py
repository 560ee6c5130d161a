"""Shamir t-of-n secret sharing of 32-byte secrets over the prime field GF(2^256 + 297).

The prime is the smallest above 2^256, so every 32-byte secret (a self-mask seed, an X25519
private key) is one field element: no chunking, one share of 33 bytes per secret. Polynomial
coefficients come from :mod:`secrets`. Reconstruction interpolates at zero with Lagrange
coefficients that are cached per set of x-coordinates: in a complete graph every secret is
rebuilt from the same holders, so the coefficients are computed once per round.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from functools import lru_cache

from privagg.errors import ConfigurationError

__all__ = ["PRIME", "SECRET_BYTES", "SHARE_BYTES", "split_secret", "reconstruct_secret",
           "share_to_bytes", "share_from_bytes"]

PRIME = 2**256 + 297
SECRET_BYTES = 32
SHARE_BYTES = 33


def split_secret(secret: bytes, xs: Iterable[int], threshold: int) -> dict[int, int]:
    """Shares of ``secret`` at each x in ``xs`` (distinct, in [1, PRIME)); any ``threshold`` rebuild it."""
    if len(secret) != SECRET_BYTES:
        raise ConfigurationError(f"secrets must be {SECRET_BYTES} bytes, got {len(secret)}")
    points = list(xs)
    if len(set(points)) != len(points) or any(not 0 < x < PRIME for x in points):
        raise ConfigurationError("share x-coordinates must be distinct and non-zero")
    if not 1 <= threshold <= len(points):
        raise ConfigurationError(f"threshold {threshold} must be in [1, {len(points)}] for {len(points)} shares")
    coefficients = [int.from_bytes(secret, "big")] + [secrets.randbelow(PRIME) for _ in range(threshold - 1)]
    shares = {}
    for x in points:
        acc = 0
        for c in reversed(coefficients):  # Horner
            acc = (acc * x + c) % PRIME
        shares[x] = acc
    return shares


@lru_cache(maxsize=4096)
def _lagrange_at_zero(xs: tuple[int, ...]) -> tuple[int, ...]:
    coefficients = []
    for i, xi in enumerate(xs):
        num, den = 1, 1
        for j, xj in enumerate(xs):
            if i != j:
                num = num * xj % PRIME
                den = den * (xj - xi) % PRIME
        coefficients.append(num * pow(den, -1, PRIME) % PRIME)
    return tuple(coefficients)


def reconstruct_secret(shares: Mapping[int, int], threshold: int) -> bytes:
    """Rebuild a secret from at least ``threshold`` shares ``{x: y}`` (uses the ``threshold`` smallest x)."""
    if len(shares) < threshold:
        raise ConfigurationError(f"{len(shares)} shares cannot rebuild a {threshold}-of-n secret")
    xs = tuple(sorted(shares)[:threshold])
    value = sum(lam * shares[x] for lam, x in zip(_lagrange_at_zero(xs), xs)) % PRIME
    if value >= 1 << (8 * SECRET_BYTES):
        # Only inconsistent shares can interpolate to a value no 32-byte secret has.
        raise ValueError("shares are inconsistent")
    return value.to_bytes(SECRET_BYTES, "big")


def share_to_bytes(share: int) -> bytes:
    return share.to_bytes(SHARE_BYTES, "big")


def share_from_bytes(data: bytes) -> int:
    if len(data) != SHARE_BYTES:
        raise ValueError(f"a share is {SHARE_BYTES} bytes, got {len(data)}")
    value = int.from_bytes(data, "big")
    if value >= PRIME:
        raise ValueError("share is not a field element")
    return value
