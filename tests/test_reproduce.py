"""`joulebench reproduce mobile-vs-fpga`: the matrix by construction, findings computed from the data (every
verdict reachable), figures whose CSV data are the rows they came from, provenance never upgraded, one-line
errors, and a small real run through the campaign runner (cached on the second run)."""

from __future__ import annotations

import json
import time

import pandas as pd
import pytest

from bench.reproduce import figures, findings, matrix, study
from bench.reproduce.findings import CLAIMS, FAILS, HOLDS, NA
from tests.conftest import run_cli

ADRENO = {"target": "android-gpu-model", "device": "modeled Adreno 650 (Snapdragon 865)"}
MALI = {"target": "android-gpu-model", "device": "modeled Mali-G78 MP14 (Exynos 2100)"}
ZCU = {"target": "fpga-sim", "device": "fpga-sim:zcu104", "board": "zcu104", "array": "8x8"}
GPU_PROV, FPGA_LAT, FPGA_E = "modeled:mobile-gpu@1", "modeled:fpga-latency@1", "modeled:fpga-power@1"
BITS = {"fp32": (32, "fp32"), "fp16": (16, "fp16"), "int16": (16, "int16"), "int8": (8, "int8"),
        "int4": (4, "int4"), "ternary": (2, "int2"), "binary": (1, "int1")}


def row(dev: dict, prec: str, level: str = "dense", energy: float = 1.0, latency: float = 1.0,
        acc: float | None = 0.9, **kw) -> dict:
    bits, precision = BITS[prec]
    sparsity = matrix.PRUNING[level]
    gpu = dev["target"].startswith("android")
    r = {"campaign": "t", "model": "m", "variant": f"{level}-{prec}", "scheme": "block" if sparsity else "none",
         "sparsity": sparsity, "bits": bits, "precision": precision, "status": "ok", "latency_ms": latency,
         "latency_kind": "modeled", "latency_provenance": GPU_PROV if gpu else FPGA_LAT,
         "energy_mj_per_inf": energy, "energy_kind": "modeled", "energy_provenance": GPU_PROV if gpu else FPGA_E,
         "macs_effective": 1_000_000, "accuracy": acc, "accuracy_dataset": "digits", **dev, **kw}
    r["cell_id"] = f"{r['variant']}@{r['device']}"
    return r


def base_rows() -> list[dict]:
    """The study's shape: GPUs ahead at 8/16 bit, the FPGA ahead at ternary/binary only, low-bit variants
    losing accuracy, pruning faster and cheaper on both."""
    return [
        row(ADRENO, "fp32", energy=2.0, latency=2.0, acc=0.95), row(ADRENO, "fp16", energy=1.0, latency=1.5, acc=0.95),
        row(MALI, "fp16", energy=1.5, latency=3.0, acc=0.95),
        row(ADRENO, "fp32", "8x", energy=0.5, latency=0.5, acc=0.93),
        row(ZCU, "int8", energy=3.0, latency=5.0, acc=0.94), row(ZCU, "int16", energy=4.0, latency=6.0, acc=0.95),
        row(ZCU, "ternary", energy=0.8, latency=4.0, acc=0.80), row(ZCU, "binary", energy=0.6, latency=3.5, acc=0.60),
        row(ZCU, "int8", "8x", energy=0.9, latency=1.0, acc=0.92),
    ]


def verdicts(rows: list[dict]) -> dict[str, str]:
    t = findings.findings(pd.DataFrame(rows))
    assert list(t["claim"]) == list(CLAIMS)
    return dict(zip(t["claim"], t["verdict"], strict=True))


