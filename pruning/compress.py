"""make_variant: a CompressionSpec (pruning.spec) applied to a model -> a cached Variant.

Order of work on a torch model (zoo or `.pt2` program): (optional) dense pre-training -> pruning
(one-shot, iterative or ADMM) -> masked fine-tuning -> quantization (calibration, optional QAT) ->
accuracy. Each step's held-out accuracy goes into the manifest. An ONNX model is pruned and
quantized one-shot (pruning/onnx_compress.py). Results are cached by a hash of the inputs, so a
campaign re-run reuses them.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path

from pruning.onnx_compress import check_oneshot, compress_onnx
from pruning.pipeline import compress
from pruning.spec import CompressionSpec
from pruning.store import load_variant, save_variant
from pruning.train import OnEpoch
from pruning.variant import ModelSpec, Variant, cache_dir, load_dense

# Bump when compression output would change for the same inputs: it is part of the variant cache key.
COMPRESSION_VERSION = 4  # 4: the input shape is in the manifest and the hash

def make_variant(model: ModelSpec, spec: CompressionSpec, on_epoch: OnEpoch | None = None) -> Variant:
    """The Variant of `model` (a zoo model, a torch.export `.pt2` or an `.onnx` file) under `spec`, from the
    cache when the same inputs were compressed before. An ONNX model is compressed one-shot (no training)."""
    if model.name is None and model.path is not None and model.path.endswith(".onnx"):
        check_oneshot(model.path, spec)
    dense = load_dense(model)
    if spec.trivial:
        dense.name = dense.manifest["variant"] = spec.label
        return dense
    key = hashlib.sha256(json.dumps([COMPRESSION_VERSION, dense.hash, spec.model_dump(mode="json")], sort_keys=True).encode()).hexdigest()[:20]
    cached = cache_dir() / "variants" / key
    if (cached / "manifest.json").exists():
        return load_variant(cached)
    if dense.onnx_path is not None:
        with tempfile.TemporaryDirectory() as work:  # the new model file is staged here, then saved with the variant
            v = compress_onnx(dense, spec, Path(work))
            save_variant(v, cached)
        return v
    v = compress(dense, model, spec, on_epoch)
    save_variant(v, cached)
    return v


__all__ = ["CompressionSpec", "make_variant"]
