"""The client side of a secure-aggregation round, as a state machine.

An honest client refuses anything that would make it leak: parameters other than its own
configuration, its own keys substituted, unauthenticated shares, a survivor set it is not in
or that names peers it never heard from, and any second unmasking request. It reveals, per
peer, either the self-mask seed share (peer survived) or the mask-key share (peer dropped),
never both.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from privagg.encoding.modular import add_mod, sub_mod
from privagg.encoding.structure import flatten
from privagg.errors import ConfigurationError, ProtocolViolation
from privagg.interface import ClientSession
from privagg.messages import SERVER_ID, Message
from secagg import keys as kx
from secagg.graph import neighbour_graph
from secagg.identity import SIGNATURE_BYTES, advertise_payload, survivors_payload
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
from secagg.shamir import SHARE_BYTES, share_from_bytes, share_to_bytes, split_secret

if TYPE_CHECKING:
    from secagg.config import RoundParameters, SecAgg

__all__ = ["SecAggClient", "PROTOCOL"]

PROTOCOL = "bonawitz2017/v1"


class SecAggClient(ClientSession):
    def __init__(self, config: SecAgg, client_id: int, update: Any, *, round_id: int, seed: int | None,
                 signing_key: Ed25519PrivateKey | None, model_digest: bytes) -> None:
        super().__init__(client_id, round_id)
        if not isinstance(model_digest, (bytes, bytearray)) or len(model_digest) != 32:
            raise ConfigurationError("model_digest must be 32 bytes (e.g. SHA-256 of the global model)")
        self._config = config
        self._bits = config.fixed_point.bits
        vector, self.spec = flatten(update)
        self._input = config.fixed_point.encode(vector, seed=seed)
        self._signing_key = signing_key
        self._digest = bytes(model_digest)
        self._state = "advertise"
        self._params: RoundParameters | None = None
        self._neighbours: frozenset[int] = frozenset()
        self._cipher_key = kx.generate_key_pair()
        self._mask_key = kx.generate_key_pair()
        self._peer_keys: dict[int, tuple[X25519PublicKey, X25519PublicKey]] = {}
        self._share_keys: dict[int, bytes] = {}
        self._live: frozenset[int] = frozenset()  # neighbours that sent us shares (U2)
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
        msg = self._parse(message, expected)
        try:
            return handler(msg)
        except ProtocolViolation:
            self._state = "aborted"
            raise

    # -- stage 0: advertise keys ---------------------------------------------------------------
    def _advertise(self, msg: AdvertiseRequest) -> AdvertiseKeys:
        if self.client_id not in msg.roster:
            raise ProtocolViolation(f"client {self.client_id} is not in the announced roster")
        params = self._config.parameters(msg.roster)
        announced = (msg.neighbours, msg.threshold, msg.bits, msg.active, msg.protocol)
        own = (params.neighbours, params.threshold, self._bits, self._config.active, PROTOCOL)
        if announced != own:
            raise ProtocolViolation(
                f"server announced (neighbours, threshold, bits, active, protocol) = {announced}, "
                f"this client is configured for {own}"
            )
        self._params = params
        self._neighbours = neighbour_graph(msg.roster, params.neighbours, msg.graph_seed)[self.client_id]
        cipher_pk, mask_pk = kx.public_bytes(self._cipher_key), kx.public_bytes(self._mask_key)
        signature = b""
        if self._signing_key is not None:
            signature = self._signing_key.sign(
                advertise_payload(self.round_id, self.client_id, self._digest, cipher_pk, mask_pk))
        self._state = "share"
        return AdvertiseKeys(self.round_id, self.client_id, SERVER_ID, cipher_pk, mask_pk, signature)

    # -- stage 1: share keys -------------------------------------------------------------------
    def _share(self, msg: KeysBroadcast) -> EncryptedShares:
        params = self._params
        assert params is not None
        members = set(msg.keys)
        own = kx.public_bytes(self._cipher_key) + kx.public_bytes(self._mask_key)
        if msg.keys.get(self.client_id, b"")[:64] != own:
            raise ProtocolViolation("the server did not relay this client's own keys unchanged")
        strangers = members - self._neighbours - {self.client_id}
        if strangers:
            raise ProtocolViolation(f"keys of non-neighbours {sorted(strangers)[:5]} were relayed")
        if len(members) < params.threshold:
            raise ProtocolViolation(f"only {len(members)} live share holders, threshold is {params.threshold}")
        seen: set[bytes] = set()
        for cid, blob in msg.keys.items():
            expected_len = 64 + (SIGNATURE_BYTES if self._config.active else 0)
            if len(blob) != expected_len:
                raise ProtocolViolation(f"keys of client {cid} have {len(blob)} bytes, expected {expected_len}")
            cipher_pk, mask_pk = blob[:32], blob[32:64]
            if cipher_pk in seen or mask_pk in seen or cipher_pk == mask_pk:
                raise ProtocolViolation(f"client {cid}'s public keys repeat another's")
            seen.update((cipher_pk, mask_pk))
            if self._config.active and not self._config.public_roster(params.roster).verify(
                    cid, blob[64:], advertise_payload(self.round_id, cid, self._digest, cipher_pk, mask_pk)):
                raise ProtocolViolation(
                    f"the keys of client {cid} carry no valid signature for this round and model "
                    f"(substituted keys, or a different model)"
                )
            if cid != self.client_id:
                self._peer_keys[cid] = (kx.public_from_bytes(cipher_pk, cid), kx.public_from_bytes(mask_pk, cid))

        self_seed = secrets.token_bytes(32)
        holders = sorted(members)
        xs = [params.x_coordinate(c) for c in holders]
        seed_shares = split_secret(self_seed, xs, params.threshold)
        key_shares = split_secret(kx.private_bytes(self._mask_key), xs, params.threshold)
        self._self_seed = self_seed
        out: dict[int, bytes] = {}
        for cid, x in zip(holders, xs):
            if cid == self.client_id:
                self._held[cid] = (seed_shares[x], key_shares[x])
                continue
            secret = kx.pair_secret(self._cipher_key, self._peer_keys[cid][0], cid)
            key = kx.share_key(secret, self.round_id, self.client_id, cid)
            self._share_keys[cid] = key
            plaintext = share_to_bytes(seed_shares[x]) + share_to_bytes(key_shares[x])
            out[cid] = kx.encrypt_share(key, plaintext, round_id=self.round_id, sender=self.client_id, recipient=cid)
        self._state = "masked"
        return EncryptedShares(self.round_id, self.client_id, SERVER_ID, out)

    # -- stage 2: masked input -----------------------------------------------------------------
    def _masked_input(self, msg: MaskedInputRequest) -> MaskedInput:
        params = self._params
        assert params is not None
        senders = set(msg.shares)
        unknown = senders - set(self._peer_keys)
        if unknown:
            raise ProtocolViolation(f"shares from clients {sorted(unknown)[:5]} whose keys this client never saw")
        if len(senders) + 1 < params.threshold:
            raise ProtocolViolation(f"only {len(senders) + 1} live share holders, threshold is {params.threshold}")
        for cid, ciphertext in msg.shares.items():
            if len(ciphertext) != SHARE_CIPHERTEXT_BYTES:
                raise ProtocolViolation(f"the share from client {cid} has the wrong length")
            plaintext = kx.decrypt_share(self._share_keys[cid], ciphertext, round_id=self.round_id,
                                         sender=cid, recipient=self.client_id)
            try:
                self._held[cid] = (share_from_bytes(plaintext[:SHARE_BYTES]), share_from_bytes(plaintext[SHARE_BYTES:]))
            except ValueError as exc:
                raise ProtocolViolation(f"the share from client {cid} is invalid: {exc}") from None
        self._live = frozenset(senders)

        bits = self._bits
        masked = self._input.copy()
        add_mod(masked, expand_mask(self._self_seed, masked.shape[0], bits), bits)
        for cid in sorted(senders):
            secret = kx.pair_secret(self._mask_key, self._peer_keys[cid][1], cid)
            mask = expand_mask(kx.mask_seed(secret, self.round_id, self.client_id, cid), masked.shape[0], bits)
            (add_mod if self.client_id < cid else sub_mod)(masked, mask, bits)
        del self._input  # nothing but the masked vector leaves, and the input is no longer needed
        self._state = "consistency" if self._config.active else "unmask"
        return MaskedInput(self.round_id, self.client_id, SERVER_ID, masked)

    # -- stage 3 (active): consistency check ---------------------------------------------------
    def _check_survivors(self, survivors: tuple[int, ...]) -> None:
        params = self._params
        assert params is not None
        if self.client_id not in survivors:
            raise ProtocolViolation(f"the survivor set omits client {self.client_id}, which sent its masked input")
        stray = (set(survivors) & self._neighbours) - self._live
        if stray:
            raise ProtocolViolation(f"the survivor set names neighbours {sorted(stray)[:5]} that never sent shares")
        outside = set(survivors) - set(params.roster)
        if outside:
            raise ProtocolViolation(f"the survivor set names clients {sorted(outside)[:5]} outside the roster")
        if len(survivors) < params.threshold:
            raise ProtocolViolation(f"only {len(survivors)} survivors, threshold is {params.threshold}")

    def _consistency(self, msg: ConsistencyRequest) -> ConsistencySignature:
        self._check_survivors(msg.survivors)
        self._survivors = msg.survivors
        assert self._signing_key is not None
        signature = self._signing_key.sign(survivors_payload(self.round_id, self._digest, msg.survivors))
        self._state = "unmask"
        return ConsistencySignature(self.round_id, self.client_id, SERVER_ID, signature)

    # -- stage 4: unmasking --------------------------------------------------------------------
    def _unmask(self, msg: Message) -> UnmaskShares:
        params = self._params
        assert params is not None
        if isinstance(msg, ConsistencyRequest):
            raise ProtocolViolation("a second consistency request in the same round")
        assert isinstance(msg, UnmaskRequest)
        self._state = "done"  # one unmasking answer per round, whatever happens next
        self._check_survivors(msg.survivors)
        if self._config.active:
            if msg.survivors != self._survivors:
                raise ProtocolViolation("the survivor set to unmask differs from the one this client signed")
            roster = self._config.public_roster(params.roster)
            payload = survivors_payload(self.round_id, self._digest, msg.survivors)
            valid = 0
            for cid, sig in msg.signatures.items():  # stop verifying once the quorum is reached
                if valid >= params.signatures_needed:
                    break
                valid += cid in msg.survivors and roster.verify(cid, sig, payload)
            if valid < params.signatures_needed:
                raise ProtocolViolation(
                    f"only {valid} valid signatures on the survivor set, {params.signatures_needed} needed"
                )
        survivors = set(msg.survivors)
        seed_shares, key_shares = {}, {}
        for owner, (seed_share, key_share) in self._held.items():
            if owner in survivors:
                seed_shares[owner] = share_to_bytes(seed_share)
            else:
                key_shares[owner] = share_to_bytes(key_share)
        self._held.clear()
        return UnmaskShares(self.round_id, self.client_id, SERVER_ID, seed_shares, key_shares)
