"""The server's sum across processes: every worker adds its own slice of every upload.

Why. Loading a seeded ciphertext makes SEAL expand its seed into the second polynomial (a
Blake2xb stream, about 60 us per 4096 values, two thirds of a load), and TenSEAL holds the GIL
while it does: threads cannot share that work, processes can. A :class:`ServerPool` of
``processes`` splits each upload's ``k`` ciphertexts into ``processes`` contiguous slices; this
process adds the first slice while ``processes - 1`` worker processes (``python -m he.worker``)
add theirs, each into its own :class:`~he.sums.CiphertextSum`. The server's wall time per upload
falls by about the number of cores; the CPU work stays the same (plus one copy of each slice
into shared memory), which the benchmark reports separately.

What crosses. Workers hold what the server holds and nothing else: the public parameters and
ciphertexts. They are started once per pool (:meth:`ServerPool.shared` keeps one per size for
the life of the process, as a session's keys are set up once) and serve any number of rounds,
each under its own token. An upload is still all or nothing: when any slice is refused the
others are retracted before the error (the first in ciphertext order, with its type: a
:class:`MalformedMessage` stays one) reaches the caller. A worker that dies takes its slice of
the running sums with it: the round aborts with :class:`AggregationAborted`.

Frames on the pipes: one op byte, an 8-byte little-endian length, then a JSON header (4-byte
length first) and blobs (each with an 8-byte length). Uploads do not travel in frames but in a
memory file each worker shares with this process (the frame names their spans): a pipe costs
a copy through the kernel in 64 KiB steps, as long as the work it hands over. Replies are
``K`` (done, with blobs for a dump) or ``E`` (a typed error: class name and text).
"""

from __future__ import annotations

import atexit
import itertools
import json
import mmap
import os
import struct
import subprocess
import sys
import threading
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

from he.params import CKKSParameters
from he.ring import Ring
from he.sums import CiphertextSum
from privagg.errors import (
    AggregationAborted,
    ConfigurationError,
    MalformedMessage,
    PrivaggError,
    ProtocolViolation,
)

__all__ = ["ServerPool", "PooledSum", "resolve_processes", "read_frame", "write_frame", "ERRORS"]

BEGIN, ADD, RETRACT, DUMP, DISCARD, OK, ERROR = b"B", b"A", b"R", b"D", b"X", b"K", b"E"
#: The errors a worker may report, by name (anything else arrives as a PrivaggError).
ERRORS: dict[str, type[PrivaggError]] = {cls.__name__: cls for cls in (
    MalformedMessage, ProtocolViolation, ConfigurationError, PrivaggError)}
#: Below this many ciphertexts per slice a pipe round trip costs more than the work it moves.
MIN_SLICE = 16
_FRAME = struct.Struct("<cQ")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)


def resolve_processes(value: int | str | None) -> int:
    """``server_processes`` as a count: ``"auto"`` is every CPU this process may run on."""
    if value == "auto":
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except AttributeError:  # pragma: no cover - not Linux
            return max(1, os.cpu_count() or 1)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 256:
        raise ConfigurationError(f"server_processes must be an integer in [1, 256] or 'auto', got {value!r}")
    return value


# -- frames -----------------------------------------------------------------------------------------
def write_frame(out: IO[bytes], op: bytes, header: dict[str, Any] | None = None, blobs: list[bytes] = ()) -> None:
    head = json.dumps(header or {}).encode()
    size = _U32.size + len(head) + sum(_U64.size + len(b) for b in blobs)
    out.write(_FRAME.pack(op, size))
    out.write(_U32.pack(len(head)))
    out.write(head)
    for blob in blobs:
        out.write(_U64.pack(len(blob)))
        out.write(blob)
    out.flush()


