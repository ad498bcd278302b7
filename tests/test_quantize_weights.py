"""Memristive-crossbar weights (issue 6): the quantize_weights pass, its CLI and constrained fine-tuning.

Every constrained weight holds at most N distinct magnitudes per sign (per layer, or per output
channel) and its smallest non-zero magnitude is at least its largest divided by the ON/OFF ratio R.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from helpers import assert_user_error, digest, run_cli, seeded_net, tiny_relu_model
from onnx import helper

from onnx_snn.passes.hardware.crossbar import project
from onnx_snn.quantize import quantize_model

RNG = np.random.default_rng(0)


def assert_crossbar(weight: np.ndarray, levels: int, ratio: float, axis: int | None, rtol: float = 0.0) -> None:
    """At most `levels` magnitudes per sign and group, the smallest ≥ the largest / `ratio` (up to rtol)."""
    groups = [weight] if axis is None else [np.take(weight, c, axis=axis) for c in range(weight.shape[axis])]
    for group in groups:
        for sign in (1, -1):
            magnitudes = np.abs(group[group * sign > 0])
            if magnitudes.size:
                assert len(np.unique(magnitudes)) <= levels
                assert magnitudes.min() >= magnitudes.max() / ratio * (1 - rtol), (magnitudes.min(), magnitudes.max())


def random_weight(shape: tuple[int, ...]) -> np.ndarray:
    weight = RNG.normal(size=shape).astype(np.float32)
    weight[np.abs(weight) < 0.1] = 0.0
    return weight


@pytest.mark.parametrize("levels,ratio", [(2, 1.5), (4, 10.0), (16, 10.0), (64, 100.0)])
@pytest.mark.parametrize("shape,axis", [((32, 20), None), ((32, 20), 0), ((8, 3, 3, 3), 0), ((20, 12), 1)])
def test_project_levels_ratio_and_zeros(shape, axis, levels, ratio):
    weight = random_weight(shape)
    constrained = project(weight, levels, ratio, axis)
    assert constrained.dtype == weight.dtype and constrained.shape == weight.shape
    assert_crossbar(constrained, levels, ratio, axis)
    np.testing.assert_array_equal(np.sign(constrained), np.sign(weight))  # zeros stay zero, signs kept
    top = np.abs(weight).max()
    assert np.abs(constrained).max() == top  # the largest magnitude is a level
    step = top * (1 - 1 / ratio) / (levels - 1)
    inside = (np.abs(weight) >= top / ratio) & (weight != 0)  # only clipping moves a weight further than step / 2
    assert np.abs(constrained - weight)[inside].max() <= step / 2 * (1 + 1e-5)
    np.testing.assert_array_equal(project(constrained, levels, ratio, axis), constrained)  # a projection


def linear_zoo() -> onnx.ModelProto:
    """Conv -> Relu -> Flatten -> Gemm(transB=0) -> Gemm(transB=1) -> MatMul(W4) -> MatMul(W4 shared)."""
    inits = {
        "w1": random_weight((4, 2, 3, 3)),
        "b1": RNG.normal(size=4).astype(np.float32),
        "w2": random_weight((36, 12)),
        "b2": RNG.normal(size=12).astype(np.float32),
        "w3": random_weight((10, 12)),
        "b3": RNG.normal(size=10).astype(np.float32),
        "w4": random_weight((10, 10)) / 3,
    }
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c"], name="conv"),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("Flatten", ["r"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "w2", "b2"], ["g"], name="gemm_in_out"),
        helper.make_node("Gemm", ["g", "w3", "b3"], ["h"], name="gemm_out_in", transB=1),
        helper.make_node("MatMul", ["h", "w4"], ["m"], name="matmul1"),
        helper.make_node("MatMul", ["m", "w4"], ["y"], name="matmul2"),
    ]
    graph = helper.make_graph(
        nodes,
        "zoo",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 2, 5, 5])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", 10])],
        [onnx.numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def weights_of(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Input 1 of every Conv/Gemm/MatMul, by node name."""
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    return {n.name: inits[n.input[1]] for n in model.graph.node if n.op_type in ("Conv", "Gemm", "MatMul")}


