"""The compression pipeline on real data (scikit-learn digits): accuracy, manifests, reload, compile."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pandas as pd
import pytest
import torch
from pydantic import ValidationError

from pruning import data as datasets
from pruning.compress import CompressionSpec, make_variant
from pruning.errors import CompressionError
from pruning.schemes.layers import weighted_layers
from pruning.store import load_variant, save_variant
from pruning.variant import ModelSpec
from tests.conftest import run_cli, write_campaign

MODEL = ModelSpec(name="smallcnn-digits", seed=0)
BLOCK75 = dict(scheme="block", sparsity=0.75, block="8x16", pretrain_epochs=4, seed=0)


@pytest.fixture(scope="module")
def finetuned():
    return make_variant(MODEL, CompressionSpec(**BLOCK75, finetune_epochs=3, bits=8))


def test_finetuning_recovers_accuracy_above_one_shot(finetuned):
    acc = finetuned.manifest["accuracy"]
    oneshot = make_variant(MODEL, CompressionSpec(**BLOCK75)).manifest["accuracy"]
    # same dense parent, same masks: the pre-fine-tune figure is the one-shot figure
    assert oneshot["dense"] == acc["dense"] > 0.9
    assert oneshot["pruned"] == acc["pruned"]
    assert acc["finetuned"] > oneshot["final"] + 0.2
    assert acc["finetuned"] > 0.9 and acc["final"] > 0.9  # int8 keeps the recovered accuracy
    assert finetuned.manifest["accuracy_dataset"] == "digits"


def test_dense_pretraining_is_trained_once_and_shared(finetuned, monkeypatch):
    from pruning import pipeline
    from pruning.variant import cache_dir

    trained = []
    real = pipeline.train
    monkeypatch.setattr(pipeline, "train", lambda *a, **k: trained.append(k.get("phase")) or real(*a, **k))
    other = make_variant(MODEL, CompressionSpec(**BLOCK75, bits=4))  # a new variant of the same parent
    assert "pretrain" not in trained  # the parent's weights came from the cache ...
    assert other.manifest["accuracy"]["dense"] == finetuned.manifest["accuracy"]["dense"]  # ... bit for bit
    assert len(list((cache_dir() / "pretrained").glob("*.pt"))) >= 1
    make_variant(MODEL, CompressionSpec(**{**BLOCK75, "pretrain_epochs": 1}, bits=4))
    assert trained.count("pretrain") == 1  # a different parent trains


def test_manifest_per_layer_and_effective_macs_from_masks(finetuned):
    mf = finetuned.manifest
    layers = {row["layer"]: row for row in mf["layers"]}
    # independent count: output positions (from a forward hook) x kept weights (from the masks)
    positions = {}
    hooks = [m.register_forward_hook(lambda m, i, o, n=n: positions.__setitem__(n, o.shape[-1] * o.shape[-2]
                                                                               if o.ndim == 4 else 1))
             for n, m in weighted_layers(finetuned.module)]
    finetuned.module(torch.zeros(1, 3, 32, 32))
    for h in hooks:
        h.remove()
    expected = 0
    for n, m in weighted_layers(finetuned.module):
        mask = finetuned.masks.get(f"{n}.weight")
        kept = int(mask.sum()) if mask is not None else m.weight.numel()
        expected += positions[n] * kept
        if mask is not None:
            assert abs(layers[n]["achieved_sparsity"] - 0.75) <= 0.01 and layers[n]["target_sparsity"] == 0.75
            assert (m.weight[~mask] == 0).all()  # masked fine-tuning kept them exactly zero
        assert layers[n]["weight_bits"] == 8 and layers[n]["act_bits"] == 8
    assert mf["macs_effective"] == expected
    assert mf["macs_dense"] == 29_213_952 and mf["macs_effective"] < 0.3 * mf["macs_dense"]
    assert mf["params_kept"] == mf["params"] - sum(int((~m).sum()) for m in finetuned.masks.values())
    assert set(layers) == {"features.0", "features.4", "features.7", "features.11", "features.14", "fc1", "fc"}
    assert "features.0.weight" not in finetuned.masks and "fc.weight" not in finetuned.masks  # first/last exempt
    assert mf["parent_hash"] and mf["hash"] != mf["parent_hash"]


def test_int_weights_exported_for_compilers(finetuned):
    for name, qw in finetuned.qweights.items():
        layer = dict(weighted_layers(finetuned.module))[name]
        assert qw.q.dtype == torch.int8 and qw.q.abs().max() <= 127
        assert torch.equal(qw.dequantize(), layer.weight.detach())  # fake-quant weights are exactly the levels


def test_variant_directory_roundtrip_is_bit_identical(finetuned, tmp_path):
    path = save_variant(finetuned, tmp_path / "v")
    assert {p.name for p in path.iterdir()} == {"manifest.json", "weights.safetensors", "masks.safetensors",
                                                "quant.safetensors"}
    back = load_variant(path)
    for (k, a), (_, b) in zip(finetuned.module.state_dict().items(), back.module.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    x = torch.from_numpy(finetuned.example_input())
    with torch.inference_mode():
        assert torch.equal(finetuned.module(x), back.module(x))  # activation quantizers re-attached too
    assert back.hash == finetuned.hash
    assert json.loads((path / "manifest.json").read_text())["hash"] == finetuned.hash


def test_cli_compress_and_campaign_cells_compile_and_verify(tmp_path):
    r = run_cli("compress", "--model", "smallcnn-digits", "--scheme", "block", "--sparsity", "0.75", "--block", "8x16",
                "--bits", "8", "--pretrain-epochs", "4", "--finetune-epochs", "3", "--data", "digits",
                "--out", tmp_path, check=True)
    assert "variant:" in r.stdout and "finetuned" in r.stdout
    [vdir] = list(tmp_path.iterdir())
    assert json.loads((vdir / "manifest.json").read_text())["block"] == "8x16"
    body = """
