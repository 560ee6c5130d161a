"""The numeric building blocks of the distributed discrete Gaussian: the exact discrete Gaussian
sampler, the randomized Walsh-Hadamard rotation and conditional randomized rounding.

Statistical tests use failable bounds far in the tails (p > 1e-6, or six standard errors), so
a correct implementation fails them about once in a million runs while a wrong distribution
(a rounded continuous Gaussian, a biased sign, a wrong variance) fails them every time.
"""

import decimal
import hashlib
import math
import random
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import stats
from scipy.linalg import hadamard

from privagg import ConfigurationError, InvalidUpdate, PrivaggError
from dp import discrete_gaussian as dg
from dp.discrete_gaussian import (
    DiscreteGaussianSampler,
    discrete_gaussian_pmf,
    discrete_gaussian_variance,
    sample_discrete_gaussian,
)
from dp.rotation import padded_dimension, rotate, rotation_signs, unrotate
from dp.rounding import (
    DEFAULT_BETA,
    ConditionalRoundingFailed,
    conditional_round,
    rounding_norm_bound,
)

P_MIN = 1e-6
SEED = bytes(range(32))


def chi_square_p_value(samples: np.ndarray, sigma: float) -> float:
    """Goodness of fit of integer samples to N_Z(0, sigma^2); sparse tails pooled."""
    reach = int(40 * sigma) + 10
    support = np.arange(-reach, reach + 1)
    expected = discrete_gaussian_pmf(sigma, support) * samples.size
    inner = support[expected >= 20]
    lo, hi = inner[0], inner[-1]
    observed = np.bincount(np.clip(samples, lo - 1, hi + 1) - (lo - 1), minlength=hi - lo + 3)
    inside = discrete_gaussian_pmf(sigma, np.arange(lo, hi + 1)) * samples.size
    left = discrete_gaussian_pmf(sigma, support[support < lo]).sum() * samples.size
    right = discrete_gaussian_pmf(sigma, support[support > hi]).sum() * samples.size
    expected_bins = np.concatenate([[left], inside, [right]])
    keep = expected_bins > 0
    observed, expected_bins = observed[keep], expected_bins[keep]
    assert observed.sum() == samples.size
    expected_bins *= samples.size / expected_bins.sum()
    return float(stats.chisquare(observed, expected_bins).pvalue)


# ---------------------------------------------------------------- discrete Gaussian sampler


@pytest.fixture(scope="module", params=[0.5, 1.0, 3.7, 50.0])
def drawn(request):
    sigma = request.param
    return sigma, sample_discrete_gaussian(sigma, 400_000)


def test_samples_fit_the_discrete_gaussian_pmf(drawn):
    sigma, samples = drawn
    assert samples.dtype == np.int64
    assert chi_square_p_value(samples, sigma) > P_MIN


def test_mean_is_zero_and_variance_is_the_discrete_gaussians(drawn):
    sigma, samples = drawn
    n = samples.size
    variance = discrete_gaussian_variance(sigma)
    support = np.arange(-int(40 * sigma) - 10, int(40 * sigma) + 11)
    fourth_moment = float((discrete_gaussian_pmf(sigma, support) * support.astype(float) ** 4).sum())
    x = samples.astype(np.float64)
    assert abs(x.mean()) <= 6 * math.sqrt(variance / n)
    assert abs(np.mean(x * x) - variance) <= 6 * math.sqrt((fourth_moment - variance**2) / n)


def test_small_sigma_variance_is_below_sigma_squared():
    # Var N_Z(0, 1/4) = 0.2150..., not 0.25; a rounded continuous Gaussian would give ~0.33.
    assert discrete_gaussian_variance(0.5) == pytest.approx(0.21501, abs=1e-4)
    samples = sample_discrete_gaussian(0.5, 200_000).astype(np.float64)
    assert np.mean(samples * samples) < 0.225


def test_samples_are_symmetric(drawn):
    sigma, samples = drawn
    positive, negative = int((samples > 0).sum()), int((samples < 0).sum())
    total = positive + negative
    assert abs(positive - total / 2) <= 6 * math.sqrt(total) / 2
    magnitudes = np.abs(samples)
    for k in range(1, 4):  # and magnitude by magnitude
        pos, neg = int((samples == k).sum()), int((samples == -k).sum())
        if pos + neg > 100:
            assert abs(pos - (pos + neg) / 2) <= 6 * math.sqrt(pos + neg) / 2
    assert magnitudes.max() < 40 * sigma + 10


