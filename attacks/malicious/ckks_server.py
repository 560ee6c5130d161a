"""A deviating server against CKKS key holders (issue 13, items 1 and 3).

* :func:`server_key_recovery`: the server replaces the aggregate by the crafted ciphertext
  ``(0, K)`` (:mod:`attacks.malicious.ckks_crafting`); a key holder that decrypts it releases
  ``K * s``, the secret key, and the server decrypts every upload it holds.
* :func:`aggregate_substitution`: the server asks for something other than the round's sum:
  one client's upload as "the aggregate" (``"single"``), the same under an invented round id
  (``"invented_round"``), or every upload appended to the sum with ``n_values`` raised
  (``"appended"``).

Each returns a :class:`~attacks.malicious.outcome.MaliciousOutcome`: ``update_error`` is the
largest error of the individual updates the server read (compared with the true ones), and
the summary says recovered or detected. Against authenticated uploads (:mod:`he.binding`, the
default) the key holder recomputes the sum from the signed uploads and refuses all of them.
"""

from __future__ import annotations

import time
from typing import Literal

import numpy as np

from attacks.malicious.ckks_crafting import decrypt_with_secret, key_query, recover_secret
from attacks.malicious.ckks_round import CKKSRound, honest_updates, key_holder_of
from attacks.malicious.outcome import MaliciousOutcome
from he import CKKS, CKKSParameters, Decryptor, DecryptorKeys
from he.messages import DecryptRequest

__all__ = ["server_key_recovery", "aggregate_substitution", "legacy_config"]

Substitution = Literal["single", "invented_round", "appended"]


def legacy_config(key_holder: str, **options: object) -> CKKS:
    """The protocol as it was before issue 13: unsigned uploads and a long-term decryptor key."""
    if key_holder == "decryptor":
        params = CKKSParameters.from_preset(str(options.get("preset", "lean")), key_holder="decryptor")
        options = {**options, "decryptor": Decryptor(params, DecryptorKeys.generate(params),
                                                     min_clients=int(options.get("min_clients", 2)))}
    return CKKS(key_holder=key_holder, authenticated=False, **options)  # type: ignore[arg-type]


def _security(config: CKKS) -> str:
    keys = ("per-round keys" if config.decryptor is None or config.decryptor.per_round_keys
            else "long-term key") if config.key_holder == "decryptor" else "shared key"
    return f"ckks/{config.key_holder}/{keys}/" + ("signed uploads" if config.authenticated else "unsigned")


def _outcome(attack: str, config: CKKS, rnd: CKKSRound, targets: tuple[int, ...], refusal: str | None,
             error: float | None, started: float, what: str, **extra: object) -> MaliciousOutcome:
    holder = key_holder_of(config)
    if refusal is not None:
        summary = f"detected: {holder} refused, nothing was released ({refusal[:160]})"
    else:
        summary = f"recovered: {what} (largest error {error:.2g} against the true updates)"
    return MaliciousOutcome(
        attack=attack, security=_security(config), clients=len(rnd.updates), threshold=config.min_clients,
        targets=targets, completed=refusal is None, refusals={} if refusal is None else {rnd.holder_id: refusal},
        aborted=None, recovery=None, summary=summary, update_error=error, seconds=time.perf_counter() - started,
        extra=dict(extra))


def server_key_recovery(config: CKKS, *, clients: int = 4, seed: int = 0) -> MaliciousOutcome:
    """The server sends ``(0, K)`` as the aggregate; with the release it decrypts every upload."""
    started = time.perf_counter()
    n = config.params.poly_modulus_degree
    rnd = CKKSRound(config, honest_updates(clients, n, seed=seed))
    honest = rnd.request
    forged = DecryptRequest(honest.round_id, honest.sender, honest.recipient, honest.params_digest, honest.key_id,
                            honest.contributors, n, {0: rnd.ring.dump(key_query(rnd.ring))}, honest.uploads)
    reply, refusal = rnd.try_key_holder(forged)
    error = None
    wrong = None
    if reply is not None:
        secret, _ = recover_secret(rnd.ring, reply.vector)
        error = max(float(np.max(np.abs(decrypt_with_secret(rnd.ring, secret, rnd.upload_ciphertexts(cid))[:n]
                                        - x))) for cid, x in rnd.updates.items())
        wrong = int(np.sum(secret != np.rint(secret)))
    return _outcome("ckks_server_key_recovery", config, rnd, tuple(sorted(rnd.updates)), refusal, error, started,
                    f"the secret key from one crafted ciphertext, then all {clients} uploads",
                    key_recovered=reply is not None, wrong_coefficients=wrong)


def aggregate_substitution(config: CKKS, how: Substitution = "single", *, clients: int = 4,
                           seed: int = 0) -> MaliciousOutcome:
    """The server asks the key holder to decrypt something other than the round's sum."""
    started = time.perf_counter()
    n = config.params.poly_modulus_degree
    rnd = CKKSRound(config, honest_updates(clients, n, seed=seed, spread=0.5))
    honest = rnd.request
    target = max(rnd.updates)
    target_blobs = rnd.received[target].ciphertexts
    round_id, n_values, blobs = honest.round_id, n, dict(target_blobs)
    if how == "invented_round":
        round_id = 9001
    if how == "appended":  # the sum, then every upload after it, n_values raised to cover them all
        blobs = dict(honest.ciphertexts)
        seeded = config.key_holder == "clients"
        for cid in sorted(rnd.updates):
            full = rnd.ring.dump(rnd.ring.load_ciphertext(rnd.received[cid].ciphertexts[0], seeded=seeded,
                                                          what="upload"))
            blobs[len(blobs)] = full
        n_values = n * len(blobs)
    forged = DecryptRequest(round_id, honest.sender, honest.recipient, honest.params_digest, honest.key_id,
                            honest.contributors, n_values, blobs, honest.uploads)
    reply, refusal = rnd.try_key_holder(forged)
    error = None
    if reply is not None:
        if how == "appended":
            parts = reply.vector.reshape(-1, n)[1:]
            error = max(float(np.max(np.abs(parts[i] - rnd.updates[cid]))) for i, cid in enumerate(sorted(rnd.updates)))
        else:
            error = float(np.max(np.abs(reply.vector - rnd.updates[target])))
    what = {"single": f"client {target}'s individual update, released as the aggregate",
            "invented_round": f"client {target}'s update under invented round 9001",
            "appended": f"all {clients} individual updates appended to the aggregate"}[how]
    return _outcome(f"ckks_aggregate_substitution_{how}", config, rnd, (target,) if how != "appended"
                    else tuple(sorted(rnd.updates)), refusal, error, started, what)
