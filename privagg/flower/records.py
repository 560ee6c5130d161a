"""How privagg messages travel inside Flower records, and how untrusted records are read back.

A stage request (ServerApp -> ClientApp) and a stage reply (ClientApp -> ServerApp) each carry
two records next to whatever the user's own records are:

* ``"privagg"``, a ``ConfigRecord`` with the round's public facts: protocol version, mode and
  its options (canonical JSON, so both sides can compare them byte for byte), the hints the
  mode was built with, round id, stage, the protocol ids taking part (``participants``, which
  a provisioned client checks against its own roster), and for the first stage what the
  ClientApp should aggregate (``update``) and where its model lives (``arrays-key``);
* ``"privagg.message"``, an ``ArrayRecord`` holding one privagg message (our typed wire format)
  as a ``uint8`` :class:`flwr.app.Array` with its own ``stype``. An ``Array`` rather than a
  ``bytes`` config value because Flower chunks arrays (5 MB pieces, content-addressed), so a
  masked input of millions of parameters moves like a model does.

Reading is strict, because both directions are untrusted: anything that is not exactly this
layout raises :class:`~privagg.errors.MalformedMessage` (a record of the wrong type, a missing or
extra key, a wrong type of value, a payload that is not our byte array) or
:class:`~privagg.errors.ProtocolViolation` (valid Flower content that is not a privagg message,
or a reply that also carries plaintext arrays). The privagg message inside is parsed later, by
the session, with the same typed errors.

Before a node's first round with identities, an *identify* exchange (``"privagg.identify"``,
alone in a ``train`` message) asks the node for its roster id and a signature proving it (see
:mod:`privagg.flower.identity`).
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flwr.app import Array, ArrayRecord, ConfigRecord, MetricRecord, RecordDict

from privagg.errors import ConfigurationError, MalformedMessage, ProtocolViolation
from privagg.messages.base import MAX_MESSAGE_BYTES

__all__ = [
    "PROTOCOL", "CONFIG_KEY", "PAYLOAD_KEY", "IDENTIFY_KEY", "StageRequest", "StageReply", "write_request",
    "read_request", "write_reply", "read_reply", "user_content", "carries_privagg", "canonical_json",
    "write_identify_request", "read_identify_request", "write_identify_reply", "read_identify_reply",
]

PROTOCOL = "privagg-flower/2"
CONFIG_KEY = "privagg"
PAYLOAD_KEY = "privagg.message"
IDENTIFY_KEY = "privagg.identify"
NONCE_BYTES = 32
_SIGNATURE_BYTES = 64
_MAX_PARTICIPANTS = 1 << 20
_ARRAY_NAME = "bytes"
_STYPE = "privagg/bytes"
_MAX_TEXT = 1 << 16
_UPDATES = ("delta", "weights")

_REQUEST_FIELDS: dict[str, type] = {
    "protocol": str, "mode": str, "options": str, "hints": str, "round-id": int, "stage": str, "first": bool,
    "update": str, "arrays-key": str, "session-timeout": float, "participants": bytes,
}
_REPLY_FIELDS: dict[str, type] = {"protocol": str, "round-id": int, "stage": str, "has-message": bool}


def canonical_json(value: Mapping[str, Any]) -> str:
    """One JSON text per value (sorted keys, no spaces): options compare as strings."""
    try:
        return json.dumps(dict(value), sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"options and hints must be JSON values (str, number, bool, list, dict): {exc}") \
            from None


@dataclass(frozen=True)
class StageRequest:
    """What the ServerApp sends a node for one protocol stage."""

    mode: str
    options: Mapping[str, Any]
    hints: Mapping[str, Any]
    round_id: int
    stage: str
    first: bool
    message: bytes = field(repr=False)
    update: str = "delta"
    arrays_key: str = "arrays"
    session_timeout: float = 600.0
    participants: tuple[int, ...] = ()


@dataclass(frozen=True)
class StageReply:
    """What a ClientApp answers one stage with (``message`` is None when it has nothing to say)."""

    round_id: int
    stage: str
    message: bytes | None = field(repr=False)


# -- writing ---------------------------------------------------------------------------------

def _payload(data: bytes) -> ArrayRecord:
    return ArrayRecord({_ARRAY_NAME: Array(dtype="uint8", shape=(len(data),), stype=_STYPE, data=bytes(data))})


def write_request(request: StageRequest, user: RecordDict | None = None) -> RecordDict:
    """The content of a stage request: the user's records (first stage only) plus ours."""
    content = RecordDict(dict(user.items()) if user is not None else {})
    if CONFIG_KEY in content or PAYLOAD_KEY in content:
        raise ProtocolViolation(f"the user's records already use the reserved keys {CONFIG_KEY!r}/{PAYLOAD_KEY!r}")
    content[CONFIG_KEY] = ConfigRecord({
        "protocol": PROTOCOL, "mode": request.mode, "options": canonical_json(request.options),
        "hints": canonical_json(request.hints), "round-id": int(request.round_id), "stage": request.stage,
        "first": bool(request.first), "update": request.update, "arrays-key": request.arrays_key,
        "session-timeout": float(request.session_timeout), "participants": _pack_ids(request.participants),
    })
    content[PAYLOAD_KEY] = _payload(request.message)
    return content


