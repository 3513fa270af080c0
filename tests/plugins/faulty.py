"""Backends whose compiled programs are genuinely wrong: a real TVM build of perturbed weights, and a real
accelerator program with scrambled weights.

Used to prove that verification catches a bad compile and that such a cell is never timed.
Loaded in campaigns by its dotted path, exactly as a third-party backend under development would be.
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from pruning.variant import Variant
from targets.fpga.target import FpgaSimTarget
from targets.host_cpu import HostCPUTarget


class PerturbedHostCPU(HostCPUTarget):
    name = "perturbed-host-cpu"

    def compile(self, variant: Variant, options, workdir):
        module = copy.deepcopy(variant.module)
        last = [m for m in module.modules() if isinstance(m, torch.nn.Linear)][-1]
        with torch.no_grad():
            last.bias += 1.0  # every logit shifted: far beyond any fp32 tolerance
        wrong = Variant(variant.model, variant.name, variant.input_shape, dict(variant.manifest), module=module)
        return super().compile(wrong, options, workdir)


class CorruptedFpgaSim(FpgaSimTarget):
    """fpga-sim whose packed accelerator program has its first layer's weights scrambled after compiling:
    the hardware accepts it, the outputs are wrong, and verification must catch it before any figure."""

    name = "corrupted-fpga-sim"

    def compile(self, variant: Variant, options, workdir):
        from targets.fpga.layer import Program

        manifest = super().compile(variant, options, workdir)
        path = workdir / "accel" / "layer0.npz"
        prog = Program.load(path)
        prog.image[-64:] ^= np.uint8(0x55)  # the tail of the last weight set
        prog.save(path)
        return manifest
