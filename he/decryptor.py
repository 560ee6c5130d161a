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
from he.round_keys import announce_round_key
from privagg.errors import ConfigurationError, ProtocolViolation
from privagg.identity import Identities, Roster, SigningKey
from privagg.messages import MAX_ID, SERVER_ID, Message, check_envelope, parse_message

__all__ = ["Decryptor", "DECRYPTOR_ID"]

#: The wire id of the decryptor party (never a client id).
DECRYPTOR_ID = MAX_ID - 1
#: Rounds whose key pair a decryptor holds at once (asked for, not yet decrypted).
MAX_OPEN_ROUNDS = 64


class Decryptor(SecretHolder):
    """The party holding the secret key in ``key_holder="decryptor"`` mode (see the module docstring).

    keys: long-term keys used for every round (an extracted key then opens every round); by
        default there are none and every round gets a fresh key pair (:mod:`he.round_keys`).
    roster: the clients' identities it verifies uploads against (:mod:`he.binding`).
    identity: its Ed25519 signing key, which signs each round's public key (generated if not given;
        clients are configured with ``identity_public_bytes()`` as ``decryptor_identity``).
    keep_last_for_audit: keep the secret key of the last released round (in-process simulations:
        :meth:`~he.config.CKKS.disclose` for a colluding decryptor reads it); off in a deployment.
    """

    def __init__(self, params: CKKSParameters, keys: DecryptorKeys | None = None, *, min_clients: int = 2,
                 roster: Roster | Identities | None = None, identity: SigningKey | None = None,
                 keep_last_for_audit: bool = False) -> None:
        if params.key_holder != "decryptor":
            raise ConfigurationError(f"a Decryptor serves key_holder='decryptor', not {params.key_holder!r}")
        if isinstance(min_clients, bool) or not isinstance(min_clients, int) or min_clients < 1:
            raise ConfigurationError(f"min_clients must be a positive integer, got {min_clients!r}")
        if keys is not None and (not isinstance(keys, DecryptorKeys) or not keys.compatible_with(params)):
            raise ConfigurationError("the decryptor's keys were made for another ring")
        if roster is not None and not isinstance(roster, (Roster, Identities)):
            raise ConfigurationError("roster must be a privagg.identity.Roster")
        self.params = params
        self.min_clients = min_clients
        self._roster = roster
        self._keys = keys  # long-term keys, or None: a key pair per round
        self._identity = identity if identity is not None else SigningKey.generate()
        self._ring = Ring(params)
        self._round_keys: dict[int, tuple[DecryptorKeys, bytes]] = {}
        self._keep_last = keep_last_for_audit
        self._audit: tuple[int, DecryptorKeys] | None = None
        self._released: set[int] = set()

    @property
    def per_round_keys(self) -> bool:
        return self._keys is None

    @property
    def public_key(self) -> PublicKey:
        """The long-term public key (a decryptor with per-round keys has none: see :meth:`round_key`)."""
        if self._keys is None:
            raise ProtocolViolation("this decryptor makes a key pair per round; ask round_key(round_id)")
        return self._keys.public_key

    @property
    def key_id(self) -> bytes:
        if self._keys is None:
            raise ProtocolViolation("this decryptor makes a key pair per round; ask round_key(round_id)")
        return self._keys.key_id

    def identity_public_bytes(self) -> bytes:
        """Its Ed25519 identity, which clients pin as ``decryptor_identity``."""
        return self._identity.public_bytes()

    def round_key(self, round_id: int) -> bytes:
        """The signed announcement of round ``round_id``'s public key (made on the first request,
        the same bytes after; refused once the round was released)."""
        if isinstance(round_id, bool) or not isinstance(round_id, int) or not 0 <= round_id < 2**64:
            raise ProtocolViolation(f"bad round id {round_id!r}")
        if round_id in self._released:
            raise ProtocolViolation(f"round {round_id} was already decrypted; its key is gone")
        if round_id not in self._round_keys:
            if len(self._round_keys) >= MAX_OPEN_ROUNDS:  # each open round holds a secret key in memory
                raise ProtocolViolation(f"{len(self._round_keys)} rounds are open (not yet decrypted); "
                                        f"at most {MAX_OPEN_ROUNDS}")
            keys = self._keys if self._keys is not None else DecryptorKeys.generate(self.params)
            self._round_keys[round_id] = (keys, announce_round_key(self.params, round_id, keys.public_key,
                                                                   self._identity))
        return self._round_keys[round_id][1]

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
        if msg.round_id in self._released:
            raise ProtocolViolation(f"round {msg.round_id} was already decrypted once; a second release is refused")
        keys = self._keys_for(msg)
        if len(msg.contributors) < self.min_clients:
            raise ProtocolViolation(f"an aggregate of {len(msg.contributors)} contributors is refused; "
                                    f"the decryptor needs at least {self.min_clients}")
        self._released.add(msg.round_id)
        self._round_keys.pop(msg.round_id, None)  # the round's secret key goes with its one release
        if self._keep_last:
            self._audit = (msg.round_id, keys)
        summed = None
        if self._roster is not None:
            roster = self._roster.known() if isinstance(self._roster, Identities) else self._roster
            summed = verified_sum(self._ring, msg, roster=roster, round_id=msg.round_id, key_id=keys.key_id,
                                  min_clients=self.min_clients)
        return release_sum(self._ring, keys.decryptor(), msg, sender=DECRYPTOR_ID, ciphertexts=summed)

    def _keys_for(self, msg: DecryptRequest) -> DecryptorKeys:
        if self._keys is not None:
            if msg.key_id != self._keys.key_id:
                raise ProtocolViolation("the decryption request is for ciphertexts under another key")
            return self._keys
        entry = self._round_keys.get(msg.round_id)
        if entry is None or entry[0].key_id != msg.key_id:
            raise ProtocolViolation(f"the decryption request is for ciphertexts under another key than "
                                    f"round {msg.round_id}'s")
        return entry[0]

    def audit_keys(self, round_id: int) -> DecryptorKeys | None:
        """The keys of ``round_id`` as a colluding decryptor would hold them (simulations only)."""
        if self._keys is not None:
            return self._keys
        if self._audit is not None and self._audit[0] == round_id:
            return self._audit[1]
        entry = self._round_keys.get(round_id)
        return entry[0] if entry is not None else None

    @property
    def authenticated(self) -> bool:
        """True when it releases only sums it recomputed from signed uploads (:mod:`he.binding`)."""
        return self._roster is not None

    def __repr__(self) -> str:
        keys = "per round" if self._keys is None else self._keys.key_id.hex()
        return (f"Decryptor(keys={keys}, min_clients={self.min_clients}, "
                f"released_rounds={len(self._released)})")
