"""The `joulebench` command line (Typer + Rich)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from bench.console import console, err_console
from bench.console import epoch_progress as _epoch_progress
from bench.console import progress as _progress
from bench.reproduce.cli import reproduce_command  # light: typer, rich and the package only
from bench.select.cli import select_command  # light: typer, rich and the package only

app = typer.Typer(help="joulebench: energy-efficiency benchmarks of DNN inference on edge hardware.",
                  no_args_is_help=True, add_completion=False, rich_markup_mode="rich")


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
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
            raise typer.Exit(2) from None

    return wrapper


@app.command()
@friendly
def run(
    campaign: Annotated[Path, typer.Argument(help="campaign TOML file")],
    out: Annotated[Path | None, typer.Option(help="run directory (default: results/<campaign>/<timestamp>)")] = None,
    resume: Annotated[bool, typer.Option(help="continue a run: skip cells already finished")] = False,
    force: Annotated[bool, typer.Option(help="with --resume: continue a run made on another commit or host")] = False,
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
    with _progress() as prog:
        task = prog.add_task("starting", total=n)

        def progress(msg: str) -> None:
            if msg.startswith("["):
                prog.update(task, completed=int(msg[1:].split("/")[0]) - 1)
            prog.update(task, description=msg)

        try:
            summary = Runner(camp, out, progress, _epoch_progress(prog)).run(resume=resume, force=force)
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
    from bench.report import cell_text

    cols = ["model", "variant", "target", "status", "latency ms", "latency kind", "p50 95% CI", "CV", "MACs (M)"]
    for c in cols:
        table.add_column(c, overflow="fold")
    for r in t.to_dict("records"):
        table.add_row(*[escape(cell_text(r[c])) for c in cols])
    console.print(table)


@app.command()
@friendly
def compress(
    model: Annotated[str, typer.Option(help="zoo model name (see `joulebench models`)")],
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
    """Compress a zoo model into a variant directory (manifest.json + safetensors), with accuracy.

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
    mspec = ModelSpec(name=model, checkpoint=str(checkpoint) if checkpoint else None, seed=seed)
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
            if ok and why:  # usable in part: e.g. builds here, but cannot run without an NDK
                table.add_row(name, "[yellow]compile only[/]", f"{t.description}; {why}", ref)
            else:
                table.add_row(name, "[green]yes[/]" if ok else "[red]no[/]", t.description if ok else why, ref)
        except Exception as exc:  # a broken third-party plugin must not hide the others
            table.add_row(name, "[red]no[/]", f"failed to load: {exc}", ref)
    console.print(table)


@app.command()
def meters() -> None:
    """List installed power meters and whether each can be read here (and why not).

    [bold]Example[/]: joulebench meters
    """
    from bench import power

    table = Table("meter", "available", "unit", "clock", "why not / how", "entry point")
    for name, ref in sorted(power.registered().items()):
        try:
            cls = power.meter_class(name)
            ok, why = cls.availability()
            table.add_row(name, "[green]yes[/]" if ok else "[red]no[/]", cls.unit, cls.clock, why, ref)
        except Exception as exc:  # a broken plugin must not hide the others
            table.add_row(name, "[red]no[/]", "", "", f"failed to load: {exc}", ref)
    console.print(table)
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
