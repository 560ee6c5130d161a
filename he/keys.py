"""Key material and who may hold it.

* :class:`SharedKey` (``key_holder="clients"``): one CKKS secret key shared by every client and
  never by the server. One client (or whoever provisions the federation) runs
  :meth:`SharedKey.generate`, and every other client receives it over a channel the server
  cannot read: :func:`he.distribution.wrap_shared_key` encrypts it to a client's X25519 public
  key (the server may relay the result), or it ships in each client's provisioning kit, as
  NVIDIA FLARE does with its TenSEAL context. Without provisioning, each round deals a fresh
  key that way inside the protocol (:mod:`he.config`). Clients encrypt with it symmetrically,
  which is what makes seeded (half-size) ciphertexts possible.
* :class:`DecryptorKeys` (``key_holder="decryptor"``): a key pair that only the decryptor
  party holds; clients get :class:`PublicKey` (its ``key_id`` is a hash of it, so a client can
  pin the key it expects) and encrypt with it.

Objects that hold a secret key never print it (``repr`` names the key id only), refuse
``pickle`` and ``copy`` (:class:`~he.errors.KeyRoleError`), and hand it out only through a
method whose name says so (``export_secret``). Secret bytes pass through a memory file (see
:mod:`he.memfile`), wiped after use, never a disk.
"""

from __future__ import annotations

import hashlib
import os
import struct
from typing import Any

import tenseal.sealapi as seal
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from he.errors import KeyRoleError
from he.memfile import MemoryFile
from he.params import CKKSParameters
from he.serialization import body_bound, check_seal_blob
from privagg.errors import ConfigurationError, MalformedMessage, ProtocolViolation

__all__ = ["SharedKey", "DecryptorKeys", "PublicKey", "SecretHolder", "ring_id", "KEY_ID_BYTES", "x25519_agree"]

KEY_ID_BYTES = 16
_SECRET_MAGIC = b"PAHK"
_PUBLIC_MAGIC = b"PAHP"
_VERSION = 1
_KIND_SHARED, _KIND_DECRYPTOR = 1, 2
_ENVELOPE = struct.Struct("<4sBB32s16s")


def ring_id(params: CKKSParameters) -> bytes:
    """What a key is bound to: the ring (degree and moduli), not the scale or the clip."""
    text = f"{params.poly_modulus_degree}:{','.join(map(str, params.coeff_modulus_bits))}"
    return hashlib.sha256(b"privagg-he/ring/v1\x00" + text.encode()).digest()


def x25519_agree(private: X25519PrivateKey, peer: X25519PublicKey, what: str) -> bytes:
    """The X25519 shared secret with ``peer``; a peer key of small order (the all-zero point,
    ``u = 1``, ...), which makes the secret all zeros whatever ``private`` is, raises
    :class:`ProtocolViolation`: a well-formed key the protocol refuses (its owner, or whoever
    substituted it, would know the secret)."""
    try:
        return private.exchange(peer)
    except ValueError:  # cryptography refuses an all-zero result ("Error computing shared key")
        raise ProtocolViolation(f"{what} is a small-order X25519 point (the agreement would be all zeros); "
                                f"refused") from None


def _context(params: CKKSParameters) -> Any:
    from he.ring import _context_for

    return _context_for(params.poly_modulus_degree, params.coeff_modulus_bits)[0]


def _key_bytes_bound(params: CKKSParameters) -> int:
    return body_bound(16 * params.poly_modulus_degree * len(params.coeff_modulus_bits) + 512)


def _load_seal(params: CKKSParameters, cls: Any, blob: bytes, what: str) -> Any:
    check_seal_blob(blob, max_bytes=_key_bytes_bound(params), what=what)
    obj = cls()
    memory = MemoryFile()
    try:
        memory.feed(blob, lambda path: obj.load(_context(params), path))
    except (RuntimeError, ValueError, MemoryError, OverflowError, TypeError) as exc:
        raise MalformedMessage(f"{what} does not load for these parameters: {exc}") from None
    finally:
        memory.close()
    return obj


