"""The AVX512-VNNI integer kernel (targets/tvm/vnni_kernels.py) against a numpy reference of the same
integer arithmetic, and in a compiled 8-bit variant. Needs a CPU with AVX512-VNNI (skipped elsewhere)."""

import numpy as np
import pytest
import tvm

from pruning.compress import CompressionSpec, make_variant
from pruning.variant import ModelSpec
from targets.host_cpu import has_vnni, host_target
from targets.tvm.kernels import ActQuant, ConvShape
from targets.tvm.vnni_kernels import VNNIPixelPlan, VNNIPlan, plan_pixels, vnni_conv, vnni_conv_pixels

pytestmark = pytest.mark.skipif(not has_vnni(host_target()), reason="this CPU has no AVX512-VNNI")


def _build(form, shape, quant, residual, cap, w2, codes_in=False, out_quant=None):
    """(library, weights, column table) of one form: channel lanes, or pixel lanes with (rows, vecs)."""
    if form in ("channels", "channels x2"):  # x2: two row-blocks per tile share each broadcast input
        plan = VNNIPlan(shape, *((16, 1) if form == "channels" else (8, 2)))
        func = vnni_conv(plan, quant, residual, True, cap, codes_in, out_quant)
        wts, table = plan.weights(w2).reshape(plan.row_blocks, -1, 64), plan.table()
    else:
        plan = VNNIPixelPlan(shape, *form)
        func = vnni_conv_pixels(plan, quant, residual, True, cap, codes_in, out_quant)
        wts, table = plan.weights(w2), plan.offsets()
    return tvm.tirx.build(tvm.IRModule({"main": func}), host_target()), wts, table


@pytest.mark.parametrize("c,h,cout,k,stride,residual,cap,form", [
    (8, 8, 32, 3, 1, True, None, "channels"),
    (3, 9, 24, 3, 2, False, 6.0, "channels"),  # channels not a multiple of 4, rows not of 16, stride 2, ReLU6
    (20, 4, 16, 1, 1, False, None, "channels"),
    (8, 4, 64, 3, 1, True, None, "channels x2"),  # 4 row-blocks in pairs, residual
    (3, 9, 24, 3, 2, False, 6.0, "channels x2"),  # the pair's second block only half used
    (20, 4, 16, 1, 1, False, None, "channels x2"),  # one row-block: tiles of one
    (8, 8, 32, 3, 1, True, None, (8, 3)),  # padded rows: the output stage drops the extra pixels
    (3, 9, 20, 3, 2, False, 6.0, (8, 2)),  # stride phases, rows not a multiple of 8
    (20, 8, 24, 1, 1, True, None, (8, 2)),  # exact tiling: output stage on the register write-back
    (12, 8, 16, 1, 2, True, None, (4, 1)),  # 1x1 stride 2: phase planes, still exact
    (18, 8, 40, 1, 1, True, 6.0, (8, 1)),  # local packing: channels past C, 4 tasks of one tile
    (8, 32, 24, 1, 1, False, None, (8, 2)),  # local packing, 4 tiles per task
    (20, 4, 40, 1, 1, True, None, (8, 1)),  # local packing, one tile: 5 row-blocks in 5 chunks
])
def test_vnni_kernel_matches_integer_reference(c, h, cout, k, stride, residual, cap, form, monkeypatch):
    import targets.tvm.vnni_kernels as vk

    monkeypatch.setattr(vk, "_cores", lambda: 2)  # the local form's task split, as on a 2-core machine
    rng = np.random.default_rng(1)
    pad = k // 2
    shape = ConvShape(1, c, h, h, cout, k, k, (stride, stride), (pad,) * 4, 16, c * k * k, True)
    # 3 channels: the fourth byte of each group is the zero point, here 128 or more (a stem's image input)
    quant = ActQuant(0.04, 129 if c == 3 else 9, 255)
    x = rng.standard_normal((1, c, h, h), dtype=np.float32) * 3  # beyond the quantization range: clamps
    w2 = rng.integers(-128, 128, (cout, c * k * k)).astype(np.int32)
    scale = (rng.random(cout) * 1e-2).astype(np.float32)
    bias = rng.standard_normal(cout, dtype=np.float32)
    ho, wo = shape.out_hw
    res = rng.standard_normal((1, cout, ho, wo), dtype=np.float32)

    q = np.clip(np.round(x / quant.scale) + quant.zero_point, 0, quant.qmax) - quant.zero_point
    qp = np.pad(q, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    cols = np.stack([qp[0, :, i:i + (ho - 1) * stride + 1:stride, j:j + (wo - 1) * stride + 1:stride]
                     for i in range(k) for j in range(k)], 1).reshape(c * k * k, -1)
    acc = (w2.astype(np.int64) @ cols.astype(np.int64)).reshape(1, cout, ho, wo)
    ref = acc * scale[None, :, None, None] + bias[None, :, None, None] + (res if residual else 0)
    ref = np.maximum(ref, 0)
    ref = np.minimum(ref, cap) if cap else ref

    lib, wts, table = _build(form, shape, quant, residual, cap, w2)
    args = [x, wts, table, VNNIPlan.correction(w2, quant.zero_point), scale, bias, res if residual else np.zeros(1, np.float32)]
    out = tvm.runtime.tensor(np.full((1, cout, ho, wo), np.nan, np.float32))
    lib["main"](*[tvm.runtime.tensor(np.ascontiguousarray(a)) for a in args], out)
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-5, atol=1e-4)
    assert "vpdpbusd" in lib.inspect_source("asm")
    if not isinstance(form, str):  # the pixel-lane forms
        plan, ll = VNNIPixelPlan(shape, *form), lib.inspect_source("ll")
        assert plan.exact == (k == 1) and plan.local == (k == stride == 1)
        if plan.local:  # each task packs its own tiles: one parallel stage, no barrier
            assert "TVMBackendParallelBarrier" not in ll
        else:  # each column group prefetches the lines a later one reads: one per vector, plus the tail
            assert "TVMBackendParallelBarrier" in ll
            assert ll.count("call void @llvm.prefetch") >= form[1] + 1  # (LLVM may unroll g)


