"""DP mechanisms around real aggregators: noise of the right scale, clipping, the budget
enforced before any noise is drawn, and the distributed discrete Gaussian through SecAgg+."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dp.clipping import clip_l2
from dp.mechanisms import CentralGaussian, DistributedDiscreteGaussian, LocalGaussian
from dp.private import BudgetExceeded, Private
from dp.rdp import RdpAccountant
from privagg import AggregationAborted, ConfigurationError, FixedPoint, Plain, make_aggregator, simulate
from secagg import SecAgg


@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=50), st.floats(1e-3, 1e3))
def test_clipping_bounds_the_norm_and_leaves_short_vectors_alone(values, clip_norm):
    vec = np.array(values)
    out = clip_l2(vec, clip_norm)
    assert np.linalg.norm(out) <= clip_norm
    if np.linalg.norm(vec) <= clip_norm:
        assert np.array_equal(out, vec)
    else:
        assert np.allclose(out / np.linalg.norm(out), vec / np.linalg.norm(vec))


def _updates(n, d, scale=0.01, seed=0):
    rng = np.random.default_rng(seed)
    return {i: rng.normal(0, scale, d) for i in range(n)}


def _clipped_sum(updates, ids, clip_norm):
    return np.sum([clip_l2(updates[i], clip_norm) for i in ids], axis=0)


def _std_within(residual, expected, rel=0.05):
    # The sample std of d i.i.d. Gaussians has relative sd ~ 1/sqrt(2d): 5 % is > 8 sd at d=20000.
    return abs(np.std(residual) - expected) < rel * expected


def test_central_noise_has_the_calibrated_scale():
    updates = _updates(5, 20_000)
    clip, z = 0.5, 0.8
    agg = Private(Plain(FixedPoint(clip=clip)), CentralGaussian(clip, z), RdpAccountant())
    result = simulate(agg, updates)
    residual = result.aggregate - _clipped_sum(updates, range(5), clip)
    assert _std_within(residual, z * clip)
    assert abs(residual.mean()) < 4 * z * clip / np.sqrt(20_000)
    assert result.info["epsilon"] > 0 and result.info["mechanism"] == "central-gaussian"


def test_local_noise_adds_up_over_clients():
    updates = _updates(4, 20_000)
    clip, z = 0.5, 0.3
    agg = Private(Plain(FixedPoint(clip=4.0, max_clients=8)), LocalGaussian(clip, z), RdpAccountant())
    result = simulate(agg, updates)
    residual = result.aggregate - _clipped_sum(updates, range(4), clip)
    assert _std_within(residual, np.sqrt(4) * z * clip)
    # The server sees each client's noised update: each one is already private.
    seen = agg.disclose(result.view, __import__("privagg").HONEST_BUT_CURIOUS)
    one = seen.individual[0] - clip_l2(updates[0], clip)
    assert _std_within(one, z * clip, rel=0.1)


def test_ddg_through_secagg_plus_returns_the_sum_plus_noise_of_the_right_scale():
    n, d, clip, z = 10, 3000, 1.0, 0.5
    updates = _updates(n, d, scale=0.02)
    inner = SecAgg(neighbours="auto")
    mech = DistributedDiscreteGaussian(clip, z, min_clients=n, dimension=d)
    agg = Private(inner, mech, RdpAccountant())
    result = simulate(agg, updates)
    assert result.aggregate.shape == (d,)
    residual = result.aggregate - _clipped_sum(updates, range(n), clip)
    # Total noise: n discrete Gaussians of variance (z C / gamma)^2 / n, times gamma; plus rounding.
    expected = np.sqrt(z**2 * clip**2 + n * mech.gamma**2 / 4)
    assert _std_within(residual, expected, rel=0.1)
    assert result.info["mechanism"] == "distributed-discrete-gaussian"
    assert result.view.mode == "secagg+"
    # What the protocol summed is integers in the rotated, scaled domain; nothing wrapped around.
    assert mech.encoding.capacity >= n


def test_ddg_rotation_and_scaling_are_undone_exactly_without_noise_or_rounding():
    mech = DistributedDiscreteGaussian(1.0, 1.0, min_clients=4, dimension=37)
    x = np.random.default_rng(1).normal(0, 0.1, 37)
    from dp.rotation import rotate

    rotated = rotate(x, mech._round_seed(3)) / mech.gamma
    assert np.allclose(mech.finish(rotated, round_id=3), x, atol=1e-12)


def test_ddg_bits_and_granularity_are_consistent():
    by_bits = DistributedDiscreteGaussian(1.0, 1.0, min_clients=100, dimension=1000, bits=20)
    assert by_bits.modulus_bits == 20
    by_gamma = DistributedDiscreteGaussian(1.0, 1.0, min_clients=100, dimension=1000, bits=None,
                                           granularity=by_bits.gamma)
    assert by_gamma.modulus_bits <= 20
    assert by_bits.encoding.capacity >= 100
    finer = DistributedDiscreteGaussian(1.0, 1.0, min_clients=100, dimension=1000, bits=24)
    assert finer.gamma < by_bits.gamma
    with pytest.raises(ConfigurationError, match="cannot hold"):
        DistributedDiscreteGaussian(1.0, 1.0, min_clients=10**6, dimension=1000, bits=8)
    with pytest.raises(ConfigurationError, match="exactly one"):
        DistributedDiscreteGaussian(1.0, 1.0, min_clients=10, dimension=10, bits=20, granularity=0.1)


def test_the_budget_is_enforced_before_any_noise_is_drawn():
    accountant = RdpAccountant()
    agg = Private(Plain(), CentralGaussian(1.0, 1.0), accountant, budget=1.0)
    with pytest.raises(BudgetExceeded, match="over the budget of 1"):
        agg.server([0, 1])
    with pytest.raises(BudgetExceeded):
        agg.client(0, np.zeros(3))
    assert accountant.get_epsilon(1e-5) == 0 or np.isclose(accountant.get_epsilon(1e-5), 0)


def test_epsilon_accumulates_over_rounds_and_stops_at_the_budget():
    accountant = RdpAccountant()
    agg = Private(Plain(), CentralGaussian(1.0, 4.0), accountant, budget=3.0)
    epsilons = []
    with pytest.raises(BudgetExceeded):
        for r in range(100):
            epsilons.append(simulate(agg, _updates(3, 10), round_id=r).info["epsilon"])
    assert len(epsilons) >= 2 and all(a < b for a, b in zip(epsilons, epsilons[1:]))
    assert epsilons[-1] <= 3.0 and agg.epsilon == epsilons[-1]


def test_sampling_amplifies():
    full = Private(Plain(), CentralGaussian(1.0, 1.0), RdpAccountant())
    sampled = Private(Plain(), CentralGaussian(1.0, 1.0), RdpAccountant(), sampling_rate=0.01)
    assert sampled.check_budget() < full.check_budget()


def test_ddg_refuses_to_release_a_sum_with_too_little_noise():
    n = 6
    accountant = RdpAccountant()
    mech = DistributedDiscreteGaussian(1.0, 1.0, min_clients=n, dimension=50)
    agg = Private(SecAgg(threshold=3), mech, accountant)
    with pytest.raises(AggregationAborted, match="calibrated for 6"):
        simulate(agg, _updates(n, 50), dropouts={0: "masked_input"})
    # The round still cost privacy (the server saw a sum with 5 clients' noise) and is accounted.
    assert accountant.get_epsilon(1e-5) > 0


def test_bad_configurations_are_refused():
    with pytest.raises(ConfigurationError):
        CentralGaussian(0.0, 1.0)
    with pytest.raises(ConfigurationError):
        CentralGaussian(1.0, float("nan"))
    with pytest.raises(ConfigurationError):
        Private(Plain(), CentralGaussian(1.0, 1.0), RdpAccountant(), delta=1.5)
    with pytest.raises(ConfigurationError):
        Private(Plain(), CentralGaussian(1.0, 1.0), RdpAccountant(), sampling_rate=0)
    with pytest.raises(ConfigurationError, match="non-private"):
        inner = Private(Plain(), CentralGaussian(1.0, 1.0), RdpAccountant())
        Private(inner, CentralGaussian(1.0, 1.0), RdpAccountant())


def test_registered_dp_modes_through_the_registry_and_the_cli(capsys):
    import json

    from privagg.cli import main

    agg = make_aggregator("secagg+dp", hints={"clients": 12, "dimension": 200}, noise_multiplier=0.7)
    assert agg.mode == "secagg+dp"
    code = main(["simulate", "--mode", "secagg+dp", "--clients", "12", "--params", "400", "--seed", "1",
                 "-o", "noise_multiplier=0.5", "--format", "json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    report = json.loads(out)
    assert report["epsilon"] > 0 and report["exact"] is False
    code = main(["simulate", "--mode", "plain+dp", "--clients", "5", "--params", "100", "-o", "budget=0.01",
                 "--format", "json"])
    assert code == 1 and "BudgetExceeded" in capsys.readouterr().err


def test_ddg_built_separately_by_server_and_clients_still_sums_exactly():
    """Flower nodes build their own configuration: the public rotation must agree without sharing objects."""
    n, d = 6, 300
    updates = _updates(n, d, scale=0.02)
    build = lambda: make_aggregator("secagg+dp", hints={"clients": n, "dimension": d}, noise_multiplier=0.01)  # noqa: E731
    server_side = build()
    server = server_side.server(range(n), round_id=2)
    clients = {i: build().client(i, updates[i], round_id=2) for i in range(n)}
    while not server.finished:
        for cid, msg in server.messages_to_send().items():
            server.receive(cid, clients[cid].respond(msg.to_bytes()).to_bytes())
        server.deadline_passed()
    residual = server.result().aggregate - _clipped_sum(updates, range(n), 1.0)
    assert np.max(np.abs(residual)) < 0.1  # noise std 0.01 plus rounding; a seed mismatch gives errors of ~1
    with pytest.raises(ConfigurationError, match="hexadecimal"):
        make_aggregator("secagg+dp", hints={"clients": n, "dimension": d}, rotation_seed="xyz")
