"""One mode through the whole audit: train, then every attack under every threat model.

1. Build the mode for the round's size (:func:`attacks.modes.mode_factory`) and train the
   target by FedAvg through it, keeping what each client sent (the colluders' inputs).
2. Membership inference on the last round: for each threat model, the models its disclosure
   rebuilds (:mod:`attacks.audit.membership`), scored against shadow models trained through
   fresh instances of the same mode.
3. Inversion on a FedSGD round of one-image clients through a fresh instance of the mode: for
   each threat model, the most useful target its disclosure yields
   (:func:`attacks.adversary.inversion_target`), one image reconstructed from it.

A mode that cannot be built or trained comes back ``failed`` with the error; an attack that
raises is one ``failed`` row. Neither stops the audit: an auditor running every registered
mode wants the report on the others, and the failure in it.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from attacks.adversary import disclosed_models, disclosure
from attacks.audit.experiment import Experiment
from attacks.audit.membership import best_scores, membership_scorers
from attacks.audit.report import result_row
from attacks.audit.settings import INVERSION_ATTACKS, MEMBERSHIP_ATTACKS
from attacks.audit.threats import threat_models, threat_names
from attacks.inversion.reconstruct import InversionConfig
from attacks.inversion.scenario import InversionOutcome, fedsgd_round, invert_round
from attacks.membership.metrics import MembershipMetrics, membership_metrics
from attacks.membership.shadows import ShadowModels, fedavg_trainer, train_shadow_models
from attacks.modes import mode_factory, model_dimension
from attacks.training import FedAvgConfig, RoundRecord, TrainingRun, load_vector, train_fedavg
from privagg import Aggregator

__all__ = ["ModeAudit", "InversionPicture", "audit_mode"]

Log = Callable[[str], None]


@dataclass(frozen=True, eq=False)
class InversionPicture:
    """One reconstruction beside the true image it matched best, for the report's grids."""

    threat: str
    method: str
    truth: torch.Tensor
    reconstruction: torch.Tensor
    psnr_db: float


@dataclass(eq=False)
class ModeAudit:
    """Everything one mode's audit produced: the ``modes`` entry, its ``results`` rows, and the
    material for figures (ROC metrics and reconstructions, not serialised)."""

    name: str
    status: str = "ok"
    error: str | None = None
    accuracy: float | None = None
    epsilon: float | None = None
    delta: float | None = None
    rounds: int = 0
    clients: int = 0
    seconds: float = 0.0
    shadow_seconds: float = 0.0
    stopped: str | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)
    roc: dict[str, dict[str, MembershipMetrics]] = field(default_factory=dict)
    pictures: list[InversionPicture] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        out = {"status": self.status, "accuracy": self.accuracy, "epsilon": self.epsilon, "delta": self.delta,
               "rounds": self.rounds, "clients": self.clients, "seconds": self.seconds,
               "shadow_seconds": self.shadow_seconds, "error": self.error}
        if self.stopped:
            out["stopped"] = self.stopped
        return out


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".strip()


def _last_completed(run: TrainingRun) -> RoundRecord | None:
    for record in reversed(run.rounds):
        if record.result is not None:
            return record
    return None


def _train(audit: ModeAudit, experiment: Experiment, config: FedAvgConfig,
           aggregator: Aggregator) -> TrainingRun | None:
    run = train_fedavg(experiment.model(), experiment.dataset, experiment.partitions, aggregator, config,
                       test_indices=experiment.split.test, description=f"FedAvg [{audit.name}]")
    audit.rounds = sum(r.result is not None for r in run.rounds)
    audit.accuracy = run.accuracy
    audit.epsilon = run.epsilon
    last = _last_completed(run)
    if last is not None and last.result is not None and "delta" in last.result.info:
        audit.delta = float(last.result.info["delta"])
    if run.stopped:
        audit.status, audit.stopped = "stopped", run.stopped
    if last is None:
        audit.status, audit.error = "failed", f"no training round completed ({run.rounds[-1].aborted})"
        return None
    return run


