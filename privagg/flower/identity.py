"""Who a Flower node is in privagg's protocols, and how the server learns it.

Active security (``SecAgg(security="active")``) needs every party to know every client's
Ed25519 public key (a :class:`~privagg.identity.Roster`) and each client its own signing key,
given *before* the run, never by the server during it. In Flower that is configuration:

* each SuperNode's node config::

      flower-supernode ... --node-config "privagg-signing-key='/etc/privagg/client-7.key' \\
                                          privagg-roster='/etc/privagg/roster.json'"

  ``privagg-client-id = 7`` may be added; it must then be the roster id of that key;
* the ServerApp: the same ``roster.json``, as a path or a :class:`Roster`
  (``SecureFedAvg(..., roster=path)``; the example reads the run config's ``privagg-roster``).

:meth:`privagg.identity.Identities.save` writes both kinds of file for a test federation.

**The protocol id of a provisioned node is its id in the roster**, in every mode, not Flower's
node id: the SuperLink draws node ids when nodes register, so they are the server side's to
choose and cannot be provisioned beforehand. A node without provisioning is known by its
Flower node id and takes part only in modes without identities.

**How the server learns which node holds which id**: before a node's first round, the
workflow sends it an identify request with a fresh nonce; the node answers with its roster id
and its signature over the run id, its Flower node id, the nonce and that id
(:func:`identify_payload`). The server puts a node in a round only under an id of *its own*
roster whose key made that signature, and only one node per id. Clients do not rely on it: they
check the round's participants against their own roster, and the protocol's signatures (which
also cover the digest of the model each client received) against the keys in it.

Signing keys stay in files: a ClientApp process reads its key to find its roster id and to sign
an identify reply, and the session host loads it from the path to run the session; neither
puts it in ``Context.state``, a message, a log or a pickle (:class:`~privagg.identity.SigningKey` refuses
to be printed or pickled). This module imports neither Flower nor a mode.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from privagg.errors import ConfigurationError
from privagg.identity import Roster, SigningKey
from privagg.interface import Aggregator, ClientSession
from privagg.transcript import Transcript

__all__ = [
    "SIGNING_KEY_CONFIG", "ROSTER_CONFIG", "CLIENT_ID_CONFIG", "NodeIdentity", "identify_payload",
    "verify_identify", "load_roster", "roster_from", "uses_identities", "with_roster", "client_session",
]

#: Node-config keys of a provisioned SuperNode (the ServerApp's roster may use ROSTER_CONFIG too).
SIGNING_KEY_CONFIG = "privagg-signing-key"
ROSTER_CONFIG = "privagg-roster"
CLIENT_ID_CONFIG = "privagg-client-id"

_IDENTIFY_LABEL = b"privagg/flower/identify/v1"
#: Flower carries integers in records as signed 64-bit values.
_MAX_FLOWER_ID = 2**63


@dataclass(frozen=True)
class NodeIdentity:
    """A provisioned node: its roster id, the roster, and where its signing key lies.

    Holds the key's *path*, never the key: :meth:`signing_key` reads it when it is needed.
    """

    client_id: int
    roster_path: str
    key_path: str
    roster: Roster = field(repr=False, compare=False)

    @classmethod
    def load(cls, roster_path: str | os.PathLike[str], key_path: str | os.PathLike[str],
             client_id: int | None = None) -> NodeIdentity:
        """Read the roster and the key; find (or check) the key's id in the roster."""
        roster = load_roster(roster_path)
        key = _load_key(key_path)
        public = key.public_bytes()
        del key
        owned = sorted(cid for cid, pk in roster.public_bytes().items() if pk == public)
        if client_id is not None:
            if isinstance(client_id, bool) or not isinstance(client_id, int):
                raise ConfigurationError(f"{CLIENT_ID_CONFIG} must be an integer, got {client_id!r}")
            where = os.fspath(roster_path)
            if client_id not in roster:
                raise ConfigurationError(f"{CLIENT_ID_CONFIG} {client_id} is not in the roster {where!r}")
            if client_id not in owned:
                raise ConfigurationError(f"the signing key {os.fspath(key_path)!r} is not the key of client "
                                         f"{client_id} in the roster {where!r}")
        elif not owned:
            raise ConfigurationError(f"the signing key {os.fspath(key_path)!r} belongs to no client of the roster "
                                     f"{os.fspath(roster_path)!r}")
        elif len(owned) > 1:
            raise ConfigurationError(f"the roster gives this signing key to several clients {owned[:5]}: set "
                                     f"{CLIENT_ID_CONFIG}")
        cid = client_id if client_id is not None else owned[0]
        if not 0 <= cid < _MAX_FLOWER_ID:
            raise ConfigurationError(f"client id {cid} does not fit Flower's records (0 <= id < 2^63)")
        return cls(cid, os.fspath(roster_path), os.fspath(key_path), roster)

    @classmethod
    def from_node_config(cls, config: Mapping[str, Any]) -> NodeIdentity | None:
        """The node's identity from its node config; ``None`` when it is not provisioned."""
        key_path, roster_path = config.get(SIGNING_KEY_CONFIG), config.get(ROSTER_CONFIG)
        client_id = config.get(CLIENT_ID_CONFIG)
        if key_path is None and roster_path is None:
            if client_id is not None:
                raise ConfigurationError(f"node config sets {CLIENT_ID_CONFIG} without {SIGNING_KEY_CONFIG} and "
                                         f"{ROSTER_CONFIG}")
            return None
        if not (isinstance(key_path, str) and key_path and isinstance(roster_path, str) and roster_path):
            raise ConfigurationError(f"a provisioned node needs both {SIGNING_KEY_CONFIG} and {ROSTER_CONFIG} "
                                     f"(file paths) in its node config")
        return cls.load(roster_path, key_path, client_id)

    def signing_key(self) -> SigningKey:
        """This node's key, read from its file now (keep it no longer than needed)."""
        key = _load_key(self.key_path)
        if key.public_bytes() != self.roster.public_bytes()[self.client_id]:
            raise ConfigurationError(f"the signing key {self.key_path!r} changed: it is no longer client "
                                     f"{self.client_id}'s key in the roster")
        return key


