"""Secure aggregation end to end: exact sums under dropouts at every stage, aborts below the
threshold, both graphs, both security levels, and the failure cases Flower's SecAgg+ has."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from privagg import AggregationAborted, Plain, simulate
from privagg.encoding import sum_mod
from secagg import SecAgg
from secagg.config import STAGES


def encoded_sum(config, updates, ids):
    return sum_mod([config.encoding.encode(updates[c]) for c in ids], config.encoding.bits,
                   len(next(iter(updates.values()))))


@st.composite
def secagg_rounds(draw, complete: bool):
    n = draw(st.integers(3, 30))
    active = draw(st.booleans())
    if complete:
        neighbours = "all"
        k = n - 1
    else:
        neighbours = draw(st.integers(2, max(2, n - 1)))
        k = neighbours if neighbours < n - 1 else n - 1
        if k % 2 == 1 and n % 2 == 1 and k < n - 1:
            k += 1
    # Active rounds need t <= k: a client goes on only with t live neighbours of its own.
    low, high = ((k + 1) // 2 + 1, k) if active else (2, k + 1)
    if active and low > high:
        active, low, high = False, 2, k + 1
    threshold = draw(st.integers(min(low, high), high))
    config = SecAgg(threshold=threshold, neighbours=neighbours, security="active" if active else "semi-honest",
                    modulus_bits=draw(st.sampled_from([24, 32, 40])), max_clients=64)
    d = draw(st.integers(1, 12))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    updates = {cid: rng.uniform(-1, 1, d) for cid in draw(
        st.lists(st.integers(0, 2**40), min_size=n, max_size=n, unique=True))}
    stages = config.stages
    dropouts = draw(st.dictionaries(st.sampled_from(sorted(updates)), st.sampled_from(stages), max_size=n))
    return config, updates, dropouts


def survivors_of(stage_index, stages, dropouts, ids):
    """Clients still answering at the stage with this index."""
    return [c for c in ids if c not in dropouts or stages.index(dropouts[c]) > stage_index]


@settings(max_examples=40)
@given(secagg_rounds(complete=True))
def test_secagg_is_exact_or_aborts_exactly_when_too_few_remain(round_):
    config, updates, dropouts = round_
    ids, stages = sorted(updates), config.stages
    t = config.parameters(ids).threshold
    alive = [survivors_of(i, stages, dropouts, ids) for i in range(len(stages))]
    quorum = config.parameters(ids).signatures_needed
    if config.active:
        # Each client needs t live neighbours of its own (t + 1 clients) until it has sent its
        # masked input, the quorum must sign, and t signers must answer the unmasking.
        must_abort = (any(len(a) < t + 1 for a in alive[:3]) or len(alive[3]) < quorum
                      or len(alive[4]) < t)
    else:
        must_abort = any(len(a) < t for a in alive)
    if must_abort:
        with pytest.raises(AggregationAborted):
            simulate(config, updates, dropouts=dropouts)
        return
    result = simulate(config, updates, dropouts=dropouts)
    included = alive[stages.index("masked_input")]
    assert list(result.included) == included
    assert np.array_equal(result.encoded, encoded_sum(config, updates, included))
    plain = simulate(Plain(config.encoding), {c: updates[c] for c in included})
    assert np.array_equal(result.encoded, plain.encoded)
    assert np.array_equal(result.aggregate, plain.aggregate)


@settings(max_examples=40)
@given(secagg_rounds(complete=False))
def test_secagg_plus_is_exact_for_whoever_it_includes(round_):
    config, updates, dropouts = round_
    ids, stages = sorted(updates), config.stages
    try:
        result = simulate(config, updates, dropouts=dropouts)
    except AggregationAborted:
        assert dropouts, "a round without dropouts must not abort"
        return
    sent_input = set(survivors_of(stages.index("masked_input"), stages, dropouts, ids))
    assert set(result.included) <= sent_input
    assert set(result.included) == set(result.view.by_sender("masked_input"))
    assert np.array_equal(result.encoded, encoded_sum(config, updates, result.included))


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("neighbours", ["all", 4])
def test_abort_below_threshold_at_each_stage(stage, neighbours):
    config = SecAgg(threshold=4, neighbours=neighbours)
    updates = {i: np.full(5, 0.1) for i in range(6)}
    with pytest.raises(AggregationAborted, match="below the threshold of 4|4 needed"):
        simulate(config, updates, dropouts={0: stage, 1: stage, 2: stage})


@pytest.mark.parametrize("stage", ["advertise_keys", "share_keys"])
def test_dropping_before_sharing_keys_is_survived(stage):
    """Flower 1.42's SecAgg+ round dies in this case; ours excludes the client and goes on."""
    config = SecAgg(neighbours=6, threshold=4)
    updates = {i: np.random.default_rng(i).uniform(-1, 1, 50) for i in range(12)}
    result = simulate(config, updates, dropouts={3: stage, 7: stage})
    assert 3 not in result.included and 7 not in result.included
    assert np.array_equal(result.encoded, encoded_sum(config, updates, result.included))
    assert len(result.included) == 10


