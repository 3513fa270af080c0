"""Exact integer reference of one accelerator layer (numpy int64), and THE definition of the epilogue
rounding that the RTL (rtl/jb_requant.v) reproduces bit for bit.

Accumulation is int32: int16/int8 products are summed modulo 2^32 like the hardware's 32-bit
accumulators (the narrower datapaths never reach that range, so they equal it).
"""

from __future__ import annotations

import math

import numpy as np

from targets.fpga import FpgaError

MULT_BITS = 17  # requantization multiplier: unsigned, normalized into [2^16, 2^17) (two DSP48s per lane)
MAX_SHIFT = 63


def wrap_int32(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.int64)
    return ((a + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def requantize(acc, mult, shift, zout: int, relu: bool, out_bits: int) -> np.ndarray:
    """acc (int32 accumulator + int32 bias, exact) -> output levels:
    round half up (acc*mult + 2^(shift-1)) >> shift (arithmetic), + zout, ReLU as max(y, zout),
    saturate to signed out_bits. `mult`/`shift` broadcast against acc (per output channel)."""
    acc = np.asarray(acc, dtype=np.int64)
    mult = np.asarray(mult, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    if np.any(shift < 1) or np.any(shift > MAX_SHIFT):
        raise FpgaError(f"requantization shift must be 1..{MAX_SHIFT}")
    if np.any(mult < 0) or np.any(mult >= 1 << MULT_BITS):
        raise FpgaError(f"requantization multiplier must be 0..2^{MULT_BITS}-1")
    v = (acc * mult + (np.int64(1) << (shift - 1))) >> shift
    y = v + np.int64(zout)
    if relu:
        y = np.maximum(y, np.int64(zout))
    lo, hi = -(1 << (out_bits - 1)), (1 << (out_bits - 1)) - 1
    return np.clip(y, lo, hi)


def quantize_multiplier(real_scale: float) -> tuple[int, int]:
    """real_scale > 0 -> (mult, shift) with real_scale ~= mult / 2^shift (relative error <= 2^-17), mult in
    [2^16, 2^17) when the scale allows (shift 1..63); tiny scales keep shift = 63 and a smaller multiplier."""
    if not (real_scale > 0 and math.isfinite(real_scale)):
        raise FpgaError(f"requantization scale must be positive and finite, got {real_scale}")
    frac, exp = math.frexp(real_scale)  # real = frac * 2^exp, frac in [0.5, 1)
    mult = round(frac * (1 << MULT_BITS))
    if mult == 1 << MULT_BITS:
        mult, exp = mult // 2, exp + 1
    shift = MULT_BITS - exp
    if shift < 1:
        raise FpgaError(f"requantization scale {real_scale:g} is too large (at most {2.0 ** (MULT_BITS - 1):g})")
    if shift > MAX_SHIFT:
        return round(real_scale * 2.0**MAX_SHIFT), MAX_SHIFT
    return int(mult), int(shift)


def quantize_multipliers(scales) -> tuple[np.ndarray, np.ndarray]:
    pairs = [quantize_multiplier(float(s)) for s in np.asarray(scales, dtype=np.float64).reshape(-1)]
    return (np.array([p[0] for p in pairs], dtype=np.int64), np.array([p[1] for p in pairs], dtype=np.int64))


def _padded(layer, x: np.ndarray) -> np.ndarray:
    """x - zx with zero padding: the accelerator pads with zx and subtracts zx in every lane."""
    t, left, b, r = layer.pad
    xe = x.astype(np.int64) - np.int64(layer.zx)
    return np.pad(xe, ((0, 0), (t, b), (left, r)))


def accumulate(layer, x: np.ndarray) -> np.ndarray:
    """int32 accumulators [nb*tm, Ho, Wo] over each row-block's kept columns (the index table)."""
    x = np.asarray(x).reshape(layer.c, layer.h, layer.w)
    xp = _padded(layer, x)
    ho, wo = layer.out_hw
    sh, sw = layer.stride
    nb, kmax, tm = layer.weights.shape
    rows = np.arange(ho)[:, None] * sh
    cols = np.arange(wo)[None, :] * sw
    acc = np.zeros((nb, tm, ho, wo), dtype=np.int64)
    for b in range(nb):
        t = layer.table[0 if layer.table.shape[0] == 1 else b]
        patches = xp[t[:, 0][:, None, None], t[:, 1][:, None, None] + rows, t[:, 2][:, None, None] + cols]
        acc[b] = np.einsum("jr,jhw->rhw", layer.weights[b].astype(np.int64), patches)
    return wrap_int32(acc.reshape(nb * tm, ho, wo))


def run_reference(layer, x: np.ndarray) -> np.ndarray:
    """Output levels [cout, Ho, Wo] of the integer layer, exactly as the accelerator computes them."""
    acc = accumulate(layer, x)[: layer.cout] + layer.bias.astype(np.int64)[:, None, None]
    return requantize(acc, layer.mult[:, None, None], layer.shift[:, None, None], layer.zout, layer.relu,
                      layer.act_bits)


def dense_reference(levels: np.ndarray, x: np.ndarray, *, stride=(1, 1), pad=(0, 0, 0, 0), zx: int, bias,
                    mult, shift, zout: int, relu: bool, out_bits: int) -> np.ndarray:
    """Independent check of the table path: a plain dense convolution over the full (pruned) weight
    levels [cout, cin, kh, kw] of an input [cin, H, W]."""
    levels = np.asarray(levels, dtype=np.int64)
    cout, cin, kh, kw = levels.shape
    t, left, b, r = pad
    xp = np.pad(np.asarray(x, dtype=np.int64).reshape(cin, *np.shape(x)[-2:]) - zx, ((0, 0), (t, b), (left, r)))
    sh, sw = stride
    ho, wo = (xp.shape[1] - kh) // sh + 1, (xp.shape[2] - kw) // sw + 1
    acc = np.zeros((cout, ho, wo), dtype=np.int64)
    for ki in range(kh):
        for kj in range(kw):
            win = xp[:, ki: ki + (ho - 1) * sh + 1: sh, kj: kj + (wo - 1) * sw + 1: sw]
            acc += np.einsum("oc,chw->ohw", levels[:, :, ki, kj], win)
    acc = wrap_int32(acc) + np.asarray(bias, dtype=np.int64)[:, None, None]
    return requantize(acc, np.asarray(mult)[:, None, None], np.asarray(shift)[:, None, None], zout, relu, out_bits)