@pytest.mark.parametrize("sigma", [0.7, 3.0])
def test_the_exact_path_alone_samples_the_same_distribution(monkeypatch, sigma):
    # Every Bernoulli and geometric decision goes through decimal arithmetic and lazy bits.
    monkeypatch.setattr(dg, "_FAST_PATH_ENABLED", False)
    samples = DiscreteGaussianSampler(sigma).sample(8_000)
    assert chi_square_p_value(samples, sigma) > P_MIN


prefixes = st.integers(0, 2**53 - 1)
exponents = st.fractions(min_value=0, max_value=40, max_denominator=10**6)


def exact_side(prefix: int, q: Fraction) -> bool | None:
    """Whether all of [prefix, prefix + 1) / 2^53 is below (True) or above (False) exp(-q),
    from a 60-digit enclosure; None when the interval straddles it."""
    lo, hi = dg._exp_neg_enclosure(q, 60)
    if Fraction(prefix + 1, 2**53) <= lo:
        return True
    if Fraction(prefix, 2**53) >= hi:
        return False
    return None


def fast_decision(prefix: int, q: Fraction) -> bool | None:
    """The float path's decision for W < exp(-q), or None when it defers to the exact path."""
    deferred = []

    def exact_q(i):
        deferred.append(i)
        return q

    result = dg._decide_below_exp(
        np.array([prefix], dtype=np.uint64),
        np.array([float(q)]),
        np.array([float(q) * dg._MARGIN]),
        exact_q,
    )
    return None if deferred else bool(result[0])


@given(prefixes, exponents)
def test_float_decisions_agree_with_exact_arithmetic(prefix, q):
    side = exact_side(prefix, q)
    decision = fast_decision(prefix, q)
    if decision is not None:
        assert decision == side


@given(exponents.filter(lambda q: q > 0), st.integers(-2, 2))
def test_float_decisions_defer_when_the_threshold_is_within_reach(q, offset):
    # W's 53-bit interval right at exp(-q): the floats must never guess.
    threshold = Fraction(dg._exp_neg_enclosure(q, 60)[0])
    prefix = min(max(math.floor(threshold * 2**53) + offset, 0), 2**53 - 1)
    side = exact_side(prefix, q)
    decision = fast_decision(prefix, q)
    assert decision is None or decision == side
    if side is None:
        assert decision is None
    # the exact path settles it, consistently with the interval's side when there is one
    answer = dg._LazyUniform(prefix, 53).is_below_exp(q)
    assert side is None or answer == side


def geometric_check(prefix: int) -> None:
    """floor(-ln W) for W in [prefix, prefix + 1) / 2^53: the floats, when they decide, agree
    with exact arithmetic, and the exact answer lies in the interval's range of values."""
    lo, hi = dg._neg_log_bounds(np.array([prefix], dtype=np.uint64))
    exact = dg._LazyUniform(prefix, 53).floor_neg_log()
    assert math.floor(-math.log((prefix + 1) / 2**53) * (1 - 1e-12)) <= exact
    if prefix > 0:
        assert exact <= math.floor(-math.log(prefix / 2**53) * (1 + 1e-12))
    if np.floor(lo[0]) == np.floor(hi[0]):
        assert int(dg._floor_neg_log(np.array([prefix], dtype=np.uint64))[0]) == exact


@given(prefixes)
def test_geometric_floats_agree_with_exact_arithmetic(prefix):
    geometric_check(prefix)


@pytest.mark.parametrize("v", range(0, 37))
def test_geometric_floats_defer_at_the_boundaries(v):
    threshold = dg._exp_neg_enclosure(Fraction(v), 60)[0]
    for offset in (-2, -1, 0, 1, 2):
        prefix = min(max(math.floor(threshold * 2**53) + offset, 0), 2**53 - 1)
        geometric_check(prefix)
        lo, hi = dg._neg_log_bounds(np.array([prefix], dtype=np.uint64))
        if Fraction(prefix, 2**53) < threshold < Fraction(prefix + 1, 2**53) and v > 0:
            assert np.floor(lo[0]) != np.floor(hi[0])  # straddles exp(-v): must defer


