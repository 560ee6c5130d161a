"""A decryptor's key pair of one round, announced under its Ed25519 identity.

A :class:`~he.decryptor.Decryptor` without long-term keys makes a fresh CKKS key pair for every
round id it is asked about (:meth:`~he.decryptor.Decryptor.round_key`) and drops the secret
half once it released (or refused) that round. The announcement that reaches the clients,
relayed by the server in the ``key_package`` of the :class:`~he.messages.EncryptRequest`, is:

``b"PARK" | version | round id (u64) | public key length (u32) | public key | signature (64)``

signed over :func:`announcement_payload` (parameters, round id, the public key's bytes) with
the decryptor's identity, which every client is configured with (``decryptor_identity=``). A
client encrypts only to a key the decryptor signed for *its own* round id, so the server can
neither substitute a key of its own nor reuse an old round's key.

Why per round: a malicious client can always sign a crafted upload ``Enc(0) + (0, K)`` whose
release hands it the round's secret key (:mod:`he.binding` explains why no practical check
stops it). With a key per round, that key opens that round's uploads only, never a later one.
"""

from __future__ import annotations

import hashlib
import struct

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from he.keys import PublicKey
from he.params import CKKSParameters
from he.transcript import LABEL
from privagg.errors import MalformedMessage, ProtocolViolation
from privagg.identity import SIGNATURE_BYTES, SigningKey
from privagg.transcript import Transcript

__all__ = ["announce_round_key", "open_round_key", "announcement_payload"]

_MAGIC = b"PARK"
_VERSION = 1
_HEAD = struct.Struct("<4sBQI")


def announcement_payload(params: CKKSParameters, round_id: int, public_key_bytes: bytes) -> bytes:
    return (Transcript(LABEL + b"/round-key").bytes("params", params.digest).int("round", round_id)
            .bytes("public_key", hashlib.sha256(public_key_bytes).digest()).digest())


def announce_round_key(params: CKKSParameters, round_id: int, public_key: PublicKey, identity: SigningKey) -> bytes:
    raw = public_key.to_bytes()
    return (_HEAD.pack(_MAGIC, _VERSION, round_id, len(raw)) + raw
            + identity.sign(announcement_payload(params, round_id, raw)))


def open_round_key(params: CKKSParameters, data: bytes, *, round_id: int,
                   decryptor_identity: Ed25519PublicKey | None) -> PublicKey:
    """The round's public key, if ``data`` is the decryptor's signed announcement for ``round_id``.

    ``decryptor_identity=None`` skips the signature (the server, which only reads the key id)."""
    if len(data) < _HEAD.size + SIGNATURE_BYTES:
        raise MalformedMessage("truncated round-key announcement")
    magic, version, announced, length = _HEAD.unpack_from(data)
    if magic != _MAGIC or version != _VERSION or len(data) != _HEAD.size + length + SIGNATURE_BYTES:
        raise MalformedMessage("not a privagg round-key announcement")
    raw = bytes(data[_HEAD.size:_HEAD.size + length])
    if announced != round_id:
        raise ProtocolViolation(f"the decryptor's key announcement is for round {announced}, not {round_id}")
    if decryptor_identity is not None:
        try:
            decryptor_identity.verify(bytes(data[-SIGNATURE_BYTES:]), announcement_payload(params, round_id, raw))
        except InvalidSignature:
            raise ProtocolViolation(f"the round key of round {round_id} is not signed by the configured "
                                    f"decryptor") from None
    return PublicKey.from_bytes(params, raw)
