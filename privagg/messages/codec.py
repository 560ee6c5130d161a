"""Bounded, pickle-free binary codec for message fields.

Every length read from the wire is checked against both a per-field maximum and the bytes
actually left before anything is allocated, so a forged length can neither exhaust memory
nor make the parser hang: what a decode allocates is at most a small constant times its input
(64x, for a 1-bit packed ``uint64`` vector) plus a few KiB. Decoders raise
:class:`MalformedMessage` and nothing else; a :class:`Reader` takes any bytes-like object.
Encodings are canonical (sorted, duplicate-free keys), so ``parse(serialize(x)) == x`` and
every valid message has exactly one serialization.
"""

from __future__ import annotations

import struct
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from privagg.errors import ConfigurationError, MalformedMessage

__all__ = [
    "Reader", "Writer", "FieldCodec", "U64", "F64", "Bool", "Bytes", "Text", "IdList",
    "Vector", "PackedVector", "BytesMap", "MAX_ID", "MAX_ZERO_WIDTH_VALUES", "VECTOR_DTYPES",
    "byte_view",
]

MAX_ID = 2**64 - 1

_U8 = struct.Struct("<B")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_F64 = struct.Struct("<d")

#: Wire code -> little-endian dtype of a vector's elements.
VECTOR_DTYPES: dict[int, np.dtype] = {
    1: np.dtype("<u1"),
    2: np.dtype("<u2"),
    3: np.dtype("<u4"),
    4: np.dtype("<u8"),
    5: np.dtype("<f4"),
    6: np.dtype("<f8"),
}
_DTYPE_CODES = {dt.newbyteorder("="): code for code, dt in VECTOR_DTYPES.items()}
#: A packed vector never decodes to more than an unpacked one could occupy in a message.
_MAX_DECODED = 1 << 30
#: The longest all-zero vector a :class:`PackedVector` sends with width 0, i.e. with no payload
#: (at most 32 KiB decoded from a 10-byte field); longer zero vectors cost one bit per value.
MAX_ZERO_WIDTH_VALUES = 4096
_CHUNK_VALUES = 1 << 13  # x8: 65,536 values unpacked at a time


def byte_view(data: Any, limit: int | None = None) -> memoryview:
    """A flat, contiguous view of the bytes of any bytes-like object, or :class:`MalformedMessage`.

    Contiguous buffers are viewed without a copy; a non-contiguous one (``memoryview(b)[::2]``,
    a strided numpy array) is copied once, in logical order, so the copy is the size of the
    input. Objects that are not bytes-like (``str``, ``int``, a released view) are malformed,
    and so is anything longer than ``limit`` bytes (refused before any copy).
    """
    if isinstance(data, str):
        raise MalformedMessage("expected bytes, got str")
    try:
        view = memoryview(data)
        nbytes = view.nbytes
    except (TypeError, ValueError, BufferError) as exc:  # not a buffer, a released view, dtype=object
        raise MalformedMessage(f"expected a bytes-like object, got {type(data).__name__} ({exc})") from None
    if limit is not None and nbytes > limit:
        raise MalformedMessage(f"input of {nbytes} bytes exceeds the limit of {limit} bytes")
    try:
        if not view.c_contiguous:
            return memoryview(view.tobytes())
        return view if view.ndim == 1 and view.format == "B" else view.cast("B")
    except (TypeError, ValueError, BufferError, NotImplementedError) as exc:
        raise MalformedMessage(f"cannot read the bytes of a {type(data).__name__} ({exc})") from None


class Reader:
    """Reads fixed-size integers and bounded byte strings from an immutable buffer."""

    __slots__ = ("_view", "_pos")

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        self._view = byte_view(data)
        self._pos = 0

    @property
    def remaining(self) -> int:
        return len(self._view) - self._pos

    def take(self, n: int) -> memoryview:
        if n < 0 or n > self.remaining:
            raise MalformedMessage(f"truncated: needed {n} bytes, {self.remaining} left")
        chunk = self._view[self._pos : self._pos + n]
        self._pos += n
        return chunk

    def u8(self) -> int:
        return int(_U8.unpack(self.take(1))[0])

    def u16(self) -> int:
        return int(_U16.unpack(self.take(2))[0])

    def u32(self) -> int:
        return int(_U32.unpack(self.take(4))[0])

    def u64(self) -> int:
        return int(_U64.unpack(self.take(8))[0])

    def f64(self) -> float:
        return float(_F64.unpack(self.take(8))[0])

    def length(self, limit: int, unit: int = 1, what: str = "field") -> int:
        """A u32 count, refused if above ``limit`` or if ``count * unit`` bytes are not left."""
        n = self.u32()
        if n > limit:
            raise MalformedMessage(f"{what} declares {n} items, above the limit of {limit}")
        if n * unit > self.remaining:
            raise MalformedMessage(f"truncated: {what} declares {n} items, only {self.remaining} bytes left")
        return n

    def expect_end(self) -> None:
        if self.remaining:
            raise MalformedMessage(f"{self.remaining} unexpected trailing bytes")


