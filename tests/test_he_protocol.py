"""CKKS rounds end to end on real TenSEAL ciphertexts: the sum of whoever uploaded, within the
error bound, under dropouts at every stage, for both key holders; aborts when it must; the
deployment API of the decryptor; the registry, the command line and the bench."""

import itertools
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("tenseal")

import privagg  # noqa: E402
from he import CKKS, DECRYPTOR_ID, CKKSParameters, Decryptor, SharedKey  # noqa: E402
from he.bench import run_bench  # noqa: E402
from he.config import ADVERTISE, COLLECT, DEAL, DECRYPT  # noqa: E402
from privagg import AggregationAborted, ConfigurationError, ProtocolViolation, simulate  # noqa: E402
from privagg.cli import main  # noqa: E402

# One configuration per key setup for the module; the decryptor releases once per round id, so
# every round here gets a fresh one.
CONFIGS = {
    "clients, in-round key": CKKS(min_clients=1),
    "clients, provisioned key": CKKS(min_clients=1, shared_key=SharedKey.generate(CKKSParameters.from_preset("lean"))),
    "decryptor": CKKS(key_holder="decryptor", min_clients=1),
}
ROUND_IDS = itertools.count(1)


def error_bound(agg, contributors):
    """Seven standard deviations of the released noise plus the decryption error it floods
    (a false alarm about once in 10^11 values)."""
    p = agg.params
    return 7 * (p.release_noise_std(contributors) + p.natural_error_std(contributors)) + 1e-12


@st.composite
def rounds(draw):
    setup = draw(st.sampled_from(sorted(CONFIGS)))
    n = draw(st.integers(1, 6))
    ids = draw(st.lists(st.integers(0, 2**40), min_size=n, max_size=n, unique=True))
    d = draw(st.integers(1, 9000))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    updates = {cid: rng.uniform(-1, 1, d) for cid in ids}
    stages = CONFIGS[setup].stages
    dropouts = draw(st.dictionaries(st.sampled_from(ids), st.sampled_from(stages), max_size=n))
    return setup, updates, dropouts


def expected_round(agg, ids, dropouts):
    """Who uploads, who deals and who decrypts, from the protocol's rules (None: it aborts)."""
    def answers(cid, stage):  # a client answers every stage before the one it drops at
        return cid not in dropouts or agg.stages.index(dropouts[cid]) > agg.stages.index(stage)
    dealer = None
    if agg.in_round_key_setup:
        advertisers = [c for c in ids if answers(c, ADVERTISE)]
        dealer = next((c for c in advertisers if answers(c, DEAL)), None)
        if dealer is None:
            return None
        uploaders = [c for c in advertisers if answers(c, COLLECT) and (c == dealer or dropouts.get(c) != DEAL)]
    else:
        uploaders = [c for c in ids if answers(c, COLLECT)]
    decryptors = [c for c in uploaders if answers(c, DECRYPT)]
    if not uploaders or (agg.key_holder == "clients" and not decryptors):
        return None
    return uploaders, ("decryptor" if agg.key_holder == "decryptor" else decryptors[0])


@settings(max_examples=30)
@given(rounds())
def test_the_sum_of_whoever_uploaded_within_the_error_bound(round_):
    setup, updates, dropouts = round_
    agg = CONFIGS[setup]
    expected = expected_round(agg, sorted(updates), dropouts)
    if expected is None:
        with pytest.raises(AggregationAborted):
            simulate(agg, updates, dropouts=dropouts, round_id=next(ROUND_IDS))
        return
    uploaders, decrypted_by = expected
    result = simulate(agg, updates, dropouts=dropouts, round_id=next(ROUND_IDS))
    assert list(result.included) == uploaders
    assert sorted(result.dropped) == sorted(set(updates) - set(uploaders))
    reference = np.sum([updates[c] for c in uploaders], axis=0)
    assert result.encoded is None and result.aggregate.dtype == np.float64
    assert np.max(np.abs(result.aggregate - reference)) <= error_bound(agg, len(uploaders))
    assert result.info["decrypted_by"] == decrypted_by


