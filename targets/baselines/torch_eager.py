"""torch-eager: the variant's own torch module, run in inference mode on this CPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from bench.api import Executor, Session, Variant, time_callable
from targets.baselines import RuntimeBaseline
from targets.host_cpu import HostSession


class TorchOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    threads: int | None = Field(None, ge=1, description="torch intra-op threads; default: torch's own")


class TorchExecutor(Executor):
    timer = "perf_counter"

    def __init__(self, module: torch.nn.Module) -> None:
        self.module = module  # already in eval mode (export-loaded modules refuse .eval())
        self.x: torch.Tensor | None = None

    def infer(self, x: np.ndarray) -> np.ndarray:
        self.x = torch.from_numpy(x)
        with torch.inference_mode():
            return self.module(self.x).numpy()

    def time_runs(self, n: int) -> list[float]:
        with torch.inference_mode():
            return time_callable(lambda: self.module(self.x), n)


class TorchSession(HostSession):
    def __init__(self, device: str | None, threads: int | None) -> None:
        super().__init__("torch-eager", device)
        if threads:
            torch.set_num_threads(threads)

    def load(self, artifact):
        return TorchExecutor(artifact.variant.module)


class TorchEagerTarget(RuntimeBaseline):
    name = "torch-eager"
    description = f"PyTorch {torch.__version__} eager mode on this CPU (baseline)"
    Options = TorchOptions
    package, version_tag, revision = "torch", "torch", 2

    def accepts(self, variant: Variant) -> str | None:
        return None if variant.module is not None else "torch-eager runs torch models; this one is an ONNX file"

    def compile(self, variant: Variant, options: TorchOptions, workdir: Path) -> dict:
        # eager mode multiplies pruned (zero) weights like any other: the work done is the dense work
        # a quantized variant runs as its dequantized float graph here: say so next to its bits
        return {"torch": torch.__version__, "threads": options.threads or torch.get_num_threads(),
                "macs_effective": variant.manifest["macs_dense"], "executed": "fp32"}

    def open(self, device: str | None, options: TorchOptions) -> Session:
        return TorchSession(device, options.threads)
