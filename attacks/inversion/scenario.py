"""Inversion end to end: a FedSGD round through a real protocol, then an attack on whatever the
round's view discloses to the adversary.

:func:`fedsgd_round` runs one round in which each client takes one full-batch SGD step on its
examples and sends the (weighted) update through ``aggregator``; :func:`invert_round` asks the
mode what a threat model discloses (:func:`attacks.adversary.inversion_target`), turns that
into a gradient, runs DLG, iDLG or Inverting Gradients on it and scores the result against the
examples of the clients the target covers. Nothing here depends on the mode.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from attacks.adversary import InversionTarget, inversion_target
from attacks.data import Dataset
from attacks.inversion.gradients import add_gaussian_noise, gradient_from_update
from attacks.inversion.quality import InversionMetrics, reconstruction_quality
from attacks.inversion.reconstruct import InversionConfig, Method, Reconstruction, reconstruct
from attacks.training import FedAvgConfig, TrainingRun, load_vector, train_fedavg
from privagg import Aggregator, ThreatModel

__all__ = ["InversionOutcome", "fedsgd_round", "invert_round"]


def fedsgd_round(model: nn.Module, dataset: Dataset, partitions: list[npt.ArrayLike] | dict[int, npt.ArrayLike],
                 aggregator: Aggregator, *, lr: float = 1.0, seed: int = 0, keep_updates: bool = False,
                 **options: object) -> TrainingRun:
    """One FedSGD round: every client sends ``-lr * w_i * gradient`` of its whole partition.

    ``lr=1`` sends the gradient itself, so the encoding's resolution is what limits an exact
    inversion; ``options`` go to :class:`~attacks.training.FedAvgConfig` (dropouts, clipping).
    """
    config = FedAvgConfig(rounds=1, local_steps=1, batch_size=None, lr=lr, seed=seed, keep_updates=keep_updates,
                          progress=False, **options)  # type: ignore[arg-type]
    return train_fedavg(model, dataset, partitions, aggregator, config)


@dataclass(frozen=True, eq=False)
class InversionOutcome:
    """An inversion attack on one round: what it attacked, what it made, how good it is.

    ``reconstruction``/``metrics``/``truth_*`` are ``None`` when the adversary had nothing to
    invert (``target.kind == "none"``).
    """

    method: str
    target: InversionTarget
    reconstruction: Reconstruction | None
    metrics: InversionMetrics | None
    truth_inputs: torch.Tensor | None
    truth_labels: torch.Tensor | None
    noise_std: float = 0.0

    def as_dict(self) -> dict[str, object]:
        return {"method": self.method, "target": self.target.kind, "clients": list(self.target.client_ids),
                "noise_std": self.noise_std, "metrics": None if self.metrics is None else self.metrics.as_dict(),
                "summary": self.target.summary}


def _steps(config: FedAvgConfig, n: int) -> int:
    if config.local_steps is not None:
        return config.local_steps
    batches = 1 if config.batch_size is None else math.ceil(n / config.batch_size)
    return config.local_epochs * batches


def invert_round(
    aggregator: Aggregator,
    run: TrainingRun,
    threat: ThreatModel,
    dataset: Dataset,
    *,
    method: Method = "idlg",
    round_index: int = 0,
    client: int | None = None,
    count: int | None = None,
    noise_std: float = 0.0,
    known_labels: bool = False,
    config: InversionConfig | None = None,
    seed: int = 0,
) -> InversionOutcome:
    """Attack round ``round_index`` of ``run`` as ``threat`` sees it.

    ``count``: how many examples to reconstruct (default: all examples behind the target, the
    batch its gradient averages over; ``1`` asks for one image from an aggregate).
    ``noise_std``: Gaussian noise added to the recovered gradient (a defence experiment).
    ``known_labels``: hand the attack the true labels (else it infers them). Gradients are
    recovered exactly for FedSGD rounds (:func:`fedsgd_round`), approximately after several
    local steps.
    """
    record = run.rounds[round_index]
    target = inversion_target(aggregator, record, threat, client=client)
    if target.kind == "none" or target.update is None:
        return InversionOutcome(method, target, None, None, None, None, noise_std)
    model = load_vector(copy.deepcopy(run.model), record.global_before, run.spec)
    sizes = [len(run.partitions[c]) for c in target.client_ids]
    steps = round(float(np.mean([_steps(run.config, n) for n in sizes])))
    gradient = gradient_from_update(target.update, run.spec, model, lr=run.config.lr,
                                    weight=record.weight_of(target.client_ids), local_steps=steps)
    if noise_std > 0:
        gradient = add_gaussian_noise(gradient, noise_std, seed=seed + 7919)
    truth_x, truth_y = dataset.subset(np.concatenate([run.partitions[c] for c in target.client_ids]))
    n = len(truth_y) if count is None else int(count)
    labels = truth_y[:n] if known_labels and n == len(truth_y) else None
    rec = reconstruct(model, gradient, method=method, input_shape=dataset.input_shape, n_classes=dataset.n_classes,
                      count=n, labels=labels, data_range=dataset.data_range, config=config, seed=seed)
    metrics = reconstruction_quality(rec.inputs, rec.labels, truth_x, truth_y, data_range=dataset.value_range,
                                     image=dataset.is_image)
    return InversionOutcome(method, target, rec, metrics, truth_x, truth_y, noise_std)
