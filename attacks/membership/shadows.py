"""Shadow (reference) models: the attacker's estimate of how a model behaves with and without
a given example in its training set.

LiRA and RMIA calibrate each example's signal against models the attacker trains itself on
random halves of an audit pool (Carlini et al. 2022, Sec. IV). Following their design, the
halves are *balanced*: every pool example is in the training set of exactly half of the
shadow models (rounded down for an odd count), so each example gets the same number of IN and
OUT observations. Each shadow is trained by a caller-supplied function, so the attacker can
mimic the target's real training, by default FedAvg through the same kind of protocol
(:func:`fedavg_trainer`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from attacks.data import Dataset, partition
from attacks.training import FedAvgConfig, progress_bar, train_fedavg
from privagg import Aggregator, Plain

__all__ = ["TrainFn", "ShadowModels", "balanced_memberships", "train_shadow_models", "fedavg_trainer",
           "signal_matrix"]

TrainFn = Callable[[npt.NDArray[np.int64], int], nn.Module]
"""``train_fn(dataset_positions, seed) -> trained model``."""


@dataclass(frozen=True, eq=False)
class ShadowModels:
    """Trained shadow models and which pool examples each saw.

    ``pool``: data-set positions of the audit pool; ``in_mask[s, i]``: shadow ``s`` trained on
    ``pool[i]``.
    """

    models: tuple[nn.Module, ...]
    pool: npt.NDArray[np.int64]
    in_mask: npt.NDArray[np.bool_]

    def __len__(self) -> int:
        return len(self.models)

    def __repr__(self) -> str:
        return f"ShadowModels(n={len(self.models)}, pool={len(self.pool)})"


def balanced_memberships(n_shadows: int, pool_size: int, *, seed: int = 0) -> npt.NDArray[np.bool_]:
    """A ``(n_shadows, pool_size)`` mask where each column has exactly ``n_shadows // 2`` Trues."""
    if n_shadows < 1 or pool_size < 1:
        raise ValueError("need at least one shadow model and one pool example")
    rng = np.random.default_rng(seed)
    ranks = np.argsort(rng.random((n_shadows, pool_size)), axis=0)
    return ranks < n_shadows // 2


def train_shadow_models(train_fn: TrainFn, pool: npt.ArrayLike, n_shadows: int, *, seed: int = 0,
                        progress: bool | None = None) -> ShadowModels:
    """Train ``n_shadows`` models with ``train_fn``, each on its balanced half of ``pool``."""
    pool_idx = np.asarray(pool, dtype=np.int64)
    mask = balanced_memberships(n_shadows, len(pool_idx), seed=seed)
    models = []
    bar = progress_bar(progress)
    task = None
    if bar is not None:
        bar.start()
        task = bar.add_task("shadow models", total=n_shadows, status="")
    try:
        for s in range(n_shadows):
            models.append(train_fn(pool_idx[mask[s]], seed * 1000003 + s + 1))
            if bar is not None:
                bar.update(task, advance=1)
    finally:
        if bar is not None:
            bar.stop()
    return ShadowModels(tuple(models), pool_idx, mask)


def fedavg_trainer(dataset: Dataset, model_factory: Callable[[int], nn.Module], n_clients: int,
                   config: FedAvgConfig,
                   aggregator: Aggregator | Callable[[], Aggregator] | None = None) -> TrainFn:
    """A :data:`TrainFn` that trains like the target: FedAvg among ``n_clients`` IID clients.

    ``model_factory(seed)`` builds a fresh model. ``aggregator`` defaults to :class:`Plain`:
    secure aggregation returns the same sum, so it would only cost time. Pass the target's
    mode when it changes the model (a DP mode adds noise the shadows should carry too), as a
    *factory* (:func:`attacks.modes.mode_factory`) when the mode keeps state: each shadow then
    gets a fresh aggregator, and a DP accountant is not drained by the shadows.
    """
    def fresh() -> Aggregator:
        if aggregator is None:
            return Plain()
        return aggregator if isinstance(aggregator, Aggregator) else aggregator()

    def train(indices: npt.NDArray[np.int64], seed: int) -> nn.Module:
        parts = partition(indices, min(n_clients, len(indices)), seed=seed)
        run = train_fedavg(model_factory(seed), dataset, parts, fresh(),
                           dataclasses.replace(config, seed=seed, progress=False))
        return run.model

    return train


def signal_matrix(models: Sequence[nn.Module], signal: Callable[[nn.Module, torch.Tensor, torch.Tensor], np.ndarray],
                  x: torch.Tensor, y: torch.Tensor) -> npt.NDArray[np.float64]:
    """``signal`` of every model on every example: shape ``(len(models), len(y))``."""
    return np.stack([signal(m, x, y) for m in models]).astype(np.float64)
