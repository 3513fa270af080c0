"""The integer form of the dense kernel on AVX512-VNNI: `vpdpbusd` (u8 x s8, four products summed into
each int32 lane), 64 multiply-adds per instruction.

Lanes are 16 output channels; the four bytes each lane sums are four consecutive input channels of
one pixel at one kernel tap. So the pad stage quantizes the input into channel groups of four,
XQ[n, cg, y, x, 0:4] (uint8, the zero point where padded), and the weights are laid out
W[b, g, 16, 4] for column group g = (cg, ki, kj). Per column group a tile of `px` pixels broadcasts
each pixel's 4 bytes against one 64-byte weight vector. The activation zero point is taken out
exactly in int32 afterwards: acc - zp * sum(w) per output channel (CORR), then the float epilogue
(scale, bias, residual, ReLU/ReLU6).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tvm.script import tirx as T

from targets.tvm.kernels import ActQuant, ConvShape


def vnni_intrinsic_args(acc, a_i32, w_i8x64):
    """vpdpbusd's operands in the types this TVM's LLVM (22) declares: byte vectors for both sources
    (LLVM before 21 took <16 x i32>)."""
    return (acc, T.reinterpret("uint8x64", T.broadcast(a_i32, 16)), w_i8x64)


@dataclass(frozen=True)
class VNNIPlan:
    s: ConvShape  # a dense layer (every row reads every column)
    px: int  # pixels per register tile

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


def vnni_conv(p: VNNIPlan, quant: ActQuant, residual: bool, relu: bool, cap: float | None):
    """PrimFunc(x, w, idx, corr, outscale, bias, residual (a 1-element stand-in without one), out)."""
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
    NTH, NTW = HO // TH, WO // TW
    PX = TH * TW
    inv, zp, qmax = 1.0 / quant.scale, float(quant.zero_point), float(quant.qmax)
    lo = 0.0 if relu else -3.0e38
    hi = cap if (relu and cap is not None) else 3.0e38
    RES = residual
    RSHAPE = (N, COUT, HO, WO) if residual else (1,)  # without a residual the call passes a 1-element stand-in

    @T.prim_func
    def main(x: T.Buffer((N, C, H, W), "float32"), w: T.Buffer((NB, G, 64), "int8"),
             idx: T.Buffer((G, 3), "int32"), corr: T.Buffer((COUT,), "int32"),
             outscale: T.Buffer((COUT,), "float32"), bias: T.Buffer((COUT,), "float32"),
             res: T.Buffer(RSHAPE, "float32"), out: T.Buffer((N, COUT, HO, WO), "float32")):
        T.func_attr({"tirx.noalias": True})
        xq = T.alloc_buffer((N * CG * HP * WP * 4,), "uint8")
        for nc in T.parallel(N * CG):  # the zero point everywhere (borders, channels past C), then the interior
            for i in range(HP * WP * 4):
                xq[nc * HP * WP * 4 + i] = T.uint8(zp)
            for y, xx in T.grid(H, W):
                for k in T.unroll(4):  # four planes interleaved into one contiguous run: LLVM vectorizes the xx loop
                    if (nc % CG) * 4 + k < C:
                        v = x[nc // CG, (nc % CG) * 4 + k, y, xx]
                        q = T.min(T.max(T.round(v * T.float32(inv)) + T.float32(zp), T.float32(0)), T.float32(qmax))
                        xq[((nc * HP + y + TOP) * WP + xx + LEFT) * 4 + k] = T.Cast("uint8", q)
        for t in T.parallel(N * NB * NTH * NTW):
            acc = T.alloc_buffer((PX * 16,), "int32", scope="local")
            n = t // (NB * NTH * NTW)
            b = t // (NTH * NTW) % NB
            y0 = t // NTW % NTH * TH
            x0 = t % NTW * TW
            for i in T.unroll(PX):
                acc[T.ramp(i * 16, 1, 16)] = T.broadcast(T.int32(0), 16)
            for g in range(G):
                wv = w[b, g, T.ramp(0, 1, 64)]
                base = ((n * CG + idx[g, 0]) * HP + y0 * SH + idx[g, 1]) * WP + x0 * SW + idx[g, 2]
                for i in T.unroll(PX):
                    a = T.reinterpret("int32", xq[T.ramp((base + (i // TW * SH) * WP + i % TW * SW) * 4, 1, 4)])
                    acc[T.ramp(i * 16, 1, 16)] = T.call_llvm_pure_intrin(
                        "int32x16", "llvm.x86.avx512.vpdpbusd.512",
                        *vnni_intrinsic_args(acc[T.ramp(i * 16, 1, 16)], a, wv))
            for r, ty in T.grid(16, TH):  # per channel, one row of the tile at a time: contiguous stores
                co = b * 16 + r
                if co < COUT:
                    for tx in range(TW):
                        v = T.Cast("float32", acc[(ty * TW + tx) * 16 + r] + corr[co]) * outscale[co] + bias[co]
                        if RES:
                            v = v + res[n, co, y0 + ty, x0 + tx]
                        out[n, co, y0 + ty, x0 + tx] = T.min(T.max(v, T.float32(lo)), T.float32(hi))

    return main
