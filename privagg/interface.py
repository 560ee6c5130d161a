"""The sans-I/O aggregator interface that every mode implements.

Modelled on h11: a session consumes messages and produces messages; it never opens a socket,
sleeps or reads a clock. The same protocol therefore runs in-process (:func:`privagg.simulate`),
inside Flower, or over a user's own transport::

    server = aggregator.server(client_ids, round_id=r)
    while not server.finished:
        for cid, msg in server.messages_to_send().items():
            transport.send(cid, msg.to_bytes())
        for cid, data in transport.receive_until(deadline):   # or until not server.waiting_for
            server.receive(cid, data)
        server.deadline_passed()           # whoever did not answer this stage has dropped out
    result = server.result()

A stage ends only when the caller says its deadline has passed (``deadline_passed()``); a
transport that sees ``server.waiting_for`` empty may say so early. Every message the server
accepts is recorded in its :class:`ServerView`: what attacks read.
"""

from __future__ import annotations

import struct
import zlib
from collections import Counter
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from privagg.encoding.fixed_point import FixedPoint
from privagg.errors import AggregationAborted, ConfigurationError, MalformedMessage, ProtocolViolation
from privagg.messages.base import MAX_MESSAGE_BYTES, SERVER_ID, Message, parse_expected, parse_message
from privagg.messages.codec import IdList, Reader, Text, Vector, Writer
from privagg.threats import Disclosure, ThreatModel

__all__ = [
    "FINISHED", "ABORTED", "Aggregator", "ClientSession", "ServerSession", "WrappedServerSession", "ServerView",
    "ViewEntry", "AggregationResult", "Traffic", "check_client_ids",
]

FINISHED = "finished"
ABORTED = "aborted"


def check_client_ids(client_ids: Iterable[int]) -> tuple[int, ...]:
    """Validate a roster: integers in ``[0, 2**64 - 1)``, no duplicates; returned sorted."""
    ids = list(client_ids)
    for cid in ids:
        if isinstance(cid, bool) or not isinstance(cid, (int, np.integer)) or not 0 <= cid < SERVER_ID:
            raise ConfigurationError(f"client id {cid!r} is not an integer in [0, 2^64 - 1)")
    dupes = sorted(cid for cid, count in Counter(int(c) for c in ids).items() if count > 1)
    if dupes:
        raise ConfigurationError(f"duplicate client ids: {dupes[:10]}")
    if not ids:
        raise ConfigurationError("a round needs at least one client")
    return tuple(sorted(int(c) for c in ids))


# ---------------------------------------------------------------------------------------------
# The server view
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ViewEntry:
    """One message as the server received it, with the stage it arrived in."""

    stage: str
    sender: int
    message: Message | None  # None where the mode was told not to keep bulky payloads
    size: int


_VIEW_MAGIC = b"PAGV"
_VIEW_VERSION = 2  # 2 adds ``facts``; version 1 views are still read
_TEXT = Text(256)
_FACT = Text(1 << 16)
_IDS = IdList()
_ENCODED = Vector(("uint32", "uint64"))
_FLOATS = Vector(("float64",))


