import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from privagg import (
    HONEST_BUT_CURIOUS,
    OUTSIDER,
    AggregationAborted,
    ConfigurationError,
    FixedPoint,
    InvalidUpdate,
    MalformedMessage,
    Plain,
    ProtocolViolation,
    ServerView,
    colluding,
    flatten,
    simulate,
    unflatten,
)
from privagg.encoding import sum_mod
from privagg.messages import SERVER_ID
from privagg.plain import PlainRequest, PlainUpdate

STAGE = "collect_updates"


@st.composite
def rounds(draw):
    n = draw(st.integers(1, 15))
    d = draw(st.integers(1, 30))
    ids = draw(st.lists(st.integers(0, 2**63), min_size=n, max_size=n, unique=True))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    updates = {cid: rng.uniform(-1.5, 1.5, d).astype(np.float32) for cid in ids}
    dropped = draw(st.sets(st.sampled_from(ids), max_size=n))
    return updates, {cid: STAGE for cid in dropped}


@given(rounds(), st.sampled_from([16, 32, 48]))
def test_plain_is_exact_under_every_dropout_pattern(round_, bits):
    updates, dropouts = round_
    agg = Plain(FixedPoint(bits=bits, clip=1.0, max_clients=16))
    survivors = sorted(set(updates) - set(dropouts))
    if not survivors:
        with pytest.raises(AggregationAborted, match="0 of"):
            simulate(agg, updates, dropouts=dropouts)
        return
    result = simulate(agg, updates, dropouts=dropouts)
    assert result.included == tuple(survivors)
    assert result.dropped == tuple(sorted(dropouts))
    fp = agg.encoding
    assert np.array_equal(result.encoded, sum_mod([fp.encode(updates[c]) for c in survivors], bits))
    reference = np.clip(np.array([updates[c] for c in survivors], np.float64), -1, 1).sum(axis=0)
    assert np.max(np.abs(result.aggregate - reference)) <= fp.max_error(len(survivors)) * (1 + 1e-9)


def test_result_view_and_traffic():
    updates = [np.full(4, 0.25 * i, np.float32) for i in range(5)]
    result = simulate(Plain(), updates, dropouts={3: STAGE})
    assert result.included == (0, 1, 2, 4)
    assert np.allclose(result.aggregate, 0.25 * (0 + 1 + 2 + 4))
    assert np.allclose(result.mean, result.aggregate / 4)
    assert result.traffic.messages_down == 5 and result.traffic.messages_up == 4
    assert result.traffic.bytes_up == result.view.bytes_received
    assert result.traffic.bytes_up == sum(len(m.to_bytes()) for m in result.view.messages())
    senders = [e.sender for e in result.view.entries]
    assert senders == [0, 1, 2, 4]
    assert all(e.stage == STAGE for e in result.view.entries)


