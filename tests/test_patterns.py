"""canonicalize's pattern rewriters (gelu, layernorm, hardswish, silu) on real torch and tf2onnx exports."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import pytest
import torch
import torch.nn.functional as F
from helpers import onnx_nodes
from onnx import helper
from torch import nn

from onnx_snn.options import CompileOptions
from onnx_snn.passes.base import PassContext
from onnx_snn.passes.canonicalize import canonicalize

TOL = {"rtol": 1e-5, "atol": 1e-5}
BATCH = 5  # the exports trace batch 3 (torch) or 2 (fixtures); the checks run another one


def canonical(model: onnx.ModelProto) -> gs.Graph:
    return canonicalize.run(gs.import_onnx(model), PassContext(options=CompileOptions(), show_progress=False))


def ops(graph: gs.Graph) -> list[str]:
    """The ops in order, a Gelu with its approximate attribute: ["Gemm", "Gelu(tanh)"]."""
    return [f"{n.op}({n.attrs['approximate']})" if n.op == "Gelu" else n.op for n in graph.nodes]


def assert_silu_canonical(graph: gs.Graph) -> None:
    """Every Sigmoid(u) is read by exactly one Mul(u, sigmoid)."""
    for sigmoid in (n for n in graph.nodes if n.op == "Sigmoid"):
        (mul,) = sigmoid.outputs[0].outputs
        assert mul.op == "Mul" and mul.inputs[0] is sigmoid.inputs[0] and mul.inputs[1] is sigmoid.outputs[0]


def sample(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((BATCH, *shape[1:])).astype(np.float32)


# --- torch exports -------------------------------------------------------------------------------


class Lambda(nn.Module):
    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


class RsqrtLayerNorm(nn.Module):
    """LayerNorm over the last axis written by hand with d·d and rsqrt."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.weight, self.bias = nn.Parameter(torch.randn(width)), nn.Parameter(torch.randn(width))

    def forward(self, x):
        d = x - x.mean(-1, keepdim=True)
        return d * torch.rsqrt((d * d).mean(-1, keepdim=True) + 1e-5) * self.weight + self.bias


class ChannelsFirstLayerNorm(nn.Module):
    """ConvNeXt's LayerNorm over the channels of NCHW."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight, self.bias = nn.Parameter(torch.randn(channels)), nn.Parameter(torch.randn(channels))

    def forward(self, x):
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        return self.weight[:, None, None] * ((x - u) / torch.sqrt(s + 1e-6)) + self.bias[:, None, None]


class PermutedLayerNorm(nn.Module):
    """nn.LayerNorm over the channels of NCHW between two permutes."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels)

    def forward(self, x):
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def _dense(act: nn.Module) -> nn.Module:
    return nn.Sequential(nn.Linear(8, 8), act)


def _conv(norm: nn.Module) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 1), norm)