def read_frame(inp: IO[bytes]) -> tuple[bytes, dict[str, Any], list[bytes]] | None:
    """The next frame, or ``None`` at the end of the stream; a truncated or inconsistent frame
    raises :class:`MalformedMessage` (the two ends are our own processes, but a pipe is a pipe)."""
    first = inp.read(_FRAME.size)
    if not first:
        return None
    if len(first) != _FRAME.size:
        raise MalformedMessage("truncated frame header on a worker pipe")
    op, size = _FRAME.unpack(first)
    body = inp.read(size)
    if len(body) != size or size < _U32.size:
        raise MalformedMessage(f"truncated frame on a worker pipe ({len(body)} of {size} bytes)")
    view = memoryview(body)
    (head_len,) = _U32.unpack_from(view, 0)
    pos = _U32.size + head_len
    if pos > size:
        raise MalformedMessage("frame header overruns its frame")
    header = json.loads(bytes(view[_U32.size:pos]))
    blobs = []
    while pos < size:
        if pos + _U64.size > size:
            raise MalformedMessage("blob length overruns its frame")
        (n,) = _U64.unpack_from(view, pos)
        pos += _U64.size
        if pos + n > size:
            raise MalformedMessage("blob overruns its frame")
        blobs.append(bytes(view[pos:pos + n]))
        pos += n
    return op, header, blobs


def error_frame(exc: PrivaggError) -> dict[str, str]:
    kind = type(exc).__name__ if type(exc).__name__ in ERRORS else "PrivaggError"
    return {"kind": kind, "text": str(exc)}


def parameters_to_json(params: CKKSParameters) -> dict[str, Any]:
    data = asdict(params)
    data["coeff_modulus_bits"] = list(params.coeff_modulus_bits)
    return data


def parameters_from_json(data: dict[str, Any]) -> CKKSParameters:
    data = dict(data)
    data["coeff_modulus_bits"] = tuple(data["coeff_modulus_bits"])
    return CKKSParameters(**data)


# -- the parent's side ------------------------------------------------------------------------------
class _Worker:
    """One ``python -m he.worker`` child, the two pipes to it and the shared memory its slices
    travel through (an anonymous memory file both map: one copy in, none through the pipe)."""

    def __init__(self) -> None:
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        memfd = getattr(os, "memfd_create", None)
        self.shm_fd = memfd("privagg-pool", 0) if memfd is not None else -1
        self.shm: mmap.mmap | None = None
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
        fds = (to_child_r, from_child_w) + ((self.shm_fd,) if self.shm_fd >= 0 else ())
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "he.worker", *map(str, (to_child_r, from_child_w, self.shm_fd))],
                pass_fds=fds, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, env=env)
        finally:
            os.close(to_child_r)
            os.close(from_child_w)
        self.writer = os.fdopen(to_child_w, "wb", buffering=1 << 20)
        self.reader = os.fdopen(from_child_r, "rb", buffering=1 << 20)

    def send(self, op: bytes, header: dict[str, Any], blobs: list[bytes] = ()) -> None:
        try:
            write_frame(self.writer, op, header, blobs)
        except OSError as exc:  # BrokenPipeError included
            raise _WorkerGone(f"a server worker process is gone ({exc})") from None

    def send_blobs(self, op: bytes, header: dict[str, Any], blobs: list[bytes]) -> None:
        """Send ``blobs`` through the shared memory (spans in the header), or the pipe without it.
        The worker answers before the next frame, so the memory is never overwritten under it."""
        if self.shm_fd < 0:  # pragma: no cover - no memfd (not Linux)
            self.send(op, header, blobs)
            return
        size = sum(len(b) for b in blobs)
        if self.shm is None or len(self.shm) < size:
            if self.shm is not None:
                self.shm.close()
            capacity = max(size, 1 << 20)
            os.ftruncate(self.shm_fd, capacity)
            self.shm = mmap.mmap(self.shm_fd, capacity)
        spans, pos = [], 0
        for blob in blobs:
            self.shm[pos:pos + len(blob)] = blob
            spans.append((pos, len(blob)))
            pos += len(blob)
        self.send(op, {**header, "spans": spans})

    def reply(self) -> tuple[PrivaggError | None, list[bytes]]:
        frame = read_frame(self.reader)
        if frame is None:
            raise _WorkerGone(f"a server worker process exited (code {self.process.poll()})")
        op, header, blobs = frame
        if op == OK:
            return None, blobs
        return ERRORS.get(header.get("kind", ""), PrivaggError)(header.get("text", "worker error")), []

    def close(self) -> None:
        if self.shm is not None:
            self.shm.close()
            self.shm = None
        if self.shm_fd >= 0:
            os.close(self.shm_fd)
            self.shm_fd = -1
        for f in (self.writer, self.reader):
            try:
                f.close()
            except OSError:
                pass
        try:
            self.process.wait(timeout=5)  # it exits at the end of its input
        except subprocess.TimeoutExpired:  # pragma: no cover
            self.process.kill()
            self.process.wait()


