"""A server worker process (``python -m he.worker IN_FD OUT_FD``): adds its slice of every upload.

The child side of :mod:`he.pool`. It reads frames from ``IN_FD`` and answers each on
``OUT_FD``; it holds public parameters and ciphertexts only, and exits when its input ends
(the parent closed the pool, or died).
"""

from __future__ import annotations

import mmap
import os
import sys
from typing import IO

from he.pool import (
    ADD,
    BEGIN,
    DISCARD,
    DUMP,
    ERROR,
    OK,
    RETRACT,
    error_frame,
    parameters_from_json,
    read_frame,
    write_frame,
)
from he.ring import Ring
from he.sums import CiphertextSum
from privagg.errors import MalformedMessage, PrivaggError

__all__ = ["serve"]


class _Shared:
    """The memory file the parent writes uploads into, mapped as large as the parent made it."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.map: mmap.mmap | None = None

    def views(self, spans: list[list[int]]) -> list[memoryview]:
        if self.fd < 0:
            raise MalformedMessage("spans in a frame, but this worker has no shared memory")
        size = os.fstat(self.fd).st_size
        if self.map is None or len(self.map) != size:  # len: the mapping; size(): the file
            if self.map is not None:
                self.map.close()
            self.map = mmap.mmap(self.fd, size, access=mmap.ACCESS_READ)
        for start, length in spans:  # all checked before any view exists: a view left behind pins the map
            if not (0 <= start and 0 <= length and start + length <= size):
                raise MalformedMessage(f"span ({start}, {length}) outside the {size}-byte shared memory")
        with memoryview(self.map) as whole:
            return [whole[start:start + length] for start, length in spans]


def serve(inp: IO[bytes], out: IO[bytes], shared_fd: int = -1) -> None:
    """Answer frames until the input ends."""
    sums: dict[int, CiphertextSum] = {}
    shared = _Shared(shared_fd)
    while True:
        frame = read_frame(inp)
        if frame is None:
            return
        op, header, blobs = frame
        reply: list[bytes] = []
        views: list[memoryview] = []
        try:
            if "spans" in header:
                views = shared.views(header["spans"])
                blobs = views  # type: ignore[assignment]
            token = int(header["token"])
            if op == BEGIN:
                params = parameters_from_json(header["params"])
                sums[token] = CiphertextSum(Ring(params), seeded=bool(header["seeded"]), first=int(header["first"]))
            elif op == ADD:
                sums[token].add(blobs, header["who"])
            elif op == RETRACT:  # the parent sends the upload's slice again (it loaded once: it loads again)
                sums[token].retract(blobs, header["who"])
            elif op == DUMP:
                reply = sums.pop(token).dump()
            elif op == DISCARD:
                sums.pop(token, None)
            else:
                raise MalformedMessage(f"unknown worker op {op!r}")
        except PrivaggError as exc:
            write_frame(out, ERROR, error_frame(exc))
            continue
        except (KeyError, ValueError, TypeError) as exc:  # a parent's bug, reported rather than fatal
            write_frame(out, ERROR, {"kind": "PrivaggError", "text": f"worker: {type(exc).__name__}: {exc}"})
            continue
        finally:
            del blobs
            for view in views:  # the map can only be resized with no view on it
                view.release()
        write_frame(out, OK, None, reply)


def main(argv: list[str]) -> int:
    in_fd, out_fd, shared_fd = int(argv[0]), int(argv[1]), int(argv[2])
    with os.fdopen(in_fd, "rb", buffering=1 << 20) as inp, os.fdopen(out_fd, "wb", buffering=1 << 20) as out:
        serve(inp, out, shared_fd)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
