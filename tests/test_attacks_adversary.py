"""Threat derivation per mode: what each adversary computes from a real round's view."""

from dataclasses import dataclass

import numpy as np
import pytest
import torch

import privagg
from attacks.adversary import disclosed_models, disclosure, inversion_target
from attacks.data import load_dataset
from attacks.inversion.gradients import model_gradient
from attacks.inversion.reconstruct import InversionConfig
from attacks.inversion.scenario import fedsgd_round, invert_round
from attacks.models import make_model
from attacks.modes import make_mode, mode_factory, model_dimension
from attacks.training import FedAvgConfig, model_vector, train_fedavg
from privagg import HONEST_BUT_CURIOUS, OUTSIDER, Disclosure, colluding
from privagg.threats import PartialSum

torch.set_num_threads(1)

RESOLUTION = privagg.FixedPoint().resolution  # every mode here uses the default 32-bit encoding


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def rounds(digits):
    """One FedSGD round per mode among 6 one-image clients: (aggregator, record)."""
    out = {}
    for mode in ("plain", "secagg", "secagg+"):
        aggregator = privagg.make_aggregator(mode)
        run = fedsgd_round(make_model("mlp", digits, seed=0, hidden=(32,)), digits,
                           [np.array([i * 11]) for i in range(6)], aggregator, keep_updates=True)
        out[mode] = (aggregator, run.rounds[0])
    return out


def _sum(record, ids):
    return np.sum([record.sent[c] for c in ids], axis=0)


def test_plain_discloses_every_individual_update_to_the_server(rounds):
    aggregator, record = rounds["plain"]
    for cid in record.participants:
        target = inversion_target(aggregator, record, HONEST_BUT_CURIOUS, client=cid)
        assert target.kind == "individual" and target.client_ids == (cid,)
        assert np.abs(target.update - record.sent[cid]).max() <= RESOLUTION / 2
    assert inversion_target(aggregator, record, HONEST_BUT_CURIOUS).client_ids == (0,)


@pytest.mark.parametrize("mode", ["plain", "secagg", "secagg+"])
def test_an_outsider_gets_only_the_released_aggregate(rounds, mode):
    aggregator, record = rounds[mode]
    target = inversion_target(aggregator, record, OUTSIDER)
    assert target.kind == "aggregate" and target.client_ids == record.result.included
    assert np.abs(target.update - _sum(record, record.result.included)).max() <= 6 * RESOLUTION


@pytest.mark.parametrize("mode", ["secagg", "secagg+"])
def test_secure_aggregation_discloses_only_the_aggregate_to_the_server(rounds, mode):
    aggregator, record = rounds[mode]
    found = disclosure(aggregator, record, HONEST_BUT_CURIOUS)
    assert not found.individual
    for cid in (None, 0, 4):
        target = inversion_target(aggregator, record, HONEST_BUT_CURIOUS, client=cid)
        assert target.kind == "aggregate" and target.client_ids == tuple(range(6))
        assert np.abs(target.update - _sum(record, range(6))).max() <= 6 * RESOLUTION


@pytest.mark.parametrize("mode", ["secagg", "secagg+"])
def test_colluders_reduce_the_aggregate_to_the_honest_sum(rounds, mode):
    aggregator, record = rounds[mode]
    threat = colluding([1, 3], {c: record.sent[c] for c in (1, 3)})
    target = inversion_target(aggregator, record, threat)
    assert target.kind == "aggregate" and target.client_ids == (0, 2, 4, 5)
    assert np.abs(target.update - _sum(record, (0, 2, 4, 5))).max() <= 6 * RESOLUTION
    with pytest.raises(ValueError, match="colludes"):
        inversion_target(aggregator, record, threat, client=1)
    # Without the colluders' inputs the adversary cannot take them out of the sum.
    blind = inversion_target(aggregator, record, colluding([1, 3]))
    assert blind.client_ids == tuple(range(6)) and "give the colluders' inputs" in blind.summary


