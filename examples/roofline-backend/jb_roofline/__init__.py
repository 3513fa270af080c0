"""roofline-cpu: an example joulebench backend that *models* a CPU instead of running on one.

Latency per inference = 2 x MACs / (peak GFLOP/s x efficiency); energy per inference = active power x
latency. Every figure is labelled `modeled:roofline@1` and its inputs are stored with the row. To
produce an output that the runner can verify, the executor runs the variant's own PyTorch module:
the model predicts the speed of a device, it does not compute on one.

It imports `bench.api` and nothing else of joulebench, as every third-party backend should.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from bench.api import Artifact, Estimate, Executor, Figure, Session, Target, Variant

MODEL = "roofline@1"


class RooflineOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    peak_gflops: float = Field(100.0, gt=0, description="peak fp32 GFLOP/s of the modeled device")
    efficiency: float = Field(0.5, gt=0, le=1, description="fraction of peak a conv network reaches")
    power_w: float = Field(5.0, gt=0, description="package power while inferring (W)")
    idle_power_w: float = Field(1.0, ge=0, description="package power when idle (W)")


class RooflineExecutor(Executor):
    def __init__(self, artifact: Artifact, options: RooflineOptions) -> None:
        self.variant, self.options = artifact.variant, options
        self.macs = json.loads(artifact.file("plan.json").read_text())["macs"]

    def infer(self, x: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self.variant.module(torch.from_numpy(x)).numpy()

    def estimate(self) -> Estimate:
        o = self.options
        flops_per_s = o.peak_gflops * 1e9 * o.efficiency
        seconds = 2 * self.macs / flops_per_s
        inputs = {"macs": self.macs, "peak_gflops": o.peak_gflops, "efficiency": o.efficiency}
        return Estimate(
            latency_s=Figure(seconds, f"modeled:{MODEL}", inputs),
            energy_j=Figure(o.power_w * seconds, f"modeled:{MODEL}", {"power_w": o.power_w}),
            idle_power_w=o.idle_power_w,
        )


class RooflineSession(Session):
    device = "modeled CPU (roofline)"

    def __init__(self, options: RooflineOptions) -> None:
        self.options = options

    def load(self, artifact: Artifact) -> Executor:
        return RooflineExecutor(artifact, self.options)


class RooflineTarget(Target):
    name = "roofline-cpu"
    description = "example backend: a CPU modeled by a roofline (modeled:roofline@1), no hardware needed"
    Options = RooflineOptions
    figures = "modeled"

    def accepts(self, variant: Variant) -> str | None:
        return None if variant.module is not None else "roofline-cpu verifies with the torch module; this is ONNX"

    def compile(self, variant: Variant, options: RooflineOptions, workdir: Path) -> dict:
        # the "compiled artifact" of a model-only backend: the work it will be charged for
        macs = int(variant.manifest["macs_effective"])
        (workdir / "plan.json").write_text(json.dumps({"macs": macs}))
        return {"model": MODEL, "macs_effective": macs}

    def open(self, device: str | None, options: RooflineOptions) -> Session:
        return RooflineSession(options)
