"""The audit's figures, as PNG bytes: ROC curves per mode and threat (log-log, from
:func:`attacks.plots.roc_plot`), a reconstruction grid per mode, and one trade-off figure that
puts every mode's accuracy and epsilon beside what each adversary achieved against it.

Drawn on matplotlib's Agg canvas without ``pyplot`` (see :mod:`attacks.plots`).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from attacks.audit.mode_audit import InversionPicture
from attacks.audit.report import HEADLINE, headline
from attacks.audit.threats import THREAT_KINDS

__all__ = ["Figure", "reconstruction_panel", "tradeoff_figure", "malicious_panel", "short_threat"]



@dataclass(frozen=True)
class Figure:
    """One figure of the report: ``key`` names its PNG file, ``section`` where it goes (a mode's
    name, ``"summary"`` or ``"malicious"``)."""

    key: str
    title: str
    png: bytes
    section: str
    caption: str = ""


_SHORT = {"honest-but-curious": "server", "colluding": "server+colluders", "outsider": "outsider"}


def short_threat(kind: str) -> str:
    """A short label for a threat kind (figure titles are narrow)."""
    return _SHORT.get(kind, kind)


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    return buffer.getvalue()


def reconstruction_panel(pictures: Sequence[InversionPicture], *, threat_kinds: dict[str, str] | None = None,
                         data_range: tuple[float, float] = (0.0, 1.0)) -> bytes:
    """True images (top) over their reconstructions (bottom), one column per threat and method,
    titled with the PSNR. Unlike :func:`attacks.plots.reconstruction_grid` nothing is re-matched:
    each column is the pair the metrics scored."""
    if not pictures:
        raise ValueError("no reconstructions to draw")
    kinds = threat_kinds or {}
    low, high = data_range
    fig = _figure(1.25 * len(pictures) + 0.6, 3.0)
    for column, pic in enumerate(pictures):
        for row, image in enumerate((pic.truth, pic.reconstruction)):
            ax = fig.add_subplot(2, len(pictures), row * len(pictures) + column + 1)
            array = image.detach().float().clamp(low, high).numpy()
            if array.ndim == 3 and array.shape[0] == 1:
                array = array[0]
            elif array.ndim == 1:  # tabular rows: drawn as a strip
                array = array[None, :]
            ax.imshow(array, cmap="gray", vmin=low, vmax=high, aspect="auto" if array.shape[0] == 1 else "equal")
            ax.set_xticks([])
            ax.set_yticks([])
            if column == 0:
                ax.set_ylabel("true" if row == 0 else "recovered", fontsize="small")
            if row == 0:
                label = short_threat(kinds.get(pic.threat, pic.threat))
                ax.set_title(f"{label}\n{pic.method} {pic.psnr_db:.0f} dB", fontsize="x-small")
    return _png(fig)


def tradeoff_figure(report: dict[str, Any]) -> bytes | None:
    """Per mode (labelled with its accuracy and epsilon): the best membership AUC and the best
    inversion PSNR each threat model reached. ``None`` when no mode produced results."""
    modes = [m for m, info in report["modes"].items() if info["status"] != "failed"]
    if not modes:
        return None
    kinds = [k for k in THREAT_KINDS if any(r.get("threat") == k for r in report["results"])]
    panels = [("membership: best AUC", "auc", (0.4, 1.0)), ("inversion: best PSNR (dB)", "psnr_db", None)]
    fig = _figure(max(6.0, 1.6 * len(modes)) * 2, 4.2)
    width = 0.8 / max(len(kinds), 1)
    x = np.arange(len(modes))
    for p, (title, metric, limits) in enumerate(panels):
        ax = fig.add_subplot(1, 2, p + 1)
        for k, kind in enumerate(kinds):
            values = []
            for mode in modes:
                found = [headline(r) for r in report["results"] if r["mode"] == mode and r.get("threat") == kind
                         and HEADLINE.get(r["attack"]) == metric and headline(r) is not None]
                values.append(max(found) if found else np.nan)  # type: ignore[type-var]
            ax.bar(x + (k - (len(kinds) - 1) / 2) * width, values, width, label=short_threat(kind))
        labels = []
        for mode in modes:
            info = report["modes"][mode]
            acc = "-" if info["accuracy"] is None else f"{info['accuracy']:.2f}"
            eps = "" if info["epsilon"] is None else f"\neps {info['epsilon']:.3g}"
            labels.append(f"{mode}\nacc {acc}{eps}")
        ax.set_xticks(x)
        ax.set_xticklabels(labels, fontsize="small")
        ax.set_title(title)
        if limits is not None:
            ax.set_ylim(*limits)
            ax.axhline(0.5, color="grey", linestyle="--", linewidth=0.8)
        ax.legend(fontsize="small")
        ax.grid(True, axis="y", alpha=0.3)
    return _png(fig)


def malicious_panel(rows: Sequence[Any], *, per_attack: int = 4, data_range: tuple[float, float] = (0.0, 1.0)
                    ) -> bytes | None:
    """For each section-5 attack that recovered something against semi-honest secure
    aggregation: up to ``per_attack`` true images over the server's closest candidates."""
    pictures = []
    shown: set[str] = set()
    for row in rows:
        outcome = row.semi_honest
        recovery = outcome.recovery
        label = row.attack.split(",")[0].split(" (")[0].replace("model ", "")
        if recovery is None or not outcome.completed or label in shown:
            continue
        shown.add(label)
        # One candidate (the honest baseline's single reconstruction) is shown once, at its best match.
        order = np.argsort(recovery.psnr_db)[::-1][:per_attack if recovery.candidates > 1 else 1]
        for j in order:
            pictures.append(InversionPicture(label, "", recovery.truth[j], recovery.best[j], recovery.psnr_db[j]))
    if not pictures:
        return None
    return reconstruction_panel(pictures, data_range=data_range)
