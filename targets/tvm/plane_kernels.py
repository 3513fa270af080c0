"""Depthwise convs on whole channel planes held in vector registers (16-lane CPUs, AVX-512).

A depthwise layer has one input channel per output channel and kh*kw taps: little arithmetic per byte,
so the pixel form's pad copy, its strided row tiles and its separate output pass cost more than the
multiply-adds (a 144-channel 32x32 layer spent 36% of its time padding). Here each channel's plane is
loaded as it lies in NCHW, `ceil(h*w / 16)` vectors, and every tap of every output vector is one shuffle of
those vectors with a zero vector, its lane pattern fixed when the kernel is generated:

    out[16k + l] = sum_t  W[c, t] * (in[src(k, l, t)] if the tap lands inside the map else 0)

so the zero border is a constant of the shuffle (no padded copy), a stride-2 layer picks its even
pixels the same way, and the output stage (scale, bias, residual, ReLU/ReLU6) runs on the vectors
before their one store. LLVM turns each shuffle into a `vpermt2ps` with a zero mask and computes
identical ones once (a shifted row is read by three output rows): a 144-channel 32x32 layer issues
96 permutes for its 576 taps per channel, and taps that are whole vectors (rows of 16 or 32) need none.
An 8-bit layer quantizes the loaded vectors to integer levels (q - zp, zero where padded) and
multiplies integer-valued weights, exact in float32, like the pixel form's 8-bit depthwise path. It
reads its input's uint8 codes where its producer (a VNNI layer) writes them, and writes its own
output's codes where every consumer reads codes (lowering._mark_codes): the output stage runs on
whole vectors, and the conversions cost about what the fewer bytes save (MobileNet-V2 int8: no codes,
VNNI-only codes and codes through the planes measured 1.119, 1.120 and 1.112 ms in one run), where in
the pixel form, on half-width vectors, they cost more.

A plane that is not a multiple of 16 pixels (7x7, 14x14) ends with one vector that ends with the
plane, overlapping the one before: every load and store stays inside the plane, and the overlapping
output lanes are computed twice to the same value. The pattern is unrolled whole up to MAX_VECS
vectors (32x32) per channel; a larger plane runs in bands of the fewest output rows that keep every
band on vector boundaries (ImageNet's 112x112: one row, 7 vectors), the first and last band (which
read the border) unrolled and those between one loop body. Planes under one vector keep the pixel form.
"""

from __future__ import annotations

from dataclasses import dataclass

from tvm import tirx
from tvm.script.ir_builder import IRBuilder
from tvm.script.ir_builder import tirx as T

from targets.tvm.kernels import ActQuant, ConvShape, output_value

LANES = 16
MAX_VECS = 64  # input vectors per plane: a 32x32 map (the unrolled shuffles grow with the plane)


def vector_starts(pixels: int, lanes: int) -> list[int]:
    """Where each vector of a plane of `pixels` starts: whole vectors, then, where the plane is not a
    multiple of `lanes`, one more that ends with the plane (overlapping the one before, so every load
    and store stays inside the plane: no masked access, and an overlapping store writes equal values)."""
    starts = list(range(0, pixels - lanes + 1, lanes))
    return starts + ([pixels - lanes] if pixels % lanes else [])


