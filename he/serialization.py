"""Checks on SEAL serializations received from others, done before SEAL ever sees the bytes.

SEAL's loaders validate what they load, but they are C++ behind pybind11 and read through a
stream: a wrong declared size, a foreign version or an unknown compressor is best refused here,
where the error is typed and the process cannot be taken down. What passes is a blob whose
16-byte header (``magic 0xA15E | header size 16 | version | compression | reserved 0 |
total size``) is SEAL 4's, declares exactly the bytes present, within a bound the caller derives
from the parameters, and whose body starts like the declared compressor's output. SEAL then
checks the body against the context (parameters id, sizes, every coefficient below its prime).
"""

from __future__ import annotations

import struct

from privagg.errors import MalformedMessage

__all__ = ["SEAL_HEADER_BYTES", "SEAL_MAGIC", "COMPRESSION_NAMES", "check_seal_blob", "body_bound"]

SEAL_HEADER_BYTES = 16
SEAL_MAGIC = 0xA15E
SEAL_VERSION_MAJOR = 4
_HEADER = struct.Struct("<HBBBBHQ")
#: SEAL's compr_mode_type values.
COMPRESSION_NAMES = {0: "none", 1: "zlib", 2: "zstd"}
_ZSTD_FRAME_MAGIC = b"\x28\xb5\x2f\xfd"


def body_bound(raw_bytes: int) -> int:
    """An upper bound on a SEAL blob holding ``raw_bytes`` of uncompressed body, any compressor
    (zstd's and zlib's worst-case expansion is well under 1% plus a small constant)."""
    return SEAL_HEADER_BYTES + raw_bytes + raw_bytes // 64 + 1024


def check_seal_blob(data: bytes | memoryview, *, max_bytes: int, what: str = "ciphertext") -> None:
    """Raise :class:`MalformedMessage` unless ``data`` looks like one SEAL 4 serialization."""
    n = len(data)
    if n <= SEAL_HEADER_BYTES:
        raise MalformedMessage(f"{what} of {n} bytes is shorter than a SEAL header")
    if n > max_bytes:
        raise MalformedMessage(f"{what} of {n} bytes exceeds the {max_bytes} these parameters allow")
    magic, header_size, major, _minor, compression, reserved, size = _HEADER.unpack(bytes(data[:SEAL_HEADER_BYTES]))
    if magic != SEAL_MAGIC or header_size != SEAL_HEADER_BYTES:
        raise MalformedMessage(f"{what} is not a SEAL serialization (bad magic or header size)")
    if major != SEAL_VERSION_MAJOR:
        raise MalformedMessage(f"{what} was written by SEAL {major}.x; this build reads {SEAL_VERSION_MAJOR}.x")
    if compression not in COMPRESSION_NAMES:
        raise MalformedMessage(f"{what} declares unknown compression mode {compression}")
    if reserved != 0:
        raise MalformedMessage(f"{what} has a non-zero reserved header field")
    if size != n:
        raise MalformedMessage(f"{what} header declares {size} bytes, {n} present")
    body = bytes(data[SEAL_HEADER_BYTES:SEAL_HEADER_BYTES + 4])
    if compression == 2 and body != _ZSTD_FRAME_MAGIC:
        raise MalformedMessage(f"{what} declares zstd compression but its body is not a zstd frame")
    if compression == 1 and (len(body) < 2 or body[0] & 0x0F != 8 or (body[0] << 8 | body[1]) % 31):
        raise MalformedMessage(f"{what} declares zlib compression but its body is not a zlib stream")
