"""Reports, plots and `compare` on synthetic run directories written through RunStore (no compilation)."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from bench import report
from bench.compare import DETERMINISTIC
from bench.compare_cli import compare_command
from bench.store import RunStore, StoreError

HOST = {"cpu": "test cpu", "cores": 2, "hostname": "h"}


def row(model, variant, target, latency_ms=None, **kw) -> dict:
    """A row of the schema: ok and measured unless told otherwise; dense fp32 unless scheme/bits say so."""
    r = {"campaign": "c", "model": model, "variant": variant, "target": target, "status": "ok", "verified": True,
         "scheme": "none", "sparsity": 0.0, "bits": 32, "precision": "fp32", "latency_ms": latency_ms,
         "latency_kind": "measured" if latency_ms is not None else None, "energy_kind": None}
    r.update(kw)
    r["cell_id"] = r.get("cell_id") or f"{model}-{variant}-{target}-{r.get('device') or ''}"
    return r


def make_run(path, rows, samples=None, toml=None, planned=(), finished=True):
    """A run directory: `samples`: cell_id -> per-inference latencies in ms (one repeat)."""
    store = RunStore(path)
    ids = [r["cell_id"] for r in rows]
    manifest = {"campaign": "c", "run_id": path.name, "host": HOST, "git_commit": "abc",
                "cells": ids + list(planned), "campaign_toml": toml}
    if finished:
        manifest["finished_at"] = "2025-01-01T00:00:00"
    store.init(manifest)
    for r in rows:
        store.write_cell(r["cell_id"], r, [list(np.asarray((samples or {}).get(r["cell_id"], [])) / 1e3)], {})
    store.rebuild(ids)
    return path


# ---- compare ----------------------------------------------------------------------------------------------------

@pytest.fixture
def two_runs(tmp_path):
    rng = np.random.default_rng(0)
    base, same = rng.normal(10.0, 0.3, 200), rng.normal(5.0, 0.2, 200)
    a_rows = [row("m", "dense", "cpu", 10.0, energy_mj_per_inf=4.0),
              row("m", "block", "cpu", 5.0, scheme="block", sparsity=0.5),
              row("m", "dense", "fpga", 2.0, latency_kind="modeled", energy_mj_per_inf=1.0, energy_kind="modeled"),
              row("m", "gone", "cpu", 1.0)]
    b_rows = [row("m", "dense", "cpu", 15.0, energy_mj_per_inf=6.0),
              row("m", "block", "cpu", 5.0, scheme="block", sparsity=0.5),
              row("m", "dense", "fpga", 1.0, latency_kind="modeled", energy_mj_per_inf=1.0, energy_kind="modeled"),
              row("m", "new", "cpu", 1.0)]
    a = make_run(tmp_path / "a", a_rows, {"m-dense-cpu-": base, "m-block-cpu-": same})
    b = make_run(tmp_path / "b", b_rows, {"m-dense-cpu-": base * 1.5, "m-block-cpu-": same})
    return a, b


def cli():
    app = typer.Typer()
    app.command(name="compare")(compare_command)
    app.command("other")(lambda: None)  # two commands: `compare` is named on the command line
    return app


def invoke(*args):
    return CliRunner().invoke(cli(), ["compare", *map(str, args)])


def test_compare_significance_ratios_and_unmatched(two_runs):
    r = invoke(*two_runs, "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    cells = {(c["variant"], c["target_a"]): c for c in doc["cells"]}
    slow = cells["dense", "cpu"]
    assert slow["verdict"] == "significant" and slow["p_value"] < 1e-6 and slow["test"] == "mann-whitney-u"
    assert slow["ratio"] == pytest.approx(1.5) and slow["speedup"] == pytest.approx(1 / 1.5)
    assert slow["energy_ratio"] == pytest.approx(1.5) and slow["energy_metric"] == "energy_mj_per_inf"
    same = cells["block", "cpu"]
    assert same["verdict"] == "not significant" and same["ratio"] == pytest.approx(1.0) and same["n_a"] == 200
    modeled = cells["dense", "fpga"]  # no samples, no test: never a p-value on a modeled figure
    assert modeled["verdict"] == DETERMINISTIC and modeled["p_value"] is None and modeled["speedup"] == 2.0
    assert [c["variant"] for c in doc["only_in_a"]] == ["gone"] and [c["variant"] for c in doc["only_in_b"]] == ["new"]
    s = doc["summary"]
    assert (s["matched"], s["significant"], s["b_slower"], s["deterministic"]) == (3, 1, 1, 1)
    assert set(s["geomean_speedup"]) == {"measured", "modeled"}  # kinds are never pooled


def test_compare_table_on_the_terminal(two_runs):
    r = invoke(*two_runs)
    assert r.exit_code == 0, r.output
    assert "1.50x slower" in r.stdout and "not significant" in r.stdout and DETERMINISTIC in r.stdout
    assert "only in A: m / gone / cpu" in r.stdout and "only in B: m / new / cpu" in r.stdout


def test_compare_across_targets_and_devices(tmp_path):
    phone = make_run(tmp_path / "phone", [row("m", "dense", "android-gpu", 8.0, device="pixel")])
    fpga = make_run(tmp_path / "fpga", [row("m", "dense", "fpga-sim", 2.0, latency_kind="modeled", device="zcu104")])
    r = invoke(phone, fpga)
    assert isinstance(r.exception, StoreError) and "no cells in common" in str(r.exception)
    doc = json.loads(invoke(phone, fpga, "--by", "model,variant", "--json").stdout)
    (c,) = doc["cells"]
    assert (c["target_a"], c["target_b"], c["speedup"], c["verdict"]) == ("android-gpu", "fpga-sim", 4.0, DETERMINISTIC)


def test_compare_errors_are_one_line(two_runs, tmp_path):
    a, b = two_runs
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / "manifest.json").write_text("{not json")
    bad_parquet = make_run(tmp_path / "badpq", [row("m", "dense", "cpu", 1.0)])
    (bad_parquet / "measurements.parquet").write_bytes(b"PAR1 garbage")
    cases = {tmp_path / "nowhere": "not a run directory", tmp_path / "corrupt": "corrupt manifest",
             bad_parquet: "measurements.parquet"}
    for path, msg in cases.items():
        exc = invoke(a, path).exception
        assert isinstance(exc, StoreError) and msg in str(exc) and "\n" not in str(exc), (path, exc)
    assert "--by" in str(invoke(a, b, "--by", "colour").exception)


# ---- report ---------------------------------------------------------------------------------------------------

STUDY_TOML = 'baseline_target = "phone"\n[campaign]\nname = "c"\n'


def make_study(path):
    """fpga: fp32 dense, int8 dense, int8 block 4x (MACs / 4), int4 block 4x (no int4 dense: fp32 is its baseline),
    plus the phone as the campaign's baseline target, a failed and a compiled-only cell; one cell never ran."""
    mj = dict(energy_kind="measured")
    rows = [
        row("m", "int8-block4x", "fpga", 2.0, scheme="block", sparsity=0.75, bits=8, precision="int8",
            macs_dense=100, macs_effective=25, energy_mj_per_inf=1.0, executed="int8", **mj),
        row("m", "dense", "fpga", 10.0, macs_dense=100, macs_effective=100, energy_mj_per_inf=5.0,
            gops_per_w=1.5, gops_per_w_dense=1.5, **mj),
        row("m", "int4-block4x", "fpga", 4.0, scheme="block", sparsity=0.75, bits=4, precision="int4",
            macs_dense=100, macs_effective=25, energy_mj_per_inf=2.0, executed="fp32", gops_per_w=2.0,
            gops_per_w_dense=8.0, warnings="int4 ran dequantized", **mj),
        row("m", "int8-dense", "fpga", 4.0, bits=8, precision="int8", macs_dense=100, macs_effective=100,
            energy_mj_per_inf=2.0, **mj),
        row("m", "dense", "phone", 20.0, energy_mj_per_inf=10.0, **mj),
        row("m", "int8-block4x", "phone", scheme="block", sparsity=0.75, bits=8, status="compiled",
            verified=False, message="no phone attached"),
        row("m", "int8-dense", "cpu", None, bits=8, precision="int8", status="failed", verified=None,
            message="boom"),
        row("a-first", "dense", "cpu", 1.0),
    ]
    return make_run(path, rows, toml=STUDY_TOML, planned=["never-ran"])


