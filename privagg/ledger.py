"""What a client has already put into a sum, so that a server cannot ask for it twice.

Secure aggregation hides one client's input inside a sum, but two sums that differ by one
client reveal that client's input exactly: a server runs a round to the end, runs it again
(same model, so every client sends the same update) and lets its target "drop"; the difference
of the two aggregates is the target's update. Variants need no repeated round id or model
digest at all: a new round id, the model with its zeros sent as ``-0.0`` (a new digest,
bit-identical updates), or two sessions in which disjoint groups answer the unmasking. No check
inside one session sees any of this, because each session is honest on its own.

The defence is state that outlives a session: a client sends a masked input for a given
*input* (its update as float64 values before any encoding, hashed: stochastic rounding or a
changed scale would otherwise make the same update look new) at most once, whatever the round
id, the model digest or the session. A :class:`ContributionLedger` records those claims before the masked input
leaves; a second claim raises :class:`~privagg.errors.ProtocolViolation`. It is in memory by
default (shared by every session made from one configuration object) and can be kept in a file
(``ContributionLedger(path)``) for clients that run in a new process per round.

What it costs: a round that aborted after the masked inputs cannot be retried with the same
update (the client must train again, or the server must send a new model), and a client whose
update is bit-identical to one it already sent (an all-zero update, say) is refused.

What it cannot stop: the same round on a *slightly different* model gives two updates that
differ in a few values; their sums differ by the target's update up to those few values (one
float32 ulp of change left 30 of 7,210 values one encoding step off and recovered the images:
``attacks/malicious/difference.py``). Only noise (differential privacy) bounds that.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

from privagg.errors import ProtocolViolation
from privagg.transcript import Transcript

__all__ = ["ContributionLedger", "contribution_key"]

def contribution_key(purpose: str, client_id: int, update: bytes) -> bytes:
    """One contribution: the client and the exact update it puts into a sum (its values before
    any encoding, as bytes)."""
    return (Transcript(b"privagg/ledger/v2").text("purpose", purpose).int("client", client_id)
            .bytes("input", hashlib.sha256(update).digest()).digest())


class ContributionLedger:
    """A set of released contributions, optionally persisted one hex key per line."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self._lock = threading.Lock()
        self._path = None if path is None else Path(path)
        self._claimed: set[bytes] = set()
        if self._path is not None and self._path.exists():
            for line in self._path.read_text().split():
                try:
                    self._claimed.add(bytes.fromhex(line))
                except ValueError:
                    continue  # a torn last line: what it named was never released

    def claim(self, key: bytes) -> None:
        """Record ``key`` (before anything is released), or raise if it was claimed before."""
        with self._lock:
            if key in self._claimed:
                raise ProtocolViolation("this client already put this input into a sum: a second masked "
                                        "input would let the server difference two sums")
            if self._path is not None:
                with open(self._path, "a") as fh:
                    fh.write(key.hex() + "\n")
                    fh.flush()
                    os.fsync(fh.fileno())
            self._claimed.add(key)

    def __contains__(self, key: object) -> bool:
        return key in self._claimed

    def __len__(self) -> int:
        return len(self._claimed)

    def __repr__(self) -> str:
        where = f", path={str(self._path)!r}" if self._path is not None else ""
        return f"ContributionLedger({len(self._claimed)} claims{where})"

    def __reduce__(self):  # type: ignore[no-untyped-def]
        # Copies would each let one more release through: a ledger is shared, never copied.
        raise TypeError("a ContributionLedger is shared state and cannot be pickled")
