"""Hostile inputs against CKKS parties: malformed and forged ciphertexts, replayed and
undersized decryption requests, and what each adversary can actually compute from a view."""

import json
import struct
import subprocess
import sys
import textwrap
import zlib

import numpy as np
import pytest

pytest.importorskip("tenseal")

from he import CKKS, DECRYPTOR_ID, CKKSParameters, Decryptor, DecryptorKeys, SharedKey  # noqa: E402
from he.config import COLLECT  # noqa: E402
from he.messages import Ciphertexts, DecryptRequest, EncryptRequest  # noqa: E402
from he.ring import Ring  # noqa: E402
from privagg import (  # noqa: E402
    HONEST_BUT_CURIOUS,
    OUTSIDER,
    MalformedMessage,
    ProtocolViolation,
    ServerView,
    colluding,
    simulate,
)
from privagg.messages import SERVER_ID  # noqa: E402

HEADER = 35  # privagg's message header


def reframe(data: bytes) -> bytes:
    """Recompute the transport checksum, so only the content is wrong."""
    return data[:-4] + struct.pack("<I", zlib.crc32(data[:-4]))


def first_blob_offset(message_bytes: bytes) -> int:
    """Offset of the first ciphertext's SEAL header in a Ciphertexts message."""
    return HEADER + 4 + 16 + 8 + 4 + 8 + 4  # key_id (length + 16), n_values, count, position, length


@pytest.fixture(scope="module")
def lean():
    """Unauthenticated: these tests reach the layers beneath the signatures (SEAL loading, the
    bound check, rollback); tests/test_he_binding.py attacks the signed rounds."""
    return CKKS(shared_key=SharedKey.generate(CKKSParameters.from_preset("lean")), min_clients=1,
                authenticated=False)


def upload(agg, cid, values, round_id=0):
    client = agg.client(cid, values, round_id=round_id)
    return client.respond(EncryptRequest(round_id, SERVER_ID, cid, agg.params.digest, client.key_id, b""))


@pytest.mark.parametrize("mutate, error, fragment", [
    (lambda b, o: b[:o] + b"\x00\x00" + b[o + 2:], MalformedMessage, "not a SEAL serialization"),
    (lambda b, o: b[:o + 3] + b"\x03" + b[o + 4:], MalformedMessage, "SEAL 3.x"),
    (lambda b, o: b[:o + 5] + b"\x07" + b[o + 6:], MalformedMessage, "unknown compression"),
    (lambda b, o: b[:o + 8] + struct.pack("<Q", 10**12) + b[o + 16:], MalformedMessage, "declares"),
    (lambda b, o: b[:o + 16] + b"\x00\x00\x00\x00" + b[o + 20:], MalformedMessage, "not a zstd frame"),
    (lambda b, o: b[:o + 40] + bytes(5000) + b[o + 5040:], MalformedMessage, "does not load"),
    (lambda b, o: b[:o - 4] + struct.pack("<I", 2**31) + b[o:], MalformedMessage, "at most|above the limit"),
    (lambda b, o: b[:-200], MalformedMessage, "truncated|length mismatch|checksum"),
])
def test_malformed_ciphertext_bytes_give_malformed_message_and_change_nothing(lean, mutate, error, fragment):
    good = upload(lean, 1, np.full(10, 0.5)).to_bytes()
    offset = first_blob_offset(good)
    assert good[offset:offset + 2] == b"\x5e\xa1"
    bad = mutate(good, offset)
    bad = reframe(bad) if len(bad) == len(good) else bad
    server = lean.server([1, 2])
    with pytest.raises(error, match=fragment):
        server.receive(1, bad)
    server.receive(1, good)  # the refused bytes left no trace
    server.receive(2, upload(lean, 2, np.full(10, 0.25)).to_bytes())
    server.deadline_passed()
    request = server.messages_to_send()[1]
    decrypting = lean.client(1, np.full(10, 0.5))
    decrypting.respond(EncryptRequest(0, SERVER_ID, 1, lean.params.digest, lean.shared_key.key_id, b""))
    server.receive(1, decrypting.respond(request.to_bytes()).to_bytes())
    server.deadline_passed()
    assert np.allclose(server.result().aggregate, 0.75, atol=1e-5)


