"""Quantizers: level counts per channel, pruned zeros preserved, calibration ranges."""

from __future__ import annotations

import pytest
import torch

from pruning.errors import CompressionError
from pruning.quant import ActQuant, calibrate, quantize_weight


@pytest.fixture
def w():
    torch.manual_seed(1)
    return torch.randn(16, 8, 3, 3)


@pytest.mark.parametrize("bits,max_levels", [(16, 2**16), (8, 256), (4, 16), (2, 3), (1, 2)])
def test_levels_per_channel(w, bits, max_levels):
    qw = quantize_weight(w, bits)
    deq = qw.dequantize()
    for c in range(w.shape[0]):
        assert deq[c].unique().numel() <= max_levels
    if bits == 1:
        assert all(deq[c].unique().numel() == 2 for c in range(16))
    if bits == 2:
        assert all(set(qw.q[c].unique().tolist()) <= {-1, 0, 1} for c in range(16))
    if bits >= 4:  # symmetric max-abs scaling: error at most half a step, nothing clipped
        step = qw.scale.reshape(-1, 1, 1, 1)
        assert ((deq - w).abs() <= step / 2 + 1e-6).all()
    assert (qw.zero_point == 0).all() and qw.bits == bits


@pytest.mark.parametrize("bits", [8, 4, 2, 1])
def test_pruned_weights_stay_zero(w, bits):
    keep = torch.rand_like(w) > 0.5
    deq = quantize_weight(w, bits, keep).dequantize()
    assert (deq[~keep] == 0).all()
    if bits == 1:  # binary: kept weights are +-alpha, never zero
        assert (deq[keep] != 0).all()


def test_unsupported_bits(w):
    with pytest.raises(CompressionError, match="unsupported weight bit width 3"):
        quantize_weight(w, 3)


def test_activation_quant_and_calibration():
    aq = ActQuant.from_range(-1.0, 3.0, 8)
    assert aq(torch.tensor([0.0])).item() == 0.0  # zero exactly representable
    x = torch.linspace(-1, 3, 1000)
    assert (aq(x) - x).abs().max() <= aq.scale / 2 + 1e-6
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 4, 3))
    g = torch.Generator().manual_seed(0)
    batches = [torch.randn(8, 3, 12, 12, generator=g) for _ in range(4)]
    mm = calibrate(net, batches, 8, "minmax")
    pc = calibrate(net, batches, 8, "percentile", percentile=99.0)
    lo = min(float(b.min()) for b in batches)
    hi = max(float(b.max()) for b in batches)
    assert mm["0"].scale == pytest.approx((hi - lo) / 255, rel=1e-5)
    assert pc["0"].scale < mm["0"].scale  # clipping the tails gives finer steps
    assert mm["2"].zero_point == 0  # input of the 2nd conv is post-ReLU: non-negative
    with pytest.raises(CompressionError):
        calibrate(net, batches, 4)
