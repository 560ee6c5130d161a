"""The messages of a secure-aggregation round (wire type ids 0x01xx), protocol v2.

An advertisement travels as ``cipher_pk || mask_pk || seed_commitment || nonce_commitment ||
signature`` (96 bytes in semi-honest rounds, 192 in active ones); shares as ``nonce ||
AES-GCM(b-share || key-share) || tag``; unmasking shares as 33-byte field elements. Lengths
that the codec only bounds are checked exactly by the sessions (:data:`ADVERT_BYTES`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from privagg.identity import SIGNATURE_BYTES
from privagg.messages import U64, Bool, Bytes, BytesMap, IdList, Message, PackedVector, Text, message_type, wire
from secagg.keys import KEY_BYTES, NONCE_BYTES, TAG_BYTES
from secagg.shamir import SHARE_BYTES

__all__ = ["AdvertiseRequest", "AdvertiseKeys", "GraphRequest", "GraphReveal", "KeysBroadcast",
           "EncryptedShares", "MaskedInputRequest", "MaskedInput", "ConsistencyRequest", "ConsistencySignature",
           "UnmaskRequest", "UnmaskShares", "SHARE_CIPHERTEXT_BYTES", "COMMITMENT_BYTES", "ENTRY_BYTES",
           "advert_bytes", "MAX_ROSTER"]

SHARE_CIPHERTEXT_BYTES = NONCE_BYTES + 2 * SHARE_BYTES + TAG_BYTES
COMMITMENT_BYTES = 32
#: One roster entry of an active SecAgg+ graph request: advert digest || nonce commitment.
ENTRY_BYTES = 64
#: The largest roster a message can name (the encoding's ``max_clients`` bounds real rounds).
MAX_ROSTER = 1 << 20
_KEYS = BytesMap(MAX_ROSTER, 3 * KEY_BYTES + COMMITMENT_BYTES + SIGNATURE_BYTES)
_SHARES = BytesMap(MAX_ROSTER, SHARE_CIPHERTEXT_BYTES)
_FIELD = BytesMap(MAX_ROSTER, SHARE_BYTES)
_SIGS = BytesMap(MAX_ROSTER, SIGNATURE_BYTES)
_ENTRIES = BytesMap(MAX_ROSTER, ENTRY_BYTES)
_REVEALS = BytesMap(MAX_ROSTER, COMMITMENT_BYTES)


def advert_bytes(active: bool) -> int:
    """The exact length of one relayed advertisement."""
    return 2 * KEY_BYTES + COMMITMENT_BYTES + (COMMITMENT_BYTES + SIGNATURE_BYTES if active else 0)


@message_type(0x0111, "secagg.advertise_request")
@dataclass(frozen=True, eq=False)
class AdvertiseRequest(Message):
    """Server -> client: the round's public parameters; a client checks every one against its
    own configuration. ``nonce`` is the server's fresh randomness for this session;
    ``graph_seed`` is used by semi-honest SecAgg+ only (active rounds fix it by commit-reveal)."""

    roster: tuple[int, ...] = wire(IdList(MAX_ROSTER))
    graph_seed: bytes = wire(Bytes(exact_len=32))
    nonce: bytes = wire(Bytes(exact_len=32))
    neighbours: int = wire(U64())
    threshold: int = wire(U64())
    quorum: int = wire(U64())
    bits: int = wire(U64())
    dimension: int = wire(U64())
    active: bool = wire(Bool())
    protocol: str = wire(Text(64))


@message_type(0x0112, "secagg.advertise_keys")
@dataclass(frozen=True, eq=False)
class AdvertiseKeys(Message):
    """Client -> server: this session's two X25519 public keys, a commitment to the self-mask
    seed, and (active) a commitment to fresh randomness and a signature over all of it."""

    cipher_pk: bytes = wire(Bytes(exact_len=KEY_BYTES))
    mask_pk: bytes = wire(Bytes(exact_len=KEY_BYTES))
    seed_commitment: bytes = wire(Bytes(exact_len=COMMITMENT_BYTES))
    nonce_commitment: bytes = wire(Bytes(COMMITMENT_BYTES))
    signature: bytes = wire(Bytes(SIGNATURE_BYTES))


@message_type(0x0113, "secagg.graph_request")
@dataclass(frozen=True, eq=False)
class GraphRequest(Message):
    """Server -> client (active SecAgg+): every advertised entry (advert digest, nonce
    commitment), which fixes the session before anyone reveals randomness."""

    entries: dict[int, bytes] = wire(_ENTRIES)


@message_type(0x0114, "secagg.graph_reveal")
@dataclass(frozen=True, eq=False)
class GraphReveal(Message):
    """Client -> server (active SecAgg+): the randomness behind its nonce commitment."""

    reveal: bytes = wire(Bytes(exact_len=COMMITMENT_BYTES))


@message_type(0x0115, "secagg.keys_broadcast")
@dataclass(frozen=True, eq=False)
class KeysBroadcast(Message):
    """Server -> client: the advertisements of the client's live neighbours (and its own), and
    (active SecAgg+) every entry's reveal, from which the client derives the graph itself."""

    keys: dict[int, bytes] = wire(_KEYS)
    reveals: dict[int, bytes] = wire(_REVEALS)


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

    survivors: tuple[int, ...] = wire(IdList(MAX_ROSTER))


@message_type(0x0108, "secagg.consistency_signature")
@dataclass(frozen=True, eq=False)
class ConsistencySignature(Message):
    signature: bytes = wire(Bytes(exact_len=SIGNATURE_BYTES))


@message_type(0x0109, "secagg.unmask_request")
@dataclass(frozen=True, eq=False)
class UnmaskRequest(Message):
    """Server -> client: who survived (and, in active mode, their signatures on that set)."""

    survivors: tuple[int, ...] = wire(IdList(MAX_ROSTER))
    signatures: dict[int, bytes] = wire(_SIGS)


@message_type(0x010A, "secagg.unmask_shares")
@dataclass(frozen=True, eq=False)
class UnmaskShares(Message):
    """Client -> server: self-mask seed shares of survivors, mask-key shares of dropouts."""

    seed_shares: dict[int, bytes] = wire(_FIELD)
    key_shares: dict[int, bytes] = wire(_FIELD)
