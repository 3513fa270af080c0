"""The `joulebench compare` command (registered in bench/cli.py); kept apart from bench/compare.py so that
importing the CLI does not import pandas (`joulebench models` answers in well under a second)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

# bench.compare.KEYS / ALPHA, written out: importing that module here would import pandas (a test keeps them equal)
KEYS = ("model", "variant", "target", "device")
ALPHA = 0.05


def compare_command(
    run_a: Annotated[Path, typer.Argument(help="the reference run directory (A)", show_default=False)],
    run_b: Annotated[Path, typer.Argument(help="the run directory compared with it (B)", show_default=False)],
    json_out: Annotated[bool, typer.Option("--json", help="print the comparison as JSON to stdout")] = False,
    by: Annotated[str, typer.Option(help="keys that match cells, comma-separated subset of model, variant, target, "
                                         "device (device matches where both rows name one)")] = ",".join(KEYS),
    alpha: Annotated[float, typer.Option(help="significance level of the Mann-Whitney U test")] = ALPHA,
) -> None:
    """Compare two runs cell by cell: latency ratio, significance of the difference, energy ratio.

    Measured cells get a two-sided Mann-Whitney U test on their raw per-inference samples; simulated and
    modeled figures are deterministic and get none. Runs from other days, devices or targets can be compared
    with --by model,variant.

    [bold]Example[/]: joulebench compare results/quickstart/monday results/quickstart/tuesday
    [bold]Example[/]: joulebench compare results/phone/run1 results/fpga/run1 --by model,variant --json
    """
    from bench.compare import compare_runs, load_run, parse_by, render_table, summary_lines
    from bench.store import StoreError, resolve_run

    if not 0 < alpha < 1:
        raise StoreError(f"--alpha: must be in (0, 1), got {alpha}")
    run_a, run_b = resolve_run(run_a), resolve_run(run_b)
    doc = compare_runs(load_run(run_a), load_run(run_b), parse_by(by), alpha)
    if json_out:
        sys.stdout.write(json.dumps(doc, indent=2, allow_nan=False) + "\n")
        return
    from bench.console import console

    console.print(render_table(doc))
    for line in summary_lines(doc):
        console.print(line, highlight=False, markup=False)
