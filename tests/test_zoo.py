"""The zoo has the published shapes: parameter and MAC counts from the graph match the literature."""

from __future__ import annotations

import pytest
import torch

from pruning import zoo
from pruning.errors import CompressionError
from pruning.macs import count_module, count_onnx
from pruning.variant import ModelSpec, load_dense

# torchvision's published figures for the ImageNet forms (params exact; GMACs as published, 2-3 digits)
PUBLISHED = {
    "resnet18-imagenet": (11_689_512, 1.81),
    "resnet50-imagenet": (25_557_032, 4.09),
    "vgg16-imagenet": (138_357_544, 15.47),
    "mobilenetv2-imagenet": (3_504_872, 0.30),
}


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_imagenet_forms_match_published_counts(name):
    params, gmacs = PUBLISHED[name]
    e = zoo.entry(name)
    c = count_module(zoo.build(name), torch.zeros(1, *e.input_shape))
    assert c.params == params
    assert round(c.macs_dense / 1e9, 2) == pytest.approx(gmacs, abs=0.006)


@pytest.mark.parametrize("name", [n for n in zoo.ZOO if n.endswith("-cifar")])
def test_cifar_forms_run_and_classify_ten_ways(name):
    m = zoo.build(name)
    with torch.inference_mode():
        assert m(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def small_cnn_macs() -> int:
    """Independent count: (H*W of the output) * Cout * Cin * k*k per conv, in*out per linear."""
    convs = [(32, 32, 3, 32), (16, 16, 32, 64), (16, 16, 64, 64), (8, 8, 64, 128), (8, 8, 128, 128)]
    return sum(h * w * cin * cout * 9 for h, w, cin, cout in convs) + 128 * 128 + 128 * 10


def test_mac_count_equals_independent_count():
    c = count_module(zoo.build("smallcnn-digits"), torch.zeros(1, 3, 32, 32))
    assert c.macs_dense == small_cnn_macs() == 29_213_952
    assert c.macs_effective == c.macs_dense  # dense weights from a seeded init have no zeros


def test_batch_scales_macs():
    v1 = load_dense(ModelSpec(name="smallcnn-digits", batch=1))
    v4 = load_dense(ModelSpec(name="smallcnn-digits", batch=4))
    assert v4.manifest["macs_dense"] == 4 * v1.manifest["macs_dense"]
    assert v4.reference_output.shape == (4, 10)


def test_byo_onnx_and_pt2_count_like_the_torch_model(tmp_path):
    m = zoo.build("smallcnn-digits")
    x = torch.zeros(1, 3, 32, 32)
    ep = torch.export.export(m, (x,))
    torch.export.save(ep, tmp_path / "m.pt2")
    torch.onnx.export(ep, (x,), str(tmp_path / "m.onnx"), dynamo=True)
    v_pt2 = load_dense(ModelSpec(path=str(tmp_path / "m.pt2")))
    v_onnx = load_dense(ModelSpec(path=str(tmp_path / "m.onnx")))
    assert v_pt2.manifest["macs_dense"] == v_onnx.manifest["macs_dense"] == small_cnn_macs()
    assert v_pt2.input_shape == v_onnx.input_shape == (1, 3, 32, 32)
    # both references agree with the torch module (ONNX one comes from onnx.reference, not a target)
    with torch.inference_mode():
        ref = m(torch.from_numpy(v_pt2.example_input())).numpy()
    assert abs(v_pt2.reference_output - ref).max() < 1e-5
    assert abs(v_onnx.reference_output - ref).max() < 1e-4
    # the ONNX exporter folds batch-norm into the convs: same MACs, slightly fewer stored parameters
    onnx_count = count_onnx(str(tmp_path / "m.onnx"))
    assert onnx_count.macs_dense == small_cnn_macs()
    assert 0.99 * v_pt2.manifest["params"] < onnx_count.params < v_pt2.manifest["params"]


def test_seeded_init_is_reproducible_and_hash_follows_weights():
    a = load_dense(ModelSpec(name="smallcnn-digits", seed=3))
    b = load_dense(ModelSpec(name="smallcnn-digits", seed=3))
    c = load_dense(ModelSpec(name="smallcnn-digits", seed=4))
    assert a.hash == b.hash != c.hash


def test_checkpoint_roundtrip_and_errors(tmp_path):
    m = zoo.build("smallcnn-digits", seed=7)
    torch.save({"state_dict": m.state_dict()}, tmp_path / "ck.pt")
    loaded = zoo.build("smallcnn-digits", seed=0, checkpoint=str(tmp_path / "ck.pt"))
    assert torch.equal(loaded.fc.weight, m.fc.weight)
    with pytest.raises(CompressionError, match="checkpoint not found"):
        zoo.build("smallcnn-digits", checkpoint=str(tmp_path / "nope.pt"))
    torch.save(zoo.build("resnet18-cifar").state_dict(), tmp_path / "other.pt")
    with pytest.raises(CompressionError, match="does not fit the model"):
        zoo.build("smallcnn-digits", checkpoint=str(tmp_path / "other.pt"))
    with pytest.raises(CompressionError, match="unknown model 'resnet19'"):
        zoo.build("resnet19")
