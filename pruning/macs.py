"""MAC and parameter counts read from the model graph (torch.export or ONNX), per layer.

Dense MACs count every weight; effective MACs count only non-zero weights, so a pruned
variant's figure follows directly from its (masked) weights rather than from its spec.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

_CONV = {"aten.conv2d.default", "aten.convolution.default", "aten.conv1d.default"}
_LINEAR = {"aten.linear.default"}
_MATMUL = {"aten.mm.default", "aten.bmm.default", "aten.matmul.default"}


@dataclass(frozen=True)
class LayerCount:
    layer: str  # weight name (parameter path) or node name for activation matmuls
    op: str  # conv | linear | matmul
    macs_dense: int
    macs_effective: int
    weights: int
    weights_nonzero: int


@dataclass(frozen=True)
class GraphCount:
    layers: tuple[LayerCount, ...]
    params: int

    @property
    def macs_dense(self) -> int:
        return sum(c.macs_dense for c in self.layers)

    @property
    def macs_effective(self) -> int:
        return sum(c.macs_effective for c in self.layers)

    def to_dict(self) -> dict:
        return {"params": self.params, "macs_dense": self.macs_dense, "macs_effective": self.macs_effective,
                "layers": [asdict(c) for c in self.layers]}


def count_exported(ep: torch.export.ExportedProgram, masks: dict[str, torch.Tensor] | None = None) -> GraphCount:
    """Per-layer counts. With `masks` (weight name -> keep mask), effective MACs follow the masks
    alone (unmasked layers count dense: a weight rounded to zero by quantization is still computed);
    without, they follow the non-zero weights."""
    sig = ep.graph_signature
    params = {**sig.inputs_to_parameters, **sig.inputs_to_buffers}
    tensors = {**ep.state_dict, **ep.constants}
    layers: list[LayerCount] = []
    for node in ep.graph.nodes:
        if node.op != "call_function":
            continue
        target = str(node.target)
        out = node.meta.get("val")
        if target in _CONV | _LINEAR:
            wnode = node.args[1]
            wname = params.get(wnode.name, wnode.name)
            w = tensors.get(wname)
            wshape = tuple(w.shape) if w is not None else tuple(wnode.meta["val"].shape)
            if masks is not None:
                nnz = int(masks[wname].sum()) if wname in masks else math.prod(wshape)
            else:
                nnz = int(torch.count_nonzero(w)) if w is not None else math.prod(wshape)
            if target in _CONV:
                # every output pixel of every image reuses the whole filter bank once
                positions = out.shape[0] * math.prod(out.shape[2:])
                dense = positions * math.prod(wshape)
                eff = positions * nnz
                op = "conv"
            else:
                rows = out.numel() // wshape[0]
                dense, eff, op = rows * math.prod(wshape), rows * nnz, "linear"
            layers.append(LayerCount(wname.removesuffix(".weight"), op, dense, eff, math.prod(wshape), nnz))
        elif target in _MATMUL:
            a = node.args[0].meta["val"]
            macs = out.numel() * a.shape[-1]
            layers.append(LayerCount(node.name, "matmul", macs, macs, 0, 0))
    n_params = sum(ep.state_dict[p].numel() for p in sig.inputs_to_parameters.values())
    return GraphCount(tuple(layers), int(n_params))


def count_module(model: torch.nn.Module, example: torch.Tensor, masks: dict | None = None) -> GraphCount:
    with torch.no_grad():
        return count_exported(torch.export.export(model.eval(), (example,)), masks)


def onnx_layer(weight: str) -> str:
    """Layer name of an ONNX weight initializer: like the torch path's, the weight's name less '.weight'."""
    return weight.removesuffix(".weight")


def count_onnx(path: str, masks: dict | None = None) -> GraphCount:
    """Conv / Gemm / MatMul MACs of an ONNX model, using ONNX shape inference for output shapes.
    `masks` (weight initializer -> keep mask): effective MACs follow them, as in count_exported."""
    import onnx
    from onnx import numpy_helper

    model = onnx.shape_inference.infer_shapes(onnx.load(path))
    g = model.graph
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    shapes = {}
    for vi in list(g.value_info) + list(g.output) + list(g.input):
        dims = [d.dim_value if d.dim_value > 0 else 1 for d in vi.type.tensor_type.shape.dim]
        shapes[vi.name] = dims
    layers: list[LayerCount] = []
    for node in g.node:
        if node.op_type not in ("Conv", "Gemm", "MatMul") or len(node.input) < 2:
            continue
        out = shapes.get(node.output[0])
        w = inits.get(node.input[1])
        if out is None:
            continue
        if w is None:
            a = shapes.get(node.input[0])
            if a is None:
                continue
            macs = math.prod(out) * a[-1]
            layers.append(LayerCount(node.name or node.output[0], "matmul", macs, macs, 0, 0))
            continue
        if masks is None:
            nnz = int((w != 0).sum())
        else:
            nnz = int(masks[node.input[1]].sum()) if node.input[1] in masks else int(w.size)
        if node.op_type == "Conv":
            positions = out[0] * math.prod(out[2:])
            dense, eff, op = positions * w.size, positions * nnz, "conv"
        else:
            trans_b = any(a.name == "transB" and a.i == 1 for a in node.attribute)
            n_out = w.shape[0] if (node.op_type == "Gemm" and trans_b) else w.shape[-1]
            rows = math.prod(out) // n_out
            dense, eff, op = rows * w.size, rows * nnz, "linear"
        layers.append(LayerCount(onnx_layer(node.input[1]), op, int(dense), int(eff), int(w.size), nnz))
    n_params = sum(int(a.size) for a in inits.values())
    return GraphCount(tuple(layers), n_params)
