"""The data every mode of one audit shares, so that modes differ in their protocol only.

One membership split (audit pool, half of it the target's training set, a disjoint test set),
one partition of the members among the clients, one initial model seed, and one set of
one-image clients for the inversion round (the first members: the clients' own data).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from torch import nn

from attacks.audit.settings import AuditSettings
from attacks.data import Dataset, MembershipSplit, load_dataset, membership_split, partition
from attacks.models import make_model

__all__ = ["Experiment", "prepare_experiment"]


@dataclass(frozen=True, eq=False)
class Experiment:
    settings: AuditSettings
    dataset: Dataset
    split: MembershipSplit
    partitions: list[npt.NDArray[np.int64]]
    inversion_images: npt.NDArray[np.int64]

    def model(self, seed: int | None = None) -> nn.Module:
        """A fresh model of the audit's architecture (``seed``: the audit's seed by default)."""
        s = self.settings
        return make_model("mlp", self.dataset, seed=s.seed if seed is None else seed, hidden=s.hidden)


def prepare_experiment(settings: AuditSettings) -> Experiment:
    """Load the data set and draw the split, partition and inversion images of ``settings``."""
    dataset = load_dataset(settings.dataset)
    split = membership_split(dataset, pool_size=settings.pool_size, test_size=settings.test_size,
                             seed=settings.seed)
    parts = partition(split.member_indices, settings.clients, seed=settings.seed)
    n_inv = settings.inversion_clients or settings.clients
    return Experiment(settings, dataset, split, parts, split.member_indices[:n_inv])
