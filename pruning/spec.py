"""CompressionSpec: one campaign `[[compression]]` entry, or the `joulebench compress` flags."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


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
