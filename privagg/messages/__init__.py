"""Typed, versioned messages: the only thing sessions exchange."""

from privagg.messages.base import (
    MAGIC,
    MAX_MESSAGE_BYTES,
    SERVER_ID,
    WIRE_VERSION,
    Message,
    check_envelope,
    message_type,
    message_types,
    parse_expected,
    parse_message,
    wire,
)
from privagg.messages.codec import (
    F64,
    MAX_ID,
    U64,
    Bool,
    Bytes,
    BytesMap,
    FieldCodec,
    IdList,
    PackedVector,
    Reader,
    Text,
    Vector,
    Writer,
)

__all__ = [
    "MAGIC", "MAX_MESSAGE_BYTES", "SERVER_ID", "WIRE_VERSION", "Message", "check_envelope",
    "message_type", "message_types", "parse_expected", "parse_message", "wire", "F64", "MAX_ID",
    "U64", "Bool", "Bytes", "BytesMap", "FieldCodec", "IdList", "PackedVector", "Reader", "Text", "Vector", "Writer",
]