def test_numpy_log_is_as_accurate_as_the_fast_path_assumes():
    prefixes_ = np.frombuffer(np.random.default_rng(7).bytes(8 * 200_000), dtype=np.uint64) >> np.uint64(11)
    edges = np.array([1, 2, 3, 2**20, 2**52, 2**53 - 2, 2**53 - 1], dtype=np.uint64)
    points = np.concatenate([prefixes_, edges]).astype(np.float64) * 2.0**-53
    points = points[points > 0]
    logs = np.log(points)  # a large array: numpy's vectorised kernel, as in the sampler
    context = decimal.Context(prec=40)
    check = np.concatenate([np.arange(0, points.size, 97), np.arange(points.size - 7, points.size)])
    for i in check:
        truth = context.ln(decimal.Decimal(float(points[i])))
        if truth == 0:
            assert logs[i] == 0
            continue
        relative = abs((decimal.Decimal(float(logs[i])) - truth) / truth)
        assert relative <= decimal.Decimal(2) ** -44


@given(st.fractions(min_value=0, max_value=60, max_denominator=10**12), st.sampled_from([40, 60, 100]))
def test_exp_enclosure_contains_exp(q, digits):
    lo, hi = dg._exp_neg_enclosure(q, digits)
    # a reference 10^30 times finer than the enclosure's slack, which keeps it well inside
    context = decimal.Context(prec=digits + 30, Emin=decimal.MIN_EMIN, Emax=decimal.MAX_EMAX)
    reference = Fraction(context.exp(context.minus(context.divide(q.numerator, q.denominator))))
    assert lo < reference < hi
    assert hi - lo <= Fraction(3, 10 ** (digits - 1))


def test_lazy_uniform_edge_cases():
    assert dg._LazyUniform(2**53 - 1, 53).is_below_exp(Fraction(0))  # W < 1 = exp(-0)
    assert not dg._LazyUniform(1, 53).is_below_exp(Fraction(10**9))  # no vanishing exponential
    tiny = dg._LazyUniform(0, 53)  # W < 2^-53: its scale is found by drawing more bits
    assert tiny.floor_neg_log() >= 36 and tiny.bits > 53
    # W pinned within 2^-117 of exp(-1/3), below it: decided by extension, never guessed
    threshold = dg._exp_neg_enclosure(Fraction(1, 3), 60)[0]
    below = dg._LazyUniform(math.floor(threshold * 2**117) - 1, 117)
    above = dg._LazyUniform(math.floor(threshold * 2**117) + 1, 117)
    assert below.is_below_exp(Fraction(1, 3)) and not above.is_below_exp(Fraction(1, 3))


variances = st.one_of(
    st.floats(2.0**-80, 2.0**80).map(Fraction),
    st.fractions(min_value=Fraction(1, 10**6), max_value=10**8, max_denominator=10**9),
)


@given(variances, st.data())
def test_gaussian_exponent_error_bound_holds(variance, data):
    sampler = DiscreteGaussianSampler.from_variance(variance)
    centre = int(variance / sampler._t)  # where M - sigma^2/t cancels
    m = data.draw(st.one_of(st.integers(max(centre - 3, 0), centre + 3), st.integers(0, 40 * sampler._t)))
    estimate, error = sampler._gaussian_exponent(np.array([m], dtype=np.int64))
    exact = sampler._exact_gaussian_exponent(m)
    # the margin is 2^-42 relative; the analysis promises 12 * 2^-53, so demand 100x less slack
    assert abs(Fraction(float(estimate[0])) - exact) <= Fraction(float(error[0])) / 100


def test_sigma_squared_is_the_exact_rational_of_the_float():
    sampler = DiscreteGaussianSampler(0.1)
    assert isinstance(sampler.sigma_squared, Fraction)
    assert sampler.sigma_squared == Fraction(0.1) ** 2 != Fraction(1, 100)
    assert DiscreteGaussianSampler(3).sigma_squared == 9
    assert DiscreteGaussianSampler.from_variance(Fraction(7, 3)).sigma_squared == Fraction(7, 3)
    assert DiscreteGaussianSampler.from_variance(2.25).sigma == 1.5
    assert "1.5" in repr(DiscreteGaussianSampler(1.5))


