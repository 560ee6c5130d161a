"""Registry factories: ``secagg`` (complete graph) and ``secagg+`` (sparse graph)."""

from __future__ import annotations

from typing import Any

from privagg.errors import ConfigurationError
from secagg.config import SecAgg

__all__ = ["make_secagg", "make_secagg_plus"]

_OPTIONS = {"threshold", "neighbours", "modulus_bits", "bits", "security", "clip", "scale", "max_clients",
            "rounding", "keep_masked_inputs", "min_clients", "dimension", "corrupt_fraction", "dropout_fraction",
            "security_bits", "correctness_bits"}


def _make(default_neighbours: Any, **options: Any) -> SecAgg:
    unknown = set(options) - _OPTIONS
    if unknown:
        raise ConfigurationError(f"unknown option(s) for secure aggregation: {sorted(unknown)}")
    if "bits" in options:
        options["modulus_bits"] = options.pop("bits")
    options.setdefault("neighbours", default_neighbours)
    return SecAgg(**options)


def make_secagg(dimension: int | None = None, **options: Any) -> SecAgg:
    if options.get("neighbours", "all") != "all":
        raise ConfigurationError("mode 'secagg' uses the complete graph; use mode 'secagg+' for neighbours")
    return _make("all", dimension=dimension, **options)


def make_secagg_plus(dimension: int | None = None, dropout_fraction: float | None = None, **options: Any) -> SecAgg:
    """``dropout_fraction`` (a driver's hint, or given): the rate ``neighbours="auto"`` sizes for."""
    if dropout_fraction is not None:
        options["dropout_fraction"] = dropout_fraction
    return _make("auto", dimension=dimension, **options)