def _dump_seal(obj: Any) -> bytes:
    memory = MemoryFile()
    try:
        return memory.dump(obj.save)
    finally:
        memory.close()


class SecretHolder:
    """Refuses every way of copying a secret key out by accident."""

    def __reduce_ex__(self, protocol: object) -> Any:
        raise KeyRoleError(f"{type(self).__name__} holds a CKKS secret key and cannot be pickled or copied; "
                           f"use export_secret() over a confidential channel")

    def __copy__(self) -> Any:
        return self.__reduce_ex__(0)

    def __deepcopy__(self, memo: object) -> Any:
        return self.__reduce_ex__(0)


def _envelope(kind: int, params: CKKSParameters, key_id: bytes, blobs: list[bytes]) -> bytes:
    parts = [_ENVELOPE.pack(_SECRET_MAGIC, _VERSION, kind, ring_id(params), key_id)]
    for blob in blobs:
        parts += [struct.pack("<I", len(blob)), blob]
    return b"".join(parts)


def _open_envelope(kind: int, params: CKKSParameters, data: bytes, count: int) -> tuple[bytes, list[bytes]]:
    if not isinstance(data, (bytes, bytearray)) or len(data) < _ENVELOPE.size:
        raise MalformedMessage("truncated key export")
    magic, version, got_kind, ring, key_id = _ENVELOPE.unpack_from(data)
    if magic != _SECRET_MAGIC or version != _VERSION or got_kind != kind:
        raise MalformedMessage("not a privagg CKKS key export of this kind")
    if ring != ring_id(params):
        raise ConfigurationError("the key was made for another ring (poly_modulus_degree or coefficient modulus)")
    blobs, pos = [], _ENVELOPE.size
    for _ in range(count):
        if pos + 4 > len(data):
            raise MalformedMessage("truncated key export")
        (length,) = struct.unpack_from("<I", data, pos)
        if pos + 4 + length > len(data):
            raise MalformedMessage("truncated key export")
        blobs.append(bytes(data[pos + 4: pos + 4 + length]))
        pos += 4 + length
    if pos != len(data):
        raise MalformedMessage("trailing bytes after key export")
    return key_id, blobs


class SharedKey(SecretHolder):
    """The clients' shared secret key (``key_holder="clients"``); see the module docstring."""

    def __init__(self, params: CKKSParameters, secret_key: Any, key_id: bytes, *, _token: object = None) -> None:
        if _token is not _PRIVATE:
            raise KeyRoleError("make a SharedKey with SharedKey.generate() or SharedKey.import_secret()")
        self.params_ring = ring_id(params)
        self._params = params
        self._secret_key = secret_key
        self.key_id = key_id

    @classmethod
    def generate(cls, params: CKKSParameters) -> SharedKey:
        """A fresh key; run by one client during setup, never by the server."""
        keygen = seal.KeyGenerator(_context(params))
        return cls(params, keygen.secret_key(), os.urandom(KEY_ID_BYTES), _token=_PRIVATE)

    def export_secret(self) -> bytes:
        """The secret key as bytes, for a confidential, authenticated channel to another client."""
        return _envelope(_KIND_SHARED, self._params, self.key_id, [_dump_seal(self._secret_key)])

    @classmethod
    def import_secret(cls, params: CKKSParameters, data: bytes) -> SharedKey:
        key_id, (blob,) = _open_envelope(_KIND_SHARED, params, data, 1)
        return cls(params, _load_seal(params, seal.SecretKey, blob, "secret key"), key_id, _token=_PRIVATE)

    def compatible_with(self, params: CKKSParameters) -> bool:
        return self.params_ring == ring_id(params)

    def encryptor(self) -> Any:
        return seal.Encryptor(_context(self._params), self._secret_key)

    def decryptor(self) -> Any:
        return seal.Decryptor(_context(self._params), self._secret_key)

    def __repr__(self) -> str:
        return f"SharedKey(key_id={self.key_id.hex()}, N={self._params.poly_modulus_degree})"


