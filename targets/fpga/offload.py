"""Offload a quantized variant's conv / linear layers to the accelerator: a Relax rewrite that replaces each
matching layer chain with `R.call_dps_packed("jb_fpga.<tag>.<i>", [levels])` and packs its weights into
the accelerator's program at compile time; everything else stays a Relax graph for the ARM cores.

A layer chain is what targets/tvm/lowering finds: fake-quantized input -> conv2d / matmul with constant
weights -> [bias] -> [batch-norm] -> [residual add] -> [ReLU]. It is offloaded when its integer weights
have the design point's precision and its activations the design's bit width. The accelerator computes
acc = sum_j W * (x - zx) + bias (int32), then requantizes onto an output grid (scale, zero point):
  - the input quantizer of the next quantized layer that reads the output, where there is one (then the
    next layer's own fake-quant step is exact and its quantize step is skipped: levels stay integers
    between offloaded layers, as they would in the board's DDR);
  - otherwise a grid calibrated at compile time on the verification input distribution (the layer's
    output range over the example input and seeded N(0, 1) inputs, like pruning's calibration without
    data). A residual add and its ReLU run on the ARM cores after the accelerator (the RTL fuses bias,
    requantization and ReLU, not a second input).
Host/ARM side: quantize (x / s + zp, clip) before an offloaded layer unless its producer was offloaded
with the same grid, dequantize ((q - zp) * s) after it for any float consumer.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import tvm
from tvm import relax

from targets.fpga import FpgaError
from targets.fpga.design import WEIGHT_MODES, DesignPoint
from targets.fpga.layer import QLayer, kept_table
from targets.fpga.reference import quantize_multipliers
from targets.tvm.lowering import _Chain, _find_chains

BITS_TO_MODE = {bits: mode for mode, (_, bits, _) in WEIGHT_MODES.items()}


@dataclass(frozen=True)
class Grid:
    """An activation grid: real = scale * (q - zero_point), q in [0, 2^bits - 1] (pruning.quant.ActQuant)."""

    scale: float
    zero_point: int
    bits: int

    @property
    def signed_zero(self) -> int:
        return self.zero_point - (1 << (self.bits - 1))

    @classmethod
    def from_range(cls, lo: float, hi: float, bits: int) -> Grid:
        lo, hi = min(lo, 0.0), max(hi, 0.0)  # zero exactly representable (padding, ReLU)
        scale = max((hi - lo) / (2**bits - 1), 1e-8)
        return cls(float(scale), int(round(-lo / scale)), bits)


@dataclass
class OffloadedLayer:
    index: int
    name: str  # the torch layer's name where found, else the chain's position
    layer: QLayer
    in_grid: Grid
    out_grid: Grid
    out_grid_source: str  # "consumer" or "calibrated"
    batch: int
    linear: bool
    arm_residual: bool  # the residual add (and ReLU) run on the ARM after the accelerator

    def summary(self) -> dict:
        ly = self.layer
        return {"index": self.index, "name": self.name, "op": "linear" if self.linear else "conv",
                "cin": ly.c, "cout": ly.cout, "hw": [ly.h, ly.w], "kernel": [ly.kh, ly.kw], "stride": list(ly.stride),
                "kmax": ly.kmax, "gemm_k": ly.gemm_k, "macs": ly.macs * self.batch,
                "macs_dense": ly.macs_dense * self.batch, "relu": ly.relu, "arm_residual": self.arm_residual,
                "in_grid": asdict(self.in_grid), "out_grid": asdict(self.out_grid),
                "out_grid_source": self.out_grid_source}


@dataclass
class OffloadReport:
    layers: list[OffloadedLayer] = field(default_factory=list)
    kept: list[dict] = field(default_factory=list)  # conv/linear chains left to the ARM, and why


def _weight_key(raw: np.ndarray) -> bytes:
    return np.ascontiguousarray(raw.reshape(raw.shape[0], -1), dtype=np.float32).tobytes()


def _torch_layers(variant) -> dict[bytes, tuple[str, object]]:
    """Weight content -> (name, module) for the variant's conv / linear layers."""
    from pruning.schemes.layers import weighted_layers

    return {_weight_key(m.weight.detach().numpy()): (n, m) for n, m in weighted_layers(variant.module)}


