"""Relax rewrite: every conv2d / linear with constant weights becomes one call to the shared kernel
family, with batch-norm folded into its weights and bias, residual add and ReLU / ReLU6 fused. The form
per layer: channel-vectorized (kernels.py; GPUs, narrow CPUs, small maps, linear layers),
pixel-vectorized (pixel_kernels.py; float convs on 16-lane CPUs) or VNNI (vnni_kernels.py; dense
8-bit convs where the CPU has AVX512-VNNI).

The plan for each layer comes from the variant's scheme and the weights themselves:
  block        -> per row-block of `br` output channels, only the columns that row-block kept
  filter       -> only the non-zero output channels (the physically smaller dense layer), scattered back
  anything else-> dense (unstructured sparsity stays dense: irregular zeros buy nothing here)
Grouped/depthwise convs are lowered only where the pixel form runs them; they, dilated convs and
anything else the family does not cover stay on TVM's own lowering elsewhere.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace

import numpy as np
import tvm
from tvm import relax
from tvm.ir.expr import Constant

from targets.tvm.kernels import (
    ActQuant,
    ConvShape,
    conv_compute,
    pack_bits,
    schedule_conv,
    schedule_conv_gpu,
    unpack_compute,
)
from targets.tvm.pixel_kernels import conv_compute_pixels, fit_vecs, pixel_layout, schedule_conv_pixels
from targets.tvm.plane_kernels import depthwise_plane, plane_plan
from targets.tvm.vnni_kernels import VNNIPlan, plan_pixels, vnni_conv, vnni_conv_pixels

DEFAULT_BR = 8
PIXEL_ROWS = 8  # dense row-block of the pixel-vectorized kernel: 8 rows x 3 vectors = 24 of 32 zmm accumulators
LOWERING_VERSION = 34  # part of every artifact cache key: bump when lowered code would change
# channel-lane VNNI tiles (small maps): 8 pixels x 2 row-blocks, each broadcast input byte group feeding
# two weight vectors; 15% faster than 16 pixels x 1 on ResNet-18's 4x4 layers (fewer loads per vpdpbusd)
CHANNEL_LANE_TILE = (8, 2)
# 8-bit layers hand each other uint8 codes where they can (see _mark_codes); a switch so a test can
# compare both ways bit for bit
CODES = True
# depthwise convs with planes of at least one vector run on planes in registers (plane_kernels.py), the
# rest in the pixel form; a switch so a benchmark and a test can compare both
PLANES = True


@dataclass
class LayerPlan:
    weight: np.ndarray  # [Cout, K] GEMM view, BN folded
    br: int
    cols: np.ndarray  # [nb, kmax] column indices per row-block
    rows: np.ndarray | None  # kept output rows (compacted), None = all rows in order


@dataclass
class LoweringReport:
    layers: list[dict] = field(default_factory=list)  # per lowered layer: plan, MACs, fused epilogue


def plan_layer(w2: np.ndarray, scheme: str, block_rows: int | None, dense_br: int = DEFAULT_BR) -> LayerPlan:
    cout, k = w2.shape
    if scheme == "block" and block_rows and all(np.any(w2[i:i + block_rows] != 0, axis=0).all()
                                                 for i in range(0, cout, block_rows)):
        scheme = "none"  # a layer exempt from pruning: every row-block keeps every column -> dense kernel
    rows = None
    if scheme == "filter":
        kept = np.flatnonzero(np.any(w2 != 0, axis=1))
        rows = kept if len(kept) < cout else None
    if scheme == "block" and block_rows:
        br = block_rows
    else:  # any row-block size works for dense rows: one vector register of lanes, else a divisor (10 for a classifier)
        br = dense_br if cout % dense_br == 0 else max(d for d in range(1, max(dense_br, 16) + 1) if cout % d == 0)
    n_rows = cout if rows is None else len(rows)
    if rows is None and cout % br:
        rows = np.arange(cout)  # pad to whole row-blocks through the row map
    if rows is not None and len(rows) % br:
        br = min(br, max(1, len(rows)))
    mat = w2 if rows is None else w2[rows]
    pad_rows = (-n_rows) % br
    mat = np.concatenate([mat, np.zeros((pad_rows, k), mat.dtype)]) if pad_rows else mat
    nb = mat.shape[0] // br
    if scheme == "block":
        per_block = [np.flatnonzero(np.any(mat[b * br:(b + 1) * br] != 0, axis=0)) for b in range(nb)]
        kmax = max(1, max(len(c) for c in per_block))
        # row-blocks with fewer kept columns are padded with a zero-weight column (balanced pruning has none)
        cols = np.stack([np.pad(c, (0, kmax - len(c)), constant_values=c[0] if len(c) else 0) for c in per_block])
        wmat = np.stack([mat[b * br:(b + 1) * br, cols[b]] for b in range(nb)])  # [nb, br, kmax]
        for b, c in enumerate(per_block):
            wmat[b, :, len(c):] = 0
        plan = LayerPlan(wmat, br, cols, rows)
    else:
        cols = np.tile(np.arange(k), (nb, 1))
        plan = LayerPlan(mat.reshape(nb, br, k), br, cols, rows)
    return plan


def plan_grouped(w2: np.ndarray, groups: int) -> LayerPlan:
    """A grouped (depthwise: one channel per group) conv as row-blocks inside each group, each reading
    its group's columns of the full GEMM view ([Cout, Cin*kh*kw], whose other columns are zero)."""
    cout, k_g = w2.shape
    per_group = cout // groups
    br = max(d for d in range(1, min(per_group, PIXEL_ROWS) + 1) if per_group % d == 0)
    nb = cout // br
    group = np.arange(nb) * br // per_group
    cols = group[:, None] * k_g + np.arange(k_g)[None, :]
    return LayerPlan(w2.reshape(nb, br, k_g), br, cols, None)


