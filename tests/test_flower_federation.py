"""privagg inside Flower's real runtime: SuperLink, SuperNodes and ``flwr run``, started here.

Every test runs Flower's own processes on 127.0.0.1 (free ports, temporary ``FLWR_HOME``s) and
submits a small test app with ``flwr run``. The test app's ClientApp records what each node
received and what its ``train`` returned; the ServerApp records each round's outcome. The
checks recompute the plaintext sum from the clients' files, independently of the round, and
compare: bit for bit on the encoded sum for the integer modes, within the documented error
for approximate ones. Every test ends by checking that no process it started is left.

The shared federation is provisioned with identities (roster ids 11, 22, 33, unlike Flower's
node ids): every mode runs under roster ids there, active security included, and the
malicious-server tests run on it too. The federations of the kill, TLS and simulation tests
are not provisioned: nodes are known by their Flower node ids.

Runtime: Flower polls every 3 s on both sides and starts a process per message, so one stage
costs about 6 s; the module shares one federation between the tests that do not kill nodes.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("flwr")

from privagg.encoding.structure import flatten, unflatten  # noqa: E402
from privagg.flower.federation import LocalFederation, TlsFiles, processes_in  # noqa: E402
from privagg.registry import available_modes, make_aggregator  # noqa: E402

pytestmark = pytest.mark.slow

#: Flower's SuperExec looks for new ClientApp tasks every second by default; 0.2 s trims each stage.
FAST_ENV = {"FLWR_SUPEREXEC_TASK_POLL_INTERVAL": "0.2"}
DIMENSION_SHAPES = [(4, 5), (7,)]

# ------------------------------------------------------------------------------------------
# The test app (written to a temporary directory, then `flwr run`)
# ------------------------------------------------------------------------------------------

PYPROJECT = """\
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "privaggtestapp"
version = "1.0.0"
description = "privagg's Flower integration test app"
license = "Apache-2.0"
dependencies = ["flwr>=1.42,<2", "privagg"]

[tool.hatch.build.targets.wheel]
packages = ["."]

[tool.flwr.app]
publisher = "privagg"

[tool.flwr.app.components]
serverapp = "privaggtestapp.server_app:app"
clientapp = "privaggtestapp.client_app:app"

