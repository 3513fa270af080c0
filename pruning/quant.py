"""Quantization: per-output-channel symmetric weights (16/8/4 bit, ternary, binary), calibrated
activation fake-quant (8/16 bit), fp16 rounding, and the integer tensors exported for compilers.

The fake-quant model is the accuracy and verification reference: its conv/linear weights hold the
dequantized levels exactly, and a forward pre-hook quantizes each layer's input activation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from pruning.errors import CompressionError
from pruning.schemes.layers import weighted_layers

WEIGHT_BITS = (16, 8, 4, 2, 1)


@dataclass(frozen=True)
class QuantizedWeight:
    q: torch.Tensor  # integer levels, int8 (or int16 for 16 bit), same shape as the weight
    scale: torch.Tensor  # float32 [out_channels]
    zero_point: torch.Tensor  # int32 [out_channels]; 0: weights are symmetric
    bits: int

    def dequantize(self) -> torch.Tensor:
        shape = (-1,) + (1,) * (self.q.ndim - 1)
        return self.q.float() * self.scale.reshape(shape)


def quantize_weight(w: torch.Tensor, bits: int, keep: torch.Tensor | None = None) -> QuantizedWeight:
    """Per-output-channel symmetric quantization; pruned weights (keep == False) stay exactly 0.

    16/8/4 bit: max-abs scaling to +-(2^(b-1)-1). 2 bit is ternary {-a, 0, +a} with the TWN threshold
    (0.7 x mean |w|); 1 bit is binary {-a, +a} with a = mean |w| (XNOR-Net).
    """
    if bits not in WEIGHT_BITS:
        raise CompressionError(f"unsupported weight bit width {bits} (expected one of {WEIGHT_BITS})")
    w = w.detach().float()
    keep = torch.ones_like(w, dtype=torch.bool) if keep is None else keep.bool()
    flat, kflat = w.reshape(w.shape[0], -1), keep.reshape(w.shape[0], -1)
    absw = flat.abs() * kflat
    n_kept = kflat.sum(1).clamp(min=1)
    if bits >= 4:
        qmax = 2 ** (bits - 1) - 1
        scale = (absw.amax(1) / qmax).clamp(min=1e-12)
        q = torch.clamp(torch.round(flat / scale[:, None]), -qmax, qmax)
    elif bits == 2:
        delta = 0.7 * absw.sum(1) / n_kept
        big = (absw > delta[:, None]) & kflat
        scale = ((absw * big).sum(1) / big.sum(1).clamp(min=1)).clamp(min=1e-12)
        q = torch.sign(flat) * big
    else:
        scale = (absw.sum(1) / n_kept).clamp(min=1e-12)
        q = torch.where(flat >= 0, 1.0, -1.0)
    q = (q * kflat).reshape(w.shape)
    dtype = torch.int16 if bits == 16 else torch.int8
    return QuantizedWeight(q.to(dtype), scale.float(), torch.zeros_like(scale, dtype=torch.int32), bits)


def layer_bits(names: list[str], bits: int) -> dict[str, int]:
    """Weight bits per layer (names in graph order): the first and last layers keep >= 8 bits, as in the
    low-bit literature (and like pruning's exemption)."""
    return {n: (max(bits, 8) if i in (0, len(names) - 1) else bits) for i, n in enumerate(names)}


@dataclass(frozen=True)
class ActQuant:
    """Affine (asymmetric) per-tensor activation quantization parameters."""

    bits: int
    scale: float
    zero_point: int

    @property
    def qmax(self) -> int:
        return 2**self.bits - 1

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        q = torch.clamp(torch.round(x / self.scale) + self.zero_point, 0, self.qmax)
        fq = (q - self.zero_point) * self.scale
        return x + (fq - x).detach() if x.requires_grad else fq  # straight-through estimator in training

    @classmethod
    def from_range(cls, lo: float, hi: float, bits: int) -> ActQuant:
        lo, hi = min(lo, 0.0), max(hi, 0.0)  # zero must be exactly representable (padding, ReLU)
        scale = max((hi - lo) / (2**bits - 1), 1e-8)
        return cls(bits, float(scale), int(round(-lo / scale)))


def _fp16_round(x: torch.Tensor) -> torch.Tensor:
    return x.half().float()


def attach_act_quant(model: nn.Module, params: dict[str, ActQuant]) -> None:
    for name, layer in weighted_layers(model):
        if name in params:
            aq = params[name]
            layer.register_forward_pre_hook(lambda _m, args, aq=aq: (aq(args[0]),))


def attach_fp16(model: nn.Module) -> None:
    """fp16 rounding of weights and of every conv/linear input: what an fp16 GPU build computes."""
    with torch.no_grad():
        for _, layer in weighted_layers(model):
            for p in layer.parameters():
                p.copy_(_fp16_round(p))
            layer.register_forward_pre_hook(lambda _m, args: (_fp16_round(args[0]),))


@torch.no_grad()
def calibrate(model: nn.Module, batches, bits: int, method: str = "minmax", percentile: float = 99.99,
              max_values: int = 1_000_000) -> dict[str, ActQuant]:
    """Observe each conv/linear input over `batches`; min-max or percentile range -> ActQuant."""
    if bits not in (8, 16):
        raise CompressionError(f"activation bits must be 8 or 16, got {bits}")
    if method not in ("minmax", "percentile"):
        raise CompressionError(f"calibration must be 'minmax' or 'percentile', got '{method}'")
    seen: dict[str, list[torch.Tensor]] = {}
    handles = []
    gen = torch.Generator().manual_seed(0)
    for name, layer in weighted_layers(model):
        def hook(_m, args, name=name):
            x = args[0].detach().flatten()
            if method == "percentile" and x.numel() > max_values // 8:
                x = x[torch.randint(0, x.numel(), (max_values // 8,), generator=gen)]
            seen.setdefault(name, []).append(x if method == "percentile" else torch.stack([x.min(), x.max()]))
        handles.append(layer.register_forward_pre_hook(hook))
    was_training = model.training
    model.eval()
    try:
        for x in batches:
            model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    out = {}
    for name, xs in seen.items():
        v = torch.cat(xs)
        if method == "minmax":
            lo, hi = float(v.min()), float(v.max())
        else:
            lo = float(torch.quantile(v.float(), (100 - percentile) / 100))
            hi = float(torch.quantile(v.float(), percentile / 100))
        out[name] = ActQuant.from_range(lo, hi, bits)
    return out


class WeightFakeQuant(nn.Module):
    """Parametrization for quantization-aware training: forward sees quantized weights, gradients
    pass straight through to the float weights."""

    def __init__(self, bits: int, keep: torch.Tensor | None) -> None:
        super().__init__()
        self.bits = bits
        self.register_buffer("keep", keep if keep is not None else torch.empty(0), persistent=False)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        keep = self.keep if self.keep.numel() else None
        return w + (quantize_weight(w, self.bits, keep).dequantize() - w).detach()
