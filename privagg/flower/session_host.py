"""Keeps one client session alive between Flower's short-lived ClientApp processes.

A SuperNode runs a fresh ClientApp process for every message, and the only thing Flower
carries from one to the next is ``Context.state``, a record the SuperNode stores and ships to
each ClientApp over its local Runtime API. Flower's own SecAgg+ mod therefore writes its
private keys and the Shamir shares it holds into that record after every stage. Ours does
not: a client session holds its secrets in memory and refuses to be pickled. The first stage
starts a *session host*, a small process (``python -m privagg.flower.session_host``) that
builds the session from the update and keeps it; later stages' ClientApp processes hand it the
stage's bytes over a Unix socket and get the reply bytes back. ``Context.state`` holds only how
to reach the host: the socket path and a random key that authenticates each connection (the
socket also lives in a directory only this user can open).

A provisioned node's signing key never crosses the pipe either: the host is told the key
file's path and loads it itself (:class:`~privagg.flower.identity.NodeIdentity`); with the
model digest the ClientApp computed from the model it received, it is handed to the session.

The host never outlives its purpose: it exits when its session has finished, when told to
(a new round), when no stage arrived for ``idle_timeout`` seconds (the node was dropped, or
the server vanished), or when the process that watches over ClientApps (the SuperExec, or the
simulation's worker parent) is gone. It imports neither Flower nor the user's app.
"""

from __future__ import annotations

import hashlib
import json
import os
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from multiprocessing.connection import Client, Listener
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from privagg.errors import (
    AggregationAborted,
    ConfigurationError,
    InsecureParameters,
    InvalidUpdate,
    MalformedMessage,
    PrivaggError,
    ProtocolViolation,
)

if TYPE_CHECKING:
    from privagg.flower.identity import NodeIdentity

__all__ = ["SessionHandle", "start_session", "ask_session", "close_session"]

_U32 = struct.Struct("<I")
_KEY_BYTES = 32
_MAX_FRAME = (1 << 30) + (1 << 20)
_STARTUP_SECONDS = 120.0
_PREFIX = "privagg-session-"


@dataclass(frozen=True)
class SessionHandle:
    """How a later ClientApp process reaches the host of this node's session."""

    address: str
    authkey: bytes
    round_id: int
    pid: int

    def __repr__(self) -> str:  # the key is a credential: never printed
        return f"SessionHandle(address={self.address!r}, round_id={self.round_id}, pid={self.pid})"


@dataclass(frozen=True)
class _Answer:
    reply: bytes | None
    finished: bool


# -- frames: status byte, finished byte, payload ----------------------------------------------

def _frame_reply(reply: bytes | None, finished: bool) -> bytes:
    return (b"K" if reply is not None else b"N") + bytes([finished]) + (reply or b"")


def _frame_error(exc: BaseException) -> bytes:
    kind = type(exc).__name__ if isinstance(exc, PrivaggError) else "PrivaggError"
    text = str(exc) if isinstance(exc, PrivaggError) else f"internal error in the session host ({type(exc).__name__})"
    return b"E\x00" + json.dumps({"type": kind, "message": text}).encode()


#: Errors that cross the process boundary as themselves; any other PrivaggError (say a DP
#: budget refusal) arrives as a PrivaggError with the same message.
_REMOTE_ERRORS: dict[str, type[PrivaggError]] = {cls.__name__: cls for cls in (
    ConfigurationError, InvalidUpdate, MalformedMessage, ProtocolViolation, AggregationAborted, InsecureParameters)}


def _read_frame(data: bytes) -> _Answer:
    if len(data) < 2 or data[:1] not in (b"K", b"N", b"E"):
        raise PrivaggError("the session host sent an unreadable answer")
    if data[:1] == b"E":
        info = json.loads(data[2:].decode())
        raise _REMOTE_ERRORS.get(str(info.get("type")), PrivaggError)(str(info.get("message")))
    return _Answer(data[2:] if data[:1] == b"K" else None, bool(data[1]))


# -- the ClientApp side ------------------------------------------------------------------------