def test_the_studys_shape_holds_with_the_numbers_behind_each_verdict():
    t = findings.findings(pd.DataFrame(base_rows())).set_index("claim")
    assert set(t["verdict"]) == {HOLDS}
    c1 = json.loads(t.loc[CLAIMS[0], "numbers"])
    assert [c["level"] for c in c1] == ["dense", "8x"] and c1[1]["gpu_over_fpga"] == 1.8
    assert c1[:1] == [{"model": "m", "level": "dense", "gpu_over_fpga": 3.0,  # best GPU 1000 inf/J vs int8 333 inf/J
                   "gpu": {"inf_per_j": 1000.0, "device": "Adreno 650", "precision": "fp16", "kind": "modeled"},
                   "fpga": {"inf_per_j": 333.3333, "device": "zcu104 8x8", "precision": "int8", "kind": "modeled"}}]
    assert "1000 inf/J (Adreno 650, fp16, modeled)" in t.loc[CLAIMS[0], "evidence"]
    c2 = json.loads(t.loc[CLAIMS[1], "numbers"])[0]
    assert c2["fpga_ahead_at"] == ["ternary", "binary"] and c2["fpga_binary"]["inf_per_j"] == pytest.approx(1666.6667)
    c3 = {c["precision"]: c for c in json.loads(t.loc[CLAIMS[2], "numbers"])}
    assert c3["binary"]["drop_pp"] == 35.0 and c3["ternary"]["drop_pp"] == 15.0 and c3["binary"]["float"] == "fp32"
    c4 = {c["class"]: c for c in json.loads(t.loc[CLAIMS[3], "numbers"])}
    assert c4["mobile GPU"]["median_speedup"] == 4.0 and c4["mobile GPU"]["median_energy_saving"] == 4.0
    assert c4["FPGA"]["median_speedup"] == 5.0 and c4["FPGA"]["median_energy_saving"] == pytest.approx(3.3333)
    assert t.loc[CLAIMS[3], "kinds"] == "modeled"


def test_each_verdict_flips_with_the_data():
    rows = base_rows()
    # the FPGA at int8 beats every GPU -> the GPU claim and "only at low bits" both fail
    faster = [dict(r, energy_mj_per_inf=0.1) if r["variant"] == "dense-int8" else r for r in rows]
    v = verdicts(faster)
    assert v[CLAIMS[0]] == FAILS and v[CLAIMS[1]] == FAILS
    # binary as accurate as fp32: not every low-bit variant loses
    v = verdicts([dict(r, accuracy=0.95) if r["variant"] == "dense-binary" else r for r in rows])
    assert v[CLAIMS[2]] == FAILS and v[CLAIMS[0]] == HOLDS
    # pruning slower on the FPGA
    v = verdicts([dict(r, latency_ms=9.0) if r["variant"] == "8x-int8" else r for r in rows])
    assert v[CLAIMS[3]] == FAILS


def test_not_measurable_when_the_rows_behind_a_claim_are_missing():
    rows = base_rows()
    no_low = [r for r in rows if r["precision"] not in ("int1", "int2")]  # no FPGA binary/ternary rows
    v = verdicts(no_low)
    assert v[CLAIMS[1]] == NA and v[CLAIMS[2]] == NA and v[CLAIMS[0]] == HOLDS
    v = verdicts([r for r in rows if r["bits"] not in (8, 16) or r["target"] != "fpga-sim"])
    assert v[CLAIMS[0]] == NA
    v = verdicts([r for r in rows if not (r["target"].startswith("android") and r["sparsity"])])
    assert v[CLAIMS[3]] == NA
    v = verdicts([dict(r, accuracy=None) for r in rows])
    assert v[CLAIMS[2]] == NA
    # failed cells and rows without energy count for nothing
    v = verdicts([dict(r, status="failed") if r["target"] == "fpga-sim" else r for r in rows])
    assert v[CLAIMS[0]] == NA and v[CLAIMS[3]] == NA


def test_measured_rows_replace_modeled_ones_and_provenance_is_never_upgraded():
    rows = base_rows()
    phone = {"target": "android-gpu", "device": "adb:PIXEL"}
    measured = row(phone, "fp16", energy=5.0, latency=4.0, latency_kind="measured",
                   latency_provenance="measured:perf_counter", energy_kind="measured",
                   energy_provenance="measured:android-battery")
    t = findings.findings(pd.DataFrame([*rows, measured])).set_index("claim")
    c1 = json.loads(t.loc[CLAIMS[0], "numbers"])[0]
    assert c1["gpu"] == {"inf_per_j": 200.0, "device": "android-gpu adb:PIXEL", "precision": "fp16", "kind": "measured"}
    assert t.loc[CLAIMS[0], "verdict"] == FAILS  # measured 200 inf/J < modeled FPGA int8 333 inf/J
    assert t.loc[CLAIMS[0], "kinds"] == "measured, modeled"
    # a row whose kind column says measured but whose provenance says modeled stays modeled
    liar = dict(row(ZCU, "int4", energy=2.0), energy_kind="measured", latency_kind="measured")
    df = study.frame(pd.DataFrame([*rows, liar]))
    assert df.set_index("cell_id").loc[liar["cell_id"], ["energy_kind_s", "latency_kind_s"]].tolist() == \
        ["modeled", "modeled"]
    assert study.weakest("measured", "simulated") == "simulated" and study.weakest("measured", None) is None