class Writer:
    """Accumulates the pieces of a serialization and joins them once."""

    __slots__ = ("_parts", "size")

    def __init__(self) -> None:
        self._parts: list[bytes | memoryview] = []
        self.size = 0

    def raw(self, data: bytes | memoryview) -> None:
        self._parts.append(data)
        self.size += len(data)

    def u8(self, v: int) -> None:
        self.raw(_U8.pack(v))

    def u16(self, v: int) -> None:
        self.raw(_U16.pack(v))

    def u32(self, v: int) -> None:
        self.raw(_U32.pack(v))

    def u64(self, v: int) -> None:
        self.raw(_U64.pack(v))

    def f64(self, v: float) -> None:
        self.raw(_F64.pack(v))

    def getvalue(self) -> bytes:
        return b"".join(self._parts)


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _shown(value: Any, limit: int = 40) -> str:
    """A bounded repr for error messages (an int of over 4,300 digits cannot even be printed)."""
    try:
        text = repr(value)
    except Exception:
        return f"<{type(value).__name__}>"
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


class FieldCodec(ABC):
    """How one message field is checked, written and read."""

    @abstractmethod
    def check(self, name: str, value: Any) -> Any:
        """Validate (and normalise) a value given to a constructor; raise ConfigurationError."""

    @abstractmethod
    def write(self, w: Writer, value: Any) -> None: ...

    @abstractmethod
    def read(self, r: Reader, name: str) -> Any: ...

    def describe(self, value: Any) -> str:
        """A short, payload-free description for ``repr`` (never the bytes themselves)."""
        return repr(value)


class U64(FieldCodec):
    def check(self, name: str, value: Any) -> int:
        if not _is_int(value) or not 0 <= value <= MAX_ID:
            raise ConfigurationError(f"{name} must be an integer in [0, 2^64), got {_shown(value)}")
        return int(value)

    def write(self, w: Writer, value: int) -> None:
        w.u64(value)

    def read(self, r: Reader, name: str) -> int:
        return r.u64()


class F64(FieldCodec):
    """A finite float."""

    def check(self, name: str, value: Any) -> float:
        if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_)):
            try:
                number = float(value)
            except OverflowError:  # an int beyond the float range
                number = float("inf")
            if np.isfinite(number):
                return number
        raise ConfigurationError(f"{name} must be a finite number, got {_shown(value)}")

    def write(self, w: Writer, value: float) -> None:
        w.f64(value)

    def read(self, r: Reader, name: str) -> float:
        v = r.f64()
        if not np.isfinite(v):
            raise MalformedMessage(f"{name} is not finite")
        return v


class Bool(FieldCodec):
    def check(self, name: str, value: Any) -> bool:
        if not isinstance(value, (bool, np.bool_)):
            raise ConfigurationError(f"{name} must be a bool, got {_shown(value)}")
        return bool(value)

    def write(self, w: Writer, value: bool) -> None:
        w.u8(1 if value else 0)

    def read(self, r: Reader, name: str) -> bool:
        v = r.u8()
        if v > 1:
            raise MalformedMessage(f"{name} is not a bool (byte {v})")
        return v == 1