class ServerView:
    """Everything the server observed in one round: each accepted message, and the output.

    It never holds a secret of a client in plaintext (each mode's tests scan its bytes).
    ``to_bytes``/``from_bytes`` let auditors store and exchange views.
    """

    def __init__(self, mode: str, round_id: int, client_ids: tuple[int, ...]) -> None:
        self.mode = mode
        self.round_id = round_id
        self.client_ids = client_ids
        self.entries: list[ViewEntry] = []
        self.included: tuple[int, ...] = ()
        self.dropped: tuple[int, ...] = ()
        self.encoded_output: npt.NDArray[np.unsignedinteger] | None = None
        self.output: npt.NDArray[np.float64] | None = None
        #: Public facts of the round that are in no received message (e.g. the realised graph
        #: seed), which a mode's ``disclose`` needs: text keys and values.
        self.facts: dict[str, str] = {}

    def record(self, stage: str, sender: int, message: Message | None, size: int) -> None:
        self.entries.append(ViewEntry(stage, sender, message, size))

    def messages(self, stage: str | None = None, sender: int | None = None) -> list[Message]:
        """The messages kept, optionally only those of one stage and/or one sender."""
        return [e.message for e in self.entries if e.message is not None
                and (stage is None or e.stage == stage) and (sender is None or e.sender == sender)]

    def by_sender(self, stage: str) -> dict[int, Message]:
        return {e.sender: e.message for e in self.entries if e.stage == stage and e.message is not None}

    @property
    def bytes_received(self) -> int:
        return sum(e.size for e in self.entries)

    def __repr__(self) -> str:
        return (f"ServerView(mode={self.mode!r}, round_id={self.round_id}, clients={len(self.client_ids)}, "
                f"messages={len(self.entries)}, included={len(self.included)})")

    def to_bytes(self) -> bytes:
        w = Writer()
        w.raw(_VIEW_MAGIC)
        w.u8(_VIEW_VERSION)
        _TEXT.write(w, self.mode)
        w.u64(self.round_id)
        for ids in (self.client_ids, self.included, self.dropped):
            _IDS.write(w, ids)
        w.u32(len(self.entries))
        for e in self.entries:
            _TEXT.write(w, e.stage)
            w.u64(e.sender)
            w.u64(e.size)
            data = e.message.to_bytes() if e.message is not None else b""
            w.u32(len(data))
            w.raw(data)
        for vec, codec in ((self.encoded_output, _ENCODED), (self.output, _FLOATS)):
            w.u8(vec is not None)
            if vec is not None:
                codec.write(w, vec)
        w.u32(len(self.facts))
        for key in sorted(self.facts):
            _TEXT.write(w, key)
            _FACT.write(w, self.facts[key])
        body = w.getvalue()
        return body + struct.pack("<I", zlib.crc32(body))

    @classmethod
    def from_bytes(cls, data: bytes) -> ServerView:
        """Parse a stored view; anything malformed raises :class:`MalformedMessage`."""
        if len(data) < 9:
            raise MalformedMessage("truncated server view")
        body, (crc,) = data[:-4], struct.unpack("<I", data[-4:])
        if zlib.crc32(body) != crc:
            raise MalformedMessage("server view checksum mismatch")
        r = Reader(body)
        if bytes(r.take(4)) != _VIEW_MAGIC:
            raise MalformedMessage("not a privagg server view (bad magic)")
        version = r.u8()
        if version not in (1, _VIEW_VERSION):
            raise MalformedMessage(f"server view version {version} is not supported")
        view = cls(_TEXT.read(r, "mode"), r.u64(), _IDS.read(r, "client_ids"))
        view.included = _IDS.read(r, "included")
        view.dropped = _IDS.read(r, "dropped")
        for _ in range(r.length(1 << 24, 25, "entries")):
            stage = _TEXT.read(r, "stage")
            sender = r.u64()
            size = r.u64()
            length = r.length(MAX_MESSAGE_BYTES + 64, 1, "message")
            view.record(stage, sender, parse_message(r.take(length)) if length else None, size)
        if r.u8():
            view.encoded_output = _ENCODED.read(r, "encoded_output")
        if r.u8():
            view.output = _FLOATS.read(r, "output")
        if version >= 2:
            for _ in range(r.length(1 << 12, 8, "facts")):
                key = _TEXT.read(r, "fact")
                view.facts[key] = _FACT.read(r, key)
        r.expect_end()
        return view


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Traffic:
    """Bytes and messages moved in a round, as counted by the driver that moved them."""

    bytes_up: int = 0
    bytes_down: int = 0
    messages_up: int = 0
    messages_down: int = 0