DENSE, SEQUENCE, IMAGE = (3, 8), (3, 5, 8), (3, 3, 5, 5)
NCHW_LN = ["Conv", "Transpose", "LayerNormalization", "Transpose"]
#: name -> (net, input shape, exports as exporter+opset, canonical ops from every one of them)
TORCH_CASES = {
    "gelu": (lambda: _dense(nn.GELU()), DENSE, ("legacy17", "dynamo18", "dynamo20"), ["Gemm", "Gelu(none)"]),
    "gelu_tanh": (lambda: _dense(nn.GELU(approximate="tanh")), DENSE, ("legacy17", "dynamo18"), ["Gemm", "Gelu(tanh)"]),
    "layernorm": (
        lambda: nn.Sequential(nn.Linear(8, 8), nn.LayerNorm(8)),
        SEQUENCE,
        ("legacy13", "legacy17"),
        ["MatMul", "Add", "LayerNormalization"],
    ),
    "rsqrt_layernorm": (
        lambda: nn.Sequential(nn.Linear(8, 8), RsqrtLayerNorm(8)),
        SEQUENCE,
        ("legacy17", "dynamo18"),
        ["MatMul", "Add", "LayerNormalization"],
    ),
    "channels_first_layernorm": (lambda: _conv(ChannelsFirstLayerNorm(4)), IMAGE, ("legacy17", "dynamo18"), NCHW_LN),
    "permuted_layernorm": (lambda: _conv(PermutedLayerNorm(4)), IMAGE, ("legacy13", "legacy17"), NCHW_LN),
    "silu": (lambda: _dense(nn.SiLU()), DENSE, ("legacy17",), ["Gemm", "Sigmoid", "Mul"]),
    "quick_gelu": (
        lambda: _dense(Lambda(lambda x: x * torch.sigmoid(1.702 * x))),
        DENSE,
        ("legacy17", "dynamo18"),
        ["Gemm", "BatchNormalization", "Sigmoid", "Mul", "BatchNormalization"],
    ),
    "relu6_hardswish": (
        lambda: _dense(Lambda(lambda x: x * F.relu6(x + 3) / 6)),
        DENSE,
        ("legacy17", "dynamo18"),
        ["Gemm", "HardSwish"],
    ),
    "hardsigmoid_hardswish": (
        lambda: _dense(Lambda(lambda x: x * F.hardsigmoid(x))),
        DENSE,
        ("legacy17", "dynamo18"),
        ["Gemm", "HardSwish"],
    ),
    "hardswish_opset13": (lambda: _dense(nn.Hardswish()), DENSE, ("legacy13",), ["Gemm", "HardSwish"]),
}
TORCH_EXPORTS = [(name, export) for name, (_, _, exports, _) in TORCH_CASES.items() for export in exports]


def export_torch(net: nn.Module, shape: tuple[int, ...], export: str, path: Path) -> onnx.ModelProto:
    """`net` exported by torch's `export` ("legacy13", "dynamo18", ...); legacy with a dynamic batch."""
    dynamo, opset = export.startswith("dynamo"), int(export[-2:])
    extra = {} if dynamo else {"dynamic_axes": {"x": {0: "N"}, "y": {0: "N"}}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            (torch.randn(*shape),),
            str(path),
            dynamo=dynamo,
            opset_version=opset,
            input_names=["x"],
            output_names=["y"],
            **extra,
        )
    return onnx.load(str(path))


@pytest.fixture(scope="module")
def torch_nets() -> dict[str, nn.Module]:
    nets = {}
    for name, (build, *_) in TORCH_CASES.items():
        torch.manual_seed(0)
        nets[name] = build().eval()
    return nets


@pytest.mark.parametrize("name,export", TORCH_EXPORTS)
def test_torch_export_becomes_one_op(name, export, torch_nets, ort_run, tmp_path):
    _, shape, _, expected_ops = TORCH_CASES[name]
    net = torch_nets[name]
    graph = canonical(export_torch(net, shape, export, tmp_path / f"{name}.onnx"))
    assert ops(graph) == expected_ops
    assert_silu_canonical(graph)
    x = sample(shape)
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ort_run(graph, x)[0], expected, **TOL)


def test_layernorm_keeps_epsilon_and_affine(torch_nets, tmp_path):
    net = torch_nets["rsqrt_layernorm"]
    graph = canonical(export_torch(net, SEQUENCE, "legacy17", tmp_path / "ln.onnx"))
    (norm,) = [n for n in graph.nodes if n.op == "LayerNormalization"]
    assert norm.attrs["axis"] == -1 and norm.attrs["epsilon"] == pytest.approx(1e-5)
    np.testing.assert_allclose(norm.inputs[1].values, net[1].weight.detach().numpy(), rtol=1e-6)
    np.testing.assert_allclose(norm.inputs[2].values, net[1].bias.detach().numpy(), rtol=1e-6)


def test_canonical_silu_is_stable(torch_nets, tmp_path):
    graph = canonical(export_torch(torch_nets["quick_gelu"], DENSE, "legacy17", tmp_path / "q.onnx"))
    assert ops(canonical(gs.export_onnx(graph))) == ops(graph)


# --- tf2onnx exports -----------------------------------------------------------------------------


