"""Hostile input against the message codecs and the fixed-point encoding.

Each test drives the real parsers and constructors with real bytes or arguments: decodes must
stay proportionate to their input, and nothing but privagg's typed errors may come out.
"""

import struct
import sys
import tracemalloc
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from privagg import EncodingOverflow, FixedPoint, MalformedMessage
from privagg.encoding import reduce_mod, sum_mod, to_signed
from privagg.errors import ConfigurationError, InvalidUpdate, PrivaggError
from privagg.messages import (
    F64,
    SERVER_ID,
    U64,
    Bytes,
    BytesMap,
    IdList,
    Message,
    PackedVector,
    Reader,
    Text,
    Vector,
    Writer,
    parse_message,
)
from privagg.messages.codec import MAX_ZERO_WIDTH_VALUES
from privagg.plain import PlainRequest, PlainUpdate
from tests.strategies import any_message

_HEAD = struct.Struct("<4sBHQQQI")


def _message(type_id: int, body: bytes) -> bytes:
    """A message with a valid envelope and checksum around an arbitrary body."""
    head = _HEAD.pack(b"PAGG", 1, type_id, 1, 2, SERVER_ID, len(body))
    return head + body + struct.pack("<I", zlib.crc32(head + body))


def _packed(code: int, n: int, width: int, payload: bytes = b"") -> bytes:
    return bytes([code]) + struct.pack("<Q", n) + bytes([width]) + payload


def _legacy_packed_write(value: np.ndarray) -> bytes:
    """PackedVector.write as it was before width 0 was bounded (the reference for old bytes)."""
    dt = np.dtype(value.dtype).newbyteorder("<")
    code = {1: 1, 2: 2, 4: 3, 8: 4}[dt.itemsize]
    data = np.ascontiguousarray(value, dtype=dt)
    full = dt.itemsize * 8
    width = int(data.max()).bit_length() if data.size else 0
    out = bytes([code]) + struct.pack("<Q", data.shape[0]) + bytes([width])
    if width == full:
        return out + data.tobytes()
    if width:
        bits = np.unpackbits(data.view(np.uint8).reshape(-1, dt.itemsize), axis=1, bitorder="little")
        out += np.packbits(bits[:, :width], bitorder="little").tobytes()
    return out


# ---------------------------------------------------------------------------------------------
# 1. PackedVector: width 0 no longer declares gigabytes of zeros
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("code, n", [(3, 2**28), (4, 2**27), (3, MAX_ZERO_WIDTH_VALUES + 1)])
def test_a_49_byte_message_cannot_declare_a_gigabyte_of_zeros(code, n):
    raw = _message(PlainUpdate.TYPE_ID, _packed(code, n, 0))
    assert len(raw) == 49
    tracemalloc.start()
    try:
        with pytest.raises(MalformedMessage, match="no payload, above the limit"):
            parse_message(raw)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


@pytest.mark.parametrize("dtype", [np.uint32, np.uint64])
def test_zero_vectors_pack_in_proportion_and_round_trip(dtype):
    short = PlainUpdate(0, 1, SERVER_ID, np.zeros(MAX_ZERO_WIDTH_VALUES, dtype))
    raw = short.to_bytes()
    assert len(raw) == 49 and raw[-5] == 0  # width 0, no payload: today's encoding
    assert parse_message(raw) == short

    long = PlainUpdate(0, 1, SERVER_ID, np.zeros(MAX_ZERO_WIDTH_VALUES + 1, dtype))
    raw = long.to_bytes()
    assert len(raw) == 49 + (MAX_ZERO_WIDTH_VALUES + 1 + 7) // 8  # one zero bit per value
    assert parse_message(raw) == long and parse_message(raw).to_bytes() == raw


