"""Exact sampling of the discrete Gaussian N_Z(0, sigma^2), vectorised over numpy arrays.

The discrete Gaussian puts mass proportional to ``exp(-x^2 / (2 sigma^2))`` on every integer
``x``. We sample it the way Canonne, Kamath and Steinke do ("The Discrete Gaussian for
Differential Privacy", NeurIPS 2020, Algorithms 1-3), with ``t = floor(sigma) + 1``:

1. discrete Laplace magnitude: ``U`` uniform on ``{0, ..., t-1}``, kept with probability
   ``exp(-U/t)``; ``V`` geometric with ``P(V >= v) = exp(-v)``; ``M = U + t V``. A random sign,
   and the pair (negative sign, ``M = 0``) is rejected, so ``P(+-M) ∝ exp(-M/t)``;
2. discrete Gaussian by rejection: keep the signed ``M`` with probability
   ``exp(-(M - sigma^2/t)^2 / (2 sigma^2))``.

Everything restarts from step 1 on any rejection, so a pending sample is accepted exactly with
the distribution of the nested loops of the paper. ``V`` is drawn as ``floor(-ln W)`` for a
uniform ``W`` (the same geometric law as the paper's chain of Bernoulli(exp(-1)) trials, with
one uniform instead of several).

Why this is exact
-----------------
Every random decision above has the form "is a uniform real ``W`` in [0, 1) below
``exp(-q)``?" for an exactly known rational ``q`` (``sigma^2`` is a rational: the float given is
taken as the exact binary fraction it is, see ``DiscreteGaussianSampler.sigma_squared``). That
event has probability exactly ``exp(-q)``. We never hold ``W`` whole: we draw its first 53 bits
from the operating system's CSPRNG (``os.urandom``), which pins ``W`` to an interval of width
2^-53, and decide in float64 only when the *whole interval*, widened by a rigorous bound on
every floating-point error involved, lies on one side of the threshold. The bounds assume that
numpy's float64 ``log`` is accurate to 2^-44 relative (512 ulp; glibc and numpy's SIMD kernels
are within a few ulp, and the test suite measures it on the running platform); every other
float operation is an IEEE-754 correctly rounded one whose error we bound explicitly, with a
margin of 2^-42 relative that dwarfs them all. A comparison the floats cannot settle (the
band of doubt is about 2^-40 wide, so about one comparison in 10^11) goes to an exact path:
more bits of ``W`` are drawn 64 at a time and compared, in exact rational arithmetic, with
an enclosure of ``exp(-q)`` from Python's ``decimal`` module (whose ``exp`` is correctly
rounded), with the precision raised until the comparison is decided. Both paths therefore
return the indicator of ``W < exp(-q)`` for the same ``W``, so the sampler's output
distribution is *exactly* that of Canonne, Kamath and Steinke's algorithm run on ideal
uniform reals, i.e. exactly N_Z(0, sigma^2). The only randomness is ``os.urandom``; numpy's
and Python's generators are never touched.

Domain: ``2^-40 <= sigma <= 2^40``, which keeps every integer of the float path below 2^53 and
every float finite.
"""

from __future__ import annotations

import decimal
import math
import numbers
import os
import time
from collections.abc import Callable
from fractions import Fraction

import numpy as np
import numpy.typing as npt

from privagg.errors import ConfigurationError

__all__ = [
    "DiscreteGaussianSampler",
    "sample_discrete_gaussian",
    "discrete_gaussian_pmf",
    "discrete_gaussian_variance",
]

SIGMA_MIN = 2.0**-40
SIGMA_MAX = 2.0**40

# Relative margin applied to every floating-point quantity in the fast path. It has to cover
# (a) numpy's log, assumed accurate to 2^-44 relative, and (b) a handful of correctly rounded
# operations of 2^-53 each (at most 16 of them for the Gaussian exponent, see _gaussian_exponent).
_MARGIN = 2.0**-42
_TWO_POW_MINUS_53 = 2.0**-53
# Set to False (tests only) to send every decision down the exact path.
_FAST_PATH_ENABLED = True

# An upper bound on ln 2, as an exact rational: ln 2 = 0.693147...
_LN2_UPPER = Fraction(6932, 10000)
_START_DIGITS = 40  # 40 significant decimal digits ~ 2^-129, far finer than 53 bits of W
_DIGITS_STEP = 20  # ~ 66 bits per round, more than the 64 bits W gains per round


