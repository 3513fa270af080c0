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


def _compile_and_check(v, mode="joulebench", lanes=8):
    mod, info = lower_variant(to_relax(v), v, mode, dense_br=lanes)
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


def _ops_left(mod) -> set[str]:
    return {b.value.op.name for blk in mod["main"].body.blocks for b in blk.bindings
            if isinstance(b.value, tvm.relax.Call) and isinstance(b.value.op, tvm.ir.Op)}


def test_16_lane_builds_take_the_pixel_form_and_lower_depthwise_convs():
    """On 16-lane CPUs (AVX-512) convs on maps of 8x8 and more take the pixel-vectorized form, and
    MobileNet-V2's depthwise convs with their batch-norm and ReLU6 run in the kernel family too."""
    v = make_variant(R18, CompressionSpec(scheme="block", sparsity=0.875, block="8x16"))
    mod, info, err, scale = _compile_and_check(v, lanes=16)
    forms = [(la["vectorized"], la["op"]) for la in info["lowered_layers"]]
    assert ("pixels", "conv") in forms and ("pixels-shifted", "conv") in forms  # 4x4 maps: shifted copies
    dense = make_variant(R18, CompressionSpec())
    dense_forms = [la["vectorized"] for la in _compile_and_check(dense, lanes=16)[1]["lowered_layers"]]
    assert "channels" in dense_forms and "pixels-shifted" not in dense_forms  # 16-row blocks fill vectors there
    assert ir_macs(mod) == v.manifest["macs_effective"] and err <= 1e-4 * max(1.0, scale)

    mb = make_variant(ModelSpec(name="mobilenetv2-cifar"), CompressionSpec())
    mod, info, err, scale = _compile_and_check(mb, lanes=16)
    assert err <= 1e-4 * max(1.0, scale)
    left = _ops_left(mod)
    assert not left & {"relax.nn.conv2d", "relax.nn.batch_norm", "relax.clip"}, left
    depthwise = [la for la in info["lowered_layers"] if la["br"] == 1 and la["columns"] == 9]
    assert len(depthwise) == 17 and all(la["fused"] == ["bias", "relu6"] for la in depthwise)
    assert all(la["vectorized"] == "planes" for la in depthwise)  # 4x4 to 32x32 planes: whole vectors
    assert ir_macs(mod) == mb.manifest["macs_dense"]


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


DIGITS = ModelSpec(name="smallcnn-digits")


@pytest.mark.parametrize("spec,storage", [
    (CompressionSpec(bits=8), [8] * 7),
    (CompressionSpec(scheme="block", sparsity=0.75, bits=4), [8, 4, 4, 4, 4, 4, 8]),
    (CompressionSpec(bits=2), [8, 2, 2, 2, 2, 2, 8]),
    (CompressionSpec(bits=1), [8, 1, 1, 1, 1, 1, 8]),
])
def test_quantized_variants_run_integer_kernels(spec, storage):
    v = make_variant(DIGITS, spec)
    mod, info, err, scale = _compile_and_check(v)
    layers = info["lowered_layers"]
    assert [layer["dtype"] for layer in layers] == ["int8"] * 7  # every layer on the integer path
    assert [layer["weight_storage_bits"] for layer in layers] == storage  # first/last layers stay 8-bit
    assert err <= 6e-2 * max(1.0, scale)
    assert info["macs_effective"] == v.manifest["macs_effective"]
    text = mod["main"].script(show_meta=False)
    assert "R.divide" not in text and "R.round" not in text  # the float fake-quant ops are gone
    packed = [b.value.args[1].fields[0] for blk in mod["main"].body.blocks for b in blk.bindings
              if _is_call_to(b.value, "jb_unpack")]
    assert len(packed) == sum(s < 8 for s in storage)
    for const, layer in zip(packed, [la for la, s in zip(layers, storage, strict=True) if s < 8], strict=True):
        n = layer["rows_computed"] * layer["columns"]
        assert const.value.numpy().dtype == np.uint8
        assert const.value.numpy().size == -(-n * layer["weight_storage_bits"] // 8)  # packed: ceil(n * bits / 8)


def test_low_bit_weights_stay_packed_in_the_exported_artifact(tmp_path):
    """FoldConstant must not unpack the weights at build time: the shipped library shrinks with bits."""
    sizes = {}
    for bits in (8, 2):
        v = make_variant(DIGITS, CompressionSpec(bits=bits))
        mod, info = lower_variant(to_relax(v), v)
        tvm.compile(mod, host_target()).export_library(str(tmp_path / f"w{bits}.so"))
        sizes[bits] = (tmp_path / f"w{bits}.so").stat().st_size
    inner = sum(layer["rows_computed"] * layer["columns"] for layer in info["lowered_layers"][1:-1])
    assert sizes[8] - sizes[2] >= 0.7 * inner * (1 - 2 / 8)  # ~6 of every 8 bits of the inner layers saved


def _is_call_to(value, prefix: str) -> bool:
    return getattr(getattr(value, "op", None), "name", None) == "relax.call_tir" and \
        value.args[0].name_hint.startswith(prefix)


def test_pack_bits_roundtrip_through_the_tvm_kernel():
    from targets.tvm.kernels import pack_bits, unpack_compute

    rng = np.random.default_rng(0)
    for bits, lo, hi in ((4, -7, 8), (2, -1, 2), (1, 0, 2)):
        q = rng.integers(lo, hi, 999).astype(np.int8)
        q = q * 2 - 1 if bits == 1 else q
        packed = pack_bits(q, bits)
        assert packed.nbytes == -(-999 * bits // 8)
        f = tvm.compile(tvm.IRModule({"main": unpack_compute(999, bits, (1,))}), "llvm")
        out = tvm.runtime.empty((999,), "int8")
        f["main"](tvm.runtime.tensor(packed), tvm.runtime.empty((1,), "float32"), out)
        assert (out.numpy() == q).all()


def test_fp16_graph_runs_in_half_precision_and_matches():
    from targets.tvm.precision import to_fp16

    v = make_variant(R18, CompressionSpec(precision="fp16"))
    mod = to_fp16(to_relax(v))
    assert mod["main"].script(show_meta=False).count("float16") > 50
    out = VMExecutor(tvm.compile(mod, host_target()), tvm.cpu()).infer(v.example_input())
    ref = v.reference_output
    err = float(np.abs(out.astype(np.float32) - ref).max())
    assert 1e-6 < err <= 2e-2 * max(1.0, float(np.abs(ref).max()))  # really computed in half, and close


def test_8bit_depthwise_convs_quantize_their_input_as_they_load_it():
    """In an 8-bit MobileNet-V2 the depthwise convs absorb their input's fake-quant (no divide/round
    left in the graph; the plane form quantizes the vectors it loads) and multiply integer levels
    exactly in fp32, matching the fake-quant reference."""
    mb = make_variant(ModelSpec(name="mobilenetv2-cifar"), CompressionSpec(bits=8))
    mod, info, err, scale = _compile_and_check(mb, lanes=16)
    assert not _ops_left(mod) & {"relax.round", "relax.divide", "relax.nn.conv2d"}, _ops_left(mod)
    depthwise = [la for la in info["lowered_layers"] if la["br"] == 1 and la["columns"] == 9]
    assert len(depthwise) == 17 and all(la.get("arithmetic") == "fp32, exact on int8 levels" for la in depthwise)
    assert all(la["vectorized"] == "planes" for la in depthwise)
    assert all(la["dtype"] == "int8" for la in info["lowered_layers"])
    assert err <= 1e-3 * max(1.0, scale), err
