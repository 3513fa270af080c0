"""Compressing bring-your-own model files: a torch.export program (.pt2) like a zoo model, an ONNX model
one-shot, and ONNX models whose weights live in external data files."""

from __future__ import annotations

import contextlib
import io
import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper

from bench.api import Artifact
from pruning import zoo
from pruning.compress import CompressionSpec, make_variant
from pruning.errors import CompressionError
from pruning.schemes.layers import weighted_layers
from pruning.store import load_variant, save_variant
from pruning.variant import ModelSpec, load_dense
from targets.baselines.ort import OnnxRuntimeTarget

BLOCK = dict(scheme="block", sparsity=0.5, block="4x4", bits=8)
PRUNED = {"features.4", "features.7", "features.11", "features.14", "fc1"}  # first and last layers are exempt


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """smallcnn-digits as a .pt2 program and as an ONNX model (the exporter writes its weights to m.onnx.data)."""
    d = tmp_path_factory.mktemp("files")
    x = torch.zeros(1, 3, 32, 32)
    ep = torch.export.export(zoo.build("smallcnn-digits"), (x,))
    torch.export.save(ep, d / "m.pt2")
    (d / "onnx").mkdir()
    with contextlib.redirect_stdout(io.StringIO()):
        torch.onnx.export(ep, (x,), str(d / "onnx" / "m.onnx"), dynamo=True, verbose=False)
    assert (d / "onnx" / "m.onnx.data").is_file()
    return d


def test_pt2_is_pruned_quantized_and_finetuned_like_a_zoo_model(files, tmp_path):
    path = str(files / "m.pt2")
    v = make_variant(ModelSpec(path=path), CompressionSpec(**BLOCK, finetune_epochs=1, data="digits"))
    dense = torch.export.load(path).state_dict
    mf = v.manifest
    assert mf["family"] == "pt2" and mf["accuracy_dataset"] == "digits" and "finetuned" in mf["accuracy"]
    assert v.hash != load_dense(ModelSpec(path=path)).hash
    layers = {row["layer"]: row for row in mf["layers"]}
    assert {n for n, row in layers.items() if row["achieved_sparsity"] > 0} == PRUNED
    params = dict(v.module.named_parameters())
    for name in PRUNED:
        mask = v.masks[f"{name}.weight"]
        assert layers[name]["achieved_sparsity"] == pytest.approx(0.5, abs=0.01)
        assert (params[f"{name}.weight"][~mask] == 0).all()
        assert layers[name]["macs_effective"] == pytest.approx(layers[name]["macs_dense"] / 2, rel=0.02)
    assert all(row["weight_bits"] == 8 and row["act_bits"] == 8 for row in layers.values())
    # fine-tuning trained the program's weights and its batch-norm statistics (not only quantization)
    w, w0 = params["features.0.weight"].detach(), dense["features.0.weight"]
    assert (w - w0).abs().max() > v.qweights["features.0"].scale.max()  # more than rounding moves a weight
    assert not torch.equal(v.module.state_dict()["features.1.running_mean"], dense["features.1.running_mean"])
    assert mf["macs_dense"] == load_dense(ModelSpec(path=path)).manifest["macs_dense"] > mf["macs_effective"]

    saved = load_variant(save_variant(v, tmp_path / "v"))
    assert saved.hash == v.hash and [n for n, _ in weighted_layers(saved.module)] == list(layers)
    np.testing.assert_array_equal(saved.reference_output, v.reference_output)
    again = make_variant(ModelSpec(path=path), CompressionSpec(**BLOCK, finetune_epochs=1, data="digits"))
    assert again.hash == v.hash  # the cache key holds across calls


