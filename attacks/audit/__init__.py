"""The audit: every aggregation mode, every attack, every threat model, one report.

:func:`run_audit` is the engine of ``privagg audit``: it trains a model by FedAvg through each
registered mode (:func:`privagg.available_modes`; a mode registered later is audited without a
change here), runs membership inference (LOSS, LiRA, RMIA) and update inversion (DLG, iDLG,
Inverting Gradients) on what each threat model's disclosure yields (honest-but-curious server,
server colluding with clients, outsider), runs the malicious-server attacks on secure
aggregation (:mod:`attacks.malicious`), and writes ``report.json`` (schema:
:mod:`attacks.audit.report`), a self-contained ``report.html`` and ``report.md``.
:func:`summary_table` renders mode x threat model x attack -> headline metric for a terminal.

Modules, one idea each: ``settings`` (presets: full and ``quick``), ``experiment`` (the data
every mode shares), ``threats`` (the three adversaries), ``membership`` (scoring every model a
disclosure rebuilds), ``mode_audit`` (one mode end to end), ``report`` (the JSON contract),
``summary`` (tables), ``figures``, ``html_report``, ``markdown_report``, ``runner``.
"""

from attacks.audit.report import METRIC_KEYS, SCHEMA_VERSION, validate_report
from attacks.audit.runner import resolve_attacks, resolve_modes, run_audit
from attacks.audit.settings import (
    ATTACKS,
    DEFAULT_ATTACKS,
    INVERSION_ATTACKS,
    MEMBERSHIP_ATTACKS,
    AuditSettings,
    audit_settings,
)
from attacks.audit.summary import malicious_table, summary_rows, summary_table

__all__ = [
    "run_audit", "summary_table", "malicious_table", "summary_rows", "DEFAULT_ATTACKS", "ATTACKS",
    "MEMBERSHIP_ATTACKS", "INVERSION_ATTACKS", "AuditSettings", "audit_settings", "validate_report", "METRIC_KEYS",
    "SCHEMA_VERSION", "resolve_attacks", "resolve_modes",
]