def test_figures_plot_exactly_the_rows_with_their_kinds(tmp_path):
    rows = base_rows()
    phone = {"target": "android-gpu", "device": "adb:PIXEL"}
    rows.append(row(phone, "fp16", energy=5.0, latency=4.0, acc=0.95, latency_kind="measured",
                    latency_provenance="measured:perf_counter", energy_kind="measured",
                    energy_provenance="measured:android-battery"))
    rows.append(dict(row(ZCU, "int4", energy=2.0), energy_kind="measured"))  # provenance: modeled
    rows.append(dict(row(ZCU, "int16", "8x", energy=9.0), status="failed"))  # not plotted
    df = study.frame(pd.DataFrame(rows))
    paths = figures.all_figures(df, tmp_path)
    names = {p.name for p in paths}
    for fig in ("efficiency", "pruning", "accuracy_energy"):
        assert {f"{fig}.png", f"{fig}.svg", f"{fig}.csv"} <= names
        assert (tmp_path / "plots" / f"{fig}.svg").read_text().lstrip().startswith("<?xml")
    src = pd.DataFrame(rows).set_index("cell_id")
    eff = pd.read_csv(tmp_path / "plots" / "efficiency.csv").set_index("cell_id")
    ok = src[src["status"] == "ok"]
    assert sorted(eff.index) == sorted(ok.index)
    assert eff["inf_per_j_active"].to_dict() == pytest.approx((1e3 / ok["energy_mj_per_inf"]).to_dict())
    assert eff["gops_per_w_active"].to_dict() == pytest.approx(
        (2 * ok["macs_effective"] * 1e-9 / (ok["energy_mj_per_inf"] * 1e-3)).to_dict())
    # the kind plotted is the one the provenance gives: only the phone's row is measured
    assert eff.index[eff["kind"] == "measured"].tolist() == ["dense-fp16@adb:PIXEL"]
    assert all(p.startswith(k + ":") for k, p in zip(eff["kind"], eff["energy_provenance"], strict=True))
    pr = pd.read_csv(tmp_path / "plots" / "pruning.csv")
    assert sorted(zip(pr["device"], pr["precision"], pr["speedup"], pr["energy_saving"], pr["kind"], strict=True)) == \
        [("Adreno 650", "fp32", 4.0, 4.0, "modeled"), ("zcu104 8x8", "int8", 5.0, pytest.approx(3.3333, 1e-3),
                                                       "modeled")]
    acc = pd.read_csv(tmp_path / "plots" / "accuracy_energy.csv").set_index("cell_id")
    assert acc["accuracy"].to_dict() == ok["accuracy"].to_dict()
    # Pareto: the cheapest point (0.5 mJ, 93 %) and the most accurate one at the least energy (1 mJ, 95 %);
    # every other point has one at most as costly and at least as accurate
    front = set(acc.index[acc["pareto"]])
    assert front == {"8x-fp32@modeled Adreno 650 (Snapdragon 865)", "dense-fp16@modeled Adreno 650 (Snapdragon 865)"}
    for cid, p in acc[~acc["pareto"]].iterrows():
        assert ((acc["energy_mj"] <= p["energy_mj"]) & (acc["accuracy"] >= p["accuracy"]) & (acc.index != cid)).any()


