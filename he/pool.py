"""The server's sum across processes: every worker adds its own slice of every upload.

Why. Loading a seeded ciphertext makes SEAL expand its seed into the second polynomial (a
Blake2xb stream, about 60 us per 4096 values, two thirds of a load), and TenSEAL holds the GIL
while it does: threads cannot share that work, processes can. A :class:`ServerPool` of
``processes`` splits each upload's ``k`` ciphertexts into ``processes`` contiguous slices; this
process adds the first slice while ``processes - 1`` worker processes (:mod:`he.worker`) add
theirs, each into its own :class:`~he.sums.CiphertextSum`. The server's wall time per upload
falls by about the number of cores; the CPU work stays the same (plus one copy of each slice
into shared memory), which the benchmark reports separately.

What crosses. Workers hold what the server holds and nothing else: the public parameters and
ciphertexts. They are started once per pool (:meth:`ServerPool.shared` keeps one per size for
the life of the process, as a session's keys are set up once) and serve any number of rounds,
each under its own token. A worker runs isolated from the server's working directory (``-I``:
no current directory, no ``PYTHON*`` variables on its path; it gets this package's root and the
server's absolute import path explicitly, less the working directory), and none of the pool's
descriptors is inheritable by any other child of the server.

All or nothing. When any slice of an upload is refused, the others are retracted before the
error reaches the caller: the first in ciphertext order, typed as the round expects
(:class:`MalformedMessage` or :class:`ProtocolViolation`, whatever went wrong in the slice).
Every worker's reply is read whether or not this process's slice was refused.

In step, or retired. Each request carries the round's token and a per-worker sequence number,
and each reply echoes both; a worker has at most one request outstanding. A reply that answers
another request, an error where none can be (a retraction, a dump), a worker that dies or any
exception in the middle of an exchange retires the pool: its workers are killed, every round
holding slices in them aborts with :class:`AggregationAborted`, and :meth:`ServerPool.shared`
starts fresh workers for the next round. A round is exact or refused, never mixed.

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
from typing import IO, Any, Callable, TypeVar

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

__all__ = ["ServerPool", "PooledSum", "WorkerFault", "resolve_processes", "read_frame", "write_frame", "ERRORS",
           "worker_command"]

BEGIN, ADD, RETRACT, DUMP, DISCARD, OK, ERROR = b"B", b"A", b"R", b"D", b"X", b"K", b"E"


class WorkerFault(PrivaggError):
    """A worker refused a request of this process's own (unknown round, bad span, a request out
    of sequence): never an upload's fault, always a pool out of step."""


#: The errors a worker may report, by name (anything else arrives as a PrivaggError).
ERRORS: dict[str, type[PrivaggError]] = {cls.__name__: cls for cls in (
    MalformedMessage, ProtocolViolation, ConfigurationError, WorkerFault, PrivaggError)}
#: The errors by which a worker refuses an upload's slice (any other reply to an add is a fault).
UPLOAD_ERRORS = (MalformedMessage, ProtocolViolation)
#: Below this many ciphertexts per slice a pipe round trip costs more than the work it moves.
MIN_SLICE = 16
_FRAME = struct.Struct("<cQ")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)
#: What an isolated worker runs: its import path comes as data (JSON in argv), never as code.
_BOOTSTRAP = ("import json, sys\n"
              "path = json.loads(sys.argv[1])\n"
              "sys.path[:0] = [p for p in path if p not in sys.path]\n"
              "from he.worker import main\n"
              "sys.exit(main(sys.argv[2:]))\n")
_T = TypeVar("_T")


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


def worker_path() -> list[str]:
    """The import path a worker gets: this package's root first, then this process's absolute
    ``sys.path`` entries, less ``''``, relative entries and the current working directory (the
    server's working directory is not code the workers run)."""
    try:
        cwd: str | None = os.path.realpath(os.getcwd())
    except OSError:  # pragma: no cover - the working directory was removed
        cwd = None
    out = [_PACKAGE_ROOT]
    for entry in sys.path:
        if not isinstance(entry, str) or not entry or not os.path.isabs(entry) or entry in out:
            continue
        if os.path.realpath(entry) == cwd:
            continue
        out.append(entry)
    return out


def worker_command(*fds: int) -> list[str]:
    """The command line of a worker: isolated mode (``-I``: neither the working directory nor
    ``PYTHON*`` variables shape its path), its path passed explicitly."""
    return [sys.executable, "-I", "-c", _BOOTSTRAP, json.dumps(worker_path()), *map(str, fds)]


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
    try:
        header = json.loads(bytes(view[_U32.size:pos]))
    except ValueError:  # JSONDecodeError, UnicodeDecodeError
        raise MalformedMessage("frame header on a worker pipe is not JSON") from None
    if not isinstance(header, dict):
        raise MalformedMessage("frame header on a worker pipe is not a JSON object")
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
class _WorkerGone(PrivaggError):
    """A worker exited or its pipe broke."""


