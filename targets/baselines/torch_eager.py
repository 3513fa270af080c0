"""torch-eager: the variant's own torch module, run in inference mode on this CPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from bench.protocol import time_callable
from pruning.variant import Variant
from targets.base import Session, Target, TargetError
from targets.host_cpu import cpu_model


class TorchOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    threads: int | None = Field(None, ge=1, description="torch intra-op threads; default: torch's own")


class TorchExecutor:
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


class TorchSession(Session):
    def __init__(self, threads: int | None) -> None:
        if threads:
            torch.set_num_threads(threads)
        self.device = f"host:{cpu_model()}"

    def snapshot(self) -> dict:
        from bench.host import cpu_snapshot

        return cpu_snapshot()

    def load(self, artifact):
        return TorchExecutor(artifact.variant.module)


class TorchEagerTarget(Target):
    name = "torch-eager"
    description = f"PyTorch {torch.__version__} eager mode on this CPU (baseline)"
    Options = TorchOptions

    def default_meters(self) -> list[str | dict]:
        return ["rapl"]  # the host package's energy counter, where the machine exposes it

    def accepts(self, variant: Variant) -> str | None:
        return None if variant.module is not None else "torch-eager runs torch models; this one is an ONNX file"

    def version(self) -> str:
        return f"torch-{torch.__version__}"

    def compile(self, variant: Variant, options: TorchOptions, workdir: Path) -> dict:
        return {"torch": torch.__version__, "threads": options.threads or torch.get_num_threads()}

    def open(self, device: str | None, options: TorchOptions) -> Session:
        if device not in (None, "host", "local"):
            raise TargetError(f"torch-eager runs on this machine only; got device '{device}'")
        return TorchSession(options.threads)