def test_the_matrix_never_generates_a_cell_that_cannot_run(tmp_path):
    from bench import campaign as campaign_mod

    rpc = tmp_path / "tvm_rpc"  # a phone target with a device must name its tvm_rpc (checked when the campaign loads)
    rpc.write_text("")
    s = matrix.study("mobile-vs-fpga", devices=[f"android-gpu=adb:SERIAL1,tvm_rpc={rpc}",
                                                "fpga-pynq=tcp:10.0.0.2:7000,board=pynq-z2"])

    def fits(target, precision):  # stands in for synthesis: int16 does not fit the Ultra96-V2
        return "DSP 512 needed, 360 available" if (target.get("board"), precision) == ("ultra96-v2", "int16") else None

    docs, left_out = matrix.campaigns(s, matrix.Checkpoints(), fits)
    assert left_out == ["int16 on ultra96-v2-16x16: DSP 512 needed, 360 available"]
    tags = ["gpu", "fpga-zcu104-16x16", "fpga-ultra96-v2-16x16", "fpga-zcu102-16x16", "fpga-pynq-pynq-z2"]
    assert sorted(docs) == sorted(f"mobile-vs-fpga-{t}-{lv}" for t in tags for lv in matrix.PRUNING)
    for name, doc in docs.items():
        targets = {t["name"] for t in doc["targets"]}
        precs = {c["name"].split("-", 1)[1] for c in doc["compression"]}
        if "-gpu-" in name:
            assert targets == {"android-gpu-model", "android-gpu"} and precs == {"fp32", "fp16"}
        else:
            assert len(doc["targets"]) == 1 and targets <= {"fpga-sim", "fpga-pynq"}
            expect = {"int16", "int8", "int4", "ternary", "binary"}  # pruned binary: whole columns, skipped
            assert precs == (expect - {"int16"} if "ultra96" in name else expect)
        assert {m["name"] for m in doc["models"]} == {"resnet18-cifar", "vgg16-cifar", "mobilenetv2-cifar"}
        assert all(c["data"] == "digits" for c in doc["compression"])
    full, _ = matrix.campaigns(matrix.study("mobile-vs-fpga", full=True), matrix.Checkpoints(), fits)
    seeded = full["mobile-vs-fpga-fpga-zcu104-16x16-8x-seeded"]  # ImageNet forms: 1000 classes, not trained
    assert {m["name"] for m in seeded["models"]} == {"resnet18-imagenet", "vgg16-imagenet", "mobilenetv2-imagenet"}
    assert all("data" not in c for c in seeded["compression"])
    # the generated files are real campaigns: the runner's own validator loads them
    paths = matrix.write_campaigns({k: docs[k] for k in ("mobile-vs-fpga-fpga-pynq-pynq-z2-8x",
                                                         "mobile-vs-fpga-gpu-dense")}, tmp_path)
    assert [same for _, same in paths] == [False, False]
    camp = campaign_mod.load(paths[0][0])
    assert camp.targets[0].name == "fpga-pynq" and camp.targets[0].device == "tcp:10.0.0.2:7000"
    assert camp.targets[0].options == {"board": "pynq-z2", "array": "8x8"}
    assert all(c.compression.sparsity == 0.875 and c.compression.block == "16x16" for c in camp.cells())
    gpu = campaign_mod.load(paths[1][0])
    assert [(t.name, t.device) for t in gpu.targets] == [("android-gpu-model", None)] * 3 + [("android-gpu", "adb:SERIAL1")]


def test_a_design_point_that_cannot_fit_is_left_out_of_the_matrix():
    # 256 int8 MAC cells need 256 DSP48s at least; the PYNQ-Z2's Zynq-7020 has 220 (known before synthesis)
    why = matrix.fpga_fits({"name": "fpga-sim", "board": "pynq-z2", "array": "16x16"}, "int8")
    assert "does not fit PYNQ-Z2" in why and "DSP" in why


def test_the_matrix_trains_exactly_the_zoo_models_with_ten_classes():
    from pruning import zoo

    assert all(matrix.trainable(m) == (e.num_classes == 10) for m, e in zoo.ZOO.items())


