"""`joulebench reproduce STUDY`: build the study's matrix, run it with the campaign runner (cached, resumed),
then write the figures, the findings table and the reports into one directory.

Registered in bench/cli.py as `app.command(name="reproduce")(reproduce_command)`; self-contained (its own
one-line error handling).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from bench.console import console, epoch_progress, err_console, progress

DEFAULT_OUT = Path("results/reproduce-mobile-vs-fpga")


def _errors() -> tuple[type[BaseException], ...]:
    from bench.api import MeterError, TargetError
    from bench.campaign import CampaignError
    from bench.reproduce import ReproduceError
    from bench.runner import RunError
    from bench.store import StoreError
    from pruning.errors import CompressionError

    return ReproduceError, CampaignError, CompressionError, TargetError, StoreError, MeterError, RunError, \
        FileNotFoundError


def reproduce(s, out: Path, allow_mixed: bool = False, progress: Callable[[str], None] | None = None,
              on_epoch: Callable | None = None) -> dict:
    """Run a study (a matrix.Study) end to end; returns {"rows", "findings", "figures", "failed", "out", ...}."""
    from bench import rows as row_model
    from bench.reproduce import figures, findings, matrix, study

    say = progress or (lambda _m: None)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ckpts = matrix.prepare(s, on_epoch, say)
    docs, left_out = matrix.campaigns(s, ckpts)
    for why in left_out:
        say(f"left out: {why}")
    written = matrix.write_campaigns(docs, out)
    failed, run_dirs = [], []
    for path, unchanged in written:
        run_dir = out / "runs" / path.stem
        run_dirs.append(run_dir)
        if unchanged and _finished(run_dir):
            continue  # what `run --resume` would do: every cell already finished, nothing to run
        from bench import campaign as campaign_mod
        from bench.runner import Runner

        camp = campaign_mod.load(path)  # the runner's validation: a bad option is one line `file: key: error`
        # an edited matrix drops the cells it no longer has; the rest are kept
        summary = Runner(camp, run_dir, say, on_epoch).run(resume=True, allow_mixed=allow_mixed,
                                                           replace_campaign=True)
        failed += summary.failed
    rows = study.read_runs(run_dirs)
    rows = _parent_accuracy(rows, s, ckpts)
    df = study.frame(rows)
    table = findings.findings(df)
    figs = figures.all_figures(df, out)
    _write_outputs(out, s, ckpts, rows, table, run_dirs, row_model, left_out)
    return {"rows": df, "findings": table, "figures": figs, "failed": failed, "out": out, "study": s,
            "left_out": left_out,
            "campaigns": [p for p, _ in written]}


def _finished(run_dir: Path) -> bool:
    """Every cell of the run's manifest finished ok or skipped: a resumed runner would run nothing. (Cells keep the
    commit and host they ran on, in their rows; a new --out measures afresh.)"""
    try:
        cells = json.loads((run_dir / "manifest.json").read_text())["cells"]
        return all(json.loads((run_dir / "cells" / f"{c}.json").read_text())["row"]["status"] in ("ok", "skipped")
                   for c in cells)
    except (OSError, KeyError, ValueError):
        return False


def _parent_accuracy(rows, s, ckpts):
    """The dense fp32 variant of a level *is* its checkpoint (the pipeline adds no step to it, so its manifest
    has no accuracy): its accuracy is the checkpoint's, measured when it was trained; marked in accuracy_note."""
    import pandas as pd

    from bench.reproduce.study import level_of, precision_of

    rows = rows.copy()
    rows["accuracy_note"] = pd.Series(pd.NA, index=rows.index, dtype="string")
    for i, r in rows.iterrows():
        if pd.notna(r["accuracy"]) or precision_of(r["bits"], r["precision"]) != "fp32":
            continue
        level = level_of(r["scheme"], r["sparsity"])
        acc = ckpts.accuracy.get((r["model"], level))
        if acc is not None:
            rows.loc[i, "accuracy"] = acc
            rows.loc[i, "accuracy_dataset"] = ckpts.dataset
            rows.loc[i, "accuracy_note"] = "the trained checkpoint's held-out accuracy (same weights)"
    return rows


