"""benchmarks/flower_round.py runs (small settings, real processes) and keeps its JSON contract.
Speed is not asserted: the figures come from the full run, in benchmarks/results/."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("flwr")

pytestmark = pytest.mark.slow


def test_flower_round_benchmark_quick(tmp_path: Path, load_benchmark) -> None:
    bench = load_benchmark("flower_round")
    out = tmp_path / "flower_round.json"
    report = bench.main(["--nodes", "3", "--params", "2000", "--variants", "flower,privagg", "--stage-timeout", "60",
                         "--out", str(out)])
    assert json.loads(out.read_text())["config"]["nodes"] == 3
    for variant in ("flower", "privagg"):
        entry = report[variant]
        assert entry["included"] == 3
        # Both sums agree with the plaintext sum within their quantisation (2^-22 steps of 2).
        assert entry["max_abs_error_vs_plaintext"] < 1e-4
        assert entry["messages_down"] == entry["messages_up"] == 12  # four stages, three nodes
        assert entry["node_cpu_seconds_total"] > entry["clientapp_handler_cpu_seconds_total"] > 0
    for key in ("round_wall_seconds_flower_over_ours", "bytes_up_flower_over_ours",
                "node_cpu_seconds_total_flower_over_ours"):
        assert report["ratios"][key] > 0
