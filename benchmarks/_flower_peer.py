"""Flower's own SecAgg+ as the peer the secure-aggregation benchmark measures against.

`run_flower_secaggplus` runs ONE round of Flower's SecAgg+ in this process, with Flower's
real code on both sides and nothing reimplemented:

* server: ``DefaultWorkflow(fit_workflow=SecAggPlusWorkflow(...))`` driven with a
  ``LegacyContext`` holding a legacy ``FedAvg`` that samples every client (Flower only
  offers SecAgg+ inside this legacy compatibility layer);
* clients: a ``ClientApp(client_fn, mods=[secaggplus_mod])`` whose ``NumPyClient.fit``
  returns the client's update with ``num_examples=1``; this is the layout of Flower's own
  secure-aggregation example;
* transport: `_LoopbackGrid`, a minimal in-memory implementation of Flower's abstract
  ``Grid``. Every message in both directions goes through Flower's own wire form: it is
  deflated into its content-addressed objects (the bytes a SuperNode pushes to the
  SuperLink) and inflated again on the other side, so the two sides never share an object
  and `bytes_up_total` is the size of exactly what Flower would put on the wire (the
  object headers and protobuf bodies, without gRPC framing).

What is timed (process CPU time, `time.process_time`, with wall time alongside; Flower
runs Shamir split/combine on a ``ThreadPoolExecutor``, so a per-thread clock would miss most
of the secret-sharing work, and nothing else runs in the process meanwhile):

* client time: each call of the ClientApp, i.e. ``secaggplus_mod`` plus the legacy
  ``fit`` handling (FitIns/FitRes conversion) it wraps;
* server time: the four SecAgg+ stages of the workflow, including the strategy's
  ``configure_fit`` and ``aggregate_fit`` (Flower calls them from inside the stages),
  minus the client calls and the transport made while they run. ``aggregate_fit`` is
  legacy overhead, not SecAgg+ (FedAvg re-averages one identical copy of the already
  unmasked mean per included client), so it is also reported on its own;
* transport (deflate/inflate) is measured separately and counted on neither side;
  Flower's one-off set-up (node registration, parameter initialisation) is not counted.

Dropout: a client in ``drop_after_share_keys`` answers the setup and share-keys stages and
is then silent. The grid returns from `send_and_receive` as soon as every live client has
answered, which is exactly what happens when a ``timeout`` expires on a real deployment
(with ``timeout=None`` a real Flower grid would wait for the silent client forever). The
benchmark therefore never includes deadline waiting.

Flower's aggregate is the *weighted mean* of the included clients' updates (the workflow
uploads ``[w, w * params]`` and FedAvg then averages). With ``num_examples=1`` and
``max_weight=1.0`` every weight is 1, quantisation uses the full ``quantization_range``
and the result is the plain mean; `aggregate_sum` multiplies it back
by the number of included clients. Flower's default ``max_weight=1000`` would instead
scale every update by about 1/1000 before quantising and so lose about ten bits.

Known Flower 1.42 behaviour, documented here and deliberately not worked around:

* A client that drops after setup but before sharing keys kills the round: the surviving
  clients are still told it is "dead", ``_unmask`` looks up its key share, which it never
  received, and raises ``KeyError``; the server then fails with "Not enough shares to recover
  secret" and halts. Reproduce with ``drop_after_setup``; this function raises
  `FlowerRoundFailed`.
* An even integer ``num_shares`` (smaller than the number of clients) crashes every
  client: the workflow sends the even ``share_num`` to the clients *before* it bumps its own
  copy to the next odd number, so each client has ``num_shares + 1`` neighbours but only
  ``num_shares`` Shamir shares and hits an ``IndexError`` in ``_share_keys``.
* Masks come from ``np.random.RandomState`` seeded with the 32-byte secret XOR-folded to
  32 bits, and are drawn from ``[0, modulus_range - 2]``; masked inputs travel as int64
  (8 bytes a parameter) although they live mod ``2**32``. Neighbour shuffling uses Python's
  global ``random`` and stochastic rounding NumPy's global RNG, so a run is not
  reproducible from a seed and advances both global generators. These are properties of
  the peer, not of this harness.
"""

