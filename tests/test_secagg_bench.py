import json

import numpy as np

from privagg.cli import main
from secagg.bench import aes_ctr_floor, run_bench

BENCH_KEYS = {"clients", "params", "dropout", "neighbours", "threshold", "client_seconds_total",
              "client_seconds_max", "server_seconds", "bytes_up_total", "server_peak_bytes", "exact",
              "aes_ctr_floor_seconds"}


def test_bench_json_contract(capsys):
    code = main(["bench", "secagg", "--clients", "12", "--params", "500", "--dropout", "0.25",
                 "--neighbours", "6", "--format", "json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    report = json.loads(out)
    assert BENCH_KEYS <= set(report)
    assert report["exact"] is True
    assert report["neighbours"] == 6 and report["threshold"] == 4
    assert report["included"] == 9
    assert report["client_seconds_max"] <= report["client_seconds_total"]
    # 9 masked uint32 vectors at least went up
    assert report["bytes_up_total"] > 9 * 500 * 4


def test_bench_on_given_updates_and_dropouts():
    updates = np.random.default_rng(0).uniform(-1, 1, (10, 300)).astype(np.float32)
    # Active rounds need t = 4 of each client's 6 neighbours to survive: two dropouts never break it.
    report = run_bench(clients=10, params=300, dropout=0.2, neighbours=6, updates=updates, dropped={1, 2},
                       security="active")
    assert report["exact"] and report["included_ids"] == [0, 3, 4, 5, 6, 7, 8, 9]
    survivors = updates[report["included_ids"]].astype(np.float64).sum(axis=0)
    assert np.max(np.abs(report["aggregate"] - survivors)) < 1e-4


def test_server_memory_stays_near_one_vector():
    report = run_bench(clients=30, params=50_000, dropout=0.1, neighbours=8)
    # One running sum, one mask being removed, one message being parsed: a few vectors, not 30.
    assert report["server_peak_bytes"] < 6 * report["vector_bytes"]


def test_unknown_bench_mode_exits_2(capsys):
    assert main(["bench", "nope"]) == 2
    assert "no benchmark for mode 'nope'" in capsys.readouterr().err


def test_aes_floor_measures_something():
    assert aes_ctr_floor(1 << 20, 1 << 16) > 0
