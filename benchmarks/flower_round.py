"""One secure-aggregation round inside Flower's real runtime: Flower 1.42's SecAgg+ against ours.

The same app (N SuperNodes, each training an update of M float32 parameters, deterministic per
node) runs on a fresh local federation of real processes (``flower-superlink``, N
``flower-supernode``, ``flwr run``) three times:

* ``flower``: Flower's built-in ``SecAggPlusWorkflow`` inside ``DefaultWorkflow`` with a
  ``LegacyContext`` and the legacy FedAvg, clients a legacy ``client_fn`` + ``secaggplus_mod``
  (the only way Flower 1.42 runs its SecAgg+);
* ``privagg``: ``SecureFedAvg("secagg+")`` with ``PrivaggMod`` around an unchanged Message-API
  ``train`` (our default reply polling, every 0.5 s);
* ``privagg_send_and_receive``: the same, but each stage waits with Flower's
  ``grid.send_and_receive`` (it polls every 3 s, as Flower's workflow does), so the wall times
  compare the protocols rather than the polling.

Same neighbourhood (``num_shares = neighbours + 1``), threshold, clipping range 1 and 32-bit
modulus on both sides. Measured, per variant:

* ``round_wall_seconds``: the training round as the ServerApp sees it (Flower: the fit
  workflow; ours: ``SecureFedAvg.start``, one round, no evaluation);
* ``server_cpu_seconds``: the ServerApp process's CPU over that round (minus the byte counting
  below); ``superlink_cpu_seconds``: the SuperLink process group over the whole run;
* ``node_cpu_seconds_total``: every process of every SuperNode (SuperNode, SuperExec, one
  ClientApp process per message, our session hosts), from registration to the end of the run,
  counted through a subreaper so that processes outliving their parent are not lost;
  ``clientapp_handler_cpu_seconds_total``: only the ClientApp handlers (the mods and train);
* ``bytes_down`` / ``bytes_up``: Flower's deflated message objects pushed and pulled by the
  ServerApp (what crosses the SuperLink, without HTTP framing), and message counts;
* ``max_abs_error_vs_plaintext``: the aggregate sum against the plaintext sum of the updates.

    python benchmarks/flower_round.py                 # N=5, M=100,000
    python benchmarks/flower_round.py --quick         # N=3, M=10,000
    python benchmarks/flower_round.py --nodes 8 --params 1000000 --num-shares 5 --threshold 3

Writes JSON (default ``benchmarks/results/flower_round.json``). Ratios are Flower over ours.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
_PR_SET_CHILD_SUBREAPER = 36

COMMON = '''\
"""Shared by both apps: the update each node trains, and a Grid that counts Flower's bytes."""

import time

import numpy as np
from flwr.serverapp import Grid
from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects, no_object_id_recompute


def delta(partition: int, params: int) -> np.ndarray:
    return np.random.default_rng([partition, 7]).uniform(-0.05, 0.05, params).astype(np.float32)


def wire_size(message) -> int:
    with no_object_id_recompute():
        return sum(len(obj.deflate()) for obj in get_all_nested_objects(message).values())


class CountingGrid(Grid):
    """The real grid; counts the deflated size of every message pushed and pulled."""

    def __init__(self, grid):
        self._grid = grid
        self.down = self.up = self.messages_down = self.messages_up = 0
        self.counting_cpu = 0.0

    def _count(self, messages, up):
        cpu = time.process_time()
        size = sum(wire_size(m) for m in messages if m.has_content())
        self.counting_cpu += time.process_time() - cpu
        if up:
            self.up, self.messages_up = self.up + size, self.messages_up + len(messages)
        else:
            self.down, self.messages_down = self.down + size, self.messages_down + len(messages)

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
        messages = list(messages)
        self._count(messages, up=False)
        return self._grid.push_messages(messages)

    def pull_messages(self, message_ids):
        replies = list(self._grid.pull_messages(message_ids))
        self._count(replies, up=True)
        return replies

    def send_and_receive(self, messages, *, timeout=None):
        # Flower's own loop (HttpGrid.send_and_receive), on the counting push and pull.
        ids = set(self.push_messages(messages))
        end = time.time() + (timeout if timeout is not None else 0.0)
        out = []
        while timeout is None or time.time() < end:
            got = list(self.pull_messages(ids))
            out.extend(got)
            ids.difference_update({m.metadata.reply_to_message_id for m in got})
            if not ids:
                break
            time.sleep(3)
        return out


