"""openvino: Intel OpenVINO's CPU plugin, threads = cores, latency hint (the fastest dense peer on x86 CPUs).

The variant is exported to ONNX (as for onnxruntime) and compiled by OpenVINO at load time; the
artifact holds the ONNX file and OpenVINO's own IR (`model.xml` / `model.bin`), so a user can open
what ran. Like onnxruntime, OpenVINO's CPU kernels are dense: pruned weights cost as much as any other.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from bench.api import Executor, Variant, time_callable
from targets.baselines import RuntimeBaseline
from targets.baselines.ort import export_onnx
from targets.host_cpu import HostSession


class OpenVinoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    threads: int | None = Field(None, ge=1, description="inference threads; default: cores")
    hint: str = Field("LATENCY", pattern="^(LATENCY|THROUGHPUT)$", description="OpenVINO performance hint")
    precision: str = Field("f32", pattern="^(f32|bf16)$",
                           description="inference precision hint: f32 (exact), or bf16 where the CPU has it")


class OpenVinoExecutor(Executor):
    timer = "perf_counter"

    def __init__(self, path: Path, opts: OpenVinoOptions, threads: int) -> None:
        import openvino as ov

        core = ov.Core()
        config = {"PERFORMANCE_HINT": opts.hint, "INFERENCE_NUM_THREADS": threads,
                  "INFERENCE_PRECISION_HINT": opts.precision}
        self.compiled = core.compile_model(str(path), "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.x: np.ndarray | None = None

    def infer(self, x: np.ndarray) -> np.ndarray:
        self.x = np.ascontiguousarray(x)
        self.request.infer({0: self.x})
        return self.request.get_output_tensor(0).data.copy()

    def time_runs(self, n: int) -> list[float]:
        return time_callable(lambda: self.request.infer({0: self.x}), n)


class OpenVinoSession(HostSession):
    def __init__(self, device: str | None, opts: OpenVinoOptions) -> None:
        super().__init__("openvino", device)
        self.opts = opts

    def load(self, artifact):
        return OpenVinoExecutor(artifact.file("model.xml"), self.opts, self.opts.threads or os.cpu_count() or 1)


class OpenVinoTarget(RuntimeBaseline):
    name = "openvino"
    description = "OpenVINO CPU plugin, threads = cores, latency hint (baseline)"
    Options = OpenVinoOptions
    package, version_tag, revision = "openvino", "openvino", 1

    def compile(self, variant: Variant, options: OpenVinoOptions, workdir: Path) -> dict:
        import openvino as ov

        export_onnx(variant, workdir / "model.onnx")
        # compress_to_fp16=False: the IR keeps fp32 weights (the default halves them)
        ov.save_model(ov.convert_model(str(workdir / "model.onnx")), str(workdir / "model.xml"), compress_to_fp16=False)
        return {"openvino": ov.__version__, "threads": options.threads or os.cpu_count(), "hint": options.hint,
                "macs_effective": variant.manifest["macs_dense"],
                # a quantized variant runs as its dequantized float graph; bf16 only if asked
                "executed": "bf16" if options.precision == "bf16" else "fp32"}

    def open(self, device: str | None, options: OpenVinoOptions) -> OpenVinoSession:
        return OpenVinoSession(device, options)
