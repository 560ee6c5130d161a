"""Building any registered mode for an experiment, without knowing which modes exist.

Some modes calibrate themselves to the round they will run (a distributed DP mechanism needs
the number of clients and the update's dimension to size its noise); their registry factories
name ``clients`` and ``dimension`` parameters. :func:`make_mode` passes the round's size to
exactly those factories and nothing else, so an audit can loop over
:func:`privagg.available_modes` and a mode registered later is built the same way.

Modes can be stateful (a DP mode's accountant spends budget with every round it runs), so code
that needs several independent runs, e.g. one per shadow model, should build a fresh
aggregator per run: :func:`mode_factory` returns a function that does.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from privagg import Aggregator, make_aggregator
from privagg.registry import mode_info

__all__ = ["ROUND_SIZE_OPTIONS", "make_mode", "mode_factory", "model_dimension"]

ROUND_SIZE_OPTIONS = ("clients", "dimension")


def make_mode(name: str, *, clients: int, dimension: int, **options: Any) -> Aggregator:
    """The registered mode ``name`` for rounds of ``clients`` clients sending ``dimension``
    values; ``options`` go to its factory unchanged (they win over the round's size)."""
    factory = mode_info(name).load()
    try:
        accepted = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # a builtin or C callable: give it only what was asked for
        accepted = {}
    size = {"clients": clients, "dimension": dimension}
    extra = {k: size[k] for k in ROUND_SIZE_OPTIONS if k in accepted and k not in options}
    return make_aggregator(name, **extra, **options)


def mode_factory(name: str, *, clients: int, dimension: int, **options: Any) -> Callable[[], Aggregator]:
    """A function building a fresh :func:`make_mode` aggregator on every call."""
    def build() -> Aggregator:
        return make_mode(name, clients=clients, dimension=dimension, **options)

    return build


def model_dimension(model: nn.Module) -> int:
    """How many values a client's update of ``model`` carries (its floating-point state)."""
    return sum(v.numel() for v in model.state_dict().values() if v.is_floating_point())