def wait_for_nodes(grid, count):
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        nodes = sorted(grid.get_node_ids())
        if len(nodes) >= count:
            return nodes
        time.sleep(0.5)
    raise RuntimeError("nodes missing")


def measure(msg, ctx, call_next):
    """Outermost mod: CPU of this ClientApp call, and of the whole ClientApp process so far."""
    import json
    from pathlib import Path

    cpu = time.process_time()
    out = call_next(msg, ctx)
    record = {"handler_cpu": time.process_time() - cpu, "process_cpu": time.process_time()}
    with open(Path(ctx.run_config["out-dir"]) / f"client-{ctx.node_id}.jsonl", "a") as f:
        f.write(json.dumps(record) + "\\n")
    return out
'''

FLOWER_CLIENT = '''\
import numpy as np
from flwr.client import NumPyClient
from flwr.client.mod import secaggplus_mod
from flwr.clientapp import ClientApp

from benchapp.common import delta, measure


class UpdateClient(NumPyClient):
    def __init__(self, partition, params):
        self.partition, self.params = partition, params

    def fit(self, parameters, config):
        return [parameters[0] + delta(self.partition, self.params)], 1, {}


def client_fn(context):
    return UpdateClient(int(context.node_config["partition-id"]), int(context.run_config["params"])).to_client()


app = ClientApp(client_fn=client_fn, mods=[measure, secaggplus_mod])
'''

FLOWER_SERVER = '''\
import json
import time
from pathlib import Path

import numpy as np
from flwr.common import ndarrays_to_parameters, parameters_to_ndarrays
from flwr.compat.common import recorddict_compat as compat
from flwr.server import LegacyContext, ServerConfig, SimpleClientManager
from flwr.server.strategy import FedAvg
from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow
from flwr.server.workflow.constant import MAIN_PARAMS_RECORD
from flwr.serverapp import ServerApp

from benchapp.common import CountingGrid, wait_for_nodes

app = ServerApp()
TIMES = {}


class TimedSecAggPlus(SecAggPlusWorkflow):
    def __call__(self, grid, context):
        cpu, wall = time.process_time(), time.perf_counter()
        super().__call__(grid, context)
        TIMES["cpu"], TIMES["wall"] = time.process_time() - cpu, time.perf_counter() - wall


@app.main()
def main(grid, context):
    cfg = context.run_config
    n, m = int(cfg["nodes"]), int(cfg["params"])
    wait_for_nodes(grid, n)
    grid = CountingGrid(grid)
    strategy = FedAvg(fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=n, min_evaluate_clients=n,
                      min_available_clients=n, initial_parameters=ndarrays_to_parameters([np.zeros(m, np.float32)]))
    legacy = LegacyContext(context=context, config=ServerConfig(num_rounds=1), strategy=strategy,
                           client_manager=SimpleClientManager())
    workflow = DefaultWorkflow(fit_workflow=TimedSecAggPlus(
        num_shares=int(cfg["num-shares"]), reconstruction_threshold=int(cfg["threshold"]), max_weight=1.0,
        clipping_range=1.0, timeout=float(cfg["stage-timeout"])))
    counted = grid.counting_cpu
    workflow(grid, legacy)
    params = compat.arrayrecord_to_parameters(legacy.state.array_records[MAIN_PARAMS_RECORD], keep_input=True)
    mean = parameters_to_ndarrays(params)[0].astype(np.float64)
    out = Path(cfg["out-dir"])
    np.save(out / "aggregate_sum.npy", mean * n)  # the weighted mean, all weights 1, all nodes included
    (out / "server.json").write_text(json.dumps({
        "round_wall_seconds": TIMES["wall"], "server_cpu_seconds": TIMES["cpu"] - (grid.counting_cpu - counted),
        "bytes_down": grid.down, "bytes_up": grid.up, "messages_down": grid.messages_down,
        "messages_up": grid.messages_up, "included": n}))
'''

PRIVAGG_CLIENT = '''\
from flwr.app import ArrayRecord, Message, RecordDict
from flwr.clientapp import ClientApp

from benchapp.common import delta, measure
from privagg.flower import PrivaggMod

app = ClientApp(mods=[measure, PrivaggMod()])


