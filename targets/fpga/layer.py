"""One integer layer for the accelerator (QLayer), its tiling, its DDR program image (pack) and the
closed-form cycle count of the accelerator's schedule (expected_cycles).

DDR layouts (little-endian, every block 8-byte aligned):
  activations   [ceil(C/CG)][H][W][CG] of int8/int16, CG = 64/act_bits channels per 64-bit beat
                (channel slots past C are don't-care); outputs use the same layout, so layers chain.
  program       [tile descriptors, 12 beats each][weight set 0][weight set 1]...
  weight set    [epilogue constants: one beat per channel: bias int32 | mult u17 << 32 | shift << 56]
                [index table: (c | ki << 16 | kj << 24) as u32, two per beat; one table for all
                 row-blocks of a dense layer, one per row-block otherwise]
                [weights: levels of W[b, j, r] in (b, j, r) order as a flat little-endian bitstream of
                 wbits each (two's complement; binary stores +1 as 1 and -1 as 0)]
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from targets.fpga import FpgaError
from targets.fpga.design import DESC_BEATS, EPI_DEPTH, PIPE_DEPTH, WEIGHT_MODES, DesignPoint
from targets.fpga.reference import MULT_BITS

MAGIC = 0x4A42
DEFAULT_LATENCY = 24  # DDR read latency of the simulation model, cycles from request to first beat
MAX_BURST = 256


def _pair(v, name: str) -> tuple[int, int]:
    t = (v, v) if isinstance(v, int | np.integer) else tuple(int(a) for a in v)
    if len(t) != 2:
        raise FpgaError(f"layer: {name} must be an int or a pair, got {v!r}")
    return int(t[0]), int(t[1])


def _pad4(p) -> tuple[int, int, int, int]:
    if isinstance(p, int | np.integer):
        return (int(p),) * 4
    t = tuple(int(a) for a in p)
    if len(t) == 2:
        return t[0], t[1], t[0], t[1]
    if len(t) == 4:
        return t  # type: ignore[return-value]
    raise FpgaError(f"layer: pad must be an int, (h, w) or (top, left, bottom, right), got {p!r}")


def _json_array(obj) -> np.ndarray:
    """JSON metadata as a uint8 array, so it travels inside an .npz without pickling."""
    return np.frombuffer(json.dumps(obj).encode(), dtype=np.uint8)


def _from_json_array(a: np.ndarray):
    return json.loads(a.tobytes().decode())


def kept_table(levels: np.ndarray, tm: int, name: str = "") -> tuple[np.ndarray, np.ndarray]:
    """[cout, k] integer levels -> (cols [nb or 1, kmax], weights [nb, kmax, tm]): the kept GEMM columns of
    each row-block of tm output channels and their levels, as the accelerator's table holds them (rows past
    cout are zero). Zero columns of a row-block are dropped when that makes it sparser than dense
    (targets.tvm.lowering.plan_layer with br = tm); otherwise one shared dense table."""
    cout, k = levels.shape
    nb = math.ceil(cout / tm)
    w2 = np.zeros((nb * tm, k), dtype=np.int64)
    w2[:cout] = levels
    blocks = w2.reshape(nb, tm, k)
    kept = np.any(blocks != 0, axis=1)  # [nb, k]
    if kept.all() or not kept.any():
        return np.arange(k)[None, :], blocks.transpose(0, 2, 1)
    from targets.tvm.lowering import plan_layer  # the TVM kernels' own table builder

    plan = plan_layer(w2.astype(np.float32), "block", tm)
    if plan.br != tm or plan.rows is not None:
        raise FpgaError(f"layer {name or '?'}: unexpected row-block plan (br={plan.br})")
    cols = plan.cols
    return (cols[:1] if (cols == cols[:1]).all() else cols), np.rint(plan.weight).astype(np.int64).transpose(0, 2, 1)


@dataclass
class QLayer:
    """An integer conv (or linear: 1x1 on a 1x1 map) as the accelerator runs it.

    table[b, j] = (c, ki, kj) is the j-th kept GEMM column of row-block b (tm output channels), exactly
    the per-row-block table of targets/tvm/kernels.py; a table of shape [1, kmax, 3] is shared by all
    row-blocks (dense layers). weights[b, j, r] is the level of output channel b*tm + r in that column."""

    c: int
    h: int
    w: int
    kh: int
    kw: int
    stride: tuple[int, int]
    pad: tuple[int, int, int, int]  # top, left, bottom, right
    cout: int
    table: np.ndarray  # [nb or 1, kmax, 3] int32
    weights: np.ndarray  # [nb, kmax, tm] integer levels
    bias: np.ndarray  # [cout] int32 range
    mult: np.ndarray  # [cout] requantization multiplier (see reference.requantize)
    shift: np.ndarray  # [cout]
    zx: int  # input zero point (signed)
    zout: int  # output zero point (signed)
    relu: bool
    weight_mode: str
    act_bits: int = 8
    name: str = ""

    ARRAYS = ("table", "weights", "bias", "mult", "shift")

    def save(self, path: str | Path) -> None:
        """The layer as .npz: what the integer reference needs to check the accelerator's output."""
        meta = {k: v for k, v in asdict(self).items() if k not in self.ARRAYS}
        np.savez(path, **{k: np.asarray(getattr(self, k)) for k in self.ARRAYS},
                 meta=_json_array(meta))

    @classmethod
    def load(cls, path: str | Path) -> QLayer:
        with np.load(path) as z:
            meta = _from_json_array(z["meta"])
            meta["stride"], meta["pad"] = tuple(meta["stride"]), tuple(meta["pad"])
            return cls(**meta, **{k: z[k].copy() for k in cls.ARRAYS})

    # ------------------------------------------------------------------ geometry
    @property
    def tm(self) -> int:
        return int(self.weights.shape[2])

    @property
    def nb(self) -> int:
        return int(self.weights.shape[0])

    @property
    def kmax(self) -> int:
        return int(self.weights.shape[1])

    @property
    def shared(self) -> bool:
        return self.table.shape[0] == 1

    @property
    def hp(self) -> int:
        return self.h + self.pad[0] + self.pad[2]

    @property
    def wp(self) -> int:
        return self.w + self.pad[1] + self.pad[3]

    @property
    def out_hw(self) -> tuple[int, int]:
        return (self.hp - self.kh) // self.stride[0] + 1, (self.wp - self.kw) // self.stride[1] + 1

    @property
    def gemm_k(self) -> int:
        return self.c * self.kh * self.kw

    @property
    def macs(self) -> int:
        """Lane-operations the array performs: every kept column of every row-block, all pixels."""
        ho, wo = self.out_hw
        return self.nb * self.tm * self.kmax * ho * wo

    @property
    def macs_dense(self) -> int:
        ho, wo = self.out_hw
        return self.cout * self.gemm_k * ho * wo

    def validate(self, design: DesignPoint | None = None) -> None:
        def bad(msg: str) -> FpgaError:
            return FpgaError(f"layer {self.name or '?'}: {msg}")

        if self.weight_mode not in WEIGHT_MODES:
            raise bad(f"unsupported weight mode '{self.weight_mode}' (expected one of {', '.join(WEIGHT_MODES)})")
        if self.act_bits not in (8, 16):
            raise bad(f"activation bits must be 8 or 16, got {self.act_bits}")
        if min(self.c, self.h, self.w, self.kh, self.kw, self.cout) < 1:
            raise bad("channels, map size, kernel and cout must be positive")
        if self.c >= 1 << 16 or self.kh > 255 or self.kw > 255 or self.cout >= 1 << 16:
            raise bad("channels must be < 65536 and kernels at most 255")
        if not all(1 <= s <= 255 for s in self.stride) or min(self.pad) < 0:
            raise bad(f"stride must be 1..255 and padding non-negative, got stride {self.stride} pad {self.pad}")
        if self.hp < self.kh or self.wp < self.kw:
            raise bad(f"kernel {self.kh}x{self.kw} larger than the padded input {self.hp}x{self.wp}")
        if self.weights.ndim != 3 or self.table.ndim != 3 or self.table.shape[2] != 3:
            raise bad("weights must be [nb, kmax, tm] and the table [nb or 1, kmax, 3]")
        if self.table.shape[1] != self.kmax or self.table.shape[0] not in (1, self.nb):
            raise bad(f"table {self.table.shape} does not match weights {self.weights.shape}")
        if self.nb != math.ceil(self.cout / self.tm):
            raise bad(f"{self.nb} row-blocks of {self.tm} do not cover cout={self.cout}")
        t = self.table
        if t.min() < 0 or t[..., 0].max() >= self.c or t[..., 1].max() >= self.kh or t[..., 2].max() >= self.kw:
            raise bad("index table entry out of range")
        lo, hi = WEIGHT_MODES[self.weight_mode][2]
        if self.weights.min() < lo or self.weights.max() > hi:
            raise bad(f"weight levels outside {self.weight_mode} range [{lo}, {hi}]")
        if self.weight_mode == "binary" and np.any(self.weights == 0):
            raise bad("binary weights must be -1/+1 but the layer has zero levels (pruned or padded columns): "
                      "use ternary")
        for name in ("bias", "mult", "shift"):
            if np.shape(getattr(self, name)) != (self.cout,):
                raise bad(f"{name} must have shape [cout]={self.cout}")
        if self.bias.min() < -(1 << 31) or self.bias.max() >= 1 << 31:
            raise bad("bias outside int32")
        if self.mult.min() < 0 or self.mult.max() >= 1 << MULT_BITS or self.shift.min() < 1 or self.shift.max() > 63:
            raise bad(f"requantization multiplier must be 0..2^{MULT_BITS}-1 and shift 1..63")
        a_lo, a_hi = -(1 << (self.act_bits - 1)), (1 << (self.act_bits - 1)) - 1
        if not (a_lo <= self.zx <= a_hi and a_lo <= self.zout <= a_hi):
            raise bad(f"zero points must fit int{self.act_bits}")
        if design is not None:
            if design.tm != self.tm:
                raise bad(f"built for tm={self.tm}, design has tm={design.tm}")
            if design.weight_mode != self.weight_mode or design.act_bits != self.act_bits:
                raise bad(f"is {self.weight_mode}/a{self.act_bits}, design is {design.weight_mode}/a{design.act_bits}")

    # ------------------------------------------------------------------ builders
    @classmethod
    def from_levels(cls, levels: np.ndarray, *, tm: int, input_chw: tuple[int, int, int] | None = None,
                    stride=1, pad=0, bias=None, mult, shift, zx: int = 0, zout: int = 0, relu: bool = False,
                    weight_mode: str = "int8", act_bits: int = 8, name: str = "") -> QLayer:
        """From integer weight levels [cout, cin, kh, kw] (conv) or [cout, cin] (linear; input_chw may be
        omitted), with the table of `kept_table`."""
        levels = np.asarray(levels)
        if levels.ndim == 2:
            levels = levels[:, :, None, None]
            input_chw = input_chw or (levels.shape[1], 1, 1)
        if levels.ndim != 4 or input_chw is None:
            raise FpgaError(f"layer {name or '?'}: weights must be [cout, cin, kh, kw] with input_chw, or [cout, cin]")
        if not np.issubdtype(levels.dtype, np.integer) and np.any(levels != np.round(levels)):
            raise FpgaError(f"layer {name or '?'}: weight levels must be integers")
        cout, cin, kh, kw = levels.shape
        if input_chw[0] != cin:
            raise FpgaError(f"layer {name or '?'}: weights expect {cin} input channels, input has {input_chw[0]}")
        if weight_mode not in WEIGHT_MODES:
            raise FpgaError(f"layer {name or '?'}: unsupported weight mode '{weight_mode}' "
                            f"(expected one of {', '.join(WEIGHT_MODES)})")
        nb = math.ceil(cout / tm)
        cols, wts = kept_table(levels.reshape(cout, -1), tm, name)
        if weight_mode == "binary" and nb * tm > cout:
            wts = wts.copy()
            wts[-1, :, cout - (nb - 1) * tm:] = 1  # rows past cout are computed but never written
        table = np.stack([cols // (kh * kw), (cols // kw) % kh, cols % kw], -1).astype(np.int32)
        bias = np.zeros(cout, np.int64) if bias is None else np.asarray(bias, dtype=np.int64).reshape(cout)
        layer = cls(c=cin, h=int(input_chw[1]), w=int(input_chw[2]), kh=kh, kw=kw, stride=_pair(stride, "stride"),
                    pad=_pad4(pad), cout=cout, table=table, weights=wts.astype(np.int32), bias=bias,
                    mult=np.broadcast_to(np.asarray(mult, dtype=np.int64), (cout,)).copy(),
                    shift=np.broadcast_to(np.asarray(shift, dtype=np.int64), (cout,)).copy(),
                    zx=int(zx), zout=int(zout), relu=bool(relu), weight_mode=weight_mode, act_bits=act_bits,
                    name=name)
        layer.validate()
        return layer

    @classmethod
    def from_float(cls, weight: np.ndarray, *, tm: int, input_chw: tuple[int, int, int] | None = None,
                   stride=1, pad=0, bias: np.ndarray | None = None, keep: np.ndarray | None = None,
                   x_scale: float, x_zero: int, out_scale: float, out_zero: int, relu: bool = False,
                   weight_mode: str = "int8", act_bits: int = 8, name: str = "") -> QLayer:
        """From a float weight (+ keep mask): per-output-channel weight quantization as pruning.quant
        does it, bias in accumulator units, and requantization multipliers for
        real_out = out_scale * (y - out_zero) given real_in = x_scale * (x - x_zero)."""
        import torch

        from pruning.quant import quantize_weight
        from targets.fpga.reference import quantize_multipliers

        if weight_mode not in WEIGHT_MODES:
            raise FpgaError(f"layer {name or '?'}: unsupported weight mode '{weight_mode}'")
        bits = WEIGHT_MODES[weight_mode][1]
        w = torch.as_tensor(np.asarray(weight, dtype=np.float32))
        qw = quantize_weight(w, bits, None if keep is None else torch.as_tensor(np.asarray(keep)).bool())
        q = qw.q.numpy().astype(np.int64)
        acc_scale = float(x_scale) * qw.scale.numpy().astype(np.float64)
        b = np.zeros(q.shape[0]) if bias is None else np.asarray(bias, dtype=np.float64)
        bias_int = np.clip(np.rint(b / acc_scale), -(1 << 31), (1 << 31) - 1).astype(np.int64)
        mult, shift = quantize_multipliers(acc_scale / float(out_scale))
        return cls.from_levels(q, tm=tm, input_chw=input_chw, stride=stride, pad=pad, bias=bias_int, mult=mult,
                               shift=shift, zx=x_zero, zout=out_zero, relu=relu, weight_mode=weight_mode,
                               act_bits=act_bits, name=name)


def signed_activation(q_unsigned, zero_point: int, bits: int):
    """pruning.quant.ActQuant levels (0..2^b-1, zero point zp) -> the accelerator's signed levels and zero point."""
    off = 1 << (bits - 1)
    return np.asarray(q_unsigned, dtype=np.int64) - off, int(zero_point) - off


# ---------------------------------------------------------------------- DDR activation layout
def to_ddr(x: np.ndarray, act_bits: int) -> bytes:
    """[C, H, W] levels -> [ceil(C/CG)][H][W][CG] little-endian bytes."""
    x = np.asarray(x)
    c, h, w = x.shape
    cg = 64 // act_bits
    g = math.ceil(c / cg)
    buf = np.zeros((g * cg, h, w), dtype=np.int8 if act_bits == 8 else "<i2")
    buf[:c] = x
    return buf.reshape(g, cg, h, w).transpose(0, 2, 3, 1).tobytes()


def from_ddr(buf: bytes, c: int, h: int, w: int, act_bits: int) -> np.ndarray:
    cg = 64 // act_bits
    g = math.ceil(c / cg)
    a = np.frombuffer(buf, dtype=np.int8 if act_bits == 8 else "<i2", count=g * h * w * cg)
    return a.reshape(g, h, w, cg).transpose(0, 3, 1, 2).reshape(g * cg, h, w)[:c].astype(np.int64)


def ddr_bytes(c: int, h: int, w: int, act_bits: int) -> int:
    return math.ceil(c / (64 // act_bits)) * h * w * 8


# ---------------------------------------------------------------------- tiling
@dataclass(frozen=True)
class Tile:
    rb0: int  # first row-block
    nrb: int
    or0: int  # first output row
    orows: int
    wset: int  # weight set (index into the program's weight sets)
    load_w: bool
    load_in: bool


@dataclass(frozen=True)
class TileGeometry:
    """Everything a tile descriptor carries that follows from the layer and the tile."""

    rows: int  # padded input rows held
    intr0: int  # first interior (non-padding) row within them
    introws: int
    h_lo: int  # first interior input row in DDR
    plane: int  # bank rows per channel group
    cgroups: int
    npix: int

    @property
    def positions(self) -> int:
        return self.cgroups * self.plane


def tile_geometry(layer: QLayer, design: DesignPoint, or0: int, orows: int) -> TileGeometry:
    sh = layer.stride[0]
    pt = layer.pad[0]
    rows = (orows - 1) * sh + layer.kh
    pr0 = or0 * sh
    h_lo, h_hi = max(0, pr0 - pt), min(layer.h, pr0 + rows - pt)
    introws = max(0, h_hi - h_lo)
    intr0 = h_lo + pt - pr0 if introws else 0
    cgroups = math.ceil(layer.c / design.channels_per_beat)
    return TileGeometry(rows, intr0, introws, h_lo, rows * layer.wp, cgroups, orows * layer.out_hw[1])


def plan_tiles(layer: QLayer, design: DesignPoint) -> tuple[list[tuple[int, int]], list[Tile]]:
    """Split the layer into weight sets (row-block ranges whose weights, table and epilogue constants
    fit on chip) and spatial tiles (output-row ranges whose padded input fits one bank), and order the
    tiles so the larger of the two operands is loaded once."""
    layer.validate(design)
    kmax, nb = layer.kmax, layer.nb
    if kmax > design.w_depth or kmax > design.idx_depth or kmax >= 1 << 16:
        raise FpgaError(f"layer {layer.name or '?'}: {kmax} kept columns per row-block exceed the on-chip "
                        f"weight/index buffers (w_depth={design.w_depth}, idx_depth={design.idx_depth})")
    cap = min(nb, design.rb_depth, design.w_depth // kmax, 65535 // design.tm)
    if not layer.shared:
        cap = min(cap, design.idx_depth // kmax)
    nw = math.ceil(nb / cap)
    per = math.ceil(nb / nw)
    wsets = [(b, min(per, nb - b)) for b in range(0, nb, per)]

    ho, wo = layer.out_hw
    cgroups = math.ceil(layer.c / design.channels_per_beat)
    rows_fit = design.in_depth // (cgroups * layer.wp)
    orows_max = min((rows_fit - layer.kh) // layer.stride[0] + 1 if rows_fit >= layer.kh else 0, 65535 // wo)
    if orows_max < 1:
        need = cgroups * layer.wp * layer.kh
        raise FpgaError(f"layer {layer.name or '?'}: one output row needs {need} input rows per bank, "
                        f"in_depth is {design.in_depth}")
    ns = math.ceil(ho / orows_max)
    per_s = math.ceil(ho / ns)
    spans = [(r, min(per_s, ho - r)) for r in range(0, ho, per_s)]

    w_bytes = sum(_wset_bytes(layer, design, n) for _, n in wsets)
    in_bytes = sum(tile_geometry(layer, design, r, n).introws for r, n in spans) * layer.w * cgroups * 8
    tiles = []
    if len(spans) == 1 or (len(wsets) > 1 and w_bytes + in_bytes * len(wsets) <= in_bytes + w_bytes * len(spans)):
        for i, (b0, n) in enumerate(wsets):  # weights outer: each weight set loaded once
            for k, (r0, m) in enumerate(spans):
                tiles.append(Tile(b0, n, r0, m, i, k == 0, i == 0 or len(spans) > 1))
    else:
        for k, (r0, m) in enumerate(spans):  # input outer: each input tile loaded once
            for i, (b0, n) in enumerate(wsets):
                tiles.append(Tile(b0, n, r0, m, i, k == 0 or len(wsets) > 1, i == 0))
    return wsets, tiles


def _beats(nbytes: int) -> int:
    return (nbytes + 7) // 8


def _wset_parts(layer: QLayer, design: DesignPoint, nrb: int) -> tuple[int, int, int]:
    """(epilogue, index, weight) beats of a weight set of nrb row-blocks."""
    entries = layer.kmax if layer.shared else nrb * layer.kmax
    return nrb * design.tm, _beats(4 * entries), math.ceil(nrb * layer.kmax * design.tm * design.wbits / 64)


def _wset_bytes(layer: QLayer, design: DesignPoint, nrb: int) -> int:
    return 8 * sum(_wset_parts(layer, design, nrb))


# ---------------------------------------------------------------------- packing
def pack_levels(levels: np.ndarray, bits: int) -> bytes:
    """Flat little-endian bitstream of signed levels, `bits` each (targets.tvm.kernels.pack_bits for
    bits <= 8; int16 as little-endian words)."""
    flat = np.asarray(levels).reshape(-1).astype(np.int64)
    if bits == 16:
        return flat.astype("<i2").tobytes()
    if bits == 8:
        return flat.astype(np.int8).tobytes()
    field_ = (flat > 0).astype(np.uint8) if bits == 1 else (flat & ((1 << bits) - 1)).astype(np.uint8)
    per = 8 // bits
    field_ = np.pad(field_, (0, (-len(field_)) % per))
    shifts = (np.arange(per, dtype=np.uint8) * bits)[None, :]
    return (field_.reshape(-1, per) << shifts).sum(1).astype(np.uint8).tobytes()


def _pad8(b: bytes) -> bytes:
    return b + bytes((-len(b)) % 8)


def _wset_image(layer: QLayer, design: DesignPoint, b0: int, nrb: int) -> bytes:
    tm = design.tm
    epi = np.zeros(nrb * tm, dtype=np.uint64)
    ch = np.arange(b0 * tm, (b0 + nrb) * tm)
    real = ch < layer.cout
    bias = np.zeros(len(ch), np.int64)
    mult = np.zeros(len(ch), np.int64)
    shift = np.ones(len(ch), np.int64)
    bias[real], mult[real], shift[real] = layer.bias[ch[real]], layer.mult[ch[real]], layer.shift[ch[real]]
    epi[:] = ((bias & 0xFFFFFFFF) | (mult << 32) | (shift << 56)).astype(np.uint64)
    table = layer.table if layer.shared else layer.table[b0:b0 + nrb]
    t = table.reshape(-1, 3).astype(np.uint32)
    idx = (t[:, 0] | (t[:, 1] << 16) | (t[:, 2] << 24)).astype("<u4")
    w = pack_levels(layer.weights[b0:b0 + nrb], design.wbits)
    return epi.astype("<u8").tobytes() + _pad8(idx.tobytes()) + _pad8(w)


def _descriptor(layer: QLayer, design: DesignPoint, tile: Tile, last: bool, wset_off: int) -> np.ndarray:
    g = tile_geometry(layer, design, tile.or0, tile.orows)
    ho, wo = layer.out_hw
    sh, sw = layer.stride
    tn = design.tn
    nepi, nidx, nw = _wset_parts(layer, design, tile.nrb)
    pbadv = (tn // wo) * sh * layer.wp + (tn % wo) * sw
    need0 = min(g.rows, ((tn - 1) // wo) * sh + layer.kh)  # input rows the first pixel group reads
    pbwrap = sh * layer.wp - wo * sw
    flags = (int(last) | tile.load_w << 1 | tile.load_in << 2 | layer.relu << 3 | layer.shared << 4
             | design.mode_code << 5 | (design.act_bits == 16) << 8)
    half = {"nepi": nepi, "nidx": nidx, "nrb": tile.nrb, "kmax": layer.kmax, "rb0": tile.rb0, "cout": layer.cout,
            "cgroups": g.cgroups, "W": layer.w, "Wp": layer.wp, "padl": layer.pad[1], "rows": g.rows,
            "intr0": g.intr0, "introws": g.introws, "Wo": wo, "npix": g.npix, "dr": tn % wo,
            "coutg": math.ceil(layer.cout / design.channels_per_beat), "need0": need0, "needadv": (tn // wo) * sh}
    for k, v in half.items():
        if not 0 <= v < 1 << 16:
            raise FpgaError(f"layer {layer.name or '?'}: descriptor field {k}={v} does not fit 16 bits")
    m32 = 0xFFFFFFFF
    words = [
        MAGIC << 16 | flags, wset_off, nepi | nidx << 16, nw, tile.nrb | layer.kmax << 16, tile.rb0 | layer.cout << 16,
        g.h_lo * layer.w * 8, layer.h * layer.w * 8, g.cgroups | layer.w << 16, layer.wp | layer.pad[1] << 16,
        g.rows | g.intr0 << 16, g.introws | (layer.zx & 0xFFFF) << 16, g.plane, sh | sw << 8 | wo << 16,
        g.npix | math.ceil(g.npix / tn) << 16, (tn % wo) | half["coutg"] << 16, pbadv & m32, pbwrap & m32,
        ((tile.rb0 * design.tm // design.channels_per_beat) * ho * wo + tile.or0 * wo) * 8, ho * wo,
        layer.zout & 0xFFFF, g.introws * layer.w, g.positions, need0 | ((tn - 1) % wo) << 16,
        (tn // wo) * sh, 0,
    ]
    return np.array(words, dtype="<u4")


@dataclass
class Program:
    """The accelerator's DDR image for one layer: relocatable (all addresses are offsets from the
    PROG_BASE / IN_BASE / OUT_BASE registers) and saveable as .npz."""

    image: np.ndarray  # uint8
    meta: dict = field(default_factory=dict)

    @property
    def in_bytes(self) -> int:
        return int(self.meta["in_bytes"])

    @property
    def out_bytes(self) -> int:
        return int(self.meta["out_bytes"])

    def input_image(self, x: np.ndarray) -> bytes:
        m = self.meta
        x = np.asarray(x)
        if x.size != m["c"] * m["h"] * m["w"]:
            raise FpgaError(f"program input must have {m['c']}x{m['h']}x{m['w']} values, got shape {x.shape}")
        lo, hi = -(1 << (m["act_bits"] - 1)), (1 << (m["act_bits"] - 1)) - 1
        if x.min() < lo or x.max() > hi:
            raise FpgaError(f"input levels outside int{m['act_bits']}")
        return to_ddr(x.reshape(m["c"], m["h"], m["w"]), m["act_bits"])

    def output_levels(self, buf: bytes) -> np.ndarray:
        m = self.meta
        return from_ddr(buf, m["cout"], m["ho"], m["wo"], m["act_bits"])

    def save(self, path: str | Path) -> None:
        np.savez(path, image=self.image, meta=_json_array(self.meta))

    @classmethod
    def load(cls, path: str | Path) -> Program:
        with np.load(path) as z:
            return cls(z["image"].copy(), _from_json_array(z["meta"]))


def pack(layer: QLayer, design: DesignPoint) -> Program:
    """Layer -> program: tile descriptors followed by the weight sets they reference."""
    wsets, tiles = plan_tiles(layer, design)
    head = len(tiles) * DESC_BEATS * 8
    blobs, offs, off = [], [], head
    for b0, n in wsets:
        blob = _wset_image(layer, design, b0, n)
        blobs.append(blob)
        offs.append(off)
        off += len(blob)
    descs = [_descriptor(layer, design, t, i == len(tiles) - 1, offs[t.wset]) for i, t in enumerate(tiles)]
    image = np.frombuffer(b"".join(d.tobytes() for d in descs) + b"".join(blobs), dtype=np.uint8).copy()
    ho, wo = layer.out_hw
    meta = {"design": asdict(design), "design_key": design.key(), "layer": layer.name, "c": layer.c, "h": layer.h,
            "w": layer.w, "cout": layer.cout, "ho": ho, "wo": wo, "act_bits": layer.act_bits,
            "in_bytes": ddr_bytes(layer.c, layer.h, layer.w, layer.act_bits),
            "out_bytes": ddr_bytes(layer.cout, ho, wo, layer.act_bits), "tiles": [asdict(t) for t in tiles],
            "macs": layer.macs}
    return Program(image, meta)


# ---------------------------------------------------------------------- closed-form cycle count
def expected_cycles(layer: QLayer, design: DesignPoint, latency: int = DEFAULT_LATENCY) -> dict[str, int]:
    """Cycles of the accelerator's schedule, summed over tiles, for the simulation's DDR model (`latency`
    cycles from a burst request to its first beat, then one beat per cycle; writes never stall).

    Per tile (all times relative to the tile's first cycle):
      descriptor  L + 13 beats + 1 decode cycle                               (DMA)
      weights     L + epilogue + index + weight beats, when the tile loads them (DMA)
      setup       TN cycles (lane pixel walker); the input loader starts with it and runs alongside:
                  padded row r (all channel groups, Cg*Wp positions, one per cycle) is complete at
                  T_setup + (r+1)*Cg*Wp + s, s = max(0, L - first interior position) once past it
      DDR bytes   read: descriptors, loaded weight sets, interior input rows; written: every output once
      compute     steps (pixel group g, row-block b) in order, each a slot of P = max(kmax, D + 1) cycles,
                  D = TN * TM / min(TM, 64 / act_bits) drain beats; the first step of a group starts no
                  earlier than the rows it reads are complete: start_k = max(start_{k-1} + P, rows ready);
                  the tile ends kmax + D + 11 cycles after the last step starts (pipeline, drain, epilogue).
    Cycles in descriptor/weights phases count as DMA, setup and compute (with the overlapped input
    load) as compute; the sum is the hardware cycle counter.
    """
    _, tiles = plan_tiles(layer, design)
    lat = max(1, int(latency))
    d = design.drain_beats
    tn = design.tn
    kmax = layer.kmax
    slot = max(kmax, d + 1)
    sh, kh, wo = layer.stride[0], layer.kh, layer.out_hw[1]
    dma = comp = rd = 0
    for t in tiles:
        g = tile_geometry(layer, design, t.or0, t.orows)
        dma += lat + DESC_BEATS + 1
        rd += DESC_BEATS * 8
        if t.load_w:
            dma += lat + sum(_wset_parts(layer, design, t.nrb))
            rd += _wset_bytes(layer, design, t.nrb)
        if t.load_in:
            rd += g.introws * layer.w * g.cgroups * 8
        row_pos = g.cgroups * layer.wp  # loader positions per padded row
        first = g.intr0 * row_pos + layer.pad[1]
        stall = max(0, lat - first) if g.introws else 0

        def ready(need: int, row_pos=row_pos, first=first, stall=stall, load=t.load_in) -> int:
            """First compute cycle (from setup start) at which `need` padded rows are loaded."""
            if not load:
                return 0
            end = need * row_pos  # position index one past the row's last
            return end + (stall if end - 1 >= first else 0)

        start = None
        ngroups = math.ceil(g.npix / tn)
        for grp in range(ngroups):
            last_pix = min((grp + 1) * tn, g.npix) - 1
            need = min(g.rows, (last_pix // wo) * sh + kh)
            s0 = max(tn if start is None else start + slot, ready(need))
            start = s0 + (t.nrb - 1) * slot
        comp += start + kmax + d + PIPE_DEPTH + EPI_DEPTH + 1
    ho, wo = layer.out_hw
    return {"cycles": dma + comp, "cycles_dma": dma, "cycles_compute": comp, "tiles": len(tiles),
            "bytes_read": rd, "bytes_written": layer.cout * ho * wo * layer.act_bits // 8}