def _write_outputs(out: Path, s, ckpts, rows, table, run_dirs, row_model, left_out: list[str]) -> None:
    from bench.report import _html, to_markdown, write_reports
    from bench.store import write_atomic

    tmp = out / ".measurements.parquet.tmp"
    row_model.write(row_model.frame(rows.to_dict("records")), tmp)
    tmp.replace(out / "measurements.parquet")
    manifest = {"campaign": s.name, "run_id": out.name, "study": asdict(s), "study_key": s.key,
                "runs": [str(d) for d in run_dirs], "left_out": left_out, "campaigns": sorted(str(p) for p in (out / "campaigns").glob("*.toml")),
                "checkpoints": {f"{m}/{lv}": {"path": p, "accuracy": ckpts.accuracy.get((m, lv))}
                                for (m, lv), p in ckpts.paths.items()},
                "git_commits": sorted({str(c) for c in rows["git_commit"].dropna()}),
                "git_commit": ", ".join(sorted({str(c) for c in rows["git_commit"].dropna()})) or None,
                "host": json.loads((run_dirs[0] / "manifest.json").read_text())["host"] if run_dirs else {},
                "format_version": row_model.FORMAT_VERSION,
                "finished_at": datetime.now(UTC).isoformat()}
    write_atomic(out / "manifest.json", json.dumps(manifest, indent=2, default=str))
    table.to_csv(out / "findings.csv", index=False)
    shown = table[["claim", "verdict", "evidence", "kinds", "basis"]]
    write_atomic(out / "findings.md", f"# Findings: {s.name}\n\n" + to_markdown(shown) + "\n")
    write_reports(out)  # report.md / .csv / .html of every row (the HTML embeds the figures)
    notes = ["Every verdict is computed from the rows (findings.csv holds the numbers as JSON); energy is the "
             "idle-subtracted energy per inference; markers: measured o, simulated ^, modeled D.",
             *[f"left out of the matrix: {w}" for w in left_out],
             f"host: {manifest['host'].get('cpu')} ({manifest['host'].get('cores')} cores); cells run on commit "
             f"{', '.join(manifest['git_commits']) or 'unknown'}"]
    write_atomic(out / "study.html", _html(f"joulebench reproduce {s.name}", notes, shown, out, manifest))


def reproduce_command(
    study: Annotated[str, typer.Argument(help="the study to reproduce: mobile-vs-fpga")],
    quick: Annotated[bool, typer.Option("--quick", help="a small matrix (one small CNN trained on digits, dense "
                                                        "and 8x pruning, two GPUs, two boards): minutes")] = False,
    full: Annotated[bool, typer.Option("--full", help="add the ImageNet forms of the models")] = False,
    out: Annotated[Path, typer.Option(help="output directory (campaigns, runs, figures, findings)")] = DEFAULT_OUT,
    data: Annotated[str | None, typer.Option(help="a CIFAR-10 folder (data_batch_*, test_batch) for training and "
                                                  "accuracy (default: scikit-learn digits)")] = None,
    device: Annotated[list[str] | None, typer.Option(
        "--device", help="a real device to add (repeatable): android-gpu=adb:SERIAL or fpga-pynq=tcp:HOST:PORT "
                         "(extra target options after commas: ,board=pynq-z2)")] = None,
    allow_mixed: Annotated[bool, typer.Option(help="resume runs made on another commit or host")] = False,
) -> None:
    """Reproduce a study: its matrix through the campaign runner, its figures and its findings table.

    [bold]Example[/]: joulebench reproduce mobile-vs-fpga --quick --out results/reproduce-quick
    """
    from bench.reproduce import ReproduceError, matrix

    t0 = time.perf_counter()
    try:  # the request itself first: a bad name or device is one line, before anything heavy is imported
        s = matrix.study(study, quick=quick, full=full, data=data, devices=device)
    except ReproduceError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None

    try:
        with progress() as prog:
            task = prog.add_task("starting", total=None)
            res = reproduce(s, out, allow_mixed=allow_mixed, progress=lambda m: prog.update(task, description=m),
                            on_epoch=epoch_progress(prog))
    except _errors() as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None
    table = Table("claim", "verdict", "evidence", show_lines=True)
    colour = {"holds": "green", "does not hold": "red", "not measurable": "yellow"}
    for r in res["findings"].to_dict("records"):
        table.add_row(escape(r["claim"]), f"[{colour[r['verdict']]}]{r['verdict']}[/]", escape(r["evidence"]))
    console.print(table)
    df = res["rows"]
    counts = df["status"].value_counts().to_dict()
    for why in res["left_out"]:
        console.print(f"[yellow]left out[/]: {escape(why)}")
    console.print("cells: " + ", ".join(f"{n} {k}" for k, n in counts.items()) + f" ({len(res['campaigns'])} campaigns)")
    for f in res["failed"]:
        err_console.print(f"[red]failed[/]: {f}", highlight=False)
    o = res["out"]
    console.print(f"findings: {o / 'findings.md'} (numbers: findings.csv)")
    console.print(f"figures:  {o / 'plots'} (PNG, SVG, and the plotted data as CSV)")
    console.print(f"report:   {o / 'study.html'} (every row: report.html)")
    console.print(f"campaigns: {o / 'campaigns'} (re-run one with `joulebench run FILE`)")
    console.print(f"done in {time.perf_counter() - t0:.1f} s")
    if res["failed"]:
        raise typer.Exit(1)
