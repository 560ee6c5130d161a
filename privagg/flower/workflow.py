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

Why not ``grid.send_and_receive``: it checks for replies only every 3 s and may overshoot the
timeout by as much. The exchange here uses the same ``push_messages`` / ``pull_messages`` with a
shorter poll and an exact deadline; ``poll_interval=None`` uses ``send_and_receive`` instead.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp import Grid

from privagg.errors import AggregationAborted, ConfigurationError, PrivaggError, ProtocolViolation
from privagg.flower.arrays import apply_aggregate, flatten_record
from privagg.flower.records import StageRequest, canonical_json, read_reply, write_request
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
    """

    def __init__(self, mode: str = "secagg+", options: Mapping[str, Any] | None = None, *,
                 stage_timeout: float = 60.0, train_timeout: float | None = None, update: str = "delta",
                 arrays_key: str = "arrays", poll_interval: float | None = 0.5,
                 session_timeout: float | None = None, on_stage: StageHook | None = None,
                 message_type: str = MessageType.TRAIN) -> None:
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
            self._hints = {"clients": clients, "dimension": dimension}
            self._aggregator = make_aggregator(self.mode, hints=dict(self._hints), **dict(self.options))
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
        aggregator = self._build(len(nodes), layout.size)
        server = aggregator.server(nodes, round_id=server_round)
        failures: dict[int, str] = {}
        self.last_failures = failures
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
            for node, message in outbox.items():
                data = message.to_bytes()
                down += len(data)
                request = StageRequest(mode=self.mode, options=self.options, hints=self._hints,
                                       round_id=server_round, stage=stage, first=first, message=data,
                                       update=self.update, arrays_key=self.arrays_key,
                                       session_timeout=self.session_timeout)
                messages.append(Message(write_request(request, content if first else None), node,
                                        self.message_type, group_id=str(server_round), ttl=timeout + 60))
            replies = self._exchange(grid, messages, timeout, failures)
            for reply in replies:
                node = reply.metadata.src_node_id
                if node not in outbox:
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
                        server.receive(node, stage_reply.message)
                    if first:
                        client_metrics[node] = dict(reply.content.metric_records)
                except PrivaggError as exc:
                    failures[node] = f"{type(exc).__name__}: {exc}"
                    log.warning("round %s stage %s: refused the reply of node %s: %s", server_round, stage, node, exc)
            stage_seconds.append((stage, time.monotonic() - started))
            first = False
            silent = server.waiting_for
            if silent:
                log.info("round %s stage %s: %d node(s) dropped out: %s", server_round, stage, len(silent),
                         sorted(silent))
            server.deadline_passed()  # AggregationAborted propagates; last_failures says why nodes left
        result = server.result()
        if not result.included:
            raise AggregationAborted("the round finished with no client included")
        mean = np.asarray(result.aggregate, dtype=np.float64) / len(result.included)
        arrays = apply_aggregate(model, mean, self.update)
        return RoundOutcome(server_round, self.mode, arrays, result, nodes, failures, tuple(stage_seconds), down, up,
                            {n: m for n, m in client_metrics.items() if n in result.included})

    # -- one exchange --------------------------------------------------------------------------
    def _exchange(self, grid: Grid, messages: Sequence[Message], timeout: float,
                  failures: dict[int, str]) -> list[Message]:
        """Push ``messages``; collect replies until all came back or ``timeout`` passed.

        A message the SuperLink refuses to queue (its node has left) is noted in ``failures``.
        """
        if not messages:
            return []
        if self.poll_interval is None:
            return list(grid.send_and_receive(messages, timeout=timeout))
        deadline = time.monotonic() + timeout
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
