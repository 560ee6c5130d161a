"""What every secure-aggregation party binds, as transcript digests (:mod:`privagg.transcript`).

* ``H0 = header_digest(...)``: the announced round (protocol, round id, the sorted roster, k,
  t, quorum, bits, dimension, security, the server's fresh nonce and, for semi-honest SecAgg+,
  its graph seed). Each client computes it from its *own* parameters, so a header that differs
  from its configuration yields keys, shares and signatures no honest peer accepts. Pairwise
  keys, masks and share encryption are all derived under ``H0``.
* ``K_j = advert_digest(H0, j, keys, seed commitment)``: one client's advertisement.
* ``S = session_digest(H0, model digest, {j: K_j || c_j})``: the whole session as one client
  saw it: every advertisement of the round and every client's fresh nonce commitment ``c_j``
  (so it is fresh to each honest verifier, whose own ``c`` is in it, whatever the server
  chose), and the model that client trained on. Consistency signatures cover ``S``.
* ``graph_seed(H0, entries, reveals)`` (active SecAgg+): fixed by randomness every client
  committed to before any was revealed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from privagg.messages.codec import CheckedIds
from privagg.transcript import Transcript
from secagg.round import RoundParameters

__all__ = ["ids_bytes", "header_digest", "advert_digest", "advertise_payload", "seed_commitment", "nonce_commitment",
           "session_digest", "graph_seed", "survivors_payload"]

LABEL = b"privagg/secagg/v2"


def ids_bytes(ids: Sequence[int]) -> bytes:
    """Ids as little-endian u64 bytes (a checked roster's are computed once)."""
    if isinstance(ids, CheckedIds):
        return ids.wire_bytes()
    return np.asarray(ids, dtype="<u8").tobytes()


def header_digest(params: RoundParameters, *, round_id: int, protocol: str, nonce: bytes,
                  graph_seed: bytes) -> bytes:
    return (Transcript(LABEL + b"/header").text("protocol", protocol).int("round", round_id)
            .bytes("roster", ids_bytes(params.roster)).int("neighbours", params.neighbours)
            .int("threshold", params.threshold).int("quorum", params.signatures_needed)
            .int("bits", params.bits).int("dimension", params.dimension).int("active", params.active)
            .bytes("nonce", nonce).bytes("graph_seed", graph_seed).digest())


def advert_digest(header: bytes, cid: int, cipher_pk: bytes, mask_pk: bytes, seed_commitment_: bytes) -> bytes:
    return (Transcript(LABEL + b"/advert").bytes("header", header).int("client", cid)
            .bytes("cipher_pk", cipher_pk).bytes("mask_pk", mask_pk).bytes("seed", seed_commitment_).digest())


def advertise_payload(header: bytes, model_digest: bytes, advert: bytes, nonce_commitment_: bytes) -> bytes:
    """What a client signs when it advertises (active)."""
    return (Transcript(LABEL + b"/advertise-signature").bytes("header", header).bytes("model", model_digest)
            .bytes("advert", advert).bytes("nonce", nonce_commitment_).digest())


def seed_commitment(header: bytes, cid: int, seed: bytes) -> bytes:
    """A binding, hiding commitment to a 32-byte self-mask seed (the server checks the seed it
    rebuilds against it, so a wrong share can never yield a wrong sum)."""
    return (Transcript(LABEL + b"/self-mask-seed").bytes("header", header).int("client", cid)
            .bytes("seed", seed).digest())


def nonce_commitment(header: bytes, cid: int, reveal: bytes) -> bytes:
    return Transcript(LABEL + b"/nonce").bytes("header", header).int("client", cid).bytes("reveal", reveal).digest()


def _entries(t: Transcript, entries: Mapping[int, bytes]) -> Transcript:
    ids = sorted(entries)
    t.ints("ids", ids)
    for cid in ids:
        t.bytes("entry", entries[cid])
    return t


def session_digest(header: bytes, model_digest: bytes, entries: Mapping[int, bytes]) -> bytes:
    return _entries(Transcript(LABEL + b"/session").bytes("header", header).bytes("model", model_digest),
                    entries).digest()


def graph_seed(header: bytes, entries: Mapping[int, bytes], reveals: Sequence[bytes]) -> bytes:
    t = _entries(Transcript(LABEL + b"/graph-seed").bytes("header", header), entries)
    for reveal in reveals:
        t.bytes("reveal", reveal)
    return t.digest()


def survivors_payload(session: bytes, survivors: Sequence[int]) -> bytes:
    return Transcript(LABEL + b"/survivors").bytes("session", session).ints("survivors", sorted(survivors)).digest()