def test_pixel_plan_choice():
    dense = lambda c, h, co, k, s: ConvShape(1, c, h, h, co, k, k, (s, s), (k // 2,) * 4, 16, c * k * k, True)  # noqa: E731
    assert plan_pixels(dense(64, 32, 256, 1, 1)).exact  # 1024 pixels: a tiling with no dropped pixel
    assert not plan_pixels(dense(64, 32, 64, 3, 1)).exact  # 34-wide padded rows
    assert plan_pixels(dense(512, 4, 512, 3, 1)) is None  # 4x4 map: 16 of 32 pixels useful, channel lanes


def test_local_packing_tasks(monkeypatch):
    """The local form's tasks: runs of tiles that keep 4 tasks per core and a scratch within L1, and
    row-blocks split only as far as one task per core (each split packs the pixels again)."""
    import targets.tvm.vnni_kernels as vk

    monkeypatch.setattr(vk, "_cores", lambda: 2)
    dense = lambda c, h, co, n=1: ConvShape(n, c, h, h, co, 1, 1, (1, 1), (0,) * 4, 16, c, True)  # noqa: E731
    tasks = lambda p: (p.tiles_per_task, p.chunks)  # noqa: E731
    assert tasks(plan_pixels(dense(24, 32, 144))) == (4, 1)  # 32 tiles of 32 pixels: 8 runs of 4
    assert tasks(plan_pixels(dense(512, 16, 128))) == (1, 1)  # 8 tiles; 128 groups x 32 pixels fill 16 KiB
    assert tasks(plan_pixels(dense(960, 4, 160))) == (1, 2)  # one tile: 20 row-blocks in 2 chunks
    assert tasks(plan_pixels(dense(960, 4, 160, n=2))) == (1, 1)
    assert not plan_pixels(ConvShape(1, 8, 8, 8, 16, 3, 3, (1, 1), (1,) * 4, 16, 72, True)).local


def test_8bit_variant_runs_dense_convs_on_vnni(monkeypatch):
    import targets.tvm.lowering as lowering
    from targets.tvm.importer import to_relax
    from targets.tvm.lowering import ir_macs, lower_variant
    from targets.tvm.vm import VMExecutor

    v = make_variant(ModelSpec(name="resnet18-cifar"), CompressionSpec(bits=8))
    outs = []
    for codes in (True, False):
        monkeypatch.setattr(lowering, "CODES", codes)
        mod, info = lower_variant(to_relax(v), v, dense_br=16, vnni=True)
        outs.append(VMExecutor(tvm.compile(mod, host_target()), tvm.cpu()).infer(v.example_input()))
        if codes:
            layers, macs = info["lowered_layers"], (ir_macs(mod), info["macs_effective"])
    ref = v.reference_output
    assert float(np.abs(outs[0] - ref).max()) <= 6e-2 * max(1.0, float(np.abs(ref).max()))
    forms = [la["vectorized"] for la in layers]
    assert forms.count("vnni") == 20 and all(la["dtype"] == "int8" for la in layers)  # + classifier
    assert macs[0] == macs[1] == v.manifest["macs_effective"]
    # each basic block's first conv hands its second uint8 codes; an output that is also a residual
    # (or the classifier's input) stays float32; and the results are the same bit for bit
    into_conv2 = [la for la, nxt in zip(layers[:-1], layers[1:], strict=True) if la["output"] == nxt["input"] == "uint8"]
    assert len(into_conv2) >= 8 and layers[-2]["output"] == layers[-1]["input"] == "float32"
    assert np.array_equal(outs[0], outs[1])


@pytest.mark.parametrize("c,h,cout,k,stride,form", [
    (8, 4, 32, 3, 1, "channels x2"),
    (3, 9, 20, 3, 2, (8, 2)),  # stride phases, dropped pixels: codes written by the output pass
    (20, 8, 24, 1, 1, (8, 2)),  # exact tiling: codes written on the register write-back
])
def test_vnni_kernel_reads_and_writes_uint8_codes(c, h, cout, k, stride, form):
    """Fed its input's codes, and storing its output's, a kernel gives exactly the codes of what it
    computes from the float input: the quantization moved into the producer, not changed."""
    rng = np.random.default_rng(2)
    pad = k // 2
    shape = ConvShape(1, c, h, h, cout, k, k, (stride, stride), (pad,) * 4, 16, c * k * k, True)
    quant, out_quant = ActQuant(0.04, 9, 255), ActQuant(0.05, 7, 255)
    x = rng.standard_normal((1, c, h, h), dtype=np.float32) * 3
    w2 = rng.integers(-128, 128, (cout, c * k * k)).astype(np.int32)
    scale = (rng.random(cout) * 1e-2).astype(np.float32)
    bias = rng.standard_normal(cout, dtype=np.float32)
    outs = []
    for codes in (False, True):
        lib, wts, table = _build(form, shape, quant, False, 6.0, w2, codes, out_quant if codes else None)
        args = [quant.codes_np(x) if codes else x, wts, table, VNNIPlan.correction(w2, quant.zero_point), scale, bias,
                np.zeros(1, np.float32), np.zeros((1, cout, *shape.out_hw), np.uint8 if codes else np.float32)]
        args = [tvm.runtime.tensor(np.ascontiguousarray(a)) for a in args]
        lib["main"](*args)
        outs.append(args[-1].numpy())
    assert outs[1].dtype == np.uint8 and len(np.unique(outs[1])) > 10
    np.testing.assert_array_equal(outs[1], out_quant.codes_np(outs[0]))


@pytest.mark.parametrize("c,h,k,stride,pad,form", [
    (8, 8, 3, 1, 1, (8, 3)),  # padding rows: each group's planes filled with the zero point, spare planes too
    (12, 8, 1, 2, 0, (4, 1)),  # 1x1 stride 2, no padding: every byte of the planes packed, no fill
    (20, 8, 1, 1, 0, (8, 2)),
    (3, 9, 3, 2, 1, (8, 2)),  # rows not a multiple of the stride: filled
])
def test_vnni_pixel_kernel_batch_of_two(c, h, k, stride, pad, form):
    """Each image of a batch gives what it gives alone: the pad stage fills and packs each image's groups
    (and its spare planes) at their own offsets."""
    rng = np.random.default_rng(3)
    cout, quant = 16, ActQuant(0.04, 9, 255)
    x = rng.standard_normal((2, c, h, h), dtype=np.float32) * 3
    w2 = rng.integers(-128, 128, (cout, c * k * k)).astype(np.int32)
    scale, bias = (rng.random(cout) * 1e-2).astype(np.float32), rng.standard_normal(cout, dtype=np.float32)

    def run(xs):
        shape = ConvShape(len(xs), c, h, h, cout, k, k, (stride, stride), (pad,) * 4, 16, c * k * k, True)
        lib, wts, table = _build(form, shape, quant, False, None, w2)
        args = [xs, wts, table, VNNIPlan.correction(w2, quant.zero_point), scale, bias, np.zeros(1, np.float32),
                np.full((len(xs), cout, *shape.out_hw), np.nan, np.float32)]
        args = [tvm.runtime.tensor(np.ascontiguousarray(a)) for a in args]
        lib["main"](*args)
        return args[-1].numpy()

    both = run(x)
    np.testing.assert_array_equal(both, np.concatenate([run(x[:1]), run(x[1:])]))
