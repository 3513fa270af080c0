"""The pixel-vectorized kernel (targets/tvm/pixel_kernels.py) against a numpy convolution: strides,
1x1 layers read in place, block-pruned columns, residual and row scatter, and the choice of form."""

import numpy as np
import pytest
import tvm

from targets.tvm.kernels import ConvShape
from targets.tvm.pixel_kernels import (
    PixelLayout,
    choose_vecs,
    conv_compute_pixels,
    fit_vecs,
    pixel_layout,
    schedule_conv_pixels,
)


def _reference(x, wd, bias, res, k, stride, pad):
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    ho = (xp.shape[2] - k) // stride + 1
    wo = (xp.shape[3] - k) // stride + 1
    patches = np.stack([xp[0, :, i:i + (ho - 1) * stride + 1:stride, j:j + (wo - 1) * stride + 1:stride]
                        for i in range(k) for j in range(k)], 1)
    return (wd @ patches.reshape(wd.shape[1], -1)).reshape(1, -1, ho, wo)


@pytest.mark.parametrize("c,h,w,cout,k,stride,keep,residual,scatter,shifted,rows", [
    (8, 10, 12, 16, 3, 1, 1.0, False, False, False, 0),  # dense, non-square, 3x3 pad 1
    (16, 12, 12, 16, 3, 1, 0.25, True, False, False, 0),  # block-pruned columns, residual
    (8, 11, 11, 16, 3, 2, 0.5, False, False, False, 0),  # stride 2: phase-split input
    (16, 8, 8, 24, 1, 1, 0.5, False, True, False, 0),  # 1x1 read in place, rows scattered (pruned filters)
    (16, 9, 9, 8, 1, 2, 1.0, True, False, False, 0),  # 1x1 stride 2 (a downsample)
    (16, 8, 8, 32, 1, 1, 0.25, True, False, False, 0),  # 1x1 in place: output stage on the register write-back
    (16, 4, 4, 16, 3, 1, 0.25, True, False, True, 0),  # 4x4 map, shifted copies: output stage on the write-back
    (8, 8, 8, 16, 3, 2, 0.5, False, True, True, 0),  # shifted copies with stride phases, rows scattered
    (8, 8, 8, 16, 3, 1, 1.0, True, False, True, 0),  # 64 pixels in tiles of 48: the output pass drops none
    (8, 10, 32, 16, 3, 1, 0.5, True, False, False, 2),  # row tiles: 2 rows of 2 vectors, residual
    (8, 12, 32, 16, 3, 2, 1.0, False, True, False, 3),  # row tiles with stride phases, rows scattered
    (16, 16, 16, 8, 3, 1, 0.25, False, False, False, 4),  # one vector per row, 4 rows per tile
    (16, 9, 9, 8, 1, 2, 1.0, True, False, False, -1),  # fit_vecs: a strided 1x1 copies only what it reads
    (16, 8, 8, 24, 1, 2, 0.5, False, True, False, -1),  # the same in whole tiles, rows scattered
])
def test_pixel_kernel_matches_numpy(c, h, w, cout, k, stride, keep, residual, scatter, shifted, rows):
    rng = np.random.default_rng(0)
    br, pad = 8, k // 2
    kfull = c * k * k
    kmax = max(1, round(kfull * keep))
    nb = cout // br
    cols = (np.tile(np.arange(kfull), (nb, 1)) if keep == 1
            else np.stack([np.sort(rng.choice(kfull, kmax, replace=False)) for _ in range(nb)]))
    shape = ConvShape(1, c, h, w, cout, k, k, (stride, stride), (pad,) * 4, br, kmax, shared_cols=keep == 1)
    lay = PixelLayout(shape, 16, choose_vecs(PixelLayout(shape, 16, 1, shifted).pixels, 16), shifted)
    if rows > 0:  # tiles of whole output rows: no dropped pixel computed, the output stage on the write-back
        lay = PixelLayout(shape, 16, rows * shape.out_hw[1] // 16, row_tiles=rows)
        assert lay.exact
    elif rows < 0:  # the layout lowering would choose
        lay = fit_vecs(PixelLayout(shape, 16, 1))
        assert lay.subsample == stride and lay.planes() <= c + 1 and lay.pixels == shape.out_hw[0] * shape.out_hw[1]
    full = cout + 5 if scatter else None
    func = schedule_conv_pixels(conv_compute_pixels(lay, True, residual, True, full), lay, scatter)
    lib = tvm.tirx.build(tvm.IRModule({"main": func}), "llvm")

    x = rng.standard_normal((1, c, h, w), dtype=np.float32)
    wt = rng.standard_normal((nb, kmax, br), dtype=np.float32)
    wd = np.zeros((cout, kfull), np.float32)
    for b in range(nb):
        wd[b * br:(b + 1) * br, cols[b]] = wt[b].T
    ref = _reference(x, wd, None, None, k, stride, pad)
    ho, wo = shape.out_hw
    assert ref.shape[2:] == (ho, wo)
    n_out = full or cout
    rowmap = None
    if scatter:  # kept rows land on a subset of the full output channels; the rest are zero (+ bias)
        kept = np.sort(rng.choice(n_out, cout, replace=False))
        rowmap = np.full(n_out, -1, np.int32)
        rowmap[kept] = np.arange(cout, dtype=np.int32)
        scattered = np.zeros((1, n_out, ho, wo), np.float32)
        scattered[:, kept] = ref
        ref = scattered
    bias = rng.standard_normal(n_out, dtype=np.float32)
    res = rng.standard_normal((1, n_out, ho, wo), dtype=np.float32)
    ref = np.maximum(ref + bias[None, :, None, None] + (res if residual else 0), 0)

    table = lay.offsets(cols[:1] if keep == 1 else cols)
    args = [x, wt, table, bias] + ([res] if residual else []) + ([rowmap] if scatter else [])
    args = [tvm.runtime.tensor(np.ascontiguousarray(a)) for a in args]
    out = tvm.runtime.tensor(np.full((1, n_out, ho, wo), np.nan, np.float32))
    lib["main"](*args, out)
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-4, atol=1e-4)
    assert lay.direct == (k == 1 and stride == 1 and not shifted)
    assert lay.exact == (lay.direct or rows > 0 or ((shifted or rows < 0) and ho * wo % lay.tile == 0))


