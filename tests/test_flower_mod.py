"""PrivaggMod and its session hosts, driven in-process with Flower's real Message and Context
objects: each call is what one ClientApp process does, and the session really lives in a
separate host process in between. (The same code against real SuperNodes is in
test_flower_federation.py.)"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from multiprocessing.connection import Client

import numpy as np
import pytest

pytest.importorskip("flwr")

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict  # noqa: E402

from privagg.errors import (  # noqa: E402
    AggregationAborted,
    ConfigurationError,
    InvalidUpdate,
    MalformedMessage,
    ProtocolViolation,
)
from privagg.flower.arrays import apply_aggregate, flatten_record, model_digest, update_vector  # noqa: E402
from privagg.flower.identity import NodeIdentity, verify_identify, with_roster  # noqa: E402
from privagg.flower.mod import STATE_KEY, PrivaggMod  # noqa: E402
from privagg.flower.records import (  # noqa: E402
    StageRequest,
    read_identify_reply,
    read_reply,
    write_identify_request,
    write_request,
)
from privagg.identity import Identities, Roster  # noqa: E402
from privagg.flower.session_host import SessionHandle, ask_session, close_session  # noqa: E402
from privagg.registry import make_aggregator  # noqa: E402

NODES = (1001, 2002, 3003)


pytestmark = pytest.mark.usefixtures("flower_task_identity")  # tests/conftest.py


def model() -> ArrayRecord:
    return ArrayRecord([np.zeros((2, 3), np.float32), np.linspace(-1, 1, 4).astype(np.float32),
                        np.array([5], np.int64)])


def delta_of(node: int) -> list[np.ndarray]:
    rng = np.random.default_rng(node)
    return [rng.uniform(-0.1, 0.1, (2, 3)).astype(np.float32), rng.uniform(-0.1, 0.1, 4).astype(np.float32),
            np.array([1], np.int64)]


def train_for(node: int, calls: list[int]) -> Callable[[Message, Context], Message]:
    def train(msg: Message, ctx: Context) -> Message:
        calls.append(node)
        assert not [k for k in msg.content if k.startswith("privagg")]  # our records never reach train
        arrays = msg.content["arrays"].to_numpy_ndarrays()
        trained = [(a + d).astype(a.dtype) for a, d in zip(arrays, delta_of(node))]
        return Message(RecordDict({"arrays": ArrayRecord(trained), "metrics": MetricRecord({"num-examples": 3})}),
                       reply_to=msg)
    return train


def context(node: int, node_config=None, **run_config) -> Context:
    return Context(run_id=1, node_id=node, node_config=dict(node_config or {}), state=RecordDict(),
                   run_config=run_config)


def run_round(mode: str, mod: PrivaggMod, contexts: dict[int, Context], *, options=None, round_id: int = 1,
              drop_after: dict[int, str] | None = None, roster=None, model_for=None, participants=None,
              errors: dict[int, Exception] | None = None):
    """A server session of ``mode`` talking to ``mod`` exactly as SecureAggregation does.

    ``contexts`` maps each protocol id to its node's context (the same id unless provisioned);
    ``model_for(cid)`` is the model sent to ``cid`` (default: the same for all); a node whose
    Mod raises is recorded in ``errors`` (when given) and counts as dropped, as in Flower."""
    options = options or {}
    base, layout = flatten_record(model())
    hints = {"clients": len(contexts), "dimension": layout.size}
    aggregator = make_aggregator(mode, hints=hints, **options)
    if roster is not None:
        aggregator = with_roster(aggregator, roster)
    server = aggregator.server(list(contexts), round_id=round_id)
    participants = tuple(sorted(contexts)) if participants is None else participants
    calls: list[int] = []
    first = True
    while not server.finished:
        stage = server.stage
        for cid, message in server.messages_to_send().items():
            if drop_after and cid in drop_after and drop_after[cid] == stage:
                continue
            request = StageRequest(mode, options, hints, round_id, stage, first, message.to_bytes(),
                                   session_timeout=30.0, participants=participants)
            sent = model_for(cid) if model_for is not None else model()
            content = write_request(request, RecordDict({"arrays": sent, "config": ConfigRecord({"lr": 0.1})})
                                    if first else None)
            node = contexts[cid].node_id
            try:
                reply = mod(Message(content, node, "train"), contexts[cid], train_for(cid, calls))
            except Exception as exc:
                if errors is None:
                    raise
                errors[cid] = exc
                continue
            stage_reply = read_reply(reply.content)
            if stage_reply.message is not None:
                server.receive(cid, stage_reply.message)
        first = False
        server.deadline_passed()
    return server.result(), calls


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("mode", ["plain", "secagg", "secagg+"])
def test_a_round_through_the_mod_is_exact_and_trains_once(mode: str) -> None:
    contexts = {n: context(n) for n in NODES}
    result, calls = run_round(mode, PrivaggMod({mode: {}}), contexts)
    assert sorted(calls) == sorted(NODES)  # train ran once per node, in the first stage only
    assert result.included == NODES
    agg = make_aggregator(mode, hints={"clients": 3, "dimension": 11})
    deltas = {n: np.concatenate([d.astype(np.float64).ravel() for d in delta_of(n)]) for n in NODES}
    # The trained float32 model minus the received one, exactly as the client computed it:
    base, layout = flatten_record(model())
    for n in NODES:
        trained = [(a + d).astype(a.dtype) for a, d in zip(model().to_numpy_ndarrays(), delta_of(n))]
        deltas[n] = flatten_record(ArrayRecord(trained))[0] - base
    fp = agg.encoding
    expected = sum(fp.encode(d).astype(object) for d in deltas.values()) % (1 << fp.bits)
    assert [int(x) for x in result.encoded] == [int(x) for x in expected]
    new = apply_aggregate(model(), result.aggregate / 3, "delta").to_numpy_ndarrays()
    assert new[2].tolist() == [6]  # the integer buffer moved by exactly its mean step
    for ctx in contexts.values():
        assert STATE_KEY not in ctx.state  # finished sessions leave nothing behind


def test_session_hosts_exit_and_hold_nothing_in_flowers_state() -> None:
    contexts = {n: context(n) for n in NODES}
    mod = PrivaggMod({"secagg": {}})
    server = make_aggregator("secagg", hints={"clients": 3, "dimension": 11}).server(NODES, round_id=4)
    hosts = {}
    for node, message in server.messages_to_send().items():
        request = StageRequest("secagg", {}, {"clients": 3, "dimension": 11}, 4, server.stage, True,
                               message.to_bytes(), participants=NODES)
        content = write_request(request, RecordDict({"arrays": model(), "config": ConfigRecord({})}))
        mod(Message(content, node, "train"), contexts[node], train_for(node, []))
        record = contexts[node].state[STATE_KEY]
        assert set(record) == {"address", "authkey", "round-id", "pid"}  # a way to reach it, no keys
        hosts[node] = int(record["pid"])
    assert all(_alive(pid) for pid in hosts.values())
    # A connection with the wrong key is refused; the host keeps serving the right one.
    record = contexts[NODES[0]].state[STATE_KEY]
    with pytest.raises(Exception):  # noqa: B017 - multiprocessing's AuthenticationError
        with Client(record["address"], family="AF_UNIX", authkey=b"\x00" * 32) as conn:
            conn.send_bytes(b"R")
    # A new round on the node closes the old session first.
    run_round("secagg", mod, contexts, round_id=5)
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in hosts.values()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(p) for p in hosts.values())


def test_an_idle_session_host_exits_on_its_own() -> None:
    ctx = context(NODES[0])
    server = make_aggregator("secagg", hints={"clients": 3, "dimension": 11}).server(NODES, round_id=2)
    message = server.messages_to_send()[NODES[0]]
    request = StageRequest("secagg", {}, {"clients": 3, "dimension": 11}, 2, server.stage, True, message.to_bytes(),
                           session_timeout=1.0, participants=NODES)
    PrivaggMod({"secagg": {}})(Message(write_request(request, RecordDict({"arrays": model()})), NODES[0], "train"),
                               ctx, train_for(NODES[0], []))
    record = ctx.state[STATE_KEY]
    pid = int(record["pid"])
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(pid)
    handle = SessionHandle(record["address"], record["authkey"], 2, pid)
    with pytest.raises(ProtocolViolation, match="no live privagg session"):
        ask_session(handle, b"anything")


def test_a_dropped_node_does_not_break_the_others() -> None:
    contexts = {n: context(n) for n in NODES}
    result, _ = run_round("secagg", PrivaggMod({"secagg": {}}), contexts, drop_after={NODES[2]: "masked_input"})
    assert result.included == NODES[:2] and result.dropped == (NODES[2],)
    # The dropped node's host still waits for a stage that will never come; a new round ends it.
    record = contexts[NODES[2]].state[STATE_KEY]
    close_session(SessionHandle(record["address"], record["authkey"], 1, int(record["pid"])))
    deadline = time.monotonic() + 10
    while _alive(int(record["pid"])) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(int(record["pid"]))


# -- what the client refuses --------------------------------------------------------------------------

def first_request(mode: str = "plain", options=None, **fields) -> Message:
    server = make_aggregator(mode, hints={"clients": 3, "dimension": 11}, **(options or {})).server(NODES, round_id=3)
    message = server.messages_to_send()[NODES[0]]
    fields.setdefault("participants", NODES)
    request = StageRequest(mode, options or {}, {"clients": 3, "dimension": fields.pop("dimension", 11)}, 3,
                           server.stage, True, message.to_bytes(), **fields)
    return Message(write_request(request, RecordDict({"arrays": model(), "config": ConfigRecord({})})), NODES[0],
                   "train")


def test_the_client_refuses_a_mode_it_did_not_accept() -> None:
    with pytest.raises(ProtocolViolation, match="takes part only in"):
        PrivaggMod({"secagg+": {}})(first_request("plain"), context(NODES[0]), train_for(NODES[0], []))


def test_the_client_refuses_other_options_for_its_mode() -> None:
    mod = PrivaggMod({"plain": {"clip": 0.5}})
    with pytest.raises(ProtocolViolation, match="clip"):
        mod(first_request("plain", {"clip": 4.0}), context(NODES[0]), train_for(NODES[0], []))


def test_modes_come_from_the_run_config_when_not_given() -> None:
    mod = PrivaggMod()
    ctx = context(NODES[0], **{"privagg-mode": "plain", "privagg-options": '{"clip": 0.5}'})
    reply = mod(first_request("plain", {"clip": 0.5}), ctx, train_for(NODES[0], []))
    assert read_reply(reply.content).message is not None
    with pytest.raises(ProtocolViolation):
        mod(first_request("secagg"), ctx, train_for(NODES[0], []))


def test_plain_train_messages_are_refused_unless_allowed() -> None:
    plain = Message(RecordDict({"arrays": model(), "config": ConfigRecord({})}), NODES[0], "train")
    calls: list[int] = []
    with pytest.raises(ProtocolViolation, match="in the clear"):
        PrivaggMod({"plain": {}})(plain, context(NODES[0]), train_for(NODES[0], calls))
    assert not calls
    reply = PrivaggMod({"plain": {}}, allow_unprotected_train=True)(plain, context(NODES[0]),
                                                                    train_for(NODES[0], calls))
    assert calls == [NODES[0]] and "arrays" in reply.content


def test_evaluate_passes_through_but_not_with_our_records() -> None:
    seen = []

    def evaluate(msg: Message, ctx: Context) -> Message:
        seen.append(msg.metadata.message_type)
        return Message(RecordDict({"metrics": MetricRecord({"acc": 1.0})}), reply_to=msg)

    mod = PrivaggMod({"plain": {}})
    mod(Message(RecordDict({"arrays": model()}), NODES[0], "evaluate"), context(NODES[0]), evaluate)
    assert seen == ["evaluate"]
    smuggled = Message(first_request().content, NODES[0], "evaluate")
    with pytest.raises(ProtocolViolation, match="'train' messages only"):
        mod(smuggled, context(NODES[0]), evaluate)


def test_a_later_stage_without_a_session_is_refused() -> None:
    request = StageRequest("secagg", {}, {"clients": 3, "dimension": 11}, 3, "share_keys", False, b"x")
    with pytest.raises(ProtocolViolation, match="no session"):
        PrivaggMod({"secagg": {}})(Message(write_request(request), NODES[0], "train"), context(NODES[0]),
                                   train_for(NODES[0], []))


def test_garbage_stage_bytes_come_back_as_malformed_message() -> None:
    request = StageRequest("plain", {}, {"clients": 3, "dimension": 11}, 3, "collect_updates", True, b"garbage",
                           participants=NODES)
    message = Message(write_request(request, RecordDict({"arrays": model()})), NODES[0], "train")
    with pytest.raises(MalformedMessage):
        PrivaggMod({"plain": {}})(message, context(NODES[0]), train_for(NODES[0], []))


def test_train_must_return_the_model_it_received() -> None:
    def bad_train(msg: Message, ctx: Context) -> Message:
        return Message(RecordDict({"arrays": ArrayRecord([np.zeros(5, np.float32)])}), reply_to=msg)

    with pytest.raises(InvalidUpdate, match="not the model it received"):
        PrivaggMod({"plain": {}})(first_request(), context(NODES[0]), bad_train)


def test_the_server_must_build_the_round_for_this_model() -> None:
    with pytest.raises(ProtocolViolation, match="12 values"):
        PrivaggMod({"plain": {}})(first_request(dimension=12), context(NODES[0]), train_for(NODES[0], []))


# -- the model as a vector -------------------------------------------------------------------------

def test_delta_and_weights_updates_rebuild_the_model_in_its_dtypes() -> None:
    received = model()
    trained = ArrayRecord([(a + d).astype(a.dtype) for a, d in zip(received.to_numpy_ndarrays(), delta_of(7))])
    flat = flatten_record(received)
    delta = update_vector(flat, trained, "delta")
    weights = update_vector(flat, trained, "weights")
    np.testing.assert_array_equal(weights - flat[0], delta)
    via_delta = apply_aggregate(received, delta, "delta").to_numpy_ndarrays()
    via_weights = apply_aggregate(received, weights, "weights").to_numpy_ndarrays()
    for a, b, want in zip(via_delta, via_weights, trained.to_numpy_ndarrays()):
        assert a.dtype == b.dtype == want.dtype and a.shape == want.shape
        np.testing.assert_array_equal(a, want)
        np.testing.assert_array_equal(b, want)
    assert list(apply_aggregate(received, delta, "delta").keys()) == list(received.keys())


def test_non_finite_training_results_never_leave_the_client() -> None:
    broken = [a.copy() for a in model().to_numpy_ndarrays()]
    broken[0][0, 0] = np.nan
    with pytest.raises(InvalidUpdate, match="non-finite"):
        update_vector(flatten_record(model()), ArrayRecord(broken), "delta")


def test_socket_directories_of_killed_hosts_are_swept(tmp_path) -> None:
    import socket

    from privagg.flower.session_host import _sweep_stale

    dead, live, young = (tmp_path / f"privagg-session-{name}" for name in ("dead", "live", "young"))
    sockets = []
    for directory in (dead, live, young):
        directory.mkdir()
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(directory / "session.sock"))
        server.listen(1)
        sockets.append(server)
    sockets[0].close()  # a host killed with SIGKILL: the socket file stays, nobody listens
    sockets[2].close()  # ... but this one was made a moment ago (a host starting up)
    old = time.time() - 120
    for directory in (dead, live):
        os.utime(directory, (old, old))
    _sweep_stale(tmp_path)
    assert not dead.exists() and live.exists() and young.exists()
    sockets[1].close()


# -- identities and active security ------------------------------------------------------------------

CLIENTS = (11, 22, 33)  # roster ids, deliberately unlike the Flower node ids below


def provision(tmp_path, ids=CLIENTS, **extra_config) -> tuple[Roster, dict[int, Context]]:
    """Identities saved as deployment files; one context per client, on Flower node 1000 + 7 * id."""
    roster = Roster.load(Identities(ids).save(tmp_path / "identities"))
    contexts = {cid: context(1000 + 7 * cid, {"privagg-signing-key": str(tmp_path / "identities" / f"client-{cid}.key"),
                                              "privagg-roster": str(tmp_path / "identities" / "roster.json"),
                                              **extra_config})
                for cid in ids}
    return roster, contexts


ACTIVE = {"security": "active"}


def expected_encoded_sum(mode: str, options, clients) -> list[int]:
    base, _ = flatten_record(model())
    fp = make_aggregator(mode, hints={"clients": 3, "dimension": 11}, **options).encoding
    total = 0
    for cid in clients:
        trained = [(a + d).astype(a.dtype) for a, d in zip(model().to_numpy_ndarrays(), delta_of(cid))]
        total = total + fp.encode(flatten_record(ArrayRecord(trained))[0] - base).astype(object)
    return [int(x) for x in total % (1 << fp.bits)]


def test_a_provisioned_node_never_sums_the_same_update_twice(tmp_path) -> None:
    """The difference of two sessions over Flower: every round's session runs in a new session
    host, so what a node put into a sum is kept in a ledger beside its key; the same round run
    again (the same update) is refused before any masked input leaves."""
    roster, contexts = provision(tmp_path)
    run_round("secagg", PrivaggMod({"secagg": ACTIVE}), contexts, options=ACTIVE, roster=roster)
    errors: dict[int, Exception] = {}
    with pytest.raises(AggregationAborted):
        run_round("secagg", PrivaggMod({"secagg": ACTIVE}), contexts, options=ACTIVE, roster=roster, errors=errors)
    assert set(errors) == set(CLIENTS)
    assert all("already put this input into a sum" in str(e) for e in errors.values())
    assert all(len(list((tmp_path / "identities").glob(f"client-{cid}.key.*.ledger"))) == 1 for cid in CLIENTS)


@pytest.mark.parametrize("mode", ["secagg", "secagg+"])
def test_an_active_round_of_provisioned_nodes_is_exact(mode: str, tmp_path) -> None:
    roster, contexts = provision(tmp_path)
    result, calls = run_round(mode, PrivaggMod({mode: ACTIVE}), contexts, options=ACTIVE, roster=roster)
    assert result.included == CLIENTS and sorted(calls) == list(CLIENTS)  # the roster ids, not the node ids
    assert [int(x) for x in result.encoded] == expected_encoded_sum(mode, ACTIVE, CLIENTS)
    assert [e.stage for e in result.view.entries].count("consistency_check") == 3
    for ctx in contexts.values():
        assert STATE_KEY not in ctx.state


def test_a_node_sent_another_model_is_refused_and_the_round_aborts(tmp_path) -> None:
    """The model-inconsistency attack: one node trains on another model; its digest differs."""
    roster, contexts = provision(tmp_path)

    def model_for(cid: int) -> ArrayRecord:
        arrays = model().to_numpy_ndarrays()
        if cid == CLIENTS[0]:
            arrays[0] = arrays[0] + np.float32(0.5)  # a trap model for one victim
        return ArrayRecord(arrays)

    errors: dict[int, Exception] = {}
    with pytest.raises(AggregationAborted):
        run_round("secagg", PrivaggMod({"secagg": ACTIVE}), contexts, options=ACTIVE, roster=roster,
                  model_for=model_for, errors=errors)
    # The victim finds no peer who signed for its model; the other two refuse the victim alone,
    # and then have one usable neighbour of the two (t) they need: nobody's update is used.
    assert set(errors) == set(CLIENTS)
    for exc in errors.values():
        assert isinstance(exc, ProtocolViolation) and "usable neighbours" in str(exc)


def test_digests_agree_when_every_node_got_the_same_model(tmp_path) -> None:
    sent = model()
    assert model_digest(sent) == model_digest(ArrayRecord(sent.to_numpy_ndarrays()))


def test_a_round_naming_ids_outside_the_nodes_roster_is_refused_before_training(tmp_path) -> None:
    roster, contexts = provision(tmp_path)
    calls: list[int] = []
    cid = CLIENTS[0]
    request_content = first_request("plain", participants=(*CLIENTS, 999)).content  # readdressed below
    with pytest.raises(ProtocolViolation, match=r"\[999\].*not in this node's roster"):
        PrivaggMod({"plain": {}})(Message(request_content, contexts[cid].node_id, "train"), contexts[cid],
                                  train_for(cid, calls))
    assert not calls
    with pytest.raises(ProtocolViolation, match="does not name this node's id 11"):
        PrivaggMod({"plain": {}})(Message(first_request("plain", participants=CLIENTS[1:]).content,
                                          contexts[cid].node_id, "train"), contexts[cid], train_for(cid, calls))
    assert not calls


def test_identify_proves_the_roster_id_of_this_flower_node(tmp_path) -> None:
    roster, contexts = provision(tmp_path)
    ctx = contexts[22]
    nonce = os.urandom(32)
    reply = PrivaggMod({"plain": {}})(Message(write_identify_request(nonce), ctx.node_id, "train"), ctx,
                                      train_for(22, []))
    cid, signature = read_identify_reply(reply.content)
    assert cid == 22 and not ctx.state  # nothing stored, the key read from its file and dropped
    assert verify_identify(roster, ctx.run_id, ctx.node_id, nonce, cid, signature) is None
    # Bound to the node, the nonce and the run: replayed elsewhere it proves nothing.
    assert "valid signature" in verify_identify(roster, ctx.run_id, ctx.node_id + 1, nonce, cid, signature)
    assert "valid signature" in verify_identify(roster, ctx.run_id, ctx.node_id, os.urandom(32), cid, signature)
    assert "valid signature" in verify_identify(roster, ctx.run_id + 1, ctx.node_id, nonce, cid, signature)
    # A server provisioned with other keys, or without this id, refuses the node.
    assert "valid signature" in verify_identify(Identities(CLIENTS).roster(), ctx.run_id, ctx.node_id, nonce, cid,
                                                signature)
    assert "not in the server's roster" in verify_identify(roster.subset([11, 33]), ctx.run_id, ctx.node_id, nonce,
                                                           cid, signature)
    # An unprovisioned node cannot answer.
    with pytest.raises(ProtocolViolation, match="has none"):
        PrivaggMod({"plain": {}})(Message(write_identify_request(nonce), NODES[0], "train"), context(NODES[0]),
                                  train_for(NODES[0], []))


def test_active_security_without_provisioned_identities_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="provisioned identity"):
        PrivaggMod({"secagg": ACTIVE})(first_request("secagg", ACTIVE), context(NODES[0]), train_for(NODES[0], []))


def test_the_signing_key_stays_in_its_file_and_the_session_host(tmp_path) -> None:
    roster, contexts = provision(tmp_path)
    cid = CLIENTS[0]
    server = with_roster(make_aggregator("secagg", hints={"clients": 3, "dimension": 11}, **ACTIVE), roster) \
        .server(CLIENTS, round_id=3)
    request = StageRequest("secagg", ACTIVE, {"clients": 3, "dimension": 11}, 3, server.stage, True,
                           server.messages_to_send()[cid].to_bytes(), participants=CLIENTS)
    ctx = contexts[cid]
    mod = PrivaggMod({"secagg": ACTIVE})
    mod(Message(write_request(request, RecordDict({"arrays": model()})), ctx.node_id, "train"), ctx,
        train_for(cid, []))
    record = ctx.state[STATE_KEY]
    assert set(record) == {"address", "authkey", "round-id", "pid"}
    secret = (tmp_path / "identities" / f"client-{cid}.key").read_text().strip()
    host = int(record["pid"])
    for text in (repr(ctx), repr(mod), repr(NodeIdentity.from_node_config(ctx.node_config)),
                 open(f"/proc/{host}/cmdline", "rb").read().hex(), open(f"/proc/{host}/environ", "rb").read().hex(),
                 open(f"/proc/{host}/cmdline", "rb").read().decode(errors="replace")):
        assert secret not in text
    close_session(SessionHandle(record["address"], record["authkey"], 3, host))


def test_node_identities_from_node_config(tmp_path) -> None:
    roster, contexts = provision(tmp_path)
    config = dict(contexts[33].node_config)
    assert NodeIdentity.from_node_config(config).client_id == 33  # found by its key
    assert NodeIdentity.from_node_config({**config, "privagg-client-id": 33}).client_id == 33
    assert NodeIdentity.from_node_config({}) is None
    with pytest.raises(ConfigurationError, match="not the key of client 22"):
        NodeIdentity.from_node_config({**config, "privagg-client-id": 22})
    with pytest.raises(ConfigurationError, match="both"):
        NodeIdentity.from_node_config({"privagg-roster": config["privagg-roster"]})
    stranger = tmp_path / "stranger.key"
    Identities([5]).signing_key(5).save(stranger)
    with pytest.raises(ConfigurationError, match="belongs to no client"):
        NodeIdentity.from_node_config({**config, "privagg-signing-key": str(stranger)})
    with pytest.raises(ConfigurationError, match="cannot read the roster"):
        NodeIdentity.from_node_config({**config, "privagg-roster": str(tmp_path / "missing.json")})


def test_the_node_config_decides_modes_before_the_run_config() -> None:
    ctx = Context(run_id=1, node_id=NODES[0], node_config={"privagg-mode": "plain", "privagg-options": '{"clip": 0.5}'},
                  state=RecordDict(), run_config={"privagg-mode": "plain", "privagg-options": '{"clip": 4.0}'})
    with pytest.raises(ProtocolViolation, match="clip"):
        PrivaggMod()(first_request("plain", {"clip": 4.0}), ctx, train_for(NODES[0], []))
    assert read_reply(PrivaggMod()(first_request("plain", {"clip": 0.5}), ctx, train_for(NODES[0], [])).content)


def test_the_model_digest_names_values_layout_and_order() -> None:
    base = model()
    digest = model_digest(base)
    arrays = base.to_numpy_ndarrays()
    changed = [a.copy() for a in arrays]
    changed[1][0] = np.nextafter(changed[1][0], np.float32(2))
    variants = {
        "a value": ArrayRecord(changed),
        "a dtype": ArrayRecord([arrays[0].astype(np.float64), *arrays[1:]]),
        "a shape": ArrayRecord([arrays[0].reshape(3, 2), *arrays[1:]]),
        "the order": ArrayRecord({k: base[k] for k in reversed(list(base.keys()))}),
        "a name": ArrayRecord({("x" + k if i == 0 else k): base[k] for i, k in enumerate(base.keys())}),
    }
    for what, record in variants.items():
        assert model_digest(record) != digest, what
    assert model_digest(ArrayRecord({k: base[k] for k in base.keys()})) == digest and len(digest) == 32


def test_distributed_dp_runs_with_active_security_on_provisioned_nodes(tmp_path) -> None:
    """dp.Private hands the signing key and the model digest to its inner secure aggregation."""
    roster, contexts = provision(tmp_path)
    options = {"security": "active", "noise_multiplier": 0.5}
    result, calls = run_round("secagg+dp", PrivaggMod({"secagg+dp": options}), contexts, options=options,
                              roster=roster)
    assert result.included == CLIENTS and sorted(calls) == list(CLIENTS)
    assert [e.stage for e in result.view.entries].count("consistency_check") == 3