@pytest.mark.parametrize("setup", sorted(CONFIGS))
def test_the_mean_is_within_1e6_of_its_largest_magnitude(setup):
    rng = np.random.default_rng(11)
    updates = {cid: rng.uniform(-1, 1, 40_000).astype(np.float32) for cid in range(10)}
    result = simulate(CONFIGS[setup], updates, dropouts={4: COLLECT}, round_id=next(ROUND_IDS))
    true_mean = np.mean([updates[c].astype(np.float64) for c in result.included], axis=0)
    relative = np.max(np.abs(result.mean - true_mean)) / np.max(np.abs(true_mean))
    assert relative <= 1e-6
    assert relative > 0  # the release is flooded: an exact answer would mean no noise was added


def test_structured_updates_and_values_beyond_the_clip():
    agg = CKKS(clip=0.5)
    updates = {i: {"w": np.full((3, 4), 0.25 * i), "b": np.array([2.0, -2.0])} for i in range(3)}
    result = simulate(agg, updates)
    vector, spec = privagg.flatten(updates[0])
    total = privagg.unflatten(result.aggregate, spec)
    assert np.allclose(total["w"], 0.75, atol=1e-6)
    assert np.allclose(total["b"], [1.5, -1.5], atol=1e-6)  # each client clipped to +-0.5


def test_aborts_below_min_clients_and_when_no_contributor_decrypts():
    agg = CKKS(min_clients=3)
    updates = {i: np.zeros(10) for i in range(4)}
    with pytest.raises(AggregationAborted, match="only 2 of 4 clients sent ciphertexts; at least 3"):
        simulate(agg, updates, dropouts={0: COLLECT, 1: COLLECT})
    with pytest.raises(AggregationAborted, match="no contributor answered"):
        simulate(agg, updates, dropouts={c: DECRYPT for c in range(4)})
    result = simulate(agg, updates, dropouts={0: DECRYPT, 1: DECRYPT})
    assert result.included == (0, 1, 2, 3) and result.info["decrypted_by"] == 2


def test_the_decrypt_stage_asks_one_contributor_at_a_time():
    agg = CONFIGS["clients, provisioned key"]
    server = agg.server([1, 2, 3], round_id=4)
    clients = {c: agg.client(c, np.full(5, 0.1 * c), round_id=4) for c in (1, 2, 3)}
    for cid, msg in server.messages_to_send().items():
        server.receive(cid, clients[cid].respond(msg.to_bytes()).to_bytes())
    server.deadline_passed()
    # Any contributor may be asked to decrypt: none has finished (a transport keeps its session).
    assert not any(c.finished for c in clients.values())
    assert server.stage == DECRYPT and server.waiting_for == {1}
    (asked,) = server.messages_to_send()
    with pytest.raises(ProtocolViolation, match="client 2 was not asked to decrypt"):
        server.receive(2, b"anything")
    server.deadline_passed()  # client 1 is silent: client 2 is asked
    assert server.waiting_for == {2} and server.dropped == {1: DECRYPT}
    request = server.messages_to_send()[2]
    server.receive(2, clients[2].respond(request.to_bytes()).to_bytes())
    server.deadline_passed()
    assert clients[2].finished and not clients[3].finished
    result = server.result()
    assert result.included == (1, 2, 3) and result.dropped == ()
    assert np.allclose(result.aggregate, 0.6, atol=1e-5)