def test_zero_vectors_have_one_canonical_width():
    pv = PackedVector()
    n = MAX_ZERO_WIDTH_VALUES
    with pytest.raises(MalformedMessage, match="canonical"):  # short zeros must use width 0
        pv.read(Reader(_packed(3, n, 1, bytes(n // 8))), "v")
    with pytest.raises(MalformedMessage, match="above the limit"):  # long zeros must use width 1
        pv.read(Reader(_packed(3, n + 1, 0)), "v")
    out = pv.read(Reader(_packed(3, n + 1, 1, bytes((n + 8) // 8))), "v")
    assert out.shape == (n + 1,) and not out.any()


@settings(max_examples=40)
@given(st.sampled_from([np.uint32, np.uint64]), st.one_of(st.just(0), st.integers(0, 64)), st.integers(0, 20_000),
       st.integers(0, 2**32))
def test_every_vector_the_previous_writer_produced_is_still_read_the_same(dtype, bits, n, seed):
    bits = min(bits, np.dtype(dtype).itemsize * 8)
    rng = np.random.default_rng(seed)
    values = (rng.integers(0, 2**bits, n, dtype=np.uint64) if bits else np.zeros(n, np.uint64)).astype(dtype)
    old = _legacy_packed_write(values)
    w = Writer()
    PackedVector().write(w, values)
    if n > MAX_ZERO_WIDTH_VALUES and not values.any():
        # The one change: a long zero vector costs n/8 bytes instead of a payload-free header.
        with pytest.raises(MalformedMessage):
            PackedVector().read(Reader(old), "v")
        assert len(w.getvalue()) == 10 + (n + 7) // 8
    else:
        assert w.getvalue() == old
    out = PackedVector().read(Reader(w.getvalue()), "v")
    assert out.dtype == values.dtype and np.array_equal(out, values)


def test_writer_and_reader_handle_vectors_spanning_many_chunks():
    rng = np.random.default_rng(1)
    for width in (1, 13, 31, 32):
        values = rng.integers(0, 2**width, 200_003, dtype=np.uint64).astype(np.uint32)
        values[0] = 2**width - 1
        w = Writer()
        PackedVector().write(w, values)
        assert w.getvalue() == _legacy_packed_write(values)
        assert np.array_equal(PackedVector().read(Reader(w.getvalue()), "v"), values)


# ---------------------------------------------------------------------------------------------
# 1b. Every codec: what a decode allocates is proportionate to its input
# ---------------------------------------------------------------------------------------------

#: Bytes of decoded object per byte of input: a 1-bit packed uint64 value is 8 bytes from 1 bit.
_RATIO = 64
#: Fixed allowance: a payload-free zero vector, plus the chunked unpacking temporaries.
_RESULT_SLACK = 8 * MAX_ZERO_WIDTH_VALUES + 4096
_PEAK_SLACK = 8 << 20


def _footprint(value) -> int:
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, tuple):
        return sys.getsizeof(value) + sum(sys.getsizeof(v) for v in value)
    if isinstance(value, dict):
        return sys.getsizeof(value) + sum(sys.getsizeof(k) + sys.getsizeof(v) for k, v in value.items())
    return sys.getsizeof(value)


_CODECS = {
    "vector": Vector(("uint8", "uint16", "uint32", "uint64", "float32", "float64")),
    "packed": PackedVector(("uint8", "uint16", "uint32", "uint64")),
    "ids": IdList(),
    "map": BytesMap(),
    "bytes": Bytes(),
    "text": Text(1 << 20),
}

_COUNTS = st.one_of(
    st.integers(0, 64), st.integers(0, 2**64 - 1), st.integers(0, 2**28),
    st.sampled_from([2**31, 2**32 - 1, 2**40, 2**62, 2**63, 2**64 - 1, MAX_ZERO_WIDTH_VALUES,
                     MAX_ZERO_WIDTH_VALUES + 1]),
)


@st.composite
def adversarial_fields(draw):
    """A codec and bytes for it: a forged header (code, count, width) over a random payload."""
    name = draw(st.sampled_from(sorted(_CODECS)))
    count = draw(_COUNTS)
    payload = draw(st.one_of(st.binary(max_size=600), st.integers(0, 5000).map(bytes)))
    if name in ("vector", "packed"):
        head = bytes([draw(st.one_of(st.integers(1, 6), st.integers(0, 255)))]) + struct.pack("<Q", count)
        if name == "packed":
            head += bytes([draw(st.one_of(st.just(0), st.integers(0, 70), st.integers(0, 255)))])
    else:
        head = struct.pack("<I", count % 2**32)
    return name, head + payload


def _check_proportionate(codec, data: bytes) -> None:
    tracemalloc.start()
    try:
        try:
            value = codec.read(Reader(data), "field")
        except MalformedMessage:
            value = None
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    if value is not None:
        assert _footprint(value) <= _RATIO * len(data) + _RESULT_SLACK
    assert peak <= _RATIO * len(data) + _PEAK_SLACK


@given(adversarial_fields())
def test_decodes_are_proportionate_to_their_input_or_malformed(field):
    name, data = field
    _check_proportionate(_CODECS[name], data)


@given(st.integers(1, 4), _COUNTS, st.one_of(st.just(0), st.integers(0, 65)),
       st.one_of(st.binary(max_size=600), st.integers(0, 5000).map(bytes)))
def test_packed_headers_decode_in_proportion_or_are_malformed(code, count, width, payload):
    _check_proportionate(_CODECS["packed"], _packed(code, count, width, payload))


@pytest.mark.parametrize("name, data", [
    ("packed", _packed(4, 2**27, 0)),
    ("packed", _packed(4, 2**27, 1, bytes(100))),
    ("packed", _packed(4, 800, 1, bytes(100))),  # 6,400 bytes from 110: the 64x worst case
    ("packed", _packed(4, 2**64 - 1, 64)),
    ("vector", bytes([4]) + struct.pack("<Q", 2**40) + bytes(64)),
    ("ids", struct.pack("<I", 2**20) + bytes(64)),
    ("map", struct.pack("<I", 2**16) + bytes(64)),
    ("map", struct.pack("<I", 400) + bytes(12 * 400)),  # many empty values: per-entry objects
    ("bytes", struct.pack("<I", 2**20) + bytes(64)),
    ("text", struct.pack("<I", 2**20) + bytes(64)),
])
def test_forged_counts_do_not_allocate(name, data):
    _check_proportionate(_CODECS[name], data)


def test_valid_maps_and_id_lists_stay_within_the_bound():
    for codec, value in ((BytesMap(), {i: b"" for i in range(2000)}), (IdList(), tuple(range(10**9, 10**9 + 5000)))):
        w = Writer()
        codec.write(w, value)
        _check_proportionate(codec, w.getvalue())
        assert codec.read(Reader(w.getvalue()), "f") == value


# ---------------------------------------------------------------------------------------------
# 2. parse_message takes any bytes-like object and raises MalformedMessage and nothing else
# ---------------------------------------------------------------------------------------------

def _strided(raw: bytes, step: int, offset: int = 0) -> memoryview:
    """A non-contiguous memoryview whose logical bytes are ``raw``."""
    buf = bytearray(step * len(raw) + offset)
    buf[offset::step] = raw
    return memoryview(buf)[offset::step]


def test_a_non_contiguous_memoryview_of_a_message_parses():
    msg = PlainUpdate(3, 5, SERVER_ID, np.arange(50, dtype=np.uint32))
    raw = msg.to_bytes()
    view = _strided(raw, 2)
    assert not view.c_contiguous
    assert parse_message(view) == msg
    assert PlainUpdate.from_bytes(_strided(raw, 3, 1)) == msg
    backing = np.zeros((len(raw), 2), np.uint8)
    backing[:, 0] = np.frombuffer(raw, np.uint8)
    assert parse_message(memoryview(backing[:, 0])) == msg  # a strided numpy-backed view
    assert parse_message(np.frombuffer(raw, np.uint8)) == msg  # any bytes-like object
    reader = Reader(_strided(raw, 2))
    assert bytes(reader.take(4)) == b"PAGG"


def test_a_non_contiguous_view_of_garbage_is_malformed():
    with pytest.raises(MalformedMessage):
        parse_message(memoryview(bytes(200))[::2])
    with pytest.raises(MalformedMessage):
        parse_message(memoryview(np.zeros((8, 8), np.uint32)[:, ::3]))
    with pytest.raises(MalformedMessage):
        parse_message(np.zeros((8, 8), np.uint32).T)


def test_oversized_strided_input_is_refused_before_it_is_copied():
    big = memoryview(bytearray(2 * 10_000))[::2]
    with pytest.raises(MalformedMessage, match="exceeds"):
        parse_message(big, max_size=100)


def _released_view():
    view = memoryview(b"PAGG")
    view.release()
    return view


@pytest.mark.parametrize("data", [None, 12, 1.5, "PAGG", ["P"], object(), np.array([object()]),
                                  np.array(["2020-01-01"], dtype="datetime64[D]"), _released_view(),
                                  PlainRequest(0, SERVER_ID, 1)])
def test_objects_that_are_not_bytes_are_malformed(data):
    with pytest.raises(MalformedMessage):
        parse_message(data)


@st.composite
def bytes_likes(draw):
    """Arbitrary or message-derived bytes, as bytes, bytearray or (strided) memoryviews."""
    if draw(st.booleans()):
        raw = draw(st.binary(max_size=400))
    else:
        raw = bytearray(draw(any_message).to_bytes())
        for _ in range(draw(st.integers(0, 3))):
            raw[draw(st.integers(0, len(raw) - 1))] = draw(st.integers(0, 255))
        if draw(st.booleans()):  # keep the checksum valid, so the field parsers are reached
            raw[-4:] = struct.pack("<I", zlib.crc32(bytes(raw[:-4])))
        raw = bytes(raw)
    kind = draw(st.sampled_from(["bytes", "bytearray", "view", "strided", "reversed", "numpy", "2d"]))
    if kind == "bytes":
        return raw, raw
    if kind == "bytearray":
        return bytearray(raw), raw
    if kind == "view":
        return memoryview(raw), raw
    if kind == "strided":
        return _strided(raw, draw(st.integers(2, 4)), draw(st.integers(0, 3))), raw
    if kind == "reversed":
        return memoryview(raw[::-1])[::-1], raw
    if kind == "numpy":
        backing = np.zeros((len(raw), 3), np.uint8)
        backing[:, 1] = np.frombuffer(raw, np.uint8)
        return memoryview(backing[:, 1]), raw
    if len(raw) % 2:
        raw = raw[:-1]
    return memoryview(raw).cast("B", (2, len(raw) // 2)) if raw else memoryview(raw), raw


@given(bytes_likes())
def test_parse_message_only_ever_raises_malformed_message(case):
    data, logical = case
    try:
        msg = parse_message(data)
    except MalformedMessage:
        return
    assert isinstance(msg, Message)
    assert msg.to_bytes() == logical


@pytest.mark.parametrize("codec, value", [
    (F64(), 10**400), (F64(), True), (F64(), float("nan")), (F64(), "1.0"),
    (U64(), 10**5000), (U64(), -1), (U64(), True),
    (BytesMap(), {1: b"", "a": b""}), (BytesMap(), {1: "not bytes"}), (BytesMap(), [(1, b"")]),
    (IdList(), [1, "a"]), (IdList(), np.zeros((2, 2))), (Text(8), "x" * 9), (Bytes(exact_len=4), b"abc"),
], ids=lambda v: type(v).__name__)
def test_constructor_checks_raise_configuration_errors(codec, value):
    with pytest.raises(ConfigurationError):
        codec.check("field", value)


def test_numpy_numbers_pass_the_field_checks():
    assert F64().check("f", np.int64(3)) == 3.0 and type(F64().check("f", np.float32(0.5))) is float
    assert BytesMap().check("m", {np.uint64(3): b"x", 1: b"y"}) == {1: b"y", 3: b"x"}


# ---------------------------------------------------------------------------------------------
# 3. FixedPoint: the derived scale is exact, so max_clients clients really fit
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("bits", range(48, 65))
def test_derived_scale_holds_max_clients_at_every_wide_modulus(bits):
    fp = FixedPoint(bits=bits, clip=1.0, max_clients=1024)
    fp.check_capacity(1024)
    assert fp.capacity >= 1024


_CLIPS = st.one_of(
    st.floats(min_value=5e-324, max_value=1.7e308, allow_nan=False, allow_infinity=False),
    st.integers(-1074, 1023).map(lambda e: 2.0**e),
    st.integers(-60, 60).flatmap(lambda e: st.floats(2.0**e, 2.0 ** (e + 1))),
)


@settings(max_examples=300)
@given(st.integers(2, 64), st.integers(1, 2**20), _CLIPS)
def test_derived_scale_is_the_largest_power_of_two_that_cannot_wrap(bits, max_clients, clip):
    half = 2 ** (bits - 1) - 1
    clip_num, clip_den = clip.as_integer_ratio()

    def max_int(kk):  # ceil(clip * 2**kk) with Python integers
        return -(-(clip_num << kk) // clip_den)

    try:
        fp = FixedPoint(bits=bits, clip=clip, max_clients=max_clients)
    except EncodingOverflow:
        assert max_clients * max_int(0) > half  # not even scale 1 fits
        return
    scale = fp.scale
    mantissa, exponent = np.frexp(scale)
    assert mantissa == 0.5 and scale >= 1  # a power of two
    k = int(exponent) - 1

    assert fp._max_int == max_int(k)
    assert max_clients * max_int(k) <= half
    if k < 1023:
        assert max_clients * max_int(k + 1) > half  # the next power of two would not fit
    fp.check_capacity(max_clients)
    # The sum of max_clients encodings of +clip (and of -clip) decodes to the exact sum: no wrap.
    for rounding in ("deterministic", "stochastic"):
        enc = FixedPoint(bits=bits, clip=clip, max_clients=max_clients, rounding=rounding).encode(
            np.array([clip, -clip, clip * 0.999999, -clip * 0.5]), seed=max_clients)
        signed = [int(v) for v in to_signed(enc, bits)]
        for v in signed:
            assert abs(v) <= fp._max_int
            total = (max_clients * (v % 2**bits)) % 2**bits
            assert int(to_signed(np.array([total], dtype=np.uint64), bits)[0]) == max_clients * v


def test_stochastic_rounding_never_exceeds_the_capacity_bound():
    # fl(2**52 + u) rounds up to 2**52 + 1 for u > 0.5: floor(v + u) overshot ceil(clip * scale).
    fp = FixedPoint(bits=64, clip=1.0, scale=2.0**52, rounding="stochastic")
    enc = to_signed(fp.encode(np.ones(2000), seed=3), 64)
    assert int(enc.max()) == fp._max_int == 2**52
    fp = FixedPoint(bits=64, clip=1.0, scale=2.0**51, rounding="stochastic")
    x = np.full(2000, 1.0 - 2.0**-52)  # 2**51 - 0.5: rounds to 2**51 - 1 or 2**51, never 2**51 + 1
    enc = [int(v) for v in to_signed(fp.encode(x, seed=4), 64)]
    assert set(enc) == {2**51 - 1, 2**51}


def test_stochastic_rounding_is_still_unbiased_and_seeded():
    fp = FixedPoint(bits=32, clip=1.0, scale=1.0, rounding="stochastic")
    x = np.random.default_rng(0).uniform(-1, 1, 100_000)
    assert np.array_equal(fp.encode(x, seed=1), fp.encode(x, seed=1))
    assert abs(float(fp.quantize(x, seed=2).mean() - x.mean())) < 0.01


# ---------------------------------------------------------------------------------------------
# 4, 5. Hostile parameters are typed errors, never OverflowError or a silent bool
# ---------------------------------------------------------------------------------------------

def test_huge_clip_times_scale_is_an_encoding_overflow():
    with pytest.raises(EncodingOverflow):
        FixedPoint(clip=1e300, scale=1e300)
    import secagg

    with pytest.raises((EncodingOverflow, ConfigurationError)):
        secagg.SecAgg(clip=1e300, scale=1e300)


@pytest.mark.parametrize("name", ["clip", "scale"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), -1.0, 0.0, -0.0, True, False,
                                 np.bool_(True), "1.0", None, 10**400, [1.0], 1 + 0j])
def test_bad_clip_and_scale_are_configuration_errors(name, bad):
    if name == "scale" and bad is None:
        return  # scale=None means "derive it"
    with pytest.raises(ConfigurationError):
        FixedPoint(**{name: bad})


@pytest.mark.parametrize("kwargs", [dict(max_clients=True), dict(max_clients=False), dict(max_clients=np.bool_(True)),
                                    dict(max_clients=2.0), dict(max_clients="5"),
                                    pytest.param(dict(max_clients=10**5000), id="5000-digits"),
                                    dict(bits=True), pytest.param(dict(bits=10**5000), id="5000-digit-bits"),
                                    dict(bits=np.int64(65)),
                                    dict(rounding=np.array(["up", "down"])), dict(rounding=None)])
def test_bad_counts_are_configuration_errors(kwargs):
    with pytest.raises(ConfigurationError):
        FixedPoint(**kwargs)


def test_numpy_integers_are_accepted_as_ints():
    fp = FixedPoint(bits=np.int64(64), max_clients=np.int64(5), clip=np.float32(0.5), scale=np.int64(4))
    assert type(fp.bits) is int and type(fp.max_clients) is int and type(fp.clip) is float
    assert fp == FixedPoint(bits=64, max_clients=5, clip=0.5, scale=4.0)
    assert fp.capacity == (2**63 - 1) // 2
    derived = FixedPoint(bits=np.uint8(64), max_clients=np.uint32(1024))
    assert derived == FixedPoint(bits=64, max_clients=1024)


def test_tiny_clips_and_underflowing_products_do_not_crash():
    fp = FixedPoint(bits=64, clip=5e-324, max_clients=1)  # the exact scale is beyond any float
    assert fp.scale == 2.0**1023 and fp.capacity >= 1
    fp = FixedPoint(bits=16, clip=5e-324, scale=0.5)  # clip * scale underflows to 0
    assert fp.capacity >= 1 and not fp.encode(np.array([1.0, -1.0])).any()


@pytest.mark.parametrize("clients", [True, -1, 1.5, "3", None, 2**65, pytest.param(10**5000, id="5000-digits")])
def test_check_capacity_refuses_non_counts(clients):
    with pytest.raises(ConfigurationError):
        FixedPoint().check_capacity(clients)


@pytest.mark.parametrize("values", [[[1.0, 2.0], [3.0]], np.array([1, 2], dtype="m8[s]"),
                                    np.array(["2020-01-01"], dtype="datetime64[D]"), [10**30], None, "abc"])
def test_encode_refuses_non_real_input_with_invalid_update(values):
    with pytest.raises(InvalidUpdate):
        FixedPoint().encode(values)


@pytest.mark.parametrize("call", [
    lambda: FixedPoint().decode([[1, 2], [3]]),
    lambda: FixedPoint().decode(np.array([0.5, 1.5])),
    lambda: FixedPoint().decode(np.array(["a"])),
    lambda: FixedPoint().decode(np.zeros(2, np.uint32), clients=True),
    lambda: reduce_mod(np.array([1, 2]), 65),
    lambda: reduce_mod(np.array([1, 2]), True),
    lambda: to_signed(np.array([1.5]), 16),
    lambda: sum_mod([], 16),
])
def test_encoding_helpers_raise_configuration_errors(call):
    with pytest.raises(ConfigurationError):
        call()


_ANYTHING = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=3),
    st.sampled_from([np.int64(7), np.uint64(2**63), np.float32(0.25), np.bool_(False), 10**400, 1j, [1]]),
)


@given(_ANYTHING, _ANYTHING, st.one_of(st.none(), _ANYTHING), _ANYTHING, _ANYTHING)
def test_fixed_point_constructor_raises_only_typed_errors(bits, clip, scale, max_clients, rounding):
    for kwargs in (dict(bits=bits, clip=clip, scale=scale, max_clients=max_clients, rounding=rounding),
                   dict(bits=bits), dict(clip=clip), dict(scale=scale), dict(max_clients=max_clients),
                   dict(bits=bits, clip=clip, max_clients=max_clients)):
        try:
            fp = FixedPoint(**kwargs)
        except PrivaggError:
            continue
        fp.check_capacity(1)
        assert fp._max_int * fp.capacity <= 2 ** (fp.bits - 1) - 1