@pytest.mark.parametrize(("args", "expect"), [
    (["reproduce", "mobile-vs-gpu"], "error: unknown study 'mobile-vs-gpu' (known: mobile-vs-fpga)"),
    (["reproduce", "mobile-vs-fpga", "--device", "pixel7"], "error: --device pixel7: 'pixel7' is not a real device"),
    (["reproduce", "mobile-vs-fpga", "--device", "fpga-sim=zcu104"], "error: --device fpga-sim=zcu104: 'fpga-sim'"),
    (["reproduce", "mobile-vs-fpga", "--quick", "--full"], "error: --quick and --full exclude each other"),
    (["reproduce", "mobile-vs-fpga", "--data", "/nonexistent/cifar"], "error: --data /nonexistent/cifar: not found"),
])
def test_bad_requests_are_one_line_errors(args, expect, tmp_path):
    r = run_cli(*args, "--out", tmp_path / "o", timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip().startswith(expect) and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_help_shows_an_example():
    r = run_cli("reproduce", "--help", check=True)
    assert "joulebench reproduce mobile-vs-fpga --quick" in r.stdout


# one GPU, one board, fp32 and int8, dense and 8x pruned, one epoch of training and none of fine-tuning: the
# whole flow in about a minute (the findings on binary/ternary are then not measurable, and say so)
TINY = matrix.Study("mobile-vs-fpga", ("smallcnn-digits",), ("fp32", "int8"), ("dense", "8x"),
                    ({"gpu": "adreno-650", "profile": "adreno"},), ({"board": "zcu104", "array": "8x8"},),
                    parent_epochs=1, finetune_epochs=0)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from bench.reproduce.cli import reproduce

    out = tmp_path_factory.mktemp("repro")
    t0 = time.perf_counter()
    res = reproduce(TINY, out)
    return out, res, time.perf_counter() - t0


def test_a_small_real_study_end_to_end(tiny):
    out, res, _ = tiny
    assert res["failed"] == []
    rows = pd.read_parquet(out / "measurements.parquet")
    assert sorted(zip(rows["variant"], rows["target"], strict=True)) == [
        ("8x-fp32", "android-gpu-model"), ("8x-int8", "fpga-sim"), ("dense-fp32", "android-gpu-model"),
        ("dense-int8", "fpga-sim")]
    assert (rows["status"] == "ok").all() and rows["verified"].all()
    assert set(rows["latency_provenance"]) == {"modeled:mobile-gpu@1", "modeled:fpga-latency@1"}
    assert rows["accuracy"].notna().all() and set(rows["accuracy_dataset"]) == {"digits"}
    for f in ("findings.md", "findings.csv", "study.html", "report.html", "manifest.json",
              "plots/efficiency.png", "plots/pruning.svg", "plots/accuracy_energy.csv"):
        assert (out / f).is_file(), f
    assert sorted(p.stem for p in (out / "campaigns").glob("*.toml")) == [
        f"mobile-vs-fpga-{t}-{lv}" for t in ("fpga-zcu104-8x8", "gpu") for lv in ("8x", "dense")]
    eff = pd.read_csv(out / "plots" / "efficiency.csv")
    assert len(eff) == 4 and set(eff["kind"]) == {"modeled"}  # nothing here is measured, and nothing says so
    by_cell = rows.set_index("cell_id")
    assert eff.set_index("cell_id")["inf_per_j_active"].to_dict() == pytest.approx(
        (1e3 / by_cell["energy_mj_per_inf"]).to_dict())
    t = pd.read_csv(out / "findings.csv").set_index("claim")["verdict"]
    assert t[CLAIMS[0]] in (HOLDS, FAILS) and t[CLAIMS[3]] in (HOLDS, FAILS)
    assert t[CLAIMS[1]] == NA and t[CLAIMS[2]] == NA  # no binary/ternary variant in this matrix
    assert "<img" in (out / "study.html").read_text()


def test_a_second_run_is_served_from_the_caches(tiny):
    from bench.reproduce.cli import reproduce

    out, first, _ = tiny
    t0 = time.perf_counter()
    again = reproduce(TINY, out)
    assert time.perf_counter() - t0 < 30
    pd.testing.assert_frame_equal(again["findings"], first["findings"])
    rows = pd.read_parquet(out / "measurements.parquet")
    assert len(rows) == 4


@pytest.mark.slow
def test_quick_from_the_cli(tmp_path):
    """The whole --quick matrix (~5 minutes cold): 18 cells, every claim measurable, a warm re-run in seconds."""
    r = run_cli("reproduce", "mobile-vs-fpga", "--quick", "--out", tmp_path / "q", timeout=1800, check=True)
    assert "findings:" in r.stdout
    rows = pd.read_parquet(tmp_path / "q" / "measurements.parquet")
    assert len(rows) == 18 and (rows["status"] == "ok").all()  # 2 GPUs x 4 + 2 boards x 5
    assert not (rows["precision"].isin(["int1"]) & (rows["sparsity"] > 0)).any()  # binary: dense only
    t = pd.read_csv(tmp_path / "q" / "findings.csv")
    assert list(t["claim"]) == list(CLAIMS) and NA not in set(t["verdict"])
    t0 = time.perf_counter()
    run_cli("reproduce", "mobile-vs-fpga", "--quick", "--out", tmp_path / "q", check=True)
    assert time.perf_counter() - t0 < 10