@pytest.mark.parametrize("mode", ["secagg", "secagg+"])
def test_all_but_one_colluding_isolates_the_last_honest_client(rounds, mode):
    aggregator, record = rounds[mode]
    threat = colluding([0, 1, 2, 3, 5], {c: record.sent[c] for c in (0, 1, 2, 3, 5)})
    target = inversion_target(aggregator, record, threat)
    assert target.kind == "individual" and target.client_ids == (4,)
    assert np.abs(target.update - record.sent[4]).max() <= 6 * RESOLUTION


def test_plain_with_colluders_still_discloses_the_honest_clients(rounds):
    aggregator, record = rounds["plain"]
    threat = colluding([0], {0: record.sent[0]})
    target = inversion_target(aggregator, record, threat)
    assert target.kind == "individual" and target.client_ids == (1,)


@pytest.mark.parametrize("mode, stage", [("plain", "collect_updates"), ("secagg", "masked_input"),
                                         ("secagg", "unmasking")])
def test_dropped_clients_are_never_targets_and_late_dropouts_still_count(digits, mode, stage):
    aggregator = privagg.make_aggregator(mode)
    config = FedAvgConfig(rounds=1, local_steps=1, batch_size=None, lr=1.0, keep_updates=True, progress=False,
                          dropout_rate=0.5, dropout_stage=stage, seed=11)
    run = train_fedavg(make_model("mlp", digits, seed=0, hidden=(16,)), digits,
                       [np.array([i]) for i in range(6)], aggregator, config)
    record = run.rounds[0]
    assert record.dropouts, "the seed must make someone drop out"
    expected = tuple(sorted(set(record.participants) - set(record.dropouts))) if stage != "unmasking" \
        else record.participants  # a client gone after sending its masked input is still summed
    assert record.result.included == expected
    target = inversion_target(aggregator, record, HONEST_BUT_CURIOUS)
    assert set(target.client_ids) <= set(expected)


def test_sources_view_result_record_and_stored_view_agree(rounds):
    aggregator, record = rounds["secagg"]
    stored = privagg.ServerView.from_bytes(record.view.to_bytes())
    targets = [inversion_target(aggregator, source, HONEST_BUT_CURIOUS)
               for source in (record, record.result, record.view, stored)]
    assert all(t.client_ids == targets[0].client_ids for t in targets)
    assert all(np.array_equal(t.update, targets[0].update) for t in targets)
    with pytest.raises(TypeError):
        inversion_target(aggregator, "view", HONEST_BUT_CURIOUS)


def test_disclosed_models_are_the_clients_local_models(digits, rounds):
    """Under plain the server rebuilds each client's locally trained model; under secagg only
    the mean model of the group."""
    aggregator, record = rounds["plain"]
    models = disclosed_models(aggregator, record, HONEST_BUT_CURIOUS)
    global_model = make_model("mlp", digits, seed=0, hidden=(32,))
    for cid in range(6):
        grad = torch.cat([g.reshape(-1) for g in model_gradient(global_model, *digits.subset([cid * 11]))])
        local = model_vector(global_model)[0] - grad.double().numpy()
        assert np.abs(models[(cid,)] - local).max() <= RESOLUTION
    assert (0, 1, 2, 3, 4, 5) in models
    secure = disclosed_models(*rounds["secagg"], HONEST_BUT_CURIOUS)
    assert list(secure) == [(0, 1, 2, 3, 4, 5)]


@dataclass(frozen=True)
class _CiphertextOnly(privagg.Plain):
    """A mode whose server sees nothing in plaintext (as CKKS without a key holder)."""

    def disclose(self, view, threat):
        return Disclosure(threat, {}, (), "ciphertexts only")


def test_a_mode_that_discloses_nothing_leaves_nothing_to_invert(digits):
    aggregator = _CiphertextOnly()
    run = fedsgd_round(make_model("mlp", digits, seed=0, hidden=(16,)), digits, [np.array([0])], aggregator)
    target = inversion_target(aggregator, run.rounds[0], HONEST_BUT_CURIOUS)
    assert target.kind == "none" and target.update is None and "ciphertexts only" in target.summary
    outcome = invert_round(aggregator, run, HONEST_BUT_CURIOUS, digits)
    assert outcome.reconstruction is None and outcome.metrics is None
    assert disclosed_models(aggregator, run.rounds[0], HONEST_BUT_CURIOUS) == {}


