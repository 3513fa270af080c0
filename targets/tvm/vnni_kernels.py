"""The integer form of the dense kernel on AVX512-VNNI: `vpdpbusd` (u8 x s8, four products summed into
each int32 lane), 64 multiply-adds per instruction. The four bytes a lane sums are four consecutive
input channels of one pixel at one kernel tap, so the pad stage quantizes the input into channel
groups of four (uint8, the zero point where padded); the activation zero point is taken out exactly
in int32 afterwards, acc - zp * sum(w) per output channel (CORR), before the float output stage
(scale, bias, residual, ReLU/ReLU6).

Two lane layouts:
- pixel lanes (`VNNIPixelPlan`, the default): lanes are 16 output pixels of the pixel form's flat,
  phase-split layout (pixel_kernels.py), one 4-byte channel group per pixel, so a column group's 16
  pixels are one 64-byte load and each output channel's 4 weights one broadcast. A tile is `rows`
  channels x `vecs` vectors; the output stage runs on whole vectors, on the register write-back where
  the flat pixels are the output pixels (1x1 layers), else through a flat scratch that drops the
  padded pixels. A 1x1 stride-1 layer (`local`) needs no packing pass: each task packs its own run
  of tiles into a stack scratch and runs its row-blocks on it, in one parallel stage.
- channel lanes (`VNNIPlan`): lanes are 16 output channels and each pixel's 4 bytes are broadcast
  against one 64-byte weight vector; the output stage is per element. Kept for small maps (4x4),
  where pixel lanes would mostly compute dropped pixels.

Scalars are bound with `T.let`: a plain assignment in this TVMScript is a mutable local that the
lowering allocates through the workspace pool on every tile.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

import numpy as np
from tvm import tirx
from tvm.script import tirx as T

from targets.tvm.kernels import ActQuant, ConvShape, one_parallel_region, output_value
from targets.tvm.pixel_kernels import PixelLayout, choose_vecs, pixel_layout
from targets.tvm.prefetch import AHEAD


def vnni_intrinsic_args(acc, a_i32, w_i8x64):
    """vpdpbusd's operands in the types this TVM's LLVM (22) declares: byte vectors for both sources
    (LLVM before 21 took <16 x i32>)."""
    return (acc, T.reinterpret("uint8x64", T.broadcast(a_i32, 16)), w_i8x64)


@dataclass(frozen=True)
class VNNIPlan:
    s: ConvShape  # a dense layer (every row reads every column)
    px: int  # pixels per register tile
    blocks: int = 1  # 16-channel row-blocks per register tile (each broadcast input feeds all of them)

    @property
    def groups(self) -> int:  # input channel groups of four
        return -(-self.s.c // 4)

    @property
    def row_blocks(self) -> int:
        return -(-self.s.cout // 16)

    @property
    def tile(self) -> tuple[int, int]:
        ho, wo = self.s.out_hw
        tw = max(d for d in range(1, min(wo, self.px) + 1) if wo % d == 0)
        th = max(d for d in range(1, min(ho, max(1, self.px // tw)) + 1) if ho % d == 0)
        return th, tw

    def weights(self, w2: np.ndarray) -> np.ndarray:
        """[Cout, C*kh*kw] int levels -> int8 [row_blocks, G, 16, 4], G = groups*kh*kw, g = (cg, ki, kj)."""
        s = self.s
        w = w2.reshape(s.cout, s.c, s.kh, s.kw)
        w = np.pad(w, ((0, self.row_blocks * 16 - s.cout), (0, self.groups * 4 - s.c), (0, 0), (0, 0)))
        w = w.reshape(self.row_blocks, 16, self.groups, 4, s.kh, s.kw).transpose(0, 2, 4, 5, 1, 3)
        return np.ascontiguousarray(w.reshape(self.row_blocks, -1, 16, 4)).astype(np.int8)

    def table(self) -> np.ndarray:
        s = self.s
        cg, ki, kj = np.meshgrid(np.arange(self.groups), np.arange(s.kh), np.arange(s.kw), indexing="ij")
        return np.stack([cg.ravel(), ki.ravel(), kj.ravel()], -1).astype(np.int32)

    @staticmethod
    def correction(w2: np.ndarray, zero_point: int) -> np.ndarray:
        return (-zero_point * w2.astype(np.int64).sum(1)).astype(np.int32)


def vnni_conv(p: VNNIPlan, quant: ActQuant, residual: bool, relu: bool, cap: float | None, codes_in: bool = False,
              out_quant: ActQuant | None = None):
    """PrimFunc(x, w, idx, corr, outscale, bias, residual (a 1-element stand-in without one), out).
    With `codes_in`, x holds uint8 codes of `quant` already; with `out_quant`, out holds uint8 codes."""
    s = p.s
    N, C, H, W = s.n, s.c, s.h, s.w
    CG, NB, COUT = p.groups, p.row_blocks, s.cout
    KH, KW = s.kh, s.kw
    G = CG * KH * KW
    SH, SW = s.stride
    TOP, LEFT = s.pad[0], s.pad[1]
    HP, WP = H + s.pad[0] + s.pad[2], W + s.pad[1] + s.pad[3]
    HO, WO = s.out_hw
    TH, TW = p.tile
    RB = p.blocks if NB % p.blocks == 0 else 1
    NBT = NB // RB
    NTH, NTW = HO // TH, WO // TW
    PX = TH * TW
    zp = float(quant.zero_point)
    RES = residual
    RSHAPE = (N, COUT, HO, WO) if residual else (1,)  # without a residual the call passes a 1-element stand-in
    XT, OT = ("uint8" if codes_in else "float32"), ("uint8" if out_quant else "float32")
    code = _coder(quant, codes_in)
    emit = _emitter(relu, cap, out_quant)

    @T.prim_func
    def main(x: T.Buffer((N, C, H, W), XT), w: T.Buffer((NB, G, 64), "int8"),
             idx: T.Buffer((G, 3), "int32"), corr: T.Buffer((COUT,), "int32"),
             outscale: T.Buffer((COUT,), "float32"), bias: T.Buffer((COUT,), "float32"),
             res: T.Buffer(RSHAPE, "float32"), out: T.Buffer((N, COUT, HO, WO), OT)):
        T.func_attr({"tirx.noalias": True})
        xq = T.alloc_buffer((N * CG * HP * WP * 4,), "uint8")
        for nc in T.parallel(N * CG):  # the zero point everywhere (borders, channels past C), then the interior
            for i in range(HP * WP * 4):
                xq[nc * HP * WP * 4 + i] = T.uint8(zp)
            for y, xx in T.grid(H, W):
                for k in T.unroll(4):  # four planes interleaved into one contiguous run: LLVM vectorizes the xx loop
                    if (nc % CG) * 4 + k < C:
                        xq[((nc * HP + y + TOP) * WP + xx + LEFT) * 4 + k] = code(x[nc // CG, (nc % CG) * 4 + k, y, xx])
        for t in T.parallel(N * NBT * NTH * NTW):
            acc = T.alloc_buffer((RB * PX * 16,), "int32", scope="local")
            n: T.let = t // (NBT * NTH * NTW)
            b: T.let = t // (NTH * NTW) % NBT * RB
            y0: T.let = t // NTW % NTH * TH
            x0: T.let = t % NTW * TW
            for i in T.unroll(RB * PX):
                acc[T.ramp(i * 16, 1, 16)] = T.broadcast(T.int32(0), 16)
            for g in range(G):
                base: T.let = ((n * CG + idx[g, 0]) * HP + y0 * SH + idx[g, 1]) * WP + x0 * SW + idx[g, 2]
                for i in T.unroll(PX):
                    a: T.let = T.reinterpret("int32", xq[T.ramp((base + (i // TW * SH) * WP + i % TW * SW) * 4, 1, 4)])
                    for q in T.unroll(RB):
                        acc[T.ramp((q * PX + i) * 16, 1, 16)] = T.call_llvm_pure_intrin(
                            "int32x16", "llvm.x86.avx512.vpdpbusd.512",
                            *vnni_intrinsic_args(acc[T.ramp((q * PX + i) * 16, 1, 16)], a, w[b + q, g, T.ramp(0, 1, 64)]))
            for q, r, ty in T.grid(RB, 16, TH):  # per channel, one row of the tile at a time: contiguous stores
                co: T.let = (b + q) * 16 + r
                if co < COUT:
                    for tx in range(TW):
                        v: T.let = T.Cast("float32", acc[(q * PX + ty * TW + tx) * 16 + r] + corr[co]) * outscale[co] + bias[co]
                        if RES:
                            out[n, co, y0 + ty, x0 + tx] = emit(v + res[n, co, y0 + ty, x0 + tx], 1)
                        else:
                            out[n, co, y0 + ty, x0 + tx] = emit(v, 1)

    return one_parallel_region(main)


_SCRATCH = 16384  # bytes of packed input per task in the local form


def _cores() -> int:
    """The cores the kernels' thread pool runs on (host-cpu: one thread per core)."""
    return len(os.sched_getaffinity(0))


