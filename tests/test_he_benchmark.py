"""benchmarks/ckks_vs_flare.py runs (small settings), keeps its JSON contract and keeps stdout
clean of TenSEAL's C++ warnings. Speed is not asserted: the figures come from the full run."""

import json

import pytest

pytest.importorskip("tenseal")


def test_ckks_vs_flare_quick(tmp_path, capfd, load_benchmark):
    bench = load_benchmark("ckks_vs_flare")
    out = tmp_path / "ckks.json"
    report = bench.main(["--quick", "--out", str(out)])
    stdout = capfd.readouterr().out
    assert "WARNING" not in stdout
    summary = json.loads(stdout)  # nothing but the JSON summary reached file descriptor 1
    assert summary[0]["clients"] == 4 and json.loads(out.read_text())["runs"][0]["params"] == 20_000
    (run,) = report["runs"]
    flare, ours = run["flare_style"], run["ours_lean_clients"]
    assert flare["layers"] == 9 and flare["context_bytes"] > 100_000
    for name in ("flare_style", *bench.CONFIGURATIONS):
        assert 0 < run[name]["max_rel_error"] <= 1e-6, name
        assert run[name]["round_latency_seconds"] > 0 and run[name]["latency_seconds_of_repeats"], name
    assert ours["bytes_per_value"] < flare["bytes_per_value"] / 10
    assert ours["server_processes"] >= 1 and run["ours_lean_clients_one_process"]["server_processes"] == 1
    assert all(value > 0 for value in run["ratios"].values())
    assert run["targets"]["max_rel_error_at_most_1e-6"] is True