def _keras_cases() -> dict[str, tuple[object, tuple[int, ...], list[str]]]:
    """name -> (Keras model with random weights, input shape, canonical ops)."""
    import keras
    import tensorflow as tf
    from keras import layers

    def model(shape: tuple[int, ...], *stack: layers.Layer) -> keras.Model:
        keras.utils.set_random_seed(0)
        x = inputs = keras.Input(shape, name="x")
        for layer in stack:
            x = layer(x)
        built = keras.Model(inputs, x)
        rng = np.random.default_rng(0)
        for layer in built.layers:  # non-trivial gamma, beta and biases
            layer.set_weights([rng.uniform(-1, 1, w.shape).astype(np.float32) for w in layer.get_weights()])
        return built

    return {
        "gelu_layernorm": (
            model((5, 8), layers.Dense(8, activation="gelu"), layers.LayerNormalization(epsilon=1e-3)),
            (2, 5, 8),
            ["MatMul", "Add", "Gelu(none)", "LayerNormalization"],
        ),
        "nhwc_layernorm": (
            model((4, 4, 3), layers.Conv2D(6, 1), layers.LayerNormalization()),
            (2, 4, 4, 3),
            ["Transpose", "Conv", "Transpose", "LayerNormalization"],
        ),
        "silu_hard_silu": (
            model((8,), layers.Dense(8, activation="silu"), layers.Dense(8, activation="hard_silu")),
            (2, 8),
            ["Gemm", "Sigmoid", "Mul", "Gemm", "HardSwish"],
        ),
        "swish_beta": (
            model((8,), layers.Dense(8), layers.Activation(lambda t: tf.nn.silu(t, beta=1.5))),
            (2, 8),
            ["Gemm", "BatchNormalization", "Sigmoid", "Mul", "BatchNormalization"],
        ),
    }


KERAS_CASES = ["gelu_layernorm", "nhwc_layernorm", "silu_hard_silu", "swish_beta"]


@pytest.fixture(scope="module")
def keras_exports(tmp_path_factory) -> dict[str, tuple[onnx.ModelProto, object, tuple[int, ...], list[str]]]:
    """Each Keras case exported by tf2onnx at opset 17 the way the repo does (models.keras_nets.export_keras)."""
    pytest.importorskip("tensorflow")
    pytest.importorskip("tf2onnx")
    from onnx_snn.models.keras_nets import export_keras

    folder = tmp_path_factory.mktemp("keras_exports")
    exports = {}
    for name, (model, shape, expected_ops) in _keras_cases().items():
        path = export_keras(model, folder / f"{name}.onnx", input_shape=shape[1:])
        exports[name] = (onnx.load(str(path)), model, shape, expected_ops)
    return exports


@pytest.mark.tf
@pytest.mark.parametrize("name", KERAS_CASES)
def test_tf2onnx_export_becomes_one_op(name, keras_exports, ort_run):
    model, keras_model, shape, expected_ops = keras_exports[name]
    graph = canonical(model)
    assert ops(graph) == expected_ops
    assert_silu_canonical(graph)
    x = sample(shape)
    np.testing.assert_allclose(ort_run(graph, x)[0], keras_model(x, training=False).numpy(), **TOL)


@pytest.mark.parametrize(
    "name,expected_ops",
    [
        ("keras_dense_gelu_layernorm", ["MatMul", "Add", "Gelu(none)", "LayerNormalization", "MatMul", "Add"]),
        (
            "keras_dense_gelu_layernorm.raw_tf2onnx_erfc",
            ["MatMul", "Add", "Gelu(none)", "LayerNormalization", "MatMul", "Add"],
        ),
        ("keras_dense_gelu_tanh_approx", ["Gemm", "Gelu(tanh)"]),
    ],
)
def test_tf_fixture_becomes_one_op(name, expected_ops, tf_fixtures, ort_run):
    graph = canonical(onnx.load(tf_fixtures / f"{name}.onnx"))
    assert ops(graph) == expected_ops
    stem = name.split(".")[0]
    x, expected = np.load(tf_fixtures / f"{stem}.input.npy"), np.load(tf_fixtures / f"{stem}.expected.npy")
    np.testing.assert_allclose(ort_run(graph, x)[0], expected, **TOL)


