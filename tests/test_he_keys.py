"""Key roles: the server's context cannot decrypt, seeded ciphertexts round-trip, keys travel
only on purpose, and no secret shows up in a repr, a log, an exception, a pickle or the view."""

import copy
import logging
import pickle

import numpy as np
import pytest

pytest.importorskip("tenseal")

import tenseal.sealapi as seal  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey  # noqa: E402

from he import (  # noqa: E402
    CKKS,
    CKKSParameters,
    Decryptor,
    DecryptorKeys,
    KeyRoleError,
    PublicKey,
    SharedKey,
    unwrap_shared_key,
    wrap_shared_key,
)
from he.distribution import _signed_payload  # noqa: E402
from he.keys import SecretHolder  # noqa: E402
from he.transcript import advert_payload, deal_context  # noqa: E402
from privagg.identity import Identities, SigningKey  # noqa: E402
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat  # noqa: E402
from he.memfile import MemoryFile  # noqa: E402
from he.messages import Ciphertexts, EncryptRequest, KeyAdvertisement  # noqa: E402
from he.release import decrypt_values  # noqa: E402
from he.ring import Ring  # noqa: E402
from privagg import ConfigurationError, MalformedMessage, ProtocolViolation, simulate  # noqa: E402
from privagg.messages import SERVER_ID, parse_message  # noqa: E402

LEAN = CKKSParameters.from_preset("lean")


def secret_words(key):
    """The secret key's raw 64-bit words (NTT form), read from SEAL."""
    data = key._secret_key.data()
    return [int(data.data(i)).to_bytes(8, "little") for i in range(0, data.coeff_count(), 97)]


def upload(agg, cid, values, round_id=0):
    client = agg.client(cid, values, round_id=round_id)
    request = EncryptRequest(round_id, SERVER_ID, cid, agg.params.digest, client.key_id, b"")
    return client.respond(request.to_bytes())


def test_the_server_side_context_cannot_decrypt():
    agg = CKKS(shared_key=SharedKey.generate(LEAN))
    x = np.random.default_rng(0).uniform(-1, 1, 3000)
    msg = upload(agg, 1, x)
    server = agg.server([1, 2])
    # Everything the server holds: the public parameters and SEAL objects built from them.
    held = [server._ring, server._ring.context, server._ring.encoder, server._ring.evaluator]
    assert not any(isinstance(v, (SecretHolder, SharedKey)) for v in vars(server).values())
    assert not any(isinstance(v, (seal.SecretKey, seal.PublicKey)) for obj in held
                   for v in (vars(obj).values() if hasattr(obj, "__dict__") else ()))
    # Serialize it, load it elsewhere, and try: the best key it can make decrypts garbage.
    exported = server._ring.export_parameters()
    assert len(exported) < 100  # parameters only: a secret or public key is tens of kilobytes
    parms = seal.EncryptionParameters(seal.SCHEME_TYPE.CKKS)
    memory = MemoryFile()
    memory.feed(exported, parms.load)
    context = seal.SEALContext(parms, True, seal.SEC_LEVEL_TYPE.TC128)
    assert context.parameters_set()
    ring = Ring(LEAN)
    loaded = [ring.load_ciphertext(b, seeded=True, what="upload") for b in msg.ciphertexts.values()]
    own_key = seal.KeyGenerator(context).secret_key()
    guess = decrypt_values(ring, seal.Decryptor(context, own_key), loaded)[: x.size]
    assert np.max(np.abs(guess - x)) > 100  # not even close
    right = decrypt_values(ring, agg.shared_key.decryptor(), loaded)[: x.size]
    assert np.max(np.abs(right - x)) < 1e-9  # the clients' key does decrypt it


def test_seeded_ciphertexts_round_trip_and_decrypt_at_half_the_size():
    key = SharedKey.generate(LEAN)
    agg = CKKS(shared_key=key)
    x = np.random.default_rng(1).uniform(-1, 1, 2 * LEAN.values_per_ciphertext)
    msg = upload(agg, 7, x, round_id=5)
    parsed = parse_message(msg.to_bytes())
    assert isinstance(parsed, Ciphertexts) and parsed == msg and parsed.n_values == x.size
    ring = Ring(LEAN)
    loaded = [ring.load_ciphertext(b, seeded=True, what="upload") for b in parsed.ciphertexts.values()]
    assert np.max(np.abs(decrypt_values(ring, key.decryptor(), loaded) - x)) < 1e-9
    full = ring.dump(loaded[0])  # the same ciphertext with its second polynomial expanded
    assert len(parsed.ciphertexts[0]) < 0.51 * len(full)
    assert len(parsed.ciphertexts[0]) / LEAN.values_per_ciphertext < 8.1


