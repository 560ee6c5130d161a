"""A misbehaving server against honest secure-aggregation clients, one attack per test, plus
the secrecy checks: the threshold is real, nothing secret is printed, logged or kept in the
server view, and masked vectors look uniform."""

import dataclasses
import logging
import pickle

import numpy as np
import pytest
from scipy.stats import chisquare

from privagg import MalformedMessage, ProtocolViolation, simulate
from privagg.messages import SERVER_ID, Message
from secagg import SecAgg
from secagg import keys as kx
from secagg.messages import ConsistencyRequest, UnmaskRequest
from secagg.shamir import reconstruct_secret, share_to_bytes


class Round:
    """Drives a round by hand so a test can tamper with what the server sends."""

    def __init__(self, config, n=8, round_id=3, digests=None, params=16):
        self.config = config
        self.ids = list(range(1, n + 1))
        rng = np.random.default_rng(1)
        self.updates = {i: rng.uniform(-1, 1, params) for i in self.ids}
        self.server = config.server(self.ids, round_id=round_id, dimension=params)
        self.clients = {i: config.client(i, self.updates[i], round_id=round_id,
                                         **({"model_digest": digests[i]} if digests else {}))
                        for i in self.ids}
        self.outgoing: dict[int, Message] = {}

    def deliver(self, tamper=None, skip=()):
        """Send the server's current messages (tampered) and feed the replies back."""
        self.outgoing = self.server.messages_to_send()
        errors = {}
        for cid, msg in self.outgoing.items():
            if cid in skip:
                continue
            if tamper is not None:
                msg = tamper(cid, msg)
            try:
                reply = self.clients[cid].respond(msg.to_bytes() if isinstance(msg, Message) else msg)
            except (ProtocolViolation, MalformedMessage) as exc:
                errors[cid] = exc
                continue
            self.server.receive(cid, reply.to_bytes())
        return errors

    def step(self, tamper=None, skip=()):
        errors = self.deliver(tamper, skip)
        self.server.deadline_passed()
        return errors

    def run_to(self, stage, skip_at=None):
        while self.server.stage != stage:
            self.step(skip=(skip_at or {}).get(self.server.stage, ()))


def test_a_second_unmasking_request_asking_for_the_other_share_is_refused():
    r = Round(SecAgg(threshold=5))
    r.run_to("masked_input")
    r.step(skip={8})  # client 8 sends no masked input
    requests = r.server.messages_to_send()
    first = r.clients[1].respond(requests[1].to_bytes())
    assert 8 in first.key_shares and 8 not in first.seed_shares
    assert 2 in first.seed_shares and 2 not in first.key_shares
    # The server now claims 2 dropped too, to get its mask-key share as well.
    forged = UnmaskRequest(3, SERVER_ID, 1, tuple(c for c in r.ids if c not in (2, 8)), {})
    with pytest.raises(ProtocolViolation, match="finished"):
        r.clients[1].respond(forged.to_bytes())


def test_each_answer_reveals_one_kind_of_share_per_peer():
    r = Round(SecAgg(threshold=5))
    r.run_to("masked_input")
    r.step(skip={7, 8})
    for cid, msg in r.server.messages_to_send().items():
        reply = r.clients[cid].respond(msg.to_bytes())
        assert not set(reply.seed_shares) & set(reply.key_shares)


@pytest.mark.parametrize("forge, match", [
    (lambda s, cid: tuple(c for c in s if c != cid), "omits client"),   # claims the client itself dropped
    (lambda s, cid: s[:4], "threshold is 5"),                           # shrinks below the threshold
    (lambda s, cid: tuple(sorted(set(s) | {8})), "never sent shares"),  # revives a client that dropped before
    (lambda s, cid: tuple(sorted(set(s) | {99})), "never sent shares|outside the roster"),
])
def test_forged_survivor_sets_are_refused(forge, match):
    r = Round(SecAgg(threshold=5))
    r.run_to("share_keys")
    r.step(skip={8})  # 8 never shares its keys
    r.step()          # masked inputs
    survivors = r.server.messages_to_send()
    for cid, msg in survivors.items():
        fake = UnmaskRequest(3, SERVER_ID, cid, forge(msg.survivors, cid), {})
        with pytest.raises(ProtocolViolation, match=match):
            r.clients[cid].respond(fake.to_bytes())
        assert r.clients[cid].finished  # and it will not answer again
        break


