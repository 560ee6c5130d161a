"""Our messages inside Flower records: layout, Flower's own wire form, and typed errors on
anything else, in both directions. No processes here (see test_flower_federation.py)."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("flwr")

from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict  # noqa: E402
from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects, no_object_id_recompute  # noqa: E402
from flwr.supercore.inflatable.inflatable_utils import inflate_object_from_contents  # noqa: E402

from privagg.errors import ConfigurationError, MalformedMessage, ProtocolViolation  # noqa: E402
from privagg.flower.federation import _toml  # noqa: E402
from privagg.flower.records import (  # noqa: E402
    CONFIG_KEY,
    IDENTIFY_KEY,
    PAYLOAD_KEY,
    StageReply,
    StageRequest,
    read_identify_reply,
    read_identify_request,
    read_reply,
    read_request,
    user_content,
    write_identify_reply,
    write_identify_request,
    write_reply,
    write_request,
)
from privagg.flower.workflow import SecureAggregation  # noqa: E402

REQUEST = StageRequest(mode="secagg+", options={"clip": 0.5, "threshold": 3}, hints={"clients": 5, "dimension": 10},
                       round_id=7, stage="advertise_keys", first=True, message=b"PAGG\x01" + bytes(range(200)),
                       update="delta", arrays_key="arrays", session_timeout=120.0,
                       participants=(3, 11, 2**64 - 2))


pytestmark = pytest.mark.usefixtures("flower_task_identity")  # tests/conftest.py


def user_records() -> RecordDict:
    return RecordDict({"arrays": ArrayRecord([np.arange(6, dtype=np.float32).reshape(2, 3)]),
                       "config": ConfigRecord({"lr": 0.1, "server-round": 7})})


def through_flower_wire(message: Message) -> Message:
    """Deflate a message into Flower's content-addressed objects and inflate it back, as a
    SuperLink and a SuperNode do: nothing is shared between the two sides."""
    with no_object_id_recompute():
        objects = get_all_nested_objects(message)
        contents = {oid: obj.deflate() for oid, obj in objects.items()}
    return inflate_object_from_contents(message.object_id, contents)


# -- layout and round trips -----------------------------------------------------------------------

def test_request_round_trip_through_flowers_wire_form() -> None:
    content = write_request(REQUEST, user_records())
    assert set(content) == {"arrays", "config", CONFIG_KEY, PAYLOAD_KEY}
    arrived = through_flower_wire(Message(content, 42, "train"))
    request = read_request(arrived.content)
    assert request == REQUEST
    # The user's own records travel untouched, and are all the user's train function sees.
    assert set(user_content(arrived.content)) == {"arrays", "config"}
    np.testing.assert_array_equal(arrived.content["arrays"].to_numpy_ndarrays()[0],
                                  np.arange(6, dtype=np.float32).reshape(2, 3))


def test_large_payloads_travel_in_flowers_chunks() -> None:
    data = bytes(np.random.default_rng(0).integers(0, 256, 12 * 1024 * 1024, dtype=np.uint8))
    content = write_request(StageRequest("plain", {}, {}, 1, "collect_updates", False, data))
    chunks = content[PAYLOAD_KEY]["bytes"].slice_array()
    assert len(chunks) == 3  # Flower's 5 MB pieces
    assert read_request(through_flower_wire(Message(content, 42, "train")).content).message == data


def test_reply_round_trip_with_and_without_message() -> None:
    for reply in (StageReply(7, "masked_input", b"\x00payload"), StageReply(7, "unmasking", None)):
        metrics = {"metrics": MetricRecord({"num-examples": 12})}
        content = through_flower_wire(Message(write_reply(reply, metrics), 42, "train")).content
        assert read_reply(content) == reply
        assert content["metrics"]["num-examples"] == 12


def test_content_without_our_records_is_not_a_request() -> None:
    assert read_request(user_records()) is None


def test_user_records_may_not_use_our_keys() -> None:
    clash = RecordDict({CONFIG_KEY: ConfigRecord({"mine": 1})})
    with pytest.raises(ProtocolViolation, match="reserved"):
        write_request(REQUEST, clash)


# -- malformed and foreign content: typed errors ----------------------------------------------------

def _corrupt_config(key: str, value) -> RecordDict:
    content = write_request(REQUEST, user_records())
    content[CONFIG_KEY][key] = value
    return content


def _drop_config(key: str) -> RecordDict:
    content = write_request(REQUEST, user_records())
    del content[CONFIG_KEY][key]
    return content


def _payload(**fields) -> RecordDict:
    content = write_request(REQUEST, user_records())
    array = content[PAYLOAD_KEY]["bytes"]
    values = {"dtype": array.dtype, "shape": tuple(array.shape), "stype": array.stype, "data": array.data}
    values.update(fields)
    content[PAYLOAD_KEY] = ArrayRecord({"bytes": Array(**values)})
    return content


MALFORMED_REQUESTS = {
    "config is a metric record": lambda: RecordDict({CONFIG_KEY: MetricRecord({"x": 1}),
                                                     PAYLOAD_KEY: write_request(REQUEST)[PAYLOAD_KEY]}),
    "missing key": lambda: _drop_config("stage"),
    "extra key": lambda: _corrupt_config("surprise", 1),
    "round id is text": lambda: _corrupt_config("round-id", "7"),
    "round id is a bool": lambda: _corrupt_config("round-id", True),
    "negative round id": lambda: _corrupt_config("round-id", -1),
    "first is an int": lambda: _corrupt_config("first", 1),
    "other protocol": lambda: _corrupt_config("protocol", "privagg-flower/0"),
    "options not json": lambda: _corrupt_config("options", "{clip: 0.5"),
    "options not an object": lambda: _corrupt_config("options", "[1, 2]"),
    "options with NaN": lambda: _corrupt_config("options", '{"clip": NaN}'),
    "bad update kind": lambda: _corrupt_config("update", "gradient"),
    "infinite session timeout": lambda: _corrupt_config("session-timeout", math.inf),
    "payload missing": lambda: RecordDict({CONFIG_KEY: write_request(REQUEST)[CONFIG_KEY]}),
    "payload is a numpy array": lambda: RecordDict({CONFIG_KEY: write_request(REQUEST)[CONFIG_KEY],
                                                    PAYLOAD_KEY: ArrayRecord([np.zeros(3, np.uint8)])}),
    "payload has another stype": lambda: _payload(stype="numpy.ndarray"),
    "payload shape lies": lambda: _payload(shape=(3,)),
    "payload has two arrays": lambda: RecordDict({CONFIG_KEY: write_request(REQUEST)[CONFIG_KEY],
                                                  PAYLOAD_KEY: ArrayRecord({"bytes": Array(np.zeros(1)),
                                                                            "more": Array(np.zeros(1))})}),
    "payload without config": lambda: RecordDict({PAYLOAD_KEY: write_request(REQUEST)[PAYLOAD_KEY]}),
    "participants not packed ids": lambda: _corrupt_config("participants", b"\x01" * 7),
    "participants repeat": lambda: _corrupt_config("participants", (5).to_bytes(8, "little") * 2),
    "participants are a list": lambda: _corrupt_config("participants", [1, 2]),
    "an identify record rides along": lambda: RecordDict({**write_request(REQUEST),
                                                          IDENTIFY_KEY: ConfigRecord({"x": 1})}),
}


@pytest.mark.parametrize("case", sorted(MALFORMED_REQUESTS))
def test_malformed_request_records_raise_malformed_message(case: str) -> None:
    with pytest.raises(MalformedMessage):
        read_request(MALFORMED_REQUESTS[case]())


def test_reply_that_is_not_ours_is_a_protocol_violation() -> None:
    fedavg_reply = RecordDict({"arrays": ArrayRecord([np.zeros(3)]), "metrics": MetricRecord({"num-examples": 3})})
    with pytest.raises(ProtocolViolation, match="PrivaggMod"):
        read_reply(fedavg_reply)


def test_reply_carrying_plaintext_arrays_is_refused() -> None:
    content = write_reply(StageReply(1, "masked_input", b"x"))
    content["arrays"] = ArrayRecord([np.zeros(3)])
    with pytest.raises(ProtocolViolation, match="other than privagg"):
        read_reply(content)


@pytest.mark.parametrize("mutate", ["no-message-flag-lies", "message-flag-lies", "round-id-float"])
def test_malformed_replies_raise_malformed_message(mutate: str) -> None:
    content = write_reply(StageReply(1, "masked_input", b"x" if mutate != "message-flag-lies" else None))
    if mutate == "no-message-flag-lies":
        content[CONFIG_KEY]["has-message"] = False
    elif mutate == "message-flag-lies":
        content[CONFIG_KEY]["has-message"] = True
    else:
        content[CONFIG_KEY]["round-id"] = 1.0
    with pytest.raises(MalformedMessage):
        read_reply(content)


# -- identification records ----------------------------------------------------------------------------

def test_identify_round_trip_through_flowers_wire_form() -> None:
    nonce = bytes(range(32))
    request = through_flower_wire(Message(write_identify_request(nonce), 42, "train")).content
    assert read_identify_request(request) == nonce
    assert read_identify_request(user_records()) is None
    reply = through_flower_wire(Message(write_identify_reply(7, b"s" * 64), 42, "train")).content
    assert read_identify_reply(reply) == (7, b"s" * 64)


def _identify_reply(**changes) -> RecordDict:
    content = write_identify_reply(7, b"s" * 64)
    for key, value in changes.items():
        content[IDENTIFY_KEY][key] = value
    return content


@pytest.mark.parametrize("content", [
    lambda: RecordDict({**write_identify_request(bytes(32)), "arrays": ArrayRecord([np.zeros(2)])}),
    lambda: RecordDict({IDENTIFY_KEY: ConfigRecord({"protocol": "privagg-flower/2", "nonce": b"short"})}),
    lambda: RecordDict({IDENTIFY_KEY: MetricRecord({"nonce": 1})}),
], ids=["extra record", "short nonce", "metric record"])
def test_malformed_identify_requests(content) -> None:
    with pytest.raises(MalformedMessage):
        read_identify_request(content())


@pytest.mark.parametrize("changes", [{"client-id": "7"}, {"client-id": -1}, {"signature": b"s"},
                                     {"protocol": "privagg-flower/1"}, {"extra": 1}], ids=str)
def test_malformed_identify_replies(changes) -> None:
    with pytest.raises(MalformedMessage):
        read_identify_reply(_identify_reply(**changes))


def test_an_identify_reply_that_is_not_ours_is_a_protocol_violation() -> None:
    with pytest.raises(ProtocolViolation, match="PrivaggMod"):
        read_identify_reply(RecordDict({"metrics": MetricRecord({"x": 1})}))


# -- configuration, and importing without Flower ------------------------------------------------------

@pytest.mark.parametrize("kwargs", [{"update": "gradient"}, {"stage_timeout": 0}, {"poll_interval": -1},
                                    {"options": {"clip": object()}}])
def test_workflow_refuses_bad_configuration(kwargs) -> None:
    with pytest.raises(ConfigurationError):
        SecureAggregation("plain", **kwargs)


def test_toml_values_for_flowers_key_value_parser() -> None:
    assert _toml(True) == "true" and _toml(3) == "3" and _toml(0.5) == "0.5"
    assert _toml('{"a":1}') == "'{\"a\":1}'" and _toml("x") == '"x"'
    with pytest.raises(ConfigurationError):
        _toml("both ' and \"")


def test_importing_privagg_never_imports_flower() -> None:
    code = "import sys, privagg, privagg.flower, privagg.flower.federation; assert 'flwr' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_without_flower_the_integration_says_which_extra_to_install() -> None:
    code = """
import sys
class NoFlower:
    def find_spec(self, name, path=None, target=None):
        if name == "flwr" or name.startswith("flwr."):
            raise ModuleNotFoundError("No module named 'flwr'", name="flwr")
        return None
sys.meta_path.insert(0, NoFlower())
import importlib.util
importlib.util.find_spec = lambda name, *a: None if name.split(".")[0] == "flwr" else _find(name, *a)
import privagg.flower
from privagg.errors import ConfigurationError
for name in ("SecureFedAvg", "SecureAggregation", "PrivaggMod"):
    try:
        getattr(privagg.flower, name)
    except ConfigurationError as exc:
        assert "privagg[flower]" in str(exc), exc
    else:
        raise SystemExit(f"{name} loaded without Flower")
print("ok")
"""
    code = "import importlib.util as _u\n_find = _u.find_spec\n" + code
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
