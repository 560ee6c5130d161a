"""Privacy accounting: events, RDP and PLD accountants, calibration.

The literal expectations are published-library values measured with Opacus 1.6.0 and
dp_accounting 0.6.0 (delta = 1e-5 unless said otherwise); everything else is checked against
independent computations (quadrature, the exact Gaussian formula, optimistic lower bounds)
or against properties any correct accountant has.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, optimize, special

from dp.accountant import PrivacyAccountant
from dp.calibration import MIN_NOISE_MULTIPLIER, calibrate, epsilon, make_accountant
from dp.events import (
    ComposedEvent,
    DiscreteGaussianEvent,
    DistributedDiscreteGaussianEvent,
    GaussianEvent,
    PoissonSampledEvent,
    SelfComposedEvent,
    UnsupportedEvent,
    event_from_dict,
)
from dp.pld import PldAccountant, gaussian_delta, gaussian_pld, subsampled_gaussian_pld
from dp.rdp import (
    DEFAULT_ORDERS,
    RdpAccountant,
    distributed_discrete_gaussian_rdp,
    event_rdp,
    poisson_subsampled_rdp_bound,
    rdp_to_delta,
    rdp_to_epsilon,
    subsampled_gaussian_rdp,
)
from privagg.errors import ConfigurationError

DELTA = 1e-5

# (q, sigma, steps, Opacus RDP epsilon, dp_accounting PLD epsilon)
REFERENCES = [
    (0.04, 1.5, 2250, 7.3291112, 6.7687874),
    (0.01, 4.0, 10000, 1.0354901, 0.9469993),
    (0.01, 1.1, 1000, 1.7117701, 1.5153702),
    (0.001, 0.8, 10000, 1.3838218, 0.7825248),
]
DP_ACCOUNTING_RDP_FIRST = 7.3293347  # dp_accounting's RDP on the first reference


def sampled(q: float, sigma: float) -> PoissonSampledEvent:
    return PoissonSampledEvent(q, GaussianEvent(sigma))


def optimistic_pld_epsilon(q: float, sigma: float, steps: int, delta: float = DELTA) -> float:
    """A lower bound on the true epsilon: losses rounded down, tails dropped."""
    return subsampled_gaussian_pld(q, sigma, pessimistic=False).self_compose(steps).epsilon(delta)


def exact_gaussian_delta(mu: float, eps: float) -> float:
    """Balle and Wang (2018), straight from scipy: Phi(mu/2 - eps/mu) - e^eps Phi(-mu/2 - eps/mu)."""
    return special.ndtr(mu / 2 - eps / mu) - math.exp(eps) * special.ndtr(-mu / 2 - eps / mu)


# -- published reference values ----------------------------------------------------------------
@pytest.mark.parametrize("q, sigma, steps, opacus_rdp, pld_reference", REFERENCES)
def test_rdp_is_never_looser_than_opacus_and_stays_above_the_tight_value(q, sigma, steps, opacus_rdp,
                                                                         pld_reference):
    eps, order = RdpAccountant().compose(sampled(q, sigma), steps).get_epsilon_and_order(DELTA)
    assert eps <= opacus_rdp * (1 + 1e-6)
    assert eps >= pld_reference  # an RDP bound cannot beat the (near-exact) PLD value
    assert order in DEFAULT_ORDERS


def test_rdp_beats_dp_accounting_rdp_on_the_first_reference():
    eps = RdpAccountant().compose(sampled(0.04, 1.5), 2250).get_epsilon(DELTA)
    assert eps <= min(7.3291112, DP_ACCOUNTING_RDP_FIRST) * (1 + 1e-6)


@pytest.mark.parametrize("q, sigma, steps, opacus_rdp, pld_reference", REFERENCES)
def test_pld_matches_dp_accounting_and_is_pessimistic(q, sigma, steps, opacus_rdp, pld_reference):
    eps = PldAccountant().compose(sampled(q, sigma), steps).get_epsilon(DELTA)
    assert abs(eps / pld_reference - 1) <= 5e-3
    assert eps >= optimistic_pld_epsilon(q, sigma, steps)


def test_pld_delta_for_three_subsampled_steps():
    accountant = PldAccountant().compose(SelfComposedEvent(sampled(0.2, 0.5), 3))
    delta = accountant.get_delta(1.0)
    assert abs(delta / 0.1559328 - 1) <= 5e-3
    lower = subsampled_gaussian_pld(0.2, 0.5, pessimistic=False).self_compose(3).delta(1.0)
    assert lower <= delta


def test_unsampled_gaussian_matches_the_exact_formula():
    # sigma = 2, T = 100: mu = sqrt(T) / sigma = 5.
    assert exact_gaussian_delta(5.0, 5.0) == pytest.approx(0.8986676, rel=1e-7)
    for event in (GaussianEvent(2.0), PoissonSampledEvent(1.0, GaussianEvent(2.0))):
        delta = PldAccountant().compose(event, 100).get_delta(5.0)
        assert abs(delta / 0.8986676 - 1) <= 1e-4
        assert delta >= exact_gaussian_delta(5.0, 5.0) * (1 - 1e-12)


def test_discretised_gaussian_composed_by_squaring_stays_within_1e4_and_above_the_truth():
    pair = gaussian_pld(2.0).self_compose(100)
    exact = exact_gaussian_delta(5.0, 5.0)
    assert exact <= pair.delta(5.0) <= exact * (1 + 1e-4)
    eps = pair.epsilon(0.5)
    assert gaussian_delta(5.0, eps) <= 0.5 * (1 + 1e-6)  # never below the true epsilon
    assert eps == pytest.approx(optimize.brentq(lambda e: exact_gaussian_delta(5.0, e) - 0.5, 0, 50), rel=1e-4)


def test_mixed_history_uses_the_discretised_gaussian_and_agrees_with_exact_limits():
    mixed = PldAccountant().compose(GaussianEvent(3.0), 10).compose(sampled(0.01, 1.0), 100)
    only_sampled = PldAccountant().compose(sampled(0.01, 1.0), 100)
    only_gaussian = PldAccountant().compose(GaussianEvent(3.0), 10)
    eps = mixed.get_epsilon(DELTA)
    assert eps > max(only_sampled.get_epsilon(DELTA), only_gaussian.get_epsilon(DELTA))
    assert eps <= RdpAccountant().compose(GaussianEvent(3.0), 10).compose(sampled(0.01, 1.0), 100).get_epsilon(DELTA)


# -- RDP numerics against independent computations ---------------------------------------------
def quadrature_log_a(q: float, sigma: float, alpha: float) -> float:
    def integrand(z: float) -> float:
        log_ratio = np.logaddexp(math.log1p(-q), math.log(q) + (2 * z - 1) / (2 * sigma**2))
        return math.exp(-z * z / (2 * sigma**2) + alpha * log_ratio) / (math.sqrt(2 * math.pi) * sigma)

    value, _ = integrate.quad(integrand, -40 * sigma, alpha + 40 * sigma, points=[0.0, 0.5, 1.0, alpha],
                              limit=400, epsabs=0.0, epsrel=1e-12)
    return math.log(value)


@pytest.mark.parametrize("q, sigma", [(0.01, 1.1), (0.04, 1.5), (0.1, 0.5), (0.3, 2.0), (0.9, 0.7)])
def test_fractional_orders_match_quadrature(q, sigma):
    orders = [1.05, 1.3, 1.75, 2.5, 4.2, 7.9, 10.9]
    ours = subsampled_gaussian_rdp(q, sigma, orders) * (np.asarray(orders) - 1)
    reference = [quadrature_log_a(q, sigma, a) for a in orders]
    np.testing.assert_allclose(ours, reference, rtol=1e-8, atol=1e-13)


@pytest.mark.parametrize("q, sigma", [(1e-3, 0.8), (0.05, 1.0), (0.5, 0.6), (0.99, 3.0)])
def test_integer_and_fractional_series_agree_at_integers(q, sigma):
    integers = np.array([2.0, 3.0, 5.0, 8.0])
    near = integers + 1e-9  # the fractional series, a hair away from each integer
    np.testing.assert_allclose(subsampled_gaussian_rdp(q, sigma, integers),
                               subsampled_gaussian_rdp(q, sigma, near), rtol=1e-6)


def test_no_sampling_is_the_gaussian_curve():
    orders = np.array(DEFAULT_ORDERS)
    np.testing.assert_allclose(subsampled_gaussian_rdp(1.0, 1.7, orders), orders / (2 * 1.7**2))


def test_conversions_follow_the_published_formula_and_are_mutually_consistent():
    orders, rdp = np.array([2.0, 8.0, 32.0]), np.array([0.3, 1.1, 4.0])
    eps, order = rdp_to_epsilon(orders, rdp, 1e-6)
    by_hand = rdp + np.log1p(-1 / orders) - (math.log(1e-6) + np.log(orders)) / (orders - 1)
    assert eps == pytest.approx(by_hand.min()) and order == orders[by_hand.argmin()]
    delta, _ = rdp_to_delta(orders, rdp, eps)
    assert delta <= 1e-6 * (1 + 1e-9)
    assert rdp_to_delta(orders, rdp, eps * 0.9)[0] > 1e-6


def test_tiny_rdp_gives_zero_epsilon_through_total_variation():
    # delta >= sqrt(1 - exp(-rdp)) bounds the total variation distance outright.
    assert rdp_to_epsilon([2.0], [1e-12], 1e-5) == (0.0, 2.0)


# -- events --------------------------------------------------------------------------------------
BAD_EVENTS = [
    (lambda: GaussianEvent(0.0), "noise_multiplier"),
    (lambda: GaussianEvent(-1.0), "noise_multiplier"),
    (lambda: GaussianEvent(float("nan")), "NaN"),
    (lambda: GaussianEvent(float("inf")), "finite"),
    (lambda: GaussianEvent("1.0"), "number"),
    (lambda: GaussianEvent(True), "number"),
    (lambda: PoissonSampledEvent(0.0, GaussianEvent(1.0)), "sampling_rate"),
    (lambda: PoissonSampledEvent(1.5, GaussianEvent(1.0)), "sampling_rate"),
    (lambda: PoissonSampledEvent(float("nan"), GaussianEvent(1.0)), "NaN"),
    (lambda: PoissonSampledEvent(0.1, "gaussian"), "PrivacyEvent"),
    (lambda: SelfComposedEvent(GaussianEvent(1.0), -1), "count"),
    (lambda: SelfComposedEvent(GaussianEvent(1.0), 2.5), "count"),
    (lambda: SelfComposedEvent(GaussianEvent(1.0), True), "count"),
    (lambda: ComposedEvent([GaussianEvent(1.0), 3]), "events[1]"),
    (lambda: ComposedEvent(GaussianEvent(1.0)), "sequence"),
    (lambda: DiscreteGaussianEvent(0.0), "sigma"),
    (lambda: DiscreteGaussianEvent(1.0, -2.0), "l2_sensitivity"),
    (lambda: DistributedDiscreteGaussianEvent(0.4, 10, 1.0, 5), "sigma"),
    (lambda: DistributedDiscreteGaussianEvent(1.0, 0, 1.0, 5), "num_clients"),
    (lambda: DistributedDiscreteGaussianEvent(1.0, 10, 0.0, 5), "l2_sensitivity"),
    (lambda: DistributedDiscreteGaussianEvent(1.0, 10, 1.0, 5, l1_sensitivity=float("nan")), "NaN"),
    (lambda: DistributedDiscreteGaussianEvent(1.0, 10, 1.0, dimension=0), "dimension"),
]


@pytest.mark.parametrize("make, mentions", BAD_EVENTS)
def test_bad_events_are_refused_with_a_reason(make, mentions):
    with pytest.raises(ConfigurationError, match=mentions.replace("[", r"\[").replace("]", r"\]")):
        make()


def test_events_are_immutable_hashable_values():
    a = PoissonSampledEvent(0.1, GaussianEvent(1))
    b = PoissonSampledEvent(0.1, GaussianEvent(1.0))
    assert a == b and hash(a) == hash(b) and isinstance(a.event.noise_multiplier, float)
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.sampling_rate = 0.2  # type: ignore[misc]


def test_events_round_trip_through_json():
    event = ComposedEvent([
        SelfComposedEvent(sampled(0.01, 1.1), 1000),
        DiscreteGaussianEvent(4.0, 2.0),
        PoissonSampledEvent(0.5, DistributedDiscreteGaussianEvent(2.0, 50, 100.0, dimension=1000)),
        ComposedEvent([]),
    ])
    assert event_from_dict(json.loads(json.dumps(event.to_dict()))) == event
    with pytest.raises(ConfigurationError, match="unknown privacy event type"):
        event_from_dict({"type": "laplace", "scale": 1.0})
    with pytest.raises(ConfigurationError, match="noise_multiplier"):
        event_from_dict({"type": "gaussian", "noise_multiplier": -1})


def test_tau_of_the_distributed_discrete_gaussian():
    event = DistributedDiscreteGaussianEvent(0.8, 5, 10.0, dimension=7)
    by_hand = 10 * sum(math.exp(-2 * math.pi**2 * 0.8**2 * k / (k + 1)) for k in range(1, 5))
    assert event.tau == pytest.approx(by_hand, rel=1e-12)
    assert DistributedDiscreteGaussianEvent(0.8, 1, 10.0, 7).tau == 0.0
    with pytest.raises(TypeError, match="dimension"):  # no default: forgetting it must not under-count
        DistributedDiscreteGaussianEvent(0.8, 5, 10.0)  # type: ignore[call-arg]
    many = DistributedDiscreteGaussianEvent(0.5, 300_000, 10.0, 7)  # past the directly summed head
    k = np.arange(1, 300_000, dtype=np.float64)
    assert many.tau == pytest.approx(10 * np.exp(-2 * math.pi**2 * 0.25 * k / (k + 1)).sum(), rel=1e-12)
    assert event.effective_l1_sensitivity == min(math.sqrt(7) * 10.0, 100.0)


def test_unsupported_events_name_the_event_and_change_nothing():
    accountant = PldAccountant().compose(sampled(0.1, 1.0), 5)
    before = accountant.state_dict()
    event = SelfComposedEvent(DiscreteGaussianEvent(3.0), 4)
    assert not accountant.supports(event)
    with pytest.raises(UnsupportedEvent, match="DiscreteGaussianEvent") as info:
        accountant.compose(event)
    assert isinstance(info.value, ConfigurationError) and info.value.event is event
    assert accountant.state_dict() == before
    rdp = RdpAccountant()
    nested = PoissonSampledEvent(0.1, ComposedEvent([GaussianEvent(1.0)]))
    assert rdp.supports(event) and not rdp.supports(nested)
    with pytest.raises(UnsupportedEvent, match="ComposedEvent"):
        rdp.compose(nested)


# -- the shared accountant API ---------------------------------------------------------------------
ACCOUNTANT_CLASSES = [RdpAccountant, PldAccountant]


@pytest.mark.parametrize("cls", ACCOUNTANT_CLASSES)
@pytest.mark.parametrize("delta", [0.0, 1.0, -0.1, 1.5, float("nan"), "1e-5", None, True])
def test_bad_delta_is_refused(cls, delta):
    with pytest.raises(ConfigurationError, match="delta"):
        cls().compose(sampled(0.1, 1.0)).get_epsilon(delta)


@pytest.mark.parametrize("cls", ACCOUNTANT_CLASSES)
@pytest.mark.parametrize("eps", [-0.5, float("nan"), float("inf"), "2"])
def test_bad_epsilon_is_refused(cls, eps):
    with pytest.raises(ConfigurationError, match="epsilon"):
        cls().get_delta(eps)


@pytest.mark.parametrize("cls", ACCOUNTANT_CLASSES)
def test_empty_and_counting_behaviour(cls):
    accountant = cls()
    assert accountant.get_epsilon(DELTA) == 0.0 and accountant.get_delta(1.0) == 0.0
    assert accountant.compose(sampled(0.1, 1.0), 0) is accountant
    assert accountant.get_epsilon(DELTA) == 0.0
    with pytest.raises(ConfigurationError, match="count"):
        accountant.compose(sampled(0.1, 1.0), -1)
    with pytest.raises(ConfigurationError, match="PrivacyEvent"):
        accountant.compose("gaussian")  # type: ignore[arg-type]


@pytest.mark.parametrize("cls", ACCOUNTANT_CLASSES)
def test_repeated_compose_equals_counted_compose_equals_self_composition(cls):
    one_by_one = cls()
    for _ in range(40):
        one_by_one.compose(sampled(0.05, 1.2))
    counted = cls().compose(sampled(0.05, 1.2), 40)
    nested = cls().compose(SelfComposedEvent(SelfComposedEvent(sampled(0.05, 1.2), 8), 5))
    eps = counted.get_epsilon(DELTA)
    assert one_by_one.get_epsilon(DELTA) == pytest.approx(eps, rel=1e-12)
    assert nested.get_epsilon(DELTA) == pytest.approx(eps, rel=1e-12)


@pytest.mark.parametrize("cls", ACCOUNTANT_CLASSES)
def test_composition_order_does_not_matter(cls):
    a, b = sampled(0.02, 0.9), GaussianEvent(6.0)
    ab = cls().compose(a, 30).compose(b, 3).get_epsilon(DELTA)
    ba = cls().compose(b, 3).compose(a, 30).get_epsilon(DELTA)
    assert ab == pytest.approx(ba, rel=1e-12)
    assert cls().compose(ComposedEvent([SelfComposedEvent(a, 30), SelfComposedEvent(b, 3)])).get_epsilon(
        DELTA) == pytest.approx(ab, rel=1e-12)


@pytest.mark.parametrize("cls", ACCOUNTANT_CLASSES)
def test_state_is_refused_by_the_other_accountant_and_when_malformed(cls):
    state = cls().compose(sampled(0.1, 1.0), 3).state_dict()
    other = PldAccountant if cls is RdpAccountant else RdpAccountant
    with pytest.raises(ConfigurationError, match="accountant"):
        other().load_state_dict(state)
    with pytest.raises(ConfigurationError, match="version"):
        cls().load_state_dict({**state, "version": 99})
    broken = dict(state)
    broken.popitem()
    with pytest.raises(ConfigurationError):
        cls().load_state_dict(broken)


def test_rdp_state_rejects_mismatched_curves():
    state = RdpAccountant(orders=[2, 4]).compose(GaussianEvent(1.0)).state_dict()
    with pytest.raises(ConfigurationError, match="equal length"):
        RdpAccountant().load_state_dict({**state, "rdp": [1.0]})
    with pytest.raises(ConfigurationError, match="sorted"):
        RdpAccountant().load_state_dict({**state, "orders": [4.0, 2.0]})


cheap_events = st.one_of(
    st.builds(GaussianEvent, st.floats(0.8, 10.0)),
    st.builds(sampled, st.sampled_from([0.01, 0.05, 0.2, 1.0]), st.floats(0.8, 5.0)),
)
histories = st.lists(st.tuples(cheap_events, st.integers(0, 30)), min_size=0, max_size=4)


@pytest.mark.parametrize("cls", ACCOUNTANT_CLASSES)
@settings(max_examples=12)
@given(history=histories)
def test_state_dict_round_trips_exactly_through_json(cls, history):
    accountant = cls()
    for event, count in history:
        accountant.compose(event, count)
    state = accountant.state_dict()
    restored = cls().load_state_dict(json.loads(json.dumps(state)))
    assert restored.state_dict() == state
    assert restored.get_epsilon(DELTA) == accountant.get_epsilon(DELTA)


def test_rdp_state_with_infinite_values_stays_valid_json():
    accountant = RdpAccountant(orders=[2.0, 3.0]).load_state_dict(
        {"accountant": "rdp", "version": 1, "orders": [2.0, 3.0], "rdp": [1.0, "inf"]})
    state = accountant.state_dict()
    assert json.loads(json.dumps(state, allow_nan=False)) == state
    assert math.isfinite(accountant.get_epsilon(DELTA))


# -- properties ----------------------------------------------------------------------------------
rates = st.floats(1e-4, 1.0)
noises = st.floats(0.3, 20.0)
step_counts = st.integers(1, 100_000)


@settings(max_examples=40)
@given(q=rates, sigma=noises, steps=step_counts, grow=st.floats(1.01, 3.0))
def test_rdp_epsilon_grows_with_rate_and_steps_and_shrinks_with_noise(q, sigma, steps, grow):
    base = epsilon(q, sigma, steps, DELTA)
    assert epsilon(min(1.0, q * grow), sigma, steps, DELTA) >= base * (1 - 1e-9)
    assert epsilon(q, sigma, math.ceil(steps * grow), DELTA) >= base * (1 - 1e-9)
    assert epsilon(q, sigma * grow, steps, DELTA) <= base * (1 + 1e-9)


pld_rates = st.sampled_from([1e-3, 0.01, 0.1, 0.5, 1.0])
pld_noises = st.floats(0.7, 5.0)
pld_steps = st.integers(1, 1500)


@settings(max_examples=15)
@given(q=pld_rates, sigma=pld_noises, steps=pld_steps)
def test_pld_is_never_looser_than_rdp_nor_below_its_optimistic_twin(q, sigma, steps):
    pld = epsilon(q, sigma, steps, DELTA, accountant="pld")
    assert pld <= epsilon(q, sigma, steps, DELTA, accountant="rdp") * (1 + 1e-6) + 1e-9
    assert pld >= optimistic_pld_epsilon(q, sigma, steps) - 1e-12


@settings(max_examples=12)
@given(q=pld_rates, sigma=pld_noises, steps=pld_steps)
def test_pld_epsilon_is_monotone(q, sigma, steps):
    base = epsilon(q, sigma, steps, DELTA, accountant="pld")
    assert epsilon(q, sigma * 1.1, steps, DELTA, accountant="pld") <= base * (1 + 1e-4) + 1e-9
    assert epsilon(q, sigma, steps * 2, DELTA, accountant="pld") >= base * (1 - 1e-4)
    if q < 1.0:
        assert epsilon(min(1.0, q * 2), sigma, steps, DELTA, accountant="pld") >= base * (1 - 1e-4)


@settings(max_examples=30)
@given(target=st.floats(0.3, 20.0), q=st.floats(1e-3, 1.0), steps=st.integers(1, 5000),
       delta=st.floats(1e-9, 1e-3))
def test_calibrate_then_epsilon_gives_back_the_target(target, q, steps, delta):
    try:
        sigma = calibrate(target, q, steps, delta)
    except ConfigurationError as exc:  # only when the claim is true
        assert "does not constrain" in str(exc)
        assert epsilon(q, MIN_NOISE_MULTIPLIER, steps, delta) <= target
        return
    assert epsilon(q, sigma, steps, delta) <= target
    assert epsilon(q, sigma * (1 - 2e-4), steps, delta) > target  # smallest within tolerance


def test_calibrate_with_pld_meets_the_target_with_less_noise_than_rdp():
    rdp_sigma = calibrate(3.0, 0.01, 1000, DELTA)
    pld_sigma = calibrate(3.0, 0.01, 1000, DELTA, accountant="pld")
    assert pld_sigma < rdp_sigma
    assert epsilon(0.01, pld_sigma, 1000, DELTA, accountant="pld") <= 3.0
    assert epsilon(0.01, pld_sigma * (1 - 2e-4), 1000, DELTA, accountant="pld") > 3.0


def test_calibrate_refuses_unreachable_and_bad_targets():
    with pytest.raises(ConfigurationError, match="unreachable"):
        calibrate(1e-4, 1.0, 1000, DELTA)
    with pytest.raises(ConfigurationError, match="does not constrain"):
        calibrate(1e6, 0.01, 1, DELTA)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ConfigurationError, match="target_epsilon"):
            calibrate(bad, 0.01, 10, DELTA)
    with pytest.raises(ConfigurationError, match="tolerance"):
        calibrate(1.0, 0.01, 10, DELTA, tolerance=0.0)
    with pytest.raises(ConfigurationError, match="steps"):
        calibrate(1.0, 0.01, 0, DELTA)
    with pytest.raises(ConfigurationError, match="accountant"):
        epsilon(0.01, 1.0, 10, DELTA, accountant="moments")
    assert epsilon(0.01, 1.0, 0, DELTA) == 0.0
    assert isinstance(make_accountant("pld"), PrivacyAccountant)


# -- discrete and distributed discrete Gaussians ---------------------------------------------------
def gaussian_equivalent(event: DistributedDiscreteGaussianEvent) -> GaussianEvent:
    return GaussianEvent(math.sqrt(event.num_clients) * event.sigma / event.l2_sensitivity)


@settings(max_examples=25)
@given(sigma=st.floats(0.5, 3.0), grow=st.floats(1.05, 2.0), clients=st.integers(1, 500),
       l2=st.floats(1.0, 50.0), steps=st.integers(1, 500))
def test_distributed_discrete_gaussian_epsilon_shrinks_with_sigma(sigma, grow, clients, l2, steps):
    def eps(s: float) -> float:
        return RdpAccountant().compose(DistributedDiscreteGaussianEvent(s, clients, l2, 100), steps).get_epsilon(DELTA)

    assert eps(sigma * grow) <= eps(sigma) * (1 + 1e-12)


@pytest.mark.parametrize("clients", [2, 20, 1000])
def test_distributed_discrete_gaussian_approaches_the_continuous_gaussian(clients):
    gaps = []
    for sigma in (0.5, 0.7, 1.0, 2.0, 5.0):
        event = DistributedDiscreteGaussianEvent(sigma, clients, l2_sensitivity=3.0 * sigma, dimension=10)
        ddg = RdpAccountant().compose(event, 50).get_epsilon(DELTA)
        continuous = RdpAccountant().compose(gaussian_equivalent(event), 50).get_epsilon(DELTA)
        assert ddg >= continuous * (1 - 1e-12)
        gaps.append(ddg / continuous - 1)
    assert gaps == sorted(gaps, reverse=True)
    assert gaps[0] > 1e-3 and gaps[-1] < 1e-9


def test_single_client_distributed_is_the_discrete_gaussian_and_the_gaussian_curve():
    orders = np.array(DEFAULT_ORDERS)
    single = distributed_discrete_gaussian_rdp(DistributedDiscreteGaussianEvent(2.0, 1, 3.0, 64), orders)
    np.testing.assert_allclose(single, event_rdp(DiscreteGaussianEvent(2.0, 3.0), orders))
    np.testing.assert_allclose(single, orders * 9.0 / 8.0)


@pytest.mark.parametrize("event", [DiscreteGaussianEvent(2.0, 1.0),
                                   DistributedDiscreteGaussianEvent(1.0, 30, 8.0, dimension=100)])
def test_subsampling_a_discrete_mechanism_helps_and_q1_changes_nothing(event):
    orders = np.array(DEFAULT_ORDERS)
    plain = event_rdp(event, orders)
    np.testing.assert_allclose(event_rdp(PoissonSampledEvent(1.0, event), orders), plain)
    sub = event_rdp(PoissonSampledEvent(0.01, event), orders)
    assert (sub <= plain).all() and (sub < plain).any()


def test_generic_subsampling_bound_is_zhu_wang_and_valid_for_the_gaussian():
    q, sigma = 0.05, 1.3
    curve = lambda a: np.asarray(a, dtype=np.float64) / (2 * sigma**2)  # noqa: E731
    orders = np.array([2.0, 2.5, 3.0, 6.0, 20.0])
    bound = poisson_subsampled_rdp_bound(q, curve, orders)
    exact = subsampled_gaussian_rdp(q, sigma, orders)
    assert (bound >= exact * (1 - 1e-12)).all() and (bound > exact).any()
    eps = curve(np.arange(4))
    by_hand = math.log((1 - q) ** 2 * (1 + 2 * q) + 3 * q**2 * (1 - q) * math.exp(eps[2])
                       + 3 * q**3 * math.exp(2 * eps[3])) / 2
    assert bound[2] == pytest.approx(min(by_hand, curve(3.0)), rel=1e-12)
    assert bound[1] == bound[2]  # a fractional order borrows the next integer's bound


# -- the benchmark script ----------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("opacus") is None or importlib.util.find_spec("dp_accounting") is None,
                    reason="needs the bench extra (opacus, dp-accounting)")
def test_benchmark_quick_run_writes_a_complete_report(tmp_path):
    script = Path(__file__).resolve().parent.parent / "benchmarks" / "accountants_vs_peers.py"
    out = tmp_path / "report.json"
    done = subprocess.run([sys.executable, str(script), "--quick", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(out.read_text())
    assert report["quick"] and not report["failures"]
    assert len(report["points"]) == 8
    for point in report["points"]:
        assert point["ours_rdp"] <= min(point["opacus_rdp"], point["dp_accounting_rdp"]) * (1 + 1e-6)
        assert point["ours_pld"] >= point["true_epsilon_lower_bound"] * (1 - 1e-9)
    assert set(report["times_seconds"]) == {"ours_rdp", "opacus_rdp", "dp_accounting_rdp", "ours_pld",
                                            "dp_accounting_pld"}
    assert {"speedups", "calibrate", "targets", "largest_relative_differences"} <= set(report)
