"""Tests of onnx_snn.models: data loaders, reference nets, training, export, zoo and demo assets."""

from __future__ import annotations

import gzip

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from conftest import needs_fashion
from helpers import seeded_net
from onnx import numpy_helper

from onnx_snn.errors import SnnError
from onnx_snn.models import zoo
from onnx_snn.models.architecture import TrainSettings
from onnx_snn.models.data import FASHION_DIR_ENV, load_digits_split, load_fashion_mnist, read_idx
from onnx_snn.models.export import export_torch
from onnx_snn.models.make_demo_assets import DEFAULT_OUT_DIR
from onnx_snn.models.torch_nets import MLP, LeNet, SmallResNet
from onnx_snn.models.train import evaluate_accuracy, predict_logits, train
from onnx_snn.models.zoo import Recipe, get_reference


def run_onnx(path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"x": x})[0]


def constant_value(model: onnx.ModelProto, name: str) -> np.ndarray | None:
    """The value of tensor `name` if an initializer or Constant node defines it."""
    for init in model.graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init)
    for node in model.graph.node:
        if node.op_type == "Constant" and node.output[0] == name:
            return numpy_helper.to_array(node.attribute[0].t)
    return None


@pytest.fixture(scope="module")
def digits():
    return load_digits_split()


@pytest.fixture(scope="module")
def trained_mlp(digits):
    """The digits MLP trained 30 epochs (slow tests only)."""
    x_train, y_train, _, _ = digits
    torch.manual_seed(0)
    return train(MLP((1, 8, 8), hidden=(64,)), x_train, y_train, TrainSettings(30, batch_size=64))


@pytest.fixture(scope="module")
def trained_lenet(digits):
    """The digits LeNet trained 20 epochs (slow tests only)."""
    x_train, y_train, _, _ = digits
    torch.manual_seed(0)
    return train(LeNet(1, 10, image_size=8), x_train, y_train, TrainSettings(20, batch_size=64))


@pytest.fixture(scope="module")
def digits_mlp():
    """The digits MLP untrained (seeded): the exporters' tests need its layers, not its accuracy."""
    return seeded_net(lambda: MLP((1, 8, 8), hidden=(64,)))


@pytest.fixture(scope="module")
def digits_lenet():
    """The digits LeNet untrained (seeded), with random BatchNorm statistics."""
    return seeded_net(lambda: LeNet(1, 10, image_size=8))


@pytest.fixture(scope="module")
def resnet():
    """An untrained SmallResNet with random BatchNorm statistics, so BN folding is not trivial."""
    return seeded_net(lambda: SmallResNet(1, 10, widths=(8, 16)))


def test_digits_split_shapes_and_ranges(digits):
    x_train, y_train, x_test, y_test = digits
    assert x_train.shape == (1437, 1, 8, 8) and x_test.shape == (360, 1, 8, 8)
    assert x_train.dtype == x_test.dtype == np.float32
    assert y_train.dtype == y_test.dtype == np.int64
    assert x_train.min() == 0.0 and x_train.max() == 1.0
    assert set(np.unique(y_test)) == set(range(10))


def test_digits_split_is_seeded():
    a, b = load_digits_split(seed=1), load_digits_split(seed=1)
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    assert not np.array_equal(a[1], load_digits_split(seed=2)[1])


@pytest.mark.slow
@pytest.mark.parametrize("net", ["trained_mlp", "trained_lenet"])
def test_digits_training_reaches_90_percent(net, digits, request):
    _, _, x_test, y_test = digits
    model = request.getfixturevalue(net)
    assert not model.training
    assert evaluate_accuracy(model, x_test, y_test) > 0.9


@pytest.mark.parametrize("dynamo", [False, True], ids=["legacy", "dynamo"])
@pytest.mark.parametrize("net", ["digits_mlp", "digits_lenet", "resnet"])
def test_export_matches_torch_at_another_batch(net, dynamo, digits, request, tmp_path):
    model = request.getfixturevalue(net)
    x_test = digits[2]
    path = export_torch(model, torch.from_numpy(x_test[:2]), tmp_path / "m.onnx", dynamo=dynamo)
    exported = onnx.load(path)
    assert [i.name for i in exported.graph.input] == ["x"]
    assert [o.name for o in exported.graph.output] == ["logits"]
    assert exported.opset_import[0].version == (18 if dynamo else 17)
    assert not list(tmp_path.glob("*.data")) and not list(tmp_path.glob(".*tmp*"))
    x = x_test[:7]
    np.testing.assert_allclose(run_onnx(path, x), predict_logits(model, x), atol=1e-4)


