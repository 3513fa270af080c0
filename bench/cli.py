"""The `joulebench` command line (Typer + Rich)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from bench.compare_cli import compare_command  # light: typer, rich and the package only
from bench.console import console, err_console
from bench.console import epoch_progress as _epoch_progress
from bench.console import progress as _progress
from bench.reproduce.cli import reproduce_command  # light: typer, rich and the package only
from bench.select.cli import select_command  # light: typer, rich and the package only

app = typer.Typer(help="joulebench: energy-efficiency benchmarks of DNN inference on edge hardware.",
                  no_args_is_help=True, add_completion=False, rich_markup_mode="rich",
                  context_settings={"help_option_names": ["-h", "--help"]})


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        sys.stdout.write(f"joulebench {version('joulebench')}\n")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[bool | None, typer.Option("--version", callback=_version, is_eager=True,
                                                 help="print the version and exit")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="print only errors, warnings and --json output")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="print tracebacks of failed cells and errors")] = False,
) -> None:
    """joulebench: energy-efficiency benchmarks of DNN inference on edge hardware.

    Exit codes: 0 done, 1 some cells failed, 2 invalid input (one line, nothing run), 130 interrupted.
    """
    console.quiet = quiet
    _state["verbose"] = verbose


_state = {"verbose": False}


def _user_errors() -> tuple[type[BaseException], ...]:
    from bench.api import MeterError, TargetError
    from bench.campaign import CampaignError
    from bench.runner import RunError
    from bench.store import StoreError
    from pruning.errors import CompressionError

    return (CampaignError, CompressionError, TargetError, StoreError, MeterError, RunError, FileNotFoundError)


def friendly(fn: Callable) -> Callable:
    """Turn user errors into one red line and exit code 2, never a traceback."""

    @wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except _user_errors() as exc:
            if _state["verbose"]:
                err_console.print_exception()
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
            raise typer.Exit(2) from None

    return wrapper


@app.command()
@friendly
def run(
    campaign: Annotated[Path, typer.Argument(help="campaign TOML file")],
    out: Annotated[Path | None, typer.Option(help="run directory (default: results/<campaign>/<timestamp>)")] = None,
    resume: Annotated[bool, typer.Option(help="continue a run of the same campaign: finished cells are kept")] = False,
    force: Annotated[bool, typer.Option(help="start afresh in a run directory that holds results (deletes them)")] = False,
    allow_mixed: Annotated[bool, typer.Option(help="with --resume: continue a run made on another commit or host")] = False,
    dry_run: Annotated[bool, typer.Option(help="list the cells (and which are finished) and run nothing")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="print the summary as JSON on stdout")] = False,
    results_root: Annotated[Path, typer.Option(help="root for default run directories")] = Path("results"),
) -> None:
    """Run a campaign: compile, verify and time every model x compression x target cell.

    Exit codes: 0 all cells finished, 1 some cells failed, 2 invalid input, 130 interrupted.
    [bold]Example[/]: joulebench run campaigns/quickstart.toml --out results/quickstart/mine
    """
    from bench import campaign as campaign_mod
    from bench.runner import RunError, default_out, latest_run

    if resume and force:
        raise RunError("--resume keeps a run's finished cells and --force deletes them: give one of the two")
    camp = campaign_mod.load(campaign)
    if out is None:
        out = (latest_run(camp, results_root) if resume else None) or default_out(camp, results_root)
    if dry_run:
        return _dry_run(camp, out, json_out)
    if json_out:
        console.quiet = True  # stdout carries the JSON document only
    _run_campaign(camp, campaign, out, resume, force, allow_mixed, json_out)


def _dry_run(camp, out: Path, json_out: bool) -> None:
    from bench.store import RunStore

    store = RunStore(out)
    cells = [{"cell_id": c.id, "model": c.model.label, "variant": c.variant_label,
              "target": c.target.label,
              "finished": ((store.cell(c.id) or {}).get("row") or {}).get("status")} for c in camp.cells()]
    if json_out:
        sys.stdout.write(json.dumps({"campaign": camp.name, "out": str(out), "cells": cells}, indent=2) + "\n")
        return
    table = Table("#", "model", "variant", "target", "cell id", "in --out")
    for i, c in enumerate(cells, 1):
        table.add_row(str(i), c["model"], c["variant"], c["target"], c["cell_id"], c["finished"] or "")
    console.print(table)
    console.print(f"{len(cells)} cells; nothing run (--dry-run)")


def _run_campaign(camp, campaign: Path, out: Path, resume: bool, force: bool, allow_mixed: bool,
                  json_out: bool) -> None:
    from bench.plots import all_plots
    from bench.report import write_reports
    from bench.runner import Runner

    n = len(camp.cells())
    Runner(camp, out).check(resume, force, allow_mixed)  # refusals before any output; run() checks again, locked
    console.print(f"campaign [bold]{camp.name}[/]: {n} cells → {out}")
    log_cells = not console.is_terminal  # a log gets one line per finished cell instead of a live bar
    with _progress() as prog:
        task = prog.add_task("starting", total=n)

        def progress(msg: str) -> None:
            if msg.startswith("["):
                prog.update(task, completed=int(msg[1:].split("/")[0]) - 1)
            prog.update(task, description=msg)

        def on_cell(row: dict, done: int) -> None:
            if log_cells:
                console.print(f"[{done}/{n}] {_cell_line(row)}", highlight=False, markup=False)

        try:
            summary = Runner(camp, out, progress, _epoch_progress(prog), on_cell=on_cell).run(
                resume=resume, fresh=force, allow_mixed=allow_mixed)
        except KeyboardInterrupt:
            err_console.print(f"[yellow]interrupted[/]: finished cells are kept in {out}; "
                              f"continue with: joulebench run {campaign} --out {out} --resume")
            raise typer.Exit(130) from None
        prog.update(task, completed=n, description="done")
    all_plots(out)
    reports = write_reports(out)
    if json_out:
        _print_json_summary(out, summary, reports)
    else:
        _print_summary(out)
    for w in summary.warnings:
        err_console.print(f"[yellow]warning[/]: {w}", highlight=False)
    if summary.skipped_done:
        console.print(f"{summary.skipped_done} cells already finished were kept (--resume)")
    for f in summary.failed:
        err_console.print(f"[red]failed[/]: {f}", highlight=False)
    if _state["verbose"]:
        _print_tracebacks(out)
    console.print(f"measurements: {out / 'measurements.parquet'}")
    console.print(f"report:       {reports[0]}  (also {reports[2].name}, {reports[1].name})")
    console.print(f"plots:        {out / 'plots'}")
    if (out / "artifacts").is_dir():
        console.print(f"artifacts:    {out / 'artifacts'}  (compiled builds, one link per cell)")
    if summary.failed:
        raise typer.Exit(1)


def _print_tracebacks(out: Path) -> None:
    for f in sorted((out / "cells").glob("*.json")):
        tb = json.loads(f.read_text()).get("traceback")
        if tb:
            err_console.print(f"[red]traceback of cell {f.stem}[/]:\n{escape(tb)}", highlight=False)


def _cell_line(row: dict) -> str:
    from bench.report import cell_text

    figs = [f"{cell_text(row.get('latency_ms'))} ms" if row.get("latency_ms") is not None else "",
            f"{cell_text(row.get('energy_mj_per_inf'))} mJ/inf" if row.get("energy_mj_per_inf") is not None else ""]
    why = "" if row["status"] == "ok" else (row.get("message") or "")[:100]
    return "  ".join(x for x in [row["status"], f"{row['model']} / {row['variant']} / {row['target']}", *figs, why] if x)


def _print_json_summary(out: Path, summary, reports: list[Path]) -> None:
    from bench.store import RunStore

    df = RunStore(out).measurements()
    keep = [c for c in ("model", "variant", "target", "device", "status", "verified", "latency_ms", "latency_kind",
                        "energy_mj_per_inf", "energy_kind", "accuracy", "message", "warnings") if c in df]
    doc = {"out": str(out), "ran": summary.ran, "kept": summary.skipped_done, "failed": summary.failed,
           "warnings": summary.warnings, "report": str(reports[0]),
           "cells": json.loads(df[keep].to_json(orient="records"))}
    sys.stdout.write(json.dumps(doc, indent=2) + "\n")


def _print_summary(out: Path) -> None:
    from bench.report import cell_text, terminal_summary
    from bench.store import RunStore

    t = terminal_summary(RunStore(out).measurements())
    table = Table(show_lines=False)
    for c in t.columns:
        table.add_column(c, overflow="fold")
    for r in t.itertuples(index=False):
        table.add_row(*[escape(cell_text(v)) for v in r])
    console.print(table, width=min(console.width, 100))


@app.command()
@friendly
def compress(
    model: Annotated[str, typer.Option(help="zoo model name (see `joulebench models`), or a .pt2 / .onnx file")],
    out: Annotated[Path, typer.Option(help="directory under which the variant directory is written")],
    scheme: Annotated[str, typer.Option(help="none | block | unstructured | filter | pattern")] = "block",
    sparsity: Annotated[float, typer.Option(help="fraction of weights pruned per layer, in [0, 1)")] = 0.0,
    block: Annotated[str, typer.Option(help="block shape ROWSxCOLS of the GEMM view")] = "8x16",
    block_mode: Annotated[str, typer.Option(help="column | row | rowcol (what is pruned inside a block)")] = "column",
    method: Annotated[str, typer.Option(help="oneshot | iterative | admm")] = "oneshot",
    bits: Annotated[int, typer.Option(help="weight bits: 32 (none), 16, 8, 4, 2 (ternary), 1 (binary)")] = 32,
    act_bits: Annotated[int | None, typer.Option(help="activation bits: 8 or 16 (default 8; 16 for 16-bit weights)")] = None,
    calibration: Annotated[str, typer.Option(help="minmax | percentile")] = "minmax",
    precision: Annotated[str, typer.Option(help="fp32 | fp16 (GPU targets)")] = "fp32",
    finetune_epochs: Annotated[int, typer.Option(help="masked fine-tuning epochs after pruning")] = 0,
    pretrain_epochs: Annotated[int, typer.Option(help="train the dense model first (seeded models have no accuracy)")] = 0,
    admm_epochs: Annotated[int, typer.Option(help="ADMM epochs (method admm)")] = 0,
    qat_epochs: Annotated[int, typer.Option(help="quantization-aware training epochs")] = 0,
    data: Annotated[str | None, typer.Option(help="'digits', a CIFAR-10 batch folder or an image folder")] = None,
    checkpoint: Annotated[Path | None, typer.Option(help="state_dict to start from")] = None,
    seed: Annotated[int, typer.Option(help="seed for init, data split and training")] = 0,
    lr: Annotated[float, typer.Option(help="SGD learning rate")] = 0.01,
) -> None:
    """Compress a zoo model or a .pt2 / .onnx file into a variant directory (manifest.json + safetensors), with accuracy.

    [bold]Example[/]: joulebench compress --model smallcnn-digits --scheme block --sparsity 0.75 --block 8x16
    --bits 8 --pretrain-epochs 4 --finetune-epochs 3 --data digits --out variants/
    """
    from pydantic import ValidationError

    from pruning.compress import CompressionSpec, make_variant
    from pruning.errors import CompressionError
    from pruning.store import save_variant
    from pruning.variant import ModelSpec

    fields = dict(scheme=scheme, sparsity=sparsity, block=block, block_mode=block_mode, method=method, bits=bits,
                  act_bits=act_bits, calibration=calibration, precision=precision, finetune_epochs=finetune_epochs,
                  pretrain_epochs=pretrain_epochs, admm_epochs=admm_epochs, qat_epochs=qat_epochs, data=data,
                  seed=seed, lr=lr)
    try:
        spec = CompressionSpec(**fields)
    except ValidationError as exc:
        err = exc.errors()[0]
        flag = "--" + str(err["loc"][0]).replace("_", "-")
        raise CompressionError(f"{flag}: {err['msg'].removeprefix('Value error, ')}") from None
    as_file = model.endswith((".pt2", ".onnx")) or Path(model).is_file()
    mspec = ModelSpec(name=None if as_file else model, path=str(Path(model).resolve()) if as_file else None,
                      checkpoint=str(checkpoint) if checkpoint else None, seed=seed)
    with _progress() as prog:
        v = make_variant(mspec, spec, _epoch_progress(prog))
    dest = save_variant(v, out / f"{v.model}-{v.name}-{v.hash[:12]}")
    mf = v.manifest
    table = Table("layer", "op", "weights", "target sparsity", "achieved", "w bits", "a bits", "MACs eff (M)")
    for layer in mf.get("layers", []):
        table.add_row(layer["layer"], layer["op"], f"{layer['weights']:,}", f"{layer['target_sparsity']:.3f}",
                      f"{layer['achieved_sparsity']:.3f}", str(layer["weight_bits"]), str(layer["act_bits"] or "-"),
                      f"{layer['macs_effective'] / 1e6:.2f}")
    console.print(table)
    acc = ", ".join(f"{k} {a:.2%}" for k, a in (mf.get("accuracy") or {}).items() if a is not None)
    console.print(f"MACs {mf['macs_effective'] / 1e6:,.1f}M of {mf['macs_dense'] / 1e6:,.1f}M dense; "
                  f"params kept {mf['params_kept']:,} of {mf['params']:,}")
    console.print(f"top-1 on {mf.get('accuracy_dataset') or 'no dataset'} (held out): {acc or 'not measured (no data)'}")
    console.print(f"variant: {dest}")


@app.command()
@friendly
def report(
    run_dirs: Annotated[list[Path], typer.Argument(help="run directories, or a campaign's results folder (its latest "
                                                   "run); several are combined into one report")],
    format: Annotated[str | None, typer.Option("--format", "-f", help="md, csv, html or json (default: from -o's "
                                                                      "extension, else md)")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="write here instead of stdout")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="same as --format json")] = False,
) -> None:
    """Print or write the report of a run (or of several runs, e.g. from different days or devices).

    [bold]Example[/]: joulebench report results/quickstart -o report.html
    """
    from bench.report import FORMATS, render
    from bench.store import resolve_run

    fmt = "json" if json_out else (format or (output.suffix.lstrip(".") if output and output.suffix else "md"))
    fmt = {"markdown": "md", "htm": "html"}.get(fmt.lower(), fmt.lower())
    if fmt not in FORMATS:
        from bench.store import StoreError

        raise StoreError(f"report format '{format or output.suffix}' is not one of {', '.join(FORMATS)}"
                         + ("" if format else " (set --format)"))
    runs = [resolve_run(d) for d in run_dirs]
    text = render(runs if len(runs) > 1 else runs[0], fmt)
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


JsonFlag = Annotated[bool, typer.Option("--json", help="print JSON on stdout instead of a table")]


def _emit(rows: list[dict], json_out: bool, columns: list[str], title_rows: Callable[[dict], list[str]]) -> None:
    """A listing as JSON (a list of objects) or as a table."""
    if json_out:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    table = Table(*columns)
    for r in rows:
        table.add_row(*title_rows(r))
    console.print(table)


@app.command()
def models(json_out: JsonFlag = False) -> None:
    """List the model zoo with input shape, MACs and parameters (counted from the graph, cached).

    [bold]Example[/]: joulebench models --json
    """
    from bench.zoo_table import zoo_table

    rows = zoo_table()
    _emit(rows, json_out, ["model", "dataset", "input", "MACs (M)", "params (M)", "reference"],
          lambda r: [r["model"], r["dataset"], "x".join(map(str, r["input"])), f"{r['macs'] / 1e6:,.1f}",
                     f"{r['params'] / 1e6:.2f}", r["reference"]])
    if not json_out:
        console.print("bring your own: a campaign model entry with path = \"model.onnx\" or \"model.pt2\", "
                      "or variant = \"DIR\" (made by `joulebench compress`)")


@app.command(name="targets")
def list_targets(json_out: JsonFlag = False) -> None:
    """List installed backends and whether each is usable here (and why not).

    [bold]Example[/]: joulebench targets
    """
    import targets as registry

    rows = []
    for name, ref in sorted(registry.registered().items()):
        try:
            t = registry.get(name)
            ok, why = t.availability()
            # usable in part: e.g. builds here, but cannot run without an NDK
            state = "compile only" if ok and why else ("yes" if ok else "no")
            rows.append({"target": name, "available": state, "figures": t.figures, "description": t.description,
                         "why": why, "entry_point": ref})
        except Exception as exc:  # a broken third-party plugin must not hide the others
            rows.append({"target": name, "available": "no", "figures": None, "description": "",
                         "why": f"failed to load: {exc}", "entry_point": ref})
    colour = {"yes": "[green]yes[/]", "no": "[red]no[/]", "compile only": "[yellow]compile only[/]"}
    _emit(rows, json_out, ["target", "available", "description / why not", "entry point"],
          lambda r: [r["target"], colour[r["available"]],
                     "; ".join(x for x in (r["description"] if r["available"] != "no" else "", r["why"]) if x),
                     r["entry_point"]])


@app.command()
def meters(json_out: JsonFlag = False) -> None:
    """List installed power meters and whether each can be read here (and why not).

    [bold]Example[/]: joulebench meters
    """
    from bench import power

    rows = []
    for name, ref in sorted(power.registered().items()):
        try:
            cls = power.meter_class(name)
            ok, why = cls.availability()
            rows.append({"meter": name, "available": ok, "unit": cls.unit, "clock": cls.clock, "why": why,
                         "entry_point": ref})
        except Exception as exc:  # a broken plugin must not hide the others
            rows.append({"meter": name, "available": False, "unit": "", "clock": "", "why": f"failed to load: {exc}",
                         "entry_point": ref})
    _emit(rows, json_out, ["meter", "available", "unit", "clock", "why not / how", "entry point"],
          lambda r: [r["meter"], "[green]yes[/]" if r["available"] else "[red]no[/]", r["unit"], r["clock"], r["why"],
                     r["entry_point"]])
    if not json_out:
        console.print("attach one to a target in a campaign: meters = [\"rapl\"] or "
                      "meters = [{name = \"hwmon\", root = \"/mnt/board\", device = \"ina260\"}]")


@app.command()
@friendly
def devices() -> None:
    """List the phones a running adb server sees, as values for a campaign's `device` key.

    [bold]Example[/]: joulebench devices
    """
    from targets.android.transport import discover

    found = discover()
    table = Table("device", "state", "model")
    for d in found:
        table.add_row(d["device"], d["state"], d["model"])
    console.print(table if found else "no devices attached to the adb server "
                  "(adb over Wi-Fi: `adb connect HOST:5555`, or device = 'tcp:HOST' directly)")


@app.command(name="calibrate-power")
@friendly
def calibrate_power(
    device: Annotated[str, typer.Option(help="adb:SERIAL, tcp:HOST[:PORT], usb[:SERIAL] or local:ROOT (a device tree)")],
    supply: Annotated[str, typer.Option(help="power_supply entry")] = "battery",
    seconds: Annotated[float, typer.Option(help="how long to sample")] = 3.0,
    workdir: Annotated[str | None, typer.Option(help="where the sampler writes (default: /data/local/tmp, or a temp dir for local)")] = None,
) -> None:
    """Infer the battery meter's current unit (µA/mA) and sign from a short sample taken on battery.

    Run it with the phone unplugged (adb over Wi-Fi) and idle; put the printed unit and sign in the
    meter spec. [bold]Example[/]: joulebench calibrate-power --device tcp:192.168.1.20:5555 --seconds 5
    """
    import tempfile
    import time

    from bench.power.android import AndroidBatteryMeter, calibrate, to_watts
    from targets.android.transport import connect

    shell = connect(device)
    local = device.split(":")[0] == "local"
    try:
        m = AndroidBatteryMeter(shell, root=shell.sysfs_root, supply=supply, unit="uA", sign=1,
                                workdir=workdir or (tempfile.gettempdir() if local else "/data/local/tmp"))
        m.start()
        time.sleep(seconds)
        m.stop()
        raw = m.last_samples
    finally:
        shell.close()
    cal = calibrate(raw)
    watts = to_watts(raw, cal["unit"], cal["sign"])
    console.print(f"{len(raw)} samples: unit = \"{cal['unit']}\", sign = {cal['sign']} "
                  f"(idle draw {watts.mean():.3f} W, measured:android-battery)")
    console.print(f'meter spec: {{name = "android-battery", unit = "{cal["unit"]}", sign = {cal["sign"]}}}')


app.command(name="select")(select_command)
app.command(name="compare")(friendly(compare_command))
app.command(name="reproduce")(reproduce_command)


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
