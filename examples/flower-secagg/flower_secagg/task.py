"""The learning task: a small MLP on scikit-learn's 8x8 digits, split across the nodes.

torch is imported inside the functions on purpose: a SuperNode starts a fresh ClientApp
process for every message, and only the first stage of a round trains. Later stages (the
secure-aggregation key exchange, unmasking) then start in a fraction of a second.
"""

from __future__ import annotations

from typing import Any

import numpy as np

SEED = 2024
TEST_FRACTION = 0.2


def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits  # bundled with scikit-learn: no download

    data = load_digits()
    return (data.data / 16.0).astype(np.float32), data.target.astype(np.int64)


def _split() -> tuple[np.ndarray, np.ndarray]:
    """A fixed permutation: the first 80 % is partitioned among nodes, the rest is the server's test set."""
    x, _ = _digits()
    order = np.random.default_rng(SEED).permutation(len(x))
    cut = int(len(x) * (1 - TEST_FRACTION))
    return order[:cut], order[cut:]


def load_partition(partition_id: int, num_partitions: int) -> tuple[np.ndarray, np.ndarray]:
    """Node ``partition_id``'s share of the training data (IID, disjoint)."""
    x, y = _digits()
    train, _ = _split()
    mine = np.array_split(train, num_partitions)[partition_id]
    return x[mine], y[mine]


def load_test() -> tuple[np.ndarray, np.ndarray]:
    x, y = _digits()
    _, test = _split()
    return x[test], y[test]


def make_model(seed: int | None = SEED) -> Any:
    """The network; ``seed=None`` draws a fresh initialisation."""
    import torch
    from torch import nn

    if seed is not None:
        torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


def train(model: Any, x: np.ndarray, y: np.ndarray, *, epochs: int, lr: float, batch_size: int) -> float:
    """Plain SGD; returns the mean training loss of the last epoch."""
    import torch

    torch.set_num_threads(1)
    optimiser = torch.optim.SGD(model.parameters(), lr=lr)
    loss_fn = torch.nn.CrossEntropyLoss()
    inputs, targets = torch.from_numpy(x), torch.from_numpy(y)
    generator = torch.Generator().manual_seed(SEED)
    model.train()
    loss_sum, batches = 0.0, 0
    for _ in range(epochs):
        loss_sum, batches = 0.0, 0
        for index in torch.randperm(len(inputs), generator=generator).split(batch_size):
            optimiser.zero_grad()
            loss = loss_fn(model(inputs[index]), targets[index])
            loss.backward()
            optimiser.step()
            loss_sum, batches = loss_sum + float(loss.detach()), batches + 1
    return loss_sum / max(batches, 1)


def evaluate(model: Any, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(loss, accuracy) on ``x, y``."""
    import torch

    torch.set_num_threads(1)
    model.eval()
    with torch.no_grad():
        logits = model(torch.from_numpy(x))
        loss = float(torch.nn.functional.cross_entropy(logits, torch.from_numpy(y)))
        accuracy = float((logits.argmax(dim=1).numpy() == y).mean())
    return loss, accuracy