def _membership(audit: ModeAudit, experiment: Experiment, attacks: Sequence[str], run: TrainingRun,
                aggregator: Aggregator, build: Callable[[], Aggregator], config: FedAvgConfig,
                progress: bool) -> None:
    s, dataset, split = experiment.settings, experiment.dataset, experiment.split
    shadows: ShadowModels | None = None
    wanted = list(attacks)
    shadow_error = None
    if any(a != "loss" for a in wanted):
        started = time.perf_counter()
        try:
            trainer = fedavg_trainer(dataset, experiment.model, s.clients, config, build)
            shadows = train_shadow_models(trainer, split.pool, s.shadows, seed=s.seed + 1, progress=progress)
        except Exception as exc:  # reported in the rows; the audit goes on
            shadow_error = f"shadow models: {_describe(exc)}"
        audit.shadow_seconds = time.perf_counter() - started
    last = _last_completed(run)
    assert last is not None
    scorers = membership_scorers(dataset, split.pool, [a for a in wanted if a == "loss" or shadows is not None],
                                 shadows)
    for kind, threat in threat_models(last, s.colluder_ids).items():
        found = disclosure(aggregator, last, threat)
        flat = disclosed_models(aggregator, last, threat)
        keep = ~np.isin(split.pool, np.concatenate(
            [run.partitions[c] for c in threat.colluders if c in run.partitions] or [np.zeros(0, np.int64)]))
        models = [load_vector(copy.deepcopy(run.model), vector, run.spec) for vector in flat.values()]
        individual = sum(len(ids) == 1 for ids in flat)
        described = (f"{len(models)} model(s): {individual} single client's, {len(models) - individual} group's"
                     if models else "no model")
        for attack in wanted:
            common = dict(disclosure=found.summary, models=described)
            if attack not in scorers:
                audit.rows.append(result_row(audit.name, threat.name, kind, attack, None, 0.0, status="failed",
                                             error=shadow_error, **common))
                continue
            if not models:
                audit.rows.append(result_row(audit.name, threat.name, kind, attack, None, 0.0,
                                             status="nothing disclosed", **common))
                continue
            started = time.perf_counter()
            try:
                scores = best_scores(models, scorers[attack])
                metrics = membership_metrics(scores[keep], split.members[keep])
            except Exception as exc:  # one failed row, not a failed audit
                audit.rows.append(result_row(audit.name, threat.name, kind, attack, None,
                                             time.perf_counter() - started, status="failed", error=_describe(exc),
                                             **common))
                continue
            values = metrics.as_dict()
            support = {k: values[k] for k in ("n_members", "n_nonmembers", "false_positives_at_1pct",
                                              "false_positives_at_0_1pct")}
            audit.rows.append(result_row(audit.name, threat.name, kind, attack,
                                         {k: values[k] for k in ("auc", "tpr_at_1pct_fpr", "tpr_at_0_1pct_fpr",
                                                                 "balanced_accuracy")},
                                         time.perf_counter() - started, support=support, **common))
            audit.roc.setdefault(threat.name, {})[attack] = metrics


def _picture(threat: str, method: str, outcome: InversionOutcome) -> InversionPicture | None:
    if outcome.metrics is None or outcome.reconstruction is None or outcome.truth_inputs is None:
        return None
    i, j = outcome.metrics.pairs[0]
    return InversionPicture(threat, method, outcome.truth_inputs[j], outcome.reconstruction.inputs[i],
                            outcome.metrics.per_example_psnr_db[0])


