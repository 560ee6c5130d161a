"""FedAvg through real protocol rounds: the arithmetic, clipping, dropouts, aborts."""

import numpy as np
import pytest
import torch

import privagg
from attacks.data import load_dataset, membership_split, partition
from attacks.inversion.gradients import model_gradient
from attacks.models import make_model
from attacks.training import FedAvgConfig, clip_update, evaluate, model_vector, train_fedavg

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_a_fedsgd_round_is_the_weighted_mean_gradient_step(digits):
    """Unequal partitions: each client sends w_i * (-lr * grad_i), w_i = n_i / mean(n); the
    server's aggregate / len(included) is then the example-weighted mean update."""
    parts = [np.arange(0, 5), np.arange(5, 25), np.arange(25, 35)]
    model = make_model("mlp", digits, seed=0, hidden=(16,))
    lr = 0.5
    config = FedAvgConfig(rounds=1, local_steps=1, batch_size=None, lr=lr, keep_updates=True, progress=False)
    run = train_fedavg(model, digits, parts, privagg.Plain(), config)
    record = run.rounds[0]
    sizes = np.array([5, 20, 10])
    assert record.weights == pytest.approx({c: s / sizes.mean() for c, s in enumerate(sizes)})
    resolution = privagg.Plain().encoding.resolution
    for c, part in enumerate(parts):
        grad = torch.cat([g.reshape(-1) for g in model_gradient(model, *digits.subset(part))]).double().numpy()
        assert np.allclose(record.sent[c], -lr * record.weights[c] * grad, atol=1e-6)
    all_grad = torch.cat([g.reshape(-1) for g in model_gradient(model, *digits.subset(np.arange(35)))]).double()
    expected = model_vector(model)[0] - lr * all_grad.numpy()
    assert np.allclose(model_vector(run.model)[0], expected, atol=3 * resolution + 1e-6)
    assert np.array_equal(record.global_before, model_vector(model)[0])


def test_secure_aggregation_trains_the_same_model_as_plain(digits):
    """The protocol must not change the model: same encoding, same exact sums, same weights."""
    parts = partition(np.arange(200), 4, seed=0)
    config = FedAvgConfig(rounds=3, local_epochs=1, batch_size=16, lr=0.1, seed=7, progress=False)
    runs = {mode: train_fedavg(make_model("mlp", digits, seed=1, hidden=(32,)), digits, parts,
                               privagg.make_aggregator(mode), config) for mode in ("plain", "secagg", "secagg+")}
    reference = model_vector(runs["plain"].model)[0]
    for mode in ("secagg", "secagg+"):
        assert runs[mode].mode == mode
        assert np.array_equal(model_vector(runs[mode].model)[0], reference), mode
        assert all(r.view.mode == mode for r in runs[mode].rounds)


def test_training_learns_digits(digits):
    split = membership_split(digits, pool_size=600, test_size=300, seed=0)
    parts = partition(split.member_indices, 5, seed=0)
    model = make_model("mlp", digits, seed=0, hidden=(64,))
    before = evaluate(model, *digits.subset(split.test))[0]
    run = train_fedavg(model, digits, parts, privagg.Plain(),
                       FedAvgConfig(rounds=8, local_epochs=3, batch_size=16, lr=0.2, progress=False),
                       test_indices=split.test)
    assert before < 0.3 < 0.8 < run.accuracy
    assert len(run.rounds) == 8 and all(r.accuracy is not None for r in run.rounds)
    assert evaluate(model, *digits.subset(split.test))[0] == before, "the caller's model must stay untouched"


def test_clip_update_scales_to_the_norm_then_clips_values():
    vec = np.array([3.0, 4.0, 0.0, -12.0])  # norm 13
    out, report = clip_update(vec, clip_norm=6.5)
    assert np.allclose(out, vec / 2) and report.norm_scaled and report.norm_before == pytest.approx(13.0)
    out, report = clip_update(vec, clip_norm=6.5, clip_value=2.0)
    assert np.allclose(out, [1.5, 2.0, 0.0, -2.0]) and report.coordinates_clipped == 1  # 2.0 sits on the bound
    out, report = clip_update(vec, clip_norm=100.0)
    assert np.array_equal(out, vec) and not report.norm_scaled and report.coordinates_clipped == 0


def test_updates_are_clipped_into_the_encoding_range_by_default(digits):
    """A large step against a tiny encoding range is clipped before the aggregator sees it, and
    the records say how much was clipped (rather than the encoding clipping silently)."""
    aggregator = privagg.Plain(privagg.FixedPoint(clip=0.001))
    config = FedAvgConfig(rounds=1, local_steps=1, batch_size=None, lr=1.0, keep_updates=True, progress=False)
    run = train_fedavg(make_model("mlp", digits, seed=0, hidden=(16,)), digits, [np.arange(20), np.arange(20, 40)],
                       aggregator, config)
    record = run.rounds[0]
    assert all(np.abs(v).max() <= 0.001 for v in record.sent.values())
    assert all(r.coordinates_clipped > 0 for r in record.clipping.values())
    unclipped = train_fedavg(make_model("mlp", digits, seed=0, hidden=(16,)), digits,
                             [np.arange(20), np.arange(20, 40)], aggregator,
                             FedAvgConfig(rounds=1, local_steps=1, batch_size=None, lr=1.0, clip_value=10.0,
                                          keep_updates=True, progress=False))
    assert max(np.abs(v).max() for v in unclipped.rounds[0].sent.values()) > 0.001


