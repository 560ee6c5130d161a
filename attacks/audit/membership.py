"""Membership inference as the audit runs it: on every model the adversary can rebuild.

A threat model's disclosure of the last training round (:func:`attacks.adversary.disclosed_models`)
yields one or more models: the released global model, the honest clients' group model when
colluders' inputs are subtracted, or, where individual updates are disclosed, each client's
local model. The adversary does not know which client holds an example (that is what it is
trying to learn), so it scores every example under every model it has and keeps the highest
score: a member shows up in the model that trained on it last. With a single model this is
the textbook attack.

LiRA and RMIA calibrate against shadow models trained the way the target was (FedAvg through
a fresh instance of the same mode: DP noise included), as global models; a local model scored
against global shadows is only approximately calibrated, which can only understate the leak.

Examples the colluding clients hold are left out of the scores: the adversary knows they are
members, and counting them would credit the attack with its accomplices' knowledge.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt
from torch import nn

from attacks.data import Dataset
from attacks.membership.lira import lira_scores
from attacks.membership.loss_attack import loss_attack
from attacks.membership.rmia import rmia_scores
from attacks.membership.shadows import ShadowModels, signal_matrix
from attacks.membership.signals import scaled_logit, true_class_probability

__all__ = ["ScoreFn", "RMIA_TEMPERATURE", "membership_scorers", "best_scores"]

ScoreFn = Callable[[nn.Module], npt.NDArray[np.float64]]
"""Membership scores (higher = member) of every audit-pool example under one model."""

RMIA_TEMPERATURE = 2.0


def _rmia_signal(model: nn.Module, x: object, y: object) -> np.ndarray:
    return true_class_probability(model, x, y, temperature=RMIA_TEMPERATURE)  # type: ignore[arg-type]


def membership_scorers(dataset: Dataset, pool: npt.ArrayLike, attacks: Sequence[str],
                       shadows: ShadowModels | None) -> dict[str, ScoreFn]:
    """A scoring function per requested attack (``loss``, ``lira``: online, fixed variance;
    ``rmia``: online). The shadows' signals are computed once, here."""
    pool_idx = np.asarray(pool, dtype=np.int64)
    x, y = dataset.subset(pool_idx)
    scorers: dict[str, ScoreFn] = {}
    for attack in attacks:
        if attack == "loss":
            scorers[attack] = lambda m: loss_attack(m, x, y)
            continue
        if shadows is None:
            raise ValueError(f"attack {attack!r} needs shadow models")
        if not np.array_equal(shadows.pool, pool_idx):
            raise ValueError("the shadow models were trained on another audit pool")
        if attack == "lira":
            logits_matrix = signal_matrix(shadows.models, scaled_logit, x, y)
            scorers[attack] = lambda m, s=logits_matrix: lira_scores(scaled_logit(m, x, y), s, shadows.in_mask,
                                                                     online=True)
        elif attack == "rmia":
            probs = signal_matrix(shadows.models, _rmia_signal, x, y)
            scorers[attack] = lambda m, p=probs: rmia_scores(_rmia_signal(m, x, y), p, shadows.in_mask, online=True)
        else:
            raise ValueError(f"unknown membership attack {attack!r}")
    return scorers


def best_scores(models: Sequence[nn.Module], scorer: ScoreFn) -> npt.NDArray[np.float64]:
    """Each example's highest score over ``models`` (see the module docstring)."""
    if not models:
        raise ValueError("no model to attack")
    return np.max(np.stack([scorer(m) for m in models]), axis=0)
