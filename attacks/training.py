"""Federated averaging in-process, every round aggregated by a real protocol run.

Each round, every participating client trains a copy of the global model on its own examples
and hands its update to the aggregator through :func:`privagg.simulate`, so the round's
:class:`~privagg.interface.AggregationResult` (and its server view, which the attacks read) is
exactly what that mode's server would have observed.

What a client sends
-------------------
1. ``delta = local_params - global_params`` over the model's floating-point state_dict entries,
   flattened with :func:`privagg.flatten`;
2. multiplied by the client's weight ``w_i = n_i / mean(n_j)`` (``n`` the clients' example
   counts in this round; all 1 for an IID partition), so that ``aggregate / len(included)`` is
   the example-weighted FedAvg mean;
3. clipped: first to L2 norm ``clip_norm`` when given (the bound DP mechanisms calibrate to),
   then per coordinate to ``[-clip_value, clip_value]``. ``clip_value`` defaults to the
   aggregator's fixed-point ``clip`` (``aggregator.encoding.clip``) so that nothing is clipped
   silently by the encoding; :class:`ClipReport` says how much was clipped, so an audit can
   tell when the learning rate is too large for the encoding range. (For a mode that
   transforms updates on the client before encoding them, such as a DP mechanism that clips
   and rescales, ``encoding`` describes the transformed values and the mechanism's own
   clipping is the one that matters; pass ``clip_value`` explicitly if needed.)

The server divides the aggregate by the number of included clients and adds it to the global
model (times ``server_lr``). A round the protocol aborts (too many dropouts) leaves the model
as it was; an error that will not go away by itself (a DP budget spent, an encoding that
cannot hold the round, an update that turned NaN) stops training, and ``TrainingRun.stopped``
says why. Malformed messages and protocol violations are bugs, never conditions of an
experiment, and propagate. With ``local_steps=1`` and full-batch training this is FedSGD: a
client's update is ``-lr * w_i * gradient``, which is what gradient inversion inverts.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from attacks.data import Dataset
from privagg import (
    AggregationAborted,
    AggregationResult,
    Aggregator,
    MalformedMessage,
    PrivaggError,
    ProtocolViolation,
    ServerView,
    UpdateSpec,
    flatten,
    simulate,
    unflatten,
)

__all__ = [
    "FedAvgConfig", "ClipReport", "RoundRecord", "TrainingRun", "clip_update", "train_fedavg", "train_local",
    "evaluate", "model_vector", "load_vector", "progress_bar",
]


@dataclass(frozen=True)
class FedAvgConfig:
    """Hyper-parameters of a FedAvg run.

    rounds, clients_per_round (``None``: every client every round), local_epochs or
    local_steps (exactly that many SGD steps; overrides epochs), batch_size (``None``: full
    batch), lr, momentum, weight_decay, server_lr: the usual. clip_norm / clip_value: see the
    module docstring. dropout_rate: each selected client drops out of the round with this
    probability, at ``dropout_stage`` (default: the protocol's first stage). seed: fixes data
    order, client sampling, dropouts and stochastic rounding (never keys or masks, which always
    come from the OS). keep_updates: keep every vector the clients handed to the aggregator
    in the records (the ground truth audits compare disclosures with). progress: a rich
    progress bar (``None``: only when stderr is a terminal).
    """

    rounds: int = 10
    clients_per_round: int | None = None
    local_epochs: int = 1
    local_steps: int | None = None
    batch_size: int | None = 32
    lr: float = 0.1
    momentum: float = 0.0
    weight_decay: float = 0.0
    server_lr: float = 1.0
    clip_norm: float | None = None
    clip_value: float | None = None
    dropout_rate: float = 0.0
    dropout_stage: str | None = None
    seed: int = 0
    keep_updates: bool = False
    progress: bool | None = None

    def __post_init__(self) -> None:
        if self.rounds < 1 or self.local_epochs < 1 or (self.local_steps is not None and self.local_steps < 1):
            raise ValueError("rounds, local_epochs and local_steps must be positive")
        if self.lr <= 0 or self.server_lr <= 0:
            raise ValueError("lr and server_lr must be positive")
        if not 0.0 <= self.dropout_rate < 1.0:
            raise ValueError(f"dropout_rate must be in [0, 1), got {self.dropout_rate!r}")
        for name in ("clip_norm", "clip_value"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be positive, got {value!r}")


@dataclass(frozen=True)
class ClipReport:
    """How much clipping changed one client's update before it reached the aggregator."""

    norm_before: float
    norm_scaled: bool
    coordinates_clipped: int


def clip_update(vector: npt.ArrayLike, *, clip_norm: float | None = None,
                clip_value: float | None = None) -> tuple[npt.NDArray[np.float64], ClipReport]:
    """Clip to L2 norm ``clip_norm`` (scaling down, never up), then each value to ``+-clip_value``."""
    vec = np.array(vector, dtype=np.float64)
    norm = float(np.linalg.norm(vec))
    scaled = clip_norm is not None and norm > clip_norm
    if scaled:
        vec *= clip_norm / norm  # type: ignore[operator]
    clipped = 0
    if clip_value is not None:
        clipped = int(np.count_nonzero(np.abs(vec) > clip_value))
        np.clip(vec, -clip_value, clip_value, out=vec)
    return vec, ClipReport(norm, scaled, clipped)


def _float_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if v.is_floating_point()}