def test_the_decryptor_over_a_deployments_own_transport():
    params = CKKSParameters.from_preset("lean", key_holder="decryptor")
    from privagg.identity import Identities

    identities = Identities([5, 6, 7])  # provisioned: the roster on every party, a key on each client
    decryptor = Decryptor(params, min_clients=2, roster=identities.roster())  # its own process, in a deployment
    client_config = CKKS(key_holder="decryptor", decryptor_identity=decryptor.identity_public_bytes(),
                         identities=identities)
    with pytest.raises(ConfigurationError, match="round_key"):
        client_config.server([5, 6, 7], round_id=9)
    # The deployment fetches the round's signed key from the decryptor; no in-process decryptor.
    server = client_config.server([5, 6, 7], round_id=9, round_key=decryptor.round_key(9))
    for cid, msg in server.messages_to_send().items():
        client = client_config.client(cid, np.full(100, 0.1 * cid), round_id=9)
        server.receive(cid, client.respond(msg.to_bytes()).to_bytes())
        assert client.finished  # a client of a decryptor round has nothing more to say
    server.deadline_passed()
    assert server.stage == DECRYPT and server.messages_to_send() == {} and server.waiting_for == set()
    outbox = server.decryptor_messages()
    assert list(outbox) == [DECRYPTOR_ID] and server.decryptor_messages() == {}
    reply = decryptor.respond(outbox[DECRYPTOR_ID].to_bytes())
    server.receive_from_decryptor(reply.to_bytes())
    with pytest.raises(ProtocolViolation, match="already answered"):
        server.receive_from_decryptor(reply.to_bytes())
    server.deadline_passed()
    result = server.result()
    assert np.allclose(result.aggregate, 1.8, atol=1e-5) and result.view.by_sender(DECRYPT)[DECRYPTOR_ID]
    assert decryptor.released_rounds == {9}

    silent = client_config.server([5, 6], round_id=10, round_key=decryptor.round_key(10))
    for cid, msg in silent.messages_to_send().items():
        silent.receive(cid, client_config.client(cid, np.zeros(3), round_id=10).respond(msg.to_bytes()))
    silent.deadline_passed()
    with pytest.raises(AggregationAborted, match="the decryptor did not answer"):
        silent.deadline_passed()


def test_a_refusing_in_process_decryptor_aborts_the_round():
    agg = CKKS(key_holder="decryptor", min_clients=1)
    agg.server([0])  # makes the simulation decryptor
    agg.decryptor.min_clients = 3
    with pytest.raises(AggregationAborted, match="decryptor refused.*at least 3"):
        simulate(agg, {0: np.zeros(4), 1: np.zeros(4)})


def test_registry_and_command_line(capsys):
    privagg.register_mode("ckks", "he.modes:make_ckks")
    try:
        assert isinstance(privagg.make_aggregator("ckks", key_holder="decryptor"), CKKS)
        for extra in ([], ["-o", "key_holder=decryptor"], ["-o", "preset=compact"]):
            code = main(["simulate", "--mode", "ckks", "--clients", "6", "--params", "3000", "--dropout", "0.34",
                         "--dropout-stage", COLLECT, "--seed", "2", "--format", "json", *extra])
            out, err = capsys.readouterr()
            assert code == 0, err
            report = json.loads(out)
            assert report["mode"] == "ckks" and report["exact"] is False
            assert len(report["included"]) == 4 and len(report["dropped"]) == 2
            assert 0 < report["max_abs_error"] < 1e-5
            assert report["bytes_up"] > 4 * 3000 * 8
        assert main(["simulate", "--mode", "ckks", "-o", "bogus=1"]) == 2
        assert "unknown option(s) for mode 'ckks': ['bogus']" in capsys.readouterr().err
        assert main(["simulate", "--mode", "ckks", "-o", "scale_bits=59"]) == 2
        assert "no headroom" in capsys.readouterr().err
    finally:
        from privagg import registry

        registry._RUNTIME.pop("ckks", None)
    assert "ckks" not in registry._RUNTIME


BENCH_KEYS = {"preset", "key_holder", "clients", "params", "encrypt_seconds_per_client", "aggregate_seconds",
              "decrypt_seconds", "bytes_per_client", "bytes_per_value", "max_abs_error", "max_rel_error"}


