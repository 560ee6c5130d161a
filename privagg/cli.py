"""The ``privagg`` command line.

Exit codes: 0 success; 2 bad arguments or configuration (one line on stderr);
1 when a round aborts (its reason on stderr) or another privagg error occurs.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
import numpy as np

from privagg._version import __version__
from privagg.encoding.modular import sum_mod
from privagg.interface import Aggregator
from privagg.errors import (
    AggregationAborted,
    ConfigurationError,
    EncodingOverflow,
    InsecureParameters,
    PrivaggError,
)
from privagg.registry import available_modes, make_aggregator
from privagg.simulate import client_seeds, simulate as run_simulation

__all__ = ["cli", "main", "run", "parse_options", "build_aggregator", "simulate_report"]


def parse_options(pairs: Sequence[str]) -> dict[str, Any]:
    """``["threshold=7", "clip=0.5", "rounding=stochastic"]`` -> typed keyword options."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.isidentifier():
            raise ConfigurationError(f"option {pair!r} is not KEY=VALUE")
        value: Any = raw
        for convert in (int, float):
            try:
                value = convert(raw)
                break
            except ValueError:
                continue
        if raw.lower() in ("true", "false"):
            value = raw.lower() == "true"
        options[key] = value
    return options


def build_aggregator(mode: str, options: dict[str, Any], dropout_stage: str | None = None,
                     hints: dict[str, Any] | None = None) -> Aggregator:
    """The aggregator of ``mode``, checked against ``--dropout-stage`` before anything runs."""
    aggregator = make_aggregator(mode, hints=hints, **options)
    if dropout_stage is not None and dropout_stage not in aggregator.stages:
        raise ConfigurationError(
            f"unknown --dropout-stage {dropout_stage!r} for mode {mode!r}; stages: {list(aggregator.stages)}"
        )
    return aggregator


def simulate_report(mode: str, aggregator: Aggregator, *, clients: int, params: int, dropout: float,
                    seed: int | None, dropout_stage: str | None = None, round_id: int = 0,
                    on_stage: Any = None) -> dict[str, Any]:
    """Run one simulated round and return the JSON contract of ``privagg simulate``."""
    stages = aggregator.stages
    rng = np.random.default_rng(seed)
    # Inputs inside the encoding's range (and no wider than [-1, 1]: DP modes clip by norm).
    clip = min(1.0, aggregator.encoding.clip) if aggregator.encoding is not None else 1.0
    updates = rng.uniform(-clip, clip, size=(clients, params)).astype(np.float32)
    n_drop = int(round(dropout * clients))
    dropped_ids = sorted(int(i) for i in rng.choice(clients, size=n_drop, replace=False))
    dropouts = {cid: dropout_stage or str(rng.choice(list(stages))) for cid in dropped_ids}

    start = time.perf_counter()
    result = run_simulation(aggregator, list(updates), dropouts=dropouts, seed=seed, round_id=round_id,
                            on_stage=on_stage)
    seconds = time.perf_counter() - start

    included = list(result.included)
    reference = updates[included].astype(np.float64).sum(axis=0) if included else np.zeros(params)
    exact = False
    encoding = aggregator.encoding
    if result.encoded is not None and encoding is not None:
        seeds = client_seeds(seed, list(range(clients)))
        expected = sum_mod([encoding.encode(updates[i], seed=seeds[i]) for i in included], encoding.bits, params)
        exact = bool(np.array_equal(result.encoded, expected))
    report: dict[str, Any] = {
        "mode": mode,
        "clients": clients,
        "params": params,
        "dropout": dropout,
        "included": included,
        "dropped": list(result.dropped),
        "exact": exact,
        "max_abs_error": float(np.max(np.abs(result.aggregate - reference))) if params else 0.0,
        "seconds": seconds,
        "bytes_up": result.traffic.bytes_up,
        "bytes_down": result.traffic.bytes_down,
    }
    report.update({k: v for k, v in result.info.items() if k not in report})
    return report


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="privagg")
def cli() -> None:
    """Privacy-preserving aggregation for federated learning."""


