"""CompressionSpec (what a campaign's `[[compression]]` entry says) and Variant construction from it."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from pruning.variant import ModelSpec, Variant, load_dense


class CompressionSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    scheme: Literal["none"] = "none"

    @property
    def label(self) -> str:
        return self.name or "dense"


def make_variant(model: ModelSpec, spec: CompressionSpec) -> Variant:
    v = load_dense(model)
    v.name = spec.label
    v.manifest["variant"] = spec.label
    return v