def test_well_formed_uploads_the_round_cannot_use_are_refused(lean):
    server = lean.server([1, 2, 3], round_id=0)
    good = upload(lean, 1, np.zeros(5000))
    other_params = CKKS(preset="standard", shared_key=SharedKey.generate(CKKSParameters.from_preset("standard")))
    foreign = upload(other_params, 1, np.zeros(5000))
    with pytest.raises(MalformedMessage, match="does not load|exceeds"):
        twice = {0: foreign.ciphertexts[0], 1: foreign.ciphertexts[0]}
        server.receive(1, Ciphertexts(0, 1, SERVER_ID, good.key_id, 5000, twice, b"").to_bytes())
    rescaled = CKKS(shared_key=lean.shared_key, scale_bits=40, min_clients=1)
    odd_scale = upload(rescaled, 1, np.zeros(5000))
    with pytest.raises(ProtocolViolation, match="scale 2\\^40.000, the round uses 2\\^48"):
        server.receive(1, Ciphertexts(0, 1, SERVER_ID, good.key_id, 5000, odd_scale.ciphertexts, b"").to_bytes())
    with pytest.raises(ProtocolViolation, match="sent 1 ciphertexts .*expected positions 0..1"):
        server.receive(1, Ciphertexts(0, 1, SERVER_ID, good.key_id, 5000, {0: good.ciphertexts[0]}, b"").to_bytes())
    with pytest.raises(ProtocolViolation, match="expected positions 0..1"):
        server.receive(1, Ciphertexts(0, 1, SERVER_ID, good.key_id, 5000,
                                      {0: good.ciphertexts[0], 7: good.ciphertexts[1]}, b"").to_bytes())
    server.receive(1, good.to_bytes())
    with pytest.raises(ProtocolViolation, match="sent 4096 values, the others 5000"):
        server.receive(2, Ciphertexts(0, 2, SERVER_ID, good.key_id, 4096, {0: good.ciphertexts[0]}, b"").to_bytes())
    with pytest.raises(ProtocolViolation, match="encrypted under key"):
        other_key = CKKS(shared_key=SharedKey.generate(lean.params))
        server.receive(2, upload(other_key, 2, np.zeros(5000)).to_bytes())
    with pytest.raises(ProtocolViolation, match="already answered"):
        server.receive(1, good.to_bytes())


