"""A server worker process (``he.worker.main([IN_FD, OUT_FD, SHARED_FD])``): adds its slice of every upload.

The child side of :mod:`he.pool`, which starts it isolated (``python -I``, its import path
passed explicitly: :func:`he.pool.worker_command`); ``python -m he.worker IN_FD OUT_FD SHARED_FD``
runs the same loop. It reads frames from ``IN_FD`` and answers each on ``OUT_FD``; it holds
public parameters and ciphertexts only, and exits when its input ends (the parent closed the
pool, or died).
"""

from __future__ import annotations

import mmap
import os
import sys
from typing import IO, Any

from he.pool import (
    ADD,
    BEGIN,
    DISCARD,
    DUMP,
    ERROR,
    OK,
    RETRACT,
    UPLOAD_ERRORS,
    WorkerFault,
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


class _Refused(Exception):
    """An upload's slice refused (the typed error travels to the parent as the upload's)."""

    def __init__(self, error: PrivaggError) -> None:
        super().__init__(str(error))
        self.error = error


def _add(total: CiphertextSum, blobs: list[Any], who: str) -> None:
    try:
        total.add(blobs, who)
    except UPLOAD_ERRORS as exc:
        raise _Refused(exc) from None
    except Exception as exc:  # whatever a crafted slice provokes, it is the upload's fault: typed
        raise _Refused(MalformedMessage(f"{who}'s ciphertexts {total.first}..{total.first + len(blobs) - 1} "
                                        f"do not add: {type(exc).__name__}: {exc}")) from None


def serve(inp: IO[bytes], out: IO[bytes], shared_fd: int = -1) -> None:
    """Answer frames until the input ends. Every reply echoes the request's ``token`` and ``seq``;
    a request out of sequence, for an unknown round or with bad spans is refused with
    :class:`~he.pool.WorkerFault` (this process's fault, not an upload's)."""
    sums: dict[int, CiphertextSum] = {}
    shared = _Shared(shared_fd)
    last_seq: int | None = None
    while True:
        frame = read_frame(inp)
        if frame is None:
            return
        op, header, blobs = frame
        tag = {"token": header.get("token"), "seq": header.get("seq")}
        reply: list[bytes] = []
        views: list[memoryview] = []
        error: PrivaggError | None = None
        try:
            seq = header.get("seq")
            if seq is not None:
                if type(seq) is not int or (last_seq is not None and seq != last_seq + 1):
                    raise WorkerFault(f"request {seq!r} out of sequence (the last was {last_seq})")
                last_seq = seq
            if "spans" in header:
                views = shared.views(header["spans"])
                blobs = views  # type: ignore[assignment]
            token = int(header["token"])
            if op == BEGIN:
                params = parameters_from_json(header["params"])
                sums[token] = CiphertextSum(Ring(params), seeded=bool(header["seeded"]), first=int(header["first"]))
            elif op == ADD:
                _add(sums[token], blobs, str(header["who"]))
            elif op == RETRACT:  # the parent sends the upload's slice again (it loaded once: it loads again)
                sums[token].retract(blobs, str(header["who"]))
            elif op == DUMP:
                reply = sums.pop(token).dump()
            elif op == DISCARD:
                sums.pop(token, None)
            else:
                raise WorkerFault(f"unknown worker op {op!r}")
        except _Refused as exc:
            error = exc.error
        except WorkerFault as exc:
            error = exc
        except Exception as exc:  # a parent's bug or a pool out of step: reported, never fatal
            error = WorkerFault(f"worker: {type(exc).__name__}: {exc}")
        finally:
            del blobs
            for view in views:  # the map can only be resized with no view on it
                view.release()
        if error is None:
            write_frame(out, OK, tag, reply)
        else:
            write_frame(out, ERROR, {**error_frame(error), **tag})


def main(argv: list[str]) -> int:
    in_fd, out_fd, shared_fd = int(argv[0]), int(argv[1]), int(argv[2])
    for fd in (in_fd, out_fd, shared_fd):  # passed to this process only: not to any child of it
        if fd >= 0:
            os.set_inheritable(fd, False)
    with os.fdopen(in_fd, "rb", buffering=1 << 20) as inp, os.fdopen(out_fd, "wb", buffering=1 << 20) as out:
        serve(inp, out, shared_fd)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
