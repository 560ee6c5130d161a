"""Registry factories for DP modes: ``plain+dp`` (central Gaussian) and ``secagg+dp``
(SecAgg+ with the distributed discrete Gaussian). Both go through the registry for the inner
protocol, so ``dp`` never imports another mode."""

from __future__ import annotations

from typing import Any

from dp.calibration import make_accountant
from dp.mechanisms import CentralGaussian, DistributedDiscreteGaussian
from dp.private import Private
from privagg.encoding.fixed_point import FixedPoint
from privagg.errors import ConfigurationError
from privagg.plain import Plain
from privagg.registry import make_aggregator

__all__ = ["make_plain_dp", "make_secagg_dp"]

_PRIVATE = ("budget", "delta", "sampling_rate", "accountant")


def _private_options(options: dict[str, Any]) -> dict[str, Any]:
    out = {k: options.pop(k) for k in _PRIVATE if k in options}
    out["accountant"] = make_accountant(out.get("accountant", "rdp"))
    return out


def make_plain_dp(clip_norm: float = 1.0, noise_multiplier: float = 1.0, **options: Any) -> Private:
    """Plaintext summation with central Gaussian noise; the encoding's range covers the clip norm."""
    private = _private_options(options)
    unknown = set(options) - {"bits", "max_clients", "rounding", "min_clients"}
    if unknown:
        raise ConfigurationError(f"unknown option(s) for mode 'plain+dp': {sorted(unknown)}")
    fp = FixedPoint(bits=options.pop("bits", 32), clip=clip_norm, max_clients=options.pop("max_clients", 1024),
                    rounding=options.pop("rounding", "deterministic"))
    return Private(Plain(fp, **options), CentralGaussian(clip_norm, noise_multiplier), **private, name="plain+dp")


def make_secagg_dp(clip_norm: float = 1.0, noise_multiplier: float = 1.0, clients: int | None = None,
                   dimension: int | None = None, min_clients: int | None = None, bits: int | None = 32,
                   granularity: float | None = None, rotation_seed: str | None = None,
                   dropout_fraction: float | None = None, **options: Any) -> Private:
    """SecAgg+ with the distributed discrete Gaussian. ``clients`` and ``dimension`` describe
    the round (drivers pass them); ``min_clients`` defaults to the protocol's threshold;
    ``rotation_seed`` (64 hex digits) replaces the public default rotation seed."""
    if clients is None or dimension is None:
        raise ConfigurationError("mode 'secagg+dp' needs clients= and dimension= (the round's size)")
    private = _private_options(options)
    if dropout_fraction is not None:
        options["dropout_fraction"] = dropout_fraction  # what the inner SecAgg+ graph is sized for
    inner = make_aggregator("secagg+", **options)
    if min_clients is None:
        min_clients = inner.min_included(clients)
    extra: dict[str, Any] = {}
    if rotation_seed is not None:
        try:
            extra["rotation_seed"] = bytes.fromhex(rotation_seed)
        except ValueError:
            raise ConfigurationError("rotation_seed must be 64 hexadecimal digits") from None
    mechanism = DistributedDiscreteGaussian(clip_norm, noise_multiplier, min_clients, dimension, max_clients=clients,
                                            bits=None if granularity is not None else bits, granularity=granularity,
                                            **extra)
    return Private(inner, mechanism, **private, name="secagg+dp")
