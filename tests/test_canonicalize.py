"""canonicalize on real tf2onnx and torch exports, its rewriters one at a time, and its errors."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import pytest
import torch
from helpers import onnx_nodes, randomize_batchnorm
from onnx import helper
from torch import nn

from onnx_snn.errors import SnnError
from onnx_snn.options import CompileOptions
from onnx_snn.passes.base import PassContext
from onnx_snn.passes.canonicalize import canonicalize
from onnx_snn.passes.common import fold_bn
from onnx_snn.passes.graph_utils import TARGET_OPSET

TF_MODELS = [
    "keras_mlp_dense_relu",
    "keras_cnn_conv_bn_relu_avgpool_flatten_dense",
    "keras_dense_gelu_layernorm",
    "keras_dense_gelu_tanh_approx",
]
RAW_ERFC = "keras_dense_gelu_layernorm.raw_tf2onnx_erfc"
TOL = {"rtol": 1e-5, "atol": 1e-5}
TIME_BATCH = 32 * 2  # T * B: the batch the SNN runtime feeds


def canonical(model: onnx.ModelProto, source: str = "model.onnx") -> tuple[gs.Graph, PassContext]:
    ctx = PassContext(options=CompileOptions(), source=source, show_progress=False)
    return canonicalize.run(gs.import_onnx(model), ctx), ctx


def ops(graph: gs.Graph) -> list[str]:
    return [node.op for node in graph.nodes]


def random_input(shape: tuple[int, ...], batch: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, *shape[1:])).astype(np.float32)


# --- tf2onnx fixtures ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", TF_MODELS)
def test_tf_fixture_keeps_its_outputs(name, tf_fixtures, ort_run):
    model = onnx.load(tf_fixtures / f"{name}.onnx")
    x, expected = np.load(tf_fixtures / f"{name}.input.npy"), np.load(tf_fixtures / f"{name}.expected.npy")
    graph, ctx = canonical(model, str(tf_fixtures / f"{name}.onnx"))
    assert [t.name for t in graph.inputs] == [t.name for t in model.graph.input]
    assert [t.name for t in graph.outputs] == [t.name for t in model.graph.output]
    exported = gs.export_onnx(graph)
    onnx.checker.check_model(exported)
    assert {(o.domain, o.version) for o in exported.opset_import if o.domain in ("", "ai.onnx")} == {("", TARGET_OPSET)}
    np.testing.assert_allclose(ort_run(graph, x)[0], expected, **TOL)
    folded = fold_bn.run(graph, ctx)
    assert "BatchNormalization" not in ops(folded)
    np.testing.assert_allclose(ort_run(folded, x)[0], expected, **TOL)


@pytest.mark.parametrize("name", TF_MODELS)
def test_tf_fixture_batch_is_free(name, tf_fixtures, ort_run):
    model = onnx.load(tf_fixtures / f"{name}.onnx")
    shape = np.load(tf_fixtures / f"{name}.input.npy").shape
    graph, ctx = canonical(model)
    graph = fold_bn.run(graph, ctx)
    assert isinstance(graph.inputs[0].shape[0], str) and graph.outputs[0].shape[0] == graph.inputs[0].shape[0]
    for batch in (3, TIME_BATCH):
        x = random_input(shape, batch, seed=batch)
        np.testing.assert_allclose(ort_run(graph, x)[0], ort_run(model, x)[0], **TOL)


def test_tf_cnn_is_nchw_conv_flatten_gemm(tf_fixtures):
    graph, ctx = canonical(onnx.load(tf_fixtures / "keras_cnn_conv_bn_relu_avgpool_flatten_dense.onnx"))
    assert ops(graph) == ["Transpose", "Conv", "BatchNormalization", "Relu", "AveragePool", "Flatten", "Gemm"]
    assert graph.nodes[0].inputs[0] is graph.inputs[0]  # only the input-layout Transpose is left
    assert ops(fold_bn.run(graph, ctx)) == ["Transpose", "Conv", "Relu", "AveragePool", "Flatten", "Gemm"]


def test_tf_mlp_is_gemm(tf_fixtures):
    graph, _ = canonical(onnx.load(tf_fixtures / "keras_mlp_dense_relu.onnx"))
    assert ops(graph) == ["Gemm", "Relu", "Gemm"]
    for gemm in graph.nodes[::2]:
        assert gemm.attrs == {"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 1}
        assert gemm.inputs[1].values.shape[0] == gemm.inputs[2].values.shape[0]


def test_tf_dense_on_3d_input_is_one_matmul(tf_fixtures):
    graph, _ = canonical(onnx.load(tf_fixtures / "keras_dense_gelu_layernorm.onnx"))
    assert not {"Reshape", "Shape", "Gather", "Concat"} & set(ops(graph))
    assert ops(graph).count("MatMul") == 2


def test_raw_erfc_is_repaired(tf_fixtures, ort_run):
    raw = onnx.load(tf_fixtures / f"{RAW_ERFC}.onnx")
    with pytest.raises(onnx.checker.ValidationError):
        onnx.checker.check_model(raw)
    graph, ctx = canonical(raw)
    assert "Erfc" not in ops(graph) and any("Erfc" in note for note in ctx.notes)
    onnx.checker.check_model(gs.export_onnx(graph))
    x = np.load(tf_fixtures / "keras_dense_gelu_layernorm.input.npy")
    expected = np.load(tf_fixtures / "keras_dense_gelu_layernorm.expected.npy")
    np.testing.assert_allclose(ort_run(graph, x)[0], expected, **TOL)


def test_canonicalize_is_idempotent(tf_fixtures):
    graph, _ = canonical(onnx.load(tf_fixtures / "keras_cnn_conv_bn_relu_avgpool_flatten_dense.onnx"))
    again, _ = canonical(gs.export_onnx(graph))
    assert ops(again) == ops(graph)


# --- torch exports -------------------------------------------------------------------------------


class ConvNet(nn.Module):
    """conv (no bias) + bn + relu + avgpool + flatten + linear, with a depthwise conv + bn."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1, bias=False),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Conv2d(8, 8, 3, padding=1, groups=8),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.AvgPool2d(2),
            nn.Flatten(),
        )
        self.classifier = nn.Linear(8 * 4 * 4, 10)

    def forward(self, x):
        return self.classifier(self.features(x))


