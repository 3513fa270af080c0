"""The conv/linear kernel every TVM target shares: a GEMM over a per-row-block list of input columns.

For output row-block b (br output channels) and output pixel (ho, wo):

    Y[n, b*br + r, ho, wo] = act( sum_j W[b, j, r] * Xpad[n, c_bj, ho*s + ki_bj, wo*s + kj_bj] + bias + residual )

where (c, ki, kj)_bj is the j-th kept column of the GEMM view of the weight in row-block b. A dense
layer lists every column; a block-pruned layer only the columns its block kept, so the work done is
exactly the kept work. The micro-kernel keeps a br x (th*tw) tile of outputs in registers
(br channels vectorized, one broadcast input scalar per FMA) over the j loop, then applies the
fused epilogue while writing back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import tvm
from tvm import s_tir, te, tirx


@dataclass(frozen=True)
class ConvShape:
    n: int
    c: int
    h: int
    w: int
    cout: int  # output channels produced by the GEMM (kept rows, a multiple of br)
    kh: int
    kw: int
    stride: tuple[int, int]
    pad: tuple[int, int, int, int]  # top, left, bottom, right
    br: int
    kmax: int  # columns per row-block
    shared_cols: bool = False  # every row-block reads the same columns (dense): one index table

    @property
    def out_hw(self) -> tuple[int, int]:
        hp, wp = self.h + self.pad[0] + self.pad[2], self.w + self.pad[1] + self.pad[3]
        return (hp - self.kh) // self.stride[0] + 1, (wp - self.kw) // self.stride[1] + 1

    @property
    def macs(self) -> int:
        ho, wo = self.out_hw
        return self.n * self.cout * ho * wo * self.kmax


@dataclass(frozen=True)
class ActQuant:
    """Affine activation quantization applied while padding: q = clamp(round(x / scale) + zp, 0, qmax)."""

    scale: float
    zero_point: int
    qmax: int

    def __post_init__(self) -> None:
        if not 0 <= self.zero_point <= self.qmax:
            raise ValueError(f"zero point {self.zero_point} outside the quantized range [0, {self.qmax}]")

    def codes(self, v, lo: int = 0, hi: int | None = None):
        """The float32 expression q of a float32 input expression `v` (scalar or vector). The input is
        scaled by one multiply with 1/scale, not a divide (a depthwise pad stage spent a third of its
        time in `vdivps`): every kernel quantizes by this one expression, so a tensor quantized in its
        producer's output stage holds exactly the codes its consumer would compute. `lo`/`hi` narrow
        the clamp (see to_codes)."""
        scaled = v * tirx.const(1.0 / self.scale, "float32")
        q = tirx.round(scaled) + tirx.const(float(self.zero_point), "float32")
        top = self.qmax if hi is None else hi
        return tirx.min(tirx.max(q, tirx.const(float(lo), "float32")), tirx.const(float(top), "float32"))

    def codes_np(self, v):
        """`codes` in numpy, bit for bit (float32 multiply by the float32 reciprocal, round half to even),
        as uint8: what a producer hands its 8-bit consumers, for references."""
        import numpy as np

        scaled = np.asarray(v, np.float32) * np.float32(1.0 / self.scale)
        return np.clip(np.round(scaled) + np.float32(self.zero_point), 0, self.qmax).astype(np.uint8)

    def to_codes(self, v, relu: bool = False, cap: float | None = None):
        """`activation(v, relu, cap)` (scalar or vector) quantized and stored as uint8 codes (an output
        stage feeding 8-bit consumers). The activation is folded into the clamp, bit for bit: `codes` is
        monotone, so codes(clamp(v, 0, cap)) = clamp(codes(v), codes(0), codes(cap)), and codes(0) is
        the zero point. Two vector ops fewer per output vector."""
        lanes = tvm.DataType(str(v.ty.dtype)).lanes
        lo = self.zero_point if relu else 0
        hi = int(self.codes_np(cap)) if relu and cap is not None else None
        return tirx.Cast("uint8" if lanes == 1 else f"uint8x{lanes}", self.codes(v, lo, hi))

    def levels(self, v):
        """The float32 expression q - zp of a float32 input expression `v` (the integer the GEMM multiplies).
        levels(0) is exactly 0 (the zero point lies in [0, qmax]), so a padded input may be quantized
        border and all: the border select then guards only the load and the loop vectorizes (guarding
        the whole quantization kept a stride-2 depthwise pad stage scalar, 3x slower)."""
        return self.codes(v) - tirx.const(float(self.zero_point), "float32")


def conv_compute(s: ConvShape, bias: bool, residual: bool, relu: bool, full_cout: int | None = None,
                 quant: ActQuant | None = None, cap: float | None = None):
    """TE definition. With `full_cout`, the GEMM produced only kept rows and ROWMAP[co] (-1: pruned)
    scatters them into `full_cout` output channels before the epilogue.

    With `quant`, the integer form: activations are quantized in the pad stage and held as (q - zp)
    in int16, weights are int8, the GEMM accumulates in int32, and the epilogue requantizes with a
    per-channel float scale (activation scale x weight scale x folded batch-norm scale)."""
    ho_n, wo_n = s.out_hw
    top, left = s.pad[0], s.pad[1]
    nb = s.cout // s.br
    X = te.placeholder((s.n, s.c, s.h, s.w), "float32", name="x")
    W = te.placeholder((nb, s.kmax, s.br), "int8" if quant else "float32", name="w")
    IDX = te.placeholder((1 if s.shared_cols else nb, s.kmax, 3), "int32", name="idx")
    hp, wp = s.h + s.pad[0] + s.pad[2], s.w + s.pad[1] + s.pad[3]
    inputs = [X, W, IDX]
    acc, act = ("int32", "int16") if quant else ("float32", "float32")

    def load(v):  # quantized after the border select, which then guards only the load (see ActQuant.levels)
        return v if quant is None else tirx.Cast(act, quant.levels(v))

    Xp = te.compute(
        (s.n, s.c, hp, wp),
        lambda n, c, h, w: load(tirx.if_then_else(
            tirx.all(h >= top, h < s.h + top, w >= left, w < s.w + left), X[n, c, h - top, w - left],
            tirx.const(0.0, "float32"))),
        name="jb_pad")
    j = te.reduce_axis((0, s.kmax), name="j")
    sh, sw = s.stride
    Y = te.compute(
        (s.n, nb, ho_n, wo_n, s.br),
        lambda n, b, ho, wo, r: te.sum(
            tirx.Cast(acc, W[b, j, r]) * tirx.Cast(acc, Xp[n, IDX[0 if s.shared_cols else b, j, 0],
                                                           ho * sh + IDX[0 if s.shared_cols else b, j, 1],
                                                           wo * sw + IDX[0 if s.shared_cols else b, j, 2]]),
            axis=j),
        name="jb_gemm")
    row = lambda n, k, ho, wo: Y[n, k // s.br, ho, wo, k % s.br]  # noqa: E731
    extra, out = fused_epilogue(s, row, acc, relu, bias, residual, full_cout, scaled=quant is not None, cap=cap)
    return te.create_prim_func([*inputs, *extra, out])


def output_value(v, relu: bool, cap: float | None, lanes: int, out_quant: ActQuant | None):
    """What an output stage stores for the float32 value `v`: its activation, or that quantized to
    `out_quant`'s uint8 codes (with the activation folded into the quantizer's clamp)."""
    return activation(v, relu, cap, lanes) if out_quant is None else out_quant.to_codes(v, relu, cap)


def activation(v, relu: bool, cap: float | None, lanes: int = 1):
    """ReLU of a float32 scalar or `lanes`-lane vector, clipped at `cap` when given (ReLU6); `v` itself
    without `relu`. The output stage of every kernel form ends with it."""
    if not relu:
        return v

    def const(x: float):
        return tirx.Broadcast(tirx.const(x, "float32"), lanes) if lanes > 1 else tirx.const(x, "float32")

    v = tirx.max(v, const(0.0))
    return v if cap is None else tirx.min(v, const(cap))


def fused_epilogue(s: ConvShape, row, acc: str, relu: bool, bias: bool, residual: bool, full_cout: int | None,
                   scaled: bool = False, cap: float | None = None):
    """The output stage both kernel forms share: out[n, co, ho, wo] = act(row(n, k, ho, wo) [* scale[co]]
    [+ bias[co]] [+ residual]) with k = co, or k = ROWMAP[co] (-1: a pruned row, zero) with `full_cout`;
    act is ReLU, clipped at `cap` when given (ReLU6), or none.
    Returns (the extra input placeholders in argument order, the output tensor)."""
    ho_n, wo_n = s.out_hw
    cout = full_cout or s.cout
    CS = te.placeholder((cout,), "float32", name="outscale") if scaled else None
    B = te.placeholder((cout,), "float32", name="bias") if bias else None
    R = te.placeholder((s.n, cout, ho_n, wo_n), "float32", name="residual") if residual else None
    MAP = te.placeholder((cout,), "int32", name="rowmap") if full_cout else None

    def epilogue(n, co, ho, wo):
        if MAP is not None:
            k = MAP[co]
            v = tirx.if_then_else(k >= 0, row(n, tirx.max(k, 0), ho, wo), tirx.const(0, acc))
        else:
            v = row(n, co, ho, wo)
        if CS is not None:
            v = tirx.Cast("float32", v) * CS[co]
        if B is not None:
            v = v + B[co]
        if R is not None:
            v = v + R[n, co, ho, wo]
        return activation(v, relu, cap)

    out = te.compute((s.n, cout, ho_n, wo_n), epilogue, name="jb_out")
    return [t for t in (CS, B, R, MAP) if t is not None], out


def _divisor_at_most(n: int, cap: int) -> int:
    return next(d for d in range(max(1, min(n, cap)), 0, -1) if n % d == 0)


def schedule_conv(func, s: ConvShape, scattered: bool, pixels: int = 16):
    """The hand schedule: parallel over (image, row-block, pixel tile), j outer, register tile inner."""
    sch = s_tir.Schedule(func)
    gemm = sch.get_sblock("jb_gemm")
    n, b, ho, wo, r, j = sch.get_loops(gemm)
    ho_n, wo_n = s.out_hw
    tw = _divisor_at_most(wo_n, pixels)
    th = _divisor_at_most(ho_n, max(1, pixels // tw))
    ho_o, ho_i = sch.split(ho, [None, th])
    wo_o, wo_i = sch.split(wo, [None, tw])
    sch.reorder(n, b, ho_o, wo_o, j, ho_i, wo_i, r)
    tile = sch.fuse(n, b, ho_o, wo_o)
    sch.parallel(tile)
    sch.unroll(ho_i)
    sch.unroll(wo_i)
    sch.vectorize(r)
    # rows gathered through ROWMAP: the epilogue is its own parallel pass; else fused into the write-back
    register_tile(sch, gemm, tile, j, fused_output=not scattered)
    pad = sch.get_sblock("jb_pad")
    pn, pc, ph, pw = sch.get_loops(pad)
    sch.parallel(sch.fuse(pn, pc))
    sch.vectorize(pw)
    return one_parallel_region(tile_on_stack(sch.mod["main"].with_attr("tir.is_scheduled", True)))


REGISTER_TILE = "global"  # scope of the per-tile accumulator buffer; see tile_on_stack


def register_tile(sch, gemm, tile, j, fused_output: bool) -> None:
    """The tail both CPU forms share: accumulate `gemm` in a register tile written back under `tile`,
    with the output stage (jb_out) inlined into that write-back, or else run as its own pass."""
    wb = sch.cache_write(gemm, 0, REGISTER_TILE)
    out = sch.get_sblock("jb_out")
    if fused_output:
        sch.reverse_compute_inline(out)
    else:
        output_pass(sch, out)
    sch.reverse_compute_at(wb, tile)
    sch.decompose_reduction(gemm, j)


_STACK_LIMIT = 16384  # bytes; a register tile is at most 32 x 64


def tile_on_stack(func):
    """Keep each tile's accumulators in a stack array that LLVM promotes to registers.

    This TVM lowers a "local" buffer, and a "global" one of 1 KiB or more, to a workspace-pool
    allocation on every tile (alloc, memset, stores, reloads, free); a "global" allocation annotated
    `disable_lower_builtin` stays an alloca. Block allocations cannot carry annotations, so the
    scheduled function is lowered to block-free form here and the tile's allocation annotated. The
    annotation survives the build only with `tirx.disable_storage_rewrite` (build.py sets it for
    CPU targets); without it the tile goes back to the workspace pool, slower but the same result."""
    mod = tvm.ir.transform.Sequential([
        s_tir.transform.CanonicalizeLoop(), s_tir.transform.LowerInitBlock(),
        s_tir.transform.PlanAndUpdateBufferAllocationLocation(), s_tir.transform.ConvertBlocksToOpaque(),
        s_tir.transform.CompactBufferAllocation(), s_tir.transform.LowerOpaqueBlock(),
    ])(tvm.IRModule({"main": func}))
    lowered = mod["main"]

    def annotate(stmt):
        if isinstance(stmt, tirx.SeqStmt):
            return tirx.SeqStmt([annotate(c) for c in stmt.seq])
        if isinstance(stmt, tirx.For):
            return tirx.For(stmt.loop_var, stmt.min, stmt.extent, stmt.kind, annotate(stmt.body), stmt.thread_binding,
                            stmt.annotations)
        if (isinstance(stmt, tirx.AllocBuffer) and stmt.buffer.name.endswith("_" + REGISTER_TILE)
                and buffer_bytes(stmt.buffer) <= _STACK_LIMIT):
            return tirx.AllocBuffer(stmt.buffer, {**stmt.annotations, "disable_lower_builtin": tirx.IntImm("bool", 1)})
        return stmt

    return lowered.with_body(annotate(lowered.body))


def one_parallel_region(func):
    """Run a block-free kernel's parallel stages (pad copy, GEMM, output pass) in one launch of the
    thread pool, with a barrier between stages, instead of one launch each: the workers stay in the
    region rather than going back to the pool's yield loop between stages (a few % on a sparse layer).
    Applies only where the body is buffer declarations followed by parallel loops, nothing else."""
    body = func.body
    seq = list(body.seq) if isinstance(body, tirx.SeqStmt) else [body]
    n_alloc = next((i for i, st in enumerate(seq) if not isinstance(st, (tirx.AllocBuffer, tirx.DeclBuffer))), len(seq))
    stages = seq[n_alloc:]
    if len(stages) < 2 or not all(isinstance(st, tirx.For) and st.kind == tirx.ForKind.PARALLEL for st in stages):
        return func
    one = tirx.IntImm("int32", 1)
    staged = [tirx.AttrStmt(one, "pragma_parallel_barrier_when_finish", one, st) for st in stages[:-1]] + stages[-1:]
    region = tirx.AttrStmt(one, "pragma_parallel_launch_point", one, tirx.SeqStmt(staged))
    return func.with_body(tirx.SeqStmt([*seq[:n_alloc], region]))


def buffer_bytes(buf: tirx.Buffer) -> int:
    dt = tvm.runtime.DataType(str(buf.dtype))
    return math.prod(int(d) for d in buf.shape) * dt.bits * dt.lanes // 8


def output_pass(sch, out) -> None:
    """Schedule an output stage that runs as its own pass: parallel over (image, channel), rows vectorized."""
    on, oc, _, ow = sch.get_loops(out)
    sch.parallel(sch.fuse(on, oc))
    sch.vectorize(ow)


def _bind_flat(sch, block, threads: int) -> None:
    bx, tx = sch.split(sch.fuse(*sch.get_loops(block)), [None, threads])
    sch.bind(bx, "blockIdx.x")
    sch.bind(tx, "threadIdx.x")


def schedule_conv_gpu(func, scattered: bool, threads: int = 64):
    """A plain GPU schedule (one output element per thread, accumulator in a register, epilogue fused):
    dlight cannot analyse the index-table reads, and schedule primitives keep the semantics that the
    CPU build verifies."""
    sch = s_tir.Schedule(func)
    _bind_flat(sch, sch.get_sblock("jb_pad"), threads)
    gemm = sch.get_sblock("jb_gemm")
    n, b, ho, wo, r, j = sch.get_loops(gemm)
    bx, tx = sch.split(sch.fuse(n, b, ho, wo, r), [None, threads])
    sch.bind(bx, "blockIdx.x")
    sch.bind(tx, "threadIdx.x")
    wb = sch.cache_write(gemm, 0, "local")
    if scattered:
        _bind_flat(sch, sch.get_sblock("jb_out"), threads)
    else:
        sch.reverse_compute_inline(sch.get_sblock("jb_out"))
    sch.reverse_compute_at(wb, tx)
    sch.decompose_reduction(gemm, j)
    return sch.mod["main"].with_attr("tir.is_scheduled", True)


def pack_bits(q, bits: int):
    """Pack signed integer levels (numpy int8, any shape) into uint8, `bits` per value, two's
    complement; 1-bit (binary) stores -1 as 0 and +1 as 1. Returns the flat packed array."""
    import numpy as np

    flat = q.reshape(-1).astype(np.int16)
    per = 8 // bits
    field_ = (flat > 0).astype(np.uint8) if bits == 1 else (flat & ((1 << bits) - 1)).astype(np.uint8)
    field_ = np.pad(field_, (0, (-len(field_)) % per))
    shifts = (np.arange(per, dtype=np.uint8) * bits)[None, :]
    return (field_.reshape(-1, per) << shifts).sum(1).astype(np.uint8)


def unpack_compute(n: int, bits: int, x_shape: tuple[int, ...], gpu: bool = False):
    """uint8[ceil(n*bits/8)] -> int8[n]: the inverse of pack_bits, run in the graph before the GEMM.

    It also takes the layer's input (unread): a call whose arguments are all constants would be
    evaluated by FoldConstant at build time, and the artifact would ship the unpacked weights."""
    per = 8 // bits
    P = te.placeholder(((n + per - 1) // per,), "uint8", name="packed")
    X = te.placeholder(x_shape, "float32", name="layer_input")

    def f(i):
        v = tirx.Cast("int32", (P[i // per] >> tirx.Cast("uint8", (i % per) * bits)) & tirx.const((1 << bits) - 1, "uint8"))
        if bits == 1:
            return tirx.Cast("int8", v * 2 - 1)
        return tirx.Cast("int8", tirx.if_then_else(v >= (1 << (bits - 1)), v - (1 << bits), v))

    out = te.compute((n,), f, name="jb_unpack")
    sch = s_tir.Schedule(te.create_prim_func([P, X, out]))
    if gpu:
        _bind_flat(sch, sch.get_sblock("jb_unpack"), 64)
        return sch.mod["main"].with_attr("tir.is_scheduled", True)
    (i,) = sch.get_loops(sch.get_sblock("jb_unpack"))
    io, ii = sch.split(i, [None, 64]) if n % 64 == 0 else (i, None)
    sch.parallel(io)
    return sch.mod["main"].with_attr("tir.is_scheduled", True)