def model_vector(model: nn.Module) -> tuple[npt.NDArray[np.float64], UpdateSpec]:
    """The model's floating-point state as one float64 vector, and the spec to rebuild it."""
    return flatten(_float_state(model))


def load_vector(model: nn.Module, vector: npt.ArrayLike, spec: UpdateSpec) -> nn.Module:
    """Load a vector made by :func:`model_vector` (e.g. a global model plus an update) into ``model``."""
    model.load_state_dict(unflatten(np.asarray(vector, dtype=np.float64), spec), strict=False)
    return model


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 2048) -> tuple[float, float]:
    """Accuracy and mean cross-entropy of ``model`` on ``(x, y)``."""
    was_training = model.training
    model.eval()
    correct, loss = 0, 0.0
    for start in range(0, len(y), batch_size):
        logits = model(x[start:start + batch_size])
        target = y[start:start + batch_size]
        correct += int((logits.argmax(dim=1) == target).sum())
        loss += float(nn.functional.cross_entropy(logits, target, reduction="sum"))
    model.train(was_training)
    return correct / max(len(y), 1), loss / max(len(y), 1)


def train_local(model: nn.Module, x: torch.Tensor, y: torch.Tensor, config: FedAvgConfig,
                generator: torch.Generator) -> nn.Module:
    """Train ``model`` in place with SGD on ``(x, y)`` as one client does in a round."""
    optimiser = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    n = len(y)
    batch = n if config.batch_size is None else min(config.batch_size, n)
    model.train()
    steps_left = config.local_steps
    epochs = config.local_epochs if steps_left is None else 1 << 30
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, batch):
            idx = order[start:start + batch]
            optimiser.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            optimiser.step()
            if steps_left is not None:
                steps_left -= 1
                if steps_left == 0:
                    return model
    return model


@dataclass(frozen=True, eq=False)
class RoundRecord:
    """One FedAvg round as the attacks need it.

    ``global_before``: the flat model the server sent (the point gradients are taken at);
    ``weights[i]``: the factor client ``i`` multiplied its delta by; ``result``: the protocol's
    result with its server view (``None`` if the round aborted: ``aborted`` says why);
    ``sent[i]``: the vector client ``i`` handed to the aggregator (only with ``keep_updates``).
    """

    round_id: int
    participants: tuple[int, ...]
    dropouts: Mapping[int, str]
    weights: Mapping[int, float]
    global_before: npt.NDArray[np.float64]
    result: AggregationResult | None
    aborted: str | None = None
    sent: Mapping[int, npt.NDArray[np.float64]] | None = None
    clipping: Mapping[int, ClipReport] = field(default_factory=dict)
    accuracy: float | None = None
    seconds: float = 0.0

    @property
    def view(self) -> ServerView | None:
        return None if self.result is None else self.result.view

    def weight_of(self, client_ids: Sequence[int]) -> float:
        """The total weight of a group of clients (what their summed updates are scaled by)."""
        return float(sum(self.weights[c] for c in client_ids))

    def __repr__(self) -> str:
        state = f"aborted={self.aborted!r}" if self.result is None else f"included={len(self.result.included)}"
        return f"RoundRecord(round={self.round_id}, participants={len(self.participants)}, {state})"


@dataclass(frozen=True, eq=False)
class TrainingRun:
    """The outcome of :func:`train_fedavg`: the trained model and every round's record."""

    model: nn.Module
    spec: UpdateSpec
    mode: str
    config: FedAvgConfig
    partitions: Mapping[int, npt.NDArray[np.int64]]
    rounds: list[RoundRecord]
    stopped: str | None = None

    @property
    def epsilon(self) -> float | None:
        """The privacy spent after the last completed round, when the mode reports one
        (``result.info["epsilon"]``, as DP modes do)."""
        for record in reversed(self.rounds):
            if record.result is not None and "epsilon" in record.result.info:
                return float(record.result.info["epsilon"])
        return None

    @property
    def accuracy(self) -> float | None:
        """Test accuracy after the last round that measured it."""
        measured = [r.accuracy for r in self.rounds if r.accuracy is not None]
        return measured[-1] if measured else None

    def __repr__(self) -> str:
        return f"TrainingRun(mode={self.mode!r}, rounds={len(self.rounds)}, accuracy={self.accuracy})"


