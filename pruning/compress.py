"""make_variant: a CompressionSpec (pruning.spec) applied to a model -> a cached Variant.

Order of work: (optional) dense pre-training -> pruning (one-shot, iterative or ADMM) -> masked
fine-tuning -> quantization (calibration, optional QAT) -> accuracy. Each step's held-out accuracy
goes into the manifest. Results are cached by a hash of the inputs, so a campaign re-run reuses them.
"""

from __future__ import annotations

import hashlib
import json

from pruning.errors import CompressionError
from pruning.pipeline import compress
from pruning.spec import CompressionSpec
from pruning.store import load_variant, save_variant
from pruning.train import OnEpoch
from pruning.variant import ModelSpec, Variant, cache_dir, load_dense

# Bump when compression output would change for the same inputs: it is part of the variant cache key.
COMPRESSION_VERSION = 4  # 4: the input shape is in the manifest and the hash

def make_variant(model: ModelSpec, spec: CompressionSpec, on_epoch: OnEpoch | None = None) -> Variant:
    """The Variant of `model` under `spec`, from the cache when the same inputs were compressed before."""
    dense = load_dense(model)
    if spec.trivial:
        dense.name = dense.manifest["variant"] = spec.label
        return dense
    if model.name is None:
        raise CompressionError("compression needs a zoo model (optionally with a checkpoint); "
                               f"{model.path} is compiled as given")
    key = hashlib.sha256(json.dumps([COMPRESSION_VERSION, dense.hash, spec.model_dump(mode="json")], sort_keys=True).encode()).hexdigest()[:20]
    cached = cache_dir() / "variants" / key
    if (cached / "manifest.json").exists():
        return load_variant(cached)
    v = compress(dense, model, spec, on_epoch)
    save_variant(v, cached)
    return v


__all__ = ["CompressionSpec", "make_variant"]
