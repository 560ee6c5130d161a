"""The audit at a glance: mode x threat model x attack -> headline metric, as plain rows (for
the HTML and Markdown writers) and as rich tables (for the terminal).

Headline metrics: ROC AUC for membership inference (0.5 is chance), PSNR in dB for inversion
(about 10-15 dB is a blur on 8x8 digits, 30 dB and above a faithful copy). A cell reads
``n/a`` when the adversary computes nothing that attack could use (e.g. ciphertexts only),
``failed`` when the attack raised (the report holds the error).
"""

from __future__ import annotations

from typing import Any

from attacks.audit.report import HEADLINE, headline
from attacks.audit.threats import THREAT_KINDS

__all__ = ["SummaryRow", "summary_rows", "format_cell", "summary_table", "malicious_table", "malicious_cell"]

SummaryRow = tuple[str, str, str, dict[str, str]]
"""``(mode, threat kind, threat model name, {attack: cell text})``."""


def format_cell(row: dict[str, Any] | None) -> str:
    if row is None:
        return ""
    if row["status"] == "nothing disclosed":
        return "n/a"
    if row["status"] != "ok":
        return "failed"
    value = headline(row)
    if value is None:
        return "-"
    return f"{value:.1f} dB" if HEADLINE[row["attack"]] == "psnr_db" else f"{value:.3f}"


def _number(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def summary_rows(report: dict[str, Any]) -> list[SummaryRow]:
    """One row per (mode, threat model) in report order; a failed mode gets one row saying so."""
    rows: list[SummaryRow] = []
    for mode, info in report["modes"].items():
        if info["status"] == "failed":
            rows.append((mode, "", "failed", {a: "" for a in report["attacks"]}))
            continue
        mine = [r for r in report["results"] if r["mode"] == mode]
        kinds = [k for k in THREAT_KINDS if any(r.get("threat") == k for r in mine)]
        for kind in kinds:
            cells = {}
            name = next(r["threat_model"] for r in mine if r.get("threat") == kind)
            for attack in report["attacks"]:
                row = next((r for r in mine if r.get("threat") == kind and r["attack"] == attack), None)
                cells[attack] = format_cell(row)
            rows.append((mode, kind, name, cells))
    return rows


def summary_table(report: dict[str, Any]) -> Any:
    """A :class:`rich.table.Table`: mode, accuracy, epsilon, threat model, one column per attack."""
    from rich.table import Table

    table = Table(title=f"privagg audit: {report['dataset']}, {report['config'].get('clients')} clients, "
                        f"{report['config'].get('rounds')} rounds (AUC for membership, PSNR for inversion)")
    for column in ("mode", "accuracy", "epsilon", "threat model"):
        table.add_column(column, no_wrap=column != "threat model")
    for attack in report["attacks"]:
        table.add_column(attack, justify="right")
    previous = None
    for mode, _kind, name, cells in summary_rows(report):
        info = report["modes"][mode]
        first = mode != previous
        previous = mode
        if info["status"] == "failed":
            table.add_row(mode, "-", "-", f"failed: {info['error']}", *["" for _ in report["attacks"]])
            continue
        table.add_row(mode if first else "", _number(info["accuracy"], ".3f") if first else "",
                      _number(info["epsilon"], ".3g") if first else "", name,
                      *[cells[a] for a in report["attacks"]], end_section=False)
    return table


def malicious_cell(outcome: dict[str, Any]) -> str:
    """One outcome of section 5 in a few words: detected, blocked, or what was recovered."""
    if outcome["completed"]:
        got = f"{outcome['recovered_images']}/{outcome['images']} images"
        if outcome["attack"].startswith("no attack"):
            return f"best single image {outcome['best_psnr_db']:.1f} dB; {got} recovered"
        return f"NOT detected; {got} recovered ({outcome['psnr_db']:.0f} dB)"
    if outcome["detected"]:
        return f"detected ({len(outcome['refusals'])} clients refused" + (", aborted)" if outcome["aborted"] else ")")
    return "blocked by the threshold"


def malicious_table(report: dict[str, Any]) -> Any | None:
    """Section 5 as a :class:`rich.table.Table` (``None`` when it was skipped)."""
    from rich.table import Table

    malicious = report.get("malicious", {})
    if "rows" not in malicious:
        return None
    table = Table(title="malicious server vs secure aggregation")
    for column in ("attack", "semi-honest secagg", "active secagg"):
        table.add_column(column)
    for row in malicious["rows"]:
        table.add_row(row["attack"], malicious_cell(row["semi_honest"]), malicious_cell(row["active"]))
    return table
