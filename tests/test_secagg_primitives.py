import os
import secrets

import numpy as np
import pytest
from Crypto.Util.number import isPrime
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given
from hypothesis import strategies as st

from privagg import ConfigurationError, InsecureParameters, ProtocolViolation
from secagg import keys as kx
from secagg.graph import check_threshold, default_neighbours, default_threshold, effective_neighbours, neighbour_graph
from secagg.prg import expand_mask
from secagg.shamir import PRIME, reconstruct_secret, share_from_bytes, share_to_bytes, split_secret


def test_the_field_prime_is_prime_and_holds_every_32_byte_secret():
    assert isPrime(PRIME, false_positive_prob=1e-30)
    assert PRIME > 2**256
    assert all(not isPrime(c) for c in range(2**256 + 1, PRIME, 2))  # and it is the smallest such


@given(st.binary(min_size=32, max_size=32), st.integers(2, 12), st.data())
def test_any_threshold_shares_rebuild_the_secret(secret, n, data):
    t = data.draw(st.integers(1, n))
    xs = data.draw(st.lists(st.integers(1, 10**6), min_size=n, max_size=n, unique=True))
    shares = split_secret(secret, xs, t)
    subset = data.draw(st.lists(st.sampled_from(xs), min_size=t, max_size=n, unique=True))
    assert reconstruct_secret({x: shares[x] for x in subset}, t) == secret
    assert all(share_from_bytes(share_to_bytes(v)) == v for v in shares.values())


def test_fewer_than_threshold_shares_cannot_be_used():
    shares = split_secret(secrets.token_bytes(32), [1, 2, 3, 4, 5], 4)
    with pytest.raises(ConfigurationError, match="3 shares cannot rebuild a 4-of-n"):
        reconstruct_secret({x: shares[x] for x in (1, 2, 3)}, 4)


def test_shares_of_two_different_secrets_are_equally_likely():
    # A single share is a uniform field element whatever the secret (threshold >= 2).
    ones = [split_secret(b"\xff" * 32, [1, 2], 2)[1] >> 250 for _ in range(400)]
    zeros = [split_secret(b"\x00" * 32, [1, 2], 2)[1] >> 250 for _ in range(400)]
    assert abs(np.mean(ones) - np.mean(zeros)) < 6  # top 7 bits: mean ~32, sd of the mean ~0.9


def test_bad_shares_are_refused():
    with pytest.raises(ValueError):
        share_from_bytes(b"\x00" * 32)
    with pytest.raises(ValueError):
        share_from_bytes((PRIME + 1).to_bytes(33, "big"))
    with pytest.raises(ConfigurationError):
        split_secret(b"short", [1, 2], 2)
    with pytest.raises(ConfigurationError):
        split_secret(bytes(32), [1, 1], 2)
    with pytest.raises(ConfigurationError):
        split_secret(bytes(32), [1, 2], 3)


@pytest.mark.parametrize("bits", [8, 20, 32, 33, 64])
def test_masks_are_the_aes_ctr_keystream(bits):
    seed = os.urandom(32)
    mask = expand_mask(seed, 1000, bits)
    width = 4 if bits <= 32 else 8
    stream = Cipher(algorithms.AES(seed), modes.CTR(bytes(16))).encryptor().update(bytes(1000 * width))
    words = np.frombuffer(stream, dtype=f"<u{width}").astype(np.uint64)
    assert np.array_equal(mask.astype(np.uint64), words & np.uint64((1 << bits) - 1 if bits < 64 else 2**64 - 1))


def test_long_masks_span_several_keystream_chunks():
    seed = os.urandom(32)
    n = (1 << 20) // 4 * 3 + 5  # three 1 MiB chunks and a tail
    stream = Cipher(algorithms.AES(seed), modes.CTR(bytes(16))).encryptor().update(bytes(4 * n))
    assert np.array_equal(expand_mask(seed, n, 32), np.frombuffer(stream, "<u4"))


# Two sessions' header digests (any 32 bytes: what matters is that they differ).
S7, S8 = bytes(31) + b"\x07", bytes(31) + b"\x08"


def test_pairwise_derivations_agree_on_both_sides_and_differ_by_purpose_and_round():
    a, b = kx.generate_key_pair(), kx.generate_key_pair()
    s_ab = kx.pair_secret(a, b.public_key(), 2)
    s_ba = kx.pair_secret(b, a.public_key(), 1)
    assert s_ab == s_ba
    assert kx.mask_seed(s_ab, S7, 1, 2) == kx.mask_seed(s_ba, S7, 2, 1)
    assert kx.mask_seed(s_ab, S7, 1, 2) != kx.mask_seed(s_ab, S8, 1, 2)
    assert kx.mask_seed(s_ab, S7, 1, 2) != kx.share_key(s_ab, S7, 1, 2)


def test_share_encryption_is_bound_to_round_sender_and_recipient():
    key = os.urandom(32)
    ct = kx.encrypt_share(key, b"x" * 66, session=S7, sender=2, recipient=3)
    assert kx.decrypt_share(key, ct, session=S7, sender=2, recipient=3) == b"x" * 66
    for kwargs in (dict(session=S8, sender=2, recipient=3), dict(session=S7, sender=4, recipient=3),
                   dict(session=S7, sender=2, recipient=4)):
        with pytest.raises(ProtocolViolation):
            kx.decrypt_share(key, ct, **kwargs)
    with pytest.raises(ProtocolViolation):
        kx.decrypt_share(key, ct[:-1] + bytes([ct[-1] ^ 1]), session=S7, sender=2, recipient=3)


def test_low_order_public_keys_are_refused():
    zero_point = kx.public_from_bytes(bytes(32), owner=5)
    with pytest.raises(ProtocolViolation, match="client 5"):
        kx.pair_secret(kx.generate_key_pair(), zero_point, 5)


@given(st.integers(2, 60), st.integers(1, 70), st.binary(min_size=32, max_size=32))
def test_the_graph_is_symmetric_and_regular(n, k, seed):
    roster = list(range(100, 100 + n))
    degree = effective_neighbours(n, k)
    graph = neighbour_graph(roster, degree, seed)
    for cid, peers in graph.items():
        assert cid not in peers
        assert len(peers) == degree, (n, k, degree)
        assert all(cid in graph[p] for p in peers)
    assert neighbour_graph(roster, degree, seed) == graph


def test_the_seed_decides_the_graph():
    roster = list(range(50))
    graphs = {tuple(sorted(neighbour_graph(roster, 6, bytes([i]) * 32)[0])) for i in range(5)}
    assert len(graphs) > 1


def test_defaults_follow_the_documentation():
    assert default_neighbours(100) == 14 and default_threshold(12) == 7
    assert default_neighbours(5) == 4  # small rosters use the complete graph
    assert effective_neighbours(11, 5) == 6  # odd k with an odd roster is rounded up
    assert effective_neighbours(12, 5) == 5


def test_threshold_checks():
    check_threshold(7, 12, active=True)
    with pytest.raises(InsecureParameters, match="above half"):
        check_threshold(6, 11, active=True)
    check_threshold(3, 11, active=False)
    with pytest.raises(InsecureParameters):
        check_threshold(1, 5, active=False)
    with pytest.raises(ConfigurationError):
        check_threshold(14, 12, active=False)