@pytest.fixture
def study(tmp_path):
    return make_study(tmp_path / "run")


def test_baseline_ratios_are_right(study):
    t = report.build(study).rows.set_index(["model", "variant", "target"])
    r = t.loc["m", "int8-block4x", "fpga"]
    assert r["baseline"] == "int8-dense"  # dense at the same bits, not fp32
    assert (r["speedup"], r["energy_saving"], r["mac_realization"]) == (2.0, 2.0, 0.5)  # 2x of a 4x MAC cut
    r4 = t.loc["m", "int4-block4x", "fpga"]  # no int4 dense: the fp32 dense
    assert (r4["baseline"], r4["speedup"], r4["mac_realization"]) == ("dense", 2.5, 2.5 / 4)
    q = t.loc["m", "int8-dense", "fpga"]
    assert (q["baseline"], q["speedup"], q["energy_saving"]) == ("dense", 2.5, 2.5)
    assert pd.isna(q["mac_realization"])  # not pruned
    d = t.loc["m", "dense", "fpga"]
    assert pd.isna(d["baseline"]) and pd.isna(d["speedup"])  # the fp32 dense is the baseline itself
    # the campaign's baseline_target: the same variant on the phone
    assert (d["baseline_target"], d["target_speedup"], d["target_energy_saving"]) == ("phone", 2.0, 2.0)
    assert pd.isna(r["target_speedup"])  # the phone's int8-block4x was not run