def test_shapes_and_sizes():
    sampler = DiscreteGaussianSampler(2.0)
    assert sampler.sample((3, 4)).shape == (3, 4)
    assert sampler.sample(0).shape == (0,)
    assert sampler.sample(np.int64(5)).dtype == np.int64


def test_extreme_sigmas():
    assert not DiscreteGaussianSampler(2.0**-40).sample(10_000).any()
    huge = DiscreteGaussianSampler(2.0**40).sample(1_000)
    assert np.abs(huge).max() < 10 * 2.0**40 and np.abs(huge).max() > 2.0**36


@pytest.mark.parametrize(
    "sigma", [0, 0.0, -1.0, float("nan"), float("inf"), -float("inf"), 2.0**41, 1e-13, 10**400]
)
def test_bad_sigma_is_refused_naming_it(sigma):
    with pytest.raises(ConfigurationError, match="sigma") as caught:
        DiscreteGaussianSampler(sigma)
    assert repr(sigma) in str(caught.value) or str(sigma) in str(caught.value)
    with pytest.raises(ConfigurationError):
        sample_discrete_gaussian(sigma, 3)


@pytest.mark.parametrize("sigma", ["1.0", None, True, 1 + 2j, [1.0], decimal.Decimal("sNaN")])
def test_non_numbers_are_refused(sigma):
    with pytest.raises(ConfigurationError):
        DiscreteGaussianSampler(sigma)


def test_bad_variance_and_size_are_refused():
    for variance in (0, -2, float("nan"), Fraction(-1, 3)):
        with pytest.raises(ConfigurationError, match="variance"):
            DiscreteGaussianSampler.from_variance(variance)
    for size in (-1, 2.5, (3, -1), True):
        with pytest.raises(ConfigurationError, match="size"):
            DiscreteGaussianSampler(1.0).sample(size)


def test_sampling_never_touches_numpy_or_python_global_generators():
    np.random.seed(1234)
    random.seed(1234)
    numpy_state, python_state = np.random.get_state(), random.getstate()
    first = sample_discrete_gaussian(10.0, 1_000)
    second = sample_discrete_gaussian(10.0, 1_000)
    conditional_round(np.full(64, 0.5), 4.0)
    after = np.random.get_state()
    assert all(np.array_equal(a, b) for a, b in zip(numpy_state, after, strict=True))
    assert random.getstate() == python_state
    assert not np.array_equal(first, second)


def test_pmf_is_normalised_across_the_continuum_switch():
    for sigma in (0.3, 1.0, 7.99, 8.0, 123.0):
        support = np.arange(-int(40 * sigma) - 10, int(40 * sigma) + 11)
        assert discrete_gaussian_pmf(sigma, support).sum() == pytest.approx(1.0, rel=1e-12)
    assert discrete_gaussian_variance(1.5) == pytest.approx(2.25, rel=1e-12)
    with pytest.raises(ConfigurationError, match="integers"):
        discrete_gaussian_pmf(1.0, [0.5])


# ---------------------------------------------------------------- rotation

vectors = st.integers(1, 5000).flatmap(
    lambda n: hnp.arrays(np.float64, n, elements=st.floats(-1e6, 1e6, allow_subnormal=False))
)


@given(vectors, st.binary(min_size=32, max_size=32))
def test_rotation_keeps_the_norm_and_inverts(x, seed):
    y = rotate(x, seed)
    assert y.dtype == np.float64 and y.size == padded_dimension(x.size)
    norm = np.linalg.norm(x)
    assert abs(np.linalg.norm(y) - norm) <= 1e-12 * norm + 1e-300
    back = unrotate(y, seed, x.size)
    assert back.shape == x.shape
    assert np.linalg.norm(back - x) <= 1e-12 * norm + 1e-300


@pytest.mark.parametrize("d", [1, 2, 4, 8, 32, 128])
def test_rotation_is_the_normalised_hadamard_times_signs(d):
    x = np.random.default_rng(d).normal(size=d)
    expected = hadamard(d) @ (rotation_signs(SEED, d) * x) / math.sqrt(d)
    np.testing.assert_allclose(rotate(x, SEED), expected, rtol=1e-12, atol=1e-14)