def ir_macs(mod: tvm.IRModule) -> int:
    """MACs of the lowered module, read from the IR: each kernel call from the shapes of the weight
    table it was given, and any conv2d / matmul left to TVM's own lowering counted dense."""
    total = 0
    for blk in mod["main"].body.blocks:
        for b in blk.bindings:
            v = b.value
            if _op(v, "relax.call_tir") and v.args[0].name_hint.startswith("jb_vnni"):
                x_shape = [int(d) for d in v.args[1].fields[0].ty.shape]
                g = int(v.args[1].fields[2].ty.shape[0])  # column groups: ceil(C/4) * kh * kw
                n, cout, ho, wo = (int(d) for d in b.var.ty.shape)
                total += n * ho * wo * cout * x_shape[1] * (g // -(-x_shape[1] // 4))
            elif _op(v, "relax.call_tir") and v.args[0].name_hint.startswith("jb_plane"):
                c, taps = (int(d) for d in v.args[1].fields[1].ty.shape)
                n, _, ho, wo = (int(d) for d in b.var.ty.shape)
                total += n * ho * wo * c * taps
            elif _op(v, "relax.call_tir") and v.args[0].name_hint.startswith("jb_conv"):
                nb, kmax, br = (int(d) for d in v.args[1].fields[1].ty.shape)
                n, _, ho, wo = (int(d) for d in b.var.ty.shape)
                total += n * ho * wo * nb * br * kmax
            elif _op(v, "relax.nn.conv2d"):
                w = [int(d) for d in v.args[1].ty.shape]
                out = [int(d) for d in b.var.ty.shape]
                total += out[0] * out[2] * out[3] * w[0] * w[1] * w[2] * w[3]
            elif _op(v, "relax.matmul"):
                out = [int(d) for d in b.var.ty.shape]
                total += int(np.prod(out)) * int(v.args[0].ty.shape[-1])
    return total


def _const(a: np.ndarray) -> Constant:
    return relax.const(tvm.runtime.tensor(np.ascontiguousarray(a)))


def _np(c: Constant) -> np.ndarray:
    return c.value.numpy()


class _Chain:
    """conv/linear -> [bias add] -> [batch_norm, [0]] -> [residual add] -> [relu], each step single-use."""

    def __init__(self) -> None:
        self.start: relax.Var | None = None
        self.x: relax.Expr | None = None
        self.weight: np.ndarray | None = None  # [Cout, Cin, kh, kw]
        self.attrs = None
        self.linear = False
        self.bias: np.ndarray | None = None
        self.residual: relax.Expr | None = None
        self.relu = False
        self.cap: float | None = None  # ReLU's upper clip (ReLU6)
        self.groups = 1
        self.vars: list[relax.Var] = []
        self.raw: np.ndarray | None = None  # the weight before batch-norm folding
        self.scale: np.ndarray | None = None  # folded batch-norm scale per output channel
        self.quant: ActQuant | None = None  # activation fake-quant absorbed from the producer chain
        self.qweight = None  # the layer's int8 weights (pruning.quant.QuantizedWeight) when quantized
        self.fq_head: relax.Var | None = None  # the absorbed fake-quant's first binding (a user of x)
        self.codes_in = False  # x arrives as uint8 codes of `quant`: its producer quantized it
        self.out_quant: ActQuant | None = None  # the output is stored as uint8 codes for 8-bit consumers


def _prim(v) -> float | None:
    """The float value of a constant scalar argument (a PrimValue, as clip's bounds are), else None."""
    value = getattr(v, "value", None)
    return float(value) if isinstance(value, (int, float, tvm.tirx.IntImm, tvm.tirx.FloatImm)) else None


def _op(call, name: str) -> bool:
    return isinstance(call, relax.Call) and isinstance(call.op, tvm.ir.Op) and call.op.name == name


_FAKE_QUANT = ("relax.multiply", "relax.subtract", "relax.clip", "relax.add", "relax.round", "relax.divide")


def _absorb_fake_quant(ch: _Chain, producer: dict, single_user, by_content: dict) -> None:
    """x -> divide(s) -> round -> add(zp) -> clip(0, qmax) -> subtract(zp) -> multiply(s) -> conv:
    the integer kernel quantizes x itself, so the chain's bindings are dropped and x fed directly."""
    qw = by_content.get(np.ascontiguousarray(ch.raw.reshape(ch.raw.shape[0], -1), dtype=np.float32).tobytes())
    if qw is None:
        return  # no integer weights for this layer: it stays in float
    cur, seen, consts = ch.x, [], {}
    for name in _FAKE_QUANT:
        b = producer.get(cur)
        if b is None or not _op(b.value, name) or single_user(b.var) is None:
            return
        seen.append(b.var)
        args = b.value.args
        if name == "relax.clip":
            consts["qmax"] = int(args[2].value)
        elif name != "relax.round":
            c = [a for a in args[1:] if isinstance(a, Constant)]
            if not c:
                return
            consts[name] = float(c[0].value.numpy())
        cur = args[0]
    s, zp = consts["relax.multiply"], consts["relax.subtract"]
    if s != consts["relax.divide"] or zp != consts["relax.add"] or not float(zp).is_integer():
        return
    ch.quant, ch.qweight, ch.x, ch.fq_head = ActQuant(s, int(zp), consts["qmax"]), qw, cur, seen[-1]
    ch.vars += seen


def _users(func: relax.Function) -> tuple[dict[relax.Var, list], set]:
    """The bindings that use each variable, and the variables the function returns."""
    users: dict[relax.Var, list] = {}
    for b in (b for blk in func.body.blocks for b in blk.bindings):
        for v in relax.analysis.free_vars(b.value) if not isinstance(b.value, relax.Var) else [b.value]:
            users.setdefault(v, []).append(b)
    return users, set(relax.analysis.free_vars(func.body.body))


def _find_chains(func: relax.Function, by_content: dict, grouped: bool = False) -> dict[relax.Var, _Chain]:
    bindings = [b for blk in func.body.blocks for b in blk.bindings]
    producer = {b.var: b for b in bindings}
    users, out_vars = _users(func)

    def single_user(var):
        u = users.get(var, [])
        return u[0] if len(u) == 1 and var not in out_vars else None

    chains: dict[relax.Var, _Chain] = {}
    claimed: set = set()  # bindings already inside a chain (a residual add has two candidate chains)
    for b in bindings:
        v = b.value
        ch = _Chain()
        if _op(v, "relax.nn.conv2d") and isinstance(v.args[1], Constant):
            a = v.attrs
            if (int(a.groups) != 1 and not grouped) or any(int(d) != 1 for d in a.dilation) \
                    or a.data_layout != "NCHW" or a.kernel_layout != "OIHW" or str(b.var.ty.dtype) != "float32":
                continue
            ch.weight, ch.attrs, ch.groups = _np(v.args[1]), a, int(a.groups)
        elif _op(v, "relax.matmul") and isinstance(v.args[1], Constant) and len(v.args[1].ty.shape) == 2 \
                and len(v.args[0].ty.shape) == 2 and str(b.var.ty.dtype) == "float32":
            w = _np(v.args[1]).T
            ch.weight, ch.linear = w.reshape(*w.shape, 1, 1), True
        else:
            continue
        ch.x, ch.start, cur = v.args[0], b.var, b
        ch.vars.append(b.var)
        cout = ch.weight.shape[0]
        ch.bias = np.zeros(cout, np.float32)
        scale = np.ones(cout, np.float32)
        stage = 0
        while (nxt := single_user(cur.var)) is not None and nxt.var not in claimed:
            val = nxt.value
            consts = [a for a in getattr(val, "args", []) if isinstance(a, Constant)]
            if stage <= 0 and _op(val, "relax.add") and len(consts) == 1 and consts[0].value.numpy().size == cout:
                ch.bias += consts[0].value.numpy().reshape(-1) * scale
                stage = 1
            elif stage <= 1 and _op(val, "relax.nn.batch_norm") and all(isinstance(a, Constant) for a in val.args[1:]):
                get = single_user(nxt.var)
                if get is None or not isinstance(get.value, relax.TupleGetItem) or get.value.index != 0:
                    break
                gamma, beta, mean, var = (_np(a) for a in val.args[1:5])
                s = gamma / np.sqrt(var + float(val.attrs.epsilon))
                ch.bias, scale = (ch.bias - mean) * s + beta, scale * s
                ch.vars.append(nxt.var)
                nxt, stage = get, 2
            elif stage <= 2 and _op(val, "relax.add") and not consts and not ch.linear \
                    and all(tuple(a.ty.shape) == tuple(cur.var.ty.shape) for a in val.args):
                ch.residual = val.args[1] if val.args[0].same_as(cur.var) else val.args[0]
                stage = 3
            elif _op(val, "relax.nn.relu") or (_op(val, "relax.clip") and _prim(val.args[1]) == 0.0):
                ch.relu = True
                ch.cap = _prim(val.args[2]) if _op(val, "relax.clip") else None
                ch.vars.append(nxt.var)
                cur = nxt
                break
            else:
                break
            ch.vars.append(nxt.var)
            cur = nxt
        ch.raw, ch.scale = ch.weight, scale
        ch.weight = ch.weight * scale.reshape(-1, 1, 1, 1)
        # grouped convs (pixel form) quantize in their pad stage and multiply integer levels in fp32,
        # exact while a sum of K products of 255 x 127 stays below 2^24 (K <= 512); a 1x1 one would read
        # its input in place, unquantized, so it stays on the float path
        k_group = int(np.prod(ch.weight.shape[1:]))
        if ch.groups == 1 or (ch.weight.shape[2] * ch.weight.shape[3] > 1 and k_group <= 512):
            _absorb_fake_quant(ch, producer, single_user, by_content)
        claimed.update(ch.vars)
        chains[cur.var] = ch
    return chains


def _pixel_form(ch: _Chain, gpu: bool, dense_br: int) -> bool:
    """Float convs, and grouped 8-bit ones, take the pixel form (pixel_kernels.py) on 16-lane CPUs."""
    return not gpu and (ch.quant is None or ch.groups > 1) and not ch.linear and dense_br >= 16


def _vnni_form(ch: _Chain, plan: LayerPlan, vnni: bool) -> bool:
    """A dense 8-bit conv (every row-block reads every column, rows in order) runs on VNNI."""
    _, cin, kh, kw = ch.weight.shape
    return (vnni and ch.quant is not None and ch.quant.qmax <= 255 and ch.qweight.bits == 8 and not ch.linear
            and ch.groups == 1 and plan.rows is None and bool((plan.cols == plan.cols[:1]).all())
            and plan.cols.shape[1] == cin * kh * kw)


def _quantized_weights(ch: _Chain) -> np.ndarray:
    """The GEMM view of an 8-bit layer's integer weight levels (exact in float32)."""
    return ch.qweight.q.numpy().reshape(ch.weight.shape[0], -1).astype(np.float32)


def _stride_pad(ch: _Chain) -> tuple[tuple[int, int], tuple[int, int, int, int]]:
    """A conv chain's strides and its padding as (top, left, bottom, right)."""
    p = [int(v) for v in ch.attrs.padding]
    return tuple(int(v) for v in ch.attrs.strides), ((p[0], p[1], p[2], p[3]) if len(p) == 4 else (p[0], p[1], p[0], p[1]))


def _plane(ch: _Chain, gpu: bool, dense_br: int):
    """The plane form's plan of a depthwise conv (plane_kernels.py), or None where it takes another form."""
    if not (PLANES and ch.groups > 1 and _pixel_form(ch, gpu, dense_br)):
        return None
    cout, cin, kh, kw = ch.weight.shape
    n, _, h, w = (int(d) for d in ch.x.ty.shape)
    stride, pad = _stride_pad(ch)
    return plane_plan(ConvShape(n, cin * ch.groups, h, w, cout, kh, kw, stride, pad, 1, kh * kw), ch.groups)


def _takes_codes(ch: _Chain, scheme: str, block_rows: int | None, gpu: bool, dense_br: int, vnni: bool) -> bool:
    """The layer runs on VNNI or in the plane form, whose kernels read and write uint8 codes. (The pixel
    form's 8-bit depthwise path did too, for a while: on MobileNet-V2 it measured 2-4% slower with codes
    than without, in two same-run A/Bs; its pad and output stages run on half-width vectors, where the
    conversions cost more than the bytes saved.)"""
    if ch.quant is None:
        return False
    if ch.groups > 1:
        return _plane(ch, gpu, dense_br) is not None
    return _vnni_form(ch, plan_layer(_quantized_weights(ch), scheme, block_rows, dense_br), vnni)


def _mark_codes(func: relax.Function, chains: dict[relax.Var, _Chain], takes_codes) -> None:
    """Where a layer's output goes only into 8-bit layers' absorbed fake-quants, all with the same
    parameters, and all these layers run on kernels that take codes (VNNI, planes), the producer's output stage
    stores the uint8 codes and the consumers read them: a quarter of the bytes between the layers, and
    the quantization done once, by the same expression (ActQuant.codes), so the results are the same
    bit for bit. An output that is also a residual or a model output stays float32."""
    users, out_vars = _users(func)
    consumers: dict[relax.Var, list[_Chain]] = {}
    for ch in chains.values():
        if ch.fq_head is not None:
            consumers.setdefault(ch.x, []).append(ch)
    able = functools.cache(takes_codes)  # at most once per layer: it plans the layer's weights
    for var, prod in chains.items():
        cons = consumers.get(var, [])
        if not cons or var in out_vars or {u.var for u in users.get(var, [])} != {c.fq_head for c in cons}:
            continue
        if any(c.quant != cons[0].quant for c in cons) or not all(map(able, [prod, *cons])):
            continue
        prod.out_quant = cons[0].quant
        for c in cons:
            c.codes_in = True


def lower(mod: tvm.IRModule, scheme: str = "none", block_rows: int | None = None,
          qweights: dict | None = None, gpu: bool = False, dense_br: int = DEFAULT_BR, vnni: bool = False
          ) -> tuple[tvm.IRModule, LoweringReport]:
    """Rewrite `main` of `mod`; returns the new module and a per-layer report (plan and MACs compiled).

    `qweights` (layer -> pruning.quant.QuantizedWeight) enables the integer kernel for layers whose
    input is fake-quantized: their weights are found by content among the dequantized constants.
    `gpu=True` gives the kernels a GPU schedule (thread binding) instead of the CPU one. `dense_br`: output
    channels per row-block of unpruned layers (the vector width: 16 fp32 lanes on AVX-512). `vnni`: the CPU
    has AVX512-VNNI, and dense 8-bit layers run on `vpdpbusd` (vnni_kernels.py)."""
    mod = relax.transform.FoldConstant()(mod)
    by_content = {}
    for qw in (qweights or {}).values():
        if qw.bits <= 8:  # 16-bit weights stay on the float path
            deq = qw.dequantize().numpy().astype(np.float32)
            by_content[deq.reshape(deq.shape[0], -1).tobytes()] = qw
    report = LoweringReport()
    # grouped/depthwise convs only where the pixel form runs them (a row-block of one channel elsewhere
    # would be a scalar loop): TVM's own operators keep them on GPUs and narrower CPUs
    chains = _find_chains(mod["main"], by_content, grouped=not gpu and dense_br >= 16)
    if CODES:
        _mark_codes(mod["main"], chains, lambda ch: _takes_codes(ch, scheme, block_rows, gpu, dense_br, vnni))
    skip = {v for ch in chains.values() for v in ch.vars} - set(chains)

    @relax.expr_functor.mutator
    class Rewriter(relax.PyExprMutator):
        def visit_var_binding_(self, binding):
            if binding.var in skip:
                return
            ch = chains.get(binding.var)
            if ch is None:
                return super().visit_var_binding_(binding)
            new = self.builder_.emit(_emit(self, ch, scheme, block_rows, report, gpu, dense_br, vnni))
            self.set_var_remap(binding.var, new)

    rw = Rewriter(mod)
    main = rw.visit_expr(mod["main"])
    mod = rw.builder_.get()  # holds the kernels the rewrite added
    mod["main"] = main
    return relax.transform.DeadCodeElimination()(mod), report


def _emit(mut, ch: _Chain, scheme: str, block_rows: int | None, report: LoweringReport,
          gpu: bool = False, dense_br: int = DEFAULT_BR, vnni: bool = False) -> relax.Expr:
    cout, cin, kh, kw = ch.weight.shape
    x = mut.visit_expr(ch.x)
    if ch.linear:
        n = int(x.ty.shape[0])
        x = mut.builder_.emit(relax.op.reshape(x, (n, cin, 1, 1)))
        stride, pad, h, w = (1, 1), (0, 0, 0, 0), 1, 1
    else:
        n, _, h, w = (int(d) for d in x.ty.shape)
        stride, pad = _stride_pad(ch)
    if ch.quant is not None:  # plan on the integer levels (exact in float32), requantize in the epilogue
        gemm_w = _quantized_weights(ch)
        outscale = (ch.quant.scale * ch.qweight.scale.numpy() * ch.scale).astype(np.float32)
    else:
        gemm_w, outscale = ch.weight.reshape(cout, -1).astype(np.float32), None
    plane = _plane(ch, gpu, dense_br)
    if plane is not None:
        return _emit_plane(mut, ch, x, plane, gemm_w, outscale, report)
    # float convs on 16-lane CPUs vectorize over pixels (pixel_kernels.py): full registers for 8-row blocks
    layout = None
    if _pixel_form(ch, gpu, dense_br):
        # shifted copies on small maps only for narrow row-blocks: 16-row dense blocks already fill the
        # channel form's vectors there
        layout = pixel_layout(ConvShape(n, cin * ch.groups, h, w, cout, kh, kw, stride, pad, 1, 1), dense_br,
                              always=ch.groups > 1,
                              shifted=scheme == "block" and (block_rows or dense_br) < dense_br)
    by_pixels = layout is not None
    if ch.groups > 1:
        plan = plan_grouped(gemm_w, ch.groups)
        cin *= ch.groups
    else:
        plan = plan_layer(gemm_w, scheme, block_rows, PIXEL_ROWS if by_pixels else dense_br)
    nb, kmax = plan.cols.shape
    shared = bool((plan.cols == plan.cols[:1]).all())
    shape = ConvShape(n, cin, h, w, nb * plan.br, kh, kw, stride, pad, plan.br, kmax, shared)
    scattered = plan.rows is not None
    cols = plan.cols[:1] if shared else plan.cols
    if _vnni_form(ch, plan, vnni):
        return _emit_vnni(mut, ch, x, ConvShape(n, cin, h, w, cout, kh, kw, stride, pad, 16, kmax, True),
                          gemm_w, outscale, report)
    assert not (ch.codes_in or ch.out_quant), "only the VNNI and plane kernels read and write uint8 codes"
    if by_pixels:
        layout = fit_vecs(replace(layout, s=shape), max(3, min(6, 24 // plan.br)), quant=ch.quant is not None)
        func = conv_compute_pixels(layout, bias=True, residual=ch.residual is not None, relu=ch.relu,
                                   full_cout=cout if scattered else None, cap=ch.cap, quant=ch.quant)
        func = schedule_conv_pixels(func, layout, scattered)
        table = layout.offsets(cols)
    else:
        func = conv_compute(shape, bias=True, residual=ch.residual is not None, relu=ch.relu,
                            full_cout=cout if scattered else None, quant=ch.quant, cap=ch.cap)
        # with 32 wide registers (AVX-512), 8-channel row-blocks take 32 pixels per tile; NEON's 32 x 128-bit keep 16
        pixels = 32 if dense_br >= 16 and plan.br <= 8 else 16
        func = schedule_conv_gpu(func, scattered) if gpu else schedule_conv(func, shape, scattered, pixels)
        table = np.stack([cols // (kh * kw), (cols // kw) % kh, cols % kw], -1).astype(np.int32)
    # opaque (never re-fused); no global symbol of its own: the module names it when adding it
    func = func.with_attr("op_pattern", 8).without_attr("global_symbol")
    gv = mut.builder_.add_func(func, "jb_conv")
    int_weights = ch.quant is not None and not by_pixels  # the pixel form takes integer levels as fp32
    wmat = plan.weight.transpose(0, 2, 1).astype(np.int8 if int_weights else np.float32)
    storage_bits = 32
    if int_weights and ch.qweight.bits <= 4:
        # low-bit weights live packed in the artifact; a tiny kernel unpacks them to int8 for the GEMM
        storage_bits = ch.qweight.bits if (ch.qweight.bits > 1 or (wmat != 0).all()) else 2
        x_shape = tuple(int(d) for d in x.ty.shape)
        unpack_fn = unpack_compute(wmat.size, storage_bits, x_shape, gpu=gpu)
        if gpu:  # fused with the reshape after it, FuseTIR maps two buffer types to one var on GPU builds
            unpack_fn = unpack_fn.with_attr("op_pattern", 8)
        unpack = mut.builder_.add_func(unpack_fn.without_attr("global_symbol"), "jb_unpack")
        flat = mut.builder_.emit(relax.call_tir(unpack, [_const(pack_bits(wmat, storage_bits)), x],
                                                relax.TensorType((wmat.size,), "int8")))
        wexpr = mut.builder_.emit(relax.op.reshape(flat, wmat.shape))
    else:
        storage_bits = 8 if int_weights else 32
        wexpr = _const(wmat)
    args = [x, wexpr, _const(table)]
    if outscale is not None:
        args.append(_const(outscale))
    args.append(_const(ch.bias.astype(np.float32)))
    if ch.residual is not None:
        args.append(mut.visit_expr(ch.residual))
    if scattered:
        rowmap = np.full(cout, -1, np.int32)
        rowmap[plan.rows] = np.arange(len(plan.rows), dtype=np.int32)
        args.append(_const(rowmap))
    ho, wo = shape.out_hw
    out = relax.call_tir(gv, args, relax.TensorType((n, cout, ho, wo), _out_dtype(ch)))
    report.layers.append({"kernel": gv.name_hint, "op": "linear" if ch.linear else "conv", "out_channels": cout,
                          "vectorized": ("pixels-shifted" if layout.shifted else "pixels-rows" if layout.row_tiles else "pixels") if by_pixels else "channels",
                          "rows_computed": shape.cout, "br": plan.br, "columns": int(kmax), "gemm_k": cin * kh * kw,
                          "macs": shape.macs, "dtype": "int8" if ch.quant else "float32",
                          **({"arithmetic": "fp32, exact on int8 levels"} if ch.quant and by_pixels else {}),
                          "weight_storage_bits": storage_bits, "fused": _fused(ch), **_io(ch)})
    if ch.linear:
        out = relax.op.reshape(mut.builder_.emit(out), (n, cout))
    return out


def _out_dtype(ch: _Chain) -> str:
    return "uint8" if ch.out_quant is not None else "float32"


def _io(ch: _Chain) -> dict:
    """The layer report's activation types, where a layer reads or writes uint8 codes."""
    return {"input": "uint8" if ch.codes_in else "float32", "output": _out_dtype(ch)} if ch.quant else {}


def _fused(ch: _Chain) -> list[str]:
    """The steps a lowered layer's output stage applies, for the layer report."""
    return [s for s, on in (("bias", True), ("residual", ch.residual is not None),
                            ("relu6" if ch.cap == 6 else "relu", ch.relu)) if on]


def _emit_plane(mut, ch: _Chain, x, plan, w2: np.ndarray, outscale: np.ndarray | None,
                report: LoweringReport) -> relax.Expr:
    """A depthwise conv on whole planes in registers (plane_kernels.py)."""
    func = depthwise_plane(plan, ch.quant, ch.residual is not None, ch.relu, ch.cap, ch.codes_in, ch.out_quant)
    func = func.with_attr("tir.is_scheduled", True).with_attr("op_pattern", 8).without_attr("global_symbol")
    gv = mut.builder_.add_func(func, "jb_plane")
    s = plan.s
    args = [x, _const(w2.reshape(s.c, -1).astype(np.float32))]
    if outscale is not None:
        args.append(_const(outscale))
    args.append(_const(ch.bias.astype(np.float32)))
    if ch.residual is not None:
        args.append(mut.visit_expr(ch.residual))
    ho, wo = s.out_hw
    report.layers.append({"kernel": gv.name_hint, "op": "conv", "out_channels": s.cout, "vectorized": "planes",
                          "rows_computed": s.cout, "br": 1, "columns": s.kh * s.kw, "gemm_k": s.c * s.kh * s.kw,
                          "macs": s.n * s.c * ho * wo * s.kh * s.kw, "dtype": "int8" if ch.quant else "float32",
                          **({"arithmetic": "fp32, exact on int8 levels"} if ch.quant else {}),
                          "weight_storage_bits": 32, "fused": _fused(ch), **_io(ch)})
    return relax.call_tir(gv, args, relax.TensorType((s.n, s.cout, ho, wo), _out_dtype(ch)))


def _emit_vnni(mut, ch: _Chain, x, shape: ConvShape, w2: np.ndarray, outscale: np.ndarray,
               report: LoweringReport) -> relax.Expr:
    """A dense 8-bit conv on AVX512-VNNI: its own kernel, weights in vpdpbusd's layout."""
    levels = w2.astype(np.int32)
    plan = plan_pixels(shape)  # pixel lanes (whole-vector output stage) unless most pixels would be dropped
    if plan is not None:
        func = vnni_conv_pixels(plan, ch.quant, ch.residual is not None, ch.relu, ch.cap, ch.codes_in, ch.out_quant)
        wts, table, rows = plan.weights(levels), plan.offsets(), plan.rows
    else:
        plan = VNNIPlan(shape, *CHANNEL_LANE_TILE)
        func = vnni_conv(plan, ch.quant, ch.residual is not None, ch.relu, ch.cap, ch.codes_in, ch.out_quant)
        wts, table, rows = plan.weights(levels).reshape(plan.row_blocks, -1, 64), plan.table(), 16
    func = func.with_attr("tir.is_scheduled", True).with_attr("op_pattern", 8).without_attr("global_symbol")
    gv = mut.builder_.add_func(func, "jb_vnni")
    args = [x, _const(wts), _const(table),
            _const(VNNIPlan.correction(levels, ch.quant.zero_point)), _const(outscale), _const(ch.bias.astype(np.float32)),
            mut.visit_expr(ch.residual) if ch.residual is not None else _const(np.zeros(1, np.float32))]
    ho, wo = shape.out_hw
    report.layers.append({"kernel": gv.name_hint, "op": "conv", "out_channels": shape.cout, "vectorized": "vnni",
                          "rows_computed": plan.row_blocks * rows, "br": rows, "columns": plan.groups * 4 * shape.kh * shape.kw,
                          "gemm_k": shape.c * shape.kh * shape.kw, "macs": shape.macs, "dtype": "int8",
                          "weight_storage_bits": 8, "fused": _fused(ch), **_io(ch)})
    return relax.call_tir(gv, args, relax.TensorType((shape.n, shape.cout, ho, wo), _out_dtype(ch)))


def executed_precision(variant, lowered: dict) -> str:
    """The arithmetic a TVM artifact executes: int8 where the shared kernel runs quantized layers
    (low-bit weights are unpacked to int8), else the float type of the graph (a quantized variant
    compiled through TVM's own operators runs dequantized)."""
    if any(la.get("dtype") == "int8" for la in lowered.get("lowered_layers") or []):
        return "int8"
    return "fp16" if "fp16" in str(lowered.get("lowering")) else "fp32"


def lower_variant(mod: tvm.IRModule, variant, mode: str = "joulebench", gpu: bool = False,
                  dense_br: int = DEFAULT_BR, vnni: bool = False) -> tuple[tvm.IRModule, dict]:
    """Lower a variant's module as its compression scheme calls for; returns it with the manifest
    fields every TVM artifact records (the MACs actually compiled, counted in the lowered IR)."""
    if mode == "tvm":
        return mod, {"lowering": "tvm", "macs_effective": ir_macs(mod)}
    mf = variant.manifest
    block_rows = int(mf["block"].split("x")[0]) if mf.get("block") else None
    mod, report = lower(mod, mf.get("scheme", "none"), block_rows, getattr(variant, "qweights", None), gpu, dense_br,
                        vnni)
    return mod, {"lowering": "joulebench", "lowered_layers": report.layers, "macs_effective": ir_macs(mod)}
