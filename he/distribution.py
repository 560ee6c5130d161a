"""Handing the clients' shared key to another client through a server that must not read it.

In ``key_holder="clients"`` mode the whole security argument is that the server never holds
the secret key, yet in most federations the server is the only channel between clients. So the
client that generated the key encrypts it to each peer: an ephemeral X25519 key agreement with
the recipient's long-term X25519 public key, HKDF-SHA256 (bound to the ring and the key id),
and AES-256-GCM whose associated data binds the ephemeral key, the recipient's key, the key id
and the ring. The server can relay the result and learns nothing but its size; a tampered or
misdirected package fails to open (:class:`~privagg.errors.MalformedMessage`); a small-order
X25519 key on either side (the all-zero point) is refused (:class:`~privagg.errors.ProtocolViolation`).

Authenticity of the recipients' public keys (that the server did not substitute its own) is
the deployment's job: pin them at provisioning, as ``secagg``'s active mode does with Ed25519.
"""

from __future__ import annotations

import os
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from he.keys import KEY_ID_BYTES, SharedKey, ring_id, x25519_agree
from he.params import CKKSParameters
from privagg.errors import MalformedMessage

__all__ = ["wrap_shared_key", "unwrap_shared_key"]

_MAGIC = b"PAHW"
_VERSION = 1
_HEAD = struct.Struct("<4sB32s16s12s")


def _raw(public: X25519PublicKey) -> bytes:
    return public.public_bytes(Encoding.Raw, PublicFormat.Raw)


def _key(shared: bytes, ring: bytes, key_id: bytes) -> AESGCM:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=b"privagg-he/shared-key-wrap/v1\x00" + ring + key_id)
    return AESGCM(hkdf.derive(shared))


def wrap_shared_key(key: SharedKey, recipient: X25519PublicKey) -> bytes:
    """``key`` encrypted to ``recipient`` (safe to relay through the server)."""
    ephemeral = X25519PrivateKey.generate()
    ephemeral_raw = _raw(ephemeral.public_key())
    nonce = os.urandom(12)
    head = _HEAD.pack(_MAGIC, _VERSION, ephemeral_raw, key.key_id, nonce)
    aead = _key(x25519_agree(ephemeral, recipient, "the recipient's X25519 key"), key.params_ring, key.key_id)
    return head + aead.encrypt(nonce, key.export_secret(), head + _raw(recipient) + key.params_ring)


def unwrap_shared_key(params: CKKSParameters, package: bytes, recipient: X25519PrivateKey) -> SharedKey:
    """Open a package made by :func:`wrap_shared_key` for ``recipient``."""
    if not isinstance(package, (bytes, bytearray)) or len(package) < _HEAD.size + 16:
        raise MalformedMessage("truncated shared-key package")
    magic, version, ephemeral_raw, key_id, nonce = _HEAD.unpack_from(package)
    if magic != _MAGIC or version != _VERSION:
        raise MalformedMessage("not a privagg shared-key package")
    head = bytes(package[: _HEAD.size])
    ring = ring_id(params)
    ephemeral = X25519PublicKey.from_public_bytes(ephemeral_raw)
    aead = _key(x25519_agree(recipient, ephemeral, "the package's ephemeral X25519 key"), ring, key_id)
    try:
        secret = aead.decrypt(nonce, bytes(package[_HEAD.size:]), head + _raw(recipient.public_key()) + ring)
    except InvalidTag:
        raise MalformedMessage("shared-key package does not open: tampered, for another recipient or "
                               "another ring") from None
    key = SharedKey.import_secret(params, secret)
    if key.key_id != key_id or len(key_id) != KEY_ID_BYTES:
        raise MalformedMessage("shared-key package names another key than it holds")
    return key
