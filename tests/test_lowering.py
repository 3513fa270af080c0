"""The TVM lowering does only the kept work, and the compiled output matches the reference."""

from __future__ import annotations

import numpy as np
import pytest
import tvm

from pruning.compress import CompressionSpec, make_variant
from pruning.variant import ModelSpec
from targets.host_cpu import host_target
from targets.tvm.importer import to_relax
from targets.tvm.lowering import ir_macs, lower_variant, plan_layer
from targets.tvm.vm import VMExecutor

R18 = ModelSpec(name="resnet18-cifar")


def _compile_and_check(v, mode="joulebench"):
    mod, info = lower_variant(to_relax(v), v, mode)
    ex = tvm.compile(mod, host_target())
    out = VMExecutor(ex, tvm.cpu()).infer(v.example_input())
    ref = v.reference_output
    err = float(np.abs(out - ref).max())
    return mod, info, err, float(np.abs(ref).max())


@pytest.mark.parametrize("sparsity", [0.5, 0.875])
def test_block_variant_compiles_only_kept_columns(sparsity):
    v = make_variant(R18, CompressionSpec(scheme="block", sparsity=sparsity, block="8x16"))
    mod, info, err, scale = _compile_and_check(v)
    # MACs read back from the lowered IR equal the variant's mask-derived effective MACs exactly
    assert ir_macs(mod) == info["macs_effective"] == v.manifest["macs_effective"]
    assert v.manifest["macs_effective"] < (1 - sparsity + 0.01) * v.manifest["macs_dense"]
    assert err <= 1e-4 * max(1.0, scale)
    assert len(info["lowered_layers"]) == 21  # 20 convs + the classifier, none left to TVM's generic conv
    assert all("bias" in layer["fused"] for layer in info["lowered_layers"])  # batch-norm folded
    assert sum("residual" in layer["fused"] for layer in info["lowered_layers"]) == 8  # the 8 basic blocks


def test_unstructured_stays_dense_and_filter_shrinks():
    un = make_variant(R18, CompressionSpec(scheme="unstructured", sparsity=0.875))
    mod, info, err, scale = _compile_and_check(un)
    assert info["macs_effective"] == un.manifest["macs_dense"] and err <= 1e-4 * max(1.0, scale)
    fi = make_variant(R18, CompressionSpec(scheme="filter", sparsity=0.5))
    mod, info, err, scale = _compile_and_check(fi)
    assert info["macs_effective"] == fi.manifest["macs_effective"] < 0.55 * fi.manifest["macs_dense"]
    assert err <= 1e-4 * max(1.0, scale)


def test_tvm_default_lowering_is_still_available():
    v = make_variant(ModelSpec(name="smallcnn-digits"), CompressionSpec())
    mod, info, err, scale = _compile_and_check(v, "tvm")
    assert info["lowering"] == "tvm" and info["macs_effective"] == v.manifest["macs_dense"]
    assert err <= 1e-4 * max(1.0, scale)


def test_plan_layer_shapes():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((16, 32)).astype(np.float32)
    w[:8, 5:] = 0  # row-block 0 keeps 5 columns, row-block 1 keeps all 32
    plan = plan_layer(w, "block", 8)
    assert plan.cols.shape == (2, 32) and plan.weight.shape == (2, 8, 32)
    assert (plan.weight[0, :, 5:] == 0).all()  # padded columns carry zero weights
    w10 = rng.standard_normal((10, 12)).astype(np.float32)
    assert plan_layer(w10, "none", None).br == 10  # a 10-way classifier needs no padded rows
    wf = w.copy()
    wf[[1, 3]] = 0
    fp = plan_layer(wf, "filter", None)
    assert fp.rows is not None and 1 not in fp.rows and len(fp.rows) == 14