class ResidualNet(nn.Module):
    """conv-bn-relu, a residual block conv-bn-relu-conv-bn + shortcut, GAP via view(size(0), -1), linear."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU())
        self.body = nn.Sequential(
            nn.Conv2d(6, 6, 3, padding=1, bias=False),
            nn.BatchNorm2d(6),
            nn.ReLU(),
            nn.Conv2d(6, 6, 3, padding=1),
            nn.BatchNorm2d(6),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(6, 5)

    def forward(self, x):
        h = self.stem(x)
        h = torch.relu(self.body(h) + h)
        return self.head(self.pool(h).view(h.size(0), -1))


class DenseBN(nn.Module):
    """Linear + BatchNorm1d + ReLU + Dropout + Linear (the logits: `body`), then softmax."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(16, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 10))

    def forward(self, x):
        return torch.softmax(self.body(x), dim=-1)


NETS = {"convnet": (ConvNet, (2, 3, 8, 8)), "residual": (ResidualNet, (2, 3, 8, 8)), "dense_bn": (DenseBN, (4, 16))}


def _randomized(net: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    return randomize_batchnorm(net, mean=0.5, var_max=2.0, bias=0.3)


@pytest.fixture(scope="module")
def torch_exports(tmp_path_factory) -> dict[tuple[str, str], tuple[Path, nn.Module, tuple[int, ...]]]:
    """Each net exported by the legacy exporter (dynamic batch) and by dynamo (fixed batch)."""
    folder = tmp_path_factory.mktemp("torch_exports")
    exports = {}
    for name, (cls, shape) in NETS.items():
        torch.manual_seed(1)
        net = _randomized(cls())
        sample = (torch.randn(*shape),)
        legacy, dynamo = folder / f"{name}_legacy.onnx", folder / f"{name}_dynamo.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                net,
                sample,
                str(legacy),
                dynamo=False,
                input_names=["x"],
                output_names=["y"],
                dynamic_axes={"x": {0: "N"}, "y": {0: "N"}},
            )
            torch.onnx.export(net, sample, str(dynamo), dynamo=True, input_names=["x"], output_names=["y"])
        exports[name, "legacy"] = (legacy, net, shape)
        exports[name, "dynamo"] = (dynamo, net, shape)
    return exports