def test_report_layout(study):
    md = report.render(study, "md")
    lines = md.splitlines()
    assert lines[2] == "**incomplete run: 8 of 9 cells finished**"  # said first
    assert "- warnings: int4 ran dequantized" in md
    head = next(line for line in lines if line.startswith("| model"))
    cols = [c.strip() for c in head.strip("|").split("|")]
    for c in ("p90 ms", "CV", "run", "device", "warnings"):  # empty everywhere: hidden
        assert c not in cols, c
    assert cols.index("executed") == cols.index("bits") + 1
    assert cols.index("GOPS/W dense-eq") == cols.index("GOPS/W") + 1
    assert {"speedup", "energy saving", "MAC realization", "speedup vs base target", "baseline"} <= set(cols)
    body = [dict(zip(cols, (c.strip() for c in line.strip("|").split("|")), strict=True))
            for line in lines[lines.index(head) + 2:]]
    order = [(b["model"], b["variant"], b["target"]) for b in body]
    assert order == [("a-first", "dense", "cpu"), ("m", "dense", "fpga"), ("m", "dense", "phone"),
                     ("m", "int8-dense", "cpu"), ("m", "int8-dense", "fpga"), ("m", "int8-block4x", "fpga"),
                     ("m", "int8-block4x", "phone"), ("m", "int4-block4x", "fpga")]
    compiled = body[6]
    assert compiled["status"] == "not run" and compiled["verified"] == ""  # not "False": nothing was checked
    failed = body[3]
    assert (failed["status"], failed["bits"], failed["scheme"], failed["note"]) == ("failed", "8", "none", "boom")
    assert body[7]["executed"] == "fp32" and body[7]["GOPS/W dense-eq"] == "8"


def test_shared_note_is_stated_once(tmp_path):
    note = "no distribution: one deterministic figure"
    run = make_run(tmp_path / "r", [row("m", v, "sim", 1.0, latency_kind="modeled", latency_note=note, device="d0")
                                    for v in ("dense", "int8")])
    md = report.render(run, "md")
    assert md.count(note) == 1 and f"- note (every row): {note}" in md and "- device (every row): d0" in md
    assert "| note |" not in md and "incomplete" not in md


def test_older_files_without_the_new_columns(study):
    from bench import rows as row_model

    df = pd.read_parquet(study / "measurements.parquet").drop(columns=["executed", "gops_per_w_dense", "warnings"])
    row_model.write(df, study / "measurements.parquet")
    md = report.render(study, "md")
    assert "| executed |" not in md and "warnings:" not in md and "| speedup |" in md


def test_json_report(study):
    doc = json.loads(report.render(study, "json"))
    assert doc["incomplete"] == ["incomplete run: 8 of 9 cells finished"]
    assert doc["runs"][0]["baseline_target"] == "phone" and doc["runs"][0]["git_commit"] == "abc"
    r = next(r for r in doc["rows"] if r["variant"] == "int8-block4x" and r["target"] == "fpga")
    assert (r["speedup"], r["mac_realization"], r["baseline"], r["latency_kind"]) == (2.0, 0.5, "int8-dense", "measured")
    assert doc["columns"]["speedup"] == "speedup"


def test_runs_combined_into_one_report(study, tmp_path):
    other = make_run(tmp_path / "other", [row("m", "dense", "fpga", 8.0), row("m", "int8-dense", "fpga", 2.0, bits=8)])
    df = report.combine_runs([study, other])
    assert set(df["run"]) == {"c/run", "c/other"} and len(df) == 10
    md = report.render([study, other], "md")
    assert "| run |" in md and "c/run: incomplete run: 8 of 9 cells finished" in md
    t = report.build([study, other]).rows.set_index(["run", "variant", "target"])
    assert t.loc[("c/other", "int8-dense", "fpga"), "speedup"] == 4.0  # baselines stay inside their run
    assert t.loc[("c/run", "int8-dense", "fpga"), "speedup"] == 2.5


