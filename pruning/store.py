"""Variant directories: manifest.json + weights, masks and integer quantization tensors (safetensors).

Reloading rebuilds the architecture (the zoo code, or the torch.export program copied into the
directory), loads the weights bit for bit and re-attaches the activation quantizers, so a reloaded
variant computes exactly what the saved one did. An ONNX variant keeps its graph and weights in
model.onnx (with its external data files, if any).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from pruning import quant, zoo
from pruning.errors import CompressionError
from pruning.graph import trainable_module
from pruning.variant import Variant, copy_onnx, file_digest

PROGRAM = "program.pt2"  # the torch.export program a .pt2 variant's graph comes from
ONNX = "model.onnx"


def save_variant(v: Variant, path: Path) -> Path:
    """Write atomically (a temp dir renamed into place)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    if v.module is not None:
        save_file({k: t.detach().contiguous() for k, t in v.module.state_dict().items()}, tmp / "weights.safetensors")
    if v.program is not None:
        shutil.copyfile(v.program, tmp / PROGRAM)
    if v.onnx_path is not None:
        copy_onnx(v.onnx_path, tmp / ONNX)
    save_file({k: m.to(torch.uint8).contiguous() for k, m in v.masks.items()}, tmp / "masks.safetensors")
    qt = {}
    for layer, qw in v.qweights.items():
        qt[f"{layer}.weight_q"], qt[f"{layer}.weight_scale"], qt[f"{layer}.weight_zero_point"] = qw.q, qw.scale, qw.zero_point
        qt[f"{layer}.weight_bits"] = torch.tensor(qw.bits, dtype=torch.int32)
    for layer, a in v.act_quant.items():
        qt[f"{layer}.act"] = torch.tensor([a.bits, a.scale, a.zero_point], dtype=torch.float64)
    save_file({k: t.contiguous() for k, t in qt.items()}, tmp / "quant.safetensors")
    (tmp / "manifest.json").write_text(json.dumps(v.manifest, indent=2, default=str))
    if path.exists():
        shutil.rmtree(path)
    tmp.rename(path)
    v.path = str(path)
    v.program = str(path / PROGRAM) if v.program is not None else None
    v.onnx_path = str(path / ONNX) if v.onnx_path is not None else None
    return path


def load_variant(path: str | Path) -> Variant:
    path = Path(path)
    try:
        manifest = json.loads((path / "manifest.json").read_text())
    except FileNotFoundError:
        raise CompressionError(f"{path}: not a variant directory (no manifest.json)") from None
    family = manifest.get("family")
    v = Variant(manifest["model"], manifest["variant"], (), manifest, path=str(path))
    if family == "onnx":
        v.onnx_path = str(path / ONNX)
    elif family == "pt2":
        v.program = str(path / PROGRAM)
        v.module, v._exported = _program_module(path, manifest)
    else:
        v.module = zoo.build(manifest["model"], manifest.get("seed", 0))
        v.module.load_state_dict(load_file(path / "weights.safetensors"), strict=True)
    v.masks = {k: m.bool() for k, m in load_file(path / "masks.safetensors").items()}
    qt = load_file(path / "quant.safetensors")
    for key in qt:
        if key.endswith(".weight_q"):
            layer = key.removesuffix(".weight_q")
            v.qweights[layer] = quant.QuantizedWeight(qt[key], qt[f"{layer}.weight_scale"],
                                                      qt[f"{layer}.weight_zero_point"], int(qt[f"{layer}.weight_bits"]))
        elif key.endswith(".act"):
            bits, scale, zp = qt[key].tolist()
            v.act_quant[key.removesuffix(".act")] = quant.ActQuant(int(bits), float(scale), int(zp))
    if v.module is not None:
        if manifest.get("precision") == "fp16":
            quant.attach_fp16(v.module)
        quant.attach_act_quant(v.module, v.act_quant)
    v.input_shape = tuple(manifest.get("input_shape") or (1, *zoo.entry(manifest["model"]).input_shape))
    return v


def _program_module(path: Path, manifest: dict) -> tuple[torch.nn.Module, torch.export.ExportedProgram | None]:
    """The module of a .pt2 variant: the program itself when dense, else the program with the saved weights."""
    program = path / PROGRAM
    if not program.is_file() or file_digest(str(program)) != manifest.get("program_digest"):
        raise CompressionError(f"{path}: {PROGRAM} does not match the manifest's program_digest (changed or missing)")
    ep = torch.export.load(program)
    if manifest.get("parent_hash") is None:  # dense: run as load_dense runs it
        return ep.module(), ep
    module = trainable_module(ep)
    module.load_state_dict(load_file(path / "weights.safetensors"), strict=True)
    return module, None
