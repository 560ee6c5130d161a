"""CKKS parameters: the presets resolve to what the docs say, and the validator refuses each
kind of bad parameter with the right typed error naming the value."""

import math

import pytest

pytest.importorskip("tenseal")

import tenseal.sealapi as seal  # noqa: E402

from he import CKKS, CKKSParameters  # noqa: E402
from he.modes import make_ckks  # noqa: E402
from he.params import HE_STANDARD_MAX_BITS, MIN_FLOOD_BITS, RELEASE_ERROR_BUDGET  # noqa: E402
from he.ring import Ring  # noqa: E402
from privagg import ConfigurationError, InsecureParameters  # noqa: E402


def test_the_security_table_is_seals():
    for n, bits in HE_STANDARD_MAX_BITS.items():
        assert seal.CoeffModulus.MaxBitCount(n, seal.SEC_LEVEL_TYPE.TC128) == bits


@pytest.mark.parametrize("preset, key_holder, scale_bits, flood_bits, data_bits", [
    ("lean", "clients", 48, 17, 60),
    ("lean", "decryptor", 48, 11, 60),
    ("fast", "clients", 48, 17, 60),
    ("fast", "decryptor", 48, 10, 60),
    ("compact", "clients", 40, 9, 52),
    ("standard", "clients", 88, 40, 100),
    ("standard", "decryptor", 88, 40, 100),
])
def test_presets_resolve_to_the_documented_values(preset, key_holder, scale_bits, flood_bits, data_bits):
    p = CKKSParameters.from_preset(preset, key_holder=key_holder)
    assert (p.scale_bits_resolved, p.flood_bits_resolved, p.data_modulus_bits) == (scale_bits, flood_bits, data_bits)
    assert p.flood_bits_resolved >= MIN_FLOOD_BITS
    assert p.release_error_ratio(p.flood_bits_resolved) <= RELEASE_ERROR_BUDGET
    assert 0 < p.headroom_bits(p.max_clients) < 1.5  # the largest scale that still fits
    # The scale bound holds with SEAL's actual primes, not only with their bit sizes.
    ring = Ring(p)
    assert sum(math.log2(q) for q in ring.data_moduli) - 1 >= p.log2_half_modulus


def test_the_error_model_matches_seal():
    """The predicted decryption error (which sizes the flooding) is what SEAL produces."""
    import numpy as np

    from he.keys import DecryptorKeys
    from he.release import decrypt_values

    p = CKKSParameters.from_preset("lean", key_holder="decryptor")
    ring, keys = Ring(p), DecryptorKeys.generate(p)
    x = np.random.default_rng(3).uniform(-1, 1, p.values_per_ciphertext)
    (pt,) = ring.encode(x)
    ct = seal.Ciphertext()
    keys.public_key.encryptor().encrypt(pt, ct)
    error = decrypt_values(ring, keys.decryptor(), [ct]) - x
    assert 0.8 < error.std() / p.natural_error_std(1) < 1.25


@pytest.mark.parametrize("kwargs, error, fragment", [
    ({"poly_modulus_degree": 4096, "coeff_modulus_bits": (60, 60)}, InsecureParameters, "120 bits"),
    ({"poly_modulus_degree": 8192, "coeff_modulus_bits": (60, 60, 60, 60)}, InsecureParameters, "218 bits"),
    ({"poly_modulus_degree": 1024, "coeff_modulus_bits": (27,)}, ConfigurationError, "too few slots"),
    ({"poly_modulus_degree": 3000, "coeff_modulus_bits": (60,)}, ConfigurationError, "power of two"),
    ({"poly_modulus_degree": 4096, "coeff_modulus_bits": (61,)}, ConfigurationError, "61 bits"),
    ({"poly_modulus_degree": 4096, "coeff_modulus_bits": ()}, ConfigurationError, "non-empty"),
    ({"scale_bits": 58}, ConfigurationError, "no headroom for 1024 clients"),
    ({"scale_bits": 52, "max_clients": 256}, ConfigurationError, "no headroom for 256 clients"),
    ({"max_clients": 2**40}, ConfigurationError, "max_clients=1099511627776"),
    ({"max_clients": 2**30}, InsecureParameters, "cannot flood"),
    ({"flood_bits": 4}, InsecureParameters, "flood_bits=4"),
    ({"flood_bits": 30}, ConfigurationError, "flood_bits=30"),
    ({"clip": 0.0}, ConfigurationError, "clip"),
    ({"clip": float("nan")}, ConfigurationError, "clip"),
    ({"max_clients": 0}, ConfigurationError, "max_clients"),
    ({"key_holder": "server"}, ConfigurationError, "key_holder"),
])
def test_the_validator_refuses_each_bad_parameter(kwargs, error, fragment):
    values = {"poly_modulus_degree": 4096, "coeff_modulus_bits": (60,)} | kwargs
    with pytest.raises(error, match=fragment):
        CKKSParameters(**values)


def test_a_modulus_too_small_to_flood_the_decryptors_noise_is_insecure():
    with pytest.raises(InsecureParameters, match="cannot flood"):
        CKKS(preset="compact", key_holder="decryptor")
    CKKS(preset="compact", key_holder="clients")  # symmetric errors are 74x smaller: fine


def test_unknown_presets_and_options_are_named():
    with pytest.raises(ConfigurationError, match="unknown CKKS preset 'huge'"):
        CKKS(preset="huge")
    with pytest.raises(ConfigurationError, match="threshold"):
        make_ckks(threshold=3)
    with pytest.raises(ConfigurationError, match="coeff_modulus_bits"):
        make_ckks(coeff_modulus_bits="sixty")
    agg = make_ckks(preset="standard", coeff_modulus_bits="60,40,40", key_holder="decryptor", min_clients=3)
    assert agg.params.coeff_modulus_bits == (60, 40, 40) and agg.min_clients == 3


def test_a_round_larger_than_the_scale_allows_is_refused_before_it_starts():
    agg = CKKS(max_clients=8)
    assert agg.params.scale_bits_resolved == 55
    with pytest.raises(ConfigurationError, match="no headroom for 100 clients"):
        agg.server(range(100))


def test_the_digest_covers_everything_both_sides_must_agree_on():
    base = CKKSParameters.from_preset("lean")
    variants = [CKKSParameters.from_preset("lean", key_holder="decryptor"),
                CKKSParameters.from_preset("lean", clip=0.5),
                CKKSParameters.from_preset("lean", scale_bits=40),
                CKKSParameters.from_preset("lean", flood_bits=12),
                CKKSParameters.from_preset("compact")]
    digests = {base.digest} | {v.digest for v in variants}
    assert len(digests) == 1 + len(variants)
    assert CKKSParameters.from_preset("lean").digest == base.digest


@pytest.mark.parametrize("preset, key_holder", [("lean", "clients"), ("lean", "decryptor"), ("compact", "clients"),
                                                ("fast", "decryptor")])
def test_the_flood_is_sized_from_an_estimate_that_matches_the_measured_error(preset, key_holder):
    """The flood is an estimate-based margin (not a worst-case bound): the estimated std of an
    honest sum's decryption error is within 10 % of the measured one, so the flood sits
    flood_bits above the measured std (and a few bits less above its maximum)."""
    from he.bench import flood_margin

    report = flood_margin(preset, key_holder, clients=6, n_values=8192)
    assert 0.9 < report["estimate_over_measured"] < 1.1
    assert report["margin_bits_over_std"] > report["flood_bits"] - 0.25
    assert report["margin_bits_over_max"] > report["flood_bits"] - 3
