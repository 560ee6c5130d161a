"""What a client has already released, so that a server cannot ask for it twice.

Secure aggregation hides one client's input inside a sum, but two sums that differ by one
client reveal that client's input exactly: a server runs a round to the end, runs the *same*
round again (same model, so every client sends the same update) and lets its target "drop"
before its masked input; the difference of the two aggregates is the target's update. No
protocol check inside one session can see this, because each session is honest on its own.

The defence is state that outlives a session: a client releases its unmasking shares (or, in
other modes, its contribution) at most once per *model*, identified by the digest of the model
it trained on (and, when no digest is given, once per round id). A :class:`ContributionLedger`
records those claims; a second claim raises :class:`~privagg.errors.ProtocolViolation`. It is in
memory by default (shared by every session made from one configuration object) and can be
kept in a file (``ContributionLedger(path)``) for clients that run in a new process per round.

What it cannot stop: the same round on a *slightly different* model (a new digest) gives two
aggregates whose difference is close to, not equal to, the target's update; only noise
(differential privacy) bounds that.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from privagg.errors import ProtocolViolation
from privagg.transcript import Transcript

__all__ = ["ContributionLedger", "contribution_key"]

ZERO_DIGEST = bytes(32)


def contribution_key(purpose: str, client_id: int, model_digest: bytes, round_id: int) -> bytes:
    """One contribution: the client, the model it trained on (or the round, without a digest)."""
    t = Transcript(b"privagg/ledger/v1").text("purpose", purpose).int("client", client_id)
    if bytes(model_digest) != ZERO_DIGEST:
        return t.bytes("model", model_digest).digest()
    return t.int("round", round_id).digest()


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
                raise ProtocolViolation("this client already released its contribution for this model "
                                        "(or round): a second one would let the server difference two sums")
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