def write_reply(reply: StageReply, metrics: Mapping[str, MetricRecord] | None = None) -> RecordDict:
    """The content of a stage reply: ours, plus the user's metric records if forwarded."""
    content = RecordDict({k: v for k, v in (metrics or {}).items()})
    content[CONFIG_KEY] = ConfigRecord({"protocol": PROTOCOL, "round-id": int(reply.round_id),
                                        "stage": reply.stage, "has-message": reply.message is not None})
    if reply.message is not None:
        content[PAYLOAD_KEY] = _payload(reply.message)
    return content


# -- reading ---------------------------------------------------------------------------------

def carries_privagg(content: RecordDict) -> bool:
    """True when ``content`` claims to be ours (it may still be malformed)."""
    return CONFIG_KEY in content or PAYLOAD_KEY in content or IDENTIFY_KEY in content


def _pack_ids(ids: tuple[int, ...]) -> bytes:
    ordered = sorted(int(i) for i in ids)
    if len(set(ordered)) != len(ordered):
        raise ConfigurationError("participants repeat an id")
    try:
        return struct.pack(f"<{len(ordered)}Q", *ordered)
    except struct.error:
        raise ConfigurationError("participants must be ids in [0, 2^64)") from None


def _unpack_ids(data: bytes, what: str) -> tuple[int, ...]:
    if len(data) % 8 or len(data) > 8 * _MAX_PARTICIPANTS:
        raise MalformedMessage(f"{what}: participants must be packed 64-bit ids, got {len(data)} bytes")
    ids = struct.unpack(f"<{len(data) // 8}Q", data)
    if any(a >= b for a, b in zip(ids, ids[1:])):
        raise MalformedMessage(f"{what}: participants must be strictly increasing")
    return tuple(ids)


def user_content(content: RecordDict) -> RecordDict:
    """``content`` without our records: what the user's ``train`` function sees."""
    return RecordDict({k: v for k, v in content.items() if k not in (CONFIG_KEY, PAYLOAD_KEY, IDENTIFY_KEY)})