@cli.command("modes")
@click.option("--format", "fmt", type=click.Choice(["names", "json"]), default="names")
def modes_command(fmt: str) -> None:
    """List the registered aggregation modes."""
    names = available_modes()
    click.echo(json.dumps(names) if fmt == "json" else "\n".join(names))


def _resolve_modes(spec: str) -> list[str]:
    names = available_modes() if spec == "all" else [m.strip() for m in spec.split(",") if m.strip()]
    if not names:
        raise ConfigurationError("--mode names no mode")
    return names


@cli.command("simulate")
@click.option("--mode", default="plain", show_default=True, help="A mode, a comma-separated list, or 'all'.")
@click.option("--clients", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--params", type=click.IntRange(min=1), default=10_000, show_default=True)
@click.option("--dropout", type=click.FloatRange(0.0, 1.0), default=0.0, show_default=True,
              help="Fraction of clients that drop out.")
@click.option("--dropout-stage", default=None,
              help="Stage at which they stop answering (default: a random stage per client).")
@click.option("--seed", type=int, default=None, help="Seed for the inputs, the dropouts and non-secret randomness.")
@click.option("--round-id", type=click.IntRange(0, 2**64 - 1), default=0, show_default=True)
@click.option("--threshold", type=click.IntRange(min=1), default=None, help="Secret-sharing threshold (secagg modes).")
@click.option("--neighbours", default=None, help="Neighbours per client: an integer, 'auto' or 'all' (secagg+).")
@click.option("--security", type=click.Choice(["semi-honest", "active"]), default=None,
              help="Security level (secagg modes).")
@click.option("-o", "--option", "options", multiple=True, metavar="KEY=VALUE", help="Any other option for the mode.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def simulate_command(mode: str, clients: int, params: int, dropout: float, dropout_stage: str | None,
                     seed: int | None, round_id: int, threshold: int | None, neighbours: str | None,
                     security: str | None, options: tuple[str, ...], fmt: str) -> None:
    """Simulate one aggregation round in-process and check it against the plaintext sum."""
    names = _resolve_modes(mode)
    opts = parse_options(options)
    named = {"threshold": threshold, "neighbours": parse_options([f"neighbours={neighbours}"])["neighbours"]
             if neighbours is not None else None, "security": security}
    opts.update({k: v for k, v in named.items() if v is not None})
    # Build every aggregator first, so a bad option fails before any round starts.
    # The dropout rate is a fact of this simulation too: SecAgg+ sizes its graph for it.
    hints = {"clients": clients, "dimension": params, "dropout_fraction": dropout}
    aggregators = {name: build_aggregator(name, dict(opts), dropout_stage, hints) for name in names}
    common: dict[str, Any] = dict(clients=clients, params=params, dropout=dropout, seed=seed,
                                  dropout_stage=dropout_stage, round_id=round_id)
    reports = []
    if fmt == "json":
        reports = [simulate_report(name, agg, **common) for name, agg in aggregators.items()]
        click.echo(json.dumps(reports[0] if len(reports) == 1 else reports, indent=2))
        return
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=_console(stderr=True), transient=True) as progress:
        for name, agg in aggregators.items():
            task = progress.add_task(f"{name}: starting")

            def on_stage(stage: str, task: Any = task, name: str = name) -> None:
                progress.update(task, description=f"{name}: {stage}")

            reports.append(simulate_report(name, agg, on_stage=on_stage, **common))
            progress.remove_task(task)
    _print_table(reports)


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    console = Console(stderr=stderr)
    # Piped output (make demo, CI logs) would otherwise be squeezed into 80 columns.
    return console if console.is_terminal else Console(stderr=stderr, width=160)


