"""Key-dealing substitution: a deviating server against the clients' shared key (issue 13, item 4).

``key_holder="clients"`` keeps the key away from the server only if the key travels to the
right parties. Two ways a relaying server used to get it:

* :func:`phantom_peer`: in the in-round setup it lists one more "peer" (an id and an X25519 key
  of its own) in the dealer's request; the dealer wraps the round key to it too.
* :func:`server_dealt_key`: it skips the dealer and hands every client a package of a key it
  made itself (for the provisioned path: a package it relays in place of the real one).

Either way it then decrypts every upload. With authenticated dealing (the default) the dealer
wraps only to X25519 keys their roster owners signed for this round, and a client opens only a
package signed by a roster member (the agreed ``dealer`` if configured) over its own key and
round: both attacks are refused.
"""

from __future__ import annotations

import time

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from attacks.malicious.ckks_round import honest_updates
from attacks.malicious.outcome import MaliciousOutcome
from he import CKKS, SharedKey
from he.config import ADVERTISE, DEAL
from he.distribution import unwrap_shared_key, wrap_shared_key
from he.messages import Ciphertexts, DealRequest, EncryptRequest
from he.release import decrypt_values
from he.ring import Ring
from privagg.errors import PrivaggError
from privagg.identity import SigningKey
from privagg.messages import SERVER_ID

__all__ = ["phantom_peer", "server_dealt_key"]

PHANTOM = 999_999


def _security(config: CKKS) -> str:
    return "ckks/clients/in-round key/" + ("signed dealing" if config.authenticated else "unsigned dealing")


def _read_uploads(config: CKKS, key: SharedKey, uploads: dict[int, Ciphertexts],
                  updates: dict[int, np.ndarray]) -> float:
    ring = Ring(config.params)
    worst = 0.0
    for cid, msg in uploads.items():
        loaded = [ring.load_ciphertext(msg.ciphertexts[i], seeded=True, what="upload") for i in sorted(msg.ciphertexts)]
        values = decrypt_values(ring, key.decryptor(), loaded)[: msg.n_values]
        worst = max(worst, float(np.max(np.abs(values - updates[cid]))))
    return worst


def _outcome(attack: str, config: CKKS, updates: dict[int, np.ndarray], refusals: dict[int, str],
             error: float | None, started: float, what: str) -> MaliciousOutcome:
    if error is None:
        first = next(iter(refusals.values()), "")
        summary = f"detected: {len(refusals)} client(s) refused, the server got no key ({first[:140]})"
    else:
        summary = f"recovered: {what}; every upload decrypted (largest error {error:.2g} against the true updates)"
    return MaliciousOutcome(attack=attack, security=_security(config), clients=len(updates),
                            threshold=config.min_clients, targets=tuple(sorted(updates)), completed=error is not None,
                            refusals=refusals, aborted=None, recovery=None, summary=summary, update_error=error,
                            seconds=time.perf_counter() - started)


def _advertise(config: CKKS, updates: dict[int, np.ndarray], round_id: int) -> tuple[object, dict[int, object]]:
    server = config.server(sorted(updates), round_id=round_id)
    clients = {cid: config.client(cid, x, round_id=round_id) for cid, x in updates.items()}
    assert server.stage == ADVERTISE
    for cid, msg in server.messages_to_send().items():
        server.receive(cid, clients[cid].respond(msg.to_bytes()).to_bytes())
    server.deadline_passed()
    assert server.stage == DEAL
    return server, clients


def phantom_peer(config: CKKS, *, clients: int = 4, seed: int = 0, round_id: int = 1) -> MaliciousOutcome:
    started = time.perf_counter()
    updates = honest_updates(clients, 3000, seed=seed, spread=0.5)
    server, sessions = _advertise(config, updates, round_id)
    ((dealer, request),) = server.messages_to_send().items()
    mine = X25519PrivateKey.generate()
    raw = mine.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    forged = DealRequest(request.round_id, SERVER_ID, dealer, request.params_digest,
                         {**request.peers, PHANTOM: raw + bytes(64)})  # it cannot sign for a roster member
    try:
        dealt = sessions[dealer].respond(forged.to_bytes())
    except PrivaggError as exc:
        return _outcome("ckks_key_dealing_phantom_peer", config, updates, {dealer: f"{type(exc).__name__}: {exc}"},
                        None, started, "")
    key = unwrap_shared_key(config.params, dealt.packages[PHANTOM], mine, authenticated=False)
    honest_packages = {c: p for c, p in dealt.packages.items() if c != PHANTOM}
    server.receive(dealer, type(dealt)(dealt.round_id, dealt.sender, dealt.recipient, dealt.key_id,
                                       honest_packages).to_bytes())
    server.deadline_passed()
    uploads = {}
    for cid, msg in server.messages_to_send().items():
        uploads[cid] = sessions[cid].respond(msg.to_bytes())
    return _outcome("ckks_key_dealing_phantom_peer", config, updates, {}, _read_uploads(config, key, uploads, updates),
                    started, f"the round key, wrapped by the dealer to the server's phantom peer {PHANTOM}")


def server_dealt_key(config: CKKS, *, clients: int = 4, seed: int = 0, round_id: int = 1) -> MaliciousOutcome:
    started = time.perf_counter()
    updates = honest_updates(clients, 3000, seed=seed, spread=0.5)
    server, sessions = _advertise(config, updates, round_id)
    ((dealer, request),) = server.messages_to_send().items()
    advertised = {**request.peers}
    own = sessions[dealer]._agreement.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)  # relayed to it too
    advertised[dealer] = own
    key = SharedKey.generate(config.params)
    impostor = SigningKey.generate()  # the server signs as the dealer, with a key not in the roster
    refusals: dict[int, str] = {}
    uploads: dict[int, Ciphertexts] = {}
    from he.transcript import deal_context

    for cid, entry in advertised.items():
        public = X25519PublicKey.from_public_bytes(entry[:32])
        package = wrap_shared_key(key, public, impostor, sender_id=dealer,
                                  context=deal_context(config.params.digest, round_id, cid),
                                  authenticated=config.authenticated)
        message = EncryptRequest(round_id, SERVER_ID, cid, config.params.digest, key.key_id, package)
        try:
            uploads[cid] = sessions[cid].respond(message.to_bytes())
        except PrivaggError as exc:
            refusals[cid] = f"{type(exc).__name__}: {exc}"
    if refusals:
        return _outcome("ckks_key_dealing_server_key", config, updates, refusals, None, started, "")
    return _outcome("ckks_key_dealing_server_key", config, updates, {}, _read_uploads(config, key, uploads, updates),
                    started, "its own key, dealt to every client in the dealer's place")
