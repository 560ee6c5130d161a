import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from privagg.cli import main, parse_options

KEYS = {"mode", "clients", "params", "dropout", "included", "dropped", "exact", "max_abs_error", "seconds",
        "bytes_up", "bytes_down"}


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_simulate_json_contract(capsys):
    code, out, err = run(capsys, "simulate", "--mode", "plain", "--clients", "20", "--params", "10000",
                         "--dropout", "0.2", "--seed", "1", "--format", "json")
    assert code == 0, err
    report = json.loads(out)
    assert KEYS <= set(report)
    assert report["mode"] == "plain" and report["clients"] == 20 and report["params"] == 10000
    assert report["exact"] is True
    assert len(report["dropped"]) == 4 and len(report["included"]) == 16
    assert sorted(report["included"] + report["dropped"]) == list(range(20))
    assert 0 <= report["max_abs_error"] < 1e-4
    assert report["bytes_up"] > 16 * 10000 * 4  # 16 uint32 vectors at least
    assert report["bytes_down"] > 0 and report["seconds"] > 0


def test_simulate_is_reproducible_with_a_seed(capsys):
    args = ("simulate", "--clients", "6", "--params", "50", "--dropout", "0.5", "--seed", "3", "--format", "json")
    first = json.loads(run(capsys, *args)[1])
    second = json.loads(run(capsys, *args)[1])
    assert first["included"] == second["included"]
    assert first["max_abs_error"] == second["max_abs_error"]


def test_simulate_table_lists_each_mode(capsys):
    code, out, _ = run(capsys, "simulate", "--mode", "all", "--clients", "4", "--params", "10")
    assert code == 0
    assert "plain" in out and "exact" in out


def test_modes_lists_plain(capsys):
    code, out, _ = run(capsys, "modes")
    assert code == 0 and out.split()[0] == "plain"
    assert "plain" in json.loads(run(capsys, "modes", "--format", "json")[1])


@pytest.mark.parametrize("argv, fragment", [
    (["simulate", "--clients", "0"], "--clients"),
    (["simulate", "--dropout", "1.5"], "--dropout"),
    (["simulate", "--mode", "nope"], "unknown mode 'nope'"),
    (["simulate", "--dropout-stage", "unmasking"], "unknown --dropout-stage 'unmasking'"),
    (["simulate", "--format", "xml"], "--format"),
    (["simulate", "-o", "threshold"], "not KEY=VALUE"),
    (["simulate", "-o", "threshold=3"], "threshold"),
    (["simulate", "--clients", "20", "-o", "bits=8", "-o", "scale=16"], "20 clients"),
    (["frobnicate"], "frobnicate"),
])
def test_bad_arguments_exit_2_with_one_line(capsys, argv, fragment):
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("privagg: error:") and fragment in lines[0]


def test_an_aborted_round_exits_1_with_its_reason(capsys):
    code, out, err = run(capsys, "simulate", "--clients", "5", "--params", "10", "--dropout", "1.0",
                         "--format", "json")
    assert code == 1
    assert err.startswith("privagg: aborted:") and "0 of 5 clients" in err


def test_version(capsys):
    code, out, _ = run(capsys, "--version")
    assert code == 0 and "0.1.0" in out


def test_parse_options_types():
    assert parse_options(["a=3", "b=0.5", "c=true", "d=stochastic", "e=False"]) == {
        "a": 3, "b": 0.5, "c": True, "d": "stochastic", "e": False}


def test_the_installed_console_script():
    exe = shutil.which("privagg", path=str(Path(sys.executable).parent)) or shutil.which("privagg")
    if exe is None:
        pytest.fail("the privagg console script is not installed beside this interpreter")
    env = dict(os.environ, COLUMNS="200")
    proc = subprocess.run([exe, "simulate", "--clients", "5", "--params", "100", "--dropout", "0.2", "--seed", "2",
                           "--format", "json"], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["exact"] is True
    bad = subprocess.run([exe, "simulate", "--mode", "nope"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