def test_form_choice_for_small_maps():
    wide = ConvShape(1, 64, 32, 32, 64, 3, 3, (1, 1), (1, 1, 1, 1), 1, 1)
    tiny = ConvShape(1, 512, 4, 4, 512, 3, 3, (1, 1), (1, 1, 1, 1), 1, 1)
    lay = pixel_layout(wide, 16)
    assert lay is not None and lay.vecs == 3 and lay.pixels == 32 * 34
    assert pixel_layout(tiny, 16, shifted=True).shifted  # 16 useful of 32 padded pixels: one shifted copy per kernel column
    assert pixel_layout(tiny, 16) is None  # shifted copies only where asked for: the channel form
    odd = ConvShape(1, 512, 3, 3, 512, 3, 3, (1, 1), (1, 1, 1, 1), 1, 1)
    assert pixel_layout(odd, 16, shifted=True) is None  # 9 pixels: not a whole vector, the channel form


def test_1x1_layers_read_in_place_in_whole_tiles():
    # 1024 pixels are 64 vectors: 3 per tile would need a pad copy and a separate output pass
    for hw in (32, 16, 8):
        lay = pixel_layout(ConvShape(1, 64, hw, hw, 256, 1, 1, (1, 1), (0,) * 4, 1, 1), 16)
        assert lay.direct and lay.exact and lay.vecs == 2
    assert fit_vecs(lay, most=6).vecs == 4
    assert not fit_vecs(lay, quant=True).direct  # a quantized layer quantizes in its pad copy
    s2 = pixel_layout(ConvShape(1, 64, 32, 32, 256, 1, 1, (2, 2), (0,) * 4, 1, 1), 16)
    assert not s2.in_place
    # 3x3: one-row (depthwise) blocks take whole output rows; 8-row blocks keep 3 flat vectors
    dw = ConvShape(1, 144, 32, 32, 144, 3, 3, (1, 1), (1,) * 4, 1, 9)
    assert fit_vecs(PixelLayout(dw, 16, 1), most=6).row_tiles == 2
    sparse = ConvShape(1, 64, 32, 32, 64, 3, 3, (1, 1), (1,) * 4, 8, 72)
    lay = fit_vecs(PixelLayout(sparse, 16, 1))
    assert (lay.row_tiles, lay.vecs) == (0, 3)


def test_stages_run_in_one_thread_pool_launch():
    # stride 2: pad copy, GEMM and output pass; one launch with a barrier after each of the first two
    shape = ConvShape(1, 8, 11, 11, 16, 3, 3, (2, 2), (1,) * 4, 8, 36, shared_cols=False)
    lay = pixel_layout(shape, 16)
    func = schedule_conv_pixels(conv_compute_pixels(lay, True, True, True), lay)
    ir = tvm.tirx.build(tvm.IRModule({"main": func}), "llvm").inspect_source("ll")
    assert ir.count("load ptr, ptr @__TVMBackendParallelLaunch,") == 1
    assert ir.count("load ptr, ptr @__TVMBackendParallelBarrier,") == 2