def test_onnx_is_pruned_and_quantized_one_shot_in_the_graph(files):
    v = make_variant(ModelSpec(path=str(files / "onnx" / "m.onnx")), CompressionSpec(**BLOCK))
    mf = v.manifest
    assert mf["family"] == "onnx" and mf["act_bits"] is None and "weights only" in mf["quantization"]
    assert v.hash != load_dense(ModelSpec(path=str(files / "onnx" / "m.onnx"))).hash
    weights = {i.name: numpy_helper.to_array(i) for i in onnx.load(v.onnx_path).graph.initializer}
    layers = {row["layer"]: row for row in mf["layers"]}
    for name in PRUNED:
        w, keep = weights[f"{name}.weight"], v.masks[f"{name}.weight"].numpy()
        assert (w[~keep] == 0).all() and (w == 0).mean() == pytest.approx(0.5, abs=0.01)
        assert layers[name]["achieved_sparsity"] == pytest.approx(0.5, abs=0.01)
        levels = w.reshape(w.shape[0], -1) / v.qweights[name].scale.numpy()[:, None]  # 8-bit levels, dequantized
        np.testing.assert_allclose(levels, np.round(levels), atol=1e-3)
    assert mf["macs_effective"] < 0.6 * mf["macs_dense"]
    sess = ort.InferenceSession(v.onnx_path, providers=["CPUExecutionProvider"])
    out = sess.run(None, {sess.get_inputs()[0].name: v.example_input()})[0]
    np.testing.assert_allclose(out, v.reference_output, atol=1e-4)


@pytest.mark.parametrize("option", [dict(finetune_epochs=1), dict(pretrain_epochs=1), dict(qat_epochs=1, bits=8),
                                    dict(admm_epochs=1, method="admm"), dict(method="iterative")])
def test_onnx_training_options_fail_in_one_line(files, option):
    path = str(files / "onnx" / "m.onnx")
    with pytest.raises(CompressionError) as err:
        make_variant(ModelSpec(path=path), CompressionSpec(scheme="block", sparsity=0.5, **option))
    assert str(err.value) == (f"{path}: fine-tuning needs a torch program (.pt2); an ONNX model can only be pruned "
                              "and quantized one-shot")


def test_external_data_is_hashed_and_travels_with_the_model(files, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(files / "onnx", a)
    shutil.copytree(files / "onnx", b)
    data = np.fromfile(b / "m.onnx.data", dtype=np.float32)
    data[:64] += 1.0  # new first-conv weights, same model file
    data.tofile(b / "m.onnx.data")
    va, vb = (load_dense(ModelSpec(path=str(d / "m.onnx"))) for d in (a, b))
    assert (a / "m.onnx").read_bytes() == (b / "m.onnx").read_bytes()
    assert va.hash != vb.hash
    assert np.abs(va.reference_output - vb.reference_output).max() > 1e-3

    target = OnnxRuntimeTarget()
    options = target.parse_options({})
    build = tmp_path / "artifact"
    build.mkdir()
    manifest = target.compile(vb, options, build)
    session = target.open(None, options)
    try:
        out = session.load(Artifact(target.name, build, manifest, vb)).infer(vb.example_input())
    finally:
        session.close()
    np.testing.assert_allclose(out, vb.reference_output, atol=1e-4)


def test_cli_compresses_a_program_file_and_refuses_onnx_training_in_one_line(files, tmp_path):
    from tests.conftest import run_cli

    r = run_cli("compress", "--model", files / "m.pt2", "--scheme", "block", "--sparsity", "0.5", "--block", "4x4",
                "--bits", "8", "--out", tmp_path / "v", check=True)
    vdir = next((tmp_path / "v").iterdir())
    assert vdir.name.startswith("m-block4x4-s0.5-w8a8-") and "features.4" in r.stdout
    assert (vdir / "program.pt2").is_file() and load_variant(vdir).manifest["sparsity"] == 0.5
    r = run_cli("compress", "--model", files / "onnx" / "m.onnx", "--scheme", "block", "--sparsity", "0.5",
                "--finetune-epochs", "1", "--data", "digits", "--out", tmp_path / "v2")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "fine-tuning needs a torch program" in r.stderr
