"""The audit (issue 7, section 6): report schema, HTML with its plots, what each mode's
disclosure lets each attack do, DP keeping membership inference at chance, and modes found at
run time. Small budgets: the full audit belongs to ``make demo``."""

import base64
import json
from html.parser import HTMLParser

import pytest
import torch
from rich.console import Console

import privagg
from attacks.audit import (
    ATTACKS,
    METRIC_KEYS,
    AuditSettings,
    malicious_table,
    resolve_modes,
    run_audit,
    summary_table,
    validate_report,
)
from attacks.audit.summary import format_cell

torch.set_num_threads(1)

SMALL = AuditSettings(dataset="digits", clients=3, rounds=3, pool_size=200, test_size=200, shadows=2, hidden=(32,),
                      local_epochs=2, colluders=1, iterations=(("dlg", 30), ("idlg", 100), ("ig", 60)),
                      malicious_clients=5)
# MNIST from few examples overfits (LOSS AUC about 0.69); digits generalises too well to show it clearly.
OVERFIT = AuditSettings(dataset="mnist5k", clients=3, rounds=8, pool_size=600, test_size=200, shadows=2, hidden=(64,),
                        local_epochs=10, batch_size=8, colluders=1)


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    out = tmp_path_factory.mktemp("audit")
    report = run_audit(modes=["plain", "secagg"], settings=SMALL, out=out, malicious=True)
    return out, report


def _rows(report, mode, threat, attack):
    return [r for r in report["results"] if r["mode"] == mode and r["threat"] == threat and r["attack"] == attack]


# --- the JSON contract -------------------------------------------------------------------------

def test_report_json_keeps_its_schema(audited):
    out, report = audited
    stored = json.loads((out / "report.json").read_text())
    assert stored == json.loads(json.dumps(report)), "the returned dict is what was written"
    assert validate_report(stored) == []
    assert stored["dataset"] == "digits" and stored["version"] == privagg.__version__
    assert set(stored["modes"]) == {"plain", "secagg"}
    for info in stored["modes"].values():
        assert info["status"] == "ok" and 0 < info["accuracy"] <= 1 and info["epsilon"] is None
        assert info["rounds"] == SMALL.rounds and info["clients"] == SMALL.clients
    assert stored["epsilon"] == {} and set(stored["accuracy"]) == {"plain", "secagg"}
    for row in stored["results"]:
        assert set(row["metrics"]) <= set(METRIC_KEYS) and row["seconds"] >= 0
        if row["status"] == "ok":
            assert row["metrics"], row
    # The schema check does catch departures.
    broken = json.loads(json.dumps(stored))
    broken["results"][0]["metrics"]["accuracy_of_the_attacker"] = 1.0
    del broken["results"][1]["seconds"]
    assert len(validate_report(broken)) == 2


def test_every_mode_threat_and_attack_has_exactly_one_row(audited):
    _, report = audited
    assert report["attacks"] == list(ATTACKS)
    assert len(report["threat_models"]) == 3
    for mode in ("plain", "secagg"):
        for threat in ("honest-but-curious", "colluding", "outsider"):
            for attack in ATTACKS:
                assert len(_rows(report, mode, threat, attack)) == 1, (mode, threat, attack)
    assert len(report["results"]) == 2 * 3 * len(ATTACKS)


# --- what the disclosure lets the attacks do ---------------------------------------------------