def test_rotation_is_deterministic_per_seed_and_pinned():
    x = np.arange(1000, dtype=np.float64)
    assert np.array_equal(rotate(x, SEED), rotate(x, SEED))
    signs = rotation_signs(SEED, 1000)
    # A test vector: the derivation must not change across platforms or numpy versions.
    packed = np.packbits((signs < 0).astype(np.uint8), bitorder="little").tobytes()
    assert hashlib.sha256(packed).hexdigest() == (
        "49f766974890ffcfcdbc321349a0352f120dc172d67eb5e15ffe8fa90f837cf5"
    )
    assert "".join("-" if s < 0 else "+" for s in signs[:16]) == "----++---+---+++"
    assert np.array_equal(rotation_signs(SEED, 16), signs[:16])  # prefixes agree


def test_different_seeds_give_different_balanced_signs():
    a = rotation_signs(SEED, 1 << 16)
    b = rotation_signs(bytes(32), 1 << 16)
    assert set(np.unique(a)) == {-1.0, 1.0}
    assert abs(a.sum()) <= 6 * math.sqrt(a.size) and abs(b.sum()) <= 6 * math.sqrt(b.size)
    assert abs(np.dot(a, b)) <= 6 * math.sqrt(a.size)  # independent-looking, not just distinct
    x = np.ones(100)
    assert not np.allclose(rotate(x, SEED), rotate(x, bytes(32)))


@given(st.integers(1, 3000), st.data())
def test_a_one_hot_vector_is_spread_flat(length, data):
    position = data.draw(st.integers(0, length - 1))
    x = np.zeros(length)
    x[position] = 1.0
    y = rotate(x, SEED)
    np.testing.assert_allclose(np.abs(y), 1 / math.sqrt(y.size), rtol=1e-12)


def test_rotation_refuses_bad_inputs():
    for seed in (b"short", bytes(33), "x" * 32, None):
        with pytest.raises(ConfigurationError, match="seed"):
            rotate(np.ones(4), seed)
    for bad in (np.array([1.0, np.nan]), np.array([np.inf]), np.ones((2, 2)), np.array([]), ["a"]):
        with pytest.raises(InvalidUpdate):
            rotate(bad, SEED)
    with pytest.raises(ConfigurationError, match="length 8"):
        unrotate(np.ones(4), SEED, 5)
    with pytest.raises(ConfigurationError, match="length"):
        unrotate(np.ones(4), SEED, 0)
    assert [padded_dimension(n) for n in (1, 2, 3, 4, 5, 1000, 1024, 1025)] == [
        1, 2, 4, 4, 8, 1024, 1024, 2048
    ]


# ---------------------------------------------------------------- conditional rounding


def test_the_norm_bound_follows_the_paper():
    c, d, beta = 10.0, 1000, DEFAULT_BETA
    paper = math.sqrt(c * c + d / 4 + math.sqrt(2 * math.log(1 / beta)) * (c + math.sqrt(d) / 2))
    assert rounding_norm_bound(c, d, beta) == pytest.approx(paper, rel=1e-14)
    assert rounding_norm_bound(c, d, beta) >= paper
    assert rounding_norm_bound(c, d, 0.0) == pytest.approx(c + math.sqrt(d), rel=1e-14)
    # small d and tiny beta: the deterministic c + sqrt(d) is the smaller one
    assert rounding_norm_bound(0.1, 1, 1e-9) == pytest.approx(1.1, rel=1e-14)
    assert rounding_norm_bound(0.0, 4, 0.5) > 0


@given(
    st.integers(1, 300).flatmap(lambda n: hnp.arrays(np.float64, n, elements=st.floats(-50, 50))),
    st.floats(0, 0.99),
    st.floats(1.0, 2.0),
)
def test_rounding_always_lands_next_to_x_and_within_the_bound(x, beta, stretch):
    c = float(np.linalg.norm(x)) * stretch
    rounded = conditional_round(x, c, beta)
    assert rounded.dtype == np.int64 and rounded.shape == x.shape
    assert np.all((rounded == np.floor(x)) | (rounded == np.ceil(x)))
    assert math.sqrt(int(np.dot(rounded, rounded))) <= rounding_norm_bound(c, x.size, beta)