def test_keys_export_import_and_wrap_for_another_client():
    key = SharedKey.generate(LEAN)
    again = SharedKey.import_secret(LEAN, key.export_secret())
    assert again.key_id == key.key_id
    x = np.random.default_rng(2).uniform(-1, 1, 100)
    msg = upload(CKKS(shared_key=again), 1, x)
    ring = Ring(LEAN)
    ct = [ring.load_ciphertext(b, seeded=True, what="upload") for b in msg.ciphertexts.values()]
    assert np.max(np.abs(decrypt_values(ring, key.decryptor(), ct)[:100] - x)) < 1e-9

    alice, mallory = X25519PrivateKey.generate(), X25519PrivateKey.generate()
    ids = Identities([1, 2])
    roster = ids.roster()
    package = wrap_shared_key(key, alice.public_key(), ids.signing_key(1), sender_id=1)
    assert unwrap_shared_key(LEAN, package, alice, roster=roster, dealer=1).key_id == key.key_id
    with pytest.raises(ProtocolViolation, match="no valid signature"):  # signed for alice's key only
        unwrap_shared_key(LEAN, package, mallory, roster=roster)
    tampered = bytearray(package)
    tampered[-1] ^= 1
    with pytest.raises(ProtocolViolation, match="no valid signature"):
        unwrap_shared_key(LEAN, bytes(tampered), alice, roster=roster)
    with pytest.raises(MalformedMessage):
        unwrap_shared_key(CKKSParameters.from_preset("standard"), package, alice, roster=roster)
    # The relaying server's own package: unsigned, or signed by a non-member, or by another member.
    with pytest.raises(ProtocolViolation, match="not signed"):
        unwrap_shared_key(LEAN, wrap_shared_key(key, alice.public_key(), authenticated=False), alice, roster=roster)
    with pytest.raises(ProtocolViolation, match="no valid signature of client 9"):
        unwrap_shared_key(LEAN, wrap_shared_key(key, alice.public_key(), SigningKey.generate(), sender_id=9), alice,
                          roster=roster)
    with pytest.raises(ProtocolViolation, match="not the agreed dealer 1"):
        unwrap_shared_key(LEAN, wrap_shared_key(key, alice.public_key(), ids.signing_key(2), sender_id=2), alice,
                          roster=roster, dealer=1)
    with pytest.raises(ConfigurationError, match="roster"):
        unwrap_shared_key(LEAN, package, alice)
    with pytest.raises(ConfigurationError, match="signing_key"):
        wrap_shared_key(key, alice.public_key())
    unsigned = wrap_shared_key(key, alice.public_key(), authenticated=False)  # an authentic channel already
    assert unwrap_shared_key(LEAN, unsigned, alice, authenticated=False).key_id == key.key_id
    with pytest.raises(MalformedMessage, match="does not open"):
        unwrap_shared_key(LEAN, unsigned, mallory, authenticated=False)

    pair = DecryptorKeys.generate(LEAN.__class__.from_preset("lean", key_holder="decryptor"))
    params = CKKSParameters.from_preset("lean", key_holder="decryptor")
    assert DecryptorKeys.import_secret(params, pair.export_secret()).key_id == pair.key_id
    public = PublicKey.from_bytes(params, pair.public_key.to_bytes())
    assert public.key_id == pair.key_id
    with pytest.raises(ConfigurationError, match="another ring"):
        SharedKey.import_secret(CKKSParameters.from_preset("standard"), key.export_secret())


@pytest.mark.parametrize("garbage", [b"", b"PAHK", b"PAHK" + bytes(60), b"\x00" * 200])
def test_key_imports_refuse_garbage_with_a_typed_error(garbage):
    with pytest.raises(MalformedMessage):
        SharedKey.import_secret(LEAN, garbage)
    with pytest.raises(MalformedMessage):
        PublicKey.from_bytes(LEAN, garbage)


def test_objects_holding_a_secret_key_refuse_pickle_and_copy():
    params = CKKSParameters.from_preset("lean", key_holder="decryptor")
    holders = [SharedKey.generate(LEAN), DecryptorKeys.generate(params), Decryptor(params),
               CKKS(shared_key=SharedKey.generate(LEAN))]
    for obj in holders:
        with pytest.raises(KeyRoleError, match="cannot be pickled"):
            pickle.dumps(obj)
        with pytest.raises(KeyRoleError):
            copy.deepcopy(obj)
    with pytest.raises(KeyRoleError):
        copy.copy(holders[0])
    with pytest.raises(KeyRoleError):
        SharedKey(LEAN, None, bytes(16))  # only generate() and import_secret() make one
    # The public half pickles fine: it is meant to travel.
    assert pickle.loads(pickle.dumps(holders[1].public_key.to_bytes())) == holders[1].public_key.to_bytes()


def test_a_decryptor_mode_client_cannot_decrypt():
    from he.messages import DecryptRequest

    params = CKKSParameters.from_preset("lean", key_holder="decryptor")
    agg = CKKS(key_holder="decryptor", decryptor=Decryptor(params, DecryptorKeys.generate(params)))
    client = agg.client(1, np.zeros(10))
    client.respond(EncryptRequest(0, SERVER_ID, 1, agg.params.digest, client.key_id, b""))
    request = DecryptRequest(0, SERVER_ID, 1, agg.params.digest, client.key_id, (1, 2), 10,
                             upload(CKKS(shared_key=SharedKey.generate(LEAN)), 1, np.zeros(10)).ciphertexts, {})
    with pytest.raises(KeyRoleError, match="only the decryptor's public key"):
        client.respond(request.to_bytes())


