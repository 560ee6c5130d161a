"""``CKKS``: the configuration object of homomorphic aggregation, and who holds which key.

``CKKS(preset=..., key_holder=...)`` makes sessions for the three roles:

* ``client(...)``: encrypts one update. With ``key_holder="clients"`` it uses the federation's
  :class:`~he.keys.SharedKey` when one was provisioned (``shared_key=``), or else receives the
  round's key in the protocol (below), and may be asked to decrypt the aggregate; with
  ``"decryptor"`` it needs only the decryptor's :class:`~he.keys.PublicKey` (``public_key=``,
  or ``decryptor=`` in a simulation) and refuses to decrypt.
* ``server(...)``: adds ciphertexts. It is built from the public parameters alone
  (:class:`~he.ring.Ring`): no secret key, no public key, no evaluation keys.
* the decryptor (:class:`~he.decryptor.Decryptor`), a separate party in ``"decryptor"`` mode.

Key setup, ``key_holder="clients"``. Provisioned (``shared_key=`` on every client, e.g. through
:func:`he.wrap_shared_key`): the round has two stages, ``collect_ciphertexts`` and ``decrypt``.
Not provisioned: the round starts with an in-round setup the server relays but cannot read:
``advertise_keys`` (each client sends a fresh X25519 public key) and ``deal_key`` (the
lowest-id client that advertised, the *dealer*, generates the round's key and wraps it to every
other client's X25519 key; if it is silent the next one deals). That is what lets a
zero-configuration federation (``privagg simulate``, the Flower integration) run without any
party but the clients ever holding the key. Each advertisement is signed with the client's
roster identity and each package by the dealer (:mod:`he.distribution`), so a relaying server
can neither add a phantom peer nor deal a key of its own (``dealer=`` pins the agreed dealer).
In simulations the key of the last round dealt is kept on the configuration (only that one),
so :meth:`CKKS.disclose` can decrypt what colluding clients could.

Uploads are signed (the default, ``authenticated=True``): each client signs its ciphertexts on
the session (:mod:`he.transcript`) with its :class:`~privagg.identity.Roster` identity, the
server refuses an upload without its client's signature, and the key holder releases only the
sum it recomputed from at least ``min_clients`` signed uploads (:mod:`he.binding`). Every
party of a deployment is given the same ``roster`` and each client its ``signing_key``
(:meth:`privagg.identity.Identities.save` writes the files); simulations generate them.

``key_holder="decryptor"``: a configuration with neither ``decryptor=`` nor ``public_key=``
creates an in-process decryptor when a client or the server is first made, for simulations
only (as :class:`secagg.SecAgg` does with identities); the server session then hands it the
aggregate (:mod:`he.decryptor`). In a deployment the clients' configuration holds
``public_key=`` only and the server's holds no key at all. A configuration holding a secret key
refuses to be pickled.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from he.decryptor import Decryptor
from he.keys import KEY_ID_BYTES, PublicKey, SharedKey
from he.messages import NO_KEY_ID
from he.params import KEY_HOLDERS, CKKSParameters, KeyHolder
from he.pool import resolve_processes
from privagg.errors import ConfigurationError
from privagg.identity import Identities, Roster, SigningKey, as_signing_key
from privagg.interface import Aggregator, ServerView
from privagg.threats import Disclosure, ThreatModel

__all__ = ["CKKS", "STAGES", "SETUP_STAGES", "ADVERTISE", "DEAL", "COLLECT", "DECRYPT"]

ADVERTISE, DEAL, COLLECT, DECRYPT = "advertise_keys", "deal_key", "collect_ciphertexts", "decrypt"
STAGES = (COLLECT, DECRYPT)
SETUP_STAGES = (ADVERTISE, DEAL, COLLECT, DECRYPT)


@dataclass(frozen=True)
class CKKS(Aggregator):
    """CKKS homomorphic aggregation: the server adds ciphertexts it cannot decrypt.

    preset: ``"lean"`` (default), ``"fast"``, ``"compact"`` or ``"standard"`` (see :data:`he.params.PRESETS`);
        ``poly_modulus_degree`` / ``coeff_modulus_bits`` override its ring.
    key_holder: ``"clients"`` (a shared secret key, seeded symmetric ciphertexts) or
        ``"decryptor"`` (a separate decryptor party, public-key ciphertexts).
    clip: every value is clipped to ``[-clip, clip]`` (the headroom depends on it).
    max_clients: the largest round the default scale leaves room for.
    min_clients: the fewest contributors whose sum the key holder will decrypt (default 2).
    scale_bits, flood_bits: override the derived scale and IND-CPA-D flooding (he.params).
    shared_key: the clients' provisioned :class:`SharedKey` (``"clients"``; else set up in the round).
    decryptor: an in-process :class:`Decryptor` (``"decryptor"``; simulations, tests, benchmarks).
    public_key: the decryptor's :class:`PublicKey` (``"decryptor"``; what a deployed client holds).
    key_id: the key's public id, for a server that wants to pin it (else it learns it from clients).
    keep_ciphertexts: keep each upload in the server view (auditing) or only its size.
    server_processes: processes the server adds uploads with (1: this one; ``k``: this one and
        ``k - 1`` workers holding slices of the sums, :mod:`he.pool`; ``"auto"``: one per CPU).
    roster / identities: the clients' Ed25519 public keys (:class:`~privagg.identity.Roster`,
        configured on every party) or, for simulations, :class:`~privagg.identity.Identities`
        generated on demand (the default when neither is given). Every upload is signed on the
        session and the key holder releases only the sum it recomputed from signed uploads
        (:mod:`he.binding`).
    decryptor_identity: the decryptor's Ed25519 public key (32 bytes; ``Decryptor.identity_public_bytes()``),
        which signs each round's public key (``"decryptor"`` clients of a deployment; see :mod:`he.round_keys`).
    identity_dir: a directory written by :meth:`privagg.identity.Identities.save` (``roster.json``,
        ``client-<id>.key``): the roster is read from it and each client's signing key too, when
        the client's own file is there (a path option, for registries and run configurations).
    dealer: the roster id of the agreed dealer of the in-round key setup; a client then refuses a
        key package from anyone else (without it, any roster member's signed package is accepted).
    authenticated: ``False`` turns the signatures off (no roster needed): the key holder then
        decrypts the server's aggregate on its word, which is safe against an honest-but-curious
        server only (a deviating server recovers the key with one crafted ciphertext).
    """

    preset: str = "lean"
    key_holder: KeyHolder = "clients"
    clip: float = 1.0
    max_clients: int = 1024
    min_clients: int = 2
    scale_bits: int | None = None
    flood_bits: int | None = None
    poly_modulus_degree: int | None = None
    coeff_modulus_bits: tuple[int, ...] | None = None
    shared_key: SharedKey | None = None
    decryptor: Decryptor | None = None
    public_key: PublicKey | None = None
    key_id: bytes | None = None
    keep_ciphertexts: bool = True
    server_processes: int | str = 1
    roster: Roster | None = None
    identities: Identities | None = None
    authenticated: bool = True
    decryptor_identity: bytes | None = None
    dealer: int | None = None
    identity_dir: str | None = None
    params: CKKSParameters = field(init=False, repr=False, compare=False)
    _round_keys: dict[int, SharedKey] = field(init=False, repr=False, compare=False, default_factory=dict)

    mode = "ckks"

    def __post_init__(self) -> None:
        if self.key_holder not in KEY_HOLDERS:
            raise ConfigurationError(f"key_holder must be 'clients' or 'decryptor', got {self.key_holder!r}")
        bits = self.coeff_modulus_bits
        if isinstance(bits, list):
            object.__setattr__(self, "coeff_modulus_bits", tuple(bits))
        params = CKKSParameters.from_preset(
            self.preset, key_holder=self.key_holder, clip=self.clip, max_clients=self.max_clients,
            scale_bits=self.scale_bits, flood_bits=self.flood_bits, poly_modulus_degree=self.poly_modulus_degree,
            coeff_modulus_bits=self.coeff_modulus_bits)
        object.__setattr__(self, "params", params)
        if isinstance(self.min_clients, bool) or not isinstance(self.min_clients, int) or self.min_clients < 1:
            raise ConfigurationError(f"min_clients must be a positive integer, got {self.min_clients!r}")
        if not isinstance(self.keep_ciphertexts, bool):
            raise ConfigurationError(f"keep_ciphertexts must be a bool, got {self.keep_ciphertexts!r}")
        resolve_processes(self.server_processes)  # refuses a bad value by name
        if not isinstance(self.authenticated, bool):
            raise ConfigurationError(f"authenticated must be a bool, got {self.authenticated!r}")
        if self.roster is not None and not isinstance(self.roster, Roster):
            raise ConfigurationError("roster must be a privagg.identity.Roster")
        if self.identities is not None and not isinstance(self.identities, Identities):
            raise ConfigurationError("identities must be privagg.identity.Identities")
        if self.identity_dir is not None:
            if self.roster is not None or self.identities is not None:
                raise ConfigurationError("identity_dir gives the roster: do not also pass roster or identities")
            object.__setattr__(self, "roster", Roster.load(Path(self.identity_dir) / "roster.json"))
        if self.authenticated and self.roster is None and self.identities is None:
            object.__setattr__(self, "identities", Identities())
        if self.key_id is not None and (not isinstance(self.key_id, bytes) or len(self.key_id) != KEY_ID_BYTES):
            raise ConfigurationError(f"key_id must be {KEY_ID_BYTES} bytes")
        if self.key_holder == "clients":
            self._check_clients_keys()
        else:
            self._check_decryptor_keys()

    def _check_clients_keys(self) -> None:
        if self.decryptor is not None or self.public_key is not None:
            raise ConfigurationError("key_holder='clients' has no decryptor and no public key; "
                                     "use key_holder='decryptor'")
        if self.shared_key is not None:
            if not isinstance(self.shared_key, SharedKey) or not self.shared_key.compatible_with(self.params):
                raise ConfigurationError("shared_key must be a SharedKey made for this ring")
            if self.key_id is not None and self.key_id != self.shared_key.key_id:
                raise ConfigurationError("key_id does not match the shared key")

    def _check_decryptor_keys(self) -> None:
        if self.shared_key is not None:
            raise ConfigurationError("key_holder='decryptor' has no shared client key; use key_holder='clients'")
        if self.decryptor is not None and (not isinstance(self.decryptor, Decryptor)
                                           or self.decryptor.params.digest != self.params.digest):
            raise ConfigurationError("decryptor must be a Decryptor built for these parameters")
        if self.public_key is not None and (not isinstance(self.public_key, PublicKey)
                                            or not self.public_key.compatible_with(self.params)):
            raise ConfigurationError("public_key must be a PublicKey made for this ring")
        if isinstance(self.decryptor_identity, str):  # hex, as a run configuration passes it
            try:
                object.__setattr__(self, "decryptor_identity", bytes.fromhex(self.decryptor_identity))
            except ValueError:
                raise ConfigurationError("decryptor_identity must be 32 bytes or their hex") from None
        if self.decryptor_identity is not None and (not isinstance(self.decryptor_identity, bytes)
                                                    or len(self.decryptor_identity) != 32):
            raise ConfigurationError("decryptor_identity must be the decryptor's 32-byte Ed25519 public key")
        if self.decryptor_identity is not None:
            try:
                Ed25519PublicKey.from_public_bytes(self.decryptor_identity)
            except ValueError:
                raise ConfigurationError("decryptor_identity is not an Ed25519 public key") from None
        long_term = self.decryptor if self.decryptor is not None and not self.decryptor.per_round_keys else None
        ids = {k.key_id for k in (long_term, self.public_key) if k is not None}
        if self.key_id is not None:
            ids.add(self.key_id)
        if len(ids) > 1:
            raise ConfigurationError("decryptor, public_key and key_id name different keys")

    # -- the Aggregator interface ---------------------------------------------------------------
    @property
    def in_round_key_setup(self) -> bool:
        """True when the clients' key is dealt inside each round (no ``shared_key`` provisioned)."""
        return self.key_holder == "clients" and self.shared_key is None

    @property
    def stages(self) -> tuple[str, ...]:
        return SETUP_STAGES if self.in_round_key_setup else STAGES

    def trusted_roster(self) -> Roster | None:
        """The identities this configuration trusts (None when unauthenticated)."""
        if not self.authenticated:
            return None
        if self.roster is not None:
            return self.roster
        assert self.identities is not None
        return self.identities.known()

    def decryptor_trust(self) -> Roster | Identities | None:
        """What an in-process :class:`Decryptor` of this configuration verifies uploads against."""
        if not self.authenticated:
            return None
        return self.roster if self.roster is not None else self.identities

    def _signing_key(self, cid: int, given: SigningKey | Any | None) -> SigningKey | None:
        if not self.authenticated:
            return None
        key = as_signing_key(given)
        if key is not None:
            return key
        if self.identities is None:
            own = Path(self.identity_dir) / f"client-{cid}.key" if self.identity_dir is not None else None
            if own is not None and own.exists():
                return SigningKey.load(own)
            raise ConfigurationError(f"client {cid} needs its signing_key (the roster is configured)")
        return self.identities.signing_key(cid)

    def client(self, client_id: int, update: Any, *, round_id: int = 0, seed: int | None = None,
               signing_key: SigningKey | Any | None = None) -> Any:
        """A client session; ``signing_key``: the client's Ed25519 identity (else from
        ``identities``); ``seed`` is unused (CKKS has no non-secret randomness to fix)."""
        from he.client import CKKSClient

        key = self._signing_key(client_id, signing_key)
        if self.key_holder == "clients":
            return CKKSClient(self, client_id, update, round_id, shared_key=self.shared_key, signing_key=key)
        return CKKSClient(self, client_id, update, round_id, public_key=self._public_key(), signing_key=key,
                          decryptor_identity=self.decryptor_verify_key())

    def server(self, client_ids: Iterable[int], *, round_id: int = 0, dimension: int | None = None,
               round_key: bytes | None = None) -> Any:
        """A server session; with an in-process decryptor (simulations) it is wired in. ``round_key``:
        the decryptor's signed announcement of this round's key (``Decryptor.round_key(round_id)``,
        fetched by the deployment; an in-process decryptor is asked directly)."""
        from he.server import CKKSServer

        link = None
        if self.key_holder == "decryptor":
            if self.decryptor is not None:
                link = self.decryptor
            elif self.public_key is None and self.decryptor_identity is None:
                link = self._simulation_decryptor()  # a configured identity means a remote decryptor
        return CKKSServer(self, client_ids, round_id, decryptor=link, round_key=round_key)

    def disclose(self, view: ServerView, threat: ThreatModel) -> Disclosure:
        from he.disclosure import disclose

        return disclose(self, view, threat)

    # -- keys -----------------------------------------------------------------------------------
    def expected_key_id(self) -> bytes:
        """The key id the server announces (``NO_KEY_ID`` when it does not know it yet)."""
        long_term = self.decryptor if self.decryptor is not None and not self.decryptor.per_round_keys else None
        for holder in (self.shared_key, long_term, self.public_key):
            if holder is not None:
                return holder.key_id
        return self.key_id if self.key_id is not None else NO_KEY_ID

    def _remember_round_key(self, round_id: int, key: SharedKey) -> None:
        """A dealer made in-process keeps the key it dealt here, for :meth:`disclose` of that
        round in simulations: the last round's key only, never every key it ever dealt."""
        self._round_keys.clear()
        self._round_keys[round_id] = key

    def round_key(self, round_id: int) -> SharedKey | None:
        """The clients' key of ``round_id`` as far as this configuration knows it (colluders' view)."""
        return self.shared_key if self.shared_key is not None else self._round_keys.get(round_id)

    def _simulation_decryptor(self) -> Decryptor | None:
        if self.decryptor is None and self.public_key is None:
            object.__setattr__(self, "decryptor", Decryptor(self.params, min_clients=self.min_clients,
                                                            roster=self.decryptor_trust(), keep_last_for_audit=True))
        return self.decryptor

    def _public_key(self) -> PublicKey | None:
        """A long-term public key the clients encrypt to (None: each round's key is announced)."""
        if self.public_key is not None:
            return self.public_key
        if self.decryptor_identity is not None and self.decryptor is None:
            return None  # a remote decryptor announces each round's key
        decryptor = self._simulation_decryptor()
        assert decryptor is not None
        return None if decryptor.per_round_keys else decryptor.public_key

    def decryptor_verify_key(self) -> Ed25519PublicKey | None:
        """The decryptor identity a client checks round keys against (configured, or in-process)."""
        if self.decryptor_identity is not None:
            return Ed25519PublicKey.from_public_bytes(self.decryptor_identity)
        if self.decryptor is not None:
            return Ed25519PublicKey.from_public_bytes(self.decryptor.identity_public_bytes())
        return None

    def __repr__(self) -> str:
        held = {"shared key": self.shared_key, "decryptor": self.decryptor, "public key": self.public_key}
        keys = next((name for name, value in held.items() if value is not None),
                    "dealt in each round" if self.in_round_key_setup else "none yet")
        return (f"CKKS(preset={self.params.preset!r}, key_holder={self.key_holder!r}, "
                f"N={self.params.poly_modulus_degree}, scale=2^{self.params.scale_bits_resolved}, "
                f"flood_bits={self.params.flood_bits_resolved}, min_clients={self.min_clients}, keys={keys})")
