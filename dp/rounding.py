"""Conditional randomized rounding: integers that are right on average and provably short.

The distributed discrete Gaussian rounds each client's (clipped, scaled, rotated) vector to the
integer grid before adding integer noise. Rounding coordinate ``x_i`` up with probability equal
to its fractional part keeps it unbiased, but can stretch the vector's L2 norm, i.e. the
sensitivity the noise must cover. Kairouz, Liu & Steinke ("The Distributed Discrete Gaussian
Mechanism for Federated Learning with Secure Aggregation", ICML 2021, arXiv:2102.06387; the
conditional randomized rounding bound, which the authors' reference code cites as Theorem 1)
therefore re-draw the rounding until its norm is within a bound that holds with probability
at least ``1 - beta`` for any ``||x||_2 <= c`` in dimension ``d``::

    bound^2 = min( c^2 + d/4 + sqrt(2 ln(1/beta)) * (c + sqrt(d)/2),  (c + sqrt(d))^2 )

Why it holds (re-derived here): with ``p_i`` the fractional parts, ``E ||x~||^2 = ||x||^2 +
sum p_i (1 - p_i) <= c^2 + d/4``; each ``x~_i^2`` takes one of two values ``floor(x_i)^2`` and
``(floor(x_i) + 1)^2``, which differ by ``|2 floor(x_i) + 1| <= 2 |x_i| + 1``, so Hoeffding's
inequality with ``sum (2|x_i| + 1)^2 <= (2c + sqrt(d))^2`` gives the deviation term
``sqrt(ln(1/beta) / 2) (2c + sqrt(d))``. The second term always holds, since every coordinate
moves by less than 1. With ``beta = 0`` nothing is conditioned and the rounding is exactly
unbiased; with ``beta > 0`` a try is accepted with probability at least ``1 - beta``, at the
cost of a small bias (bounded in the paper).

The accepted vector always satisfies ``||x~||_2 <= rounding_norm_bound(c, d, beta)``: the check
is done in exact integer arithmetic against the float the function returns (itself rounded
up), so the sensitivity handed to the accountant is never exceeded.
"""

from __future__ import annotations

import math
import os
from fractions import Fraction

import numpy as np
import numpy.typing as npt

from dp.rotation import checked_vector
from privagg.errors import ConfigurationError, InvalidUpdate, PrivaggError

__all__ = [
    "DEFAULT_BETA",
    "ConditionalRoundingFailed",
    "rounding_norm_bound",
    "conditional_round",
]

DEFAULT_BETA = math.exp(-0.5)
DEFAULT_MAX_TRIES = 100  # a try succeeds with probability >= 1 - beta: 0.61^100 ~ 1e-22
# The largest c accepted: beyond 2^52 every float is an integer and rounding is moot; below
# it every coordinate and its rounding fit an int64.
C_MAX = 2.0**52
# Slack for an input whose norm exceeds c by float rounding only (e.g. after a rotation).
_NORM_SLACK = 1e-9


class ConditionalRoundingFailed(PrivaggError):
    """Every try of conditional randomized rounding exceeded the L2 bound.

    With ``||x||_2 <= c`` each try succeeds with probability at least ``1 - beta``, so this
    means ``beta`` is very close to 1 or ``max_tries`` is very small.
    """

    def __init__(self, tries: int, bound: float, beta: float) -> None:
        self.tries = tries
        self.bound = bound
        self.beta = beta
        super().__init__(
            f"randomized rounding exceeded the L2 bound {bound:.6g} in all {tries} tries "
            f"(beta={beta:g}): use a smaller beta or more tries"
        )


def _checked_c(c: float) -> float:
    if isinstance(c, bool) or not isinstance(c, (int, float, np.integer, np.floating)):
        raise ConfigurationError(f"c must be a real number, not {type(c).__name__}")
    if not (math.isfinite(c) and 0 <= c <= C_MAX):
        raise ConfigurationError(f"c must be finite and in [0, 2^52], got {c!r}")
    return float(c)


def _checked_beta(beta: float) -> float:
    if isinstance(beta, bool) or not isinstance(beta, (int, float, np.integer, np.floating)):
        raise ConfigurationError(f"beta must be a real number, not {type(beta).__name__}")
    if not 0 <= beta < 1:  # also refuses NaN
        raise ConfigurationError(f"beta must be in [0, 1), got {beta!r}")
    return float(beta)


def rounding_norm_bound(c: float, d: int, beta: float) -> float:
    """The L2 norm every output of ``conditional_round(x, c, beta)`` with ``len(x) == d``
    respects (see the module docstring), rounded up."""
    c = _checked_c(c)
    beta = _checked_beta(beta)
    if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1:
        raise ConfigurationError(f"d must be a positive int, got {d!r}")
    root_d = math.sqrt(int(d))
    bound = c + root_d
    if beta > 0:
        squared = c * c + d / 4 + math.sqrt(-2.0 * math.log(beta)) * (c + root_d / 2)
        bound = min(bound, math.sqrt(squared))
    # A few correctly rounded operations on positive numbers, no cancellation: 2^-50 relative
    # (8 ulp) covers them, so the float returned is at least the real bound.
    return bound * (1.0 + 2.0**-50)


def _sum_of_squares(values: npt.NDArray[np.int64], largest: float) -> int:
    """``sum(values^2)`` exactly, for int64 ``values`` of magnitude at most ``largest``."""
    if values.size * (largest + 1.0) ** 2 < 2.0**62:
        return int(np.dot(values, values))  # no int64 overflow possible
    return sum(v * v for v in values.tolist())


def conditional_round(
    x: npt.ArrayLike,
    c: float,
    beta: float = DEFAULT_BETA,
    max_tries: int = DEFAULT_MAX_TRIES,
) -> npt.NDArray[np.int64]:
    """Stochastically round the 1-D vector ``x`` (``||x||_2 <= c``) to int64, re-drawing until
    the result's L2 norm is at most ``rounding_norm_bound(c, len(x), beta)``.

    Each coordinate goes up with probability equal to its fractional part (to within 2^-53),
    from the OS's CSPRNG. Raises ``ConditionalRoundingFailed`` when ``max_tries`` tries all
    exceed the bound.
    """
    c = _checked_c(c)
    beta = _checked_beta(beta)
    if isinstance(max_tries, bool) or not isinstance(max_tries, (int, np.integer)) or max_tries < 1:
        raise ConfigurationError(f"max_tries must be a positive int, got {max_tries!r}")
    values = checked_vector(x, "the vector to round")
    if math.sqrt(float(np.dot(values, values))) > c * (1.0 + _NORM_SLACK):
        raise InvalidUpdate(f"the vector's L2 norm exceeds c={c:g}: clip it before rounding")

    bound = rounding_norm_bound(c, values.size, beta)
    bound_squared = Fraction(bound) ** 2
    floors = np.floor(values)
    # x - floor(x) is exact in floating point, and so is scaling it by 2^53; comparing it with
    # a uniform 53-bit integer rounds up with probability ceil(frac * 2^53) / 2^53.
    thresholds = (values - floors) * 2.0**53
    base = floors.astype(np.int64)
    for _ in range(int(max_tries)):
        words = np.frombuffer(os.urandom(8 * values.size), dtype="<u8")
        up = (words >> np.uint64(11)).astype(np.float64) < thresholds
        rounded = base + up
        if _sum_of_squares(rounded, c + 1.0) <= bound_squared:
            return rounded
    raise ConditionalRoundingFailed(int(max_tries), bound, beta)
