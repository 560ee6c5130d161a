"""The stage on which a malicious server acts: honest clients, real SecAgg sessions, and a server
whose code the attacker writes.

:func:`privagg.simulate` runs an honest server; these attacks need one that sends each client
what it likes (another model, a forged survivor set). :class:`HandDrivenRound` therefore holds
the real :class:`~secagg.config.SecAgg` client sessions and the real server session, passes
every message as bytes, and lets the attacker either follow the protocol (:meth:`step`) or
hand clients messages of its own (:meth:`exchange`). An honest client that catches the server
raises :class:`~privagg.ProtocolViolation`; here that is an *observation*, recorded in
:attr:`refusals`, after which the client says nothing more (as a real client would hang up).

:func:`client_updates` computes what each client sends: one FedSGD step on the model *it*
received, with the SHA-256 of that model (:func:`model_digest`) as the digest active security
binds into its signatures.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from attacks.data import Dataset
from attacks.inversion.gradients import model_gradient
from attacks.training import model_vector
from privagg import AggregationAborted, AggregationResult, MalformedMessage, ProtocolViolation, UpdateSpec, flatten
from privagg.messages import Message
from secagg import SecAgg

__all__ = ["model_digest", "ClientData", "client_data", "client_updates", "HandDrivenRound"]


def model_digest(model: nn.Module) -> bytes:
    """SHA-256 of the model's floating-point state (names, shapes and float64 values): what an
    honest client hashes before it trains, so that it signs for exactly the model it received."""
    vector, spec = model_vector(model)
    h = hashlib.sha256()
    for tensor in spec.tensors:
        h.update(f"{tensor.name}:{tuple(tensor.shape)};".encode())
    h.update(np.ascontiguousarray(vector, dtype="<f8").tobytes())
    return h.digest()


@dataclass(frozen=True, eq=False)
class ClientData:
    """Each client's examples (positions in ``dataset``), and public examples the server holds
    (disjoint from every client's)."""

    dataset: Dataset
    parts: dict[int, npt.NDArray[np.int64]]
    public: npt.NDArray[np.int64]

    def inputs(self, clients: tuple[int, ...] | list[int]) -> torch.Tensor:
        return self.dataset.subset(np.concatenate([self.parts[c] for c in clients]))[0]


def client_data(dataset: Dataset, clients: int, *, images_per_client: int = 1, public: int = 500,
                seed: int = 0) -> ClientData:
    """``clients`` clients (ids 1..n) with ``images_per_client`` random examples each."""
    need = clients * images_per_client
    if need + public > len(dataset):
        raise ValueError(f"{need} client images and {public} public ones exceed the {len(dataset)} examples")
    order = np.random.default_rng(seed).permutation(len(dataset))
    parts = {c + 1: np.sort(order[c * images_per_client:(c + 1) * images_per_client]) for c in range(clients)}
    return ClientData(dataset, parts, np.sort(order[need:need + public]))


def client_updates(models: Mapping[int, nn.Module], data: ClientData, *, lr: float = 1.0
                   ) -> tuple[dict[int, npt.NDArray[np.float64]], dict[int, bytes], UpdateSpec]:
    """Each client's FedSGD update ``-lr * gradient`` on the model it received, the digest of
    that model, and the update's layout."""
    updates, digests = {}, {}
    spec: UpdateSpec | None = None
    for cid, model in sorted(models.items()):
        x, y = data.dataset.subset(data.parts[cid])
        grads = model_gradient(model, x, y)
        names = [name for name, p in model.named_parameters() if p.requires_grad]
        updates[cid], spec = flatten({n: (-lr * g).double() for n, g in zip(names, grads)})
        digests[cid] = model_digest(model)
    assert spec is not None
    return updates, digests, spec


class HandDrivenRound:
    """One SecAgg round among honest client sessions, driven by the attacker's server code."""

    def __init__(self, config: SecAgg, updates: Mapping[int, npt.ArrayLike], digests: Mapping[int, bytes], *,
                 round_id: int = 0) -> None:
        self.config = config
        self.ids = tuple(sorted(updates))
        self.round_id = round_id
        dimension = int(np.asarray(next(iter(updates.values()))).size)
        self.server = config.server(self.ids, round_id=round_id, dimension=dimension)
        self.clients = {cid: config.client(cid, updates[cid], round_id=round_id, model_digest=digests[cid])
                        for cid in self.ids}
        self.refusals: dict[int, str] = {}
        self.aborted: str | None = None

    def exchange(self, messages: Mapping[int, Message]) -> dict[int, Message]:
        """Hand each client its message (as bytes) and collect the replies; a client that
        refuses is recorded and silent from then on."""
        replies = {}
        for cid, message in sorted(messages.items()):
            if cid in self.refusals:
                continue
            try:
                reply = self.clients[cid].respond(message.to_bytes())
            except (ProtocolViolation, MalformedMessage) as exc:
                self.refusals[cid] = f"{type(exc).__name__}: {exc}"
                continue
            if reply is not None:
                replies[cid] = reply
        return replies

    def step(self) -> None:
        """One honest stage: deliver what the server session wants sent, feed the replies back,
        end the stage. An abort is recorded in :attr:`aborted`."""
        replies = self.exchange(self.server.messages_to_send())
        for cid, reply in replies.items():
            self.server.receive(cid, reply.to_bytes())
        try:
            self.server.deadline_passed()
        except AggregationAborted as exc:
            self.aborted = str(exc)

    def run_until(self, stage: str) -> bool:
        """Follow the protocol until the server is about to send ``stage``'s messages; False if
        the round finished or aborted first."""
        while not self.server.finished and self.server.stage != stage:
            self.step()
        return self.server.stage == stage

    def run(self) -> AggregationResult | None:
        """Follow the protocol to the end: the result, or ``None`` if the round aborted."""
        while not self.server.finished:
            self.step()
        return None if self.aborted is not None else self.server.result()
