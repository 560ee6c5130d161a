"""The in-process driver: one round of any aggregator, every message through the wire format."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from privagg.encoding.structure import flatten
from privagg.errors import ConfigurationError, InvalidUpdate
from privagg.interface import AggregationResult, Aggregator, Traffic, check_client_ids

__all__ = ["simulate", "client_seeds", "normalise_updates", "update_dimension", "start_server"]


def start_server(aggregator: Aggregator, client_ids: Sequence[int], *, round_id: int,
                 dimension: int | None) -> Any:
    """``aggregator.server(...)`` with the round's vector length, for aggregators written
    before ``server()`` took ``dimension`` too (their signature does not name it)."""
    parameters = inspect.signature(aggregator.server).parameters
    if "dimension" in parameters or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return aggregator.server(client_ids, round_id=round_id, dimension=dimension)
    return aggregator.server(client_ids, round_id=round_id)


def update_dimension(by_id: Mapping[int, Any]) -> int | None:
    """The flat length of the (already normalised, equally shaped) updates."""
    for update in by_id.values():
        return flatten(update)[1].size
    return None


def normalise_updates(updates: Mapping[int, Any] | Sequence[Any]) -> dict[int, Any]:
    """Updates keyed by client id (a sequence gives ids 0..n-1), each checked to share one shape."""
    if isinstance(updates, Mapping):
        by_id = dict(updates)
    elif isinstance(updates, Sequence) and not isinstance(updates, (str, bytes)):
        by_id = dict(enumerate(updates))
    else:
        raise ConfigurationError("updates must be a mapping of client id to update, or a sequence")
    check_client_ids(by_id)
    first_id, first_spec = None, None
    for cid, update in by_id.items():
        _, spec = flatten(update)
        if first_spec is None:
            first_id, first_spec = cid, spec
        elif spec != first_spec:
            raise InvalidUpdate(
                f"client {cid}'s update ({spec.size} values, {[t.shape for t in spec.tensors][:4]}) does not "
                f"match client {first_id}'s ({first_spec.size} values, {[t.shape for t in first_spec.tensors][:4]})"
            )
    return by_id


def client_seeds(seed: int | None, client_ids: Sequence[int]) -> dict[int, int | None]:
    """Per-client seeds for non-secret randomness, derived from one seed (None stays None)."""
    if seed is None:
        return {cid: None for cid in client_ids}
    children = np.random.SeedSequence(seed).spawn(len(client_ids))
    return {cid: int(child.generate_state(1, np.uint64)[0]) for cid, child in zip(client_ids, children)}


def simulate(
    aggregator: Aggregator,
    updates: Mapping[int, Any] | Sequence[Any],
    *,
    dropouts: Mapping[int, str] | None = None,
    seed: int | None = None,
    round_id: int = 0,
    on_stage: Callable[[str], None] | None = None,
) -> AggregationResult:
    """Run one round in-process and return its result, with the traffic counted.

    Every message is serialized to bytes and parsed back, so the wire format is always
    exercised. ``dropouts[i] = stage`` makes client ``i`` stop answering from ``stage`` on (a
    name from ``aggregator.stages``); at the end of each stage the driver calls
    ``deadline_passed()``. ``seed`` only fixes non-secret randomness (see
    :meth:`Aggregator.client`). ``on_stage`` is called with each stage's name (progress bars).

    Raises :class:`~privagg.errors.AggregationAborted` when the protocol aborts.
    """
    if not isinstance(aggregator, Aggregator):
        raise ConfigurationError(f"expected an Aggregator, got {type(aggregator).__name__}")
    by_id = normalise_updates(updates)
    ids = sorted(by_id)
    stages = aggregator.stages
    drop_from: dict[int, int] = {}
    for cid, stage in (dropouts or {}).items():
        if cid not in by_id:
            raise ConfigurationError(f"dropout given for unknown client {cid!r}")
        if stage not in stages:
            raise ConfigurationError(f"unknown stage {stage!r} for mode {aggregator.mode!r}; stages: {list(stages)}")
        drop_from[cid] = stages.index(stage)

    server = start_server(aggregator, ids, round_id=round_id, dimension=update_dimension(by_id))
    seeds = client_seeds(seed, ids)
    clients = {cid: aggregator.client(cid, by_id[cid], round_id=round_id, seed=seeds[cid]) for cid in ids}
    up = down = n_up = n_down = 0
    while not server.finished:
        stage = server.stage
        if on_stage is not None:
            on_stage(stage)
        index = stages.index(stage) if stage in stages else -1
        for cid, message in server.messages_to_send().items():
            data = message.to_bytes()
            down, n_down = down + len(data), n_down + 1
            if cid in drop_from and index >= drop_from[cid]:
                continue  # the client is gone: the message reaches no one
            reply = clients[cid].respond(data)
            if reply is not None:
                reply_bytes = reply.to_bytes()
                up, n_up = up + len(reply_bytes), n_up + 1
                server.receive(cid, reply_bytes)
        server.deadline_passed()
    return server.result().with_traffic(Traffic(up, down, n_up, n_down))