@app.train()
def train(msg, ctx):
    model = msg.content["arrays"].to_numpy_ndarrays()
    trained = [model[0] + delta(int(ctx.node_config["partition-id"]), int(ctx.run_config["params"]))]
    return Message(RecordDict({"arrays": ArrayRecord(trained)}), reply_to=msg)
'''

PRIVAGG_SERVER = '''\
import json
import time
from pathlib import Path

import numpy as np
from flwr.app import ArrayRecord
from flwr.serverapp import ServerApp

from benchapp.common import CountingGrid, wait_for_nodes
from privagg.flower import SecureFedAvg

app = ServerApp()


@app.main()
def main(grid, context):
    cfg = context.run_config
    n, m = int(cfg["nodes"]), int(cfg["params"])
    wait_for_nodes(grid, n)
    grid = CountingGrid(grid)
    (mode, options), = json.loads(cfg["privagg-modes"]).items()
    poll = float(cfg["poll"]) or None
    strategy = SecureFedAvg(mode, options, stage_timeout=float(cfg["stage-timeout"]), poll_interval=poll,
                            fraction_evaluate=0.0, min_available_nodes=n, min_train_nodes=n)
    counted = grid.counting_cpu
    cpu, wall = time.process_time(), time.perf_counter()
    strategy.start(grid, ArrayRecord([np.zeros(m, np.float32)]), num_rounds=1)
    cpu, wall = time.process_time() - cpu - (grid.counting_cpu - counted), time.perf_counter() - wall
    outcome = strategy.outcomes[1]
    out = Path(cfg["out-dir"])
    np.save(out / "aggregate_sum.npy", outcome.result.aggregate)
    (out / "server.json").write_text(json.dumps({
        "round_wall_seconds": wall, "server_cpu_seconds": cpu, "bytes_down": grid.down, "bytes_up": grid.up,
        "messages_down": grid.messages_down, "messages_up": grid.messages_up,
        "included": len(outcome.included), "privagg_bytes_down": outcome.bytes_down,
        "privagg_bytes_up": outcome.bytes_up, "stage_seconds": dict(outcome.stage_seconds)}))
'''

PYPROJECT = '''\
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "benchapp"
version = "1.0.0"
description = "privagg benchmark app"
license = "Apache-2.0"
dependencies = ["flwr>=1.42,<2"]

[tool.hatch.build.targets.wheel]
packages = ["."]

[tool.flwr.app]
publisher = "privagg"

[tool.flwr.app.components]
serverapp = "benchapp.server_app:app"
clientapp = "benchapp.client_app:app"

