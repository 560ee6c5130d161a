"""``privagg bench secagg``: one round of SecAgg(+), timed per party, with memory and traffic.

Each stage is run in two phases: every client answers (timed per client), then the server
takes all the answers and closes the stage (timed; traced by tracemalloc in a second, untimed
pass of the same round, as tracing doubles the times). The server's
peak memory is the largest ``retained + (peak - start)`` over its phases, where ``retained``
is the memory its earlier phases kept: the clients' allocations, and the replies waiting to be
delivered, never count, as they would not live in a real server process.
"""

from __future__ import annotations

import gc
import time
from dataclasses import replace
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

import secagg.client
import secagg.server
from privagg.encoding.modular import sum_mod
from privagg.errors import ConfigurationError
from privagg.ledger import ContributionLedger
from secagg.config import SecAgg

__all__ = ["run_bench", "aes_ctr_floor"]


class _MaskMeter:
    """Counts the time and keystream bytes spent in ``expand_mask`` by clients and server."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.bytes = 0
        self._originals: list[tuple[Any, Callable[..., np.ndarray]]] = []

    def __enter__(self) -> _MaskMeter:
        for module in (secagg.client, secagg.server):
            original = module.expand_mask
            self._originals.append((module, original))

            def timed(seed: bytes, length: int, bits: int, _original: Any = original) -> np.ndarray:
                start = time.perf_counter()
                out = _original(seed, length, bits)
                self.seconds += time.perf_counter() - start
                self.bytes += out.nbytes
                return out

            module.expand_mask = timed  # type: ignore[assignment]
        return self

    def __exit__(self, *exc: object) -> None:
        for module, original in self._originals:
            module.expand_mask = original  # type: ignore[assignment]


class _ServerMemory:
    """Peak memory of the server's phases only (see the module docstring)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.retained = self.peak = self._start = 0
        if enabled:
            tracemalloc.start()

    def begin(self) -> None:
        if self.enabled:
            self._start = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()

    def end(self) -> None:
        if self.enabled:
            current, top = tracemalloc.get_traced_memory()
            self.peak = max(self.peak, self.retained + top - self._start)
            self.retained += current - self._start

    def stop(self) -> None:
        if self.enabled:
            tracemalloc.stop()


def aes_ctr_floor(total_bytes: int, chunk: int) -> float:
    """Seconds ``cryptography`` takes to produce ``total_bytes`` of AES-256-CTR keystream in
    ``chunk``-byte streams under fresh keys: the physical floor of mask generation."""
    zeros = bytes(chunk)
    key = bytes(range(32))
    start = time.perf_counter()
    produced = 0
    while produced < total_bytes:
        n = min(chunk, total_bytes - produced)
        Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor().update(zeros[:n])
        produced += n
    return time.perf_counter() - start


def _one_round(config: SecAgg, ids: list[int], updates: np.ndarray, dropped: set[int], params: int,
               memory: _ServerMemory, progress: Callable[[str], None] | None) -> dict[str, Any]:
    # Each pass is the same round again: its clients get a ledger of their own (a shared one
    # would rightly refuse the second pass, see privagg.ledger).
    config = replace(config, ledger=ContributionLedger())
    client_seconds = dict.fromkeys(ids, 0.0)
    server_seconds = 0.0
    bytes_up = 0
    try:
        with _MaskMeter() as meter:
            # Server construction is a server phase too.
            memory.begin()
            t0 = time.process_time()
            server = config.server(ids, round_id=1, dimension=params)
            server_seconds += time.process_time() - t0
            memory.end()

            sessions = {}
            for cid in ids:
                t0 = time.process_time()
                sessions[cid] = config.client(cid, updates[cid], round_id=1)
                client_seconds[cid] += time.process_time() - t0
            while not server.finished:
                stage = server.stage
                if progress is not None:
                    progress(stage)
                t0 = time.process_time()
                outgoing = {cid: msg.to_bytes() for cid, msg in server.messages_to_send().items()}
                server_seconds += time.process_time() - t0
                replies = {}
                for cid, data in outgoing.items():
                    if cid in dropped and stage in ("masked_input", "consistency_check", "unmasking"):
                        continue
                    t0 = time.process_time()
                    replies[cid] = sessions[cid].respond(data).to_bytes()
                    client_seconds[cid] += time.process_time() - t0
                    bytes_up += len(replies[cid])
                del outgoing
                memory.begin()
                t0 = time.process_time()
                for cid in list(replies):
                    server.receive(cid, replies.pop(cid))  # each reply is freed once absorbed
                server.deadline_passed()
                server_seconds += time.process_time() - t0
                memory.end()
            result = server.result()
    finally:
        memory.stop()
    return {"result": result, "meter": meter, "client_seconds": client_seconds, "server_seconds": server_seconds,
            "bytes_up": bytes_up, "peak": memory.peak}