def test_random_corruption_never_crashes_the_process():
    """SEAL's loaders are C++: run the fuzzing in a child, so an abort fails this test instead
    of killing the test run."""
    script = textwrap.dedent("""
        import json, struct, zlib, numpy as np
        from he import CKKS
        from he.messages import EncryptRequest
        from privagg import MalformedMessage, ProtocolViolation
        from privagg.messages import SERVER_ID
        from he import SharedKey, CKKSParameters
        agg = CKKS(min_clients=1, shared_key=SharedKey.generate(CKKSParameters.from_preset("lean")),
                   authenticated=False)  # the SEAL layer; signed uploads refuse any flipped bit
        client = agg.client(1, np.random.default_rng(0).uniform(-1, 1, 5000))
        good = client.respond(EncryptRequest(0, SERVER_ID, 1, agg.params.digest, client.key_id, b"")).to_bytes()
        rng = np.random.default_rng(7)
        outcomes = {}
        server = agg.server([1])
        for trial in range(300):
            data = bytearray(good)
            if trial % 3 == 0:
                for _ in range(rng.integers(1, 8)):
                    i = int(rng.integers(35, len(data) - 4)); data[i] ^= 1 << int(rng.integers(0, 8))
            elif trial % 3 == 1:
                i = int(rng.integers(80, len(data) - 200)); data[i:i + 64] = rng.bytes(64)
            else:
                i = int(rng.integers(60, 140)); data[i] = int(rng.integers(0, 256))
            data = bytes(data[:-4]) + struct.pack("<I", zlib.crc32(bytes(data[:-4])))
            try:
                server.receive(1, data)
                kind = "accepted"
                server = agg.server([1])
            except (MalformedMessage, ProtocolViolation) as exc:
                kind = type(exc).__name__
            outcomes[kind] = outcomes.get(kind, 0) + 1
        print(json.dumps(outcomes))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    outcomes = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(outcomes) <= {"MalformedMessage", "ProtocolViolation", "accepted"}
    assert outcomes.get("MalformedMessage", 0) > 50
    # Flipped bits inside a valid compressed body can still decode: the server cannot tell a
    # corrupted ciphertext from an honest one (the key holder's bound check can, see below).


def decrypt_request(agg, contributors, blobs, n_values, round_id=0, recipient=DECRYPTOR_ID):
    return DecryptRequest(round_id, SERVER_ID, recipient, agg.params.digest, agg.expected_key_id(),
                          tuple(contributors), n_values, dict(enumerate(blobs)) if isinstance(blobs, list) else blobs,
                          {})


def aggregate_of(agg, values_by_client, round_id=0):
    """The aggregate ciphertexts a server would present, computed as the server does."""
    server = agg.server(sorted(values_by_client), round_id=round_id)
    for cid, msg in server.messages_to_send().items():
        client = agg.client(cid, values_by_client[cid], round_id=round_id)
        server.receive(cid, client.respond(msg.to_bytes()))
    server.deadline_passed()
    return server._request.ciphertexts


def test_the_decryptor_refuses_too_few_contributors_and_a_second_request():
    params = CKKSParameters.from_preset("lean", key_holder="decryptor")
    decryptor = Decryptor(params, DecryptorKeys.generate(params), min_clients=3)  # long-term keys
    agg = CKKS(key_holder="decryptor", decryptor=decryptor, min_clients=1)
    values = {1: np.full(8, 0.5), 2: np.full(8, 0.25), 3: np.full(8, -0.5)}
    blobs = aggregate_of(agg, values, round_id=7)
    with pytest.raises(ProtocolViolation, match="2 contributors is refused; the decryptor needs at least 3"):
        decryptor.respond(decrypt_request(agg, [1, 2], blobs, 8, round_id=7).to_bytes())
    assert decryptor.released_rounds == set()  # a refused request does not use the round up
    reply = decryptor.respond(decrypt_request(agg, [1, 2, 3], blobs, 8, round_id=7).to_bytes())
    assert np.allclose(reply.vector, 0.25, atol=1e-5) and reply.sender == DECRYPTOR_ID
    with pytest.raises(ProtocolViolation, match="round 7 was already decrypted once"):
        decryptor.respond(decrypt_request(agg, [1, 2, 3], blobs, 8, round_id=7).to_bytes())
    with pytest.raises(ProtocolViolation, match="addressed to 5"):
        decryptor.respond(decrypt_request(agg, [1, 2, 3], blobs, 8, round_id=8, recipient=5).to_bytes())
    other = CKKS(key_holder="decryptor", min_clients=1)
    with pytest.raises(ProtocolViolation, match="another key"):
        decryptor.respond(decrypt_request(other, [1, 2, 3], blobs, 8, round_id=9).to_bytes())
    with pytest.raises(ProtocolViolation, match="only answers he.decrypt_request"):
        decryptor.respond(EncryptRequest(9, SERVER_ID, DECRYPTOR_ID, params.digest, decryptor.key_id, b"").to_bytes())


def test_a_key_holding_client_decrypts_once_and_only_after_contributing(lean):
    blobs = aggregate_of(lean, {1: np.full(8, 0.5), 2: np.full(8, 0.5)}, round_id=3)
    request = decrypt_request(lean, [1, 2], blobs, 8, round_id=3, recipient=1)
    client = lean.client(1, np.full(8, 0.5), round_id=3)
    with pytest.raises(ProtocolViolation, match="before it contributed"):
        client.respond(request.to_bytes())
    client.respond(EncryptRequest(3, SERVER_ID, 1, lean.params.digest, lean.shared_key.key_id, b""))
    strict = CKKS(shared_key=lean.shared_key, min_clients=3)
    strict_client = strict.client(1, np.zeros(8), round_id=3)
    strict_client.respond(EncryptRequest(3, SERVER_ID, 1, strict.params.digest, lean.shared_key.key_id, b""))
    with pytest.raises(ProtocolViolation, match="2 contributors is refused"):
        strict_client.respond(request.to_bytes())
    assert np.allclose(client.respond(request.to_bytes()).vector, 1.0, atol=1e-5)
    with pytest.raises(ProtocolViolation, match="already decrypted round 3 once"):
        client.respond(request.to_bytes())


def test_a_forged_aggregate_is_not_released():
    """An aggregate that is not a sum of clipped updates (a client escaping its clip, or a
    server presenting something else) fails the key holder's bound check; nothing leaves."""
    params = CKKSParameters.from_preset("lean", key_holder="decryptor")
    decryptor = Decryptor(params, DecryptorKeys.generate(params), min_clients=2)  # long-term keys
    agg = CKKS(key_holder="decryptor", decryptor=decryptor)
    ring = Ring(params)
    (plaintext,) = ring.encode(np.full(16, 40.0))  # far beyond n * clip for 2 clients
    import tenseal.sealapi as seal

    ciphertext = seal.Ciphertext()
    decryptor.public_key.encryptor().encrypt(plaintext, ciphertext)
    with pytest.raises(ProtocolViolation, match="not a sum of well-formed updates; nothing is released"):
        decryptor.respond(decrypt_request(agg, [1, 2], [ring.dump(ciphertext)], 16, round_id=1))
    with pytest.raises(ProtocolViolation, match="already decrypted"):  # a failed attempt used the round up
        decryptor.respond(decrypt_request(agg, [1, 2], [ring.dump(ciphertext)], 16, round_id=1))


def test_what_each_adversary_learns():
    rng = np.random.default_rng(5)
    updates = {i: rng.uniform(-1, 1, 300) for i in range(5)}
    for key_holder in ("clients", "decryptor"):
        agg = CKKS(key_holder=key_holder)
        result = simulate(agg, updates, dropouts={4: COLLECT})
        view = ServerView.from_bytes(result.view.to_bytes())  # what an auditor stores
        outsider = agg.disclose(view, OUTSIDER)
        assert outsider.individual == {} and np.array_equal(outsider.partial_sums[0].total, result.aggregate)
        curious = agg.disclose(view, HONEST_BUT_CURIOUS)
        assert curious.individual == {} and "only as CKKS ciphertexts" in curious.summary
        with_client = agg.disclose(view, colluding([0], {0: updates[0]}))
        if key_holder == "clients":  # the colluder holds the shared key: every upload decrypts
            assert sorted(with_client.individual) == [0, 1, 2, 3]
            for cid, values in with_client.individual.items():
                assert np.max(np.abs(values - updates[cid])) < 1e-9
        else:  # the colluder holds only the public key: the honest sum, no honest individual
            assert sorted(with_client.individual) == [0]
            honest = with_client.partial_sums[1]
            assert honest.client_ids == (1, 2, 3)
            assert np.max(np.abs(honest.total - sum(updates[c] for c in (1, 2, 3)))) < 1e-5
            with_decryptor = agg.disclose(view, colluding([DECRYPTOR_ID]))
            assert sorted(with_decryptor.individual) == [0, 1, 2, 3]
            assert np.max(np.abs(with_decryptor.individual[2] - updates[2])) < 1e-6
    lean_only_sizes = CKKS(keep_ciphertexts=False)
    result = simulate(lean_only_sizes, updates)
    told = lean_only_sizes.disclose(result.view, colluding([1]))
    assert told.individual == {} and "kept only sizes" in told.summary


def test_an_upload_refused_halfway_is_rolled_back_bit_for_bit(lean):
    x1, x2 = np.full(5000, 0.5), np.full(5000, -0.25)
    up1, up2 = upload(lean, 1, x1), upload(lean, 2, x2)
    rescaled = upload(CKKS(shared_key=lean.shared_key, scale_bits=40, min_clients=1), 2, x2)
    mixed = Ciphertexts(0, 2, SERVER_ID, up2.key_id, 5000, {0: up2.ciphertexts[0], 1: rescaled.ciphertexts[1]}, b"")
    aggregates = []
    for attempt_mixed_first in (True, False):
        server = lean.server([1, 2])
        server.receive(1, up1.to_bytes())
        if attempt_mixed_first:
            with pytest.raises(ProtocolViolation, match="ciphertext 1 has scale"):
                server.receive(2, mixed.to_bytes())  # ciphertext 0 was added before 1 was refused
        server.receive(2, up2.to_bytes())
        server.deadline_passed()
        aggregates.append(server._request.ciphertexts)
    assert aggregates[0] == aggregates[1]  # the same bytes: the refused half left no trace
