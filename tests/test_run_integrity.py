"""Runs a user can trust: one writer per run directory, no silent re-runs or orphaned cells, checks
before anything runs (with 'did you mean'), warnings, what was executed, and a scriptable CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from bench import campaign as campaign_mod
from bench.campaign import CampaignError
from bench.cell_warnings import cell_warnings
from bench.runlock import RunLock
from bench.runner import RunError, Runner
from tests.conftest import ROOT, run_cli, write_campaign

ONE = '[[models]]\nname = "smallcnn-digits"\n[[targets]]\nname = "torch-eager"\n'
TWO = ONE + '[[compression]]\nname = "dense"\n[[compression]]\nscheme = "block"\nsparsity = 0.5\nblock = "4x4"\n'


def _run(tmp_path: Path, body: str = ONE, out: str = "run", **kw):
    camp = campaign_mod.load(write_campaign(tmp_path / "c.toml", body))
    return Runner(camp, tmp_path / out).run(**kw)


# ---- one writer per run directory -------------------------------------------------------------------------------

HOLDER = """
import sys, time
from pathlib import Path
from bench.runlock import RunLock
RunLock(Path(sys.argv[1])).acquire()
print("held", flush=True)
time.sleep(120)
"""


def test_a_second_run_into_a_held_directory_is_refused_naming_the_holder(tmp_path):
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdout=subprocess.PIPE, text=True,
                              cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunError, match=rf"in use by another joulebench run \(PID {holder.pid} on host .*started"):
            _run(tmp_path)
        assert not (out / "manifest.json").exists()  # nothing was written
        holder.send_signal(signal.SIGKILL)  # a crashed run: the kernel drops its flock, the file stays
        holder.wait()
        assert (out / ".lock").exists()
        msgs = []
        camp = campaign_mod.load(tmp_path / "c.toml")
        summary = Runner(camp, out, msgs.append).run()
        assert summary.ran == 1 and any(f"took over a stale lock of PID {holder.pid}" in m for m in msgs)
        assert not (out / ".lock").exists()  # released after the run
    finally:
        holder.kill()
        holder.wait()


def test_lock_is_exclusive_in_one_process_too(tmp_path):
    with RunLock(tmp_path) as first:
        assert first.stale is None
        with pytest.raises(Exception, match="in use by another joulebench run"):
            RunLock(tmp_path).acquire()
    RunLock(tmp_path).acquire().release()  # free again


# ---- no silent re-runs, no orphans ------------------------------------------------------------------------------

def test_rerun_needs_resume_or_force_and_resume_needs_the_same_campaign(tmp_path):
    _run(tmp_path, TWO)
    out = tmp_path / "run"
    before = {f.name: f.stat().st_mtime_ns for f in (out / "cells").iterdir()}
    with pytest.raises(RunError, match="already holds a run of campaign 't'.*2 cells.*--resume.*--force"):
        _run(tmp_path, TWO)
    changed = TWO.replace("sparsity = 0.5", "sparsity = 0.6")
    with pytest.raises(RunError, match="holds a run of another campaign"):
        _run(tmp_path, changed, resume=True)
    assert {f.name: f.stat().st_mtime_ns for f in (out / "cells").iterdir()} == before  # nothing re-measured
    assert _run(tmp_path, TWO, resume=True).skipped_done == 2
    # --force starts afresh: the old campaign's cells are deleted, not left behind next to the new ones
    summary = _run(tmp_path, changed, fresh=True)
    assert summary.ran == 2 and summary.skipped_done == 0
    ids = {c.id for c in campaign_mod.load(tmp_path / "c.toml").cells()}
    assert {f.stem for f in (out / "cells").iterdir()} == ids
    assert set(pd.read_parquet(out / "measurements.parquet")["cell_id"]) == ids


def test_cli_refusal_is_one_line_and_exit_2(tmp_path):
    f = write_campaign(tmp_path / "c.toml", ONE)
    run_cli("run", f, "--out", tmp_path / "run", check=True)
    r = run_cli("run", f, "--out", tmp_path / "run")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--resume" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("run", f, "--out", tmp_path / "run", "--resume", "--force")
    assert r.returncode == 2 and "give one of the two" in r.stderr


# ---- checks before running --------------------------------------------------------------------------------------

@pytest.mark.parametrize("body, expected", [
    ('[[model]]\nname = "smallcnn-digits"\n[[targets]]\nname = "torch-eager"\n',
     "model: unknown key (did you mean 'models'?)"),
    (ONE.replace('name = "torch-eager"', 'name = "torch-eagre"'), "did you mean 'torch-eager'?"),
    (ONE.replace('name = "smallcnn-digits"', 'name = "smallcnn-digit"'), "did you mean 'smallcnn-digits'?"),
    (ONE + 'meters = ["rapll"]\n', "unknown meter 'rapll' (did you mean 'rapl'?)"),
    (ONE + 'meters = [{name = "rapl", zonee = "x"}]\n', "unknown option 'zonee'"),
    (ONE.replace('name = "torch-eager"', 'name = "host-cpu"\ntune_trial = 3'),
     "option 'tune_trial': unknown option (did you mean 'tune_trials'?)"),
    (ONE + '[[compression]]\nsparsty = 0.5\n', "compression[0].sparsty: unknown key (did you mean 'sparsity'?)"),
    (ONE + '[[compression]]\nsparsity = 0.5\n', "compression[0].sparsity: ignored: scheme = 'none' prunes nothing"),
    (ONE + '[[compression]]\nscheme = "unstructured"\nsparsity = 0.5\nblock = "4x4"\n',
     "compression[0].block: ignored: only scheme = 'block' has blocks"),
    (ONE + '[[compression]]\nact_bits = 16\n', "compression[0].act_bits: ignored: bits = 32 quantizes nothing"),
    (ONE + '[[compression]]\nscheme = "block"\nsparsity = 0.5\nper_layer = {"features.4" = 0.5, fc2 = 0.2}\n',
     "per_layer: 'fc2' is no layer of smallcnn-digits (models[0]) (did you mean 'fc'?)"),
    (ONE + '[[compression]]\nscheme = "block"\nsparsity = 0.5\nfinetune_epochs = 1\ndata = "/no/such/data"\n',
     "compression[0].data: dataset path not found: /no/such/data"),
    (ONE + '[[compression]]\nbits = 8\n[[compression]]\nbits = 8\n', "compression[1]: same compression as compression[0]"),
    (ONE + '[[compression]]\nname = "x"\nbits = 8\n[[compression]]\nname = "x"\nbits = 4\n',
     "compression[1].name: 'x' is also compression[0]'s label"),
    (ONE + '[[targets]]\nname = "android-cpu"\ndevice = "adb:SERIAL"\n',
     "targets[1]: android-cpu: option tvm_rpc must name the tvm_rpc binary"),
    (ONE + '[[compression]]\nprecision = "fp16"\n[[targets]]\nname = "android-gpu"\nprofile = "adreno-texture"\n',
     "targets[1]: android-gpu: profile 'adreno-texture' cannot build fp16 variants (fp16)"),
    ('baseline_target = "onnxruntme"\n' + ONE, "baseline_target: 'onnxruntme' is not one of this campaign's targets"),
    ('[[models]]\nvariant = "no/such/dir"\n[[targets]]\nname = "torch-eager"\n', "models[0].variant: not a variant"),
])
def test_mistakes_are_caught_before_anything_runs(tmp_path, body, expected):
    f = write_campaign(tmp_path / "c.toml", body)
    with pytest.raises(CampaignError) as err:
        campaign_mod.load(f)
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_labels_are_unique_when_entries_differ_in_method_only(tmp_path):
    body = ONE + ('[[compression]]\nscheme = "block"\nsparsity = 0.5\nblock = "4x4"\n'
                  '[[compression]]\nscheme = "block"\nsparsity = 0.5\nblock = "4x4"\nmethod = "iterative"\nrounds = 2\n')
    camp = campaign_mod.load(write_campaign(tmp_path / "c.toml", body))
    labels = [c.variant_label for c in camp.cells()]
    assert labels == ["block4x4-s0.5", "block4x4-s0.5-method=iterative-rounds=2"]


def test_dry_run_lists_cells_and_runs_nothing(tmp_path):
    f = write_campaign(tmp_path / "c.toml", TWO)
    r = run_cli("run", f, "--out", tmp_path / "run", "--dry-run", "--json", check=True)
    doc = json.loads(r.stdout)
    assert [c["variant"] for c in doc["cells"]] == ["dense", "block4x4-s0.5"] and not (tmp_path / "run").exists()


# ---- warnings, what was executed, artifacts ---------------------------------------------------------------------

def test_warnings_are_stored_in_rows_and_in_the_run(tmp_path):
    _run(tmp_path, TWO)
    out = tmp_path / "run"
    df = pd.read_parquet(out / "measurements.parquet")
    pruned = df[df["variant"] == "block4x4-s0.5"].iloc[0]
    assert "never trained" in pruned["warnings"] and "at chance" not in pruned["warnings"]  # said once, not twice
    stored = json.loads((out / "warnings.json").read_text())
    assert any("never trained" in w for w in stored[pruned["cell_id"]])
    # a baseline that runs the variant as a float graph says so; GOPS/W needs energy, which this host lacks
    assert set(df["executed"]) == {"fp32"}
    links = list((out / "artifacts").iterdir())
    assert len(links) == 2 and all((p / "manifest.json").is_file() for p in links)


def test_cell_warnings_rules():
    row = {"model": "m", "variant": "v", "target": "t", "accuracy": 0.9, "latency_cv": 0.02}
    trained = {"source": "zoo", "checkpoint": "ck.pt", "layers": [{"layer": "a", "achieved_sparsity": 0.5}]}
    assert cell_warnings(row, trained, False, 10) == []
    out = cell_warnings({**row, "accuracy": 0.12, "latency_cv": 0.25},
                        {**trained, "layers": [{"layer": "fc", "achieved_sparsity": 1.0}]}, True, 10)
    assert [w.split(":")[0] for w in out] == ["m / v", "m / v", "t", "t"]
    assert "at chance" in out[0] and "fc pruned to 100%" in out[1] and "CV 25% > 10%" in out[2] and "snapshot" in out[3]
    assert "never trained" in cell_warnings(row, {"source": "zoo", "compression": {"finetune_epochs": 0}}, False, 10)[0]


def test_gops_per_w_on_dense_equivalent_work():
    from bench.api import Estimate, Figure, Measurement
    from bench.runner import _figure_columns

    m = Measurement(status="ok", verified=True, max_abs_err=0.0, tolerance=0.0, estimate=Estimate(Figure(1e-3, "modeled:x@1"), Figure(2e-3, "modeled:x@1")))
    cols = _figure_columns(m, macs=1_000_000, macs_dense=8_000_000)
    assert cols["gops_per_w"] == pytest.approx(2 * 1e6 * 1e-9 / 2e-3)
    assert cols["gops_per_w_dense"] == pytest.approx(8 * cols["gops_per_w"])


def test_executed_precision_of_tvm_artifacts():
    from targets.tvm.lowering import executed_precision

    assert executed_precision(None, {"lowering": "joulebench", "lowered_layers": [{"dtype": "int8"}]}) == "int8"
    assert executed_precision(None, {"lowering": "tvm (fp16)"}) == "fp16"
    assert executed_precision(None, {"lowering": "tvm"}) == "fp32"


# ---- scriptable -------------------------------------------------------------------------------------------------

def test_version_help_and_json_listings(tmp_path):
    assert run_cli("--version", check=True).stdout.startswith("joulebench ")
    assert "Usage" in run_cli("-h", check=True).stdout
    targets = json.loads(run_cli("targets", "--json", check=True).stdout)
    assert {"torch-eager", "fpga-sim"} <= {t["target"] for t in targets}
    assert {m["meter"] for m in json.loads(run_cli("meters", "--json", check=True).stdout)} >= {"rapl"}


def test_models_listing_is_cached_without_importing_torch():
    code = ("import sys; from typer.testing import CliRunner; from bench.cli import app; "
            "r = CliRunner().invoke(app, ['models', '--json']); assert r.exit_code == 0, r.output; "
            "rows = __import__('json').loads(r.output); print(len(rows), 'torch' in sys.modules)")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    first = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    second = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    n = int(first.stdout.split()[0])
    assert n >= 5 and second.stdout.split() == [str(n), "False"]  # the second call never imports torch


def test_run_json_report_formats_latest_and_quiet(tmp_path):
    f = write_campaign(tmp_path / "c.toml", ONE, name="mine")
    r = run_cli("-q", "run", f, "--results-root", tmp_path / "results", "--json", check=True)
    doc = json.loads(r.stdout)  # stdout is the JSON document only
    assert doc["cells"][0]["status"] == "ok" and doc["cells"][0]["model"] == "smallcnn-digits"
    folder = tmp_path / "results" / "mine"
    assert (folder / "latest").resolve() == Path(doc["out"]).resolve()
    r = run_cli("report", folder, "-o", tmp_path / "R.HTML", check=True)
    assert (tmp_path / "R.HTML").read_text().lstrip().lower().startswith("<!doctype html")
    rep = json.loads(run_cli("report", folder, "--json", check=True).stdout)
    assert [r["model"] for r in rep["rows"]] == ["smallcnn-digits"]
    assert run_cli("-q", "report", folder, "-o", tmp_path / "r.md", check=True).stdout == ""
    bad = tmp_path / "not-a-run"
    bad.mkdir()
    (bad / "manifest.json").write_text("{oops")
    r = run_cli("report", bad)
    assert r.returncode == 2 and "corrupt manifest" in r.stderr and r.stderr.count("\n") == 1


def test_log_gets_one_line_per_finished_cell(tmp_path):
    f = write_campaign(tmp_path / "c.toml", TWO)
    r = run_cli("run", f, "--out", tmp_path / "run", check=True)  # stdout is a pipe here, not a terminal
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("[")]
    assert lines[0].startswith("[1/2] ok  smallcnn-digits / dense / torch-eager") and lines[1].startswith("[2/2] ok")
    assert all(len(ln) <= 100 for ln in r.stdout.splitlines() if ln.startswith(("┃", "│", "┏", "└")))


def test_a_compressed_variant_directory_runs_in_a_campaign(tmp_path):
    r = run_cli("compress", "--model", "smallcnn-digits", "--scheme", "block", "--sparsity", "0.5", "--block", "4x4",
                "--out", tmp_path / "variants", check=True)
    vdir = next((tmp_path / "variants").iterdir())
    assert str(vdir.name) in r.stdout.replace("\n", "")
    f = write_campaign(tmp_path / "c.toml", f'[[models]]\nvariant = "{vdir}"\n[[targets]]\nname = "torch-eager"\n')
    camp = campaign_mod.load(f)
    assert [c.variant_label for c in camp.cells()] == ["block4x4-s0.5"]
    Runner(camp, tmp_path / "run").run()
    row = pd.read_parquet(tmp_path / "run" / "measurements.parquet").iloc[0]
    assert row["status"] == "ok" and row["verified"] and row["variant"] == "block4x4-s0.5"
    assert row["sparsity"] == 0.5 and row["model"] == "smallcnn-digits"