[tool.flwr.app.config]
out-dir = ""
nodes = 5
params = 1000
num-shares = 5
threshold = 3
stage-timeout = 120.0
poll = 0.5
privagg-modes = "{}"
'''


def write_app(root: Path, impl: str) -> Path:
    app = root / "app"
    package = app / "benchapp"
    package.mkdir(parents=True)
    (app / "pyproject.toml").write_text(PYPROJECT)
    (package / "__init__.py").write_text("")
    (package / "common.py").write_text(COMMON)
    client, server = (FLOWER_CLIENT, FLOWER_SERVER) if impl == "flower" else (PRIVAGG_CLIENT, PRIVAGG_SERVER)
    (package / "client_app.py").write_text(client)
    (package / "server_app.py").write_text(server)
    return app


def reap(command: list[str]) -> int:
    """Run ``command`` as a child subreaper: every process it leaves behind is adopted and reaped
    here, so its CPU time lands in this process group's accounting instead of with init."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    child = subprocess.Popen(command)
    signal.signal(signal.SIGTERM, lambda *_: child.send_signal(signal.SIGTERM))
    signal.signal(signal.SIGINT, lambda *_: child.send_signal(signal.SIGINT))
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            break
        except InterruptedError:
            continue
    return child.returncode or 0


def run_variant(impl: str, poll: float, args: argparse.Namespace, root: Path) -> dict[str, Any]:
    from privagg.flower.federation import LocalFederation

    out = root / "out"
    out.mkdir(parents=True)
    app = write_app(root, impl)
    neighbours: Any = "all" if args.num_shares >= args.nodes else args.num_shares - 1
    config = {"out-dir": str(out), "nodes": args.nodes, "params": args.params, "num-shares": args.num_shares,
              "threshold": args.threshold, "stage-timeout": args.stage_timeout, "poll": poll,
              "privagg-modes": json.dumps({"secagg+": {"neighbours": neighbours, "threshold": args.threshold}})}
    launcher = (sys.executable, str(Path(__file__).resolve()), "--reap", "--")
    fed = LocalFederation(root / "fed", nodes=args.nodes, launcher=launcher)
    with fed:
        names = [f"node{i}" for i in range(args.nodes)]
        before = {name: fed.cpu_seconds(name) for name in [*names, "superlink"]}
        outcome = fed.run(app, config, timeout=args.stage_timeout * 8 + 120)
        time.sleep(1.0)  # the last ClientApp processes exit and are reaped
        after = {name: fed.cpu_seconds(name) for name in [*names, "superlink"]}
        node_ids = dict(fed.node_ids)
    if not outcome.succeeded:
        raise RuntimeError(f"{impl}: run {outcome.run_id} ended {outcome.status}:\n{outcome.logs[-3000:]}")
    report: dict[str, Any] = json.loads((out / "server.json").read_text())
    node_cpu = [after[n] - before[n] for n in names]
    handler = process = 0.0
    calls = 0
    for node_id in node_ids.values():
        path = out / f"client-{node_id}.jsonl"
        for line in path.read_text().splitlines() if path.exists() else []:
            record = json.loads(line)
            handler, process, calls = handler + record["handler_cpu"], process + record["process_cpu"], calls + 1
    plaintext = np.sum([np.random.default_rng([i, 7]).uniform(-0.05, 0.05, args.params).astype(np.float32)
                        .astype(np.float64) for i in range(args.nodes)], axis=0)
    aggregate = np.load(out / "aggregate_sum.npy")
    report.update({
        "superlink_cpu_seconds": after["superlink"] - before["superlink"],
        "node_cpu_seconds_total": sum(node_cpu), "node_cpu_seconds_max": max(node_cpu),
        "clientapp_handler_cpu_seconds_total": handler, "clientapp_process_cpu_seconds_total": process,
        "clientapp_processes": calls, "flwr_run_seconds": outcome.seconds,
        "max_abs_error_vs_plaintext": float(np.abs(aggregate - plaintext).max()),
    })
    return report


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--params", type=int, default=100_000)
    parser.add_argument("--num-shares", type=int, default=None, help="Flower's num_shares (default: nodes)")
    parser.add_argument("--threshold", type=int, default=None, help="default: a strict majority of the nodes")
    parser.add_argument("--stage-timeout", type=float, default=120.0)
    parser.add_argument("--quick", action="store_true", help="N=3, M=10,000")
    parser.add_argument("--variants", default="flower,privagg,privagg_send_and_receive")
    parser.add_argument("--out", type=Path, default=RESULTS / "flower_round.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.nodes, args.params = 3, 10_000
    args.num_shares = args.num_shares or args.nodes
    args.threshold = args.threshold or args.nodes // 2 + 1
    variants = {"flower": ("flower", 0.0), "privagg": ("privagg", 0.5), "privagg_send_and_receive": ("privagg", 0.0)}
    chosen = [v.strip() for v in args.variants.split(",") if v.strip()]
    report: dict[str, Any] = {"config": {"nodes": args.nodes, "params": args.params, "num_shares": args.num_shares,
                                         "threshold": args.threshold, "stage_timeout": args.stage_timeout,
                                         "cpus": os.cpu_count()}}
    from importlib.metadata import version

    report["config"]["flower_version"] = version("flwr")
    root = Path(tempfile.mkdtemp(prefix="privagg-flower-bench-"))
    try:
        for name in chosen:
            impl, poll = variants[name]
            print(f"{name}: {args.nodes} SuperNodes x {args.params} params ...", file=sys.stderr)
            report[name] = run_variant(impl, poll, args, root / name)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if "flower" in report and "privagg" in report:
        flower, ours = report["flower"], report["privagg"]
        keys = ("round_wall_seconds", "server_cpu_seconds", "node_cpu_seconds_total",
                "clientapp_handler_cpu_seconds_total", "bytes_down", "bytes_up")
        report["ratios"] = {f"{k}_flower_over_ours": flower[k] / ours[k] for k in keys if ours.get(k)}
        if "privagg_send_and_receive" in report:
            same = report["privagg_send_and_receive"]
            report["ratios"]["round_wall_seconds_flower_over_ours_send_and_receive"] = (
                flower["round_wall_seconds"] / same["round_wall_seconds"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--reap" and sys.argv[2] == "--":
        sys.exit(reap(sys.argv[3:]))
    main()
