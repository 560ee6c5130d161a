"""A malicious server against secure aggregation (issue 7, section 5): each attack recovers
inputs from semi-honest SecAgg, and is caught by active security, or, for trap weights, is
not and cannot be. The forged dropout by second sessions is now stopped by S-bound shares (and,
on the same updates, by the clients' ledger first), and the difference of two sessions of one
round, its -0.0 variant and the unmasking split by the ledger v2 (in semi-honest mode too); the
difference over a one-ulp model change gets past the ledger (its stated limit, asserted as such),
and so does the plain difference with stochastic rounding (the ledger keys on the update before encoding).
Every round is a real SecAgg round among honest client sessions; each client keeps one ledger
across the sessions of an attack (one configuration per attack)."""

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
    graph_grinding,
    honest_server,
    make_setting,
    model_digest,
    model_inconsistency,
    neighbour_omission,
    recover_inputs,
    replay,
    roster_shrink,
    run_malicious_suite,
    second_session_split,
    session_difference,
    trap_model,
    trap_weights,
    unmasking_split,
)
from attacks.malicious.difference import LEDGER_REFUSAL
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


# --- (d) to (h): the attacks on protocol v2 ----------------------------------------------------

COLLUDERS = (7, 8)


def test_roster_shrink_unmasks_the_target_in_semi_honest_secagg_and_is_refused_in_active(setting):
    semi = roster_shrink(setting, colluders=COLLUDERS, inversion=FAST)
    assert semi.completed and not semi.detected and semi.update_error == 0.0
    assert max(semi.recovery.psnr_db) >= RECOVERED_DB
    active = roster_shrink(setting, security="active", colluders=COLLUDERS, inversion=FAST)
    assert active.detected and not active.completed and active.recovery is None
    assert len(active.refusals) == 3 and all("bounds [8, 1024]" in m for m in active.refusals.values())


@pytest.mark.parametrize("security", ["semi-honest", "active"])
def test_replayed_advertisements_are_accepted_but_never_masked_with(setting, security):
    outcome = replay(setting, security=security, colluders=COLLUDERS)
    assert outcome.detected and not outcome.completed and outcome.recovery is None
    assert outcome.extra["stale_accepted"] == outcome.extra["replayed"] != []
    assert "none is in the target's masked input" in outcome.summary


def test_graph_seed_grinding_works_when_the_server_picks_the_seed_and_not_when_clients_commit_it(setting):
    semi = graph_grinding(setting, colluders=COLLUDERS, inversion=FAST)
    assert semi.completed and not semi.detected and semi.update_error == 0.0
    assert semi.extra["colluding_neighbours"] >= 2 and max(semi.recovery.psnr_db) >= RECOVERED_DB
    active = graph_grinding(setting, security="active", colluders=COLLUDERS, inversion=FAST)
    assert active.detected and not active.completed and active.recovery is None
    assert len(active.refusals) == 3
    assert max(active.extra["colluding_neighbours"]) < active.threshold == 3


def test_neighbour_omission_unmasks_semi_honest_secagg_plus_and_every_variant_is_refused_in_active(setting):
    semi = neighbour_omission(setting, colluders=COLLUDERS, inversion=FAST)
    assert semi.completed and not semi.detected and semi.update_error == 0.0
    assert max(semi.recovery.psnr_db) >= RECOVERED_DB
    active = neighbour_omission(setting, security="active", colluders=COLLUDERS, inversion=FAST)
    assert active.detected and not active.completed and active.recovery is None
    assert active.extra["variants"] == ["keys", "shares", "survivors"]
    said = " ".join(active.refusals.values())
    for reason in ("usable neighbours", "live neighbours, 3 needed", "live neighbours survive"):
        assert reason in said


@pytest.fixture(scope="module")
def wide():
    """Ten clients: the second-session split needs three colluders, fewer than a third."""
    return make_setting("digits", clients=10, images_per_client=1, seed=3)


def test_the_second_session_split_unmasks_semi_honest_secagg(wide):
    outcome = second_session_split(wide, security="semi-honest", colluders=(8, 9, 10), inversion=FAST)
    assert outcome.completed and not outcome.detected and outcome.update_error == 0.0


def test_the_second_session_split_is_stopped_by_active_secagg(wide):
    """Was an xfail: shares are now bound to S, so the holders shown the second view refuse the
    target's share ("does not authenticate"). On the same updates the second sessions' clients
    now refuse even earlier, at their masked input (privagg.ledger), so the second view never
    reaches its quorum check; past the ledger (a one-step change of their updates) the quorum
    check stops it: tests/test_secagg_attacks.py::test_second_sessions_cannot_split_the_quorum."""
    outcome = second_session_split(wide, security="active", colluders=(8, 9, 10), inversion=FAST)
    assert outcome.extra["minimum_colluders"] == 3 < wide.clients / 3
    assert not outcome.completed and outcome.detected and outcome.recovery is None, outcome.summary
    said = " ".join(outcome.refusals.values())
    assert "the share from client 1 does not authenticate" in said and LEDGER_REFUSAL in said
    assert outcome.summary.startswith("detected")


