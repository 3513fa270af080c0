"""The compression steps on a dense Variant: pre-train, prune, fine-tune, quantize, measure accuracy."""

from __future__ import annotations

import copy
import hashlib
import json
import os

import torch
from torch import nn

from pruning import data as datasets
from pruning import quant
from pruning.errors import CompressionError
from pruning.graph import check_batch_free, trainable_module
from pruning.macs import GraphCount, count_exported
from pruning.schemes import apply_masks, prune
from pruning.schemes.layers import select_layers, weighted_layers
from pruning.spec import CompressionSpec
from pruning.train import OnEpoch, TrainConfig, accuracy, admm_prune, iterative_prune, train
from pruning.variant import ModelSpec, Variant, cache_dir, tensor_digest


def _trainable(dense: Variant, model: ModelSpec) -> nn.Module:
    """A copy of the dense module to compress; a program (.pt2) is rebuilt with real layer modules."""
    if dense.program is None:
        return copy.deepcopy(dense.module)
    net = trainable_module(dense.exported)
    if not weighted_layers(net):
        raise CompressionError(f"{model.path}: no conv2d / linear layer with its own weights in the program")
    check_batch_free(net, dense.input_shape, model.path)
    return net


def _dataset(model: ModelSpec, spec: CompressionSpec, dense: Variant, net: nn.Module) -> datasets.Dataset | None:
    source = spec.data or ("digits" if dense.manifest.get("dataset") == "digits" else None)
    needs = spec.pretrain_epochs or spec.finetune_epochs or spec.admm_epochs or spec.qat_epochs \
        or spec.method != "oneshot"
    if source is None:
        if needs:
            raise CompressionError(f"training {model.label} needs a dataset: set data = 'digits', a CIFAR-10 "
                                   "batch folder or an image folder")
        return None
    ds = datasets.load(source, dense.input_shape[1:], spec.seed)
    out_features = weighted_layers(net)[-1][1].weight.shape[0]
    if ds.num_classes != out_features:
        raise CompressionError(f"dataset {ds.name} has {ds.num_classes} classes but {model.label} predicts {out_features}")
    return ds


def compress(dense: Variant, model: ModelSpec, spec: CompressionSpec, on_epoch: OnEpoch | None = None) -> Variant:
    net = _trainable(dense, model)
    ds = _dataset(model, spec, dense, net)
    cfg = TrainConfig(lr=spec.lr, batch_size=spec.batch_size, seed=spec.seed)
    acc: dict[str, float | None] = {}

    def measure(stage: str) -> None:
        acc[stage] = accuracy(net, ds) if ds is not None else None

    if spec.pretrain_epochs:
        _pretrain(net, ds, spec, cfg, dense, on_epoch)
    measure("dense")
    parent = tensor_digest(net.state_dict(), dense.hash)

    masks: dict[str, torch.Tensor] = {}
    pspec = spec.prune_spec()
    if spec.scheme != "none":
        if spec.method == "oneshot":
            masks = prune(net, pspec)
            apply_masks(net, masks)
        elif spec.method == "iterative":
            masks = iterative_prune(net, ds, pspec, spec.rounds, max(spec.finetune_epochs, spec.rounds), cfg, on_epoch)
        else:
            masks = admm_prune(net, ds, pspec, max(spec.admm_epochs, 1), cfg, on_epoch)
        measure("pruned")
        if spec.finetune_epochs and spec.method != "iterative":
            train(net, ds, spec.finetune_epochs, cfg, masks, phase="finetune", on_epoch=on_epoch)
            measure("finetuned")

    qweights, act = _quantize(net, spec, masks, ds, cfg, dense, on_epoch)
    if spec.quantized or spec.precision == "fp16":
        measure("quantized")
    acc["final"] = acc[list(acc)[-1]]
    net.eval()
    return _variant(dense, spec, net, masks, qweights, act, acc, parent, ds)


def _pretrain(net, ds, spec: CompressionSpec, cfg: TrainConfig, dense: Variant, on_epoch: OnEpoch | None) -> None:
    """Dense pre-training, shared by every variant of a campaign that starts from the same parent: the trained
    weights are cached by a hash of everything that determines them (training is seeded and deterministic)."""
    key = hashlib.sha256(json.dumps([dense.hash, spec.pretrain_epochs, spec.lr, spec.batch_size, spec.seed,
                                     ds.name, spec.data], sort_keys=True).encode()).hexdigest()[:20]
    path = cache_dir() / "pretrained" / f"{key}.pt"
    if path.exists():
        net.load_state_dict(torch.load(path, weights_only=True))
        return
    train(net, ds, spec.pretrain_epochs, cfg, phase="pretrain", on_epoch=on_epoch)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(net.state_dict(), tmp)
    os.replace(tmp, path)  # atomic: a concurrent or interrupted run never reads half a file


