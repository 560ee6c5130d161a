"""CKKS aggregation, privagg's ``he`` against the NVIDIA FLARE approach, on the same round.

Both run in this process on the same N updates of M float32 values (10 x 1M and 50 x 1M by
default). The FLARE-style baseline re-implements what ``nvflare/app_opt/he`` does with
TenSEAL's tensor API: one shared context (N=8192, coefficient moduli [60, 40, 40], scale 2^40)
whose secret key every client holds, the server loading a copy without it; each layer of the
model encrypted as its own ``ckks_vector`` (public-key encryption, real packing, the last
ciphertext of each layer partly empty); the server summing by creating a new vector per
addition and multiplying by 1/N homomorphically; clients decrypting layer by layer. Since
FLARE 2.3 the serialized context also travels with every layer: reported separately
(``bytes_per_value_with_contexts``). Ours: ``he.bench.run_bench`` (whole update flattened,
every slot filled with two reals, seeded symmetric ciphertexts, noise-flooded release), in
these configurations: ``lean`` and ``fast`` presets, the server in one process
(``ours_*_one_process``) or in every CPU's process (``server_processes="auto"``, he.pool), the
decryptor key role, and the ``compact`` and ``standard`` presets. Every configuration runs with
signed uploads and (decryptor) a fresh key pair per round, the defaults; ``*_unsigned`` runs
the same round with ``authenticated=False``, and ``signed_uploads`` reports what the signatures
cost: client signing and server verification per upload, the key holder's recomputation (its
release time, signed against unsigned), the bytes to the key holder, the per-round decryptor
key (its generation time and the bytes relayed to each client).

``latency`` = one client's encryption + the server's aggregation + the decryption, in wall
seconds: what the round takes when clients encrypt in parallel, the issue's measure. ``total``
= every client's encryption + aggregation + decryption in CPU seconds: the work of the round,
whatever the number of processes (the pool's workers included). The baseline is
single-threaded (TenSEAL's own thread pool does not engage here: its wall and CPU times agree,
both reported). ``--repeat R`` runs every configuration R times and keeps, per configuration,
the run with the median latency. Errors are relative to the largest magnitude of the true mean.
TenSEAL prints a warning on stdout for every multi-ciphertext vector; the baseline runs with
stdout silenced so the JSON stays clean. Writes JSON (default
``benchmarks/results/ckks_vs_flare.json``).

    python benchmarks/ckks_vs_flare.py                  # 10 x 1M and 50 x 1M
    python benchmarks/ckks_vs_flare.py --repeat 3       # what results/ckks_vs_flare.json holds
    python benchmarks/ckks_vs_flare.py --quick          # 4 x 20,000
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import io
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from he.bench import Clock, run_bench

RESULTS = Path(__file__).resolve().parent / "results"


@contextlib.contextmanager
def _silenced_stdout() -> Iterator[None]:
    """Silence TenSEAL's warnings: its bindings redirect C++ ``std::cout`` to Python's
    ``sys.stdout`` (pybind11's ``scoped_ostream_redirect``), so both ``sys.stdout`` and file
    descriptor 1 (for anything written below Python) point at nothing while it runs."""
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        ctypes.CDLL(None).fflush(None)
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def layer_sizes(total: int) -> list[int]:
    """A convolutional network's layer sizes (weights, then small bias / norm vectors), cut at ``total``."""
    pattern = [864, 32, 32, 32, 18432, 64, 64, 64, 73728, 128, 128, 128, 294912, 256, 256, 256,
               589824, 512, 512, 512, 5120, 10]
    sizes, left = [], total
    while left > 0:
        for size in pattern:
            take = min(size, left)
            sizes.append(take)
            left -= take
            if left == 0:
                break
    return sizes


def run_flare_style(updates: np.ndarray, sizes: list[int]) -> dict[str, Any]:
    """The FLARE approach described in the module docstring, timed per party."""
    import tenseal as ts

    n, params = updates.shape
    with _silenced_stdout():
        context = ts.context(ts.SCHEME_TYPE.CKKS, poly_modulus_degree=8192, coeff_mod_bit_sizes=[60, 40, 40])
        context.global_scale = 2**40
        server_bytes = context.serialize(save_secret_key=False)
        server_context = ts.context_from(server_bytes)
        offsets = np.cumsum([0] + sizes)
        encrypt: list[Clock] = []
        upload_bytes = []
        totals: list[Any] = [None] * len(sizes)
        server, decrypt = Clock(), Clock()
        for i in range(n):
            values = updates[i].astype(np.float64)
            encrypt.append(Clock())
            with encrypt[-1]:
                blobs = [ts.ckks_vector(context, values[offsets[k]:offsets[k + 1]]).serialize()
                         for k in range(len(sizes))]
            upload_bytes.append(sum(len(b) for b in blobs))
            with server:
                for k, blob in enumerate(blobs):
                    vector = ts.ckks_vector_from(server_context, blob)
                    totals[k] = vector if totals[k] is None else totals[k] + vector
            del blobs
        with server:
            results = [(total * (1.0 / n)).serialize() for total in totals]
        with decrypt:
            mean = np.concatenate([np.asarray(ts.ckks_vector_from(context, blob).decrypt()) for blob in results])
    true_mean = updates.astype(np.float64).mean(axis=0)
    max_abs = float(np.max(np.abs(mean - true_mean)))
    per_client = float(np.mean(upload_bytes))
    encrypt_wall = float(np.mean([t.wall for t in encrypt]))
    encrypt_cpu = [t.cpu for t in encrypt]
    return {
        "layers": len(sizes),
        "encrypt_seconds_per_client": encrypt_wall,
        "aggregate_seconds": server.wall,
        "decrypt_seconds": decrypt.wall,
        "round_latency_seconds": encrypt_wall + server.wall + decrypt.wall,
        "encrypt_cpu_seconds_per_client": float(np.mean(encrypt_cpu)),
        "encrypt_cpu_seconds_total": float(np.sum(encrypt_cpu)),
        "aggregate_cpu_seconds": server.cpu,
        "decrypt_cpu_seconds": decrypt.cpu,
        "total_cpu_seconds": float(np.sum(encrypt_cpu)) + server.cpu + decrypt.cpu,
        "bytes_per_client": per_client,
        "bytes_per_value": per_client / params,
        "context_bytes": len(server_bytes),
        "bytes_per_value_with_contexts": (per_client + len(sizes) * len(server_bytes)) / params,
        "max_abs_error_of_mean": max_abs,
        "max_rel_error": max_abs / float(np.max(np.abs(true_mean))),
    }


def _ours(updates: np.ndarray, **options: Any) -> dict[str, Any]:
    n, params = updates.shape
    report = run_bench(clients=n, params=params, dropout=0.0, updates=updates, dropped=set(), **options)
    report["max_abs_error_of_mean"] = report["max_abs_error"] / n
    return {k: v for k, v in report.items() if k not in ("aggregate", "included_ids")}


#: Our configurations, by the name they have in the JSON.
CONFIGURATIONS: dict[str, dict[str, Any]] = {
    "ours_lean_clients_one_process": {"preset": "lean", "key_holder": "clients", "server_processes": 1},
    "ours_lean_clients": {"preset": "lean", "key_holder": "clients", "server_processes": "auto"},
    "ours_fast_clients_one_process": {"preset": "fast", "key_holder": "clients", "server_processes": 1},
    "ours_fast_clients": {"preset": "fast", "key_holder": "clients", "server_processes": "auto"},
    "ours_lean_decryptor": {"preset": "lean", "key_holder": "decryptor", "server_processes": "auto"},
    "ours_compact_clients": {"preset": "compact", "key_holder": "clients", "server_processes": "auto"},
    "ours_standard_clients": {"preset": "standard", "key_holder": "clients", "server_processes": "auto"},
    "ours_lean_clients_unsigned": {"preset": "lean", "key_holder": "clients", "server_processes": "auto",
                                   "authenticated": False},
    "ours_lean_decryptor_unsigned": {"preset": "lean", "key_holder": "decryptor", "server_processes": "auto",
                                     "authenticated": False},
}


def signing_costs(upload_bytes: int, n_values: int, repeat: int = 5) -> dict[str, float]:
    """Ed25519 over the upload's transcript digest (SHA-256 of its ciphertexts), per upload."""
    import time

    from he.binding import sign_upload_payload
    from privagg.identity import Roster, SigningKey

    key = SigningKey.generate()
    roster = Roster({1: key.public_key()})
    blobs = [os.urandom(min(upload_bytes, 40_000)) for _ in range(max(1, upload_bytes // 40_000))]
    t0 = time.perf_counter()
    for _ in range(repeat):
        signature = key.sign(sign_upload_payload(bytes(32), 1, "clients", bytes(16), 1, n_values, blobs))
    t1 = time.perf_counter()
    for _ in range(repeat):
        assert roster.verify(1, signature, sign_upload_payload(bytes(32), 1, "clients", bytes(16), 1, n_values, blobs))
    t2 = time.perf_counter()
    return {"sign_seconds_per_upload": (t1 - t0) / repeat, "verify_seconds_per_upload": (t2 - t1) / repeat}


def signed_upload_report(ours: dict[str, dict[str, Any]], params: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for holder in ("clients", "decryptor"):
        signed, unsigned = ours[f"ours_lean_{holder}"], ours[f"ours_lean_{holder}_unsigned"]
        out[holder] = {
            **signing_costs(int(signed["bytes_per_client"]), params),
            "signature_bytes_per_upload": signed["bytes_per_client"] - unsigned["bytes_per_client"],
            "bytes_per_value_signed": signed["bytes_per_value"],
            "bytes_per_value_unsigned": unsigned["bytes_per_value"],
            "bytes_to_key_holder_signed": signed["bytes_to_key_holder"],
            "bytes_to_key_holder_unsigned": unsigned["bytes_to_key_holder"],
            "key_holder_seconds_signed": signed["decrypt_seconds"],
            "key_holder_seconds_unsigned": unsigned["decrypt_seconds"],
            "server_seconds_signed": signed["aggregate_seconds"],
            "server_seconds_unsigned": unsigned["aggregate_seconds"],
            "round_key_seconds": signed["round_key_seconds"],
            "round_key_bytes_per_client": signed["round_key_bytes_per_client"],
        }
    return out


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    ordered = sorted(runs, key=lambda r: r["round_latency_seconds"])
    chosen = dict(ordered[(len(ordered) - 1) // 2])
    chosen["latency_seconds_of_repeats"] = [r["round_latency_seconds"] for r in runs]
    return chosen


def compare(clients: int, params: int, seed: int, repeat: int = 1) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    updates = rng.uniform(-1, 1, size=(clients, params)).astype(np.float32)
    sizes = layer_sizes(params)
    print(f"{clients} clients x {params} values: FLARE-style ({len(sizes)} layers) ...", file=sys.stderr)
    flare = _median_run([run_flare_style(updates, sizes) for _ in range(repeat)])
    ours: dict[str, dict[str, Any]] = {}
    for name, options in CONFIGURATIONS.items():
        print(f"  privagg he: {name} ...", file=sys.stderr)
        ours[name] = _median_run([_ours(updates, **options) for _ in range(repeat)])
    lean, fast = ours["ours_lean_clients"], ours["ours_fast_clients"]

    def latency(r: dict[str, Any]) -> float:
        return flare["round_latency_seconds"] / r["round_latency_seconds"]

    ratios = {f"latency_flare_over_{name[5:]}": latency(r) for name, r in ours.items()}
    ratios.update({f"total_cpu_flare_over_{name[5:]}": flare["total_cpu_seconds"] / r["total_cpu_seconds"]
                   for name, r in ours.items()})
    ratios.update({
        "encrypt_flare_over_lean": flare["encrypt_seconds_per_client"] / lean["encrypt_seconds_per_client"],
        "aggregate_flare_over_lean": flare["aggregate_seconds"] / lean["aggregate_seconds"],
        "aggregate_flare_over_fast": flare["aggregate_seconds"] / fast["aggregate_seconds"],
        "decrypt_flare_over_lean": flare["decrypt_seconds"] / lean["decrypt_seconds"],
        "bytes_flare_over_lean": flare["bytes_per_value"] / lean["bytes_per_value"],
    })
    targets = {
        "clients_bytes_per_value_at_most_8.1": all(ours[k]["bytes_per_value"] <= 8.1 for k in
                                                   ("ours_lean_clients", "ours_fast_clients")),
        "compact_bytes_per_value_below_8": ours["ours_compact_clients"]["bytes_per_value"] < 8,
        "decryptor_bytes_per_value_at_most_16.1": ours["ours_lean_decryptor"]["bytes_per_value"] <= 16.1,
        "max_rel_error_at_most_1e-6": all(r["max_rel_error"] <= 1e-6 for r in ours.values()),
        "latency_at_least_4x_faster_fast": latency(fast) >= 4,
        "latency_at_least_4x_faster_lean": latency(lean) >= 4,
        "latency_at_least_4x_faster_decryptor": latency(ours["ours_lean_decryptor"]) >= 4,
        "total_cpu_at_least_4x_lower_lean": flare["total_cpu_seconds"] / lean["total_cpu_seconds"] >= 4,
        "signed_upload_within_1pct_of_8.08_plus_signature": lean["bytes_per_value"] <= 8.08 * 1.01 + 64 / params,
    }
    return {"clients": clients, "params": params, "flare_style": flare, **ours, "ratios": ratios, "targets": targets,
            "signed_uploads": signed_upload_report(ours, params)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", default="10,50", help="comma-separated client counts")
    parser.add_argument("--params", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=1, help="runs per configuration (the median is kept)")
    parser.add_argument("--quick", action="store_true", help="4 clients x 20,000 values")
    parser.add_argument("--out", type=Path, default=RESULTS / "ckks_vs_flare.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.clients, args.params = "4", 20_000
    counts = [int(c) for c in args.clients.split(",") if c.strip()]
    import tenseal

    report: dict[str, Any] = {
        "config": {"clients": counts, "params": args.params, "seed": args.seed, "tenseal": tenseal.__version__,
                   "repeat": args.repeat, "cpu_count": os.cpu_count(),
                   "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
                   "clocks": "*_seconds: wall (perf_counter); *_cpu_seconds: CPU, workers included"},
        "runs": [compare(n, args.params, args.seed, args.repeat) for n in counts],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    summary = [{"clients": r["clients"], "params": r["params"], "ratios": r["ratios"], "targets": r["targets"],
                "bytes_per_value": {k: r[k]["bytes_per_value"] for k in r if isinstance(r[k], dict)
                                    and "bytes_per_value" in r[k]},
                "max_rel_error": {k: r[k]["max_rel_error"] for k in r if isinstance(r[k], dict)
                                  and "max_rel_error" in r[k]}} for r in report["runs"]]
    print(json.dumps(summary, indent=2))
    return report


if __name__ == "__main__":
    main()