class PublicKey:
    """The decryptor's public key: what clients encrypt to. ``key_id`` pins it."""

    def __init__(self, params: CKKSParameters, blob: bytes) -> None:
        self._params = params
        self.params_ring = ring_id(params)
        self._seal = _load_seal(params, seal.PublicKey, blob, "public key")
        self.blob = blob
        self.key_id = hashlib.sha256(b"privagg-he/public-key/v1\x00" + blob).digest()[:KEY_ID_BYTES]

    def to_bytes(self) -> bytes:
        return _ENVELOPE.pack(_PUBLIC_MAGIC, _VERSION, _KIND_DECRYPTOR, ring_id(self._params), self.key_id) + self.blob

    @classmethod
    def from_bytes(cls, params: CKKSParameters, data: bytes) -> PublicKey:
        """Parse a public key received from elsewhere (checked before SEAL sees it)."""
        if not isinstance(data, (bytes, bytearray)) or len(data) < _ENVELOPE.size:
            raise MalformedMessage("truncated public key")
        magic, version, kind, ring, key_id = _ENVELOPE.unpack_from(data)
        if magic != _PUBLIC_MAGIC or version != _VERSION or kind != _KIND_DECRYPTOR:
            raise MalformedMessage("not a privagg CKKS public key")
        if ring != ring_id(params):
            raise ConfigurationError("the public key was made for another ring")
        key = cls(params, bytes(data[_ENVELOPE.size:]))
        if key.key_id != key_id:
            raise MalformedMessage("public key id does not match its bytes")
        return key

    def compatible_with(self, params: CKKSParameters) -> bool:
        return self.params_ring == ring_id(params)

    def encryptor(self) -> Any:
        return seal.Encryptor(_context(self._params), self._seal)

    def __repr__(self) -> str:
        return f"PublicKey(key_id={self.key_id.hex()})"


class DecryptorKeys(SecretHolder):
    """The decryptor's key pair (``key_holder="decryptor"``): only the decryptor holds it."""

    def __init__(self, params: CKKSParameters, secret_key: Any, public_key: PublicKey, *,
                 _token: object = None) -> None:
        if _token is not _PRIVATE:
            raise KeyRoleError("make DecryptorKeys with DecryptorKeys.generate() or .import_secret()")
        self._params = params
        self.params_ring = ring_id(params)
        self._secret_key = secret_key
        self.public_key = public_key

    @property
    def key_id(self) -> bytes:
        return self.public_key.key_id

    @classmethod
    def generate(cls, params: CKKSParameters) -> DecryptorKeys:
        keygen = seal.KeyGenerator(_context(params))
        public = seal.PublicKey()
        keygen.create_public_key(public)
        return cls(params, keygen.secret_key(), PublicKey(params, _dump_seal(public)), _token=_PRIVATE)

    def export_secret(self) -> bytes:
        """Both keys as bytes, for the decryptor's own safekeeping (e.g. an HSM-backed store)."""
        return _envelope(_KIND_DECRYPTOR, self._params, self.key_id,
                         [_dump_seal(self._secret_key), self.public_key.blob])

    @classmethod
    def import_secret(cls, params: CKKSParameters, data: bytes) -> DecryptorKeys:
        key_id, (secret_blob, public_blob) = _open_envelope(_KIND_DECRYPTOR, params, data, 2)
        public = PublicKey(params, public_blob)
        if public.key_id != key_id:
            raise MalformedMessage("key export id does not match its public key")
        secret = _load_seal(params, seal.SecretKey, secret_blob, "secret key")
        return cls(params, secret, public, _token=_PRIVATE)

    def compatible_with(self, params: CKKSParameters) -> bool:
        return self.params_ring == ring_id(params)

    def decryptor(self) -> Any:
        return seal.Decryptor(_context(self._params), self._secret_key)

    def __repr__(self) -> str:
        return f"DecryptorKeys(key_id={self.key_id.hex()})"


_PRIVATE = object()
