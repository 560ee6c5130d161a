"""``SecureFedAvg``: Flower's FedAvg with its aggregation step replaced by a privagg round.

The one-line switch for a ServerApp that uses ``FedAvg``::

    strategy = SecureFedAvg("secagg+", fraction_evaluate=0.5)    # was: FedAvg(fraction_evaluate=0.5)
    result = strategy.start(grid, ArrayRecord(model.state_dict()), num_rounds=3)

Everything else is FedAvg's own code: node sampling, the train config (with
``server-round``), evaluation, centralised evaluation, the ``Result``. Only the training
exchange changes. ``Strategy.start`` calls ``grid.send_and_receive`` with the messages
``configure_train`` built; ``start`` here hands FedAvg a grid that turns exactly those messages
into a :class:`~privagg.flower.workflow.SecureAggregation` round among their nodes (their
content, the model and the config, becomes the first stage's), and ``aggregate_train`` returns
that round's model. Evaluation messages go to the real grid untouched (only polled for replies
every ``poll_interval`` seconds, not Flower's 3).

Differences from FedAvg that follow from secure aggregation: the mean is uniform over the
included clients (a weighted mean would need each client's weight in the clear, or inside the
protected vector where it would share the clipping range); the clients' train metrics reach
the server only if their :class:`~privagg.flower.mod.PrivaggMod` forwards them; a round that
aborts (too few clients left) leaves the model unchanged and is logged, as FedAvg does after a
round without replies. ``outcomes`` keeps each round's :class:`RoundOutcome`, and
``aborted`` each aborted round's reason.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from typing import Any

from flwr.app import ArrayRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.proto.node_pb2 import NodeInfo
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg
from flwr.serverapp.strategy.result import Result
from flwr.supercore.run import Run

from privagg.errors import AggregationAborted, PrivaggError
from privagg.flower.workflow import RoundOutcome, SecureAggregation, StageHook
from privagg.identity import Roster

__all__ = ["SecureFedAvg"]

log = logging.getLogger("privagg.flower")


class SecureFedAvg(FedAvg):
    """FedAvg whose training rounds aggregate through privagg mode ``mode``.

    mode, options, stage_timeout, train_timeout, update, poll_interval, session_timeout,
    on_stage, roster: as for :class:`~privagg.flower.workflow.SecureAggregation` (``roster``, a
    :class:`~privagg.identity.Roster` or a path to one, is what active security needs). Every
    other keyword is FedAvg's (``fraction_train``, ``min_train_nodes``, ``fraction_evaluate``,
    ``arrayrecord_key``, ...).
    """

    def __init__(self, mode: str = "secagg+", options: Mapping[str, Any] | None = None, *,
                 stage_timeout: float = 60.0, train_timeout: float | None = None, update: str = "delta",
                 poll_interval: float | None = 0.5, session_timeout: float | None = None,
                 on_stage: StageHook | None = None, roster: Roster | str | os.PathLike[str] | None = None,
                 **fedavg: Any) -> None:
        super().__init__(**fedavg)
        self.workflow = SecureAggregation(mode, options, stage_timeout=stage_timeout, train_timeout=train_timeout,
                                          update=update, arrays_key=self.arrayrecord_key,
                                          poll_interval=poll_interval, session_timeout=session_timeout,
                                          on_stage=on_stage, roster=roster)
        self.outcomes: dict[int, RoundOutcome] = {}
        self.aborted: dict[int, str] = {}

    def summary(self) -> None:
        super().summary()
        log.info("privagg: training rounds aggregate with %r", self.workflow)

    def start(self, grid: Grid, initial_arrays: ArrayRecord, *args: Any, **kwargs: Any) -> Result:
        """FedAvg's ``start`` on a grid whose training exchange is a privagg round."""
        return super().start(_SecureTrainGrid(grid, self), initial_arrays, *args, **kwargs)

    def aggregate_train(self, server_round: int,
                        replies: Iterable[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """The round's model and metrics (``None, None`` if it aborted: the model stays as it was)."""
        outcome = self.outcomes.get(server_round)
        if outcome is None:
            return None, None
        metrics = outcome.metrics()
        contents = [RecordDict(dict(m)) for m in outcome.client_metrics.values() if m]
        if contents and len(contents) == len(outcome.included) and all(
                any(self.weighted_by_key in r for r in c.metric_records.values()) for c in contents):
            for key, value in self.train_metrics_aggr_fn(contents, self.weighted_by_key).items():
                metrics[key] = value
        return outcome.arrays, metrics

    def _train_round(self, grid: Grid, messages: list[Message]) -> None:
        content = messages[0].content
        config = content.config_records.get(self.configrecord_key)
        announced = config.get("server-round") if config is not None else None
        # FedAvg's configure_train always writes "server-round"; count rounds if a subclass does not.
        server_round = announced if isinstance(announced, int) else len(self.outcomes) + len(self.aborted) + 1
        nodes = [m.metadata.dst_node_id for m in messages]
        try:
            self.outcomes[server_round] = self.workflow.aggregate(grid, nodes, content, server_round)
        except AggregationAborted as exc:
            self.aborted[server_round] = exc.reason
            log.warning("round %s aborted, the model is unchanged: %s (failures: %s)", server_round, exc,
                        self.workflow.last_failures)
        except PrivaggError as exc:
            self.aborted[server_round] = f"{type(exc).__name__}: {exc}"
            raise


class _SecureTrainGrid(Grid):
    """The real grid, except that FedAvg's training exchange becomes a privagg round."""

    def __init__(self, grid: Grid, strategy: SecureFedAvg) -> None:
        self._grid = grid
        self._strategy = strategy

    def set_run(self, run: Run) -> None:
        self._grid.set_run(run)

    @property
    def run(self) -> Run:
        return self._grid.run

    def create_message(self, content: RecordDict, message_type: str, dst_node_id: int, group_id: str,
                       ttl: float | None = None) -> Message:
        return self._grid.create_message(content, message_type, dst_node_id, group_id, ttl)

    def get_node_ids(self) -> Iterable[int]:
        return self._grid.get_node_ids()

    def get_nodes(self) -> Iterable[NodeInfo]:
        return self._grid.get_nodes()

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        return self._grid.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return self._grid.pull_messages(message_ids)

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        batch = list(messages)
        if batch and all(m.metadata.message_type == MessageType.TRAIN for m in batch):
            self._strategy._train_round(self._grid, batch)
            return []
        # Evaluation: Flower's own exchange, but polled every poll_interval instead of every 3 s.
        return self._strategy.workflow.exchange(self._grid, batch, timeout)
