"""`joulebench select`: QoE-optimal variant per device (recommendation) or the bandit comparison (--simulate).

Registered in bench/cli.py as `app.command(name="select")(select_command)`; self-contained (its own one-line
error handling), so it works whatever the host app's decorators are.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from bench.select import LEARNERS

ALGO_HELP = "linucb | neuralucb | thompson | egreedy"


def _errors() -> tuple[type[BaseException], ...]:
    from bench.select import SelectError
    from bench.select.qoe import QoEError
    from bench.store import StoreError
    from targets.devices.catalog import CatalogError

    return SelectError, QoEError, StoreError, CatalogError, FileNotFoundError


def select_command(
    run_dirs: Annotated[list[Path], typer.Argument(help="run directories (each holds measurements.parquet)",
                                                   metavar="RUN_DIR...", show_default=False)],
    qoe: Annotated[str | None, typer.Option(
        "--qoe", help="QoE expression over accuracy, latency_ms, energy_mj, power_w, macs_m, macs_dense_m, "
                      "params_m, sparsity, bits and parameters; numbers, + - * / **, comparisons, "
                      "min/max/exp/log/sqrt/abs/clip (default: docs/select.md)")] = None,
    qoe_file: Annotated[Path | None, typer.Option(
        "--qoe-file", help="TOML file: expr = \"...\" and a \\[params] table of numbers")] = None,
    param: Annotated[list[str] | None, typer.Option(
        "--param", "-p", help="NAME=VALUE, a QoE parameter (repeatable): deadline_ms, w_latency, energy_ref_mj, "
                              "w_energy or one of your expression's")] = None,
    algo: Annotated[str, typer.Option(help=ALGO_HELP)] = "linucb",
    simulate: Annotated[int | None, typer.Option(
        "--simulate", metavar="N_DEVICES", help="simulate N devices and their users; compare the bandits, "
                                                "random, one common model and the oracle")] = None,
    rounds: Annotated[int, typer.Option(help="rounds (device requests) of the simulation or of the replay")] = 5000,
    json_out: Annotated[bool, typer.Option("--json", help="--simulate: print the JSON summary to stdout")] = False,
    compare: Annotated[str, typer.Option(help="--simulate: learners to compare, comma-separated")] = ",".join(LEARNERS),
    users: Annotated[str, typer.Option(help="--simulate: relative (deadline/energy scale drawn over what the variants "
                                            "span on each device) or fixed (the QoE parameters, +-20 %)")] = "relative",
    noise: Annotated[float, typer.Option(help="sd of the noise on observed QoE")] = 0.05,
    alpha: Annotated[float, typer.Option(help="exploration scale of the learners")] = 0.5,
    seed: Annotated[int, typer.Option(help="seed of everything random")] = 0,
    cpu_power_w: Annotated[float, typer.Option(help="active W of a run device whose rows have no energy "
                                                    "(assumed; marked in the provenance)")] = 10.0,
    out: Annotated[Path | None, typer.Option(help="--simulate: directory for the JSON summary, regret curves "
                                                  "and plots (default: FIRST_RUN_DIR/select)")] = None,
    format: Annotated[str, typer.Option("--format", "-f", help="recommendation table: md, csv or json")] = "md",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="write the table here, not stdout")] = None,
) -> None:
    """Pick the compressed variant with the best QoE for each device: a contextual bandit over the runs' variants.

    Without --simulate: per device of the runs, the variant with the best expected QoE and the confidence of that
    pick. With --simulate N: a population of N simulated devices and users; regret of LinUCB, NeuralUCB, Thompson
    sampling, epsilon-greedy, random, one common model and the per-device oracle.

    [bold]Example[/]: joulebench select --simulate 50 --rounds 5000 --json results/select-quick/run1
    [bold]Example[/]: joulebench select results/select-quick/run1 -p deadline_ms=2 -p w_energy=0.1 -f csv
    """
    err = Console(stderr=True, soft_wrap=True)
    try:
        _select(run_dirs, qoe, qoe_file, param or [], algo, simulate, rounds, json_out, compare, users, noise, alpha,
                seed, cpu_power_w, out, format, output, err)
    except _errors() as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False, markup=True)
        raise typer.Exit(2) from None


def _select(run_dirs, qoe_expr, qoe_file, params, algo, n_sim, rounds, json_out, compare, users, noise, alpha, seed,
            cpu_power_w, out, fmt, output, err: Console) -> None:
    from bench.select import SelectError, load_arms
    from bench.select.qoe import build

    if algo not in LEARNERS:
        raise SelectError(f"--algo: unknown algorithm '{algo}'; choose one of {', '.join(LEARNERS)}")
    if fmt not in ("md", "csv", "json"):
        raise SelectError(f"--format: expected md, csv or json, got '{fmt}'")
    if rounds < 1:
        raise SelectError(f"--rounds: must be >= 1, got {rounds}")
    if noise < 0 or alpha < 0:
        raise SelectError("--noise and --alpha must be >= 0")
    q = build(qoe_expr, qoe_file, params)
    arms = load_arms(run_dirs)
    if n_sim is None:
        from bench.select.recommend import recommend, render

        result = recommend(arms, q, algo=algo, rounds=rounds, seed=seed, noise=noise, alpha=alpha,
                           cpu_power_w=cpu_power_w)
        text = render(result, fmt)
        if output:
            output.write_text(text)
            err.print(f"wrote {output}")
        else:
            sys.stdout.write(text)
        return
    _simulate(arms, q, run_dirs, n_sim, rounds, algo, compare, users, noise, alpha, seed, cpu_power_w, out,
              json_out, err)


def _simulate(arms, q, run_dirs, n_sim, rounds, algo, compare, users, noise, alpha, seed, cpu_power_w, out,
              json_out, err: Console) -> None:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from bench.select import SelectError
    from bench.select.simulate import SimConfig, plot_regret, simulate

    learners = [a.strip() for a in compare.split(",") if a.strip()]
    bad = [a for a in learners if a not in LEARNERS]
    if bad:
        raise SelectError(f"--compare: unknown algorithm '{bad[0]}'; choose from {', '.join(LEARNERS)}")
    if algo not in learners:
        learners.insert(0, algo)
    if "linucb" not in learners:
        learners.insert(0, "linucb")  # the reference the summary compares with the common model
    cfg = SimConfig(n_devices=n_sim, rounds=rounds, seed=seed, noise=noise, users=users, alpha=alpha,
                    window=min(1000, rounds), algos=tuple(learners), cpu_power_w=cpu_power_w)
    start = time.perf_counter()
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), console=err, transient=True) as prog:
        task = prog.add_task("building the population", total=len(learners) + 4)

        def progress(name: str, i: int, n: int) -> None:
            prog.update(task, completed=i, total=n, description=f"policy {name}")

        summary, curves = simulate(arms, q, cfg, progress=progress)
    out_dir = out or Path(run_dirs[0]) / "select"
    out_dir.mkdir(parents=True, exist_ok=True)
    a = summary["algorithms"]
    plots = plot_regret(curves, out_dir, f"{n_sim} simulated devices, {rounds} rounds, seed {seed}: "
                                         f"{len(summary['arms'])} variants from {len(run_dirs)} run(s)")
    _write_curves(curves, out_dir / "select-regret.csv")
    summary.update({
        "argv": sys.argv[1:],
        "runs": [str(r) for r in run_dirs], "algo": algo, "n_devices": n_sim, "rounds": rounds, "seed": seed,
        "chosen": {"algo": algo, **a[algo],
                   "over_common": round(a[algo]["cumulative_regret"] / a["common"]["cumulative_regret"], 4)
                   if a["common"]["cumulative_regret"] > 0 else None},
        "plots": [str(p) for p in plots], "curves": str(out_dir / "select-regret.csv"),
        "total_runtime_s": round(time.perf_counter() - start, 2)})
    path = out_dir / "select-simulation.json"
    path.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    if json_out:
        sys.stdout.write(json.dumps(summary, indent=2, default=str) + "\n")
        return
    con = Console(width=None if sys.stdout.isatty() else 160)
    t = Table("policy", "cumulative regret", f"regret / round (last {cfg.window})",
              f"oracle agreement (last {cfg.window})", "vs common", "runtime s")
    com = a["common"]["cumulative_regret"]
    for name, r in sorted(a.items(), key=lambda kv: kv[1]["cumulative_regret"]):
        t.add_row(name + (" (chosen)" if name == algo else ""), f"{r['cumulative_regret']:.1f}",
                  f"{r['mean_regret_last_window']:.4f}", f"{r['oracle_agreement_last_window']:.0%}",
                  f"{r['cumulative_regret'] / com:.3f}" if com > 0 else "-", f"{r['runtime_s']:.1f}")
    con.print(t)
    con.print(f"common model: {summary['common_arm']} (the oracle's pick on {summary['common_is_oracle_share']:.0%} "
              f"of devices); oracle picks: {summary['oracle_arms']}")
    for n in summary["notes"]:
        con.print(f"note: {n}", highlight=False)
    con.print(f"summary: {path}\nplots:   {', '.join(map(str, plots))}")


def _write_curves(curves, path: Path) -> None:
    import pandas as pd

    df = pd.DataFrame({name: c for name, c in curves.items()})
    df.insert(0, "round", range(1, len(df) + 1))
    keep = sorted({*range(0, len(df), 10), len(df) - 1})
    df.iloc[keep].to_csv(path, index=False, float_format="%.5g")