def calibrate_outputs(variant, modules: list[object], samples: int = 4) -> dict[int, tuple[float, float]]:
    """(min, max) of each module's output after its batch-norm, when one directly follows (found by tensor
    identity: the BN's input is the conv's output), over the example input and seeded N(0,1) inputs."""
    import torch

    want = {id(m): m for m in modules}
    # id(conv output tensor) -> (id(conv), the tensor): holding the tensor keeps its id from being reused by a
    # later tensor (ids are addresses), which would attribute an unrelated BN's range to this conv
    out_of: dict[int, tuple[int, object]] = {}
    ranges: dict[int, list[float]] = {}

    def note(key: int, t) -> None:
        lo, hi = float(t.min()), float(t.max())
        r = ranges.setdefault(key, [lo, hi])
        r[0], r[1] = min(r[0], lo), max(r[1], hi)

    def conv_hook(m, _args, out):
        out_of[id(out)] = (id(m), out)
        note(id(m), out)

    def bn_hook(_m, args, out):
        entry = out_of.get(id(args[0]))
        if entry is not None and entry[1] is args[0]:  # the BN value replaces the raw conv output range
            src = entry[0]
            ranges.setdefault(("bn", src), [float("inf"), float("-inf")])
            r = ranges[("bn", src)]
            r[0], r[1] = min(r[0], float(out.min())), max(r[1], float(out.max()))

    handles = [m.register_forward_hook(conv_hook) for m in want.values()]
    handles += [m.register_forward_hook(bn_hook) for m in variant.module.modules()
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    gen = torch.Generator().manual_seed(0)
    try:
        with torch.inference_mode():
            variant.module(torch.from_numpy(variant.example_input()))
            for _ in range(samples - 1):
                variant.module(torch.randn(variant.input_shape, generator=gen))
    finally:
        for h in handles:
            h.remove()
    return {k: tuple(ranges.get(("bn", k), ranges[k])) for k in want if k in ranges}


def _consumers(func: relax.Function) -> dict[relax.Var, list]:
    users: dict = {}
    for blk in func.body.blocks:
        for b in blk.bindings:
            for v in relax.analysis.free_vars(b.value) if not isinstance(b.value, relax.Var) else [b.value]:
                users.setdefault(v, []).append(b)
    return users


def _integer_weights(variant) -> dict[bytes, object]:
    """Dequantized weight content -> pruning.quant.QuantizedWeight, for every quantized layer (16 bit too)."""
    out = {}
    for qw in (variant.qweights or {}).values():
        deq = qw.dequantize().numpy().astype(np.float32)
        out[deq.reshape(deq.shape[0], -1).tobytes()] = qw
    return out


def plan(mod: tvm.IRModule, variant, design: DesignPoint) -> tuple[dict, OffloadReport]:
    """Chains to offload (chain output var -> (chain, OffloadedLayer)) and the report, which also lists the
    conv / linear chains kept on the ARM and why."""
    chains = _find_chains(mod["main"], _integer_weights(variant))
    torch_layers = _torch_layers(variant)
    report = OffloadReport()
    chosen: dict = {}
    for i, (var, ch) in enumerate(chains.items()):
        name = torch_layers.get(_weight_key(ch.raw), (f"layer{i}", None))[0]
        why = _refusal(ch, design)
        if why:
            report.kept.append({"name": name, "why": why})
        else:
            chosen[var] = (ch, name)
    # a quantized chain's input grid, keyed by the var it quantizes (its input before the fake-quant step)
    consumer_grid = {}
    for ch in chains.values():
        if ch.quant is not None:
            consumer_grid.setdefault(ch.x, Grid(ch.quant.scale, ch.quant.zero_point, design.act_bits))
    need_cal = [ch for var, (ch, _) in chosen.items() if ch.residual is not None or var not in consumer_grid]
    modules = [torch_layers[k][1] for ch in need_cal if (k := _weight_key(ch.raw)) in torch_layers]
    ranges = calibrate_outputs(variant, modules) if modules else {}
    plans = {}
    for var, (ch, name) in chosen.items():
        if ch.residual is None and var in consumer_grid:
            out, source = consumer_grid[var], "consumer"
        else:
            m = torch_layers.get(_weight_key(ch.raw), (None, None))[1]
            if m is None or id(m) not in ranges:
                report.kept.append({"name": name, "why": "no calibration range for its output"})
                continue
            lo, hi = ranges[id(m)]
            if ch.relu and ch.residual is None:
                lo, hi = max(lo, 0.0), max(hi, 0.0)
            out, source = Grid.from_range(lo, hi, design.act_bits), "calibrated"
        gin = Grid(ch.quant.scale, ch.quant.zero_point, design.act_bits)
        off = _layer(ch, name, len(report.layers), gin, out, source, design, variant.input_shape[0])
        plans[var] = (ch, off)
        report.layers.append(off)
    return plans, report


def _refusal(ch: _Chain, design: DesignPoint) -> str | None:
    if ch.quant is None or ch.qweight is None:
        return "float layer (no integer weights or activation quantizer)"
    mode = BITS_TO_MODE.get(ch.qweight.bits)
    if mode != design.weight_mode:
        return f"{ch.qweight.bits}-bit weights ({mode}); the design point computes {design.weight_mode}"
    if ch.quant.qmax != 2**design.act_bits - 1:
        return f"{int(np.log2(ch.quant.qmax + 1))}-bit activations; the design point takes {design.act_bits}-bit"
    if mode == "binary" and _zero_in_table(ch.qweight.q.numpy().reshape(ch.weight.shape[0], -1), design.tm):
        return ("binary weights with zero levels inside a row-block's kept columns: the binary datapath has "
                "no zero (prune whole columns of TM-row blocks, balanced)")
    return None


def _zero_in_table(levels: np.ndarray, tm: int) -> bool:
    """Would the accelerator's table of this [cout, k] weight hold a zero level in a real output channel?
    A column pruned in all tm rows of a row-block is not in the table; a kept column with a zero, or a
    shorter row-block padded to kmax, puts one there (QLayer.validate refuses it for binary)."""
    _, wts = kept_table(levels, tm)
    rows = wts.transpose(0, 2, 1).reshape(-1, wts.shape[1])[: levels.shape[0]]
    return bool(np.any(rows == 0))


def _layer(ch: _Chain, name: str, idx: int, gin: Grid, gout: Grid, source: str, design: DesignPoint,
           batch: int) -> OffloadedLayer:
    cout, cin, kh, kw = ch.weight.shape
    levels = ch.qweight.q.numpy().astype(np.int64).reshape(cout, cin, kh, kw)
    # real = eff * sum(w * (q - zp)) + bias, per output channel (BN folded); a negative eff flips the channel
    eff = (gin.scale * ch.qweight.scale.numpy().astype(np.float64) * ch.scale.astype(np.float64))
    sign = np.where(eff < 0, -1, 1)
    levels = levels * sign[:, None, None, None]
    eff = np.abs(eff)
    eff = np.where(eff > 0, eff, 1e-30)
    bias = np.rint(ch.bias.astype(np.float64) / eff)
    if np.any(np.abs(bias) >= 2**31):
        raise FpgaError(f"layer {name}: bias does not fit int32 in accumulator units")
    mult, shift = quantize_multipliers(eff / gout.scale)
    if ch.linear:
        stride, pad, chw = (1, 1), (0, 0, 0, 0), (cin, 1, 1)
    else:
        stride = tuple(int(s) for s in ch.attrs.strides)
        p = [int(v) for v in ch.attrs.padding]
        pad = (p[0], p[1], p[2], p[3]) if len(p) == 4 else (p[0], p[1], p[0], p[1])
        shape = [int(d) for d in ch.x.ty.shape]
        chw = (cin, shape[2], shape[3])
    relu = ch.relu and ch.residual is None
    layer = QLayer.from_levels(levels, tm=design.tm, input_chw=chw, stride=stride, pad=pad,
                               bias=bias.astype(np.int64), mult=mult, shift=shift, zx=gin.signed_zero,
                               zout=gout.signed_zero, relu=relu, weight_mode=design.weight_mode,
                               act_bits=design.act_bits, name=name)
    layer.validate(design)
    return OffloadedLayer(idx, name, layer, gin, gout, source, batch, ch.linear, ch.residual is not None)


def _quantize(bb, x: relax.Expr, g: Grid, dtype: str) -> relax.Expr:
    q = relax.op.add(relax.op.round(relax.op.divide(x, relax.const(g.scale, "float32"))),
                     relax.const(float(g.zero_point), "float32"))
    q = relax.op.clip(bb.emit(q), 0, 2**g.bits - 1)
    return bb.emit(relax.op.astype(relax.op.subtract(bb.emit(q), relax.const(float(1 << (g.bits - 1)), "float32")),
                                   dtype))


def _dequantize(bb, q: relax.Expr, g: Grid) -> relax.Expr:
    f = relax.op.subtract(relax.op.astype(q, "float32"), relax.const(float(g.signed_zero), "float32"))
    return bb.emit(relax.op.multiply(bb.emit(f), relax.const(g.scale, "float32")))


def rewrite(mod: tvm.IRModule, variant, design: DesignPoint, tag: str) -> tuple[tvm.IRModule, OffloadReport]:
    """The module with offloaded chains replaced by `jb_fpga.<tag>.<i>` calls (int levels in, int levels out)."""
    mod = relax.transform.FoldConstant()(mod)
    plans, report = plan(mod, variant, design)
    skip = {v for ch, _ in plans.values() for v in ch.vars} - set(plans)
    dtype = "int8" if design.act_bits == 8 else "int16"
    levels_of: dict = {}  # rewritten (dequantized) output var -> (its integer levels var, grid)

    @relax.expr_functor.mutator
    class Rewriter(relax.PyExprMutator):
        def visit_var_binding_(self, binding):
            if binding.var in skip:
                return
            if binding.var not in plans:
                return super().visit_var_binding_(binding)
            ch, off = plans[binding.var]
            bb, ly, n = self.builder_, off.layer, off.batch
            x = self.visit_expr(ch.x)
            prior = levels_of.get(x)
            # integer levels stay integers between offloaded layers that share a grid
            q = prior[0] if prior is not None and prior[1] == off.in_grid else _quantize(bb, x, off.in_grid, dtype)
            if off.linear:
                q = bb.emit(relax.op.reshape(q, (n, ly.c, 1, 1)))
            ho, wo = ly.out_hw
            out_q = bb.emit(relax.call_dps_packed(f"jb_fpga.{tag}.{off.index}", [q],
                                                  relax.TensorType((n, ly.cout, ho, wo), dtype)))
            y = _dequantize(bb, out_q, off.out_grid)
            if off.arm_residual:
                y = bb.emit(relax.op.add(y, self.visit_expr(ch.residual)))
                if ch.relu:
                    y = bb.emit(relax.op.nn.relu(y))
            if off.linear:
                y = bb.emit(relax.op.reshape(y, (n, ly.cout)))
            elif not off.arm_residual:
                levels_of[y] = (out_q, off.out_grid)
            self.set_var_remap(binding.var, y)

    rw = Rewriter(mod)
    main = rw.visit_expr(mod["main"])
    out = rw.builder_.get()
    out["main"] = main
    return relax.transform.DeadCodeElimination()(out), report
