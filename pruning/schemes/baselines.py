"""Baseline schemes for the comparison: unstructured magnitude, filter, and pattern + connectivity."""

from __future__ import annotations

import torch

from pruning.errors import CompressionError
from pruning.schemes.layers import gemm_view, prune_groups


def unstructured_mask(w: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Irregular: the smallest-magnitude weights of the layer, exactly round(sparsity * n) of them."""
    flat = w.detach().abs().flatten()
    n = round(sparsity * flat.numel())
    keep = torch.ones_like(flat, dtype=torch.bool)
    keep[torch.argsort(flat, stable=True)[:n]] = False
    return keep.reshape(w.shape)


def filter_mask(w: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Structured: whole output channels (GEMM rows) by L2 norm."""
    mat = gemm_view(w)
    scores = (mat.float() ** 2).sum(1)
    pruned = prune_groups(scores, torch.full_like(scores, mat.shape[1], dtype=torch.int64),
                          round(sparsity * mat.numel()))
    return (~pruned).unsqueeze(1).expand_as(mat).reshape(w.shape).clone()


def _patterns() -> torch.Tensor:
    """The 8 four-entry 3x3 patterns, all holding the centre (index 4 of the row-major kernel):
    the four 2x2 squares around the centre and the four T shapes of the centre's 4-neighbourhood."""
    sets = [{0, 1, 3, 4}, {1, 2, 4, 5}, {3, 4, 6, 7}, {4, 5, 7, 8},
            {1, 3, 4, 5}, {1, 4, 5, 7}, {3, 4, 5, 7}, {1, 3, 4, 7}]
    p = torch.zeros(len(sets), 9, dtype=torch.bool)
    for i, s in enumerate(sets):
        p[i, list(s)] = True
    return p


PATTERNS = _patterns()
PATTERN_SPARSITY = 5 / 9


def pattern_mask(w: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Each 3x3 kernel keeps its best-fitting pattern; then whole kernels go (connectivity pruning)."""
    if w.ndim != 4 or tuple(w.shape[2:]) != (3, 3):
        raise CompressionError(f"pattern pruning applies to 3x3 convolutions, not a weight of shape {tuple(w.shape)}")
    if sparsity < PATTERN_SPARSITY - 0.01:
        raise CompressionError(f"pattern pruning keeps 4 of 9 weights per kernel: sparsity must be >= "
                               f"{PATTERN_SPARSITY:.3f}, got {sparsity}")
    k = w.detach().float().reshape(-1, 9)
    energy = (k**2) @ PATTERNS.T.float()  # [kernels, patterns]: weight energy each pattern would keep
    best = energy.argmax(1)
    keep = PATTERNS[best].clone()
    already = int(k.numel() - keep.sum())
    scores = energy.gather(1, best.unsqueeze(1)).squeeze(1)
    dropped = prune_groups(scores, torch.full_like(best, 4), round(sparsity * k.numel()) - already)
    keep[dropped] = False
    return keep.reshape(w.shape)
