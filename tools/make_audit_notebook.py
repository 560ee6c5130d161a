"""Generate ``notebooks/audit.ipynb`` (issue 7, section 7), execute it and save it with its outputs.

Run from the repository root: ``python tools/make_audit_notebook.py``. The notebook is an
auditor's walk through one mode (secure aggregation) and one attack (LiRA), then the whole
audit in one call; its settings are small so that CI executes it in well under a minute.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import nbformat as nbf
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "notebooks" / "audit.ipynb"


def build() -> nbf.NotebookNode:
    nb = nbf.v4.new_notebook()
    cells = []

    def md(text: str) -> None:
        cells.append(nbf.v4.new_markdown_cell(text))

    def code(text: str) -> None:
        cells.append(nbf.v4.new_code_cell(text))

    md("""# Auditing secure aggregation: what does the server learn?

An auditor's walk through **one mode** (`secagg`, Bonawitz et al. secure aggregation) and **one
attack** (LiRA membership inference, Carlini et al. 2022), on real protocol rounds: every
FedAvg round below runs the full SecAgg protocol among five clients, and every attack starts
from what the protocol's server *view* discloses to a given adversary. At the end, the same
in one call for several modes and attacks, as `privagg audit` does.

Settings are small (digits, 5 clients, 10 rounds, 8 shadow models) so that the notebook runs
in CI; `privagg audit` without `--quick` uses the full budgets.""")
    code("""import copy

import numpy as np
import torch
from IPython.display import Image, display

import privagg
from attacks import (FedAvgConfig, disclosed_models, disclosure, load_dataset, make_model, membership_split,
                     mode_factory, model_dimension, partition, train_fedavg)
from attacks.membership import fedavg_trainer, lira, loss_attack, membership_metrics, train_shadow_models
from attacks.plots import reconstruction_grid, roc_plot
from attacks.training import load_vector, model_vector

torch.set_num_threads(1)
digits = load_dataset("digits")
split = membership_split(digits, pool_size=600, test_size=300, seed=0)   # 300 members, 300 non-members
parts = partition(split.member_indices, 5, seed=0)                       # 60 examples per client


def new_model(seed=0):
    return make_model("mlp", digits, seed=seed, hidden=(64,))


build = mode_factory("secagg", clients=5, dimension=model_dimension(new_model()))
config = FedAvgConfig(rounds=10, local_epochs=3, batch_size=16, lr=0.1, seed=0, keep_updates=True, progress=False)
aggregator = build()
run = train_fedavg(new_model(), digits, parts, aggregator, config, test_indices=split.test)
print(aggregator)
print(f"test accuracy after {len(run.rounds)} SecAgg rounds: {run.accuracy:.3f}")""")
    md("""## 1. What each adversary can compute

The mode itself answers this (`Aggregator.disclose`): the attacks never special-case a mode.
Under secure aggregation the honest-but-curious server learns the sum of the survivors'
updates; a server colluding with clients 3 and 4 subtracts their inputs and gets the sum of
the three honest clients; an outsider gets the released model. From a sum, the adversary
rebuilds a *model* (the global model plus the mean update), which is what membership
inference attacks.""")
    code("""last = run.rounds[-1]
threats = {
    "honest-but-curious server": privagg.HONEST_BUT_CURIOUS,
    "server + clients 3, 4": privagg.colluding([3, 4], {c: last.sent[c] for c in (3, 4)}),
    "outsider": privagg.OUTSIDER,
}
for label, threat in threats.items():
    found = disclosure(aggregator, last, threat)
    models = disclosed_models(aggregator, last, threat)
    print(f"{label:28s} {found.summary}")
    print(f"{'':28s} -> models it can rebuild, by the clients they were trained on: {sorted(models)}")""")
    md("""## 2. LiRA against the model the server rebuilds

LiRA compares each example's scaled logit under the target model with its distribution under
*shadow models* trained with and without it. The shadows are trained exactly as the target
was, FedAvg through a fresh SecAgg instance each, on random halves of the audit pool.""")
    code("""shadows = train_shadow_models(fedavg_trainer(digits, new_model, 5, config, build), split.pool, 8, seed=1,
                              progress=False)
server_model = load_vector(copy.deepcopy(run.model), disclosed_models(aggregator, last, privagg.HONEST_BUT_CURIOUS)
                           [last.result.included], run.spec)
x, y = digits.subset(split.pool)
results = {
    "LiRA (online, fixed variance)": membership_metrics(lira(server_model, shadows, digits), split.members),
    "LOSS (baseline)": membership_metrics(loss_attack(server_model, x, y), split.members),
}
for name, m in results.items():
    print(f"{name:30s} AUC {m.auc:.3f}   TPR@1% FPR {m.tpr_at_1pct_fpr:.3f} "
          f"({m.false_positives_at_1pct} false positives allowed among {m.n_nonmembers} non-members)   "
          f"TPR@0.1% FPR {m.tpr_at_0_1pct_fpr:.3f} ({m.false_positives_at_0_1pct} allowed: "
          f"{'resolved' if m.resolved_0_1pct else 'this is the TPR at zero false positives'})")""")
    md("""The ROC curve on **log-log axes**: the low false-positive corner, where an attacker is
