"""Privacy events: a small algebra describing *what a mechanism did*, not how to account for it.

An event is an immutable, validated value object. Leaves name a mechanism (a Gaussian, a
discrete Gaussian, the sum of ``n`` clients' discrete Gaussians); combinators say how leaves
were used (Poisson-subsampled, repeated, composed). Accountants (:mod:`dp.rdp`, :mod:`dp.pld`)
take events and decide whether and how they can bound them, so a new accountant never changes
this module and a new mechanism never changes an accountant it does not concern.

Events are hashable and compare by value, which lets accountants group repeated events, and
they round-trip through plain dicts (:meth:`PrivacyEvent.to_dict`, :func:`event_from_dict`)
so an accountant's history serialises to JSON.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import numpy as np
from scipy import special

from privagg.errors import ConfigurationError

__all__ = [
    "PrivacyEvent",
    "GaussianEvent",
    "DiscreteGaussianEvent",
    "DistributedDiscreteGaussianEvent",
    "PoissonSampledEvent",
    "SelfComposedEvent",
    "ComposedEvent",
    "UnsupportedEvent",
    "event_from_dict",
]


def _number(owner: str, name: str, value: Any, *, minimum: float = 0.0, inclusive: bool = False,
            maximum: float | None = None) -> float:
    """``value`` as a finite float in the allowed range, or a ConfigurationError saying why not."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ConfigurationError(f"{owner}: {name} must be a number, got {value!r}")
    number = float(value)
    if math.isnan(number):
        raise ConfigurationError(f"{owner}: {name} is NaN")
    if not math.isfinite(number):
        raise ConfigurationError(f"{owner}: {name} must be finite, got {number!r}")
    too_small = number < minimum if inclusive else number <= minimum
    if too_small:
        bound = ">=" if inclusive else ">"
        raise ConfigurationError(f"{owner}: {name} must be {bound} {minimum:g}, got {number!r}")
    if maximum is not None and number > maximum:
        raise ConfigurationError(f"{owner}: {name} must be <= {maximum:g}, got {number!r}")
    return number


def _integer(owner: str, name: str, value: Any, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ConfigurationError(f"{owner}: {name} must be an integer, got {value!r}")
    if value < minimum:
        raise ConfigurationError(f"{owner}: {name} must be >= {minimum}, got {int(value)}")
    return int(value)


def _tau(sigma: float, clients: int) -> float:
    """10 sum_{m=2}^{n} e^{-c (1 - 1/m)}, c = 2 pi^2 sigma^2 (m = k + 1), in O(1) memory.

    The first 2^16 terms are summed directly; beyond, e^{c/m} = sum_j (c/m)^j / j! turns the
    rest into Hurwitz zeta differences, so a billion clients cost no more than a thousand.
    """
    c = 2.0 * math.pi**2 * sigma**2
    if clients == 1 or c > 1500.0:  # every term is below e^{-c/2} < 1e-320
        return 0.0
    head_end = min(clients, 1 << 16)
    m = np.arange(2, head_end + 1, dtype=np.float64)
    total = float(np.exp(c / m - c).sum())
    if clients > head_end:
        first, last = head_end + 1.0, float(clients)
        power_sums = [last - head_end, float(special.digamma(last + 1.0) - special.digamma(first))]
        weight, tail = math.exp(-c), 0.0
        for j in range(60):
            if j >= 2:
                power_sums.append(float(special.zeta(j, first) - special.zeta(j, last + 1.0)))
            term = weight * power_sums[j]
            tail += term
            if j >= 2 and term <= 1e-18 * (total + tail):
                break
            weight *= c / (j + 1)
        total += tail
    return 10.0 * total


def _event(owner: str, name: str, value: Any) -> PrivacyEvent:
    if not isinstance(value, PrivacyEvent):
        raise ConfigurationError(f"{owner}: {name} must be a PrivacyEvent, got {value!r}")
    return value


class PrivacyEvent:
    """Base class of every event. Subclasses are frozen dataclasses validated on creation."""

    kind: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        """A plain, JSON-able dict that :func:`event_from_dict` turns back into an equal event."""
        out: dict[str, Any] = {"type": self.kind}
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if isinstance(value, PrivacyEvent):
                value = value.to_dict()
            elif isinstance(value, tuple):
                value = [item.to_dict() for item in value]
            out[f.name] = value
        return out


@dataclass(frozen=True)
class GaussianEvent(PrivacyEvent):
    """Gaussian noise of standard deviation ``noise_multiplier`` x the l2 sensitivity."""

    kind: ClassVar[str] = "gaussian"
    noise_multiplier: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "noise_multiplier",
                           _number("GaussianEvent", "noise_multiplier", self.noise_multiplier))


