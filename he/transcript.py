"""What CKKS parties sign, as transcript digests (:mod:`privagg.transcript`).

* ``session_digest(params, round, key holder, key id)``: the round as a client agreed to it.
  The round id comes from the client's own session (the federation's orchestrator), never from
  the server's request, and the key id is fresh wherever the key is (a key dealt in the round,
  a decryptor's per-round key), so it doubles as the session nonce no server chooses. With a
  provisioned shared key it is fixed: round ids must then not repeat under that key (the
  orchestrator's counter), or a server could put a client's upload of an earlier session of
  the same round id in the sum in place of its new one (that client's older update, nothing
  more: every client holds that key anyway).
* ``upload_payload(session, client, n_values, ciphertexts)``: what a client signs with its
  roster identity when it uploads: the session, its id, its vector length and the SHA-256 of
  every ciphertext it sent (length-prefixed, in order). The key holder releases only the sum of
  uploads whose signatures verify on the session it is in (:mod:`he.binding`).
* ``advert_payload`` / ``deal_context``: the in-round key setup. Each client signs its fresh
  X25519 key for this round; the dealer wraps only to signed keys of roster members and signs
  each package over the round and its recipient (:mod:`he.distribution`).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence

from privagg.transcript import Transcript

__all__ = ["LABEL", "session_digest", "ciphertexts_digest", "upload_payload", "advert_payload", "deal_context"]

LABEL = b"privagg/he/v1"
_LEN = struct.Struct("<Q")


def session_digest(params_digest: bytes, round_id: int, key_holder: str, key_id: bytes) -> bytes:
    return (Transcript(LABEL + b"/session").bytes("params", params_digest).int("round", round_id)
            .text("key_holder", key_holder).bytes("key_id", key_id).digest())


def ciphertexts_digest(blobs: Sequence[bytes]) -> bytes:
    h = hashlib.sha256(_LEN.pack(len(blobs)))
    for blob in blobs:
        h.update(_LEN.pack(len(blob)))
        h.update(blob)
    return h.digest()


def upload_payload(session: bytes, client_id: int, n_values: int, blobs: Sequence[bytes]) -> bytes:
    return (Transcript(LABEL + b"/upload").bytes("session", session).int("client", client_id)
            .int("n_values", n_values).bytes("ciphertexts", ciphertexts_digest(blobs)).digest())


def advert_payload(params_digest: bytes, round_id: int, client_id: int, x25519_public: bytes) -> bytes:
    """What a client signs when it advertises its fresh X25519 key (in-round key setup)."""
    return (Transcript(LABEL + b"/advert").bytes("params", params_digest).int("round", round_id)
            .int("client", client_id).bytes("x25519", x25519_public).digest())


def deal_context(params_digest: bytes, round_id: int, recipient: int) -> bytes:
    """The context a dealt key package is signed over: this round, this recipient."""
    return (Transcript(LABEL + b"/deal").bytes("params", params_digest).int("round", round_id)
            .int("recipient", recipient).digest())
