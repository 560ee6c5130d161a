"""ClientApp: an ordinary Message-API train/evaluate, with privagg's Mod in front.

The only privagg line is ``mods=[PrivaggMod()]``: it reads the mode this client accepts from
the run config (``privagg-mode``, ``privagg-options``), refuses anything else (including a
plain FedAvg ``train`` message that would take the update in the clear), calls ``train``
once per round and aggregates the difference between the model it returns and the model it
received.
"""

from __future__ import annotations

from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from flower_secagg import task
from privagg.flower import PrivaggMod

app = ClientApp(mods=[PrivaggMod()])


def _data(context: Context):
    return task.load_partition(int(context.node_config["partition-id"]), int(context.node_config["num-partitions"]))


@app.train()
def train(msg: Message, context: Context) -> Message:
    model = task.make_model()
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    x, y = _data(context)
    config = context.run_config
    loss = task.train(model, x, y, epochs=int(config["local-epochs"]), lr=float(config["lr"]),
                      batch_size=int(config["batch-size"]))
    metrics = MetricRecord({"train-loss": loss, "num-examples": len(x)})
    return Message(RecordDict({"arrays": ArrayRecord(model.state_dict()), "metrics": metrics}), reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    model = task.make_model()
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    x, y = _data(context)
    loss, accuracy = task.evaluate(model, x, y)
    metrics = MetricRecord({"eval-loss": loss, "eval-accuracy": accuracy, "num-examples": len(x)})
    return Message(RecordDict({"metrics": metrics}), reply_to=msg)
