"""Structure of every pruning scheme, checked independently of how the scheme computes it."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from pruning.errors import CompressionError
from pruning.schemes import PruneSpec, apply_masks, prune
from pruning.schemes.baselines import PATTERNS, pattern_mask
from pruning.schemes.block import block_mask


def _blocks(mat: torch.Tensor, br: int, bc: int):
    """Yield each (unpadded) br x bc block of a 2-D tensor."""
    for i in range(0, mat.shape[0], br):
        for j in range(0, mat.shape[1], bc):
            yield mat[i:i + br, j:j + bc]


@pytest.fixture
def weight():
    torch.manual_seed(0)
    return torch.randn(60, 30, 3, 3)  # GEMM 60 x 270: neither dimension divides 8 x 16 -> padded edge blocks


@pytest.mark.parametrize("mode", ["column", "row", "rowcol"])
@pytest.mark.parametrize("sparsity", [0.5, 0.75, 0.875])
def test_block_masks_prune_whole_rows_or_columns_inside_each_block(weight, mode, sparsity):
    keep = block_mask(weight, sparsity, (8, 16), mode)
    assert keep.shape == weight.shape and keep.dtype == torch.bool
    assert abs((1 - keep.float().mean().item()) - sparsity) <= 0.01
    mat = keep.reshape(60, -1)
    for blk in _blocks(mat, 8, 16):
        rows_kept, cols_kept = blk.any(1), blk.any(0)
        if mode == "column":  # each column segment all kept or all pruned
            assert torch.equal(blk, cols_kept.expand_as(blk))
        elif mode == "row":
            assert torch.equal(blk, rows_kept.unsqueeze(1).expand_as(blk))
        else:  # independent rows and columns: the kept set is their cross product
            assert torch.equal(blk, rows_kept.unsqueeze(1) & cols_kept.unsqueeze(0))
    pruned = weight.clone()
    apply_masks_to = pruned * keep
    assert (apply_masks_to[~keep] == 0).all() and (apply_masks_to[keep] != 0).all()


@pytest.mark.parametrize("balanced", [True, False])
def test_block_column_prunes_the_weakest_segments(weight, balanced):
    keep = block_mask(weight, 0.5, (8, 16), "column", balanced).reshape(60, -1)
    w = weight.reshape(60, -1)
    scopes: dict[int, tuple[list, list]] = {}
    kept_per_row_block = []
    for i in range(0, 60, 8):
        pruned_rms, kept_rms = scopes.setdefault(i if balanced else 0, ([], []))
        kept_per_row_block.append(int(keep[i].sum()))
        for j in range(0, w.shape[1], 16):
            rms = (w[i:i + 8, j:j + 16] ** 2).mean(0)
            kb = keep[i, j:j + 16]
            pruned_rms += rms[~kb].tolist()
            kept_rms += rms[kb].tolist()
    # balanced: segments compete inside their row-block; otherwise across the whole layer
    for pruned_rms, kept_rms in scopes.values():
        assert max(pruned_rms) <= min(kept_rms)
    if balanced:  # every row-block keeps the same number of GEMM columns: what the compiled kernel wants
        assert len(set(kept_per_row_block)) == 1 and kept_per_row_block[0] == 135


def test_block_larger_than_layer_is_clamped():
    w = torch.randn(4, 10)
    keep = block_mask(w, 0.5, (16, 32), "column")
    assert keep.sum() == 20 and torch.equal(keep, keep[0].expand_as(keep))  # whole columns of the one block


def test_unstructured_and_filter(weight):
    m = prune(_net(weight), PruneSpec("unstructured", 0.9, exempt_first_last=False))["conv.weight"]
    assert int((~m).sum()) == round(0.9 * weight.numel())
    assert weight[~m].abs().max() <= weight[m].abs().min()
    f = prune(_net(weight), PruneSpec("filter", 0.5, exempt_first_last=False))["conv.weight"].reshape(60, -1)
    assert torch.equal(f, f[:, :1].expand_as(f))  # whole output channels
    assert int((~f.any(1)).sum()) == 30


def test_pattern_masks_use_only_allowed_patterns(weight):
    keep = pattern_mask(weight, 0.8).reshape(-1, 9)
    allowed = {tuple(p.tolist()) for p in PATTERNS}
    empty = tuple([False] * 9)
    assert all(tuple(k.tolist()) in allowed | {empty} for k in keep)
    assert abs((1 - keep.float().mean().item()) - 0.8) <= 0.01
    assert keep[:, 4].sum() == (keep.sum(1) > 0).sum()  # every surviving kernel keeps its centre
    with pytest.raises(CompressionError, match=">= 0.556"):
        pattern_mask(weight, 0.3)


def test_layer_selection_exempts_first_and_last_and_honours_per_layer(weight):
    net = nn.Sequential(nn.Conv2d(3, 16, 3), nn.Conv2d(16, 16, 3), nn.Conv2d(16, 16, 3), nn.Flatten(), nn.LazyLinear(4))
    net(torch.zeros(1, 3, 16, 16))
    masks = prune(net, PruneSpec("block", 0.5, (4, 8), per_layer={"2": 0.25}))
    assert set(masks) == {"1.weight", "2.weight"}
    assert abs((1 - masks["2.weight"].float().mean().item()) - 0.25) <= 0.01
    with pytest.raises(CompressionError, match="unknown layers: nope"):
        prune(net, PruneSpec("block", 0.5, per_layer={"nope": 0.1}))


@pytest.mark.parametrize("bad", [dict(sparsity=1.0), dict(sparsity=-0.1), dict(block=(0, 4)), dict(block_mode="diag")])
def test_bad_prune_specs(bad):
    kw = dict(scheme="block", sparsity=0.5) | bad
    with pytest.raises(CompressionError):
        PruneSpec(**kw)


def test_apply_masks_zeroes_in_place(weight):
    net = _net(weight)
    masks = prune(net, PruneSpec("block", 0.75, exempt_first_last=False))
    apply_masks(net, masks)
    assert (net.conv.weight[~masks["conv.weight"]] == 0).all()
    assert math.isclose(float((net.conv.weight == 0).float().mean()), 0.75, abs_tol=0.01)


def _net(w: torch.Tensor) -> nn.Module:
    class One(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(w.shape[1], w.shape[0], w.shape[2], bias=False)
            with torch.no_grad():
                self.conv.weight.copy_(w)

    return One()
