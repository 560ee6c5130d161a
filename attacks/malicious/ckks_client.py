"""A lone malicious client against CKKS key holders (issue 13, item 2).

The client signs, as its own upload, ``Enc(0) + (0, K)`` (:mod:`attacks.malicious.ckks_crafting`):
a well-formed-looking ciphertext that every check accepts, since it *is* the client's signed
upload. The sum that the key holder releases to everyone (the next model) then carries
``decode(K * s)`` on top of the honest sum; honest model deltas are small next to ``K`` in the
coefficient domain, so rounding gives the round's secret key ``s`` exactly.

* ``key_holder="clients"``: nothing to attack; the client holds the shared key already and reads
  every upload the server shows it. Reported as such.
* ``key_holder="decryptor"``: the client extracts the round's key. With a long-term decryptor
  key (the protocol before issue 13) that key also opens every later round; with per-round keys
  (:mod:`he.round_keys`, the default) it opens the round it was extracted in only. The outcome
  decrypts this round's and the next round's uploads (which the server holds: what a client
  colluding with the server gets) with the extracted key and compares them with the truth.
"""

from __future__ import annotations

import time

import numpy as np

from attacks.malicious.ckks_crafting import add_key_query, decrypt_with_secret, recover_secret
from attacks.malicious.ckks_round import CKKSRound, honest_updates
from attacks.malicious.outcome import MaliciousOutcome
from he import CKKS
from he.binding import sign_upload_payload
from he.messages import Ciphertexts
from privagg.messages import SERVER_ID

__all__ = ["lone_client_key_recovery"]


def key_multiplier(ring: object, contributors: int) -> int:
    """The largest ``K`` the key holder's bound check lets through: ``decode(K * s)`` peaks near
    ``235 K / scale`` for N = 4096, and the bound is ``contributors * clip``; the more clients,
    the larger ``K`` and the smaller the honest sum next to it."""
    return int(ring.scale * ring.params.clip * contributors / 400)  # type: ignore[attr-defined]


def _crafted_upload(rnd: CKKSRound, cid: int, honest: Ciphertexts) -> Ciphertexts:
    cfg = rnd.config
    ciphertext = rnd.ring.load_ciphertext(honest.ciphertexts[0], seeded=False, what="own upload")
    blobs = [rnd.ring.dump(add_key_query(rnd.ring, ciphertext, key_multiplier(rnd.ring, len(rnd.updates))))]
    payload = sign_upload_payload(cfg.params.digest, rnd.round_id, cfg.key_holder, honest.key_id, cid,
                                  honest.n_values, blobs)
    signature = cfg.identities.signing_key(cid).sign(payload) if cfg.identities is not None else b""
    return Ciphertexts(honest.round_id, cid, SERVER_ID, honest.key_id, honest.n_values, dict(enumerate(blobs)),
                       signature)


def lone_client_key_recovery(config: CKKS, *, honest_clients: int = 4, seed: int = 0,
                             spread: float = 0.01) -> MaliciousOutcome:
    """One malicious client (the highest id) among ``honest_clients``; see the module docstring."""
    started = time.perf_counter()
    n = config.params.poly_modulus_degree
    security = f"ckks/{config.key_holder}/" + (
        "shared key" if config.key_holder == "clients" else
        "per-round keys" if config.decryptor is None or config.decryptor.per_round_keys else "long-term key")
    if config.key_holder == "clients":
        return MaliciousOutcome(
            attack="ckks_lone_client_key_recovery", security=security, clients=honest_clients + 1,
            threshold=config.min_clients, targets=(), completed=True, refusals={}, aborted=None, recovery=None,
            summary="recovered without an attack: every client holds the shared key and reads every upload it "
                    "obtains (documented)", seconds=time.perf_counter() - started, detectable=False)
    updates = honest_updates(honest_clients, n, seed=seed, spread=spread)
    attacker = honest_clients + 1
    round_updates = {**updates, attacker: np.zeros(n)}
    first = CKKSRound(config, round_updates, round_id=1, uploads={attacker: _crafted_upload})
    result = first.finish()
    secret, margin = recover_secret(first.ring, result.aggregate, key_multiplier(first.ring, len(round_updates)))
    this_round = max(float(np.max(np.abs(decrypt_with_secret(first.ring, secret, first.upload_ciphertexts(c))[:n]
                                         - x))) for c, x in updates.items())
    later = honest_updates(honest_clients, n, seed=seed + 1, spread=spread)
    second = CKKSRound(config, later, round_id=2)
    second.finish()
    next_round = max(float(np.max(np.abs(decrypt_with_secret(second.ring, secret, second.upload_ciphertexts(c))[:n]
                                         - x))) for c, x in later.items())
    opens_later = next_round < 1e-3
    if this_round >= 1e-3:
        summary = (f"not recovered: the honest sum hid K * s in this setting (rounding margin {margin:.2f}); "
                   f"nothing was decrypted")
    elif opens_later:
        summary = (f"recovered: the decryptor's key from one signed crafted upload; it decrypts this round's "
                   f"uploads (error {this_round:.2g}) and every later round's (error {next_round:.2g})")
    else:
        summary = (f"limited to one round: the round's key from one signed crafted upload decrypts that round's "
                   f"uploads (error {this_round:.2g}), not the next round's (error {next_round:.2g})")
    return MaliciousOutcome(
        attack="ckks_lone_client_key_recovery", security=security, clients=honest_clients + 1,
        threshold=config.min_clients, targets=tuple(sorted(updates)), completed=True, refusals={}, aborted=None,
        recovery=None, summary=summary, update_error=this_round, detectable=False,
        seconds=time.perf_counter() - started,
        extra={"next_round_error": next_round, "opens_later_rounds": opens_later, "rounding_margin": margin})