@dataclass(frozen=True)
class AggregationResult:
    """The outcome of a round.

    ``aggregate`` is the decoded (float64) sum of the inputs of exactly the clients in
    ``included``; ``encoded`` the exact sum modulo ``2**bits`` for modes with an integer
    encoding (``None`` for approximate modes such as CKKS). ``info`` holds public,
    mode-specific facts (for example the epsilon spent).
    """

    aggregate: npt.NDArray[np.float64]
    included: tuple[int, ...]
    dropped: tuple[int, ...]
    view: ServerView
    encoded: npt.NDArray[np.unsignedinteger] | None = None
    traffic: Traffic = field(default_factory=Traffic)
    info: Mapping[str, Any] = field(default_factory=dict)

    @property
    def mean(self) -> npt.NDArray[np.float64]:
        """The aggregate divided by the number of included clients."""
        return self.aggregate / max(len(self.included), 1)

    def with_traffic(self, traffic: Traffic) -> AggregationResult:
        return replace(self, traffic=traffic)

    def __repr__(self) -> str:
        return (f"AggregationResult(params={self.aggregate.shape[0]}, included={len(self.included)}, "
                f"dropped={len(self.dropped)}, exact_encoding={self.encoded is not None})")


# ---------------------------------------------------------------------------------------------
# Sessions
# ---------------------------------------------------------------------------------------------

class ClientSession(ABC):
    """One client's side of one round: turns each server message into its reply."""

    def __init__(self, client_id: int, round_id: int) -> None:
        (self.client_id,) = check_client_ids([client_id])
        if isinstance(round_id, bool) or not isinstance(round_id, (int, np.integer)) or not 0 <= round_id < 2**64:
            raise ConfigurationError(f"round_id must be an integer in [0, 2^64), got {round_id!r}")
        self.round_id = int(round_id)

    @property
    @abstractmethod
    def finished(self) -> bool:
        """True once the client has nothing more to say in this round."""

    @abstractmethod
    def respond(self, message: bytes | Message) -> Message | None:
        """Handle one server message; return the reply to send back (or ``None``).

        Bytes are parsed defensively (:class:`MalformedMessage`); a message from another
        round, for another client or out of order raises :class:`ProtocolViolation`.
        """

    def _parse(self, message: bytes | Message, expected: type[Message] | tuple[type[Message], ...]) -> Any:
        return parse_expected(message, expected, round_id=self.round_id, sender=SERVER_ID,
                              recipient=self.client_id)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(client_id={self.client_id}, round_id={self.round_id})"


