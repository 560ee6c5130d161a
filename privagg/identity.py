"""Long-term Ed25519 identities: who a party is, independent of any one session.

A :class:`Roster` maps each client id to its Ed25519 public key. It is *configuration*: every
party is given it out of band (a file, a node config), never by the server during a round, so a
client can refuse a round whose announced participants are not all in its own roster. A
:class:`SigningKey` is one party's secret half: it signs, and it never appears in a ``repr``,
a log, an exception or a pickle.

:class:`Identities` generates a roster with its signing keys, for simulations and tests.

Modes use these through :mod:`privagg.transcript`: what a party signs is always a transcript
digest of one session, so nothing signed in one session is valid in another.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from privagg.errors import ConfigurationError

__all__ = ["SIGNATURE_BYTES", "PUBLIC_KEY_BYTES", "Roster", "SigningKey", "Identities"]

SIGNATURE_BYTES = 64
PUBLIC_KEY_BYTES = 32


def _public_key(cid: int, key: object) -> Ed25519PublicKey:
    if isinstance(key, (bytes, bytearray)):
        try:
            key = Ed25519PublicKey.from_public_bytes(bytes(key))
        except ValueError:
            raise ConfigurationError(f"roster key of client {cid} is not an Ed25519 public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigurationError(f"roster key of client {cid} is not an Ed25519 public key")
    return key


class Roster:
    """Client id -> Ed25519 public key (public information, configured on every party)."""

    def __init__(self, keys: Mapping[int, Ed25519PublicKey | bytes]) -> None:
        self._keys: dict[int, Ed25519PublicKey] = {}
        for cid, key in keys.items():
            if isinstance(cid, bool) or not isinstance(cid, int) and not hasattr(cid, "__index__"):
                raise ConfigurationError(f"roster id {cid!r} is not an integer")
            self._keys[int(cid)] = _public_key(int(cid), key)

    def __contains__(self, cid: object) -> bool:
        return cid in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def __iter__(self) -> Iterator[int]:
        return iter(sorted(self._keys))

    @property
    def ids(self) -> frozenset[int]:
        return frozenset(self._keys)

    def missing(self, ids: Iterable[int]) -> list[int]:
        """The ids of ``ids`` that this roster does not know, sorted."""
        return sorted(cid for cid in ids if cid not in self._keys)

    def verify(self, cid: int, signature: bytes, payload: bytes) -> bool:
        """True when ``signature`` is ``cid``'s Ed25519 signature of ``payload`` (never raises)."""
        key = self._keys.get(cid)
        if key is None or len(signature) != SIGNATURE_BYTES:
            return False
        try:
            key.verify(bytes(signature), payload)
            return True
        except InvalidSignature:
            return False

    def public_bytes(self) -> dict[int, bytes]:
        return {cid: k.public_bytes(Encoding.Raw, PublicFormat.Raw) for cid, k in self._keys.items()}

    def subset(self, ids: Iterable[int]) -> Roster:
        wanted = list(ids)
        unknown = self.missing(wanted)
        if unknown:
            raise ConfigurationError(f"clients {unknown[:5]} are not in the roster")
        return Roster({cid: self._keys[cid] for cid in wanted})

    # -- files: one JSON object {"id": "hex public key", ...} --------------------------------
    def to_json(self) -> str:
        return json.dumps({str(cid): key.hex() for cid, key in sorted(self.public_bytes().items())}, indent=1)

    @classmethod
    def from_json(cls, text: str) -> Roster:
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise ValueError("not an object")
            return cls({int(cid): bytes.fromhex(key) for cid, key in data.items()})
        except (ValueError, TypeError, AttributeError) as exc:
            raise ConfigurationError(f"not a roster file ({{\"id\": \"hex Ed25519 key\"}}): {exc}") from None

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Roster:
        return cls.from_json(Path(path).read_text())

    def save(self, path: str | os.PathLike[str]) -> None:
        Path(path).write_text(self.to_json())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Roster) and self.public_bytes() == other.public_bytes()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Roster({len(self._keys)} clients)"


class SigningKey:
    """One party's Ed25519 signing key. It signs; it is never printed, pickled or copied."""

    __slots__ = ("_key",)

    def __init__(self, key: Ed25519PrivateKey) -> None:
        if not isinstance(key, Ed25519PrivateKey):
            raise ConfigurationError("a signing key must be an Ed25519 private key")
        self._key = key

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_bytes(cls, data: bytes) -> SigningKey:
        if len(data) != 32:
            raise ConfigurationError("an Ed25519 signing key is 32 bytes")
        return cls(Ed25519PrivateKey.from_private_bytes(bytes(data)))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SigningKey:
        """Read a key file written by :meth:`save` (32 raw bytes, hex-encoded)."""
        try:
            return cls.from_bytes(bytes.fromhex(Path(path).read_text().strip()))
        except ValueError:
            raise ConfigurationError(f"{os.fspath(path)!r} is not a signing key file") from None

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the key, readable by its owner only."""
        raw = self._key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(raw.hex())

    def sign(self, payload: bytes) -> bytes:
        return self._key.sign(payload)

    def public_key(self) -> Ed25519PublicKey:
        return self._key.public_key()

    def public_bytes(self) -> bytes:
        return self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    def __repr__(self) -> str:
        return "SigningKey(<secret>)"

    def __reduce__(self) -> None:  # type: ignore[override]
        raise TypeError("a signing key cannot be pickled")

    def __copy__(self) -> None:
        raise TypeError("a signing key cannot be copied")

    def __deepcopy__(self, memo: object) -> None:
        raise TypeError("a signing key cannot be copied")


def as_signing_key(key: SigningKey | Ed25519PrivateKey | None) -> SigningKey | None:
    """Accept either form (``cryptography``'s key or ours)."""
    if key is None or isinstance(key, SigningKey):
        return key
    return SigningKey(key)


class Identities:
    """Signing keys generated on demand for simulations: ``roster`` is public, ``signing_key`` is not.

    A client configured with ``Identities`` trusts exactly the ids generated so far, so create
    the identities (or the client sessions) of a round before its server announces it.
    """

    def __init__(self, client_ids: Iterable[int] = ()) -> None:
        self._lock = threading.Lock()
        self._private: dict[int, SigningKey] = {}
        for cid in client_ids:
            self.signing_key(cid)

    def signing_key(self, cid: int) -> SigningKey:
        with self._lock:
            cid = int(cid)
            if cid not in self._private:
                self._private[cid] = SigningKey.generate()
            return self._private[cid]

    def known(self) -> Roster:
        """The roster of every identity generated so far."""
        with self._lock:
            return Roster({cid: key.public_key() for cid, key in self._private.items()})

    def roster(self, client_ids: Iterable[int] | None = None) -> Roster:
        ids = list(self._private) if client_ids is None else list(client_ids)
        return Roster({cid: self.signing_key(cid).public_key() for cid in ids})

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write ``roster.json`` and one ``client-<id>.key`` per identity (provisioning files for
        deployments such as the Flower integration); returns the roster file's path."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        for cid, key in sorted(self._private.items()):
            key.save(out / f"client-{cid}.key")
        path = out / "roster.json"
        self.known().save(path)
        return path

    def __repr__(self) -> str:
        return f"Identities({len(self._private)} clients)"

    def __reduce__(self) -> None:  # type: ignore[override]
        raise TypeError("Identities hold private signing keys and cannot be pickled")