from __future__ import annotations

import os

# Flower reads these when it is imported: no telemetry and no update check, ever.
os.environ["FLWR_TELEMETRY_ENABLED"] = "0"
os.environ["FLWR_DISABLE_UPDATE_CHECK"] = "1"
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"

import logging
import time
import tracemalloc
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import version as _dist_version
from typing import Any, cast

import numpy as np
from flwr.app import Context, Error, Message, RecordDict
from flwr.client import NumPyClient
from flwr.client.mod import secaggplus_mod
from flwr.clientapp import ClientApp
from flwr.common import (
    NDArrays,
    Scalar,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from flwr.common.constant import SUPERLINK_NODE_ID, ErrorCode
from flwr.common.secure_aggregation.secaggplus_constants import (
    RECORD_KEY_CONFIGS,
    Key,
    Stage,
)
from flwr.compat.common import recorddict_compat as compat
from flwr.server import LegacyContext, ServerConfig, SimpleClientManager
from flwr.server.strategy import FedAvg
from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow
from flwr.server.workflow.constant import MAIN_PARAMS_RECORD
from flwr.server.workflow.secure_aggregation.secaggplus_workflow import (
    WorkflowState,
)
from flwr.serverapp.grid import Grid
from flwr.supercore.inflatable.inflatable_object import (
    get_all_nested_objects,
    no_object_id_recompute,
)
from flwr.supercore.inflatable.inflatable_utils import (
    inflate_object_from_contents,
)
from flwr.supercore.run import Run, RunNotRunningException
from flwr.supercore.task_identity import TaskIdentity

__all__ = ["FlowerRoundFailed", "run_flower_secaggplus"]

FLOWER_VERSION: str = _dist_version("flwr")

_RUN_ID = 1
_NODE_ID_BASE = 0x1_0000  # node ids are opaque to SecAgg+; keep clear of SUPERLINK_NODE_ID
_STAGES: tuple[str, ...] = Stage.all()
_MIN_CLIENTS = 2


class FlowerRoundFailed(RuntimeError):
    """Flower's SecAgg+ round ended without an aggregate (it halted or raised)."""


# --------------------------------------------------------------------------- measuring


@dataclass
class _Span:
    """Accumulated CPU (whole process) and wall seconds."""

    cpu: float = 0.0
    wall: float = 0.0


@contextmanager
def _timed(into: _Span) -> Iterator[None]:
    """Add the CPU and wall time spent in the block to `into`."""
    cpu0, wall0 = time.process_time(), time.perf_counter()
    try:
        yield
    finally:
        into.cpu += time.process_time() - cpu0
        into.wall += time.perf_counter() - wall0


class _ServerMemory:
    """Peak traced heap while server code runs, with client calls and transport excluded.

    Tracing starts at the first SecAgg+ stage. Just before every client call or transport
    step the peak so far is banked and just after it the peak is reset, so a client's
    transient allocations never count; what those calls leave behind and the server keeps
    (the received replies) does. Clients' own retained state (a few keys and shares each)
    also stays in the traced total, a slight overestimate.
    """

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.peak: int = 0
        self._baseline: int = 0
        self._started_here = False
        self._active = False

    def start(self) -> None:
        if not self.enabled or self._active:
            return
        if not tracemalloc.is_tracing():
            tracemalloc.start()
            self._started_here = True
        self._baseline = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        self._active = True

    def bank(self) -> None:
        if self._active:
            self.peak = max(self.peak, tracemalloc.get_traced_memory()[1] - self._baseline)

    def reset(self) -> None:
        if self._active:
            tracemalloc.reset_peak()

    def stop(self) -> None:
        if not self._active:
            return
        self.bank()
        self._active = False
        if self._started_here:
            tracemalloc.stop()
            self._started_here = False

    @contextmanager
    def excluded(self) -> Iterator[None]:
        """Run a block whose allocations are not the server's."""
        self.bank()
        try:
            yield
        finally:
            self.reset()


@dataclass
class _Meter:
    """Everything measured during one round."""

    memory: _ServerMemory
    client: dict[int, _Span] = field(default_factory=dict)
    transport: _Span = field(default_factory=_Span)
    server_stage: dict[str, _Span] = field(default_factory=dict)
    bytes_up: dict[str, int] = field(default_factory=dict)
    bytes_down: dict[str, int] = field(default_factory=dict)
    strategy_aggregate: _Span = field(default_factory=_Span)
    client_errors: dict[int, str] = field(default_factory=dict)
    stages_completed: list[str] = field(default_factory=list)
    included_nodes: set[int] = field(default_factory=set)
    num_shares: int = 0
    threshold: int = 0

    def offloaded(self) -> _Span:
        """Time spent so far outside server code (client calls plus transport)."""
        return _Span(
            cpu=self.transport.cpu + sum(s.cpu for s in self.client.values()),
            wall=self.transport.wall + sum(s.wall for s in self.client.values()),
        )


# --------------------------------------------------------------------------- transport


def _wire_copy(msg: Message) -> tuple[Message, int]:
    """Deflate `msg` into Flower's wire objects, inflate a fresh copy; return it and the size.

    The size is the total length of the deflated objects (message, record dict, records,
    arrays), i.e. what a SuperNode pushes for this message.
    """
    with no_object_id_recompute():
        objects = get_all_nested_objects(msg)
        contents = {oid: obj.deflate() for oid, obj in objects.items()}
        size = sum(len(c) for c in contents.values())
        root_id = msg.object_id
        copy = cast(Message, inflate_object_from_contents(root_id, contents))
    copy.metadata.__dict__["_message_id"] = msg.metadata.message_id or root_id
    return copy, size


def _stage_of(msg: Message) -> str:
    """Return the SecAgg+ stage an instruction message belongs to ("other" if none)."""
    if msg.has_content() and RECORD_KEY_CONFIGS in msg.content.config_records:
        return str(msg.content.config_records[RECORD_KEY_CONFIGS].get(Key.STAGE, "other"))
    return "other"


class _LoopbackGrid(Grid):
    """In-memory `Grid` that hands each message to its node's ClientApp synchronously.

    `silent_from[node_id]` names the first SecAgg+ stage the node no longer answers; from
    then on it answers nothing. A ClientApp exception becomes an error reply, as a
    SuperNode would send.
    """

    def __init__(
        self,
        app: ClientApp,
        contexts: dict[int, Context],
        silent_from: dict[int, str],
        meter: _Meter,
    ) -> None:
        self._app = app
        self._contexts = contexts
        self._silent_from = silent_from
        self._gone: set[int] = set()
        self._meter = meter
        self._run = Run.create_empty(_RUN_ID)
        self._replies: dict[str, Message] = {}
        self._next_id = 0
        self.closed = False

    def set_run(self, run: Run) -> None:
        self._run = run

    @property
    def run(self) -> Run:
        return self._run

    def create_message(
        self,
        content: RecordDict,
        message_type: str,
        dst_node_id: int,
        group_id: str,
        ttl: float | None = None,
    ) -> Message:
        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self) -> Iterable[int]:
        if self.closed:  # stops Flower's node-registration thread
            raise RunNotRunningException
        return list(self._contexts)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        ids: list[str] = []
        for msg in messages:
            self._next_id += 1
            msg_id = f"ins-{self._next_id}"
            msg.metadata.__dict__["_message_id"] = msg_id
            ids.append(msg_id)
            reply = self._deliver(msg)
            if reply is not None:
                self._replies[msg_id] = reply
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return [self._replies.pop(i) for i in message_ids if i in self._replies]

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        # Delivery is synchronous, so every reply that will ever come is already here:
        # returning now is what a real grid does once `timeout` expires.
        del timeout
        return self.pull_messages(list(self.push_messages(messages)))

    def _deliver(self, msg: Message) -> Message | None:
        node = msg.metadata.dst_node_id
        stage = _stage_of(msg)
        meter, memory = self._meter, self._meter.memory
        with memory.excluded(), _timed(meter.transport):
            inbound, size = _wire_copy(msg)
        meter.bytes_down[stage] = meter.bytes_down.get(stage, 0) + size
        if node in self._gone or self._silent_from.get(node) == stage:
            self._gone.add(node)
            return None
        span = meter.client.setdefault(node, _Span())
        with memory.excluded():
            with _timed(span):
                try:
                    reply = self._app(inbound, self._contexts[node])
                except Exception as exc:  # a SuperNode turns any ClientApp exception
                    # into an error reply; so does this grid
                    meter.client_errors[node] = f"{stage}: {type(exc).__name__}: {exc}"
                    reply = Message(
                        Error(ErrorCode.CLIENT_APP_RAISED_EXCEPTION, repr(exc)),
                        reply_to=inbound,
                    )
            with _timed(meter.transport):
                outbound, size = _wire_copy(reply)
        meter.bytes_up[stage] = meter.bytes_up.get(stage, 0) + size
        return outbound