def load_roster(path: str | os.PathLike[str]) -> Roster:
    try:
        roster = Roster.load(path)
    except OSError as exc:
        raise ConfigurationError(f"cannot read the roster {os.fspath(path)!r}: {exc.strerror}") from None
    if not len(roster):
        raise ConfigurationError(f"the roster {os.fspath(path)!r} is empty")
    return roster


def _load_key(path: str | os.PathLike[str]) -> SigningKey:
    try:
        return SigningKey.load(path)
    except OSError as exc:
        raise ConfigurationError(f"cannot read the signing key {os.fspath(path)!r}: {exc.strerror}") from None


# -- identification --------------------------------------------------------------------------

def identify_payload(run_id: int, node_id: int, nonce: bytes, client_id: int) -> bytes:
    """What a node signs to prove that Flower node ``node_id`` of run ``run_id`` holds ``client_id``'s key."""
    return (Transcript(_IDENTIFY_LABEL).int("run", run_id).int("node", node_id).bytes("nonce", nonce)
            .int("client", client_id).digest())


def verify_identify(roster: Roster, run_id: int, node_id: int, nonce: bytes, client_id: int,
                    signature: bytes) -> str | None:
    """``None`` when the identify reply proves ``client_id``, else the reason to refuse the node."""
    if client_id not in roster:
        return f"claims client id {client_id}, which is not in the server's roster"
    if not roster.verify(client_id, signature, identify_payload(run_id, node_id, nonce, client_id)):
        return f"claims client id {client_id} without a valid signature of that client's key"
    return None


# -- aggregators that take identities ------------------------------------------------------------

