"""fpga-pynq: the fpga-sim artifact (offloaded layers as accelerator programs + the ARM-side graph)
run on a PYNQ-class Zynq board through the board agent (agent.py) over TCP (protocol.py).

Figures are measured: latency by a timer around each inference, on the board (`board-agent`: the
agent runs the ARM-side library on the board's cores and the layers on the accelerator) or, for
profile = "host", on this host (`perf_counter`: the ARM-side ops run here, only the offloaded layers
go to the board); the accelerator's own cycle counter is kept per layer run, energy by the `pynq-rails` meter from the board's PMBus rails,
recorded on the board by pynq.DataRecorder, marked at the protocol's events and pulled here at the end
of the timed window. Without a running agent the target compiles only.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from bench.api import Artifact, DeviceSnapshot, Executor, NotRunnable, Session, TargetError, Variant
from targets.fpga.pynq import protocol as P
from targets.fpga.target import FpgaOptions, FpgaSimTarget

# the ARM cores of each device family; `host` builds for this machine (tests, dry runs)
ARM_TARGETS = {
    "xcup": {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a53", "mattr": ["+neon"]},
    "xc7": {"kind": "llvm", "mtriple": "armv7a-linux-gnueabihf", "mcpu": "cortex-a9", "mattr": ["+neon", "+vfp3"]},
}


class PynqOptions(FpgaOptions):
    profile: Literal["board", "host"] = Field(
        "board", description="board: ARM-side library for the board's cores (aarch64 / armv7-a NEON); host: this "
                             "machine, whose ARM-side ops then run here (tests, dry runs)")
    rails: list[str] = Field(default_factory=list, description="PMBus rails to record (default: all the board has)")
    record_period_s: float = Field(0.01, gt=0, description="DataRecorder sampling interval")
    connect_timeout_s: float = Field(30.0, gt=0)


def parse_device(device: str) -> tuple[str, int]:
    kind, _, rest = device.partition(":")
    host, _, port = rest.rpartition(":")
    if kind != "tcp" or not host or not port.isdigit():
        raise TargetError(f"fpga-pynq device must be 'tcp:HOST:PORT' of a running board agent, got '{device}'")
    return host, int(port)


def arm_target(options: PynqOptions, family: str):
    import tvm

    if options.profile == "host":
        from targets.host_cpu import host_target

        return host_target()
    return tvm.target.Target(ARM_TARGETS[family])


class FpgaPynqTarget(FpgaSimTarget):
    name = "fpga-pynq"
    description = ("FPGA board over PYNQ: the fpga-sim artifact on a Zynq board's accelerator overlay, timed and "
                   "metered (PMBus rails) on the board through its agent")
    Options = PynqOptions
    figures = "measured"

    def __init__(self) -> None:
        self._rails_dir: Path | None = None
        self._rails_seen: list[str] = []  # rails the last opened board reported: no meter without any

    def availability(self) -> tuple[bool, str]:
        ok, why = super().availability()
        if not ok:
            return ok, why
        return True, "compile only: no board (device = 'tcp:HOST:PORT' of a running agent)"

    def version(self) -> str:
        return f"{super().version()}-pynq1"

    def accepts(self, variant: Variant) -> str | None:
        why = super().accepts(variant)
        return why.replace("fpga-sim", self.name) if why else None

    @property
    def rails_csv(self) -> Path:
        """Where sessions of this target put the pulled rails CSV for the `pynq-rails` meter."""
        if self._rails_dir is None:
            self._rails_dir = Path(tempfile.mkdtemp(prefix="jb-pynq-rails-"))
        return self._rails_dir / "rails.csv"

    def default_meters(self) -> list[str | dict]:
        return [{"name": "pynq-rails", "path": str(self.rails_csv)}] if self._rails_seen else []

    def compile(self, variant: Variant, options: PynqOptions, workdir: Path) -> dict:
        manifest = super().compile(variant, options, workdir)  # model.so for this host + accel/layer<i>.npz
        family = manifest["family"]
        lib = "model.so"
        if options.profile != "host":
            lib = self._cross_build(variant, options, family, manifest["tag"], workdir)
        manifest.update(profile=options.profile, arm_target=str(arm_target(options, family)),
                        record_period_s=options.record_period_s, rails=options.rails, arm_library=lib)
        return manifest

    def _cross_build(self, variant: Variant, options: PynqOptions, family: str, tag: str, workdir: Path) -> str:
        """The ARM-side library for the board's cores: model.so linked here by the cross compiler in
        JB_PYNQ_CC (e.g. aarch64-linux-gnu-gcc), else objects in model.tar that the agent links on the
        board (tvm.runtime.load_module links a .tar with the board's own compiler)."""
        import os

        from targets.fpga.offload import rewrite
        from targets.fpga.target import design_for
        from targets.tvm.build import build
        from targets.tvm.importer import to_relax
        from targets.tvm.lowering import lower

        design = design_for(variant, options)
        mod, _ = rewrite(to_relax(variant), variant, design, tag)
        mf = variant.manifest
        block_rows = int(mf["block"].split("x")[0]) if mf.get("block") else None
        mod, _ = lower(mod, mf.get("scheme", "none"), block_rows, variant.qweights)
        ex, _ = build(mod, arm_target(options, family))
        cc = os.environ.get("JB_PYNQ_CC")
        if cc:
            from tvm.contrib import cc as tvm_cc

            ex.export_library(str(workdir / "model.so"), fcompile=tvm_cc.cross_compiler(cc))
            return "model.so"
        ex.export_library(str(workdir / "model.tar"))
        return "model.tar"

    def open(self, device: str | None, options: PynqOptions) -> Session:
        if device is None:
            raise NotRunnable("compiled, not run: no board (device = 'tcp:HOST:PORT' of a running agent)")
        host, port = parse_device(device)
        s = PynqSession(host, port, options, self.rails_csv)
        self._rails_seen = list(s.hello.get("rails") or [])
        return s


class PynqSession(Session):
    """One connection to a board agent; marks the board's power recording at the protocol's events."""

    def __init__(self, host: str, port: int, options: PynqOptions, rails_csv: Path) -> None:
        self.options, self.rails_csv = options, rails_csv
        self.device = f"pynq:{host}:{port}"
        self._broken = False
        self._recording = False
        try:
            self.conn = P.Connection(host, port, options.connect_timeout_s)
            self.hello, _ = self.conn.call("hello")
        except (OSError, P.ProtocolError) as exc:
            raise TargetError(f"no board agent at {host}:{port}: {exc}") from None
        except P.AgentError as exc:
            raise TargetError(f"board agent at {host}:{port}: {exc}") from None

    def call(self, op: str, payload: bytes = b"", **fields) -> tuple[dict, bytes]:
        """One request; a dropped connection marks the session unhealthy (the runner reopens it)."""
        if self._broken:
            raise TargetError(f"board {self.device} disconnected")
        try:
            return self.conn.call(op, payload, **fields)
        except (OSError, P.ProtocolError) as exc:
            self._broken = True
            raise TargetError(f"board {self.device} disconnected during '{op}': {exc}") from None
        except P.AgentError as exc:
            raise TargetError(f"board {self.device}: {exc}") from None

    def snapshot(self) -> DeviceSnapshot:
        try:
            h, _ = self.call("snapshot")
        except TargetError as exc:
            return DeviceSnapshot(error=str(exc))
        return DeviceSnapshot(fabric_hz=h["fabric_hz"], temps_c=h["temps_c"], info=h["info"])

    def load(self, artifact: Artifact) -> Executor:
        m = artifact.manifest
        d = m["design"]
        hw = self.hello["design"]
        if {k: d[k] for k in hw} != hw:
            raise TargetError(f"artifact is for design {m['design_label']}, the board's overlay is {hw}")
        for off in m["offloaded"]:
            npz = artifact.file(f"accel/layer{off['index']}.npz").read_bytes()
            self.call("program", npz, key=f"{m['tag']}.{off['index']}")
        if m.get("profile") == "host":
            ex: Executor = PynqHostExecutor(artifact, self)
        else:
            lib = artifact.file(m["arm_library"])
            self.call("model", lib.read_bytes(), tag=m["tag"], layers=[o["index"] for o in m["offloaded"]],
                      suffix=lib.suffix)
            ex = PynqBoardExecutor(self)
        self._start_recording()
        return ex

    def _start_recording(self) -> None:
        """A fresh recording per cell, so that its Mark increments are exactly this cell's events."""
        self._recording = False
        if not self.hello.get("rails"):
            return
        self.rails_csv.unlink(missing_ok=True)
        self.call("record_start", rails=self.options.rails, period_s=self.options.record_period_s)
        self._recording = True

    def on_event(self, label: str, t: float) -> None:
        if not self._recording:
            return
        self.call("mark", label=label)
        if label == "timed_end":
            _, csv = self.call("record_stop")
            self._recording = False
            tmp = self.rails_csv.with_suffix(".tmp")
            tmp.write_bytes(csv)
            tmp.replace(self.rails_csv)  # the meter reads it in its stop(), right after this event

    def healthy(self) -> bool:
        return not self._broken

    def close(self) -> None:
        if not self._broken:
            try:
                self.conn.call("bye")
            except (OSError, P.ProtocolError, P.AgentError):
                pass
        self.conn.close()


class PynqBoardExecutor(Executor):
    """The whole inference on the board: the agent runs the ARM-side library and the accelerator, and
    times each inference on its own clock (no network in the figure)."""

    timer = "board-agent"

    def __init__(self, session: PynqSession) -> None:
        self.session = session
        self.counters: list[dict] = []

    def infer(self, x: np.ndarray) -> np.ndarray:
        h, data = self.session.call("infer", P.contiguous(x), **P.array_header(x))
        self.counters = h["counters"]
        return P.to_array(h, data)

    def time_runs(self, n: int) -> list[float]:
        h, _ = self.session.call("time", n=n)
        self.counters = h["counters"]
        return [float(s) for s in h["seconds"]]

    def accelerator_cycles(self) -> int:
        """The accelerator's cycle counter summed over the last inference's layer runs."""
        return sum(c["cycles"] for c in self.counters)


class PynqHostExecutor(Executor):
    """The ARM-side graph on this host (profile = host); each offloaded layer is a global function
    (`jb_fpga.<tag>.<i>`) that runs it on the board's accelerator and keeps its counters."""

    timer = "perf_counter"

    def __init__(self, artifact: Artifact, session: PynqSession) -> None:
        import tvm
        import tvm_ffi

        from targets.tvm.vm import VMExecutor

        self.manifest, self.session = artifact.manifest, session
        self.runs: list[dict] = []  # per layer run: counters (the RTL's) and wall_s (board time)
        tag = self.manifest["tag"]
        for off in self.manifest["offloaded"]:
            tvm_ffi.register_global_func(f"jb_fpga.{tag}.{off['index']}", self._layer_fn(f"{tag}.{off['index']}"),
                                         override=True)
        self.vm = VMExecutor(tvm.runtime.load_module(str(artifact.file("model.so"))), tvm.cpu())
        self._x: np.ndarray | None = None

    def _layer_fn(self, key: str):
        def run(q, out) -> None:
            ys = []
            for image in q.numpy():
                h, data = self.session.call("run", P.contiguous(image), key=key, **P.array_header(image))
                self.runs.append({"counters": h["counters"], "wall_s": h["wall_s"]})
                ys.append(P.to_array(h, data))
            out.copyfrom(np.stack(ys).astype(out.dtype))

        return run

    def infer(self, x: np.ndarray) -> np.ndarray:
        self._x = x
        self.runs = []
        return self.vm.infer(x)

    def time_runs(self, n: int) -> list[float]:
        out = []
        for _ in range(n):
            self.runs = []
            t0 = time.perf_counter()
            self.vm.infer(self._x)
            out.append(time.perf_counter() - t0)
        return out

    def accelerator_cycles(self) -> int:
        """The accelerator's cycle counter summed over the last inference's layer runs."""
        return sum(r["counters"]["cycles"] for r in self.runs)
