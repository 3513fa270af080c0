"""fpga-sim: a quantized variant on an FPGA board, its offloaded layers executed cycle-accurately by the
Verilator model of the accelerator (targets/fpga/rtl), the rest by TVM on the host standing in for the
board's ARM cores.

Figures: accelerator cycles and bytes are `simulated:verilator` (counted by the RTL's own counters);
seconds are `modeled:fpga-latency@1` (cycles at the board's clock + DDR time, plus a roofline of the
ARM-side ops for the board's cores, never the host's wall clock); energy is `modeled:fpga-power@1`
(static + fabric power from the synthesized resources and the simulated switching activity + DDR
energy + ARM power). Outputs are verified against the variant's PyTorch model before any figure.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from bench.api import Artifact, DeviceSnapshot, Estimate, Executor, Figure, Session, Target, TargetError, Variant
from targets.fpga import FpgaError

WEIGHT_MODE_OF_BITS = {16: "int16", 8: "int8", 4: "int4", 2: "ternary", 1: "binary"}


class FpgaOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    board: str = Field("zcu104", description="a board of the device catalog (targets/devices/catalog.toml)")
    array: str = Field("16x16", description="MAC array TMxTN: TM output channels x TN output pixels per cycle")
    lowbit_array: str | None = Field(None, description="array for ternary / binary variants, whose lanes need no "
                                     "DSP (larger than `array` on a DSP-bound board); default: `array`")
    clock_mhz: float | None = Field(None, gt=0, description="fabric clock; default: the board's default PL clock")
    double_buffered: bool = Field(False, description="model DDR transfers as overlapped with compute")
    idle_w: float | None = Field(None, gt=0, description="the board's measured idle power (W, design loaded); "
                                 "default: the catalog's published idle or base power")

    @field_validator("array", "lowbit_array")
    @classmethod
    def _array(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[1-9]\d*x[1-9]\d*", v):
            raise ValueError(f"array must look like TMxTN (e.g. 16x16), got '{v}'")
        return v

    def array_for(self, weight_mode: str) -> str:
        """The array a variant of this weight precision runs on."""
        return self.lowbit_array if self.lowbit_array and weight_mode in ("ternary", "binary") else self.array


def design_for(variant: Variant, options: FpgaOptions):
    """The design point a variant runs on: the array of the options, the variant's low-bit precision."""
    from targets.fpga.design import DesignPoint

    mf = variant.manifest
    mode = WEIGHT_MODE_OF_BITS.get(int(mf.get("bits") or 32))
    if mode is None or not mf.get("act_bits"):
        raise TargetError("the FPGA accelerator runs integer variants: give the compression entry bits = "
                          "16, 8, 4, 2 (ternary) or 1 (binary)")
    tm, tn = (int(v) for v in options.array_for(mode).split("x"))
    try:
        return DesignPoint(tm=tm, tn=tn, weight_mode=mode, act_bits=int(mf["act_bits"]))
    except FpgaError as exc:
        raise TargetError(str(exc)) from None


def board_of(options: FpgaOptions):
    from targets.devices.catalog import CatalogError, board

    try:
        return board(options.board)
    except CatalogError as exc:
        raise TargetError(str(exc)) from None


def part_resources(b) -> dict:
    """The board part's {lut, ff, dsp, bram36, uram} as `synth.fits` takes them."""
    return {k: getattr(b.part, k).value for k in ("lut", "ff", "dsp", "bram36", "uram") if getattr(b.part, k, None)}


def resources_for(design, b) -> dict:
    """Synthesized resources of the design for the board's family, or one line naming what does not fit
    (before synthesis when the DSP lower bound already shows it)."""
    from targets.fpga import synth

    part = part_resources(b)

    def check(why: str | None) -> None:
        if why:
            raise TargetError(f"design point {design.label} does not fit {b.name} ({b.part.name}): {why}")

    check(synth.fits_before_synthesis(design, part))
    try:
        rep = synth.synthesize(design, b.part.family)
    except FpgaError as exc:
        raise TargetError(str(exc)) from None
    check(synth.fits(rep, part))
    return rep.as_dict()


