"""The key holder's rule: release only the sum of signed uploads of this session, recomputed.

A key holder (the :class:`~he.decryptor.Decryptor`, or the contributor asked to decrypt in a
``key_holder="clients"`` round) decrypts whatever ciphertext it is handed, and one crafted
ciphertext ``(c0, c1) = (0, K)`` decrypts to ``K * s``: the secret key. So it must never
decrypt a ciphertext that the server, or anyone, merely *claims* is an aggregate.
:func:`verified_sum` is what it decrypts instead:

* the :class:`~he.messages.DecryptRequest` carries every contributor's upload exactly as the
  client sent it (its :class:`~he.messages.Ciphertexts` bytes), each with the client's Ed25519
  signature over :func:`he.transcript.upload_payload`: the session (parameters, the round id
  the *key holder* is in, the key holder kind, the key id), the client id, its vector length
  and the SHA-256 of its ciphertexts;
* the key holder checks every signature against its own :class:`~privagg.identity.Roster`
  (distinct ids by construction of the map; at least ``min_clients`` of them; the contributor
  list must be exactly their ids), adds the ciphertexts itself and decrypts *its own* sum. The
  server's aggregate is compared with it, byte for byte, only to name a deviating server.

What this stops, whatever the server does: a substituted or crafted aggregate (the
``(0, K)`` recovery, every upload appended to the sum, a sum of a subset relabelled), a
round id the clients did not sign (invented rounds), uploads of another session or key, and
phantom contributors (no roster identity, no signature). What it cannot stop is a *client*
that signs a crafted upload of its own: ``Enc(0) + (0, K)`` is a validly signed upload, and
the sum it enters decrypts to the honest sum plus ``K * s``. No practical defence exists here:
a release rule cannot tell ``K * s`` from honest values once ``K`` keeps it inside ``n * clip``
(hiding it needs flooding of the order of the values themselves), and zero-knowledge proofs
that each upload is a well-formed RLWE encryption (lattice proofs of short openings) are, in
the literature, tens of kilobytes and far more compute per ciphertext than the encryption, with
no Python implementation to build on (an estimate, not measured here), against updates of
thousands of ciphertexts. So with ``key_holder="clients"`` a malicious client learns nothing it
did not hold (every client has the key), and a :class:`~he.decryptor.Decryptor` uses a fresh
key pair for every round, so an extracted key opens that round only (:mod:`he.decryptor`).

Cost (the simplest correct design, measured in ``benchmarks/ckks_vs_flare.py``): the key holder
receives every upload besides the aggregate (n times the upload size) and redoes the server's
additions (SEAL expanding each seeded ciphertext, about 60 us per 4096 values and upload), plus
one Ed25519 verification and one SHA-256 pass over each upload. A cheaper design that keeps the
guarantee would need the key holder to check a sum without the summands (e.g. a homomorphic
commitment the server cannot open to anything else), which SEAL does not offer.
"""

from __future__ import annotations

from typing import Any

from he.messages import Ciphertexts, DecryptRequest, ciphertext_blobs
from he.ring import Ring
from he.sums import CiphertextSum
from he.transcript import session_digest, upload_payload
from privagg.errors import ProtocolViolation
from privagg.identity import Roster
from privagg.messages import SERVER_ID, parse_expected

__all__ = ["verified_sum", "sign_upload_payload"]


def sign_upload_payload(params_digest: bytes, round_id: int, key_holder: str, key_id: bytes, client_id: int,
                        n_values: int, blobs: list[bytes]) -> bytes:
    """What client ``client_id`` signs for this upload (a transcript digest of the session)."""
    return upload_payload(session_digest(params_digest, round_id, key_holder, key_id), client_id, n_values, blobs)


def verified_sum(ring: Ring, request: DecryptRequest, *, roster: Roster, round_id: int, key_id: bytes,
                 min_clients: int) -> list[Any]:
    """The sum of the request's signed uploads, as SEAL ciphertexts the key holder added itself;
    raises :class:`~privagg.errors.ProtocolViolation` (nothing to release) on anything else."""
    params = ring.params
    if request.n_values < 1:
        raise ProtocolViolation("the aggregate to decrypt is empty")
    if tuple(sorted(request.uploads)) != tuple(request.contributors):
        raise ProtocolViolation(f"the request names {len(request.contributors)} contributors but forwards "
                                f"{len(request.uploads)} signed uploads, or others")
    if len(request.uploads) < min_clients:
        raise ProtocolViolation(f"an aggregate of {len(request.uploads)} signed uploads is refused; at least "
                                f"{min_clients} needed")
    session = session_digest(params.digest, round_id, params.key_holder, key_id)
    expected = params.ciphertexts_for(request.n_values)
    total = CiphertextSum(ring, seeded=params.key_holder == "clients")
    for cid, raw in request.uploads.items():
        who = f"client {cid}"
        upload = parse_expected(raw, Ciphertexts, round_id=round_id, sender=cid, recipient=SERVER_ID)
        if upload.key_id != key_id:
            raise ProtocolViolation(f"{who}'s forwarded upload is under another key")
        if upload.n_values != request.n_values:
            raise ProtocolViolation(f"{who}'s forwarded upload has {upload.n_values} values, the request "
                                    f"{request.n_values}")
        blobs = ciphertext_blobs(upload.ciphertexts, expected, who)
        if not roster.verify(cid, upload.signature, upload_payload(session, cid, upload.n_values, blobs)):
            raise ProtocolViolation(f"{who}'s forwarded upload carries no valid signature of a roster member "
                                    f"on this session (round {round_id}); nothing is released")
        total.add(blobs, who)
    mine = total.dump()
    theirs = ciphertext_blobs(request.ciphertexts, expected, "the server")
    if mine != theirs:
        raise ProtocolViolation("the server's aggregate is not the sum of the signed uploads it forwarded; "
                                "nothing is released")
    return total.ciphertexts()
