"""The one API every privacy accountant shares.

An accountant consumes :mod:`dp.events` and answers two questions about everything it has
seen: the smallest epsilon for a given delta, and the delta for a given epsilon. Accountants
are interchangeable (RDP is fast and composes anything with an RDP bound; PLD is tight for
Gaussians), so callers write against :class:`PrivacyAccountant` and pick one by name.

The base class owns everything that must behave the same in every accountant: argument
validation, the "can you handle this event?" check (raising :class:`UnsupportedEvent` before
any state changes), and the shape of ``state_dict`` (a plain JSON-able dict tagged with the
accountant's name and a version, so a dict from one accountant is never loaded into another).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from dp.events import ComposedEvent, PrivacyEvent, SelfComposedEvent, UnsupportedEvent
from privagg.errors import ConfigurationError

__all__ = ["PrivacyAccountant", "check_delta", "check_epsilon"]


def check_delta(delta: Any) -> float:
    """``delta`` as a float in (0, 1), or a ConfigurationError naming the value."""
    if isinstance(delta, bool) or not isinstance(delta, (int, float, np.integer, np.floating)):
        raise ConfigurationError(f"delta must be a number in (0, 1), got {delta!r}")
    value = float(delta)
    if math.isnan(value) or not 0.0 < value < 1.0:
        raise ConfigurationError(f"delta must be in (0, 1), got {value!r}")
    return value


def check_epsilon(epsilon: Any) -> float:
    """``epsilon`` as a finite float >= 0, or a ConfigurationError naming the value."""
    if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float, np.integer, np.floating)):
        raise ConfigurationError(f"epsilon must be a finite number >= 0, got {epsilon!r}")
    value = float(epsilon)
    if math.isnan(value) or not math.isfinite(value) or value < 0.0:
        raise ConfigurationError(f"epsilon must be a finite number >= 0, got {value!r}")
    return value


def _check_count(count: Any) -> int:
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 0:
        raise ConfigurationError(f"count must be an integer >= 0, got {count!r}")
    return int(count)


class PrivacyAccountant(ABC):
    """Tracks the privacy spent by a sequence of events.

    Subclasses implement the leaf check (:meth:`_unsupported_leaf`), the bookkeeping
    (:meth:`_compose`), the two conversions and the state. Composition is always adaptive and
    order-free: composing A then B is the same as B then A.
    """

    #: Tag stored in :meth:`state_dict`, checked by :meth:`load_state_dict`.
    name: ClassVar[str]
    #: Bumped whenever the state layout changes, so stale dicts are refused, not misread.
    state_version: ClassVar[int] = 1

    # -- events -------------------------------------------------------------------------------
    def supports(self, event: PrivacyEvent) -> bool:
        """Whether :meth:`compose` would accept ``event`` (recursively, for every part)."""
        return isinstance(event, PrivacyEvent) and self._unsupported(event) is None

    def compose(self, event: PrivacyEvent, count: int = 1) -> PrivacyAccountant:
        """Record ``event`` run ``count`` times; returns ``self`` so calls chain.

        Raises :class:`UnsupportedEvent` (and changes nothing) when any part of ``event`` is
        beyond this accountant.
        """
        if not isinstance(event, PrivacyEvent):
            raise ConfigurationError(f"compose() takes a PrivacyEvent, got {event!r}")
        count = _check_count(count)
        reason = self._unsupported(event)
        if reason is not None:
            raise UnsupportedEvent(event, type(self).__name__, reason)
        if count:
            self._compose(event, count)
        return self

    def _unsupported(self, event: PrivacyEvent) -> str | None:
        """None when ``event`` can be accounted for, else a sentence naming the culprit."""
        if isinstance(event, ComposedEvent):
            for part in event.events:
                reason = self._unsupported(part)
                if reason is not None:
                    return reason
            return None
        if isinstance(event, SelfComposedEvent):
            return self._unsupported(event.event)
        return self._unsupported_leaf(event)

    @abstractmethod
    def _unsupported_leaf(self, event: PrivacyEvent) -> str | None:
        """Like :meth:`_unsupported` for anything but Composed/SelfComposed events."""

    @abstractmethod
    def _compose(self, event: PrivacyEvent, count: int) -> None:
        """Record a supported event ``count >= 1`` times."""

    # -- queries ------------------------------------------------------------------------------
    def get_epsilon(self, delta: float) -> float:
        """The smallest epsilon this accountant can prove at ``delta`` (0 before any event)."""
        return self._epsilon(check_delta(delta))

    def get_delta(self, epsilon: float) -> float:
        """The smallest delta this accountant can prove at ``epsilon`` (0 before any event)."""
        return self._delta(check_epsilon(epsilon))

    @abstractmethod
    def _epsilon(self, delta: float) -> float: ...

    @abstractmethod
    def _delta(self, epsilon: float) -> float: ...

    # -- state --------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume, as a plain JSON-able dict."""
        return {"accountant": self.name, "version": self.state_version, **self._state()}

    def load_state_dict(self, state: Mapping[str, Any]) -> PrivacyAccountant:
        """Replace this accountant's state by ``state`` (from :meth:`state_dict`); returns self."""
        if not isinstance(state, Mapping):
            raise ConfigurationError(f"{type(self).__name__} state must be a dict, got {type(state).__name__}")
        if state.get("accountant") != self.name:
            raise ConfigurationError(
                f"state is for accountant {state.get('accountant')!r}, not {self.name!r}")
        if state.get("version") != self.state_version:
            raise ConfigurationError(
                f"{type(self).__name__} state version {state.get('version')!r} is not {self.state_version}")
        body = {key: value for key, value in state.items() if key not in ("accountant", "version")}
        self._load(body)
        return self

    @abstractmethod
    def _state(self) -> dict[str, Any]: ...

    @abstractmethod
    def _load(self, body: Mapping[str, Any]) -> None:
        """Validate ``body`` fully before changing anything."""


def encode_float(value: float) -> float | str:
    """JSON has no infinities: store them as strings, everything else as an exact float."""
    return value if math.isfinite(value) else ("inf" if value > 0 else "-inf")


def decode_float(value: Any, what: str) -> float:
    if value in ("inf", "-inf"):
        return float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(float(value)):
        raise ConfigurationError(f"{what} must be a number, got {value!r}")
    return float(value)
