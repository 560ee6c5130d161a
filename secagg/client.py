"""The client side of a secure-aggregation round, as a state machine.

A client answers only a round it can check against its own configuration, and reveals, per
peer, either the self-mask seed share (peer survived) or the mask-key share (peer dropped),
never both. Each check below stops a named attack by a server that deviates (possibly with
colluding clients); ``tests/test_secagg_attacks.py`` drives each attack against the real
sessions.

Advertise (every mode):

* The announced roster must be sorted, contain this client, lie within ``[min_clients,
  max_clients]`` and (active) within the client's own :class:`~privagg.identity.Roster`; ``k``,
  ``t``, the quorum and the vector length are recomputed from the client's configuration and
  must equal what is announced. Stops *roster shrink* (a roster of the target alone gives
  ``t = 1``: its own share is its seed) and lowered thresholds.
* Every key, mask and share encryption is derived under ``H0``, the digest of that header and
  the server's nonce; a commitment to the self-mask seed goes out with the keys, so the seed
  the server rebuilds is checked and one wrong share can never give a wrong sum "exactly".
* Active: the client also commits to fresh randomness ``c = H(r)`` and signs ``(H0, model
  digest, keys, c)`` with its long-term key.

Graph (active SecAgg+): the server sends every advertised entry ``(K_j, c_j)``, fixing the
session before anyone reveals; the client checks its own entry and reveals ``r``. With every
reveal (checked against its commitment), each client derives the graph seed itself. The
server cannot choose the graph: it only sees the seed after every commitment is fixed, and a
missing reveal aborts the round (restarting costs a whole new session per try; see
:mod:`secagg.parameters` for what that buys an adversary). Stops *graph-seed grinding*.

Share keys: only neighbours' advertisements may be relayed, unchanged for this client's own;
(active) each must carry a valid signature of its owner over this session's header and this
client's own model digest (stops *key substitution* and *model inconsistency*) and match its
entry. A peer whose advertisement is bad (low-order key, bad signature, copied keys) is
refused alone: the pair simply shares no mask, and the server relays only mutual shares. At
least ``t`` live neighbours must remain in active mode, so with fewer than ``t`` colluding
neighbours an honest one is always among them (stops *neighbour omission*).

Shares (active) are encrypted under the session digest ``S`` as associated data: a client holds
shares only of peers that saw exactly its view, and a view holds one session per identity.
Stops the *second-session split*: the server reruns the same announced round for some clients
(same header, fresh keys) so that their second sessions sign a conflicting survivor set in a
second view; without the binding, clients of that second view held the target's shares.

Consistency (active): the survivor set is signed over the session digest ``S``, which covers
every entry of this session including this client's fresh commitment; unmasking needs the
quorum (two thirds of the roster, at least ``t``) of valid signatures on this exact ``S`` and
set, and at least ``t`` of this client's live neighbours among the survivors. Signatures from
earlier sessions never verify (stops *replay*), and two conflicting survivor sets cannot both
gather the quorum while fewer than a third collude (stops *forged dropouts*).

Masked input: once per input across sessions and rounds (:mod:`privagg.ledger`). Stops the
*difference of two sessions* (the same update summed twice, the target dropping from the
second: the two sums differ by its update), whatever round id, digest or unmasking split.

Unmask: one answer per session, whatever comes next.

Cost: O(k) key agreements, shares and masks; semi-honest clients also read and hash the
roster (8 bytes a client). Active clients verify O(n) signatures and reveals (the quorum is a
fraction of the roster), which dominates for large rosters.
"""

from __future__ import annotations

import bisect
import secrets
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from privagg.encoding.modular import add_mod, sub_mod
from privagg.encoding.structure import flatten
from privagg.errors import ConfigurationError, InsecureParameters, ProtocolViolation
from privagg.identity import SIGNATURE_BYTES, Roster, SigningKey
from privagg.interface import ClientSession
from privagg.ledger import contribution_key
from privagg.messages import SERVER_ID, Message
from secagg import keys as kx
from secagg import transcript as tx
from secagg.graph import NeighbourGraph
from secagg.messages import (
    COMMITMENT_BYTES,
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
    advert_bytes,
)
from secagg.prg import expand_mask
from secagg.shamir import SHARE_BYTES, share_from_bytes, share_to_bytes, split_secret

if TYPE_CHECKING:
    from secagg.config import SecAgg
    from secagg.round import RoundParameters

__all__ = ["SecAggClient", "PROTOCOL", "ZERO_SEED"]

PROTOCOL = "bonawitz2017/v2"
ZERO_SEED = bytes(32)


