"""The server side of a secure-aggregation round.

The server keeps one running sum of the masked inputs as they arrive (never every vector,
unless told to keep them for the view), and at unmasking regenerates only the masks it must
remove: each survivor's self-mask, and the pairwise masks between survivors and clients that
dropped after sharing keys. Each secret is rebuilt from ``threshold`` shares and checked: a
mask key against the public key its owner advertised, a self-mask seed against the
commitment its owner advertised. A share that does not fit is located among the extra shares
and left out; when no consistent set remains the round aborts, naming the owner: never a
wrong sum.

It also screens what one client could use against its peers: unusable or copied keys and
signatures of the wrong length exclude that client alone, and shares are relayed only
between pairs that both sent them (a client may refuse one peer's advertisement).
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from privagg.accumulator import RunningSum
from privagg.encoding.modular import add_mod, sub_mod
from privagg.errors import AggregationAborted, ProtocolViolation
from privagg.identity import SIGNATURE_BYTES
from privagg.interface import ServerSession
from privagg.messages import SERVER_ID, Message
from privagg.messages.codec import IdList
from secagg import keys as kx
from secagg import transcript as tx
from secagg.client import PROTOCOL, ZERO_SEED
from secagg.graph import NeighbourGraph
from secagg.messages import (
    COMMITMENT_BYTES,
    MAX_ROSTER,
    SHARE_CIPHERTEXT_BYTES,
    AdvertiseKeys,
    AdvertiseRequest,
    ConsistencyRequest,
    ConsistencySignature,
    EncryptedShares,
    GraphRequest,
    GraphReveal,
    KeysBroadcast,
    MaskedInput,
    MaskedInputRequest,
    UnmaskRequest,
    UnmaskShares,
)
from secagg.prg import expand_mask
from secagg.round import ADVERTISE, CONSISTENCY, GRAPH, MASKED, SHARE, UNMASK
from secagg.shamir import reconstruct_secret, share_from_bytes

if TYPE_CHECKING:
    from secagg.config import SecAgg

__all__ = ["SecAggServer"]

_EXPECTED: dict[str, type[Message]] = {
    ADVERTISE: AdvertiseKeys, GRAPH: GraphReveal, SHARE: EncryptedShares, MASKED: MaskedInput,
    CONSISTENCY: ConsistencySignature, UNMASK: UnmaskShares,
}
#: A bound on the interpolations spent on one secret whose rebuilt value misses its commitment.
_MAX_REBUILDS = 64


class SecAggServer(ServerSession):
    mode = "secagg"

    def __init__(self, config: SecAgg, client_ids: Iterable[int], round_id: int, dimension: int | None) -> None:
        super().__init__(client_ids, round_id)
        self.view.mode = config.mode
        self._config = config
        config.fixed_point.check_capacity(len(self.client_ids))
        self.params = config.admit(self.client_ids, dimension)
        self._bits = self.params.bits
        self._nonce = secrets.token_bytes(32)
        semi_honest_sparse = not self.params.active and not self.params.complete
        self.graph_seed = secrets.token_bytes(32) if semi_honest_sparse else ZERO_SEED
        self._header = tx.header_digest(self.params, round_id=self.round_id, protocol=PROTOCOL, nonce=self._nonce,
                                        graph_seed=self.graph_seed)
        self._graph: NeighbourGraph | None = (
            NeighbourGraph(self.params.roster, self.params.neighbours, self.graph_seed) if semi_honest_sparse else None)
        self._adverts: dict[int, bytes] = {}
        self._entries: dict[int, bytes] = {}
        self._reveals: dict[int, bytes] = {}
        self._seed_commitments: dict[int, bytes] = {}
        self._mutual: dict[int, frozenset[int]] = {}
        self._sum = RunningSum(self._bits)
        self._u1: frozenset[int] = frozenset()
        self._u2: frozenset[int] = frozenset()
        self._u3: tuple[int, ...] = ()
        self._signatures: dict[int, bytes] = {}
        self._require(len(self.client_ids), "clients in the roster")
        p = self.params
        self.view.facts.update(neighbours=str(p.neighbours), threshold=str(p.threshold),
                               quorum=str(p.signatures_needed), security="active" if p.active else "semi-honest")
        if semi_honest_sparse:
            self.view.facts["graph_seed"] = self.graph_seed.hex()
        request = dict(roster=p.roster, graph_seed=self.graph_seed, nonce=self._nonce, neighbours=p.neighbours,
                       threshold=p.threshold, quorum=p.signatures_needed, bits=p.bits, dimension=p.dimension,
                       active=p.active, protocol=PROTOCOL)
        self._enter(ADVERTISE, {cid: AdvertiseRequest(self.round_id, SERVER_ID, cid, **request)
                                for cid in self.client_ids})

    @property
    def graph(self) -> dict[int, frozenset[int]]:
        """The realised neighbour graph (once fixed; the complete graph as sets on demand)."""
        if self._graph is None:
            everyone = frozenset(self.client_ids)
            return {cid: everyone - {cid} for cid in self.client_ids}
        return self._graph.full()

    @property
    def header(self) -> bytes:
        """The digest of the announced round (public: every party computes it)."""
        return self._header

    @property
    def mutual(self) -> dict[int, frozenset[int]]:
        """Who exchanged shares with whom (the pairs that mask), once the share stage is over."""
        return dict(self._mutual)

    def _neighbours_in(self, cid: int, live: Iterable[int]) -> frozenset[int]:
        live = frozenset(live)
        if self._graph is None:
            return live - {cid}
        return self._graph.neighbours(cid) & live

    def _require(self, count: int, what: str, ids: Iterable[int] = ()) -> None:
        if count < self.params.threshold:
            raise AggregationAborted(
                f"only {count} {what}, below the threshold of {self.params.threshold}", ids)

    def _expected(self, stage: str) -> type[Message]:
        return _EXPECTED[stage]

    def _kept_in_view(self, message: Message) -> Message | None:
        if isinstance(message, MaskedInput) and not self._config.keep_masked_inputs:
            return None
        return message

    # -- checks on each reply ------------------------------------------------------------------
    def _accept(self, client_id: int, message: Message) -> None:
        if isinstance(message, AdvertiseKeys):
            self._accept_advert(client_id, message)
        elif isinstance(message, GraphReveal):
            if tx.nonce_commitment(self._header, client_id, message.reveal) != self._entries[client_id][32:]:
                raise ProtocolViolation(f"client {client_id}'s reveal does not open its commitment")
        elif isinstance(message, EncryptedShares):
            expected = self._neighbours_in(client_id, self._u1)
            stray = set(message.shares) - expected
            if stray:
                raise ProtocolViolation(f"client {client_id} sent shares for {sorted(stray)[:5]}, "
                                        f"not among its live neighbours")
            if len(message.shares) < self.params.min_live:
                raise ProtocolViolation(f"client {client_id} shared with {len(message.shares)} peers, "
                                        f"{self.params.min_live} needed")
            if any(len(c) != SHARE_CIPHERTEXT_BYTES for c in message.shares.values()):
                raise ProtocolViolation(f"client {client_id} sent a share ciphertext of the wrong length")
        elif isinstance(message, MaskedInput):
            vector = message.vector
            if vector.shape != (self.params.dimension,):
                raise ProtocolViolation(f"client {client_id} sent {vector.shape[0]} values, the round has "
                                        f"{self.params.dimension}")
            self._sum.add(client_id, vector)
        elif isinstance(message, ConsistencySignature):
            if len(message.signature) != SIGNATURE_BYTES:
                raise ProtocolViolation(f"client {client_id} sent a malformed signature")
        elif isinstance(message, UnmaskShares):
            holders = self._mutual[client_id] | {client_id}
            want_seeds = holders & set(self._u3)
            want_keys = holders - set(self._u3)
            if set(message.seed_shares) != want_seeds or set(message.key_shares) != want_keys:
                raise ProtocolViolation(f"client {client_id} revealed shares for the wrong clients")
            for data in itertools.chain(message.seed_shares.values(), message.key_shares.values()):
                try:
                    share_from_bytes(data)
                except ValueError as exc:
                    raise ProtocolViolation(f"client {client_id} revealed an invalid share: {exc}") from None

    def _accept_advert(self, client_id: int, message: AdvertiseKeys) -> None:
        active = self.params.active
        if active and (len(message.signature) != SIGNATURE_BYTES or len(message.nonce_commitment) != COMMITMENT_BYTES):
            raise ProtocolViolation(f"client {client_id} advertised unsigned or uncommitted keys in an active round")
        if not active and (message.signature or message.nonce_commitment):
            raise ProtocolViolation(f"client {client_id} advertised a signature in a semi-honest round")
        if message.cipher_pk == message.mask_pk:
            raise ProtocolViolation(f"client {client_id} advertised the same key twice")
        kx.check_public_key(message.cipher_pk, client_id)
        kx.check_public_key(message.mask_pk, client_id)

    # -- stage transitions ---------------------------------------------------------------------
    def _advance(self, answers: dict[int, Message]) -> None:
        {ADVERTISE: self._after_advertise, GRAPH: self._after_graph, SHARE: self._after_share,
         MASKED: self._after_masked, CONSISTENCY: self._after_consistency,
         UNMASK: self._after_unmask}[self.stage](answers)

    def _after_advertise(self, answers: dict[int, Message]) -> None:
        # Copied keys: whoever holds them, neither owner can be told apart; both are left out.
        owners: dict[bytes, list[int]] = {}
        for cid, msg in answers.items():
            assert isinstance(msg, AdvertiseKeys)
            for key in (msg.cipher_pk, msg.mask_pk):
                owners.setdefault(key, []).append(cid)
        copied = {cid for ids in owners.values() if len(ids) > 1 for cid in ids}
        for cid in sorted(copied):
            self._exclude(cid)
        live = {cid: msg for cid, msg in answers.items() if cid not in copied}
        self._require(len(live), "clients advertised usable keys", live)
        if self.params.active and len(live) < self.params.signatures_needed:
            raise AggregationAborted(f"only {len(live)} clients advertised keys, the quorum is "
                                     f"{self.params.signatures_needed}", live)
        for cid, msg in live.items():
            assert isinstance(msg, AdvertiseKeys)
            self._adverts[cid] = (msg.cipher_pk + msg.mask_pk + msg.seed_commitment + msg.nonce_commitment
                                  + msg.signature)
            self._seed_commitments[cid] = msg.seed_commitment
            self._entries[cid] = tx.advert_digest(self._header, cid, msg.cipher_pk, msg.mask_pk,
                                                  msg.seed_commitment) + msg.nonce_commitment
        self._u1 = frozenset(live)
        if self.params.sparse_active:
            self._enter(GRAPH, {cid: GraphRequest(self.round_id, SERVER_ID, cid, self._entries)
                                for cid in sorted(self._u1)})
        else:
            self._broadcast_keys()

    def _after_graph(self, answers: dict[int, Message]) -> None:
        missing = sorted(self._u1 - set(answers))
        if missing:
            # Leaving a committed client out after seeing the others' reveals would let the server
            # pick among graphs: the round aborts instead (a new session draws a new graph).
            raise AggregationAborted(f"clients {missing[:5]} did not reveal their commitments; the graph seed "
                                     f"needs every one", missing)
        self._reveals = {cid: msg.reveal for cid, msg in answers.items()}  # type: ignore[attr-defined]
        seed = tx.graph_seed(self._header, self._entries, [self._reveals[c] for c in sorted(self._reveals)])
        self.graph_seed = seed
        self.view.facts["graph_seed"] = seed.hex()
        self._graph = NeighbourGraph(self.params.roster, self.params.neighbours, seed)
        self._broadcast_keys()

    def _broadcast_keys(self) -> None:
        reveals = self._reveals
        outbox = {}
        for cid in sorted(self._u1):
            members = self._neighbours_in(cid, self._u1)
            if len(members) >= self.params.min_live:
                keys = {m: self._adverts[m] for m in members | {cid}}
                outbox[cid] = KeysBroadcast(self.round_id, SERVER_ID, cid, keys, reveals)
        self._enter_live(SHARE, outbox, self._u1, "clients with enough live neighbours")

    def _after_share(self, answers: dict[int, Message]) -> None:
        self._require(len(answers), "clients shared their keys", answers)
        sent = {cid: msg.shares for cid, msg in answers.items()}  # type: ignore[attr-defined]
        # Shares travel only between pairs that both sent them: one client refusing a peer's
        # advertisement removes that edge on both sides, and nothing else.
        self._mutual = {cid: frozenset(peer for peer in shares if peer in sent and cid in sent[peer])
                        for cid, shares in sent.items()}
        self._u2 = frozenset(answers)
        self._enter_live(MASKED, {
            cid: MaskedInputRequest(self.round_id, SERVER_ID, cid,
                                    {peer: sent[peer][cid] for peer in self._mutual[cid]})
            for cid in sorted(answers) if len(self._mutual[cid]) >= self.params.min_live
        }, answers, "clients with enough live share holders")

    def _enter_live(self, stage: str, outbox: dict[int, Message], answered: Iterable[int], what: str) -> None:
        """Enter ``stage``; clients that answered but get no message (too few live neighbours to
        rebuild their secrets) are dropped now rather than awaited."""
        self._enter(stage, outbox)
        for cid in sorted(set(answered) - set(outbox)):
            self._exclude(cid)
        self._require(len(outbox), what, outbox)

    def _after_masked(self, answers: dict[int, Message]) -> None:
        self._require(len(answers), "clients sent masked inputs", answers)
        # Checked once: the same survivor tuple goes to every survivor (O(n) per message, not a
        # per-id check each).
        self._u3 = IdList(MAX_ROSTER).check("survivors", sorted(answers))
        if self.params.active:
            if len(self._u3) < self.params.signatures_needed:
                raise AggregationAborted(f"only {len(self._u3)} clients sent masked inputs, the quorum is "
                                         f"{self.params.signatures_needed}", answers)
            # Every survivor needs t live neighbours among the survivors (it refuses otherwise, and
            # then no one can rebuild its self-mask seed): the round cannot finish without them.
            survivors = frozenset(self._u3)
            short = [cid for cid in self._u3 if len(self._mutual[cid] & survivors) < self.params.min_live]
            if short:
                raise AggregationAborted(f"clients {short[:5]} kept fewer than {self.params.min_live} live "
                                         f"neighbours among the survivors", short)
            self._enter(CONSISTENCY, {cid: ConsistencyRequest(self.round_id, SERVER_ID, cid, self._u3)
                                      for cid in self._u3})
        else:
            self._enter(UNMASK, {cid: UnmaskRequest(self.round_id, SERVER_ID, cid, self._u3, {})
                                 for cid in self._u3})

    def _after_consistency(self, answers: dict[int, Message]) -> None:
        if len(answers) < self.params.signatures_needed:
            raise AggregationAborted(
                f"only {len(answers)} clients signed the survivor set, {self.params.signatures_needed} needed",
                answers)
        self._signatures = {cid: msg.signature for cid, msg in answers.items()}  # type: ignore[attr-defined]
        self._enter(UNMASK, {cid: UnmaskRequest(self.round_id, SERVER_ID, cid, self._u3, self._signatures)
                             for cid in sorted(answers)})

    def _after_unmask(self, answers: dict[int, Message]) -> None:
        self._require(len(answers), "clients answered the unmasking request", answers)
        seed_shares: dict[int, dict[int, int]] = {cid: {} for cid in self._u3}
        key_shares: dict[int, dict[int, int]] = {cid: {} for cid in self._u2 - set(self._u3)}
        for holder, msg in answers.items():
            assert isinstance(msg, UnmaskShares)
            x = self.params.x_coordinate(holder)
            for owner, data in msg.seed_shares.items():
                seed_shares[owner][x] = share_from_bytes(data)
            for owner, data in msg.key_shares.items():
                key_shares[owner][x] = share_from_bytes(data)
        total = self._sum.total
        assert total is not None
        bits, length = self._bits, total.shape[0]
        for owner in sorted(seed_shares):
            commitment = self._seed_commitments[owner]
            seed = self._rebuild(owner, seed_shares[owner], "self-mask seed",
                                 lambda s, o=owner, c=commitment: tx.seed_commitment(self._header, o, s) == c)
            sub_mod(total, expand_mask(seed, length, bits), bits)
        survivors = set(self._u3)
        for owner in sorted(key_shares):
            public = self._adverts[owner][32:64]
            raw = self._rebuild(owner, key_shares[owner], "mask key",
                                lambda s, p=public: kx.public_bytes(kx.private_from_bytes(s)) == p)
            private = kx.private_from_bytes(raw)
            for peer in sorted(self._mutual[owner] & survivors):
                secret = kx.pair_secret(private, kx.public_from_bytes(self._adverts[peer][32:64], peer), peer)
                mask = expand_mask(kx.mask_seed(secret, self._header, owner, peer), length, bits)
                # The survivor added +mask if its id is the smaller one, -mask otherwise: undo it.
                (sub_mod if peer < owner else add_mod)(total, mask, bits)
        aggregate = self._config.fixed_point.decode(total, clients=len(self._u3))
        self._finish(aggregate, self._u3, encoded=total,
                     info={"threshold": self.params.threshold, "neighbours": self.params.neighbours,
                           "graph_seed": self.graph_seed.hex()})

    def _rebuild(self, owner: int, shares: dict[int, int], what: str, fits: Callable[[bytes], bool]) -> bytes:
        """The secret of ``owner`` from its shares, checked by ``fits`` (its commitment). With
        extra shares, a few other ``t``-subsets are tried so that one bad share is left out."""
        t = self.params.threshold
        if len(shares) < t:
            raise AggregationAborted(
                f"only {len(shares)} shares of client {owner}'s {what} arrived, {t} needed", [owner])
        xs = sorted(shares)
        # The first t shares, then the first t once each share is left out: one bad share among
        # t + 1 or more is always skipped, in at most len(xs) + 1 interpolations.
        candidates = [xs[:t]] + [(xs[:i] + xs[i + 1:])[:t] for i in range(min(len(xs), t)) if len(xs) > t]
        for subset in candidates[:_MAX_REBUILDS]:
            try:
                secret = reconstruct_secret({x: shares[x] for x in subset}, t)
            except ValueError:
                continue
            if fits(secret):
                return secret
        raise AggregationAborted(f"the shares of client {owner}'s {what} are inconsistent with its commitment",
                                 [owner])
