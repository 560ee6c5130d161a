"""Membership inference: metrics against sklearn, LiRA and RMIA on known distributions, and
LOSS / LiRA / RMIA against a model FedAvg overfits through a real protocol."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from sklearn import metrics as skm

import privagg
from attacks.data import load_dataset, membership_split, partition
from attacks.membership import (
    fedavg_trainer,
    lira,
    lira_scores,
    loss,
    loss_attack,
    membership_metrics,
    rmia,
    rmia_scores,
    roc_curve,
    tune_offline_a,
    train_shadow_models,
)
from attacks.membership.shadows import balanced_memberships
from attacks.models import make_model
from attacks.plots import roc_plot
from attacks.training import FedAvgConfig, train_fedavg

torch.set_num_threads(1)


# --- metrics -------------------------------------------------------------------------------

@st.composite
def scored(draw):
    n = draw(st.integers(2, 300))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    labels = rng.random(n) < draw(st.floats(0.05, 0.95))
    labels[0], labels[1] = True, False
    # Few distinct values force ties, which ROC code most often gets wrong.
    scores = rng.integers(0, draw(st.integers(1, 50)), n) + labels * draw(st.floats(0, 5))
    return scores.astype(np.float64), labels


@given(scored())
def test_metrics_agree_with_sklearn(data):
    scores, labels = data
    ours = membership_metrics(scores, labels)
    fpr, tpr, thresholds = skm.roc_curve(labels, scores, drop_intermediate=False)
    assert np.allclose(ours.curve.fpr, fpr) and np.allclose(ours.curve.tpr, tpr)
    assert np.array_equal(ours.curve.thresholds[1:], thresholds[1:])
    assert ours.auc == pytest.approx(skm.roc_auc_score(labels, scores), abs=1e-12)
    for target, value in ((0.01, ours.tpr_at_1pct_fpr), (0.001, ours.tpr_at_0_1pct_fpr)):
        assert value == pytest.approx(tpr[fpr <= target].max())
    best = max(skm.balanced_accuracy_score(labels, scores >= t) for t in np.unique(scores))
    assert ours.balanced_accuracy == pytest.approx(max(best, 0.5))


def test_false_positive_counts_behind_each_fpr_point():
    rng = np.random.default_rng(0)
    small = membership_metrics(rng.random(1000), np.arange(1000) < 500)
    assert (small.n_nonmembers, small.false_positives_at_1pct, small.false_positives_at_0_1pct) == (500, 5, 0)
    assert small.resolved_1pct and not small.resolved_0_1pct
    large = membership_metrics(rng.random(4000), np.arange(4000) < 2000)
    assert (large.false_positives_at_1pct, large.false_positives_at_0_1pct) == (20, 2)
    assert set(small.as_dict()) >= {"auc", "tpr_at_1pct_fpr", "tpr_at_0_1pct_fpr", "balanced_accuracy"}


def test_a_perfect_and_a_reversed_attack():
    labels = np.arange(100) < 50
    perfect = membership_metrics(labels.astype(float), labels)
    assert perfect.auc == 1.0 and perfect.tpr_at_0_1pct_fpr == 1.0 and perfect.balanced_accuracy == 1.0
    assert membership_metrics(-labels.astype(float), labels).auc == 0.0


def test_metrics_refuse_degenerate_inputs():
    with pytest.raises(ValueError, match="one member and one non-member"):
        roc_curve([0.1, 0.2], [True, True])
    with pytest.raises(ValueError, match="finite"):
        roc_curve([np.nan, 0.2], [True, False])
    with pytest.raises(ValueError, match="scores for"):
        roc_curve([0.1, 0.2, 0.3], [True, False])


# --- LiRA and RMIA on distributions whose answer is known ------------------------------------

def _synthetic_signals(seed=0, n=2000, shadows=16, shift=1.0, spread=3.0, noise=0.5):
    """Per-example difficulty ``d_i`` (spread across examples, as real losses are) and a
    membership shift: a model's statistic is ``d_i + shift * member + noise``."""
    rng = np.random.default_rng(seed)
    difficulty = rng.normal(0, spread, n)
    member = rng.random(n) < 0.5
    shadow_in = balanced_memberships(shadows, n, seed=seed + 1)
    shadow = difficulty + shift * shadow_in + rng.normal(0, noise, (shadows, n))
    target = difficulty + shift * member + rng.normal(0, noise, n)
    return target, shadow, shadow_in, member


