"""Key agreement and derivations of one secure-aggregation round.

Each client holds two X25519 key pairs per round: ``cipher`` keys, from which pairwise AES-GCM
keys encrypt the Shamir shares it sends through the server, and ``mask`` keys, from which
pairwise mask seeds are derived. Every derived key is bound by HKDF-SHA256 to its purpose, the
session (the digest of the round's announced header, :func:`secagg.transcript.header_digest`,
which names the round id, the roster, the parameters and the server's fresh nonce) and the
(unordered) pair of client ids, so no key ever serves twice.
"""

from __future__ import annotations

import os
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from privagg.errors import ProtocolViolation

__all__ = ["KEY_BYTES", "NONCE_BYTES", "TAG_BYTES", "generate_key_pair", "public_bytes", "private_bytes",
           "private_from_bytes", "public_from_bytes", "pair_secret", "mask_seed", "share_key",
           "encrypt_share", "decrypt_share", "check_public_key"]

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
_LABEL = b"privagg/secagg/v1/"


def generate_key_pair() -> X25519PrivateKey:
    return X25519PrivateKey.generate()


def public_bytes(key: X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def private_bytes(key: X25519PrivateKey) -> bytes:
    return key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())


def private_from_bytes(data: bytes) -> X25519PrivateKey:
    return X25519PrivateKey.from_private_bytes(data)


def public_from_bytes(data: bytes, owner: int) -> X25519PublicKey:
    try:
        return X25519PublicKey.from_public_bytes(data)
    except ValueError:
        raise ProtocolViolation(f"client {owner}'s public key is not a valid X25519 key") from None


def _pair_info(purpose: bytes, session: bytes, a: int, b: int) -> bytes:
    low, high = min(a, b), max(a, b)
    return _LABEL + purpose + session + struct.pack("<QQ", low, high)


def pair_secret(private: X25519PrivateKey, peer: X25519PublicKey, peer_id: int) -> bytes:
    """The raw X25519 shared secret; a low-order peer key (all-zero result) is refused."""
    try:
        return private.exchange(peer)
    except ValueError:
        raise ProtocolViolation(f"key agreement with client {peer_id} failed (low-order public key)") from None


def _hkdf(secret: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=info).derive(secret)


def mask_seed(secret: bytes, session: bytes, a: int, b: int) -> bytes:
    """Seed of the pairwise mask between clients ``a`` and ``b`` (the same on both sides)."""
    return _hkdf(secret, _pair_info(b"pairwise-mask", session, a, b))


def share_key(secret: bytes, session: bytes, a: int, b: int) -> bytes:
    """AES-256-GCM key for the shares ``a`` and ``b`` send each other through the server."""
    return _hkdf(secret, _pair_info(b"share-encryption", session, a, b))


def _share_ad(session: bytes, sender: int, recipient: int) -> bytes:
    return _LABEL + b"share" + session + struct.pack("<QQ", sender, recipient)


def encrypt_share(key: bytes, plaintext: bytes, *, session: bytes, sender: int, recipient: int) -> bytes:
    """``nonce || AES-GCM(plaintext)``, bound to session, sender and recipient by associated data."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, _share_ad(session, sender, recipient))


def decrypt_share(key: bytes, ciphertext: bytes, *, session: bytes, sender: int, recipient: int) -> bytes:
    if len(ciphertext) < NONCE_BYTES + TAG_BYTES:
        raise ProtocolViolation(f"the share from client {sender} is truncated")
    try:
        return AESGCM(key).decrypt(ciphertext[:NONCE_BYTES], ciphertext[NONCE_BYTES:],
                                   _share_ad(session, sender, recipient))
    except InvalidTag:
        raise ProtocolViolation(
            f"the share from client {sender} does not authenticate for this session and recipient {recipient}"
        ) from None


_PROBE = X25519PrivateKey.generate()


def check_public_key(data: bytes, owner: int) -> None:
    """Refuse bytes that are not a usable X25519 public key: a low-order point makes every
    key agreement with it all-zero (found with a throwaway key: no secret is involved)."""
    try:
        _PROBE.exchange(X25519PublicKey.from_public_bytes(data))
    except ValueError:
        raise ProtocolViolation(f"client {owner}'s public key is not a usable X25519 key (low order)") from None