@pytest.mark.parametrize("neighbours", [3, 4, 5, 6, 7])
def test_even_and_odd_share_counts(neighbours):
    """Flower 1.42 crashes on an even share count; k neighbours give k + 1 shares here."""
    # Threshold k - 1: two dropouts can never leave a neighbourhood short of share holders.
    config = SecAgg(neighbours=neighbours, threshold=neighbours - 1)
    assert (config.parameters(range(20)).neighbours + 1) % 2 == (neighbours + 1) % 2
    updates = {i: np.random.default_rng(i).uniform(-1, 1, 30) for i in range(20)}
    result = simulate(config, updates, dropouts={2: "masked_input", 5: "masked_input"})
    assert np.array_equal(result.encoded, encoded_sum(config, updates, result.included))
    assert result.info["neighbours"] == neighbours


def test_dropouts_after_sharing_keys_need_the_mask_keys_rebuilt():
    config = SecAgg(neighbours="all")
    updates = {i: np.full(8, 0.5) for i in range(10)}
    result = simulate(config, updates, dropouts={0: "masked_input", 9: "masked_input", 4: "unmasking"})
    assert result.included == (1, 2, 3, 4, 5, 6, 7, 8)  # 4 sent its masked input, then vanished
    assert np.allclose(result.aggregate, 4.0)
    key_shares = [m.key_shares for m in result.view.messages("unmasking")]
    assert all(set(k) == {0, 9} for k in key_shares)


def test_large_rounds_with_the_default_secagg_plus_graph():
    config = SecAgg(neighbours="auto", keep_masked_inputs=False)
    rng = np.random.default_rng(0)
    updates = {i: rng.uniform(-1, 1, 2000) for i in range(100)}
    dropped = {i: "masked_input" for i in range(0, 100, 10)}
    result = simulate(config, updates, dropouts=dropped)
    assert (result.info["threshold"], result.info["neighbours"]) == (31, 41)  # the finder, 1/3 corrupt, 10 % dropout
    assert len(bytes.fromhex(result.info["graph_seed"])) == 32
    assert len(result.included) == 90
    assert np.array_equal(result.encoded, encoded_sum(config, updates, result.included))
    assert result.view.messages("masked_input") == []  # not kept, only sized
    assert sum(e.size for e in result.view.entries if e.stage == "masked_input") > 90 * 8000


def test_what_each_adversary_learns_from_a_secagg_view():
    from privagg import HONEST_BUT_CURIOUS, OUTSIDER, colluding

    config = SecAgg(neighbours="all")
    rng = np.random.default_rng(4)
    updates = {i: rng.uniform(-1, 1, 20) for i in range(6)}
    result = simulate(config, updates, dropouts={5: "masked_input"})
    for threat in (HONEST_BUT_CURIOUS, OUTSIDER):
        seen = config.disclose(result.view, threat)
        assert seen.individual == {}
        assert [p.client_ids for p in seen.partial_sums] == [(0, 1, 2, 3, 4)]
    threat = colluding([1, 2], inputs={1: updates[1], 2: updates[2]})
    seen = config.disclose(result.view, threat)
    assert sorted(seen.individual) == [1, 2]
    honest = seen.partial_sums[1]
    assert honest.client_ids == (0, 3, 4)
    exact = updates[0] + updates[3] + updates[4]
    assert np.max(np.abs(honest.total - exact)) <= config.encoding.max_error(5)
    # The view alone never yields an honest client's update: the masked vector is not it.
    masked = result.view.by_sender("masked_input")[0].vector
    assert not np.allclose(config.encoding.decode(masked), updates[0], atol=0.01)


