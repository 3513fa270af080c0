"""Training loops: dense (pre)training, masked fine-tuning, iterative pruning, ADMM, QAT.

Masked training keeps pruned weights exactly zero: their gradients are zeroed before the step
and the mask is re-applied after it (momentum and weight decay would otherwise revive them).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from pruning.data import Dataset
from pruning.schemes import SCHEMES, Masks, PruneSpec, apply_masks, prune
from pruning.schemes.layers import prunable_layers

# (phase, epoch, epochs, loss, accuracy or None) -> None; the CLI draws progress bars from it
OnEpoch = Callable[[str, int, int, float, float | None], None]


@dataclass(frozen=True)
class TrainConfig:
    lr: float = 0.01
    batch_size: int = 64
    weight_decay: float = 5e-4
    seed: int = 0
    rho: float = 1e-3  # ADMM penalty


@torch.no_grad()
def accuracy(model: nn.Module, data: Dataset, batch_size: int = 256) -> float:
    """Top-1 accuracy on the held-out split."""
    was = model.training
    model.eval()
    correct = total = 0
    for x, y in DataLoader(data.test, batch_size=batch_size):
        correct += int((model(x).argmax(1) == y).sum())
        total += len(y)
    model.train(was)
    return correct / max(total, 1)


def _loader(data: Dataset, cfg: TrainConfig, epoch: int) -> DataLoader:
    g = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
    return DataLoader(data.train, batch_size=cfg.batch_size, shuffle=True, generator=g, drop_last=len(data.train) > cfg.batch_size)


def train(model: nn.Module, data: Dataset, epochs: int, cfg: TrainConfig, masks: Masks | None = None,
          phase: str = "train", on_epoch: OnEpoch | None = None,
          penalty: Callable[[], torch.Tensor] | None = None, after_epoch: Callable[[], None] | None = None) -> float:
    """SGD with momentum and a cosine schedule; returns the final held-out accuracy."""
    if epochs <= 0:
        return accuracy(model, data)
    torch.manual_seed(cfg.seed)
    params = dict(model.named_parameters())
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    steps = epochs * math.ceil(len(data.train) / cfg.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(steps, 1))
    acc = 0.0
    for ep in range(epochs):
        model.train()
        total, n = 0.0, 0
        for x, y in _loader(data, cfg, ep):
            loss = F.cross_entropy(model(x), y)
            if penalty is not None:
                loss = loss + penalty()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if masks:
                for name, m in masks.items():
                    params[name].grad.mul_(m)
            opt.step()
            sched.step()
            if masks:
                apply_masks(model, masks)
            total += loss.item() * len(y)
            n += len(y)
        if after_epoch is not None:
            after_epoch()
        acc = accuracy(model, data)
        if on_epoch:
            on_epoch(phase, ep + 1, epochs, total / max(n, 1), acc)
    model.eval()
    return acc


def iterative_prune(model: nn.Module, data: Dataset, spec: PruneSpec, rounds: int, epochs: int, cfg: TrainConfig,
                    on_epoch: OnEpoch | None = None) -> Masks:
    """Gradual pruning (Zhu & Gupta cubic schedule): prune a little, fine-tune, repeat."""
    masks: Masks = {}
    per_round = max(1, epochs // max(rounds, 1))
    for r in range(1, rounds + 1):
        frac = 1 - (1 - r / rounds) ** 3
        step = dataclasses.replace(spec, sparsity=spec.sparsity * frac,
                                   per_layer={k: v * frac for k, v in spec.per_layer.items()})
        masks = prune(model, step)
        apply_masks(model, masks)
        train(model, data, per_round, cfg, masks, phase=f"iterative {r}/{rounds}", on_epoch=on_epoch)
    return masks


def admm_prune(model: nn.Module, data: Dataset, spec: PruneSpec, epochs: int, cfg: TrainConfig,
               on_epoch: OnEpoch | None = None) -> Masks:
    """ADMM-regularized training toward the scheme's constraint set, then a hard prune.

    min loss(W) + rho/2 ||W - Z + U||^2, with Z = projection of W + U onto the scheme's sparsity
    structure, and U the scaled dual, both updated after every epoch (Zhang et al., ECCV 2018).
    """
    fn = SCHEMES[spec.scheme]
    layers = {f"{n}.weight": (m.weight, s) for n, m, s in prunable_layers(model, spec) if s > 0}

    def project(t: torch.Tensor, s: float) -> torch.Tensor:
        return t * fn(t, s, spec)

    with torch.no_grad():
        Z = {k: project(w.detach().clone(), s) for k, (w, s) in layers.items()}
        U = {k: torch.zeros_like(w) for k, (w, _) in layers.items()}

    def penalty() -> torch.Tensor:
        return sum((cfg.rho / 2) * ((w - Z[k] + U[k]) ** 2).sum() for k, (w, _) in layers.items())

    def update() -> None:
        with torch.no_grad():
            for k, (w, s) in layers.items():
                Z[k] = project(w.detach() + U[k], s)
                U[k] += w.detach() - Z[k]

    train(model, data, epochs, cfg, phase="admm", on_epoch=on_epoch, penalty=penalty, after_epoch=update)
    masks = prune(model, spec)
    apply_masks(model, masks)
    return masks
