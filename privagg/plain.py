"""``Plain``: the plaintext reference aggregator.

Clients send their encoded updates in the clear and the server adds them. It runs the same
encoding, messages and driver as every protocol, so its sum is the reference every protocol
is checked against, and its server view holds every individual update, as it should: that is
exactly what the other modes exist to prevent.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from privagg.encoding.fixed_point import FixedPoint
from privagg.accumulator import RunningSum
from privagg.encoding.structure import flatten
from privagg.errors import AggregationAborted, ConfigurationError, ProtocolViolation
from privagg.interface import Aggregator, ClientSession, ServerSession, ServerView
from privagg.messages.base import SERVER_ID, Message, message_type, wire
from privagg.messages.codec import PackedVector
from privagg.threats import Disclosure, PartialSum, ThreatModel

__all__ = ["Plain", "PlainRequest", "PlainUpdate", "make_plain"]

STAGE_COLLECT = "collect_updates"


@message_type(0x0001, "plain.request")
@dataclass(frozen=True, eq=False)
class PlainRequest(Message):
    """Server to client: send your encoded update."""


@message_type(0x0002, "plain.update")
@dataclass(frozen=True, eq=False)
class PlainUpdate(Message):
    """Client to server: the encoded update, in the clear."""

    vector: np.ndarray = wire(PackedVector(("uint32", "uint64")))


@dataclass(frozen=True)
class Plain(Aggregator):
    """Plaintext summation of fixed-point encoded updates.

    ``min_clients``: the round aborts if fewer clients answer (default 1).
    """

    fixed_point: FixedPoint = field(default_factory=FixedPoint)
    min_clients: int = 1

    mode = "plain"

    def __post_init__(self) -> None:
        if not isinstance(self.fixed_point, FixedPoint):
            raise ConfigurationError(f"fixed_point must be a FixedPoint, got {type(self.fixed_point).__name__}")
        if not isinstance(self.min_clients, int) or self.min_clients < 1:
            raise ConfigurationError(f"min_clients must be a positive integer, got {self.min_clients!r}")

    @property
    def stages(self) -> tuple[str, ...]:
        return (STAGE_COLLECT,)

    @property
    def encoding(self) -> FixedPoint:
        return self.fixed_point

    def min_included(self, clients: int) -> int:
        return self.min_clients

    def with_encoding(self, encoding: FixedPoint) -> Plain:
        return replace(self, fixed_point=encoding)

    def client(self, client_id: int, update: Any, *, round_id: int = 0, seed: int | None = None) -> PlainClient:
        return PlainClient(self, client_id, update, round_id, seed)

    def server(self, client_ids: Iterable[int], *, round_id: int = 0, dimension: int | None = None) -> PlainServer:
        return PlainServer(self, client_ids, round_id)

    def disclose(self, view: ServerView, threat: ThreatModel) -> Disclosure:
        total = view.output if view.output is not None else np.zeros(0)
        released = (PartialSum(view.included, total),)
        if not threat.sees_server_view:
            return Disclosure(threat, {}, released, "only the released aggregate")
        individual = {
            cid: self.fixed_point.decode(msg.vector)
            for cid, msg in view.by_sender(STAGE_COLLECT).items()
            if isinstance(msg, PlainUpdate) and cid in view.included
        }
        return Disclosure(threat, individual, released,
                          f"every individual update ({len(individual)} clients) in plaintext")


class PlainClient(ClientSession):
    def __init__(self, config: Plain, client_id: int, update: Any, round_id: int, seed: int | None) -> None:
        super().__init__(client_id, round_id)
        vector, self.spec = flatten(update)
        self._encoded = config.fixed_point.encode(vector, seed=seed)
        self._sent = False

    @property
    def finished(self) -> bool:
        return self._sent

    def respond(self, message: bytes | Message) -> Message:
        self._parse(message, PlainRequest)
        if self._sent:
            raise ProtocolViolation(f"client {self.client_id} already sent its update in round {self.round_id}")
        self._sent = True
        return PlainUpdate(self.round_id, self.client_id, SERVER_ID, self._encoded)


class PlainServer(ServerSession):
    mode = "plain"

    def __init__(self, config: Plain, client_ids: Iterable[int], round_id: int) -> None:
        super().__init__(client_ids, round_id)
        self._config = config
        config.fixed_point.check_capacity(len(self.client_ids))
        self._sum = RunningSum(config.fixed_point.bits)
        self._enter(STAGE_COLLECT, {cid: PlainRequest(self.round_id, SERVER_ID, cid) for cid in self.client_ids})

    def _expected(self, stage: str) -> type[Message]:
        return PlainUpdate

    def _accept(self, client_id: int, message: Message) -> None:
        assert isinstance(message, PlainUpdate)
        self._sum.add(client_id, message.vector)

    def _advance(self, answers: dict[int, Message]) -> None:
        if len(answers) < self._config.min_clients or self._sum.total is None:
            raise AggregationAborted(
                f"only {len(answers)} of {len(self.client_ids)} clients sent an update; "
                f"at least {self._config.min_clients} needed", answers.keys())
        fp = self._config.fixed_point
        self._finish(fp.decode(self._sum.total, clients=len(answers)), answers.keys(), encoded=self._sum.total)


def make_plain(**options: Any) -> Plain:
    """Registry factory: ``bits``, ``clip``, ``scale``, ``max_clients``, ``rounding``, ``min_clients``."""
    fp_keys = {"bits", "clip", "scale", "max_clients", "rounding"}
    unknown = set(options) - fp_keys - {"min_clients"}
    if unknown:
        raise ConfigurationError(f"unknown option(s) for mode 'plain': {sorted(unknown)}")
    fp = FixedPoint(**{k: v for k, v in options.items() if k in fp_keys})
    return Plain(fp, **({"min_clients": options["min_clients"]} if "min_clients" in options else {}))
