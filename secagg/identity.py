"""Long-term Ed25519 identities for active security.

A :class:`Roster` maps each client id to its Ed25519 public key; every client session is
given the roster (public) and its own signing key (secret). Clients sign the keys they
advertise and the survivor set they are asked to unmask for, binding both to the round and to
the digest of the model they trained on; each verifies its peers' signatures, so a server
that substitutes keys, forges a survivor set or sends different models is caught.

:class:`Identities` generates a roster with its private keys, for simulations and tests. Its
private keys never appear in a ``repr`` and it refuses to be pickled.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

from privagg.identity import SIGNATURE_BYTES, Identities, Roster

__all__ = ["SIGNATURE_BYTES", "Roster", "Identities", "advertise_payload", "survivors_payload"]

_LABEL = b"privagg/secagg/v1/"


def advertise_payload(round_id: int, cid: int, model_digest: bytes, cipher_pk: bytes, mask_pk: bytes) -> bytes:
    return _LABEL + b"advertise" + struct.pack("<QQ", round_id, cid) + model_digest + cipher_pk + mask_pk


def survivors_payload(round_id: int, model_digest: bytes, survivors: Iterable[int]) -> bytes:
    ids = sorted(survivors)
    return _LABEL + b"survivors" + struct.pack(f"<QQ{len(ids)}Q", round_id, len(ids), *ids) + model_digest
