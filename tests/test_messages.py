import struct
import zlib
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from privagg import ConfigurationError, MalformedMessage, ProtocolViolation
from privagg.messages import (
    SERVER_ID,
    Bytes,
    Message,
    Vector,
    check_envelope,
    message_type,
    message_types,
    parse_expected,
    parse_message,
    wire,
)
from privagg.plain import PlainRequest, PlainUpdate
from tests.strategies import all_message_types, any_message, messages


def test_every_registered_type_is_covered():
    assert {PlainRequest, PlainUpdate} <= set(all_message_types)
    assert len(all_message_types) == len(message_types())


@pytest.mark.parametrize("cls", all_message_types, ids=lambda c: c.NAME)
@given(data=st.data())
def test_parse_of_serialize_is_identity_for_every_message_type(cls, data):
    message = data.draw(messages(cls))
    raw = message.to_bytes()
    parsed = parse_message(raw)
    assert type(parsed) is cls
    assert parsed == message
    assert parsed.to_bytes() == raw  # one canonical serialization


@given(any_message, st.data())
def test_every_truncation_is_malformed(message, data):
    raw = message.to_bytes()
    cut = data.draw(st.integers(0, len(raw) - 1))
    with pytest.raises(MalformedMessage):
        parse_message(raw[:cut])


@given(any_message, st.data())
def test_every_flipped_bit_is_malformed(message, data):
    raw = bytearray(message.to_bytes())
    bit = data.draw(st.integers(0, 8 * len(raw) - 1))
    raw[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(MalformedMessage):
        parse_message(bytes(raw))


def _with_valid_crc(raw: bytes) -> bytes:
    return raw[:-4] + struct.pack("<I", zlib.crc32(raw[:-4]))


@given(any_message, st.data())
def test_corrupted_fields_behind_a_valid_checksum_parse_or_raise_malformed(message, data):
    # An adversary can recompute the CRC: the field parsers themselves must hold.
    raw = bytearray(message.to_bytes())
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(4, len(raw) - 5))
        raw[pos] = data.draw(st.integers(0, 255))
    try:
        parsed = parse_message(_with_valid_crc(bytes(raw)))
    except MalformedMessage:
        return
    assert isinstance(parsed, Message)
    assert parse_message(parsed.to_bytes()) == parsed


@given(st.binary(max_size=300))
def test_random_bytes_are_malformed(blob):
    with pytest.raises(MalformedMessage):
        parse_message(blob)


@given(st.binary(max_size=200))
def test_random_bodies_behind_a_valid_header_are_malformed_or_valid(body):
    head = struct.pack("<4sBHQQQI", b"PAGG", 1, PlainUpdate.TYPE_ID, 1, 2, SERVER_ID, len(body))
    try:
        parse_message(_with_valid_crc(head + body + b"\0\0\0\0"))
    except MalformedMessage:
        pass


def test_forged_lengths_do_not_allocate():
    head = struct.pack("<4sBHQQQI", b"PAGG", 1, PlainUpdate.TYPE_ID, 1, 2, SERVER_ID, 10)
    body = bytes([3]) + struct.pack("<Q", 2**62) + bytes([32])  # claims 2^62 32-bit values
    with pytest.raises(MalformedMessage, match="above the limit|only"):
        parse_message(_with_valid_crc(head + body + b"\0\0\0\0"))


def test_oversized_messages_are_refused_before_parsing():
    raw = PlainUpdate(0, 1, SERVER_ID, np.full(1000, 2**31, np.uint32)).to_bytes()
    with pytest.raises(MalformedMessage, match="exceeds"):
        parse_message(raw, max_size=100)


def test_unknown_version_and_type_are_named():
    raw = bytearray(PlainRequest(0, SERVER_ID, 1).to_bytes())
    raw[4] = 9
    with pytest.raises(MalformedMessage, match="version 9"):
        parse_message(_with_valid_crc(bytes(raw)))
    raw[4] = 1
    raw[5:7] = struct.pack("<H", 0xFFFE)
    with pytest.raises(MalformedMessage, match="0xfffe"):
        parse_message(_with_valid_crc(bytes(raw)))


def test_non_bytes_input_is_malformed():
    with pytest.raises(MalformedMessage):
        parse_message("PAGG")  # type: ignore[arg-type]


def test_from_bytes_of_another_type_is_malformed():
    raw = PlainRequest(0, SERVER_ID, 1).to_bytes()
    with pytest.raises(MalformedMessage, match="expected a plain.update"):
        PlainUpdate.from_bytes(raw)


