"""Pruning schemes behind one interface: `prune(model, spec) -> masks` (weight name -> bool keep-mask).

A scheme only decides which weights to keep; it never touches the model. Layer selection (which
convs/linears are pruned, at what sparsity) is shared by all schemes and lives in `layers.py`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from pruning.errors import CompressionError
from pruning.schemes.baselines import filter_mask, pattern_mask, unstructured_mask
from pruning.schemes.block import block_mask
from pruning.schemes.layers import PruneSpec, prunable_layers, select_layers, weighted_layers

Masks = dict[str, torch.Tensor]
SchemeFn = Callable[[torch.Tensor, float, PruneSpec], torch.Tensor]

SCHEMES: dict[str, SchemeFn] = {
    "block": lambda w, s, spec: block_mask(w, s, spec.block, spec.block_mode, spec.balanced),
    "unstructured": lambda w, s, spec: unstructured_mask(w, s),
    "filter": lambda w, s, spec: filter_mask(w, s),
    "pattern": lambda w, s, spec: pattern_mask(w, s),
}


def prune(model: nn.Module, spec: PruneSpec) -> Masks:
    """Keep-masks for every pruned layer of `model` under `spec` (computed from the current weights)."""
    weights = {name: layer.weight.detach() for name, layer in weighted_layers(model)}
    return {f"{name}.weight": m for name, m in weight_masks(weights, spec).items()}


def weight_masks(weights: dict[str, torch.Tensor], spec: PruneSpec) -> Masks:
    """Layer name -> keep-mask, for weights in the torch layout ([out, in] or [out, in/groups, kh, kw]),
    given every weighted layer of a model in graph order (the order decides the first/last exemption)."""
    fn = SCHEMES.get(spec.scheme)
    if fn is None:
        raise CompressionError(f"unknown pruning scheme '{spec.scheme}' (expected one of: {', '.join(SCHEMES)})")
    masks: Masks = {}
    for name, sparsity in select_layers(list(weights), spec):
        w = weights[name]
        if spec.scheme == "pattern" and not (w.ndim == 4 and tuple(w.shape[2:]) == (3, 3)):
            continue  # patterns are defined on 3x3 kernels only (as in PatDNN); other layers stay dense
        if sparsity > 0:
            masks[name] = fn(w, sparsity, spec)
    return masks


def apply_masks(model: nn.Module, masks: Masks) -> None:
    """Zero the pruned weights in place (they stay zero under masked training, see train.py)."""
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, m in masks.items():
            params[name].mul_(m.to(params[name].dtype))


__all__ = ["PruneSpec", "SCHEMES", "Masks", "prune", "weight_masks", "apply_masks", "prunable_layers"]
