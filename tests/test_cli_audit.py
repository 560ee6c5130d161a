import json

from privagg.cli import main


def test_audit_command_writes_the_report(capsys, tmp_path):
    out = tmp_path / "report"
    code = main(["audit", "--modes", "plain", "--attacks", "loss,idlg", "--quick", "--rounds", "3",
                 "--out", str(out), "--format", "json"])
    stdout, err = capsys.readouterr()
    assert code == 0, err
    report = json.loads(stdout)
    assert {r["attack"] for r in report["results"]} == {"loss", "idlg"}
    assert {r["mode"] for r in report["results"]} == {"plain"}
    assert json.loads((out / "report.json").read_text())["results"] == report["results"]
    assert (out / "report.html").stat().st_size > 1000 and (out / "report.md").exists()


def test_audit_command_refuses_unknown_modes_with_exit_2(capsys, tmp_path):
    assert main(["audit", "--modes", "nope", "--out", str(tmp_path)]) == 2
    assert "nope" in capsys.readouterr().err


def test_audit_command_passes_options_to_one_mode(capsys, tmp_path):
    code = main(["audit", "--modes", "plain+dp", "--attacks", "loss", "--quick", "--rounds", "2", "--out",
                 str(tmp_path), "-o", "plain+dp:noise_multiplier=50", "--format", "json"])
    stdout, err = capsys.readouterr()
    assert code == 0, err
    strong = json.loads(stdout)["modes"]["plain+dp"]["epsilon"]
    code = main(["audit", "--modes", "plain+dp", "--attacks", "loss", "--quick", "--rounds", "2", "--out",
                 str(tmp_path), "-o", "plain+dp:noise_multiplier=0.5", "--format", "json"])
    weak = json.loads(capsys.readouterr()[0])["modes"]["plain+dp"]["epsilon"]
    assert strong < weak
    assert main(["audit", "--modes", "plain", "--out", str(tmp_path), "-o", "noise_multiplier=1"]) == 2