@cli.command("bench")
@click.argument("mode")
@click.option("--clients", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--params", type=click.IntRange(min=1), default=100_000, show_default=True)
@click.option("--dropout", type=click.FloatRange(0.0, 1.0, max_open=True), default=0.1, show_default=True)
@click.option("--threshold", type=click.IntRange(min=1), default=None)
@click.option("--neighbours", default=None, help="An integer, 'auto' or 'all'.")
@click.option("--security", type=click.Choice(["semi-honest", "active"]), default="semi-honest", show_default=True)
@click.option("--preset", default=None, help="Parameter preset (ckks).")
@click.option("--key-holder", default=None, help="Who holds the secret key: clients or decryptor (ckks).")
@click.option("-o", "--option", "options", multiple=True, metavar="KEY=VALUE", help="Any other option.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def bench_command(mode: str, clients: int, params: int, dropout: float, threshold: int | None,
                  neighbours: str | None, security: str, preset: str | None, key_holder: str | None,
                  options: tuple[str, ...], fmt: str) -> None:
    """Time one round of MODE's protocol per party (modes that register a benchmark)."""
    from importlib.metadata import entry_points

    targets = {ep.name: ep for ep in entry_points(group="privagg.bench")}
    if mode not in targets:
        raise ConfigurationError(f"no benchmark for mode {mode!r}; available: {', '.join(sorted(targets)) or 'none'}")
    opts = parse_options(options)
    opts.update({k: v for k, v in {"threshold": threshold, "security": security, "preset": preset,
                                   "key_holder": key_holder}.items() if v is not None})
    if neighbours is not None:
        opts["neighbours"] = parse_options([f"neighbours={neighbours}"])["neighbours"]
    run_bench = targets[mode].load()
    report = {k: v for k, v in run_bench(clients=clients, params=params, dropout=dropout, **opts).items()
              if not isinstance(v, (list, np.ndarray))}
    _echo_result(report, fmt, f"privagg bench {mode}", column="measure", digits=4)


@cli.command("audit")
@click.option("--modes", default=None, help="Comma-separated modes (default: every registered mode).")
@click.option("--attacks", "attack_names", default=None, help="Comma-separated attacks (default: all).")
@click.option("--dataset", default="digits", show_default=True, help="digits, breast_cancer or mnist5k.")
@click.option("--clients", type=click.IntRange(min=2), default=None, help="Clients per federation (default 5).")
@click.option("--rounds", type=click.IntRange(min=1), default=None, help="FedAvg rounds (default 30; 10 quick).")
@click.option("--quick", is_flag=True, help="Small budgets: minutes, not hours.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Report folder.")
@click.option("-o", "--option", "options", multiple=True, metavar="MODE:KEY=VALUE",
              help="An option for one mode, e.g. -o secagg+dp:noise_multiplier=0.5")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def audit_command(modes: str | None, attack_names: str | None, dataset: str, clients: int | None,
                  rounds: int | None, quick: bool, out: Path, options: tuple[str, ...], fmt: str) -> None:
    """Train with each mode, run each attack under each threat model, write the report."""
    from attacks.audit import malicious_table, run_audit, summary_table  # lazy: needs the attacks extra

    def names(text: str | None) -> list[str] | None:
        return [n.strip() for n in text.split(",") if n.strip()] if text else None

    mode_options: dict[str, dict[str, Any]] = {}
    for item in options:
        mode, sep, pair = item.partition(":")
        if not sep or not mode:
            raise ConfigurationError(f"option {item!r} is not MODE:KEY=VALUE")
        mode_options.setdefault(mode, {}).update(parse_options([pair]))
    report = run_audit(modes=names(modes), attacks=names(attack_names), dataset=dataset, clients=clients,
                       rounds=rounds, quick=quick, out=out, progress=fmt == "table", mode_options=mode_options)
    if fmt == "json":
        click.echo(json.dumps(report, indent=2, default=str))
        return
    console = _console()
    console.print(summary_table(report))
    table = malicious_table(report)
    if table is not None:
        console.print(table)
    console.print(f"report: {out / 'report.html'} (also report.md, report.json)")


@cli.group("dp")
def dp_group() -> None:
    """Differential-privacy accounting: epsilon of a training run, noise for a target epsilon."""


def _accounting_options(fn: Any) -> Any:
    for option in reversed([
        click.option("--sampling-rate", type=float, required=True, help="Poisson sampling rate q, in (0, 1]."),
        click.option("--steps", type=int, required=True, help="Number of (sampled) rounds T."),
        click.option("--delta", type=float, required=True, help="Target delta, in (0, 1)."),
        click.option("--accountant", type=click.Choice(["rdp", "pld"]), default="rdp", show_default=True),
        click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True),
    ]):
        fn = option(fn)
    return fn


