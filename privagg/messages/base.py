"""Typed, versioned messages and their wire format.

A message is a frozen dataclass whose fields each carry a :class:`~privagg.messages.codec.FieldCodec`.
On the wire::

    magic "PAGG" | version u8 | type u16 | round_id u64 | sender u64 | recipient u64
    | body length u32 | body | crc32 u32

The CRC catches transport corruption (every flipped bit is refused); it is not authentication,
which belongs to the transport (TLS) and to the protocols themselves (AES-GCM, signatures).
Parsing never unpickles, never trusts a length, and raises :class:`MalformedMessage` for any
bytes that are not exactly one valid message.

Type ids are grouped by package so modes never collide: 0x00xx ``privagg``, 0x01xx ``secagg``,
0x02xx ``he``, 0x03xx ``dp``, 0x04xx integrations.
"""

from __future__ import annotations

import dataclasses
import struct
import zlib
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

import numpy as np

from privagg.errors import ConfigurationError, MalformedMessage, ProtocolViolation
from privagg.messages.codec import MAX_ID, U64, FieldCodec, Reader, Writer, byte_view

__all__ = [
    "MAGIC", "WIRE_VERSION", "SERVER_ID", "MAX_MESSAGE_BYTES", "Message", "wire", "message_type",
    "message_types", "parse_message", "parse_expected", "check_envelope",
]

MAGIC = b"PAGG"
WIRE_VERSION = 1
#: The sender id of the server (and the recipient id of every client message).
SERVER_ID = MAX_ID
#: Default bound on one message: a 2^27-parameter uint64 vector fits.
MAX_MESSAGE_BYTES = 1 << 30

_HEADER = struct.Struct("<4sBHQQQI")
_CRC = struct.Struct("<I")

_TYPES: dict[int, type[Message]] = {}
_U64 = U64()

M = TypeVar("M", bound="Message")


def wire(codec: FieldCodec) -> Any:
    """Declare a message field and how it travels: ``vector: np.ndarray = wire(Vector())``."""
    return dataclasses.field(metadata={"codec": codec})


@dataclasses.dataclass(frozen=True, eq=False)
class Message:
    """Base of every message. ``sender`` and ``recipient`` are client ids or :data:`SERVER_ID`."""

    TYPE_ID: ClassVar[int] = 0
    NAME: ClassVar[str] = "message"
    _FIELDS: ClassVar[tuple[tuple[str, FieldCodec], ...]] = ()

    round_id: int
    sender: int
    recipient: int

    def __post_init__(self) -> None:
        if type(self).TYPE_ID == 0:
            raise ConfigurationError(f"{type(self).__name__} is not a registered message type")
        for name in ("round_id", "sender", "recipient"):
            _U64.check(name, getattr(self, name))
        for name, codec in self._FIELDS:
            object.__setattr__(self, name, codec.check(name, getattr(self, name)))

    # -- wire format -------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        body = Writer()
        for name, codec in self._FIELDS:
            codec.write(body, getattr(self, name))
        if body.size > MAX_MESSAGE_BYTES:
            raise ConfigurationError(f"{self.NAME} body of {body.size} bytes exceeds {MAX_MESSAGE_BYTES}")
        head = _HEADER.pack(MAGIC, WIRE_VERSION, self.TYPE_ID, self.round_id, self.sender,
                            self.recipient, body.size)
        crc = zlib.crc32(head)
        payload = body.getvalue()
        crc = zlib.crc32(payload, crc)
        return b"".join((head, payload, _CRC.pack(crc)))

    @classmethod
    def from_bytes(cls: type[M], data: bytes | bytearray | memoryview, *, max_size: int = MAX_MESSAGE_BYTES) -> M:
        """Parse ``data`` as this exact message type (another valid type is also malformed here)."""
        msg = parse_message(data, max_size=max_size)
        if not isinstance(msg, cls):
            raise MalformedMessage(f"expected a {cls.NAME} message, got {msg.NAME}")
        return msg

    # -- value semantics ---------------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        names = ("round_id", "sender", "recipient") + tuple(n for n, _ in self._FIELDS)
        return all(_values_equal(getattr(self, n), getattr(other, n)) for n in names)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        # Payloads are summarised, never printed: a repr must not leak an input or a share.
        parts = [f"round_id={self.round_id}", f"sender={_id_repr(self.sender)}",
                 f"recipient={_id_repr(self.recipient)}"]
        parts += [f"{n}={c.describe(getattr(self, n))}" for n, c in self._FIELDS]
        return f"{type(self).__name__}({', '.join(parts)})"


def _id_repr(value: int) -> str:
    return "SERVER" if value == SERVER_ID else str(value)


def _values_equal(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.dtype == b.dtype
                and a.shape == b.shape and bool(np.array_equal(a, b)))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_values_equal(a[k], b[k]) for k in a)
    return bool(a == b)