@dataclass(frozen=True)
class DiscreteGaussianEvent(PrivacyEvent):
    """Integer-valued discrete Gaussian noise N_Z(0, sigma^2) added to an integer query.

    ``sigma`` is the scale parameter of the discrete Gaussian (its variance is at most
    sigma^2) and ``l2_sensitivity`` is measured in the same integer domain. By Canonne, Kamath
    and Steinke (NeurIPS 2020) it satisfies (l2_sensitivity / sigma)^2 / 2 concentrated DP,
    exactly like the continuous Gaussian with the same ratio.
    """

    kind: ClassVar[str] = "discrete_gaussian"
    sigma: float
    l2_sensitivity: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "sigma", _number("DiscreteGaussianEvent", "sigma", self.sigma))
        object.__setattr__(self, "l2_sensitivity",
                           _number("DiscreteGaussianEvent", "l2_sensitivity", self.l2_sensitivity))


@dataclass(frozen=True)
class DistributedDiscreteGaussianEvent(PrivacyEvent):
    """The sum of ``num_clients`` independent N_Z(0, sigma^2)^dimension noises (distributed DP).

    Each client adds its own discrete Gaussian share before secure aggregation; the server sees
    only the sum, which is *not* a discrete Gaussian. Kairouz, Liu and Steinke (ICML 2021)
    bound how far it is from one through ``tau`` (see :attr:`tau`). Sensitivities are in the
    scaled, rounded integer domain: ``l2_sensitivity`` bounds ||Delta||_2 and
    ``l1_sensitivity`` bounds ||Delta||_1; when the latter is omitted it is derived as
    ``min(sqrt(dimension) * l2, l2**2)``, both true for integer vectors. ``dimension`` (the
    length of the noised vector) has no default because the bound grows with it: a forgotten
    dimension must not silently under-count. The theorem asks sigma >= 1/2, so smaller shares
    are refused.
    """

    kind: ClassVar[str] = "distributed_discrete_gaussian"
    sigma: float
    num_clients: int
    l2_sensitivity: float
    dimension: int
    l1_sensitivity: float | None = None

    def __post_init__(self) -> None:
        owner = "DistributedDiscreteGaussianEvent"
        object.__setattr__(self, "sigma", _number(owner, "sigma", self.sigma, minimum=0.5, inclusive=True))
        object.__setattr__(self, "num_clients", _integer(owner, "num_clients", self.num_clients, minimum=1))
        object.__setattr__(self, "l2_sensitivity", _number(owner, "l2_sensitivity", self.l2_sensitivity))
        object.__setattr__(self, "dimension", _integer(owner, "dimension", self.dimension, minimum=1))
        if self.l1_sensitivity is not None:
            object.__setattr__(self, "l1_sensitivity", _number(owner, "l1_sensitivity", self.l1_sensitivity))

    @property
    def tau(self) -> float:
        """tau = 10 * sum_{k=1}^{n-1} exp(-2 pi^2 sigma^2 k / (k + 1)): the price of summing.

        Zero for a single client, and vanishing fast as sigma grows (the sum of discrete
        Gaussians then behaves like one discrete Gaussian of variance n sigma^2).
        """
        return _tau(self.sigma, self.num_clients)

    @property
    def effective_l1_sensitivity(self) -> float:
        """The l1 bound used by the accountant: the given one, or the one implied by l2."""
        if self.l1_sensitivity is not None:
            return self.l1_sensitivity
        return min(math.sqrt(self.dimension) * self.l2_sensitivity, self.l2_sensitivity**2)


