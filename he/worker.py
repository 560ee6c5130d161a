"""A server worker process (``python -m he.worker IN_FD OUT_FD``): adds its slice of every upload.

The child side of :mod:`he.pool`. It reads frames from ``IN_FD`` and answers each on
``OUT_FD``; it holds public parameters and ciphertexts only, and exits when its input ends
(the parent closed the pool, or died).
"""

from __future__ import annotations

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


def serve(inp: IO[bytes], out: IO[bytes]) -> None:
    """Answer frames until the input ends."""
    sums: dict[int, CiphertextSum] = {}
    while True:
        frame = read_frame(inp)
        if frame is None:
            return
        op, header, blobs = frame
        reply: list[bytes] = []
        try:
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
        write_frame(out, OK, None, reply)


def main(argv: list[str]) -> int:
    in_fd, out_fd = int(argv[0]), int(argv[1])
    with os.fdopen(in_fd, "rb", buffering=1 << 20) as inp, os.fdopen(out_fd, "wb", buffering=1 << 20) as out:
        serve(inp, out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
