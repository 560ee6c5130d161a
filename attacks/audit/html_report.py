"""``report.html``: the audit for people, in one self-contained file.

Self-contained means it can be mailed or attached to a ticket: the figures are embedded as
``data:image/png;base64`` URIs, the style sheet is inline, and nothing is fetched. Every piece
of text from the report (mode names, error messages, disclosure summaries) is escaped, since
a mode registered by a third party names itself.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from html import escape
from typing import Any

from attacks.audit.figures import Figure
from attacks.audit.report import METRIC_KEYS
from attacks.audit.summary import malicious_cell, summary_rows

__all__ = ["render_html"]

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.failed { color: #a00; }
.note { color: #555; font-size: 0.9em; }
figure { display: inline-block; margin: 0.5em; vertical-align: top; }
figcaption { font-size: 0.85em; color: #555; max-width: 520px; }
"""


def _e(value: Any) -> str:
    return escape("" if value is None else str(value))


def _num(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _img(figure: Figure) -> str:
    data = base64.b64encode(figure.png).decode("ascii")
    caption = f"<figcaption>{_e(figure.caption)}</figcaption>" if figure.caption else ""
    return (f'<figure><img alt="{_e(figure.title)}" src="data:image/png;base64,{data}">'
            f"{caption}</figure>")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], numeric: Sequence[bool] | None = None) -> str:
    """A table from already-escaped cell HTML."""
    numeric = numeric or [False] * len(header)
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f'<td class="num">{c}</td>' if n else f"<td>{c}</td>"
                                    for c, n in zip(row, numeric)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _summary(report: dict[str, Any]) -> str:
    attacks = report["attacks"]
    rows = []
    for mode, _kind, name, cells in summary_rows(report):
        info = report["modes"][mode]
        if info["status"] == "failed":
            rows.append([_e(mode), "-", "-", f'<span class="failed">failed: {_e(info["error"])}</span>',
                         *["" for _ in attacks]])
            continue
        rows.append([_e(mode), _num(info["accuracy"], ".3f"), _num(info["epsilon"], ".3g"), _e(name),
                     *[_e(cells[a]) for a in attacks]])
    return _table(["mode", "accuracy", "epsilon", "threat model", *[_e(a) for a in attacks]], rows,
                  [False, True, True, False, *[True] * len(attacks)])


def _modes(report: dict[str, Any]) -> str:
    rows = []
    for mode, info in report["modes"].items():
        status = _e(info["status"]) + (f': {_e(info.get("error") or info.get("stopped"))}'
                                       if info["status"] != "ok" else "")
        rows.append([_e(mode), status, _num(info["accuracy"], ".3f"), _num(info["epsilon"], ".3g"),
                     _num(info["delta"], ".0e"), _e(info["rounds"]), _num(info["seconds"], ".1f"),
                     _num(info.get("shadow_seconds"), ".1f")])
    return _table(["mode", "status", "test accuracy", "epsilon", "delta", "rounds completed", "seconds",
                   "of which shadow models"], rows, [False, False, True, True, True, True, True, True])


def _details(report: dict[str, Any], mode: str) -> str:
    rows = []
    for r in report["results"]:
        if r["mode"] != mode:
            continue
        metrics = ", ".join(f"{k} {r['metrics'][k]:.3g}" for k in METRIC_KEYS if k in r["metrics"])
        support = r.get("support")
        if support:
            metrics += (f" ({support['n_members']} members, {support['n_nonmembers']} non-members; "
                        f"{support['false_positives_at_1pct']} / {support['false_positives_at_0_1pct']} false "
                        f"positives allowed at 1% / 0.1% FPR)")
        target = r.get("target")
        what = target["summary"] if target else r.get("models", "")
        status = r["status"] + (f": {r['error']}" if r.get("error") else "")
        rows.append([_e(r["threat_model"]), _e(r["attack"]), _e(status), _e(metrics), _e(what),
                     _num(r["seconds"], ".2f")])
    return _table(["threat model", "attack", "status", "metrics", "attacked", "seconds"], rows,
                  [False, False, False, False, False, True])


def _disclosures(report: dict[str, Any], mode: str) -> str:
    seen: dict[str, str] = {}
    for r in report["results"]:
        if r["mode"] == mode and r.get("disclosure") and r["threat_model"] not in seen:
            seen[r["threat_model"]] = r["disclosure"]
    items = "".join(f"<li><b>{_e(t)}</b>: {_e(d)}</li>" for t, d in seen.items())
    return f"<ul>{items}</ul>" if items else ""


def _malicious(report: dict[str, Any], figures: Sequence[Figure]) -> str:
    malicious = report["malicious"]
    out = ["<h2>Malicious server against secure aggregation</h2>"]
    if "rows" not in malicious:
        out.append(f'<p class="note">Skipped: {_e(malicious.get("reason"))}</p>')
        return "".join(out)
    config = malicious.get("config", {})
    out.append(f"<p>{_e(config.get('clients'))} clients with {_e(config.get('images_per_client'))} "
               f"{_e(config.get('dataset'))} image(s) each, one FedSGD step through real SecAgg sessions; "
               f"the server deviates from the protocol as each row says. &quot;Active&quot; is "
               f"<code>SecAgg(security=&quot;active&quot;)</code>: signed keys bound to the digest of the "
               f"model each client trained on, and the consistency check on the survivor set.</p>")
    rows = [[_e(r["attack"]), _e(malicious_cell(r["semi_honest"])), _e(malicious_cell(r["active"])),
             _e(r["note"])] for r in malicious["rows"]]
    out.append(_table(["attack", "semi-honest secagg", "active secagg", "why"], rows))
    details = "".join(f"<li><b>{_e(r['attack'])}</b><br>semi-honest: {_e(r['semi_honest']['summary'])}<br>"
                      f"active: {_e(r['active']['summary'])}</li>" for r in malicious["rows"])
    out.append(f"<ul class=\"note\">{details}</ul>")
    out += [_img(f) for f in figures if f.section == "malicious"]
    return "".join(out)


def render_html(report: dict[str, Any], figures: Sequence[Figure]) -> str:
    """The whole report page."""
    config = report["config"]
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>privagg audit: {_e(report['dataset'])}</title><style>{_STYLE}</style></head><body>",
        "<h1>privagg audit report</h1>",
        f"<p>privagg {_e(report['version'])}; data set <b>{_e(report['dataset'])}</b>; "
        f"{_e(config.get('clients'))} clients, {_e(config.get('rounds'))} FedAvg rounds, "
        f"{_e(config.get('shadows'))} shadow models per mode{'; quick settings' if config.get('quick') else ''}; "
        f"{report['seconds']:.0f} s.</p>",
        "<h2>Summary: mode &times; threat model &times; attack</h2>",
        '<p class="note">Membership inference: ROC AUC (0.5 is chance). Inversion: PSNR in dB of one image '
        "reconstructed from what the adversary computes, against the true image it matches best (about 10-15 dB "
        "is a blur, 30 dB and more a faithful copy). n/a: the adversary computes nothing the attack could use.</p>",
        _summary(report), _modes(report),
    ]
    parts += [_img(f) for f in figures if f.section == "summary"]
    for mode, info in report["modes"].items():
        parts.append(f"<h2>Mode {_e(mode)}</h2>")
        if info["status"] == "failed":
            parts.append(f'<p class="failed">The mode could not be audited: {_e(info["error"])}</p>')
            continue
        parts.append(_disclosures(report, mode))
        parts += [_img(f) for f in figures if f.section == mode]
        parts.append(_details(report, mode))
    parts.append(_malicious(report, figures))
    parts.append("</body></html>")
    return "\n".join(parts)
