"""The benchmark scripts run (small settings) and keep their JSON contract. Speed is not
asserted here: the figures come from the full runs, written to benchmarks/results/."""

import json

import pytest


def test_secagg_vs_flower_quick(tmp_path, load_benchmark):
    pytest.importorskip("flwr")
    out = tmp_path / "secagg.json"
    bench = load_benchmark("secagg_vs_flower")
    report = bench.main(["--clients", "12", "--params", "2000", "--num-shares", "7", "--threshold", "4",
                         "--sizes", "20,40", "--curve-neighbours", "6", "--out", str(out)])
    assert json.loads(out.read_text())["config"]["clients"] == 12
    assert report["ours"]["exact"] is True and report["ours"]["included_match"] is True
    assert report["ours_active"]["exact"] is True
    assert report["flower"]["included_match"] is True
    # Both sums agree with the plaintext sum of the survivors within their quantization.
    assert report["ours"]["max_abs_error_vs_plaintext"] < 1e-4
    assert report["flower"]["max_abs_error_vs_plaintext"] < 1e-3
    assert [p["clients"] for p in report["fixed_k_curve"]] == [20, 40]
    assert all(p["exact"] and p["neighbours"] == 6 for p in report["fixed_k_curve"])
    assert all(p["exact"] for p in report["defaults_cost"])
    assert isinstance(report["targets"]["client_cpu_flat_within_1_5x"], bool)
    for key in ("total_cpu_flower_over_ours", "bytes_up_flower_over_ours", "mask_seconds_over_aes_ctr_floor"):
        assert report["ratios"][key] > 0
