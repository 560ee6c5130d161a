import json

import pytest

from privagg.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_dp_epsilon_json_contract(capsys):
    code, out, err = run(capsys, "dp", "epsilon", "--sampling-rate", "0.01", "--noise-multiplier", "1.1",
                         "--steps", "1000", "--delta", "1e-5", "--format", "json")
    assert code == 0, err
    report = json.loads(out)
    assert set(report) == {"epsilon", "accountant", "order"}
    # Opacus 1.6.0 / dp_accounting 0.6.0 give 1.7117701 here; ours is never looser.
    assert report["accountant"] == "rdp" and 1.6 < report["epsilon"] <= 1.7117701 * (1 + 1e-6)
    assert report["order"] > 1
    code, out, _ = run(capsys, "dp", "epsilon", "--sampling-rate", "0.01", "--noise-multiplier", "1.1",
                       "--steps", "1000", "--delta", "1e-5", "--accountant", "pld", "--format", "json")
    pld = json.loads(out)
    assert code == 0 and pld["order"] is None and pld["epsilon"] == pytest.approx(1.5153702, rel=5e-3)


def test_dp_calibrate_json_contract(capsys):
    code, out, err = run(capsys, "dp", "calibrate", "--target-epsilon", "3", "--sampling-rate", "0.01",
                         "--steps", "1000", "--delta", "1e-5", "--format", "json")
    assert code == 0, err
    report = json.loads(out)
    assert set(report) == {"noise_multiplier", "epsilon", "accountant"}
    assert report["epsilon"] <= 3.0 and report["epsilon"] > 3.0 * (1 - 1e-3)


@pytest.mark.parametrize("argv, fragment", [
    (["dp", "epsilon", "--sampling-rate", "1.5", "--noise-multiplier", "1", "--steps", "10", "--delta", "1e-5"],
     "sampling"),
    (["dp", "epsilon", "--sampling-rate", "0.1", "--noise-multiplier", "-1", "--steps", "10", "--delta", "1e-5"],
     "noise"),
    (["dp", "epsilon", "--sampling-rate", "0.1", "--noise-multiplier", "1", "--steps", "10", "--delta", "2"],
     "delta"),
    (["dp", "calibrate", "--target-epsilon", "1e-9", "--sampling-rate", "1", "--steps", "1000", "--delta", "1e-5"],
     "target"),
    (["dp", "epsilon", "--sampling-rate", "0.1", "--steps", "10", "--delta", "1e-5"], "--noise-multiplier"),
])
def test_bad_dp_arguments_exit_2_with_one_line(capsys, argv, fragment):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and fragment in err