class Bytes(FieldCodec):
    """A byte string of at most ``max_len`` bytes (or exactly ``exact_len``)."""

    def __init__(self, max_len: int = 1 << 20, *, exact_len: int | None = None) -> None:
        self.max_len = max_len if exact_len is None else exact_len
        self.exact_len = exact_len

    def check(self, name: str, value: Any) -> bytes:
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise ConfigurationError(f"{name} must be bytes, got {type(value).__name__}")
        value = bytes(value)
        if len(value) > self.max_len or (self.exact_len is not None and len(value) != self.exact_len):
            raise ConfigurationError(f"{name} has {len(value)} bytes, allowed: {self._allowed()}")
        return value

    def _allowed(self) -> str:
        return f"exactly {self.exact_len}" if self.exact_len is not None else f"at most {self.max_len}"

    def write(self, w: Writer, value: bytes) -> None:
        w.u32(len(value))
        w.raw(value)

    def read(self, r: Reader, name: str) -> bytes:
        n = r.length(self.max_len, 1, name)
        if self.exact_len is not None and n != self.exact_len:
            raise MalformedMessage(f"{name} has {n} bytes, expected {self.exact_len}")
        return bytes(r.take(n))

    def describe(self, value: bytes) -> str:
        return f"<{len(value)} bytes>"


class Text(FieldCodec):
    """UTF-8 text of at most ``max_len`` bytes."""

    def __init__(self, max_len: int = 4096) -> None:
        self.max_len = max_len

    def check(self, name: str, value: Any) -> str:
        if not isinstance(value, str) or len(value.encode("utf-8", "surrogatepass")) > self.max_len:
            raise ConfigurationError(f"{name} must be a str of at most {self.max_len} UTF-8 bytes")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ConfigurationError(f"{name} is not encodable as UTF-8") from None
        return value

    def write(self, w: Writer, value: str) -> None:
        data = value.encode("utf-8")
        w.u32(len(data))
        w.raw(data)

    def read(self, r: Reader, name: str) -> str:
        n = r.length(self.max_len, 1, name)
        try:
            return bytes(r.take(n)).decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedMessage(f"{name} is not valid UTF-8") from None


class CheckedIds(tuple):  # type: ignore[type-arg]
    """A tuple of client ids already checked (strictly increasing, each a u64), as
    :class:`IdList` returns it. Messages built from it skip the per-id check, and its wire bytes
    are computed once: a server sends one roster of 10,000 ids to 10,000 clients in O(n) work
    per message, not O(n log n) Python checks each."""

    def wire_bytes(self) -> bytes:
        cached = self.__dict__.get("_wire")
        if cached is None:
            cached = self.__dict__["_wire"] = np.asarray(self, dtype="<u8").tobytes()
        return cached


class IdList(FieldCodec):
    """A set of client ids, carried as a strictly increasing tuple (one canonical form)."""

    def __init__(self, max_count: int = 1 << 20) -> None:
        self.max_count = max_count

    def check(self, name: str, value: Any) -> tuple[int, ...]:
        if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, set, frozenset, np.ndarray)):
            raise ConfigurationError(f"{name} must be a collection of client ids")
        if type(value) is CheckedIds:
            if len(value) > self.max_count:
                raise ConfigurationError(f"{name} holds {len(value)} ids, above {self.max_count}")
            return value
        ids = CheckedIds(sorted(U64().check(name, v) for v in value))
        if len(set(ids)) != len(ids):
            raise ConfigurationError(f"{name} holds duplicate client ids")
        if len(ids) > self.max_count:
            raise ConfigurationError(f"{name} holds {len(ids)} ids, above {self.max_count}")
        return ids

    def write(self, w: Writer, value: tuple[int, ...]) -> None:
        w.u32(len(value))
        w.raw(value.wire_bytes() if type(value) is CheckedIds else np.asarray(value, dtype="<u8").tobytes())

    def read(self, r: Reader, name: str) -> tuple[int, ...]:
        n = r.length(self.max_count, 8, name)
        ids = np.frombuffer(r.take(8 * n), dtype="<u8")
        if n > 1 and not bool(np.all(ids[1:] > ids[:-1])):
            raise MalformedMessage(f"{name} is not a strictly increasing list of ids")
        checked = CheckedIds(ids.tolist())
        checked.__dict__["_wire"] = ids.tobytes()  # already little-endian u64: no second conversion
        return checked

    def describe(self, value: tuple[int, ...]) -> str:
        return f"<{len(value)} ids>" if len(value) > 8 else repr(value)


