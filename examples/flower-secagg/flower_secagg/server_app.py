"""ServerApp: FedAvg, with its aggregation step switched to privagg in one line.

``SecureFedAvg(mode, options, ...)`` instead of ``FedAvg(...)``: every training round runs the
run config's privagg mode (``secagg+dp`` by default: SecAgg+ with the distributed discrete
Gaussian, so the server only ever sees a noisy sum; ``ckks`` with ``--run-config ckks.toml``)
as one Flower message exchange per protocol stage. Evaluation and the result are FedAvg's.
With ``privagg-roster`` set (a roster file), nodes take part under the roster ids they prove,
which active security (``privagg-options = '{"security": "active"}'``) needs.
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
                            min_evaluate_nodes=nodes, roster=str(config.get("privagg-roster", "")) or None)
    x_test, y_test = task.load_test()
    accuracy: dict[int, float] = {}

    def centralised(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        model = task.make_model()
        model.load_state_dict(arrays.to_torch_state_dict())
        loss, accuracy[server_round] = task.evaluate(model, x_test, y_test)
        return MetricRecord({"test-loss": loss, "test-accuracy": accuracy[server_round]})

    strategy.start(grid, ArrayRecord(task.make_model(seed=None).state_dict()), num_rounds=int(config["num-rounds"]),
                   train_config=ConfigRecord({"lr": float(config["lr"])}), evaluate_fn=centralised)
    print(f"privagg mode {mode} {options}; test accuracy before training: {accuracy.get(0, float('nan')):.3f}")
    for server_round in range(1, int(config["num-rounds"]) + 1):
        outcome = strategy.outcomes.get(server_round)
        if outcome is None:
            print(f"round {server_round}: aborted ({strategy.aborted.get(server_round)}); the model stayed as it was")
            continue
        facts = outcome.metrics()
        epsilon = f", epsilon {facts['privagg-epsilon']:.1f}" if "privagg-epsilon" in facts else ""
        print(f"round {server_round}: summed {len(outcome.included)} nodes (dropped {list(outcome.dropped)}), "
              f"test accuracy {accuracy.get(server_round, float('nan')):.3f}{epsilon}")