def test_envelope_checks_refuse_replays_and_impersonation():
    msg = PlainUpdate(round_id=3, sender=5, recipient=SERVER_ID, vector=np.zeros(2, np.uint32))
    check_envelope(msg, round_id=3, sender=5, recipient=SERVER_ID)
    with pytest.raises(ProtocolViolation, match="round 3, this is round 4"):
        check_envelope(msg, round_id=4, sender=5, recipient=SERVER_ID)
    with pytest.raises(ProtocolViolation, match="claims sender 5 but arrived from 6"):
        check_envelope(msg, round_id=3, sender=6, recipient=SERVER_ID)
    with pytest.raises(ProtocolViolation, match="addressed to SERVER"):
        check_envelope(msg, round_id=3, sender=5, recipient=7)
    with pytest.raises(ProtocolViolation, match="expected plain.request"):
        parse_expected(msg.to_bytes(), PlainRequest, round_id=3, sender=5, recipient=SERVER_ID)


def test_constructors_validate_their_fields():
    with pytest.raises(ConfigurationError):
        PlainUpdate(0, 1, SERVER_ID, vector=np.zeros(2, np.float64))
    with pytest.raises(ConfigurationError):
        PlainUpdate(0, 1, SERVER_ID, vector=np.zeros((2, 2), np.uint32))
    with pytest.raises(ConfigurationError):
        PlainRequest(-1, SERVER_ID, 1)
    with pytest.raises(ConfigurationError):
        PlainRequest(0, 2**64, 1)


def test_repr_summarises_payloads_and_never_prints_them():
    secret = np.array([0xDEADBEEF, 0x12345678], np.uint32)
    text = repr(PlainUpdate(0, 1, SERVER_ID, secret))
    assert "uint32 vector of 2" in text
    assert str(0xDEADBEEF) not in text and "deadbeef" not in text.lower()


def test_type_ids_cannot_collide_and_fields_need_codecs():
    with pytest.raises(ConfigurationError, match="already used"):
        @message_type(PlainUpdate.TYPE_ID, "other")
        @dataclass(frozen=True, eq=False)
        class Clash(Message):
            blob: bytes = wire(Bytes())

    with pytest.raises(ConfigurationError, match="no wire codec"):
        @message_type(0x00FE, "no-codec")
        @dataclass(frozen=True, eq=False)
        class NoCodec(Message):
            blob: bytes = b""

    assert 0x00FE not in message_types()


def test_vector_codec_refuses_dtypes_it_was_not_declared_with():
    with pytest.raises(ConfigurationError):
        Vector(("complex128",))


@given(st.sampled_from([np.uint32, np.uint64]), st.integers(0, 64), st.integers(0, 3000), st.integers(0, 2**32))
def test_packed_vectors_round_trip_at_every_width(dtype, bits, n, seed):
    from privagg.messages import PackedVector, Reader, Writer

    bits = min(bits, np.dtype(dtype).itemsize * 8)
    values = np.random.default_rng(seed).integers(0, 2**bits, n, dtype=np.uint64, endpoint=False) if bits else \
        np.zeros(n, np.uint64)
    values = values.astype(dtype)
    w = Writer()
    PackedVector().write(w, values)
    raw = w.getvalue()
    width = int(values.max()).bit_length() if n else 0
    assert len(raw) == 1 + 8 + 1 + (n * width + 7) // 8
    out = PackedVector().read(Reader(raw), "v")
    assert out.dtype == values.dtype and np.array_equal(out, values)


def test_packed_vectors_refuse_non_canonical_forms():
    from privagg.messages import PackedVector, Reader

    def packed(code, n, width, payload):
        return bytes([code]) + struct.pack("<Q", n) + bytes([width]) + payload

    with pytest.raises(MalformedMessage, match="canonical"):  # width 8 but every value fits in 1 bit
        PackedVector().read(Reader(packed(3, 2, 8, b"\x01\x00")), "v")
    with pytest.raises(MalformedMessage, match="padding"):
        PackedVector().read(Reader(packed(3, 3, 1, b"\xff")), "v")
    with pytest.raises(MalformedMessage, match="33-bit values in a 32-bit"):
        PackedVector().read(Reader(packed(3, 1, 33, b"\x00" * 5)), "v")
    with pytest.raises(MalformedMessage, match="above the limit"):  # 2^40 zeros from no payload
        PackedVector().read(Reader(packed(3, 2**40, 0, b"")), "v")


def test_narrow_moduli_cost_fewer_bytes_on_the_wire():
    from privagg import FixedPoint, Plain, simulate

    update = np.random.default_rng(0).uniform(-1, 1, 10_000)
    sizes = {bits: simulate(Plain(FixedPoint(bits=bits, max_clients=4)), [update] * 2).traffic.bytes_up
             for bits in (16, 24, 32)}
    assert sizes[16] < 2 * (2 * 10_000 + 100) and sizes[24] < 2 * (3 * 10_000 + 100) < sizes[32]
