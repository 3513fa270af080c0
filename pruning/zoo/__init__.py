"""The model zoo: plain-torch definitions plus bring-your-own ONNX / torch.export files.

`build(name)` gives a seeded, eval-mode module; `ZOO` lists what `joulebench models` shows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from pruning.errors import CompressionError
from pruning.zoo.mobilenet import mobilenet_v2
from pruning.zoo.mobilenet_v1 import mobilenet_v1
from pruning.zoo.resnet import resnet18, resnet50
from pruning.zoo.small import small_cnn
from pruning.zoo.vgg import vgg16


@dataclass(frozen=True)
class ZooEntry:
    name: str
    family: str
    dataset: str
    input_shape: tuple[int, int, int]  # C, H, W (batch is added by the caller)
    num_classes: int
    factory: Callable[[], nn.Module]
    paper: str


def _entries() -> dict[str, ZooEntry]:
    families = {
        "resnet18": (resnet18, "He et al., CVPR 2016"),
        "resnet50": (resnet50, "He et al., CVPR 2016"),
        "vgg16": (vgg16, "Simonyan & Zisserman, ICLR 2015"),
        "mobilenetv2": (mobilenet_v2, "Sandler et al., CVPR 2018"),
    }
    out: dict[str, ZooEntry] = {}
    for fam, (fn, paper) in families.items():
        out[f"{fam}-cifar"] = ZooEntry(
            f"{fam}-cifar", fam, "cifar10", (3, 32, 32), 10, lambda fn=fn: fn(10, cifar=True), paper
        )
        out[f"{fam}-imagenet"] = ZooEntry(
            f"{fam}-imagenet", fam, "imagenet", (3, 224, 224), 1000, lambda fn=fn: fn(1000, cifar=False), paper
        )
    # ImageNet form only: the network of TVM's published mobile-GPU latencies (bench/benchmarks/mobile_gpu_validation)
    out["mobilenetv1-imagenet"] = ZooEntry("mobilenetv1-imagenet", "mobilenetv1", "imagenet", (3, 224, 224), 1000,
                                           lambda: mobilenet_v1(1000, cifar=False), "Howard et al., arXiv 2017")
    # A small CNN sized for CPU fine-tuning in tests and the demo (digits data, 32x32 RGB).
    out["smallcnn-digits"] = ZooEntry(
        "smallcnn-digits", "smallcnn", "digits", (3, 32, 32), 10, lambda: small_cnn(10), "joulebench test model"
    )
    return out


ZOO: dict[str, ZooEntry] = _entries()


def entry(name: str) -> ZooEntry:
    try:
        return ZOO[name]
    except KeyError:
        raise CompressionError(f"unknown model '{name}' (expected one of: {', '.join(ZOO)})") from None


def build(name: str, seed: int = 0, checkpoint: str | None = None) -> nn.Module:
    """Seeded init, or the weights of `checkpoint` (a state_dict, loaded with weights_only=True)."""
    e = entry(name)
    torch.manual_seed(seed)
    model = e.factory()
    if checkpoint is not None:
        load_checkpoint(model, checkpoint)
    return model.eval()


def load_checkpoint(model: nn.Module, path: str) -> None:
    import os

    if not os.path.isfile(path):
        raise CompressionError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several unrelated types for a bad file
        raise CompressionError(f"checkpoint {path} is not a loadable state_dict: {str(exc).splitlines()[0]}") from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise CompressionError(f"checkpoint {path} holds a {type(state).__name__}, expected a state_dict")
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        detail = next((ln.strip() for ln in str(exc).splitlines() if "mismatch" in ln), str(exc).splitlines()[0])
        raise CompressionError(f"checkpoint {path} does not fit the model: {detail}") from None
    if missing or unexpected:
        raise CompressionError(
            f"checkpoint {path} does not fit the model: missing {list(missing)[:3]}, unexpected {list(unexpected)[:3]}"
        )
