"""The messages of a secure-aggregation round (wire type ids 0x01xx).

Public keys travel as ``cipher_pk || mask_pk || signature`` (64 or 128 bytes); shares as
``nonce || AES-GCM(b-share || key-share) || tag``; unmasking shares as 33-byte field elements.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from privagg.messages import U64, Bool, Bytes, BytesMap, IdList, Message, PackedVector, Text, message_type, wire
from secagg.identity import SIGNATURE_BYTES
from secagg.keys import KEY_BYTES, NONCE_BYTES, TAG_BYTES
from secagg.shamir import SHARE_BYTES

__all__ = ["AdvertiseRequest", "AdvertiseKeys", "KeysBroadcast", "EncryptedShares", "MaskedInputRequest",
           "MaskedInput", "ConsistencyRequest", "ConsistencySignature", "UnmaskRequest", "UnmaskShares",
           "SHARE_CIPHERTEXT_BYTES"]

SHARE_CIPHERTEXT_BYTES = NONCE_BYTES + 2 * SHARE_BYTES + TAG_BYTES
_MAX_CLIENTS = 1 << 20
_KEYS = BytesMap(_MAX_CLIENTS, 2 * KEY_BYTES + SIGNATURE_BYTES)
_SHARES = BytesMap(_MAX_CLIENTS, SHARE_CIPHERTEXT_BYTES)
_FIELD = BytesMap(_MAX_CLIENTS, SHARE_BYTES)
_SIGS = BytesMap(_MAX_CLIENTS, SIGNATURE_BYTES)


@message_type(0x0101, "secagg.advertise_request")
@dataclass(frozen=True, eq=False)
class AdvertiseRequest(Message):
    """Server -> client: the round's public parameters; clients check them against their own."""

    roster: tuple[int, ...] = wire(IdList(_MAX_CLIENTS))
    graph_seed: bytes = wire(Bytes(exact_len=32))
    neighbours: int = wire(U64())
    threshold: int = wire(U64())
    bits: int = wire(U64())
    active: bool = wire(Bool())
    protocol: str = wire(Text(64))


@message_type(0x0102, "secagg.advertise_keys")
@dataclass(frozen=True, eq=False)
class AdvertiseKeys(Message):
    """Client -> server: this round's two X25519 public keys (signed in active mode)."""

    cipher_pk: bytes = wire(Bytes(exact_len=KEY_BYTES))
    mask_pk: bytes = wire(Bytes(exact_len=KEY_BYTES))
    signature: bytes = wire(Bytes(SIGNATURE_BYTES))


@message_type(0x0103, "secagg.keys_broadcast")
@dataclass(frozen=True, eq=False)
class KeysBroadcast(Message):
    """Server -> client: the advertised keys of the client's live neighbours (and its own)."""

    keys: dict[int, bytes] = wire(_KEYS)


@message_type(0x0104, "secagg.encrypted_shares")
@dataclass(frozen=True, eq=False)
class EncryptedShares(Message):
    """Client -> server: one encrypted pair of shares per neighbour, keyed by recipient."""

    shares: dict[int, bytes] = wire(_SHARES)


@message_type(0x0105, "secagg.masked_input_request")
@dataclass(frozen=True, eq=False)
class MaskedInputRequest(Message):
    """Server -> client: the shares addressed to it, keyed by sender (who are the live peers)."""

    shares: dict[int, bytes] = wire(_SHARES)


@message_type(0x0106, "secagg.masked_input")
@dataclass(frozen=True, eq=False)
class MaskedInput(Message):
    """Client -> server: y = x + PRG(b) + sum of +-PRG(s_uv) mod 2^bits."""

    vector: np.ndarray = wire(PackedVector(("uint32", "uint64")))


@message_type(0x0107, "secagg.consistency_request")
@dataclass(frozen=True, eq=False)
class ConsistencyRequest(Message):
    """Server -> client (active): the survivor set, to be signed."""

    survivors: tuple[int, ...] = wire(IdList(_MAX_CLIENTS))


@message_type(0x0108, "secagg.consistency_signature")
@dataclass(frozen=True, eq=False)
class ConsistencySignature(Message):
    signature: bytes = wire(Bytes(exact_len=SIGNATURE_BYTES))


@message_type(0x0109, "secagg.unmask_request")
@dataclass(frozen=True, eq=False)
class UnmaskRequest(Message):
    """Server -> client: who survived (and, in active mode, their signatures on that set)."""

    survivors: tuple[int, ...] = wire(IdList(_MAX_CLIENTS))
    signatures: dict[int, bytes] = wire(_SIGS)


@message_type(0x010A, "secagg.unmask_shares")
@dataclass(frozen=True, eq=False)
class UnmaskShares(Message):
    """Client -> server: self-mask seed shares of survivors, mask-key shares of dropouts."""

    seed_shares: dict[int, bytes] = wire(_FIELD)
    key_shares: dict[int, bytes] = wire(_FIELD)