def _random_words(count: int) -> np.ndarray:
    """``count`` independent uniform 64-bit words from the operating system's CSPRNG."""
    return np.frombuffer(os.urandom(8 * count), dtype="<u8").astype(np.uint64, copy=False)


# --------------------------------------------------------------------------------------------
# The exact path: one uniform real revealed lazily, compared with exp(-q) to any precision.
# --------------------------------------------------------------------------------------------


def _exp_neg_enclosure(q: Fraction, digits: int) -> tuple[Fraction, Fraction]:
    """Rationals ``lo <= exp(-q) <= hi`` with ``hi - lo`` about ``10^(1-digits)``."""
    wide = decimal.Context(
        prec=digits + 10, Emin=decimal.MIN_EMIN, Emax=decimal.MAX_EMAX, traps=[]
    )
    numerator, denominator = decimal.Decimal(q.numerator), decimal.Decimal(q.denominator)
    wide.rounding = decimal.ROUND_FLOOR
    q_low = wide.divide(numerator, denominator)
    wide.rounding = decimal.ROUND_CEILING
    q_high = wide.divide(numerator, denominator)
    # exp is correctly rounded (half-even) whatever the context's rounding mode: its result,
    # at most 1, is within half a unit in the last of `digits` places, i.e. 0.5 * 10^(1-digits).
    narrow = decimal.Context(prec=digits, Emin=decimal.MIN_EMIN, Emax=decimal.MAX_EMAX, traps=[])
    slack = Fraction(1, 10 ** (digits - 1))
    lo = Fraction(narrow.exp(q_high.copy_negate())) - slack
    hi = Fraction(narrow.exp(q_low.copy_negate())) + slack
    return lo, hi


class _LazyUniform:
    """A uniform real ``W`` in [0, 1) of which only a prefix is known: ``W`` lies in
    ``[numerator / 2^bits, (numerator + 1) / 2^bits)``; more bits are drawn on demand."""

    __slots__ = ("numerator", "bits")

    def __init__(self, prefix: int, bits: int) -> None:
        self.numerator = prefix
        self.bits = bits

    def refine(self) -> None:
        self.numerator = (self.numerator << 64) | int.from_bytes(os.urandom(8), "little")
        self.bits += 64

    def is_below_exp(self, q: Fraction) -> bool:
        """Whether ``W < exp(-q)``, decided exactly for a rational ``q >= 0``."""
        if q == 0:
            return True  # W < 1
        digits = _START_DIGITS
        while True:
            if self.numerator == 0:
                self.refine()  # W = 0 has probability 0; more bits settle its scale
                continue
            if q > _LN2_UPPER * self.bits + 1:
                # exp(-q) < 2^-bits / e <= W: no need to compute a vanishing exponential.
                return False
            lo, hi = _exp_neg_enclosure(q, digits)
            scale = 1 << self.bits
            if (self.numerator + 1) * lo.denominator <= lo.numerator * scale:
                return True  # W < (numerator + 1) / 2^bits <= lo <= exp(-q)
            if self.numerator * hi.denominator >= hi.numerator * scale:
                return False  # W >= numerator / 2^bits >= hi >= exp(-q)
            self.refine()
            digits += _DIGITS_STEP

    def floor_neg_log(self) -> int:
        """``floor(-ln W)``, i.e. the largest ``v >= 0`` with ``W < exp(-v)``, exactly."""
        while self.numerator == 0:
            self.refine()
        estimate = self.bits * math.log(2.0) - math.log(self.numerator + 0.5)
        v = max(int(math.floor(estimate)), 0)
        while v > 0 and not self.is_below_exp(Fraction(v)):
            v -= 1
        while self.is_below_exp(Fraction(v + 1)):
            v += 1
        return v


# --------------------------------------------------------------------------------------------
# The fast path: the same decisions in float64, taken only when provably right.
# --------------------------------------------------------------------------------------------


