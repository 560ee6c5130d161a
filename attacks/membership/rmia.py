"""RMIA, the relative membership inference attack of Zarifzadeh, Liu and Shokri 2024 ("Low-Cost
High-Power Membership Inference Attacks", ICML).

RMIA compares an example ``x`` with population examples ``z`` instead of with a parametric
model of its own signal:

    LR(x, z) = (p(x | target) / p(x)) / (p(z | target) / p(z)),
    score(x) = Pr_z[ LR(x, z) >= gamma ],

where ``p(. | model)`` is the (temperature-scaled) softmax probability of the true label and
``p(x)`` its average over reference (shadow) models. **Online**, the average runs over all
reference models (half IN, half OUT for a balanced design). **Offline**, only OUT models are
available and the missing IN half is approximated linearly:
``p(x) = ((1 + a) p_OUT(x) + (1 - a)) / 2``. ``a`` depends on the data and training, so by
default it is tuned as the authors' Privacy Meter does: one reference model plays the target,
the others attack it for each ``a`` in 0, 0.1, ..., 1, and the ``a`` with the best AUC wins
(:func:`tune_offline_a`). ``gamma = 1`` follows Privacy Meter (LeakPro defaults to 2; on
digits 1 was as good or better in every setting we tried), the softmax temperature 2 follows
LeakPro. The comparison with many ``z`` makes RMIA strong with very few reference models,
which is why it matters for a cheap audit.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from torch import nn

from attacks.data import Dataset
from attacks.membership.shadows import ShadowModels, signal_matrix
from attacks.membership.signals import true_class_probability

__all__ = ["rmia_scores", "rmia", "marginal_probability", "tune_offline_a"]

_FLOOR = 1e-30


def marginal_probability(shadow: npt.ArrayLike, shadow_in: npt.ArrayLike, *, online: bool,
                         offline_a: float = 0.3) -> npt.NDArray[np.float64]:
    """``p(x)`` per example from reference models' probabilities ``shadow`` (``(S, N)``)."""
    values = np.asarray(shadow, dtype=np.float64)
    inside = np.asarray(shadow_in, dtype=bool)
    if online:
        return values.mean(axis=0)
    if not 0.0 <= offline_a <= 1.0:
        raise ValueError(f"offline_a must be in [0, 1], got {offline_a!r}")
    out = ~inside
    counts = out.sum(axis=0)
    if (counts == 0).any():
        raise ValueError(f"{int((counts == 0).sum())} examples have no OUT reference model")
    p_out = np.where(out, values, 0.0).sum(axis=0) / counts
    return 0.5 * ((1.0 + offline_a) * p_out + (1.0 - offline_a))


def rmia_scores(
    target: npt.ArrayLike,
    shadow: npt.ArrayLike,
    shadow_in: npt.ArrayLike,
    *,
    online: bool = True,
    offline_a: float = 0.3,
    gamma: float = 1.0,
    population: tuple[npt.ArrayLike, npt.ArrayLike, npt.ArrayLike] | None = None,
) -> npt.NDArray[np.float64]:
    """RMIA scores in ``[0, 1]`` (higher = member) from precomputed true-class probabilities.

    ``target`` ``(N,)``, ``shadow`` ``(S, N)`` and ``shadow_in`` ``(S, N)`` describe the
    examples scored. ``population``: ``(target_z, shadow_z, shadow_in_z)`` for the ``z``
    examples; by default the scored examples themselves serve as ``z``, each excluded from its
    own comparison.
    """
    if gamma <= 0:
        raise ValueError(f"gamma must be positive, got {gamma!r}")
    t = np.asarray(target, dtype=np.float64)
    ratio_x = t / np.maximum(marginal_probability(shadow, shadow_in, online=online, offline_a=offline_a), _FLOOR)
    if population is None:
        ratio_z = ratio_x
    else:
        tz, sz, iz = population
        ratio_z = np.asarray(tz, dtype=np.float64) / np.maximum(
            marginal_probability(sz, iz, online=online, offline_a=offline_a), _FLOOR)
    sorted_z = np.sort(ratio_z)
    # LR(x, z) >= gamma  <=>  ratio_z <= ratio_x / gamma  (all ratios are positive).
    counts = np.searchsorted(sorted_z, ratio_x / gamma, side="right").astype(np.float64)
    n_z = sorted_z.size
    if population is None:
        counts -= (gamma <= 1.0)  # x compared with itself has LR = 1
        n_z -= 1
    return counts / max(n_z, 1)


def tune_offline_a(shadow: npt.ArrayLike, shadow_in: npt.ArrayLike, *, gamma: float = 1.0,
                   grid: npt.ArrayLike | None = None) -> float:
    """The offline ``a`` under which reference model 0, attacked by the others, is most exposed.

    Falls back to 0.3 when the other models leave some example without an OUT model.
    """
    from attacks.membership.metrics import membership_metrics

    values = np.asarray(shadow, dtype=np.float64)
    inside = np.asarray(shadow_in, dtype=bool)
    if values.shape[0] < 3 or inside[0].all() or not inside[0].any() or (~inside[1:]).sum(axis=0).min() == 0:
        return 0.3
    candidates = np.round(np.arange(0.0, 1.0001, 0.1), 1) if grid is None else np.asarray(grid, dtype=np.float64)
    aucs = [membership_metrics(rmia_scores(values[0], values[1:], inside[1:], online=False, offline_a=float(a),
                                           gamma=gamma), inside[0]).auc for a in candidates]
    return float(candidates[int(np.argmax(aucs))])


def rmia(target_model: nn.Module, shadows: ShadowModels, dataset: Dataset, *, online: bool = True,
         offline_a: float | None = None, gamma: float = 1.0, temperature: float = 2.0) -> npt.NDArray[np.float64]:
    """RMIA scores of every example of ``shadows.pool`` against ``target_model`` (``z`` = the pool).

    ``offline_a=None`` tunes it on the shadow models (:func:`tune_offline_a`).
    """
    x, y = dataset.subset(shadows.pool)

    def signal(model: nn.Module, xs: object, ys: object) -> np.ndarray:
        return true_class_probability(model, xs, ys, temperature=temperature)  # type: ignore[arg-type]

    reference = signal_matrix(shadows.models, signal, x, y)
    if not online and offline_a is None:
        offline_a = tune_offline_a(reference, shadows.in_mask, gamma=gamma)
    return rmia_scores(signal(target_model, x, y), reference, shadows.in_mask, online=online,
                       offline_a=0.3 if offline_a is None else offline_a, gamma=gamma)
