"""What an adversary can compute from one round, and what it should attack.

This module is where protocols meet attacks. It never asks which mode produced a view: the
mode's own :meth:`Aggregator.disclose` says which plaintext values a threat model yields
(individual updates under ``plain``, only the aggregate under ``secagg``, the aggregate minus
the colluders' own inputs when clients collude, noised values under DP, nothing from
ciphertexts...). From that :class:`~privagg.threats.Disclosure` this module picks the most
useful target for each kind of attack:

* :func:`inversion_target`: for gradient inversion, *one client's update* if any honest
  client's update is disclosed individually; else *the sum over the smallest group of honest
  clients* the adversary can isolate (the aggregate, minus the inputs of colluders it knows);
  else nothing. A group of one is an individual update (e.g. a two-client round with one
  colluder), and is reported as such.
* :func:`disclosed_models`: for membership inference, the models the adversary can rebuild:
  the global model plus each disclosed update (a client's local model) or group sum (the
  group's mean model).

A mode that lands later is audited through the same path, without changes here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from attacks.training import RoundRecord
from privagg import AggregationResult, Aggregator, Disclosure, ServerView, ThreatModel

__all__ = ["Source", "InversionTarget", "disclosure", "inversion_target", "disclosed_models"]

Source = ServerView | AggregationResult | RoundRecord
"""Anything that carries a round's server view."""

TargetKind = Literal["individual", "aggregate", "none"]


def _view(source: Source) -> ServerView:
    if isinstance(source, ServerView):
        return source
    if isinstance(source, AggregationResult):
        return source.view
    if isinstance(source, RoundRecord):
        if source.result is None:
            raise ValueError(f"round {source.round_id} aborted ({source.aborted}); it has no result to attack")
        return source.result.view
    raise TypeError(f"expected a ServerView, AggregationResult or RoundRecord, got {type(source).__name__}")


def disclosure(aggregator: Aggregator, source: Source, threat: ThreatModel) -> Disclosure:
    """What ``threat`` can compute in plaintext from the round in ``source``, as the mode says."""
    return aggregator.disclose(_view(source), threat)


@dataclass(frozen=True, eq=False)
class InversionTarget:
    """The values an inversion attack should run on.

    ``kind``: ``"individual"`` (``update`` is one client's update, ``client_ids`` that client),
    ``"aggregate"`` (``update`` is the *sum* of the updates of ``client_ids``) or ``"none"``
    (the adversary computes nothing it could invert; ``update`` is None). ``summary`` says so
    in a sentence; ``disclosure`` is what it was derived from.
    """

    kind: TargetKind
    client_ids: tuple[int, ...]
    update: npt.NDArray[np.float64] | None
    summary: str
    disclosure: Disclosure

    @property
    def n_clients(self) -> int:
        return len(self.client_ids)

    def __repr__(self) -> str:
        return f"InversionTarget(kind={self.kind!r}, clients={len(self.client_ids)}, summary={self.summary!r})"


def _usable(values: npt.NDArray[np.float64] | None) -> bool:
    return values is not None and np.asarray(values).size > 0


def _groups(found: Disclosure, threat: ThreatModel) -> list[tuple[tuple[int, ...], npt.NDArray[np.float64], str]]:
    """Every group sum the adversary holds, with the colluders' known inputs taken out."""
    known = {c: v for c, v in found.individual.items() if c in threat.colluders and _usable(v)}
    if threat.known_inputs is not None:
        for c, v in threat.known_inputs.items():
            known.setdefault(c, np.asarray(v, dtype=np.float64))
    groups = []
    for part in found.partial_sums:
        if not _usable(part.total) or not part.client_ids:
            continue
        ids, total = set(part.client_ids), np.asarray(part.total, dtype=np.float64)
        removable = sorted(ids & threat.colluders & known.keys())
        if removable:
            total = total - np.sum([known[c] for c in removable], axis=0)
            ids -= set(removable)
        if ids:
            note = f" (minus {len(removable)} colluders' inputs)" if removable else ""
            groups.append((tuple(sorted(ids)), total, note))
    return groups


def inversion_target(aggregator: Aggregator, source: Source, threat: ThreatModel, *,
                     client: int | None = None) -> InversionTarget:
    """The best input for an update-inversion attack under ``threat`` (see the module docstring).

    ``client``: the client the attack is after; without it, the disclosed individual update of
    the lowest-numbered honest client, or the smallest group. Colluders are never targets
    (the adversary already holds their data).
    """
    found = disclosure(aggregator, source, threat)
    honest = {c: v for c, v in found.individual.items() if c not in threat.colluders and _usable(v)}
    if client is not None and client in threat.colluders:
        raise ValueError(f"client {client} colludes with the adversary; it is not a target")
    if honest and (client is None or client in honest):
        cid = min(honest) if client is None else client
        return InversionTarget("individual", (cid,), np.asarray(honest[cid], dtype=np.float64),
                               f"client {cid}'s own update ({found.summary})", found)
    groups = [g for g in _groups(found, threat) if client is None or client in g[0]]
    if groups:
        # Smallest group first; on a tie, the sum as the mode disclosed it over our own subtraction.
        ids, total, note = min(groups, key=lambda g: (len(g[0]), bool(g[2]), g[0]))
        if len(ids) == 1:
            return InversionTarget("individual", ids, total,
                                   f"client {ids[0]}'s update, isolated from a sum{note} ({found.summary})", found)
        return InversionTarget("aggregate", ids, total,
                               f"the sum of {len(ids)} clients' updates{note} ({found.summary})", found)
    return InversionTarget("none", (), None, f"nothing to invert ({found.summary})", found)


def disclosed_models(aggregator: Aggregator, record: RoundRecord, threat: ThreatModel) -> dict[tuple[int, ...],
                                                                                                  npt.NDArray[np.float64]]:
    """Flat models the adversary can rebuild from one training round, keyed by the clients
    whose data they were trained on.

    Each disclosed individual update of an honest client gives that client's local model
    ``global + update / w_i``; each group sum the mean model of the group
    ``global + sum / sum(w)`` (``w``: the weights clients scaled their deltas by, public in
    FedAvg). Exact when clipping did not change the updates. Load one with
    :func:`attacks.training.load_vector`.
    """
    found = disclosure(aggregator, record, threat)
    models: dict[tuple[int, ...], npt.NDArray[np.float64]] = {}
    for cid, values in sorted(found.individual.items()):
        if cid not in threat.colluders and _usable(values) and cid in record.weights:
            models[(cid,)] = record.global_before + np.asarray(values, dtype=np.float64) / record.weights[cid]
    for ids, total, _ in _groups(found, threat):
        if ids not in models and all(c in record.weights for c in ids):
            models[ids] = record.global_before + total / record.weight_of(ids)
    return models