def test_the_suite_carries_every_row_and_serialises(setting):
    import json

    suite = run_malicious_suite(setting, colluders=2, inversion=FAST)
    names = [row.attack for row in suite.rows]
    for prefix in ("(d) roster shrink", "(e) replay", "(f) graph-seed grinding", "(g) neighbour omission",
                   "(h) forged dropout by second sessions", "(i) difference of two sessions",
                   "(j) difference over a one-ulp model change", "(k) difference split between two unmasking"):
        assert any(name.startswith(prefix) for name in names), prefix
    json.dumps(suite.as_dict())
    rows = {row.attack: row for row in suite.rows}
    for name in ("(d) roster shrink", "(f) graph-seed grinding (SecAgg+)", "(g) neighbour omission (SecAgg+)"):
        assert rows[name].semi_honest.completed and not rows[name].active.completed
    split = rows["(h) forged dropout by second sessions"]
    assert "on a setting of 10 clients" in split.note
    assert split.semi_honest.completed and split.active.detected and not split.active.completed
    assert split.active.summary.startswith("detected")
    # Refused by the ledger v2 in both modes: the plain difference, its -0.0 variant, the unmasking split.
    for name in ("(i) difference of two sessions", "(j) difference over zeros sent as -0.0",
                 "(k) difference split between two unmasking groups",
                 "(l) difference of two sessions with stochastic rounding"):
        for outcome in (rows[name].semi_honest, rows[name].active):
            assert outcome.detected and not outcome.completed and "privagg.ledger" in outcome.summary, name
            assert any(LEDGER_REFUSAL in e for e in outcome.refusals.values()), name
    # What gets past the ledger in both modes: the one-ulp change (its stated limit).
    for name in ("(j) difference over a one-ulp model change",):
        for outcome in (rows[name].semi_honest, rows[name].active):
            assert outcome.completed and not outcome.detected, name
    for outcome in (rows["(j) difference over a one-ulp model change"].semi_honest,
                    rows["(j) difference over a one-ulp model change"].active):
        assert outcome.extra["max_steps"] <= 1


@pytest.mark.parametrize("security", ["semi-honest", "active"])
def test_the_difference_of_two_sessions_is_refused_by_the_ledger(setting, security):
    """Was a working attack (semi-honest) and an xfail (active): the same round on the same model
    twice, the target dropped in the second. Each client keeps one ledger across both sessions
    (one configuration, as one client process): every other client refuses its second masked
    input of the same update."""
    outcome = session_difference(setting, security=security, inversion=FAST)
    assert not outcome.completed and outcome.detected and outcome.recovery is None
    assert len(outcome.refusals) == setting.clients - 1
    assert all(LEDGER_REFUSAL in m for m in outcome.refusals.values())
    assert outcome.summary.startswith("detected") and "privagg.ledger" in outcome.summary


def test_a_one_ulp_model_change_gets_past_the_ledger_in_semi_honest_secagg(setting):
    """The documented limit of the ledger, measured: the second session runs on the model with
    every weight moved by one float32 ulp (a new digest). The updates move by far less than a
    fixed-point step: the difference is the target's update up to one step on a few values, and
    iDLG recovers its images. WORKS against semi-honest SecAgg."""
    outcome = session_difference(setting, inversion=FAST, nudge=True)
    assert outcome.completed and not outcome.detected
    assert outcome.extra["max_steps"] <= 1 and outcome.extra["steps_off"] < outcome.extra["values"] / 100
    assert outcome.update_error <= 2 * 2.0 ** -20
    assert max(outcome.recovery.psnr_db) >= RECOVERED_DB


def test_a_one_ulp_model_change_gets_past_the_ledger_in_active_secagg_the_stated_limit(setting):
    """The same against active SecAgg, no colluder: WORKS, and is the ledger's documented limit
    (privagg.ledger: "only noise (differential privacy) bounds that"), so a passing test of the
    stated residual, not an xfail. A one-ulp change of every weight moves a few encoded values
    (a new input for the ledger); the difference is the target's update but for those values."""
    outcome = session_difference(setting, security="active", inversion=FAST, nudge=True)
    assert outcome.completed and not outcome.detected, outcome.summary
    assert outcome.extra["max_steps"] <= 1 and 0 < outcome.extra["steps_off"] < outcome.extra["values"] / 100
    assert max(outcome.recovery.psnr_db) >= RECOVERED_DB


@pytest.mark.parametrize("security", ["semi-honest", "active"])
def test_the_unmasking_split_is_refused_by_the_ledger(setting, security):
    """(k): was a working attack (semi-honest) and an xfail (active) with 2t - n = 2 colluders of
    8: each session unmasked by a different honest group plus the colluders. The ledger v2 claims
    the update before the masked input: session 2's honest clients refuse it and the session
    aborts with the colluders' masked inputs only."""
    outcome = unmasking_split(setting, security=security, colluders=COLLUDERS, inversion=FAST)
    assert not outcome.completed and outcome.detected and outcome.recovery is None, outcome.summary
    assert "privagg.ledger" in outcome.summary
    assert sum(LEDGER_REFUSAL in e for e in outcome.refusals.values()) == setting.clients - len(COLLUDERS) - 1


@pytest.mark.parametrize("security", ["semi-honest", "active"])
def test_zeros_sent_as_minus_zero_are_refused_by_the_ledger(setting, security):
    """(j, -0.0): was a working attack (semi-honest) and an xfail (active): the zero weights sent
    as -0.0 give another digest and bit-identical updates. The ledger v2 keys on the encoded
    update, not the digest: every other client refuses its second masked input."""
    outcome = session_difference(setting, security=security, inversion=FAST, zeros=True)
    assert not outcome.completed and outcome.detected and outcome.recovery is None, outcome.summary
    assert len(outcome.refusals) == setting.clients - 1
    assert all(LEDGER_REFUSAL in m for m in outcome.refusals.values())


@pytest.mark.parametrize("security", ["semi-honest", "active"])
def test_the_difference_with_stochastic_rounding_is_stopped_by_the_ledger(setting, security):
    """The ledger keys on the update before encoding: stochastic rounding does not make it new."""
    outcome = session_difference(setting, security=security, inversion=FAST, rounding="stochastic")
    assert outcome.detected and not outcome.completed and outcome.recovery is None, outcome.summary
    assert any(LEDGER_REFUSAL in m for m in outcome.refusals.values())
