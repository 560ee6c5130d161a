"""ServerApp: FedAvg, with its aggregation step switched to privagg in one line.

``SecureFedAvg(mode, options, ...)`` instead of ``FedAvg(...)``: every training round runs the
run config's privagg mode (``secagg+dp`` by default: SecAgg+ with the distributed discrete
Gaussian, so the server only ever sees a noisy sum; ``ckks`` with ``--run-config ckks.toml``)
as one Flower message exchange per protocol stage. Evaluation and the result are FedAvg's.
"""

from __future__ import annotations

import json

from flwr.app import ArrayRecord, ConfigRecord, Context, MetricRecord
from flwr.serverapp import Grid, ServerApp

from flower_secagg import task
from privagg.flower import SecureFedAvg

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    config = context.run_config
    mode = str(config["privagg-mode"])
    options = json.loads(str(config["privagg-options"]))
    nodes = int(config["min-nodes"])

    strategy = SecureFedAvg(mode, options, stage_timeout=float(config["stage-timeout"]),
                            train_timeout=float(config["train-timeout"]), min_available_nodes=nodes,
                            min_train_nodes=nodes, fraction_evaluate=float(config["fraction-evaluate"]),
                            min_evaluate_nodes=nodes)
    x_test, y_test = task.load_test()

    def centralised(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        model = task.make_model()
        model.load_state_dict(arrays.to_torch_state_dict())
        loss, accuracy = task.evaluate(model, x_test, y_test)
        return MetricRecord({"test-loss": loss, "test-accuracy": accuracy})

    result = strategy.start(grid, ArrayRecord(task.make_model().state_dict()), num_rounds=int(config["num-rounds"]),
                            train_config=ConfigRecord({"lr": float(config["lr"])}), evaluate_fn=centralised)
    for server_round, outcome in sorted(strategy.outcomes.items()):
        print(f"round {server_round}: {mode} summed {len(outcome.included)} nodes, dropped {list(outcome.dropped)}, "
              f"facts {dict(outcome.metrics())}")
    for server_round, reason in sorted(strategy.aborted.items()):
        print(f"round {server_round}: aborted ({reason}); the model stayed as it was")
    final = result.evaluate_metrics_serverapp.get(int(config["num-rounds"]))
    print(f"final centralised evaluation: {dict(final) if final else None}")
