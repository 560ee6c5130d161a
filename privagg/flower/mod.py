"""``PrivaggMod``: the client side, a Flower Mod that answers our stage messages.

Put it first in the ClientApp's mods and leave ``train`` as it is::

    app = ClientApp(mods=[PrivaggMod({"secagg+": {}})])

    @app.train()
    def train(msg, context):            # unchanged: receives the model, returns the trained one
        ...

For the first stage of a round the Mod strips our records, calls ``train`` with exactly what a
FedAvg ClientApp would get, takes the ``ArrayRecord`` it returns, turns it into the update
(the delta from the received model by default) and starts a client session on it; the session
answers the stage, and only the session's reply leaves the node. Later stages go straight to
the same session, held by a session host (see :mod:`privagg.flower.session_host`): ``train``
runs once per round.

The client decides what it accepts, not the server: ``modes`` maps each mode this client
agrees to take part in to its options, and a request for another mode, or the same mode with
other options (a lower threshold, a wider clipping range), is refused with
:class:`~privagg.errors.ProtocolViolation`. Without ``modes`` the Mod reads them from the node
config (``privagg-modes``, or ``privagg-mode`` and ``privagg-options`` as a JSON object): the
node operator's word; failing that, from the run config, which the ServerApp reads too (the
word of whoever submitted the run). A plain ``train`` message (no privagg records) is refused
unless ``allow_unprotected_train=True``: a client that insists on secure aggregation never
hands its update to a strategy that would read it in the clear. Malformed records raise
:class:`~privagg.errors.MalformedMessage`; Flower turns the exception into an error reply.

Identities (see :mod:`privagg.flower.identity`): a node whose node config provisions a signing
key and a roster takes part under its roster id, answers the server's identify request with a
signature, refuses a round whose participants are not all in its roster, and hands the session
the digest of the model it received (:func:`~privagg.flower.arrays.model_digest`), which active
security binds into every signature: a server that sends nodes different models is refused.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from flwr.app import ConfigRecord, Context, Message, MessageType, MetricRecord
from flwr.clientapp.typing import ClientAppCallable

from privagg.errors import ConfigurationError, InvalidUpdate, PrivaggError, ProtocolViolation
from privagg.flower.arrays import flatten_record, model_digest, update_vector
from privagg.flower.identity import NodeIdentity, identify_payload
from privagg.flower.records import (
    IDENTIFY_KEY,
    StageReply,
    StageRequest,
    canonical_json,
    carries_privagg,
    read_identify_request,
    read_request,
    user_content,
    write_identify_reply,
    write_reply,
)
from privagg.flower.session_host import SessionHandle, ask_session, close_session, start_session

__all__ = ["PrivaggMod", "STATE_KEY", "MODE_KEY", "OPTIONS_KEY", "MODES_KEY"]

#: Where ``Context.state`` keeps the address of this node's session host (never a secret of the protocol).
STATE_KEY = "privagg.session"
MODE_KEY = "privagg-mode"
OPTIONS_KEY = "privagg-options"
MODES_KEY = "privagg-modes"


class PrivaggMod:
    """A Flower Mod running this node's side of privagg's aggregation protocols.

    modes: mode name -> options this client accepts (default: from the node config, else the run
        config).
    allow_unprotected_train: pass plain ``train`` messages to ``train`` (default: refuse them).
    forward_metrics: send the MetricRecords ``train`` returns (e.g. ``num-examples``) to the
        server in the clear, next to the first stage's reply (default: drop them; they describe
        the client's data).
    max_session_seconds: the longest a session host waits for the next stage, whatever the
        server asks for.
    """

    def __init__(self, modes: Mapping[str, Mapping[str, Any]] | None = None, *,
                 allow_unprotected_train: bool = False, forward_metrics: bool = False,
                 max_session_seconds: float = 900.0) -> None:
        self.modes = None if modes is None else {str(k): dict(v) for k, v in modes.items()}
        if self.modes is not None:
            for options in self.modes.values():
                canonical_json(options)  # fail now, not in the middle of a round
        self.allow_unprotected_train = allow_unprotected_train
        self.forward_metrics = forward_metrics
        if not max_session_seconds > 0:
            raise ConfigurationError("max_session_seconds must be positive")
        self.max_session_seconds = float(max_session_seconds)

    def __repr__(self) -> str:
        modes = sorted(self.modes) if self.modes is not None else "from run config"
        return f"PrivaggMod(modes={modes}, allow_unprotected_train={self.allow_unprotected_train})"

    # -- the Mod protocol ----------------------------------------------------------------------
    def __call__(self, msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
        kind = msg.metadata.message_type.split(".")[0]
        if not msg.has_content():
            return call_next(msg, context)
        if kind != MessageType.TRAIN:
            if carries_privagg(msg.content):
                raise ProtocolViolation(f"privagg records arrived in a {msg.metadata.message_type!r} message; "
                                        f"they belong to 'train' messages only")
            return call_next(msg, context)
        if msg.metadata.dst_node_id != context.node_id:
            raise ProtocolViolation(f"message for node {msg.metadata.dst_node_id} arrived at node {context.node_id}")
        if IDENTIFY_KEY in msg.content:
            return self._identify(msg, context)
        request = read_request(msg.content)
        if request is None:
            if self.allow_unprotected_train:
                return call_next(msg, context)
            raise ProtocolViolation(
                "this ClientApp aggregates only through privagg (PrivaggMod); the server sent a plain 'train' "
                "message, which would hand the update over in the clear")
        self._check_accepted(request, context)
        if request.first:
            return self._first_stage(msg, request, context, call_next)
        return self._later_stage(msg, request, context)

    # -- the stages ----------------------------------------------------------------------------
    def _identify(self, msg: Message, context: Context) -> Message:
        """Prove to the server which roster id this node holds (it signs a fresh nonce)."""
        nonce = read_identify_request(msg.content)
        assert nonce is not None
        identity = NodeIdentity.from_node_config(context.node_config)
        if identity is None:
            raise ProtocolViolation(
                "the server asked this node for its privagg identity, but it has none: provision "
                "privagg-signing-key and privagg-roster in its node config")
        key = identity.signing_key()
        signature = key.sign(identify_payload(context.run_id, context.node_id, nonce, identity.client_id))
        del key
        return Message(write_identify_reply(identity.client_id, signature), reply_to=msg)

    def _first_stage(self, msg: Message, request: StageRequest, context: Context,
                     call_next: ClientAppCallable) -> Message:
        _close_previous(context)
        identity = NodeIdentity.from_node_config(context.node_config)
        client_id = identity.client_id if identity is not None else context.node_id
        _check_participants(request, client_id, identity)
        msg.content = user_content(msg.content)  # train sees what a FedAvg ClientApp would see
        received_record = _model(msg.content.array_records, request.arrays_key, "received")
        received = flatten_record(received_record)
        digest = model_digest(received_record)  # before train, which may change the record in place
        del received_record
        out = call_next(msg, context)
        if out.has_error():
            return out  # the server counts this node out of the round, with train's reason
        trained = _model(out.content.array_records, request.arrays_key, "returned by train")
        vector = update_vector(received, trained, request.update)
        dimension = request.hints.get("dimension")
        if dimension is not None and dimension != vector.shape[0]:
            raise ProtocolViolation(f"server built the round for {dimension} values, the update has {vector.shape[0]}")
        handle, reply = start_session(
            mode=request.mode, options=request.options, hints=request.hints, client_id=client_id,
            round_id=request.round_id, update=vector, first_message=request.message,
            idle_timeout=min(request.session_timeout, self.max_session_seconds), identity=identity,
            model_digest=digest)
        del vector
        if handle is not None:
            context.state[STATE_KEY] = ConfigRecord({"address": handle.address, "authkey": handle.authkey,
                                                     "round-id": handle.round_id, "pid": handle.pid})
        metrics: dict[str, MetricRecord] = dict(out.content.metric_records) if self.forward_metrics else {}
        return Message(write_reply(StageReply(request.round_id, request.stage, reply), metrics), reply_to=msg)

    def _later_stage(self, msg: Message, request: StageRequest, context: Context) -> Message:
        handle = _load_handle(context)
        if handle is None or handle.round_id != request.round_id:
            raise ProtocolViolation(f"stage {request.stage!r} of round {request.round_id} arrived, but this node "
                                    f"has no session for that round (did it miss the first stage?)")
        try:
            reply, finished = ask_session(handle, request.message)
        except PrivaggError:
            close_session(handle)
            context.state.pop(STATE_KEY, None)
            raise
        if finished:
            context.state.pop(STATE_KEY, None)
        return Message(write_reply(StageReply(request.round_id, request.stage, reply)), reply_to=msg)

    # -- policy --------------------------------------------------------------------------------
    def accepted_modes(self, context: Context) -> dict[str, dict[str, Any]]:
        """Mode -> options this client accepts: from the constructor, else the node config, else
        the run config."""
        if self.modes is not None:
            return self.modes
        for where, config in (("node config", context.node_config), ("run config", context.run_config)):
            if MODES_KEY in config:
                modes = _json_object(config[MODES_KEY], MODES_KEY, where)
                if not all(isinstance(v, dict) for v in modes.values()):
                    raise ConfigurationError(f"{where} {MODES_KEY!r} must map each mode to an object of options")
                return modes
            if MODE_KEY in config:
                mode = config[MODE_KEY]
                if not isinstance(mode, str) or not mode:
                    raise ConfigurationError(f"{where} {MODE_KEY!r} must be a mode name, got {mode!r}")
                return {mode: _json_object(config.get(OPTIONS_KEY, "{}"), OPTIONS_KEY, where)}
        raise ConfigurationError(f"PrivaggMod() without modes reads them from the node config or the run config, "
                                 f"which have neither {MODES_KEY!r} nor a {MODE_KEY!r} string")

    def _check_accepted(self, request: StageRequest, context: Context) -> None:
        accepted = self.accepted_modes(context)
        if request.mode not in accepted:
            raise ProtocolViolation(f"server asked for mode {request.mode!r}; this client takes part only in "
                                    f"{sorted(accepted)}")
        mine = json.loads(canonical_json(accepted[request.mode]))
        if canonical_json(request.options) != canonical_json(mine):
            theirs = dict(request.options)
            differing = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
            raise ProtocolViolation(f"server runs mode {request.mode!r} with other options than this client "
                                    f"accepts (differing: {differing})")


def _json_object(raw: Any, key: str, where: str) -> dict[str, Any]:
    try:
        value = json.loads(raw) if isinstance(raw, str) else None
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise ConfigurationError(f"{where} {key!r} must be a JSON object, got {raw!r}")
    return value


def _check_participants(request: StageRequest, client_id: int, identity: NodeIdentity | None) -> None:
    """The round's announced participants include this node and, if provisioned, only its roster."""
    if client_id not in request.participants:
        hint = (" (a provisioned node takes part under its roster id: does the ServerApp have the roster?)"
                if identity is not None else "")
        raise ProtocolViolation(f"the server's round {request.round_id} does not name this node's id {client_id} "
                                f"among its participants{hint}")
    if identity is not None:
        unknown = identity.roster.missing(request.participants)
        if unknown:
            raise ProtocolViolation(f"the server announced participants {unknown[:5]} that are not in this node's "
                                    f"roster ({len(unknown)} unknown): refusing the round")


def _model(records: Mapping[str, Any], key: str, what: str) -> Any:
    if key in records:
        return records[key]
    if len(records) == 1:
        return next(iter(records.values()))
    raise InvalidUpdate(f"the model {what} is not in ArrayRecord {key!r} (records: {sorted(records)})")


def _load_handle(context: Context) -> SessionHandle | None:
    record = context.state.get(STATE_KEY)
    if not isinstance(record, ConfigRecord):
        return None
    address, authkey, round_id, pid = (record.get(k) for k in ("address", "authkey", "round-id", "pid"))
    if not (isinstance(address, str) and isinstance(authkey, bytes) and isinstance(round_id, int)
            and isinstance(pid, int)):
        return None
    return SessionHandle(address, authkey, round_id, pid)


def _close_previous(context: Context) -> None:
    handle = _load_handle(context)
    if handle is not None:
        close_session(handle)
    context.state.pop(STATE_KEY, None)
