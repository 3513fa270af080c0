"""Block-based pruning (the reference scheme) on the GEMM view of a weight.

The [rows, cols] GEMM matrix is tiled into br x bc blocks (zero-padded at the edges, so any block
shape works on any layer). Inside each block whole columns ('column': br-long segments), whole
rows ('row': bc-long segments) or both ('rowcol') are pruned by group L2 norm. Groups compete
across the whole layer, so blocks holding important weights keep more of them.
"""

from __future__ import annotations

import math

import torch

from pruning.schemes.layers import gemm_view, prune_groups


def _rms(x: torch.Tensor, size: torch.Tensor, dim: int) -> torch.Tensor:
    # mean-square (not sum) so that edge groups shortened by padding are not favoured for pruning
    s = (x.float() ** 2).sum(dim) / size.clamp(min=1)
    return torch.where(size > 0, s, torch.full_like(s, float("inf")))


def block_mask(w: torch.Tensor, sparsity: float, block: tuple[int, int], mode: str = "column",
               balanced: bool = True) -> torch.Tensor:
    """Keep-mask of `w`. `balanced`: every row-block prunes the same number of column segments, so
    each row-block keeps the same number of GEMM columns (what the compiled kernel runs without
    padding); otherwise segments compete across the whole layer."""
    mat = gemm_view(w)
    rows, cols = mat.shape
    br, bc = min(block[0], rows), min(block[1], cols)
    nbr, nbc = math.ceil(rows / br), math.ceil(cols / bc)
    padded = torch.zeros(nbr * br, nbc * bc, dtype=mat.dtype)
    padded[:rows, :cols] = mat
    real = torch.zeros(nbr * br, nbc * bc, dtype=torch.bool)
    real[:rows, :cols] = True
    B = padded.reshape(nbr, br, nbc, bc)  # [row-block, row-in-block, col-block, col-in-block]
    keep = real.reshape(nbr, br, nbc, bc).clone()
    target = round(sparsity * rows * cols)

    col_target = target if mode == "column" else round((1 - math.sqrt(1 - sparsity)) * rows * cols)
    if mode in ("column", "rowcol"):
        size = keep.sum(1)  # [nbr, nbc, bc]
        scores = _rms(B, size, 1)
        if balanced:
            pruned = torch.stack([prune_groups(scores[i], size[i], round(col_target * int(size[i, 0, 0]) / rows))
                                  for i in range(nbr)])
        else:
            pruned = prune_groups(scores, size, col_target)
        keep &= ~pruned.unsqueeze(1)
    if mode in ("row", "rowcol"):
        already = int(rows * cols - keep.sum())
        size = keep.sum(3)  # [nbr, br, nbc], only weights still kept compete
        pruned = prune_groups(_rms(B * keep, size, 3), size, target - already)
        keep &= ~pruned.unsqueeze(3)
    return keep.reshape(nbr * br, nbc * bc)[:rows, :cols].reshape(w.shape)