def progress_bar(enabled: bool | None) -> Any:
    """A rich progress bar, or ``None`` when disabled (``None``: only when stderr is a terminal)."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("{task.fields[status]}"), transient=True)


def _seed_for(seed: int, *path: int) -> int:
    return int(np.random.SeedSequence([seed, *path]).generate_state(1, np.uint64)[0] >> 1)


def train_fedavg(
    model: nn.Module,
    dataset: Dataset,
    partitions: Sequence[npt.ArrayLike] | Mapping[int, npt.ArrayLike],
    aggregator: Aggregator,
    config: FedAvgConfig | None = None,
    *,
    test_indices: npt.ArrayLike | None = None,
    description: str | None = None,
) -> TrainingRun:
    """Train a copy of ``model`` by FedAvg among clients holding ``partitions`` of ``dataset``.

    ``partitions``: each client's example positions (a sequence gives client ids 0..n-1).
    ``test_indices``: measure accuracy after each round. ``model`` itself is left unchanged.
    Aborted rounds and stopping errors: see the module docstring.
    """
    import copy

    config = config or FedAvgConfig()
    parts = {int(c): np.asarray(p, dtype=np.int64) for c, p in (
        partitions.items() if isinstance(partitions, Mapping) else enumerate(partitions))}
    if not parts or any(len(p) == 0 for p in parts.values()):
        raise ValueError("every client needs at least one example")
    ids = sorted(parts)
    global_model = copy.deepcopy(model)
    worker = copy.deepcopy(model)
    global_vec, spec = model_vector(global_model)
    encoding = aggregator.encoding
    clip_value = config.clip_value if config.clip_value is not None else (
        encoding.clip if encoding is not None else None)
    test = None if test_indices is None else dataset.subset(test_indices)
    client_x = {c: dataset.subset(parts[c]) for c in ids}
    rng = np.random.default_rng(_seed_for(config.seed, 0))
    stage = config.dropout_stage or aggregator.stages[0]
    records: list[RoundRecord] = []
    stopped: str | None = None
    bar = progress_bar(config.progress)
    task = None
    if bar is not None:
        bar.start()
        task = bar.add_task(description or f"FedAvg [{aggregator.mode}]", total=config.rounds, status="")
    try:
        for r in range(config.rounds):
            started = time.perf_counter()
            k = len(ids) if config.clients_per_round is None else min(config.clients_per_round, len(ids))
            chosen = rng.choice(ids, size=k, replace=False).tolist() if k < len(ids) else ids
            participants = tuple(sorted(chosen))
            drops = {c: stage for c in participants if config.dropout_rate and rng.random() < config.dropout_rate}
            mean_n = float(np.mean([len(parts[c]) for c in participants]))
            weights = {c: len(parts[c]) / mean_n for c in participants}
            updates: dict[int, npt.NDArray[np.float64]] = {}
            clipping: dict[int, ClipReport] = {}
            for c in participants:
                load_vector(worker, global_vec, spec)
                generator = torch.Generator().manual_seed(_seed_for(config.seed, 1, r, c))
                train_local(worker, *client_x[c], config, generator)
                delta = model_vector(worker)[0] - global_vec
                updates[c], clipping[c] = clip_update(delta * weights[c], clip_norm=config.clip_norm,
                                                      clip_value=clip_value)
            result: AggregationResult | None
            aborted = None
            try:
                result = simulate(aggregator, updates, dropouts=drops, seed=_seed_for(config.seed, 2, r),
                                  round_id=r)
            except AggregationAborted as exc:
                result, aborted = None, str(exc)
            except (MalformedMessage, ProtocolViolation):
                raise
            except PrivaggError as exc:
                stopped = f"round {r}: {type(exc).__name__}: {exc}"
                records.append(RoundRecord(r, participants, drops, weights, global_vec.copy(), None, stopped,
                                           updates if config.keep_updates else None, clipping, None,
                                           time.perf_counter() - started))
                break
            before = global_vec.copy()
            if result is not None:
                global_vec = global_vec + config.server_lr * result.aggregate / len(result.included)
                load_vector(global_model, global_vec, spec)
            accuracy = None if test is None else evaluate(global_model, *test)[0]
            records.append(RoundRecord(r, participants, drops, weights, before, result, aborted,
                                       updates if config.keep_updates else None, clipping, accuracy,
                                       time.perf_counter() - started))
            if bar is not None:
                bar.update(task, advance=1, status="" if accuracy is None else f"acc {accuracy:.3f}")
    finally:
        if bar is not None:
            bar.stop()
    global_model.eval()
    return TrainingRun(global_model, spec, aggregator.mode, config, parts, records, stopped)
