"""Signed uploads and the key holder's release rule (he.binding): the key holder releases only
the sum it recomputed from at least min_clients distinct uploads signed on its own session."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("tenseal")

from attacks.malicious.ckks_round import CKKSRound, honest_updates  # noqa: E402
from he import CKKS, CKKSParameters, Decryptor, DecryptorKeys, SharedKey  # noqa: E402
from he.binding import sign_upload_payload  # noqa: E402
from he.messages import Ciphertexts, DecryptRequest  # noqa: E402
from privagg import ConfigurationError, ProtocolViolation, simulate  # noqa: E402
from privagg.identity import Identities  # noqa: E402
from privagg.messages import SERVER_ID  # noqa: E402

N = 4096


def resigned(config, upload, *, round_id=None, signer=None):
    """``upload`` signed again (by ``signer``'s identity, on ``round_id``): a client signing what it sends."""
    cid = upload.sender if signer is None else signer
    rid = upload.round_id if round_id is None else round_id
    blobs = [upload.ciphertexts[i] for i in sorted(upload.ciphertexts)]
    payload = sign_upload_payload(config.params.digest, rid, config.key_holder, upload.key_id, upload.sender,
                                  upload.n_values, blobs)
    return Ciphertexts(upload.round_id, upload.sender, SERVER_ID, upload.key_id, upload.n_values,
                       upload.ciphertexts, config.identities.signing_key(cid).sign(payload))


def with_uploads(request, uploads, **changes):
    fields = dict(round_id=request.round_id, sender=request.sender, recipient=request.recipient,
                  params_digest=request.params_digest, key_id=request.key_id, contributors=request.contributors,
                  n_values=request.n_values, ciphertexts=request.ciphertexts, uploads=uploads)
    fields.update(changes)
    return DecryptRequest(**fields)


@pytest.mark.parametrize("key_holder", ["clients", "decryptor"])
def test_an_honest_signed_round_releases_the_sum(key_holder):
    updates = honest_updates(4, 5000, spread=0.5)
    result = simulate(CKKS(key_holder=key_holder), updates)
    assert np.max(np.abs(result.aggregate - sum(updates.values()))) < 1e-4


@pytest.mark.parametrize("key_holder", ["clients", "decryptor"])
def test_the_server_refuses_an_upload_without_its_clients_signature(key_holder):
    key = SharedKey.generate(CKKSParameters.from_preset("lean")) if key_holder == "clients" else None
    config = CKKS(key_holder=key_holder, shared_key=key)
    server = config.server([1, 2])
    client = config.client(1, np.zeros(10))
    upload = client.respond(server.messages_to_send()[1].to_bytes())
    forged = Ciphertexts(0, 1, SERVER_ID, upload.key_id, upload.n_values, upload.ciphertexts, bytes(64))
    with pytest.raises(ProtocolViolation, match="no valid signature"):
        server.receive(1, forged.to_bytes())
    other = resigned(config, upload, signer=2)  # client 2's signature on client 1's upload
    with pytest.raises(ProtocolViolation, match="no valid signature"):
        server.receive(1, other.to_bytes())
    server.receive(1, upload.to_bytes())


@pytest.mark.parametrize("key_holder", ["clients", "decryptor"])
def test_the_key_holder_refuses_every_request_but_the_signed_sum(key_holder):
    params = CKKSParameters.from_preset("lean", key_holder=key_holder)
    identities = Identities()
    decryptor = (Decryptor(params, DecryptorKeys.generate(params), roster=identities)  # long-term: probes reuse it
                 if key_holder == "decryptor" else None)
    config = CKKS(key_holder=key_holder, min_clients=2, decryptor=decryptor, identities=identities)
    rnd = CKKSRound(config, honest_updates(3, N, spread=0.5), round_id=4)
    req = rnd.request
    bad = {
        "a missing upload": with_uploads(req, {c: u for c, u in req.uploads.items() if c != 1}),
        "too few": with_uploads(req, {1: req.uploads[1]}, contributors=(1,)),
        "an unknown client": with_uploads(req, {**req.uploads, 77: req.uploads[1]}, contributors=(1, 2, 3, 77)),
        "a round the clients did not sign": with_uploads(req, req.uploads, round_id=5),
        "a replayed upload from another round": with_uploads(req, {
            **req.uploads, 2: resigned(config, rnd.received[2], round_id=3).to_bytes()}),
        "a forged signature": with_uploads(req, {**req.uploads, 2: Ciphertexts(
            4, 2, SERVER_ID, rnd.received[2].key_id, N, rnd.received[2].ciphertexts, bytes(64)).to_bytes()}),
        "another upload under a contributor's name": with_uploads(req, {**req.uploads, 2: req.uploads[3]}),
        "one upload as the aggregate": with_uploads(req, req.uploads,
                                                    ciphertexts={0: rnd.ring.dump(rnd.upload_ciphertexts(1)[0])}),
    }
    for name, forged in bad.items():
        if key_holder == "decryptor" and forged.round_id == req.round_id:
            # one release per round id: each refusal here uses up nothing the honest one needs
            config.decryptor._released.discard(req.round_id)
        if key_holder == "clients":
            rnd.clients[req.recipient]._released = False  # each probe gets a fresh decryption attempt
        with pytest.raises(ProtocolViolation):
            rnd.ask_key_holder(forged)
            pytest.fail(f"released with {name}")
    if key_holder == "decryptor":
        config.decryptor._released.discard(req.round_id)
    else:
        rnd.clients[req.recipient]._released = False
    assert np.max(np.abs(rnd.ask_key_holder(req).vector - sum(rnd.updates.values()))) < 1e-4  # the honest one


def test_a_decryptor_with_a_roster_refuses_uploads_of_strangers():
    identities = Identities([1, 2, 3])
    params = CKKSParameters.from_preset("lean", key_holder="decryptor")
    decryptor = Decryptor(params, roster=identities.roster([1, 2]))  # client 3 is not in its roster
    config = CKKS(key_holder="decryptor", decryptor=decryptor, identities=identities)
    rnd = CKKSRound(config, honest_updates(3, 100, spread=0.5))
    with pytest.raises(ProtocolViolation, match="client 3's forwarded upload carries no valid signature"):
        rnd.ask_key_holder(rnd.request)


def test_a_configured_roster_needs_each_clients_signing_key():
    identities = Identities([1, 2])
    config = CKKS(roster=identities.roster(), shared_key=SharedKey.generate(CKKSParameters.from_preset("lean")))
    with pytest.raises(ConfigurationError, match="signing_key"):
        config.client(1, np.zeros(4))
    config.client(1, np.zeros(4), signing_key=identities.signing_key(1))


KINDS = ("honest", "replayed", "substituted", "crafted", "unsigned")


@settings(max_examples=12, deadline=None)
@given(st.lists(st.sampled_from(KINDS), min_size=2, max_size=5), st.sampled_from(["clients", "decryptor"]))
def test_nothing_but_a_valid_aggregate_of_signed_uploads_is_ever_released(kinds, key_holder):
    """Random mixes of honest, replayed (another round's), substituted (another client's),
    crafted (aggregate replaced by a ciphertext of the attacker's) and unsigned uploads: a
    release happens only when every forwarded upload is an honest one, and then it is their sum."""
    from attacks.malicious.ckks_crafting import key_query

    config = CKKS(key_holder=key_holder, min_clients=2)
    updates = honest_updates(len(kinds), 300, seed=len(kinds), spread=0.5)
    rnd = CKKSRound(config, updates, round_id=8)
    req = rnd.request
    uploads = dict(req.uploads)
    aggregate = dict(req.ciphertexts)
    ids = sorted(updates)
    for cid, kind in zip(ids, kinds):
        honest = rnd.received[cid]
        if kind == "replayed":
            uploads[cid] = resigned(config, honest, round_id=7).to_bytes()
        elif kind == "substituted":
            other = rnd.received[ids[(ids.index(cid) + 1) % len(ids)]]
            uploads[cid] = Ciphertexts(8, cid, SERVER_ID, other.key_id, other.n_values, other.ciphertexts,
                                       honest.signature).to_bytes()
        elif kind == "unsigned":
            uploads[cid] = Ciphertexts(8, cid, SERVER_ID, honest.key_id, honest.n_values, honest.ciphertexts,
                                       b"").to_bytes()
        elif kind == "crafted":
            aggregate = {0: rnd.ring.dump(key_query(rnd.ring))}
    forged = with_uploads(req, uploads, ciphertexts=aggregate)
    reply, refusal = rnd.try_key_holder(forged)
    if all(k == "honest" for k in kinds) or (
            set(kinds) <= {"honest", "substituted"} and len(set(rnd.received[c].ciphertexts[0] for c in ids)) == 1):
        assert reply is not None
        assert np.max(np.abs(reply.vector - sum(updates.values()))) < 1e-4
    else:
        assert reply is None and refusal is not None


def test_each_round_gets_its_own_decryptor_key_and_the_secret_goes_with_its_release():
    config = CKKS(key_holder="decryptor")
    updates = honest_updates(3, 100, spread=0.5)
    ids = set()
    for round_id in (1, 2):
        result = simulate(config, updates, round_id=round_id)
        assert np.max(np.abs(result.aggregate - sum(updates.values()))) < 1e-4
        ids.add(result.view.by_sender("collect_ciphertexts")[1].key_id)
    assert len(ids) == 2
    decryptor = config.decryptor
    assert decryptor.per_round_keys and decryptor._round_keys == {}  # released: no secret left but the audit's
    with pytest.raises(ProtocolViolation, match="already decrypted; its key is gone"):
        decryptor.round_key(2)


def test_a_client_refuses_a_round_key_the_decryptor_did_not_sign_for_its_round():
    from he.messages import EncryptRequest
    from he.round_keys import announce_round_key
    from privagg.identity import SigningKey

    params = CKKSParameters.from_preset("lean", key_holder="decryptor")
    decryptor = Decryptor(params)
    config = CKKS(key_holder="decryptor", decryptor_identity=decryptor.identity_public_bytes())
    own = DecryptorKeys.generate(params)  # the server's own key pair, signed by the server's own identity
    forged = announce_round_key(params, 3, own.public_key, SigningKey.generate())
    for package, fragment in [(forged, "not signed by the configured decryptor"),
                              (decryptor.round_key(2), "for round 2, not 3")]:
        client = config.client(1, np.zeros(10), round_id=3)
        with pytest.raises(ProtocolViolation, match=fragment):
            client.respond(EncryptRequest(3, SERVER_ID, 1, params.digest, own.key_id, package).to_bytes())
    client = config.client(1, np.zeros(10), round_id=3)
    good = decryptor.round_key(3)
    upload = client.respond(EncryptRequest(3, SERVER_ID, 1, params.digest, bytes(16), good).to_bytes())
    assert upload.key_id != own.key_id


def test_an_in_process_dealer_keeps_only_the_last_round_key():
    config = CKKS()
    updates = honest_updates(3, 50, spread=0.5)
    for round_id in (1, 2, 3):
        simulate(config, updates, round_id=round_id)
    assert config.round_key(3) is not None and config.round_key(1) is None and config.round_key(2) is None
    assert len(config._round_keys) == 1


@pytest.mark.parametrize("key_holder", ["clients", "decryptor"])
def test_a_pooled_servers_aggregate_matches_the_key_holders_recomputation_byte_for_byte(key_holder):
    updates = honest_updates(3, 3 * N + 17, spread=0.5)
    result = simulate(CKKS(key_holder=key_holder, server_processes=2), updates)
    assert np.max(np.abs(result.aggregate - sum(updates.values()))) < 1e-4


def test_parties_built_from_an_identity_directory_run_a_signed_round(tmp_path):
    """What a deployment (or a run configuration) passes: a path, not objects."""
    from he.modes import make_ckks

    updates = honest_updates(3, 500, spread=0.5)
    Identities(updates).save(tmp_path)
    server = make_ckks(identity_dir=str(tmp_path)).server(sorted(updates), round_id=3)
    clients = {cid: make_ckks(identity_dir=str(tmp_path)).client(cid, x, round_id=3) for cid, x in updates.items()}
    while not server.finished:
        for cid, msg in server.messages_to_send().items():
            server.receive(cid, clients[cid].respond(msg.to_bytes()).to_bytes())
        server.deadline_passed()
    assert np.max(np.abs(server.result().aggregate - sum(updates.values()))) < 1e-4
    with pytest.raises(ConfigurationError, match="signing_key"):
        make_ckks(identity_dir=str(tmp_path)).client(99, np.zeros(3))


def test_a_server_cannot_make_the_decryptor_hold_unboundedly_many_round_keys():
    from he.decryptor import MAX_OPEN_ROUNDS

    decryptor = Decryptor(CKKSParameters.from_preset("lean", key_holder="decryptor"))
    for round_id in range(MAX_OPEN_ROUNDS):
        decryptor.round_key(round_id)
    assert decryptor.round_key(3) == decryptor.round_key(3)  # the same announcement again
    with pytest.raises(ProtocolViolation, match="rounds are open"):
        decryptor.round_key(10**6)