@pytest.mark.parametrize("online", [True, False])
@pytest.mark.parametrize("fixed_variance", [True, False])
def test_lira_calibrates_each_example_against_its_shadows(online, fixed_variance):
    """The raw statistic (the LOSS view) is swamped by per-example difficulty; LiRA removes it."""
    target, shadow, shadow_in, member = _synthetic_signals()
    raw = membership_metrics(target, member)
    ours = membership_metrics(lira_scores(target, shadow, shadow_in, online=online, fixed_variance=fixed_variance),
                              member)
    assert raw.auc < 0.65
    assert ours.auc > 0.8 and ours.tpr_at_1pct_fpr > 0.05
    # A member-shift of zero leaves nothing to find.
    target0, shadow0, in0, member0 = _synthetic_signals(shift=0.0)
    assert abs(membership_metrics(lira_scores(target0, shadow0, in0, online=online), member0).auc - 0.5) < 0.05


def test_lira_online_score_is_the_gaussian_log_likelihood_ratio():
    shadow = np.array([[0.0, 1.0], [2.0, 3.0], [1.0, 5.0], [3.0, 7.0]])
    shadow_in = np.array([[False, False], [True, True], [False, False], [True, True]])
    target = np.array([2.5, 4.0])
    from scipy.stats import norm

    expected = norm.logpdf(target, [2.5, 5.0], [0.5, 2.0]) - norm.logpdf(target, [0.5, 3.0], [0.5, 2.0])
    assert np.allclose(lira_scores(target, shadow, shadow_in, fixed_variance=False), expected)
    offline = lira_scores(target, shadow, shadow_in, online=False, fixed_variance=False)
    assert np.allclose(offline, norm.logcdf(target, [0.5, 3.0], [0.5, 2.0]))
    with pytest.raises(ValueError, match="no shadow model"):
        lira_scores(target, shadow, np.zeros_like(shadow_in))


@pytest.mark.parametrize("online", [True, False])
def test_rmia_finds_members_on_known_probabilities(online):
    target, shadow, shadow_in, member = _synthetic_signals(seed=3)
    to_prob = lambda v: 1.0 / (1.0 + np.exp(-v / 3.0))  # noqa: E731
    # Offline, ``a`` is tuned on the shadows as Privacy Meter does; it must beat the fixed default.
    a = tune_offline_a(to_prob(shadow), shadow_in)
    scores = rmia_scores(to_prob(target), to_prob(shadow), shadow_in, online=online, offline_a=a)
    assert 0.0 <= scores.min() and scores.max() <= 1.0
    assert membership_metrics(scores, member).auc > 0.75
    assert membership_metrics(to_prob(target), member).auc < 0.65
    if not online:
        fixed = rmia_scores(to_prob(target), to_prob(shadow), shadow_in, online=False, offline_a=0.3)
        assert membership_metrics(scores, member).auc > membership_metrics(fixed, member).auc


def test_rmia_counts_population_points_it_dominates():
    # p(x) = 0.5 for every point (all reference models say 0.5), so LR(x, z) = p(x|t) / p(z|t).
    shadow = np.full((2, 3), 0.5)
    shadow_in = np.array([[True, False, True], [False, True, False]])
    target = np.array([0.2, 0.4, 0.8])
    assert np.allclose(rmia_scores(target, shadow, shadow_in, gamma=3.0), [0.0, 0.0, 0.5])
    assert np.allclose(rmia_scores(target, shadow, shadow_in, gamma=2.0), [0.0, 0.5, 1.0])
    assert np.allclose(rmia_scores(target, shadow, shadow_in, gamma=1.0), [0.0, 0.5, 1.0])  # self excluded
    z = (np.array([0.1, 0.3]), np.full((2, 2), 0.5), np.array([[True, False], [False, True]]))
    assert np.allclose(rmia_scores(target, shadow, shadow_in, gamma=2.0, population=z), [0.5, 0.5, 1.0])


