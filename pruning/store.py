"""Variant directories: manifest.json + weights, masks and integer quantization tensors (safetensors).

Reloading rebuilds the zoo architecture, loads the weights bit for bit and re-attaches the
activation quantizers, so a reloaded variant computes exactly what the saved one did.
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
from pruning.variant import Variant


def save_variant(v: Variant, path: Path) -> Path:
    """Write atomically (a temp dir renamed into place)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: t.detach().contiguous() for k, t in v.module.state_dict().items()}, tmp / "weights.safetensors")
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
    return path


def load_variant(path: str | Path) -> Variant:
    path = Path(path)
    try:
        manifest = json.loads((path / "manifest.json").read_text())
    except FileNotFoundError:
        raise CompressionError(f"{path}: not a variant directory (no manifest.json)") from None
    module = zoo.build(manifest["model"], manifest.get("seed", 0))
    module.load_state_dict(load_file(path / "weights.safetensors"), strict=True)
    masks = {k: m.bool() for k, m in load_file(path / "masks.safetensors").items()}
    qt = load_file(path / "quant.safetensors")
    qweights, act = {}, {}
    for key in qt:
        if key.endswith(".weight_q"):
            layer = key.removesuffix(".weight_q")
            qweights[layer] = quant.QuantizedWeight(qt[key], qt[f"{layer}.weight_scale"],
                                                    qt[f"{layer}.weight_zero_point"], int(qt[f"{layer}.weight_bits"]))
        elif key.endswith(".act"):
            bits, scale, zp = qt[key].tolist()
            act[key.removesuffix(".act")] = quant.ActQuant(int(bits), float(scale), int(zp))
    if manifest.get("precision") == "fp16":
        quant.attach_fp16(module)
    quant.attach_act_quant(module, act)
    shape = tuple(manifest.get("input_shape") or (1, *zoo.entry(manifest["model"]).input_shape))
    return Variant(manifest["model"], manifest["variant"], shape, manifest, module=module.eval(), masks=masks,
                   qweights=qweights, act_quant=act, path=str(path))
