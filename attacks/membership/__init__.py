"""Membership inference on a released or aggregated model: LOSS, LiRA, RMIA and their metrics.

Every attack returns one score per example, higher meaning "more likely a member"; feed the
scores and the truth to :func:`membership_metrics`.
"""

from attacks.membership.lira import lira, lira_scores
from attacks.membership.loss_attack import loss_attack
from attacks.membership.metrics import MembershipMetrics, RocCurve, membership_metrics, roc_curve
from attacks.membership.rmia import rmia, rmia_scores, tune_offline_a
from attacks.membership.shadows import ShadowModels, fedavg_trainer, signal_matrix, train_shadow_models
from attacks.membership.signals import loss, scaled_logit, true_class_probability

__all__ = [
    "lira", "lira_scores", "loss_attack", "MembershipMetrics", "RocCurve", "membership_metrics", "roc_curve",
    "rmia", "rmia_scores", "tune_offline_a", "ShadowModels", "fedavg_trainer", "signal_matrix",
    "train_shadow_models", "loss", "scaled_logit", "true_class_probability",
]
