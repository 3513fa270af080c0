"""The real CLI end to end on a small campaign: Parquet schema and values, reports, plots, resume."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from bench.store import COLUMNS
from tests.conftest import run_cli, write_campaign
from tests.test_zoo import small_cnn_macs

CAMPAIGN = """
[[models]]
name = "smallcnn-digits"

[[targets]]
name = "host-cpu"

[[targets]]
name = "torch-eager"

[[targets]]
name = "onnxruntime"
"""


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("e2e")
    camp = write_campaign(d / "c.toml", CAMPAIGN, name="e2e")
    r = run_cli("run", camp, "--out", d / "run", check=True)
    assert "report:" in r.stdout
    return d / "run"


def test_parquet_schema_and_values(run_dir):
    df = pd.read_parquet(run_dir / "measurements.parquet")
    assert set(COLUMNS) <= set(df.columns)
    assert sorted(df["target"]) == ["host-cpu", "onnxruntime", "torch-eager"]
    assert (df["status"] == "ok").all() and df["verified"].all()
    assert (df["max_abs_err"] <= df["tolerance"]).all()
    assert (df["latency_ms_p50"] > 0).all()
    assert (df["latency_ms_p50"] <= df["latency_ms_p90"]).all() and (df["latency_ms_p90"] <= df["latency_ms_p99"]).all()
    assert (df["latency_ms_ci_low"] <= df["latency_ms_p50"]).all() and (df["latency_ms_p50"] <= df["latency_ms_ci_high"]).all()
    assert (df["macs_dense"] == small_cnn_macs()).all() and (df["macs_effective"] == small_cnn_macs()).all()
    assert (df["macs_masked"] == small_cnn_macs()).all()
    assert (df["params"] == 295_978).all()
    prov = dict(zip(df["target"], df["provenance"], strict=True))
    assert prov == {"host-cpu": "measured:tvm.time_evaluator", "torch-eager": "measured:perf_counter",
                    "onnxruntime": "measured:perf_counter"}
    samples = pd.read_parquet(run_dir / "samples.parquet")
    # raw samples kept: 2 repeats x at least 5 runs per cell, and the median recomputes from them
    for cid, p50 in zip(df["cell_id"], df["latency_ms_p50"], strict=True):
        s = samples[samples["cell_id"] == cid]["latency_ms"]
        assert len(s) >= 10 and s.median() == pytest.approx(p50)


def test_manifest_and_artifact_records(run_dir):
    m = json.loads((run_dir / "manifest.json").read_text())
    assert m["campaign"] == "e2e" and len(m["cells"]) == 3 and m["versions"]["apache-tvm"] == "0.27.0.post1"
    assert m["host"]["cores"] >= 1 and "finished_at" in m
    cells = [json.loads(p.read_text()) for p in (run_dir / "cells").glob("*.json")]
    tvm_cell = next(c for c in cells if c["row"]["target"] == "host-cpu")
    am = tvm_cell["artifact_manifest"]
    assert am["tvm_target"].startswith('{"kind":"llvm"') and am["kernels"], am
    assert (run_dir.parent / "run").exists()


def test_report_formats_and_plots(run_dir):
    md = run_cli("report", run_dir, check=True).stdout
    assert "| model | variant | target |" in md and "measured:tvm.time_evaluator" in md
    csv = run_cli("report", run_dir, "--format", "csv", check=True).stdout
    assert pd.read_csv(__import__("io").StringIO(csv))["latency_ms_p50"].gt(0).all()
    html_out = run_dir / "r.html"
    run_cli("report", run_dir, "-f", "html", "-o", html_out, check=True)
    page = html_out.read_text()
    assert page.count("data:image/png;base64,") >= 1 and "<table" in page
    r = run_cli("plot", run_dir, check=True)
    assert (run_dir / "plots" / "latency.png").stat().st_size > 10_000
    assert (run_dir / "plots" / "latency.svg").read_text().lstrip().startswith("<?xml")
    assert "latency.png" in r.stdout
    bad = run_cli("report", run_dir, "-f", "pdf")
    assert bad.returncode == 2 and "md, csv, html, json" in bad.stderr


def test_resume_skips_finished_cells(run_dir):
    before = pd.read_parquet(run_dir / "measurements.parquet")
    camp = run_dir.parent / "c.toml"
    r = run_cli("run", camp, "--out", run_dir, "--resume", check=True)
    assert "3 cells already finished were kept" in r.stdout
    after = pd.read_parquet(run_dir / "measurements.parquet")
    pd.testing.assert_frame_equal(before.sort_values("cell_id").reset_index(drop=True),
                                  after.sort_values("cell_id").reset_index(drop=True))


def test_models_and_targets_listings():
    models = run_cli("models", check=True).stdout
    assert "resnet18-imagenet" in models and "1,814.1" in models and "11.69" in models
    t = run_cli("targets", check=True).stdout
    assert "host-cpu" in t and "onnxruntime" in t and "torch-eager" in t
    for cmd in ("run", "report", "plot", "models", "targets"):
        assert "Example" in run_cli(cmd, "--help", check=True).stdout
