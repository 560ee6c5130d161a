"""The server side of a secure-aggregation round.

The server keeps one running sum of the masked inputs as they arrive (never every vector,
unless told to keep them for the view), and at unmasking regenerates only the masks it must
remove: each survivor's self-mask, and the pairwise masks between survivors and clients that
dropped after sharing keys. Each secret is rebuilt from ``threshold`` shares, and a rebuilt
mask key is checked against the public key its owner advertised, so inconsistent shares abort
the round instead of yielding a wrong sum.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from typing import TYPE_CHECKING


from privagg.accumulator import RunningSum
from privagg.encoding.modular import add_mod, sub_mod
from privagg.errors import AggregationAborted, ProtocolViolation
from privagg.interface import ServerSession
from privagg.messages import SERVER_ID, Message
from secagg import keys as kx
from secagg.client import PROTOCOL
from secagg.config import ADVERTISE, CONSISTENCY, MASKED, SHARE, UNMASK
from secagg.graph import neighbour_graph
from secagg.messages import (
    SHARE_CIPHERTEXT_BYTES,
    AdvertiseKeys,
    AdvertiseRequest,
    ConsistencyRequest,
    ConsistencySignature,
    EncryptedShares,
    KeysBroadcast,
    MaskedInput,
    MaskedInputRequest,
    UnmaskRequest,
    UnmaskShares,
)
from secagg.prg import expand_mask
from secagg.shamir import reconstruct_secret, share_from_bytes

if TYPE_CHECKING:
    from secagg.config import SecAgg

__all__ = ["SecAggServer"]

_EXPECTED: dict[str, type[Message]] = {
    ADVERTISE: AdvertiseKeys, SHARE: EncryptedShares, MASKED: MaskedInput,
    CONSISTENCY: ConsistencySignature, UNMASK: UnmaskShares,
}


class SecAggServer(ServerSession):
    mode = "secagg"

    def __init__(self, config: SecAgg, client_ids: Iterable[int], round_id: int) -> None:
        super().__init__(client_ids, round_id)
        self.view.mode = config.mode
        self._config = config
        self._bits = config.fixed_point.bits
        config.fixed_point.check_capacity(len(self.client_ids))
        self.params = config.parameters(self.client_ids)
        self.graph_seed = secrets.token_bytes(32)
        self.graph = neighbour_graph(self.client_ids, self.params.neighbours, self.graph_seed)
        self._keys: dict[int, bytes] = {}
        self._shares: dict[int, dict[int, bytes]] = {}
        self._sum = RunningSum(self._bits)
        self._u2: frozenset[int] = frozenset()
        self._u3: tuple[int, ...] = ()
        self._signatures: dict[int, bytes] = {}
        self._require(len(self.client_ids), "clients in the roster")
        request = dict(roster=self.client_ids, graph_seed=self.graph_seed, neighbours=self.params.neighbours,
                       threshold=self.params.threshold, bits=self._bits, active=config.active, protocol=PROTOCOL)
        self._enter(ADVERTISE, {cid: AdvertiseRequest(self.round_id, SERVER_ID, cid, **request)
                                for cid in self.client_ids})

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
            if self._config.active and len(message.signature) != 64:
                raise ProtocolViolation(f"client {client_id} advertised unsigned keys in an active round")
        elif isinstance(message, EncryptedShares):
            expected = (self.graph[client_id] & self._u1) - {client_id}
            if set(message.shares) != expected:
                raise ProtocolViolation(f"client {client_id} sent shares for {len(message.shares)} peers, "
                                        f"expected its {len(expected)} live neighbours")
            if any(len(c) != SHARE_CIPHERTEXT_BYTES for c in message.shares.values()):
                raise ProtocolViolation(f"client {client_id} sent a share ciphertext of the wrong length")
        elif isinstance(message, MaskedInput):
            self._sum.add(client_id, message.vector)
        elif isinstance(message, UnmaskShares):
            holders = (self.graph[client_id] & self._u2) | {client_id}
            want_seeds = holders & set(self._u3)
            want_keys = holders - set(self._u3)
            if set(message.seed_shares) != want_seeds or set(message.key_shares) != want_keys:
                raise ProtocolViolation(f"client {client_id} revealed shares for the wrong clients")

    # -- stage transitions ---------------------------------------------------------------------
    def _advance(self, answers: dict[int, Message]) -> None:
        stage = self.stage
        if stage == ADVERTISE:
            self._after_advertise(answers)
        elif stage == SHARE:
            self._after_share(answers)
        elif stage == MASKED:
            self._after_masked(answers)
        elif stage == CONSISTENCY:
            self._after_consistency(answers)
        else:
            self._after_unmask(answers)

    def _after_advertise(self, answers: dict[int, Message]) -> None:
        self._require(len(answers), "clients advertised keys", answers)
        for cid, msg in answers.items():
            assert isinstance(msg, AdvertiseKeys)
            self._keys[cid] = msg.cipher_pk + msg.mask_pk + msg.signature
        self._u1 = frozenset(answers)
        self._enter_live(SHARE, {
            cid: KeysBroadcast(self.round_id, SERVER_ID, cid, {m: self._keys[m] for m in members})
            for cid in sorted(answers) for members in [(self.graph[cid] & self._u1) | {cid}]
            if len(members) >= self.params.threshold}, answers, "clients with enough live neighbours")

    def _after_share(self, answers: dict[int, Message]) -> None:
        self._require(len(answers), "clients shared their keys", answers)
        self._u2 = frozenset(answers)
        inbox: dict[int, dict[int, bytes]] = {cid: {} for cid in answers}
        for sender, msg in answers.items():
            assert isinstance(msg, EncryptedShares)
            for recipient, ciphertext in msg.shares.items():
                if recipient in inbox:
                    inbox[recipient][sender] = ciphertext
        self._enter_live(MASKED, {
            cid: MaskedInputRequest(self.round_id, SERVER_ID, cid, inbox[cid])
            for cid in sorted(answers) if len(inbox[cid]) + 1 >= self.params.threshold
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
        self._u3 = tuple(sorted(answers))
        if self._config.active:
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
        t = self.params.threshold
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
            seed = self._rebuild(owner, seed_shares[owner], t, "self-mask seed")
            sub_mod(total, expand_mask(seed, length, bits), bits)
        survivors = set(self._u3)
        for owner in sorted(key_shares):
            private = kx.private_from_bytes(self._rebuild(owner, key_shares[owner], t, "mask key"))
            if kx.public_bytes(private) != self._keys[owner][32:64]:
                raise AggregationAborted(f"the rebuilt mask key of client {owner} does not match its public key "
                                         f"(inconsistent shares)", [owner])
            for peer in sorted(self.graph[owner] & survivors):
                secret = kx.pair_secret(private, kx.public_from_bytes(self._keys[peer][32:64], peer), peer)
                mask = expand_mask(kx.mask_seed(secret, self.round_id, owner, peer), length, bits)
                # The survivor added +mask if its id is the smaller one, -mask otherwise: undo it.
                (sub_mod if peer < owner else add_mod)(total, mask, bits)
        aggregate = self._config.fixed_point.decode(total, clients=len(self._u3))
        self._finish(aggregate, self._u3, encoded=total,
                     info={"threshold": t, "neighbours": self.params.neighbours})

    def _rebuild(self, owner: int, shares: dict[int, int], t: int, what: str) -> bytes:
        if len(shares) < t:
            raise AggregationAborted(
                f"only {len(shares)} shares of client {owner}'s {what} arrived, {t} needed", [owner])
        try:
            return reconstruct_secret(shares, t)
        except ValueError:
            raise AggregationAborted(f"the shares of client {owner}'s {what} are inconsistent", [owner]) from None