# --- what is left alone --------------------------------------------------------------------------

GELU_NODES = onnx_nodes(
    "z = Div(x, root2)",
    "e = Erf(z)",
    "p = Add(e, one)",
    "xp = Mul(x, p)",
    "y = Mul(xp, half)",
)
GELU_CONSTANTS = {"root2": np.float32(np.sqrt(2)), "one": np.float32(1), "half": np.float32(0.5)}


@pytest.mark.parametrize("change", ["erf_read_elsewhere", "wrong_constant"])
def test_gelu_lookalike_is_left(change, make_model, ort_run):
    outputs, constants = {"y": ["N", 4]}, dict(GELU_CONSTANTS)
    if change == "erf_read_elsewhere":
        outputs["e"] = ["N", 4]
    else:
        constants["root2"] = np.float32(1.5)
    model = make_model(GELU_NODES, {"x": ["N", 4]}, outputs, constants)
    graph = canonical(model)
    assert "Gelu" not in ops(graph) and "Erf" in ops(graph)
    x = sample((1, 4))
    np.testing.assert_allclose(ort_run(graph, x)[0], ort_run(model, x)[0], **TOL)


LAYERNORM_NODES = onnx_nodes(
    "mu = ReduceMean(x, axes)",
    "d = Sub(x, mu)",
    "sq = Mul(d, d)",
    "var = ReduceMean(sq, var_axes)",
    "ve = Add(var, eps)",
    "s = Sqrt(ve)",
    "n = Div(d, s)",
    "y = Mul(n, gamma)",
)


def layernorm_lookalike(make_model, gamma: np.ndarray, var_axis: int) -> onnx.ModelProto:
    """x[N, 3, 4]: (x - mean) / sqrt(var + 1e-5) * gamma, mean over the last axis, var over `var_axis`."""
    constants = {
        "axes": np.array([-1], np.int64),
        "var_axes": np.array([var_axis], np.int64),
        "eps": np.float32(1e-5),
        "gamma": gamma.astype(np.float32),
    }
    return make_model(LAYERNORM_NODES, {"x": ["N", 3, 4]}, {"y": ["N", 3, 4]}, constants, opset=18)


def test_layernorm_scale_across_other_axes_stays_outside(make_model, ort_run):
    model = layernorm_lookalike(make_model, np.random.default_rng(0).uniform(0.5, 1.5, (3, 1)), var_axis=-1)
    graph = canonical(model)
    assert ops(graph) == ["LayerNormalization", "BatchNormalization"]  # γ along axis 1: a per-channel affine
    x = sample((1, 3, 4))
    np.testing.assert_allclose(ort_run(graph, x)[0], ort_run(model, x)[0], **TOL)


def test_variance_over_other_axes_is_not_layernorm(make_model, ort_run):
    model = layernorm_lookalike(make_model, np.random.default_rng(0).uniform(0.5, 1.5, 4), var_axis=1)
    graph = canonical(model)
    assert "LayerNormalization" not in ops(graph) and "Sqrt" in ops(graph)
    x = sample((1, 3, 4))
    np.testing.assert_allclose(ort_run(graph, x)[0], ort_run(model, x)[0], **TOL)


def test_sigmoid_gating_another_tensor_is_left(make_model, ort_run):
    nodes = [
        helper.make_node("Gemm", ["x", "w"], ["z"], transB=1),
        helper.make_node("Sigmoid", ["z"], ["g"]),
        helper.make_node("Mul", ["g", "x"], ["y"]),
    ]
    model = make_model(
        nodes,
        {"x": ["N", 4]},
        {"y": ["N", 4]},
        {"w": np.random.default_rng(0).standard_normal((4, 4)).astype(np.float32)},
    )
    graph = canonical(model)
    assert ops(graph) == ["Gemm", "Sigmoid", "Mul"] and graph.nodes[2].inputs[1] is graph.inputs[0]
    x = sample((1, 4))
    np.testing.assert_allclose(ort_run(graph, x)[0], ort_run(model, x)[0], **TOL)
