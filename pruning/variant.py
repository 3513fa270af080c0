"""Variant: one concrete model (zoo or bring-your-own file, possibly compressed) plus its manifest.

A Variant is what targets compile. It carries the torch module (or the ONNX file), the fixed
verification input, the reference output every compiled artifact is checked against, and a
content hash of its weights that keys every downstream cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pruning import zoo
from pruning.errors import CompressionError
from pruning.macs import GraphCount, count_exported, count_onnx
from pruning.paths import cache_dir  # noqa: F401 - re-exported: callers import it from here


@dataclass(frozen=True)
class ModelSpec:
    """Where a model comes from: a zoo name, or a `.onnx` / `.pt2` file; optional checkpoint."""

    name: str | None = None
    path: str | None = None
    checkpoint: str | None = None
    seed: int = 0
    batch: int = 1

    @property
    def label(self) -> str:
        return self.name or Path(self.path or "model").stem


@dataclass
class Variant:
    model: str
    name: str
    input_shape: tuple[int, ...]
    manifest: dict
    module: nn.Module | None = None
    onnx_path: str | None = None
    masks: dict[str, torch.Tensor] = field(default_factory=dict)  # weight name -> keep mask
    qweights: dict = field(default_factory=dict)  # layer -> pruning.quant.QuantizedWeight
    act_quant: dict = field(default_factory=dict)  # layer -> pruning.quant.ActQuant
    path: str | None = None  # the variant directory, once saved
    program: str | None = None  # the torch.export `.pt2` whose graph `module` runs (bring-your-own programs)
    _exported: torch.export.ExportedProgram | None = field(default=None, repr=False)

    @property
    def precision(self) -> str:
        return str(self.manifest.get("precision", "fp32"))

    @property
    def hash(self) -> str:
        return str(self.manifest["hash"])

    @property
    def exported(self) -> torch.export.ExportedProgram:
        if self._exported is None:
            if self.module is None:
                raise CompressionError(f"{self.model} is an ONNX model and has no torch graph")
            with torch.no_grad():
                self._exported = torch.export.export(self.module, (torch.from_numpy(self.example_input()),))
        return self._exported

    def example_input(self) -> np.ndarray:
        """The fixed verification input: same for every target, so outputs compare across targets."""
        rng = np.random.default_rng(1234)
        return rng.standard_normal(self.input_shape, dtype=np.float32)

    @cached_property
    def reference_output(self) -> np.ndarray:
        x = self.example_input()
        if self.module is not None:
            with torch.inference_mode():
                return self.module(torch.from_numpy(x)).numpy()
        from onnx.reference import ReferenceEvaluator

        ref = ReferenceEvaluator(self.onnx_path)
        return np.asarray(ref.run(None, {ref.input_names[0]: x})[0])


def tensor_digest(tensors: dict[str, torch.Tensor], *extra: str) -> str:
    h = hashlib.blake2b(digest_size=16)
    for s in extra:
        h.update(s.encode())
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def file_digest(path: str) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _onnx_tensors(graph) -> Iterator:
    """Every tensor of an ONNX graph: initializers and node attributes, subgraphs included."""
    yield from graph.initializer
    for node in graph.node:
        for a in node.attribute:
            if a.HasField("t"):
                yield a.t
            yield from a.tensors
            for g in ([a.g] if a.HasField("g") else []) + list(a.graphs):
                yield from _onnx_tensors(g)


def onnx_data_files(path: str) -> list[tuple[str, Path]]:
    """(location, file) of each external data file of an ONNX model; locations are relative to its folder."""
    import onnx

    try:
        model = onnx.load(path, load_external_data=False)
    except Exception as exc:
        raise CompressionError(f"{path} is not a readable ONNX model: {str(exc).splitlines()[0]}") from None
    base = Path(path).resolve().parent
    locations = sorted({e.value for t in _onnx_tensors(model.graph) if t.data_location == onnx.TensorProto.EXTERNAL
                        for e in t.external_data if e.key == "location"})
    out = []
    for loc in locations:
        if Path(loc).is_absolute() or ".." in Path(loc).parts:
            raise CompressionError(f"{path}: external data location '{loc}' is outside the model's folder")
        if not (base / loc).is_file():
            raise CompressionError(f"{path}: external data file not found: {base / loc}")
        out.append((loc, base / loc))
    return out


def copy_onnx(src: str, dest: Path) -> None:
    """Copy an ONNX model file with its external data files (kept at their locations next to `dest`)."""
    shutil.copyfile(src, dest)
    for loc, f in onnx_data_files(src):
        (dest.parent / loc).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, dest.parent / loc)


def onnx_digest(path: str) -> list[str]:
    """Digests of an ONNX model file and of each external data file (weights saved beside the model)."""
    return [file_digest(path), *(f"{loc}:{file_digest(str(f))}" for loc, f in onnx_data_files(path))]


def load_dense(spec: ModelSpec) -> Variant:
    """The uncompressed Variant of a model spec (zoo entry, `.pt2` or `.onnx`)."""
    if spec.batch < 1:
        raise CompressionError(f"batch must be >= 1, got {spec.batch}")
    if spec.name is not None:
        e = zoo.entry(spec.name)
        module = zoo.build(spec.name, spec.seed, spec.checkpoint)
        return _from_module(spec, module, (spec.batch, *e.input_shape), {"dataset": e.dataset, "family": e.family})
    if spec.path is None:
        raise CompressionError("a model needs either a zoo name or a path")
    if not os.path.isfile(spec.path):
        raise CompressionError(f"model file not found: {spec.path}")
    if spec.path.endswith(".pt2"):
        return _from_pt2(spec)
    if spec.path.endswith(".onnx"):
        return _from_onnx(spec)
    raise CompressionError(f"unsupported model file {spec.path}: expected a .onnx or a torch.export .pt2 file")


def _base_manifest(spec: ModelSpec, shape: tuple[int, ...], count: GraphCount, digest: str, extra: dict) -> dict:
    return {
        "model": spec.label, "variant": "dense", "scheme": "none", "sparsity": 0.0, "bits": 32,
        "precision": "fp32", "source": spec.path or "zoo", "checkpoint": spec.checkpoint, "seed": spec.seed,
        "params": count.params, "params_kept": count.params,
        "macs_dense": count.macs_dense, "macs_effective": count.macs_effective,
        "input_shape": list(shape), "hash": digest, "parent_hash": None, **extra,
    }


def _from_module(spec: ModelSpec, module: nn.Module, shape: tuple[int, ...], extra: dict) -> Variant:
    v = Variant(spec.label, "dense", shape, {}, module=module.eval())
    count = count_exported(v.exported)
    digest = tensor_digest(module.state_dict(), spec.label, json.dumps(shape))
    v.manifest = _base_manifest(spec, shape, count, digest, extra)
    return v


def _from_pt2(spec: ModelSpec) -> Variant:
    try:
        ep = torch.export.load(spec.path)
    except Exception as exc:
        raise CompressionError(f"{spec.path} is not a torch.export program: {str(exc).splitlines()[0]}") from None
    user_inputs = [n for n in ep.graph.nodes if n.op == "placeholder" and n.name in ep.graph_signature.user_inputs]
    if len(user_inputs) != 1:
        raise CompressionError(f"{spec.path}: expected one tensor input, found {len(user_inputs)}")
    shape = tuple(int(d) for d in user_inputs[0].meta["val"].shape)
    v = Variant(spec.label, "dense", shape, {}, module=ep.module(), _exported=ep,
                program=os.path.abspath(spec.path))
    count = count_exported(ep)
    digest = file_digest(spec.path)
    v.manifest = _base_manifest(spec, shape, count, digest, {"dataset": None, "family": "pt2", "program_digest": digest})
    return v


def _from_onnx(spec: ModelSpec) -> Variant:
    import onnx

    try:
        graph = onnx.load(spec.path, load_external_data=False).graph
    except Exception as exc:
        raise CompressionError(f"{spec.path} is not a readable ONNX model: {str(exc).splitlines()[0]}") from None
    init_names = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in init_names]
    if len(inputs) != 1:
        raise CompressionError(f"{spec.path}: expected one tensor input, found {len(inputs)}")
    dims = [d.dim_value for d in inputs[0].type.tensor_type.shape.dim]
    shape = tuple(d if d > 0 else spec.batch for d in dims)
    digest = tensor_digest({}, *onnx_digest(spec.path), json.dumps(shape))  # dynamic batch: the shape decides
    count = count_onnx(spec.path)
    manifest = _base_manifest(spec, shape, count, digest, {"dataset": None, "family": "onnx"})
    return Variant(spec.label, "dense", shape, manifest, onnx_path=os.path.abspath(spec.path))