@pytest.mark.parametrize("exporter", ["legacy", "dynamo"])
@pytest.mark.parametrize("name", sorted(NETS))
def test_torch_export_runs_at_any_batch(name, exporter, torch_exports, ort_run):
    path, net, shape = torch_exports[name, exporter]
    graph, ctx = canonical(onnx.load(str(path)), str(path))  # dynamo: weights in path.onnx.data
    folded = fold_bn.run(graph.copy(), ctx)
    assert [t.name for t in folded.inputs] == ["x"] and [t.name for t in folded.outputs] == ["y"]
    assert not {"BatchNormalization", "Reshape", "Dropout", "Identity", "Softmax"} & set(ops(folded))
    has_softmax = isinstance(net, DenseBN)
    assert any("Softmax" in note for note in ctx.notes) == has_softmax
    for batch in (1, 3, TIME_BATCH):
        x = random_input(shape, batch, seed=batch)
        with torch.no_grad():
            expected = (net.body if has_softmax else net)(torch.from_numpy(x))  # the SNN outputs logits
        for canonical_graph in (graph, folded):
            np.testing.assert_allclose(ort_run(canonical_graph, x)[0], expected.numpy(), **TOL)


# --- rewriters on small graphs -------------------------------------------------------------------


def test_transpose_pair_around_elementwise_ops_cancels(make_model, ort_run):
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Transpose", ["c"], ["nhwc"], perm=[0, 2, 3, 1]),
        helper.make_node("Relu", ["nhwc"], ["r"]),
        helper.make_node("Add", ["r", "bias_c"], ["a"]),
        helper.make_node("Mul", ["a", "scale_wc"], ["m"]),
        helper.make_node("Transpose", ["m"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["nchw", "w2", "b"], ["y"]),
    ]
    inits = {
        "w": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
        "b": np.zeros(4, np.float32),
        "bias_c": rng.standard_normal(4).astype(np.float32),
        "scale_wc": rng.standard_normal((5, 4)).astype(np.float32),  # varies along W and C
        "w2": rng.standard_normal((4, 4, 1, 1)).astype(np.float32),
    }
    model = make_model(nodes, {"x": ["N", 3, 6, 5]}, {"y": ["N", 4, 6, 5]}, inits)
    graph, _ = canonical(model)
    assert "Transpose" not in ops(graph)
    x = random_input((1, 3, 6, 5), 2)
    np.testing.assert_allclose(ort_run(graph, x)[0], ort_run(model, x)[0], **TOL)