class _OutOfStep(PrivaggError):
    """The exchange with a worker is no longer in step (a stale or foreign reply, a fault)."""


class _Worker:
    """One worker child, the two pipes to it and the shared memory its slices travel through
    (an anonymous memory file both map: one copy in, none through the pipe).

    Every request gets the next sequence number; at most one is outstanding, and its reply must
    echo its token and number (:meth:`reply` checks)."""

    def __init__(self) -> None:
        to_child_r, to_child_w = os.pipe()  # both ends non-inheritable (PEP 446)
        from_child_r, from_child_w = os.pipe()
        memfd = getattr(os, "memfd_create", None)
        # Close-on-exec (memfd_create's default flag): only this worker gets it, via pass_fds.
        self.shm_fd = memfd("privagg-pool", os.MFD_CLOEXEC) if memfd is not None else -1
        self.shm: mmap.mmap | None = None
        fds = (to_child_r, from_child_w) + ((self.shm_fd,) if self.shm_fd >= 0 else ())
        try:
            self.process = subprocess.Popen(
                worker_command(to_child_r, from_child_w, self.shm_fd), pass_fds=fds, cwd=os.sep,
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        except BaseException:
            for fd in (to_child_w, from_child_r) + ((self.shm_fd,) if self.shm_fd >= 0 else ()):
                os.close(fd)
            raise
        finally:
            os.close(to_child_r)
            os.close(from_child_w)
        self.writer = os.fdopen(to_child_w, "wb", buffering=1 << 20)
        self.reader = os.fdopen(from_child_r, "rb", buffering=1 << 20)
        self._seq = itertools.count(1)
        self.pending: tuple[int, Any, bytes] | None = None  # (seq, token, op) sent, its reply unread
        self.intact = True  # False while a frame is half written or half read (or after a failure)
        self.closed = False

    @property
    def pid(self) -> int:
        return self.process.pid

    def _ready(self, what: str) -> None:
        if self.closed:
            raise _WorkerGone(f"server worker {self.pid} was stopped")
        if not self.intact:
            raise _OutOfStep(f"server worker {self.pid}'s pipe was left mid-frame; cannot {what}")

    def send(self, op: bytes, header: dict[str, Any], blobs: list[bytes] = ()) -> None:
        self._ready("send")
        if self.pending is not None:
            raise _OutOfStep(f"a request to server worker {self.pid} while its reply to request "
                             f"{self.pending[0]} is unread")
        seq = next(self._seq)
        self.pending, self.intact = (seq, header.get("token"), op), False
        try:
            write_frame(self.writer, op, {**header, "seq": seq}, blobs)
        except OSError as exc:  # BrokenPipeError included
            raise _WorkerGone(f"a server worker process is gone ({exc})") from None
        self.intact = True

    def send_blobs(self, op: bytes, header: dict[str, Any], blobs: list[bytes]) -> None:
        """Send ``blobs`` through the shared memory (spans in the header), or the pipe without it.
        The memory is written only with no request outstanding: never under a worker reading it."""
        if self.shm_fd < 0:  # pragma: no cover - no memfd (not Linux)
            self.send(op, header, blobs)
            return
        self._ready("send")
        if self.pending is not None:
            raise _OutOfStep(f"an upload for server worker {self.pid} while its reply to request "
                             f"{self.pending[0]} is unread")
        size = sum(len(b) for b in blobs)
        if self.shm is None or len(self.shm) < size:
            if self.shm is not None:
                self.shm.close()
                self.shm = None
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
        """The reply to the outstanding request: ``(None, blobs)`` or ``(error, [])``."""
        self._ready("read a reply")
        if self.pending is None:
            raise _OutOfStep(f"a reply read from server worker {self.pid} with no request outstanding")
        seq, token, op = self.pending
        self.intact = False
        try:
            frame = read_frame(self.reader)
        except MalformedMessage as exc:
            raise _OutOfStep(f"server worker {self.pid} answered garbage: {exc}") from None
        except OSError as exc:
            raise _WorkerGone(f"a server worker process is gone ({exc})") from None
        if frame is None:
            raise _WorkerGone(f"a server worker process exited (code {self.process.poll()})")
        kind, header, blobs = frame
        if header.get("seq") != seq or header.get("token") != token:
            raise _OutOfStep(f"server worker {self.pid} answered request {header.get('seq')!r} of round "
                             f"{header.get('token')!r}, expected request {seq} of round {token!r} ({op!r})")
        self.pending, self.intact = None, True
        if kind == OK:
            return None, blobs
        if kind != ERROR:
            raise _OutOfStep(f"server worker {self.pid} answered with unknown op {kind!r}")
        cls = ERRORS.get(str(header.get("kind", "")), PrivaggError)
        return cls(str(header.get("text", "worker error"))), []

    def close(self, *, kill: bool = False) -> None:
        """Stop the worker: at the end of its input (it exits when it has answered), or at once."""
        if self.closed:
            return
        self.closed, self.intact = True, False
        if kill:
            self.process.kill()
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
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover
            self.process.kill()
            self.process.wait()


def _drain(workers: list[_Worker]) -> list[tuple[PrivaggError | None, list[bytes]]]:
    """Every worker's reply, in order: all are read even when one is gone (then raised after)."""
    replies: list[tuple[PrivaggError | None, list[bytes]]] = []
    gone: _WorkerGone | None = None
    for worker in workers:
        try:
            replies.append(worker.reply())
        except _WorkerGone as exc:
            gone = gone or exc
            replies.append((exc, []))
    if gone is not None:
        raise gone
    return replies


def _exchange(requests: list[tuple[_Worker, bytes, dict[str, Any], list[bytes]]]) -> None:
    """Send every request (through shared memory when it carries blobs), then read every reply,
    so the workers run at once. These are requests no worker may refuse: an error is a fault."""
    for worker, op, header, blobs in requests:
        if blobs:
            worker.send_blobs(op, header, blobs)
        else:
            worker.send(op, header)
    for (worker, op, _, _), (error, _) in zip(requests, _drain([r[0] for r in requests])):
        if error is not None:
            raise _OutOfStep(f"server worker {worker.pid} refused {op!r}: {type(error).__name__}: {error}")


class ServerPool:
    """``processes - 1`` worker processes that hold slices of the server's running sums."""

    _shared: dict[int, ServerPool] = {}
    _shared_lock = threading.Lock()

    @classmethod
    def shared(cls, processes: int) -> ServerPool:
        """This process's pool of that size, started on first use and closed at exit; a pool
        that was retired (a worker died or fell out of step) is replaced by fresh workers."""
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
        self.retired: str | None = None  # why the pool was retired, if it was
        self.workers: list[_Worker] = []
        try:
            for _ in range(self.processes - 1):
                self.workers.append(_Worker())
        except BaseException:
            self._stop(kill=True)
            raise
        atexit.register(self.close)

    @property
    def alive(self) -> bool:
        return not self.closed and all(w.process.poll() is None for w in self.workers)

    def guarded(self, step: Callable[[], _T], on_fault: Callable[[], None] = lambda: None) -> _T:
        """Run ``step`` (an exchange with the workers) under :attr:`lock`, after the abandoned
        rounds are dropped. If it fails midway the workers' state is unknown: the pool is retired
        (``on_fault`` runs first) and the error arrives as :class:`AggregationAborted`."""
        with self.lock:
            if self.closed:
                on_fault()
                raise AggregationAborted(f"the server's worker pool was retired ({self.retired or 'closed'}); "
                                         f"the sums its workers held are lost")
            try:
                self._flush_abandoned()
                return step()
            except BaseException as exc:
                on_fault()
                reason = str(exc) if isinstance(exc, (_WorkerGone, _OutOfStep)) else \
                    f"an exchange with the server workers failed midway ({type(exc).__name__}: {exc})"
                self._retire(reason)
                if isinstance(exc, Exception):
                    raise AggregationAborted(f"{reason}; the worker pool was retired and the next round gets "
                                             f"fresh workers") from None
                raise

    def ping(self) -> None:
        """Wait until every worker is up and answering (their start is not part of any round)."""
        self.guarded(lambda: _exchange([(worker, DISCARD, {"token": 0}, []) for worker in self.workers]))

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
        self._flush_abandoned()

    def _flush_abandoned(self) -> None:
        while self._abandoned:
            token, workers = self._abandoned.pop()
            _exchange([(worker, DISCARD, {"token": token}, []) for worker in workers if worker in self.workers])

    def _retire(self, reason: str) -> None:
        """Kill the workers (their sums are unknown): every round with slices in them aborts."""
        if not self.closed:
            self.retired = reason
            self._stop(kill=True)

    def _stop(self, *, kill: bool) -> None:
        self.closed = True
        self._abandoned.clear()
        for worker in self.workers:
            worker.close(kill=kill)

    def close(self) -> None:
        with self.lock:
            if not self.closed:
                self._stop(kill=False)

    def __repr__(self) -> str:
        state = f"retired: {self.retired}" if self.retired else ("closed" if self.closed else "open")
        return f"ServerPool(processes={self.processes}, {state})"


def _slices(count: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` contiguous, near-equal ``(start, stop)`` ranges covering ``range(count)``."""
    base, extra = divmod(count, parts)
    bounds, start = [], 0
    for i in range(parts):
        stop = start + base + (1 if i < extra else 0)
        bounds.append((start, stop))
        start = stop
    return bounds


def _as_upload_error(exc: Exception, who: str, start: int, stop: int) -> PrivaggError:
    """An exception of one slice's add as the typed error a round expects of a bad upload."""
    if isinstance(exc, UPLOAD_ERRORS):
        return exc
    return MalformedMessage(f"{who}'s ciphertexts {start}..{stop - 1} do not add: {type(exc).__name__}: {exc}")


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
        bounds = _slices(count, parts)
        begun = self.pool.workers[:len(bounds) - 1]
        header = {"token": self.token, "params": parameters_to_json(self.ring.params), "seeded": self.seeded}
        self._bounds, self._own, self._begun = bounds, CiphertextSum(self.ring, seeded=self.seeded, first=0), begun
        _exchange([(worker, BEGIN, {**header, "first": start}, []) for worker, (start, _) in zip(begun, bounds[1:])])

    def _check(self) -> None:
        if self._broken:
            raise AggregationAborted("a server worker process failed earlier in this round; its sums are lost")
        if self._begun and self.pool.closed:
            self._broken = True
            raise AggregationAborted(f"the server's worker pool was retired ({self.pool.retired or 'closed'}); "
                                     f"this round's slices of the sums are lost")

    def _fault(self) -> None:
        self._broken = True

    def _run(self, step: Callable[[], _T]) -> _T:
        """``step`` alone in this process: an exchange with the workers when this round has any."""
        self._check()
        if self._bounds is not None and not self._begun:
            return step()  # every slice is this process's (small updates)
        return self.pool.guarded(step, self._fault)

    def add(self, blobs: list[bytes], who: str) -> None:
        """Add one upload, all slices or none; raise the first refusal in ciphertext order."""
        refusal = self._run(lambda: self._add(blobs, who))
        if refusal is not None:
            raise refusal

    def _add(self, blobs: list[bytes], who: str) -> PrivaggError | None:
        if self._bounds is None:
            self._start(len(blobs))
        assert self._bounds is not None and self._own is not None
        if self._bounds[-1][1] != len(blobs):
            return ProtocolViolation(f"{who} sent {len(blobs)} ciphertexts for a sum of {self._bounds[-1][1]}")
        slices = list(zip(self._begun, self._bounds[1:]))
        for worker, (start, stop) in slices:
            worker.send_blobs(ADD, {"token": self.token, "who": who}, blobs[start:stop])
        own_start, own_stop = self._bounds[0]
        errors: list[PrivaggError | None] = []
        try:
            self._own.add(blobs[own_start:own_stop], who)
            errors.append(None)
        except Exception as exc:  # the sum is untouched (CiphertextSum.add); the workers' replies still come
            errors.append(_as_upload_error(exc, who, own_start, own_stop))
        for (worker, _), (error, _) in zip(slices, _drain([w for w, _ in slices])):
            if error is not None and not isinstance(error, UPLOAD_ERRORS):  # WorkerFault included: out of step
                raise _OutOfStep(f"server worker {worker.pid} failed to add {who}'s slice: "
                                 f"{type(error).__name__}: {error}")
            errors.append(error)
        first_error = next((e for e in errors if e is not None), None)
        if first_error is None:
            self.uploads += 1
            return None
        if errors[0] is None:
            self._own.retract(blobs[own_start:own_stop], who)
        # A retraction reloads blobs that loaded once: it cannot be refused (a refusal is a fault).
        _exchange([(worker, RETRACT, {"token": self.token, "who": who}, blobs[start:stop])
                   for (worker, (start, stop)), error in zip(slices, errors[1:]) if error is None])
        return first_error

    def dump(self) -> list[bytes]:
        """Every slice's ciphertexts, serialized in parallel, in order; the workers forget the round."""
        self._check()
        if self._own is None or self.uploads == 0:
            raise ValueError("no upload has been added")  # caller's bug: the server checks first
        out = self._run(self._dump)
        self._begun = []
        return out

    def _dump(self) -> list[bytes]:
        assert self._own is not None
        for worker in self._begun:
            worker.send(DUMP, {"token": self.token})
        own: list[bytes] | BaseException
        try:
            own = self._own.dump()
        except Exception as exc:
            own = exc
        out = []
        for worker, (error, blobs) in zip(self._begun, _drain(self._begun)):
            if error is not None:
                raise _OutOfStep(f"server worker {worker.pid} failed to dump its slice: {error}")
            out.append(blobs)
        if isinstance(own, BaseException):
            raise own
        return [blob for part in [own, *out] for blob in part]

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