def _config(content: RecordDict, fields: dict[str, type], what: str) -> dict[str, Any]:
    record = content.get(CONFIG_KEY)
    if not isinstance(record, ConfigRecord):
        raise MalformedMessage(f"{what}: record {CONFIG_KEY!r} must be a ConfigRecord, "
                               f"got {type(record).__name__}")
    keys = set(record.keys())
    if keys != set(fields):
        missing, extra = sorted(set(fields) - keys), sorted(keys - set(fields))
        raise MalformedMessage(f"{what}: record {CONFIG_KEY!r} has missing keys {missing} / unexpected keys {extra}")
    values: dict[str, Any] = {}
    for key, kind in fields.items():
        value = record[key]
        # bool is an int in Python: insist on the exact type, so True is never a round id.
        ok = type(value) is kind or (kind is float and type(value) is int)
        if not ok:
            raise MalformedMessage(f"{what}: {CONFIG_KEY}[{key!r}] must be {kind.__name__}, "
                                   f"got {type(value).__name__}")
        if isinstance(value, str) and len(value) > _MAX_TEXT:
            raise MalformedMessage(f"{what}: {CONFIG_KEY}[{key!r}] is longer than {_MAX_TEXT} characters")
        values[key] = value
    if values["protocol"] != PROTOCOL:
        raise MalformedMessage(f"{what}: protocol {values['protocol']!r} is not {PROTOCOL!r}")
    if not 0 <= values["round-id"] < 2**63:
        raise MalformedMessage(f"{what}: round-id {values['round-id']} out of range")
    return values


def _message(content: RecordDict, what: str, required: bool) -> bytes | None:
    record = content.get(PAYLOAD_KEY)
    if record is None:
        if required:
            raise MalformedMessage(f"{what}: record {PAYLOAD_KEY!r} is missing")
        return None
    if not required:
        raise MalformedMessage(f"{what}: declares no message but carries {PAYLOAD_KEY!r}")
    if not isinstance(record, ArrayRecord) or list(record.keys()) != [_ARRAY_NAME]:
        raise MalformedMessage(f"{what}: record {PAYLOAD_KEY!r} must be an ArrayRecord holding exactly "
                               f"{_ARRAY_NAME!r}")
    array = record[_ARRAY_NAME]
    data = array.data
    if (array.stype != _STYPE or array.dtype != "uint8" or tuple(array.shape) != (len(data),)
            or not isinstance(data, bytes)):
        raise MalformedMessage(f"{what}: payload is not a privagg byte array "
                               f"(stype {array.stype!r}, dtype {array.dtype!r}, shape {tuple(array.shape)})")
    if len(data) > MAX_MESSAGE_BYTES + 64:
        raise MalformedMessage(f"{what}: payload of {len(data)} bytes exceeds the message limit")
    return data