def test_the_audit_attacks_what_each_mode_discloses(audited):
    _, report = audited
    (plain,) = _rows(report, "plain", "honest-but-curious", "idlg")
    (secure,) = _rows(report, "secagg", "honest-but-curious", "idlg")
    (outsider,) = _rows(report, "plain", "outsider", "idlg")
    assert plain["target"]["kind"] == "individual" and plain["metrics"]["psnr_db"] >= 30
    assert secure["target"] == {**secure["target"], "kind": "aggregate", "clients": SMALL.clients}
    assert outsider["target"]["kind"] == "aggregate"
    assert secure["metrics"]["psnr_db"] < plain["metrics"]["psnr_db"] - 20
    # Colluders subtract their own inputs: the server is left with the honest clients' sum.
    (colluding,) = _rows(report, "secagg", "colluding", "idlg")
    assert colluding["target"]["clients"] == SMALL.clients - SMALL.colluders
    # Membership: under plain the server rebuilds every client's local model, under secagg only the sum's.
    (mia_plain,) = _rows(report, "plain", "honest-but-curious", "loss")
    (mia_secure,) = _rows(report, "secagg", "honest-but-curious", "loss")
    assert mia_plain["models"].startswith(f"{SMALL.clients + 1} model(s): {SMALL.clients} single")
    assert mia_secure["models"].startswith("1 model(s): 0 single")
    # Colluders' own examples are not scored: the adversary knows they are members.
    (mia_colluding,) = _rows(report, "secagg", "colluding", "loss")
    assert mia_colluding["support"]["n_members"] < mia_secure["support"]["n_members"]
    assert mia_colluding["support"]["n_nonmembers"] == mia_secure["support"]["n_nonmembers"]


def test_section_5_is_in_the_report(audited):
    _, report = audited
    rows = {r["attack"]: r for r in report["malicious"]["rows"]}
    inconsistency, traps = rows["(a) model inconsistency"], rows["(c) trap weights (imprint)"]
    assert inconsistency["semi_honest"]["completed"] and inconsistency["semi_honest"]["recovered_images"] >= 1
    assert inconsistency["active"]["detected"] and not inconsistency["active"]["completed"]
    assert traps["active"]["completed"] and not traps["active"]["detected"]
    assert traps["active"]["detectable_by_protocol"] is False
    assert any(a.startswith("(b) forged dropout") for a in rows)


# --- the documents -----------------------------------------------------------------------------

