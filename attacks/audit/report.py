"""The audit report as data: its JSON schema, row builder, validator and writer.

``report.json`` is a contract with auditors' pipelines, so its keys are fixed here, once, and
:func:`validate_report` checks a report against them (the test suite runs it on real reports).
Top level:

* ``version`` (privagg's), ``schema`` (:data:`SCHEMA_VERSION`), ``dataset``, ``config`` (the
  :class:`~attacks.audit.settings.AuditSettings` used), ``seconds``;
* ``modes``: ``{name: {status, accuracy, epsilon, delta, rounds, clients, seconds,
  shadow_seconds, error}}`` (``status`` is ``ok``, ``stopped`` (training stopped early, e.g. a
  spent DP budget; its attacks still ran) or ``failed`` (the mode could not be built or
  trained: ``error`` says why, and it has no results); ``rounds`` counts completed rounds;
  ``seconds`` is the mode's whole audit, ``shadow_seconds`` the part spent training the shadow
  models LiRA and RMIA share); ``epsilon``: ``{name: epsilon}`` for the modes that report one;
  ``accuracy``: ``{name: test accuracy}``;
* ``threat_models`` and ``attacks``: the names used in ``results``;
* ``results``: one row per (mode, threat model, attack): ``mode``, ``threat_model`` (the
  threat's own name, e.g. ``"honest-but-curious server"``), ``threat`` (its kind:
  ``honest-but-curious``, ``colluding``, ``outsider``), ``attack``, ``metrics`` (a subset of
  :data:`METRIC_KEYS`; empty when the attack did not run), ``seconds`` (the attack itself,
  shadow training excluded), ``status`` (``ok``;
  ``nothing disclosed``: the adversary computes nothing the attack could use; ``failed``),
  ``disclosure`` (what the mode says the adversary computes), and per kind ``support`` (the
  member / non-member counts behind each FPR point) or ``target`` (what was inverted);
* ``malicious``: section 5, the malicious-server attacks on secure aggregation (``config``,
  ``seconds`` and ``rows`` of ``attack``, ``semi_honest``, ``active``, ``note``; each outcome as
  :meth:`attacks.malicious.MaliciousOutcome.as_dict`), or ``{"status": "skipped" | "failed",
  "reason"}``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

__all__ = ["SCHEMA_VERSION", "METRIC_KEYS", "ROW_KEYS", "MODE_KEYS", "TOP_KEYS", "HEADLINE", "result_row",
           "headline", "validate_report", "write_json"]

SCHEMA_VERSION = 1
METRIC_KEYS = ("auc", "tpr_at_1pct_fpr", "tpr_at_0_1pct_fpr", "balanced_accuracy", "psnr_db", "ssim",
               "label_accuracy")
ROW_KEYS = ("mode", "threat_model", "threat", "attack", "metrics", "seconds", "status", "disclosure")
MODE_KEYS = ("status", "accuracy", "epsilon", "delta", "rounds", "clients", "seconds", "error")
TOP_KEYS = ("version", "schema", "dataset", "config", "modes", "epsilon", "accuracy", "threat_models", "attacks",
            "results", "malicious", "seconds")
HEADLINE = {"loss": "auc", "lira": "auc", "rmia": "auc", "dlg": "psnr_db", "idlg": "psnr_db", "ig": "psnr_db"}
"""The metric a summary shows for each attack."""


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: such values become ``None``."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def result_row(mode: str, threat_model: str, threat: str, attack: str, metrics: dict[str, Any] | None,
               seconds: float, *, status: str = "ok", disclosure: str = "", **details: Any) -> dict[str, Any]:
    """One ``results`` entry; metrics outside :data:`METRIC_KEYS` are refused (they belong in details)."""
    metrics = dict(metrics or {})
    unknown = set(metrics) - set(METRIC_KEYS)
    if unknown:
        raise ValueError(f"unknown metric keys {sorted(unknown)}; report them as details")
    row = {"mode": mode, "threat_model": threat_model, "threat": threat, "attack": attack,
           "metrics": {k: _finite(float(v)) for k, v in metrics.items() if v is not None},
           "seconds": float(seconds), "status": status, "disclosure": disclosure}
    row.update(details)
    return row


def headline(row: dict[str, Any]) -> float | None:
    """The row's headline metric (:data:`HEADLINE`), or ``None``."""
    value = row.get("metrics", {}).get(HEADLINE.get(row.get("attack", ""), ""))
    return None if value is None else float(value)


def validate_report(report: dict[str, Any]) -> list[str]:
    """Every way ``report`` departs from the schema (an empty list: it conforms)."""
    problems = [f"missing top-level key {k!r}" for k in TOP_KEYS if k not in report]
    if problems:
        return problems
    if report["schema"] != SCHEMA_VERSION:
        problems.append(f"schema {report['schema']!r}, expected {SCHEMA_VERSION}")
    for name, mode in report["modes"].items():
        problems += [f"mode {name!r} lacks {k!r}" for k in MODE_KEYS if k not in mode]
        if mode.get("status") not in ("ok", "stopped", "failed"):
            problems.append(f"mode {name!r} has status {mode.get('status')!r}")
    for i, row in enumerate(report["results"]):
        problems += [f"result {i} lacks {k!r}" for k in ROW_KEYS if k not in row]
        if row.get("mode") not in report["modes"]:
            problems.append(f"result {i} names unknown mode {row.get('mode')!r}")
        if row.get("attack") not in report["attacks"]:
            problems.append(f"result {i} names unknown attack {row.get('attack')!r}")
        if row.get("threat_model") not in report["threat_models"]:
            problems.append(f"result {i} names unknown threat model {row.get('threat_model')!r}")
        extra = set(row.get("metrics", {})) - set(METRIC_KEYS)
        if extra:
            problems.append(f"result {i} has unknown metrics {sorted(extra)}")
        if "seconds" in row and not isinstance(row["seconds"], (int, float)):
            problems.append(f"result {i} has no numeric seconds")
    for name, eps in report["epsilon"].items():
        if report["modes"].get(name, {}).get("epsilon") != eps:
            problems.append(f"epsilon of {name!r} differs between 'epsilon' and 'modes'")
    malicious = report["malicious"]
    if not isinstance(malicious, dict) or ("rows" not in malicious and malicious.get("status") not in ("skipped",
                                                                                                         "failed")):
        problems.append("'malicious' holds neither rows nor the reason it has none")
    return problems


def write_json(report: dict[str, Any], path: Path) -> None:
    """Write ``report`` as indented JSON (strict: no NaN)."""
    path.write_text(json.dumps(report, indent=2, allow_nan=False) + "\n", encoding="utf-8")
