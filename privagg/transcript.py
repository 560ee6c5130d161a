"""Session transcripts: one running hash of everything a session has fixed so far.

Signatures in this library never cover a bare value (a key, a survivor set): they cover a
transcript digest that also names the protocol, its parameters, the participants and fresh
randomness of the session, so a signature made in one session verifies in no other. Each
field goes in with a label and a length prefix, so no two different sequences of fields hash
alike (no concatenation ambiguity), and the label of the whole transcript separates uses
(``b"privagg/secagg/v2"`` and ``b"privagg/he/v1"`` can never collide).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable

__all__ = ["Transcript", "DIGEST_BYTES"]

DIGEST_BYTES = 32
_LEN = struct.Struct("<Q")


class Transcript:
    """An append-only, domain-separated SHA-256 transcript."""

    __slots__ = ("_hash",)

    def __init__(self, label: bytes) -> None:
        self._hash = hashlib.sha256()
        self._field(b"transcript", label)

    def _field(self, label: bytes, data: bytes) -> None:
        self._hash.update(_LEN.pack(len(label)) + label + _LEN.pack(len(data)))
        self._hash.update(data)

    def bytes(self, label: str, data: bytes | bytearray | memoryview) -> Transcript:
        self._field(label.encode(), bytes(data))
        return self

    def int(self, label: str, value: int) -> Transcript:
        self._field(label.encode(), _LEN.pack(value))
        return self

    def ints(self, label: str, values: Iterable[int]) -> Transcript:
        ids = list(values)
        self._field(label.encode(), struct.pack(f"<{len(ids)}Q", *ids))
        return self

    def text(self, label: str, value: str) -> Transcript:
        self._field(label.encode(), value.encode())
        return self

    def fork(self) -> Transcript:
        """A copy that can be extended without changing this one."""
        other = Transcript.__new__(Transcript)
        other._hash = self._hash.copy()
        return other

    def digest(self) -> bytes:
        return self._hash.digest()

    def __repr__(self) -> str:
        return "Transcript(...)"