class _Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.images, self.links, self.text = [], [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        for key in ("href", "src"):
            if key in attrs and tag != "img":
                self.links.append(attrs[key])

    def handle_data(self, data):
        self.text.append(data)


def test_the_html_report_parses_and_embeds_its_plots(audited):
    out, report = audited
    parser = _Collector()
    parser.feed((out / "report.html").read_text())
    parser.close()
    assert parser.tags.count("html") == 1 and parser.tags.count("table") >= 4
    assert not parser.links, "self-contained: nothing is fetched"
    assert all(src.startswith("data:image/png;base64,") for src in parser.images)
    pngs = [base64.b64decode(src.split(",", 1)[1]) for src in parser.images]
    assert all(p.startswith(b"\x89PNG\r\n\x1a\n") for p in pngs)
    # A trade-off figure, a ROC plot per mode and threat, a reconstruction panel per mode, section 5's panel.
    assert len(pngs) == 1 + 2 * 3 + 2 + 1
    text = " ".join(parser.text)
    for needle in ("plain", "secagg", "honest-but-curious server", "outsider (released output only)",
                   "model inconsistency", "trap weights", "log-log"):
        assert needle in text, needle
    (row,) = _rows(report, "plain", "honest-but-curious", "idlg")
    assert format_cell(row) in text


def test_markdown_report_and_figure_files(audited):
    out, report = audited
    markdown = (out / "report.md").read_text()
    assert "| mode | accuracy | epsilon | threat model |" in markdown
    figures = sorted((out / "figures").glob("*.png"))
    assert len(figures) == 10
    for figure in figures:
        assert f"figures/{figure.name}" in markdown
        assert figure.read_bytes().startswith(b"\x89PNG")


def test_summary_table_shows_every_headline(audited):
    _, report = audited
    console = Console(record=True, width=250)
    console.print(summary_table(report))
    console.print(malicious_table(report))
    text = console.export_text()
    for row in report["results"]:
        assert format_cell(row) in text
    for threat in report["threat_models"]:
        assert threat in text
    assert "model inconsistency" in text and "detected" in text


# --- DP, run-time modes, bad arguments ---------------------------------------------------------

def test_a_small_epsilon_keeps_membership_inference_at_chance(tmp_path):
    dp_modes = [m for m in ("plain+dp", "secagg+dp") if m in privagg.available_modes()]
    if not dp_modes:
        pytest.skip("no DP mode (plain+dp, secagg+dp) is registered")
    options = {m: {"noise_multiplier": 50.0} for m in dp_modes}
    report = run_audit(modes=["plain", *dp_modes], attacks=["loss"], settings=OVERFIT, out=tmp_path,
                       mode_options=options, malicious=False)
    assert validate_report(report) == []
    (baseline,) = _rows(report, "plain", "outsider", "loss")
    assert baseline["metrics"]["auc"] > 0.62, "the same training without noise leaks membership"
    for mode in dp_modes:
        assert report["modes"][mode]["status"] == "ok"
        assert report["epsilon"][mode] < 1.0
        # The released model carries the whole noise whatever the mechanism's placement.
        (row,) = _rows(report, mode, "outsider", "loss")
        # 300 members and 300 non-members: a chance AUC has a standard deviation of about 0.024.
        assert abs(row["metrics"]["auc"] - 0.5) < 0.1, row


def test_modes_registered_at_run_time_are_audited_and_a_broken_one_is_reported(tmp_path, monkeypatch):
    monkeypatch.setattr(privagg.registry, "_RUNTIME", dict(privagg.registry._RUNTIME))

    def broken(**options):
        raise privagg.ConfigurationError("this mode's extra is not installed")

    class Secretive(privagg.Plain):
        def disclose(self, view, threat):
            raise RuntimeError("disclose is not implemented yet")

    privagg.register_mode("test-runtime-plain", lambda **options: privagg.Plain())
    privagg.register_mode("test-broken", broken)
    privagg.register_mode("test-secretive", lambda **options: Secretive())
    try:
        assert {"test-runtime-plain", "test-broken", "test-secretive"} <= set(resolve_modes(None))
        settings = AuditSettings(dataset="digits", clients=2, rounds=1, pool_size=60, test_size=50, hidden=(8,),
                                 local_epochs=1, colluders=1, shadows=2)
        report = run_audit(modes=None, attacks=["loss"], settings=settings, out=tmp_path, malicious=False)
    finally:
        for name in ("test-runtime-plain", "test-broken", "test-secretive"):
            privagg.unregister_mode(name)
    assert "test-runtime-plain" not in privagg.available_modes()
    assert validate_report(report) == []
    assert set(report["modes"]) == set(privagg.available_modes()) | {"test-runtime-plain", "test-broken",
                                                                     "test-secretive"}
    assert report["modes"]["test-broken"]["status"] == "failed"
    assert "extra is not installed" in report["modes"]["test-broken"]["error"]
    assert not [r for r in report["results"] if r["mode"] == "test-broken"]
    # A mode that trains but cannot say what it discloses: every row failed, with the reason.
    secretive = [r for r in report["results"] if r["mode"] == "test-secretive"]
    assert len(secretive) == 3 and all(r["status"] == "failed" and "not implemented" in r["error"]
                                       for r in secretive)
    # The run-time mode is audited like any other: it is plain under another name, so it trains the
    # same model and the same attack scores the same.
    for threat in ("honest-but-curious", "colluding", "outsider"):
        (mine,) = _rows(report, "test-runtime-plain", threat, "loss")
        (plain,) = _rows(report, "plain", threat, "loss")
        assert mine["metrics"] == plain["metrics"] and mine["status"] == "ok"
    text = Console(record=True, width=250)
    text.print(summary_table(report))
    assert "failed: ConfigurationError: this mode's extra is not installed" in text.export_text()
    assert "test-broken" in (tmp_path / "report.html").read_text()


@pytest.mark.parametrize("kwargs, match", [
    ({"modes": ["no-such-mode"]}, "unknown mode"),
    ({"attacks": ["loss", "telepathy"]}, "unknown attack"),
    ({"dataset": "cifar100"}, "unknown dataset"),
    ({"clients": 1}, "at least 2 clients"),
])
def test_bad_arguments_are_configuration_errors(tmp_path, kwargs, match):
    with pytest.raises(privagg.ConfigurationError, match=match):
        run_audit(out=tmp_path, quick=True, malicious=False, **{"modes": ["plain"], **kwargs})
    assert not (tmp_path / "report.json").exists()