class FpgaSimTarget(Target):
    name = "fpga-sim"
    description = ("FPGA board: block-sparse accelerator RTL run cycle-accurately in Verilator, resources from "
                   "Yosys, seconds and joules from documented board models")
    Options = FpgaOptions
    figures = "modeled"

    def availability(self) -> tuple[bool, str]:
        from targets.fpga.sim import verilator_root

        try:
            verilator_root()
        except FpgaError as exc:
            return False, str(exc)
        return True, ""

    def accepts(self, variant: Variant) -> str | None:
        if variant.module is None:
            return "fpga-sim compiles compressed zoo / torch models; this one is an ONNX file"
        if int(variant.manifest.get("bits") or 32) not in WEIGHT_MODE_OF_BITS or not variant.manifest.get("act_bits"):
            return "fpga-sim runs integer variants (bits = 16, 8, 4, 2 or 1); this one is float"
        return None

    def version(self) -> str:
        import tvm

        from targets.fpga.design import rtl_digest
        from targets.tvm.lowering import LOWERING_VERSION

        return f"tvm-{tvm.__version__}-lowering{LOWERING_VERSION}-rtl-{rtl_digest()}-offload2"

    def compile(self, variant: Variant, options: FpgaOptions, workdir: Path) -> dict:
        from targets.fpga.armops import arm_ops
        from targets.fpga.offload import rewrite
        from targets.host_cpu import host_target
        from targets.tvm.build import build, kernel_names
        from targets.tvm.importer import to_relax
        from targets.tvm.lowering import executed_precision, lower

        design = design_for(variant, options)
        b = board_of(options)
        if options.idle_w is None and b.power.idle_w is None and b.power.base_w is None:
            # before minutes of synthesis and simulation: the energy model could not be evaluated
            raise TargetError(f"{b.name} has no published idle power in the device catalog: give the fpga-sim "
                              "option idle_w = <watts> (your board's measured idle)")
        res = resources_for(design, b)
        tag = hashlib.sha256(f"{variant.hash}-{design.key()}".encode()).hexdigest()[:12]
        try:
            mod, report = rewrite(to_relax(variant), variant, design, tag)
        except FpgaError as exc:
            raise TargetError(str(exc)) from None
        if not report.layers:
            kept = "; ".join(f"{k['name']}: {k['why']}" for k in report.kept[:3])
            raise TargetError(f"no layer of {variant.model}/{variant.name} runs on the {design.label} design ({kept})")
        (workdir / "accel").mkdir()
        from targets.fpga.layer import pack

        for off in report.layers:
            pack(off.layer, design).save(workdir / "accel" / f"layer{off.index}.npz")
            off.layer.save(workdir / "accel" / f"layer{off.index}.ref.npz")  # for the bit-exact check
        mf = variant.manifest
        block_rows = int(mf["block"].split("x")[0]) if mf.get("block") else None
        mod, lowered = lower(mod, mf.get("scheme", "none"), block_rows, variant.qweights)
        ops = arm_ops(mod)
        ex, _ = build(mod, host_target())
        ex.export_library(str(workdir / "model.so"))
        macs_acc = sum(o.layer.macs * o.batch for o in report.layers)
        macs_arm = sum(r["macs"] for r in lowered.layers)
        clock_mhz = options.clock_mhz or b.pl.default_clock_mhz.value
        array = f"{design.tm}x{design.tn}"  # lowbit_array or array, by the variant's precision
        fraction = macs_acc / (macs_acc + macs_arm) if macs_acc + macs_arm else 0.0
        return {
            "board": b.key, "board_name": b.name, "part": b.part.name, "family": b.part.family,
            "clock_mhz": clock_mhz, "idle_w": options.idle_w, "array": array,
            "design": asdict(design), "design_label": design.label,
            "resources": res, "tag": tag, "offloaded": [o.summary() for o in report.layers],
            "kept_on_arm": report.kept, "arm_ops": [asdict(o) for o in ops], "arm_lowered_layers": lowered.layers,
            "macs_effective": int(macs_acc + macs_arm), "offloaded_mac_fraction": fraction,
            "kernels": kernel_names(ex),
            # the accelerator's lanes at the variant's precision; the ARM's share in int8 or fp32
            "executed": f"{design.weight_mode} (accelerator) + {executed_precision(variant, {'lowered_layers': lowered.layers})} (ARM)",
            "row": {"board": b.key, "clock_mhz": clock_mhz, "array": array, "lut": res.get("lut"),
                    "ff": res.get("ff"), "dsp": res.get("dsp"), "bram36": res.get("bram36"),
                    "offloaded_mac_fraction": fraction},
        }

    def open(self, device: str | None, options: FpgaOptions) -> Session:
        if device not in (None, "sim", "verilator"):
            raise TargetError(f"fpga-sim runs on the simulator here; got device '{device}' (use fpga-pynq for a board)")
        return FpgaSimSession(options)


class FpgaSimSession(Session):
    """The Verilator model of the accelerator (one per design point), and the host for the ARM-side ops."""

    def __init__(self, options: FpgaOptions) -> None:
        self.options = options
        self.device = f"fpga-sim:{options.board}"
        self._sims: dict = {}

    def simulator(self, design):
        from targets.fpga.sim import Simulator

        if design.key() not in self._sims:
            try:
                self._sims[design.key()] = Simulator(design)
            except FpgaError as exc:
                raise TargetError(str(exc)) from None
        return self._sims[design.key()]

    def snapshot(self) -> DeviceSnapshot:
        clock = (self.options.clock_mhz or board_of(self.options).pl.default_clock_mhz.value) * 1e6
        return DeviceSnapshot(fabric_hz={"pl0": clock}, info={"board": self.options.board, "simulated": True})

    def load(self, artifact: Artifact) -> Executor:
        from targets.fpga.design import DesignPoint

        design = DesignPoint(**artifact.manifest["design"])
        return FpgaSimExecutor(artifact, self.simulator(design), board_of(self.options))

    def close(self) -> None:
        for s in self._sims.values():
            s.close()
        self._sims.clear()