def _inversion(audit: ModeAudit, experiment: Experiment, attacks: Sequence[str],
               build: Callable[[], Aggregator]) -> None:
    s, dataset = experiment.settings, experiment.dataset
    aggregator = build()
    parts = [np.array([i]) for i in experiment.inversion_images]
    run = fedsgd_round(experiment.model(), dataset, parts, aggregator, seed=s.seed, keep_updates=True)
    record = run.rounds[0]
    if record.result is None:
        raise RuntimeError(f"the inversion round did not complete ({record.aborted or run.stopped})")
    for kind, threat in threat_models(record, s.colluder_ids).items():
        for method in attacks:
            started = time.perf_counter()
            try:
                outcome = invert_round(aggregator, run, threat, dataset, method=method,  # type: ignore[arg-type]
                                       count=1, config=InversionConfig(iterations=s.iterations_for(method)),
                                       seed=s.seed)
            except Exception as exc:  # one failed row, not a failed audit
                audit.rows.append(result_row(audit.name, threat.name, kind, method, None,
                                             time.perf_counter() - started, status="failed", error=_describe(exc)))
                continue
            target = {"kind": outcome.target.kind, "clients": len(outcome.target.client_ids),
                      "summary": outcome.target.summary}
            metrics = None if outcome.metrics is None else outcome.metrics.as_dict()
            status = "ok" if metrics is not None else "nothing disclosed"
            audit.rows.append(result_row(audit.name, threat.name, kind, method, metrics,
                                         time.perf_counter() - started, status=status,
                                         disclosure=outcome.target.disclosure.summary, target=target))
            picture = _picture(threat.name, method, outcome)
            if picture is not None:
                audit.pictures.append(picture)


def audit_mode(name: str, experiment: Experiment, attacks: Sequence[str], *, progress: bool = False,
               options: dict[str, Any] | None = None, log: Log | None = None) -> ModeAudit:
    """The whole audit of mode ``name`` (see the module docstring); never raises for the mode's
    own failures, which are reported in the returned value."""
    s = experiment.settings
    audit = ModeAudit(name, clients=s.clients)
    started = time.perf_counter()
    say = log or (lambda _msg: None)
    try:
        dimension = model_dimension(experiment.model())
        build = mode_factory(name, clients=s.clients, dimension=dimension, **(options or {}))
        aggregator = build()
        config = FedAvgConfig(rounds=s.rounds, local_epochs=s.local_epochs, batch_size=s.batch_size, lr=s.lr,
                              seed=s.seed, keep_updates=True, progress=progress)
        run = _train(audit, experiment, config, aggregator)
    except Exception as exc:  # a mode that cannot be built or trained is reported, not fatal
        audit.status, audit.error = "failed", _describe(exc)
        say(f"[{name}] failed: {audit.error}")
        audit.seconds = time.perf_counter() - started
        return audit
    if run is None:
        audit.seconds = time.perf_counter() - started
        return audit
    eps = "" if audit.epsilon is None else f", epsilon {audit.epsilon:.3g}"
    say(f"[{name}] trained {audit.rounds} rounds: test accuracy {audit.accuracy or 0:.3f}{eps}")
    membership = [a for a in attacks if a in MEMBERSHIP_ATTACKS]
    inversion = [a for a in attacks if a in INVERSION_ATTACKS]
    stages: list[tuple[list[str], Callable[[], None]]] = [
        (membership, lambda: _membership(audit, experiment, membership, run, aggregator, build,
                                         dataclasses.replace(config, keep_updates=False, progress=False), progress)),
        (inversion, lambda: _inversion(audit, experiment, inversion, build)),
    ]
    for wanted, stage in stages:
        if not wanted:
            continue
        try:
            stage()
        except Exception as exc:  # e.g. a mode's disclose raising: failed rows, not a failed audit
            say(f"[{name}] {', '.join(wanted)} failed: {_describe(exc)}")
            _fill_failed(audit, wanted, s.colluder_ids, _describe(exc))
    audit.seconds = time.perf_counter() - started
    return audit


def _fill_failed(audit: ModeAudit, attacks: Sequence[str], colluders: Sequence[int], error: str) -> None:
    """A failed row for every (threat model, attack) of ``attacks`` that has no row yet."""
    done = {(r["threat"], r["attack"]) for r in audit.rows}
    for kind, threat_name in threat_names(colluders).items():
        for attack in attacks:
            if (kind, attack) not in done:
                audit.rows.append(result_row(audit.name, threat_name, kind, attack, None, 0.0, status="failed",
                                             error=error))
