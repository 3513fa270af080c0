"""The `joulebench` command line (Typer + Rich)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

app = typer.Typer(help="joulebench: energy-efficiency benchmarks of DNN inference on edge hardware.",
                  no_args_is_help=True, add_completion=False, rich_markup_mode="rich")
# Off a terminal (CI logs, pipes) Rich would wrap tables at 80 columns; logs can be wider.
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, soft_wrap=True)  # an error stays one line, however long


def _user_errors() -> tuple[type[BaseException], ...]:
    from bench.campaign import CampaignError
    from bench.store import StoreError
    from pruning.errors import CompressionError
    from targets.base import TargetError

    return (CampaignError, CompressionError, TargetError, StoreError, FileNotFoundError)


def friendly(fn: Callable) -> Callable:
    """Turn user errors into one red line and exit code 2, never a traceback."""

    @wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except _user_errors() as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
            raise typer.Exit(2) from None

    return wrapper


@app.command()
@friendly
def run(
    campaign: Annotated[Path, typer.Argument(help="campaign TOML file")],
    out: Annotated[Path | None, typer.Option(help="run directory (default: results/<campaign>/<timestamp>)")] = None,
    resume: Annotated[bool, typer.Option(help="continue a run: skip cells already finished")] = False,
    results_root: Annotated[Path, typer.Option(help="root for default run directories")] = Path("results"),
) -> None:
    """Run a campaign: compile, verify and time every model x compression x target cell.

    [bold]Example[/]: joulebench run campaigns/quickstart.toml --out results/quickstart/mine
    """
    from bench import campaign as campaign_mod
    from bench.plots import all_plots
    from bench.report import write_reports
    from bench.runner import Runner, default_out, latest_run

    camp = campaign_mod.load(campaign)
    if out is None:
        out = (latest_run(camp, results_root) if resume else None) or default_out(camp, results_root)
    n = len(camp.cells())
    console.print(f"campaign [bold]{camp.name}[/]: {n} cells → {out}")
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), console=console, transient=not console.is_terminal) as prog:
        task = prog.add_task("starting", total=n)

        def progress(msg: str) -> None:
            if msg.startswith("["):
                prog.update(task, completed=int(msg[1:].split("/")[0]) - 1)
            prog.update(task, description=msg)

        try:
            summary = Runner(camp, out, progress).run(resume=resume)
        except KeyboardInterrupt:
            err_console.print(f"[yellow]interrupted[/]: finished cells are kept in {out}; "
                              f"continue with: joulebench run {campaign} --out {out} --resume")
            raise typer.Exit(130) from None
        prog.update(task, completed=n, description="done")
    all_plots(out)
    reports = write_reports(out)
    _print_summary(out)
    if summary.skipped_done:
        console.print(f"{summary.skipped_done} cells already finished were kept (--resume)")
    for f in summary.failed:
        err_console.print(f"[red]failed[/]: {f}", highlight=False)
    console.print(f"measurements: {out / 'measurements.parquet'}")
    console.print(f"report:       {reports[0]}  (also {reports[2].name}, {reports[1].name})")
    console.print(f"plots:        {out / 'plots'}")
    if summary.failed:
        raise typer.Exit(1)


def _print_summary(out: Path) -> None:
    from bench.report import summary_table
    from bench.store import RunStore

    t = summary_table(RunStore(out).measurements())
    table = Table(show_lines=False)
    cols = ["model", "variant", "target", "status", "p50 ms", "p50 95% CI", "CV", "MACs (M)"]
    for c in cols:
        table.add_column(c, overflow="fold")
    for r in t.to_dict("records"):
        table.add_row(*[("" if v is None or v != v else f"{v:.4g}" if isinstance(v, float) else str(v))
                        for v in (r[c] for c in cols)])
    console.print(table)


@app.command()
@friendly
def report(
    run_dir: Annotated[Path, typer.Argument(help="a run directory (holds measurements.parquet)")],
    format: Annotated[str, typer.Option("--format", "-f", help="md, csv or html")] = "md",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="write here instead of stdout")] = None,
) -> None:
    """Print or write the report of a run.

    [bold]Example[/]: joulebench report results/quickstart/demo --format html -o report.html
    """
    from bench.report import render

    if format not in ("md", "csv", "html"):
        err_console.print(f"[bold red]error:[/] --format must be md, csv or html, not '{format}'")
        raise typer.Exit(2)
    text = render(run_dir, format)
    if output:
        output.write_text(text)
        console.print(f"wrote {output}")
    else:
        sys.stdout.write(text)


@app.command()
@friendly
def plot(run_dir: Annotated[Path, typer.Argument(help="a run directory")]) -> None:
    """(Re)draw the plots of a run as PNG and SVG under RUN_DIR/plots.

    [bold]Example[/]: joulebench plot results/quickstart/demo
    """
    from bench.plots import all_plots

    paths = all_plots(run_dir)
    if not paths:
        console.print("nothing to plot: no cell finished with status ok")
    for p in paths:
        console.print(f"wrote {p}")


@app.command()
def models() -> None:
    """List the model zoo with input shape, MACs and parameters (counted from the graph).

    [bold]Example[/]: joulebench models
    """
    import torch

    from pruning import zoo
    from pruning.macs import count_module

    table = Table("model", "dataset", "input", "MACs (M)", "params (M)", "reference")
    for e in zoo.ZOO.values():
        c = count_module(zoo.build(e.name), torch.zeros(1, *e.input_shape))
        table.add_row(e.name, e.dataset, "x".join(map(str, e.input_shape)), f"{c.macs_dense / 1e6:,.1f}",
                      f"{c.params / 1e6:.2f}", e.paper)
    console.print(table)
    console.print("bring your own: a campaign model entry with path = \"model.onnx\" or \"model.pt2\"")


@app.command(name="targets")
def list_targets() -> None:
    """List installed backends and whether each is usable here (and why not).

    [bold]Example[/]: joulebench targets
    """
    import targets as registry

    table = Table("target", "available", "description / why not", "entry point")
    for name, ref in sorted(registry.registered().items()):
        try:
            t = registry.get(name)
            ok, why = t.availability()
            table.add_row(name, "[green]yes[/]" if ok else "[red]no[/]", t.description if ok else why, ref)
        except Exception as exc:  # a broken third-party plugin must not hide the others
            table.add_row(name, "[red]no[/]", f"failed to load: {exc}", ref)
    console.print(table)


def main() -> None:
    import logging
    import warnings

    # torch.export / torch.onnx chatter (deprecations, missing torchvision ops) is not the user's concern
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    app()


if __name__ == "__main__":
    main()