def test_cli_simulate_secagg_options(capsys):
    import json

    from privagg.cli import main

    # Two dropouts leave every 6-neighbour client at least 4 live neighbours (active rounds need
    # t of them): never an abort.
    code = main(["simulate", "--mode", "secagg+", "--clients", "16", "--params", "300", "--dropout", "0.125",
                 "--dropout-stage", "masked_input", "--neighbours", "6", "--threshold", "4",
                 "--security", "active", "--seed", "3", "--format", "json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    report = json.loads(out)
    assert report["exact"] is True and report["threshold"] == 4 and report["neighbours"] == 6
    assert len(report["included"]) == 14
    code = main(["simulate", "--mode", "secagg", "--clients", "6", "--dropout", "0.5",
                 "--dropout-stage", "share_keys", "--threshold", "4", "--format", "json"])
    assert code == 1 and "below the threshold of 4" in capsys.readouterr().err
    assert main(["simulate", "--mode", "secagg", "--neighbours", "3"]) == 2
    assert main(["simulate", "--mode", "secagg+", "--security", "active", "--threshold", "2",
                 "--clients", "10"]) == 2


def test_disclose_names_the_honest_clients_colluders_can_unmask_in_the_realised_graph():
    """Colluders holding t of a client's shares rebuild its seed and mask key and strip its
    masks: disclose must list it (and a test must be able to do it for real)."""
    from attacks.malicious.forged_dropout import unmask_individual
    from privagg import colluding
    from secagg.shamir import reconstruct_secret, share_to_bytes

    config = SecAgg(neighbours=4, threshold=3)
    rng = np.random.default_rng(5)
    ids = list(range(12))
    updates = {i: rng.uniform(-1, 1, 10) for i in ids}
    server = config.server(ids, round_id=1, dimension=10)
    clients = {i: config.client(i, updates[i], round_id=1) for i in ids}
    held_then = {}
    while not server.finished:
        if server.stage == "unmasking":  # the colluders' secret state, which the adversary holds
            held_then = {cid: dict(c._held) for cid, c in clients.items()}
        for cid, msg in server.messages_to_send().items():
            server.receive(cid, clients[cid].respond(msg.to_bytes()).to_bytes())
        server.deadline_passed()
    result = server.result()
    target = 0
    bad = sorted(server.mutual[target])[:3]  # three of its four share holders: t = 3
    seen = config.disclose(result.view, colluding(bad, {c: updates[c] for c in bad}))
    assert target in seen.exposed and "individual updates" in seen.summary
    # What the colluders really get: the target's seed and mask key from their own shares.
    held = {server.params.x_coordinate(c): held_then[c][target] for c in bad}
    seed = reconstruct_secret({x: s for x, (s, _) in held.items()}, 3)
    key = reconstruct_secret({x: k for x, (_, k) in held.items()}, 3)
    peers = {p: result.view.by_sender("advertise_keys")[p].mask_pk for p in server.mutual[target]}
    encoded = unmask_individual(result.view.by_sender("masked_input")[target].vector, seed, key, client=target,
                                peers=peers, session=server.header, bits=config.encoding.bits)
    assert np.array_equal(encoded, config.encoding.encode(updates[target]))
    assert share_to_bytes(held[min(held)][0])  # shares are field elements, not the secret itself
    # Two colluding holders are not enough: the target is not listed.
    few = config.disclose(result.view, colluding(bad[:2], {c: updates[c] for c in bad[:2]}))
    assert target not in few.exposed