@pytest.mark.parametrize("key_holder", ["clients", "decryptor"])
def test_bench_contract(key_holder):
    updates = np.random.default_rng(0).uniform(-1, 1, (5, 8192)).astype(np.float32)
    report = run_bench(clients=5, params=8192, dropout=0.2, key_holder=key_holder, updates=updates, dropped={3},
                       security="semi-honest")
    assert BENCH_KEYS <= set(report)
    assert report["key_holder"] == key_holder and report["preset"] == "lean"
    assert report["included_ids"] == [0, 1, 2, 4]
    reference = updates[[0, 1, 2, 4]].astype(np.float64).sum(axis=0)
    assert np.max(np.abs(report["aggregate"] - reference)) == pytest.approx(report["max_abs_error"])
    assert report["max_rel_error"] <= 1e-6
    per_value = 8.1 if key_holder == "clients" else 16.1
    assert 0.9 * per_value / 2 < report["bytes_per_value"] <= per_value  # two full ciphertexts of 4096
    assert json.loads(json.dumps({k: v for k, v in report.items() if k != "aggregate"}))


def test_bench_refuses_what_it_cannot_do():
    with pytest.raises(ConfigurationError, match="no --security levels"):
        run_bench(clients=3, params=10, dropout=0.0, security="active")
    with pytest.raises(ConfigurationError, match="neighbours"):
        run_bench(clients=3, params=10, dropout=0.0, neighbours=2)


def drive(server, clients, silent=()):
    """Run a round over bytes between separately built parties; ``silent``: {stage: ids}."""
    while not server.finished:
        stage = server.stage
        for cid, msg in server.messages_to_send().items():
            if cid in dict(silent).get(stage, ()):
                continue
            server.receive(cid, clients[cid].respond(msg.to_bytes()).to_bytes())
        server.deadline_passed()
    return server.result()


def test_every_party_built_on_its_own_shares_a_key_the_server_never_holds():
    """As in a real federation (or Flower, one process per node): each party makes its own
    configuration from the same options; the in-round setup gives the clients one key."""
    from he.modes import make_ckks

    from privagg.identity import Identities

    updates = {cid: np.random.default_rng(cid).uniform(-1, 1, 6000) for cid in (3, 5, 8, 9)}
    identities = Identities(updates)  # provisioned: every party holds the roster, each client its key
    roster = identities.roster()
    server_config = make_ckks(roster=roster)
    assert server_config.stages == (ADVERTISE, DEAL, COLLECT, DECRYPT)
    server = server_config.server(sorted(updates), round_id=21)
    clients = {cid: make_ckks(roster=roster).client(cid, updates[cid], round_id=21,
                                                    signing_key=identities.signing_key(cid)) for cid in updates}
    result = drive(server, clients, silent={DEAL: {3}})  # the first dealer is silent: 5 deals
    assert result.included == (5, 8, 9) and server.dropped == {3: DEAL}
    reference = updates[5] + updates[8] + updates[9]
    assert np.max(np.abs(result.aggregate - reference)) <= error_bound(server_config, 3)
    assert len({clients[c].key_id for c in (5, 8, 9)}) == 1
    # The server relayed the key to 8 and 9 without being able to open it, and holds none.
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    from he import unwrap_shared_key

    dealt = result.view.by_sender(DEAL)[5]
    with pytest.raises((privagg.MalformedMessage, ProtocolViolation), match="does not open|no valid signature"):
        unwrap_shared_key(server_config.params, dealt.packages[8], X25519PrivateKey.generate(), roster=roster)
    told = server_config.disclose(result.view, privagg.colluding([8]))
    assert told.individual == {} and "give the configuration its key" in told.summary


def test_a_provisioned_client_refuses_an_in_round_setup():
    from he.messages import KeySetupRequest
    from privagg.messages import SERVER_ID

    agg = CONFIGS["clients, provisioned key"]
    client = agg.client(1, np.zeros(4), round_id=2)
    with pytest.raises(ProtocolViolation, match="uses a provisioned key"):
        client.respond(KeySetupRequest(2, SERVER_ID, 1, agg.params.digest).to_bytes())
