"""secagg.parameters: the SecAgg+ graph finder, its tails, and its comparison with fcp's finder."""

import math
import time
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import hypergeom

from privagg.errors import ConfigurationError, InsecureParameters
from secagg import parameters as P
from secagg.graph import default_neighbours, default_threshold, effective_neighbours
from secagg.parameters import (
    DEFAULT_CORRUPT_FRACTION,
    DEFAULT_DROPOUT_FRACTION,
    GraphParameters,
    correctness_failure_log2,
    fcp_disconnection_log2,
    fcp_graph_parameters,
    find_graph_parameters,
    security_failure_log2,
)

THIRD = 1 / 3

fractions = st.floats(0.0, 0.45, allow_nan=False)
bits = st.floats(1.0, 45.0, allow_nan=False)


def realisable(n, k):
    return 1 <= k <= n - 1 and (n * k) % 2 == 0


def min_threshold(k, active):
    return max(2, (k + 1) // 2 + 1) if active else 2


def works(n, k, t, corrupt, dropout, security_bits, correctness_bits, active):
    return (t >= min_threshold(k, active)
            and security_failure_log2(n, k, t, corrupt) <= -security_bits
            and correctness_failure_log2(n, k, t, dropout) <= -correctness_bits)


def some_threshold_works(n, k, corrupt, dropout, security_bits, correctness_bits, active):
    return any(works(n, k, t, corrupt, dropout, security_bits, correctness_bits, active)
               for t in range(2, k + 1))


# --------------------------------------------------------------------------------------------
# The table in the module docstring


@pytest.mark.parametrize(
    "corrupt, dropout, active, expected",
    [
        (DEFAULT_CORRUPT_FRACTION, DEFAULT_DROPOUT_FRACTION, False, [(41, 31), (101, 71), (125, 87)]),
        (DEFAULT_CORRUPT_FRACTION, DEFAULT_DROPOUT_FRACTION, True, [(41, 31), (101, 71), (125, 87)]),
        (THIRD, THIRD, False, [(67, 34), (286, 150), (431, 225)]),
        (THIRD, THIRD, True, [(68, 35), (286, 150), (431, 225)]),
        (DEFAULT_CORRUPT_FRACTION, DEFAULT_CORRUPT_FRACTION, False, [(67, 34), (286, 150), (431, 225)]),
        (0.05, 0.05, False, [(11, 6), (29, 17), (33, 19)]),
        (0.05, 0.05, True, [(12, 7), (29, 17), (33, 19)]),
    ],
)
def test_the_docstring_table(corrupt, dropout, active, expected):
    got = [find_graph_parameters(n, corrupt_fraction=corrupt, dropout_fraction=dropout, active=active)
           for n in (100, 1000, 10000)]
    assert [(p.neighbours, p.threshold) for p in got] == expected
    assert not any(p.complete for p in got)


def test_the_defaults_are_the_documented_ones():
    assert DEFAULT_CORRUPT_FRACTION == pytest.approx(THIRD, abs=1e-8) and DEFAULT_CORRUPT_FRACTION < THIRD
    assert DEFAULT_DROPOUT_FRACTION == 0.1
    p = find_graph_parameters(300)
    assert (p.corrupt, p.dropped) == (99, 30)  # strictly fewer than a third
    assert find_graph_parameters(300, corrupt_fraction=THIRD).corrupt == 100
    assert (p.security_bits, p.correctness_bits) == (40.0, 20.0)
    assert find_graph_parameters(1000) == find_graph_parameters(
        1000, corrupt_fraction=DEFAULT_CORRUPT_FRACTION, dropout_fraction=DEFAULT_DROPOUT_FRACTION,
        security_bits=40, correctness_bits=20, active=False)


def test_the_graph_modules_log_default_gives_no_guarantee_against_a_third():
    for n in (100, 1000, 10000):
        k = effective_neighbours(n, default_neighbours(n))
        assert security_failure_log2(n, k, default_threshold(k), DEFAULT_CORRUPT_FRACTION) == 0.0


def test_feasibility_is_not_monotone_in_k_so_a_scan_is_needed():
    args = (1000, THIRD, THIRD, 40, 20, False)
    assert [some_threshold_works(args[0], k, *args[1:]) for k in (285, 286, 287, 288)] == [
        False, True, False, True]
    assert find_graph_parameters(1000, corrupt_fraction=THIRD, dropout_fraction=THIRD).neighbours == 286


def test_a_call_at_ten_thousand_clients_is_fast_and_then_cached():
    P._search.cache_clear()
    start = time.perf_counter()
    first = find_graph_parameters(10000, corrupt_fraction=THIRD, dropout_fraction=THIRD)
    cold = time.perf_counter() - start
    start = time.perf_counter()
    again = find_graph_parameters(10000, corrupt_fraction=THIRD, dropout_fraction=THIRD)
    warm = time.perf_counter() - start
    assert first == again
    assert cold < 0.25, cold  # measured about 6 ms
    assert warm < 0.01, warm


# --------------------------------------------------------------------------------------------
# What the finder returns


@settings(max_examples=60, deadline=None)
@given(st.integers(3, 400), fractions, fractions, bits, bits, st.booleans())
def test_the_pair_meets_both_bounds_and_no_smaller_k_does(n, corrupt, dropout, sbits, cbits, active):
    try:
        p = find_graph_parameters(n, corrupt_fraction=corrupt, dropout_fraction=dropout,
                                  security_bits=sbits, correctness_bits=cbits, active=active)
    except InsecureParameters:
        # Then not even the complete graph works.
        assert not some_threshold_works(n, n - 1, corrupt, dropout, sbits, cbits, active)
        return
    k, t = p.neighbours, p.threshold
    assert realisable(n, k) and 2 <= t <= k
    assert not active or 2 * t > k + 1
    assert p.failure_log2 == security_failure_log2(n, k, t, corrupt) <= -sbits
    assert p.correctness_log2 == correctness_failure_log2(n, k, t, dropout) <= -cbits
    assert p.complete == (k == n - 1)
    c, d = p.corrupt, p.dropped
    if c >= 1 and not active:  # k = c + d + 1, t = c + 1 makes both events impossible
        assert k <= c + d + 1 + (n * (c + d + 1)) % 2
    # The next smaller realisable degree fails with every threshold (all of them below k for
    # small rosters, where it is cheap).
    smaller = [j for j in range(k - 1, 0, -1) if realisable(n, j)]
    for j in smaller if n <= 80 else smaller[:1]:
        assert not some_threshold_works(n, j, corrupt, dropout, sbits, cbits, active), j


@settings(max_examples=40, deadline=None)
@given(st.integers(3, 300), fractions, fractions, st.booleans())
def test_the_threshold_has_the_largest_margin_and_ties_go_up(n, corrupt, dropout, active):
    try:
        p = find_graph_parameters(n, corrupt_fraction=corrupt, dropout_fraction=dropout, active=active)
    except InsecureParameters:
        return
    k = p.neighbours

    def margin(t):
        return min(-security_failure_log2(n, k, t, corrupt) - 40, -correctness_failure_log2(n, k, t, dropout) - 20)

    valid = [t for t in range(2, k + 1) if works(n, k, t, corrupt, dropout, 40, 20, active)]
    best = max(margin(t) for t in valid)
    assert margin(p.threshold) == best
    assert p.threshold == max(t for t in valid if margin(t) == best)


def test_an_odd_roster_gets_an_even_degree():
    for n in range(3, 200, 2):
        assert find_graph_parameters(n).neighbours % 2 == 0, n
    # and an even roster may get an odd one
    assert find_graph_parameters(1000).neighbours == 101


def test_the_complete_graph_when_only_it_works():
    # k = c + d + 1 with t = c + 1 makes both events impossible (t > c colluders, k - t = d
    # dropouts), so the complete graph is needed only when c + d + 1 is too close to n.
    p = find_graph_parameters(20, corrupt_fraction=0.3, dropout_fraction=0.6)  # c = 6, d = 12
    assert p.complete and (p.neighbours, p.threshold) == (19, 7)
    assert p.failure_log2 == p.correctness_log2 == -math.inf
    # 21 clients, c = 6, d = 12: k = 19 would do, but an odd roster has no 19-regular graph.
    q = find_graph_parameters(21, corrupt_fraction=0.3, dropout_fraction=0.58)
    assert q.complete and q.neighbours == 20 and 7 <= q.threshold <= 8
    for n, corrupt, dropout in [(20, 0.3, 0.6), (21, 0.3, 0.58)]:
        assert not any(some_threshold_works(n, k, corrupt, dropout, 40, 20, False)
                       for k in range(1, n - 1) if realisable(n, k))
    assert find_graph_parameters(3).complete  # 3 clients: k = 2 is everyone
    r = find_graph_parameters(100)
    assert r.neighbours <= r.corrupt + r.dropped + 1


@pytest.mark.parametrize("n, corrupt, dropout, active", [
    (2, 0.0, 0.0, False),  # one neighbour cannot hold t >= 2 shares
    (100, 0.6, 0.39, False),  # 60 colluders + 39 dropouts: no t in (60, 99 - 39]
    (1000, 0.5, 0.499, True),
    (40, 0.5, 0.475, False),
    (100, 0.05, 0.6, True),  # a majority threshold with 60 % gone; semi-honest works (below)
])
def test_impossible_settings_raise_insecure_parameters_naming_them(n, corrupt, dropout, active):
    with pytest.raises(InsecureParameters) as info:
        find_graph_parameters(n, corrupt_fraction=corrupt, dropout_fraction=dropout, active=active)
    message = str(info.value)
    assert f"n={n}" in message
    assert f"corrupt_fraction={corrupt:g}" in message and f"dropout_fraction={dropout:g}" in message
    assert "security_bits=40" in message and "correctness_bits=20" in message
    assert ("active" in message) == active


def test_semi_honest_sizes_what_active_cannot():
    p = find_graph_parameters(100, corrupt_fraction=0.05, dropout_fraction=0.6)
    assert (p.corrupt, p.dropped) == (5, 60) and not p.complete


# --------------------------------------------------------------------------------------------
# Monotone behaviour


@settings(max_examples=40, deadline=None)
@given(st.integers(3, 2000), fractions, fractions, fractions, st.booleans())
def test_more_corruption_or_dropout_never_lowers_k(n, a, b, dropout, active):
    low, high = sorted((a, b))

    def k(corrupt, drop):
        try:
            return find_graph_parameters(n, corrupt_fraction=corrupt, dropout_fraction=drop, active=active).neighbours
        except InsecureParameters:
            return math.inf

    assert k(low, dropout) <= k(high, dropout)
    assert k(dropout, low) <= k(dropout, high)


@settings(max_examples=40, deadline=None)
@given(st.integers(3, 2000), fractions, fractions, bits, bits)
def test_more_bits_or_active_security_never_lower_k(n, corrupt, dropout, sbits, cbits):
    def k(**kw):
        try:
            return find_graph_parameters(n, corrupt_fraction=corrupt, dropout_fraction=dropout, **kw).neighbours
        except InsecureParameters:
            return math.inf

    assert k(security_bits=sbits, correctness_bits=cbits) <= k(security_bits=sbits + 5, correctness_bits=cbits)
    assert k(security_bits=sbits, correctness_bits=cbits) <= k(security_bits=sbits, correctness_bits=cbits + 5)
    assert k(security_bits=sbits, correctness_bits=cbits) <= k(security_bits=sbits, correctness_bits=cbits,
                                                              active=True)


@settings(max_examples=60, deadline=None)
@given(st.integers(3, 3000), st.data(), fractions, fractions)
def test_the_bounds_move_the_right_way(n, data, low, high):
    low, high = sorted((low, high))
    k = data.draw(st.integers(1, n - 1))
    t = data.draw(st.integers(1, k))
    assert security_failure_log2(n, k, t + 1, high) <= security_failure_log2(n, k, t, high)
    assert correctness_failure_log2(n, k, t, high) <= correctness_failure_log2(n, k, t + 1, high)
    assert security_failure_log2(n, k, t, low) <= security_failure_log2(n, k, t, high)
    assert correctness_failure_log2(n, k, t, low) <= correctness_failure_log2(n, k, t, high)
    if k + 1 <= n - 1:  # one more neighbour: more colluders and more dropouts among them
        assert security_failure_log2(n, k, t, high) <= security_failure_log2(n, k + 1, t, high) + 1e-9
        assert correctness_failure_log2(n, k, t, high) <= correctness_failure_log2(n, k + 1, t + 1, high) + 1e-9


# --------------------------------------------------------------------------------------------
# The tails against independent computations


def exact_log2(population, marked, draws, at_least, factor):
    """log2 min(1, factor * P[X >= at_least]) in rational arithmetic (None for 0)."""
    favourable = sum(math.comb(marked, x) * math.comb(population - marked, draws - x)
                     for x in range(max(at_least, 0), draws + 1))
    p = Fraction(factor * favourable, math.comb(population, draws))
    if p == 0:
        return None
    return 0.0 if p >= 1 else math.log2(p.numerator) - math.log2(p.denominator)


def close(got, want):
    if want is None:
        return got == -math.inf
    return got == pytest.approx(want, rel=1e-9, abs=1e-9)


@settings(max_examples=300, deadline=None)
@given(st.integers(2, 60), st.data(), st.floats(0, 0.99))
def test_the_tails_match_rational_arithmetic(n, data, fraction):
    k = data.draw(st.integers(1, n - 1))
    t = data.draw(st.integers(1, k + 1))
    c = math.floor(fraction * n + 1e-9)
    assert close(security_failure_log2(n, k, t, fraction), exact_log2(n - 1, c, k, t, n - c))
    assert close(correctness_failure_log2(n, k, t, fraction), exact_log2(n - 1, c, k, k - t + 1, n))


@pytest.mark.parametrize("n, k, t, fraction", [
    (1000, 101, 71, DEFAULT_CORRUPT_FRACTION),
    (1000, 286, 150, THIRD),
    (3000, 200, 150, 0.2),  # about 2^-180: far past where 1 - cdf is 0
    (10000, 125, 87, DEFAULT_CORRUPT_FRACTION),
])
def test_far_tails_match_rational_arithmetic_and_scipy(n, k, t, fraction):
    c = math.floor(fraction * n + 1e-9)
    want = exact_log2(n - 1, c, k, t, n - c)
    got = security_failure_log2(n, k, t, fraction)
    assert want < -40 and close(got, want)
    scipy_log2 = (math.log(n - c) + hypergeom.logsf(t - 1, n - 1, c, k)) / math.log(2)
    assert got == pytest.approx(scipy_log2, rel=1e-7)


def test_one_minus_the_cdf_could_not_have_resolved_these_tails():
    assert 1 - hypergeom.cdf(149, 2999, 600, 200) == 0.0
    assert security_failure_log2(3000, 200, 150, 0.2) < -150


def test_the_count_reads_fractions_generously():
    assert find_graph_parameters(100, corrupt_fraction=0.29).corrupt == 29  # 0.29 * 100 < 29 in floats
    assert find_graph_parameters(100, dropout_fraction=0.29).dropped == 29
    assert security_failure_log2(100, 40, 20, 0.29) == security_failure_log2(100, 40, 20, 0.2900000001)


# --------------------------------------------------------------------------------------------
# Monte Carlo over a real Harary-like graph


def exposures(n, k, t, marked, trials, seed):
    """Per random ring order, how many unmarked clients have at least t marked neighbours,
    in the graph secagg.graph builds: k // 2 ring neighbours on each side, plus the opposite
    client for odd k."""
    rng = np.random.default_rng(seed)
    offsets = [o for j in range(1, k // 2 + 1) for o in (j, -j)] + ([n // 2] if k % 2 else [])
    positions = np.arange(n)
    orders = np.argsort(rng.random((trials, n)), axis=1)  # orders[r, i]: the client at ring position i
    is_marked = marked[orders]
    hits = sum(is_marked[:, (positions + o) % n].astype(np.int64) for o in offsets)
    return ((hits >= t) & ~is_marked).sum(axis=1)


def test_monte_carlo_exposure_is_below_the_bound():
    n, fraction = 30, 0.3
    p = find_graph_parameters(n, corrupt_fraction=fraction, dropout_fraction=0.1, security_bits=3,
                              correctness_bits=3)
    k, t, c = p.neighbours, p.threshold, p.corrupt
    assert p.failure_log2 <= -3 and p.failure_log2 > -8  # not trivially small
    marked = np.zeros(n, dtype=bool)
    marked[:c] = True  # the colluders are fixed first; the graph is drawn after
    trials = 200_000
    counts = exposures(n, k, t, marked, trials, seed=1)
    bound = 2.0**p.failure_log2
    # P[some honest client exposed] stays below the union bound...
    assert (counts > 0).mean() <= bound + 4 * math.sqrt(bound / trials)
    # ...and the bound is exactly the expected number of exposed honest clients, which pins the
    # hypergeometric model to the real graph.
    assert counts.mean() == pytest.approx(bound, abs=4 * counts.std() / math.sqrt(trials))


def test_monte_carlo_stuck_clients_match_the_correctness_bound():
    n = 30
    p = find_graph_parameters(n, corrupt_fraction=0.2, dropout_fraction=0.2, security_bits=3, correctness_bits=3)
    k, t, d = p.neighbours, p.threshold, p.dropped
    assert -8 < p.correctness_log2 <= -3
    dropped = np.zeros(n, dtype=bool)
    dropped[:d] = True
    trials = 200_000
    # A surviving client is stuck when more than k - t of its neighbours dropped.
    counts = exposures(n, k, k - t + 1, dropped, trials, seed=2)
    bound = 2.0**p.correctness_log2
    # The bound counts all n clients, the simulation the n - d survivors: scale before comparing.
    expected = bound * (n - d) / n
    assert (counts > 0).mean() <= bound + 4 * math.sqrt(bound / trials)
    assert counts.mean() == pytest.approx(expected, abs=4 * counts.std() / math.sqrt(trials))


# --------------------------------------------------------------------------------------------
# Input validation


@pytest.mark.parametrize("kwargs", [
    {"n": 1}, {"n": 0}, {"n": True}, {"n": 10.0}, {"n": "10"},
    {"n": 100, "corrupt_fraction": -0.1}, {"n": 100, "corrupt_fraction": 1.0},
    {"n": 100, "corrupt_fraction": float("nan")}, {"n": 100, "corrupt_fraction": True},
    {"n": 100, "dropout_fraction": 1.5}, {"n": 100, "dropout_fraction": "0.1"},
    {"n": 100, "corrupt_fraction": 0.5, "dropout_fraction": 0.5},
    {"n": 100, "security_bits": 0}, {"n": 100, "security_bits": -1}, {"n": 100, "security_bits": True},
    {"n": 100, "correctness_bits": float("nan")}, {"n": 100, "correctness_bits": float("inf")},
    {"n": 100, "active": 1}, {"n": 100, "active": "yes"},
])
def test_bad_arguments_raise_configuration_error(kwargs):
    n = kwargs.pop("n")
    with pytest.raises(ConfigurationError):
        find_graph_parameters(n, **kwargs)


@pytest.mark.parametrize("args", [
    (1, 1, 1, 0.1), (True, 1, 2, 0.1), (10, 0, 1, 0.1), (10, 10, 2, 0.1), (10, 3, 0, 0.1), (10, 3, 5, 0.1),
    (10, 3.0, 2, 0.1), (10, 3, 2, 1.0), (10, 3, 2, -0.5), (10, 3, 2, False),
])
def test_the_bounds_validate_their_arguments(args):
    for bound in (security_failure_log2, correctness_failure_log2):
        with pytest.raises(ConfigurationError):
            bound(*args)


def test_numpy_integers_are_accepted():
    p = find_graph_parameters(np.int64(1000), corrupt_fraction=np.float64(0.2))
    assert isinstance(p, GraphParameters) and type(p.clients) is int and type(p.corrupt_fraction) is float
    assert p == find_graph_parameters(1000, corrupt_fraction=0.2)


# --------------------------------------------------------------------------------------------
# fcp's finder (google-parfait/federated-compute, fcp/secagg/server/graph_parameter_finder_test.cc):
# its whole feasible table, (n, corrupt rate, dropout rate, semi-malicious, degree, threshold).

SH, SM = False, True
FCP_TABLE = [
    (100, .45, .45, SH, 92, 46), (1000, .45, .45, SH, 822, 417), (10000, .45, .45, SH, 3494, 1771),
    (100000, .45, .45, SH, 5508, 2788), (1000000, .45, .45, SH, 6240, 3156),
    (10, .33, .33, SH, 8, 4), (100, .33, .33, SH, 68, 34), (1000, .33, .33, SH, 286, 150),
    (10000, .33, .33, SH, 422, 221), (100000, .33, .33, SH, 480, 251), (1000000, .33, .33, SH, 518, 270),
    (100, .3, .3, SM, 92, 62), (1000, .3, .3, SM, 872, 584), (10000, .3, .3, SM, 4822, 3230),
    (100000, .3, .3, SM, 9388, 6286), (1000000, .3, .3, SM, 11136, 7454),
    (10, .05, .33, SH, 4, 2), (100, .05, .33, SH, 28, 6), (1000, .05, .33, SH, 72, 24),
    (10000, .05, .33, SH, 86, 29), (100000, .05, .33, SH, 96, 32), (1000000, .05, .33, SH, 102, 34),
    (10, .05, .33, SM, 8, 5), (100, .05, .33, SM, 72, 39), (1000, .05, .33, SM, 398, 223),
    (10000, .05, .33, SM, 746, 420), (100000, .05, .33, SM, 882, 496), (1000000, .05, .33, SM, 970, 545),
    (10, .33, .05, SH, 4, 4), (100, .33, .05, SH, 34, 29), (1000, .33, .05, SH, 78, 60),
    (10000, .33, .05, SH, 92, 70), (100000, .33, .05, SH, 102, 77), (1000000, .33, .05, SH, 110, 83),
    (10, .33, .05, SM, 4, 4), (100, .33, .05, SM, 42, 37), (1000, .33, .05, SM, 132, 109),
    (10000, .33, .05, SM, 178, 146), (1000000, .33, .05, SM, 212, 173),
    (10, .05, .05, SH, 2, 2), (100, .05, .05, SH, 12, 6), (1000, .05, .05, SH, 30, 17),
    (10000, .05, .05, SH, 34, 20), (100000, .05, .05, SH, 36, 21), (1000000, .05, .05, SH, 38, 22),
    (10, .05, .05, SM, 2, 2), (100, .05, .05, SM, 16, 11), (1000, .05, .05, SM, 52, 37),
    (10000, .05, .05, SM, 62, 44), (100000, .05, .05, SM, 68, 48), (1000000, .05, .05, SM, 74, 52),
    (10, .33, 0, SH, 4, 4), (100, .33, 0, SH, 26, 25), (1000, .33, 0, SH, 38, 36),
    (10000, .33, 0, SH, 42, 40), (100000, .33, 0, SH, 46, 44), (1000000, .33, 0, SH, 50, 47),
    (10, .33, 0, SM, 4, 4), (100, .33, 0, SM, 26, 26), (1000, .33, 0, SM, 38, 37),
    (10000, .33, 0, SM, 42, 41), (100000, .33, 0, SM, 46, 45), (1000000, .33, 0, SM, 50, 49),
    (10, 0, .33, SH, 4, 2), (100, 0, .33, SH, 26, 2), (1000, 0, .33, SH, 38, 2),
    (10000, 0, .33, SH, 42, 2), (100000, 0, .33, SH, 46, 2), (1000000, 0, .33, SH, 50, 2),
    (10, 0, .33, SM, 8, 5), (100, 0, .33, SM, 68, 35), (1000, 0, .33, SM, 228, 115),
    (10000, 0, .33, SM, 326, 164), (100000, 0, .33, SM, 372, 187), (1000000, 0, .33, SM, 410, 206),
    (10, 0, 0, SH, 2, 2), (100, 0, 0, SH, 2, 2), (1000000, 0, 0, SH, 2, 2),
    (10, 0, 0, SM, 2, 2), (1000000, 0, 0, SM, 2, 2),
]


@pytest.mark.parametrize("n, corrupt, dropout, semi_malicious, degree, threshold", FCP_TABLE)
def test_the_fcp_variant_reproduces_fcps_table(n, corrupt, dropout, semi_malicious, degree, threshold):
    assert fcp_graph_parameters(n, corrupt, dropout, semi_malicious=semi_malicious) == (degree, threshold)


@pytest.mark.parametrize("n, corrupt, dropout, semi_malicious", [
    (1000, 0.5, 0.5, SH), (1000, 0.5, 0.5, SM), (1000, 0.33, 0.33, SM), (1000, 0.5, 0.41, SH),
])
def test_the_fcp_variant_refuses_what_fcp_refuses(n, corrupt, dropout, semi_malicious):
    with pytest.raises(InsecureParameters):
        fcp_graph_parameters(n, corrupt, dropout, semi_malicious=semi_malicious)


# (corrupt, dropout, fcp semi-malicious / our active): fcp's degrees and ours at n = 100, 1e3, 1e4,
# the docstring's comparison table.
VERSUS = [
    (0.45, 0.45, False, [92, 822, 3494], [91, 823, 3447]),
    (0.33, 0.33, False, [68, 286, 422], [67, 278, 413]),
    (0.33, 0.05, False, [34, 78, 92], [33, 76, 90]),
    (0.05, 0.05, False, [12, 30, 34], [11, 29, 33]),
    (0.33, 0.0, False, [26, 38, 42], [23, 31, 33]),
    (0.0, 0.33, False, [26, 38, 42], [18, 22, 25]),
    (0.3, 0.3, True, [92, 872, 4822], [60, 215, 296]),
    (0.33, 0.05, True, [42, 132, 178], [33, 76, 90]),
]


@pytest.mark.parametrize("corrupt, dropout, malicious, fcp, ours", VERSUS)
def test_fcp_against_ours(corrupt, dropout, malicious, fcp, ours):
    sizes = (100, 1000, 10000)
    assert [fcp_graph_parameters(n, corrupt, dropout, semi_malicious=malicious)[0] for n in sizes] == fcp
    assert [find_graph_parameters(n, corrupt_fraction=corrupt, dropout_fraction=dropout, active=malicious).neighbours
            for n in sizes] == ours


def test_fcps_connectivity_bound_would_not_change_the_docstring_table():
    for corrupt, dropout in [(DEFAULT_CORRUPT_FRACTION, DEFAULT_DROPOUT_FRACTION), (THIRD, THIRD), (0.05, 0.05)]:
        for active in (False, True):
            for n in (100, 1000, 10000):
                p = find_graph_parameters(n, corrupt_fraction=corrupt, dropout_fraction=dropout, active=active)
                assert fcp_disconnection_log2(n, p.neighbours, corrupt, dropout) < -72
    # but it is what sets fcp's degree without dropouts (fcp: 38 at n = 1,000; 36 would pass the tails)
    assert fcp_disconnection_log2(1000, 36, 0.33, 0.0) >= -41 > fcp_disconnection_log2(1000, 38, 0.33, 0.0)


def test_the_issue_trackers_figures_are_not_fcps():
    # "computed its way for a third corrupted, k = 338 at n = 1,000 and 538 at n = 10,000"
    third = {(n, d): fcp_graph_parameters(n, THIRD, d)[0] for n in (1000, 10000) for d in (0.0, 0.05, 0.33)}
    assert third == {(1000, 0.0): 38, (1000, 0.05): 78, (1000, 0.33): 286,
                     (10000, 0.0): 42, (10000, 0.05): 92, (10000, 0.33): 428}
    assert [fcp_graph_parameters(n, THIRD, 0.05, semi_malicious=True)[0] for n in (1000, 10000)] == [138, 178]
    # No dropout rate makes fcp answer 338 at n = 1,000: its degree grows with the dropout count
    # (every rate between two counts is one of them) and jumps from 336 to 340.
    degrees = [fcp_graph_parameters(1000, THIRD, dropped / 1000)[0] for dropped in range(330, 400)]
    assert degrees == sorted(degrees) and 336 in degrees and 340 in degrees and 338 not in degrees
    # The nearest: a 37 % dropout rate, and ours with a third dropping at 40 correctness bits.
    assert [fcp_graph_parameters(n, THIRD, 0.37)[0] for n in (1000, 10000)] == [342, 554]
    assert [find_graph_parameters(n, corrupt_fraction=THIRD, dropout_fraction=0.37).neighbours
            for n in (1000, 10000)] == [339, 542]
    assert [find_graph_parameters(n, corrupt_fraction=THIRD, dropout_fraction=THIRD, correctness_bits=40).neighbours
            for n in (1000, 10000)] == [341, 542]
