"""Writes notebooks/epsilon_tradeoff.ipynb and executes it (so the saved copy shows outputs)."""

import nbformat as nbf
from nbclient import NotebookClient

nb = nbf.v4.new_notebook()
cells = []


def md(text):
    cells.append(nbf.v4.new_markdown_cell(text))


def code(text):
    cells.append(nbf.v4.new_code_cell(text))


md("""# Epsilon, noise and accuracy

A researcher's tour of `dp`: how epsilon grows with rounds and shrinks with noise, how the RDP
and PLD accountants compare (PLD is tighter), how to calibrate the noise for a target epsilon,
and what that noise costs in accuracy for a small model trained by FedAvg on scikit-learn's
digits with central DP.""")
code("""import time

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

import dp

torch.set_num_threads(1)
DELTA = 1e-5""")
md("## Epsilon against noise and rounds, RDP vs PLD (sampling rate 0.01)")
code("""sigmas = [0.6, 0.8, 1.0, 1.5, 2.0, 3.0]
rounds = [10, 100, 1000]
fig, ax = plt.subplots(figsize=(6, 4))
for steps, colour in zip(rounds, ["C0", "C1", "C2"]):
    rdp = [dp.epsilon(0.01, s, steps, DELTA, accountant="rdp") for s in sigmas]
    pld = [dp.epsilon(0.01, s, steps, DELTA, accountant="pld") for s in sigmas]
    ax.plot(sigmas, rdp, "-o", color=colour, label=f"RDP, T={steps}")
    ax.plot(sigmas, pld, "--s", color=colour, label=f"PLD, T={steps}")
    assert all(p <= r * (1 + 1e-6) for p, r in zip(pld, rdp))   # PLD is never looser here
ax.set_xlabel("noise multiplier")
ax.set_ylabel(f"epsilon at delta={DELTA:g}")
ax.set_yscale("log")
ax.legend(fontsize=8)
ax.grid(alpha=0.3)
plt.show()""")
md("## Calibration: the smallest noise for a target epsilon")
code("""for target in (1.0, 3.0, 8.0):
    start = time.perf_counter()
    sigma = dp.calibrate(target, sampling_rate=0.01, steps=1000, delta=DELTA)
    ms = 1000 * (time.perf_counter() - start)
    eps = dp.epsilon(0.01, sigma, 1000, DELTA)
    assert eps <= target
    print(f"target {target:>4}: noise multiplier {sigma:.4f} -> epsilon {eps:.4f} ({ms:.0f} ms)")""")
md("""## Accuracy under central DP on digits

FedAvg with 10 clients, every client every round; each client's update is clipped to L2 norm
1 and the server adds Gaussian noise `z` times that to the sum (mode `plain+dp`; `secagg+dp`
would add the same noise distributed over the clients, under secure aggregation).""")
code("""from attacks import FedAvgConfig, load_dataset, make_mode, make_model, membership_split, model_dimension
from attacks import partition, train_fedavg

digits = load_dataset("digits")
split = membership_split(digits, test_size=0.25, seed=0)
parts = partition(split.member_indices, 10, seed=0)
config = FedAvgConfig(rounds=15, local_epochs=1, lr=0.2, clip_norm=1.0, seed=0, progress=False)
results = {}
for z in (None, 0.3, 1.0, 3.0):
    model = make_model("mlp", digits, seed=0)
    if z is None:
        aggregator = make_mode("plain", clients=10, dimension=model_dimension(model))
    else:
        aggregator = make_mode("plain+dp", clients=10, dimension=model_dimension(model), noise_multiplier=z)
    run = train_fedavg(model, digits, parts, aggregator, config, test_indices=split.test)
    results[z] = (run.accuracy, run.epsilon)
    print(f"noise {str(z):>4}: accuracy {run.accuracy:.3f}, epsilon {run.epsilon if run.epsilon else 'none'}")""")
code("""labels = ["no DP"] + [f"z={z}" for z in (0.3, 1.0, 3.0)]
acc = [results[z][0] for z in (None, 0.3, 1.0, 3.0)]
eps = [float("nan")] + [results[z][1] for z in (0.3, 1.0, 3.0)]
fig, ax1 = plt.subplots(figsize=(6, 3.5))
ax1.bar(labels, acc, color="C0", alpha=0.7)
ax1.set_ylabel("test accuracy")
ax1.set_ylim(0, 1)
ax2 = ax1.twinx()
ax2.plot(labels, eps, "o-", color="C3")
ax2.set_ylabel("epsilon after 15 rounds", color="C3")
ax2.set_yscale("log")
plt.show()
assert results[None][0] > 0.8 and results[3.0][1] < results[0.3][1]""")
nb["cells"] = cells
nb["metadata"]["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
NotebookClient(nb, timeout=600, kernel_name="python3").execute()
nbf.write(nb, "notebooks/epsilon_tradeoff.ipynb")
