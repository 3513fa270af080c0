"""fpga-sim end to end: which layers go to the accelerator, outputs verified through the real Verilator
model, simulated cycles and modeled seconds/joules in the rows, a corrupted program caught, a design point
that does not fit refused."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from pruning.compress import CompressionSpec, make_variant
from pruning.variant import ModelSpec
from tests.conftest import run_cli, write_campaign


@pytest.fixture(scope="module")
def ternary_resnet():
    return make_variant(ModelSpec(name="resnet18-cifar"), CompressionSpec(scheme="block", sparsity=0.875, bits=2))


def test_offload_coverage_follows_the_design_precision(ternary_resnet):
    from targets.fpga.design import DesignPoint
    from targets.fpga.offload import rewrite
    from targets.tvm.importer import to_relax

    mod, report = rewrite(to_relax(ternary_resnet), ternary_resnet, DesignPoint(tm=8, weight_mode="ternary"),
                          "cov")
    names = [o.name for o in report.layers]
    # every ternary conv (16 in the blocks + 3 shortcut projections) goes to the accelerator ...
    assert len(names) == 19 and "stem.0" not in names and "fc" not in names
    # ... the first and last layers keep 8-bit weights and stay on the ARM, saying why
    assert {k["name"]: k["why"] for k in report.kept} == {
        "stem.0": "8-bit weights (int8); the design point computes ternary",
        "fc": "8-bit weights (int8); the design point computes ternary"}
    residual = [o for o in report.layers if o.arm_residual]
    assert len(residual) == 8 and all(o.out_grid_source == "calibrated" for o in residual)
    # block 8x with 8-row blocks = TM: each row-block's table holds only its kept eighth of the columns
    assert all(o.layer.weight_mode == "ternary" and o.layer.kmax == -(-o.layer.gemm_k // 8)
               for o in report.layers if o.layer.kh == 3)
    text = mod.script()
    assert text.count("jb_fpga.cov.") == 19


CAMPAIGN = """
[[models]]
name = "smallcnn-digits"

[[compression]]
name = "int8-dense"
bits = 8
[[compression]]
name = "int8-block8x"
scheme = "block"
sparsity = 0.875
bits = 8

[[targets]]
name = "fpga-sim"
board = "zcu104"
array = "4x4"
"""


@pytest.fixture(scope="module")
def fpga_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("fpga")
    camp = write_campaign(d / "c.toml", CAMPAIGN, name="fpga")
    run_cli("run", camp, "--out", d / "run", check=True, timeout=1800)
    return d / "run"


def test_fpga_sim_rows_are_verified_simulated_and_modeled(fpga_run):
    df = pd.read_parquet(fpga_run / "measurements.parquet").set_index("variant")
    assert (df["status"] == "ok").all() and df["verified"].all()
    assert (df["latency_kind"] == "modeled").all() and (df["energy_kind"] == "modeled").all()
    assert (df["latency_provenance"] == "modeled:fpga-latency@1").all()
    assert (df["energy_provenance"] == "modeled:fpga-power@1").all()
    assert df["latency_ms_p50"].isna().all() and df["latency_cv"].isna().all()  # no fake statistics
    assert (df["board"] == "zcu104").all() and (df["array"] == "4x4").all() and (df["clock_mhz"] > 0).all()
    assert (df["dsp"] > 0).all() and (df["lut"] > 0).all()
    assert (df["offloaded_mac_fraction"] > 0.99).all()  # int8: every layer runs on the accelerator
    dense, sparse = df.loc["int8-dense"], df.loc["int8-block8x"]
    assert sparse["cycles"] < dense["cycles"] and sparse["latency_ms"] < dense["latency_ms"]
    inputs = json.loads(dense["model_inputs"])
    # the latency recomputes from the stored simulated counts and assumptions
    acc = inputs["latency"]["accelerator"]
    assert acc["cycles_total"] == dense["cycles"] and acc["clock_hz"] == pytest.approx(dense["clock_mhz"] * 1e6)
    assert dense["latency_ms"] == pytest.approx((inputs["latency"]["accelerator_s"] + inputs["latency"]["arm_s"]) * 1e3)
    assert inputs["cycles"]["provenance"] == "simulated:verilator"
    cell = json.loads(next((fpga_run / "cells").glob("*.json")).read_text())
    assert cell["device_snapshot"]["before"]["fabric_hz"]["pl0"] > 0


def _one_int8_cell(tmp_path, target: str):
    """`joulebench run` of the int8 small CNN on one [[targets]] entry: (the process, its one row)."""
    body = f"""
