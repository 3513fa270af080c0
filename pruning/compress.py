"""CompressionSpec (a campaign `[[compression]]` entry, or `joulebench compress` flags) -> Variant.

Order of work: (optional) dense pre-training -> pruning (one-shot, iterative or ADMM) -> masked
fine-tuning -> quantization (calibration, optional QAT) -> accuracy. Each step's held-out accuracy
goes into the manifest. Results are cached by a hash of the inputs, so a campaign re-run reuses them.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from pruning.errors import CompressionError
from pruning.train import OnEpoch
from pruning.variant import ModelSpec, Variant, cache_dir, load_dense

# Bump when compression output would change for the same inputs: it is part of the variant cache key.
COMPRESSION_VERSION = 3



class CompressionSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    scheme: Literal["none", "block", "unstructured", "filter", "pattern"] = "none"
    sparsity: float = Field(0.0, ge=0.0, lt=1.0)
    block: str = "8x16"
    block_mode: Literal["column", "row", "rowcol"] = "column"
    balanced: bool = True
    per_layer: dict[str, float] = Field(default_factory=dict)
    exempt_first_last: bool = True
    method: Literal["oneshot", "iterative", "admm"] = "oneshot"
    rounds: int = Field(3, ge=1)
    admm_epochs: int = Field(0, ge=0)
    finetune_epochs: int = Field(0, ge=0)
    pretrain_epochs: int = Field(0, ge=0)
    bits: Literal[32, 16, 8, 4, 2, 1] = 32
    act_bits: Literal[8, 16] | None = None
    calibration: Literal["minmax", "percentile"] = "minmax"
    precision: Literal["fp32", "fp16"] = "fp32"
    qat_epochs: int = Field(0, ge=0)
    data: str | None = None
    lr: float = Field(0.01, gt=0)
    batch_size: int = Field(64, ge=1)
    seed: int = 0

    @field_validator("block")
    @classmethod
    def _block_shape(cls, v: str) -> str:
        if not re.fullmatch(r"[1-9]\d*x[1-9]\d*", v):
            raise ValueError(f"block must look like ROWSxCOLS with positive sizes (e.g. 8x16), got '{v}'")
        return v

    @property
    def block_shape(self) -> tuple[int, int]:
        r, c = self.block.split("x")
        return int(r), int(c)

    def prune_spec(self):
        from pruning.schemes import PruneSpec

        return PruneSpec(self.scheme, self.sparsity, self.block_shape, self.block_mode, dict(self.per_layer),
                         self.exempt_first_last, self.balanced)

    @property
    def quantized(self) -> bool:
        return self.bits < 32

    @property
    def weight_act_bits(self) -> tuple[int, int]:
        return self.bits, self.act_bits or (16 if self.bits == 16 else 8)

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        parts = []
        if self.scheme != "none":
            shape = f"{self.block}{'' if self.block_mode == 'column' else '-' + self.block_mode}" if self.scheme == "block" else ""
            parts.append(f"{self.scheme}{shape}-s{self.sparsity:g}")
        if self.quantized:
            parts.append("w{}a{}".format(*self.weight_act_bits))
        if self.precision == "fp16":
            parts.append("fp16")
        return "-".join(parts) or "dense"

    @property
    def trivial(self) -> bool:
        return (self.scheme == "none" or self.sparsity == 0) and not self.per_layer and not self.quantized \
            and self.precision == "fp32" and self.pretrain_epochs == 0 and self.finetune_epochs == 0


def make_variant(model: ModelSpec, spec: CompressionSpec, on_epoch: OnEpoch | None = None) -> Variant:
    """The Variant of `model` under `spec`, from the cache when the same inputs were compressed before."""
    dense = load_dense(model)
    if spec.trivial:
        dense.name = dense.manifest["variant"] = spec.label
        return dense
    if model.name is None:
        raise CompressionError("compression needs a zoo model (optionally with a checkpoint); "
                               f"{model.path} is compiled as given")
    from pruning.store import load_variant, save_variant

    key = hashlib.sha256(json.dumps([COMPRESSION_VERSION, dense.hash, spec.model_dump(mode="json")], sort_keys=True).encode()).hexdigest()[:20]
    cached = cache_dir() / "variants" / key
    if (cached / "manifest.json").exists():
        return load_variant(cached)
    from pruning.pipeline import compress

    v = compress(dense, model, spec, on_epoch)
    save_variant(v, cached)
    return v


__all__ = ["CompressionSpec", "make_variant"]