def test_the_forged_dropout_attack_is_stopped_by_the_consistency_check():
    """The server tells half the clients that client 1 survived (to get its self-mask seed
    shares) and the other half that it dropped (to get its mask-key shares)."""
    r = Round(SecAgg(security="active"), n=10)
    r.run_to("consistency_check")
    survivors = r.server.messages_to_send()
    full = survivors[2].survivors
    without_1 = tuple(c for c in full if c != 1)
    group_a, group_b = [2, 3, 4, 5], [6, 7, 8, 9, 10]
    sigs_a, sigs_b = {}, {}
    for cid in group_a:
        sigs_a[cid] = r.clients[cid].respond(ConsistencyRequest(3, SERVER_ID, cid, full).to_bytes()).signature
    for cid in group_b:  # not client 1 itself, so they accept the smaller set and sign it
        sigs_b[cid] = r.clients[cid].respond(ConsistencyRequest(3, SERVER_ID, cid, without_1).to_bytes()).signature
    # Neither set gathers the 6 signatures (a majority of 10) an honest client demands.
    for cid in group_a:
        with pytest.raises(ProtocolViolation, match="valid signatures"):
            r.clients[cid].respond(UnmaskRequest(3, SERVER_ID, cid, full, sigs_a | sigs_b).to_bytes())
    for cid in group_b:
        with pytest.raises(ProtocolViolation, match="valid signatures"):
            r.clients[cid].respond(UnmaskRequest(3, SERVER_ID, cid, without_1, sigs_a | sigs_b).to_bytes())


def test_the_forged_dropout_attack_succeeds_against_semi_honest_secagg():
    """What the consistency check buys: without it the split gets both kinds of share of
    client 1, and the server unmasks its individual input."""
    config = SecAgg(threshold=4)
    r = Round(config, n=10)
    r.run_to("masked_input")
    masked = {}
    for cid, msg in r.server.messages_to_send().items():
        masked[cid] = r.clients[cid].respond(msg.to_bytes()).vector
    full = tuple(r.ids)
    without_1 = tuple(c for c in full if c != 1)
    seed_shares, key_shares = {}, {}
    params = config.parameters(r.ids)
    for cid in (2, 3, 4, 5):
        reply = r.clients[cid].respond(UnmaskRequest(3, SERVER_ID, cid, full, {}).to_bytes())
        seed_shares[params.x_coordinate(cid)] = int.from_bytes(reply.seed_shares[1], "big")
    for cid in (6, 7, 8, 9):
        reply = r.clients[cid].respond(UnmaskRequest(3, SERVER_ID, cid, without_1, {}).to_bytes())
        key_shares[params.x_coordinate(cid)] = int.from_bytes(reply.key_shares[1], "big")
    from secagg.prg import expand_mask
    from privagg.encoding import sub_mod

    y = masked[1].copy()
    sub_mod(y, expand_mask(reconstruct_secret(seed_shares, 4), y.shape[0], 32), 32)
    mask_key = kx.private_from_bytes(reconstruct_secret(key_shares, 4))
    keys = r.server._adverts
    for peer in r.ids[1:]:
        secret = kx.pair_secret(mask_key, kx.public_from_bytes(keys[peer][32:64], peer), peer)
        mask = expand_mask(kx.mask_seed(secret, r.server._header, 1, peer), y.shape[0], 32)
        sub_mod(y, mask, 32)  # client 1 has the smallest id: it added every pairwise mask
    assert np.array_equal(y, config.encoding.encode(r.updates[1]))