def test_html_fits_a_laptop_screen(study):
    page = report.render(study, "html")
    assert "<meta name='viewport' content='width=device-width, initial-scale=1'>" in page
    assert re.search(r"\.scroll\{[^}]*overflow:auto", page) and "<div class='scroll'><table" in page
    assert re.search(r"body\{[^}]*max-width:1400px", page) and "img{max-width:100%" in page
    assert "position:sticky" in page and "pre{white-space:pre-wrap" in page
    assert "<p class='banner'>incomplete run" in page


def test_terminal_summary_is_short(study):
    from rich.console import Console
    from rich.table import Table

    t = report.terminal_summary(report.read_measurements(study))
    assert list(t.columns) == ["model", "variant", "target", "status", "latency ms", "mJ/inf", "note"]
    assert {"10", "2", ""} <= set(t["latency ms"]) and t["note"].str.len().max() <= 24
    table = Table(*t.columns)
    for r in t.itertuples(index=False):
        table.add_row(*r)
    con = Console(width=100, record=True)
    con.print(table)
    assert max(len(line) for line in con.export_text().splitlines()) <= 100


def test_terminal_summary_names_the_kind(tmp_path):
    run = make_run(tmp_path / "r", [row("m", "dense", "sim", 2.5, latency_kind="simulated", accuracy=0.9)])
    t = report.terminal_summary(report.read_measurements(run))
    assert t.loc[0, "latency ms"] == "2.5 (sim)" and t.loc[0, "top-1"] == "90.0%"


def test_old_callers_still_work(study):
    t = report.summary_table(report.read_measurements(study))
    for c in ("model", "variant", "target", "status", "latency ms", "latency kind", "p50 95% CI", "CV", "MACs (M)"):
        assert c in t, c
    assert [p.name for p in report.write_reports(study)] == ["report.md", "report.csv", "report.html"]


# ---- plots ----------------------------------------------------------------------------------------------------

def _labels(ax, which="major") -> list[str]:
    ax.figure.canvas.draw()
    ticks = ax.yaxis.get_majorticklabels() if which == "major" else ax.yaxis.get_minorticklabels()
    return [t.get_text() for t in ticks if t.get_text()]


def test_log_axes_have_plain_labels():
    import matplotlib.pyplot as plt

    from bench.plots import plain_log_labels

    for lo, hi, want in ((0.5, 600, {"1", "10", "100"}), (0.55, 0.95, {"0.6", "0.8"}), (0.3, 4, {"0.5", "1", "2"}),
                         (2e-4, 0.05, {"0.001", "0.01"}), (50, 2e4, {"100", "1,000", "10,000"})):
        fig, ax = plt.subplots()
        ax.plot([0, 1], [lo, hi])
        ax.set_yscale("log")
        plain_log_labels(ax.yaxis)
        texts = _labels(ax) + _labels(ax, "minor")
        assert want <= set(texts), (lo, hi, texts)
        assert not any(re.search(r"10\^|\$|times|e[+-]", t) for t in texts), texts
        plt.close(fig)


def test_plots_have_units_ci_bars_and_plain_labels(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    from bench import plots

    rows = [row("m", "dense", "cpu", 600.0, energy_mj_per_inf=50.0, energy_mj_per_inf_ci=5.0, inf_per_j=10.0,
                gops_per_w=2.0, energy_kind="measured"),
            row("m", "dense", "fpga", 0.5, latency_kind="modeled", energy_mj_per_inf=0.4, energy_mj_per_inf_ci=None,
                inf_per_j=900.0, gops_per_w=300.0, energy_kind="modeled")]
    run = make_run(tmp_path / "r", rows, {"m-dense-cpu-": np.linspace(590, 610, 20)})
    figs = []
    monkeypatch.setattr(plots, "_save", lambda fig, d, name: figs.append(fig) or [name])
    assert plots.all_plots(run) == ["latency", "efficiency"]
    lat, eff = figs
    ax = lat.axes[0]
    assert ax.get_yscale() == "log" and ax.get_ylabel() == "latency per inference (ms)"
    texts = _labels(ax)
    assert {"1", "10", "100"} <= set(texts) and not any("$" in t for t in texts)
    ylabels = [a.get_ylabel() for a in eff.axes if a.get_ylabel()]
    assert any("mJ" in y for y in ylabels) and any("inferences/J" in y for y in ylabels)
    assert any("GOPS/W" in y for y in ylabels)
    energy_ax = next(a for a in eff.axes if "mJ" in a.get_ylabel())
    assert len(energy_ax.containers) == 1 + 2  # one CI bar (measured only) besides the two bars
    assert not any("$" in t for t in _labels(energy_ax))
    for f in figs:
        plt.close(f)



def test_the_light_command_keeps_the_comparison_defaults():
    from bench import compare, compare_cli

    assert (compare_cli.KEYS, compare_cli.ALPHA) == (compare.KEYS, compare.ALPHA)