def message_type(type_id: int, name: str) -> Callable[[type[M]], type[M]]:
    """Register a message class (already a frozen dataclass) under a unique wire type id."""

    def register(cls: type[M]) -> type[M]:
        if not 0 < type_id < 2**16:
            raise ConfigurationError(f"message type id {type_id} outside (0, 65536)")
        if type_id in _TYPES and _TYPES[type_id] is not cls:
            raise ConfigurationError(f"message type id {type_id:#06x} already used by {_TYPES[type_id].__name__}")
        if not dataclasses.is_dataclass(cls):
            raise ConfigurationError(f"{cls.__name__} must be a dataclass")
        fields = []
        for f in dataclasses.fields(cls):
            if f.name in ("round_id", "sender", "recipient"):
                continue
            codec = f.metadata.get("codec")
            if codec is None:
                raise ConfigurationError(f"{cls.__name__}.{f.name} has no wire codec; declare it with wire()")
            fields.append((f.name, codec))
        cls.TYPE_ID = type_id
        cls.NAME = name
        # @dataclass writes a __repr__ that prints every payload: always use the summarising one.
        cls.__repr__ = Message.__repr__  # type: ignore[method-assign]
        if cls.__eq__ is not Message.__eq__:
            raise ConfigurationError(f"{cls.__name__} must be declared with @dataclass(frozen=True, eq=False)")
        cls._FIELDS = tuple(fields)
        _TYPES[type_id] = cls
        return cls

    return register


def message_types() -> dict[int, type[Message]]:
    """Every registered message class by type id (modes register theirs when imported)."""
    return dict(_TYPES)


def parse_message(data: bytes | bytearray | memoryview, *, max_size: int = MAX_MESSAGE_BYTES) -> Message:
    """Parse untrusted bytes into a message, or raise :class:`MalformedMessage`.

    ``data`` may be any bytes-like object (``bytes``, ``bytearray``, a ``memoryview`` of any
    shape or stride, a numpy array); a non-contiguous one is copied once. Nothing but
    :class:`MalformedMessage` comes out for input that is not exactly one valid message.
    """
    view = byte_view(data, max_size + _HEADER.size + _CRC.size)
    if len(view) > max_size + _HEADER.size + _CRC.size:
        raise MalformedMessage(f"message of {len(view)} bytes exceeds the limit of {max_size}")
    if len(view) < _HEADER.size + _CRC.size:
        raise MalformedMessage(f"truncated: {len(view)} bytes is shorter than a message header")
    magic, version, type_id, round_id, sender, recipient, body_len = _HEADER.unpack(view[: _HEADER.size])
    if magic != MAGIC:
        raise MalformedMessage("not a privagg message (bad magic)")
    if version != WIRE_VERSION:
        raise MalformedMessage(f"unsupported wire version {version} (this library speaks {WIRE_VERSION})")
    if _HEADER.size + body_len + _CRC.size != len(view):
        raise MalformedMessage(f"length mismatch: header declares a {body_len}-byte body, "
                               f"{len(view) - _HEADER.size - _CRC.size} bytes present")
    (crc,) = _CRC.unpack(view[-_CRC.size :])
    if zlib.crc32(view[: -_CRC.size]) != crc:
        raise MalformedMessage("checksum mismatch: the message was corrupted in transit")
    cls = _TYPES.get(type_id)
    if cls is None:
        raise MalformedMessage(f"unknown message type {type_id:#06x}")
    reader = Reader(view[_HEADER.size : -_CRC.size])
    values: dict[str, Any] = {"round_id": round_id, "sender": sender, "recipient": recipient}
    try:
        for name, codec in cls._FIELDS:
            values[name] = codec.read(reader, name)
        reader.expect_end()
        return cls(**values)
    except MalformedMessage:
        raise
    except Exception as exc:
        # A field that decodes but fails the constructor's checks is still malformed input, and
        # so is anything a (possibly third-party) field codec trips over: callers handling
        # untrusted bytes catch one exception type.
        raise MalformedMessage(f"invalid {cls.NAME} message: {type(exc).__name__}: {exc}") from None


def check_envelope(msg: Message, *, round_id: int, sender: int, recipient: int) -> None:
    """Refuse a message from another round, claimed by another sender, or meant for someone else."""
    if msg.round_id != round_id:
        raise ProtocolViolation(f"{msg.NAME} is for round {msg.round_id}, this is round {round_id} (replay?)")
    if msg.sender != sender:
        raise ProtocolViolation(
            f"{msg.NAME} claims sender {_id_repr(msg.sender)} but arrived from {_id_repr(sender)}"
        )
    if msg.recipient != recipient:
        raise ProtocolViolation(
            f"{msg.NAME} is addressed to {_id_repr(msg.recipient)}, not {_id_repr(recipient)}"
        )


def parse_expected(
    data: bytes | bytearray | memoryview | Message,
    expected: type[M] | tuple[type[M], ...],
    *,
    round_id: int,
    sender: int,
    recipient: int,
    max_size: int = MAX_MESSAGE_BYTES,
) -> M:
    """Parse (if bytes) and check type and envelope: what every session does with an input."""
    msg = data if isinstance(data, Message) else parse_message(data, max_size=max_size)
    if not isinstance(msg, expected):
        names = [t.NAME for t in (expected if isinstance(expected, tuple) else (expected,))]
        raise ProtocolViolation(f"expected {' or '.join(names)}, got {msg.NAME}")
    check_envelope(msg, round_id=round_id, sender=sender, recipient=recipient)
    return msg  # type: ignore[return-value]