confident about a few members, is what matters (Carlini et al. 2022), and it is invisible on
linear axes. A point at FPR 0 is drawn on the left edge.""")
    code("""display(Image(roc_plot(results, title="secagg, honest-but-curious server")))""")
    md("""## 3. The same attack without secure aggregation

Under `plain` the server holds every client's update, hence every client's *local* model of
the last round as well as the global one. The audit scores each example under every model the
adversary holds and keeps its highest score (it does not know which client holds an example).
Whether that exposes members more than the averaged model depends on how far local training
drifts from the global model; the numbers below measure it for this setting. Secure
aggregation sums exactly, so the plain run trains the very same global model, and the same
shadows serve both.""")
    code("""plain = privagg.make_aggregator("plain")
plain_run = train_fedavg(new_model(), digits, parts, plain, config, test_indices=split.test)
server_models = [load_vector(copy.deepcopy(plain_run.model), v, plain_run.spec)
                 for v in disclosed_models(plain, plain_run.rounds[-1], privagg.HONEST_BUT_CURIOUS).values()]
best = np.max([lira(m, shadows, digits) for m in server_models], axis=0)
results["LiRA, plain server (all its models)"] = membership_metrics(best, split.members)
same = np.array_equal(model_vector(plain_run.model)[0], model_vector(run.model)[0])
print(f"plain trained the same final model as secagg, bit for bit: {same}")
print({k: round(v.auc, 3) for k, v in results.items()})
display(Image(roc_plot(results, title="the secagg server against the plain server")))""")
    md("""## 4. Gradient inversion on the same two views

One FedSGD round of ten one-image clients. Under `plain` the server inverts one client's
gradient (iDLG: essentially exact); under `secagg` it only has the sum of ten, and one image
inverted from it is a blur of the batch.""")
    code("""from attacks.inversion import InversionConfig, fedsgd_round, invert_round

images = [np.array([i]) for i in split.member_indices[:10]]
grid_truth, grid_rec, titles = [], [], []
for name in ("plain", "secagg"):
    agg = privagg.make_aggregator(name)
    one_round = fedsgd_round(new_model(), digits, images, agg)
    outcome = invert_round(agg, one_round, privagg.HONEST_BUT_CURIOUS, digits, method="idlg", count=1,
                           config=InversionConfig(iterations=200))
    i, j = outcome.metrics.pairs[0]
    grid_truth.append(outcome.truth_inputs[j])
    grid_rec.append(outcome.reconstruction.inputs[i])
    titles.append(f"{name}: {outcome.metrics.psnr_db:.0f} dB")
    print(f"{name:7s} target: {outcome.target.summary}")
display(Image(reconstruction_grid(torch.stack(grid_truth), torch.stack(grid_rec), titles=titles)))""")
    md("""## 5. The whole audit in one call

`attacks.audit.run_audit` is what `privagg audit` runs: every mode (here two), every attack
(here LOSS, LiRA and iDLG) under every threat model, the malicious-server attacks on secure
aggregation, and `report.json`, `report.html` (self-contained) and `report.md` in a directory.
The settings here are smaller still than `--quick`.""")
    code("""import tempfile
from pathlib import Path

from rich.console import Console

from attacks.audit import AuditSettings, malicious_table, run_audit, summary_table

out = Path(tempfile.mkdtemp())
small = AuditSettings(dataset="digits", clients=5, rounds=5, pool_size=300, shadows=4, colluders=2,
                      iterations=(("dlg", 50), ("idlg", 100), ("ig", 100)), malicious_clients=6)
report = run_audit(modes=["plain", "secagg"], attacks=["loss", "lira", "idlg"], settings=small, out=out)
console = Console(width=150)
console.print(summary_table(report))
console.print(malicious_table(report))
print(sorted(p.name for p in out.iterdir()))""")
    md("""Reading the section-5 table: a server that deviates from the protocol gets much more than
the sum. `security="active"` catches a model sent to one client only (signatures bind the model
digest) and a forged survivor split (the consistency check), unless enough clients collude with
the server to sign both survivor sets; it cannot see trap weights sent to everyone, which
recover single images from the aggregate itself.""")
    nb["cells"] = cells
    nb["metadata"]["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb["metadata"]["language_info"] = {"name": "python"}
    return nb


def main() -> int:
    nb = build()
    started = time.perf_counter()
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    seconds = time.perf_counter() - started
    nbf.write(nb, TARGET)
    print(f"wrote {TARGET.relative_to(ROOT)} (executed in {seconds:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
