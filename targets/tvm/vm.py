"""Executor over a Relax VM, driven the RPC-compatible way (set_input / invoke_stateful / get_outputs)."""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax

from bench.api import Executor


class VMExecutor(Executor):
    timer = "tvm.time_evaluator"
    extra_runs_per_call = 1  # time_evaluator runs the function once more (discarded) before timing

    def __init__(self, lib, dev) -> None:
        self.dev = dev
        self.vm = relax.VirtualMachine(lib, dev)

    def infer(self, x: np.ndarray) -> np.ndarray:
        self.vm.set_input("main", tvm.runtime.tensor(x, self.dev))
        self.vm.invoke_stateful("main")
        out = self.vm.get_outputs("main")
        out = out[0] if not hasattr(out, "numpy") else out
        return out.numpy()

    def time_runs(self, n: int) -> list[float]:
        # number=1: each repeat is one inference, so we keep per-inference samples
        f = self.vm.time_evaluator("invoke_stateful", self.dev, number=1, repeat=n)
        return list(f("main").results)