def test_an_empty_partial_sum_is_skipped():
    found = Disclosure(HONEST_BUT_CURIOUS, {}, (PartialSum((1, 2), np.zeros(0)),), "nothing")

    @dataclass(frozen=True)
    class _Empty(privagg.Plain):
        def disclose(self, view, threat):
            return found

    result = privagg.simulate(_Empty(), {1: np.ones(3), 2: np.ones(3)})
    assert inversion_target(_Empty(), result, HONEST_BUT_CURIOUS).kind == "none"


@pytest.mark.parametrize("mode", privagg.available_modes())
def test_every_registered_mode_yields_a_consistent_target(mode):
    """Modes that land later are audited through the same path: whatever they disclose, the
    target names only included, non-colluding clients and has the update's shape."""
    aggregator = make_mode(mode, clients=6, dimension=40)
    rng = np.random.default_rng(0)
    updates = {cid: rng.uniform(-0.01, 0.01, 40) for cid in range(6)}
    result = privagg.simulate(aggregator, updates, seed=0)
    for threat in (HONEST_BUT_CURIOUS, OUTSIDER, colluding([0, 1], {0: updates[0], 1: updates[1]})):
        target = inversion_target(aggregator, result, threat)
        assert set(target.client_ids) <= set(result.included)
        assert not set(target.client_ids) & threat.colluders
        if target.kind != "none":
            assert target.update.shape == (40,) and np.isfinite(target.update).all()
        if not threat.sees_server_view:
            assert target.kind != "individual", "an outsider never sees one client's update out of six"


@pytest.mark.parametrize("mode", privagg.available_modes())
def test_every_registered_mode_runs_the_whole_inversion_path(digits, mode):
    """A FedSGD round of ten one-image clients through the mode, then Inverting Gradients on
    what the server and an outsider can compute: it runs, and says what it attacked."""
    model = make_model("mlp", digits, seed=0, hidden=(16,))
    aggregator = make_mode(mode, clients=10, dimension=model_dimension(model))
    run = fedsgd_round(model, digits, [np.array([i * 7]) for i in range(10)], aggregator)
    assert run.stopped is None and run.rounds[0].result is not None
    for threat in (HONEST_BUT_CURIOUS, OUTSIDER):
        outcome = invert_round(aggregator, run, threat, digits, method="ig", count=1,
                               config=InversionConfig(iterations=50))
        assert outcome.target.summary
        if outcome.target.kind == "none":
            assert outcome.metrics is None
        else:
            assert np.isfinite(outcome.metrics.psnr_db) and 0 <= outcome.metrics.label_accuracy <= 1
            assert len(outcome.truth_labels) == sum(len(run.partitions[c]) for c in outcome.target.client_ids)


def test_make_mode_passes_the_round_size_only_to_factories_that_take_it(monkeypatch):
    # Registrations made here must not outlive the test (other tests list every mode).
    monkeypatch.setattr(privagg.registry, "_RUNTIME", dict(privagg.registry._RUNTIME))
    seen = {}

    def sized(clients, dimension, **options):
        seen["sized"] = (clients, dimension, options)
        return privagg.Plain()

    def unsized(**options):
        seen["unsized"] = options
        return privagg.Plain()

    privagg.register_mode("test-sized", sized)
    privagg.register_mode("test-unsized", unsized)
    make_mode("test-sized", clients=7, dimension=99, min_clients=1)
    make_mode("test-unsized", clients=7, dimension=99, min_clients=1)
    assert seen["sized"] == (7, 99, {"min_clients": 1})
    assert seen["unsized"] == {"min_clients": 1}
    build = mode_factory("test-sized", clients=3, dimension=4)
    assert build() is not build()
