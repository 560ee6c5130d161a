"""Privacy loss distributions: the numerics, then :class:`PldAccountant` on top of them.

A pair of neighbouring output distributions (P, Q) is summarised by the law of the privacy
loss L = log(P(x)/Q(x)), x ~ P; then delta(eps) = E[(1 - exp(eps - L))_+] + P(L = inf), and
composing mechanisms adds independent losses, i.e. convolves their distributions. We keep the
distribution on a grid {k * interval} and convolve by FFT.

Every approximation errs on the pessimistic side, so reported epsilons are upper bounds:

* discretisation by *connect-the-dots* (Doroshenko, Ghazi, Kamath, Kumar, Manurangsi 2022):
  the loss mass in each grid cell is split between the cell's two ends so that both the P-mass
  and the Q-mass are kept. The resulting delta(e^eps) curve is the chord of the true (convex)
  curve between grid points, hence above it, and the error is second order in the interval;
* tails: each convolution keeps only the window outside which Chernoff bounds (taken before
  the FFT, so round-off cannot pose as mass) leave at most ``tail_mass_truncation`` per side;
  that bounded mass is added back at the lowest kept loss and at +infinity;
* when a composed distribution outgrows ``max_points`` the grid interval is doubled, again by
  connect-the-dots. The distribution is then wide, so the extra second-order error is
  negligible, while FFT sizes stay bounded.

Each step keeps delta(eps) pointwise above the truth for *every* real eps (negative ones too);
since composing is integrating one factor's delta curve against the other's loss law, the
approximations compose into an upper bound of the composition.

Poisson subsampling under add/remove adjacency has two dominating pairs, "remove" (P is the
mixture (1-q) N(0, s^2) + q N(1, s^2), Q = N(0, s^2)) and "add" (the reverse); each is composed
on its own and the worse of the two answers is reported (as dp_accounting does). Unsampled
Gaussians are merged analytically (1/s^2 adds up) and, when nothing else was composed, answered
by the exact formula of Balle and Wang (2018).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import fft, optimize, signal, special

from dp.accountant import PrivacyAccountant
from dp.events import (
    ComposedEvent,
    GaussianEvent,
    PoissonSampledEvent,
    PrivacyEvent,
    SelfComposedEvent,
    event_from_dict,
)
from privagg.errors import ConfigurationError

__all__ = [
    "PldAccountant",
    "LossDistribution",
    "PldPair",
    "gaussian_delta",
    "gaussian_epsilon",
    "gaussian_pld",
    "subsampled_gaussian_pld",
    "DEFAULT_VALUE_DISCRETIZATION_INTERVAL",
    "DEFAULT_TAIL_MASS_TRUNCATION",
    "DEFAULT_MAX_POINTS",
]

FloatArray = npt.NDArray[np.float64]

DEFAULT_VALUE_DISCRETIZATION_INTERVAL = 1e-4
DEFAULT_TAIL_MASS_TRUNCATION = 1e-15
DEFAULT_MAX_POINTS = 1 << 17


# -- exact Gaussian ------------------------------------------------------------------------------
def gaussian_delta(mu: float, epsilon: float) -> float:
    """delta(eps) of the Gaussian mechanism with mu = sensitivity / sigma (Balle and Wang 2018).

    delta = Phi(mu/2 - eps/mu) - e^eps Phi(-mu/2 - eps/mu), evaluated as a product so that
    neither term overflows nor cancels.
    """
    if mu <= 0.0:
        return 0.0
    a, b = mu / 2.0 - epsilon / mu, -mu / 2.0 - epsilon / mu
    log_a = special.log_ndtr(a)
    return float(math.exp(log_a) * -math.expm1(epsilon + special.log_ndtr(b) - log_a))


def gaussian_epsilon(mu: float, delta: float) -> float:
    """The smallest eps with :func:`gaussian_delta` (mu, eps) <= delta."""
    if mu <= 0.0 or gaussian_delta(mu, 0.0) <= delta:
        return 0.0
    high = mu * mu / 2.0 - mu * float(special.ndtri(delta)) + 1.0  # Phi(mu/2 - eps/mu) <= delta there
    root = optimize.brentq(lambda e: gaussian_delta(mu, e) - delta, 0.0, high, xtol=1e-14, rtol=1e-15)
    while gaussian_delta(mu, root) > delta:  # brentq may land a hair on the wrong side
        root = math.nextafter(root, math.inf) + 1e-15 * root
    return float(root)


# -- one direction of a discrete privacy loss distribution ---------------------------------------
@dataclass(frozen=True, eq=False)
class LossDistribution:
    """P-masses of the loss values (offset + k) * interval, plus the mass at +infinity.

    ``pessimistic`` says which way its approximations err: True for upper bounds on delta
    (the default everywhere), False for lower bounds (used to bracket the truth in tests).
    """

    interval: float
    offset: int
    masses: FloatArray
    infinity_mass: float
    pessimistic: bool = True

    @property
    def losses(self) -> FloatArray:
        return (self.offset + np.arange(self.masses.size, dtype=np.float64)) * self.interval

    def delta(self, epsilon: float) -> float:
        """delta(eps) = P(L = inf) + sum_{l > eps} p_l (1 - e^{eps - l})."""
        losses = self.losses
        above = losses > epsilon
        return float(self.infinity_mass + np.sum(self.masses[above] * -np.expm1(epsilon - losses[above])))

    def epsilon(self, delta: float) -> float:
        """The smallest eps >= 0 with delta(eps) <= ``delta`` (inf if no finite eps does)."""
        if self.infinity_mass > delta:
            return math.inf
        masses, h = self.masses, self.interval
        decay = math.exp(-h)
        above_or_at = np.cumsum(masses[::-1])[::-1]  # P(L >= l_j), summed from the small end
        # gap_j = delta(l_j) - P(inf) = sum_{k>j} p_k (1 - e^{l_j - l_k}), by a positive recurrence.
        gap = signal.lfilter([0.0, 1.0], [1.0, -decay], -math.expm1(-h) * above_or_at[::-1])[::-1]
        first = int(np.argmax(gap <= delta - self.infinity_mass))
        # On (l_{first-1}, l_first]: delta(eps) = P(inf) + P(L >= l_first) - e^{eps - l_first} S.
        weights = masses[first:] * np.exp(-h * np.arange(masses.size - first))
        spare = self.infinity_mass + above_or_at[first] - delta
        if spare <= 0.0:
            return 0.0
        top = (self.offset + first) * h
        epsilon = top + math.log(spare / weights.sum())
        if first > 0:
            epsilon = max(epsilon, top - h)
        return max(0.0, min(epsilon, top))


def _convolve(x: FloatArray, y: FloatArray) -> FloatArray:
    size = x.size + y.size - 1
    if min(x.size, y.size) < 64:
        return np.convolve(x, y)
    n = fft.next_fast_len(size, real=True)
    fx = fft.rfft(x, n)
    fy = fx if y is x else fft.rfft(y, n)
    out = fft.irfft(fx * fy, n)[:size]
    return np.maximum(out, 0.0)  # FFT round-off leaves tiny negatives where the truth is ~0


def _coarsen(d: LossDistribution, factor: int) -> LossDistribution:
    """The same distribution on a grid ``factor`` (a power of two) times coarser."""
    if factor == 1:
        return d
    start = d.offset - d.offset % factor
    left = d.offset - start
    rows = -(-(left + d.masses.size) // factor)
    padded = np.zeros(rows * factor)
    padded[left:left + d.masses.size] = d.masses
    block = padded.reshape(rows, factor)
    out = np.zeros(rows + 1)
    if d.pessimistic:
        # Connect-the-dots: an atom r fine steps above a coarse point sends the share
        # (1 - e^{-r h}) / (1 - e^{-factor h}) up, keeping its P-mass and Q-mass.
        share_up = np.expm1(-d.interval * np.arange(factor)) / math.expm1(-d.interval * factor)
        up = (block * share_up).sum(axis=1)
        out[:-1] += block.sum(axis=1) - up
        out[1:] += up
    else:
        out[:-1] = block.sum(axis=1)  # rounding losses down under-estimates delta
    return LossDistribution(d.interval * factor, start // factor, out, d.infinity_mass, d.pessimistic)


def _limit_size(d: LossDistribution, max_points: int | None) -> LossDistribution:
    if max_points is not None and d.masses.size > max_points:
        return _coarsen(d, 1 << math.ceil(math.log2(d.masses.size / max_points)))
    return d


def _truncate(d: LossDistribution, tail: float, max_points: int | None) -> LossDistribution:
    """Drop tails of at most ``tail`` mass each, the pessimistic (or optimistic) way.

    For distributions computed directly (not by FFT), whose small masses are accurate.
    """
    masses = d.masses
    nonzero = np.flatnonzero(masses)
    if nonzero.size == 0:
        return LossDistribution(d.interval, 0, np.zeros(1), d.infinity_mass, d.pessimistic)
    masses = masses[nonzero[0]:nonzero[-1] + 1].copy()
    offset = d.offset + int(nonzero[0])
    infinity = d.infinity_mass
    low = int(np.searchsorted(np.cumsum(masses), tail, side="right"))
    high = int(np.searchsorted(np.cumsum(masses[::-1]), tail, side="right"))
    low = min(low, masses.size - 1)
    high = min(high, masses.size - 1 - low)
    lower_mass, upper_mass = masses[:low].sum(), masses[masses.size - high:].sum()
    kept = masses[low:masses.size - high]
    if d.pessimistic:
        kept[0] += lower_mass  # raising a loss raises delta(eps) for every eps
        infinity = _union(infinity, upper_mass)
    else:
        kept[-1] += upper_mass  # lowering losses only lowers delta
    return _limit_size(LossDistribution(d.interval, offset + low, kept, infinity, d.pessimistic), max_points)


def _union(p: float, r: float) -> float:
    """1 - (1 - p)(1 - r): the infinity mass of two independent parts."""
    return -math.expm1(math.log1p(-min(p, 1.0)) + math.log1p(-min(r, 1.0)))


def _log_mgf_bound(d: LossDistribution, slopes: FloatArray, slack: float) -> FloatArray:
    """Upper bounds on log E[e^{t L}] (finite part) for every t in ``slopes`` (all one sign).

    Masses are summed in blocks short enough that |t| * block width <= ``slack`` for every
    slope, and each block is charged at its worst end; this keeps the bound rigorous while
    its cost falls with the width of the distribution.
    """
    width = max(1, int(slack / (np.max(np.abs(slopes)) * d.interval)))
    rows = -(-d.masses.size // width)
    padded = np.zeros(rows * width)
    padded[:d.masses.size] = d.masses
    with np.errstate(divide="ignore"):
        log_block = np.log(padded.reshape(rows, width).sum(axis=1))
    first = (d.offset + width * np.arange(rows)) * d.interval
    ends = first + (width - 1) * d.interval if slopes[0] > 0 else first
    exponents = log_block[None, :] + slopes[:, None] * ends[None, :]
    peak = exponents.max(axis=1, keepdims=True)
    return peak[:, 0] + np.log(np.exp(exponents - peak).sum(axis=1))


# Block width (in loss units) times the largest slope: the Chernoff bounds are loosened by at
# most a factor e, which moves the truncation points out by about a tenth of a standard deviation.
_SLACK = 1.0


def _chernoff_window(a: LossDistribution, b: LossDistribution,
                     tail: float) -> tuple[int, int, float, float]:
    """Grid indices [low, high] outside which A + B has mass <= ``tail`` on each side.

    Chosen *before* the FFT, from Chernoff bounds P(S >= t) <= E[e^{lS}] e^{-lt}, so FFT
    round-off (about 1e-19 on each of millions of points) cannot pass for tail mass. Returns
    the bounds on the excluded masses too; the caller adds them back pessimistically.
    """
    def variance(d: LossDistribution) -> float:
        total, losses = d.masses.sum(), d.losses
        if total <= 0.0:
            return 0.0
        mean = float((d.masses * losses).sum() / total)
        return float((d.masses * (losses - mean) ** 2).sum() / total)

    spread = math.sqrt(variance(a) + variance(b))
    base = a.offset + b.offset
    top = base + a.masses.size + b.masses.size - 2
    if not spread > 0.0:  # a point mass (or nothing): nothing to truncate
        return base, top, 0.0, 0.0
    # Tail slopes from far below to twice the Gaussian optimum sqrt(2 log(1/tail)) / spread.
    slopes = math.sqrt(2.0 * math.log(1.0 / tail)) / spread * 2.0 * 8.0 ** np.arange(-4.0, 1.0)
    h, log_tail = a.interval, math.log(tail)
    upper_a, lower_a = _log_mgf_bound(a, slopes, _SLACK), _log_mgf_bound(a, -slopes, _SLACK)
    upper_log_mgf = upper_a + (upper_a if b is a else _log_mgf_bound(b, slopes, _SLACK))
    lower_log_mgf = lower_a + (lower_a if b is a else _log_mgf_bound(b, -slopes, _SLACK))
    high = min(top, math.ceil(float(np.min((upper_log_mgf - log_tail) / slopes)) / h))
    low = max(base, math.floor(float(np.max((log_tail - lower_log_mgf) / slopes)) / h))
    if low > high:  # cannot happen for proper bounds; keep everything rather than guess
        return base, top, 0.0, 0.0
    # Bounds on the mass strictly outside [low, high]: losses >= (high+1)h, <= (low-1)h.
    upper_mass = float(np.exp(np.min(upper_log_mgf - slopes * (high + 1) * h))) if high < top else 0.0
    lower_mass = float(np.exp(np.min(lower_log_mgf + slopes * (low - 1) * h))) if low > base else 0.0
    return low, high, lower_mass, upper_mass


def _compose(a: LossDistribution, b: LossDistribution, tail: float, max_points: int | None) -> LossDistribution:
    if a.pessimistic != b.pessimistic:
        raise ConfigurationError("cannot compose a pessimistic with an optimistic loss distribution")
    if a.interval != b.interval:  # grids are base * 2^k, so the coarser one contains the finer
        if a.interval < b.interval:
            a = _coarsen(a, round(b.interval / a.interval))
        else:
            b = _coarsen(b, round(a.interval / b.interval))
    low, high, lower_mass, upper_mass = _chernoff_window(a, b, tail)
    masses = _convolve(a.masses, a.masses if b is a else b.masses)
    base = a.offset + b.offset
    kept = masses[low - base:high - base + 1].copy()
    infinity = _union(a.infinity_mass, b.infinity_mass)
    if a.pessimistic:
        kept[0] += lower_mass                   # excluded low losses, raised to the lowest kept
        infinity = _union(infinity, upper_mass)  # excluded high losses, raised to infinity
    return _limit_size(LossDistribution(a.interval, low, kept, infinity, a.pessimistic), max_points)


def _self_compose(d: LossDistribution, count: int, tail: float, max_points: int | None) -> LossDistribution:
    """``count``-fold composition by repeated squaring: O(log count) convolutions."""
    result: LossDistribution | None = None
    power = d
    while True:
        if count & 1:
            result = power if result is None else _compose(result, power, tail, max_points)
        count >>= 1
        if not count:
            break
        power = _compose(power, power, tail, max_points)
    assert result is not None
    return result


# -- discretising the (subsampled) Gaussian ------------------------------------------------------
def _log_mixture(q: float, first: FloatArray, second: FloatArray) -> FloatArray:
    """log((1-q) e^first + q e^second), with q = 1 meaning only the second component."""
    if q == 1.0:
        return second
    return np.logaddexp(math.log1p(-q) + first, math.log(q) + second)


def _log_cell(log_tail: FloatArray, log_cdf: FloatArray) -> FloatArray:
    """log P(l_{i-1} < L <= l_i) for every cell, from whichever side of the median is small."""
    with np.errstate(divide="ignore", invalid="ignore"):
        from_tail = log_tail[:-1] + np.log(-np.expm1(log_tail[1:] - log_tail[:-1]))
        from_cdf = log_cdf[1:] + np.log(-np.expm1(log_cdf[:-1] - log_cdf[1:]))
    out = np.where(log_tail[:-1] < math.log(0.5), from_tail, from_cdf)
    return np.where(np.isnan(out), -np.inf, out)


def _loss_at(x: float, q: float, sigma: float) -> float:
    """The "remove" loss log(1 - q + q e^{(2x-1)/(2 s^2)}) at x, without overflow."""
    u = (2.0 * x - 1.0) / (2.0 * sigma**2)
    if q == 1.0:
        return u
    if u <= 0.0:
        return math.log1p(q * math.expm1(u))
    return u + math.log(q + (1.0 - q) * math.exp(-u))


def _discretize(q: float, sigma: float, direction: str, interval: float, tail: float,
                max_points: int | None, pessimistic: bool) -> LossDistribution:
    """One direction of the Poisson-subsampled Gaussian (sensitivity 1) on a grid."""
    z = -float(special.ndtri(tail))  # P(N(0,1) > z) = tail
    if direction == "remove":
        low, high = _loss_at(-sigma * z, q, sigma), _loss_at(1.0 + sigma * z, q, sigma)
    else:
        low, high = -_loss_at(sigma * z, q, sigma), -_loss_at(-sigma * z, q, sigma)
    while True:
        first, last = math.floor(low / interval), math.ceil(high / interval)
        if max_points is None or last - first + 1 <= max(max_points, 2):
            break
        interval *= 2.0
    grid = np.arange(first, last + 1) * interval

    # x*(eps): the point where the loss crosses eps (the loss is monotone in x).
    with np.errstate(divide="ignore", invalid="ignore"):
        if q == 1.0:
            x = sigma**2 * (grid if direction == "remove" else -grid) + 0.5
        else:
            inner = np.expm1(grid if direction == "remove" else -grid) + q
            x = np.where(inner > 0.0, sigma**2 * (np.log(inner) - math.log(q)) + 0.5, -np.inf)
    below0, above0 = special.log_ndtr(x / sigma), special.log_ndtr(-x / sigma)
    below1, above1 = special.log_ndtr((x - 1.0) / sigma), special.log_ndtr((1.0 - x) / sigma)
    if direction == "remove":  # P = mixture, Q = N(0, s^2), L increasing in x
        p_tail, p_cdf = _log_mixture(q, above0, above1), _log_mixture(q, below0, below1)
        q_tail, q_cdf = above0, below0
    else:                      # P = N(0, s^2), Q = mixture, L decreasing in x
        p_tail, p_cdf = below0, above0
        q_tail, q_cdf = _log_mixture(q, below0, below1), _log_mixture(q, above0, above1)

    log_p, log_q = _log_cell(p_tail, p_cdf), _log_cell(q_tail, q_cdf)
    cell_p = np.exp(log_p)
    masses = np.zeros(grid.size)
    if pessimistic:
        with np.errstate(invalid="ignore"):
            # In a cell (l-h, l], e^{l-h} Q/P lies in [e^{-h}, 1]; its gap to 1 decides the split.
            ratio = np.clip(grid[:-1] + log_q - log_p, -interval, 0.0)
        share_up = np.where(cell_p > 0.0, np.expm1(ratio) / math.expm1(-interval), 0.0)
        up = cell_p * share_up
        masses[1:] += up
        masses[:-1] += cell_p - up
        masses[0] += math.exp(p_cdf[0])
        infinity = float(math.exp(p_tail[-1]))
    else:
        masses[:-1] += cell_p
        masses[-1] += math.exp(p_tail[-1])
        infinity = 0.0
    return _truncate(LossDistribution(interval, first, masses, infinity, pessimistic), tail, max_points)


@dataclass(frozen=True, eq=False)
class PldPair:
    """The "remove" and "add" loss distributions of one mechanism (identical when symmetric)."""

    remove: LossDistribution
    add: LossDistribution

    @property
    def symmetric(self) -> bool:
        return self.remove is self.add

    def compose(self, other: PldPair, tail: float = DEFAULT_TAIL_MASS_TRUNCATION,
                max_points: int | None = DEFAULT_MAX_POINTS) -> PldPair:
        remove = _compose(self.remove, other.remove, tail, max_points)
        if self.symmetric and other.symmetric:
            return PldPair(remove, remove)
        return PldPair(remove, _compose(self.add, other.add, tail, max_points))

    def self_compose(self, count: int, tail: float = DEFAULT_TAIL_MASS_TRUNCATION,
                     max_points: int | None = DEFAULT_MAX_POINTS) -> PldPair:
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ConfigurationError(f"self_compose needs an integer count >= 1, got {count!r}")
        remove = _self_compose(self.remove, count, tail, max_points)
        if self.symmetric:
            return PldPair(remove, remove)
        return PldPair(remove, _self_compose(self.add, count, tail, max_points))

    def delta(self, epsilon: float) -> float:
        return max(self.remove.delta(epsilon), self.add.delta(epsilon))

    def epsilon(self, delta: float) -> float:
        return max(self.remove.epsilon(delta), self.add.epsilon(delta))


def subsampled_gaussian_pld(sampling_rate: float, noise_multiplier: float,
                            interval: float = DEFAULT_VALUE_DISCRETIZATION_INTERVAL,
                            tail: float = DEFAULT_TAIL_MASS_TRUNCATION,
                            max_points: int | None = DEFAULT_MAX_POINTS,
                            pessimistic: bool = True) -> PldPair:
    """Both directions of one step of the Poisson-subsampled Gaussian (q = 1: plain Gaussian)."""
    remove = _discretize(sampling_rate, noise_multiplier, "remove", interval, tail, max_points, pessimistic)
    if sampling_rate == 1.0:
        return PldPair(remove, remove)
    add = _discretize(sampling_rate, noise_multiplier, "add", interval, tail, max_points, pessimistic)
    return PldPair(remove, add)


def gaussian_pld(noise_multiplier: float, interval: float = DEFAULT_VALUE_DISCRETIZATION_INTERVAL,
                 tail: float = DEFAULT_TAIL_MASS_TRUNCATION, max_points: int | None = DEFAULT_MAX_POINTS,
                 pessimistic: bool = True) -> PldPair:
    """The discretised Gaussian mechanism (sensitivity 1, standard deviation ``noise_multiplier``)."""
    return subsampled_gaussian_pld(1.0, noise_multiplier, interval, tail, max_points, pessimistic)


# -- the accountant ------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Composition:
    """What the history amounts to: merged unsampled Gaussians and the discretised rest."""

    gaussian_mu: float
    pair: PldPair | None

    def delta(self, epsilon: float) -> float:
        if self.pair is None:
            return gaussian_delta(self.gaussian_mu, epsilon)
        return self.pair.delta(epsilon)

    def epsilon(self, delta: float) -> float:
        if self.pair is None:
            return gaussian_epsilon(self.gaussian_mu, delta)
        return self.pair.epsilon(delta)


class PldAccountant(PrivacyAccountant):
    """Privacy-loss-distribution accountant: near-exact for (subsampled) Gaussians.

    Composition is lazy: events are recorded (consecutive repeats merged) and the distribution
    is built on the first query, grouping identical events so that each group costs one
    self-composition by repeated squaring. Results therefore depend only on *what* was
    composed, never on when queries happened, and the state is the (JSON-able) event history.

    value_discretization_interval: the finest grid interval of privacy loss values. The
        default matches dp_accounting's; when one step's losses are much narrower than it
        (say q = 1e-3 with sigma = 4) the grid costs about 1% of epsilon in pessimism, and a
        smaller interval buys it back.
    tail_mass_truncation: the largest mass moved by each pessimistic tail cut.
    max_points: grid size past which the interval doubles (None: never).
    """

    name = "pld"

    def __init__(self, value_discretization_interval: float = DEFAULT_VALUE_DISCRETIZATION_INTERVAL,
                 tail_mass_truncation: float = DEFAULT_TAIL_MASS_TRUNCATION,
                 max_points: int | None = DEFAULT_MAX_POINTS) -> None:
        self._interval, self._tail, self._max_points = self._check_settings(
            value_discretization_interval, tail_mass_truncation, max_points)
        self._history: list[tuple[PrivacyEvent, int]] = []
        self._cache: _Composition | None = None

    @staticmethod
    def _check_settings(interval: Any, tail: Any, max_points: Any) -> tuple[float, float, int | None]:
        if isinstance(interval, bool) or not isinstance(interval, (int, float)) or not 0.0 < float(interval) <= 1.0:
            raise ConfigurationError(f"value_discretization_interval must be in (0, 1], got {interval!r}")
        if isinstance(tail, bool) or not isinstance(tail, (int, float)) or not 0.0 < float(tail) < 1e-3:
            raise ConfigurationError(f"tail_mass_truncation must be in (0, 1e-3), got {tail!r}")
        if max_points is not None and (isinstance(max_points, bool) or not isinstance(max_points, int)
                                       or max_points < 16):
            raise ConfigurationError(f"max_points must be an integer >= 16 or None, got {max_points!r}")
        return float(interval), float(tail), max_points

    def _unsupported_leaf(self, event: PrivacyEvent) -> str | None:
        if isinstance(event, GaussianEvent):
            return None
        if isinstance(event, PoissonSampledEvent):
            if isinstance(event.event, GaussianEvent):
                return None
            return f"Poisson sampling is supported only around a GaussianEvent, not {event.event!r}"
        return f"no privacy loss distribution is implemented for {type(event).__name__}"

    def _compose(self, event: PrivacyEvent, count: int) -> None:
        if self._history and self._history[-1][0] == event:
            self._history[-1] = (event, self._history[-1][1] + count)
        else:
            self._history.append((event, count))
        self._cache = None

    def _flatten(self, event: PrivacyEvent, count: int, inverse_variance: list[float],
                 groups: dict[tuple[float, float], int]) -> None:
        if count == 0:
            return
        if isinstance(event, ComposedEvent):
            for part in event.events:
                self._flatten(part, count, inverse_variance, groups)
        elif isinstance(event, SelfComposedEvent):
            self._flatten(event.event, count * event.count, inverse_variance, groups)
        elif isinstance(event, GaussianEvent):
            inverse_variance[0] += count / event.noise_multiplier**2
        elif isinstance(event, PoissonSampledEvent) and isinstance(event.event, GaussianEvent):
            if event.sampling_rate == 1.0:
                inverse_variance[0] += count / event.event.noise_multiplier**2
            else:
                key = (event.sampling_rate, event.event.noise_multiplier)
                groups[key] = groups.get(key, 0) + count
        else:  # _unsupported_leaf already refused it
            raise AssertionError(event)

    def _composition(self) -> _Composition | None:
        if self._cache is None and self._history:
            inverse_variance = [0.0]
            groups: dict[tuple[float, float], int] = {}
            for event, count in self._history:
                self._flatten(event, count, inverse_variance, groups)
            pair: PldPair | None = None
            for (q, sigma), count in sorted(groups.items()):
                step = subsampled_gaussian_pld(q, sigma, self._interval, self._tail, self._max_points)
                group = step.self_compose(count, self._tail, self._max_points)
                pair = group if pair is None else pair.compose(group, self._tail, self._max_points)
            mu = math.sqrt(inverse_variance[0])
            if pair is not None and mu > 0.0:
                gaussian = gaussian_pld(1.0 / mu, self._interval, self._tail, self._max_points)
                pair = pair.compose(gaussian, self._tail, self._max_points)
            self._cache = _Composition(mu, pair)
        return self._cache

    def _epsilon(self, delta: float) -> float:
        composition = self._composition()
        return 0.0 if composition is None else composition.epsilon(delta)

    def _delta(self, epsilon: float) -> float:
        composition = self._composition()
        return 0.0 if composition is None else min(1.0, composition.delta(epsilon))

    def _state(self) -> dict[str, Any]:
        return {
            "value_discretization_interval": self._interval,
            "tail_mass_truncation": self._tail,
            "max_points": self._max_points,
            "events": [{"event": event.to_dict(), "count": count} for event, count in self._history],
        }

    def _load(self, body: Mapping[str, Any]) -> None:
        expected = {"value_discretization_interval", "tail_mass_truncation", "max_points", "events"}
        if set(body) != expected:
            raise ConfigurationError(f"PldAccountant state needs keys {sorted(expected)}, got {sorted(body)}")
        settings = self._check_settings(body["value_discretization_interval"], body["tail_mass_truncation"],
                                        body["max_points"])
        if not isinstance(body["events"], list):
            raise ConfigurationError("PldAccountant state: events must be a list")
        history: list[tuple[PrivacyEvent, int]] = []
        for entry in body["events"]:
            if not isinstance(entry, Mapping) or set(entry) != {"event", "count"}:
                raise ConfigurationError(f"PldAccountant state: bad history entry {entry!r}")
            event, count = event_from_dict(entry["event"]), entry["count"]
            if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                raise ConfigurationError(f"PldAccountant state: count must be an integer >= 1, got {count!r}")
            reason = self._unsupported(event)
            if reason is not None:
                raise ConfigurationError(f"PldAccountant state: {reason}")
            history.append((event, count))
        self._interval, self._tail, self._max_points = settings
        self._history, self._cache = history, None

