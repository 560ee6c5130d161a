"""``Private``: differential privacy around any aggregator, with its budget enforced.

``Private(aggregator, mechanism, accountant, budget=...)`` is itself an aggregator (same
sessions, same wire protocol): clients transform their update as the mechanism says (clip,
and noise for local or distributed DP) before the inner protocol runs; the server releases the
mechanism's post-processing of the inner result (central noise, or the distributed
mechanism's decoding). Each finished round composes its event into the accountant and reports
the epsilon spent so far; a round that would take the total over ``budget`` is refused with
:class:`BudgetExceeded` before any noise is drawn.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from dp.accountant import PrivacyAccountant
from dp.events import PoissonSampledEvent, PrivacyEvent
from dp.mechanisms import Mechanism
from privagg.encoding.fixed_point import FixedPoint
from privagg.encoding.structure import flatten
from privagg.errors import AggregationAborted, ConfigurationError, PrivaggError
from privagg.interface import (
    AggregationResult,
    Aggregator,
    ClientSession,
    ServerSession,
    ServerView,
    WrappedServerSession,
)
from privagg.threats import Disclosure, PartialSum, ThreatModel

__all__ = ["Private", "BudgetExceeded"]


class BudgetExceeded(PrivaggError):
    """The round would spend more privacy than the budget allows; nothing was drawn."""

    def __init__(self, epsilon: float, budget: float, delta: float) -> None:
        self.epsilon, self.budget, self.delta = epsilon, budget, delta
        super().__init__(f"this round would bring epsilon to {epsilon:.4g} (delta={delta:g}), "
                         f"over the budget of {budget:g}")


@dataclass(frozen=True)
class Private(Aggregator):
    """DP around ``aggregator``. ``sampling_rate``: the probability each client takes part in a
    round (Poisson sampling, for amplification; 1 means every client, every round)."""

    aggregator: Aggregator
    mechanism: Mechanism
    accountant: PrivacyAccountant
    budget: float | None = None
    delta: float = 1e-5
    sampling_rate: float = 1.0
    name: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.aggregator, Aggregator) or isinstance(self.aggregator, Private):
            raise ConfigurationError("Private wraps one non-private aggregator")
        if not isinstance(self.mechanism, Mechanism):
            raise ConfigurationError(f"mechanism must be a dp Mechanism, got {type(self.mechanism).__name__}")
        if not 0 < self.delta < 1:
            raise ConfigurationError(f"delta must be in (0, 1), got {self.delta!r}")
        if not 0 < self.sampling_rate <= 1:
            raise ConfigurationError(f"sampling_rate must be in (0, 1], got {self.sampling_rate!r}")
        if self.budget is not None and not self.budget > 0:
            raise ConfigurationError(f"budget must be a positive epsilon, got {self.budget!r}")
        if not self.accountant.supports(self.round_event()):
            raise ConfigurationError(
                f"{type(self.accountant).__name__} cannot account for {type(self.round_event()).__name__}")
        object.__setattr__(self, "_inner", self.mechanism.adapt(self.aggregator))

    # -- the aggregator interface ----------------------------------------------------------------
    @property
    def mode(self) -> str:  # type: ignore[override]
        """The registered name when built by the registry (``secagg+dp``), else ``<inner>+dp``."""
        return self.name or f"{self.aggregator.mode}+dp"

    @property
    def stages(self) -> tuple[str, ...]:
        return self._inner.stages  # type: ignore[attr-defined,no-any-return]

    @property
    def encoding(self) -> FixedPoint | None:
        return self._inner.encoding  # type: ignore[attr-defined,no-any-return]

    def with_encoding(self, encoding: FixedPoint) -> Aggregator:
        return replace(self, aggregator=self.aggregator.with_encoding(encoding))

    def round_event(self, clients: int | None = None) -> PrivacyEvent:
        event = self.mechanism.event(clients)
        return event if self.sampling_rate == 1 else PoissonSampledEvent(self.sampling_rate, event)

    @property
    def epsilon(self) -> float:
        """Epsilon spent so far (at ``delta``)."""
        return float(self.accountant.get_epsilon(self.delta))

    def check_budget(self) -> float:
        """Epsilon after one more round; raises BudgetExceeded if that is over the budget."""
        trial = copy.deepcopy(self.accountant)
        trial.compose(self.round_event())
        epsilon = float(trial.get_epsilon(self.delta))
        if self.budget is not None and epsilon > self.budget:
            raise BudgetExceeded(epsilon, self.budget, self.delta)
        return epsilon

    def client(self, client_id: int, update: Any, *, round_id: int = 0, seed: int | None = None,
               signing_key: Any = None, model_digest: bytes | None = None) -> ClientSession:
        """A client session of the inner protocol on the mechanism's value; ``signing_key`` and
        ``model_digest`` go to an inner mode with active security."""
        self.check_budget()  # before any noise is drawn
        vector, _ = flatten(update)
        transformed = self.mechanism.client_update(vector, round_id=round_id)
        extra = {name: value for name, value in (("signing_key", signing_key), ("model_digest", model_digest))
                 if value is not None}
        return self._inner.client(client_id, transformed, round_id=round_id, seed=seed,  # type: ignore[attr-defined,no-any-return]
                                  **extra)

    def server(self, client_ids: Iterable[int], *, round_id: int = 0, dimension: int | None = None) -> ServerSession:
        self.check_budget()
        inner = self._inner.server(client_ids, round_id=round_id,  # type: ignore[attr-defined]
                                   dimension=self.mechanism.encoded_dimension(dimension))
        return _PrivateServer(self, inner)

    def disclose(self, view: ServerView, threat: ThreatModel) -> Disclosure:
        inner = self._inner.disclose(view, threat)  # type: ignore[attr-defined]
        placement = self.mechanism.placement
        if not threat.sees_server_view:
            # Outsiders see only what was released: the aggregate after the mechanism.
            released = view.output if view.output is not None else None
            return Disclosure(threat, {}, tuple(PartialSum(p.client_ids, released) for p in inner.partial_sums[:1])
                              if released is not None else (), f"the released, {placement}-noised aggregate")
        note = {"central": "noise is added after the server sees the aggregate: it protects only the release",
                "local": "every value the server sees carries its client's own noise",
                "distributed": "the aggregate the server sees carries the full distributed noise"}[placement]
        return Disclosure(threat, inner.individual, inner.partial_sums, f"{inner.summary}; {note}")

    def __repr__(self) -> str:
        return f"Private({self.aggregator!r}, {self.mechanism!r}, budget={self.budget}, delta={self.delta})"


class _PrivateServer(WrappedServerSession):
    def __init__(self, config: Private, inner: ServerSession) -> None:
        super().__init__(inner)
        self.config = config

    def _transform_result(self, result: AggregationResult) -> AggregationResult:
        config = self.config
        included = len(result.included)
        if included < config.mechanism.required_clients():
            # The server has seen a sum with less noise than calibrated: account for what it
            # really carried, and release nothing.
            config.accountant.compose(config.round_event(included))
            raise AggregationAborted(
                f"only {included} clients included, the mechanism's noise is calibrated for "
                f"{config.mechanism.required_clients()}; nothing released, epsilon spent is now "
                f"{config.epsilon:.4g}", result.included)
        released = config.mechanism.finish(result.aggregate, round_id=self.round_id)
        config.accountant.compose(config.round_event())
        info = dict(result.info) | config.mechanism.describe() | {
            "epsilon": config.epsilon, "delta": config.delta, "accountant": type(config.accountant).__name__}
        self.view.output = released  # what the server releases; the protocol's sum stays in encoded_output
        return replace(result, aggregate=released, info=info)
