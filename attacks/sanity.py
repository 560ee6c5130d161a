"""Re-measure the reference figures of issue 7 on digits: ``python -m attacks.sanity``.

The issue quotes figures to sanity-check the attacks against (iDLG on one client's gradient
about 100 dB; one image from a 10-client aggregate about 4 dB; DLG under gradient noise 0.1
about 14 dB; LiRA online with 16 shadows on an overfit MLP AUC about 0.59, TPR at 1% FPR about
3%; LOSS AUC about 0.53). This command measures ours, with every protocol round real, and
prints them (``--json`` for machines). It is a check for developers, not the audit: the audit
runs every mode and threat model and writes the report.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import numpy as np
import torch

import privagg
from attacks.data import load_dataset, membership_split, partition
from attacks.inversion.quality import psnr
from attacks.inversion.reconstruct import InversionConfig
from attacks.inversion.scenario import fedsgd_round, invert_round
from attacks.membership.lira import lira
from attacks.membership.loss_attack import loss_attack
from attacks.membership.metrics import membership_metrics
from attacks.membership.rmia import rmia
from attacks.membership.shadows import fedavg_trainer, train_shadow_models
from attacks.models import make_model
from attacks.training import FedAvgConfig, train_fedavg

__all__ = ["inversion_figures", "membership_figures", "main"]


def inversion_figures(trials: int = 5, seed: int = 0) -> dict[str, Any]:
    """Mean (and min / max) over ``trials`` draws of ten one-image clients on an untrained MLP."""
    digits = load_dataset("digits")
    rows: dict[str, list[float]] = {}

    def add(key: str, value: float) -> None:
        rows.setdefault(key, []).append(value)

    for trial in range(trials):
        images = np.random.default_rng(seed + trial).choice(len(digits), 10, replace=False)
        parts = [np.array([i]) for i in images]
        model = make_model("mlp", digits, seed=seed + trial)
        plain, secure = privagg.make_aggregator("plain"), privagg.make_aggregator("secagg")
        plain_run, secure_run = fedsgd_round(model, digits, parts, plain), fedsgd_round(model, digits, parts, secure)
        threat = privagg.HONEST_BUT_CURIOUS
        add("idlg_one_client_plain", invert_round(plain, plain_run, threat, digits, method="idlg").metrics.psnr_db)
        add("dlg_one_client_plain", invert_round(plain, plain_run, threat, digits, method="dlg",
                                                 config=InversionConfig(restarts=3)).metrics.psnr_db)
        add("dlg_one_client_noise_0.1", invert_round(plain, plain_run, threat, digits, method="dlg", noise_std=0.1,
                                                     config=InversionConfig(restarts=3), seed=trial).metrics.psnr_db)
        for method in ("idlg", "dlg", "ig"):
            outcome = invert_round(secure, secure_run, threat, digits, method=method, count=1)
            assert outcome.metrics is not None and outcome.reconstruction is not None
            add(f"{method}_one_image_from_10_client_aggregate_best_match", outcome.metrics.psnr_db)
            guess = outcome.reconstruction.inputs[0].clamp(0, 1)
            add(f"{method}_one_image_from_10_client_aggregate_mean_over_10",
                float(np.mean([psnr(guess, t, data_range=1.0) for t in outcome.truth_inputs])))
        batch = invert_round(secure, secure_run, threat, digits, method="ig")
        add("ig_all_10_images_from_aggregate_mean_matched", batch.metrics.psnr_db)
    return {key: {"mean": float(np.mean(v)), "min": float(np.min(v)), "max": float(np.max(v))}
            for key, v in rows.items()}


def membership_figures(shadows: int = 16, seed: int = 0, progress: bool | None = None) -> dict[str, Any]:
    """LOSS, LiRA and RMIA against a digits MLP trained by FedAvg (5 clients, plain mode) on half
    of a 1497-example pool, with ``shadows`` shadow models trained the same way."""
    digits = load_dataset("digits")
    split = membership_split(digits, test_size=300, seed=seed)
    config = FedAvgConfig(rounds=30, local_epochs=2, batch_size=16, lr=0.1, seed=seed, progress=progress)

    def factory(s: int) -> torch.nn.Module:
        return make_model("mlp", digits, seed=s, hidden=(256,))

    run = train_fedavg(factory(seed), digits, partition(split.member_indices, 5, seed=seed), privagg.Plain(), config,
                       test_indices=split.test, description="target model")
    trained = train_shadow_models(fedavg_trainer(digits, factory, 5, config), split.pool, shadows, seed=seed + 1,
                                  progress=progress)
    x, y = digits.subset(split.pool)
    scores = {
        "loss": loss_attack(run.model, x, y),
        "lira_online": lira(run.model, trained, digits, online=True),
        "lira_offline": lira(run.model, trained, digits, online=False),
        "lira_online_per_example_variance": lira(run.model, trained, digits, online=True, fixed_variance=False),
        "rmia_online": rmia(run.model, trained, digits, online=True),
        "rmia_offline": rmia(run.model, trained, digits, online=False),
    }
    out: dict[str, Any] = {"test_accuracy": run.accuracy, "shadows": shadows}
    for name, values in scores.items():
        out[name] = membership_metrics(values, split.members).as_dict()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m attacks.sanity", description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5, help="image draws for the inversion figures")
    parser.add_argument("--shadows", type=int, default=16, help="shadow models for LiRA / RMIA")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    started = time.perf_counter()
    figures = {"inversion_psnr_db": inversion_figures(args.trials, args.seed),
               "membership": membership_figures(args.shadows, args.seed)}
    figures["seconds"] = time.perf_counter() - started
    if args.json:
        json.dump(figures, sys.stdout, indent=2)
        print()
        return 0
    print("inversion on digits, untrained MLP, PSNR in dB (mean [min, max] over draws)")
    for key, value in figures["inversion_psnr_db"].items():
        print(f"  {key:58s} {value['mean']:7.1f}  [{value['min']:.1f}, {value['max']:.1f}]")
    member = figures["membership"]
    print(f"membership on digits, FedAvg MLP (test accuracy {member['test_accuracy']:.3f}), "
          f"{member['shadows']} shadows")
    for key, value in member.items():
        if isinstance(value, dict):
            print(f"  {key:34s} AUC {value['auc']:.3f}  TPR@1% {value['tpr_at_1pct_fpr']:.3f} "
                  f"({value['false_positives_at_1pct']} FP of {value['n_nonmembers']})  "
                  f"TPR@0.1% {value['tpr_at_0_1pct_fpr']:.3f} ({value['false_positives_at_0_1pct']} FP)  "
                  f"balanced acc {value['balanced_accuracy']:.3f}")
    print(f"{figures['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