def test_replayed_messages_from_another_round_are_refused():
    r = Round(SecAgg(threshold=5))
    old = Round(SecAgg(threshold=5), round_id=2)
    stale = old.server.messages_to_send()[1]
    with pytest.raises(ProtocolViolation, match="round 2, this is round 3"):
        r.clients[1].respond(stale.to_bytes())
    r.run_to("share_keys")
    # A stage-0 message again, replayed within the round:
    with pytest.raises(ProtocolViolation, match="expected secagg.keys_broadcast"):
        r.clients[1].respond(r.outgoing[1].to_bytes())


def test_different_models_sent_to_different_clients_are_detected():
    digests = {i: bytes([1]) * 32 for i in range(1, 9)}
    digests[4] = bytes([2]) * 32  # the server gave client 4 a crafted model
    r = Round(SecAgg(security="active"), digests=digests)
    r.step()
    errors = r.deliver()
    # Client 4 finds no peer who signed for its model and refuses the round; the others refuse
    # client 4 alone (its signature is for another model): it never gets into the sum.
    assert set(errors) == {4} and "usable neighbours" in str(errors[4])
    r.server.deadline_passed()
    while not r.server.finished:
        assert r.step() == {}
    assert 4 not in r.server.result().included
    assert r.server.result().included == (1, 2, 3, 5, 6, 7, 8)


def test_the_same_attack_goes_unnoticed_without_active_security():
    digests = {i: bytes([1]) * 32 for i in range(1, 9)}
    digests[4] = bytes([2]) * 32
    r = Round(SecAgg(), digests=digests)
    while not r.server.finished:
        assert r.step() == {}
    assert r.server.result().included == tuple(range(1, 9))


def test_substituted_keys_are_detected_in_active_mode():
    r = Round(SecAgg(security="active"))
    r.step()

    def swap(cid, msg):
        keys = dict(msg.keys)
        peer = next(p for p in keys if p != cid)
        attacker = kx.public_bytes(kx.generate_key_pair())
        keys[peer] = attacker + keys[peer][32:]
        return dataclasses.replace(msg, keys=keys)

    swapped = {}

    def swap_and_note(cid, msg):
        tampered = swap(cid, msg)
        swapped[cid] = next(p for p in msg.keys if p != cid)
        return tampered

    assert r.deliver(tamper=swap_and_note) == {}
    # No share went to the substituted key: each client left out exactly the peer whose key
    # carried no valid signature, and the round goes on.
    shares = r.server._answers
    for cid, peer in swapped.items():
        assert peer not in shares[cid].shares and len(shares[cid].shares) == 6


def test_a_client_refuses_its_own_keys_replaced_or_a_lowered_threshold():
    r = Round(SecAgg(threshold=5))
    request = r.server.messages_to_send()[1]
    with pytest.raises(ProtocolViolation, match="threshold"):
        r.clients[1].respond(dataclasses.replace(request, threshold=2).to_bytes())
    r = Round(SecAgg(threshold=5))
    r.step()

    def replace_own(cid, msg):
        keys = dict(msg.keys)
        keys[cid] = kx.public_bytes(kx.generate_key_pair()) + keys[cid][32:]
        return dataclasses.replace(msg, keys=keys)

    errors = r.deliver(tamper=replace_own)
    assert all("own advertisement" in str(e) for e in errors.values()) and len(errors) == 8


