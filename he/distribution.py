"""Handing the clients' shared key to another client through a server that must not read it.

In ``key_holder="clients"`` mode the whole security argument is that the server never holds
the secret key, yet in most federations the server is the only channel between clients. So the
client that generated the key encrypts it to each peer: an ephemeral X25519 key agreement with
the recipient's long-term X25519 public key, HKDF-SHA256 (bound to the ring and the key id),
and AES-256-GCM whose associated data binds the ephemeral key, the recipient's key, the key id
and the ring. The server can relay the result and learns nothing but its size; a tampered or
misdirected package fails to open (:class:`~privagg.errors.MalformedMessage`); a small-order
X25519 key on either side (the all-zero point) is refused (:class:`~privagg.errors.ProtocolViolation`).

Authenticated by default: the sender signs the package with its roster identity
(:class:`~privagg.identity.SigningKey`; the signature covers the whole package, the recipient's
X25519 key and a ``context`` the caller binds, e.g. the round), and :func:`unwrap_shared_key`
opens only a package whose signature verifies against the recipient's own
:class:`~privagg.identity.Roster`, from the agreed ``dealer`` when one is named. So a server
relaying packages can neither swap in a key of its own nor pass off another member's package.
``authenticated=False`` (both sides) is the unsigned version-1 package, for a channel that is
authentic already. That the recipient X25519 keys are the recipients' own is the dealer's
check: in the in-round setup each advertisement is signed (:mod:`he.client`); provisioned keys
are pinned out of band.
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
from he.transcript import LABEL
from privagg.errors import ConfigurationError, MalformedMessage, ProtocolViolation
from privagg.identity import SIGNATURE_BYTES, Roster, SigningKey
from privagg.transcript import Transcript

__all__ = ["wrap_shared_key", "unwrap_shared_key"]

_MAGIC = b"PAHW"
_VERSION = 1  # unsigned
_SIGNED = 2  # the head carries the sender id; a signature follows the AEAD ciphertext
_HEAD = struct.Struct("<4sB32s16s12s")
_SENDER = struct.Struct("<Q")


def _raw(public: X25519PublicKey) -> bytes:
    return public.public_bytes(Encoding.Raw, PublicFormat.Raw)


def _key(shared: bytes, ring: bytes, key_id: bytes) -> AESGCM:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=b"privagg-he/shared-key-wrap/v1\x00" + ring + key_id)
    return AESGCM(hkdf.derive(shared))


def _signed_payload(package_without_signature: bytes, recipient_raw: bytes, context: bytes) -> bytes:
    return (Transcript(LABEL + b"/key-package").bytes("package", package_without_signature)
            .bytes("recipient", recipient_raw).bytes("context", context).digest())


def wrap_shared_key(key: SharedKey, recipient: X25519PublicKey, signing_key: SigningKey | None = None, *,
                    sender_id: int = 0, context: bytes = b"", authenticated: bool = True) -> bytes:
    """``key`` encrypted to ``recipient`` (safe to relay through the server), signed by
    ``signing_key``, the identity of roster member ``sender_id`` (``authenticated=False``: unsigned)."""
    if authenticated and not isinstance(signing_key, SigningKey):
        raise ConfigurationError("wrap_shared_key signs the package: pass the sender's signing_key and sender_id "
                                 "(or authenticated=False on a channel that is authentic already)")
    ephemeral = X25519PrivateKey.generate()
    ephemeral_raw = _raw(ephemeral.public_key())
    nonce = os.urandom(12)
    head = _HEAD.pack(_MAGIC, _SIGNED if authenticated else _VERSION, ephemeral_raw, key.key_id, nonce)
    if authenticated:
        head += _SENDER.pack(sender_id)
    aead = _key(x25519_agree(ephemeral, recipient, "the recipient's X25519 key"), key.params_ring, key.key_id)
    body = head + aead.encrypt(nonce, key.export_secret(), head + _raw(recipient) + key.params_ring)
    if not authenticated:
        return body
    assert signing_key is not None
    return body + signing_key.sign(_signed_payload(body, _raw(recipient), context))


def package_sender(package: bytes) -> int | None:
    """The roster id a signed package names as its sender (None: unsigned); not yet verified."""
    if len(package) < _HEAD.size + _SENDER.size or bytes(package[4:5]) != bytes([_SIGNED]):
        return None
    return int(_SENDER.unpack_from(package, _HEAD.size)[0])


def unwrap_shared_key(params: CKKSParameters, package: bytes, recipient: X25519PrivateKey, *,
                      roster: Roster | None = None, dealer: int | None = None, context: bytes = b"",
                      authenticated: bool = True) -> SharedKey:
    """Open a package made by :func:`wrap_shared_key` for ``recipient``: signed by a member of
    ``roster`` (``dealer``: by that member only) over ``context``, unless ``authenticated=False``."""
    if not isinstance(package, (bytes, bytearray)) or len(package) < _HEAD.size + 16:
        raise MalformedMessage("truncated shared-key package")
    magic, version, ephemeral_raw, key_id, nonce = _HEAD.unpack_from(package)
    if magic != _MAGIC or version not in (_VERSION, _SIGNED):
        raise MalformedMessage("not a privagg shared-key package")
    recipient_raw = _raw(recipient.public_key())
    head_size = _HEAD.size
    end = len(package)
    if authenticated:
        if not isinstance(roster, Roster):
            raise ConfigurationError("unwrap_shared_key checks the sender: pass the roster (and the agreed dealer), "
                                     "or authenticated=False")
        if version != _SIGNED:
            raise ProtocolViolation("the shared-key package is not signed; an unsigned key is refused")
        if len(package) < _HEAD.size + _SENDER.size + 16 + SIGNATURE_BYTES:
            raise MalformedMessage("truncated shared-key package")
        sender = int(_SENDER.unpack_from(package, _HEAD.size)[0])
        if dealer is not None and sender != dealer:
            raise ProtocolViolation(f"the shared-key package comes from client {sender}, not the agreed "
                                    f"dealer {dealer}")
        end = len(package) - SIGNATURE_BYTES
        body = bytes(package[:end])
        if not roster.verify(sender, bytes(package[end:]), _signed_payload(body, recipient_raw, context)):
            raise ProtocolViolation(f"the shared-key package carries no valid signature of client {sender} for this "
                                    f"recipient and context; refused")
        head_size += _SENDER.size
    elif version != _VERSION:
        raise MalformedMessage("a signed shared-key package needs authenticated=True and the roster")
    head = bytes(package[:head_size])
    ring = ring_id(params)
    ephemeral = X25519PublicKey.from_public_bytes(ephemeral_raw)
    aead = _key(x25519_agree(recipient, ephemeral, "the package's ephemeral X25519 key"), ring, key_id)
    try:
        secret = aead.decrypt(nonce, bytes(package[head_size:end]), head + recipient_raw + ring)
    except InvalidTag:
        raise MalformedMessage("shared-key package does not open: tampered, for another recipient or "
                               "another ring") from None
    key = SharedKey.import_secret(params, secret)
    if key.key_id != key_id or len(key_id) != KEY_ID_BYTES:
        raise MalformedMessage("shared-key package names another key than it holds")
    return key
