"""DP mechanisms that wrap any aggregator: where the noise is added, and how much.

* :class:`CentralGaussian`: clients clip to L2 norm ``C``; the server adds ``N(0, (z C)^2)`` to
  the aggregate. Protects the released aggregate against outsiders; the server itself sees the
  exact (clipped) aggregate, so combine it with secure aggregation to keep individual updates
  from the server.
* :class:`LocalGaussian`: each client clips and adds ``N(0, (z C)^2)`` to its own update before
  encoding. Each update is private on its own, even against the server, at a large cost in
  utility.
* :class:`DistributedDiscreteGaussian`: Kairouz, Liu and Steinke 2021. Each client adds a
  small *integer* discrete Gaussian; secure aggregation sums them, so the server only ever sees
  a sum carrying the full noise. The only mechanism here with a formal guarantee under finite
  precision: the noise is exact integer noise from a CSPRNG (see :mod:`dp.discrete_gaussian`).

The continuous mechanisms draw floating-point Gaussian noise from a CSPRNG-seeded generator:
their guarantee holds for ideal real-valued noise, not bit for bit on real hardware (Mironov
2012), which is the usual practice and is stated here so nobody mistakes it for more.
"""

from __future__ import annotations

import hashlib
import math
import struct
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from dp.clipping import check_positive, clip_l2
from dp.discrete_gaussian import DiscreteGaussianSampler
from dp.events import DistributedDiscreteGaussianEvent, GaussianEvent, PrivacyEvent
from dp.noise import gaussian_noise
from dp.rotation import padded_dimension, rotate, unrotate
from dp.rounding import DEFAULT_BETA, conditional_round, rounding_norm_bound
from privagg.encoding.fixed_point import FixedPoint
from privagg.errors import ConfigurationError
from privagg.interface import Aggregator

__all__ = ["Mechanism", "CentralGaussian", "LocalGaussian", "DistributedDiscreteGaussian", "DEFAULT_ROTATION_SEED"]

#: The rotation is public randomness that must be the same for the server and every client,
#: which may build their configurations independently (Flower nodes do): a fixed default,
#: mixed with the round id for each round. Its only job is to spread a vector's energy over
#: the coordinates; the privacy analysis holds for any rotation.
DEFAULT_ROTATION_SEED = hashlib.sha256(b"privagg/dp/ddg-rotation/default-seed/v1").digest()


class Mechanism(ABC):
    """Where and how much noise one round adds, and the privacy event it costs."""

    placement: ClassVar[str]

    def required_clients(self) -> int:
        """The fewest included clients for which the round's noise is as calibrated."""
        return 1

    @abstractmethod
    def event(self, clients: int | None = None) -> PrivacyEvent:
        """The privacy event of one round (before client sampling is accounted for), with
        ``clients`` contributions (default: the number the mechanism is calibrated for)."""

    def adapt(self, inner: Aggregator) -> Aggregator:
        """The aggregator the mechanism runs its clients' values through."""
        return inner

    @abstractmethod
    def client_update(self, vector: npt.NDArray[np.float64], *, round_id: int) -> npt.NDArray[np.float64]:
        """What a client hands to the protocol instead of its raw (flat) update."""

    def finish(self, aggregate: npt.NDArray[np.float64], *, round_id: int) -> npt.NDArray[np.float64]:
        """The released aggregate, from what the protocol summed."""
        return aggregate

    def encoded_dimension(self, dimension: int | None) -> int | None:
        """The length of what :meth:`client_update` hands the protocol, for updates of ``dimension``."""
        return dimension

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """Public parameters, for reports."""


@dataclass(frozen=True)
class _Gaussian(Mechanism):
    """Clipping to ``clip_norm`` and Gaussian noise of ``noise_multiplier * clip_norm``: one
    Gaussian mechanism of sensitivity ``C`` per round, wherever the noise is added."""

    clip_norm: float
    noise_multiplier: float

    def __post_init__(self) -> None:
        check_positive("clip_norm", self.clip_norm)
        check_positive("noise_multiplier", self.noise_multiplier)

    def event(self, clients: int | None = None) -> PrivacyEvent:
        return GaussianEvent(self.noise_multiplier)

    def _noise(self, size: int) -> npt.NDArray[np.float64]:
        return gaussian_noise(self.noise_multiplier * self.clip_norm, size)

    def describe(self) -> dict[str, Any]:
        return {"mechanism": f"{self.placement}-gaussian", "clip_norm": self.clip_norm,
                "noise_multiplier": self.noise_multiplier}


