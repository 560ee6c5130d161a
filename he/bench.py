"""``privagg bench ckks``: one CKKS round, timed per party, with bytes and errors.

Clients encrypt one after another and the server absorbs each upload as it arrives (as a real
server does, and so that 50 clients x 1M values never sit in memory at once).
``encrypt_seconds_per_client`` covers flatten, encode, encrypt and serialize;
``aggregate_seconds`` is the server (load, check, add, serialize the sum); ``decrypt_seconds``
is the key holder's release (load, decrypt, check, flood, round). Each ``*_seconds`` is wall
time (what a party waits), each ``*_cpu_seconds`` the CPU time it costs: the same for
single-threaded SEAL on an idle machine, but with ``server_processes`` above 1 the server's
CPU time includes its workers' (:mod:`he.pool`), whose start (``pool_start_seconds``) is not
part of the round. The decryptor is driven through the server's deployment API
(:meth:`he.server.CKKSServer.decryptor_messages`). The clients' key is provisioned (set up
once per session, as a deployment would), so the in-round key setup is not timed either.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from he.config import COLLECT
from he.decryptor import Decryptor
from he.keys import SharedKey
from he.params import CKKSParameters
from he.modes import OPTIONS, make_ckks
from he.pool import ServerPool, resolve_processes
from he.server import CKKSServer
from privagg.errors import ConfigurationError

__all__ = ["run_bench", "Clock"]

_BENCH_OPTIONS = {"seed", "updates", "dropped", "progress", "security"}


class Clock:
    """Adds up the wall and CPU seconds of the ``with`` blocks it times. CPU is this process's,
    plus, given a pool, its workers' from the first block's start to the last block's end (they
    work only when the server asks, i.e. inside the blocks; /proc counts in 10 ms ticks)."""

    def __init__(self, pool: ServerPool | None = None) -> None:
        self.pool = pool
        self.wall = self.own_cpu = 0.0
        self._workers_first: float | None = None
        self._workers_last: float | None = None

    def _read_workers(self) -> None:
        used = self.pool.worker_cpu_seconds() if self.pool is not None else None
        if used is not None:
            self._workers_last = used
            if self._workers_first is None:
                self._workers_first = used

    @property
    def cpu(self) -> float:
        if self._workers_first is None or self._workers_last is None:
            return self.own_cpu
        return self.own_cpu + self._workers_last - self._workers_first

    def __enter__(self) -> None:
        self._read_workers()
        self._start = (time.perf_counter(), time.process_time())

    def __exit__(self, *exc: object) -> None:
        self.wall += time.perf_counter() - self._start[0]
        self.own_cpu += time.process_time() - self._start[1]
        self._read_workers()


def run_bench(*, clients: int, params: int, dropout: float, **options: Any) -> dict[str, Any]:
    """One timed round of ``clients`` x ``params`` values; ``dropout``: the fraction never uploading.

    Options: any of :data:`he.modes.OPTIONS` (``preset``, ``key_holder``, ...), ``seed``,
    ``updates`` (a clients x params array, to measure a peer on the same data), ``dropped``
    (client indices), ``progress`` (called with a phase name). ``security`` is accepted as
    ``"semi-honest"`` only (the command line always passes it): CKKS's threat model is set by
    ``key_holder``.
    """
    unknown = set(options) - OPTIONS - _BENCH_OPTIONS
    if unknown:
        raise ConfigurationError(f"unknown option(s) for bench 'ckks': {sorted(unknown)}")
    if options.pop("security", "semi-honest") != "semi-honest":
        raise ConfigurationError("bench 'ckks' has no --security levels; choose key_holder=clients|decryptor")
    if not 0 <= dropout < 1:
        raise ConfigurationError(f"dropout must be in [0, 1), got {dropout}")
    seed = options.pop("seed", 0)
    updates = options.pop("updates", None)
    dropped = options.pop("dropped", None)
    progress: Callable[[str], None] | None = options.pop("progress", None)
    options.setdefault("keep_ciphertexts", False)
    config = make_ckks(**options)
    rng = np.random.default_rng(seed)
    if updates is None:
        updates = rng.uniform(-1, 1, size=(clients, params)).astype(np.float32)
    if updates.shape != (clients, params):
        raise ConfigurationError(f"updates have shape {updates.shape}, expected {(clients, params)}")
    if dropped is None:
        dropped = {int(i) for i in rng.choice(clients, size=int(round(dropout * clients)), replace=False)}

    decryptor = None
    if config.in_round_key_setup:  # keys are set up once per session, not timed with the round
        config = replace(config, shared_key=SharedKey.generate(config.params))
    if config.key_holder == "decryptor":
        decryptor = Decryptor(config.params, min_clients=config.min_clients, roster=config.decryptor_trust())
        config = replace(config, decryptor=decryptor)
    processes = resolve_processes(config.server_processes)
    pool = None
    pool_start = 0.0
    if processes > 1:
        t0 = time.perf_counter()
        pool = ServerPool.shared(processes)
        pool.ping()
        pool_start = time.perf_counter() - t0
    server_clock = Clock(pool)
    client_clock = Clock()
    ids = list(range(clients))
    round_id = 1
    round_key, round_key_seconds = None, 0.0
    if decryptor is not None:  # the decryptor's key pair of the round, fetched by the deployment
        t0 = time.perf_counter()
        round_key = decryptor.round_key(round_id)
        round_key_seconds = time.perf_counter() - t0
    with server_clock:
        server = CKKSServer(config, ids, round_id, round_key=round_key)  # no in-process link: driven below

    encrypt_seconds: list[float] = []
    encrypt_cpu: list[float] = []
    upload_sizes: list[int] = []
    sessions = {}
    if progress is not None:
        progress(COLLECT)
    for cid, request in server.messages_to_send().items():
        if cid in dropped:
            continue
        data = request.to_bytes()
        one = Clock()
        with one:
            sessions[cid] = config.client(cid, updates[cid], round_id=round_id)
            upload = sessions[cid].respond(data).to_bytes()
        encrypt_seconds.append(one.wall)
        encrypt_cpu.append(one.cpu)
        upload_sizes.append(len(upload))
        with server_clock:
            server.receive(cid, upload)
        del upload
    with server_clock:
        server.deadline_passed()

    if progress is not None:
        progress("decrypt")
    if decryptor is not None:
        (request,) = server.decryptor_messages().values()
    else:
        (request,) = server.messages_to_send().values()
    request_bytes = request.to_bytes()
    with client_clock:
        if decryptor is not None:
            reply = decryptor.respond(request_bytes).to_bytes()
        else:
            reply = sessions[request.recipient].respond(request_bytes).to_bytes()
    with server_clock:
        if decryptor is not None:
            server.receive_from_decryptor(reply)
        else:
            server.receive(request.recipient, reply)
        server.deadline_passed()
    result = server.result()

    included = list(result.included)
    reference = updates[included].astype(np.float64).sum(axis=0)
    max_abs = float(np.max(np.abs(result.aggregate - reference)))
    scale = float(np.max(np.abs(reference)))
    per_client = float(np.mean(encrypt_seconds))
    per_client_cpu = float(np.mean(encrypt_cpu))
    aggregate_seconds, decrypt_seconds = server_clock.wall, client_clock.wall
    p = config.params
    return {
        "mode": "ckks",
        "preset": p.preset,
        "key_holder": config.key_holder,
        "clients": clients,
        "params": params,
        "dropout": dropout,
        "included": len(included),
        "poly_modulus_degree": p.poly_modulus_degree,
        "coeff_modulus_bits": ",".join(map(str, p.coeff_modulus_bits)),
        "scale_bits": p.scale_bits_resolved,
        "flood_bits": p.flood_bits_resolved,
        "ciphertexts_per_client": p.ciphertexts_for(params),
        "server_processes": processes,
        "pool_start_seconds": pool_start,
        "encrypt_seconds_per_client": per_client,
        "encrypt_seconds_max": float(np.max(encrypt_seconds)),
        "encrypt_seconds_total": float(np.sum(encrypt_seconds)),
        "aggregate_seconds": aggregate_seconds,
        "decrypt_seconds": decrypt_seconds,
        "total_seconds": float(np.sum(encrypt_seconds)) + aggregate_seconds + decrypt_seconds,
        "round_latency_seconds": per_client + aggregate_seconds + decrypt_seconds,
        "encrypt_cpu_seconds_per_client": per_client_cpu,
        "aggregate_cpu_seconds": server_clock.cpu,
        "decrypt_cpu_seconds": client_clock.cpu,
        "total_cpu_seconds": float(np.sum(encrypt_cpu)) + server_clock.cpu + client_clock.cpu,
        "round_latency_cpu_seconds": per_client_cpu + server_clock.cpu + client_clock.cpu,
        "bytes_per_client": float(np.mean(upload_sizes)),
        "bytes_per_value": float(np.mean(upload_sizes)) / params,
        "authenticated": config.authenticated,
        "round_key_bytes_per_client": len(round_key) if round_key is not None else 0,
        "round_key_seconds": round_key_seconds,
        "bytes_to_key_holder": len(request_bytes),
        "bytes_from_key_holder": len(reply),
        "max_abs_error": max_abs,
        "max_rel_error": max_abs / scale if scale > 0 else max_abs,
        "release_noise_std": result.info["release_noise_std"],
        "included_ids": included,
        "aggregate": result.aggregate,
    }


def flood_margin(preset: str = "lean", key_holder: str = "clients", *, clients: int = 10, n_values: int = 8192,
                 seed: int = 0) -> dict[str, Any]:
    """The flooding's margin, measured: the raw decryption error of an honest sum of ``clients``
    fresh encryptions (std and max over the values) against the estimate the flood is sized from
    (:meth:`~he.params.CKKSParameters.natural_error_std`) and the flood's own std.

    The flood is sized to that *estimate* of an honest sum's error (fresh, independent
    encryption errors), not to a worst-case bound of the released computation (Li, Micciancio,
    Schultz and Sorrell 2022); this reports how far the flood sits above what was measured.
    """
    from he.keys import DecryptorKeys
    from he.release import decrypt_values
    from he.ring import Ring, seal
    from he.sums import CiphertextSum

    params = CKKSParameters.from_preset(preset, key_holder=key_holder)
    ring = Ring(params)
    rng = np.random.default_rng(seed)
    updates = rng.uniform(-params.clip, params.clip, size=(clients, n_values))
    total = CiphertextSum(ring, seeded=key_holder == "clients")
    if key_holder == "clients":
        key: Any = SharedKey.generate(params)
        encryptor = key.encryptor()
        for x in updates:
            total.add([ring.dump(encryptor.encrypt_symmetric(pt)) for pt in ring.encode(x)], "client")
    else:
        key = DecryptorKeys.generate(params)
        encryptor = key.public_key.encryptor()
        for x in updates:
            blobs = []
            for pt in ring.encode(x):
                ct = seal.Ciphertext()
                encryptor.encrypt(pt, ct)
                blobs.append(ring.dump(ct))
            total.add(blobs, "client")
    raw = decrypt_values(ring, key.decryptor(), total.ciphertexts())[:n_values]
    error = raw - updates.sum(axis=0)
    estimate = params.natural_error_std(clients)
    flood = params.release_noise_std(clients)
    measured_std, measured_max = float(np.std(error)), float(np.max(np.abs(error)))
    return {
        "preset": preset, "key_holder": key_holder, "clients": clients, "values": n_values,
        "flood_bits": params.flood_bits_resolved, "estimated_error_std": estimate,
        "measured_error_std": measured_std, "measured_error_max": measured_max, "flood_std": flood,
        "estimate_over_measured": estimate / measured_std,
        "margin_bits_over_std": math.log2(flood / measured_std),
        "margin_bits_over_max": math.log2(flood / measured_max),
    }