def test_balanced_memberships_put_each_example_in_half_the_shadows():
    mask = balanced_memberships(8, 500, seed=1)
    assert mask.shape == (8, 500) and (mask.sum(axis=0) == 4).all()
    assert 200 < mask.sum(axis=1).min() and mask.sum(axis=1).max() < 300


# --- end to end on a model FedAvg overfits through a real protocol ---------------------------

@pytest.fixture(scope="module")
def overfit():
    """A digits MLP trained by FedAvg (3 clients, plain mode) on 150 examples until it fits
    them far better than the 150 non-members, and 8 shadow models trained the same way."""
    digits = load_dataset("digits")
    split = membership_split(digits, pool_size=300, test_size=300, seed=0)
    config = FedAvgConfig(rounds=20, local_epochs=5, batch_size=16, lr=0.1, seed=0, progress=False)

    def factory(seed):
        return make_model("mlp", digits, seed=seed, hidden=(128,))

    run = train_fedavg(factory(0), digits, partition(split.member_indices, 3, seed=0), privagg.Plain(), config,
                       test_indices=split.test)
    shadows = train_shadow_models(fedavg_trainer(digits, factory, 3, config), split.pool, 8, seed=1,
                                  progress=False)
    return digits, split, run, shadows


def test_loss_attack_members_have_lower_loss(overfit):
    digits, split, run, _ = overfit
    x, y = digits.subset(split.pool)
    losses = loss(run.model, x, y)
    assert losses[split.members].mean() < losses[~split.members].mean()
    result = membership_metrics(loss_attack(run.model, x, y), split.members)
    assert result.auc > 0.5, "members have lower loss: the score must be minus the loss"
    assert membership_metrics(losses, split.members).auc < 0.5


def test_shadow_model_attacks_beat_the_loss_attack_on_the_overfit_model(overfit):
    digits, split, run, shadows = overfit
    assert shadows.in_mask.shape == (8, 300) and np.array_equal(shadows.pool, split.pool)
    x, y = digits.subset(split.pool)
    baseline = membership_metrics(loss_attack(run.model, x, y), split.members).auc
    results = {
        "lira-online": lira(run.model, shadows, digits, online=True),
        "lira-offline": lira(run.model, shadows, digits, online=False),
        "lira-online-per-example-variance": lira(run.model, shadows, digits, fixed_variance=False),
        "rmia-online": rmia(run.model, shadows, digits, online=True),
        "rmia-offline": rmia(run.model, shadows, digits, online=False),
    }
    aucs = {name: membership_metrics(scores, split.members).auc for name, scores in results.items()}
    assert all(auc > 0.6 for auc in aucs.values()), aucs
    assert aucs["lira-online"] > baseline and aucs["rmia-online"] > baseline, (aucs, baseline)


def test_roc_plot_is_a_log_log_png(tmp_path, overfit):
    digits, split, run, shadows = overfit
    x, y = digits.subset(split.pool)
    curves = {"LOSS": membership_metrics(loss_attack(run.model, x, y), split.members),
              "LiRA": membership_metrics(lira(run.model, shadows, digits), split.members).curve}
    path = tmp_path / "roc.png"
    png = roc_plot(curves, title="digits, plain", path=path)
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and path.read_bytes() == png
    import matplotlib.image

    image = matplotlib.image.imread(path)
    assert image.shape[0] > 200 and image.shape[1] > 200
    with pytest.raises(ValueError):
        roc_plot({})