def test_dropouts_are_excluded_and_recorded(digits):
    parts = partition(np.arange(120), 6, seed=0)
    config = FedAvgConfig(rounds=4, dropout_rate=0.4, dropout_stage="masked_input", seed=3, keep_updates=True,
                          progress=False)
    run = train_fedavg(make_model("mlp", digits, seed=0, hidden=(16,)), digits, parts,
                       privagg.make_aggregator("secagg"), config)
    assert any(r.dropouts for r in run.rounds)
    for record in run.rounds:
        assert set(record.dropouts.values()) <= {"masked_input"}
        assert set(record.result.included) == set(record.participants) - set(record.dropouts)
        expected = sum(record.sent[c] for c in record.result.included)
        assert np.allclose(record.result.aggregate, expected, atol=1e-5)


def test_an_aborted_round_leaves_the_model_and_says_why(digits):
    aggregator = privagg.Plain(min_clients=5)
    run = train_fedavg(make_model("mlp", digits, seed=0, hidden=(16,)), digits, partition(np.arange(30), 3),
                       aggregator, FedAvgConfig(rounds=2, progress=False))
    assert all(r.result is None and "at least 5" in r.aborted for r in run.rounds)
    assert np.array_equal(model_vector(run.model)[0], model_vector(make_model("mlp", digits, seed=0, hidden=(16,)))[0])


def test_clients_per_round_samples_a_subset(digits):
    run = train_fedavg(make_model("mlp", digits, seed=0, hidden=(16,)), digits, partition(np.arange(100), 10),
                       privagg.Plain(), FedAvgConfig(rounds=5, clients_per_round=3, seed=1, progress=False))
    assert all(len(r.participants) == 3 for r in run.rounds)
    assert len({r.participants for r in run.rounds}) > 1


def test_config_refuses_nonsense():
    with pytest.raises(ValueError):
        FedAvgConfig(rounds=0)
    with pytest.raises(ValueError):
        FedAvgConfig(dropout_rate=1.0)
    with pytest.raises(ValueError):
        FedAvgConfig(clip_norm=0.0)


def test_an_error_that_will_not_go_away_stops_training_and_says_why(digits):
    """An encoding that cannot hold the round's clients is refused before any message; training
    stops there instead of failing every later round the same way."""
    aggregator = privagg.Plain(privagg.FixedPoint(max_clients=1))  # room for one input, not three
    run = train_fedavg(make_model("mlp", digits, seed=0, hidden=(16,)), digits, partition(np.arange(30), 3),
                       aggregator, FedAvgConfig(rounds=4, progress=False))
    assert len(run.rounds) == 1 and run.rounds[0].result is None
    assert run.stopped.startswith("round 0: EncodingOverflow")
    assert run.epsilon is None and run.accuracy is None


def test_protocol_bugs_propagate(digits):
    class Broken(privagg.Plain):
        def server(self, client_ids, *, round_id=0):
            raise privagg.ProtocolViolation("a bug, not an experimental condition")

    with pytest.raises(privagg.ProtocolViolation):
        train_fedavg(make_model("mlp", digits, seed=0, hidden=(16,)), digits, partition(np.arange(30), 3),
                     Broken(), FedAvgConfig(rounds=1, progress=False))


def test_shadow_trainer_builds_a_fresh_aggregator_per_model(digits):
    """Stateful modes (a DP accountant) must not be shared by the shadows: given a factory,
    every shadow model gets its own aggregator."""
    from attacks.membership.shadows import fedavg_trainer

    built = []

    def factory():
        built.append(privagg.Plain())
        return built[-1]

    train = fedavg_trainer(digits, lambda seed: make_model("mlp", digits, seed=seed, hidden=(8,)), 2,
                           FedAvgConfig(rounds=1), factory)
    first, second = train(np.arange(20), 1), train(np.arange(20, 40), 2)
    assert len(built) == 2 and built[0] is not built[1]
    assert not torch.equal(first.head.weight, second.head.weight)


def test_progress_bar_is_off_without_a_terminal_and_can_be_forced(digits, capsys):
    from attacks.training import progress_bar

    assert progress_bar(None) is None  # pytest captures stderr: not a terminal
    assert progress_bar(False) is None
    run = train_fedavg(make_model("mlp", digits, seed=0, hidden=(8,)), digits, partition(np.arange(20), 2),
                       privagg.Plain(), FedAvgConfig(rounds=2, progress=True), description="forced bar")
    assert len(run.rounds) == 2
