"""fpga-latency@1 and fpga-power@1: hand-computed cases, monotonicity, fit plausibility, validation script."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from targets.devices import catalog
from targets.fpga import latency, power
from targets.fpga.latency import ArmOp, ConvLayer, accelerator_time, arm_time, tiled_conv_cycles
from targets.fpga.power import Activity, Coefficients, Resources

ROOT = Path(__file__).resolve().parent.parent
ZCU104_EFF_BW = 19.2e9 * 0.75  # catalog peak x DDR_EFFICIENCY


def test_accelerator_time_hand_cases() -> None:
    kw = dict(cycles_total=1_000_000, bytes_written=0, board="zcu104", clock_hz=200e6)
    # 5 ms of RTL, 1 ms of DDR: overlapped -> 5 ms; not overlapped, untimed DMA -> 6 ms
    t = accelerator_time(bytes_read=int(ZCU104_EFF_BW * 1e-3), double_buffered=True, **kw)
    assert (t.seconds, t.ddr_s, t.bound) == (pytest.approx(5e-3), pytest.approx(1e-3), "rtl")
    assert accelerator_time(bytes_read=int(ZCU104_EFF_BW * 1e-3), **kw).seconds == pytest.approx(6e-3)
    # 100k DMA cycles (0.5 ms) re-timed to the 1 ms DDR transfer: 4.5 + 1.0 ms
    t = accelerator_time(bytes_read=int(ZCU104_EFF_BW * 1e-3), cycles_dma=100_000, **kw)
    assert (t.seconds, t.bound) == (pytest.approx(5.5e-3), "ddr")
    # DDR-bound with overlap: 10 ms of transfers behind 5 ms of compute
    t = accelerator_time(bytes_read=int(ZCU104_EFF_BW * 5e-3), bytes_written=int(ZCU104_EFF_BW * 5e-3),
                         cycles_total=1_000_000, board="zcu104", clock_hz=200e6, double_buffered=True)
    assert (t.seconds, t.bound) == (pytest.approx(10e-3), "ddr")
    # default clock = the board's default PL clock (100 MHz); efficiency is a stored assumption
    t = accelerator_time(cycles_total=1_000_000, bytes_read=0, bytes_written=0, board="PYNQ-Z2")
    assert t.seconds == pytest.approx(10e-3) and t.clock_hz == 100e6
    a = t.assumptions()
    assert a["ddr_efficiency"] == 0.75 and a["provenance"] == "modeled:fpga-latency@1" and "seconds" not in a
    assert a["cycles_provenance"] == "simulated:verilator" and a["board"] == "pynq-z2"
    with pytest.raises(ValueError, match="exceeds cycles_total"):
        accelerator_time(cycles_total=10, cycles_dma=11, bytes_read=0, bytes_written=0, board="zcu104")


def test_arm_roofline_hand_cases() -> None:
    peak, bw = 0.65e9 * 4, 2.1e9 * 0.75  # PYNQ-Z2: one Cortex-A9 core, DDR3 x 0.75
    t = arm_time([ArmOp("conv1", flops=peak, bytes=0)], "pynq-z2")
    assert t.seconds == pytest.approx(1.0)
    assert arm_time([ArmOp("conv1", flops=peak, bytes=0)], "pynq-z2", cores=2).seconds == pytest.approx(0.5)
    assert arm_time([ArmOp("conv1", peak, 0)], "pynq-z2", compute_efficiency=0.5).seconds == pytest.approx(2.0)
    ops = [ArmOp("pool", flops=1e3, bytes=bw * 0.25), ArmOp("add", flops=peak * 0.5, bytes=bw * 0.1)]
    t = arm_time(ops, "pynq-z2", overhead_s=1e-3)
    assert t.per_op_s == (pytest.approx(0.251), pytest.approx(0.501))  # memory-bound, then compute-bound
    with pytest.raises(ValueError, match="has 2 cores"):
        arm_time(ops, "pynq-z2", cores=3)
    b = catalog.board("pynq-z2")
    no_peak = b.model_copy(update={"cpu": b.cpu.model_copy(update={"fp32_flops_per_cycle": None})})
    with pytest.raises(ValueError, match="no published fp32 peak"):
        arm_time(ops, no_peak)


def test_tiled_conv_cycles() -> None:
    assert tiled_conv_cycles([ConvLayer(2, 2, 10, 3, 3)], tm=4, tn=2) == 3 * 2 * 4 * 9
    assert tiled_conv_cycles([ConvLayer(2, 2, 10, 3, 3, groups=2)], tm=4, tn=2) == 2 * 216
    assert ConvLayer(2, 2, 10, 3, 3).flops == 2 * 4 * 10 * 3 * 9


COEFFS = Coefficients(k_pl_w=1.0, p_arm_w=0.5, e_ddr_j_per_bit=20e-12)
ZU9 = Resources(lut=274080, ff=548160, dsp=2520, bram36=912)  # the reference fabric: share 4 (one per class)


def test_power_hand_case_and_energy() -> None:
    assert ZU9.fabric_share() == pytest.approx(4.0)
    p = power.power(static_w=10, res=ZU9, clock_hz=200e6, activity=Activity(busy=0.5), bytes_per_s=1e8,
                    arm_busy_cores=0, coeffs=COEFFS)
    assert (p.pl_w, p.ddr_w, p.total_w) == (pytest.approx(4.0), pytest.approx(0.016), pytest.approx(14.016))
    acc = accelerator_time(cycles_total=2_000_000, bytes_read=1_000_000, bytes_written=0, board="zcu104",
                           clock_hz=200e6, double_buffered=True)  # 10 ms, compute-bound
    arm = arm_time([ArmOp("fc", flops=10.664e9 * 0.01, bytes=0)], "zcu104")  # 10 ms on one A53
    e = power.energy_per_inference(accel=acc, res=ZU9, activity=Activity(busy=0.5), static_w=10, arm=arm,
                                   coeffs=COEFFS)
    assert e.seconds == pytest.approx(0.02)
    assert e.joules == pytest.approx(14.016 * 0.01 + 10.5 * 0.01)
    assert e.active_joules == pytest.approx(4.016 * 0.01 + 0.5 * 0.01)
    assert e.provenance == "modeled:fpga-power@1" and e.assumptions()["coefficients"]["k_pl_w"] == 1.0


def _total(**kw) -> float:
    base = dict(static_w=5.0, res=ZU9, clock_hz=100e6, activity=Activity(0.5, 0.5), bytes_per_s=1e9,
                arm_busy_cores=0.5, coeffs=COEFFS)
    return power.power(**{**base, **kw}).total_w


def test_power_monotone() -> None:
    ref = _total()
    assert _total(activity=Activity(0.9, 0.5)) > ref > _total(activity=Activity(0.1, 0.5))
    assert _total(activity=Activity(0.5, 0.9)) > ref > _total(activity=Activity(0.5, 0.1))
    assert _total(clock_hz=200e6) > ref > _total(clock_hz=50e6)
    assert _total(bytes_per_s=2e9) > ref > _total(bytes_per_s=0)
    assert _total(arm_busy_cores=1) > ref
    assert _total(res=Resources(lut=1000, ff=2000, dsp=10, bram36=4)) < ref
    assert power.power(static_w=5, res=ZU9, clock_hz=1e8, activity=Activity(0), bytes_per_s=0, arm_busy_cores=0,
                       coeffs=COEFFS).total_w == 5.0
    with pytest.raises(ValueError):
        Activity(busy=1.2)


def test_fit_recovers_known_coefficients() -> None:
    pts = power.point_inputs()
    truth = Coefficients(k_pl_w=0.7, p_arm_w=0.9)
    synthetic = [replace(p, full_w=power.predict(p, truth)) for p in pts]
    c = power.fit(synthetic)
    assert (c.k_pl_w, c.p_arm_w) == (pytest.approx(0.7), pytest.approx(0.9))


def test_fitted_coefficients_plausible() -> None:
    c = power.fitted()
    assert c.fitted_on == ("zcu102-rn50", "zcu102-gnv1", "ultra96-rn50", "ultra96-gnv1", "ultra96-rn50-p50")
    # k_pl: W at 100 MHz for a fully toggling ZU9EG-sized fabric; XPE-scale designs of that size draw watts,
    # not tens of watts, at 100 MHz. p_arm: board-level W per busy A53 core, under the A53 cluster's few watts.
    assert 0.3 < c.k_pl_w < 5.0
    assert 0.1 < c.p_arm_w < 3.0
    assert c.e_ddr_j_per_bit == 20e-12


def test_leave_one_out_error_bound() -> None:
    loo = power.leave_one_out()
    assert len(loo) == 5
    # Bound on total board power: 10 %. The increment above idle is 1.2-2.8 W on 6.8-29 W boards, so even a
    # 35 % miss on the increment (two boards, two designs, one assumed DPU size) stays under 10 % of the total.
    assert max(abs(r.rel_error) for r in loo) < 0.10
    assert max(abs(r.increment_rel_error) for r in loo) < 0.35
    # LOO is a real refit: its predictions differ from the all-points fit
    assert all(r.predicted_w != pytest.approx(r.fitted_w, rel=1e-6) for r in loo)


def test_validation_script_prints_json() -> None:
    r = subprocess.run([sys.executable, "-m", "bench.benchmarks.fpga_power_validation"], capture_output=True,
                       text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    out = json.loads(lines[-1])
    worst = max(abs(x.rel_error) for x in power.leave_one_out())
    assert out["power_loo_error"] == pytest.approx(worst)
    assert [p["point"] for p in out["points"]] == list(power.fitted().fitted_on)
    assert out["unscored"][0]["point"] == "zcu104-rn50"
    z = out["zhang_fpga15"]
    assert z["cycles"] == 2_005_892 and z["model_gflops"] == pytest.approx(66.38, abs=0.01)
    assert z["error"] == pytest.approx((66.383 - 61.62) / 61.62, abs=1e-3)
    assert any("worst LOO error" in line for line in lines) and latency.PROVENANCE in r.stdout