@dataclass(frozen=True)
class PoissonSampledEvent(PrivacyEvent):
    """``event`` run on a batch where each record is included independently w.p. ``sampling_rate``."""

    kind: ClassVar[str] = "poisson_sampled"
    sampling_rate: float
    event: PrivacyEvent

    def __post_init__(self) -> None:
        owner = "PoissonSampledEvent"
        object.__setattr__(self, "sampling_rate",
                           _number(owner, "sampling_rate", self.sampling_rate, maximum=1.0))
        _event(owner, "event", self.event)


@dataclass(frozen=True)
class SelfComposedEvent(PrivacyEvent):
    """``event`` run ``count`` times (adaptively); ``count == 0`` is the empty composition."""

    kind: ClassVar[str] = "self_composed"
    event: PrivacyEvent
    count: int

    def __post_init__(self) -> None:
        _event("SelfComposedEvent", "event", self.event)
        object.__setattr__(self, "count", _integer("SelfComposedEvent", "count", self.count, minimum=0))


@dataclass(frozen=True)
class ComposedEvent(PrivacyEvent):
    """Several events run one after the other (adaptively), in any order."""

    kind: ClassVar[str] = "composed"
    events: tuple[PrivacyEvent, ...]

    def __init__(self, events: Iterable[PrivacyEvent]) -> None:
        if isinstance(events, PrivacyEvent) or not isinstance(events, Iterable):
            raise ConfigurationError(f"ComposedEvent: events must be a sequence of PrivacyEvents, got {events!r}")
        items = tuple(events)
        for index, item in enumerate(items):
            _event("ComposedEvent", f"events[{index}]", item)
        object.__setattr__(self, "events", items)


class UnsupportedEvent(ConfigurationError):
    """An accountant was handed an event it cannot bound; the message names the event."""

    def __init__(self, event: PrivacyEvent, accountant: str, reason: str = "") -> None:
        self.event = event
        self.accountant = accountant
        detail = f": {reason}" if reason else ""
        super().__init__(f"{accountant} cannot account for {event!r}{detail}")


_KINDS: dict[str, type[PrivacyEvent]] = {
    cls.kind: cls
    for cls in (GaussianEvent, DiscreteGaussianEvent, DistributedDiscreteGaussianEvent,
                PoissonSampledEvent, SelfComposedEvent, ComposedEvent)
}


def event_from_dict(data: Mapping[str, Any]) -> PrivacyEvent:
    """Rebuild (and re-validate) an event from :meth:`PrivacyEvent.to_dict` output."""
    if not isinstance(data, Mapping) or "type" not in data:
        raise ConfigurationError(f"not a privacy event dict: {data!r}")
    kind = data["type"]
    cls = _KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ConfigurationError(f"unknown privacy event type {kind!r} (known: {', '.join(sorted(_KINDS))})")
    expected = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    given = set(data) - {"type"}
    if not given <= expected:
        raise ConfigurationError(f"{cls.__name__}: unexpected fields {sorted(given - expected)}")
    kwargs: dict[str, Any] = {}
    for name in given:
        value = data[name]
        if name == "event":
            value = event_from_dict(value)
        elif name == "events":
            if not isinstance(value, list):
                raise ConfigurationError(f"ComposedEvent: events must be a list, got {value!r}")
            value = [event_from_dict(item) for item in value]
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a missing required field
        raise ConfigurationError(f"{cls.__name__}: {exc}") from None
