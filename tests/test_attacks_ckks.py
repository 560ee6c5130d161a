"""The CKKS attacks of the catalogue, run against the real sessions of each key holder: what a
deviating server (and a lone malicious client) obtains, decrypted with what the attacker holds
and compared with the true updates. ``authenticated=False`` is the protocol before signed
uploads (issue 13): every attack there succeeds, which is what the signed rounds must stop."""

import pytest

pytest.importorskip("tenseal")

from attacks.malicious.ckks_server import aggregate_substitution, legacy_config, server_key_recovery  # noqa: E402
from he import CKKS  # noqa: E402

HOLDERS = ("clients", "decryptor")
SUBSTITUTIONS = ("single", "invented_round", "appended")


@pytest.mark.parametrize("key_holder", HOLDERS)
def test_a_deviating_server_recovers_the_key_from_an_unauthenticated_key_holder(key_holder):
    outcome = server_key_recovery(legacy_config(key_holder))
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
    outcome = aggregate_substitution(legacy_config("decryptor"), how)
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


def test_a_lone_client_extracts_a_long_term_decryptor_key_for_every_later_round():
    from attacks.malicious.ckks_client import lone_client_key_recovery

    outcome = lone_client_key_recovery(legacy_config("decryptor"))
    assert outcome.update_error < 1e-6 and outcome.extra["next_round_error"] < 1e-6
    assert outcome.summary.startswith("recovered") and not outcome.detected


@pytest.mark.parametrize("honest_clients", [4, 300])
def test_a_lone_clients_extracted_key_opens_its_round_only_with_per_round_decryptor_keys(honest_clients):
    """No check stops a signed crafted upload (he.binding); per-round keys bound the damage: the
    extracted key decrypts that round's uploads (a client colluding with the server reads
    them) and nothing of the next round."""
    from attacks.malicious.ckks_client import lone_client_key_recovery

    outcome = lone_client_key_recovery(CKKS(key_holder="decryptor"), honest_clients=honest_clients)
    assert outcome.update_error < 1e-6  # this round: every honest upload, with the extracted key
    assert outcome.extra["next_round_error"] > 1.0 and not outcome.extra["opens_later_rounds"]
    assert outcome.summary.startswith("limited to one round")


def test_a_lone_client_of_a_shared_key_needs_no_attack():
    from attacks.malicious.ckks_client import lone_client_key_recovery

    outcome = lone_client_key_recovery(CKKS())
    assert outcome.completed and "holds the shared key" in outcome.summary


@pytest.mark.parametrize("attack", ["phantom_peer", "server_dealt_key"])
def test_key_dealing_substitution_gives_an_unsigned_round_key_to_the_server(attack):
    from attacks.malicious import ckks_dealing

    outcome = getattr(ckks_dealing, attack)(CKKS(authenticated=False))
    assert outcome.completed and outcome.update_error < 1e-9  # every upload, with the key it obtained


@pytest.mark.parametrize("attack, fragment", [("phantom_peer", "not signed by its roster identity"),
                                              ("server_dealt_key", "no valid signature of client")])
def test_authenticated_dealing_refuses_key_substitution(attack, fragment):
    from attacks.malicious import ckks_dealing

    outcome = getattr(ckks_dealing, attack)(CKKS())
    assert outcome.detected and not outcome.completed and outcome.update_error is None
    assert all(fragment in refusal for refusal in outcome.refusals.values())