# --------------------------------------------------------------------------- both sides


class _UpdateClient(NumPyClient):
    """A client whose 'training' returns its fixed update, with weight 1."""

    def __init__(self, update: np.ndarray) -> None:
        self._update = update

    def fit(
        self, parameters: NDArrays, config: dict[str, Scalar]
    ) -> tuple[NDArrays, int, dict[str, Scalar]]:
        del parameters, config
        return [self._update], 1, {}


class _MeasuredFedAvg(FedAvg):
    """Flower's legacy `FedAvg`, unchanged, with `aggregate_fit` timed from outside."""

    def __init__(self, meter: _Meter, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._meter = meter

    def aggregate_fit(self, *args: Any, **kwargs: Any) -> Any:
        with _timed(self._meter.strategy_aggregate):
            return super().aggregate_fit(*args, **kwargs)


class _MeasuredSecAggPlus(SecAggPlusWorkflow):
    """Flower's `SecAggPlusWorkflow`, unchanged, with each stage timed from outside."""

    def __init__(self, meter: _Meter, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._meter = meter

    def _measure(
        self,
        name: str,
        stage: Callable[[Grid, LegacyContext, WorkflowState], bool],
        grid: Grid,
        context: LegacyContext,
        state: WorkflowState,
    ) -> bool:
        meter = self._meter
        meter.memory.start()
        before, total = meter.offloaded(), _Span()
        with _timed(total):
            ok = stage(grid, context, state)
        after = meter.offloaded()
        meter.server_stage[name] = _Span(
            cpu=total.cpu - (after.cpu - before.cpu),
            wall=total.wall - (after.wall - before.wall),
        )
        if ok:
            meter.stages_completed.append(name)
        if not ok or name == Stage.UNMASK:
            meter.memory.stop()
        return ok

    def setup_stage(self, grid: Grid, context: LegacyContext, state: WorkflowState) -> bool:
        ok = self._measure(Stage.SETUP, super().setup_stage, grid, context, state)
        self._meter.num_shares, self._meter.threshold = state.num_shares, state.threshold
        return ok

    def share_keys_stage(self, grid: Grid, context: LegacyContext, state: WorkflowState) -> bool:
        return self._measure(Stage.SHARE_KEYS, super().share_keys_stage, grid, context, state)

    def collect_masked_vectors_stage(
        self, grid: Grid, context: LegacyContext, state: WorkflowState
    ) -> bool:
        ok = self._measure(
            Stage.COLLECT_MASKED_VECTORS,
            super().collect_masked_vectors_stage,
            grid,
            context,
            state,
        )
        # The masked inputs summed are exactly those of the nodes still active now.
        self._meter.included_nodes = set(state.active_node_ids)
        return ok

    def unmask_stage(self, grid: Grid, context: LegacyContext, state: WorkflowState) -> bool:
        return self._measure(Stage.UNMASK, super().unmask_stage, grid, context, state)


class _Capture(logging.Handler):
    """Keeps the text of every record it receives."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname}: {record.getMessage()}")


@contextmanager
def _flower_process_state(capture: _Capture) -> Iterator[None]:
    """Set Flower's process-global identity and silence its logger for one run.

    Flower's warnings and errors go to `capture` instead of the console. Everything is
    restored afterwards.
    """
    saved = (TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id)
    logger = logging.getLogger("flwr")
    saved_level, saved_handlers, saved_propagate = (
        logger.level,
        logger.handlers[:],
        logger.propagate,
    )
    # What Flower's own legacy `start_grid` sets for an in-process ServerApp.
    TaskIdentity.task_id = 1
    TaskIdentity.run_id = _RUN_ID
    TaskIdentity.node_id = SUPERLINK_NODE_ID
    logger.setLevel(logging.WARNING)
    logger.handlers = [capture]
    logger.propagate = False
    try:
        yield
    finally:
        logger.setLevel(saved_level)
        logger.handlers, logger.propagate = saved_handlers, saved_propagate
        (TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id) = saved


def _check_inputs(
    updates: list[np.ndarray], drop_sets: Iterable[set[int]]
) -> tuple[list[np.ndarray], int]:
    if len(updates) < _MIN_CLIENTS:
        raise ValueError("SecAgg+ needs at least two clients")
    arrays = [np.asarray(u) for u in updates]
    if any(a.ndim != 1 for a in arrays):
        raise ValueError("every update must be a 1-D array")
    m = arrays[0].shape[0]
    if m == 0 or any(a.shape[0] != m for a in arrays):
        raise ValueError("updates must be non-empty and of equal length")
    for drops in drop_sets:
        if any(not 0 <= i < len(arrays) for i in drops):
            raise ValueError("dropout indices must name clients")
    return [a.astype(np.float32, copy=False) for a in arrays], m


# --------------------------------------------------------------------------- public


def run_flower_secaggplus(
    updates: list[np.ndarray],
    *,
    num_shares: int,
    reconstruction_threshold: int,
    drop_after_share_keys: set[int],
    clipping_range: float = 1.0,
    quantization_range: int = 2**22,
    modulus_range: int = 2**32,
    timeout: float | None = None,
    max_weight: float = 1.0,
    drop_after_setup: set[int] | frozenset[int] = frozenset(),
    measure_memory: bool = False,
) -> dict[str, Any]:
    """Run one round of Flower's SecAgg+ on `updates` in-process and measure it.

    Parameters
    ----------
    updates
        ``updates[i]`` is client ``i``'s 1-D float update; all of the same length M.
    num_shares, reconstruction_threshold
        Passed to Flower's ``SecAggPlusWorkflow`` unchanged (neighbourhood size including
        the client itself, and the Shamir threshold).
    drop_after_share_keys
        Client indices that answer setup and share-keys, then go silent: they never send
        a masked input (and never take part in unmasking).
    clipping_range, quantization_range, modulus_range, timeout
        Passed to ``SecAggPlusWorkflow`` unchanged. The in-memory grid never waits, so
        `timeout` only matters to Flower's own logic.
    max_weight
        ``SecAggPlusWorkflow``'s ``max_weight``. Every client reports ``num_examples=1``;
        the default 1.0 keeps the full quantisation range (Flower's default is 1000).
    drop_after_setup
        Client indices that go silent right after setup, before sharing keys. Flower 1.42
        cannot survive this (see the module docstring); it exists to demonstrate that.
    measure_memory
        Trace the server's peak heap with `tracemalloc` (`server_peak_bytes`). Tracing
        slows Python code, so timings of a traced run are not comparable.

    Returns
    -------
    dict
        Times are CPU seconds (``time.process_time``) unless the key says ``wall``.

        - ``client_seconds_total`` / ``client_seconds_max``: time in the ClientApp
          (``secaggplus_mod`` and the legacy fit it wraps), summed over / largest among
          all clients, dropped ones included (they did setup and share-keys);
          ``server_seconds``: the four SecAgg+ stages minus client calls and transport;
          ``client_wall_seconds_total``, ``client_wall_seconds_max`` and
          ``server_wall_seconds``: the same in wall time.
        - ``server_stage_seconds``: stage name -> server time; ``server_strategy_seconds``:
          the part of ``server_seconds`` spent in FedAvg's legacy ``aggregate_fit``;
          ``transport_seconds``: (de)serialisation, counted on neither side.
        - ``bytes_up_total`` / ``bytes_down_total`` and ``bytes_up_by_stage`` /
          ``bytes_down_by_stage``: total size of Flower's deflated message objects.
        - ``aggregate``: the float64 vector Flower produced, the weighted *mean* of the
          included updates (``aggregate_is_mean`` is True); ``aggregate_sum``: it times
          the number of included clients.
        - ``included`` / ``dropped``: sorted client indices whose inputs are / are not in
          the aggregate; ``num_shares`` / ``threshold``: the values Flower used.
        - ``server_peak_bytes``: traced server heap peak, None unless `measure_memory`.
        - ``client_errors``: client index -> error text (empty on a clean run);
          ``flower_log``: Flower's warnings and errors, kept off the console.
        - ``n_clients``, ``n_params``, ``flower_version``.

    Raises
    ------
    FlowerRoundFailed
        If the workflow halts or raises before producing an aggregate.
    ValueError
        On malformed `updates` or dropout indices.
    """
    arrays, m = _check_inputs(updates, (drop_after_share_keys, set(drop_after_setup)))
    n = len(arrays)
    node_ids = [_NODE_ID_BASE + i for i in range(n)]
    index_of = {nid: i for i, nid in enumerate(node_ids)}
    silent_from = {node_ids[i]: Stage.COLLECT_MASKED_VECTORS for i in drop_after_share_keys}
    silent_from.update({node_ids[i]: Stage.SHARE_KEYS for i in drop_after_setup})

    def client_fn(context: Context) -> Any:
        return _UpdateClient(arrays[int(context.node_config["partition-id"])]).to_client()

    app = ClientApp(client_fn=client_fn, mods=[secaggplus_mod])
    contexts = {
        nid: Context(
            run_id=_RUN_ID,
            node_id=nid,
            node_config={"partition-id": i, "num-partitions": n},
            state=RecordDict(),
            run_config={},
        )
        for i, nid in enumerate(node_ids)
    }
    meter = _Meter(memory=_ServerMemory(measure_memory))
    grid = _LoopbackGrid(app, contexts, silent_from, meter)

    strategy = _MeasuredFedAvg(
        meter,
        fraction_fit=1.0,
        fraction_evaluate=0.0,
        min_fit_clients=n,
        min_evaluate_clients=n,
        min_available_clients=n,
        initial_parameters=ndarrays_to_parameters([np.zeros(m, dtype=np.float32)]),
    )
    workflow = DefaultWorkflow(
        fit_workflow=_MeasuredSecAggPlus(
            meter,
            num_shares=num_shares,
            reconstruction_threshold=reconstruction_threshold,
            max_weight=max_weight,
            clipping_range=clipping_range,
            quantization_range=quantization_range,
            modulus_range=modulus_range,
            timeout=timeout,
        )
    )

    capture = _Capture()
    with _flower_process_state(capture):
        context = LegacyContext(
            context=Context(
                run_id=_RUN_ID,
                node_id=SUPERLINK_NODE_ID,
                node_config={},
                state=RecordDict(),
                run_config={},
            ),
            config=ServerConfig(num_rounds=1),
            strategy=strategy,
            client_manager=SimpleClientManager(),
        )
        try:
            workflow(grid, context)
        except Exception as exc:
            raise FlowerRoundFailed(
                f"Flower's workflow raised {type(exc).__name__}: {exc}; "
                f"stages completed: {meter.stages_completed}; "
                f"client errors: {_by_index(meter.client_errors, index_of)}; "
                f"Flower log: {capture.lines}"
            ) from exc
        finally:
            meter.memory.stop()
            grid.closed = True

    if Stage.UNMASK not in meter.stages_completed:
        raise FlowerRoundFailed(
            "Flower's SecAgg+ halted without an aggregate; "
            f"stages completed: {meter.stages_completed}; "
            f"client errors: {_by_index(meter.client_errors, index_of)}; "
            f"Flower log: {capture.lines}"
        )

    params = compat.arrayrecord_to_parameters(
        context.state.array_records[MAIN_PARAMS_RECORD], keep_input=True
    )
    aggregate = parameters_to_ndarrays(params)[0]
    included = sorted(index_of[nid] for nid in meter.included_nodes)
    client_cpu = [s.cpu for s in meter.client.values()]
    client_wall = [s.wall for s in meter.client.values()]
    return {
        "client_seconds_total": sum(client_cpu),
        "client_seconds_max": max(client_cpu),
        "server_seconds": sum(s.cpu for s in meter.server_stage.values()),
        "client_wall_seconds_total": sum(client_wall),
        "client_wall_seconds_max": max(client_wall),
        "server_wall_seconds": sum(s.wall for s in meter.server_stage.values()),
        "server_stage_seconds": {k: s.cpu for k, s in meter.server_stage.items()},
        "server_strategy_seconds": meter.strategy_aggregate.cpu,
        "transport_seconds": meter.transport.cpu,
        "bytes_up_total": sum(meter.bytes_up.values()),
        "bytes_down_total": sum(meter.bytes_down.values()),
        "bytes_up_by_stage": _ordered(meter.bytes_up),
        "bytes_down_by_stage": _ordered(meter.bytes_down),
        "server_peak_bytes": meter.memory.peak if measure_memory else None,
        "aggregate": aggregate,
        "aggregate_is_mean": True,
        "aggregate_sum": aggregate * len(included),
        "included": included,
        "dropped": sorted(set(range(n)) - set(included)),
        "num_shares": meter.num_shares,
        "threshold": meter.threshold,
        "client_errors": _by_index(meter.client_errors, index_of),
        "flower_log": capture.lines,
        "n_clients": n,
        "n_params": m,
        "flower_version": FLOWER_VERSION,
    }


def _by_index(errors: dict[int, str], index_of: dict[int, int]) -> dict[int, str]:
    return {index_of[nid]: text for nid, text in sorted(errors.items())}


def _ordered(per_stage: dict[str, int]) -> dict[str, int]:
    return {s: per_stage[s] for s in (*_STAGES, "other") if s in per_stage}


# --------------------------------------------------------------------------- demo


def _demo(*, n: int, m: int, num_shares: int, threshold: int, n_drop: int, seed: int) -> None:
    """Run one round, print the measurements and check the aggregate against plaintext."""
    rng = np.random.default_rng(seed)
    updates = [rng.uniform(-1.0, 1.0, m).astype(np.float32) for _ in range(n)]
    drops = set(range(n_drop))
    started = time.perf_counter()
    result = run_flower_secaggplus(
        updates,
        num_shares=num_shares,
        reconstruction_threshold=threshold,
        drop_after_share_keys=drops,
    )
    elapsed = time.perf_counter() - started
    aggregate_sum = result.pop("aggregate_sum")
    del result["aggregate"]
    expected = np.sum([updates[i] for i in result["included"]], axis=0, dtype=np.float64)
    error = float(np.max(np.abs(aggregate_sum - expected)))
    # Stochastic rounding errs by < 1 step of 2*clip/q per client and value.
    bound = len(result["included"]) * 2 * 1.0 / 2**22
    print(f"N={n} M={m} num_shares={num_shares} threshold={threshold} drop={n_drop}")
    for key, value in result.items():
        print(f"  {key}: {value}")
    print(f"  included == survivors: {result['included'] == sorted(set(range(n)) - drops)}")
    print(f"  max abs error of sum vs plaintext: {error:.3e} (bound {bound:.3e})")
    print(f"  whole call: {elapsed:.2f} s wall")


if __name__ == "__main__":
    _demo(n=20, m=10_000, num_shares=7, threshold=4, n_drop=2, seed=1)
    _demo(n=100, m=100_000, num_shares=13, threshold=7, n_drop=10, seed=2)
