"""Long-term Ed25519 identities for active security.

A :class:`Roster` maps each client id to its Ed25519 public key; every client session is
given the roster (public) and its own signing key (secret). Clients sign the keys they
advertise and the survivor set they are asked to unmask for, binding both to the round and to
the digest of the model they trained on; each verifies its peers' signatures, so a server
that substitutes keys, forges a survivor set or sends different models is caught.

:class:`Identities` generates a roster with its private keys, for simulations and tests. Its
private keys never appear in a ``repr`` and it refuses to be pickled.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Iterable, Mapping

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from privagg.errors import ConfigurationError

__all__ = ["SIGNATURE_BYTES", "Roster", "Identities", "advertise_payload", "survivors_payload"]

SIGNATURE_BYTES = 64
_LABEL = b"privagg/secagg/v1/"


class Roster:
    """Client id -> Ed25519 public key (public information, given to every client)."""

    def __init__(self, keys: Mapping[int, Ed25519PublicKey | bytes]) -> None:
        self._keys: dict[int, Ed25519PublicKey] = {}
        for cid, key in keys.items():
            if isinstance(key, (bytes, bytearray)):
                try:
                    key = Ed25519PublicKey.from_public_bytes(bytes(key))
                except ValueError:
                    raise ConfigurationError(f"roster key of client {cid} is not an Ed25519 public key") from None
            if not isinstance(key, Ed25519PublicKey):
                raise ConfigurationError(f"roster key of client {cid} is not an Ed25519 public key")
            self._keys[int(cid)] = key

    def __contains__(self, cid: object) -> bool:
        return cid in self._keys

    def verify(self, cid: int, signature: bytes, payload: bytes) -> bool:
        key = self._keys.get(cid)
        if key is None or len(signature) != SIGNATURE_BYTES:
            return False
        try:
            key.verify(signature, payload)
            return True
        except InvalidSignature:
            return False

    def public_bytes(self) -> dict[int, bytes]:
        return {cid: k.public_bytes(Encoding.Raw, PublicFormat.Raw) for cid, k in self._keys.items()}

    def __repr__(self) -> str:
        return f"Roster({len(self._keys)} clients)"


class Identities:
    """Signing keys generated on demand for simulations: ``roster`` is public, ``signing_key`` is not."""

    def __init__(self, client_ids: Iterable[int] = ()) -> None:
        self._lock = threading.Lock()
        self._private: dict[int, Ed25519PrivateKey] = {}
        for cid in client_ids:
            self.signing_key(cid)

    def signing_key(self, cid: int) -> Ed25519PrivateKey:
        with self._lock:
            if cid not in self._private:
                self._private[int(cid)] = Ed25519PrivateKey.generate()
            return self._private[cid]

    def roster(self, client_ids: Iterable[int] | None = None) -> Roster:
        ids = list(self._private) if client_ids is None else list(client_ids)
        return Roster({cid: self.signing_key(cid).public_key() for cid in ids})

    def __repr__(self) -> str:
        return f"Identities({len(self._private)} clients)"

    def __reduce__(self) -> None:  # type: ignore[override]
        raise TypeError("Identities hold private signing keys and cannot be pickled")


def advertise_payload(round_id: int, cid: int, model_digest: bytes, cipher_pk: bytes, mask_pk: bytes) -> bytes:
    return _LABEL + b"advertise" + struct.pack("<QQ", round_id, cid) + model_digest + cipher_pk + mask_pk


def survivors_payload(round_id: int, model_digest: bytes, survivors: Iterable[int]) -> bytes:
    ids = sorted(survivors)
    return _LABEL + b"survivors" + struct.pack(f"<QQ{len(ids)}Q", round_id, len(ids), *ids) + model_digest
