"""The server side of a CKKS round: add ciphertexts it cannot read, then have the sum decrypted.

Stages:

0. Only for ``key_holder="clients"`` without a provisioned key (:mod:`he.config`):
   ``advertise_keys`` (every client sends a fresh X25519 public key; the round continues with
   those that did) and ``deal_key`` (the lowest-id advertiser wraps a new key to each other
   advertiser; the next one is asked if it is silent). The packages are opaque to the server,
   which hands each client its own in the ``collect_ciphertexts`` request. Advertisements carry
   their client's signature (checked here against the roster, and again by the dealer).
1. ``collect_ciphertexts``: every client gets an :class:`~he.messages.EncryptRequest` (with
   ``key_holder="decryptor"``: carrying the decryptor's signed key of this round,
   :mod:`he.round_keys`) and answers with its ciphertexts and its signature of them. Each
   upload is checked (signature against the roster, count, parameters, scale, key id, length),
   kept as sent (the key holder recomputes the sum from them, :mod:`he.binding`) and added all
   or nothing, so a bad upload leaves the running sums untouched;
   whoever has not answered when the deadline passes has dropped out. The round
   sums whoever sent ciphertexts, and aborts below ``min_clients``.
2. ``decrypt``: the aggregate goes to a key holder with the list of contributors.
   With ``key_holder="clients"`` that is one contributor (the lowest id not yet tried); if it
   does not answer by the deadline the next one is asked, and the round aborts when none is
   left. With ``"decryptor"`` it is the decryptor party: :meth:`CKKSServer.decryptor_messages`
   and :meth:`CKKSServer.receive_from_decryptor` carry the exchange over the deployment's
   transport, or an in-process :class:`~he.decryptor.Decryptor` answers when the deadline
   passes (simulations). No client takes part in that stage, so ``waiting_for`` is empty:
   a transport that ends stages early waits for :attr:`CKKSServer.awaiting_decryptor` instead.

The server holds a :class:`~he.ring.Ring`, i.e. only public parameters: there is no code path
here that could decrypt. The view keeps every upload (or only its size) and the decryption.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from he.config import ADVERTISE, COLLECT, DEAL, DECRYPT
from he.binding import sign_upload_payload
from he.decryptor import DECRYPTOR_ID, Decryptor
from he.messages import (
    NO_KEY_ID,
    Ciphertexts,
    DealRequest,
    DealtKeys,
    DecryptedAggregate,
    DecryptRequest,
    EncryptRequest,
    KeyAdvertisement,
    KeySetupRequest,
    as_ciphertext_map,
    ciphertext_blobs,
)
from he.pool import PooledSum, ServerPool, resolve_processes
from he.ring import Ring
from he.round_keys import open_round_key
from he.transcript import advert_payload
from he.sums import CiphertextSum
from privagg.errors import AggregationAborted, ConfigurationError, PrivaggError, ProtocolViolation
from privagg.interface import ServerSession
from privagg.messages import SERVER_ID, Message, parse_expected

if TYPE_CHECKING:
    from he.config import CKKS

__all__ = ["CKKSServer"]

_EXPECTED: dict[str, type[Message]] = {ADVERTISE: KeyAdvertisement, DEAL: DealtKeys, COLLECT: Ciphertexts,
                                       DECRYPT: DecryptedAggregate}


class CKKSServer(ServerSession):
    mode = "ckks"

    def __init__(self, config: CKKS, client_ids: Iterable[int], round_id: int, *,
                 decryptor: Decryptor | None = None, round_key: bytes | None = None) -> None:
        super().__init__(client_ids, round_id)
        if DECRYPTOR_ID in self.client_ids:
            raise ConfigurationError(f"client id {DECRYPTOR_ID} is reserved for the decryptor")
        self._config = config
        self._params = config.params
        self._params.check_capacity(len(self.client_ids))
        self._ring = Ring(self._params)
        self._decryptor = decryptor
        self._key_id = config.expected_key_id()
        self._n_values: int | None = None
        self._processes = resolve_processes(config.server_processes)
        self._sums: CiphertextSum | PooledSum | None = None
        self._contributors: tuple[int, ...] = ()
        self._candidates: list[int] = []
        self._request: DecryptRequest | None = None
        self._decryptor_outbox: dict[int, Message] = {}
        self._decryption: DecryptedAggregate | None = None
        self.upload_bytes: dict[int, int] = {}
        self._decryptor_traffic: tuple[int, int] | None = None
        self._advertised: dict[int, bytes] = {}
        self._packages: dict[int, bytes] = {}
        if config.authenticated and config.roster is None and config.identities is not None:
            config.identities.roster(self.client_ids)  # simulations: identities for this round's clients
        self._roster = config.trusted_roster()
        self._uploads: dict[int, bytes] = {}  # each signed upload as sent, forwarded to the key holder
        self._announcement = b""  # the decryptor's signed key of this round, relayed to every client
        if self.key_holder == "decryptor" and self._key_id == NO_KEY_ID:
            if round_key is None and decryptor is not None and decryptor.per_round_keys:
                round_key = decryptor.round_key(self.round_id)
            if round_key is not None:
                self._key_id = open_round_key(self._params, round_key, round_id=self.round_id,
                                              decryptor_identity=None).key_id
                self._announcement = bytes(round_key)
            elif config.public_key is None:
                raise ConfigurationError("a key_holder='decryptor' server needs the decryptor's round_key "
                                         "(Decryptor.round_key(round_id)) or a configured public_key")
        if config.in_round_key_setup:
            self._enter(ADVERTISE, {cid: KeySetupRequest(self.round_id, SERVER_ID, cid, self._params.digest)
                                    for cid in self.client_ids})
        else:
            self._enter_collect(self.client_ids)

    def _enter_collect(self, clients: Iterable[int]) -> None:
        digest = self._params.digest
        self._active = set(clients)
        self._enter(COLLECT, {cid: EncryptRequest(self.round_id, SERVER_ID, cid, digest, self._key_id,
                                                  self._packages.get(cid, self._announcement))
                              for cid in sorted(self._active)})

    @property
    def key_holder(self) -> str:
        return self._params.key_holder

    def _expected(self, stage: str) -> type[Message]:
        return _EXPECTED[stage]

    def _kept_in_view(self, message: Message) -> Message | None:
        if isinstance(message, Ciphertexts) and not self._config.keep_ciphertexts:
            return None
        return message

    def receive(self, client_id: int, data: bytes | Message) -> None:
        if self.stage == DECRYPT and client_id not in self.active and client_id in self._contributors:
            raise ProtocolViolation(f"client {client_id} was not asked to decrypt round {self.round_id}")
        if self.stage == DEAL and client_id not in self.active and client_id in self._advertised:
            raise ProtocolViolation(f"client {client_id} was not asked to deal the key of round {self.round_id}")
        super().receive(client_id, data)

    # -- collect ---------------------------------------------------------------------------------
    def _accept(self, client_id: int, message: Message) -> None:
        if isinstance(message, Ciphertexts):
            self._accept_upload(client_id, message)
        elif isinstance(message, KeyAdvertisement):
            # 32 bytes, checked by the codec; the dealer checks it is a valid X25519 key and signed
            if self._roster is not None and not self._roster.verify(client_id, message.signature, advert_payload(
                    self._params.digest, self.round_id, client_id, message.public_key)):
                raise ProtocolViolation(f"client {client_id}'s X25519 key is not signed by its roster identity")
        elif isinstance(message, DealtKeys):
            expected = set(self._advertised) - {client_id}
            if set(message.packages) != expected:
                raise ProtocolViolation(f"client {client_id} dealt packages for {len(message.packages)} clients, "
                                        f"expected the other {len(expected)} advertisers")
        else:
            assert isinstance(message, DecryptedAggregate)
            self._check_decryption(message, f"client {client_id}")
            self._decryption = message

    def _accept_upload(self, client_id: int, message: Ciphertexts) -> None:
        if self._n_values is not None and message.n_values != self._n_values:
            raise ProtocolViolation(f"client {client_id} sent {message.n_values} values, the others {self._n_values}")
        if message.n_values < 1:
            raise ProtocolViolation(f"client {client_id} sent an empty update")
        blobs = ciphertext_blobs(message.ciphertexts, self._params.ciphertexts_for(message.n_values),
                                 f"client {client_id}")
        if self._key_id != NO_KEY_ID and message.key_id != self._key_id:
            raise ProtocolViolation(f"client {client_id} encrypted under key {message.key_id.hex()}, "
                                    f"the round uses {self._key_id.hex()}")
        if self._roster is not None and not self._roster.verify(client_id, message.signature, sign_upload_payload(
                self._params.digest, self.round_id, self.key_holder, message.key_id, client_id, message.n_values,
                blobs)):
            raise ProtocolViolation(f"client {client_id}'s upload carries no valid signature of its roster identity "
                                    f"on round {self.round_id}")
        if self._sums is None:
            seeded = self.key_holder == "clients"
            self._sums = (ServerPool.shared(self._processes).new_sum(self._ring, seeded=seeded)
                          if self._processes > 1 else CiphertextSum(self._ring, seeded=seeded))
        # All or nothing: a refused ciphertext leaves the sums as they were (he.sums, he.pool).
        self._sums.add(blobs, f"client {client_id}")
        if self._key_id == NO_KEY_ID:
            self._key_id = message.key_id
        self._n_values = message.n_values
        self.upload_bytes[client_id] = sum(len(b) for b in blobs)
        if self._roster is not None:
            self._uploads[client_id] = message.to_bytes()

    # -- decrypt ---------------------------------------------------------------------------------
    def _advance(self, answers: dict[int, Message]) -> None:
        if self.stage == ADVERTISE:
            self._after_advertise(answers)
        elif self.stage == DEAL:
            self._after_deal(answers)
        elif self.stage == COLLECT:
            self._after_collect(answers)
        elif self.key_holder == "clients":
            self._after_client_decrypt()
        else:
            self._after_decryptor()

    # -- in-round key setup -----------------------------------------------------------------------
    def _after_advertise(self, answers: dict[int, Message]) -> None:
        if len(answers) < self._config.min_clients:
            raise AggregationAborted(f"only {len(answers)} of {len(self.client_ids)} clients advertised a key; "
                                     f"at least {self._config.min_clients} needed", answers.keys())
        self._advertised = {cid: msg.public_key + msg.signature for cid, msg in sorted(answers.items())
                            if isinstance(msg, KeyAdvertisement)}  # the dealer checks each signature
        self._candidates = sorted(self._advertised)
        self._ask_next_dealer()

    def _ask_next_dealer(self) -> None:
        if len(self._advertised) < self._config.min_clients or not self._candidates:
            raise AggregationAborted("no client dealt the round's key", self._advertised.keys())
        dealer = self._candidates.pop(0)
        peers = {cid: pk for cid, pk in self._advertised.items() if cid != dealer}
        self._active = {dealer}  # the others wait for their package, they have not dropped
        self._enter(DEAL, {dealer: DealRequest(self.round_id, SERVER_ID, dealer, self._params.digest, peers)})

    def _after_deal(self, answers: dict[int, Message]) -> None:
        if not answers:  # the dealer is gone: so is its advertisement
            for cid in self._dropped_at:
                self._advertised.pop(cid, None)
            self._ask_next_dealer()
            return
        ((dealer, dealt),) = answers.items()
        assert isinstance(dealt, DealtKeys)
        self._key_id = dealt.key_id
        self._packages = dict(dealt.packages)
        self._enter_collect(self._advertised)

    # -- aggregate ---------------------------------------------------------------------------------
    def _after_collect(self, answers: dict[int, Message]) -> None:
        contributors = tuple(sorted(answers))
        if len(contributors) < self._config.min_clients or self._sums is None or self._n_values is None:
            if self._sums is not None:
                self._sums.discard()
            raise AggregationAborted(
                f"only {len(contributors)} of {len(self.client_ids)} clients sent ciphertexts; at least "
                f"{self._config.min_clients} needed", contributors)
        self._contributors = contributors
        blobs = as_ciphertext_map(self._sums.dump())
        self._sums = None
        recipient = DECRYPTOR_ID if self.key_holder == "decryptor" else contributors[0]
        uploads = {cid: self._uploads[cid] for cid in contributors if cid in self._uploads}
        self._uploads = {}
        self._request = DecryptRequest(self.round_id, SERVER_ID, recipient, self._params.digest, self._key_id,
                                       contributors, self._n_values, blobs, uploads)
        if self.key_holder == "clients":
            self._candidates = list(contributors)
            self._ask_next_client()
        else:
            self._active = set()  # no client takes part in the decryptor's stage
            self._decryptor_outbox = {DECRYPTOR_ID: self._request}
            self._enter(DECRYPT, {})

    def _ask_next_client(self) -> None:
        if not self._candidates:
            raise AggregationAborted("no contributor answered the request to decrypt the aggregate",
                                     self._contributors)
        cid = self._candidates.pop(0)
        assert self._request is not None
        request = DecryptRequest(self.round_id, SERVER_ID, cid, self._request.params_digest, self._request.key_id,
                                 self._request.contributors, self._request.n_values, self._request.ciphertexts,
                                 self._request.uploads)
        self._active = {cid}  # the others are done, not dropped
        self._enter(DECRYPT, {cid: request})

    def _after_client_decrypt(self) -> None:
        if self._decryption is None:
            self._ask_next_client()
            return
        self._finish_with(self._decryption)

    def _after_decryptor(self) -> None:
        if self._decryption is None and self._decryptor is not None and self._request is not None:
            data = self._request.to_bytes()
            try:
                reply = self._decryptor.respond(data).to_bytes()
            except PrivaggError as exc:
                raise AggregationAborted(f"the decryptor refused the aggregate: {exc}", self._contributors) from None
            self._decryptor_outbox = {}
            self.receive_from_decryptor(reply)
            self._decryptor_traffic = (len(data), len(reply))
        if self._decryption is None:
            raise AggregationAborted("the decryptor did not answer", self._contributors)
        self._finish_with(self._decryption)

    @property
    def awaiting_decryptor(self) -> bool:
        """True in a ``"decryptor"`` round's ``decrypt`` stage until the decryptor's answer is in
        (the decryptor is not a client, so it never appears in :attr:`waiting_for`)."""
        return (not self.finished and self.stage == DECRYPT and self.key_holder == "decryptor"
                and self._decryption is None)

    def decryptor_messages(self) -> dict[int, Message]:
        """What to send the decryptor in stage ``decrypt`` (``{DECRYPTOR_ID: request}``, handed out once)."""
        out, self._decryptor_outbox = self._decryptor_outbox, {}
        return out

    def receive_from_decryptor(self, data: bytes | Message) -> None:
        """Take the decryptor's answer (stage ``decrypt``, ``key_holder="decryptor"``); then call
        :meth:`deadline_passed` to finish the round."""
        if self.finished or self.stage != DECRYPT or self.key_holder != "decryptor":
            raise ProtocolViolation(f"no decryption is expected in stage {self.stage!r}")
        if self._decryption is not None:
            raise ProtocolViolation(f"the decryptor already answered round {self.round_id}")
        size = len(data) if not isinstance(data, Message) else len(data.to_bytes())
        msg = parse_expected(data, DecryptedAggregate, round_id=self.round_id, sender=DECRYPTOR_ID,
                             recipient=SERVER_ID)
        self._check_decryption(msg, "the decryptor")
        self._decryption = msg
        self.view.record(DECRYPT, DECRYPTOR_ID, msg, size)

    def _check_decryption(self, msg: DecryptedAggregate, who: str) -> None:
        if msg.contributors != self._contributors:
            raise ProtocolViolation(f"{who} decrypted the sum of {len(msg.contributors)} clients, "
                                    f"the round has {len(self._contributors)}")
        if msg.vector.shape[0] != self._n_values:
            raise ProtocolViolation(f"{who} returned {msg.vector.shape[0]} values, expected {self._n_values}")

    def _finish_with(self, decryption: DecryptedAggregate) -> None:
        info: dict[str, Any] = {
            "preset": self._params.preset, "key_holder": self.key_holder,
            "scale_bits": self._params.scale_bits_resolved, "flood_bits": self._params.flood_bits_resolved,
            "release_noise_std": decryption.noise_std,
            "decrypted_by": "decryptor" if decryption.sender == DECRYPTOR_ID else decryption.sender,
        }
        if self._decryptor_traffic is not None:  # in-process decryptor: a driver of clients does not see it
            info["bytes_to_decryptor"], info["bytes_from_decryptor"] = self._decryptor_traffic
        self._finish(decryption.vector.astype("float64"), self._contributors, info=info)