def test_tampered_or_truncated_messages_are_refused():
    r = Round(SecAgg(threshold=5))
    r.run_to("masked_input")
    requests = r.server.messages_to_send()
    raw = requests[1].to_bytes()
    with pytest.raises(MalformedMessage):
        r.clients[1].respond(raw[: len(raw) // 2])
    with pytest.raises(MalformedMessage):
        r.clients[1].respond(b"\x00" * 64)
    shares = dict(requests[2].shares)
    sender = next(iter(shares))
    shares[sender] = shares[sender][:-1] + bytes([shares[sender][-1] ^ 1])
    with pytest.raises(ProtocolViolation, match="does not authenticate"):
        r.clients[2].respond(dataclasses.replace(requests[2], shares=shares).to_bytes())
    moved = dict(requests[3].shares)
    a, b = sorted(moved)[:2]
    moved[a], moved[b] = moved[b], moved[a]  # a share relabelled as another sender's
    with pytest.raises(ProtocolViolation, match="does not authenticate"):
        r.clients[3].respond(dataclasses.replace(requests[3], shares=moved).to_bytes())


def test_threshold_is_real_in_the_protocol():
    t = 4
    r = Round(SecAgg(threshold=t), n=8)
    r.run_to("unmasking")
    target = 1
    params = r.config.parameters(r.ids)
    held = {params.x_coordinate(cid): c._held[target][0] for cid, c in r.clients.items() if target in c._held}
    seed = r.clients[target]._self_seed
    xs = sorted(held)
    assert reconstruct_secret({x: held[x] for x in xs[:t]}, t) == seed
    # t - 1 colluders interpolate a polynomial of too low a degree: a wrong seed.
    assert reconstruct_secret({x: held[x] for x in xs[: t - 1]}, t - 1) != seed


def _secrets_of(clients):
    found = {}
    for cid, c in clients.items():
        found[f"cipher sk {cid}"] = kx.private_bytes(c._cipher_key)
        found[f"mask sk {cid}"] = kx.private_bytes(c._mask_key)
        found[f"self seed {cid}"] = c._self_seed
        for peer, key in c._share_keys.items():
            found[f"share key {cid}-{peer}"] = key
        for peer, (cipher_secret, mask_secret) in c._peer_secrets.items():
            found[f"cipher agreement {cid}-{peer}"] = cipher_secret
            found[f"mask agreement {cid}-{peer}"] = mask_secret
        for owner, (seed_share, key_share) in c._held.items():
            found[f"seed share {owner}@{cid}"] = share_to_bytes(seed_share)
            found[f"key share {owner}@{cid}"] = share_to_bytes(key_share)
    return found


def test_no_secret_in_reprs_logs_exceptions_or_the_server_view(caplog):
    caplog.set_level(logging.DEBUG)
    r = Round(SecAgg(threshold=5, security="active"))
    r.run_to("unmasking")
    secrets_ = _secrets_of(r.clients)
    texts = [repr(r.config), repr(r.server), repr(r.server.view)]
    texts += [repr(c) for c in r.clients.values()]
    texts += [repr(m) for m in r.server.view.messages()]
    try:
        r.clients[1].respond(b"garbage")
    except MalformedMessage as exc:
        texts.append(str(exc))
    r.step(skip={8})
    view_bytes = r.server.result().view.to_bytes()
    texts.append(caplog.text)
    revealed = {share_to_bytes(int.from_bytes(s, "big")) for m in r.server.view.messages("unmasking")
                for s in list(m.seed_shares.values()) + list(m.key_shares.values())}
    for name, value in secrets_.items():
        if value in revealed:
            continue  # a share the protocol hands to the server at unmasking, by design
        assert value not in view_bytes, name
        for text in texts:
            assert value.hex() not in text and str(int.from_bytes(value, "big")) not in text, name
    for obj in (r.clients[1], r.config.identities):
        with pytest.raises(TypeError, match="pickle"):
            pickle.dumps(obj)


def test_masked_vectors_look_uniform():
    config = SecAgg(threshold=3)
    updates = {i: np.zeros(20_000) for i in range(4)}  # all-zero inputs: the worst case
    result = simulate(config, updates)
    for vector in (m.vector for m in result.view.messages("masked_input")):
        counts = np.bincount(vector.view(np.uint8), minlength=256)
        assert chisquare(counts).pvalue > 1e-4
    # The same test does fail on an unmasked encoding of the same inputs.
    plain = config.encoding.encode(np.zeros(20_000))
    assert chisquare(np.bincount(plain.view(np.uint8), minlength=256)).pvalue < 1e-10
