"""A malicious server against secure aggregation (issue 7, section 5): each attack recovers
inputs from semi-honest SecAgg, and is caught by active security, or, for trap weights, is
not and cannot be. Every round is a real SecAgg round among honest client sessions."""

import numpy as np
import pytest
import torch

from attacks.inversion.gradients import model_gradient
from attacks.inversion.quality import psnr
from attacks.inversion.reconstruct import InversionConfig
from attacks.malicious import (
    RECOVERED_DB,
    arm,
    forged_dropout,
    honest_server,
    make_setting,
    model_digest,
    model_inconsistency,
    recover_inputs,
    trap_model,
    trap_weights,
)
from privagg import flatten

torch.set_num_threads(1)

FAST = InversionConfig(iterations=150)


@pytest.fixture(scope="module")
def setting():
    """Eight clients with two digits images each."""
    return make_setting("digits", clients=8, images_per_client=2, seed=3)


# --- the trap model itself ---------------------------------------------------------------------

def test_disarmed_traps_have_exactly_zero_gradient_and_armed_bins_give_a_lone_input_back(setting):
    x, y = setting.dataset.subset(setting.data.parts[1])
    layout = setting.layout
    names = [n for n, _ in setting.honest.named_parameters()]
    honest = dict(zip(names, model_gradient(setting.honest, x, y)))
    assert not honest["body.1.weight"][layout.units].any() and not honest["body.1.bias"][layout.units].any()
    assert not honest["head.weight"][:, layout.units].any()
    assert honest["body.1.weight"][: layout.first].abs().sum() > 0  # the honest units do learn
    # One example: some bin holds it alone, and gives it back to float precision.
    one_x, one_y = x[:1], y[:1]
    grads = model_gradient(setting.armed, one_x, one_y)
    update, spec = flatten({n: g.double() for n, g in zip(names, grads)})
    found = recover_inputs(update, spec, layout, setting.dataset.input_shape, tolerance=1e-12)
    assert len(found) == 1
    assert psnr(found[0], one_x[0], data_range=1.0) > 100


def test_thresholds_come_from_public_data_and_put_examples_in_different_bins():
    model, layout = trap_model(64, 10, honest_units=4, bins=16, seed=0)
    public = torch.rand(300, 1, 8, 8)
    armed = arm(model, layout, public, seed=1)
    bias = armed.body[1].bias[layout.units]
    assert torch.all(bias[1:] < bias[:-1]), "bin thresholds rise unit by unit"
    rows = armed.body[1].weight[layout.units]
    assert torch.allclose(rows, rows[:1].expand_as(rows)), "every bin measures the same statistic"
    # About one sixteenth of fresh examples of the same kind lands in each bin.
    measured = torch.rand(2000, 64) @ rows[0]
    counts = torch.bucketize(measured, -bias).bincount(minlength=17)[1:]
    assert counts.min() > 40 and counts.max() < 250


def test_model_digest_tells_models_apart(setting):
    assert model_digest(setting.honest) == model_digest(setting.honest)
    assert model_digest(setting.honest) != model_digest(setting.armed)
    assert len(model_digest(setting.honest)) == 32


# --- (a) model inconsistency -------------------------------------------------------------------

def test_model_inconsistency_reads_one_clients_update_out_of_semi_honest_secagg(setting):
    outcome = model_inconsistency(setting, target=2)
    assert outcome.completed and not outcome.detected
    assert outcome.update_error == 0.0, "the trap coordinates of the sum are the target's encoded input, exactly"
    assert outcome.recovery is not None and len(outcome.recovery.truth) == 2
    assert outcome.recovered >= 1 and max(outcome.recovery.psnr_db) >= RECOVERED_DB
    # The images recovered are the target's: compare with another client's.
    other = setting.data.inputs([3])
    assert max(psnr(outcome.recovery.best[0], o, data_range=1.0) for o in other) < RECOVERED_DB


def test_model_inconsistency_is_detected_by_active_security(setting):
    outcome = model_inconsistency(setting, security="active", target=2)
    assert outcome.detected and not outcome.completed and outcome.recovery is None
    # The target finds no peer who signed for its model; the others refuse the target alone.
    assert set(outcome.refusals) == {2} and "usable neighbours" in outcome.refusals[2]
    assert "does not contain it" in outcome.summary


# --- (b) forged dropout ------------------------------------------------------------------------

def test_forged_dropout_unmasks_the_target_when_the_threshold_lets_two_groups_reach_it(setting):
    outcome = forged_dropout(setting, threshold=setting.clients // 2, inversion=FAST)
    assert outcome.completed and not outcome.detected
    assert outcome.update_error == 0.0, "the unmasked vector is the target's encoded input, bit for bit"
    assert outcome.recovery is not None and max(outcome.recovery.psnr_db) >= RECOVERED_DB


def test_the_default_threshold_alone_blocks_a_split_without_accomplices(setting):
    outcome = forged_dropout(setting, inversion=FAST)
    assert 2 * outcome.threshold > setting.clients
    assert not outcome.completed and not outcome.detected and outcome.recovery is None
    assert "not possible" in outcome.summary


def test_the_consistency_check_catches_the_split(setting):
    outcome = forged_dropout(setting, security="active", inversion=FAST)
    assert outcome.detected and not outcome.completed and outcome.recovery is None
    assert all("valid signatures" in message for message in outcome.refusals.values())


@pytest.mark.parametrize("colluders", [1, 2])
def test_colluders_defeat_the_threshold_and_the_check_exactly_when_the_quorum_allows(setting, colluders):
    """Colluders give both shares and sign both survivor sets: the attack works iff the two
    groups can each reach the threshold and the quorum, i.e. 2t <= n + c and 2q <= n + c."""
    bad = setting.client_ids[-colluders:]
    semi = forged_dropout(setting, colluders=bad, inversion=FAST)
    active = forged_dropout(setting, security="active", colluders=bad, inversion=FAST)
    n = setting.clients
    from secagg import SecAgg

    params = SecAgg(security="active").parameters(setting.client_ids)
    assert semi.completed == (2 * semi.threshold <= n + colluders)
    assert active.completed == (2 * max(params.threshold, params.signatures_needed) <= n + colluders)
    for outcome in (semi, active):
        if outcome.completed:
            assert outcome.update_error == 0.0 and max(outcome.recovery.psnr_db) >= RECOVERED_DB
        else:
            assert outcome.recovery is None
    if not active.completed:
        assert active.detected


# --- (c) trap weights --------------------------------------------------------------------------

@pytest.mark.parametrize("security", ["semi-honest", "active"])
def test_trap_weights_read_single_images_out_of_the_aggregate_unnoticed(setting, security):
    outcome = trap_weights(setting, security=security)
    assert outcome.completed and not outcome.detected and not outcome.detectable
    total = sum(len(p) for p in setting.data.parts.values())
    assert outcome.total_images == total == 16
    # 64 bins for 16 images: most sit alone (exp(-1/4) ~ 78% expected).
    assert outcome.recovered >= total // 2
    assert "not detectable by the protocol" in outcome.summary


def test_the_honest_server_gets_only_a_blur_from_the_same_round(setting):
    baseline = honest_server(setting, inversion=FAST)
    assert baseline.completed and baseline.recovery is not None
    assert baseline.recovered == 0 and max(baseline.recovery.psnr_db) < 25
    attacked = trap_weights(setting)
    assert np.mean(attacked.recovery.psnr_db) > np.mean(baseline.recovery.psnr_db) + 20
