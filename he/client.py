"""A client's side of a CKKS round: get the key, encrypt the update once, maybe decrypt the sum once.

The update is flattened (:func:`privagg.flatten`), refused if it holds NaN or inf, clipped to
``[-clip, clip]`` (the headroom the parameters promise depends on it) and packed two reals per
slot into as few ciphertexts as it needs. With ``key_holder="clients"`` each ciphertext is a
*seeded* symmetric encryption: SEAL replaces its second polynomial by the seed that generates
it, so a ciphertext is one polynomial of ``N`` words for ``N`` values, about 8 bytes a value.
With ``"decryptor"`` it is a public-key encryption (two polynomials, about 16 bytes a value).

Every upload is signed with the client's roster identity over the session of *its own* round
(:mod:`he.transcript`); a client asked to decrypt checks that its own upload is in the request
exactly as it sent it and releases only the sum it recomputed from the signed uploads
(:mod:`he.binding`). A ``"decryptor"`` client takes the round's public key only from an
announcement the configured decryptor signed for its round (:mod:`he.round_keys`).

Without a provisioned key, a ``"clients"`` round starts with the in-round key setup
(:mod:`he.config`): the client answers ``advertise_keys`` with a fresh X25519 key, the dealer
answers ``deal_key`` with the new key wrapped to every peer, and each client unwraps its
package from the :class:`~he.messages.EncryptRequest`. Only a client of a ``"clients"`` round
holds the secret key, so only it answers a :class:`~he.messages.DecryptRequest`, once, through
the key holder's release procedure (:mod:`he.release`); a client of a ``"decryptor"`` round
raises :class:`~he.errors.KeyRoleError`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from he.distribution import unwrap_shared_key, wrap_shared_key
from he.errors import KeyRoleError
from he.keys import PublicKey, SharedKey
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
)
from he.binding import sign_upload_payload, verified_sum
from he.release import release_sum
from he.round_keys import open_round_key
from he.transcript import advert_payload, ciphertexts_digest, deal_context
from he.ring import Ring, seal
from privagg.encoding import as_float_vector, flatten
from privagg.errors import ConfigurationError, InvalidUpdate, MalformedMessage, ProtocolViolation
from privagg.identity import SigningKey
from privagg.interface import ClientSession
from privagg.messages import MAX_MESSAGE_BYTES, SERVER_ID, Message

if TYPE_CHECKING:
    from he.config import CKKS

__all__ = ["CKKSClient"]

_EXPECTED = (KeySetupRequest, DealRequest, EncryptRequest, DecryptRequest)


class CKKSClient(ClientSession):
    def __init__(self, config: CKKS, client_id: int, update: Any, round_id: int, *,
                 shared_key: SharedKey | None = None, public_key: PublicKey | None = None,
                 signing_key: SigningKey | None = None, decryptor_identity: Any = None) -> None:
        super().__init__(client_id, round_id)
        params = config.params
        vector, self.spec = flatten(update)
        values = as_float_vector(vector, what=f"client {self.client_id}'s update")
        if values.size == 0:
            raise InvalidUpdate(f"client {self.client_id}'s update is empty")
        self._ring = Ring(params)
        n_ct = params.ciphertexts_for(values.size)
        if n_ct * self._ring.max_full_bytes > MAX_MESSAGE_BYTES:
            raise InvalidUpdate(f"an update of {values.size} values needs {n_ct} ciphertexts, more than one "
                                f"message carries; split the model")
        self._config = config
        self._values: np.ndarray | None = np.clip(values, -params.clip, params.clip)
        self.n_values = int(values.size)
        self._shared_key = shared_key
        self._public_key = public_key
        self._decryptor_identity = decryptor_identity  # Ed25519 key the round's public key is signed with
        if config.authenticated and signing_key is None:
            raise ConfigurationError(f"client {self.client_id} needs its signing key (authenticated uploads)")
        self._signing_key = signing_key
        self._upload_digest: bytes | None = None
        self._agreement: X25519PrivateKey | None = None  # in-round key setup only
        self._sent = False
        self._released = False

    @property
    def key_id(self) -> bytes:
        """The public id of the key this client encrypts under (``NO_KEY_ID`` before it has one)."""
        holder = self._shared_key if self._shared_key is not None else self._public_key
        return holder.key_id if holder is not None else NO_KEY_ID

    @property
    def finished(self) -> bool:
        """True once the client has nothing more to say in this round: after its upload in a
        ``"decryptor"`` round; in a ``"clients"`` round only after it decrypted, as any contributor
        may be asked to (so a transport keeps the session until the round is over)."""
        return self._sent if self._config.key_holder == "decryptor" else self._released

    def respond(self, message: bytes | Message) -> Message:
        msg = self._parse(message, _EXPECTED)
        if msg.params_digest != self._config.params.digest:
            raise ProtocolViolation(f"{msg.NAME} is for other CKKS parameters than client {self.client_id}'s")
        if isinstance(msg, KeySetupRequest):
            return self._advertise()
        if isinstance(msg, DealRequest):
            return self._deal(msg)
        if isinstance(msg, EncryptRequest):
            self._take_key(msg)
        if msg.key_id not in (NO_KEY_ID, self.key_id):
            raise ProtocolViolation(f"{msg.NAME} names key {msg.key_id.hex()}, client {self.client_id} "
                                    f"holds {self.key_id.hex()}")
        if isinstance(msg, EncryptRequest):
            return self._encrypt()
        return self._decrypt(msg)

    # -- in-round key setup -----------------------------------------------------------------------
    def _in_round_setup(self, what: str) -> None:
        if not self._config.in_round_key_setup:
            raise ProtocolViolation(f"client {self.client_id} uses a provisioned key; it refuses {what}")

    def _advertise(self) -> KeyAdvertisement:
        self._in_round_setup("an in-round key setup")
        if self._agreement is not None:
            raise ProtocolViolation(f"client {self.client_id} already advertised a key in round {self.round_id}")
        self._agreement = X25519PrivateKey.generate()
        raw = self._agreement.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        signature = b"" if self._signing_key is None else self._signing_key.sign(
            advert_payload(self._config.params.digest, self.round_id, self.client_id, raw))
        return KeyAdvertisement(self.round_id, self.client_id, SERVER_ID, raw, signature)

    def _deal(self, request: DealRequest) -> DealtKeys:
        self._in_round_setup("to deal a key")
        if self._agreement is None or self._shared_key is not None or self._sent:
            raise ProtocolViolation(f"client {self.client_id} cannot deal now (deal requests come once, "
                                    f"after advertise_keys)")
        if self.client_id in request.peers:
            raise ProtocolViolation(f"client {self.client_id} is asked to wrap the key to itself")
        digest = self._config.params.digest
        roster = self._config.trusted_roster()
        if roster is not None:  # wrap only to keys their roster owners signed for this round
            for cid, entry in request.peers.items():
                if len(entry) != 96 or not roster.verify(cid, entry[32:], advert_payload(digest, self.round_id, cid,
                                                                                         entry[:32])):
                    raise ProtocolViolation(f"peer {cid}'s X25519 key is not signed by its roster identity for round "
                                            f"{self.round_id}; client {self.client_id} refuses to deal")
        try:
            peers = {cid: X25519PublicKey.from_public_bytes(entry[:32]) for cid, entry in request.peers.items()}
        except ValueError as exc:
            raise MalformedMessage(f"a peer's X25519 key is invalid: {exc}") from None
        key = SharedKey.generate(self._config.params)
        packages = {cid: wrap_shared_key(key, public, self._signing_key, sender_id=self.client_id,
                                         context=deal_context(digest, self.round_id, cid),
                                         authenticated=self._signing_key is not None)
                    for cid, public in peers.items()}
        self._shared_key = key
        self._config._remember_round_key(self.round_id, key)
        return DealtKeys(self.round_id, self.client_id, SERVER_ID, key.key_id, packages)

    def _take_key(self, request: EncryptRequest) -> None:
        if self._config.key_holder == "decryptor" and request.key_package:
            if self._public_key is not None:
                raise ProtocolViolation(f"client {self.client_id} encrypts to its configured public key; it "
                                        f"refuses a round key from the request")
            if self._decryptor_identity is None:
                raise ProtocolViolation(f"client {self.client_id} has no decryptor identity to check the round's "
                                        f"key against; configure decryptor_identity")
            self._public_key = open_round_key(self._config.params, request.key_package, round_id=self.round_id,
                                              decryptor_identity=self._decryptor_identity)
            return
        if not request.key_package:
            if self._shared_key is None and self._public_key is None:
                raise ProtocolViolation(f"client {self.client_id} has no key and the request brings none")
            return
        self._in_round_setup("a key package")
        if self._agreement is None or self._shared_key is not None:
            raise ProtocolViolation(f"client {self.client_id} did not ask for a key package in this round")
        key = unwrap_shared_key(self._config.params, request.key_package, self._agreement,
                                roster=self._config.trusted_roster(), dealer=self._config.dealer,
                                context=deal_context(self._config.params.digest, self.round_id, self.client_id),
                                authenticated=self._config.authenticated)
        if key.key_id != request.key_id:
            raise ProtocolViolation(f"the key package holds key {key.key_id.hex()}, the request names "
                                    f"{request.key_id.hex()}")
        self._shared_key = key

    # -- encrypt and decrypt ----------------------------------------------------------------------
    def _encrypt(self) -> Ciphertexts:
        if self._sent or self._values is None:
            raise ProtocolViolation(f"client {self.client_id} already sent its update in round {self.round_id}")
        ring = self._ring
        plaintexts = ring.encode(self._values)
        if self._shared_key is not None:
            encryptor = self._shared_key.encryptor()
            blobs = [ring.dump(encryptor.encrypt_symmetric(pt)) for pt in plaintexts]
        else:
            assert self._public_key is not None
            encryptor = self._public_key.encryptor()
            ciphertext = seal.Ciphertext()
            blobs = []
            for pt in plaintexts:
                encryptor.encrypt(pt, ciphertext)
                blobs.append(ring.dump(ciphertext))
        self._sent, self._values = True, None
        signature = b""
        if self._signing_key is not None:  # bound to this client's own round, not the request's word
            params = self._config.params
            signature = self._signing_key.sign(sign_upload_payload(
                params.digest, self.round_id, params.key_holder, self.key_id, self.client_id, self.n_values, blobs))
        self._upload_digest = ciphertexts_digest(blobs)
        return Ciphertexts(self.round_id, self.client_id, SERVER_ID, self.key_id, self.n_values,
                           as_ciphertext_map(blobs), signature)

    def _decrypt(self, request: DecryptRequest) -> DecryptedAggregate:
        if self._config.key_holder == "decryptor":
            raise KeyRoleError(f"client {self.client_id} holds only the decryptor's public key and cannot decrypt; "
                               f"in key_holder='decryptor' rounds the decryptor decrypts")
        if not self._sent or self._shared_key is None:
            raise ProtocolViolation(f"client {self.client_id} was asked to decrypt before it contributed")
        if self._released:
            raise ProtocolViolation(f"client {self.client_id} already decrypted round {self.round_id} once")
        if len(request.contributors) < self._config.min_clients:
            raise ProtocolViolation(f"an aggregate of {len(request.contributors)} contributors is refused; at least "
                                    f"{self._config.min_clients} needed")
        self._released = True
        summed = None
        roster = self._config.trusted_roster()
        if roster is not None:
            self._check_own_upload(request)
            summed = verified_sum(self._ring, request, roster=roster, round_id=self.round_id, key_id=self.key_id,
                                  min_clients=self._config.min_clients)
        return release_sum(self._ring, self._shared_key.decryptor(), request, sender=self.client_id,
                           ciphertexts=summed)

    def _check_own_upload(self, request: DecryptRequest) -> None:
        """This client's own upload must be in the sum, exactly as it sent it."""
        raw = request.uploads.get(self.client_id)
        if raw is None:
            raise ProtocolViolation(f"client {self.client_id} is asked to decrypt a sum without its own upload")
        own = Ciphertexts.from_bytes(raw) if isinstance(raw, (bytes, bytearray)) else raw
        blobs = [own.ciphertexts[i] for i in sorted(own.ciphertexts)]
        if ciphertexts_digest(blobs) != self._upload_digest:
            raise ProtocolViolation(f"the request forwards another upload as client {self.client_id}'s")