@dataclass(frozen=True)
class VNNIPixelPlan:
    """The pixel-lane form: lanes are 16 output pixels (the pixel form's flat, phase-split layout, one
    4-byte channel group per pixel), so a tile is `rows` channels x `vecs` vectors and the output stage
    runs on whole vectors. Per column group: `vecs` input loads, `rows` broadcast weights."""

    s: ConvShape  # a dense layer
    rows: int = 8
    vecs: int = 3

    @property
    def groups(self) -> int:
        return -(-self.s.c // 4)

    @property
    def row_blocks(self) -> int:
        return -(-self.s.cout // self.rows)

    @property
    def layout(self) -> PixelLayout:
        """The pixel form's layout over channel groups (an "input channel" is four real ones)."""
        return PixelLayout(replace(self.s, c=self.groups), 16, self.vecs)

    @property
    def exact(self) -> bool:
        """Flat pixels are output pixels (no dropped ones, whole tiles): the output stage runs on the
        register write-back; elsewhere a vectorized pass over a flat scratch drops the extra pixels."""
        lay = self.layout
        return lay.phases[2] == self.s.out_hw[1] and lay.pixels % lay.tile == 0

    @property
    def local(self) -> bool:
        """1x1, stride 1, no padding, exact: a tile's input is its own pixels of every channel, so each
        task packs them into a scratch of its own (vnni_conv_local) instead of a packing pass."""
        s = self.s
        return s.kh == s.kw == 1 and s.stride == (1, 1) and not any(s.pad) and self.exact

    @property
    def tiles_per_task(self) -> int:
        """Consecutive tiles one task of the local form packs and runs (each row-block over all of them,
        so its weights are reused and each output row is stored in one run): the most that leave 4 tasks
        per core and a scratch of at most _SCRATCH bytes (L1)."""
        nt = self.layout.padded_pixels // self.layout.tile
        fits = [d for d in range(1, nt + 1) if nt % d == 0 and self.s.n * nt // d >= 4 * _cores()
                and self.groups * d * self.layout.tile * 4 <= _SCRATCH]
        return max(fits, default=1)

    @property
    def chunks(self) -> int:
        """Row-block chunks per task in the local form: the fewest (a divisor of row_blocks) that give a
        task per core where a map has few tiles (4x4: one). Each chunk packs its pixels again, so no
        more: 10 chunks of a 960-channel 4x4 layer spent as long packing as computing."""
        tasks = self.s.n * self.layout.padded_pixels // self.layout.tile // self.tiles_per_task
        return next((d for d in range(1, self.row_blocks + 1) if self.row_blocks % d == 0 and tasks * d >= _cores()),
                    self.row_blocks)

    def weights(self, w2: np.ndarray) -> np.ndarray:
        """[Cout, C*kh*kw] int levels -> int8 [row_blocks, G, rows*4], g = (cg, ki, kj)."""
        s, R = self.s, self.rows
        w = w2.reshape(s.cout, s.c, s.kh, s.kw)
        w = np.pad(w, ((0, self.row_blocks * R - s.cout), (0, self.groups * 4 - s.c), (0, 0), (0, 0)))
        w = w.reshape(self.row_blocks, R, self.groups, 4, s.kh, s.kw).transpose(0, 2, 4, 5, 1, 3)
        return np.ascontiguousarray(w.reshape(self.row_blocks, -1, R * 4)).astype(np.int8)

    def offsets(self) -> np.ndarray:
        return self.layout.offsets(np.arange(self.groups * self.s.kh * self.s.kw))


def plan_pixels(s: ConvShape, rows: int = 8) -> VNNIPixelPlan | None:
    """The pixel-lane plan for a layer, or None where most computed pixels would be dropped (small maps:
    the channel-lane kernel above)."""
    gs = replace(s, c=-(-s.c // 4))
    for vecs in (3, 2, 4, 1):  # an exact tiling where one exists
        plan = VNNIPixelPlan(s, rows, vecs)
        if plan.exact:
            return plan
    lay = pixel_layout(gs, 16)
    return None if lay is None else VNNIPixelPlan(s, rows, choose_vecs(lay.pixels, 16))


def _coder(quant: ActQuant, codes_in: bool):
    """An input element -> its uint8 code: quantized here, or as it is where the producer quantized it."""
    return (lambda v: v) if codes_in else quant.to_codes


def _emitter(relu: bool, cap: float | None, out_quant: ActQuant | None):
    """(float32 output value, lanes) -> what the output buffer stores (kernels.output_value)."""
    return lambda v, lanes: output_value(v, relu, cap, lanes, out_quant)


def _pack4(load, valid, quant: ActQuant, code):
    """Four channels' uint8 codes packed into one int32, channel k of the group in byte k: code(load(k))
    where valid(k), else the zero point. Packed unsigned: a zero point of 128 or more in the top byte (a
    channel past C) folds to a constant beyond int32, which this TVM refuses to build."""
    word = tirx.const(0, "uint32")
    for k in range(4):
        q = tirx.Select(valid(k), code(load(k)), tirx.const(quant.zero_point, "uint8"))
        word = word | (tirx.Cast("uint32", q) << tirx.const(8 * k, "uint32"))
    return tirx.reinterpret("int32", word)


def _packed_codes(x, n, c0, y, col, C: int, W: int, quant: ActQuant, codes_in: bool = False):
    """Channels c0..c0+3 of input row y at column `col` (any expression, a vector lane in use) quantized
    (unless `codes_in`: x holds codes) and packed (_pack4); the zero point where the column is padding
    or a channel lies past C. The loads are clamped into the tensor, so every lane may load."""
    inside = tirx.all(col >= 0, col < W)
    return _pack4(lambda k: x[n, tirx.min(c0 + k, C - 1), y, tirx.max(tirx.min(col, W - 1), 0)],
                  lambda k: tirx.all(inside, c0 + k < C), quant, _coder(quant, codes_in))


def vnni_conv_local(p: VNNIPixelPlan, quant: ActQuant, residual: bool, relu: bool, cap: float | None,
                    codes_in: bool = False, out_quant: ActQuant | None = None):
    """The pixel-lane kernel for a `local` plan (1x1, stride 1, no padding), in one parallel stage: each
    task takes a run of `tiles_per_task` tiles and a chunk of row-blocks, packs those pixels' channel
    groups into a stack scratch (one int32 per pixel and group, as the packing pass would) and runs each
    of its row-blocks over all its tiles. No packing pass and no barrier; the pixels are packed once per
    chunk. Same signature and
    results as vnni_conv_pixels (`off` is unused)."""
    s, lay = p.s, p.layout
    N, C, COUT = s.n, s.c, s.cout
    CG, NB, R, V = p.groups, p.row_blocks, p.rows, p.vecs
    HW, TILE, PT = s.h * s.w, lay.tile, p.tiles_per_task
    NT, RC = HW // TILE // PT, p.chunks  # NT: tasks' pixel runs of PT tiles
    NBC, SPAN = NB // RC, PT * TILE
    RES = residual
    RSHAPE = (N, COUT, s.h, s.w) if residual else (1,)
    RSIZE = N * COUT * HW if residual else 1
    XT, OT = ("uint8" if codes_in else "float32"), ("uint8" if out_quant else "float32")
    code, emit = _coder(quant, codes_in), _emitter(relu, cap, out_quant)

    @T.prim_func
    def main(x: T.Buffer((N, C, s.h, s.w), XT), w: T.Buffer((NB, CG, R * 4), "int8"),
             off: T.Buffer((CG,), "int32"), corr: T.Buffer((COUT,), "int32"),
             outscale: T.Buffer((COUT,), "float32"), bias: T.Buffer((COUT,), "float32"),
             res: T.Buffer(RSHAPE, "float32"), out: T.Buffer((N, COUT, s.h, s.w), OT)):
        T.func_attr({"tirx.noalias": True})
        xf = T.decl_buffer((N * C * HW,), XT, data=x.data)
        outf = T.decl_buffer((N * COUT * HW,), OT, data=out.data)
        resf = T.decl_buffer((RSIZE,), "float32", data=res.data)
        for t in T.parallel(N * NT * RC):
            n: T.let = t // (NT * RC)
            p0: T.let = t // RC % NT * SPAN
            b0: T.let = t % RC * NBC
            xl = T.alloc_buffer((CG * SPAN * 4,), "uint8", annotations={"disable_lower_builtin": True})
            xl32 = T.decl_buffer((CG * SPAN,), "int32", data=xl.data)
            acc = T.alloc_buffer((R * V * 16,), "int32", annotations={"disable_lower_builtin": True})
            for g in range(CG):
                for i in T.vectorized(SPAN):
                    xl32[g * SPAN + i] = _packed_word(xf, (n * C + g * 4) * HW + p0 + i, g * 4, C, HW, quant, code)
            for bi, q in T.grid(NBC, PT):
                b: T.let = b0 + bi
                for i in T.unroll(R * V):
                    acc[T.ramp(i * 16, 1, 16)] = T.broadcast(T.int32(0), 16)
                for g in range(CG):
                    for r in T.unroll(R):
                        wv: T.let = T.reinterpret("int8x64", T.broadcast(T.reinterpret("int32", w[b, g, T.ramp(r * 4, 1, 4)]), 16))
                        for v in T.unroll(V):
                            acc[T.ramp((r * V + v) * 16, 1, 16)] = T.call_llvm_pure_intrin(
                                "int32x16", "llvm.x86.avx512.vpdpbusd.512",
                                acc[T.ramp((r * V + v) * 16, 1, 16)], xl[T.ramp((g * SPAN + q * TILE + v * 16) * 4, 1, 64)], wv)
                for r in T.unroll(R):
                    co: T.let = b * R + r
                    if co < COUT:
                        for v in T.unroll(V):
                            val: T.let = _scaled(acc[T.ramp((r * V + v) * 16, 1, 16)], co, corr, outscale, bias)
                            at: T.let = (n * COUT + co) * HW + p0 + q * TILE + v * 16
                            if RES:
                                outf[T.ramp(at, 1, 16)] = emit(val + resf[T.ramp(at, 1, 16)], 16)
                            else:
                                outf[T.ramp(at, 1, 16)] = emit(val, 16)

    return main


def _scaled(acc16, co, corr, outscale, bias):
    """A 16-lane int32 accumulator of output channel `co` as float32: zero point taken out (corr), then
    scale and bias (the pixel-lane kernels' output stage before residual and activation)."""
    return (tirx.Cast("float32x16", acc16 + tirx.Broadcast(corr[co], 16)) * tirx.Broadcast(outscale[co], 16)
            + tirx.Broadcast(bias[co], 16))


def _packed_word(xf, at, c0, C: int, HW: int, quant: ActQuant, code):
    """Channels c0..c0+3 at flat element `at` of channel c0 (a vector lane in use), packed (_pack4); the
    zero point for a channel past C (its load clamped into the tensor)."""
    return _pack4(lambda k: xf[at + tirx.min(k, C - 1 - c0) * HW], lambda k: c0 + k < C, quant, code)


def vnni_conv_pixels(p: VNNIPixelPlan, quant: ActQuant, residual: bool, relu: bool, cap: float | None,
                     codes_in: bool = False, out_quant: ActQuant | None = None):
    """PrimFunc(x, w, off, corr, outscale, bias, residual (a 1-element stand-in without one), out).
    With `codes_in`, x holds uint8 codes of `quant` already; with `out_quant`, out holds uint8 codes.
    A `local` plan takes vnni_conv_local."""
    if p.local:
        return vnni_conv_local(p, quant, residual, relu, cap, codes_in, out_quant)
    s, lay = p.s, p.layout
    N, C, H, W = s.n, s.c, s.h, s.w
    CG, NB, R, V, COUT = p.groups, p.row_blocks, p.rows, p.vecs, s.cout
    G = CG * s.kh * s.kw
    ST, _, WQ, PLANE = lay.phases
    PLANES = lay.planes()
    TILE, PADDED = lay.tile, lay.padded_pixels
    NT = PADDED // TILE
    TOP, LEFT = s.pad[0], s.pad[1]
    HO, WO = s.out_hw
    zp = float(quant.zero_point)
    RES, EXACT = residual, p.exact
    RSHAPE = (N, COUT, HO, WO) if residual else (1,)
    RSIZE = N * COUT * HO * WO if residual else 1
    XT, OT = ("uint8" if codes_in else "float32"), ("uint8" if out_quant else "float32")
    emit = _emitter(relu, cap, out_quant)
    # each group's phase planes are filled and packed by one thread, so no barrier between the two;
    # the fill is needed only where some row of a plane is padding (columns are packed whole)
    FILL = bool(s.pad[0] or s.pad[2] or H % ST)
    EXTRA = PLANES - CG * ST * ST

    @T.prim_func
    def main(x: T.Buffer((N, C, H, W), XT), w: T.Buffer((NB, G, R * 4), "int8"),
             off: T.Buffer((G,), "int32"), corr: T.Buffer((COUT,), "int32"),
             outscale: T.Buffer((COUT,), "float32"), bias: T.Buffer((COUT,), "float32"),
             res: T.Buffer(RSHAPE, "float32"), out: T.Buffer((N, COUT, HO, WO), OT)):
        T.func_attr({"tirx.noalias": True})
        outf = T.decl_buffer((N * COUT * HO * WO,), OT, data=out.data)
        resf = T.decl_buffer((RSIZE,), "float32", data=res.data)
        xq = T.alloc_buffer((N * PLANES * PLANE * 4,), "uint8")
        xq32 = T.decl_buffer((N * PLANES * PLANE,), "int32", data=xq.data)
        ys = T.alloc_buffer((N * NB * R * PADDED if not EXACT else 1,), "float32")
        for nc in T.parallel(N * CG):
            if FILL:  # the zero point where the rows below write nothing (padding rows)
                for j in range(ST * ST * PLANE * 4):
                    xq[(nc // CG * PLANES + nc % CG * ST * ST) * PLANE * 4 + j] = T.uint8(zp)
            if EXTRA > 0 and nc % CG == CG - 1:  # the image's spare planes, read only by dropped pixels
                for j in range(EXTRA * PLANE * 4):
                    xq[((nc // CG + 1) * PLANES - EXTRA) * PLANE * 4 + j] = T.uint8(zp)
            # a whole row of one phase plane per vector: its 4 channels packed into one int32 per pixel
            for y, b in T.grid(H, ST):
                for xx in T.vectorized(WQ):
                    pl: T.let = (nc % CG * ST + (y + TOP) % ST) * ST + b
                    xq32[(nc // CG * PLANES + pl) * PLANE + (y + TOP) // ST * WQ + xx] = _packed_codes(
                        x, nc // CG, nc % CG * 4, y, xx * ST + b - LEFT, C, W, quant, codes_in)
        for t in T.parallel(N * NB * NT):
            acc = T.alloc_buffer((R * V * 16,), "int32", annotations={"disable_lower_builtin": True})
            n: T.let = t // (NB * NT)
            b: T.let = t // NT % NB
            p0: T.let = t % NT * TILE
            for i in T.unroll(R * V):
                acc[T.ramp(i * 16, 1, 16)] = T.broadcast(T.int32(0), 16)
            for g in range(G):
                base: T.let = (n * PLANES * PLANE + off[g] + p0) * 4
                # the lines column group g + AHEAD will read (see prefetch.py)
                ahead: T.let = (n * PLANES * PLANE + off[T.min(g + AHEAD, G - 1)] + p0) * 4
                for k in T.unroll(V + 1):
                    T.evaluate(T.call_intrin("void", "tirx.prefetch",
                                             T.address_of(xq[ahead + T.min(k * 64, V * 64 - 1)]), 0, 3, 1))
                for r in T.unroll(R):
                    wv: T.let = T.reinterpret("int8x64", T.broadcast(T.reinterpret("int32", w[b, g, T.ramp(r * 4, 1, 4)]), 16))
                    for v in T.unroll(V):
                        acc[T.ramp((r * V + v) * 16, 1, 16)] = T.call_llvm_pure_intrin(
                            "int32x16", "llvm.x86.avx512.vpdpbusd.512",
                            acc[T.ramp((r * V + v) * 16, 1, 16)], xq[T.ramp(base + v * 64, 1, 64)], wv)
            for r in T.unroll(R):
                co: T.let = b * R + r
                if co < COUT:
                    for v in T.unroll(V):
                        val: T.let = _scaled(acc[T.ramp((r * V + v) * 16, 1, 16)], co, corr, outscale, bias)
                        at: T.let = (n * COUT + co) * HO * WO + p0 + v * 16
                        if not EXACT:
                            ys[T.ramp((n * NB * R + co) * PADDED + p0 + v * 16, 1, 16)] = val
                        elif RES:
                            outf[T.ramp(at, 1, 16)] = emit(val + resf[T.ramp(at, 1, 16)], 16)
                        else:
                            outf[T.ramp(at, 1, 16)] = emit(val, 16)
        if not EXACT:
            for nco in T.parallel(N * COUT):
                for ho, wo in T.grid(HO, WO):
                    val: T.let = ys[(nco // COUT * NB * R + nco % COUT) * PADDED + ho * WQ + wo]
                    if RES:
                        outf[(nco * HO + ho) * WO + wo] = emit(val + resf[(nco * HO + ho) * WO + wo], 1)
                    else:
                        outf[(nco * HO + ho) * WO + wo] = emit(val, 1)

    return one_parallel_region(main)