def test_dynamo_fixed_batch_reshapes_to_that_batch(digits_lenet, digits, tmp_path):
    x = digits[2][:3]
    path = export_torch(digits_lenet, torch.from_numpy(x), tmp_path / "m.onnx", dynamo=True, dynamic_batch=False)
    exported = onnx.load(path)
    assert exported.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 3
    shapes = [constant_value(exported, n.input[1]) for n in exported.graph.node if n.op_type == "Reshape"]
    assert any(s is not None and s[0] == 3 for s in shapes), shapes
    np.testing.assert_allclose(run_onnx(path, x), predict_logits(digits_lenet, x), atol=1e-4)


def test_export_single_sample_still_gets_dynamic_batch(digits_mlp, digits, tmp_path):
    x = digits[2]
    path = export_torch(digits_mlp, torch.from_numpy(x[:1]), tmp_path / "m.onnx", dynamo=False)
    assert onnx.load(path).graph.input[0].type.tensor_type.shape.dim[0].dim_param
    np.testing.assert_allclose(run_onnx(path, x[:4]), predict_logits(digits_mlp, x[:4]), atol=1e-4)


def test_export_rejects_opset_out_of_range(digits_mlp, tmp_path):
    with pytest.raises(ValueError, match="opset"):
        export_torch(digits_mlp, torch.zeros(2, 1, 8, 8), tmp_path / "m.onnx", dynamo=False, opset=13)


def test_lenet_rejects_side_not_multiple_of_4():
    with pytest.raises(ValueError, match="multiple of 4"):
        LeNet(image_size=10)


def test_fashion_loader_names_apt_package_when_files_missing(tmp_path, monkeypatch):
    monkeypatch.setenv(FASHION_DIR_ENV, str(tmp_path))
    with pytest.raises(SnnError) as info:
        load_fashion_mnist("test")
    message = str(info.value)
    assert str(tmp_path) in message and "apt-get install -y dataset-fashion-mnist" in message
    assert "\n" not in message


def test_read_idx_parses_header_and_rejects_truncation(tmp_path):
    data = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    header = bytes([0, 0, 0x08, 3]) + np.array(data.shape, dtype=">u4").tobytes()
    good, bad = tmp_path / "good.gz", tmp_path / "bad.gz"
    good.write_bytes(gzip.compress(header + data.tobytes()))
    bad.write_bytes(gzip.compress(header + data.tobytes()[:-1]))
    np.testing.assert_array_equal(read_idx(good), data)
    with pytest.raises(SnnError, match="bad.gz"):
        read_idx(bad)


@needs_fashion
def test_fashion_test_split_shapes_and_ranges():
    x, y = load_fashion_mnist("test")
    assert x.shape == (10000, 1, 28, 28) and x.dtype == np.float32
    assert y.shape == (10000,) and y.dtype == np.int64
    assert x.min() == 0.0 and x.max() == 1.0 and set(np.unique(y)) == set(range(10))


@pytest.mark.slow
@needs_fashion
def test_fashion_lenet_learns_from_a_subset():
    x_train, y_train = load_fashion_mnist("train")
    x_test, y_test = load_fashion_mnist("test")
    torch.manual_seed(0)
    model = train(LeNet(1, 10, image_size=28), x_train[:10000], y_train[:10000], TrainSettings(1))
    assert evaluate_accuracy(model, x_test[:2000], y_test[:2000]) > 0.7


#: the zoo's digits MLP shrunk to 8 hidden units and 0 epochs: get_reference runs its whole path (build,
#: "train", evaluate, cache, export) in well under a second, on weights that are the seeded initial ones
TINY_RECIPE = Recipe("digits", "MLP", {"in_shape": (1, 8, 8), "hidden": (8,)}, epochs=0)
#: the zoo tests' references: the tiny recipe in the fast suite, the real (trained) digits-mlp in the slow one
ZOO_NAMES = [
    pytest.param("tiny-digits-mlp", id="untrained-tiny"),
    pytest.param("digits-mlp", id="digits-mlp", marks=pytest.mark.slow),
]


