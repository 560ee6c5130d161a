"""What a server does with one client's update once an attack has isolated it: gradient
inversion (iDLG) on that update alone, scored against the client's true images. Shared by the
attacks that end with an individual update (:mod:`attacks.malicious.second_session`,
:mod:`attacks.malicious.roster_shrink`, :mod:`attacks.malicious.graph_grinding`,
:mod:`attacks.malicious.neighbour_omission`)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from attacks.inversion.gradients import gradient_from_update
from attacks.inversion.reconstruct import InversionConfig, reconstruct
from attacks.malicious.outcome import Recovery, score_recovery
from attacks.malicious.setting import Setting
from privagg import UpdateSpec

__all__ = ["invert_update", "update_error"]


def invert_update(setting: Setting, spec: UpdateSpec, update: npt.NDArray[np.float64], target: int, *,
                  inversion: InversionConfig | None = None) -> Recovery:
    """iDLG on ``target``'s isolated ``update`` (one FedSGD step on the honest model)."""
    truth_x, _ = setting.dataset.subset(setting.data.parts[target])
    gradient = gradient_from_update(update, spec, setting.honest, lr=setting.lr)
    found = reconstruct(setting.honest, gradient, method="idlg", input_shape=setting.dataset.input_shape,
                        n_classes=setting.dataset.n_classes, count=len(truth_x),
                        data_range=setting.dataset.data_range, config=inversion)
    recovery = score_recovery(found.inputs, truth_x, data_range=setting.dataset.value_range)
    assert recovery is not None
    return recovery


def update_error(found: npt.NDArray[np.float64], truth: npt.NDArray[np.float64]) -> float:
    """The largest coordinate error of an isolated update against the true (quantized) one."""
    return float(np.max(np.abs(np.asarray(found) - np.asarray(truth))))
