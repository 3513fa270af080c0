"""A backend whose compiled program is genuinely wrong: a real TVM build of perturbed weights.

Used to prove that verification catches a bad compile and that such a cell is never timed.
Loaded in campaigns by its dotted path, exactly as a third-party backend under development would be.
"""

from __future__ import annotations

import copy

import torch

from pruning.variant import Variant
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
