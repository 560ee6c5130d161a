"""How well a membership score separates members from non-members.

Convention for every attack in this package: a **higher score means "more likely a member"**.

The metrics follow Carlini et al. 2022 ("Membership Inference Attacks From First Principles"):
the full ROC curve, its area, and above all the true-positive rate at a *low* false-positive
rate, because an attack that confidently identifies a few members is a real privacy failure
even when its average-case AUC is near 0.5. A TPR at FPR ``f`` is only meaningful when enough
non-members stand behind it: with ``N`` non-members, at most ``floor(f * N)`` of them may be
flagged, and when that is 0 the number reported is the TPR at *zero* false positives.
:class:`MembershipMetrics` carries those counts so reports can say so.

The ROC computation is our own (sorting once, one point per distinct score); the test suite
checks it against ``sklearn.metrics`` on the same scores.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["RocCurve", "MembershipMetrics", "roc_curve", "roc_auc", "tpr_at_fpr", "balanced_accuracy",
           "membership_metrics"]

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, eq=False)
class RocCurve:
    """ROC points from the strictest threshold to the loosest: ``fpr[0] == tpr[0] == 0``.

    ``thresholds[i]`` is the score at or above which an example is called a member at point
    ``i`` (``thresholds[0]`` is ``+inf``).
    """

    fpr: FloatArray
    tpr: FloatArray
    thresholds: FloatArray
    n_members: int
    n_nonmembers: int


def _check(scores: npt.ArrayLike, is_member: npt.ArrayLike) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    m = np.asarray(is_member).reshape(-1)
    if m.dtype != np.bool_:
        if not np.isin(m, (0, 1)).all():
            raise ValueError("is_member must be booleans or 0/1")
        m = m.astype(bool)
    if s.shape != m.shape:
        raise ValueError(f"{s.shape[0]} scores for {m.shape[0]} membership labels")
    if not np.isfinite(s).all():
        raise ValueError("membership scores must be finite")
    if m.all() or not m.any():
        raise ValueError("need at least one member and one non-member")
    return s, m


def roc_curve(scores: npt.ArrayLike, is_member: npt.ArrayLike) -> RocCurve:
    """Every ROC point of ``scores`` (one per distinct score value, ties kept together)."""
    s, m = _check(scores, is_member)
    order = np.argsort(-s, kind="mergesort")
    s, m = s[order], m[order]
    # The last position of each run of equal scores is where a threshold can fall.
    cut = np.flatnonzero(np.diff(s)) if s.size > 1 else np.zeros(0, dtype=np.int64)
    ends = np.concatenate([cut, [s.size - 1]])
    tp = np.cumsum(m)[ends]
    fp = (ends + 1) - tp
    n_pos, n_neg = int(m.sum()), int((~m).sum())
    fpr = np.concatenate([[0.0], fp / n_neg])
    tpr = np.concatenate([[0.0], tp / n_pos])
    thresholds = np.concatenate([[np.inf], s[ends]])
    return RocCurve(fpr, tpr, thresholds, n_pos, n_neg)


def roc_auc(curve: RocCurve) -> float:
    """Area under the ROC curve (trapezoids: ties count one half, as in the Mann-Whitney U)."""
    return float(np.sum(np.diff(curve.fpr) * (curve.tpr[1:] + curve.tpr[:-1]) / 2.0))


def tpr_at_fpr(curve: RocCurve, fpr: float) -> float:
    """The best TPR among thresholds whose FPR is at most ``fpr``."""
    return float(curve.tpr[curve.fpr <= fpr + 1e-12].max())


def balanced_accuracy(curve: RocCurve) -> float:
    """The best balanced accuracy ``(TPR + TNR) / 2`` over all thresholds.

    This is the "membership advantage" view of an attack: what an adversary who may pick its
    threshold with hindsight gets right on a balanced member/non-member set.
    """
    return float(np.max((curve.tpr + 1.0 - curve.fpr) / 2.0))


@dataclass(frozen=True, eq=False)
class MembershipMetrics:
    """The summary numbers of one membership attack, and the curve behind them.

    ``false_positives_at_1pct`` / ``..._0_1pct``: how many non-members may be flagged at that
    FPR, i.e. how many stand behind the point (``floor(f * n_nonmembers)``); when it is 0 the
    TPR reported is the TPR at zero false positives, and ``resolved_*`` is False.
    """

    auc: float
    tpr_at_1pct_fpr: float
    tpr_at_0_1pct_fpr: float
    balanced_accuracy: float
    n_members: int
    n_nonmembers: int
    false_positives_at_1pct: int
    false_positives_at_0_1pct: int
    curve: RocCurve

    @property
    def resolved_1pct(self) -> bool:
        return self.false_positives_at_1pct >= 1

    @property
    def resolved_0_1pct(self) -> bool:
        return self.false_positives_at_0_1pct >= 1

    def as_dict(self) -> dict[str, float | int]:
        """The report keys (``auc``, ``tpr_at_1pct_fpr``, ...) plus the counts behind them."""
        return {
            "auc": self.auc, "tpr_at_1pct_fpr": self.tpr_at_1pct_fpr, "tpr_at_0_1pct_fpr": self.tpr_at_0_1pct_fpr,
            "balanced_accuracy": self.balanced_accuracy, "n_members": self.n_members,
            "n_nonmembers": self.n_nonmembers, "false_positives_at_1pct": self.false_positives_at_1pct,
            "false_positives_at_0_1pct": self.false_positives_at_0_1pct,
        }

    def __repr__(self) -> str:
        return (f"MembershipMetrics(auc={self.auc:.3f}, tpr@1%={self.tpr_at_1pct_fpr:.3f} "
                f"[{self.false_positives_at_1pct} FP of {self.n_nonmembers}], tpr@0.1%={self.tpr_at_0_1pct_fpr:.3f} "
                f"[{self.false_positives_at_0_1pct} FP], balanced_accuracy={self.balanced_accuracy:.3f})")


def membership_metrics(scores: npt.ArrayLike, is_member: npt.ArrayLike) -> MembershipMetrics:
    """All metrics of one attack's ``scores`` (higher = member) against the truth ``is_member``."""
    curve = roc_curve(scores, is_member)
    n_neg = curve.n_nonmembers
    return MembershipMetrics(
        auc=roc_auc(curve), tpr_at_1pct_fpr=tpr_at_fpr(curve, 0.01), tpr_at_0_1pct_fpr=tpr_at_fpr(curve, 0.001),
        balanced_accuracy=balanced_accuracy(curve), n_members=curve.n_members, n_nonmembers=n_neg,
        false_positives_at_1pct=math.floor(0.01 * n_neg + 1e-9),
        false_positives_at_0_1pct=math.floor(0.001 * n_neg + 1e-9), curve=curve,
    )
