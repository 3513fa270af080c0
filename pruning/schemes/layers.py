"""Which layers a scheme prunes and at what sparsity; and the GEMM view of their weights."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

from pruning.errors import CompressionError


@dataclass(frozen=True)
class PruneSpec:
    scheme: str
    sparsity: float
    block: tuple[int, int] = (8, 16)  # rows x columns of the GEMM view
    block_mode: str = "column"  # column | row | rowcol
    per_layer: dict[str, float] = field(default_factory=dict)
    exempt_first_last: bool = True
    balanced: bool = True  # same kept columns in every row-block (see block.block_mask)

    def __post_init__(self) -> None:
        for s in [self.sparsity, *self.per_layer.values()]:
            if not 0.0 <= s < 1.0:
                raise CompressionError(f"sparsity must be in [0, 1), got {s}")
        br, bc = self.block
        if br < 1 or bc < 1:
            raise CompressionError(f"block shape must be positive, got {br}x{bc}")
        if self.block_mode not in ("column", "row", "rowcol"):
            raise CompressionError(f"block mode must be column, row or rowcol, got '{self.block_mode}'")


def weighted_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def select_layers(names: list[str], spec: PruneSpec) -> Iterator[tuple[str, float]]:
    """(layer, sparsity) of every pruned layer, given all weighted layers' names in graph order."""
    unknown = set(spec.per_layer) - set(names)
    if unknown:
        raise CompressionError(f"per-layer sparsity names unknown layers: {', '.join(sorted(unknown))}")
    for i, name in enumerate(names):
        if name in spec.per_layer:
            yield name, spec.per_layer[name]
        elif spec.exempt_first_last and i in (0, len(names) - 1):
            continue
        else:
            yield name, spec.sparsity


def prunable_layers(model: nn.Module, spec: PruneSpec) -> Iterator[tuple[str, nn.Module, float]]:
    layers = dict(weighted_layers(model))
    for name, sparsity in select_layers(list(layers), spec):
        yield name, layers[name], sparsity


def gemm_view(w: torch.Tensor) -> torch.Tensor:
    """conv [Cout, Cin, kh, kw] -> [Cout, Cin*kh*kw]; linear stays [out, in] (a view, no copy)."""
    return w.reshape(w.shape[0], -1)


def prune_groups(scores: torch.Tensor, sizes: torch.Tensor, target: int) -> torch.Tensor:
    """Prune whole groups, weakest first, until the pruned weight count is closest to `target`.

    scores: per-group importance; sizes: real (unpadded) weights per group. Returns a bool 'pruned'
    flag per group, same shape as `scores`. Ties keep index order, so results are deterministic.
    """
    flat_scores, flat_sizes = scores.flatten(), sizes.flatten().to(torch.int64)
    order = torch.argsort(flat_scores, stable=True)
    cum = torch.cumsum(flat_sizes[order], 0)
    # n groups prune cum[n-1] weights; choose the n whose total is nearest the target
    totals = torch.cat([torch.zeros(1, dtype=cum.dtype), cum])
    n = int(torch.argmin((totals - target).abs()))
    pruned = torch.zeros(flat_scores.numel(), dtype=torch.bool)
    pruned[order[:n]] = True
    return pruned.reshape(scores.shape)