def run_bench(*, clients: int, params: int, dropout: float, neighbours: int | str | None = None,
              threshold: int | None = None, security: str = "semi-honest", seed: int = 0,
              updates: np.ndarray | None = None, dropped: set[int] | None = None,
              trace_memory: bool = True, progress: Callable[[str], None] | None = None,
              corrupt_fraction: float | None = None, dropout_fraction: float | None = None) -> dict[str, Any]:
    """One timed round; ``dropout`` is the fraction of clients that vanish after sharing keys.

    ``updates`` (clients x params floats) and ``dropped`` (client indices) may be given, so a
    peer can be measured on exactly the same round. Times are process CPU seconds.
    The timed pass never runs under tracemalloc (which doubles allocation-heavy times); with
    ``trace_memory`` a second, untimed pass of the same round measures the server's peak.
    """
    if not 0 <= dropout < 1:
        raise ConfigurationError(f"dropout must be in [0, 1), got {dropout}")
    config = SecAgg(threshold=threshold, neighbours="auto" if neighbours is None else neighbours,  # type: ignore[arg-type]
                    security=security, keep_masked_inputs=False, max_clients=max(clients, 1024),  # type: ignore[arg-type]
                    corrupt_fraction=corrupt_fraction, dropout_fraction=dropout_fraction)
    rng = np.random.default_rng(seed)
    if updates is None:
        updates = rng.uniform(-1, 1, size=(clients, params)).astype(np.float32)
    if updates.shape != (clients, params):
        raise ConfigurationError(f"updates have shape {updates.shape}, expected {(clients, params)}")
    ids = list(range(clients))
    if dropped is None:
        dropped = set(int(i) for i in rng.choice(clients, size=int(round(dropout * clients)), replace=False))

    # Every party lives in this one process, so the cyclic garbage collector walks all their
    # objects and bills whichever client happens to trigger it (tens of ms at 3,000 clients,
    # which no real client process would pay): the timed pass runs with it paused.
    gc.collect()
    gc.disable()
    try:
        timed = _one_round(config, ids, updates, dropped, params, _ServerMemory(False), progress)
    finally:
        gc.enable()
    peak = None
    if trace_memory:
        # tracemalloc doubles allocation-heavy times: memory gets a pass of its own, untimed.
        peak = _one_round(config, ids, updates, dropped, params, _ServerMemory(True), None)["peak"]
    result, meter = timed["result"], timed["meter"]
    client_seconds, server_seconds, bytes_up = timed["client_seconds"], timed["server_seconds"], timed["bytes_up"]
    expected = sum_mod([config.encoding.encode(updates[c]) for c in result.included], config.encoding.bits, params)
    floor = aes_ctr_floor(meter.bytes, params * config.encoding.encode(np.zeros(1)).itemsize)
    return {
        "mode": config.mode,
        "clients": clients,
        "params": params,
        "dropout": dropout,
        "neighbours": result.info["neighbours"],
        "threshold": result.info["threshold"],
        "security": security,
        "included": len(result.included),
        "client_seconds_total": sum(client_seconds.values()),
        "client_seconds_max": max(client_seconds.values()),
        "server_seconds": server_seconds,
        "bytes_up_total": bytes_up,
        "bytes_up_per_param_per_client": bytes_up / (clients * params),
        "server_peak_bytes": peak,
        "vector_bytes": params * int(np.dtype(np.uint32 if config.encoding.bits <= 32 else np.uint64).itemsize),
        "mask_seconds": meter.seconds,
        "mask_bytes": meter.bytes,
        "aes_ctr_floor_seconds": floor,
        "exact": bool(np.array_equal(result.encoded, expected)),
        "included_ids": list(result.included),
        "aggregate": result.aggregate,
    }