def test_column_loop_prefetches_the_lines_of_a_later_column():
    from targets.tvm.prefetch import prefetch_columns

    shape = ConvShape(1, 16, 8, 8, 16, 3, 3, (1, 1), (1,) * 4, 8, 36, shared_cols=False)
    lay = pixel_layout(shape, 16)
    scheduled = schedule_conv_pixels(conv_compute_pixels(lay, True, False, True), lay)
    assert "prefetch" in scheduled.script()
    # one prefetch per line the tile's vectors span, plus its last element (the start need not be aligned)
    text = tvm.tirx.build(tvm.IRModule({"main": scheduled}), "llvm").inspect_source("ll")
    assert text.count("call void @llvm.prefetch") == lay.vecs + 1
    _, found = prefetch_columns(scheduled, "no_such_buffer", lay.tile)
    assert found == 0
    # a depthwise layer's 9 columns: each step would fetch the last column again, so none
    dw = ConvShape(1, 16, 8, 8, 16, 3, 3, (1, 1), (1,) * 4, 1, 9)
    lay = fit_vecs(pixel_layout(dw, 16, always=True), 6)
    assert "prefetch" not in schedule_conv_pixels(conv_compute_pixels(lay, True, False, True), lay).script()


@pytest.mark.parametrize("h,stride", [(8, 2), (8, 1), (32, 1)])
def test_depthwise_quantized_before_the_phase_split_is_bit_identical(monkeypatch, h, stride):
    import targets.tvm.pixel_kernels as pk
    from targets.tvm.kernels import ActQuant

    c = 32
    shape = ConvShape(1, c, h, h, c, 3, 3, (stride, stride), (1,) * 4, 1, 9)
    quant = ActQuant(0.05, 3, 255)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, c, h, h), dtype=np.float32)
    w = rng.integers(-127, 128, (c, 9, 1)).astype(np.float32)
    cols = np.arange(c)[:, None] * 9 + np.arange(9)[None, :]
    outs, staged = [], []
    for prequant in (False, True):
        monkeypatch.setattr(pk, "PREQUANT", prequant)
        lay = fit_vecs(pixel_layout(shape, 16, always=True), 6, quant=True)
        func = schedule_conv_pixels(conv_compute_pixels(lay, True, False, True, cap=6.0, quant=quant), lay)
        staged.append("jb_quant" in func.script())
        lib = tvm.tirx.build(tvm.IRModule({"main": func}), "llvm")
        args = [tvm.runtime.tensor(a) for a in (x, w, lay.offsets(cols), np.full(c, 0.01, np.float32),
                                                 np.zeros(c, np.float32), np.zeros((1, c, *shape.out_hw), np.float32))]
        lib["main"](*args)
        outs.append(args[-1].numpy())
    # rows under two vectors wide quantize first; a 32-wide map keeps the quantization in its pad copy
    assert staged == [False, h < 32]
    assert np.array_equal(outs[0], outs[1]) and np.abs(outs[0]).max() > 0


def test_activation_quantization_keeps_zero_at_the_border():
    # the pad stage quantizes border and interior alike, which is exact only because levels(0) == 0
    from tvm import te

    from targets.tvm.kernels import ActQuant

    with pytest.raises(ValueError, match="zero point 300 outside the quantized range"):
        ActQuant(0.1, 300, 255)
    def levels(q):
        x = te.placeholder((4,), "float32", name="x")
        return x, te.compute((4,), lambda i: q.levels(x[i]), name="y")

    for q in (ActQuant(0.1, 0, 255), ActQuant(0.1, 255, 255), ActQuant(0.02, 3, 15)):
        x, y = levels(q)
        lib = tvm.tirx.build(tvm.IRModule({"main": te.create_prim_func([x, y])}), "llvm")
        out = tvm.runtime.tensor(np.zeros(4, np.float32))
        lib["main"](tvm.runtime.tensor(np.array([0.0, -0.0, 0.26, -1.0], np.float32)), out)
        ref = np.clip(np.round(np.array([0.0, -0.0, 0.26, -1.0]) / q.scale) + q.zero_point, 0, q.qmax) - q.zero_point
        assert out.numpy()[0] == out.numpy()[1] == 0.0 and np.array_equal(out.numpy(), ref.astype(np.float32))
