"""Bad input gets one clear line naming what is wrong; cells that worked are kept."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pandas as pd
import pytest
import torch

from bench import campaign
from pruning import zoo
from tests.conftest import JOULEBENCH, ROOT, run_cli, write_campaign


@pytest.mark.parametrize("body,expected", [
    ('[[models]]\nname = "resnet19"\n[[targets]]\nname = "host-cpu"\n', "models[0].name: unknown model 'resnet19'"),
    ('[[models]]\nname = "smallcnn-digits"\n[[targets]]\nname = "tpu-v9"\n', "targets[0].name: unknown target 'tpu-v9'"),
    ('[[models]]\nname = "smallcnn-digits"\n[[targets]]\nname = "host-cpu"\ntune_trials = -1\n',
     "targets[0]: host-cpu: option 'tune_trials'"),
    ('[[models]]\nname = "smallcnn-digits"\ncolour = "red"\n[[targets]]\nname = "host-cpu"\n', "models[0].colour: unknown key"),
    ('[[models]]\nname = "smallcnn-digits"\n', "targets: Field required"),
    ('[[models]]\nname = "smallcnn-digits"\npath = "x.onnx"\n[[targets]]\nname = "host-cpu"\n', "exactly one of"),
    ('[[models]\nname = "x"\n', "malformed TOML"),
    # checked before anything runs: a missing model file, unknown meters, bad meter options
    ('[[models]]\npath = "nowhere.onnx"\n[[targets]]\nname = "host-cpu"\n', "models[0].path: file not found"),
    ('[[models]]\nname = "smallcnn-digits"\ncheckpoint = "nope.pt"\n[[targets]]\nname = "host-cpu"\n',
     "models[0].checkpoint: file not found"),
    ('[[models]]\nname = "smallcnn-digits"\n[[targets]]\nname = "host-cpu"\nmeters = ["rapll"]\n',
     "targets[0].meters[0]: unknown meter 'rapll'"),
    ('[[models]]\nname = "smallcnn-digits"\n[[targets]]\nname = "host-cpu"\nmeters = [{name = "rapl", volts = 3}]\n',
     "targets[0].meters[0]: meter rapl: unknown option 'volts'"),
])
def test_invalid_campaigns_name_file_and_key(tmp_path, body, expected):
    f = write_campaign(tmp_path / "bad.toml", body)
    with pytest.raises(campaign.CampaignError) as e:
        campaign.load(f)
    msg = str(e.value)
    assert msg.startswith(f"{f}: ") and expected in msg and "\n" not in msg


def test_cli_reports_one_line_without_traceback(tmp_path):
    f = write_campaign(tmp_path / "bad.toml", '[[models]]\nname = "resnet19"\n[[targets]]\nname = "host-cpu"\n')
    r = run_cli("run", f)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and "unknown model 'resnet19'" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = run_cli("run", tmp_path / "missing.toml")
    assert r.returncode == 2 and "campaign file not found" in r.stderr
    r = run_cli("report", tmp_path)
    assert r.returncode == 2 and "not a joulebench run directory" in r.stderr


def test_failing_cells_are_recorded_and_good_ones_kept(tmp_path):
    (tmp_path / "broken.pt").write_bytes(b"not a state_dict")  # exists (so the campaign is valid), fails to load
    body = f"""
[[models]]
name = "smallcnn-digits"

[[models]]
name = "smallcnn-digits"
checkpoint = "{tmp_path / 'broken.pt'}"

[[targets]]
name = "torch-eager"

