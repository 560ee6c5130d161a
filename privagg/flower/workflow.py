"""``SecureAggregation``: the server side, one privagg round driven over Flower's ``Grid``.

Usable from any ``ServerApp``'s ``main(grid, context)``::

    workflow = SecureAggregation("secagg+", stage_timeout=30)
    outcome = workflow.aggregate(grid, node_ids, RecordDict({"arrays": model, "config": cfg}), server_round=1)
    model = outcome.arrays                      # the next global model, as an ArrayRecord

Each protocol stage is one Flower message exchange: the server session's messages for that
stage go out as ``train`` messages (the first stage also carries the user's records, the
model the round trains on), replies are read until every node still waited for has answered
or the stage's deadline passes, and then the session is told ``deadline_passed()``: nodes that
did not answer in time, answered with a Flower error (a ClientApp that raised, a SuperNode
that went away) or answered something the session refused have dropped out, and the protocol
carries on with the others or aborts.

The aggregator is built once, through the registry, on the first round
(``make_aggregator(mode, hints={"clients": n, "dimension": d}, **options)``), so state it keeps
across rounds (a DP accountant) survives; later rounds, whatever their number of nodes, keep
that configuration. Clients build theirs from the same mode, options and hints, which every
request carries: whatever the two sides must agree on has to follow from those. Nothing here
knows a mode by name.

Identities (``roster=``, see :mod:`privagg.flower.identity`): with a roster, the workflow
first asks each node it has not met for its roster id and a signature proving it (one extra
exchange, once per node and workflow) and runs the protocol over those ids; a node that claims
an id outside the roster, cannot prove it, or claims an id another node proved, is left out of
the round (``outcome.failures`` says why). Modes with active security need the roster (they
are configured with it, and the clients with theirs); without one, nodes are known by their
Flower node ids. ``failures`` are keyed by Flower node id, everything the protocol produced
(``result.included``, ``client_metrics``) by protocol id; ``outcome.client_ids`` maps the one
to the other.

Why not ``grid.send_and_receive``: it checks for replies only every 3 s and may overshoot the
timeout by as much. The exchange here uses the same ``push_messages`` / ``pull_messages`` with a
shorter poll and an exact deadline; ``poll_interval=None`` uses ``send_and_receive`` instead.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp import Grid

from privagg.errors import AggregationAborted, ConfigurationError, PrivaggError, ProtocolViolation
from privagg.flower.arrays import apply_aggregate, flatten_record
from privagg.flower.identity import roster_from, uses_identities, verify_identify, with_roster
from privagg.flower.records import (
    NONCE_BYTES,
    StageRequest,
    canonical_json,
    read_identify_reply,
    read_reply,
    write_identify_request,
    write_request,
)
from privagg.identity import Roster
from privagg.interface import AggregationResult, Aggregator
from privagg.registry import make_aggregator

__all__ = ["SecureAggregation", "RoundOutcome", "StageHook"]

log = logging.getLogger("privagg.flower")

#: Called before each stage's messages go out: ``(server_round, stage, nodes_addressed)``.
StageHook = Callable[[int, str, frozenset[int]], None]


@dataclass(frozen=True)
class RoundOutcome:
    """One finished round: the next model and everything observed on the way."""

    server_round: int
    mode: str
    arrays: ArrayRecord
    result: AggregationResult
    nodes: tuple[int, ...]
    failures: Mapping[int, str] = field(default_factory=dict)
    stage_seconds: tuple[tuple[str, float], ...] = ()
    bytes_down: int = 0
    bytes_up: int = 0
    client_metrics: Mapping[int, Mapping[str, MetricRecord]] = field(default_factory=dict)
    client_ids: Mapping[int, int] = field(default_factory=dict)  # Flower node id -> protocol id

    @property
    def included(self) -> tuple[int, ...]:
        return self.result.included

    @property
    def dropped(self) -> tuple[int, ...]:
        return self.result.dropped

    def metrics(self) -> MetricRecord:
        """Public facts of the round, as Flower metrics."""
        record = MetricRecord({"privagg-included": len(self.included), "privagg-dropped": len(self.dropped),
                               "privagg-bytes-up": self.bytes_up, "privagg-bytes-down": self.bytes_down})
        for key, value in self.result.info.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value):
                record[f"privagg-{key}"] = value
        return record


class SecureAggregation:
    """Runs rounds of one privagg mode over Flower's Grid (see the module docstring).

    mode, options: the registered mode and its options (JSON values), the same on the clients.
    stage_timeout: seconds each stage waits for replies; train_timeout: the first stage's (it
        includes local training), by default ``stage_timeout``.
    update: ``"delta"`` (trained minus received, the default) or ``"weights"``.
    arrays_key: the ``ArrayRecord`` holding the model in the content handed to :meth:`aggregate`.
    poll_interval: seconds between pulls for replies (None: ``grid.send_and_receive``).
    session_timeout: how long a client's session host waits for its next stage (default
        ``2 * max(stage_timeout, train_timeout) + 60``).
    on_stage: a hook called before each stage (progress, tests).
    message_type: of the stage messages; ``"train"`` reaches the ClientApp's default ``train``
        function, ``"train.<action>"`` the one registered as ``@app.train("<action>")``.
    roster: the provisioned :class:`~privagg.identity.Roster` (or a path to its file): nodes take
        part under the roster ids they prove; required by modes with active security.
    """

    def __init__(self, mode: str = "secagg+", options: Mapping[str, Any] | None = None, *,
                 stage_timeout: float = 60.0, train_timeout: float | None = None, update: str = "delta",
                 arrays_key: str = "arrays", poll_interval: float | None = 0.5,
                 session_timeout: float | None = None, on_stage: StageHook | None = None,
                 message_type: str = MessageType.TRAIN, roster: Roster | str | os.PathLike[str] | None = None) -> None:
        if update not in ("delta", "weights"):
            raise ConfigurationError(f"update must be 'delta' or 'weights', got {update!r}")
        for name, value in (("stage_timeout", stage_timeout), ("train_timeout", train_timeout),
                            ("poll_interval", poll_interval), ("session_timeout", session_timeout)):
            if value is not None and not (isinstance(value, (int, float)) and value > 0):
                raise ConfigurationError(f"{name} must be a positive number of seconds, got {value!r}")
        self.mode = mode
        self.options = dict(options or {})
        canonical_json(self.options)
        self.stage_timeout = float(stage_timeout)
        self.train_timeout = float(train_timeout if train_timeout is not None else stage_timeout)
        self.update = update
        self.arrays_key = arrays_key
        self.poll_interval = poll_interval
        self.session_timeout = float(session_timeout if session_timeout is not None
                                     else 2 * max(self.stage_timeout, self.train_timeout) + 60)
        self.on_stage = on_stage
        if message_type.split(".")[0] != MessageType.TRAIN:
            raise ConfigurationError(f"stage messages are 'train' messages, got {message_type!r}")
        self.message_type = message_type
        self.roster = roster_from(roster)
        self._identified: dict[int, int] = {}  # Flower node id -> the roster id it proved
        self._aggregator: Aggregator | None = None
        self._hints: dict[str, Any] = {}
        #: Why nodes fell out of the last round (also set when it aborted).
        self.last_failures: dict[int, str] = {}

    @property
    def aggregator(self) -> Aggregator | None:
        """The aggregator of this workflow (built on the first round)."""
        return self._aggregator

    def __repr__(self) -> str:
        return f"SecureAggregation(mode={self.mode!r}, stage_timeout={self.stage_timeout}, update={self.update!r})"

    def _build(self, clients: int, dimension: int) -> Aggregator:
        if self._aggregator is None:
            hints = {"clients": clients, "dimension": dimension}
            aggregator = make_aggregator(self.mode, hints=dict(hints), **dict(self.options))
            if self.roster is not None:
                aggregator = with_roster(aggregator, self.roster)
            elif uses_identities(aggregator):
                raise ConfigurationError(
                    f"mode {self.mode!r} runs with active security: give the workflow the provisioned roster "
                    f"(roster=Roster or a path to roster.json), the one the nodes were given")
            self._hints, self._aggregator = hints, aggregator
        elif self._hints.get("dimension") != dimension:
            raise ConfigurationError(f"the model changed size ({self._hints.get('dimension')} -> {dimension}) "
                                     f"between rounds of one SecureAggregation")
        return self._aggregator

    # -- one round -----------------------------------------------------------------------------
    def aggregate(self, grid: Grid, node_ids: Iterable[int], content: RecordDict, server_round: int) -> RoundOutcome:
        """Run one round among ``node_ids``; ``content`` is what ``train`` receives (model included).

        Raises :class:`~privagg.errors.AggregationAborted` when the protocol aborts (too few
        nodes left); the model is then unchanged, as FedAvg leaves it after an empty round.
        """
        nodes = tuple(sorted(set(int(n) for n in node_ids)))
        model = content.get(self.arrays_key)
        if not isinstance(model, ArrayRecord):
            raise ConfigurationError(f"the content has no ArrayRecord {self.arrays_key!r} holding the model")
        _, layout = flatten_record(model)
        failures: dict[int, str] = {}
        self.last_failures = failures
        client_ids = self.identify(grid, nodes, failures)
        if not client_ids:
            raise AggregationAborted(f"none of the {len(nodes)} nodes proved an identity of the roster")
        node_of = {cid: node for node, cid in client_ids.items()}
        participants = tuple(sorted(node_of))
        aggregator = self._build(len(participants), layout.size)
        server = aggregator.server(participants, round_id=server_round)
        client_metrics: dict[int, Mapping[str, MetricRecord]] = {}
        stage_seconds: list[tuple[str, float]] = []
        down = up = 0
        first = True
        while not server.finished:
            stage = server.stage
            outbox = server.messages_to_send()
            if self.on_stage is not None:
                self.on_stage(server_round, stage, frozenset(outbox))
            started = time.monotonic()
            timeout = self.train_timeout if first else self.stage_timeout
            messages = []
            for cid, message in outbox.items():
                data = message.to_bytes()
                down += len(data)
                request = StageRequest(mode=self.mode, options=self.options, hints=self._hints,
                                       round_id=server_round, stage=stage, first=first, message=data,
                                       update=self.update, arrays_key=self.arrays_key,
                                       session_timeout=self.session_timeout, participants=participants)
                messages.append(Message(write_request(request, content if first else None), node_of[cid],
                                        self.message_type, group_id=str(server_round), ttl=timeout + 60))
            replies = self._exchange(grid, messages, timeout, failures)
            for reply in replies:
                node = reply.metadata.src_node_id
                cid = client_ids.get(node)
                if cid is None or cid not in outbox:
                    continue  # not a node this stage addressed: nothing to hand the session
                if reply.has_error():
                    failures[node] = f"error reply (code {reply.error.code}): {reply.error.reason}"
                    continue
                try:
                    stage_reply = read_reply(reply.content)
                    if stage_reply.round_id != server_round or stage_reply.stage != stage:
                        raise ProtocolViolation(f"reply for round {stage_reply.round_id} stage {stage_reply.stage!r} "
                                                f"during round {server_round} stage {stage!r}")
                    if stage_reply.message is not None:
                        up += len(stage_reply.message)
                        server.receive(cid, stage_reply.message)
                    if first:
                        client_metrics[cid] = dict(reply.content.metric_records)
                except PrivaggError as exc:
                    failures[node] = f"{type(exc).__name__}: {exc}"
                    log.warning("round %s stage %s: refused the reply of node %s: %s", server_round, stage, node, exc)
            stage_seconds.append((stage, time.monotonic() - started))
            first = False
            silent = server.waiting_for
            if silent:
                log.info("round %s stage %s: %d node(s) dropped out: %s", server_round, stage, len(silent),
                         sorted(node_of[c] for c in silent))
            server.deadline_passed()  # AggregationAborted propagates; last_failures says why nodes left
        result = server.result()
        if not result.included:
            raise AggregationAborted("the round finished with no client included")
        mean = np.asarray(result.aggregate, dtype=np.float64) / len(result.included)
        arrays = apply_aggregate(model, mean, self.update)
        return RoundOutcome(server_round, self.mode, arrays, result, nodes, failures, tuple(stage_seconds), down, up,
                            {c: m for c, m in client_metrics.items() if c in result.included}, dict(client_ids))

    # -- identities ----------------------------------------------------------------------------
    def identify(self, grid: Grid, nodes: Sequence[int], failures: dict[int, str]) -> dict[int, int]:
        """Flower node id -> protocol id of every node that may take part (see the module docstring).

        Without a roster that is each node's own node id. With one, nodes not met before are
        asked to prove their roster id (one exchange, ``stage_timeout``); those that cannot, or
        that claim an id another node of ``nodes`` holds, are noted in ``failures`` and left out.
        """
        if self.roster is None:
            return {node: node for node in nodes}
        unknown = [node for node in nodes if node not in self._identified]
        if unknown:
            nonce = os.urandom(NONCE_BYTES)
            run_id = int(grid.run.run_id)
            messages = [Message(write_identify_request(nonce), node, self.message_type, group_id="privagg-identify",
                                ttl=self.stage_timeout + 60) for node in unknown]
            answered = set()
            for reply in self._exchange(grid, messages, self.stage_timeout, failures):
                node = reply.metadata.src_node_id
                if node not in unknown or node in answered:
                    continue
                answered.add(node)
                if reply.has_error():
                    failures[node] = f"identify: error reply (code {reply.error.code}): {reply.error.reason}"
                    continue
                try:
                    cid, signature = read_identify_reply(reply.content)
                except PrivaggError as exc:
                    failures[node] = f"identify: {type(exc).__name__}: {exc}"
                    continue
                refusal = verify_identify(self.roster, run_id, node, nonce, cid, signature)
                if refusal is not None:
                    failures[node] = f"identify: node {refusal}"
                    log.warning("node %s refused: it %s", node, refusal)
                    continue
                self._identified[node] = cid
            for node in set(unknown) - answered:
                failures.setdefault(node, "identify: no answer within the stage timeout")
        mapping = {node: self._identified[node] for node in nodes if node in self._identified}
        holders: dict[int, list[int]] = {}
        for node, cid in mapping.items():
            holders.setdefault(cid, []).append(node)
        for cid, owners in holders.items():
            if len(owners) > 1:  # one key on two nodes: neither is trusted with the id
                for node in owners:
                    failures[node] = f"identify: client id {cid} is proved by several nodes {sorted(owners)}"
                    del mapping[node]
        return mapping

    # -- one exchange --------------------------------------------------------------------------
    def exchange(self, grid: Grid, messages: Sequence[Message], timeout: float | None) -> list[Message]:
        """``grid.send_and_receive`` polling every ``poll_interval`` seconds instead of every 3 s
        (``timeout=None`` waits for every reply, as Flower's does)."""
        return self._exchange(grid, messages, timeout, {})

    def _exchange(self, grid: Grid, messages: Sequence[Message], timeout: float | None,
                  failures: dict[int, str]) -> list[Message]:
        """Push ``messages``; collect replies until all came back or ``timeout`` passed.

        A message the SuperLink refuses to queue (its node has left) is noted in ``failures``.
        """
        if not messages:
            return []
        if self.poll_interval is None:
            return list(grid.send_and_receive(messages, timeout=timeout))
        deadline = time.monotonic() + timeout if timeout is not None else float("inf")
        nodes = [m.metadata.dst_node_id for m in messages]
        pending = set()
        for node, message_id in zip(nodes, list(grid.push_messages(messages))):
            if message_id:
                pending.add(message_id)
            else:
                failures[node] = "not delivered: the SuperLink did not accept a message for this node"
        replies: list[Message] = []
        while pending:
            for reply in grid.pull_messages(list(pending)):
                if reply.metadata.reply_to_message_id in pending:
                    pending.discard(reply.metadata.reply_to_message_id)
                    replies.append(reply)
            remaining = deadline - time.monotonic()
            if not pending or remaining <= 0:
                break
            time.sleep(min(float(self.poll_interval), remaining))
        return replies