[[models]]
name = "smallcnn-digits"
[[compression]]
scheme = "block"
sparsity = 0.75
pretrain_epochs = 4
finetune_epochs = 3
bits = 8
[[compression]]
scheme = "pattern"
sparsity = 0.8
pretrain_epochs = 4
bits = 4
[[compression]]
scheme = "filter"
sparsity = 0.5
pretrain_epochs = 4
precision = "fp16"
[[targets]]
name = "host-cpu"
"""
    f = write_campaign(tmp_path / "c.toml", body)
    run_cli("run", f, "--out", tmp_path / "run", check=True)
    df = pd.read_parquet(tmp_path / "run" / "measurements.parquet").set_index("variant")
    assert (df["status"] == "ok").all() and df["verified"].all()
    assert df.loc["block8x16-s0.75-w8a8", "precision"] == "int8" and df.loc["block8x16-s0.75-w8a8", "accuracy"] > 0.9
    assert df.loc["pattern-s0.8-w4a8", "bits"] == 4
    assert df.loc["filter-s0.5-fp16", "precision"] == "fp16"
    # rows carry the MACs actually compiled: block and filter variants skip pruned work, pattern compiles dense
    assert df.loc["block8x16-s0.75-w8a8", "macs_effective"] == df.loc["block8x16-s0.75-w8a8", "macs_masked"]
    assert df.loc["filter-s0.5-fp16", "macs_effective"] < 0.6 * df.loc["filter-s0.5-fp16", "macs_dense"]
    assert df.loc["pattern-s0.8-w4a8", "macs_effective"] == df.loc["pattern-s0.8-w4a8", "macs_dense"]
    assert df.loc["pattern-s0.8-w4a8", "macs_masked"] < 0.3 * df.loc["pattern-s0.8-w4a8", "macs_dense"]
    base = pd.read_parquet(tmp_path / "run" / "measurements.parquet")
    assert (base["macs_effective"] <= base["macs_dense"]).all()


@pytest.mark.parametrize("bad,message", [
    (dict(sparsity=1.0), "less than 1"), (dict(bits=3), "32, 16, 8, 4, 2 or 1"),
    (dict(block="8x"), "ROWSxCOLS"), (dict(scheme="random"), "'none', 'block'"),
])
def test_bad_compression_specs(bad, message):
    with pytest.raises(ValidationError, match=message):
        CompressionSpec(**bad)


def test_bad_compression_inputs_are_one_line_errors(tmp_path):
    with pytest.raises(CompressionError, match="dataset path not found"):
        make_variant(MODEL, CompressionSpec(scheme="block", sparsity=0.5, finetune_epochs=1, data=str(tmp_path / "x")))
    with pytest.raises(CompressionError, match="needs a dataset"):
        make_variant(ModelSpec(name="resnet18-cifar"), CompressionSpec(scheme="block", sparsity=0.5, finetune_epochs=1))
    with pytest.raises(CompressionError, match="either integer bits or precision"):
        make_variant(MODEL, CompressionSpec(bits=8, precision="fp16"))
    r = run_cli("compress", "--model", "smallcnn-digits", "--sparsity", "1.5", "--out", tmp_path)
    assert r.returncode == 2 and r.stderr.strip() == "error: --sparsity: Input should be less than 1"
    f = write_campaign(tmp_path / "c.toml", '[[models]]\nname = "smallcnn-digits"\n[[compression]]\nscheme = "block"\n'
                                            'sparsity = 2\n[[targets]]\nname = "host-cpu"\n')
    r = run_cli("run", f)
    assert r.returncode == 2 and "compression[0].sparsity: Input should be less than 1" in r.stderr


def test_iterative_and_admm_reach_target_sparsity():
    for method, extra in (("iterative", dict(rounds=2, finetune_epochs=2)), ("admm", dict(admm_epochs=2))):
        v = make_variant(MODEL, CompressionSpec(scheme="block", sparsity=0.5, method=method, pretrain_epochs=1, **extra))
        for row in v.manifest["layers"]:
            if row["target_sparsity"]:
                assert abs(row["achieved_sparsity"] - 0.5) <= 0.01
        assert v.manifest["method"] == method and v.manifest["accuracy"]["final"] > 0.1


def test_dataset_readers_real_formats(tmp_path):
    d = datasets.digits((3, 32, 32))
    assert len(d.train) == 1437 and len(d.test) == 360 and d.train[0][0].shape == (3, 32, 32)
    # CIFAR-10 python batches: dicts of b'data' (N x 3072 uint8) and b'labels', pickled
    rng = np.random.default_rng(0)
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    for name, n in (("data_batch_1", 20), ("data_batch_2", 12), ("test_batch", 8)):
        with open(root / name, "wb") as f:
            pickle.dump({b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                         b"labels": list(rng.integers(0, 10, n))}, f)
    c = datasets.load(str(tmp_path), (3, 32, 32))
    assert (len(c.train), len(c.test), c.num_classes) == (32, 8, 10)
    # image folder: train/<class>/*.png and val/<class>/*.png
    from PIL import Image

    for split in ("train", "val"):
        for cls in ("cat", "dog"):
            (tmp_path / "imgs" / split / cls).mkdir(parents=True)
            for i in range(2):
                Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(
                    tmp_path / "imgs" / split / cls / f"{i}.png")
    folder = datasets.load(str(tmp_path / "imgs"), (3, 24, 24))
    x, y = folder.train[3]
    assert folder.num_classes == 2 and x.shape == (3, 24, 24) and y == 1
    with pytest.raises(CompressionError, match="not a CIFAR-10 batch folder"):
        datasets.load(str(tmp_path / "imgs" / "train"), (3, 32, 32))


def test_baselines_report_the_dense_work_they_do_on_pruned_weights(tmp_path):
    body = '[[models]]\nname = "smallcnn-digits"\n[[compression]]\nscheme = "block"\nsparsity = 0.75\n' \
           '[[targets]]\nname = "torch-eager"\n[[targets]]\nname = "onnxruntime"\n[[targets]]\nname = "host-cpu"\n'
    run_cli("run", write_campaign(tmp_path / "c.toml", body), "--out", tmp_path / "run", check=True)
    df = pd.read_parquet(tmp_path / "run" / "measurements.parquet").set_index("target")
    assert (df["macs_masked"] < 0.3 * df["macs_dense"]).all()  # the same pruned variant everywhere
    assert df.loc["torch-eager", "macs_effective"] == df.loc["onnxruntime", "macs_effective"] == df.loc["host-cpu", "macs_dense"]
    assert df.loc["host-cpu", "macs_effective"] == df.loc["host-cpu", "macs_masked"]  # only TVM skips the pruned work