def test_no_secret_in_any_repr_log_exception_or_server_view(caplog):
    caplog.set_level(logging.DEBUG)
    setups = {"in-round key": CKKS(), "provisioned key": CKKS(shared_key=SharedKey.generate(LEAN)),
              "decryptor": CKKS(key_holder="decryptor")}
    for name, agg in setups.items():
        updates = {i: np.random.default_rng(i).uniform(-1, 1, 500) for i in range(4)}
        result = simulate(agg, updates, dropouts={3: "collect_ciphertexts"}, round_id=6)
        holder = agg.decryptor.audit_keys(6) if agg.key_holder == "decryptor" else agg.round_key(6)
        words = secret_words(holder)
        export = holder.export_secret()
        texts = [repr(agg), repr(holder), repr(result), repr(result.view), caplog.text]
        texts += [repr(m) for m in result.view.messages()]
        texts += [repr(agg.client(9, np.zeros(3)))]
        errors = []
        try:  # exceptions on paths that handle the key
            agg.client(1, np.zeros(3)).respond(b"garbage")
        except MalformedMessage as exc:
            errors.append(str(exc))
        try:
            agg.server([1, 2]).receive(1, result.view.by_sender("collect_ciphertexts")[0].to_bytes())
        except ProtocolViolation as exc:
            errors.append(str(exc))
        assert len(errors) == 2, name
        blob = "\n".join(texts + errors)
        assert export.hex()[16:80] not in blob
        assert not any(w.hex() in blob for w in words)
        view_bytes = result.view.to_bytes()
        assert all(w not in view_bytes for w in words), name
        assert export[-64:] not in view_bytes
        kinds = {type(m).__name__ for m in result.view.messages()}
        expected = {"Ciphertexts", "DecryptedAggregate"}
        if name == "in-round key":  # X25519 public keys and key packages only the clients can open
            expected |= {"KeyAdvertisement", "DealtKeys"}
        assert kinds == expected, name


# Small-order X25519 points (u-coordinates, little-endian): any agreement with them is all zeros.
_P25519 = 2**255 - 19
SMALL_ORDER = {"zero": 0, "one": 1, "p-1": _P25519 - 1,
               "order-8": 325606250916557431795983626356110631294008115727848805560023387167927233504}


@pytest.mark.parametrize("point", sorted(SMALL_ORDER))
def test_a_small_order_x25519_key_is_refused_typed_when_wrapping_and_unwrapping(point):
    raw = SMALL_ORDER[point].to_bytes(32, "little")
    key = SharedKey.generate(LEAN)
    with pytest.raises(ProtocolViolation, match="small-order X25519"):
        wrap_shared_key(key, X25519PublicKey.from_public_bytes(raw), authenticated=False)
    alice = X25519PrivateKey.generate()
    package = bytearray(wrap_shared_key(key, alice.public_key(), authenticated=False))
    package[5:37] = raw  # the ephemeral key's place in the package head
    with pytest.raises(ProtocolViolation, match="small-order X25519"):
        unwrap_shared_key(LEAN, bytes(package), alice, authenticated=False)


@pytest.mark.parametrize("point", ["zero", "one"])
def test_a_small_order_x25519_key_in_an_in_round_setup_is_refused_typed(point):
    """A client (or a server substituting keys) advertises the all-zero point: the dealer refuses
    to deal with a typed error; a dealer's package with it is refused by its recipient."""
    raw = SMALL_ORDER[point].to_bytes(32, "little")
    agg = CKKS()
    server = agg.server([1, 2, 3], round_id=4)
    clients = {cid: agg.client(cid, np.zeros(10), round_id=4) for cid in (1, 2, 3)}
    for cid, request in server.messages_to_send().items():
        advertisement = clients[cid].respond(request.to_bytes())
        if cid == 3:  # a malicious client signs the point itself
            advertisement = KeyAdvertisement(4, 3, SERVER_ID, raw, agg.identities.signing_key(3).sign(
                advert_payload(agg.params.digest, 4, 3, raw)))
        server.receive(cid, advertisement.to_bytes())
    server.deadline_passed()
    ((dealer, deal),) = server.messages_to_send().items()
    with pytest.raises(ProtocolViolation, match="small-order X25519"):
        clients[dealer].respond(deal.to_bytes())
    recipient = 2 if dealer != 2 else 1
    key = SharedKey.generate(LEAN)
    target = clients[recipient]._agreement.public_key()
    context = deal_context(LEAN.digest, 4, recipient)
    body = bytearray(wrap_shared_key(key, target, agg.identities.signing_key(dealer), sender_id=dealer,
                                     context=context)[:-64])
    body[5:37] = raw  # a malicious dealer signs a package with the point as its ephemeral key
    package = bytes(body) + agg.identities.signing_key(dealer).sign(
        _signed_payload(bytes(body), target.public_bytes(Encoding.Raw, PublicFormat.Raw), context))
    request = EncryptRequest(4, SERVER_ID, recipient, LEAN.digest, key.key_id, package)
    with pytest.raises(ProtocolViolation, match="small-order X25519"):
        clients[recipient].respond(request.to_bytes())