class ServerSession(ABC):
    """The server's side of one round, as an explicit state machine over named stages.

    Subclasses implement three hooks: :meth:`_expected` (the reply type of a stage),
    :meth:`_accept` (check and absorb one reply, e.g. into a running sum) and :meth:`_advance`
    (the stage's deadline passed: move on with whoever answered, via :meth:`_enter`,
    :meth:`_finish` or by raising :class:`AggregationAborted`).
    """

    mode: ClassVar[str] = "abstract"

    def __init__(self, client_ids: Iterable[int], round_id: int) -> None:
        self.client_ids = check_client_ids(client_ids)
        if isinstance(round_id, bool) or not isinstance(round_id, (int, np.integer)) or not 0 <= round_id < 2**64:
            raise ConfigurationError(f"round_id must be an integer in [0, 2^64), got {round_id!r}")
        self.round_id = int(round_id)
        self.view = ServerView(self.mode, self.round_id, self.client_ids)
        self._stage = "start"
        self._active: set[int] = set(self.client_ids)
        self._answers: dict[int, Message] = {}
        self._outbox: dict[int, Message] = {}
        self._dropped_at: dict[int, str] = {}
        self._result: AggregationResult | None = None
        self._abort: AggregationAborted | None = None

    # -- state -------------------------------------------------------------------------------
    @property
    def stage(self) -> str:
        return self._stage

    @property
    def finished(self) -> bool:
        """True once the round has a result or has aborted."""
        return self._stage in (FINISHED, ABORTED)

    @property
    def active(self) -> frozenset[int]:
        """Clients still taking part."""
        return frozenset(self._active)

    @property
    def waiting_for(self) -> frozenset[int]:
        """Active clients that have not answered the current stage yet."""
        return frozenset() if self.finished else frozenset(self._active - self._answers.keys())

    @property
    def dropped(self) -> dict[int, str]:
        """Each client that dropped out, with the stage it stopped answering in."""
        return dict(self._dropped_at)

    # -- the three calls of the loop ---------------------------------------------------------
    def messages_to_send(self) -> dict[int, Message]:
        """The messages of the current stage not yet handed out (each is returned once)."""
        out, self._outbox = self._outbox, {}
        return out

    def receive(self, client_id: int, data: bytes | Message) -> None:
        """Accept one client's reply for the current stage.

        Raises :class:`MalformedMessage` for bad bytes and :class:`ProtocolViolation` for a
        valid message the protocol refuses (unknown or dropped client, second answer, wrong
        round, sender or type); the session's state is unchanged in both cases.
        """
        if self.finished:
            raise ProtocolViolation(f"round {self.round_id} is {self._stage}; no more messages are accepted")
        if client_id not in self.view.client_ids:
            raise ProtocolViolation(f"client {client_id} is not part of round {self.round_id}")
        if client_id not in self._active:
            raise ProtocolViolation(
                f"client {client_id} dropped out at stage {self._dropped_at.get(client_id)!r}; "
                f"late messages are refused"
            )
        if client_id in self._answers:
            raise ProtocolViolation(f"client {client_id} already answered stage {self._stage!r} (replay?)")
        size = len(data) if not isinstance(data, Message) else len(data.to_bytes())
        msg = parse_expected(data, self._expected(self._stage), round_id=self.round_id,
                             sender=client_id, recipient=SERVER_ID)
        self._accept(client_id, msg)
        self._answers[client_id] = msg
        self.view.record(self._stage, client_id, self._kept_in_view(msg), size)

    def deadline_passed(self) -> None:
        """End the current stage: clients that have not answered have dropped out."""
        if self.finished:
            raise ProtocolViolation(f"round {self.round_id} is already {self._stage}")
        for cid in sorted(self._active - self._answers.keys()):
            self._dropped_at[cid] = self._stage
        self._active = set(self._answers)
        answers, self._answers = self._answers, {}
        try:
            self._advance(answers)
        except AggregationAborted as exc:
            self._stage, self._outbox, self._abort = ABORTED, {}, exc
            self.view.dropped = tuple(sorted(self._dropped_at))
            raise

    def result(self) -> AggregationResult:
        """The round's result; raises the abort reason if the round aborted."""
        if self._abort is not None:
            raise self._abort
        if self._result is None:
            raise ProtocolViolation(f"round {self.round_id} is still in stage {self._stage!r}")
        return self._result

    # -- for subclasses ----------------------------------------------------------------------
    def _enter(self, stage: str, outbox: Mapping[int, Message]) -> None:
        self._stage = stage
        self._outbox = dict(outbox)

    def _finish(self, aggregate: npt.NDArray[np.float64], included: Iterable[int], *,
                encoded: npt.NDArray[np.unsignedinteger] | None = None,
                info: Mapping[str, Any] | None = None) -> None:
        inc = tuple(sorted(included))
        dropped = tuple(sorted(set(self.client_ids) - set(inc)))
        self.view.included, self.view.dropped = inc, dropped
        self.view.encoded_output, self.view.output = encoded, aggregate
        self._result = AggregationResult(aggregate, inc, dropped, self.view, encoded, info=dict(info or {}))
        self._stage, self._outbox = FINISHED, {}

    @abstractmethod
    def _expected(self, stage: str) -> type[Message] | tuple[type[Message], ...]:
        """The message type(s) clients answer ``stage`` with."""

    def _accept(self, client_id: int, message: Message) -> None:  # noqa: B027 - optional hook
        """Check and absorb one reply (raise ProtocolViolation to refuse it)."""

    def _kept_in_view(self, message: Message) -> Message | None:
        """What the view keeps of an accepted message (a mode may drop bulky payloads)."""
        return message

    def _exclude(self, client_id: int) -> None:
        """Drop a client now (e.g. too few live neighbours to take part in the next stage)."""
        if client_id in self._active:
            self._active.discard(client_id)
            self._outbox.pop(client_id, None)
            self._dropped_at[client_id] = self._stage

    @abstractmethod
    def _advance(self, answers: dict[int, Message]) -> None:
        """The stage's deadline passed with ``answers`` in: enter the next stage or finish."""

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(round_id={self.round_id}, stage={self._stage!r}, "
                f"clients={len(self.client_ids)}, active={len(self._active)})")