def _roster_holder(aggregator: Any) -> Any:
    """The aggregator, or the one it wraps (a DP wrapper), that is configured with a roster."""
    for candidate in (aggregator, getattr(aggregator, "aggregator", None)):
        if dataclasses.is_dataclass(candidate) and any(f.name == "roster" for f in dataclasses.fields(candidate)):
            return candidate
    return None


def uses_identities(aggregator: Aggregator) -> bool:
    """True when the mode signs with long-term identities (secure aggregation's active security,
    CKKS's signed uploads and key distribution)."""
    holder = _roster_holder(aggregator)
    return holder is not None and bool(getattr(holder, "active", False) or getattr(holder, "authenticated", False))


def with_roster(aggregator: Aggregator, roster: Roster) -> Aggregator:
    """``aggregator`` configured with the provisioned ``roster`` (unchanged if it takes none)."""
    holder = _roster_holder(aggregator)
    if holder is None:
        return aggregator
    names = {f.name for f in dataclasses.fields(holder)}
    changes: dict[str, Any] = {"roster": roster}
    if "identities" in names:
        changes["identities"] = None  # never keys generated on the spot next to a provisioned roster
    configured = dataclasses.replace(holder, **changes)
    if holder is aggregator:
        return configured  # type: ignore[no-any-return]
    return dataclasses.replace(aggregator, aggregator=configured)  # type: ignore[type-var]


def with_ledger(aggregator: Aggregator, path: str) -> Aggregator:
    """``aggregator`` whose clients remember, in the file ``path``, what they already released
    (:mod:`privagg.ledger`): each round's session runs in a new session-host process, so an
    in-memory ledger would forget between rounds and a server could run a round twice."""
    from privagg.ledger import ContributionLedger

    holder = _roster_holder(aggregator)
    if holder is None or "ledger" not in {f.name for f in dataclasses.fields(holder)}:
        return aggregator
    configured = dataclasses.replace(holder, ledger=ContributionLedger(path))
    if holder is aggregator:
        return configured  # type: ignore[no-any-return]
    return dataclasses.replace(aggregator, aggregator=configured)  # type: ignore[type-var]


def client_session(aggregator: Aggregator, client_id: int, update: Any, *, round_id: int,
                   signing_key: SigningKey | None, model_digest: bytes) -> ClientSession:
    """A client session, given the signing key and the model digest when the mode takes them.

    A mode with identities needs both: without a provisioned key it would make one of its own,
    which no other party knows (every signature would fail), so that is refused here.
    """
    needs = uses_identities(aggregator)
    if needs and signing_key is None:
        raise ConfigurationError(
            f"mode {aggregator.mode!r} runs with active security, which needs this node's provisioned identity: "
            f"set {SIGNING_KEY_CONFIG} and {ROSTER_CONFIG} in its node config")
    try:
        accepted = inspect.signature(aggregator.client).parameters
    except (TypeError, ValueError):
        accepted = {}  # type: ignore[assignment]
    kwargs: dict[str, Any] = {}
    if "signing_key" in accepted:
        kwargs["signing_key"] = signing_key
        if "model_digest" in accepted:
            kwargs["model_digest"] = model_digest
    elif needs:
        raise ConfigurationError(
            f"mode {aggregator.mode!r} runs with active security but its client sessions take no signing key "
            f"and model digest ({type(aggregator).__name__}.client); it cannot run over Flower")
    return aggregator.client(client_id, update, round_id=round_id, **kwargs)  # type: ignore[call-arg,no-any-return]


def roster_from(value: Roster | str | os.PathLike[str] | None) -> Roster | None:
    """A roster given as itself or as a file path ("" or None: no roster)."""
    if value is None or isinstance(value, Roster):
        return value
    if isinstance(value, (str, os.PathLike)):
        return load_roster(value) if os.fspath(value) else None
    raise ConfigurationError(f"roster must be a Roster or a path to a roster file, got {type(value).__name__}")
