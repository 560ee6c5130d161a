"""Sizing the SecAgg+ graph: the fewest neighbours ``k``, and a threshold ``t``, that keep a round
private and live except with probability ``2^-40`` and ``2^-20``.

In SecAgg+ (Bell et al. 2020) each of the ``n`` clients masks with its ``k`` neighbours in a
``k``-regular Harary graph laid over a uniformly random permutation of the roster
(:mod:`secagg.graph`), and Shamir-shares its secrets ``t``-out-of-``k + 1`` among those neighbours
and itself. Seen from one client, its neighbourhood is then a uniformly random ``k``-subset of the
other ``n - 1`` clients, so the number of colluders (or dropouts) among its neighbours is
hypergeometric. :func:`find_graph_parameters` sizes ``(k, t)`` by these rules:

Security
    ``c = floor(corrupt_fraction * n)`` colluders, fixed before the graph is drawn, learn an
    honest client's input when ``t`` of its neighbours are among them (they then hold ``t`` of its
    shares). Required, by a union bound over the ``n - c`` honest clients
    (:func:`security_failure_log2`)::

        (n - c) * P[Hypergeometric(population n - 1, c marked, k draws) >= t] <= 2^-security_bits

Correctness
    ``d = floor(dropout_fraction * n)`` clients drop, any of them but independently of the graph;
    a client's round completes only if ``t`` of its ``k`` neighbours survive (with fewer than
    ``t`` colluders among them, an honest survivor is then always among the ``t``). Required, by a
    union bound over all ``n`` clients (:func:`correctness_failure_log2`)::

        n * P[Hypergeometric(n - 1, d, k) > k - t] <= 2^-correctness_bits

    Colluders that refuse to answer are dropouts for this purpose: count them in
    ``dropout_fraction`` too.
Active security
    ``2t > k + 1``: a strict majority of the ``k + 1`` shares.
Always
    ``t >= 2``; ``k <= n - 1``; ``n * k`` even, since no ``k``-regular graph exists otherwise
    (:func:`secagg.graph.effective_neighbours` rounds an odd ``k`` up for an odd roster, which
    would void the bound computed for ``k``), so an odd roster gets an even ``k``.

The answer is the smallest such ``k`` (a client's work and traffic are ``O(k)``) and, for it, the
``t`` with the largest margin over the weaker of the two requirements,
``min(-failure_log2 - security_bits, -correctness_log2 - correctness_bits)``; ties (as when both
events are impossible) go to the larger ``t``. When no sparse ``k`` works but the complete graph
does, that is the answer, with ``complete=True``; when nothing works,
:class:`~privagg.errors.InsecureParameters`. With ``c >= 1`` colluders, ``k = c + d + 1`` and
``t = c + 1`` make both events impossible (fewer colluders than ``t``, no more dropouts than
``k - t``), so a semi-honest answer never exceeds ``c + d + 1`` (``c + d + 2`` on an odd roster);
the complete graph is the answer only when that is out of reach, and is itself impossible once
``c + d >= n - 1``.

Counts are ``floor(fraction * n)`` read with a slack of ``1e-9`` clients upwards, so that
``0.29 * 100`` (28.999999999999996 in binary floating point) counts 29 colluders, not 28.

Tails are exact sums in log space, summed from their largest term outwards, never ``1 - cdf``
(which cannot resolve 2^-40); the tests check them against rational arithmetic. Feasibility is not
monotone in ``k``: with a third colluding and a third dropping out of n = 1,000, k = 286 works, 287
does not and 288 does, so a bisection over ``k`` could miss the smallest ``k``. Each tail on its
own is monotone in ``k``, though, so the search scans ``k`` upwards carrying the least secure
``t`` and the largest tolerable dropped count along, a few tail evaluations per ``k``: about 1 ms
at n = 10,000 with the defaults and 6 ms with a third dropping, and the result is cached
(``functools.lru_cache``) for the clients that all ask for the same announced ``n``.

Defaults
--------
``DEFAULT_CORRUPT_FRACTION = 1/3 - 1e-9``, strictly fewer than a third (99 of 300, 333 of 1,000):
the collusion the active protocol's two-thirds survivor quorum tolerates, and what the README
promises. Semi-honest rounds get the same default: what this module guards against, colluders
pooling an honest client's shares, is the same threat in both modes (active only adds
``2t > k + 1``), and a smaller semi-honest figure would be a number nobody has argued for; a
deployment that can argue one passes it (the 0.05 rows show what it buys).
``DEFAULT_DROPOUT_FRACTION = 0.1``, the rate the README's and the CLI's examples use; more
dropouts than sized for endanger no input, they only make an abort likelier than 2^-20.
``security_bits = 40`` and ``correctness_bits = 20``, as in fcp.

==============================  ===============  ===============  ===============
corrupt, dropout                n = 100          n = 1,000        n = 10,000
==============================  ===============  ===============  ===============
defaults (< 1/3, 0.1)           k = 41, t = 31   k = 101, t = 71  k = 125, t = 87
defaults, active                41, 31           101, 71          125, 87
1/3, 1/3                        67, 34           286, 150         431, 225
1/3, 1/3, active                68, 35           286, 150         431, 225
0.05, 0.05                      11, 6            29, 17           33, 19
0.05, 0.05, active              12, 7            29, 17           33, 19
==============================  ===============  ===============  ===============

(1/3 and 1/3 - 1e-9 give the same counts at these three sizes, none a multiple of 3.) For
comparison, :func:`secagg.graph.default_neighbours`' ``k = 2 ceil(log2 n)`` (14, 20, 28 with
majority thresholds) bounds nothing against a third colluding: its security union bound is at
least 1 at all three sizes.

fcp
---
Google's federated-compute sizes the same graph (``fcp/secagg/server/graph_parameter_finder.cc``
in google-parfait/federated-compute, unchanged since its publication in google/federated-compute).
:func:`fcp_graph_parameters` restates its conditions and reproduces every (degree, threshold)
of its test table, 78 rows from n = 10 to 10^6. Its conditions differ from ours:

1. Budget: fcp splits 2^-40 into 2^-41 for exposure and 2^-41 for disconnection (below), and
   asks each client's exposure tail for ``2^-41 / n``; we spend all of 2^-40 on exposure, per
   honest client ``2^-40 / (n - c)``. Correctness: ``2^-20 / n`` per client in both.
2. Population: fcp draws a client's neighbours from all ``n`` clients (itself included), we from
   the other ``n - 1``; fcp counts ``floor((rate + 1e-14) n)`` colluders and
   ``n - ceil((1 - rate - 1e-14) n)`` dropouts.
3. Connectivity: fcp also requires the honest survivors to stay connected, bounding the
   probability that two runs of ``k / 2`` consecutive clients on the ring are all corrupt or
   dropped (:func:`fcp_disconnection_log2`): an honest component cut off from the rest would let
   the server learn that component's partial sum. Our rules have no such condition. At every
   point of the table above fcp's bound is below 2^-72, so adding it would change nothing there;
   it is what sets fcp's ``k`` when one of the two fractions is 0: (0.33, 0) gives fcp 26, 38, 42
   and us 23, 31, 33; (0, 0.33) fcp 26, 38, 42 and us 18, 22, 25 (t = 2), at n = 100, 1,000,
   10,000.
4. Search: fcp tries even degrees ``2 <= k <= n - 2`` only and never the complete graph, and
   takes the least secure ``t``; we take any ``k`` with ``n * k`` even, the complete graph
   included, and the max-margin ``t``.
5. Malicious server: fcp's SEMI_MALICIOUS_SERVER protocol has no consistency round, so a server
   can ask some of a client's honest neighbours for one kind of share and the others for the
   other kind; fcp then needs the colluders below ``2t - k`` (``t - 1 := ceil((t - 1 + k - 1.25)
   / 2)``), which pushes ``t`` and ``k`` up. Our active mode has every client sign the survivor
   set before unmasking, so honest neighbours all answer for the same set, and adds only
   ``2t > k + 1``.

==============================  =====================  =====================
degree k at n = 100, 1e3, 1e4   fcp                    ours
==============================  =====================  =====================
0.45, 0.45                      92, 822, 3494          91, 823, 3447
0.33, 0.33                      68, 286, 422           67, 278, 413
0.33, 0.05                      34, 78, 92             33, 76, 90
0.05, 0.05                      12, 30, 34             11, 29, 33
0.3, 0.3 (semi-mal. / active)   92, 872, 4822          60, 215, 296
0.33, 0.05 (semi-mal. / active) 42, 132, 178           33, 76, 90
==============================  =====================  =====================

Ours is one or two below fcp through (1), one above at n = 1,000 for 0.45 through (2) (450
dropouts among 999 candidates weigh more than among 1,000), and far below for a malicious server
through (5).

The issue tracker's "computed its way for a third corrupted, k = 338 at n = 1,000 and 538 at
n = 10,000" is not what fcp computes. With a third corrupted fcp gives 38 and 42 without
dropouts, 78 and 92 at 5 % dropouts, 286 and 428 at 33 %, and, for its semi-malicious server,
138 and 178 at 5 %; no dropout rate gives fcp 338 at n = 1,000 at all (its k jumps from 336
to 340 between 36 % and 37 %), and its 40 / 20 bits are fixed. The nearest are a dropout rate
of 37 % (fcp 342 and 554, ours 339 and 542), or ours with a third dropping and
``correctness_bits=40`` (341 and 542).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from numbers import Integral, Real

from privagg.errors import ConfigurationError, InsecureParameters

__all__ = [
    "DEFAULT_CORRUPT_FRACTION",
    "DEFAULT_DROPOUT_FRACTION",
    "DEFAULT_SECURITY_BITS",
    "DEFAULT_CORRECTNESS_BITS",
    "GraphParameters",
    "find_graph_parameters",
    "security_failure_log2",
    "correctness_failure_log2",
    "fcp_graph_parameters",
    "fcp_disconnection_log2",
]

# Strictly fewer than a third of the clients: the active protocol's survivor-set quorum (two
# thirds of the roster, secagg/config.py) holds only against fewer than n / 3 colluders, and the
# README promises exactly that. The 1e-9 turns "a third" into "the largest count below a third":
# floor((1/3 - 1e-9) * 300) = 99, not 100 (see _count for the rounding in the other direction).
DEFAULT_CORRUPT_FRACTION: float = 1 / 3 - 1e-9
# One client in ten vanishing mid-round: the figure the README's and the CLI's examples use. A round
# with more dropouts than this is not unsafe, it only aborts more often than 2^-correctness_bits.
DEFAULT_DROPOUT_FRACTION: float = 0.1
DEFAULT_SECURITY_BITS: float = 40.0
DEFAULT_CORRECTNESS_BITS: float = 20.0

_LN2 = math.log(2.0)
# A product fraction * n that lands within this many clients below an integer is that integer:
# 0.29 * 100 is 28.999999999999996 in binary floating point, and flooring it would under-count the
# colluders (an insecure rounding). Far below 1 / n for any roster, far above float error in f * n.
_COUNT_SLACK = 1e-9
# Terms of a tail sum are dropped once everything left is below this share of the sum.
_TAIL_RTOL = 1e-17


@dataclass(frozen=True)
class GraphParameters:
    """A SecAgg+ graph size: every client masks with ``neighbours`` others and shares its secrets
    ``threshold``-out-of-``neighbours + 1`` (its neighbours and itself).

    ``failure_log2`` and ``correctness_log2`` are the log2 of the two union bounds the pair
    achieves (``-inf`` when the event is impossible, e.g. no colluders at all); they are at most
    ``-security_bits`` and ``-correctness_bits``. ``complete`` says the sparse graph could not
    meet the bounds and the answer is the complete graph (``neighbours == clients - 1``, plain
    SecAgg).
    """

    clients: int
    neighbours: int
    threshold: int
    corrupt_fraction: float
    dropout_fraction: float
    security_bits: float
    correctness_bits: float
    complete: bool
    failure_log2: float
    correctness_log2: float

    @property
    def corrupt(self) -> int:
        """The number of colluding clients the bounds were computed for."""
        return _count(self.corrupt_fraction, self.clients)

    @property
    def dropped(self) -> int:
        """The number of dropped clients the bounds were computed for."""
        return _count(self.dropout_fraction, self.clients)


# --------------------------------------------------------------------------------------------
# Hypergeometric tails in log space


def _ln_comb(a: int, b: int) -> float:
    return math.lgamma(a + 1) - math.lgamma(b + 1) - math.lgamma(a - b + 1)


def _ln_pmf(population: int, marked: int, draws: int, x: int) -> float:
    return (_ln_comb(marked, x) + _ln_comb(population - marked, draws - x)
            - _ln_comb(population, draws))


def _ln_upper_tail(population: int, marked: int, draws: int, t: int) -> float:
    """``ln P[X >= t]`` for ``X`` the marked items among ``draws`` drawn without replacement
    from ``population`` items of which ``marked`` are marked.

    Exact to double precision in the far tail, where ``1 - cdf`` would round to 0 long before
    2^-40: the sum starts at its largest term and runs outwards, so nothing cancels.
    """
    lo, hi = max(0, draws - (population - marked)), min(draws, marked)
    if t <= lo:
        return 0.0
    if t > hi:
        return -math.inf
    mode = (draws + 1) * (marked + 1) // (population + 2)
    if t < mode:
        # Below the mode the terms first grow (possibly by more than a float can hold), so sum
        # the other side instead: P[X >= t] is then at least P[X >= mode], about a half, and
        # 1 - P[X <= t - 1] loses nothing.
        return math.log1p(-math.exp(_ln_lower_tail(population, marked, draws, t - 1)))
    # From t >= mode up the terms only shrink; sum them relative to the first one.
    rest = population - marked - draws
    total = term = 1.0
    x = t
    while x < hi:
        term *= (marked - x) * (draws - x) / ((x + 1) * (rest + x + 1))
        total += term
        x += 1
        # Every later term is smaller than this one, so what is left is below term * (hi - x).
        if term * (hi - x) < total * _TAIL_RTOL:
            break
    return _ln_pmf(population, marked, draws, t) + math.log(total)


def _ln_lower_tail(population: int, marked: int, draws: int, s: int) -> float:
    """``ln P[X <= s]``, the mirror of :func:`_ln_upper_tail` (used there for ``s`` below the mode)."""
    lo, hi = max(0, draws - (population - marked)), min(draws, marked)
    if s >= hi:
        return 0.0
    if s < lo:
        return -math.inf
    rest = population - marked - draws
    total = term = 1.0
    x = s
    while x > lo:
        term *= x * (rest + x) / ((marked - x + 1) * (draws - x + 1))
        total += term
        x -= 1
        if term * (x - lo) < total * _TAIL_RTOL:
            break
    return _ln_pmf(population, marked, draws, s) + math.log(total)


def _security_log2(n: int, k: int, t: int, corrupt: int) -> float:
    # An honest client's k neighbours are a uniform k-subset of the n - 1 others, among which
    # sit all `corrupt` colluders; union bound over the n - corrupt honest clients.
    ln_tail = _ln_upper_tail(n - 1, corrupt, k, t)
    if ln_tail == -math.inf:
        return -math.inf
    return min(0.0, math.log2(n - corrupt) + ln_tail / _LN2)


def _correctness_log2(n: int, k: int, t: int, dropped: int) -> float:
    # A client is stuck when more than k - t of its neighbours dropped (fewer than t survive);
    # union bound over all n clients, each neighbourhood a uniform k-subset of n - 1 others.
    ln_tail = _ln_upper_tail(n - 1, dropped, k, k - t + 1)
    if ln_tail == -math.inf:
        return -math.inf
    return min(0.0, math.log2(n) + ln_tail / _LN2)


# --------------------------------------------------------------------------------------------
# Validation


def _check_int(name: str, value: object, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise ConfigurationError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if value < low or (high is not None and value > high):
        bound = f"at least {low}" if high is None else f"between {low} and {high}"
        raise ConfigurationError(f"{name} must be {bound}, got {value}")
    return value


def _check_fraction(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ConfigurationError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not 0.0 <= value < 1.0:  # also refuses nan
        raise ConfigurationError(f"{name} must be in [0, 1), got {value!r}")
    return value


def _check_bits(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ConfigurationError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not (value > 0.0 and math.isfinite(value)):
        raise ConfigurationError(f"{name} must be positive and finite, got {value!r}")
    return value


def _count(fraction: float, n: int) -> int:
    """``floor(fraction * n)``, read generously (see ``_COUNT_SLACK``) and at most ``n - 1``."""
    return min(n - 1, math.floor(fraction * n + _COUNT_SLACK))


def _check_graph(n: object, k: object, t: object) -> tuple[int, int, int]:
    n = _check_int("n", n, 2)
    k = _check_int("k", k, 1, n - 1)
    t = _check_int("t", t, 1, k + 1)
    return n, k, t


# --------------------------------------------------------------------------------------------
# Public bounds


def security_failure_log2(n: int, k: int, t: int, corrupt_fraction: float) -> float:
    """log2 of the union bound on P[some honest client has at least ``t`` colluding neighbours].

    ``floor(corrupt_fraction * n)`` colluders, fixed before the graph is drawn; each honest
    client's ``k`` neighbours are a uniformly random ``k``-subset of the other ``n - 1``. The
    bound is ``(n - c) * P[Hypergeometric(n - 1, c, k) >= t]``, capped at 1 (0 returned), and
    ``-inf`` when no client can be exposed.
    """
    n, k, t = _check_graph(n, k, t)
    return _security_log2(n, k, t, _count(_check_fraction("corrupt_fraction", corrupt_fraction), n))


def correctness_failure_log2(n: int, k: int, t: int, dropout_fraction: float) -> float:
    """log2 of the union bound on P[some client has fewer than ``t`` surviving neighbours].

    ``floor(dropout_fraction * n)`` clients drop, independently of the graph. The bound is
    ``n * P[Hypergeometric(n - 1, d, k) > k - t]``, capped at 1 (0 returned).
    """
    n, k, t = _check_graph(n, k, t)
    return _correctness_log2(n, k, t, _count(_check_fraction("dropout_fraction", dropout_fraction), n))


# --------------------------------------------------------------------------------------------
# The finder


def find_graph_parameters(
    n: int,
    *,
    corrupt_fraction: float = DEFAULT_CORRUPT_FRACTION,
    dropout_fraction: float = DEFAULT_DROPOUT_FRACTION,
    security_bits: float = DEFAULT_SECURITY_BITS,
    correctness_bits: float = DEFAULT_CORRECTNESS_BITS,
    active: bool = False,
) -> GraphParameters:
    """The smallest neighbour count ``k`` (and a threshold ``t`` for it) that keeps ``n`` clients
    secure and the round live, by the rules in this module's docstring.

    ``n`` is the announced roster size; ``corrupt_fraction`` and ``dropout_fraction`` are the
    fractions of it that collude and that drop (counts are ``floor(fraction * n)``); the
    returned pair keeps P[some honest client exposed] below ``2^-security_bits`` and
    P[some client short of ``t`` surviving neighbours] below ``2^-correctness_bits``. With
    ``active`` the threshold is also a strict majority of the ``k + 1`` shares (``2t > k + 1``).

    Deterministic and cached: every client can call it for the announced ``n`` and get the
    server's answer. Raises :class:`InsecureParameters` when not even the complete graph works,
    :class:`ConfigurationError` on malformed arguments.
    """
    n = _check_int("n", n, 2)
    corrupt_fraction = _check_fraction("corrupt_fraction", corrupt_fraction)
    dropout_fraction = _check_fraction("dropout_fraction", dropout_fraction)
    if corrupt_fraction + dropout_fraction >= 1.0:
        raise ConfigurationError(
            f"corrupt_fraction + dropout_fraction must be below 1, got "
            f"{corrupt_fraction!r} + {dropout_fraction!r}"
        )
    security_bits = _check_bits("security_bits", security_bits)
    correctness_bits = _check_bits("correctness_bits", correctness_bits)
    if not isinstance(active, bool):
        raise ConfigurationError(f"active must be True or False, got {active!r}")
    corrupt, dropped = _count(corrupt_fraction, n), _count(dropout_fraction, n)
    found = _search(n, corrupt, dropped, security_bits, correctness_bits, active)
    if found is None:
        raise InsecureParameters(
            f"no SecAgg+ graph for n={n} clients with corrupt_fraction={corrupt_fraction:g} "
            f"({corrupt} colluders) and dropout_fraction={dropout_fraction:g} ({dropped} dropped)"
            f"{' under active security' if active else ''}: no k <= {n - 1} (the complete graph "
            f"included) and threshold t >= 2 reach security_bits={security_bits:g} and "
            f"correctness_bits={correctness_bits:g}; lower the fractions or the bits, or add clients"
        )
    k, t, failure, stuck = found
    return GraphParameters(
        clients=n, neighbours=k, threshold=t, corrupt_fraction=corrupt_fraction,
        dropout_fraction=dropout_fraction, security_bits=security_bits,
        correctness_bits=correctness_bits, complete=k == n - 1, failure_log2=failure,
        correctness_log2=stuck,
    )


def _min_threshold(k: int, active: bool) -> int:
    # t >= 2: with t = 1 any one share holder alone opens a secret (secagg.graph.check_threshold).
    # Active: 2t > k + 1, so two disjoint survivor claims cannot both gather t shares.
    return max(2, (k + 1) // 2 + 1) if active else 2


@lru_cache(maxsize=1024)
def _search(n: int, corrupt: int, dropped: int, security_bits: float, correctness_bits: float,
            active: bool) -> tuple[int, int, float, float] | None:
    """Scan k upwards; return (k, t, security log2, correctness log2) for the first k that works.

    Feasibility is not monotone in k (the integer threshold makes the slack between the two
    tails wobble by one), so bisection over k could miss the smallest k. What is monotone is
    each tail on its own: the least secure threshold ``low(k)`` and the largest tolerable count
    of dropped neighbours ``slack(k)`` never decrease as k grows (more draws, stochastically
    more colluders and more dropouts) and grow by at most one per extra neighbour. So both are
    carried along the scan and each k costs a couple of tail evaluations, not a search over t.
    """
    # A k-regular graph on n vertices needs n * k even (secagg.graph rounds an odd k up for an
    # odd roster, which would silently break the bound computed for k): odd n, even k only.
    step = 2 if n % 2 else 1
    low = 1  # least t with the security bound met at the current k
    slack = 0  # least m such that "more than m dropped neighbours" meets the correctness bound
    for k in range(2, n, step):
        while _security_log2(n, k, low, corrupt) > -security_bits:
            low += 1  # ends at t = k + 1 at the latest: k neighbours hold at most k shares
        while _correctness_log2(n, k, k - slack, dropped) > -correctness_bits:
            slack += 1  # ends at m = k at the latest: nobody has more than k neighbours
        first, last = max(low, _min_threshold(k, active)), k - slack
        if first > last:
            continue
        # Several thresholds work: take the one with the largest margin over the weaker of the
        # two requirements (security improves with t, correctness worsens, so this is the
        # crossing point); ties, e.g. when both events are impossible, go to the larger t.
        best: tuple[float, int, float, float] | None = None
        for t in range(first, last + 1):
            sec, cor = _security_log2(n, k, t, corrupt), _correctness_log2(n, k, t, dropped)
            margin = min(-sec - security_bits, -cor - correctness_bits)
            if best is None or margin >= best[0]:
                best = (margin, t, sec, cor)
        assert best is not None
        return k, best[1], best[2], best[3]
    return None


# --------------------------------------------------------------------------------------------
# fcp-compatible variant (for comparison only)

_FCP_SMALL = 1e-14
_FCP_SECURITY_PER_EVENT = 41.0  # fcp splits 2^-40 over its two bad events: 2^-41 each
_FCP_CORRECTNESS = 20.0
_FCP_MAX_CLIENTS = 1_000_000


def fcp_disconnection_log2(n: int, k: int, corrupt_rate: float, dropout_rate: float) -> float:
    """log2 of fcp's union bound on the honest survivors of a random Harary graph disconnecting.

    Cutting a Harary graph of degree ``k`` takes two runs of ``k / 2`` consecutive removed
    clients; fcp bounds it by (number of pairs of run positions, ``n (n - k - 1) / 2``) times
    P[``k`` given clients are all corrupt or dropped] = ``C(b, k) / C(n, k)``, with
    ``b = floor((corrupt + 1e-14) n) + floor((dropout + 1e-14) n)``. Our own rules have no such
    condition; this is here to show it is far from binding at our ``k`` (see the docstring).
    """
    bad = math.floor((corrupt_rate + _FCP_SMALL) * n) + math.floor((dropout_rate + _FCP_SMALL) * n)
    if k > bad:
        return -math.inf
    ln = (math.log(n) + math.log(n - k - 1) - _LN2 + _ln_comb(bad, k) - _ln_comb(n, k))
    return ln / _LN2


def fcp_graph_parameters(n: int, corrupt_rate: float, dropout_rate: float, *,
                         semi_malicious: bool = False) -> tuple[int, int]:
    """(degree, threshold) by the conditions of fcp's ``ComputeHararyGraphParameters``
    (google-parfait/federated-compute, ``fcp/secagg/server/graph_parameter_finder.cc``), restated.

    Only to compare with :func:`find_graph_parameters`; the differences are listed in the module
    docstring. ``semi_malicious`` is fcp's SEMI_MALICIOUS_SERVER class, else CURIOUS_SERVER.
    """
    n = _check_int("n", n, 1, _FCP_MAX_CLIENTS)
    corrupt_rate = _check_fraction("corrupt_rate", corrupt_rate)
    dropout_rate = _check_fraction("dropout_rate", dropout_rate)
    # fcp's feasibility screens, before any search.
    if corrupt_rate + (2 if semi_malicious else 1) * dropout_rate > 0.9:
        raise InsecureParameters(
            f"fcp refuses corrupt_rate={corrupt_rate:g}, dropout_rate={dropout_rate:g}"
            f" ({'semi-malicious' if semi_malicious else 'semi-honest'}: above 0.9)"
        )
    corrupt = math.floor((corrupt_rate + _FCP_SMALL) * n)
    dropped = n - math.ceil((1 - dropout_rate - _FCP_SMALL) * n)  # fcp counts survivors, rounded up
    # Per-client targets: 2^-41 / n for exposure, 2^-20 / n for too few survivors; population n
    # (fcp does not take the client itself out of its neighbour population).
    ln_security = -_FCP_SECURITY_PER_EVENT * _LN2 - math.log(n)
    ln_correctness = -_FCP_CORRECTNESS * _LN2 - math.log(n)
    low = 1  # least t with P[X >= t] < 2^-41 / n; monotone in k as in _search
    for k in range(2, n - 1, 2):  # even degrees only, never the complete graph
        # Disconnection is one event for the whole graph: 2^-41, no 1 / n.
        if fcp_disconnection_log2(n, k, corrupt_rate, dropout_rate) >= -_FCP_SECURITY_PER_EVENT:
            continue
        while _ln_upper_tail(n, corrupt, k, low) >= ln_security:
            low += 1
        t = low
        if semi_malicious:
            # fcp: t - 1 := ceil((t - 1 + k - 1.25) / 2), i.e. roughly a majority of k on top
            t = math.ceil((low - 1 + k - 1.25) / 2) + 1
        # Too few survivors: P[fewer than t of the k neighbours survive] < 2^-20 / n.
        if _ln_upper_tail(n, dropped, k, k - t + 1) >= ln_correctness:
            continue
        return k, max(t, 2)  # fcp checks t, then lifts it to Shamir's minimum of 2
    raise InsecureParameters(f"fcp finds no Harary graph parameters for n={n}, corrupt_rate={corrupt_rate:g}, "
                             f"dropout_rate={dropout_rate:g}")