def _json_object(text: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except ValueError as exc:
        raise MalformedMessage(f"{what}: not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise MalformedMessage(f"{what}: expected a JSON object, got {type(value).__name__}")
    return value


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def read_request(content: RecordDict) -> StageRequest | None:
    """Our stage request in ``content``, ``None`` if ``content`` is not ours at all.

    Raises :class:`MalformedMessage` when it claims to be ours but is not exactly our layout.
    """
    if not carries_privagg(content):
        return None
    if IDENTIFY_KEY in content:
        raise MalformedMessage(f"stage request: carries an identify record {IDENTIFY_KEY!r}")
    values = _config(content, _REQUEST_FIELDS, "stage request")
    message = _message(content, "stage request", required=True)
    assert message is not None
    if values["update"] not in _UPDATES:
        raise MalformedMessage(f"stage request: update must be one of {_UPDATES}, got {values['update']!r}")
    timeout = float(values["session-timeout"])
    if not (math.isfinite(timeout) and timeout > 0):
        raise MalformedMessage(f"stage request: session-timeout {timeout!r} is not a positive number")
    return StageRequest(
        mode=values["mode"], options=_json_object(values["options"], "stage request options"),
        hints=_json_object(values["hints"], "stage request hints"), round_id=values["round-id"],
        stage=values["stage"], first=values["first"], message=message, update=values["update"],
        arrays_key=values["arrays-key"], session_timeout=timeout,
        participants=_unpack_ids(values["participants"], "stage request"),
    )


def read_reply(content: RecordDict) -> StageReply:
    """The stage reply in ``content`` (a reply that is not ours is a :class:`ProtocolViolation`)."""
    if not carries_privagg(content):
        raise ProtocolViolation(f"reply carries no {CONFIG_KEY!r} record (records: {sorted(content.keys())}); "
                                f"is PrivaggMod installed in the ClientApp?")
    if IDENTIFY_KEY in content:
        raise MalformedMessage(f"stage reply: carries an identify record {IDENTIFY_KEY!r}")
    values = _config(content, _REPLY_FIELDS, "stage reply")
    message = _message(content, "stage reply", required=values["has-message"])
    extra = [k for k, v in content.items() if k not in (CONFIG_KEY, PAYLOAD_KEY) and not isinstance(v, MetricRecord)]
    if extra:
        # A client that sends arrays or configs next to its masked input may be leaking its update.
        raise ProtocolViolation(f"reply carries records other than privagg's and metrics: {sorted(extra)}")
    return StageReply(round_id=values["round-id"], stage=values["stage"], message=message)


# -- identification ----------------------------------------------------------------------------

_IDENTIFY_REQUEST_FIELDS: dict[str, type] = {"protocol": str, "nonce": bytes}
_IDENTIFY_REPLY_FIELDS: dict[str, type] = {"protocol": str, "client-id": int, "signature": bytes}


def _identify_record(content: RecordDict, fields: dict[str, type], what: str) -> dict[str, Any]:
    others = sorted(k for k in content.keys() if k != IDENTIFY_KEY)
    if others:
        raise MalformedMessage(f"{what}: carries records other than {IDENTIFY_KEY!r}: {others}")
    record = content.get(IDENTIFY_KEY)
    if not isinstance(record, ConfigRecord):
        raise MalformedMessage(f"{what}: record {IDENTIFY_KEY!r} must be a ConfigRecord, got {type(record).__name__}")
    if set(record.keys()) != set(fields):
        raise MalformedMessage(f"{what}: record {IDENTIFY_KEY!r} must hold exactly {sorted(fields)}")
    values = {key: record[key] for key in fields}
    for key, kind in fields.items():
        if type(values[key]) is not kind:
            raise MalformedMessage(f"{what}: {IDENTIFY_KEY}[{key!r}] must be {kind.__name__}, "
                                   f"got {type(values[key]).__name__}")
    if values["protocol"] != PROTOCOL:
        raise MalformedMessage(f"{what}: protocol {values['protocol']!r} is not {PROTOCOL!r}")
    return values


def write_identify_request(nonce: bytes) -> RecordDict:
    if len(nonce) != NONCE_BYTES:
        raise ConfigurationError(f"an identify nonce is {NONCE_BYTES} bytes")
    return RecordDict({IDENTIFY_KEY: ConfigRecord({"protocol": PROTOCOL, "nonce": bytes(nonce)})})


def read_identify_request(content: RecordDict) -> bytes | None:
    """The nonce of an identify request, ``None`` if ``content`` is not one."""
    if IDENTIFY_KEY not in content:
        return None
    values = _identify_record(content, _IDENTIFY_REQUEST_FIELDS, "identify request")
    if len(values["nonce"]) != NONCE_BYTES:
        raise MalformedMessage(f"identify request: the nonce must be {NONCE_BYTES} bytes")
    return bytes(values["nonce"])


def write_identify_reply(client_id: int, signature: bytes) -> RecordDict:
    return RecordDict({IDENTIFY_KEY: ConfigRecord({"protocol": PROTOCOL, "client-id": int(client_id),
                                                   "signature": bytes(signature)})})


def read_identify_reply(content: RecordDict) -> tuple[int, bytes]:
    """``(client id, signature)`` of an identify reply; anything else is a typed error."""
    if IDENTIFY_KEY not in content:
        raise ProtocolViolation(f"the node answered the identify request without {IDENTIFY_KEY!r} "
                                f"(records: {sorted(content.keys())}); is PrivaggMod installed in the ClientApp?")
    values = _identify_record(content, _IDENTIFY_REPLY_FIELDS, "identify reply")
    if not 0 <= values["client-id"] < 2**63 or len(values["signature"]) != _SIGNATURE_BYTES:
        raise MalformedMessage("identify reply: client id out of range or signature not 64 bytes")
    return int(values["client-id"]), bytes(values["signature"])