def _neg_log_bounds(prefix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For ``W`` in ``[prefix, prefix + 1) / 2^53``: floats ``lo <= -ln W <= hi``."""
    low_end = prefix.astype(np.float64) * _TWO_POW_MINUS_53  # exact: prefix < 2^53
    high_end = (prefix + np.uint64(1)).astype(np.float64) * _TWO_POW_MINUS_53  # exact, <= 1
    with np.errstate(divide="ignore"):
        hi = -np.log(low_end) * (1.0 + _MARGIN)  # +inf when the prefix is 0
    lo = -np.log(high_end) * (1.0 - _MARGIN)
    return lo, hi


def _decide_below_exp(
    prefix: np.ndarray,
    q_estimate: np.ndarray,
    q_error: np.ndarray,
    exact_q: Callable[[int], Fraction],
) -> np.ndarray:
    """For each uniform ``W`` given by its 53-bit ``prefix``: whether ``W < exp(-q)``.

    ``q_estimate`` must be within ``q_error`` of the exact ``q`` (``exact_q(i)`` for element
    ``i``), up to the slack ``_MARGIN`` absorbs. Undecided elements take the exact path.
    """
    lo, hi = _neg_log_bounds(prefix)
    q_high = q_estimate + q_error
    q_low = q_estimate - q_error
    below = lo > q_high  # W < 2^-53 (prefix + 1) <= exp(-q_high) <= exp(-q)
    above = hi < q_low  # W >= 2^-53 prefix >= exp(-q_low) >= exp(-q)
    decided = below | above
    if not _FAST_PATH_ENABLED:
        decided[:] = False
    for i in np.flatnonzero(~decided):
        below[i] = _LazyUniform(int(prefix[i]), 53).is_below_exp(exact_q(int(i)))
    return below


def _floor_neg_log(prefix: np.ndarray) -> np.ndarray:
    """``floor(-ln W)`` for each uniform ``W`` given by its 53-bit prefix: geometric draws
    with ``P(V >= v) = exp(-v)``."""
    lo, hi = _neg_log_bounds(prefix)
    floor_lo = np.floor(lo)
    decided = floor_lo == np.floor(hi)  # never true when hi is inf
    if not _FAST_PATH_ENABLED:
        decided[:] = False
    result = floor_lo.astype(np.int64)
    for i in np.flatnonzero(~decided):
        result[i] = _LazyUniform(int(prefix[i]), 53).floor_neg_log()
    return result


def _uniform_below(bound: int, count: int) -> np.ndarray:
    """``count`` uniform integers in ``[0, bound)``, without modulo bias (rejection)."""
    out = np.empty(count, dtype=np.uint64)
    remainder = (1 << 64) % bound
    todo = np.arange(count)
    while todo.size:
        words = _random_words(todo.size)
        if remainder == 0:
            good = np.ones(todo.size, dtype=bool)
        else:
            good = words < np.uint64((1 << 64) - remainder)
        out[todo[good]] = words[good] % np.uint64(bound)
        todo = todo[~good]
    return out.astype(np.int64)


# --------------------------------------------------------------------------------------------
# Parameters.
# --------------------------------------------------------------------------------------------


def _as_rational(value: object, name: str) -> Fraction:
    """The exact rational value of a finite real number, or a ConfigurationError."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, decimal.Decimal)):
        raise ConfigurationError(f"{name} must be a real number, not {type(value).__name__}")
    if isinstance(value, decimal.Decimal):
        finite = value.is_finite()
    else:  # ints and Fractions are finite (and may be too large for a float)
        finite = math.isfinite(value) if isinstance(value, (float, np.floating)) else True
    if not finite:
        raise ConfigurationError(f"{name} must be finite, got {value!r}")
    if isinstance(value, np.integer):
        value = int(value)
    if isinstance(value, np.floating):
        value = float(value)
    return Fraction(value)


def _checked_variance(variance: Fraction, shown: str) -> Fraction:
    if not SIGMA_MIN**2 <= variance <= SIGMA_MAX**2:
        raise ConfigurationError(
            f"sigma must be in [2^-40, 2^40], got {shown}: the discrete Gaussian sampler is "
            f"defined for positive, finite noise scales in that range"
        )
    return variance


class DiscreteGaussianSampler:
    """Exact samples of the discrete Gaussian N_Z(0, sigma^2), from the OS's CSPRNG.

    ``sigma`` (a float, int or Fraction) is taken exactly: ``sigma_squared`` is the exact
    square of the binary fraction a float denotes, and *that* is the variance parameter the
    samples follow; privacy accounting should use it. ``from_variance`` takes ``sigma^2``
    directly, for a variance that is itself a chosen rational.
    """

    __slots__ = ("_variance", "_variance_float", "_t")

    def __init__(self, sigma: float | int | Fraction) -> None:
        exact = _as_rational(sigma, "sigma")
        if exact <= 0:
            raise ConfigurationError(f"sigma must be positive, got {sigma!r}")
        self._setup(_checked_variance(exact * exact, repr(sigma)))

    @classmethod
    def from_variance(cls, variance: float | int | Fraction) -> DiscreteGaussianSampler:
        """The sampler whose parameter ``sigma^2`` is exactly ``variance``."""
        exact = _as_rational(variance, "variance")
        if exact <= 0:
            raise ConfigurationError(f"variance must be positive, got {variance!r}")
        sampler = cls.__new__(cls)
        sampler._setup(_checked_variance(exact, f"sqrt({variance!r})"))
        return sampler

    def _setup(self, variance: Fraction) -> None:
        self._variance = variance
        self._variance_float = float(variance)  # correctly rounded
        # t = floor(sigma) + 1, exactly: floor(sqrt(y)) == isqrt(floor(y)) for real y >= 0.
        self._t = math.isqrt(variance.numerator // variance.denominator) + 1

    @property
    def sigma_squared(self) -> Fraction:
        """The exact variance parameter ``sigma^2`` the samples follow."""
        return self._variance

    @property
    def sigma(self) -> float:
        """``sigma`` as a float (rounded; ``sigma_squared`` is the exact parameter)."""
        return math.sqrt(self._variance_float)

    def __repr__(self) -> str:
        return f"DiscreteGaussianSampler(sigma={self.sigma!r})"

    def sample(self, size: int | tuple[int, ...]) -> npt.NDArray[np.int64]:
        """Independent samples of N_Z(0, sigma^2) as an int64 array of shape ``size``."""
        shape = _checked_shape(size)
        count = math.prod(shape)
        return self._sample_flat(count).reshape(shape)

    def _sample_flat(self, count: int) -> npt.NDArray[np.int64]:
        t = self._t
        out = np.empty(count, dtype=np.int64)
        pending = np.arange(count)
        while pending.size:
            # Discrete Laplace magnitude: U uniform in [0, t), kept with probability exp(-U/t).
            uniform = _uniform_below(t, pending.size)
            words = _random_words(pending.size)
            negative = (words & np.uint64(1)).astype(bool)  # bit 0; the 53 top bits are W
            uniform_float = uniform.astype(np.float64)
            q_estimate = uniform_float / t  # one correctly rounded division
            kept = _decide_below_exp(
                words >> np.uint64(11),
                q_estimate,
                q_estimate * _MARGIN,
                lambda i, uniform=uniform: Fraction(int(uniform[i]), t),
            )
            survivors = np.flatnonzero(kept)
            magnitude = uniform[survivors] + t * _floor_neg_log(
                _random_words(survivors.size) >> np.uint64(11)
            )
            negative = negative[survivors]
            # -0 would count zero twice: reject it (Canonne et al., Algorithm 2).
            signed_ok = ~(negative & (magnitude == 0))
            survivors, magnitude, negative = (
                survivors[signed_ok],
                magnitude[signed_ok],
                negative[signed_ok],
            )
            # Discrete Gaussian: keep with probability exp(-(M - sigma^2/t)^2 / (2 sigma^2)).
            q_estimate, q_error = self._gaussian_exponent(magnitude)
            accepted = _decide_below_exp(
                _random_words(survivors.size) >> np.uint64(11),
                q_estimate,
                q_error,
                lambda i, magnitude=magnitude: self._exact_gaussian_exponent(int(magnitude[i])),
            )
            done = survivors[accepted]
            values = magnitude[accepted]
            out[pending[done]] = np.where(negative[accepted], -values, values)
            still = np.ones(pending.size, dtype=bool)
            still[done] = False
            pending = pending[still]
        return out

    def _gaussian_exponent(self, magnitude: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Float estimates of ``q = (M - s/t)^2 / (2 s)`` (``s = sigma^2``) and error bounds.

        With ``u = 2^-53``, ``A = M + s/t`` and ``S = A^2 / (2 s)``: ``s`` is rounded once,
        ``s/t`` once more (``M`` and ``t`` are exact integers below 2^53), the difference
        ``M - s/t`` then errs by at most ``4 u A``, its square by ``9.1 u A^2`` and the final
        division adds ``2.1 u`` relative: ``|q_estimate - q| <= 12 u S`` (cancellation makes
        the error relative to ``S``, not to ``q``). We allow ``_MARGIN * (q + S)``, 2048 ``u``.
        """
        s = self._variance_float
        m = magnitude.astype(np.float64)
        shift = s / self._t
        difference = m - shift
        q_estimate = difference * difference / (2.0 * s)
        total = m + shift
        scale = total * total / (2.0 * s)
        return q_estimate, _MARGIN * (q_estimate + scale)

    def _exact_gaussian_exponent(self, magnitude: int) -> Fraction:
        s = self._variance
        difference = magnitude - s / self._t
        return difference * difference / (2 * s)


def _checked_shape(size: int | tuple[int, ...]) -> tuple[int, ...]:
    dims = (size,) if not isinstance(size, tuple) else size
    for dim in dims:
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 0:
            raise ConfigurationError(f"size must be a non-negative int or tuple of them, got {size!r}")
    return tuple(int(d) for d in dims)


def sample_discrete_gaussian(
    sigma: float | int | Fraction, size: int | tuple[int, ...]
) -> npt.NDArray[np.int64]:
    """``size`` independent exact samples of N_Z(0, sigma^2) (int64); see the module docstring."""
    return DiscreteGaussianSampler(sigma).sample(size)


# --------------------------------------------------------------------------------------------
# Reference values (floating point; for tests and accounting, not for sampling).
# --------------------------------------------------------------------------------------------

# Beyond this sigma the normaliser is sigma*sqrt(2 pi) and the variance is sigma^2 to double
# precision: by Poisson summation the corrections are of order exp(-2 pi^2 sigma^2) < 1e-500.
_SIGMA_CONTINUUM = 8.0


def _variance_of(sigma: float | int | Fraction) -> float:
    return float(DiscreteGaussianSampler(sigma).sigma_squared)


def _normaliser(variance: float) -> tuple[float, np.ndarray, np.ndarray]:
    """The normaliser ``sum_x exp(-x^2 / (2 s))`` and the support and weights summed."""
    sigma = math.sqrt(variance)
    reach = math.ceil(40.0 * sigma) + 1  # exp(-800) is below every double's precision
    support = np.arange(-reach, reach + 1, dtype=np.float64)
    weights = np.exp(-(support * support) / (2.0 * variance))
    return float(weights.sum()), support, weights


def discrete_gaussian_pmf(sigma: float | int | Fraction, values: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """``P(X = x)`` for ``X ~ N_Z(0, sigma^2)`` at each integer in ``values`` (float64)."""
    variance = _variance_of(sigma)
    points = np.asarray(values)
    if points.dtype.kind not in "iu":
        raise ConfigurationError(f"values must be integers, got dtype {points.dtype}")
    x = points.astype(np.float64)
    if math.sqrt(variance) >= _SIGMA_CONTINUUM:
        total = math.sqrt(2.0 * math.pi * variance)
    else:
        total = _normaliser(variance)[0]
    return np.exp(-(x * x) / (2.0 * variance)) / total


def discrete_gaussian_variance(sigma: float | int | Fraction) -> float:
    """The variance of N_Z(0, sigma^2): slightly below ``sigma^2`` for sigma below ~1,
    equal to it to double precision from sigma ~ 1.5 on."""
    variance = _variance_of(sigma)
    if math.sqrt(variance) >= _SIGMA_CONTINUUM:
        return variance
    total, support, weights = _normaliser(variance)
    return float((support * support * weights).sum() / total)


def _speed_report() -> None:
    for sigma in (1.0, 10.0, 1000.0):
        sampler = DiscreteGaussianSampler(sigma)
        sampler.sample(10_000)  # warm up
        count = 1_000_000
        start = time.perf_counter()
        sampler.sample(count)
        seconds = time.perf_counter() - start
        print(f"sigma={sigma:>7g}: {count / seconds:,.0f} samples/s ({seconds * 1e3:.0f} ms per 1e6)")


if __name__ == "__main__":
    _speed_report()
