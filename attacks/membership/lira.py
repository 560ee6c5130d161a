"""LiRA, the likelihood-ratio attack of Carlini et al. 2022 ("Membership Inference Attacks From
First Principles", IEEE S&P).

For each example, the attacker compares the target model's scaled logit
``phi = log(p_y / (1 - p_y))`` with the distribution of the same statistic over shadow models
that did (IN) and did not (OUT) train on the example, each modelled as a Gaussian:

* **online**: score = ``log N(phi; mu_in, s_in^2) - log N(phi; mu_out, s_out^2)``, the
  log-likelihood ratio of "member" against "non-member";
* **offline** (no IN models needed, so shadows can be trained once, before the targets are
  known): the one-sided test ``Lambda = Pr[Z <= phi]``, ``Z ~ N(mu_out, s_out^2)``; the score
  is ``log Lambda`` (``scipy.special.log_ndtr``, accurate deep in both tails, where the
  low-FPR regime lives).

**Fixed variance**: with few shadow models the per-example variance is a poor estimate; the
paper then uses one global variance per group (IN, OUT) over all examples, and reports it
better below 64 shadow models. ``fixed_variance=None`` applies that rule.

Means are per-example means (the paper's estimator; its reference code used medians).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy.special import log_ndtr
from torch import nn

from attacks.data import Dataset
from attacks.membership.shadows import ShadowModels, signal_matrix
from attacks.membership.signals import scaled_logit

__all__ = ["lira_scores", "lira", "FIXED_VARIANCE_BELOW"]

FIXED_VARIANCE_BELOW = 64
"""``fixed_variance=None`` uses a global variance with fewer shadow models than this."""

_MIN_STD = 1e-8


def _group_stats(values: np.ndarray, mask: np.ndarray, fixed: bool) -> tuple[np.ndarray, np.ndarray]:
    counts = mask.sum(axis=0)
    if (counts == 0).any():
        raise ValueError(f"{int((counts == 0).sum())} examples have no shadow model in this group; "
                         "train more shadow models (or use the offline attack)")
    mean = np.where(mask, values, 0.0).sum(axis=0) / counts
    if fixed:
        std = np.full(values.shape[1], float(np.std(values[mask])))
    else:
        std = np.sqrt(np.where(mask, (values - mean) ** 2, 0.0).sum(axis=0) / counts)
    return mean, np.maximum(std, _MIN_STD)


def _log_normal(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    return -0.5 * ((x - mean) / std) ** 2 - np.log(std) - 0.5 * np.log(2 * np.pi)


def lira_scores(target: npt.ArrayLike, shadow: npt.ArrayLike, shadow_in: npt.ArrayLike, *, online: bool = True,
                fixed_variance: bool | None = None) -> npt.NDArray[np.float64]:
    """LiRA scores (higher = member) from precomputed scaled logits.

    ``target``: shape ``(N,)``, the target model's statistic per example; ``shadow``:
    ``(S, N)``, the shadow models'; ``shadow_in``: ``(S, N)`` booleans, shadow ``s`` trained on
    example ``n``.
    """
    t = np.asarray(target, dtype=np.float64)
    values = np.asarray(shadow, dtype=np.float64)
    inside = np.asarray(shadow_in, dtype=bool)
    if values.ndim != 2 or values.shape != inside.shape or values.shape[1] != t.shape[0]:
        raise ValueError(f"shapes do not match: target {t.shape}, shadow {values.shape}, shadow_in {inside.shape}")
    fixed = values.shape[0] < FIXED_VARIANCE_BELOW if fixed_variance is None else bool(fixed_variance)
    mean_out, std_out = _group_stats(values, ~inside, fixed)
    if not online:
        return log_ndtr((t - mean_out) / std_out)
    mean_in, std_in = _group_stats(values, inside, fixed)
    return _log_normal(t, mean_in, std_in) - _log_normal(t, mean_out, std_out)


def lira(target_model: nn.Module, shadows: ShadowModels, dataset: Dataset, *, online: bool = True,
         fixed_variance: bool | None = None) -> npt.NDArray[np.float64]:
    """LiRA scores of every example of ``shadows.pool`` against ``target_model``."""
    x, y = dataset.subset(shadows.pool)
    return lira_scores(scaled_logit(target_model, x, y), signal_matrix(shadows.models, scaled_logit, x, y),
                       shadows.in_mask, online=online, fixed_variance=fixed_variance)
