"""A malicious server's workbench: real client sessions, every server message written by hand.

:class:`~attacks.malicious.harness.HandDrivenRound` runs the real server session and lets the
attacker replace some of its messages. The attacks of protocol v2 need more freedom than that:
a server that announces any round it likes, gives each client its own view of the session,
starts *several sessions of the same client* under one announced round (same round id, same
nonce: every header digest is then the same), and strips the masks off a target itself. A
:class:`Forge` holds the announced round and hands the attacker that freedom:

* :meth:`Forge.session` starts a real :class:`~secagg.client.SecAggClient` session (as many
  per client id as wanted);
* one method per stage (:meth:`~Forge.advertise`, :meth:`~Forge.graph`, :meth:`~Forge.keys`,
  :meth:`~Forge.masked`, :meth:`~Forge.consistency`, :meth:`~Forge.unmask`) writes that stage's
  server message from what the attacker chooses, sends it *as bytes* and keeps the reply; an
  honest client that refuses is recorded in :attr:`Session.refused` and says nothing more;
* colluding clients are sessions too, whose secret state the adversary holds by definition
  (:meth:`~Forge.held`, :meth:`~Forge.colluder_signature`);
* :func:`strip_masks` and :meth:`Forge.unmask_target` turn what the server gathered into the
  target's encoded input, or ``None`` when it did not gather enough.

Nothing here is a protocol shortcut: clients only ever see bytes, and every check they make is
the real one.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from privagg import MalformedMessage, ProtocolViolation
from privagg.encoding import add_mod, sub_mod
from privagg.messages import SERVER_ID, Message
from secagg import SecAgg
from secagg import keys as kx
from secagg import transcript as tx
from secagg.client import PROTOCOL, ZERO_SEED
from secagg.graph import NeighbourGraph
from secagg.messages import (
    AdvertiseRequest,
    ConsistencyRequest,
    GraphRequest,
    KeysBroadcast,
    MaskedInputRequest,
    UnmaskRequest,
    UnmaskShares,
)
from secagg.prg import expand_mask
from secagg.round import RoundParameters
from secagg.shamir import SHARE_BYTES, reconstruct_secret, share_from_bytes

__all__ = ["Session", "Forge", "strip_masks", "colluding_neighbours"]


@dataclass(eq=False)
class Session:
    """One real client session and what the server holds of it."""

    label: str
    cid: int
    client: Any
    advert: bytes = b""  # cipher_pk || mask_pk || seed commitment || nonce commitment || signature
    reveal: bytes = b""
    shares: dict[int, bytes] = field(default_factory=dict)  # recipient id -> share ciphertext
    vector: npt.NDArray[np.unsignedinteger] | None = None
    signature: bytes = b""
    answer: UnmaskShares | None = None
    refused: str | None = None
    given: dict[int, Session] = field(default_factory=dict)  # sender id -> session whose shares it got

    @property
    def mask_pk(self) -> bytes:
        return self.advert[32:64]

    @property
    def seed_commitment(self) -> bytes:
        return self.advert[64:96]

    @property
    def digest(self) -> bytes:
        """The session digest S this client computed (its view of the session)."""
        return bytes(self.client._session)  # the adversary reads only colluders' (or checks its own forgery)

    def __repr__(self) -> str:
        return f"Session({self.label!r}, refused={self.refused is not None})"


def strip_masks(masked: npt.NDArray[np.unsignedinteger], self_seed: bytes, pair_seeds: Mapping[int, bytes], *,
                client: int, bits: int) -> npt.NDArray[np.unsignedinteger]:
    """``client``'s encoded input from its masked vector, its self-mask seed and the seed of each
    pairwise mask it added (``pair_seeds``: peer id -> :func:`secagg.keys.mask_seed` output)."""
    out = masked.copy()
    sub_mod(out, expand_mask(self_seed, out.shape[0], bits), bits)
    for peer, seed in sorted(pair_seeds.items()):
        mask = expand_mask(seed, out.shape[0], bits)
        (sub_mod if client < peer else add_mod)(out, mask, bits)  # it added +mask iff its id is the smaller
    return out


def colluding_neighbours(roster: Iterable[int], k: int, seed: bytes, target: int, colluders: Iterable[int]) -> int:
    """How many of ``target``'s neighbours collude in the graph of ``seed``."""
    graph = NeighbourGraph(tuple(sorted(roster)), k, seed)
    return len(graph.neighbours(target) & set(colluders))