def _quantize(net, spec: CompressionSpec, masks, ds, cfg, dense: Variant, on_epoch):
    qweights: dict[str, quant.QuantizedWeight] = {}
    act: dict[str, quant.ActQuant] = {}
    if spec.precision == "fp16":
        if spec.quantized:
            raise CompressionError("choose either integer bits or precision = 'fp16', not both")
        quant.attach_fp16(net)
        return qweights, act
    if not spec.quantized:
        return qweights, act
    wbits, abits = spec.weight_act_bits
    layers = weighted_layers(net)
    bits_of = quant.layer_bits([n for n, _ in layers], wbits)
    if spec.qat_epochs:
        from torch.nn.utils import parametrize

        for n, m in layers:
            parametrize.register_parametrization(m, "weight", quant.WeightFakeQuant(bits_of[n], masks.get(f"{n}.weight")))
        train(net, ds, spec.qat_epochs, cfg, None, phase="qat", on_epoch=on_epoch)
        for _, m in layers:
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=False)
    with torch.no_grad():
        for n, m in layers:
            qw = quant.quantize_weight(m.weight, bits_of[n], masks.get(f"{n}.weight"))
            m.weight.copy_(qw.dequantize())
            qweights[n] = qw
    act = quant.calibrate(net, _calibration_batches(ds, dense), abits, spec.calibration)
    quant.attach_act_quant(net, act)
    return qweights, act


def _calibration_batches(ds, dense: Variant, n: int = 8, batch: int = 32):
    if ds is None:  # no data: calibrate on the verification input distribution (recorded in the manifest)
        g = torch.Generator().manual_seed(0)
        return [torch.randn((batch, *dense.input_shape[1:]), generator=g) for _ in range(n)]
    loader = torch.utils.data.DataLoader(ds.train, batch_size=batch, shuffle=False)
    return [x for i, (x, _) in zip(range(n), loader, strict=False)]


def _variant(dense: Variant, spec, net, masks, qweights, act, acc, parent, ds) -> Variant:
    v = Variant(dense.model, spec.label, dense.input_shape, {}, module=net, masks=masks, qweights=qweights,
                act_quant=act, program=dense.program)
    count = count_exported(v.exported, masks)
    names = [n for n, _ in weighted_layers(net)]
    extras = [json.dumps({k: [a.bits, a.scale, a.zero_point] for k, a in act.items()}, sort_keys=True), spec.label,
              json.dumps(list(dense.input_shape))]
    if dense.program is not None:  # a program's graph is not in its state_dict: key the hash by its file too
        extras.append(dense.hash)
    tensors = {**net.state_dict(), **{f"mask:{k}": m for k, m in masks.items()}}
    layer_masks = {k.removesuffix(".weight"): m for k, m in masks.items()}
    v.manifest = {
        **variant_manifest(dense, spec, count, names, layer_masks, qweights, act),
        "calibration": (spec.calibration if ds is not None else f"{spec.calibration} on synthetic N(0,1) inputs")
        if spec.quantized else None,
        "accuracy": acc, "accuracy_dataset": ds.name if ds is not None else None,
        "parent_hash": parent, "hash": tensor_digest(tensors, *extras),
    }
    return v


def variant_manifest(dense: Variant, spec: CompressionSpec, count: GraphCount, names: list[str],
                     masks: dict[str, torch.Tensor], qweights: dict, act: dict) -> dict:
    """The manifest fields of any compressed variant (torch or ONNX): spec, bits, MACs and one row per layer.
    `names`: the weighted layers in graph order; `masks`: layer -> keep mask."""
    targets = dict(select_layers(names, spec.prune_spec())) if spec.scheme != "none" else {}
    per_layer = []
    for c in count.layers:
        m = masks.get(c.layer)
        per_layer.append({
            "layer": c.layer, "op": c.op, "weights": c.weights,
            "target_sparsity": targets.get(c.layer, 0.0) if m is not None else 0.0,
            "achieved_sparsity": 1 - float(m.float().mean()) if m is not None else 0.0,
            "weight_bits": qweights[c.layer].bits if c.layer in qweights else (16 if spec.precision == "fp16" else 32),
            "act_bits": act[c.layer].bits if c.layer in act else None,
            "macs_dense": c.macs_dense, "macs_effective": c.macs_effective,
        })
    pruned = sum(int((~m).sum()) for m in masks.values())
    wbits, abits = spec.weight_act_bits
    return {
        **{k: dense.manifest[k] for k in ("model", "source", "checkpoint", "seed", "params", "macs_dense", "dataset",
                                          "family")},
        "variant": spec.label, "input_shape": list(dense.input_shape), "scheme": spec.scheme,
        "sparsity": spec.sparsity if spec.scheme != "none" else 0.0,
        "block": spec.block if spec.scheme == "block" else None,
        "block_mode": spec.block_mode if spec.scheme == "block" else None,
        "method": spec.method if spec.scheme != "none" else None,
        "bits": wbits if spec.quantized else (16 if spec.precision == "fp16" else 32),
        "act_bits": abits if spec.quantized else None,
        "precision": spec.precision if not spec.quantized else f"int{min(wbits, 8) if wbits <= 8 else 16}",
        "params_kept": dense.manifest["params"] - pruned,
        "macs_effective": count.macs_effective,
        "layers": per_layer, "compression": spec.model_dump(mode="json"),
        **({"program_digest": dense.manifest["program_digest"]} if "program_digest" in dense.manifest else {}),
    }
