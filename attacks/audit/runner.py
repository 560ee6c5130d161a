"""``run_audit``: the engine behind ``privagg audit``.

It audits every requested mode on the same experiment (:mod:`attacks.audit.experiment`), never
naming a mode: the list defaults to :func:`privagg.available_modes`, so a mode registered
later, by entry point or at run time, is audited without a change here. Then it runs the
malicious-server attacks on secure aggregation (section 5 of the issue; the one part that is
mode-specific by nature, skipped with a reason when ``secagg`` is not installed), draws the
figures and writes ``report.json``, ``report.html``, ``report.md`` and ``figures/*.png`` into
the output directory.

Bad arguments (an unknown mode, attack or data set, too few clients) raise
:class:`privagg.ConfigurationError` before anything runs; a mode that fails to build or train
is a ``failed`` entry of the report, not an exception.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from attacks.audit.experiment import prepare_experiment
from attacks.audit.figures import Figure, malicious_panel, reconstruction_panel, tradeoff_figure
from attacks.audit.html_report import render_html
from attacks.audit.markdown_report import render_markdown
from attacks.audit.mode_audit import ModeAudit, audit_mode
from attacks.audit.report import SCHEMA_VERSION, write_json
from attacks.audit.settings import ATTACKS, DEFAULT_ATTACKS, AuditSettings, audit_settings
from attacks.audit.threats import threat_names
from attacks.data import DATASETS
from attacks.plots import roc_plot
from privagg import ConfigurationError, __version__, available_modes
from privagg.registry import mode_info

__all__ = ["run_audit", "resolve_attacks", "resolve_modes"]

Log = Callable[[str], None]


def resolve_attacks(attacks: Sequence[str] | None) -> list[str]:
    """The attacks to run, in the canonical order; unknown names are a configuration error."""
    if attacks is None:
        return list(DEFAULT_ATTACKS)
    wanted = {a.strip().lower() for a in attacks if a.strip()}
    unknown = sorted(wanted - set(ATTACKS))
    if unknown or not wanted:
        raise ConfigurationError(f"unknown attack(s) {unknown or attacks!r}; available: {', '.join(ATTACKS)}")
    return [a for a in ATTACKS if a in wanted]


def resolve_modes(modes: Sequence[str] | None) -> list[str]:
    """The modes to audit (every registered one by default), each checked to be registered."""
    if modes is None:
        return available_modes()
    names = list(dict.fromkeys(m.strip() for m in modes if m.strip()))
    if not names:
        raise ConfigurationError("no mode to audit")
    for name in names:
        mode_info(name)  # raises ConfigurationError naming the available modes
    return names


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def _console_log(enabled: bool) -> Log:
    if not enabled:
        return lambda _msg: None
    from rich.console import Console

    console = Console(stderr=True)
    return lambda msg: console.print(msg, markup=False, highlight=False)


def _mode_figures(index: int, audit: ModeAudit, kinds: Mapping[str, str],
                  data_range: tuple[float, float]) -> list[Figure]:
    figures = []
    for threat, curves in audit.roc.items():
        kind = kinds.get(threat, "threat")
        figures.append(Figure(f"{index:02d}-{_safe(audit.name)}-roc-{kind}", f"{audit.name}: ROC, {threat}",
                              roc_plot(curves, title=f"{audit.name}: {threat}"), audit.name,
                              "Membership inference, log-log ROC; points at FPR 0 sit on the left edge."))
    if audit.pictures:
        figures.append(Figure(f"{index:02d}-{_safe(audit.name)}-inversion", f"{audit.name}: reconstructions",
                              reconstruction_panel(audit.pictures, threat_kinds=dict(kinds), data_range=data_range),
                              audit.name, "One image inverted per threat model and method (bottom) beside the true "
                                          "image it matches best (top)."))
    return figures


def _malicious(settings: AuditSettings, log: Log) -> tuple[dict[str, Any], list[Figure]]:
    try:
        from attacks.inversion.reconstruct import InversionConfig
        from attacks.malicious.suite import run_malicious_suite
    except ImportError as exc:
        return {"status": "skipped", "reason": f"secure aggregation is not installed ({exc})"}, []
    try:
        suite = run_malicious_suite(clients=settings.malicious_clients, colluders=2, seed=settings.seed,
                                    inversion=InversionConfig(iterations=settings.iterations_for("idlg")))
    except Exception as exc:  # reported, like a failed mode
        log(f"[malicious] failed: {type(exc).__name__}: {exc}")
        return {"status": "failed", "reason": f"{type(exc).__name__}: {exc}"}, []
    figures = []
    panel = malicious_panel(suite.rows, data_range=suite.setting.dataset.value_range)
    if panel is not None:
        figures.append(Figure("90-malicious-recoveries", "inputs recovered by a malicious server", panel,
                              "malicious", "Against semi-honest secure aggregation: true images (top) and the "
                                           "server's closest recovered input (bottom)."))
    log(f"[malicious] done in {suite.seconds:.1f} s")
    return suite.as_dict(), figures


def run_audit(*, modes: Sequence[str] | None = None, attacks: Sequence[str] | None = None, dataset: str = "digits",
              clients: int | None = None, rounds: int | None = None, quick: bool = False, out: Path | str,
              progress: bool = False, malicious: bool = True,
              mode_options: Mapping[str, Mapping[str, Any]] | None = None,
              settings: AuditSettings | None = None) -> dict[str, Any]:
    """Audit ``modes`` (``None``: every registered mode) with ``attacks`` (``None``:
    :data:`DEFAULT_ATTACKS`) and write the report into ``out``; returns the report dict.

    ``clients`` / ``rounds``: ``None`` keeps the preset's (5 clients; 10 rounds with ``quick``,
    30 without). ``progress``: one line per mode on stderr, and rich progress bars for training
    and shadow models when stdout is a terminal. ``malicious``: also run the malicious-server attacks on secure
    aggregation. ``mode_options``: factory options per mode name (e.g. a DP mode's noise).
    ``settings``: a complete :class:`AuditSettings`, overriding the preset (tests use it to run
    small).
    """
    started = time.perf_counter()
    names = resolve_modes(modes)
    chosen = resolve_attacks(attacks)
    if settings is None:
        if dataset not in DATASETS:
            raise ConfigurationError(f"unknown dataset {dataset!r}; available: {', '.join(DATASETS)}")
        try:
            settings = audit_settings(dataset=dataset, clients=clients, rounds=rounds, quick=quick)
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    # The models are tiny: one thread computes them about as fast as several, and does not fight
    # other processes for the cores of a shared machine (the caller's setting is restored).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _run(names, chosen, settings, out_dir, progress, malicious, mode_options, started)
    finally:
        torch.set_num_threads(threads)


def _run(names: list[str], chosen: list[str], settings: AuditSettings, out_dir: Path, progress: bool,
         malicious: bool, mode_options: Mapping[str, Mapping[str, Any]] | None, started: float) -> dict[str, Any]:
    log = _console_log(progress)
    # Training's progress bars draw on stdout; off a terminal they would leave blank lines in
    # whatever the caller prints there (``--format json``), so they are drawn on terminals only.
    bars = progress and sys.stdout.isatty()
    experiment = prepare_experiment(settings)
    kinds_by_name = {name: kind for kind, name in threat_names(settings.colluder_ids).items()}

    audits: list[ModeAudit] = []
    for name in names:
        log(f"[{name}] auditing")
        audit = audit_mode(name, experiment, chosen, progress=bars,
                           options=dict((mode_options or {}).get(name, {})), log=log)
        log(f"[{name}] {audit.status} in {audit.seconds:.1f} s")
        audits.append(audit)

    results = [row for audit in audits for row in audit.rows]
    threat_list = list(dict.fromkeys([*threat_names(settings.colluder_ids).values(),
                                      *(r["threat_model"] for r in results)]))
    report: dict[str, Any] = {
        "version": __version__, "schema": SCHEMA_VERSION, "dataset": settings.dataset,
        "config": settings.as_dict() | {"modes": names, "attacks": chosen},
        "modes": {a.name: a.summary() for a in audits},
        "epsilon": {a.name: a.epsilon for a in audits if a.epsilon is not None},
        "accuracy": {a.name: a.accuracy for a in audits if a.accuracy is not None},
        "threat_models": threat_list, "attacks": chosen, "results": results,
        "malicious": {"status": "skipped", "reason": "not requested"}, "seconds": 0.0,
    }
    figures: list[Figure] = []
    if malicious:
        report["malicious"], figures = _malicious(settings, log)
    data_range = experiment.dataset.value_range
    for index, audit in enumerate(audits):
        figures += _mode_figures(index, audit, kinds_by_name, data_range)
    tradeoff = tradeoff_figure(report)
    if tradeoff is not None:
        figures.insert(0, Figure("00-tradeoff", "accuracy and epsilon beside attack success", tradeoff, "summary",
                                 "Best membership AUC and inversion PSNR each adversary reached, per mode "
                                 "(labelled with its test accuracy and epsilon)."))
    report["seconds"] = time.perf_counter() - started
    figure_dir = out_dir / "figures"
    figure_dir.mkdir(exist_ok=True)
    for stale in figure_dir.glob("*.png"):  # a previous audit's figures would be linked by nothing
        stale.unlink()
    for figure in figures:
        (figure_dir / f"{figure.key}.png").write_bytes(figure.png)
    write_json(report, out_dir / "report.json")
    (out_dir / "report.html").write_text(render_html(report, figures), encoding="utf-8")
    (out_dir / "report.md").write_text(render_markdown(report, figures), encoding="utf-8")
    return report
