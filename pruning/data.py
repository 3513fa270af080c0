"""Datasets for fine-tuning and accuracy: scikit-learn's digits (ships in the package, works
offline), CIFAR-10 in its python-pickle batch format, and an ImageNet-style folder.

`load(source, input_shape)` picks the reader from the source: the word `digits`, a directory
holding `data_batch_*` / `test_batch` (CIFAR-10), or one with `train/` and `val/` class folders.
Images are resized to the model's input and normalized with the training split's channel stats.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset as TorchDataset
from torch.utils.data import TensorDataset

from pruning.errors import CompressionError


@dataclass
class Dataset:
    name: str
    train: TorchDataset
    test: TorchDataset
    num_classes: int


def _resize(x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    return x if tuple(x.shape[-2:]) == hw else F.interpolate(x, size=hw, mode="bilinear", align_corners=False)


def _normalized(xtr: torch.Tensor, xte: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean = xtr.mean((0, 2, 3), keepdim=True)
    std = xtr.std((0, 2, 3), keepdim=True).clamp(min=1e-6)
    return (xtr - mean) / std, (xte - mean) / std


def digits(input_shape: tuple[int, int, int], seed: int = 0, test_fraction: float = 0.2) -> Dataset:
    """The 1,797 8x8 handwritten digits, bilinearly resized and replicated to 3 channels."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = torch.from_numpy(d.images.astype(np.float32) / 16.0).unsqueeze(1)
    x = _resize(x, input_shape[1:]).repeat(1, input_shape[0], 1, 1)
    y = torch.from_numpy(d.target.astype(np.int64))
    idx_tr, idx_te = train_test_split(np.arange(len(y)), test_size=test_fraction, random_state=seed, stratify=d.target)
    xtr, xte = _normalized(x[idx_tr], x[idx_te])
    return Dataset("digits", TensorDataset(xtr, y[idx_tr]), TensorDataset(xte, y[idx_te]), 10)


def cifar10(root: Path, input_shape: tuple[int, int, int]) -> Dataset:
    def read(files: list[Path]) -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys = [], []
        for f in files:
            with open(f, "rb") as fh:
                batch = pickle.load(fh, encoding="bytes")
            xs.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            ys.append(np.asarray(batch[b"labels"], dtype=np.int64))
        x = torch.from_numpy(np.concatenate(xs)).float() / 255.0
        return _resize(x, input_shape[1:]), torch.from_numpy(np.concatenate(ys))

    train_files = sorted(root.glob("data_batch_*"))
    if not train_files or not (root / "test_batch").exists():
        raise CompressionError(f"{root}: expected CIFAR-10 python batches (data_batch_1..5 and test_batch)")
    xtr, ytr = read(train_files)
    xte, yte = read([root / "test_batch"])
    xtr, xte = _normalized(xtr, xte)
    return Dataset("cifar10", TensorDataset(xtr, ytr), TensorDataset(xte, yte), 10)


class ImageFolder(TorchDataset):
    """root/<class>/<image>; images decoded lazily with Pillow, resized, ImageNet-normalized."""

    MEAN = torch.tensor([0.485, 0.456, 0.406]).reshape(3, 1, 1)
    STD = torch.tensor([0.229, 0.224, 0.225]).reshape(3, 1, 1)

    def __init__(self, root: Path, classes: list[str], hw: tuple[int, int]) -> None:
        self.hw = hw
        self.items = [(p, i) for i, c in enumerate(classes) for p in sorted((root / c).iterdir()) if p.is_file()]
        if not self.items:
            raise CompressionError(f"{root}: no images found in its class folders")

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        path, label = self.items[i]
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB").resize(self.hw[::-1]), dtype=np.float32) / 255.0
        return (torch.from_numpy(arr).permute(2, 0, 1) - self.MEAN) / self.STD, label


def image_folder(root: Path, input_shape: tuple[int, int, int]) -> Dataset:
    classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    if not classes:
        raise CompressionError(f"{root}/train: no class folders")
    hw = input_shape[1:]
    return Dataset(root.name, ImageFolder(root / "train", classes, hw), ImageFolder(root / "val", classes, hw),
                   len(classes))


def load(source: str, input_shape: tuple[int, int, int], seed: int = 0) -> Dataset:
    if source == "digits":
        return digits(input_shape, seed)
    root = Path(source).expanduser()
    if not root.exists():
        raise CompressionError(f"dataset path not found: {source} (give 'digits', a CIFAR-10 batch folder or an image folder)")
    for cand in (root, root / "cifar-10-batches-py"):
        if (cand / "test_batch").exists():
            return cifar10(cand, input_shape)
    if (root / "train").is_dir() and (root / "val").is_dir():
        return image_folder(root, input_shape)
    raise CompressionError(f"{source}: not a CIFAR-10 batch folder (data_batch_*, test_batch) "
                           "nor an image folder (train/<class>/, val/<class>/)")
