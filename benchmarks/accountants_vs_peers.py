"""privagg's accountants against Opacus and dp_accounting, on one grid, in one run.

For every (sampling rate q, noise multiplier sigma, steps T) of the grid, at delta = 1e-5:

* RDP: ours vs Opacus 1.6 vs dp_accounting 0.6 (each with its default orders);
* PLD: ours vs dp_accounting (both pessimistic, interval 1e-4), plus a lower bound on the true
  epsilon: the exact Gaussian formula when q = 1, dp_accounting's optimistic PLD otherwise
  (its delta curve inverted by us above eps = 700, where its own epsilon search overflows);
* calibration: our ``calibrate`` vs Opacus's ``get_noise_multiplier`` (eps 3, q 0.01, T 1000).

A point fails when our RDP epsilon exceeds min(Opacus, dp_accounting) * (1 + 1e-6), or our
PLD epsilon is more than 0.5% away from dp_accounting's or below the lower bound. Writes JSON
(every epsilon, worst relative differences, failures, time per library, ratios) to
``benchmarks/results/accountants_vs_peers.json`` and prints a summary.

    python benchmarks/accountants_vs_peers.py            # the full grid (a few minutes)
    python benchmarks/accountants_vs_peers.py --quick    # a small grid, for tests
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import platform
import sys
import time
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

DELTA = 1e-5
FULL_GRID = {"q": [1e-3, 1e-2, 1e-1, 1.0], "sigma": [0.5, 0.8, 1.0, 1.5, 2.0, 4.0],
             "steps": [1, 10, 100, 1000, 10000]}
QUICK_GRID = {"q": [1e-2, 1.0], "sigma": [1.0, 2.0], "steps": [10, 100]}
RDP_SLACK = 1e-6
PLD_TOLERANCE = 5e-3
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "accountants_vs_peers.json"


def _timed(fn: Callable[[], float]) -> tuple[float, float]:
    start = time.perf_counter()
    value = fn()
    return float(value), time.perf_counter() - start


def _version(distribution: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "unknown"


def _json_number(value: float) -> float | str:
    return value if math.isfinite(value) else str(value)


def run(grid: dict[str, list[float]], calibrate_repeats: int) -> dict[str, Any]:
    import numpy as np
    import opacus
    from dp_accounting import dp_event
    from dp_accounting.pld import pld_privacy_accountant, privacy_loss_distribution
    from dp_accounting.rdp import rdp_privacy_accountant
    from opacus.accountants import RDPAccountant as OpacusRdp
    from opacus.accountants.analysis import rdp as opacus_rdp
    from opacus.accountants.utils import get_noise_multiplier
    from scipy import optimize, special

    from dp.calibration import calibrate
    from dp.events import GaussianEvent, PoissonSampledEvent
    from dp.pld import PldAccountant
    from dp.rdp import RdpAccountant

    def ours_rdp(q: float, sigma: float, steps: int) -> float:
        return RdpAccountant().compose(PoissonSampledEvent(q, GaussianEvent(sigma)), steps).get_epsilon(DELTA)

    def ours_rdp_order(q: float, sigma: float, steps: int) -> float:
        acc = RdpAccountant().compose(PoissonSampledEvent(q, GaussianEvent(sigma)), steps)
        return acc.get_epsilon_and_order(DELTA)[1]

    def ours_pld(q: float, sigma: float, steps: int) -> float:
        return PldAccountant().compose(PoissonSampledEvent(q, GaussianEvent(sigma)), steps).get_epsilon(DELTA)

    def opacus_eps(q: float, sigma: float, steps: int) -> float:
        orders = OpacusRdp.DEFAULT_ALPHAS
        rdp = opacus_rdp.compute_rdp(q=q, noise_multiplier=sigma, steps=steps, orders=orders)
        return opacus_rdp.get_privacy_spent(orders=orders, rdp=rdp, delta=DELTA)[0]

    def dpa_event(q: float, sigma: float, steps: int) -> Any:
        return dp_event.SelfComposedDpEvent(dp_event.PoissonSampledDpEvent(q, dp_event.GaussianDpEvent(sigma)), steps)

    def dpa_rdp(q: float, sigma: float, steps: int) -> float:
        acc = rdp_privacy_accountant.RdpAccountant()
        acc.compose(dpa_event(q, sigma, steps))
        return acc.get_epsilon(DELTA)

    def dpa_pld(q: float, sigma: float, steps: int) -> float:
        acc = pld_privacy_accountant.PLDAccountant()
        acc.compose(dpa_event(q, sigma, steps))
        return acc.get_epsilon(DELTA)

    def exact_gaussian(sigma: float, steps: int) -> float:
        mu = math.sqrt(steps) / sigma

        def delta_of(eps: float) -> float:  # Phi(a) - e^eps Phi(b), factored to avoid overflow
            log_a, log_b = special.log_ndtr(mu / 2 - eps / mu), special.log_ndtr(-mu / 2 - eps / mu)
            return math.exp(log_a) * -math.expm1(eps + log_b - log_a)

        if delta_of(0.0) <= DELTA:
            return 0.0
        return optimize.brentq(lambda e: delta_of(e) - DELTA, 0.0, mu * mu / 2 + 10 * mu, xtol=1e-13)

    def lower_bound(q: float, sigma: float, steps: int, upper: float) -> tuple[float, str]:
        """The exact epsilon (q = 1), else one from dp_accounting's optimistic delta curve."""
        if q == 1.0:
            return exact_gaussian(sigma, steps), "exact Gaussian (Balle and Wang 2018)"
        pld = privacy_loss_distribution.from_gaussian_mechanism(
            sigma, sampling_prob=q, pessimistic_estimate=False, use_connect_dots=False,
            value_discretization_interval=1e-4).self_compose(steps)
        source = "dp_accounting optimistic PLD"
        eps = pld.get_epsilon_for_delta(DELTA)
        if eps > 700:
            # dp_accounting's epsilon search overshoots where e^eps overflows (eps > ~709), so
            # invert its (sound) delta curve here instead; `upper` (an RDP bound) brackets it.
            source += ", delta curve inverted by brentq"
            eps = optimize.brentq(lambda e: pld.get_delta_for_epsilon(e) - DELTA, 0.0, upper, xtol=1e-9)
        return eps, source

    libraries: dict[str, Callable[[float, float, int], float]] = {
        "ours_rdp": ours_rdp, "opacus_rdp": opacus_eps, "dp_accounting_rdp": dpa_rdp,
        "ours_pld": ours_pld, "dp_accounting_pld": dpa_pld,
    }
    for fn in libraries.values():  # first calls pay for imports and caches, not the grid
        fn(0.01, 1.0, 10)

    totals = dict.fromkeys(libraries, 0.0)
    points, failures = [], []
    for q in grid["q"]:
        for sigma in grid["sigma"]:
            for steps in grid["steps"]:
                steps = int(steps)
                point: dict[str, Any] = {"q": q, "sigma": sigma, "steps": steps}
                values: dict[str, float] = {}
                for name, fn in libraries.items():
                    values[name], seconds = _timed(partial(fn, q, sigma, steps))
                    totals[name] += seconds
                    point[name] = _json_number(values[name])
                    point[f"{name}_seconds"] = seconds
                point["ours_rdp_order"] = ours_rdp_order(q, sigma, steps)
                bound, source = lower_bound(q, sigma, steps, values["ours_rdp"])
                point["true_epsilon_lower_bound"] = _json_number(bound)
                point["lower_bound_source"] = source

                peers = min(values["opacus_rdp"], values["dp_accounting_rdp"])
                point["rdp_rel_diff_vs_best_peer"] = values["ours_rdp"] / peers - 1 if peers > 0 else 0.0
                pld_ref = values["dp_accounting_pld"]
                point["pld_rel_diff_vs_dp_accounting"] = values["ours_pld"] / pld_ref - 1 if pld_ref > 0 else 0.0
                reasons = []
                if values["ours_rdp"] > peers * (1 + RDP_SLACK):
                    reasons.append("RDP looser than min(Opacus, dp_accounting) * (1 + 1e-6)")
                if abs(point["pld_rel_diff_vs_dp_accounting"]) > PLD_TOLERANCE:
                    reasons.append("PLD more than 0.5% from dp_accounting")
                if values["ours_pld"] < bound * (1 - 1e-9):
                    reasons.append("PLD below the lower bound on the true epsilon")
                if reasons:
                    failures.append({"q": q, "sigma": sigma, "steps": steps, "reasons": reasons})
                points.append(point)
                print(f"q={q:<6g} sigma={sigma:<4g} T={steps:<6d} rdp ours {values['ours_rdp']:.6g} "
                      f"opacus {values['opacus_rdp']:.6g} dpa {values['dp_accounting_rdp']:.6g} | "
                      f"pld ours {values['ours_pld']:.6g} dpa {pld_ref:.6g} lower {bound:.6g}"
                      + (f"  FAIL: {'; '.join(reasons)}" if reasons else ""), flush=True)

    def extreme(key: str) -> dict[str, Any]:
        best = max(points, key=lambda p: p[key])
        worst = min(points, key=lambda p: p[key])
        return {"max": best[key], "at_max": {k: best[k] for k in ("q", "sigma", "steps")},
                "min": worst[key], "at_min": {k: worst[k] for k in ("q", "sigma", "steps")}}

    def rel(a: str, b: str) -> dict[str, Any]:
        key = f"_{a}_vs_{b}"
        for p in points:
            va, vb = float(p[a]), float(p[b])
            p[key] = va / vb - 1 if vb > 0 and math.isfinite(va) and math.isfinite(vb) else 0.0
        out = extreme(key)
        for p in points:
            del p[key]
        return out

    # Calibration: ours (RDP) vs Opacus's get_noise_multiplier, same question.
    target = {"target_epsilon": 3.0, "sampling_rate": 0.01, "steps": 1000, "delta": DELTA}
    ours_times, sigma_ours = [], 0.0
    for _ in range(calibrate_repeats):
        sigma_ours, seconds = _timed(lambda: calibrate(3.0, 0.01, 1000, DELTA))
        ours_times.append(seconds)
    opacus_times, sigma_opacus = [], 0.0
    for _ in range(max(1, calibrate_repeats // 10)):
        sigma_opacus, seconds = _timed(lambda: get_noise_multiplier(
            target_epsilon=3.0, target_delta=DELTA, sample_rate=0.01, steps=1000, accountant="rdp"))
        opacus_times.append(seconds)
    sigma_pld, pld_calibrate_seconds = _timed(lambda: calibrate(3.0, 0.01, 1000, DELTA, accountant="pld"))
    calibration = {
        **target,
        "ours_rdp_sigma": sigma_ours, "ours_rdp_epsilon_at_sigma": ours_rdp(0.01, sigma_ours, 1000),
        "ours_rdp_ms_per_call": 1e3 * float(np.median(ours_times)),
        "opacus_sigma": sigma_opacus, "opacus_epsilon_at_sigma": opacus_eps(0.01, sigma_opacus, 1000),
        "opacus_ms_per_call": 1e3 * float(np.median(opacus_times)),
        "opacus_epsilon_tolerance": 0.01,
        "ours_pld_sigma": sigma_pld, "ours_pld_ms_per_call": 1e3 * pld_calibrate_seconds,
    }
    calibration["speedup_vs_opacus"] = calibration["opacus_ms_per_call"] / calibration["ours_rdp_ms_per_call"]

    speedups = {
        "opacus_rdp_over_ours_rdp": totals["opacus_rdp"] / totals["ours_rdp"],
        "dp_accounting_rdp_over_ours_rdp": totals["dp_accounting_rdp"] / totals["ours_rdp"],
        "dp_accounting_pld_over_ours_pld": totals["dp_accounting_pld"] / totals["ours_pld"],
    }
    rdp_failures = [f for f in failures if any("RDP" in r for r in f["reasons"])]
    pld_failures = [f for f in failures if any("PLD" in r for r in f["reasons"])]
    targets = {
        "rdp_never_looser_than_peers": not rdp_failures,
        "rdp_grid_at_least_10x_faster_than_opacus": speedups["opacus_rdp_over_ours_rdp"] >= 10,
        "calibrate_under_50ms": calibration["ours_rdp_ms_per_call"] < 50,
        "pld_within_0.5pct_and_never_below_truth": not pld_failures,
        "pld_grid_at_least_5x_faster_than_dp_accounting": speedups["dp_accounting_pld_over_ours_pld"] >= 5,
    }
    return {
        "delta": DELTA,
        "grid": grid,
        "points": points,
        "largest_relative_differences": {
            "ours_rdp_vs_opacus_rdp": rel("ours_rdp", "opacus_rdp"),
            "ours_rdp_vs_dp_accounting_rdp": rel("ours_rdp", "dp_accounting_rdp"),
            "ours_pld_vs_dp_accounting_pld": rel("ours_pld", "dp_accounting_pld"),
            "ours_pld_vs_true_epsilon_lower_bound": rel("ours_pld", "true_epsilon_lower_bound"),
        },
        "failures": failures,
        "times_seconds": totals,
        "speedups": speedups,
        "calibrate": calibration,
        "targets": targets,
        "all_targets_met": all(targets.values()),
        "environment": {"python": platform.python_version(), "machine": platform.machine(),
                        "opacus": opacus.__version__, "dp_accounting": _version("dp-accounting"),
                        "numpy": np.__version__},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small grid (seconds), for tests")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write the JSON")
    args = parser.parse_args(argv)
    root = Path(__file__).resolve().parent.parent
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    warnings.filterwarnings("ignore")       # Opacus warns about the order range at every point
    logging.disable(logging.WARNING)        # ... and logs series that fail to converge
    report = run(QUICK_GRID if args.quick else FULL_GRID, calibrate_repeats=10 if args.quick else 50)
    report["quick"] = args.quick
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    t, s, c = report["times_seconds"], report["speedups"], report["calibrate"]
    print(f"\nRDP grid: ours {t['ours_rdp']:.3f}s, Opacus {t['opacus_rdp']:.3f}s "
          f"({s['opacus_rdp_over_ours_rdp']:.1f}x), dp_accounting {t['dp_accounting_rdp']:.3f}s "
          f"({s['dp_accounting_rdp_over_ours_rdp']:.1f}x)")
    print(f"PLD grid: ours {t['ours_pld']:.3f}s, dp_accounting {t['dp_accounting_pld']:.3f}s "
          f"({s['dp_accounting_pld_over_ours_pld']:.1f}x)")
    print(f"calibrate: ours {c['ours_rdp_ms_per_call']:.2f} ms (sigma {c['ours_rdp_sigma']:.6f}), "
          f"Opacus {c['opacus_ms_per_call']:.1f} ms (sigma {c['opacus_sigma']:.6f})")
    print(f"failures: {len(report['failures'])}; targets: {report['targets']}")
    print(f"wrote {args.out}")
    return 0 if not report["failures"] else 1


if __name__ == "__main__":
    sys.exit(main())
