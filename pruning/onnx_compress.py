"""One-shot compression of an ONNX model: the torch path's pruning schemes and weight quantization
applied to its Conv / Gemm / MatMul weight initializers, written as a new ONNX file.

Nothing is trained (an ONNX graph has no autograd here) and activations stay float: quantized
weights are stored dequantized (fake-quantized) in the graph, and the manifest says so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pruning import quant
from pruning.errors import CompressionError
from pruning.macs import count_onnx, onnx_layer
from pruning.pipeline import variant_manifest
from pruning.schemes import weight_masks
from pruning.spec import CompressionSpec
from pruning.variant import Variant, onnx_digest, tensor_digest

WEIGHT_ONLY = "weights only: fake-quantized (dequantized) float initializers; activations stay float " \
              "(an ONNX model is not calibrated)"


def check_oneshot(path: str, spec: CompressionSpec) -> None:
    """Refuse, before any work, what an ONNX model cannot do: training, data, fp16 rounding."""
    if spec.finetune_epochs or spec.pretrain_epochs or spec.admm_epochs or spec.qat_epochs \
            or spec.method != "oneshot":
        raise CompressionError(f"{path}: fine-tuning needs a torch program (.pt2); an ONNX model can only be "
                               "pruned and quantized one-shot")
    if spec.data is not None:
        raise CompressionError(f"{path}: data is for training, calibration and accuracy of a torch program (.pt2); "
                               "an ONNX model is pruned and quantized one-shot without data")
    if spec.precision == "fp16":
        raise CompressionError(f"{path}: precision fp16 needs a torch program (.pt2) or a zoo model")


@dataclass(frozen=True)
class _Layer:
    name: str  # layer name (pruning.macs.onnx_layer of the initializer)
    weight: str  # initializer name
    transposed: bool  # stored [in, out] (MatMul, Gemm without transB): the torch layout is its transpose


def _layers(graph) -> list[_Layer]:
    """Conv / Gemm / MatMul nodes whose weight is an initializer used by that node alone, in graph order."""
    inits = {i.name: i for i in graph.initializer}
    uses: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    out = []
    for node in graph.node:
        if node.op_type not in ("Conv", "Gemm", "MatMul") or len(node.input) < 2:
            continue
        w = inits.get(node.input[1])
        if w is None or uses[w.name] != 1 or (node.op_type != "Conv" and len(w.dims) != 2):
            continue
        trans_b = any(a.name == "transB" and a.i == 1 for a in node.attribute)
        out.append(_Layer(onnx_layer(w.name), w.name, node.op_type == "MatMul" or (node.op_type == "Gemm" and not trans_b)))
    return out


def compress_onnx(dense: Variant, spec: CompressionSpec, workdir: Path) -> Variant:
    """Prune and quantize `dense` (an ONNX Variant) one-shot; the new model is written into `workdir`."""
    import onnx
    from onnx import numpy_helper

    check_oneshot(dense.onnx_path, spec)
    model = onnx.load(dense.onnx_path)  # external data is read in: the new file holds every weight
    layers = _layers(model.graph)
    if not layers:
        raise CompressionError(f"{dense.onnx_path}: no Conv / Gemm / MatMul layer with an initializer weight")
    inits = {i.name: i for i in model.graph.initializer}
    weights = {}
    for la in layers:
        w = torch.from_numpy(numpy_helper.to_array(inits[la.weight]).copy())
        weights[la.name] = w.T if la.transposed else w  # the torch layout the schemes and quantizer expect
    layer_masks = weight_masks(weights, spec.prune_spec()) if spec.scheme != "none" else {}
    bits = quant.layer_bits(list(weights), spec.bits)
    qweights = {}
    for la in layers:
        w, keep = weights[la.name], layer_masks.get(la.name)
        if keep is not None:
            w = w * keep
        if spec.quantized:
            qweights[la.name] = quant.quantize_weight(w, bits[la.name], keep)
            w = qweights[la.name].dequantize()
        w = w.T if la.transposed else w
        dtype = numpy_helper.to_array(inits[la.weight]).dtype
        inits[la.weight].CopyFrom(numpy_helper.from_array(np.ascontiguousarray(w.numpy().astype(dtype)), la.weight))
    out = workdir / "model.onnx"
    # protobuf's 2 GiB limit: larger models keep their weights in an external data file
    large = sum(i.ByteSize() for i in model.graph.initializer) > 1 << 30
    onnx.save_model(model, str(out), save_as_external_data=large, location="model.onnx.data")
    masks = {la.weight: (layer_masks[la.name].T if la.transposed else layer_masks[la.name])
             for la in layers if la.name in layer_masks}  # in the initializer's own layout
    count = count_onnx(str(out), masks)
    manifest = variant_manifest(dense, spec, count, list(weights), layer_masks, qweights, {})
    manifest.update({
        "act_bits": None, "precision": "fp32", "calibration": None,
        "quantization": WEIGHT_ONLY if spec.quantized else None,
        "accuracy": {"final": None}, "accuracy_dataset": None, "parent_hash": dense.hash,
        "hash": tensor_digest({f"mask:{k}": m for k, m in masks.items()}, *onnx_digest(str(out)), spec.label,
                              json.dumps(list(dense.input_shape))),
    })
    return Variant(dense.model, spec.label, dense.input_shape, manifest, onnx_path=str(out), masks=masks,
                   qweights=qweights)