[tool.flwr.app.config]
out-dir = ""
scenario = "modes"
plan = "[]"
nodes = 3
stage-timeout = 30.0
train-timeout = 60.0
hook-stage = ""
first-rounds = 2
privagg-modes = "{}"
privagg-roster = ""
rogue = "{}"
"""

CLIENT_APP = '''\
"""Test ClientApp: a train (recorded to disk) behind PrivaggMod, and a rogue mod."""

import json
import os
from pathlib import Path

import numpy as np
from flwr.app import Array, ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

import privagg
from privagg.flower import PrivaggMod
from privagg.flower.records import PAYLOAD_KEY


def rogue(msg: Message, ctx: Context, call_next):
    """Node `partition` misbehaves after PrivaggMod answered: corrupts or leaks, per round label."""
    plan = json.loads(ctx.run_config["rogue"])
    label = None
    if msg.has_content() and "config" in msg.content.config_records:
        label = msg.content.config_records["config"].get("label")
    out = call_next(msg, ctx)
    kind = plan.get("kinds", {}).get(str(label))
    if kind is None or ctx.node_config.get("partition-id") != plan.get("partition") or out.has_error():
        return out
    if kind == "corrupt":
        array = out.content[PAYLOAD_KEY]["bytes"]
        data = bytearray(array.data)
        data[len(data) // 2] ^= 0x01
        out.content[PAYLOAD_KEY] = ArrayRecord({"bytes": Array(dtype=array.dtype, shape=tuple(array.shape),
                                                               stype=array.stype, data=bytes(data))})
    elif kind == "leak":
        out.content["arrays"] = ArrayRecord([np.zeros(3)])
    return out


app = ClientApp(mods=[rogue, PrivaggMod(forward_metrics=True)])


@app.train()
def train(msg: Message, ctx: Context) -> Message:
    config = msg.content["config"]
    label, server_round = int(config["label"]), int(config["server-round"])
    partition = int(ctx.node_config["partition-id"])
    cid = int(ctx.node_config.get("privagg-client-id", ctx.node_id))  # the id the protocol knows it by
    received = msg.content["arrays"].to_numpy_ndarrays()
    # Fresh randomness in every update: a provisioned node puts each input into a sum only once
    # (privagg.ledger, kept beside its key across this module's runs), as a real update would be.
    rng = np.random.default_rng([partition, label, server_round, int.from_bytes(os.urandom(8), "little")])
    returned = []
    for a in received:
        if a.dtype.kind == "f":
            returned.append((a + rng.uniform(-0.05, 0.05, a.shape)).astype(a.dtype))
        else:
            returned.append(a + 1)  # an integer buffer (a step counter): its mean step is exactly 1
    out = Path(ctx.run_config["out-dir"])
    (out / f"privagg-{cid}.txt").write_text(privagg.__file__)  # which privagg the ClientApp imported
    np.savez(out / f"client-{cid}-{label}-{server_round}.npz",
             **{f"received{i}": a for i, a in enumerate(received)},
             **{f"returned{i}": a for i, a in enumerate(returned)})
    metrics = MetricRecord({"num-examples": 10 + partition, "train-loss": float(partition)})
    return Message(RecordDict({"arrays": ArrayRecord(returned), "metrics": metrics}), reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, ctx: Context) -> Message:
    total = float(sum(a.sum() for a in msg.content["arrays"].to_numpy_ndarrays()))
    return Message(RecordDict({"metrics": MetricRecord({"model-sum": total, "num-examples": 1})}), reply_to=msg)
'''

SERVER_APP = '''\
"""Test ServerApp: runs a scenario and writes every outcome to out-dir/server.json."""

import json
import time
from pathlib import Path

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict
from flwr.serverapp import Grid, ServerApp

from privagg.errors import AggregationAborted
from privagg.flower import SecureAggregation, SecureFedAvg
from privagg.flower.records import StageRequest, write_request
from privagg.identity import Identities, Roster

app = ServerApp()


def roster_of(cfg):
    return cfg["privagg-roster"] or None  # a path, or no identities


class ForwardingGrid(Grid):
    """The real grid; subclasses change what goes out (a malicious server's own grid)."""

    def __init__(self, grid):
        self._grid = grid

    def set_run(self, run):
        self._grid.set_run(run)

    @property
    def run(self):
        return self._grid.run

    def create_message(self, content, message_type, dst_node_id, group_id, ttl=None):
        return self._grid.create_message(content, message_type, dst_node_id, group_id, ttl)

    def get_node_ids(self):
        return self._grid.get_node_ids()

    def get_nodes(self):
        return self._grid.get_nodes()

    def push_messages(self, messages):
        return self._grid.push_messages([self.rewrite(m) for m in messages])

    def pull_messages(self, message_ids):
        return self._grid.pull_messages(message_ids)

    def send_and_receive(self, messages, *, timeout=None):
        return self._grid.send_and_receive([self.rewrite(m) for m in messages], timeout=timeout)

    def rewrite(self, message):
        return message


class ModelSwapGrid(ForwardingGrid):
    """The model-inconsistency attack: one victim node is sent another model than the others."""

    def __init__(self, grid, victim):
        super().__init__(grid)
        self.victim = victim

    def rewrite(self, message):
        content = message.content
        if message.metadata.dst_node_id != self.victim or "arrays" not in content or "privagg" not in content:
            return message
        swapped = RecordDict(dict(content.items()))
        arrays = content["arrays"].to_numpy_ndarrays()
        arrays[0] = arrays[0] + np.float32(0.5)
        swapped["arrays"] = ArrayRecord(arrays)
        return Message(swapped, message.metadata.dst_node_id, message.metadata.message_type,
                       group_id=message.metadata.group_id, ttl=message.metadata.ttl)


class SybilAggregation(SecureAggregation):
    """A server that puts a node into the round under an id of its own (a sybil of its roster)."""

    def __init__(self, *args, victim, sybil, **kwargs):
        super().__init__(*args, **kwargs)
        self.victim, self.sybil = victim, sybil

    def identify(self, grid, nodes, failures):
        mapping = super().identify(grid, nodes, failures)
        mapping[self.victim] = self.sybil
        return mapping

    def _build(self, clients, dimension):
        # Its own side admits a round of 3 of its 4 roster ids (the clients' options are unchanged).
        import dataclasses

        return dataclasses.replace(super()._build(clients, dimension), min_clients=clients)


def initial_model() -> ArrayRecord:
    return ArrayRecord([np.zeros((4, 5), np.float32), np.linspace(-1, 1, 7).astype(np.float32),
                        np.array([3, 7], dtype=np.int64)])


def arrays(record: ArrayRecord) -> list:
    return [a.tolist() for a in record.to_numpy_ndarrays()]


def describe(outcome, label: int, base: ArrayRecord) -> dict:
    result = outcome.result
    return {"label": label, "round": outcome.server_round, "mode": outcome.mode, "nodes": list(outcome.nodes),
            "client_ids": {str(k): v for k, v in outcome.client_ids.items()},
            "included": list(result.included), "dropped": list(result.dropped),
            "failures": {str(k): v for k, v in outcome.failures.items()},
            "encoded": None if result.encoded is None else [int(x) for x in result.encoded],
            "aggregate": [float(x) for x in result.aggregate], "base": arrays(base), "new": arrays(outcome.arrays),
            "stages": [[s, t] for s, t in outcome.stage_seconds], "info": {k: v for k, v in result.info.items()
                                                                            if isinstance(v, (int, float, str))},
            "metric_keys": sorted(outcome.client_metrics.get(result.included[0], {}).keys())}


def wait_for_nodes(grid: Grid, count: int) -> list:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        nodes = sorted(grid.get_node_ids())
        if len(nodes) >= count:
            return nodes
        time.sleep(0.5)
    raise RuntimeError(f"only {len(nodes)} of {count} nodes connected")


def scenario_modes(grid, cfg, nodes, out, results):
    """Each mode of the plan through SecureFedAvg; the first with 2 rounds and federated evaluation."""
    for label, (mode, options) in enumerate(json.loads(cfg["plan"])):
        rounds = int(cfg["first-rounds"]) if label == 0 else 1
        strategy = SecureFedAvg(mode, options, stage_timeout=cfg["stage-timeout"], train_timeout=cfg["train-timeout"],
                                poll_interval=0.2, roster=roster_of(cfg), min_available_nodes=len(nodes),
                                min_train_nodes=len(nodes),
                                fraction_evaluate=1.0 if label == 0 and rounds > 1 else 0.0,
                                min_evaluate_nodes=len(nodes))
        base = initial_model()
        result = strategy.start(grid, base, num_rounds=rounds, train_config=ConfigRecord({"label": label}),
                                timeout=120)
        for server_round in range(1, rounds + 1):
            if server_round in strategy.outcomes:
                outcome = strategy.outcomes[server_round]
                results["rounds"].append(describe(outcome, label, base))
                base = outcome.arrays
            else:
                results["rounds"].append({"label": label, "round": server_round, "mode": mode,
                                          "aborted": strategy.aborted.get(server_round)})
        results.setdefault("final", {})[mode] = arrays(result.arrays)
        results.setdefault("train_metrics", {})[mode] = {str(k): dict(v) for k, v in
                                                         result.train_metrics_clientapp.items()}
        results.setdefault("evaluate", {})[mode] = {str(k): dict(v) for k, v in
                                                    result.evaluate_metrics_clientapp.items()}


def scenario_dropout(grid, cfg, nodes, out, results):
    """One SecureFedAvg round of the plan's only mode; the test kills a node when `hook-stage` begins."""
    (mode, options), = json.loads(cfg["plan"])

    def hook(server_round, stage, addressed):
        results.setdefault("stages_seen", []).append([stage, time.monotonic()])
        if stage == cfg["hook-stage"]:
            (out / f"hook-{stage}").write_text(json.dumps(sorted(addressed)))
            deadline = time.monotonic() + 120
            while not (out / f"ack-{stage}").exists() and time.monotonic() < deadline:
                time.sleep(0.1)

    strategy = SecureFedAvg(mode, options, stage_timeout=cfg["stage-timeout"], train_timeout=cfg["train-timeout"],
                            poll_interval=0.2, on_stage=hook, fraction_evaluate=0.0, roster=roster_of(cfg),
                            min_available_nodes=len(nodes), min_train_nodes=len(nodes))
    base = initial_model()
    started = time.monotonic()
    result = strategy.start(grid, base, num_rounds=1, train_config=ConfigRecord({"label": 0}), timeout=120)
    results["seconds"] = time.monotonic() - started
    if 1 in strategy.outcomes:
        results["rounds"].append(describe(strategy.outcomes[1], 0, base))
    else:
        results["aborted"] = {"reason": strategy.aborted[1],
                              "failures": {str(k): v for k, v in strategy.workflow.last_failures.items()},
                              "new_model": len(result.arrays) > 0}
    results["stages_seen"] = [[s, t - started] for s, t in results.get("stages_seen", [])]


def scenario_adversarial(grid, cfg, nodes, out, results):
    """Bad requests to clients (typed errors come back), then rounds with a rogue client."""
    modes = json.loads(cfg["privagg-modes"])
    model = RecordDict({"arrays": initial_model(), "config": ConfigRecord({"label": 0, "server-round": 1})})
    good = StageRequest("plain", modes["plain"], {"clients": 3, "dimension": 29}, 1, "collect_updates", True,
                        b"not a privagg message")
    garbled = write_request(good, model)
    garbled["privagg"]["round-id"] = "one"
    other_options = write_request(StageRequest("plain", {"clip": 8.0}, good.hints, 1, "collect_updates", True,
                                               good.message), model)
    bad = {nodes[0]: garbled, nodes[1]: other_options, nodes[2]: model}
    replies = grid.send_and_receive([Message(c, n, MessageType.TRAIN) for n, c in bad.items()], timeout=60)
    results["bad_requests"] = {str(r.metadata.src_node_id): r.error.reason if r.has_error() else "no error"
                               for r in replies}
    for label in (1, 2):
        workflow = SecureAggregation("plain", modes["plain"], stage_timeout=cfg["stage-timeout"], poll_interval=0.2,
                                     roster=roster_of(cfg))
        base = initial_model()
        content = RecordDict({"arrays": base, "config": ConfigRecord({"label": label, "server-round": label})})
        results["rounds"].append(describe(workflow.aggregate(grid, nodes, content, server_round=label), label, base))


def scenario_malicious_server(grid, cfg, nodes, out, results):
    """A server that deviates, on provisioned nodes: each attack must end in a refusal."""
    mode, options = "secagg+", {"security": "active"}
    roster = Roster.load(cfg["privagg-roster"])
    victim = nodes[0]
    common = dict(stage_timeout=cfg["stage-timeout"], train_timeout=cfg["train-timeout"], poll_interval=0.2)
    # 1. One node trains on another model than the others.
    strategy = SecureFedAvg(mode, options, roster=roster, fraction_evaluate=0.0, min_available_nodes=len(nodes),
                            min_train_nodes=len(nodes), **common)
    base = initial_model()
    result = strategy.start(ModelSwapGrid(grid, victim), base, num_rounds=1,
                            train_config=ConfigRecord({"label": 11}), timeout=120)
    results["model_swap"] = {"aborted": strategy.aborted.get(1), "outcome": 1 in strategy.outcomes,
                             "failures": {str(k): v for k, v in strategy.workflow.last_failures.items()},
                             "final": arrays(result.arrays), "base": arrays(base)}
    # 2. The server names a participant that no node was provisioned as (its own sybil).
    sybil = 999
    sybil_roster = Roster({**roster.public_bytes(), sybil: Identities([sybil]).roster().public_bytes()[sybil]})
    workflow = SybilAggregation(mode, options, roster=sybil_roster, victim=victim, sybil=sybil, **common)
    content = RecordDict({"arrays": initial_model(), "config": ConfigRecord({"label": 12, "server-round": 2})})
    try:
        workflow.aggregate(grid, nodes, content, server_round=2)
        results["sybil"] = {"aborted": None}
    except AggregationAborted as exc:
        results["sybil"] = {"aborted": str(exc), "failures": {str(k): v for k, v in workflow.last_failures.items()}}
    # 3. A node whose id is not in the server's roster is not put in the round.
    kept = sorted(roster)[:-1]
    workflow = SecureAggregation("plain", {}, roster=roster.subset(kept), **common)
    base = initial_model()
    content = RecordDict({"arrays": base, "config": ConfigRecord({"label": 13, "server-round": 3})})
    results["rounds"].append(describe(workflow.aggregate(grid, nodes, content, server_round=3), 13, base))


def scenario_attacks(grid, cfg, nodes, out, results):
    """Both sides attacked in one run: a rogue client and bad requests, then a malicious server."""
    scenario_adversarial(grid, cfg, nodes, out, results)
    scenario_malicious_server(grid, cfg, nodes, out, results)


@app.main()
def main(grid: Grid, context: Context) -> None:
    cfg = context.run_config
    out = Path(cfg["out-dir"])
    nodes = wait_for_nodes(grid, int(cfg["nodes"]))
    results = {"nodes": nodes, "rounds": []}
    try:
        {"modes": scenario_modes, "dropout": scenario_dropout,
         "attacks": scenario_attacks}[cfg["scenario"]](grid, cfg, nodes, out, results)
    finally:
        (out / "server.json").write_text(json.dumps(results))
'''


def write_app(root: Path) -> Path:
    """The test app in ``root/app``: what ``flwr run`` builds into a FAB and ships."""
    app = root / "app"
    package = app / "privaggtestapp"
    package.mkdir(parents=True, exist_ok=True)
    (app / "pyproject.toml").write_text(PYPROJECT)
    (package / "__init__.py").write_text('"""privagg Flower test app."""\n')
    (package / "client_app.py").write_text(CLIENT_APP)
    (package / "server_app.py").write_text(SERVER_APP)
    return app


# ------------------------------------------------------------------------------------------
# Plans and checks
# ------------------------------------------------------------------------------------------

#: The modes always in the plan: secagg+ runs with active security (signatures bound to the
#: model's digest, the consistency check), the others semi-honest.
BASE_PLAN: list[tuple[str, dict[str, Any]]] = [("plain", {}), ("secagg", {}), ("secagg+", {"security": "active"})]
BASE_MODES = tuple(mode for mode, _ in BASE_PLAN)
ACTIVE = {"security": "active"}
#: Modes other packages register; each joins the plan as soon as it is registered. The DP
#: noise is kept small here so that the check can tell a correct noisy sum from a wrong one.
LATER_MODES: dict[str, dict[str, Any]] = {"secagg+dp": {"noise_multiplier": 0.001, "clip_norm": 4.0}, "ckks": {}}
#: The roster ids of the shared federation's SuperNodes 0, 1, 2.
CLIENT_IDS = (11, 22, 33)
REPO = Path(__file__).resolve().parent.parent


def mode_plan() -> list[tuple[str, dict[str, Any]]]:
    """plain, secagg and active secagg+ always; ckks and secagg+dp once their packages register them."""
    plan = list(BASE_PLAN)
    plan += [(mode, options) for mode, options in LATER_MODES.items() if mode in available_modes()]
    return plan


def run_config(out: Path, scenario: str, plan: list[tuple[str, dict[str, Any]]], **extra: Any) -> dict[str, Any]:
    config = {"out-dir": str(out), "scenario": scenario, "plan": json.dumps(plan),
              "privagg-modes": json.dumps(dict(plan))}
    config.update(extra)
    return config


def client_delta(out: Path, cid: int, label: int, server_round: int) -> np.ndarray:
    """What client ``cid`` aggregated, from the files its train wrote: returned minus received."""
    files = np.load(out / f"client-{cid}-{label}-{server_round}.npz")
    count = len([k for k in files.files if k.startswith("received")])
    received = flatten([files[f"received{i}"] for i in range(count)])[0]
    returned = flatten([files[f"returned{i}"] for i in range(count)])[0]
    return returned - received


def check_round(out: Path, entry: dict[str, Any], plan: dict[str, dict[str, Any]], clients: int) -> None:
    """The round's aggregate is the sum of exactly its included clients' updates."""
    assert "aborted" not in entry, entry
    mode, included = entry["mode"], entry["included"]
    assert included and set(included) <= set(entry["client_ids"].values())
    assert set(map(int, entry["client_ids"])) <= set(entry["nodes"])
    deltas = [client_delta(out, cid, entry["label"], entry["round"]) for cid in included]
    plaintext = np.sum(deltas, axis=0)
    aggregate = np.asarray(entry["aggregate"])
    aggregator = make_aggregator(mode, hints={"clients": clients, "dimension": plaintext.size}, **plan[mode])
    if mode.endswith("+dp"):
        # The released sum is the clients' (clipped; these updates are far inside the norm) sum
        # plus noise of standard deviation about z*C (at most z*C*sqrt(n) with n contributors).
        options = plan[mode]
        sigma = options.get("noise_multiplier", 1.0) * options.get("clip_norm", 1.0) * np.sqrt(len(included))
        error = np.abs(aggregate - plaintext)
        assert 0 < error.max() < 8 * sigma, (
            f"{mode}: error {error.max():.3g} vs noise {sigma:.3g}; in Flower every client and the server build "
            f"their aggregator separately (registry, options, hints): anything they must share, such as a "
            f"rotation seed, has to follow from those")
        assert entry["info"].get("epsilon", 0) > 0
    elif entry["encoded"] is not None:
        fp = aggregator.encoding
        assert fp is not None
        expected = sum(fp.encode(d).astype(object) for d in deltas) % (1 << fp.bits)
        assert [int(x) for x in expected] == entry["encoded"], f"{mode}: encoded sum differs"
        np.testing.assert_array_equal(aggregate, fp.decode(np.array(list(expected), dtype=np.uint64),
                                                           clients=len(included)))
        assert np.abs(aggregate - plaintext).max() <= fp.max_error(len(included))
    else:
        # CKKS: its parameters target 1e-6 relative precision; allow 1e-3 absolute on sums of ~0.1.
        assert np.abs(aggregate - plaintext).max() <= 1e-3, f"{mode}: approximate sum off"
    # The next model is the received one plus the mean update, in the model's dtypes.
    base = [np.asarray(a, dtype=d) for a, d in zip(entry["base"], ("float32", "float32", "int64"))]
    base_vector, spec = flatten(base)
    expected_new = unflatten(base_vector + aggregate / len(included), spec)
    for got, want in zip(entry["new"], expected_new):
        np.testing.assert_array_equal(np.asarray(got, dtype=want.dtype), want)
    if not mode.endswith("+dp"):
        assert np.asarray(entry["new"][2]).tolist() == (np.asarray(entry["base"][2]) + 1).tolist()


def read_results(out: Path) -> dict[str, Any]:
    return json.loads((out / "server.json").read_text())


def session_dirs() -> set[str]:
    """Socket directories of privagg session hosts (each removes its own when it ends)."""
    return {p.name for p in Path(tempfile.gettempdir()).glob("privagg-session-*")}


# ------------------------------------------------------------------------------------------
# A federation shared by the tests that do not kill nodes
# ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("flower-federation")
    before = session_dirs()
    fed = LocalFederation(root / "fed", nodes=3, env=FAST_ENV, client_ids=CLIENT_IDS)
    with fed:
        yield fed
    assert processes_in(root) == [], "a Flower process outlived the shared federation"
    assert session_dirs() <= before, "a session host left its socket directory behind"


@pytest.fixture(scope="module")
def app_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_app(tmp_path_factory.mktemp("flower-app"))


@pytest.fixture(scope="module")
def modes_run(federation: LocalFederation, app_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """One `flwr run` through SecureFedAvg for every mode of the plan."""
    out = tmp_path_factory.mktemp("modes-out")
    plan = mode_plan()
    outcome = federation.run(app_dir, run_config(out, "modes", plan, **{"stage-timeout": 30.0,
                                                                        "privagg-roster": str(federation.roster_path)}),
                             timeout=420)
    return outcome, out, dict(plan)


def test_every_mode_aggregates_exactly_inside_flower(modes_run, federation: LocalFederation) -> None:
    outcome, out, plan = modes_run
    assert outcome.succeeded, outcome.logs[-3000:]
    results = read_results(out)
    assert sorted(results["nodes"]) == sorted(federation.node_ids.values())
    rounds = results["rounds"]
    assert [r["mode"] for r in rounds] == [list(plan)[0]] * 2 + list(plan)[1:]
    by_node = {str(federation.node_ids[i]): cid for i, cid in enumerate(CLIENT_IDS)}
    for entry in (r for r in rounds if r["mode"] in BASE_MODES):
        # Every node took part under the roster id it was provisioned with, proved to the server.
        assert "aborted" not in entry, entry
        assert entry["included"] == list(CLIENT_IDS) and entry["client_ids"] == by_node, entry
        check_round(out, entry, plan, clients=3)
    # The second round trained on the model the first round produced.
    assert rounds[1]["base"] == rounds[0]["new"]


def test_an_active_round_completes_exactly_with_provisioned_identities(modes_run) -> None:
    """secagg+ with active security: signed keys, the signed survivor set, exact sum."""
    _, out, plan = modes_run
    assert plan["secagg+"] == ACTIVE
    (entry,) = [r for r in read_results(out)["rounds"] if r["mode"] == "secagg+"]
    assert [s for s, _ in entry["stages"]] == ["advertise_keys", "share_keys", "masked_input", "consistency_check",
                                               "unmasking"]
    assert entry["included"] == list(CLIENT_IDS) and not entry["failures"]
    check_round(out, entry, plan, clients=3)


def test_clientapps_import_this_checkout_of_privagg(modes_run) -> None:
    _, out, _ = modes_run
    paths = {p.read_text() for p in out.glob("privagg-*.txt")}
    assert paths == {str(REPO / "privagg" / "__init__.py")}


def test_secure_fedavg_keeps_fedavg_evaluation_and_metrics(modes_run) -> None:
    outcome, out, plan = modes_run
    results = read_results(out)
    first = list(plan)[0]
    evaluation = results["evaluate"][first]
    assert set(evaluation) == {"1", "2"}
    final_sum = sum(float(np.sum(a)) for a in results["final"][first])
    assert evaluation["2"]["model-sum"] == pytest.approx(final_sum, rel=1e-5)
    train = results["train_metrics"][first]["1"]
    assert train["privagg-included"] == 3 and train["privagg-dropped"] == 0
    # Forwarded metrics (PrivaggMod(forward_metrics=True)) are averaged by FedAvg's own function.
    assert train["train-loss"] == pytest.approx((0 * 10 + 1 * 11 + 2 * 12) / 33)
    assert results["rounds"][0]["metric_keys"] == ["metrics"]


def test_privagg_messages_are_what_flower_carried(modes_run) -> None:
    """Stage by stage: the secure modes ran all their stages inside Flower, each in one exchange."""
    _, out, plan = modes_run
    stages = {r["mode"]: [s for s, _ in r["stages"]] for r in read_results(out)["rounds"]}
    assert stages["plain"] == ["collect_updates"]
    assert stages["secagg"] == ["advertise_keys", "share_keys", "masked_input", "unmasking"]
    assert stages["secagg+"] == stages["secagg"][:3] + ["consistency_check", "unmasking"]  # active


@pytest.mark.parametrize("mode", ["secagg+dp", "ckks"])
def test_later_modes_run_through_the_same_integration(mode: str, modes_run) -> None:
    """The DP and CKKS modes need nothing from the integration but their registration."""
    if mode not in available_modes():
        pytest.skip(f"mode {mode!r} is not registered yet (its package has not landed); the plan "
                    f"includes it automatically once it is")
    _, out, plan = modes_run
    entries = [r for r in read_results(out)["rounds"] if r["mode"] == mode]
    assert entries and all("aborted" not in e for e in entries)
    for entry in entries:
        check_round(out, entry, plan, clients=3)


@pytest.fixture(scope="module")
def attacks_run(federation: LocalFederation, app_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """One `flwr run` attacking both sides: a rogue client and bad requests, then a malicious server."""
    out = tmp_path_factory.mktemp("attacks-out")
    rogue = {"partition": 0, "kinds": {"1": "corrupt", "2": "leak"}}
    config = run_config(out, "attacks", [("plain", {})], rogue=json.dumps(rogue), **{
        "privagg-roster": str(federation.roster_path), "privagg-modes": json.dumps({"plain": {}, "secagg+": ACTIVE}),
        "stage-timeout": 15.0})
    outcome = federation.run(app_dir, config, timeout=400)
    assert outcome.succeeded, outcome.logs[-3000:]
    return out, read_results(out)


def test_malformed_and_foreign_records_raise_typed_errors_on_both_sides(federation: LocalFederation,
                                                                        attacks_run) -> None:
    tmp_path, results = attacks_run
    plan = [("plain", {})]
    nodes = results["nodes"]
    reasons = results["bad_requests"]
    # Client side: Flower reports the exception our Mod raised, by its class.
    assert "privagg.errors.MalformedMessage" in reasons[str(nodes[0])] and "round-id" in reasons[str(nodes[0])]
    assert "privagg.errors.ProtocolViolation" in reasons[str(nodes[1])] and "clip" in reasons[str(nodes[1])]
    assert "privagg.errors.ProtocolViolation" in reasons[str(nodes[2])] and "plain 'train'" in reasons[str(nodes[2])]
    # Server side: the rogue node's replies are refused with our errors, the round goes on without it.
    rogue_node = federation.node_ids[0]  # partition-id 0, provisioned as client 11
    corrupt, leak = [r for r in results["rounds"] if r["label"] in (1, 2)]
    for entry, error in ((corrupt, "MalformedMessage"), (leak, "ProtocolViolation")):
        assert entry["included"] == [22, 33], entry
        assert entry["failures"][str(rogue_node)].startswith(error), entry["failures"]
        check_round(tmp_path, entry, dict(plan), clients=3)
    assert "checksum" in corrupt["failures"][str(rogue_node)]
    assert "other than privagg" in leak["failures"][str(rogue_node)]


def test_a_malicious_server_is_refused(federation: LocalFederation, attacks_run) -> None:
    """Active security against a server that deviates; every refusal comes from the nodes' own
    configuration (their roster, the model they received), not from the server's word."""
    tmp_path, results = attacks_run
    nodes = results["nodes"]
    # 1. Model inconsistency: node 0 got another model; its digest differs, so no peer's signature
    #    verifies for it and its signature verifies for nobody: it is refused by the others and,
    #    with three nodes, each is left short of usable neighbours; the round aborts, the model
    #    stays as it was.
    swap = results["model_swap"]
    assert swap["aborted"] and not swap["outcome"], swap
    assert swap["final"] == []  # no round produced a model: FedAvg keeps the one it had
    assert set(swap["failures"]) == {str(n) for n in nodes}, swap["failures"]
    for reason in swap["failures"].values():
        assert "ProtocolViolation" in reason and "usable neighbours" in reason, reason
    # 2. A participant no node was provisioned as: node 0 is not named under its own id, the
    #    others find 999 outside their roster; nobody trains, the round aborts at its first stage.
    sybil = results["sybil"]
    assert sybil["aborted"], sybil
    victim_id = CLIENT_IDS[[federation.node_ids[i] for i in range(3)].index(nodes[0])]
    assert f"does not name this node's id {victim_id}" in sybil["failures"][str(nodes[0])]
    for node in nodes[1:]:
        assert "[999]" in sybil["failures"][str(node)] and "not in this node's roster" in sybil["failures"][str(node)]
    assert not list(tmp_path.glob("client-*-12-*.npz"))
    # 3. The server refuses a node whose id is not in its own roster, and runs without it.
    (entry,) = [r for r in results["rounds"] if r["label"] == 13]
    refused = str(federation.node_ids[2])
    assert entry["included"] == [11, 22] and refused not in entry["client_ids"], entry
    assert "not in the server's roster" in entry["failures"][refused]
    check_round(tmp_path, entry, {"plain": {}}, clients=2)


# ------------------------------------------------------------------------------------------
# Nodes killed in the middle of a round (own federations: the shared one stays whole)
# ------------------------------------------------------------------------------------------

def _run_with_kill(root: Path, nodes: int, plan: list[tuple[str, dict[str, Any]]], stage: str, victim: int,
                   sig: int, stage_timeout: float) -> tuple[dict[str, Any], LocalFederation, Path]:
    out = root / "out"
    out.mkdir()
    app = write_app(root)
    before = session_dirs()

    with LocalFederation(root / "fed", nodes=nodes, env=FAST_ENV) as fed:
        killed: dict[str, Any] = {}

        def killer() -> None:
            deadline = time.monotonic() + 300
            while not (out / f"hook-{stage}").exists() and time.monotonic() < deadline:
                time.sleep(0.1)
            killed["addressed"] = json.loads((out / f"hook-{stage}").read_text())
            fed.stop_node(victim, sig)
            while fed.node_alive(victim) and time.monotonic() < deadline:
                time.sleep(0.05)
            killed["at"] = time.monotonic()
            (out / f"ack-{stage}").write_text("killed")

        thread = threading.Thread(target=killer, daemon=True)
        thread.start()
        config = run_config(out, "dropout", plan, **{"hook-stage": stage, "nodes": nodes,
                                                     "stage-timeout": stage_timeout})
        outcome = fed.run(app, config, timeout=300)
        thread.join(timeout=5)
        assert outcome.succeeded, outcome.logs[-3000:]
        assert "at" in killed, "the round never reached the stage at which the node was to be killed"
        node_ids = dict(fed.node_ids)
    assert processes_in(root) == [], "a process survived the federation"
    assert session_dirs() <= before, "a session host left its socket directory behind"
    results = read_results(out)
    results["victim"] = node_ids[victim]
    return results, fed, out


def test_sigterm_mid_round_completes_exactly_for_the_survivors(tmp_path: Path) -> None:
    plan = [("secagg", {})]
    results, fed, out = _run_with_kill(tmp_path, 4, plan, "masked_input", 3, signal.SIGTERM, stage_timeout=25.0)
    assert "aborted" not in results, results
    (entry,) = results["rounds"]
    victim = results["victim"]
    assert entry["dropped"] == [victim]
    assert entry["included"] == sorted(set(results["nodes"]) - {victim})
    check_round(out, entry, dict(plan), clients=4)  # exact: the victim's masks were removed
    assert (out / f"client-{victim}-0-1.npz").exists()  # it had trained and joined the round
    # A SuperNode ended with SIGTERM leaves the federation: the SuperLink refuses its messages
    # (or answers a pending one with an error reply), so the stage does not wait for its deadline.
    assert str(victim) in entry["failures"], entry["failures"]
    stages = dict(entry["stages"])
    assert stages["masked_input"] < 25.0


def test_sigkill_below_threshold_aborts_cleanly_at_the_stage_deadline(tmp_path: Path) -> None:
    plan = [("secagg", {"threshold": 3})]
    results, fed, out = _run_with_kill(tmp_path, 3, plan, "share_keys", 2, signal.SIGKILL, stage_timeout=12.0)
    assert not results["rounds"], "a round below the threshold must not produce an aggregate"
    aborted = results["aborted"]
    assert "below the threshold" in aborted["reason"], aborted
    assert not aborted["new_model"]  # an aborted round yields no model: FedAvg keeps the previous one
    seen = dict(results["stages_seen"])
    # A SIGKILLed node says nothing: the stage ends at its deadline (12 s), not at Flower's
    # heartbeat expiry (about a minute).
    assert results["seconds"] - seen["share_keys"] < 12.0 + 8.0


# ------------------------------------------------------------------------------------------
# TLS, and Flower's simulation engine
# ------------------------------------------------------------------------------------------

def make_tls(directory: Path) -> TlsFiles:
    """A CA and a SuperLink certificate naming IP 127.0.0.1, made with `cryptography` now."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "privagg test CA")])
    ca_cert = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
               .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                            content_commitment=False, key_encipherment=False, data_encipherment=False,
                                            key_agreement=False, encipher_only=False, decipher_only=False),
                              critical=True)
               .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")),
                                                        x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    directory.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    files.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.server_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.server_key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption()))
    files.server_key.chmod(0o600)
    return files


def test_a_round_over_tls(tmp_path: Path) -> None:
    """TLS on every link (the secure modes run on the shared federation; one stage suffices here)."""
    tls = make_tls(tmp_path / "certs")
    out = tmp_path / "out"
    out.mkdir()
    plan = [("plain", {})]
    with LocalFederation(tmp_path / "fed", nodes=3, tls=tls, env=FAST_ENV) as fed:
        outcome = fed.run(write_app(tmp_path), run_config(out, "modes", plan, **{"first-rounds": 1}), timeout=240)
        assert outcome.succeeded, outcome.logs[-3000:]
        logs = [fed.logs("superlink")] + [fed.logs(f"node{i}") for i in range(3)]
        node_ids = sorted(fed.node_ids.values())
    assert processes_in(tmp_path) == []
    # Every link was TLS: Flower warns loudly about insecure servers and channels.
    assert not any("insecure" in log.lower() for log in logs)
    (entry,) = read_results(out)["rounds"]
    assert entry["included"] == node_ids
    check_round(out, entry, dict(plan), clients=3)


def test_same_app_in_flowers_simulation_engine(tmp_path: Path) -> None:
    pytest.importorskip("ray", reason="Flower's simulation engine needs the flwr[simulation] extra (ray)")
    out = tmp_path / "out"
    out.mkdir()
    plan = [("secagg+", {})]
    with LocalFederation(tmp_path / "fed", nodes=3, simulation=True, env=FAST_ENV) as fed:
        options = {"backend.client-resources.num-cpus": 1, "backend.init-args.num-cpus": 2}
        outcome = fed.run(write_app(tmp_path), run_config(out, "modes", plan, **{"stage-timeout": 60.0,
                                                                                  "first-rounds": 1}),
                          timeout=300, federation_options=options)
        assert outcome.succeeded, outcome.logs[-3000:]
    assert processes_in(tmp_path) == []
    results = read_results(out)
    assert len(results["nodes"]) == 3
    for entry in results["rounds"]:
        assert entry["included"] == sorted(results["nodes"])
        check_round(out, entry, dict(plan), clients=3)


def test_no_flower_process_outlives_a_federation(tmp_path: Path) -> None:
    """close() ends everything, including what Flower detaches and ClientApps of killed nodes."""
    with LocalFederation(tmp_path / "fed", nodes=3, env=FAST_ENV) as fed:
        groups = fed.process_groups()
        assert len(groups) == 4 and len(processes_in(tmp_path)) >= 8  # link, superexecs, nodes
        fed.stop_node(1, signal.SIGKILL)
    assert processes_in(tmp_path) == []
