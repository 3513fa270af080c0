"""Builds of one variant with a lowering switch set each way, for the A/B benchmark scripts."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from unittest import mock

import numpy as np

from pruning.compress import CompressionSpec, make_variant
from pruning.variant import ModelSpec


def build_switched(model: str, spec: CompressionSpec, switch: str, value: bool, label: str):
    """(executor, output on the example input, manifest) of `model` compressed by `spec` on host-cpu with
    `targets.tvm.lowering.<switch>` = `value`; verified against PyTorch (exits with the reason if not)."""
    import targets as registry
    import targets.tvm.lowering as lowering
    from bench.api import Artifact
    from bench.verify import check_output

    target = registry.get("host-cpu")
    variant = make_variant(ModelSpec(name=model, seed=0), spec)
    opts = target.parse_options({})
    workdir = Path(tempfile.mkdtemp(prefix=f"jb-{switch.lower()}-"))
    # built directly, not through the artifact cache, whose key does not carry the switch
    with mock.patch.object(lowering, switch, value):
        manifest = target.compile(variant, opts, workdir)
    ex = target.open(None, opts).load(Artifact("host-cpu", workdir, manifest, variant))
    out = np.asarray(ex.infer(variant.example_input()))
    check = check_output(out, variant.reference_output, variant.precision)
    if not check.ok:
        sys.exit(f"{model} ({label}): {check.message}")
    return ex, out, manifest