def test_the_view_survives_serialization_and_refuses_corruption():
    result = simulate(Plain(), [np.linspace(-1, 1, 7) for _ in range(4)], dropouts={1: STAGE}, round_id=9)
    raw = result.view.to_bytes()
    view = ServerView.from_bytes(raw)
    assert (view.mode, view.round_id, view.client_ids) == ("plain", 9, (0, 1, 2, 3))
    assert view.included == (0, 2, 3) and view.dropped == (1,)
    assert [e.message for e in view.entries] == [e.message for e in result.view.entries]
    assert np.array_equal(view.encoded_output, result.encoded)
    assert np.array_equal(view.output, result.aggregate)
    corrupt = bytearray(raw)
    corrupt[len(raw) // 2] ^= 0x10
    with pytest.raises(MalformedMessage):
        ServerView.from_bytes(bytes(corrupt))
    with pytest.raises(MalformedMessage):
        ServerView.from_bytes(raw[:20])


def test_plain_discloses_every_individual_update_to_the_server_but_not_to_an_outsider():
    updates = {7: np.full(3, 0.5), 8: np.full(3, -0.25), 9: np.full(3, 0.125)}
    agg = Plain()
    result = simulate(agg, updates, dropouts={9: STAGE})
    for threat in (HONEST_BUT_CURIOUS, colluding([8])):
        seen = agg.disclose(result.view, threat)
        assert sorted(seen.individual) == [7, 8]
        assert np.allclose(seen.individual[7], 0.5) and np.allclose(seen.individual[8], -0.25)
        assert seen.partial_sums[0].client_ids == (7, 8)
    outsider = agg.disclose(result.view, OUTSIDER)
    assert outsider.individual == {}
    assert np.allclose(outsider.partial_sums[0].total, 0.25)


def test_structured_updates_aggregate_and_unflatten():
    updates = [{"w": np.full((2, 3), float(i), np.float32), "b": np.array([i], np.float64)} for i in range(3)]
    agg = Plain(FixedPoint(clip=4.0, max_clients=8))
    result = simulate(agg, updates)
    _, spec = flatten(updates[0])
    total = unflatten(result.aggregate, spec)
    assert total["w"].shape == (2, 3) and total["w"].dtype == np.float32
    assert np.allclose(total["w"], 3.0) and np.allclose(total["b"], 3.0)


def test_a_transport_agnostic_loop_can_end_stages_early():
    """The DESIGN.md loop, with a transport that calls deadline_passed() when nobody is left."""
    agg = Plain()
    ids = [11, 22, 33]
    server = agg.server(ids, round_id=4)
    clients = {i: agg.client(i, np.full(2, 0.1 * i / 11), round_id=4) for i in ids}
    assert server.waiting_for == frozenset(ids)
    while not server.finished:
        outgoing = server.messages_to_send()
        assert server.messages_to_send() == {}  # handed out once
        for cid, msg in outgoing.items():
            server.receive(cid, clients[cid].respond(msg.to_bytes()).to_bytes())
        assert server.waiting_for == frozenset()
        server.deadline_passed()
    assert server.result().included == tuple(ids)
    assert all(c.finished for c in clients.values())
    assert np.allclose(server.result().aggregate, 0.6)


def _round(ids=(1, 2, 3), round_id=5):
    agg = Plain()
    server = agg.server(ids, round_id=round_id)
    clients = {i: agg.client(i, np.full(3, 0.5), round_id=round_id) for i in ids}
    requests = server.messages_to_send()
    return agg, server, clients, requests


def test_server_refuses_replays_impersonation_and_strangers():
    agg, server, clients, requests = _round()
    reply = clients[1].respond(requests[1].to_bytes()).to_bytes()
    with pytest.raises(ProtocolViolation, match="claims sender 1 but arrived from 2"):
        server.receive(2, reply)
    with pytest.raises(ProtocolViolation, match="not part of round"):
        server.receive(99, reply)
    server.receive(1, reply)
    with pytest.raises(ProtocolViolation, match="already answered"):
        server.receive(1, reply)
    old = agg.client(2, np.zeros(3), round_id=4)
    stale = old.respond(PlainRequest(4, SERVER_ID, 2).to_bytes()).to_bytes()
    with pytest.raises(ProtocolViolation, match="round 4, this is round 5"):
        server.receive(2, stale)
    with pytest.raises(MalformedMessage):
        server.receive(2, b"garbage")
    # A refused message changes nothing: client 2 can still answer properly.
    server.receive(2, clients[2].respond(requests[2].to_bytes()).to_bytes())
    server.deadline_passed()
    assert server.result().included == (1, 2)
    assert server.dropped == {3: STAGE}


def test_late_messages_from_dropouts_and_after_the_end_are_refused():
    _, server, clients, requests = _round()
    for cid in (1, 2):
        server.receive(cid, clients[cid].respond(requests[cid]).to_bytes())
    server.deadline_passed()
    with pytest.raises(ProtocolViolation):
        server.receive(3, clients[3].respond(requests[3]).to_bytes())
    with pytest.raises(ProtocolViolation, match="already finished"):
        server.deadline_passed()


def test_server_refuses_vectors_of_the_wrong_shape_dtype_or_range():
    agg = Plain(FixedPoint(bits=16, clip=1.0, scale=2**8))
    server = agg.server([1, 2, 3], round_id=0)
    server.messages_to_send()
    server.receive(1, PlainUpdate(0, 1, SERVER_ID, np.zeros(4, np.uint32)).to_bytes())
    with pytest.raises(ProtocolViolation, match="sent 5 values, the others 4"):
        server.receive(2, PlainUpdate(0, 2, SERVER_ID, np.zeros(5, np.uint32)).to_bytes())
    with pytest.raises(ProtocolViolation, match="uint64"):
        server.receive(2, PlainUpdate(0, 2, SERVER_ID, np.zeros(4, np.uint64)).to_bytes())
    with pytest.raises(ProtocolViolation, match="outside"):
        server.receive(2, PlainUpdate(0, 2, SERVER_ID, np.full(4, 2**16, np.uint32)).to_bytes())


def test_client_refuses_messages_not_meant_for_it_and_second_requests():
    _, _, clients, requests = _round()
    with pytest.raises(ProtocolViolation, match="addressed to 2, not 1"):
        clients[1].respond(requests[2].to_bytes())
    with pytest.raises(ProtocolViolation, match="round 6"):
        clients[1].respond(PlainRequest(6, SERVER_ID, 1).to_bytes())
    with pytest.raises(ProtocolViolation, match="arrived from SERVER"):
        clients[1].respond(PlainRequest(5, 3, 1).to_bytes())
    with pytest.raises(MalformedMessage):
        clients[1].respond(requests[1].to_bytes()[:-1])
    clients[1].respond(requests[1].to_bytes())
    with pytest.raises(ProtocolViolation, match="already sent"):
        clients[1].respond(requests[1].to_bytes())


def test_min_clients_aborts_with_the_survivors_named():
    agg = Plain(min_clients=3)
    with pytest.raises(AggregationAborted) as err:
        simulate(agg, [np.zeros(2)] * 4, dropouts={0: STAGE, 2: STAGE})
    assert err.value.client_ids == (1, 3)
    assert "at least 3" in err.value.reason


def test_an_aborted_round_keeps_raising_its_reason():
    server = Plain(min_clients=2).server([1, 2])
    server.messages_to_send()
    with pytest.raises(AggregationAborted):
        server.deadline_passed()
    assert server.finished and server.stage == "aborted"
    with pytest.raises(AggregationAborted):
        server.result()


@pytest.mark.parametrize("updates, match", [
    ([np.zeros(3), np.zeros(4)], "client 1's update \\(4 values"),
    ([np.zeros(3), np.array([0, np.nan, 0])], "NaN at index 1"),
    ([np.zeros(3), np.array([np.inf, 0, 0])], "inf at index 0"),
    ([np.zeros(2), np.array(["a", "b"])], "dtype"),
    ([{"a": np.zeros(2)}, {"b": np.zeros(2)}], "does not match"),
])
def test_bad_updates_raise_invalid_update_naming_the_problem(updates, match):
    with pytest.raises(InvalidUpdate, match=match):
        simulate(Plain(), updates)


def test_bad_rosters_and_dropouts_raise_configuration_errors():
    with pytest.raises(ConfigurationError, match="duplicate client ids: \\[2\\]"):
        Plain().server([1, 2, 2])
    with pytest.raises(ConfigurationError, match="at least one client"):
        Plain().server([])
    with pytest.raises(ConfigurationError, match="not an integer"):
        Plain().server([1, -2])
    with pytest.raises(ConfigurationError, match="unknown client 5"):
        simulate(Plain(), [np.zeros(2)], dropouts={5: STAGE})
    with pytest.raises(ConfigurationError, match="unknown stage 'unmasking'"):
        simulate(Plain(), [np.zeros(2)], dropouts={0: "unmasking"})
    with pytest.raises(ConfigurationError):
        simulate("plain", [np.zeros(2)])  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        Plain(min_clients=0)


def test_seeded_stochastic_rounding_is_reproducible():
    agg = Plain(FixedPoint(scale=2**4, rounding="stochastic"))
    updates = [np.random.default_rng(i).uniform(-1, 1, 50) for i in range(4)]
    a = simulate(agg, updates, seed=3)
    b = simulate(agg, updates, seed=3)
    assert np.array_equal(a.encoded, b.encoded)
