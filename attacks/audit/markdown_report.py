"""``report.md``: the audit as Markdown, for a pull request, a wiki or a ticket.

The same tables as the HTML page; figures are linked from the ``figures/`` directory written
next to it (Markdown renderers differ too much in what they accept inline).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from attacks.audit.figures import Figure
from attacks.audit.summary import malicious_cell, summary_rows

__all__ = ["render_markdown"]


def _cell(value: Any) -> str:
    return ("" if value is None else str(value)).replace("|", "\\|").replace("\n", " ")


def _num(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines + [""]


def render_markdown(report: dict[str, Any], figures: Sequence[Figure], *, figure_dir: str = "figures") -> str:
    """The report as Markdown; figures referenced as ``{figure_dir}/{key}.png``."""
    config = report["config"]
    attacks = report["attacks"]
    lines = ["# privagg audit report", "",
             f"privagg {report['version']}; data set **{report['dataset']}**; {config.get('clients')} clients, "
             f"{config.get('rounds')} FedAvg rounds, {config.get('shadows')} shadow models per mode"
             f"{'; quick settings' if config.get('quick') else ''}; {report['seconds']:.0f} s.", "",
             "## Summary: mode x threat model x attack", "",
             "Membership inference: ROC AUC (0.5 is chance). Inversion: PSNR (dB) of one reconstructed image "
             "against the true image it matches best. n/a: the adversary computes nothing the attack could use.", ""]
    rows = []
    for mode, _kind, name, cells in summary_rows(report):
        info = report["modes"][mode]
        if info["status"] == "failed":
            rows.append([mode, "-", "-", f"failed: {info['error']}", *["" for _ in attacks]])
        else:
            rows.append([mode, _num(info["accuracy"], ".3f"), _num(info["epsilon"], ".3g"), name,
                         *[cells[a] for a in attacks]])
    lines += _table(["mode", "accuracy", "epsilon", "threat model", *attacks], rows)
    for figure in figures:
        if figure.section == "summary":
            lines += [f"![{figure.title}]({figure_dir}/{figure.key}.png)", ""]
    for mode, info in report["modes"].items():
        lines += [f"## Mode {mode}", ""]
        if info["status"] == "failed":
            lines += [f"Could not be audited: {info['error']}", ""]
            continue
        seen: dict[str, str] = {}
        for r in report["results"]:
            if r["mode"] == mode and r.get("disclosure") and r["threat_model"] not in seen:
                seen[r["threat_model"]] = r["disclosure"]
        lines += [f"- **{t}**: {d}" for t, d in seen.items()] + [""]
        for figure in figures:
            if figure.section == mode:
                lines += [f"![{figure.title}]({figure_dir}/{figure.key}.png)", ""]
    malicious = report["malicious"]
    lines += ["## Malicious server against secure aggregation", ""]
    if "rows" not in malicious:
        lines += [f"Skipped: {malicious.get('reason')}", ""]
    else:
        lines += _table(["attack", "semi-honest secagg", "active secagg", "why"],
                        [[r["attack"], malicious_cell(r["semi_honest"]), malicious_cell(r["active"]), r["note"]]
                         for r in malicious["rows"]])
        for r in malicious["rows"]:
            lines += [f"- **{r['attack']}**", f"  - semi-honest: {r['semi_honest']['summary']}",
                      f"  - active: {r['active']['summary']}"]
        lines.append("")
        for figure in figures:
            if figure.section == "malicious":
                lines += [f"![{figure.title}]({figure_dir}/{figure.key}.png)", ""]
    return "\n".join(lines)
