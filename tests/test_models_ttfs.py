"""Tests of the exact-mapping TTFS reference nets (issue 4): PyTorch and Keras twins ending in softmax.

The reference tests are slow on first use (they train the six nets, up to minutes each, cached
after under ~/.cache/onnx-snn): run them with `-m slow`.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from conftest import needs_reference_cache
from torch import nn

from onnx_snn.models.torch_nets import MLP
from onnx_snn.models.train import ends_in_softmax, predict_logits, probability_cross_entropy
from onnx_snn.models.ttfs_nets import TTFSVGG, TTFSDense, TTFSLeNet
from onnx_snn.models.zoo import get_reference, load_torch_model

#: minimum cached test accuracy of each reference
TORCH_TARGETS = {"fashion-ttfs-dense": 0.87, "fashion-ttfs-lenet": 0.88, "fashion-ttfs-vgg": 0.89}
KERAS_TARGETS = {f"keras-{name}": target for name, target in TORCH_TARGETS.items()}
#: test images on which the ONNX export must match the framework model
SAMPLES = 64


def check_export(path: Path, x: np.ndarray, expected: np.ndarray, image_dims: list[int]) -> None:
    """The ONNX at `path` takes "x" [N, *image_dims] with a dynamic N, its output "logits" comes
    straight out of a Softmax node, and onnxruntime's outputs on `x` are `expected` within 1e-4."""
    model = onnx.load(path)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert [i.name for i in model.graph.input] == ["x"] and [o.name for o in model.graph.output] == ["logits"]
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == image_dims
    (producer,) = [n for n in model.graph.node if "logits" in n.output]
    assert producer.op_type == "Softmax"
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (probabilities,) = session.run(["logits"], {"x": x})
    np.testing.assert_allclose(probabilities, expected, atol=1e-4)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_probability_cross_entropy_is_cross_entropy_of_the_logits():
    logits = torch.randn(16, 10) * 3
    labels = torch.randint(0, 10, (16,))
    expected = nn.functional.cross_entropy(logits, labels)
    torch.testing.assert_close(probability_cross_entropy(logits.softmax(dim=1), labels), expected)


def test_probability_cross_entropy_clips_vanished_probabilities():
    logits = torch.tensor([[0.0, 200.0]], requires_grad=True)
    loss = probability_cross_entropy(logits.softmax(dim=1), torch.tensor([0]))
    loss.backward()
    assert loss.item() == pytest.approx(-np.log(1e-7), rel=1e-4)
    assert torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("net", [TTFSDense, TTFSLeNet, TTFSVGG])
def test_ttfs_nets_end_in_softmax_and_return_probabilities(net):
    model = net().eval()
    assert ends_in_softmax(model) and not ends_in_softmax(MLP((1, 28, 28)))
    with torch.no_grad():
        probabilities = model(torch.rand(3, 1, 28, 28))
    assert probabilities.shape == (3, 10) and (probabilities >= 0).all()
    torch.testing.assert_close(probabilities.sum(dim=1), torch.ones(3))


@pytest.mark.tf
def test_keras_twins_have_the_torch_nets_layers():
    """Layer for layer, the Keras twins hold as many trainable weights as the torch nets."""
    pytest.importorskip("tensorflow")
    from onnx_snn.models.keras_nets import keras_ends_in_softmax, keras_ttfs_dense, keras_ttfs_lenet, keras_ttfs_vgg

    for build, net in [(keras_ttfs_dense, TTFSDense), (keras_ttfs_lenet, TTFSLeNet), (keras_ttfs_vgg, TTFSVGG)]:
        model = build()
        keras_sizes = [int(np.prod(w.shape)) for w in model.trainable_weights]
        torch_sizes = [p.numel() for p in net().parameters()]
        assert keras_sizes == torch_sizes, build.__name__
        assert keras_ends_in_softmax(model) and model.input_shape == (None, 28, 28, 1)


@pytest.mark.slow
@needs_reference_cache
@pytest.mark.parametrize("name", TORCH_TARGETS)
def test_torch_ttfs_reference(name):
    reference = get_reference(name)
    model = reference.torch_model or load_torch_model(reference)
    x, _ = reference.load_test()
    check_export(reference.onnx_path, x[:SAMPLES], predict_logits(model, x[:SAMPLES]), [1, 28, 28])
    assert reference.ann_test_accuracy >= TORCH_TARGETS[name]


@pytest.mark.slow
@pytest.mark.tf
@needs_reference_cache
@pytest.mark.parametrize("name", KERAS_TARGETS)
def test_keras_ttfs_reference(name):
    pytest.importorskip("tensorflow")
    pytest.importorskip("tf2onnx")
    from onnx_snn.models.keras_zoo import get_keras_reference, load_keras_model

    reference = get_keras_reference(name)
    x, _ = reference.load_test()
    expected = load_keras_model(reference).predict(x[:SAMPLES], verbose=0)
    check_export(reference.onnx_path, x[:SAMPLES], expected, [28, 28, 1])
    assert reference.ann_test_accuracy >= KERAS_TARGETS[name]


@pytest.mark.slow
@pytest.mark.tf
@needs_reference_cache
def test_keras_zoo_reexports_a_missing_onnx_without_retraining(tmp_path):
    pytest.importorskip("tensorflow")
    pytest.importorskip("tf2onnx")
    from onnx_snn.models.keras_zoo import get_keras_reference

    name = "keras-fashion-ttfs-dense"
    cached = get_keras_reference(name)
    shutil.copytree(cached.onnx_path.parent, tmp_path / name)
    (tmp_path / name / cached.onnx_path.name).unlink()
    again = get_keras_reference(name, cache_dir=tmp_path)
    assert again.onnx_path.exists() and again.train_seconds == cached.train_seconds
    x = again.load_calibration()[:SAMPLES]
    assert x.shape == (SAMPLES, 28, 28, 1)

    def run(path: Path) -> np.ndarray:
        return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(["logits"], {"x": x})[0]

    np.testing.assert_allclose(run(again.onnx_path), run(cached.onnx_path), atol=1e-6)