[[models]]
name = "smallcnn-digits"
[[compression]]
bits = 8
[[targets]]
{target}
"""
    camp = write_campaign(tmp_path / "c.toml", body)
    r = run_cli("run", camp, "--out", tmp_path / "run", timeout=1800)
    return r, pd.read_parquet(tmp_path / "run" / "measurements.parquet").iloc[0]


def test_corrupted_accelerator_program_fails_the_cell(tmp_path):
    r, row = _one_int8_cell(tmp_path, 'name = "tests.plugins.faulty:CorruptedFpgaSim"\narray = "4x4"')
    assert r.returncode == 1
    assert row["status"] == "failed" and not row["verified"] and "output mismatch" in row["message"]
    assert pd.isna(row["latency_ms"]) and pd.isna(row["cycles"])  # a wrong program gets no figure


def test_design_point_that_does_not_fit_is_one_line(tmp_path):
    r, row = _one_int8_cell(tmp_path, 'name = "fpga-sim"\nboard = "ultra96-v2"\narray = "32x32"')
    assert r.returncode == 1 and "does not fit" in r.stderr
    assert row["status"] == "failed" and "does not fit" in row["message"] and "\n" not in row["message"]
    assert "dsp" in row["message"].lower()


def test_float_variants_are_skipped_with_a_reason(tmp_path):
    from targets.fpga.target import FpgaSimTarget

    v = make_variant(ModelSpec(name="smallcnn-digits"), CompressionSpec())
    assert "integer variants" in FpgaSimTarget().accepts(v)
    assert np.isfinite(v.reference_output).all()


def test_lowbit_array_is_the_design_of_ternary_and_binary_only():
    from bench.api import TargetError
    from targets.fpga.target import FpgaSimTarget, design_for

    t = FpgaSimTarget()
    opts = t.parse_options({"board": "pynq-z2", "array": "8x16", "lowbit_array": "16x16"})
    got = {bits: design_for(make_variant(ModelSpec(name="smallcnn-digits"), CompressionSpec(bits=bits)), opts)
           for bits in (8, 4, 2, 1)}
    assert {b: (d.weight_mode, d.tm, d.tn) for b, d in got.items()} == {
        8: ("int8", 8, 16), 4: ("int4", 8, 16), 2: ("ternary", 16, 16), 1: ("binary", 16, 16)}
    assert design_for(make_variant(ModelSpec(name="smallcnn-digits"), CompressionSpec(bits=1)),
                      t.parse_options({"array": "8x16"})).tm == 8  # default: the one array
    with pytest.raises((TargetError, ValueError)) as e:
        t.parse_options({"lowbit_array": "16"})
    assert "TMxTN" in str(e.value)


def test_board_without_published_idle_power_asks_for_it_before_any_work(tmp_path):
    from bench.api import TargetError
    from targets.fpga.target import FpgaSimTarget

    t = FpgaSimTarget()
    v = make_variant(ModelSpec(name="smallcnn-digits"), CompressionSpec(bits=8))
    with pytest.raises(TargetError) as e:
        t.compile(v, t.parse_options({"board": "pynq-z2", "array": "4x4"}), tmp_path)
    assert "idle_w" in str(e.value) and "PYNQ-Z2" in str(e.value) and "\n" not in str(e.value)
    assert not any(tmp_path.iterdir())  # refused before synthesis, simulation or any file


def test_calibrated_ranges_are_those_of_each_convs_batch_norm(ternary_resnet):
    # independent: the BN right after each conv in its Sequential, on the same inputs
    import torch

    from targets.fpga.offload import calibrate_outputs

    named = dict(ternary_resnet.module.named_modules())
    pairs = {}
    for name, m in named.items():
        head, _, idx = name.rpartition(".")
        bn = named.get(f"{head}.{int(idx) + 1}") if idx.isdigit() else None
        if isinstance(m, torch.nn.Conv2d) and isinstance(bn, torch.nn.BatchNorm2d):
            pairs[name] = bn
    assert len(pairs) == 20  # the stem, 16 body convs, 3 shortcut projections
    seen: dict[str, list[float]] = {}
    hooks = [bn.register_forward_hook(lambda _m, _a, out, n=n: seen.setdefault(n, []).extend(
        [float(out.min()), float(out.max())])) for n, bn in pairs.items()]
    gen = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        ternary_resnet.module(torch.from_numpy(ternary_resnet.example_input()))
        for _ in range(3):
            ternary_resnet.module(torch.randn(ternary_resnet.input_shape, generator=gen))
    for h in hooks:
        h.remove()
    got = calibrate_outputs(ternary_resnet, [named[n] for n in pairs])
    for n in pairs:  # run twice: tensor ids are addresses and get reused; the ranges must not depend on that
        assert got[id(named[n])] == (min(seen[n]), max(seen[n])), n


def test_binary_takes_pruned_columns_but_no_zero_inside_the_table():
    from targets.fpga.offload import _zero_in_table

    rng = np.random.default_rng(0)
    w = rng.choice([-1, 1], size=(32, 64))
    assert not _zero_in_table(w, 16)
    w[:16, 5] = 0  # a column pruned in all rows of row-block 0 ...
    w[16:, 9] = 0  # ... and another one in row-block 1: equal counts, skipped by the table
    assert not _zero_in_table(w, 16)
    assert _zero_in_table(w, 32)  # one 32-row block: those columns are kept with zeros in half the rows
    w[0, 7] = 0
    assert _zero_in_table(w, 16)  # a lone zero in a kept column
    w[0, 7], w[16:, 9] = 1, 1
    assert _zero_in_table(w, 16)  # row-block 0 keeps 63 columns, row-block 1 keeps 64: padding would be zero
    assert not _zero_in_table(rng.choice([-1, 1], size=(20, 8)), 16)  # a partial last row-block