class Forge:
    """The announced round, and the attacker's hands on every client session of it.

    ``announce`` (keyword overrides of :meth:`request`) lets the attacker lie about the round;
    the digests the forge computes follow the parameters it derives for ``roster`` from
    ``config`` (the round honest clients would accept), or ``params`` when the attacker
    announces a round its configuration would not even allow.
    """

    def __init__(self, config: SecAgg, updates: Mapping[int, npt.ArrayLike], *, round_id: int = 0,
                 roster: Iterable[int] | None = None, digests: Mapping[int, bytes] | None = None,
                 nonce: bytes | None = None, graph_seed: bytes = ZERO_SEED,
                 params: RoundParameters | None = None) -> None:
        self.config = config
        self.updates = {int(c): np.asarray(u, dtype=np.float64) for c, u in updates.items()}
        self.round_id = round_id
        self.roster = tuple(sorted(int(c) for c in (roster if roster is not None else self.updates)))
        dimension = int(next(iter(self.updates.values())).size)
        self.params: RoundParameters = params if params is not None else config.parameters(self.roster, dimension)
        self.digests = dict(digests) if digests is not None else {c: bytes(32) for c in self.updates}
        self.nonce = nonce if nonce is not None else secrets.token_bytes(32)
        self.graph_seed = graph_seed
        self.header = tx.header_digest(self.params, round_id=round_id, protocol=PROTOCOL, nonce=self.nonce,
                                       graph_seed=graph_seed)
        self.sessions: list[Session] = []

    # -- sessions --------------------------------------------------------------------------
    def session(self, cid: int, label: str | None = None, *, update: npt.ArrayLike | None = None) -> Session:
        """Start a real client session of ``cid`` for the announced round. ``update``: what the
        client trained this time, if not its update of the round (a second session on a slightly
        changed model: the one way past the ledger, ``attacks.malicious.difference.nudged``)."""
        mine = self.updates[cid] if update is None else np.asarray(update, dtype=np.float64)
        client = self.config.client(cid, mine, round_id=self.round_id, model_digest=self.digests[cid])
        sess = Session(label or f"{cid}#{sum(s.cid == cid for s in self.sessions) + 1}", cid, client)
        self.sessions.append(sess)
        return sess

    def send(self, sess: Session, message: Message) -> Any:
        """Hand ``message`` to the session as bytes; its reply, or ``None`` if it refuses (then it
        stays silent)."""
        if sess.refused is not None:
            return None
        try:
            return sess.client.respond(message.to_bytes())
        except (ProtocolViolation, MalformedMessage) as exc:
            sess.refused = f"{type(exc).__name__}: {exc}"
            return None

    @property
    def refusals(self) -> dict[str, str]:
        return {s.label: s.refused for s in self.sessions if s.refused is not None}

    # -- stages ----------------------------------------------------------------------------
    def request(self, cid: int, **announce: Any) -> AdvertiseRequest:
        p = self.params
        fields = dict(roster=p.roster, graph_seed=self.graph_seed, nonce=self.nonce, neighbours=p.neighbours,
                      threshold=p.threshold, quorum=p.signatures_needed, bits=p.bits, dimension=p.dimension,
                      active=p.active, protocol=PROTOCOL)
        fields.update(announce)
        return AdvertiseRequest(self.round_id, SERVER_ID, cid, **fields)

    def advertise(self, sess: Session, **announce: Any) -> bool:
        reply = self.send(sess, self.request(sess.cid, **announce))
        if reply is None:
            return False
        sess.advert = (reply.cipher_pk + reply.mask_pk + reply.seed_commitment + reply.nonce_commitment
                       + reply.signature)
        return True

    def entry(self, sess: Session) -> bytes:
        """What the session's advertisement contributes to the session digest."""
        a = sess.advert
        return tx.advert_digest(self.header, sess.cid, a[:32], a[32:64], a[64:96]) + a[96:128]

    def entries(self, sessions: Iterable[Session]) -> dict[int, bytes]:
        return {s.cid: self.entry(s) for s in sessions}

    def graph(self, sess: Session, entries: Iterable[Session] | Mapping[int, bytes]) -> bool:
        """Active SecAgg+: send the session's view of every advertised entry; keep its reveal."""
        table = dict(entries) if isinstance(entries, Mapping) else self.entries(entries)
        reply = self.send(sess, GraphRequest(self.round_id, SERVER_ID, sess.cid, table))
        if reply is None:
            return False
        sess.reveal = reply.reveal
        return True

    def committed_seed(self, sessions: Iterable[Session]) -> bytes:
        """The graph seed every client of this view derives (active SecAgg+)."""
        group = sorted(sessions, key=lambda s: s.cid)
        return tx.graph_seed(self.header, self.entries(group), [s.reveal for s in group])

    def keys(self, sess: Session, peers: Iterable[Session], *, reveals: Iterable[Session] = (),
             override: Mapping[int, bytes] | None = None) -> bool:
        """Relay the advertisements of ``peers`` (and the session's own) and, for active SecAgg+,
        the reveals of ``reveals``; ``override`` replaces some relayed blobs by the attacker's."""
        table = {p.cid: p.advert for p in peers}
        table[sess.cid] = sess.advert
        table.update(override or {})
        opened = {r.cid: r.reveal for r in reveals}
        reply = self.send(sess, KeysBroadcast(self.round_id, SERVER_ID, sess.cid, table, opened))
        if reply is None:
            return False
        sess.shares = dict(reply.shares)
        return True

    def masked(self, sess: Session, senders: Iterable[Session], *,
               override: Mapping[int, bytes] | None = None) -> bool:
        """Relay to the session the shares ``senders`` addressed to its id."""
        chosen = [s for s in senders if sess.cid in s.shares]
        relayed = {s.cid: s.shares[sess.cid] for s in chosen}
        relayed.update(override or {})
        reply = self.send(sess, MaskedInputRequest(self.round_id, SERVER_ID, sess.cid, relayed))
        if reply is None:
            return False
        sess.given = {s.cid: s for s in chosen}
        sess.vector = reply.vector
        return True

    def consistency(self, sess: Session, survivors: Iterable[int]) -> bool:
        reply = self.send(sess, ConsistencyRequest(self.round_id, SERVER_ID, sess.cid, tuple(sorted(survivors))))
        if reply is None:
            return False
        sess.signature = reply.signature
        return True

    def unmask(self, sess: Session, survivors: Iterable[int], signatures: Mapping[int, bytes] | None = None) -> bool:
        reply = self.send(sess, UnmaskRequest(self.round_id, SERVER_ID, sess.cid, tuple(sorted(survivors)),
                                              dict(signatures or {})))
        if reply is None:
            return False
        sess.answer = reply
        return True

    # -- colluders (the adversary holds their state) ----------------------------------------
    def colluder_signature(self, colluder: Session, survivors: Iterable[int],
                           digest: bytes | None = None) -> bytes:
        """The colluder's consistency signature on ``survivors`` for its own view of the session
        (or for ``digest``, another view's)."""
        identities = self.config.identities
        if identities is None:
            raise ValueError("colluder signatures need the configuration's Identities")
        session = digest if digest is not None else colluder.digest
        return identities.signing_key(colluder.cid).sign(tx.survivors_payload(session, tuple(sorted(survivors))))

    def held(self, colluder: Session, owner: Session) -> tuple[int, int] | None:
        """The (seed share, key share) of ``owner`` that reached ``colluder`` (decrypted with the
        colluder's own share key), or ``None`` if ``owner`` sent it none."""
        ciphertext = owner.shares.get(colluder.cid)
        key = colluder.client._share_keys.get(owner.cid)
        if ciphertext is None or key is None:
            return None
        # What the colluder's own session decrypts with: the header in semi-honest rounds, its
        # session digest S (its view) in active ones, so it reads only shares of its own view.
        context = colluder.client._share_context if colluder.client._session else self.header
        try:
            plain = kx.decrypt_share(key, ciphertext, session=context, sender=owner.cid, recipient=colluder.cid)
        except ProtocolViolation:
            return None  # meant for another session of this id, or another view
        return share_from_bytes(plain[:SHARE_BYTES]), share_from_bytes(plain[SHARE_BYTES:])

    def pair_seed(self, colluder: Session, peer: Session) -> bytes:
        """The pairwise mask seed between a colluder and a peer (from the colluder's private key)."""
        secret = kx.pair_secret(colluder.client._mask_key, kx.public_from_bytes(peer.mask_pk, peer.cid), peer.cid)
        return kx.mask_seed(secret, self.header, colluder.cid, peer.cid)

    # -- what the server gathered ------------------------------------------------------------
    def revealed(self, holders: Iterable[Session], owner: Session) -> tuple[dict[int, int], dict[int, int]]:
        """The shares of ``owner`` that ``holders`` revealed at unmasking: (seed shares, key
        shares), each keyed by the holder's x-coordinate. Only holders that were given
        ``owner``'s own shares count (another session of the same id shares other secrets)."""
        seeds: dict[int, int] = {}
        key_shares: dict[int, int] = {}
        for h in holders:
            if h.answer is None:
                continue
            if h is owner:
                pass  # its own share: always of its own secrets
            elif h.given.get(owner.cid) is not owner:
                continue
            x = self.params.x_coordinate(h.cid)
            if owner.cid in h.answer.seed_shares:
                seeds[x] = share_from_bytes(h.answer.seed_shares[owner.cid])
            if owner.cid in h.answer.key_shares:
                key_shares[x] = share_from_bytes(h.answer.key_shares[owner.cid])
        return seeds, key_shares

    def rebuild(self, shares: Mapping[int, int], fits: Any) -> bytes | None:
        """A secret from ``threshold`` shares, if it opens its commitment (``fits``)."""
        t = self.params.threshold
        if len(shares) < t:
            return None
        try:
            secret = reconstruct_secret(dict(shares), t)
        except ValueError:
            return None
        return secret if fits(secret) else None

    def unmask_target(self, target: Session, seed_shares: Mapping[int, int], key_shares: Mapping[int, int], *,
                      colluders: Iterable[Session] = (), peer_keys: Mapping[int, bytes] | None = None
                      ) -> npt.NDArray[np.unsignedinteger] | None:
        """The target's encoded input, or ``None`` if the server lacks a secret it needs.

        It needs the target's self-mask seed (``threshold`` seed shares, checked against the
        commitment the target advertised) and the seed of every pairwise mask the target added:
        from the target's mask key (``threshold`` key shares, checked against its public key),
        from a colluding peer's own private key, or from a peer's rebuilt mask key
        (``peer_keys``: peer id -> raw private key)."""
        if target.vector is None:
            return None
        seed = self.rebuild(seed_shares, lambda s: tx.seed_commitment(self.header, target.cid, s)
                            == target.seed_commitment)
        key = self.rebuild(key_shares, lambda s: kx.public_bytes(kx.private_from_bytes(s)) == target.mask_pk)
        if seed is None:
            return None
        accomplices = {id(c) for c in colluders}
        rebuilt = dict(peer_keys or {})
        pair_seeds = {}
        for peer in target.given.values():
            if id(peer) in accomplices:
                pair_seeds[peer.cid] = self.pair_seed(peer, target)
            elif key is not None:
                private = kx.private_from_bytes(key)
                secret = kx.pair_secret(private, kx.public_from_bytes(peer.mask_pk, peer.cid), peer.cid)
                pair_seeds[peer.cid] = kx.mask_seed(secret, self.header, target.cid, peer.cid)
            elif peer.cid in rebuilt:
                private = kx.private_from_bytes(rebuilt[peer.cid])
                secret = kx.pair_secret(private, kx.public_from_bytes(target.mask_pk, target.cid), target.cid)
                pair_seeds[peer.cid] = kx.mask_seed(secret, self.header, target.cid, peer.cid)
            else:
                return None  # a mask with an honest peer, and no key to rebuild it
        return strip_masks(target.vector, seed, pair_seeds, client=target.cid, bits=self.params.bits)

    def gathered(self, owner: Session, colluders: Iterable[Session], holders: Iterable[Session]
                 ) -> tuple[dict[int, int], dict[int, int]]:
        """Every share of ``owner``'s secrets the server holds: those ``holders`` revealed at
        unmasking and those the colluders were given."""
        seeds, keys = self.revealed(holders, owner)
        for c in colluders:
            held = self.held(c, owner)
            if held is not None:
                x = self.params.x_coordinate(c.cid)
                seeds[x], keys[x] = held
        return seeds, keys

    def expose(self, target: Session, colluders: Iterable[Session],
               holders: Iterable[Session] = ()) -> tuple[npt.NDArray[np.unsignedinteger] | None, int, int]:
        """Everything the server holds of ``target``: the colluders' shares of its secrets, those
        ``holders`` (the target itself included) revealed at unmasking, and the mask keys of its
        peers that it can rebuild the same way. Returns the target's encoded input (or ``None``)
        and how many seed and key shares of the target were gathered."""
        accomplices = list(colluders)
        revealing = list(holders)
        seeds, keys = self.gathered(target, accomplices, revealing)
        peer_keys = {}
        for peer in target.given.values():
            if any(peer is c for c in accomplices):
                continue
            _, peer_shares = self.gathered(peer, accomplices, revealing)
            key = self.rebuild(peer_shares, lambda k, p=peer: kx.public_bytes(kx.private_from_bytes(k)) == p.mask_pk)
            if key is not None:
                peer_keys[peer.cid] = key
        encoded = self.unmask_target(target, seeds, keys, colluders=accomplices, peer_keys=peer_keys)
        return encoded, len(seeds), len(keys)

    def encoded(self, cid: int) -> npt.NDArray[np.unsignedinteger]:
        """What client ``cid``'s input is once encoded (the truth an attack is scored against)."""
        return self.config.encoding.encode(self.updates[cid])

    # -- the honest flow, for the sessions an attack leaves alone ------------------------------
    def neighbours(self, sess: Session, group: Iterable[Session], graph: NeighbourGraph | None) -> list[Session]:
        """The sessions of ``group`` that are ``sess``'s neighbours (everyone in the complete graph)."""
        peers = [o for o in group if o is not sess and o.cid != sess.cid]
        if graph is None:
            return peers
        near = graph.neighbours(sess.cid)
        return [o for o in peers if o.cid in near]

    def announced_graph(self) -> NeighbourGraph | None:
        """The graph of a semi-honest SecAgg+ round (the server's seed), else ``None``."""
        p = self.params
        if p.complete or p.active:
            return None
        return NeighbourGraph(p.roster, p.neighbours, self.graph_seed)

    def commit_graph(self, group: list[Session]) -> NeighbourGraph | None:
        """Active SecAgg+: show every session of ``group`` the same entries, collect the reveals,
        and return the graph they all derive (``None`` for the complete graph)."""
        p = self.params
        if not p.sparse_active:
            return self.announced_graph()
        table = self.entries(group)
        for s in group:
            self.graph(s, table)
        return NeighbourGraph(p.roster, p.neighbours, self.committed_seed(group))

    def share_honestly(self, sessions: Iterable[Session], group: list[Session], graph: NeighbourGraph | None) -> None:
        """Relay to each session its neighbours' advertisements among ``group`` (and every reveal
        of ``group`` in active SecAgg+)."""
        reveals = group if self.params.sparse_active else []
        for s in sessions:
            self.keys(s, self.neighbours(s, group, graph), reveals=reveals)

    def mutual(self, sess: Session, group: Iterable[Session]) -> list[Session]:
        """The sessions of ``group`` that exchanged shares with ``sess`` (both ways)."""
        return [o for o in group if o is not sess and sess.cid in o.shares and o.cid in sess.shares]

    def mask_honestly(self, sessions: Iterable[Session], group: list[Session]) -> None:
        for s in sessions:
            self.masked(s, self.mutual(s, group))
