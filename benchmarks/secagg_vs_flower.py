"""Secure aggregation, privagg's SecAgg+ against Flower 1.42's SecAgg+, on the same round.

Both run in this process on the same N updates of M float32 parameters, with the same clients
dropping after the share-keys stage, the same share count and threshold. Flower runs its real
``SecAggPlusWorkflow`` and ``secaggplus_mod`` (see ``_flower_peer.py``). Times are process CPU
seconds. Writes JSON (default ``benchmarks/results/secagg_vs_flower.json``).

    python benchmarks/secagg_vs_flower.py                 # N=100, M=100,000, 13 shares, t=7
    python benchmarks/secagg_vs_flower.py --quick         # N=20, M=10,000, 7 shares, t=4
    python benchmarks/secagg_vs_flower.py --profile       # also: where our time goes
    python benchmarks/secagg_vs_flower.py --flower-memory # also trace Flower's server memory (slow)
    python benchmarks/secagg_vs_flower.py --sizes 100,1000,10000   # the default sizes of the scaling runs

Besides the comparison, two scaling runs of ours alone (semi-honest, small vectors, the same
10 % dropping after share keys): our defaults (``neighbours="auto"``: k and t from
:mod:`secagg.parameters`) at each size, and a cost curve at a fixed k (12 neighbours, t = 4),
where a client's CPU and the server's CPU per client must stay within 1.5x from the smallest
size to the largest: a client's work is O(k), whatever the roster.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _flower_peer import run_flower_secaggplus  # noqa: E402

from secagg.bench import run_bench  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def _profile(call: Any, top: int = 15) -> list[dict[str, Any]]:
    profiler = cProfile.Profile()
    profiler.enable()
    call()
    profiler.disable()
    stats = pstats.Stats(profiler, stream=io.StringIO())
    total = sum(v[2] for v in stats.stats.values())  # type: ignore[attr-defined]
    rows = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:top]  # type: ignore[attr-defined]
    return [{"function": f"{Path(f).name}:{line}({name})", "self_seconds": round(tt, 4),
             "share": round(tt / total, 3) if total else 0.0}
            for (f, line, name), (_, _, tt, _, _) in rows]


def _scaling_point(n: int, params: int, neighbours: int | str, threshold: int | None, dropout: float,
                   seed: int) -> dict[str, Any]:
    """One semi-honest round of ``n`` clients, timed per party (process CPU seconds)."""
    print(f"  scaling: {n} clients, neighbours={neighbours}", file=sys.stderr)
    started = time.perf_counter()
    run = run_bench(clients=n, params=params, dropout=dropout, neighbours=neighbours, threshold=threshold,
                    seed=seed, trace_memory=False)
    return {"clients": n, "params": params, "neighbours": run["neighbours"], "threshold": run["threshold"],
            "included": run["included"], "exact": run["exact"],
            "client_seconds_per_client": run["client_seconds_total"] / n,
            "client_seconds_max": run["client_seconds_max"],
            "server_seconds": run["server_seconds"], "server_seconds_per_client": run["server_seconds"] / n,
            "bytes_up_per_client": run["bytes_up_total"] / n, "wall_seconds": time.perf_counter() - started}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--params", type=int, default=100_000)
    parser.add_argument("--dropout", type=float, default=0.1, help="fraction dropping after share keys")
    parser.add_argument("--num-shares", type=int, default=13, help="Flower's num_shares = our neighbours + 1")
    parser.add_argument("--threshold", type=int, default=7)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="N=20, M=10,000, 7 shares, threshold 4")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--flower-memory", action="store_true", help="trace Flower's server memory (about 6x slower)")
    parser.add_argument("--sizes", default="100,1000,10000", help="roster sizes of the scaling runs ('' skips them)")
    parser.add_argument("--curve-params", type=int, default=100, help="vector length of the scaling runs")
    parser.add_argument("--curve-neighbours", type=int, default=12)
    parser.add_argument("--out", type=Path, default=RESULTS / "secagg_vs_flower.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.clients, args.params, args.num_shares, args.threshold = 20, 10_000, 7, 4

    rng = np.random.default_rng(args.seed)
    updates = rng.uniform(-1, 1, size=(args.clients, args.params)).astype(np.float32)
    dropped = {int(i) for i in rng.choice(args.clients, size=int(round(args.dropout * args.clients)), replace=False)}
    common = dict(clients=args.clients, params=args.params, dropout=args.dropout,
                  neighbours=args.num_shares - 1, threshold=args.threshold, updates=updates, dropped=dropped)

    print(f"privagg SecAgg+: {args.clients} clients x {args.params} params, {len(dropped)} dropping", file=sys.stderr)
    ours = run_bench(**common, trace_memory=False)
    ours_memory = run_bench(**common, trace_memory=True)["server_peak_bytes"]
    ours_active = run_bench(**common, security="active", trace_memory=False)
    print("Flower SecAgg+ ...", file=sys.stderr)
    t0 = time.perf_counter()
    flower = run_flower_secaggplus(list(updates), num_shares=args.num_shares,
                                   reconstruction_threshold=args.threshold, drop_after_share_keys=dropped)
    flower_wall = time.perf_counter() - t0
    flower_memory = None
    if args.flower_memory:
        flower_memory = run_flower_secaggplus(list(updates), num_shares=args.num_shares,
                                              reconstruction_threshold=args.threshold,
                                              drop_after_share_keys=dropped, measure_memory=True)["server_peak_bytes"]

    survivors = sorted(set(range(args.clients)) - dropped)
    plain_sum = updates[survivors].astype(np.float64).sum(axis=0)
    ours_total = ours["client_seconds_total"] + ours["server_seconds"]
    flower_total = flower["client_seconds_total"] + flower["server_seconds"]
    uploaders = len(survivors)
    report: dict[str, Any] = {
        "config": {"clients": args.clients, "params": args.params, "dropout": args.dropout,
                   "dropped_after_share_keys": sorted(dropped), "num_shares": args.num_shares,
                   "threshold": args.threshold, "flower_version": flower.get("flower_version")},
        "ours": {k: v for k, v in ours.items() if k not in ("aggregate", "included_ids")}
        | {"server_peak_bytes": ours_memory,
           "max_abs_error_vs_plaintext": float(np.max(np.abs(ours["aggregate"] - plain_sum))),
           "included_match": ours["included_ids"] == survivors},
        "ours_active": {k: ours_active[k] for k in ("client_seconds_total", "client_seconds_max", "server_seconds",
                                                    "bytes_up_total", "exact")},
        "flower": {k: flower[k] for k in ("client_seconds_total", "client_seconds_max", "server_seconds",
                                          "bytes_up_total", "bytes_down_total") if k in flower}
        | {"server_peak_bytes": flower_memory, "wall_seconds": flower_wall,
           "max_abs_error_vs_plaintext": float(np.max(np.abs(np.asarray(flower["aggregate_sum"]) - plain_sum))),
           "included_match": sorted(flower["included"]) == survivors},
    }
    report["ratios"] = {
        "total_cpu_flower_over_ours": flower_total / ours_total,
        "client_cpu_flower_over_ours": flower["client_seconds_total"] / ours["client_seconds_total"],
        "server_cpu_flower_over_ours": flower["server_seconds"] / ours["server_seconds"],
        "total_cpu_flower_over_ours_active": flower_total / (ours_active["client_seconds_total"]
                                                             + ours_active["server_seconds"]),
        "bytes_up_flower_over_ours": flower["bytes_up_total"] / ours["bytes_up_total"],
        "mask_seconds_over_aes_ctr_floor": ours["mask_seconds"] / ours["aes_ctr_floor_seconds"],
        "server_peak_over_vector": (ours_memory / ours["vector_bytes"]) if ours_memory else None,
    }
    report["bytes_per_param"] = {
        "ours_per_uploading_client": ours["bytes_up_total"] / (uploaders * args.params),
        "ours_masked_vector_only": (ours["vector_bytes"] + 43) / args.params,
        "flower_per_uploading_client": flower["bytes_up_total"] / (uploaders * args.params),
    }
    r = report["ratios"]
    report["targets"] = {
        "total_cpu_at_least_10x_lower": r["total_cpu_flower_over_ours"] >= 10,
        "masked_upload_at_most_4_bytes_per_param": report["bytes_per_param"]["ours_masked_vector_only"] <= 4.001,
        "mask_generation_within_2x_of_floor": r["mask_seconds_over_aes_ctr_floor"] <= 2,
        "server_peak_under_4x_vector_plus_metadata": (r["server_peak_over_vector"] or 99) < 4,
    }
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    if sizes:
        report["defaults_cost"] = [_scaling_point(n, args.curve_params, "auto", None, args.dropout, args.seed)
                                   for n in sizes]
        k = args.curve_neighbours
        # t = k // 3 (4 of 12): a neighbourhood then survives 8 dropouts, so 10 % dropping does
        # not abort the curve at 10,000 clients (with a majority threshold it would, now and then:
        # 10,000 neighbourhoods of 12 is a lot of draws).
        report["fixed_k_curve"] = [_scaling_point(n, args.curve_params, k, max(k // 3, 2), args.dropout, args.seed)
                                   for n in sizes]
        curve = report["fixed_k_curve"]
        client = [p["client_seconds_per_client"] for p in curve]
        server = [p["server_seconds_per_client"] for p in curve]
        report["ratios"]["fixed_k_client_cpu_largest_over_smallest"] = client[-1] / client[0]
        report["ratios"]["fixed_k_server_cpu_per_client_largest_over_smallest"] = server[-1] / server[0]
        report["targets"]["client_cpu_flat_within_1_5x"] = client[-1] / client[0] <= 1.5
        report["targets"]["server_cpu_per_client_flat_within_1_5x"] = server[-1] / server[0] <= 1.5
    if args.profile:
        report["profile_ours_top_self_time"] = _profile(lambda: run_bench(**common, trace_memory=False))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps({k: report[k] for k in ("ratios", "bytes_per_param", "targets")}, indent=2))
    return report


if __name__ == "__main__":
    main()