@pytest.mark.parametrize("per_channel", [False, True], ids=["per-layer", "per-channel"])
def test_pass_constrains_every_weight_once_and_leaves_biases(per_channel):
    model = linear_zoo()
    result = quantize_model(model, levels=5, on_off_ratio=8.0, per_channel=per_channel)
    onnx.checker.check_model(result.model, full_check=True)
    axes = {"conv": 0, "gemm_in_out": 1, "gemm_out_in": 0, "matmul1": 1, "matmul2": 1}
    before, after = weights_of(model), weights_of(result.model)
    for name, axis in axes.items():
        assert_crossbar(after[name], 5, 8.0, axis if per_channel else None)
        np.testing.assert_array_equal(after[name], project(before[name], 5, 8.0, axis if per_channel else None))
    readers = {n.name: n.input for n in result.model.graph.node}
    assert readers["matmul1"][1] == readers["matmul2"][1]  # the shared weight is constrained once
    assert sorted(result.stats["layers"]) == ["conv", "gemm_in_out", "gemm_out_in", "matmul1"]
    assert result.stats["layers"]["matmul1"]["readers"] == ["matmul1", "matmul2"]
    biases = {t.name for t in result.model.graph.initializer}
    assert {"b1", "b2", "b3"} <= biases
    meta = {p.key: p.value for p in result.model.metadata_props}
    assert json.loads(meta["onnx_snn.weight_quantization"])["levels"] == 5


@pytest.fixture(scope="module")
def torch_lenet(tmp_path_factory) -> tuple[Path, Path]:
    """A LeNet for 8x8 digits (untrained, eval-mode BN) exported by torch.onnx's legacy exporter, and
    digits test data as an .npz with x and y."""
    torch = pytest.importorskip("torch")
    from onnx_snn.models import LeNet, export_torch, load_digits_split

    directory = tmp_path_factory.mktemp("lenet")
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notices
        path = export_torch(LeNet(image_size=8), torch.zeros(2, 1, 8, 8), directory / "lenet.onnx", dynamo=False)
    _, _, x_test, y_test = load_digits_split()
    np.savez(directory / "test.npz", x=x_test, y=y_test)
    return path, directory / "test.npz"


