"""The messages of a CKKS round (wire type ids 0x02xx).

Ciphertexts travel as SEAL serializations in a ``BytesMap`` keyed by their position (0, 1, ...
in the packed update): privagg's codec bounds the count and every length before anything is
allocated, and :func:`ciphertext_blobs` checks the positions. The bytes themselves are only
ever handed to SEAL through :meth:`he.ring.Ring.load_ciphertext`, which checks each blob's
header against the round's parameters first (:mod:`he.serialization`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from he.keys import KEY_ID_BYTES
from privagg.errors import ProtocolViolation
from privagg.messages import F64, MAX_MESSAGE_BYTES, U64, Bytes, BytesMap, IdList, Message, Vector, message_type, wire

__all__ = ["KeySetupRequest", "KeyAdvertisement", "DealRequest", "DealtKeys", "EncryptRequest", "Ciphertexts",
           "DecryptRequest", "DecryptedAggregate", "ciphertext_blobs", "as_ciphertext_map", "DIGEST_BYTES",
           "NO_KEY_ID", "MAX_CIPHERTEXT_BYTES", "MAX_KEY_PACKAGE_BYTES"]

DIGEST_BYTES = 32
#: Sent by a server that does not know which key the clients share (it learns it from them).
NO_KEY_ID = bytes(KEY_ID_BYTES)
#: Bound on one serialized ciphertext (N=32768 with 15 primes, two polynomials, fits).
MAX_CIPHERTEXT_BYTES = 1 << 24
#: Bound on one wrapped shared key (a SEAL secret key of the largest ring, encrypted).
MAX_KEY_PACKAGE_BYTES = 1 << 22
_MAX_CLIENTS = 1 << 20
_X25519 = Bytes(exact_len=32)
_PACKAGES = BytesMap(max_entries=_MAX_CLIENTS, max_value_len=MAX_KEY_PACKAGE_BYTES)
_CIPHERTEXTS = BytesMap(max_entries=1 << 20, max_value_len=MAX_CIPHERTEXT_BYTES)
_DIGEST = Bytes(exact_len=DIGEST_BYTES)
_KEY_ID = Bytes(exact_len=KEY_ID_BYTES)


def as_ciphertext_map(blobs: list[bytes] | tuple[bytes, ...]) -> dict[int, bytes]:
    return dict(enumerate(blobs))


def ciphertext_blobs(ciphertexts: Mapping[int, bytes], expected: int, who: str) -> list[bytes]:
    """The blobs in order, refusing anything but exactly positions ``0 .. expected-1``."""
    if len(ciphertexts) != expected or any(i not in ciphertexts for i in range(expected)):
        raise ProtocolViolation(f"{who} sent {len(ciphertexts)} ciphertexts (positions "
                                f"{sorted(ciphertexts)[:3]}...); expected positions 0..{expected - 1}")
    return [ciphertexts[i] for i in range(expected)]


@message_type(0x0201, "he.encrypt_request")
@dataclass(frozen=True, eq=False)
class EncryptRequest(Message):
    """Server -> client: encrypt your update under these parameters (digest) and this key;
    ``key_package`` carries the key wrapped to this client when the round dealt it (else empty)."""

    params_digest: bytes = wire(_DIGEST)
    key_id: bytes = wire(_KEY_ID)
    key_package: bytes = wire(Bytes(MAX_KEY_PACKAGE_BYTES))


@message_type(0x0202, "he.ciphertexts")
@dataclass(frozen=True, eq=False)
class Ciphertexts(Message):
    """Client -> server: the update, ``n_values`` reals packed into CKKS ciphertexts, and the
    client's Ed25519 signature of them on the session (:func:`he.transcript.upload_payload`;
    empty only in an unauthenticated configuration)."""

    key_id: bytes = wire(_KEY_ID)
    n_values: int = wire(U64())
    ciphertexts: dict[int, bytes] = wire(_CIPHERTEXTS)
    signature: bytes = wire(Bytes(64))


@message_type(0x0203, "he.decrypt_request")
@dataclass(frozen=True, eq=False)
class DecryptRequest(Message):
    """Server -> key holder: the aggregate ciphertexts of ``contributors``, to decrypt once, and
    each contributor's signed upload as it sent it (:class:`Ciphertexts` bytes; empty only in
    an unauthenticated configuration), from which the key holder recomputes the sum
    (:mod:`he.binding`)."""

    params_digest: bytes = wire(_DIGEST)
    key_id: bytes = wire(_KEY_ID)
    contributors: tuple[int, ...] = wire(IdList(_MAX_CLIENTS))
    n_values: int = wire(U64())
    ciphertexts: dict[int, bytes] = wire(_CIPHERTEXTS)
    uploads: dict[int, bytes] = wire(BytesMap(max_entries=_MAX_CLIENTS, max_value_len=MAX_MESSAGE_BYTES))


@message_type(0x0204, "he.decrypted_aggregate")
@dataclass(frozen=True, eq=False)
class DecryptedAggregate(Message):
    """Key holder -> server: the flooded, rounded sum of ``contributors``' updates."""

    contributors: tuple[int, ...] = wire(IdList(_MAX_CLIENTS))
    vector: np.ndarray = wire(Vector(("float64",)))
    noise_std: float = wire(F64())


@message_type(0x0205, "he.key_setup_request")
@dataclass(frozen=True, eq=False)
class KeySetupRequest(Message):
    """Server -> client (in-round key setup): advertise a key-agreement key for these parameters."""

    params_digest: bytes = wire(_DIGEST)


@message_type(0x0206, "he.key_advertisement")
@dataclass(frozen=True, eq=False)
class KeyAdvertisement(Message):
    """Client -> server: a fresh X25519 public key, for the dealer to wrap the shared key to, and
    the client's signature of it for this round (:func:`he.transcript.advert_payload`)."""

    public_key: bytes = wire(_X25519)
    signature: bytes = wire(Bytes(64))


@message_type(0x0207, "he.deal_request")
@dataclass(frozen=True, eq=False)
class DealRequest(Message):
    """Server -> the dealing client: make the round's shared key and wrap it to these peers (each
    value: the peer's 32-byte X25519 key, then its 64-byte advertisement signature if signed)."""

    params_digest: bytes = wire(_DIGEST)
    peers: dict[int, bytes] = wire(BytesMap(max_entries=_MAX_CLIENTS, max_value_len=96))


@message_type(0x0208, "he.dealt_keys")
@dataclass(frozen=True, eq=False)
class DealtKeys(Message):
    """Dealer -> server: the new key's public id and one package per peer (opaque to the server)."""

    key_id: bytes = wire(_KEY_ID)
    packages: dict[int, bytes] = wire(_PACKAGES)