@dataclass(frozen=True)
class PlanePlan:
    """A depthwise ConvShape (one input channel per output channel) with planes of at least one vector,
    whole, or in bands of `rows` output rows where the plane is larger than MAX_VECS vectors."""

    s: ConvShape
    lanes: int = LANES
    rows: int = 0  # output rows per band; 0: the whole plane at once

    @property
    def bands(self) -> int:
        return self.s.out_hw[0] // self.rows if self.rows else 1

    @property
    def starts_in(self) -> list[int]:
        return vector_starts(self.s.h * self.s.w, self.lanes)

    def bases(self, b):
        """(input, output) flat offset of band `b` (an int or a loop variable) in its plane."""
        return (b * (self.rows * self.s.stride[0] * self.s.w), b * (self.rows * self.s.out_hw[1])) if self.rows else (0, 0)

    def starts_out(self) -> list[int]:
        """Where each output vector of a band starts, from the band's output base."""
        ho, wo = self.s.out_hw
        return list(range(0, self.rows * wo, self.lanes)) if self.rows else vector_starts(ho * wo, self.lanes)

    def vector_of(self, p: int) -> tuple[int, int]:
        """(input vector, lane) holding input pixel `p`, counted from the band's input base."""
        full = self.s.h * self.s.w // self.lanes
        if self.rows or p < full * self.lanes:
            return divmod(p, self.lanes)
        return full, p - self.starts_in[-1]

    def load_start(self, v: int) -> int:
        """Where input vector `v` starts, from the band's input base (negative: rows above the band)."""
        return v * self.lanes if self.rows else self.starts_in[v]

    def sources(self, b: int = 0) -> list[list[list[int | None]]]:
        """[output vector][tap][lane] of band `b`: the input pixel each lane of each tap reads, counted
        from the band's input base; None in the zero border."""
        s, lanes = self.s, self.lanes
        (_, wo), (sh, sw) = s.out_hw, s.stride
        in_base, out_base = self.bases(b)
        out = []
        for start in self.starts_out():
            taps = []
            for ki in range(s.kh):
                for kj in range(s.kw):
                    row = []
                    for lane in range(lanes):
                        r, c = divmod(out_base + start + lane, wo)
                        y, x = r * sh + ki - s.pad[0], c * sw + kj - s.pad[1]
                        row.append(y * s.w + x - in_base if 0 <= y < s.h and 0 <= x < s.w else None)
                    taps.append(row)
            out.append(taps)
        return out


def _banded(s: ConvShape, lanes: int) -> PlanePlan | None:
    """A plane too large to unroll whole, in bands of the fewest output rows that keep every band's input
    and output on vector boundaries; the bands between the first and the last must read the same pattern
    (no border rows), so one loop body serves them."""
    ho, wo = s.out_hw
    if (s.h * s.w) % lanes or (ho * wo) % lanes:
        return None
    rows = next((r for r in range(1, ho + 1) if ho % r == 0 and (r * wo) % lanes == 0
                 and (r * s.stride[0] * s.w) % lanes == 0), None)
    if rows is None or ho // rows < 3 or rows * wo > MAX_VECS * lanes:
        return None
    plan = PlanePlan(s, lanes, rows)
    middle = plan.sources(1)
    return plan if all(plan.sources(b) == middle for b in range(2, plan.bands - 1)) else None


def plane_plan(s: ConvShape, groups: int, lanes: int = LANES) -> PlanePlan | None:
    """The plane form of a grouped conv, or None where it does not apply: not depthwise (one input and
    one output channel per group), planes smaller than one vector, or larger than MAX_VECS vectors
    without a banding whose vectors stay whole."""
    ho, wo = s.out_hw
    if groups != s.c or s.cout != s.c or ho <= 0 or wo <= 0 or min(s.h * s.w, ho * wo) < lanes:
        return None
    return PlanePlan(s, lanes) if s.h * s.w <= MAX_VECS * lanes else _banded(s, lanes)


class _Lazy(dict):
    """Input vectors bound on first use: binding a 32x32 plane's 64 vectors up front left LLVM more live
    vectors than registers (0.036 -> 0.023-0.033 ms on a 144-channel 32x32 layer alone)."""

    def __init__(self, make):
        super().__init__()
        self.make = make

    def __missing__(self, v: int):
        self[v] = self.make(v)
        return self[v]


def _tap(plan: PlanePlan, vecs: _Lazy, zero, pixels: list[int | None]):
    """One tap of one output vector: a shuffle of the input vectors it reads (and zeros), or the vector itself."""
    at = [plan.vector_of(p) if p is not None else None for p in pixels]
    used = sorted({v for v, _ in filter(None, at)})
    if not used:
        return None
    lanes = plan.lanes
    if len(used) == 1 and at == [(used[0], i) for i in range(lanes)]:
        return vecs[used[0]]
    index = [used.index(a[0]) * lanes + a[1] if a is not None else len(used) * lanes for a in at]
    return tirx.Shuffle([vecs[u] for u in used] + [zero], [tirx.const(i, "int32") for i in index])