def assert_close_for_many_levels(path: Path, x: np.ndarray) -> None:
    """Constrained with N = 4096, R = 1e4 (per channel and per layer), the graph is valid and its
    outputs are within 1% of the ANN's largest output."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: x}
    expected = session.run(None, feed)[0]
    for per_channel in (False, True):
        result = quantize_model(path, levels=4096, on_off_ratio=1e4, per_channel=per_channel)
        onnx.checker.check_model(result.model, full_check=True)
        constrained = ort.InferenceSession(result.model.SerializeToString(), providers=["CPUExecutionProvider"])
        actual = constrained.run(None, feed)[0]
        assert np.abs(actual - expected).max() <= 0.01 * np.abs(expected).max()
        assert result.stats["layers"]


def test_torch_legacy_export_stays_valid_and_close(torch_lenet):
    path, data = torch_lenet
    assert_close_for_many_levels(path, np.load(data)["x"][:64])


@pytest.mark.slow
def test_torch_dynamo_export_stays_valid_and_close(tmp_path):
    torch = pytest.importorskip("torch")
    from onnx_snn.models import MLP, export_torch

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = export_torch(MLP((1, 8, 8), (32,)), torch.zeros(2, 1, 8, 8), tmp_path / "mlp.onnx", dynamo=True)
    assert_close_for_many_levels(path, RNG.uniform(size=(16, 1, 8, 8)).astype(np.float32))


def test_tf2onnx_matmul_weights(tf_fixtures):
    path = tf_fixtures / "keras_cnn_conv_bn_relu_avgpool_flatten_dense.onnx"
    assert_close_for_many_levels(path, np.load(path.with_name(path.stem + ".input.npy")))


def test_cli_writes_constrained_ann_and_reports_accuracy(torch_lenet, tmp_path):
    path, data = torch_lenet
    before = digest(path)
    out = tmp_path / "lenet.crossbar.onnx"
    result = run_cli(
        "quantize-weights",
        str(path),
        "-o",
        str(out),
        "--levels",
        "8",
        "--on-off-ratio",
        "10",
        "--per-channel",
        "--data",
        str(data),
    )
    assert result.returncode == 0, result.stderr
    assert "accuracy on 360 samples: before" in result.stdout
    assert digest(path) == before
    for name, weight in weights_of(onnx.load(out)).items():
        assert_crossbar(weight, 8, 10.0, 0)


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["--levels", "1"], "at least 2"),
        (["--levels", "0"], "at least 2"),
        (["--on-off-ratio", "1"], "greater than 1"),
        (["--on-off-ratio", "0.5"], "greater than 1"),
        (["--on-off-ratio", "nan"], "finite number"),
    ],
)
def test_cli_bad_levels_or_ratio(args, fragment, tmp_path):
    model = tmp_path / "tiny.onnx"
    onnx.save(tiny_relu_model(), model)
    out = tmp_path / "out.onnx"
    assert_user_error(run_cli("quantize-weights", str(model), "-o", str(out), *args), fragment)
    assert not out.exists()


def test_compile_bad_weight_levels(tmp_path):
    model = tmp_path / "tiny.onnx"
    onnx.save(tiny_relu_model(), model)
    assert_user_error(
        run_cli("compile", str(model), "-o", str(tmp_path / "out.onnx"), "--weight-levels", "1"), "at least 2"
    )
    assert_user_error(
        run_cli("compile", str(model), "-o", str(tmp_path / "out.onnx"), "--weight-levels", "4", "--on-off-ratio", "1"),
        "greater than 1",
    )


def test_cli_refuses_to_overwrite_input(tmp_path):
    model = tmp_path / "tiny.onnx"
    onnx.save(tiny_relu_model(), model)
    before = digest(model)
    assert_user_error(run_cli("quantize-weights", str(model), "-o", str(model)), "would overwrite the model")
    assert digest(model) == before


def test_compile_with_weight_levels_end_to_end(tmp_path):
    model, calib, out = tmp_path / "tiny.onnx", tmp_path / "calib.npy", tmp_path / "tiny.snn.onnx"
    onnx.save(tiny_relu_model(), model)
    np.save(calib, RNG.normal(size=(64, 4)).astype(np.float32))
    result = run_cli(
        "compile",
        str(model),
        "-o",
        str(out),
        "--calib",
        str(calib),
        "--weight-levels",
        "3",
        "--on-off-ratio",
        "4",
        "-q",
    )
    assert result.returncode == 0, result.stderr
    assert "PASS" in result.stdout and "quantize_weights" in result.stdout
    compiled = onnx.load(out)
    meta = {p.key: p.value for p in compiled.metadata_props}
    assert json.loads(meta["onnx_snn.options"])["weight_levels"] == 3
    assert set(json.loads(meta["onnx_snn.weight_quantization"])["layers"]) == {"fc1", "fc2"}
    weights = weights_of(compiled)
    assert set(weights) == {"fc1", "fc2"}
    for weight in weights.values():  # normalize rescales each layer by one positive factor
        assert_crossbar(weight, 3, 4.0, None, rtol=1e-6)


@pytest.mark.parametrize("per_channel", [False, True], ids=["per-layer", "per-channel"])
def test_finetune_keeps_the_constraint(per_channel):
    """finetune_constrained on an untrained (seeded) MLP for 2 epochs of one batch each: the weights
    move, and every Linear weight it returns is on the crossbar set (the slow test below trains first
    and checks the accuracy that survives)."""
    torch = pytest.importorskip("torch")
    from onnx_snn.models import MLP, finetune_constrained, load_digits_split

    x_train, y_train, _, _ = load_digits_split()
    net = seeded_net(lambda: MLP((1, 8, 8), (32,)))
    before = [m.weight.detach().clone() for m in net.modules() if isinstance(m, torch.nn.Linear)]
    tuned = finetune_constrained(
        net, x_train[:128], y_train[:128], levels=4, on_off_ratio=10.0, per_channel=per_channel, epochs=2, lr=1e-2
    )
    after = [m.weight.detach() for m in tuned.modules() if isinstance(m, torch.nn.Linear)]
    assert len(after) == 2 and not tuned.training
    for old, new in zip(before, after):
        assert not torch.equal(old, new)
        assert_crossbar(new.numpy(), 4, 10.0, 0 if per_channel else None)


@pytest.mark.slow
@pytest.mark.parametrize("per_channel", [False, True], ids=["per-layer", "per-channel"])
def test_finetune_under_constraint_on_digits(per_channel):
    torch = pytest.importorskip("torch")
    from onnx_snn.models import MLP, evaluate_accuracy, finetune_constrained, load_digits_split
    from onnx_snn.models.architecture import TrainSettings
    from onnx_snn.models.train import train

    x_train, y_train, x_test, y_test = load_digits_split()
    torch.manual_seed(0)
    net = train(MLP((1, 8, 8), (32,)), x_train, y_train, TrainSettings(5, lr=3e-3))
    tuned = finetune_constrained(
        net, x_train, y_train, levels=4, on_off_ratio=10.0, per_channel=per_channel, epochs=2, lr=3e-4
    )
    for module in tuned.modules():
        if isinstance(module, torch.nn.Linear):
            assert_crossbar(module.weight.detach().numpy(), 4, 10.0, 0 if per_channel else None)
    assert evaluate_accuracy(tuned, x_test, y_test) > 0.8


def test_finetune_rejects_bad_constraint():
    pytest.importorskip("torch")
    from onnx_snn.errors import SnnError
    from onnx_snn.models import MLP, finetune_constrained

    with pytest.raises(SnnError, match="at least 2"):
        finetune_constrained(MLP((4,), ()), np.zeros((2, 4), np.float32), np.zeros(2, np.int64), levels=1)