class Vector(FieldCodec):
    """A 1-D numpy array of one of ``dtypes`` with at most ``max_len`` elements."""

    def __init__(self, dtypes: Sequence[str] = ("uint32", "uint64"), max_len: int = 1 << 31) -> None:
        self.dtypes = tuple(np.dtype(d) for d in dtypes)
        self.max_len = max_len
        for dt in self.dtypes:
            if dt not in _DTYPE_CODES:
                raise ConfigurationError(f"vector dtype {dt} has no wire code")

    def check(self, name: str, value: Any) -> np.ndarray:
        if not isinstance(value, np.ndarray):
            raise ConfigurationError(f"{name} must be a numpy array, got {type(value).__name__}")
        native = value.dtype.newbyteorder("=")
        if native not in self.dtypes:
            raise ConfigurationError(f"{name} has dtype {value.dtype}, allowed: {[str(d) for d in self.dtypes]}")
        if value.ndim != 1 or value.shape[0] > self.max_len:
            raise ConfigurationError(f"{name} must be 1-D with at most {self.max_len} values, got shape {value.shape}")
        return value

    def write(self, w: Writer, value: np.ndarray) -> None:
        native = value.dtype.newbyteorder("=")
        code = _DTYPE_CODES[native]
        w.u8(code)
        w.u64(value.shape[0])
        data = np.ascontiguousarray(value, dtype=VECTOR_DTYPES[code])
        w.raw(memoryview(data).cast("B"))

    def _read_dtype(self, r: Reader, name: str) -> np.dtype:
        """The element type code, refused unless it is one of this field's dtypes."""
        code = r.u8()
        dt = VECTOR_DTYPES.get(code)
        if dt is None or dt.newbyteorder("=") not in self.dtypes:
            raise MalformedMessage(f"{name} has unexpected element type code {code}")
        return dt

    def read(self, r: Reader, name: str) -> np.ndarray:
        dt = self._read_dtype(r, name)
        n = r.u64()
        if n > self.max_len:
            raise MalformedMessage(f"{name} declares {n} values, above the limit of {self.max_len}")
        if n * dt.itemsize > r.remaining:
            raise MalformedMessage(f"truncated: {name} declares {n} values, only {r.remaining} bytes left")
        arr = np.frombuffer(r.take(n * dt.itemsize), dtype=dt).astype(dt.newbyteorder("="), copy=True)
        if arr.dtype.kind == "f" and not bool(np.isfinite(arr).all()):
            raise MalformedMessage(f"{name} holds non-finite values")
        return arr

    def describe(self, value: np.ndarray) -> str:
        return f"<{value.dtype} vector of {value.shape[0]}>"