def depthwise_plane(plan: PlanePlan, quant: ActQuant | None = None, residual: bool = False, relu: bool = False,
                    cap: float | None = None, codes_in: bool = False, out_quant: ActQuant | None = None):
    """PrimFunc(X[n, c, h, w], W[c, kh*kw], [outscale[c] if quant], bias[c], [R[n, c, ho, wo]], Y[n, c, ho, wo]).
    With `quant` the input is quantized to levels and W holds integer levels; outscale rescales. With
    `codes_in` X holds the input's uint8 codes already (its producer quantized it by the same expression),
    and with `out_quant` Y stores the output's codes for 8-bit consumers."""
    assert quant is not None or not codes_in, "codes in need the input's quantization"
    in_dtype, out_dtype = ("uint8" if codes_in else "float32"), ("uint8" if out_quant is not None else "float32")
    s, lanes = plan.s, plan.lanes
    ho, wo = s.out_hw
    taps, plane, oplane = s.kh * s.kw, s.h * s.w, ho * wo
    f32 = "float32"
    with IRBuilder() as ib:
        with T.prim_func():
            T.func_name("jb_plane")
            T.func_attr({"tir.noalias": True})
            X = T.arg("X", T.Buffer((s.n, s.c, s.h, s.w), in_dtype))
            W = T.arg("W", T.Buffer((s.c, taps), f32))
            CS = T.arg("outscale", T.Buffer((s.c,), f32)) if quant is not None else None
            B = T.arg("bias", T.Buffer((s.c,), f32))
            R = T.arg("residual", T.Buffer((s.n, s.c, ho, wo), f32)) if residual else None
            Y = T.arg("Y", T.Buffer((s.n, s.c, ho, wo), out_dtype))
            # flat views: a plane is contiguous in NCHW, and its vectors run across rows
            xf = T.decl_buffer((s.n * s.c * plane,), in_dtype, data=X.data)
            yf = T.decl_buffer((s.n * s.c * oplane,), out_dtype, data=Y.data)
            wf = T.decl_buffer((s.c * taps,), f32, data=W.data)
            rf = T.decl_buffer((s.n * s.c * oplane,), f32, data=R.data) if R is not None else None
            zero = tirx.Broadcast(tirx.const(0.0, f32), lanes)
            with T.parallel(0, s.n * s.c) as nc:
                c = T.Bind(nc % s.c)

                weights = [T.Bind(wf[c * taps + t]) for t in range(taps)]

                def band(b, pattern: int):
                    """One band's output vectors; `b` the band (int or loop variable), `pattern` the band
                    whose taps it reads (the same as b's)."""
                    in_base, out_base = plan.bases(b)

                    def load(v):
                        x = xf[T.Ramp(nc * plane + in_base + plan.load_start(v), 1, lanes)]
                        if codes_in:
                            x = tirx.Cast(f"float32x{lanes}", x) - tirx.Broadcast(tirx.const(float(quant.zero_point), f32), lanes)
                        elif quant is not None:
                            x = quant.levels(x)
                        return T.Bind(x)

                    vecs = _Lazy(load)  # each input vector bound just before the first output vector reading it
                    for start, per_tap in zip(plan.starts_out(), plan.sources(pattern), strict=True):
                        acc = None
                        for t, src in enumerate(per_tap):
                            tap = _tap(plan, vecs, zero, src)
                            if tap is not None:
                                term = tap * tirx.Broadcast(weights[t], lanes)
                                acc = term if acc is None else acc + term
                        v = zero if acc is None else acc
                        if CS is not None:
                            v = v * tirx.Broadcast(CS[c], lanes)
                        v = v + tirx.Broadcast(B[c], lanes)
                        at = T.Ramp(nc * oplane + out_base + start, 1, lanes)
                        if rf is not None:
                            v = v + rf[at]
                        T.buffer_store(yf, output_value(v, relu, cap, lanes, out_quant), [at])

                band(0, 0)
                if plan.bands > 1:  # the first and last bands read border rows; those between, one loop body
                    with T.serial(1, plan.bands - 1) as b:
                        band(b, 1)
                    band(plan.bands - 1, plan.bands - 1)
    return ib.get()
