"""The plane form of depthwise convs (targets/tvm/plane_kernels.py) against PyTorch: strides, borders,
planes that are not whole vectors, batches, residual, the 8-bit path on integer levels and its uint8
codes, and where the form applies."""

import numpy as np
import pytest
import torch
import tvm

from targets.tvm.kernels import ActQuant, ConvShape
from targets.tvm.plane_kernels import MAX_VECS, depthwise_plane, plane_plan


def _shape(n, c, h, w, k=3, stride=1, pad=1):
    return ConvShape(n, c, h, w, c, k, k, (stride, stride), (pad,) * 4, 1, k * k)


def _run(plan, args, **kw):
    lib = tvm.tirx.build(tvm.IRModule({"main": depthwise_plane(plan, **kw)}), "llvm")
    ho, wo = plan.s.out_hw
    out = tvm.runtime.tensor(np.zeros((plan.s.n, plan.s.c, ho, wo), np.float32))
    lib["main"](*[tvm.runtime.tensor(a) for a in args], out)
    return out.numpy()


@pytest.mark.parametrize("n,c,h,w,k,stride,pad,residual,cap", [
    (1, 24, 4, 4, 3, 1, 1, False, 6.0),  # one vector per plane: every tap a shuffle with zeros
    (1, 16, 8, 8, 3, 1, 1, True, None),  # two rows per vector, residual, ReLU
    (2, 8, 8, 8, 3, 2, 1, False, 6.0),  # stride 2 picks even pixels across four vectors; a batch of 2
    (1, 8, 32, 32, 3, 2, 1, False, 6.0),  # the largest planes (64 vectors), stride 2
    (1, 8, 16, 16, 5, 1, 2, False, None),  # 5x5, pad 2
    (1, 8, 8, 18, 3, 1, 0, True, 6.0),  # no padding, non-square: 6x16 output pixels from 9 input vectors
    (1, 24, 7, 7, 3, 1, 1, True, 6.0),  # 49 pixels: three vectors and one ending with the plane, overlapping
    (2, 8, 14, 14, 3, 2, 1, False, 6.0),  # 196 -> 49 pixels, stride 2, a batch of 2: tails in and out
    (1, 8, 8, 16, 3, 1, 0, False, None),  # 6x14 output pixels (84): an overlapping last output vector
    (1, 4, 56, 56, 3, 1, 1, True, 6.0),  # past 32x32: bands of 2 rows (7 vectors), one loop body between border bands
    (2, 4, 56, 56, 3, 2, 1, False, 6.0),  # stride 2 in bands of 4 output rows (8 input rows)
    (1, 2, 112, 112, 3, 2, 1, False, None),  # ImageNet's stem-side depthwise: 112 -> 56
])
def test_plane_depthwise_matches_torch(n, c, h, w, k, stride, pad, residual, cap):
    s = _shape(n, c, h, w, k, stride, pad)
    plan = plane_plan(s, groups=c)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c, h, w), dtype=np.float32)
    wt = rng.standard_normal((c, k * k), dtype=np.float32)
    b = rng.standard_normal(c, dtype=np.float32)
    res = rng.standard_normal((n, c, *s.out_hw), dtype=np.float32)
    ref = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(wt.reshape(c, 1, k, k)), torch.from_numpy(b),
                                     stride=stride, padding=pad, groups=c).numpy()
    args = [x, wt, b] + ([res] if residual else [])
    if residual:
        ref = ref + res
    relu = cap is not None or residual
    if relu:
        ref = np.clip(ref, 0, cap if cap is not None else np.inf)
    out = _run(plan, args, residual=residual, relu=relu, cap=cap)
    assert np.abs(out - ref).max() <= 1e-5 * max(1.0, np.abs(ref).max())


def test_8bit_plane_multiplies_exact_levels():
    """Quantized in registers (zero where padded) and multiplied on integer levels: exactly the integer
    convolution of the codes, then scaled."""
    c, h = 16, 8
    s = _shape(1, c, h, h)
    quant = ActQuant(0.05, 3, 255)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, c, h, h), dtype=np.float32)
    wt = rng.integers(-127, 128, (c, 9)).astype(np.float32)
    scale = np.full(c, 0.01, np.float32)
    b = rng.standard_normal(c, dtype=np.float32)
    levels = quant.codes_np(x).astype(np.int64) - quant.zero_point
    acc = torch.nn.functional.conv2d(torch.from_numpy(levels), torch.from_numpy(wt.astype(np.int64).reshape(c, 1, 3, 3)),
                                     padding=1, groups=c).numpy()
    assert np.abs(acc).max() < 2 ** 24  # exact in float32
    ref = np.clip(acc.astype(np.float32) * scale[None, :, None, None] + b[None, :, None, None], 0, 6)
    out = _run(plane_plan(s, c), [x, wt, scale, b], quant=quant, relu=True, cap=6.0)
    assert np.array_equal(out, ref)