def _sorted_contains(ids: Sequence[int], cid: int) -> bool:
    i = bisect.bisect_left(ids, cid)
    return i < len(ids) and ids[i] == cid


class SecAggClient(ClientSession):
    def __init__(self, config: SecAgg, client_id: int, update: Any, *, round_id: int, seed: int | None,
                 signing_key: SigningKey | None, model_digest: bytes) -> None:
        super().__init__(client_id, round_id)
        if not isinstance(model_digest, (bytes, bytearray)) or len(model_digest) != 32:
            raise ConfigurationError("model_digest must be 32 bytes (e.g. SHA-256 of the global model)")
        self._config = config
        vector, self.spec = flatten(update)
        if config.dimension is not None and vector.shape[0] != config.dimension:
            raise ConfigurationError(f"the update has {vector.shape[0]} values, the configuration {config.dimension}")
        self._input = config.fixed_point.encode(vector, seed=seed)
        # The ledger keys on the update itself, before encoding: stochastic rounding or another
        # scale would make the same update a "new" input (privagg.ledger).
        self._update_bytes = np.ascontiguousarray(vector, dtype="<f8").tobytes()
        self._signing_key = signing_key
        self._digest = bytes(model_digest)
        self._state = "advertise"
        self._params: RoundParameters | None = None
        self._trusted: Roster | None = None
        self._header = b""
        self._session = b""
        self._graph: NeighbourGraph | None = None
        self._neighbours: frozenset[int] | None = None  # None: the complete graph
        self._cipher_key = kx.generate_key_pair()
        self._mask_key = kx.generate_key_pair()
        self._self_seed = secrets.token_bytes(32)
        self._reveal = b""
        self._entry = b""
        self._entries: dict[int, bytes] = {}
        # peer -> (cipher secret, mask secret): the two X25519 agreements with each accepted peer,
        # made once when its advertisement is checked (a low-order key fails them there).
        self._peer_secrets: dict[int, tuple[bytes, bytes]] = {}
        self._share_keys: dict[int, bytes] = {}
        self._accepted: frozenset[int] = frozenset()  # peers this client sent shares to
        self._refused: frozenset[int] = frozenset()  # relayed peers whose advertisement it refused
        self._live: frozenset[int] = frozenset()  # peers with mutual shares (U2 as this client saw it)
        self._held: dict[int, tuple[int, int]] = {}  # owner -> (seed share, key share) we hold
        self._survivors: tuple[int, ...] | None = None

    @property
    def finished(self) -> bool:
        return self._state in ("done", "aborted")

    def __reduce__(self) -> None:  # type: ignore[override]
        raise TypeError("a client session holds secret keys and cannot be pickled")

    def respond(self, message: bytes | Message) -> Message:
        handlers = {
            "advertise": (AdvertiseRequest, self._advertise),
            "graph": (GraphRequest, self._graph_reveal),
            "share": (KeysBroadcast, self._share),
            "masked": (MaskedInputRequest, self._masked_input),
            "consistency": (ConsistencyRequest, self._consistency),
            "unmask": ((ConsistencyRequest, UnmaskRequest), self._unmask),
        }
        if self._state not in handlers:
            raise ProtocolViolation(f"client {self.client_id} has finished round {self.round_id} ({self._state})")
        expected, handler = handlers[self._state]
        if self._state == "unmask" and not self._config.active:
            expected = UnmaskRequest
        msg = self._parse(message, expected)  # a stray or malformed message leaves the session as it was
        try:
            return handler(msg)
        except ProtocolViolation:
            self._state = "aborted"
            raise

    @property
    def _p(self) -> RoundParameters:
        assert self._params is not None
        return self._params

    @property
    def _share_context(self) -> bytes:
        """What shares are bound to: in active rounds the whole session digest ``S``, so a
        client holds shares only from peers that saw exactly its view of the session (one
        session per identity: a second session of a client under the same header is another
        view, and neither its signature nor its shares count in this one)."""
        return self._session if self._p.active else self._header

    def _is_neighbour(self, cid: int) -> bool:
        if cid == self.client_id or cid not in self._p:
            return False
        return self._neighbours is None or cid in self._neighbours

    # -- stage 0: advertise keys ---------------------------------------------------------------
    def _advertise(self, msg: AdvertiseRequest) -> AdvertiseKeys:
        roster = msg.roster  # the codec only yields strictly increasing id lists
        try:
            params = self._config.admit(roster, dimension=self._input.shape[0])
        except (ConfigurationError, InsecureParameters) as exc:
            raise ProtocolViolation(f"client {self.client_id} refuses the announced round: {exc}") from None
        if self.client_id not in params:
            raise ProtocolViolation(f"client {self.client_id} is not in the announced roster")
        announced = (msg.neighbours, msg.threshold, msg.quorum, msg.bits, msg.dimension, msg.active, msg.protocol)
        own = (params.neighbours, params.threshold, params.signatures_needed, params.bits, params.dimension,
               params.active, PROTOCOL)
        if announced != own:
            raise ProtocolViolation(
                f"server announced (neighbours, threshold, quorum, bits, dimension, active, protocol) = "
                f"{announced}, this client is configured for {own}")
        semi_honest_sparse = not params.active and not params.complete
        if not semi_honest_sparse and msg.graph_seed != ZERO_SEED:
            raise ProtocolViolation("a graph seed was announced for a round whose graph the server may not choose")
        self._params = params
        self._trusted = self._config.trusted_roster()
        self._header = tx.header_digest(params, round_id=self.round_id, protocol=PROTOCOL, nonce=msg.nonce,
                                        graph_seed=msg.graph_seed)
        if semi_honest_sparse:
            self._graph = NeighbourGraph(params.roster, params.neighbours, msg.graph_seed)
            self._neighbours = self._graph.neighbours(self.client_id)
        cipher_pk, mask_pk = kx.public_bytes(self._cipher_key), kx.public_bytes(self._mask_key)
        seed_commitment = tx.seed_commitment(self._header, self.client_id, self._self_seed)
        advert = tx.advert_digest(self._header, self.client_id, cipher_pk, mask_pk, seed_commitment)
        nonce_commitment = signature = b""
        if params.active:
            assert self._signing_key is not None
            self._reveal = secrets.token_bytes(COMMITMENT_BYTES)
            nonce_commitment = tx.nonce_commitment(self._header, self.client_id, self._reveal)
            signature = self._signing_key.sign(tx.advertise_payload(self._header, self._digest, advert,
                                                                    nonce_commitment))
        self._own_advert = cipher_pk + mask_pk + seed_commitment + nonce_commitment + signature
        self._entry = advert + nonce_commitment
        self._state = "graph" if params.sparse_active else "share"
        return AdvertiseKeys(self.round_id, self.client_id, SERVER_ID, cipher_pk, mask_pk, seed_commitment,
                             nonce_commitment, signature)

    # -- stage 0b (active SecAgg+): fix the session, then reveal ----------------------------------
    def _graph_reveal(self, msg: GraphRequest) -> GraphReveal:
        params = self._p
        entries = msg.entries
        if entries.get(self.client_id) != self._entry:
            raise ProtocolViolation("the session's entries omit or alter this client's advertisement")
        outside = [cid for cid in entries if cid not in params]
        if outside:
            raise ProtocolViolation(f"the session names clients {outside[:5]} outside the roster")
        if len(entries) < params.signatures_needed:
            raise ProtocolViolation(f"only {len(entries)} clients advertised; the quorum is {params.signatures_needed}")
        self._entries = dict(entries)
        self._session = tx.session_digest(self._header, self._digest, self._entries)
        self._state = "share"
        return GraphReveal(self.round_id, self.client_id, SERVER_ID, self._reveal)

    def _derive_graph(self, reveals: dict[int, bytes]) -> None:
        params = self._p
        if set(reveals) != set(self._entries):
            raise ProtocolViolation("the graph seed needs the reveal of every committed client, and no other")
        for cid in sorted(reveals):
            if tx.nonce_commitment(self._header, cid, reveals[cid]) != self._entries[cid][32:]:
                raise ProtocolViolation(f"client {cid}'s reveal does not open its commitment")
        seed = tx.graph_seed(self._header, self._entries, [reveals[c] for c in sorted(reveals)])
        self._graph = NeighbourGraph(params.roster, params.neighbours, seed)
        self._neighbours = self._graph.neighbours(self.client_id)

    # -- stage 1: share keys -------------------------------------------------------------------
    def _share(self, msg: KeysBroadcast) -> EncryptedShares:
        params = self._p
        if params.sparse_active:
            self._derive_graph(msg.reveals)
        elif msg.reveals:
            raise ProtocolViolation("reveals were relayed in a round without a committed graph seed")
        if msg.keys.get(self.client_id) != self._own_advert:
            raise ProtocolViolation("the server did not relay this client's own advertisement unchanged")
        strangers = [cid for cid in msg.keys if cid != self.client_id and not self._is_neighbour(cid)]
        if strangers:
            raise ProtocolViolation(f"advertisements of non-neighbours {sorted(strangers)[:5]} were relayed")
        expected_len = advert_bytes(params.active)
        if params.active and params.complete:
            # The complete graph: every advertisement is here, so the session digest is too.
            self._entries = {}
            for cid, blob in msg.keys.items():
                if len(blob) == expected_len:
                    self._entries[cid] = tx.advert_digest(self._header, cid, blob[:32], blob[32:64],
                                                          blob[64:96]) + blob[96:128]
            self._session = tx.session_digest(self._header, self._digest, self._entries)
        accepted, seen = [], {self._own_advert[:32], self._own_advert[32:64]}
        for cid in sorted(msg.keys):
            if cid == self.client_id:
                continue
            keys = self._peer_advert(cid, msg.keys[cid], expected_len, seen)
            if keys is not None:
                self._peer_secrets[cid] = keys
                accepted.append(cid)
        if len(accepted) < params.min_live:
            raise ProtocolViolation(f"only {len(accepted)} usable neighbours, {params.min_live} needed")
        holders = [self.client_id] + accepted
        xs = [params.x_coordinate(c) for c in holders]
        seed_shares = split_secret(self._self_seed, xs, params.threshold)
        key_shares = split_secret(kx.private_bytes(self._mask_key), xs, params.threshold)
        self._held[self.client_id] = (seed_shares[xs[0]], key_shares[xs[0]])
        out: dict[int, bytes] = {}
        for cid, x in zip(accepted, xs[1:]):
            secret = self._peer_secrets[cid][0]
            key = kx.share_key(secret, self._header, self.client_id, cid)
            self._share_keys[cid] = key
            plaintext = share_to_bytes(seed_shares[x]) + share_to_bytes(key_shares[x])
            out[cid] = kx.encrypt_share(key, plaintext, session=self._share_context, sender=self.client_id,
                                        recipient=cid)
        self._accepted = frozenset(accepted)
        self._refused = frozenset(msg.keys) - self._accepted - {self.client_id}
        self._state = "masked"
        return EncryptedShares(self.round_id, self.client_id, SERVER_ID, out)

    def _peer_advert(self, cid: int, blob: bytes, expected_len: int,
                     seen: set[bytes]) -> tuple[bytes, bytes] | None:
        """The two key agreements with a neighbour, or None when its advertisement is unusable:
        that peer alone is refused (no shares, no mask between the two), the round goes on."""
        if len(blob) != expected_len:
            return None
        cipher_pk, mask_pk = blob[:32], blob[32:64]
        if cipher_pk in seen or mask_pk in seen or cipher_pk == mask_pk:
            return None  # copied keys: their owner could not use them, nor should we
        params = self._p
        if params.active:
            assert self._trusted is not None
            advert = tx.advert_digest(self._header, cid, cipher_pk, mask_pk, blob[64:96])
            nonce_commitment, signature = blob[96:128], blob[128:128 + SIGNATURE_BYTES]
            if params.sparse_active and self._entries.get(cid) != advert + nonce_commitment:
                return None
            if not self._trusted.verify(cid, signature, tx.advertise_payload(self._header, self._digest, advert,
                                                                             nonce_commitment)):
                return None
        try:
            secrets_ = (kx.pair_secret(self._cipher_key, kx.public_from_bytes(cipher_pk, cid), cid),
                        kx.pair_secret(self._mask_key, kx.public_from_bytes(mask_pk, cid), cid))
        except ProtocolViolation:
            return None  # not a point, or of low order: the agreement is all zero
        seen.update((cipher_pk, mask_pk))
        return secrets_

    # -- stage 2: masked input -----------------------------------------------------------------
    def _masked_input(self, msg: MaskedInputRequest) -> MaskedInput:
        params = self._p
        senders = set(msg.shares)
        unknown = senders - self._accepted
        if unknown:
            raise ProtocolViolation(f"shares from clients {sorted(unknown)[:5]} this client sent no shares to")
        if len(senders) < params.min_live:
            raise ProtocolViolation(f"only {len(senders)} live neighbours, {params.min_live} needed")
        for cid, ciphertext in msg.shares.items():
            if len(ciphertext) != SHARE_CIPHERTEXT_BYTES:
                raise ProtocolViolation(f"the share from client {cid} has the wrong length")
            plaintext = kx.decrypt_share(self._share_keys[cid], ciphertext, session=self._share_context,
                                         sender=cid, recipient=self.client_id)
            try:
                self._held[cid] = (share_from_bytes(plaintext[:SHARE_BYTES]), share_from_bytes(plaintext[SHARE_BYTES:]))
            except ValueError as exc:
                raise ProtocolViolation(f"the share from client {cid} is invalid: {exc}") from None
        self._live = frozenset(senders)

        # Once per input, across sessions and rounds: a second masked input of the same update
        # would let the server difference two sums (privagg.ledger).
        self._config.ledger.claim(contribution_key("secagg/masked-input", self.client_id, self._update_bytes))
        del self._update_bytes
        bits = params.bits
        masked = self._input.copy()
        add_mod(masked, expand_mask(self._self_seed, masked.shape[0], bits), bits)
        for cid in sorted(senders):
            secret = self._peer_secrets[cid][1]
            mask = expand_mask(kx.mask_seed(secret, self._header, self.client_id, cid), masked.shape[0], bits)
            (add_mod if self.client_id < cid else sub_mod)(masked, mask, bits)
        del self._input  # nothing but the masked vector leaves, and the input is no longer needed
        self._state = "consistency" if params.active else "unmask"
        return MaskedInput(self.round_id, self.client_id, SERVER_ID, masked)

    # -- stage 3 (active): consistency check ---------------------------------------------------
    def _check_survivors(self, survivors: tuple[int, ...]) -> None:
        # The set is read once in numpy; every other check looks up only this client's own
        # neighbours in it (bisection): O(k log n) beyond reading what was sent.
        params = self._p
        if not _sorted_contains(survivors, self.client_id):
            raise ProtocolViolation(f"the survivor set omits client {self.client_id}, which sent its masked input")
        named = np.frombuffer(tx.ids_bytes(survivors), dtype="<u8")
        roster = np.frombuffer(tx.ids_bytes(params.roster), dtype="<u8")
        inside = np.isin(named, roster, assume_unique=True)
        if not bool(inside.all()):
            outside = named[~inside][:5].tolist()
            raise ProtocolViolation(f"the survivor set names clients {outside} outside the roster")
        candidates = (survivors if self._neighbours is None
                      else [cid for cid in self._neighbours if _sorted_contains(survivors, cid)])
        stray = [cid for cid in candidates if cid != self.client_id and cid not in self._live
                 and cid not in self._refused]
        if stray:
            raise ProtocolViolation(f"the survivor set names neighbours {sorted(stray)[:5]} that never sent shares")
        if params.active:
            if len(survivors) < params.signatures_needed:
                raise ProtocolViolation(f"only {len(survivors)} survivors, the quorum is {params.signatures_needed}")
            live_survivors = sum(_sorted_contains(survivors, cid) for cid in self._live)
            if live_survivors < params.min_live:
                raise ProtocolViolation(f"only {live_survivors} of this client's live neighbours survive, "
                                        f"{params.min_live} needed")
        elif len(survivors) < params.threshold:
            raise ProtocolViolation(f"only {len(survivors)} survivors, threshold is {params.threshold}")

    def _consistency(self, msg: ConsistencyRequest) -> ConsistencySignature:
        self._check_survivors(msg.survivors)
        self._survivors = msg.survivors
        assert self._signing_key is not None
        signature = self._signing_key.sign(tx.survivors_payload(self._session, msg.survivors))
        self._state = "unmask"
        return ConsistencySignature(self.round_id, self.client_id, SERVER_ID, signature)

    # -- stage 4: unmasking --------------------------------------------------------------------
    def _unmask(self, msg: Message) -> UnmaskShares:
        params = self._p
        if isinstance(msg, ConsistencyRequest):
            raise ProtocolViolation("a second consistency request in the same round")
        assert isinstance(msg, UnmaskRequest)
        self._state = "done"  # one unmasking answer per round, whatever happens next
        self._check_survivors(msg.survivors)
        if params.active:
            if msg.survivors != self._survivors:
                raise ProtocolViolation("the survivor set to unmask differs from the one this client signed")
            assert self._trusted is not None
            payload = tx.survivors_payload(self._session, msg.survivors)
            valid = 0
            for cid, sig in msg.signatures.items():  # stop verifying once the quorum is reached
                if valid >= params.signatures_needed:
                    break
                valid += _sorted_contains(msg.survivors, cid) and self._trusted.verify(cid, sig, payload)
            if valid < params.signatures_needed:
                raise ProtocolViolation(
                    f"only {valid} valid signatures on the survivor set, {params.signatures_needed} needed")
        seed_shares, key_shares = {}, {}
        for owner, (seed_share, key_share) in self._held.items():
            if _sorted_contains(msg.survivors, owner):
                seed_shares[owner] = share_to_bytes(seed_share)
            else:
                key_shares[owner] = share_to_bytes(key_share)
        self._held.clear()
        return UnmaskShares(self.round_id, self.client_id, SERVER_ID, seed_shares, key_shares)