class WrappedServerSession(ServerSession):
    """A server session that runs another session's protocol unchanged and transforms its
    result once (e.g. adding central DP noise, or decoding a mechanism's integer domain).

    Everything the transport sees (stages, messages, the view) is the inner session's.
    """

    def __init__(self, inner: ServerSession) -> None:
        # Deliberately no super().__init__: all state lives in the inner session.
        self.inner = inner
        self._transformed: AggregationResult | None = None
        self._wrapped_abort: AggregationAborted | None = None

    @property
    def client_ids(self) -> tuple[int, ...]:  # type: ignore[override]
        return self.inner.client_ids

    @property
    def round_id(self) -> int:  # type: ignore[override]
        return self.inner.round_id

    @property
    def view(self) -> ServerView:  # type: ignore[override]
        return self.inner.view

    @property
    def stage(self) -> str:
        return ABORTED if self._wrapped_abort is not None else self.inner.stage

    @property
    def finished(self) -> bool:
        return self.inner.finished

    @property
    def active(self) -> frozenset[int]:
        return self.inner.active

    @property
    def waiting_for(self) -> frozenset[int]:
        return self.inner.waiting_for

    @property
    def dropped(self) -> dict[int, str]:
        return self.inner.dropped

    def messages_to_send(self) -> dict[int, Message]:
        return self.inner.messages_to_send()

    def receive(self, client_id: int, data: bytes | Message) -> None:
        self.inner.receive(client_id, data)

    def deadline_passed(self) -> None:
        self.inner.deadline_passed()
        if self.inner.stage == FINISHED and self._transformed is None and self._wrapped_abort is None:
            try:
                self._transformed = self._transform_result(self.inner.result())
            except AggregationAborted as exc:
                self._wrapped_abort = exc
                raise

    def result(self) -> AggregationResult:
        if self._wrapped_abort is not None:
            raise self._wrapped_abort
        if self._transformed is None:
            return self.inner.result()  # raises the abort, or "still in stage ..."
        return self._transformed

    @abstractmethod
    def _transform_result(self, result: AggregationResult) -> AggregationResult:
        """Called once, when the inner round finishes."""

    def _expected(self, stage: str) -> type[Message] | tuple[type[Message], ...]:  # pragma: no cover
        raise NotImplementedError

    def _advance(self, answers: dict[int, Message]) -> None:  # pragma: no cover
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.inner!r})"


class Aggregator(ABC):
    """A configuration object for one aggregation mode; it makes client and server sessions.

    ``stages`` names the protocol's stages in order (drivers use it to schedule dropouts);
    ``encoding`` is the fixed-point encoding when the mode sums integers exactly, else None.
    """

    mode: ClassVar[str] = "abstract"

    @property
    @abstractmethod
    def stages(self) -> tuple[str, ...]: ...

    @property
    def encoding(self) -> FixedPoint | None:
        return None

    @abstractmethod
    def client(self, client_id: int, update: Any, *, round_id: int = 0, seed: int | None = None) -> ClientSession:
        """A session for one client's ``update`` (anything :func:`privagg.flatten` accepts).

        ``seed`` makes only *non-secret* randomness reproducible (stochastic rounding);
        keys, masks and DP noise always come from the operating system's CSPRNG.
        """

    @abstractmethod
    def server(self, client_ids: Iterable[int], *, round_id: int = 0, dimension: int | None = None) -> ServerSession:
        """A session for the server of one round among ``client_ids``; ``dimension`` is the
        length of every update (modes that must refuse uploads of any other length need it)."""

    @abstractmethod
    def disclose(self, view: ServerView, threat: ThreatModel) -> Disclosure:
        """What ``threat`` can compute in plaintext from ``view`` (the contract attacks rely on)."""

    def min_included(self, clients: int) -> int:
        """The fewest clients whose sum a round among ``clients`` may ever release (a round
        with fewer survivors aborts). DP mechanisms calibrate distributed noise to it."""
        return 1

    def with_encoding(self, encoding: FixedPoint) -> Aggregator:
        """The same aggregator with another fixed-point encoding (used by DP mechanisms that
        hand integers to the protocol). Modes without an integer encoding refuse."""
        raise ConfigurationError(f"mode {self.mode!r} does not sum fixed-point integers")
