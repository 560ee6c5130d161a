"""What an adversary learns from a CKKS server view (the threat model, made executable).

* **Outsider**: the released aggregate.
* **Honest-but-curious server**: ciphertexts (and their sizes) and the aggregate it is given at
  the end, nothing else: without the secret key the uploads are IND-CPA ciphertexts.
* **Server colluding with any client, ``key_holder="clients"``**: everything. Every client
  holds the shared secret key, so the coalition decrypts every upload in the view: this
  function actually does so, with the configuration's key (provisioned, or the one dealt in
  that round of a simulation), when the view kept the uploads.
* **Server colluding with clients, ``key_holder="decryptor"``**: clients hold only the public
  key, so the coalition learns the aggregate and, knowing its own inputs, the sum of the honest
  contributors: no individual update of an honest client.
* **Server colluding with the decryptor** (``colluding([DECRYPTOR_ID])``): everything, as the
  decryptor's key decrypts every upload.

Decryption errors (IND-CPA-D) are dealt with where the key holder releases (:mod:`he.release`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from he.decryptor import DECRYPTOR_ID
from he.messages import Ciphertexts, ciphertext_blobs
from he.release import decrypt_values
from he.ring import Ring
from privagg.interface import ServerView
from privagg.threats import Disclosure, PartialSum, ThreatModel

if TYPE_CHECKING:
    from he.config import CKKS

__all__ = ["disclose"]


def _decrypt_uploads(config: CKKS, view: ServerView, decryptor: Any) -> dict[int, npt.NDArray[np.float64]]:
    from he.config import COLLECT

    ring = Ring(config.params)
    seeded = config.key_holder == "clients"
    out = {}
    for cid, msg in sorted(view.by_sender(COLLECT).items()):
        if isinstance(msg, Ciphertexts):
            blobs = ciphertext_blobs(msg.ciphertexts, config.params.ciphertexts_for(msg.n_values), f"client {cid}")
            loaded = [ring.load_ciphertext(blob, seeded=seeded, what=f"client {cid}'s ciphertext") for blob in blobs]
            out[cid] = decrypt_values(ring, decryptor, loaded)[: msg.n_values]
    return out


def disclose(config: CKKS, view: ServerView, threat: ThreatModel) -> Disclosure:
    from he.config import COLLECT

    total = view.output if view.output is not None else np.zeros(0)
    released = PartialSum(view.included, total)
    if not threat.sees_server_view:
        return Disclosure(threat, {}, (released,), "only the released aggregate")
    uploads = [e for e in view.entries if e.stage == COLLECT]
    kept = sum(1 for e in uploads if e.message is not None)
    size = sum(e.size for e in uploads)
    client_colluders = threat.colluders & set(view.client_ids)
    if config.key_holder == "clients" and client_colluders:
        key = config.round_key(view.round_id)
        return _everything(config, view, threat, released, key.decryptor() if key is not None else None, kept,
                           f"every individual update: colluding client(s) {sorted(client_colluders)[:5]} hold the "
                           f"shared secret key")
    if config.key_holder == "decryptor" and DECRYPTOR_ID in threat.colluders:
        dec = config.decryptor
        # The colluding decryptor's own key; the audit is the only reader of it outside the decryptor.
        keys = dec.audit_keys(view.round_id) if dec is not None else None
        return _everything(config, view, threat, released, keys.decryptor() if keys is not None else None, kept,
                           "every individual update: the colluding decryptor's key decrypts every upload")
    if not client_colluders:
        return Disclosure(threat, {}, (released,),
                          f"only the sum of the {len(view.included)} contributors; individual updates only as "
                          f"CKKS ciphertexts ({len(uploads)} uploads, {size} bytes)")
    honest = tuple(c for c in view.included if c not in client_colluders)
    summary = (f"the sum of the {len(honest)} honest contributors (the aggregate minus the colluders' own "
               f"inputs); colluding clients hold only the public key, so no honest individual update")
    known = threat.known_inputs
    colluders = client_colluders & set(view.included)
    if known is None:
        return Disclosure(threat, {}, (released,), summary + " (give the colluders' inputs to compute it)")
    own = {c: np.clip(np.asarray(known[c], dtype=np.float64), -config.clip, config.clip) for c in colluders}
    honest_sum = total - (np.sum([own[c] for c in sorted(own)], axis=0) if own else 0.0)
    return Disclosure(threat, own, (released, PartialSum(honest, honest_sum)), summary)


def _everything(config: CKKS, view: ServerView, threat: ThreatModel, released: PartialSum, decryptor: Any,
                kept: int, summary: str) -> Disclosure:
    if decryptor is None:
        return Disclosure(threat, {}, (released,), summary + " (give the configuration its key to compute them)")
    if kept == 0:
        return Disclosure(threat, {}, (released,),
                          summary + " (this view kept only sizes; keep_ciphertexts=True to compute them)")
    individual = _decrypt_uploads(config, view, decryptor)
    return Disclosure(threat, individual, (released,), f"{summary} ({len(individual)} decrypted)")