[[targets]]
name = "tests.plugins.faulty:PerturbedHostCPU"
"""
    f = write_campaign(tmp_path / "c.toml", body)
    r = run_cli("run", f, "--out", tmp_path / "run")
    assert r.returncode == 1, r.stderr  # some cells failed; the run itself completed
    df = pd.read_parquet(tmp_path / "run" / "measurements.parquet")
    assert len(df) == 4
    good = df[(df["target"] == "torch-eager") & (df["status"] == "ok")]
    assert len(good) == 1 and good["verified"].all() and (good["latency_ms_p50"] > 0).all()
    missing = df[df["message"].fillna("").str.contains("is not a loadable state_dict")]
    assert len(missing) == 2 and (missing["status"] == "failed").all()
    wrong = df[(df["target"] == "tests.plugins.faulty:PerturbedHostCPU") & ~df.index.isin(missing.index)]
    assert len(wrong) == 1
    w = wrong.iloc[0]
    assert w["status"] == "failed" and not w["verified"] and "output mismatch" in w["message"]
    assert w["max_abs_err"] == pytest.approx(1.0, rel=1e-3) and w["max_abs_err"] > w["tolerance"]
    assert pd.isna(w["latency_ms_p50"])  # a wrong artifact is never timed
    assert "output mismatch" in r.stderr and "Traceback" not in r.stderr


def test_byo_files_and_unsupported_pairs(tmp_path):
    m = zoo.build("smallcnn-digits")
    x = torch.zeros(1, 3, 32, 32)
    torch.onnx.export(torch.export.export(m, (x,)), (x,), str(tmp_path / "m.onnx"), dynamo=True)
    torch.export.save(torch.export.export(m, (x,)), tmp_path / "m.pt2")
    (tmp_path / "junk.pt2").write_bytes(b"not a zip")
    body = """
[[models]]
path = "m.onnx"
[[models]]
path = "m.pt2"
[[models]]
path = "junk.pt2"
[[targets]]
name = "host-cpu"
[[targets]]
name = "torch-eager"
"""
    f = write_campaign(tmp_path / "c.toml", body)
    run_cli("run", f, "--out", tmp_path / "run")
    df = pd.read_parquet(tmp_path / "run" / "measurements.parquet").set_index(["model", "target"])
    assert df.loc[("m", "host-cpu")].shape[0] == 2 and (df.loc[("m", "host-cpu")]["status"] == "ok").all()
    assert df.loc[("m", "torch-eager")]["status"].tolist().count("skipped") == 1  # the ONNX one
    assert df.loc[("m", "torch-eager")]["status"].tolist().count("ok") == 1  # the .pt2 one
    junk = df.loc[("junk", "host-cpu")]
    assert junk["status"] == "failed" and "not a torch.export program" in junk["message"]


def test_interrupt_keeps_finished_cells(tmp_path):
    body = """
[[models]]
name = "smallcnn-digits"
[[targets]]
name = "torch-eager"
[[targets]]
name = "torch-eager"
threads = 1
"""
    slow = "\n[protocol]\nwarmup_runs = 1\nwarmup_s = 0\nmin_runs = 5\nmin_duration_s = 5\nrepeats = 1\n"
    f = write_campaign(tmp_path / "c.toml", body, protocol=slow)
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # a background job of a non-interactive shell starts with SIGINT ignored, and Python then installs no
    # KeyboardInterrupt handler: give the child the default disposition, as a terminal would
    proc = subprocess.Popen([str(JOULEBENCH), "run", str(f), "--out", str(out)], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not list((out / "cells").glob("*.json")):
        time.sleep(0.2)
    # lands in the second cell's 5 s timed window. CI once saw a run finish with 0 after one SIGINT (not
    # reproduced here in a few dozen tries, loaded or not): a user presses Ctrl-C again, and so does the test
    for _ in range(5):
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=3)
            break
        except subprocess.TimeoutExpired:
            continue
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "--resume" in err and "Traceback" not in err
    df = pd.read_parquet(out / "measurements.parquet")
    assert len(df) == 1 and df.iloc[0]["status"] == "ok"  # the finished cell survived, intact
    assert df.iloc[0]["latency_ms_p50"] > 0
    # and --resume finishes the rest without redoing it
    r = run_cli("run", f, "--out", out, "--resume", check=True)
    assert "1 cells already finished were kept" in r.stdout
    assert len(pd.read_parquet(out / "measurements.parquet")) == 2


def test_benchmark_scripts_reject_an_unknown_model_before_building(capsys):
    from bench.benchmarks import depthwise_planes, int8_codes, sparse_speedup

    for script in (sparse_speedup, int8_codes, depthwise_planes):
        with pytest.raises(SystemExit) as exc:
            script.main(["--models", "resnet18-cifar,resnet99"])
        assert exc.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert "unknown model 'resnet99'" in err and "resnet18-cifar" in err
