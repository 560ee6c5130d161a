"""Aggregation modes by name, resolved lazily.

``privagg`` never imports a mode package eagerly: a mode is a ``"module:factory"`` target,
imported only when asked for. Modes come from three places: the built-in ``plain``, the
``privagg.modes`` entry-point group of installed packages (how ``secagg``, ``he`` and ``dp``
register theirs, and how third parties add their own), and :func:`register_mode` at run time.
A factory takes keyword options and returns an :class:`~privagg.interface.Aggregator`.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from privagg.errors import ConfigurationError
from privagg.interface import Aggregator

__all__ = ["ModeInfo", "register_mode", "unregister_mode", "available_modes", "make_aggregator", "mode_info"]

ENTRY_POINT_GROUP = "privagg.modes"

Factory = Callable[..., Aggregator]


@dataclass(frozen=True)
class ModeInfo:
    name: str
    target: str | Factory

    def load(self) -> Factory:
        if callable(self.target):
            return self.target
        module_name, _, attr = self.target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ConfigurationError(
                f"mode {self.name!r} cannot be loaded ({exc.name or exc}); is its extra installed?"
            ) from None
        factory = getattr(module, attr, None)
        if not callable(factory):
            raise ConfigurationError(f"mode {self.name!r}: {self.target} is not a factory")
        return factory  # type: ignore[no-any-return]


_BUILTIN = {"plain": ModeInfo("plain", "privagg.plain:make_plain")}
_RUNTIME: dict[str, ModeInfo] = {}


def register_mode(name: str, factory: str | Factory) -> None:
    """Register (or replace) a mode under ``name``: a ``"module:factory"`` string or a callable."""
    if not isinstance(name, str) or not name or any(c.isspace() or c == "," for c in name):
        raise ConfigurationError(f"invalid mode name {name!r}")
    _RUNTIME[name] = ModeInfo(name, factory)


def unregister_mode(name: str) -> None:
    """Forget a mode registered at run time (entry-point and built-in modes stay)."""
    _RUNTIME.pop(name, None)


def _modes() -> dict[str, ModeInfo]:
    modes = dict(_BUILTIN)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        modes.setdefault(ep.name, ModeInfo(ep.name, ep.value))
    modes.update(_RUNTIME)
    return modes


def available_modes() -> list[str]:
    """Names of every registered mode, in a stable order (``plain`` first)."""
    names = sorted(_modes())
    return sorted(names, key=lambda n: (n != "plain", n))


def mode_info(name: str) -> ModeInfo:
    modes = _modes()
    if name not in modes:
        raise ConfigurationError(f"unknown mode {name!r}; available: {', '.join(available_modes())}")
    return modes[name]


def make_aggregator(name: str, *, hints: dict[str, Any] | None = None, **options: Any) -> Aggregator:
    """Build the aggregator registered as ``name`` with ``options``.

    ``hints`` are facts about the round a driver knows (``clients``: how many, ``dimension``:
    the update's length); each is passed only to factories that declare a parameter of that
    name and only when ``options`` does not set it. Modes whose configuration depends on the
    round (distributed DP noise is calibrated to the number of clients) use them.
    """
    factory = mode_info(name).load()
    if hints:
        try:
            accepted = inspect.signature(factory).parameters
        except (TypeError, ValueError):
            accepted = {}
        for key, value in hints.items():
            if key in accepted and key not in options:
                options[key] = value
    try:
        aggregator = factory(**options)
    except TypeError as exc:
        raise ConfigurationError(f"bad options for mode {name!r}: {exc}") from None
    if not isinstance(aggregator, Aggregator):
        raise ConfigurationError(f"mode {name!r} factory returned {type(aggregator).__name__}, not an Aggregator")
    return aggregator
