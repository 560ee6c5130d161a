"""The two questions asked before private training: what epsilon does this noise give, and what
noise gives this epsilon?

Both describe the same event, ``steps`` rounds of a Gaussian mechanism on a Poisson sample
with rate ``sampling_rate``, and hand it to an accountant picked by name (``"rdp"``, fast, or
``"pld"``, tighter). :func:`calibrate` inverts :func:`epsilon`, which decreases with the noise
multiplier: it brackets the answer by doubling, then runs Brent's method on log(sigma), and
finally checks the answer, so the returned multiplier provably meets the target under the
same accountant.
"""

from __future__ import annotations

import math
from typing import Any

from scipy import optimize

from dp.accountant import PrivacyAccountant, check_delta
from dp.events import GaussianEvent, PoissonSampledEvent
from dp.pld import PldAccountant
from dp.rdp import RdpAccountant
from privagg.errors import ConfigurationError

__all__ = ["epsilon", "calibrate", "make_accountant", "ACCOUNTANTS",
           "MIN_NOISE_MULTIPLIER", "MAX_NOISE_MULTIPLIER"]

ACCOUNTANTS: dict[str, type[PrivacyAccountant]] = {"rdp": RdpAccountant, "pld": PldAccountant}

#: The bracket searched by :func:`calibrate`. Below 0.01 no useful guarantee remains; above
#: 1e4 the signal is gone, so a target unmet there is reported as unreachable.
MIN_NOISE_MULTIPLIER = 1e-2
MAX_NOISE_MULTIPLIER = 1e4


def make_accountant(name: str) -> PrivacyAccountant:
    """A fresh accountant by name: ``"rdp"`` or ``"pld"``."""
    cls = ACCOUNTANTS.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ConfigurationError(f"unknown accountant {name!r} (choose from {', '.join(ACCOUNTANTS)})")
    return cls()


def _check_steps(steps: Any, minimum: int) -> int:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < minimum:
        raise ConfigurationError(f"steps must be an integer >= {minimum}, got {steps!r}")
    return steps


def epsilon(sampling_rate: float, noise_multiplier: float, steps: int, delta: float,
            accountant: str = "rdp") -> float:
    """Epsilon at ``delta`` after ``steps`` Poisson-sampled Gaussian steps (DP-SGD, DP-FedAvg)."""
    event = PoissonSampledEvent(sampling_rate, GaussianEvent(noise_multiplier))
    steps = _check_steps(steps, 0)
    delta = check_delta(delta)
    return make_accountant(accountant).compose(event, steps).get_epsilon(delta)


def epsilon_and_order(sampling_rate: float, noise_multiplier: float, steps: int, delta: float,
                      accountant: str = "rdp") -> tuple[float, float | None]:
    """:func:`epsilon`, with the RDP order that achieves it (``None`` for PLD)."""
    event = PoissonSampledEvent(sampling_rate, GaussianEvent(noise_multiplier))
    steps = _check_steps(steps, 0)
    delta = check_delta(delta)
    composed = make_accountant(accountant).compose(event, steps)
    if isinstance(composed, RdpAccountant):
        eps, order = composed.get_epsilon_and_order(delta)
        return float(eps), float(order)
    return float(composed.get_epsilon(delta)), None


def calibrate(target_epsilon: float, sampling_rate: float, steps: int, delta: float,
              accountant: str = "rdp", tolerance: float = 1e-4) -> float:
    """The smallest noise multiplier whose epsilon at ``delta`` is at most ``target_epsilon``.

    The answer ``s`` satisfies ``epsilon(..., s, ...) <= target_epsilon`` and is within a
    relative ``tolerance`` of the exact smallest such multiplier. Raises ConfigurationError
    when no multiplier in [MIN_NOISE_MULTIPLIER, MAX_NOISE_MULTIPLIER] reaches the target, or
    when even the smallest one already does (the target does not constrain the noise).
    """
    if (isinstance(target_epsilon, bool) or not isinstance(target_epsilon, (int, float))
            or not math.isfinite(target_epsilon) or target_epsilon <= 0):
        raise ConfigurationError(f"target_epsilon must be a finite number > 0, got {target_epsilon!r}")
    if (isinstance(tolerance, bool) or not isinstance(tolerance, (int, float))
            or not 0.0 < tolerance <= 0.1):
        raise ConfigurationError(f"tolerance must be in (0, 0.1], got {tolerance!r}")
    PoissonSampledEvent(sampling_rate, GaussianEvent(1.0))  # validates the sampling rate
    steps = _check_steps(steps, 1)
    delta = check_delta(delta)
    make_accountant(accountant)  # validates the name
    target = float(target_epsilon)

    seen: dict[float, float] = {}

    def spent(noise: float) -> float:
        if noise not in seen:
            seen[noise] = epsilon(sampling_rate, noise, steps, delta, accountant)
        return seen[noise]

    # Start where the answer probably is: RDP's answer bounds PLD's from above.
    start = 1.0
    if accountant != "rdp":
        try:
            start = calibrate(target, sampling_rate, steps, delta, "rdp", tolerance)
        except ConfigurationError:
            pass
    low, high = start, start
    if spent(high) > target:
        while True:
            low, high = high, high * 2.0
            if high > MAX_NOISE_MULTIPLIER:
                if spent(MAX_NOISE_MULTIPLIER) > target:
                    raise ConfigurationError(
                        f"target epsilon {target:g} is unreachable: even noise multiplier "
                        f"{MAX_NOISE_MULTIPLIER:g} gives epsilon {spent(MAX_NOISE_MULTIPLIER):.6g} "
                        f"(sampling rate {sampling_rate:g}, {steps} steps, delta {delta:g})")
                high = MAX_NOISE_MULTIPLIER
                break
            if spent(high) <= target:
                break
    else:
        while True:
            low = high / 2.0
            if low < MIN_NOISE_MULTIPLIER:
                if spent(MIN_NOISE_MULTIPLIER) <= target:
                    raise ConfigurationError(
                        f"target epsilon {target:g} is met even with noise multiplier "
                        f"{MIN_NOISE_MULTIPLIER:g}: it does not constrain the noise")
                low = MIN_NOISE_MULTIPLIER
                break
            if spent(low) > target:
                break
            high = low

    # Invariant: spent(low) > target >= spent(high). Solve on log(sigma) to relative precision.
    step = tolerance / 4.0
    root = optimize.brentq(lambda t: spent(math.exp(t)) - target, math.log(low), math.log(high),
                           xtol=step, rtol=1e-12)
    answer = math.exp(root)
    for _ in range(8):  # land on the safe side of the target, never past the bracket
        if answer >= high:
            break
        if spent(answer) <= target:
            return answer
        answer *= math.exp(step)
    return high