class PackedVector(Vector):
    """An unsigned vector sent with only as many bits per value as its largest value needs.

    Residues modulo ``2**bits`` with ``bits`` below the dtype's width (say a 20-bit secure
    aggregation round in ``uint32``) then cost ``bits / 8`` bytes each instead of 4. Values are
    packed little-endian, bit by bit, and the padding bits of the last byte must be zero.

    Wire: ``dtype code u8 | count u64 | width u8 | ceil(count * width / 8) bytes``. The width
    is the bit length of the maximum, so the encoding is canonical, with one exception that
    keeps decoding proportionate to the input: width 0 (no payload at all) is only allowed for
    an all-zero vector of at most :data:`MAX_ZERO_WIDTH_VALUES` values. A longer all-zero
    vector is written with width 1 (one zero bit per value), and its width-0 form is refused.
    So every decode allocates at most ``8 * itemsize`` (<= 64) bytes per byte of payload, plus
    at most ``8 * MAX_ZERO_WIDTH_VALUES`` bytes for a payload-free zero vector: a 10-byte field
    can no longer declare a gigabyte of zeros. Every vector an earlier writer produced stays
    readable, except all-zero vectors longer than :data:`MAX_ZERO_WIDTH_VALUES` (written with
    width 0 before this rule), which are refused as malformed.
    """

    def __init__(self, dtypes: Sequence[str] = ("uint32", "uint64"), max_len: int = 1 << 31) -> None:
        super().__init__(dtypes, max_len)
        if any(dt.kind != "u" for dt in self.dtypes):
            raise ConfigurationError("packed vectors hold unsigned integers")

    @staticmethod
    def width_of(values: np.ndarray) -> int:
        """The canonical packed width of an unsigned vector (see the class docstring)."""
        n = values.shape[0]
        width = int(values.max()).bit_length() if n else 0
        return 1 if width == 0 and n > MAX_ZERO_WIDTH_VALUES else width

    def write(self, w: Writer, value: np.ndarray) -> None:
        code = _DTYPE_CODES[value.dtype.newbyteorder("=")]
        dt = VECTOR_DTYPES[code]
        data = np.ascontiguousarray(value, dtype=dt)
        full = dt.itemsize * 8
        width = self.width_of(data)
        w.u8(code)
        w.u64(data.shape[0])
        w.u8(width)
        if width == full:
            w.raw(memoryview(data).cast("B"))
        elif width:
            # In chunks, so the one-byte-per-bit temporaries stay small.
            for start in range(0, data.shape[0], 8 * _CHUNK_VALUES):
                chunk = data[start : start + 8 * _CHUNK_VALUES]
                bits = np.unpackbits(chunk.view(np.uint8).reshape(-1, dt.itemsize), axis=1, bitorder="little")
                w.raw(np.packbits(bits[:, :width], bitorder="little").tobytes())

    def read(self, r: Reader, name: str) -> np.ndarray:
        dt = self._read_dtype(r, name)
        n = r.u64()
        width = r.u8()
        full = dt.itemsize * 8
        if n > self.max_len or n * dt.itemsize > _MAX_DECODED:
            raise MalformedMessage(f"{name} declares {n} values, above the limit")
        if width > full or (n == 0 and width):
            raise MalformedMessage(f"{name} declares {width}-bit values in a {full}-bit type")
        if width == 0 and n > MAX_ZERO_WIDTH_VALUES:
            raise MalformedMessage(
                f"{name} declares {n} zero values with no payload, above the limit of "
                f"{MAX_ZERO_WIDTH_VALUES} (longer zero vectors are packed with width 1)"
            )
        nbytes = (n * width + 7) // 8
        if nbytes > r.remaining:
            raise MalformedMessage(f"truncated: {name} declares {n} values, only {r.remaining} bytes left")
        raw = np.frombuffer(r.take(nbytes), dtype=np.uint8)
        if width == full:
            arr = raw.view(dt).astype(dt.newbyteorder("="), copy=True)
        else:
            arr = np.zeros(n, dtype=dt.newbyteorder("="))
            # Unpack in chunks of whole bytes and values, so temporaries stay small.
            step = 8 * _CHUNK_VALUES
            for start in range(0, n if width else 0, step):
                count = min(step, n - start)
                lo, hi = start * width // 8, (start * width + count * width + 7) // 8
                bits = np.unpackbits(raw[lo:hi], bitorder="little")[: count * width]
                grid = np.zeros((count, full), dtype=np.uint8)
                grid[:, :width] = bits.reshape(count, width)
                arr[start : start + count] = np.packbits(grid, axis=1, bitorder="little").view(dt).reshape(count)
            if width and n * width % 8 and raw[-1] >> (n * width % 8):
                raise MalformedMessage(f"{name} has non-zero padding bits")
        if self.width_of(arr) != width:
            raise MalformedMessage(f"{name} is not canonically packed (width {width})")
        return arr


class BytesMap(FieldCodec):
    """A mapping from client id to a byte string (e.g. one encrypted share per peer)."""

    def __init__(self, max_entries: int = 1 << 16, max_value_len: int = 1 << 16) -> None:
        self.max_entries = max_entries
        self.value_codec = Bytes(max_value_len)

    def check(self, name: str, value: Any) -> dict[int, bytes]:
        if not isinstance(value, Mapping):
            raise ConfigurationError(f"{name} must be a mapping of client id to bytes")
        if len(value) > self.max_entries:
            raise ConfigurationError(f"{name} has {len(value)} entries, above {self.max_entries}")
        u64 = U64()
        checked = {u64.check(name, k): self.value_codec.check(name, v) for k, v in value.items()}
        if len(checked) != len(value):  # a Mapping whose distinct keys are one client id
            raise ConfigurationError(f"{name} holds duplicate client ids")
        return dict(sorted(checked.items()))

    def write(self, w: Writer, value: dict[int, bytes]) -> None:
        w.u32(len(value))
        for k in sorted(value):
            w.u64(k)
            self.value_codec.write(w, value[k])

    def read(self, r: Reader, name: str) -> dict[int, bytes]:
        n = r.length(self.max_entries, 12, name)
        out: dict[int, bytes] = {}
        last = -1
        for _ in range(n):
            k = r.u64()
            if k <= last:
                raise MalformedMessage(f"{name} keys are not strictly increasing")
            last = k
            out[k] = self.value_codec.read(r, name)
        return out

    def describe(self, value: dict[int, bytes]) -> str:
        return f"<{len(value)} entries>"