def test_unconditioned_rounding_is_unbiased():
    x = np.array([0.5, -0.5, 0.25, -1.75, 2.9, 0.01, -0.99, 3.0, 0.0, 1.125, -2.5, 0.3333])
    draws = 20_000
    total = np.zeros(x.size)
    for _ in range(draws):
        total += conditional_round(x, float(np.linalg.norm(x)), beta=0.0)
    fraction = x - np.floor(x)
    standard_error = np.sqrt(fraction * (1 - fraction) / draws)
    assert np.all(np.abs(total / draws - x) <= 6 * standard_error + 1e-12)


def test_conditioned_rounding_is_unbiased_up_to_noise_in_high_dimension():
    rng = np.random.default_rng(3)
    x = rng.normal(size=4096) * 3
    c = float(np.linalg.norm(x))
    draws = 200
    mean = sum(conditional_round(x, c).astype(np.float64) for _ in range(draws)) / draws
    fraction = x - np.floor(x)
    expected_spread = float((fraction * (1 - fraction)).sum()) / draws
    # ||mean - x||^2 concentrates at expected_spread when unbiased (sd ~ 2% here)
    assert float(np.sum((mean - x) ** 2)) <= 1.2 * expected_spread


def test_conditioning_rejects_long_roundings(monkeypatch):
    x = np.full(400, 0.5)
    c = float(np.linalg.norm(x))
    bound = rounding_norm_bound(c, x.size, 0.999)
    assert bound < math.sqrt(x.size)  # rounding everything up would exceed it
    accepted = [conditional_round(x, c, 0.999) for _ in range(50)]
    assert all(math.sqrt(int(np.dot(r, r))) <= bound for r in accepted)
    # a generator stuck at zero rounds every coordinate up: every try exceeds the bound
    monkeypatch.setattr("dp.rounding.os.urandom", lambda n: bytes(n))
    with pytest.raises(ConditionalRoundingFailed, match="all 3 tries") as caught:
        conditional_round(x, c, 0.999, max_tries=3)
    assert isinstance(caught.value, PrivaggError) and caught.value.tries == 3


def test_a_norm_over_c_by_float_rounding_only_is_accepted():
    x = np.full(16, 0.25)
    assert conditional_round(x, float(np.linalg.norm(x)) * (1 - 1e-14)).shape == (16,)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"x": np.ones(4), "c": 1.0}, InvalidUpdate, "exceeds c=1"),
        ({"x": np.array([np.nan]), "c": 1.0}, InvalidUpdate, "NaN"),
        ({"x": np.array([np.inf]), "c": 1.0}, InvalidUpdate, "NaN or inf"),
        ({"x": np.ones((2, 2)), "c": 9.0}, InvalidUpdate, "1-D"),
        ({"x": np.array([]), "c": 1.0}, InvalidUpdate, "non-empty"),
        ({"x": np.ones(2), "c": -1.0}, ConfigurationError, "-1.0"),
        ({"x": np.ones(2), "c": float("nan")}, ConfigurationError, "nan"),
        ({"x": np.ones(2), "c": float("inf")}, ConfigurationError, "inf"),
        ({"x": np.ones(2), "c": True}, ConfigurationError, "bool"),
        ({"x": np.ones(2), "c": 3.0, "beta": 1.0}, ConfigurationError, "beta must be in"),
        ({"x": np.ones(2), "c": 3.0, "beta": -0.1}, ConfigurationError, "-0.1"),
        ({"x": np.ones(2), "c": 3.0, "beta": float("nan")}, ConfigurationError, "nan"),
        ({"x": np.ones(2), "c": 3.0, "max_tries": 0}, ConfigurationError, "max_tries"),
    ],
)
def test_rounding_refuses_bad_inputs(kwargs, error, match):
    with pytest.raises(error, match=match):
        conditional_round(**kwargs)


def test_the_bound_refuses_bad_inputs():
    for args in ((1.0, 0, 0.5), (1.0, 2.5, 0.5), (1.0, True, 0.5), (-1.0, 3, 0.5), (1.0, 3, 1.0)):
        with pytest.raises(ConfigurationError):
            rounding_norm_bound(*args)
