"""Figures for reports: ROC curves on log-log axes and reconstruction grids, as PNG bytes.

Figures are drawn on matplotlib's Agg canvas directly (``matplotlib.figure.Figure``), never
through ``pyplot``: no global backend switch, no window, no state shared with the caller's
plots, so the functions are safe in servers, tests and notebooks alike.

ROC curves use log-log axes (Carlini et al. 2022): the low-FPR corner, where an attack
identifies members with confidence, is the part that matters and is invisible on linear axes.
A point at FPR 0 cannot sit on a log axis; it is drawn at the left edge,
``0.5 / n_nonmembers``, one half of the smallest FPR the data can resolve.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from attacks.inversion.quality import match
from attacks.membership.metrics import MembershipMetrics, RocCurve, roc_auc, tpr_at_fpr

__all__ = ["roc_plot", "reconstruction_grid"]


def _figure(width: float, height: float) -> tuple[object, object]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    return fig, FigureCanvasAgg(fig)


def _png(fig: object, path: str | Path | None) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")  # type: ignore[attr-defined]
    data = buffer.getvalue()
    if path is not None:
        Path(path).write_bytes(data)
    return data


def roc_plot(curves: Mapping[str, RocCurve | MembershipMetrics], *, title: str | None = None,
             path: str | Path | None = None) -> bytes:
    """One log-log ROC plot of several attacks (legend: AUC and TPR at 1% FPR); PNG bytes.

    ``path``: also write the PNG there.
    """
    if not curves:
        raise ValueError("no ROC curves to plot")
    fig, _ = _figure(5.0, 4.5)
    ax = fig.add_subplot(1, 1, 1)  # type: ignore[attr-defined]
    resolved = [c.curve if isinstance(c, MembershipMetrics) else c for c in curves.values()]
    floor = 0.5 / max(c.n_nonmembers for c in resolved)
    for name, curve in zip(curves, resolved):
        label = f"{name} (AUC {roc_auc(curve):.3f}, TPR@1% {tpr_at_fpr(curve, 0.01):.3f})"
        ax.plot(np.maximum(curve.fpr, floor), np.maximum(curve.tpr, floor), label=label, drawstyle="steps-post")
    ax.plot([floor, 1.0], [floor, 1.0], color="grey", linestyle="--", linewidth=0.8, label="chance")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(floor, 1.0)
    ax.set_ylim(floor, 1.0)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(title or "membership inference ROC")
    ax.legend(loc="lower right", fontsize="small")
    ax.grid(True, which="major", alpha=0.3)
    return _png(fig, path)


def reconstruction_grid(truth: torch.Tensor, reconstructions: torch.Tensor, *,
                        data_range: tuple[float, float] = (0.0, 1.0), titles: Sequence[str] | None = None,
                        max_columns: int = 16, path: str | Path | None = None) -> bytes:
    """True images (top row) above the reconstructions matched to them (bottom row); PNG bytes.

    Reconstructions are clipped to ``data_range`` and paired with true images as the metrics
    pair them (:func:`attacks.inversion.quality.match`); ``titles`` label each column.
    """
    if truth.ndim != 4 or reconstructions.ndim != 4:
        raise ValueError("reconstruction grids need image batches shaped (N, C, H, W)")
    rec = reconstructions.detach().float().clamp(*data_range)
    tru = truth.detach().float()
    pairs = match(rec, tru)[:max_columns]
    fig, _ = _figure(1.2 * max(len(pairs), 1) + 0.4, 2.8)
    low, high = data_range
    for column, (i, j) in enumerate(pairs):
        for row, image in enumerate((tru[j], rec[i])):
            ax = fig.add_subplot(2, len(pairs), row * len(pairs) + column + 1)  # type: ignore[attr-defined]
            picture = image.permute(1, 2, 0).numpy()
            ax.imshow(picture[..., 0] if picture.shape[2] == 1 else picture, cmap="gray", vmin=low, vmax=high)
            ax.set_xticks([])
            ax.set_yticks([])
            if column == 0:
                ax.set_ylabel("true" if row == 0 else "reconstructed", fontsize="small")
            if row == 0 and titles is not None and column < len(titles):
                ax.set_title(titles[column], fontsize="small")
    return _png(fig, path)