def _echo_result(result: dict[str, Any], fmt: str, title: str, *, column: str = "quantity",
                 digits: int = 6) -> None:
    """``result`` as JSON, or as a two-column table (floats to ``digits`` significant digits)."""
    if fmt == "json":
        click.echo(json.dumps(result, indent=2))
        return
    from rich.table import Table

    table = Table(title=title)
    table.add_column(column)
    table.add_column("value", justify="right")
    for key, value in result.items():
        table.add_row(key, f"{value:.{digits}g}" if isinstance(value, float) else str(value))
    _console().print(table)


@dp_group.command("epsilon")
@click.option("--noise-multiplier", type=float, required=True, help="Noise standard deviation / L2 sensitivity.")
@_accounting_options
def dp_epsilon_command(noise_multiplier: float, sampling_rate: float, steps: int, delta: float, accountant: str,
                       fmt: str) -> None:
    """Epsilon spent by STEPS Poisson-sampled Gaussian mechanisms."""
    from dp.calibration import epsilon_and_order  # lazy: privagg never imports dp eagerly

    eps, order = epsilon_and_order(sampling_rate=sampling_rate, noise_multiplier=noise_multiplier, steps=steps,
                                   delta=delta, accountant=accountant)
    _echo_result({"epsilon": eps, "accountant": accountant, "order": order}, fmt, "privagg dp epsilon")


@dp_group.command("calibrate")
@click.option("--target-epsilon", type=float, required=True)
@_accounting_options
def dp_calibrate_command(target_epsilon: float, sampling_rate: float, steps: int, delta: float, accountant: str,
                         fmt: str) -> None:
    """The smallest noise multiplier whose epsilon is at most TARGET_EPSILON."""
    from dp.calibration import calibrate, epsilon

    sigma = calibrate(target_epsilon=target_epsilon, sampling_rate=sampling_rate, steps=steps, delta=delta,
                      accountant=accountant)
    eps = epsilon(sampling_rate=sampling_rate, noise_multiplier=sigma, steps=steps, delta=delta, accountant=accountant)
    _echo_result({"noise_multiplier": sigma, "epsilon": eps, "accountant": accountant}, fmt, "privagg dp calibrate")


def _print_table(reports: list[dict[str, Any]]) -> None:
    from rich.table import Table

    table = Table(title="privagg simulate")
    for column in ("mode", "clients", "params", "included", "dropped", "exact", "max_abs_error",
                   "seconds", "bytes_up", "bytes_down"):
        table.add_column(column, justify="left" if column == "mode" else "right")
    with_epsilon = any("epsilon" in r for r in reports)
    if with_epsilon:
        table.add_column("epsilon", justify="right")
    for r in reports:
        row = [r["mode"], str(r["clients"]), str(r["params"]), str(len(r["included"])),
               str(len(r["dropped"])), "yes" if r["exact"] else "no", f"{r['max_abs_error']:.3g}",
               f"{r['seconds']:.3f}", f"{r['bytes_up']:,}", f"{r['bytes_down']:,}"]
        if with_epsilon:
            row.append(f"{r['epsilon']:.3g}" if "epsilon" in r else "-")
        table.add_row(*row)
    _console().print(table)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code (see the module docstring)."""
    try:
        rv = cli.main(args=list(argv) if argv is not None else None, prog_name="privagg", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.UsageError as exc:
        click.echo(f"privagg: error: {exc.format_message()}", err=True)
        return 2
    except click.Abort:
        click.echo("privagg: interrupted", err=True)
        return 130
    except (ConfigurationError, EncodingOverflow, InsecureParameters) as exc:
        click.echo(f"privagg: error: {exc}", err=True)
        return 2
    except AggregationAborted as exc:
        click.echo(f"privagg: aborted: {exc}", err=True)
        return 1
    except PrivaggError as exc:
        click.echo(f"privagg: {type(exc).__name__}: {exc}", err=True)
        return 1
    return rv if isinstance(rv, int) else 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