def start_session(*, mode: str, options: Mapping[str, Any], hints: Mapping[str, Any], client_id: int,
                  round_id: int, update: npt.NDArray[np.float64], first_message: bytes,
                  idle_timeout: float, identity: NodeIdentity | None = None,
                  model_digest: bytes = bytes(32)) -> tuple[SessionHandle | None, bytes | None]:
    """Start a host for this client's session, answer the first stage with it.

    ``identity``: the node's provisioned identity (its key's path goes to the host, not the
    key); ``model_digest``: :func:`~privagg.flower.arrays.model_digest` of the received model.
    Returns the handle (``None`` when the session already finished) and the first reply.
    Typed errors raised by the session (a refused message, a bad update) are raised here.
    """
    if len(model_digest) != 32:
        raise ConfigurationError("model_digest must be 32 bytes")
    # mkdtemp makes the directory 0700: only this user can reach the socket. A Unix socket path
    # must stay under ~100 bytes, so a long TMPDIR falls back to /tmp.
    base = tempfile.gettempdir()
    base = base if len(base) < 64 else "/tmp"
    _sweep_stale(Path(base))
    directory = tempfile.mkdtemp(prefix=_PREFIX, dir=base)
    address = str(Path(directory) / "session.sock")
    authkey = os.urandom(_KEY_BYTES)
    vector = np.ascontiguousarray(update, dtype="<f8")
    header = json.dumps({
        "mode": mode, "options": dict(options), "hints": dict(hints), "client_id": int(client_id),
        "round_id": int(round_id), "address": address, "directory": directory,
        "idle_timeout": float(idle_timeout), "watch_pid": os.getppid(), "values": int(vector.shape[0]),
        "identity": None if identity is None else {"roster": identity.roster_path, "signing_key": identity.key_path},
        "model_digest": bytes(model_digest).hex(),
    }).encode()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    proc = subprocess.Popen([sys.executable, "-m", "privagg.flower.session_host"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, env=env, close_fds=True)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(_U32.pack(len(header)) + header + authkey)
        proc.stdin.write(vector.tobytes())
        proc.stdin.write(_U32.pack(len(first_message)) + first_message)
        proc.stdin.close()
        answer = _read_frame(_read_startup(proc.stdout, proc))
    except BaseException as exc:
        if proc.poll() is None:
            proc.kill()
        shutil.rmtree(directory, ignore_errors=True)
        if isinstance(exc, OSError):  # the host died while reading its start-up input
            raise PrivaggError(f"the session host could not start (exit code {proc.wait()})") from None
        raise
    finally:
        proc.stdout.close()
    if answer.finished:
        return None, answer.reply
    return SessionHandle(address, authkey, int(round_id), proc.pid), answer.reply


def _sweep_stale(base: Path) -> None:
    """Remove socket directories of hosts that were killed (SIGKILL leaves no chance to clean up).

    A directory is stale when its socket refuses connections; a live host always listens. Only
    this user's directories older than a minute are considered, so a starting host is never hit.
    """
    now = time.time()
    for directory in base.glob(f"{_PREFIX}*"):
        try:
            info = directory.stat()
            if info.st_uid != os.getuid() or now - info.st_mtime < 60:
                continue
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(str(directory / "session.sock"))
            except (ConnectionRefusedError, FileNotFoundError):
                shutil.rmtree(directory, ignore_errors=True)
            finally:
                probe.close()
        except OSError:
            continue


def _read_startup(stream: IO[bytes], proc: subprocess.Popen[bytes]) -> bytes:
    """The host's first frame (length-prefixed), within the startup deadline."""
    deadline = time.monotonic() + _STARTUP_SECONDS
    buffer = b""
    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        while True:
            need = _U32.size if len(buffer) < _U32.size else _U32.size + _U32.unpack(buffer[:_U32.size])[0]
            if len(buffer) >= need and len(buffer) > _U32.size:
                return buffer[_U32.size:need]
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise PrivaggError(f"the session host did not answer within {_STARTUP_SECONDS:.0f} s")
            if not selector.select(timeout=min(remaining, 1.0)):
                continue
            chunk = os.read(stream.fileno(), 1 << 20)
            if not chunk:
                raise PrivaggError(f"the session host exited (code {proc.wait()}) before answering")
            buffer += chunk


def ask_session(handle: SessionHandle, message: bytes) -> tuple[bytes | None, bool]:
    """Hand one stage's bytes to the host; its reply (or None) and whether the session is done."""
    try:
        with Client(handle.address, family="AF_UNIX", authkey=handle.authkey) as conn:
            conn.send_bytes(b"R" + message)
            data = conn.recv_bytes(_MAX_FRAME)
    except (OSError, EOFError) as exc:
        raise ProtocolViolation(
            f"no live privagg session for round {handle.round_id} on this node ({type(exc).__name__}): it "
            f"finished, was dropped or timed out") from None
    answer = _read_frame(data)
    return answer.reply, answer.finished


def close_session(handle: SessionHandle) -> None:
    """Tell the host to end now (a new round starts); a host already gone is fine."""
    try:
        with Client(handle.address, family="AF_UNIX", authkey=handle.authkey) as conn:
            conn.send_bytes(b"C")
            conn.recv_bytes(16)
    except (OSError, EOFError):
        pass


# -- the host process --------------------------------------------------------------------------

def _read_exact(stream: IO[bytes], n: int) -> bytes:
    data = stream.read(n)
    if data is None or len(data) != n:
        raise EOFError("truncated start-up input")
    return data


def _pid_alive(pid: int) -> bool:
    if pid <= 1:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _serve() -> int:
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer

    def answer(frame: bytes) -> None:
        stdout.write(_U32.pack(len(frame)) + frame)
        stdout.flush()

    (size,) = _U32.unpack(_read_exact(stdin, _U32.size))
    config = json.loads(_read_exact(stdin, size).decode())
    authkey = _read_exact(stdin, _KEY_BYTES)
    update = np.frombuffer(_read_exact(stdin, 8 * int(config["values"])), dtype="<f8").astype(np.float64)
    (size,) = _U32.unpack(_read_exact(stdin, _U32.size))
    first = _read_exact(stdin, size)
    directory = Path(config["directory"])
    try:
        from privagg.flower.identity import NodeIdentity, client_session, with_ledger, with_roster
        from privagg.registry import make_aggregator

        aggregator = make_aggregator(config["mode"], hints=dict(config["hints"]), **dict(config["options"]))
        signing_key = None
        if config["identity"] is not None:
            identity = NodeIdentity.load(config["identity"]["roster"], config["identity"]["signing_key"],
                                         int(config["client_id"]))
            aggregator = with_roster(aggregator, identity.roster)
            # Beside the key it belongs to, named by its public key (new identities start a new
            # ledger): what this identity released, across the rounds' processes.
            fingerprint = hashlib.sha256(identity.signing_key().public_bytes()).hexdigest()[:16]
            aggregator = with_ledger(aggregator, f"{config['identity']['signing_key']}.{fingerprint}.ledger")
            signing_key = identity.signing_key()
        session = client_session(aggregator, int(config["client_id"]), update, round_id=int(config["round_id"]),
                                 signing_key=signing_key, model_digest=bytes.fromhex(config["model_digest"]))
        del update, signing_key  # the session holds the key now, and nothing else in this process
        reply = session.respond(first)
        reply_bytes = reply.to_bytes() if reply is not None else None
    except Exception as exc:  # every failure goes back to the ClientApp, typed
        answer(_frame_error(exc))
        shutil.rmtree(directory, ignore_errors=True)
        return 1
    if session.finished:
        answer(_frame_reply(reply_bytes, True))
        shutil.rmtree(directory, ignore_errors=True)
        return 0
    listener = Listener(config["address"], family="AF_UNIX", authkey=authkey)
    answer(_frame_reply(reply_bytes, False))
    stdout.close()

    idle_timeout, watch_pid = float(config["idle_timeout"]), int(config["watch_pid"])
    last = [time.monotonic()]

    def shutdown(*_: object) -> None:
        shutil.rmtree(directory, ignore_errors=True)
        os._exit(0)

    # A SuperNode's process group is ended with SIGTERM: leave no socket directory behind.
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, shutdown)

    def watchdog() -> None:
        while True:
            time.sleep(0.25)
            if time.monotonic() - last[0] > idle_timeout or not _pid_alive(watch_pid):
                shutdown()

    threading.Thread(target=watchdog, daemon=True).start()
    while True:
        try:
            conn = listener.accept()
        except Exception:  # a failed handshake (wrong key) is not fatal
            continue
        with conn:
            try:
                request = conn.recv_bytes(_MAX_FRAME)
            except (OSError, EOFError):
                continue
            last[0] = time.monotonic()
            if request[:1] == b"C":
                conn.send_bytes(b"bye")
                break
            try:
                reply = session.respond(request[1:]) if request[:1] == b"R" else None
                if request[:1] != b"R":
                    raise ProtocolViolation("unknown request to the session host")
                frame = _frame_reply(reply.to_bytes() if reply is not None else None, session.finished)
            except Exception as exc:  # typed errors travel back to the ClientApp
                frame = _frame_error(exc)
            conn.send_bytes(frame)
            if session.finished:
                break
    listener.close()
    shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(_serve())