def test_plane_form_applies_to_depthwise_planes_from_one_to_max_vectors():
    assert plane_plan(_shape(1, 96, 32, 32), groups=96) is not None
    big = plane_plan(_shape(1, 96, 64, 64), groups=96)  # 256 vectors: past MAX_VECS, so in bands of one row
    assert 64 * 64 > MAX_VECS * 16 and (big.rows, big.bands) == (1, 64)
    assert plane_plan(_shape(1, 96, 50, 50), groups=96) is None  # 2500 pixels: past MAX_VECS and not whole vectors
    assert plane_plan(_shape(1, 96, 3, 3), groups=96) is None  # 9 pixels: less than one vector
    assert plane_plan(_shape(1, 96, 6, 6, stride=2), groups=96) is None  # 9 output pixels
    assert plane_plan(_shape(1, 96, 7, 7), groups=96).starts_in == [0, 16, 32, 33]  # the last ends with the plane
    grouped = ConvShape(1, 64, 8, 8, 64, 3, 3, (1, 1), (1,) * 4, 1, 18)
    assert plane_plan(grouped, groups=32) is None  # two input channels per group: not depthwise


@pytest.mark.parametrize("codes_in,codes_out,h,stride", [(True, False, 8, 2), (False, True, 8, 2), (True, True, 8, 2),
                                                        (True, True, 7, 1)])  # 7x7: overlapping tail vectors
def test_8bit_plane_reads_and_writes_uint8_codes(codes_in, codes_out, h, stride):
    """Fed its input's codes, and storing its output's, the kernel gives exactly the codes of what it
    computes from float32 (one quantization expression everywhere)."""
    c = 16
    s = _shape(1, c, h, h, stride=stride)
    quant, out_quant = ActQuant(0.05, 3, 255), ActQuant(0.02, 0, 255)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((1, c, h, h), dtype=np.float32)
    wt = rng.integers(-127, 128, (c, 9)).astype(np.float32)
    scale, b = np.full(c, 0.01, np.float32), rng.standard_normal(c, dtype=np.float32)
    plan = plane_plan(s, c)
    floats = _run(plan, [x, wt, scale, b], quant=quant, relu=True, cap=6.0)
    lib = tvm.tirx.build(tvm.IRModule({"main": depthwise_plane(plan, quant, relu=True, cap=6.0, codes_in=codes_in,
                                                               out_quant=out_quant if codes_out else None)}), "llvm")
    out = tvm.runtime.tensor(np.zeros(floats.shape, np.uint8 if codes_out else np.float32))
    lib["main"](*[tvm.runtime.tensor(a) for a in (quant.codes_np(x) if codes_in else x, wt, scale, b)], out)
    assert np.array_equal(out.numpy(), out_quant.codes_np(floats) if codes_out else floats)


def test_8bit_mobilenet_depthwise_layers_exchange_codes_bit_identically(monkeypatch):
    """In MobileNet-V2 int8 each depthwise conv reads its expansion's codes and writes its projection's;
    the output is the same bit for bit as with float32 between all layers."""
    import targets.tvm.lowering as lowering
    from pruning.compress import CompressionSpec, make_variant
    from pruning.variant import ModelSpec
    from targets.host_cpu import host_target
    from targets.tvm.importer import to_relax
    from targets.tvm.vm import VMExecutor

    v = make_variant(ModelSpec(name="mobilenetv2-cifar"), CompressionSpec(bits=8))
    outs = []
    for codes in (True, False):
        monkeypatch.setattr(lowering, "CODES", codes)
        mod, info = lowering.lower_variant(to_relax(v), v, dense_br=16, vnni=True)
        outs.append(VMExecutor(tvm.compile(mod, host_target()), tvm.cpu()).infer(v.example_input()))
        if codes:
            planes = [la for la in info["lowered_layers"] if la["vectorized"] == "planes"]
    assert len(planes) == 17
    # the first depthwise conv follows the stem, which is float32 in (the image) but writes codes too
    assert sum(la["input"] == "uint8" for la in planes) >= 16 and all(la["output"] == "uint8" for la in planes)
    assert np.array_equal(outs[0], outs[1])
