"""The server's running sum of ciphertexts, added to all or nothing.

A :class:`CiphertextSum` holds the elementwise sum of every upload accepted so far (one
ciphertext per ``N`` values), or a slice of it: ``first`` is the index of its first ciphertext
in the whole update, so that errors name the ciphertext a client really sent and the process
pool (:mod:`he.pool`) can give each worker its own slice. Each blob is loaded into one reused
ciphertext and added at once, so a sum never holds more than one upload's ciphertext besides
itself. If a later blob of an upload is refused, the ones already added are subtracted again,
which restores the sum bit for bit (addition modulo q is invertible and loading is
deterministic), and the error propagates; :meth:`retract` does the same for a whole upload,
for a pool in which another slice of that upload was refused.
"""

from __future__ import annotations

from typing import Any

from he.ring import Ring, seal
from privagg.errors import ProtocolViolation

__all__ = ["CiphertextSum"]


class CiphertextSum:
    """Sum of ciphertexts ``first .. first + count - 1`` of every accepted upload."""

    def __init__(self, ring: Ring, *, seeded: bool, first: int = 0) -> None:
        self.ring = ring
        self.seeded = seeded  # uploads are seeded symmetric ciphertexts (key_holder="clients")
        self.first = first
        self._total: list[Any] | None = None
        self._scratch: Any = None
        self.uploads = 0

    def _load(self, blob: bytes, index: int, who: str, into: Any = None) -> Any:
        return self.ring.load_ciphertext(blob, seeded=self.seeded, what=f"{who}'s ciphertext {self.first + index}",
                                         into=into)

    def add(self, blobs: list[bytes], who: str) -> None:
        """Add one upload's slice, or leave the sum untouched and raise."""
        if self._total is None:
            self._total = [self._load(blob, i, who) for i, blob in enumerate(blobs)]
            self._scratch = seal.Ciphertext(self.ring.context)
            self.uploads = 1
            return
        if len(blobs) != len(self._total):
            raise ProtocolViolation(f"{who} sent {len(blobs)} ciphertexts for a sum of {len(self._total)}")
        evaluator, added = self.ring.evaluator, 0
        try:
            for i, blob in enumerate(blobs):
                evaluator.add_inplace(self._total[i], self._load(blob, i, who, into=self._scratch))
                added += 1
        except BaseException:
            self._subtract(blobs[:added], who)
            raise
        self.uploads += 1

    def retract(self, blobs: list[bytes], who: str) -> None:
        """Undo :meth:`add` of ``blobs`` (the last upload added, whose other slice was refused)."""
        if self.uploads <= 1:
            self._total, self.uploads = None, 0
            return
        self._subtract(blobs, who)
        self.uploads -= 1

    def _subtract(self, blobs: list[bytes], who: str) -> None:
        assert self._total is not None
        for i, blob in enumerate(blobs):  # these loaded once already: they load again
            self.ring.evaluator.sub_inplace(self._total[i], self._load(blob, i, who, into=self._scratch))

    def ciphertexts(self) -> list[Any]:
        """The sum's SEAL ciphertexts themselves (the key holder decrypts its own sum, he.binding)."""
        if self._total is None:
            raise ValueError("no upload has been added")
        return self._total

    def dump(self) -> list[bytes]:
        """The sum's ciphertexts, serialized (full two-polynomial ciphertexts)."""
        if self._total is None:
            raise ValueError("no upload has been added")  # caller's bug: the server checks first
        return [self.ring.dump(ct) for ct in self._total]

    def discard(self) -> None:
        """Drop the sum (an aborted round)."""
        self._total, self._scratch, self.uploads = None, None, 0

    def __repr__(self) -> str:
        return f"CiphertextSum(first={self.first}, uploads={self.uploads}, seeded={self.seeded})"