@dataclass(frozen=True)
class CentralGaussian(_Gaussian):
    placement: ClassVar[str] = "central"

    def client_update(self, vector: npt.NDArray[np.float64], *, round_id: int) -> npt.NDArray[np.float64]:
        return clip_l2(vector, self.clip_norm)

    def finish(self, aggregate: npt.NDArray[np.float64], *, round_id: int) -> npt.NDArray[np.float64]:
        return aggregate + self._noise(aggregate.shape[0])


@dataclass(frozen=True)
class LocalGaussian(_Gaussian):
    """Each client's release is a Gaussian mechanism on its own update."""

    placement: ClassVar[str] = "local"

    def client_update(self, vector: npt.NDArray[np.float64], *, round_id: int) -> npt.NDArray[np.float64]:
        clipped = clip_l2(vector, self.clip_norm)
        return clipped + self._noise(clipped.shape[0])


@dataclass(frozen=True)
class DistributedDiscreteGaussian(Mechanism):
    """The distributed discrete Gaussian of Kairouz, Liu and Steinke (ICML 2021).

    Client: flatten, clip to L2 norm ``clip_norm``, pad to a power of two and rotate with a
    randomized Walsh-Hadamard transform (public seed, fresh per round), divide by the
    granularity ``gamma``, round with conditional randomized rounding (norm bound
    ``Delta_2``), add discrete Gaussian noise of variance ``sigma_i^2`` per coordinate. Server:
    the protocol sums the integers; the mechanism multiplies by ``gamma`` and rotates back.

    ``noise_multiplier`` ``z`` fixes the *total* noise: each client adds variance
    ``sigma_i^2 = (z C / gamma)^2 / n`` with ``n = min_clients``, so any ``n`` contributions
    sum to a standard deviation of ``z C`` in the update's units, like central DP with the same
    ``z``; more contributors only add noise. Set ``min_clients`` to the fewest clients the
    protocol will ever sum (secure aggregation's threshold, say): a round that includes fewer
    is accounted with the noise it really carried, and its release is refused.

    Modulus and overflow: every client's integers are kept within ``+-B`` where ``B`` is
    ``k_stddevs`` standard deviations of one client's coordinate (signal spread by the
    rotation, rounding, noise); a value beyond is clipped to ``+-B``, which happens with
    probability at most ``2 exp(-k^2/2)`` per coordinate (sub-Gaussian tail; 3e-8 at the
    default ``k = 6``) and is post-processing of that client's private output. Then
    ``max_clients * B < 2^(bits-1)`` (``max_clients`` defaults to ``min_clients``), so the
    modular sum can never wrap around. Give ``bits`` (``gamma`` is then the finest granularity
    that fits) or ``granularity`` (``bits`` is then the fewest that fit).
    """

    clip_norm: float
    noise_multiplier: float
    min_clients: int
    dimension: int
    max_clients: int | None = None
    bits: int | None = 32
    granularity: float | None = None
    beta: float = DEFAULT_BETA
    k_stddevs: float = 6.0
    rotation_seed: bytes = field(default=DEFAULT_ROTATION_SEED, repr=False)
    placement: ClassVar[str] = "distributed"

    def __post_init__(self) -> None:
        check_positive("clip_norm", self.clip_norm)
        check_positive("noise_multiplier", self.noise_multiplier)
        check_positive("k_stddevs", self.k_stddevs)
        if self.max_clients is None:
            object.__setattr__(self, "max_clients", self.min_clients)
        for name in ("min_clients", "dimension", "max_clients"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigurationError(f"{name} must be a positive integer, got {value!r}")
        if len(self.rotation_seed) != 32:
            raise ConfigurationError("rotation_seed must be 32 bytes")
        if (self.bits is None) == (self.granularity is None):
            raise ConfigurationError("give exactly one of bits and granularity")
        n, C, z, k = self.min_clients, self.clip_norm, self.noise_multiplier, self.k_stddevs
        m = self.max_clients
        assert m is not None
        if m < n:
            raise ConfigurationError(f"max_clients ({m}) must be at least min_clients ({n})")
        d = padded_dimension(self.dimension)
        # Per-coordinate variance of one client, in units of the grid, is
        #   (C / gamma)^2 (1/d + z^2/n) + 1/4   (rotated signal, noise, rounding)
        # and the largest round must fit:  max_clients * k * std < 2^(bits - 1).
        spread = C * C * (1.0 / d + z * z / n)
        if self.granularity is None:
            assert self.bits is not None
            if not 8 <= self.bits <= 62:
                raise ConfigurationError(f"bits must be in [8, 62], got {self.bits}")
            # (minus n: each client's bound B = ceil(k std) may round up by one)
            room = ((2 ** (self.bits - 1) - 1 - m) / (m * k)) ** 2 - 0.25
            if room <= 0:
                raise ConfigurationError(f"{self.bits} bits cannot hold {m} clients' noise at k={k:g} std devs")
            gamma = math.sqrt(spread / room) * (1 + 1e-9)
            bits = self.bits
        else:
            gamma = check_positive("granularity", self.granularity)
            std = math.sqrt(spread / gamma**2 + 0.25)
            bits = max(8, math.ceil(math.log2(m * math.ceil(k * std) + 1)) + 1)
            if bits > 62:
                raise ConfigurationError(f"granularity {gamma:g} needs {bits} bits, more than 62")
        variance = Fraction((z * C / gamma) ** 2 / n).limit_denominator(1 << 32)
        sampler = DiscreteGaussianSampler.from_variance(variance)
        per_client_std = math.sqrt(spread / gamma**2 + 0.25)
        bound = math.ceil(self.k_stddevs * per_client_std)
        encoding = FixedPoint(bits=bits, clip=float(bound), scale=1.0, max_clients=m)
        encoding.check_capacity(m)
        object.__setattr__(self, "_derived", {
            "padded_dimension": d, "gamma": gamma, "bits": bits, "sampler": sampler,
            "l2_sensitivity": rounding_norm_bound(C / gamma, d, self.beta), "encoding": encoding,
        })

    def required_clients(self) -> int:
        return self.min_clients

    # -- derived, public parameters --------------------------------------------------------------
    @property
    def gamma(self) -> float:
        return float(self._derived["gamma"])  # type: ignore[attr-defined]

    @property
    def modulus_bits(self) -> int:
        return int(self._derived["bits"])  # type: ignore[attr-defined]

    @property
    def padded_dimension(self) -> int:
        return int(self._derived["padded_dimension"])  # type: ignore[attr-defined]

    def encoded_dimension(self, dimension: int | None) -> int:
        return self.padded_dimension

    @property
    def client_variance(self) -> Fraction:
        """The exact variance parameter of each client's discrete Gaussian (grid units)."""
        return self._derived["sampler"].sigma_squared  # type: ignore[attr-defined,no-any-return]

    @property
    def l2_sensitivity(self) -> float:
        """``Delta_2``: the L2 norm bound of a client's rounded vector (grid units)."""
        return float(self._derived["l2_sensitivity"])  # type: ignore[attr-defined]

    @property
    def encoding(self) -> FixedPoint:
        return self._derived["encoding"]  # type: ignore[attr-defined,no-any-return]

    def _round_seed(self, round_id: int) -> bytes:
        label = b"privagg/dp/ddg-rotation/v1"
        return hashlib.sha256(label + self.rotation_seed + struct.pack("<Q", round_id)).digest()

    # -- the mechanism ---------------------------------------------------------------------------
    def event(self, clients: int | None = None) -> PrivacyEvent:
        delta2 = self.l2_sensitivity
        # The sampler's variance is an exact rational; its float square root is rounded down a
        # hair so the accountant never credits more noise than is drawn.
        return DistributedDiscreteGaussianEvent(
            sigma=math.sqrt(float(self.client_variance)) * (1 - 1e-12), num_clients=clients or self.min_clients,
            l2_sensitivity=delta2, dimension=self.padded_dimension)

    def adapt(self, inner: Aggregator) -> Aggregator:
        return inner.with_encoding(self.encoding)

    def client_update(self, vector: npt.NDArray[np.float64], *, round_id: int) -> npt.NDArray[np.float64]:
        if vector.shape[0] != self.dimension:
            raise ConfigurationError(
                f"update has {vector.shape[0]} values, the mechanism was set up for {self.dimension}")
        clipped = clip_l2(vector, self.clip_norm)
        scaled = rotate(clipped, self._round_seed(round_id)) / self.gamma
        c = self.clip_norm / self.gamma
        rounded = conditional_round(scaled, c, self.beta)
        noised = rounded + self._derived["sampler"].sample(rounded.shape[0])  # type: ignore[attr-defined]
        return noised.astype(np.float64)

    def finish(self, aggregate: npt.NDArray[np.float64], *, round_id: int) -> npt.NDArray[np.float64]:
        return unrotate(aggregate * self.gamma, self._round_seed(round_id), self.dimension)

    def describe(self) -> dict[str, Any]:
        return {"mechanism": "distributed-discrete-gaussian", "clip_norm": self.clip_norm,
                "noise_multiplier": self.noise_multiplier, "min_clients": self.min_clients,
                "gamma": self.gamma, "modulus_bits": self.modulus_bits,
                "client_sigma": math.sqrt(float(self.client_variance)), "l2_sensitivity": self.l2_sensitivity}
