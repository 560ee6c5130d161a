"""The decryptor: the third party of ``key_holder="decryptor"``, as a sans-I/O session.

Clients encrypt to the decryptor's public key; the server adds ciphertexts it cannot read and,
when the collection stage closes, presents the aggregate to the decryptor in a
:class:`~he.messages.DecryptRequest` naming the contributors. :meth:`Decryptor.respond` turns
that request into a :class:`~he.messages.DecryptedAggregate` (bytes in, message out, no I/O),
refusing a request from another party, for other parameters or another key, naming fewer than
``min_clients`` contributors, or for a round it has already answered: one release per round
id is what stops a server from asking for ``sum(A)`` and then ``sum(A minus i)``. The round is
used up as soon as a request passes those checks, even if decryption then fails, so failures
cannot be replayed as an oracle.

With a ``roster`` (what :class:`~he.config.CKKS` gives an in-process decryptor by default) it
releases only the sum it recomputed itself from the request's signed uploads
(:func:`he.binding.verified_sum`): a crafted or substituted aggregate, a round id the clients
did not sign and uploads of strangers are refused. Without one it decrypts the server's
aggregate on its word, which is safe against an honest-but-curious server only.

Wiring. In a deployment the decryptor runs in its own process or machine; the server session
exposes what to send it (:meth:`~he.server.CKKSServer.decryptor_messages`) and takes its
answer (:meth:`~he.server.CKKSServer.receive_from_decryptor`) during stage ``"decrypt"``, over
whatever transport the deployment uses. For :func:`privagg.simulate`, which only knows clients,
a :class:`~he.config.CKKS` configuration that holds a :class:`Decryptor` hands the request to it
in-process when the ``decrypt`` stage's deadline passes. Round ids must come from the
federation's orchestrator, not from the server alone: each client signs the round id of its own
session, so a round id no client signed releases nothing.

The decryptor id on the wire is :data:`DECRYPTOR_ID` (``2**64 - 2``), which rosters may not use.
"""

from __future__ import annotations

from he.binding import verified_sum
from he.keys import DecryptorKeys, PublicKey, SecretHolder
from he.messages import DecryptedAggregate, DecryptRequest
from he.params import CKKSParameters
from he.release import release_sum
from he.ring import Ring
from privagg.errors import ConfigurationError, ProtocolViolation
from privagg.identity import Identities, Roster
from privagg.messages import MAX_ID, SERVER_ID, Message, check_envelope, parse_message

__all__ = ["Decryptor", "DECRYPTOR_ID"]

#: The wire id of the decryptor party (never a client id).
DECRYPTOR_ID = MAX_ID - 1


class Decryptor(SecretHolder):
    """The party holding the secret key in ``key_holder="decryptor"`` mode (see the module docstring)."""

    def __init__(self, params: CKKSParameters, keys: DecryptorKeys | None = None, *, min_clients: int = 2,
                 roster: Roster | Identities | None = None) -> None:
        if params.key_holder != "decryptor":
            raise ConfigurationError(f"a Decryptor serves key_holder='decryptor', not {params.key_holder!r}")
        if isinstance(min_clients, bool) or not isinstance(min_clients, int) or min_clients < 1:
            raise ConfigurationError(f"min_clients must be a positive integer, got {min_clients!r}")
        keys = keys if keys is not None else DecryptorKeys.generate(params)
        if not isinstance(keys, DecryptorKeys) or not keys.compatible_with(params):
            raise ConfigurationError("the decryptor's keys were made for another ring")
        if roster is not None and not isinstance(roster, (Roster, Identities)):
            raise ConfigurationError("roster must be a privagg.identity.Roster")
        self.params = params
        self.min_clients = min_clients
        self._roster = roster
        self._keys = keys
        self._ring = Ring(params)
        self._decryptor = keys.decryptor()
        self._released: set[int] = set()

    @property
    def public_key(self) -> PublicKey:
        return self._keys.public_key

    @property
    def key_id(self) -> bytes:
        return self._keys.key_id

    @property
    def released_rounds(self) -> frozenset[int]:
        return frozenset(self._released)

    def respond(self, data: bytes | bytearray | memoryview | Message) -> DecryptedAggregate:
        """Answer one decryption request (raises MalformedMessage / ProtocolViolation, releasing nothing)."""
        msg = data if isinstance(data, Message) else parse_message(data)
        if not isinstance(msg, DecryptRequest):
            raise ProtocolViolation(f"the decryptor only answers he.decrypt_request, got {msg.NAME}")
        check_envelope(msg, round_id=msg.round_id, sender=SERVER_ID, recipient=DECRYPTOR_ID)
        if msg.params_digest != self.params.digest:
            raise ProtocolViolation("the decryption request is for other CKKS parameters")
        if msg.key_id != self.key_id:
            raise ProtocolViolation("the decryption request is for ciphertexts under another key")
        if msg.round_id in self._released:
            raise ProtocolViolation(f"round {msg.round_id} was already decrypted once; a second release is refused")
        if len(msg.contributors) < self.min_clients:
            raise ProtocolViolation(f"an aggregate of {len(msg.contributors)} contributors is refused; "
                                    f"the decryptor needs at least {self.min_clients}")
        self._released.add(msg.round_id)
        summed = None
        if self._roster is not None:
            roster = self._roster.known() if isinstance(self._roster, Identities) else self._roster
            summed = verified_sum(self._ring, msg, roster=roster, round_id=msg.round_id, key_id=self.key_id,
                                  min_clients=self.min_clients)
        return release_sum(self._ring, self._decryptor, msg, sender=DECRYPTOR_ID, ciphertexts=summed)

    @property
    def authenticated(self) -> bool:
        """True when it releases only sums it recomputed from signed uploads (:mod:`he.binding`)."""
        return self._roster is not None

    def __repr__(self) -> str:
        return (f"Decryptor(key_id={self.key_id.hex()}, min_clients={self.min_clients}, "
                f"released_rounds={len(self._released)})")