@pytest.mark.parametrize(
    "trans_b,alpha,beta,bias_shape",
    [(0, 1.0, 1.0, (5,)), (1, 0.5, 2.0, (1, 5)), (0, 2.0, 0.5, ()), (1, 1.0, 1.0, None)],
)
def test_gemm_variants_become_canonical(trans_b, alpha, beta, bias_shape, make_model, ort_run):
    rng = np.random.default_rng(1)
    weight = rng.standard_normal((5, 7) if trans_b else (7, 5)).astype(np.float32)
    inits = {"w": weight}
    inputs = ["x", "w"]
    if bias_shape is not None:
        inits["c"] = rng.standard_normal(bias_shape).astype(np.float32)
        inputs.append("c")
    node = helper.make_node("Gemm", inputs, ["y"], transB=trans_b, alpha=alpha, beta=beta)
    model = make_model([node], {"x": ["N", 7]}, {"y": ["N", 5]}, inits)
    graph, _ = canonical(model)
    (gemm,) = graph.nodes
    assert gemm.attrs == {"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 1}
    assert gemm.inputs[1].values.shape == (5, 7) and gemm.inputs[2].values.shape == (5,)
    x = random_input((1, 7), 3)
    np.testing.assert_allclose(ort_run(graph, x)[0], ort_run(model, x)[0], **TOL)


def test_gemm_with_transposed_activation_is_refused(make_model):
    node = helper.make_node("Gemm", ["x", "w"], ["y"], transA=1, name="gemm_t")
    model = make_model([node], {"x": [7, "N"]}, {"y": ["N", 5]}, {"w": np.ones((7, 5), np.float32)})
    with pytest.raises(SnnError, match="gemm_t.*Gemm.*transA"):
        canonical(model)


def test_normalization_sub_div_and_bias_become_one_batchnorm(make_model, ort_run):
    rng = np.random.default_rng(2)
    nodes = onnx_nodes(
        "centered = Sub(x, mean)",
        "scaled = Div(centered, std)",
        "conv = Conv(scaled, w)",
        "g = Mul(conv, gamma)",
        "y = Add(beta, g)",
    )
    inits = {
        "mean": rng.standard_normal((3, 1, 1)).astype(np.float32),
        "std": rng.uniform(0.5, 2, (1, 3, 1, 1)).astype(np.float32),
        "w": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
        "gamma": rng.standard_normal((1, 4, 1, 1)).astype(np.float32),
        "beta": np.float32(0.25),
    }
    model = make_model(nodes, {"x": ["N", 3, 6, 6]}, {"y": ["N", 4, 4, 4]}, inits)
    graph, ctx = canonical(model)
    assert ops(graph) == ["BatchNormalization", "Conv", "BatchNormalization"]
    assert len(graph.nodes[1].inputs) == 3  # explicit zero bias
    x = random_input((1, 3, 6, 6), 2)
    np.testing.assert_allclose(ort_run(graph, x)[0], ort_run(model, x)[0], **TOL)
    folded = fold_bn.run(graph, ctx)
    assert ops(folded) == ["Mul", "Add", "Conv"]
    np.testing.assert_allclose(ort_run(folded, x)[0], ort_run(model, x)[0], **TOL)


def test_channels_last_constant_is_not_per_channel(make_model):
    nodes = [helper.make_node("Mul", ["x", "s"], ["y"])]
    model = make_model(nodes, {"x": ["N", 3, 4, 4]}, {"y": ["N", 3, 4, 4]}, {"s": np.ones(4, np.float32) * 2})
    graph, _ = canonical(model)
    assert ops(graph) == ["Mul"]


def test_matmul_on_3d_input_stays_matmul(make_model):
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Add", ["m", "b"], ["y"])]
    inits = {"w": np.ones((4, 5), np.float32), "b": np.ones(5, np.float32)}
    graph, _ = canonical(make_model(nodes, {"x": ["N", 3, 4]}, {"y": ["N", 3, 5]}, inits))
    assert ops(graph) == ["MatMul", "Add"]


def test_identity_dropout_and_softmax_are_removed_keeping_output_name(make_model, ort_run):
    nodes = [
        helper.make_node("Identity", ["x"], ["i"]),
        helper.make_node("Dropout", ["i"], ["d"]),
        helper.make_node("Relu", ["d"], ["r"]),
        helper.make_node("Softmax", ["r"], ["probs"], axis=-1),
    ]
    graph, ctx = canonical(make_model(nodes, {"x": ["N", 4]}, {"probs": ["N", 4]}))
    assert ops(graph) == ["Relu"] and graph.outputs[0].name == "probs"
    assert any("dropped final Softmax" in note for note in ctx.notes)
    x = random_input((1, 4), 3)
    np.testing.assert_allclose(ort_run(graph, x)[0], np.maximum(x, 0))


def test_a_softmax_before_layout_ops_to_the_output_is_dropped(make_model, ort_run):
    """Caffe2's classifier head, Softmax on [N, C, 1, 1] at opset 9, is Flatten → Softmax →
    Reshape at opset 13+: the Softmax goes, the layout ops and the output's name stay."""
    nodes = [
        helper.make_node("GlobalAveragePool", ["x"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Softmax", ["f"], ["s"], axis=1),
        helper.make_node("Reshape", ["s", "shape"], ["probs"]),
    ]
    inits = {"shape": np.array([-1, 5, 1, 1], np.int64)}
    graph, ctx = canonical(make_model(nodes, {"x": ["N", 5, 3, 3]}, {"probs": ["N", 5, 1, 1]}, inits))
    assert "Softmax" not in ops(graph) and graph.outputs[0].name == "probs"
    assert any("dropped final Softmax" in note for note in ctx.notes)
    x = random_input((2, 5, 3, 3), 4)
    np.testing.assert_allclose(ort_run(graph, x)[0], x.mean(axis=(2, 3), keepdims=True), rtol=1e-6)


def test_training_dropout_is_refused(make_model):
    nodes = [helper.make_node("Dropout", ["x", "", "train"], ["y"], name="drop")]
    model = make_model(nodes, {"x": ["N", 4]}, {"y": ["N", 4]}, {"train": np.array(True)})
    with pytest.raises(SnnError, match="drop.*Dropout.*training"):
        canonical(model)


def test_fixed_reshape_that_mixes_the_batch_is_refused(make_model):
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["y"], name="mix")]
    model = make_model(nodes, {"x": [2, 6, 4]}, {"y": [1, 12, 4]}, {"shape": np.array([1, 12, 4], np.int64)})
    with pytest.raises(SnnError, match="mix.*Reshape.*batch"):
        canonical(model)


def test_fixed_batch_reshape_gets_a_free_batch_entry(make_model, ort_run):
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["y"])]
    model = make_model(nodes, {"x": [2, 6, 4]}, {"y": [2, 3, 8]}, {"shape": np.array([2, 3, -1], np.int64)})
    graph, _ = canonical(model)
    assert list(graph.nodes[0].inputs[1].values) == [0, 3, -1]
    x = random_input((2, 6, 4), 5)
    assert ort_run(graph, x)[0].shape == (5, 3, 8)


