"""The CKKS attacks of the catalogue, run against the real sessions of each key holder: what a
deviating server (and a lone malicious client) obtains, decrypted with what the attacker holds
and compared with the true updates. ``authenticated=False`` is the protocol before signed
uploads (issue 13): every attack there succeeds, which is what the signed rounds must stop."""

import pytest

pytest.importorskip("tenseal")

from attacks.malicious.ckks_server import aggregate_substitution, server_key_recovery  # noqa: E402
from he import CKKS  # noqa: E402

HOLDERS = ("clients", "decryptor")
SUBSTITUTIONS = ("single", "invented_round", "appended")


@pytest.mark.parametrize("key_holder", HOLDERS)
def test_a_deviating_server_recovers_the_key_from_an_unauthenticated_key_holder(key_holder):
    outcome = server_key_recovery(CKKS(key_holder=key_holder, authenticated=False))
    assert outcome.completed and not outcome.detected
    assert outcome.extra["wrong_coefficients"] == 0
    assert outcome.update_error < 1e-6  # every upload decrypted with the recovered key
    assert outcome.summary.startswith("recovered")


@pytest.mark.parametrize("key_holder", HOLDERS)
def test_signed_uploads_stop_the_servers_chosen_ciphertext_key_recovery(key_holder):
    outcome = server_key_recovery(CKKS(key_holder=key_holder))
    assert outcome.detected and not outcome.completed and outcome.update_error is None
    assert "not the sum of the signed uploads" in next(iter(outcome.refusals.values()))
    assert outcome.summary.startswith("detected")


@pytest.mark.parametrize("how", SUBSTITUTIONS)
def test_an_unauthenticated_decryptor_releases_individual_updates(how):
    outcome = aggregate_substitution(CKKS(key_holder="decryptor", authenticated=False), how)
    assert outcome.completed and outcome.update_error < 1e-5


@pytest.mark.parametrize("key_holder", HOLDERS)
@pytest.mark.parametrize("how", SUBSTITUTIONS)
def test_signed_uploads_stop_aggregate_substitution(key_holder, how):
    outcome = aggregate_substitution(CKKS(key_holder=key_holder), how)
    assert outcome.detected and not outcome.completed and outcome.update_error is None
    (refusal,) = outcome.refusals.values()
    expected = {"single": "not the sum of the signed uploads", "appended": "values, the request",
                "invented_round": "round"}[how]
    assert expected in refusal