@pytest.fixture
def zoo_name(request, monkeypatch) -> str:
    """The parametrized reference name, with "tiny-digits-mlp" (TINY_RECIPE) added to the zoo's recipes."""
    monkeypatch.setitem(zoo.RECIPES, "tiny-digits-mlp", TINY_RECIPE)
    return request.param


@pytest.mark.parametrize("zoo_name", ZOO_NAMES, indirect=True)
def test_zoo_trains_once_then_loads_from_cache(zoo_name, tmp_path, monkeypatch):
    first = get_reference(zoo_name, cache_dir=tmp_path)
    assert first.torch_model is not None
    assert first.ann_test_accuracy > (0.9 if zoo_name == "digits-mlp" else 0.0)
    x_test, y_test = first.load_test()
    assert x_test.shape == (360, 1, 8, 8) and y_test.dtype == np.int64
    assert first.load_calibration().shape == (1000, 1, 8, 8)
    onnx_accuracy = float(np.mean(run_onnx(first.onnx_path, x_test).argmax(1) == y_test))
    assert onnx_accuracy == pytest.approx(first.ann_test_accuracy)

    again = get_reference(zoo_name, cache_dir=tmp_path)
    assert again.torch_model is None
    assert (again.onnx_path, again.ann_test_accuracy) == (first.onnx_path, first.ann_test_accuracy)
    np.testing.assert_allclose(
        predict_logits(zoo.load_torch_model(again), x_test), predict_logits(first.torch_model, x_test), atol=1e-6
    )

    dynamo = get_reference(zoo_name, cache_dir=tmp_path, exporter="dynamo")
    assert dynamo.onnx_path != first.onnx_path and dynamo.ann_test_accuracy == first.ann_test_accuracy
    np.testing.assert_allclose(run_onnx(dynamo.onnx_path, x_test), run_onnx(first.onnx_path, x_test), atol=1e-4)

    if zoo_name == "tiny-digits-mlp":  # another recipe under the same name: the entry is stale, and retrained
        monkeypatch.setitem(
            zoo.RECIPES, zoo_name, Recipe("digits", "MLP", {"in_shape": (1, 8, 8), "hidden": (4,)}, epochs=0)
        )
        changed = get_reference(zoo_name, cache_dir=tmp_path)
        assert changed.torch_model is not None and not dynamo.onnx_path.exists()
        assert run_onnx(changed.onnx_path, x_test[:2]).shape == (2, 10)


@pytest.mark.parametrize("zoo_name", ZOO_NAMES, indirect=True)
def test_zoo_retraining_reproduces_the_weights(zoo_name, tmp_path):
    a = get_reference(zoo_name, cache_dir=tmp_path / "a")
    b = get_reference(zoo_name, cache_dir=tmp_path / "b")
    weights_a = [numpy_helper.to_array(t) for t in onnx.load(a.onnx_path).graph.initializer]
    weights_b = [numpy_helper.to_array(t) for t in onnx.load(b.onnx_path).graph.initializer]
    assert weights_a and len(weights_a) == len(weights_b)
    assert all(np.array_equal(u, v) for u, v in zip(weights_a, weights_b))
    np.testing.assert_array_equal(a.load_calibration(), b.load_calibration())


def test_zoo_rejects_unknown_name(tmp_path):
    with pytest.raises(ValueError, match="digits-mlp"):
        get_reference("no-such-model", cache_dir=tmp_path)


def test_shipped_demo_assets_are_small_and_accurate():
    model_path, data_path = DEFAULT_OUT_DIR / "digits_mlp.onnx", DEFAULT_OUT_DIR / "digits_test.npz"
    assert model_path.stat().st_size < 100_000 and data_path.stat().st_size < 100_000
    model = onnx.load(model_path)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [1, 8, 8]
    with np.load(data_path) as f:
        x, y, x_calib = f["x"], f["y"], f["x_calib"]
    assert x.dtype == x_calib.dtype == np.float32 and y.dtype == np.int64 and x_calib.shape[1:] == (1, 8, 8)
    assert np.mean(run_onnx(model_path, x).argmax(1) == y) > 0.9