class FpgaSimExecutor(Executor):
    """Runs the compiled graph on the host; each offloaded layer calls the simulator through a global
    function the graph names (`jb_fpga.<tag>.<i>`), which records the RTL's counters and checks the layer's
    output bit for bit against the numpy integer reference of the same layer (a wrong accelerator program
    then fails verification even where the network's output would stay within tolerance)."""

    def __init__(self, artifact: Artifact, sim, board) -> None:
        import tvm
        import tvm_ffi

        from targets.fpga.layer import Program, QLayer
        from targets.tvm.vm import VMExecutor

        self.manifest, self.sim, self.board = artifact.manifest, sim, board
        self.runs: list = []
        self.mismatches: list[str] = []
        for off in self.manifest["offloaded"]:
            program = Program.load(artifact.file(f"accel/layer{off['index']}.npz"))
            ref = QLayer.load(artifact.file(f"accel/layer{off['index']}.ref.npz"))
            tvm_ffi.register_global_func(f"jb_fpga.{self.manifest['tag']}.{off['index']}",
                                         self._layer_fn(program, ref), override=True)
        self.vm = VMExecutor(tvm.runtime.load_module(str(artifact.file("model.so"))), tvm.cpu())

    def _layer_fn(self, program, ref):
        from targets.fpga.reference import run_reference

        def run(q, out) -> None:
            x = q.numpy()
            ys = []
            for image in x:
                r = self.sim.run_program(program, image)
                self.runs.append(r)
                want = run_reference(ref, image)
                if not np.array_equal(r.y, want):
                    self.mismatches.append(f"{ref.name or program.meta.get('layer')}: "
                                           f"{int(np.count_nonzero(r.y != want))} of {want.size} values")
                ys.append(r.y)
            out.copyfrom(np.stack(ys).astype(out.dtype))

        return run

    def infer(self, x: np.ndarray) -> np.ndarray:
        self.runs, self.mismatches = [], []
        y = self.vm.infer(x)
        if self.mismatches:  # raised here, not in the callback: the VM would wrap it in its own traceback
            raise TargetError(f"output mismatch: the accelerator differs from the integer reference in "
                              f"{len(self.mismatches)} layer(s) ({'; '.join(self.mismatches[:2])})")
        return y

    def estimate(self) -> Estimate:
        from targets.fpga import latency, power

        m, b = self.manifest, self.board
        clock = m["clock_mhz"] * 1e6
        tot = {k: sum(getattr(r, k) for r in self.runs) for k in ("cycles", "cycles_dma", "cycles_compute",
                                                                   "bytes_read", "bytes_written")}
        acc = latency.accelerator_time(cycles_total=tot["cycles"], bytes_read=tot["bytes_read"],
                                       bytes_written=tot["bytes_written"], board=b, clock_hz=clock,
                                       cycles_compute=tot["cycles_compute"], cycles_dma=tot["cycles_dma"],
                                       double_buffered=bool(m.get("double_buffered", False)))
        arm = latency.arm_time([latency.ArmOp(**o) for o in m["arm_ops"]], b)
        act = _activity(self.runs, tot["cycles"])
        res = power.Resources(**{k: float(m["resources"].get(k) or 0) for k in ("lut", "ff", "dsp", "bram36", "uram")})
        static_w = power.static_power(b, m.get("idle_w"))
        energy = power.energy_per_inference(accel=acc, res=res, activity=act, static_w=static_w, arm=arm)
        seconds = acc.seconds + arm.seconds
        sim = "simulated:verilator"
        details = {k: Figure(float(v), sim) for k, v in tot.items()}
        details["bytes_moved"] = Figure(float(tot["bytes_read"] + tot["bytes_written"]), sim)
        details["lane_ops"] = Figure(float(sum(r.activity.get("lane_ops", 0) for r in self.runs)), sim)
        inputs = {"accelerator": acc.assumptions(), "arm": arm.assumptions(), "accelerator_s": acc.seconds,
                  "arm_s": arm.seconds, "activity": asdict(act)}
        return Estimate(latency_s=Figure(seconds, latency.PROVENANCE, inputs),
                        energy_j=Figure(energy.joules, power.PROVENANCE, {**energy.assumptions(),
                                                                          "resources": asdict(res)}),
                        idle_power_w=static_w, details=details)


def _activity(runs, cycles: int):
    from targets.fpga.power import Activity

    busy = sum(r.activity.get("mac_cycles", 0) for r in runs) / cycles if cycles else 0.0
    ops = sum(r.activity.get("lane_ops", 0) for r in runs)
    nz = sum(r.activity.get("nz_lane_ops", 0) for r in runs)
    return Activity(busy=min(1.0, busy), nonzero=min(1.0, nz / ops) if ops else 1.0)
