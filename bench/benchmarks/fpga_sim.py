"""The FPGA accelerator on ResNet-18-CIFAR: bit-exactness, cycles dense vs block 8x, simulation speed,
synthesized resources per board and precision, and the power model's leave-one-out error.

    python -m bench.benchmarks.fpga_sim [--array 16x16] [--quick]

Every offloaded layer of the int8 model (dense and block-pruned 8x, 8x16 blocks) runs on the Verilator
model of the RTL with a seeded random input and is compared with the numpy integer reference; then the
whole network runs through the compiled fpga-sim graph (so the layers see real activations) and its
cycles are totalled. `realization_8x` = (dense cycles / 8x cycles) / (dense MACs / 8x MACs): 1.0 means
pruning shows up one-for-one in the cycle count. The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from pruning.compress import CompressionSpec, make_variant
from pruning.variant import ModelSpec

# The design points of campaigns/mobile-vs-fpga.toml: (array of the multiplier precisions, array of
# ternary / binary). The PYNQ-Z2's 220 DSPs bound its int8 array at 8x16; add/subtract lanes need none, so
# ternary / binary get 16x16 there; likewise the Ultra96-V2's 360 DSPs and 16x32. The other Zynq UltraScale+
# boards share one point per precision (synthesized once per family, checked against each part).
BOARDS = {"pynq-z2": ("8x16", "16x16"), "ultra96-v2": ("16x16", "16x32"), "zcu104": ("16x16", "16x16"),
          "kv260": ("16x16", "16x16"), "zcu102": ("16x16", "16x16")}
PRECISIONS = ("int16", "int8", "int4", "ternary", "binary")


def _layers(variant, design):
    from targets.fpga.offload import rewrite
    from targets.tvm.importer import to_relax

    _, report = rewrite(to_relax(variant), variant, design, "bench")
    return report


def bit_exact(report, sim, rng) -> tuple[bool, int, int, float]:
    """Every offloaded layer on a seeded random input: simulator == reference. Returns (ok, cycles, layers,
    Mcycles per wall second)."""
    from targets.fpga.layer import pack
    from targets.fpga.reference import run_reference

    ok, cycles, seconds = True, 0, 0.0
    for off in report.layers:
        ly = off.layer
        lo, hi = -(1 << (ly.act_bits - 1)), (1 << (ly.act_bits - 1)) - 1
        x = rng.integers(lo, hi + 1, size=(ly.c, ly.h, ly.w))
        run = sim.run_program(pack(ly, sim.design), x)
        ok &= bool(np.array_equal(run.y, run_reference(ly, x)))
        cycles += run.cycles
        seconds += run.sim_seconds
    return ok, cycles, len(report.layers), cycles / seconds / 1e6 if seconds else 0.0


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--array", default="16x16", help="TMxTN of the int8 design the ResNet-18 runs on")
    ap.add_argument("--quick", action="store_true", help="synthesize only the int8, ternary and binary designs")
    args = ap.parse_args(argv)
    from targets.devices.catalog import board
    from targets.fpga import power, synth
    from targets.fpga.design import DesignPoint
    from targets.fpga.sim import Simulator
    from targets.fpga.target import part_resources

    tm, tn = (int(v) for v in args.array.split("x"))
    design = DesignPoint(tm=tm, tn=tn, weight_mode="int8", act_bits=8)
    rng = np.random.default_rng(0)
    out: dict = {"model": "resnet18-cifar", "array": args.array}
    with Simulator(design) as sim:
        variants = {
            "dense": make_variant(ModelSpec(name="resnet18-cifar"), CompressionSpec(bits=8)),
            # blocks TM rows tall: a row-block of the array is one pruning block (kept columns one-for-one)
            "block8x": make_variant(ModelSpec(name="resnet18-cifar"),
                                    CompressionSpec(scheme="block", sparsity=0.875, block=f"{tm}x16", bits=8)),
        }
        exact, macs, rates = True, {}, []
        for key, v in variants.items():
            rep = _layers(v, design)
            ok, cycles, n, rate = bit_exact(rep, sim, rng)
            exact &= ok
            out[f"cycles_{key}"] = cycles
            out[f"layers_{key}"] = n
            macs[key] = sum(o.layer.macs for o in rep.layers)
            rates.append(rate)
            print(f"{key:8s} {n} layers offloaded, bit-exact {ok}, {cycles:,} cycles, "
                  f"{macs[key] / 1e6:.1f} M MACs, {rate:.2f} M simulated cycles/s")
        t0 = time.perf_counter()
        whole = _whole_network(variants["dense"], args.array)
        out["whole_net_dense_sim_s"] = round(time.perf_counter() - t0, 2)
        out["whole_net_dense"] = whole
    out["bit_exact"] = exact
    out["macs_dense"], out["macs_block8x"] = macs["dense"], macs["block8x"]
    out["cycle_reduction_8x"] = out["cycles_dense"] / out["cycles_block8x"]
    out["realization_8x"] = out["cycle_reduction_8x"] / (macs["dense"] / macs["block8x"])
    out["sim_mcycles_per_s"] = round(min(rates), 3)
    resources = {}
    def point(b: str, prec: str):
        tm_, tn_ = (int(v) for v in BOARDS[b][prec in ("ternary", "binary")].split("x"))
        return DesignPoint(tm=tm_, tn=tn_, weight_mode=prec, act_bits=16 if prec == "int16" else 8), board(b).part.family

    points = {(b, prec): point(b, prec) for b in BOARDS
              for prec in (("int8", "ternary", "binary") if args.quick else PRECISIONS)}
    unique = list(dict.fromkeys(points.values()))
    reports = dict(zip(unique, synth.synthesize_many(unique), strict=True))  # two Yosys processes at once
    for (b, prec), (d, fam) in points.items():
        rep = reports[(d, fam)]
        lane = rep.per_lane()
        resources[f"{b}/{prec}"] = {k: getattr(rep, k) for k in ("lut", "ff", "dsp", "bram36")} | {
            "array": f"{d.tm}x{d.tn}", "family": fam, "fits": synth.fits(rep, part_resources(board(b))) is None,
            "lut_per_lane": round(lane["lut"], 1), "dsp_per_lane": round(lane["dsp"], 3), "synth_s": rep.seconds}
        print(f"{b:11s} {fam} {prec:8s} {resources[f'{b}/{prec}']}")
    out["resources"] = resources
    loo = power.leave_one_out()
    out["power_loo_error"] = round(max(abs(r.rel_error) for r in loo), 4)
    print(json.dumps(out))
    return out


def _whole_network(variant, array: str) -> dict:
    """The int8 ResNet-18 through the compiled fpga-sim graph: verification and the counters."""
    import tempfile
    from pathlib import Path

    from bench.api import Artifact
    from bench.verify import check_output
    from targets.fpga.target import FpgaOptions, FpgaSimSession, FpgaSimTarget

    t = FpgaSimTarget()
    opts = FpgaOptions(board="zcu104", array=array)
    with tempfile.TemporaryDirectory() as d:
        manifest = t.compile(variant, opts, Path(d))
        session = FpgaSimSession(opts)
        ex = session.load(Artifact(t.name, Path(d), manifest, variant))
        t0 = time.perf_counter()
        y = ex.infer(variant.example_input())
        wall = time.perf_counter() - t0
        est = ex.estimate()
        session.close()
    check = check_output(y, variant.reference_output, variant.precision)
    return {"verified": check.ok, "max_abs_err": check.max_abs_err, "cycles": int(est.details["cycles"].value),
            "wall_s": round(wall, 2), "latency_ms_modeled": round(est.latency_s.value * 1e3, 3),
            "energy_mj_modeled": round(est.energy_j.value * 1e3, 3),
            "offloaded_mac_fraction": manifest["offloaded_mac_fraction"]}


if __name__ == "__main__":
    main()
