"""The pixel-vectorized form of the shared kernel, for wide-vector CPUs (AVX-512).

kernels.py vectorizes over the `br` output channels of a row-block: an 8-channel row-block (8x16
blocks) fills half of a 16-lane register, and every FMA needs its own broadcast input load. Here the
vector runs over output pixels instead, so any row-block size uses full registers:

    Y[n, b, r, p] = sum_j W[b, j, r] * Xs[n, OFF[b, j] + p]

Xs is the padded input split into stride phases (s*s planes per channel, each hq x wq) and read
flat: output pixel p = ho*wq + wo, and kept column (c, ki, kj) starts at
OFF = ((c*s + ki%s)*s + kj%s)*hq*wq + (ki//s)*wq + kj//s, so for every column the pixels of a tile
are one contiguous run (stride 1 and 2 alike). The (wq - wo_n) pixels at the end of each row are
computed and dropped: 2 of 34 on a 32-wide 3x3 layer. A tile is `br` rows x `vecs` vectors of
accumulators; per kept column it loads `vecs` input vectors and broadcasts `br` weights.
A 1x1 stride-1 layer reads its input as it is (no padded copy) and computes no dropped pixels, so its
output stage (bias, residual, ReLU) runs on the register write-back; elsewhere the output stage (and a
row scatter) is a separate vectorized pass that drops the extra pixels. A 1x1 layer with stride s and
no padding copies only the pixels it reads (one ho x wo plane per channel: no dropped pixel either).
Depthwise layers whose output rows are whole vectors take tiles of whole rows (row_tiles), which skip
the dropped pixels too. Each step of the column loop prefetches a later column's input (prefetch.py).
Small maps (4x4: 16 useful of 24 padded pixels) take shifted copies instead: one copy of the input
per kernel column kj, shifted by kj and exactly as wide as the output, so the flat pixels are the
output pixels (no drop, output stage on the write-back) at the price of kw copies of a small input;
used for 8-row blocks, where the channel form would fill only half a vector.
Grouped (depthwise) convs of 8-bit models run here too: the pad stage quantizes the input to (q - zp)
and the weights are integer levels, so the fp32 arithmetic is exact and only the output stage scales.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from tvm import s_tir, te, tirx

from targets.tvm.kernels import ActQuant, ConvShape, fused_epilogue, one_parallel_region, register_tile, tile_on_stack
from targets.tvm.prefetch import prefetch_columns


@dataclass(frozen=True)
class PixelLayout:
    """Where a ConvShape's columns and pixels live in the flat, phase-split input."""

    s: ConvShape
    lanes: int
    vecs: int  # vectors of pixels per tile
    # one copy of the input per kernel column kj, shifted by kj and as wide as the output: no pixel
    # is dropped (small maps, where the padded width would waste most lanes: 4x4 computes 16, not 24)
    shifted: bool = False
    # through the pad copy even where the input could be read in place (a quantized layer quantizes there)
    copied: bool = False
    # output rows per tile (0: flat tiles): each row's wo output pixels in wo / lanes vectors and none of
    # the wq - wo dropped ones, so the output stage runs on the write-back (no scratch pass)
    row_tiles: int = 0
    # a 1x1 layer with stride s > 1 and no padding copies only the pixels it reads (see subsample)
    subsampled: bool = False

    @property
    def subsample(self) -> int:
        """A 1x1 layer with stride s > 1 and no padding reads only every s-th row and column: the pad copy
        takes just those (one plane per channel, ho x wo: no dropped pixel, a quarter of the copy at
        stride 2), and the GEMM runs on them at stride 1. 1 for any other layer."""
        s = self.s
        st = s.stride[0]
        if (self.subsampled and st > 1 and s.kh == s.kw == 1 and s.stride == (st, st) and not any(s.pad) and not self.shifted
                and s.out_hw == (-(-s.h // st), -(-s.w // st))):
            return st
        return 1

    @property
    def phases(self) -> tuple[int, int, int, int]:
        """(stride, hq, wq, plane size)."""
        if self.subsample > 1:
            ho, wo = self.s.out_hw
            return 1, ho, wo, ho * wo
        st = self.s.stride[0]
        hp, wp = self.s.h + self.s.pad[0] + self.s.pad[2], self.s.w + self.s.pad[1] + self.s.pad[3]
        hq, wq = -(-hp // st), (self.s.out_hw[1] if self.shifted else -(-wp // st))
        return st, hq, wq, hq * wq

    @property
    def in_place(self) -> bool:
        """1x1, stride 1, no padding: the input itself is the flat layout (given whole tiles)."""
        return not (self.shifted or self.copied) and self.s.kh == self.s.kw == 1 and self.s.stride == (1, 1) and not any(self.s.pad)

    @property
    def direct(self) -> bool:
        """Read in place, in whole tiles: no pad copy and the output stage on the write-back."""
        return self.in_place and self.pixels % self.tile == 0

    @property
    def exact(self) -> bool:
        """Every computed pixel is an output pixel, in order: the output stage runs on the write-back."""
        return (self.direct or self.row_tiles > 0
                or ((self.shifted or self.subsample > 1) and self.pixels % self.tile == 0))

    @property
    def tile(self) -> int:
        return self.lanes * self.vecs

    @property
    def pixels(self) -> int:
        """Pixels computed per image and row: ho_n rows of wq (the last wq - wo_n of each dropped)."""
        return self.s.out_hw[0] * self.phases[2]

    @property
    def padded_pixels(self) -> int:
        return self.pixels if self.row_tiles else -(-self.pixels // self.tile) * self.tile

    @property
    def span(self) -> int:
        """Flat elements one column of a tile reads, from its first."""
        return (self.row_tiles - 1) * self.phases[2] + self.s.out_hw[1] if self.row_tiles else self.tile

    def offsets(self, cols):
        """int32 flat start of each kept column (numpy, any shape of column indices)."""
        import numpy as np

        st, _, wq, plane = self.phases
        kk = self.s.kh * self.s.kw
        c, ki, kj = cols // kk, (cols // self.s.kw) % self.s.kh, cols % self.s.kw
        if self.shifted:
            return (((kj * self.s.c + c) * st + ki % st) * plane + (ki // st) * wq).astype(np.int32)
        return (((c * st + ki % st) * st + kj % st) * plane + (ki // st) * wq + kj // st).astype(np.int32)

    def planes(self) -> int:
        """Planes the padded copy holds: every channel's phases, plus enough zero planes that the last
        tile's dropped pixels read inside the buffer."""
        st, hq, wq, plane = self.phases
        s = self.s
        if self.shifted:
            last = (s.kw * s.c * st - 1) * plane + ((s.kh - 1) // st) * wq
        else:
            last = (s.c * st * st - 1) * plane + ((s.kh - 1) // st) * wq + (s.kw - 1) // st
        return -(-(last + self.padded_pixels) // plane)


MIN_USEFUL = 0.6  # below this share of useful pixels (4x4 maps: 16 of 32) the channel form is faster


def pixel_layout(s: ConvShape, lanes: int, always: bool = False, shifted: bool = False) -> PixelLayout | None:
    """The pixel form for this layer, or None where it would mostly compute dropped pixels (unless `always`).
    With `shifted`, such a layer takes shifted copies instead where its pixels are whole vectors."""
    lay = fit_vecs(PixelLayout(s, lanes, 1), exact_tiles=False)  # the form only: lowering fits the tile to the row-blocks
    ho, wo = s.out_hw
    if always or ho * wo >= MIN_USEFUL * lay.padded_pixels:
        return lay
    if shifted and (ho * wo) % lanes == 0:  # whole vectors of output pixels: the shifted copies
        return PixelLayout(s, lanes, max(v for v in (1, 2, 3) if (ho * wo // lanes) % v == 0), shifted=True)
    return None


def choose_vecs(pixels: int, lanes: int, most: int = 3) -> int:
    """Vectors per tile: the most (up to `most`) that pad the computed pixels by at most a quarter; more
    independent accumulators hide the FMA latency better than the padding costs."""
    for v in range(most, 0, -1):
        padded = -(-pixels // (lanes * v)) * lanes * v
        if padded - pixels <= pixels // 4:
            return v
    return 1


def fit_vecs(lay: PixelLayout, most: int = 3, quant: bool = False, exact_tiles: bool = True) -> PixelLayout:
    """The layout with its vectors per tile: where the input can be read in place, the most that make whole
    tiles (a 1x1 layer at 32x32 with 3 vectors would pay a pad copy and a separate output pass, 1.6-2.8x
    its GEMM; a strided 1x1 layer likewise copies only the pixels it reads, see `subsample`); else, where
    output rows are whole vectors, tiles of whole rows (row_tiles); else `choose_vecs`. With
    `exact_tiles` off, only the in-place choice. A quantized layer always takes the pad copy."""
    lay = replace(lay, copied=lay.copied or quant, row_tiles=0, subsampled=exact_tiles)
    if lay.in_place or lay.subsample > 1:
        whole = [v for v in range(most, 0, -1) if lay.pixels % (lay.lanes * v) == 0]
        if whole:
            return replace(lay, vecs=whole[0])
    flat = choose_vecs(lay.pixels, lay.lanes, most)
    ho, wo = lay.s.out_hw
    per_row = wo // lay.lanes
    if exact_tiles and not lay.shifted and wo % lay.lanes == 0 and per_row <= most:
        rows = max(r for r in range(1, most // per_row + 1) if ho % r == 0)
        # fewer vectors than the flat tile cost a compute-bound layer more than the output pass
        # (8-row blocks at 32x32: 2 vectors, 24% slower than 3), except one-row (depthwise) blocks,
        # which are memory-bound: there the scratch pass costs more (10% at 32x32, 4 vectors vs 6)
        if rows * per_row >= flat or lay.s.br == 1:
            return replace(lay, vecs=rows * per_row, row_tiles=rows)
    return replace(lay, vecs=flat)


PREQUANT = True  # quantize narrow-row inputs before the phase split (a switch so a test can compare both)


def conv_compute_pixels(lay: PixelLayout, bias: bool, residual: bool, relu: bool, full_cout: int | None = None,
                        cap: float | None = None, quant: ActQuant | None = None):
    """TE definition (float32). Arguments: x, w [nb, kmax, br], off [1 or nb, kmax], then as kernels.py.

    With `quant` (a padded layout only), the pad stage quantizes the input to (q - zp) and w holds
    integer weight levels: every product and sum is an integer below 2^24, exact in fp32, and the
    output stage requantizes with the per-channel scale (an `outscale` argument before bias)."""
    assert quant is None or lay.copied, "a quantized layer needs the pad copy (fit_vecs(quant=True))"
    s = lay.s
    ho_n, wo_n = s.out_hw
    st, hq, wq, _ = lay.phases
    nb = s.cout // s.br
    X = te.placeholder((s.n, s.c, s.h, s.w), "float32", name="x")
    W = te.placeholder((nb, s.kmax, s.br), "float32", name="w")
    OFF = te.placeholder((1 if s.shared_cols else nb, s.kmax), "int32", name="off")
    inputs = [X, W, OFF]
    top, left = s.pad[0], s.pad[1]

    def load(v):  # quantized after the border select, which then guards only the load (see ActQuant.levels)
        return v if quant is None else quant.levels(v)

    src = X
    if quant is not None and PREQUANT and not lay.shifted and wq < 2 * lay.lanes:
        # a phase row under two vectors wide (5 at 8x8 stride 2) ran scalar with the quantization inside
        # the split: quantize the contiguous input in whole vectors first, and the split copies levels
        # (levels(0) = 0, so the border is the same). A stride-2 8x8 depthwise layer: 0.074 -> 0.049 ms
        src = te.compute((s.n, s.c, s.h, s.w), lambda n, c, y, x: quant.levels(X[n, c, y, x]), name="jb_quant")
        load = lambda v: v  # noqa: E731

    if lay.direct:
        flat = lambda n, i: X[n, 0, 0, i]  # noqa: E731  flat read across the (contiguous) planes
    elif lay.shifted:  # plane (kj, c, a): rows y*st + a, columns x*st + kj of the padded input
        used = s.kw * s.c * st
        Xs = te.compute(
            (s.n, lay.planes(), hq, wq),
            lambda n, pl, y, x: load(tirx.if_then_else(
                tirx.all(pl < used, y * st + pl % st >= top, y * st + pl % st < s.h + top,
                         x * st + pl // (s.c * st) >= left, x * st + pl // (s.c * st) < s.w + left),
                X[n, pl // st % s.c, y * st + pl % st - top, x * st + pl // (s.c * st) - left],
                tirx.const(0.0, "float32"))),
            name="jb_pad")
        flat = lambda n, i: Xs[n, 0, 0, i]  # noqa: E731
    else:
        sub = lay.subsample  # (1x1, no padding) every sub-th row and column only
        at = (lambda i: i * sub) if sub > 1 else (lambda i: i)  # noqa: E731
        Xs = te.compute(
            (s.n, -(-lay.planes() // (st * st)), st, st, hq, wq),
            lambda n, c, a, b, y, x: load(tirx.if_then_else(
                tirx.all(c < s.c, y * st + a >= top, y * st + a < s.h + top, x * st + b >= left, x * st + b < s.w + left),
                src[n, c, at(y * st + a - top), at(x * st + b - left)], tirx.const(0.0, "float32"))),
            name="jb_pad")
        flat = lambda n, i: Xs[n, 0, 0, 0, 0, i]  # noqa: E731
    j = te.reduce_axis((0, s.kmax), name="j")
    col = lambda b: OFF[0 if s.shared_cols else b, j]  # noqa: E731
    if lay.row_tiles:
        Y = te.compute((s.n, nb, s.br, ho_n, wo_n),
                       lambda n, b, r, y, x: te.sum(W[b, j, r] * flat(n, col(b) + y * wq + x), axis=j), name="jb_gemm")
        row = lambda n, k, ho, wo: Y[n, k // s.br, k % s.br, ho, wo]  # noqa: E731
    else:
        Y = te.compute((s.n, nb, s.br, lay.padded_pixels),
                       lambda n, b, r, p: te.sum(W[b, j, r] * flat(n, col(b) + p), axis=j), name="jb_gemm")
        row = lambda n, k, ho, wo: Y[n, k // s.br, k % s.br, ho * wq + wo]  # noqa: E731
    extra, out = fused_epilogue(s, row, "float32", relu, bias, residual, full_cout, scaled=quant is not None, cap=cap)
    return te.create_prim_func([*inputs, *extra, out])


def _has_block(sch, name: str) -> bool:
    try:
        sch.get_sblock(name)
        return True
    except Exception:  # noqa: BLE001  (the schedule raises its own error type for a missing block)
        return False


def schedule_conv_pixels(func, lay: PixelLayout, scattered: bool = False):
    """Parallel over (image, row-block, pixel tile); per kept column, br x vecs vector FMAs in registers.
    An exact layout (read in place, or shifted copies in whole tiles) computes no dropped pixel, so its
    output stage runs on the register write-back."""
    sch = s_tir.Schedule(func)
    gemm = sch.get_sblock("jb_gemm")
    if lay.row_tiles:
        n, b, r, y, x, j = sch.get_loops(gemm)
        po, yt = sch.split(y, [None, lay.row_tiles])
        xt, pv = sch.split(x, [None, lay.lanes])
        sch.reorder(n, b, po, j, r, yt, xt, pv)
        pt = [yt, xt]
    else:
        n, b, r, p, j = sch.get_loops(gemm)
        po, pt, pv = sch.split(p, [None, lay.vecs, lay.lanes])
        sch.reorder(n, b, po, j, r, pt, pv)
        pt = [pt]
    tile = sch.fuse(n, b, po)
    sch.parallel(tile)
    for loop in (r, *pt):
        sch.unroll(loop)
    sch.vectorize(pv)
    register_tile(sch, gemm, tile, j, fused_output=lay.exact and not scattered)
    if lay.shifted:
        pn, pl, py, px = sch.get_loops(sch.get_sblock("jb_pad"))
        sch.parallel(sch.fuse(pn, pl))
        sch.vectorize(px)
    elif not lay.direct:
        # one pass that writes every element once (zeros at the border): 2-8% faster per sparse layer
        # than a zero fill of the whole buffer followed by a copy of the interior
        loops = sch.get_loops(sch.get_sblock("jb_pad"))
        sch.parallel(sch.fuse(*loops[:4]))
        sch.vectorize(loops[-1])
        if _has_block(sch, "jb_quant"):
            qn, qc, qy, qx = sch.get_loops(sch.get_sblock("jb_quant"))
            sch.parallel(sch.fuse(qn, qc))
            plane = sch.fuse(qy, qx)
            if (lay.s.h * lay.s.w) % lay.lanes == 0:
                plane = sch.split(plane, [None, lay.lanes])[1]
            sch.vectorize(plane)
    func = tile_on_stack(sch.mod["main"].with_attr("tir.is_scheduled", True))
    func, _ = prefetch_columns(func, "x" if lay.direct else "jb_pad", lay.span)
    return one_parallel_region(func)