class _WorkerGone(PrivaggError):
    pass


def _exchange(requests: list[tuple[_Worker, bytes, dict[str, Any], list[bytes]]]) -> None:
    """Send every request (through shared memory when it carries blobs), then read every reply,
    so the workers run at once; raise the first error in request order."""
    for worker, op, header, blobs in requests:
        if blobs:
            worker.send_blobs(op, header, blobs)
        else:
            worker.send(op, header)
    errors = [worker.reply()[0] for worker, *_ in requests]
    first = next((e for e in errors if e is not None), None)
    if first is not None:
        raise first


class ServerPool:
    """``processes - 1`` worker processes that hold slices of the server's running sums."""

    _shared: dict[int, ServerPool] = {}
    _shared_lock = threading.Lock()

    @classmethod
    def shared(cls, processes: int) -> ServerPool:
        """This process's pool of that size, started on first use and closed at exit."""
        with cls._shared_lock:
            pool = cls._shared.get(processes)
            if pool is not None and not pool.alive:
                pool.close()  # a worker died (and took a round's slices with it): start afresh
            if pool is None or pool.closed:
                pool = cls._shared[processes] = cls(processes)
            return pool

    def __init__(self, processes: int) -> None:
        self.processes = resolve_processes(processes)
        if self.processes < 2:
            raise ConfigurationError("a ServerPool needs at least 2 processes (1 means: add in this process)")
        if os.name != "posix":  # pragma: no cover - pass_fds and /proc are POSIX
            raise ConfigurationError("server_processes above 1 needs a POSIX system; use server_processes=1")
        self.lock = threading.Lock()  # one exchange with the workers at a time
        self._tokens = itertools.count(1)
        self._abandoned: list[tuple[int, list[_Worker]]] = []  # discarded at the next exchange
        self.closed = False
        self.workers = [_Worker() for _ in range(self.processes - 1)]
        atexit.register(self.close)

    @property
    def alive(self) -> bool:
        return not self.closed and all(w.process.poll() is None for w in self.workers)

    def ping(self) -> None:
        """Wait until every worker is up and answering (their start is not part of any round)."""
        with self.lock:
            self.flush_abandoned()
            _exchange([(worker, DISCARD, {"token": 0}, []) for worker in self.workers])

    def worker_cpu_seconds(self) -> float | None:
        """CPU seconds the workers have used so far (user + system; Linux ``/proc``, else None)."""
        total = 0.0
        try:
            tick = os.sysconf("SC_CLK_TCK")
            for worker in self.workers:
                with open(f"/proc/{worker.process.pid}/stat", "rb") as f:
                    fields = f.read().rsplit(b")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime (fields 14, 15)
        except (OSError, ValueError, IndexError):  # pragma: no cover - not Linux
            return None
        return total

    def new_sum(self, ring: Ring, *, seeded: bool) -> PooledSum:
        return PooledSum(self, ring, seeded=seeded, token=next(self._tokens))

    def abandon(self, token: int, workers: list[_Worker]) -> None:
        """Note a round whose slices the workers can drop (safe from ``__del__``: no exchange here)."""
        self._abandoned.append((token, workers))

    def flush_abandoned(self) -> None:
        """Tell the workers to drop abandoned rounds; call with :attr:`lock` held."""
        while self._abandoned:
            token, workers = self._abandoned.pop()
            _exchange([(worker, DISCARD, {"token": token}, []) for worker in workers])

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            for worker in self.workers:
                worker.close()

    def __repr__(self) -> str:
        return f"ServerPool(processes={self.processes}, closed={self.closed})"


def _slices(count: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` contiguous, near-equal ``(start, stop)`` ranges covering ``range(count)``."""
    base, extra = divmod(count, parts)
    bounds, start = [], 0
    for i in range(parts):
        stop = start + base + (1 if i < extra else 0)
        bounds.append((start, stop))
        start = stop
    return bounds


class PooledSum:
    """The running sum of a round, sliced across a :class:`ServerPool` (same API as CiphertextSum)."""

    def __init__(self, pool: ServerPool, ring: Ring, *, seeded: bool, token: int) -> None:
        self.pool = pool
        self.ring = ring
        self.seeded = seeded
        self.token = token
        self.uploads = 0
        self._bounds: list[tuple[int, int]] | None = None
        self._own: CiphertextSum | None = None
        self._begun: list[_Worker] = []
        self._broken = False

    def _start(self, count: int) -> None:
        parts = max(1, min(self.pool.processes, count // MIN_SLICE))
        self._bounds = _slices(count, parts)
        self._own = CiphertextSum(self.ring, seeded=self.seeded, first=0)
        header = {"token": self.token, "params": parameters_to_json(self.ring.params), "seeded": self.seeded}
        self._begun = self.pool.workers[:len(self._bounds) - 1]
        _exchange([(worker, BEGIN, {**header, "first": start}, [])
                   for worker, (start, _) in zip(self._begun, self._bounds[1:])])

    def _check(self) -> None:
        if self._broken:
            raise AggregationAborted("a server worker process failed earlier in this round; its sums are lost")

    def add(self, blobs: list[bytes], who: str) -> None:
        """Add one upload, all slices or none; raise the first refusal in ciphertext order."""
        self._check()
        with self.pool.lock:
            try:
                self.pool.flush_abandoned()
                self._add(blobs, who)
            except _WorkerGone as exc:
                self._broken = True
                raise AggregationAborted(str(exc)) from None

    def _add(self, blobs: list[bytes], who: str) -> None:
        if self._bounds is None:
            self._start(len(blobs))
        assert self._bounds is not None and self._own is not None
        if self._bounds[-1][1] != len(blobs):
            raise ValueError(f"{len(blobs)} ciphertexts for a sum of {self._bounds[-1][1]}")  # caller's bug
        for worker, (start, stop) in zip(self._begun, self._bounds[1:]):
            worker.send_blobs(ADD, {"token": self.token, "who": who}, blobs[start:stop])
        own_start, own_stop = self._bounds[0]
        errors: list[PrivaggError | None] = []
        try:
            self._own.add(blobs[own_start:own_stop], who)
            errors.append(None)
        except PrivaggError as exc:
            errors.append(exc)
        errors.extend(worker.reply()[0] for worker in self._begun)
        first_error = next((e for e in errors if e is not None), None)
        if first_error is None:
            self.uploads += 1
            return
        if errors[0] is None:
            self._own.retract(blobs[own_start:own_stop], who)
        # A retraction reloads blobs that loaded once: it cannot be refused.
        _exchange([(worker, RETRACT, {"token": self.token, "who": who}, blobs[start:stop])
                   for worker, (start, stop), error in zip(self._begun, self._bounds[1:], errors[1:])
                   if error is None])
        raise first_error

    def dump(self) -> list[bytes]:
        """Every slice's ciphertexts, serialized in parallel, in order; the workers forget the round."""
        self._check()
        if self._own is None:
            raise ValueError("no upload has been added")
        with self.pool.lock:
            try:
                self.pool.flush_abandoned()
                for worker in self._begun:
                    worker.send(DUMP, {"token": self.token})
                out = self._own.dump()
                for worker in self._begun:
                    error, blobs = worker.reply()
                    if error is not None:  # pragma: no cover
                        raise error
                    out.extend(blobs)
            except _WorkerGone as exc:
                self._broken = True
                raise AggregationAborted(str(exc)) from None
        self._begun = []
        return out

    def discard(self) -> None:
        """Let the workers drop this round's slices (an aborted or abandoned round); they do at
        the pool's next exchange, so this is safe anywhere, ``__del__`` included."""
        if self._begun and not self.pool.closed:
            self.pool.abandon(self.token, self._begun)
        self._begun = []

    def __del__(self) -> None:
        self.discard()

    def __repr__(self) -> str:
        return f"PooledSum(token={self.token}, uploads={self.uploads}, slices={self._bounds})"