def test_local_functions_are_inlined_at_one_opset(make_model, ort_run):
    body = [helper.make_node("Relu", ["a"], ["r"]), helper.make_node("Neg", ["r"], ["b"])]
    function = helper.make_function("local", "NegRelu", ["a"], ["b"], body, [helper.make_opsetid("", 17)])
    model = make_model(
        [helper.make_node("NegRelu", ["x"], ["y"], domain="local")], {"x": ["N", 4]}, {"y": ["N", 4]}, opset=17
    )
    model.functions.append(function)
    model.opset_import.append(helper.make_opsetid("local", 1))
    graph, _ = canonical(model)
    exported = gs.export_onnx(graph)
    assert ops(graph) == ["Relu", "Neg"] and not exported.functions
    x = random_input((1, 4), 3)
    np.testing.assert_allclose(ort_run(graph, x)[0], -np.maximum(x, 0))


# --- errors --------------------------------------------------------------------------------------


def test_op_not_in_onnx_is_refused_naming_node_and_op(make_model):
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="ok"),
        helper.make_node("Frobnicate", ["r"], ["y"], name="odd"),
    ]
    with pytest.raises(SnnError) as caught:
        canonical(make_model(nodes, {"x": ["N", 4]}, {"y": ["N", 4]}), "net.onnx")
    error = caught.value
    assert (error.path, error.node, error.op) == ("net.onnx", "odd", "Frobnicate")
    assert "does not exist in ONNX" in str(error) and error.hint


@pytest.mark.parametrize("opset", [6, 22])
def test_opset_out_of_range_is_refused(opset, make_model):
    model = make_model([helper.make_node("Relu", ["x"], ["y"])], {"x": ["N", 4]}, {"y": ["N", 4]}, opset=opset)
    with pytest.raises(SnnError, match=f"net.onnx: imports ONNX opset {opset}.*7 to 21"):
        canonical(model, "net.onnx")


def test_constant_traced_with_the_export_batch_is_refused(make_model):
    nodes = [helper.make_node("Concat", ["cls", "x"], ["y"], axis=1, name="cat")]
    # differing samples: not cls.expand(x.size(0), -1, -1) folded by dynamo (tests/test_fold_shapes.py frees that)
    inits = {"cls": np.arange(8, dtype=np.float32).reshape(2, 1, 4)}
    model = make_model(nodes, {"x": [2, 3, 4]}, {"y": [2, 4, 4]}, inits)
    with pytest.raises(SnnError, match="cat.*Concat.*exported with"):
        canonical(model)
