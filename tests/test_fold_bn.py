"""fold_bn alone: each fold is exact to 1e-5 relative against the unfolded graph."""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs
import pytest
from onnx import helper

from onnx_snn.errors import SnnError
from onnx_snn.options import CompileOptions
from onnx_snn.passes.base import PassContext
from onnx_snn.passes.common import fold_bn

RNG = np.random.default_rng(0)


def bn_params(channels: int, prefix: str = "bn") -> dict[str, np.ndarray]:
    return {
        f"{prefix}_scale": RNG.uniform(0.5, 2.0, channels).astype(np.float32),
        f"{prefix}_bias": RNG.uniform(-1, 1, channels).astype(np.float32),
        f"{prefix}_mean": RNG.uniform(-1, 1, channels).astype(np.float32),
        f"{prefix}_var": RNG.uniform(0.1, 3.0, channels).astype(np.float32),
    }


def bn_node(x: str, y: str, prefix: str = "bn", **attrs) -> helper.NodeProto:
    names = [f"{prefix}_{p}" for p in ("scale", "bias", "mean", "var")]
    return helper.make_node("BatchNormalization", [x, *names], [y], name=prefix, epsilon=1e-3, **attrs)


def folded(model) -> gs.Graph:
    ctx = PassContext(options=CompileOptions(), source="net.onnx", show_progress=False)
    return fold_bn.run(gs.import_onnx(model), ctx)


def assert_same(graph: gs.Graph, model, x: np.ndarray, ort_run) -> None:
    expected = ort_run(model, x)[0]
    scale = np.abs(expected).max()
    np.testing.assert_allclose(ort_run(graph, x)[0], expected, rtol=1e-5, atol=1e-5 * scale)


@pytest.mark.parametrize("groups,in_channels", [(1, 4), (2, 4), (6, 6)], ids=["dense", "grouped", "depthwise"])
@pytest.mark.parametrize("with_bias", [True, False])
def test_bn_after_conv_folds_into_it(groups, in_channels, with_bias, make_model, ort_run):
    inits = {"w": RNG.standard_normal((6, in_channels // groups, 3, 3)).astype(np.float32), **bn_params(6)}
    inputs = ["x", "w"]
    if with_bias:
        inits["b"] = RNG.standard_normal(6).astype(np.float32)
        inputs.append("b")
    nodes = [helper.make_node("Conv", inputs, ["c"], group=groups, pads=[1, 1, 1, 1]), bn_node("c", "y")]
    model = make_model(nodes, {"x": ["N", in_channels, 5, 5]}, {"y": ["N", 6, 5, 5]}, inits)
    graph = folded(model)
    assert [n.op for n in graph.nodes] == ["Conv"] and graph.outputs[0].name == "y"
    assert_same(graph, model, RNG.standard_normal((3, in_channels, 5, 5)).astype(np.float32), ort_run)


@pytest.mark.parametrize(
    "trans_b,alpha,beta,bias_shape",
    [(1, 1.0, 1.0, (8,)), (0, 1.0, 1.0, (8,)), (0, 0.5, 2.0, (1, 8)), (1, 2.0, 0.0, ())],
)
def test_bn_after_gemm_folds_into_it(trans_b, alpha, beta, bias_shape, make_model, ort_run):
    inits = {
        "w": RNG.standard_normal((8, 5) if trans_b else (5, 8)).astype(np.float32),
        "c": RNG.standard_normal(bias_shape).astype(np.float32),
        **bn_params(8),
    }
    nodes = [
        helper.make_node("Gemm", ["x", "w", "c"], ["g"], transB=trans_b, alpha=alpha, beta=beta),
        bn_node("g", "y"),
    ]
    model = make_model(nodes, {"x": ["N", 5]}, {"y": ["N", 8]}, inits)
    graph = folded(model)
    assert [n.op for n in graph.nodes] == ["Gemm"]
    assert_same(graph, model, RNG.standard_normal((4, 5)).astype(np.float32), ort_run)


def test_bn_after_matmul_becomes_canonical_gemm(make_model, ort_run):
    inits = {"w": RNG.standard_normal((5, 8)).astype(np.float32), **bn_params(8)}
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]), bn_node("m", "y")]
    model = make_model(nodes, {"x": ["N", 5]}, {"y": ["N", 8]}, inits)
    graph = folded(model)
    (gemm,) = graph.nodes
    assert gemm.op == "Gemm" and gemm.attrs["transB"] == 1 and gemm.inputs[1].values.shape == (8, 5)
    assert_same(graph, model, RNG.standard_normal((4, 5)).astype(np.float32), ort_run)


@pytest.mark.parametrize("rank", [2, 4])
def test_bn_without_linear_op_becomes_mul_add(rank, make_model, ort_run):
    shape = ["N", 3] + [4] * (rank - 2)
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Add", ["r", "x"], ["a"]), bn_node("a", "y")]
    model = make_model(nodes, {"x": shape}, {"y": shape}, bn_params(3))
    graph = folded(model)
    assert [n.op for n in graph.nodes] == ["Relu", "Add", "Mul", "Add"]
    assert graph.nodes[2].inputs[1].values.shape == (3,) + (1,) * (rank - 2)
    assert_same(graph, model, RNG.standard_normal([2, 3] + [4] * (rank - 2)).astype(np.float32), ort_run)


def test_bn_at_graph_input_and_after_shared_conv_are_not_folded(make_model, ort_run):
    inits = {"w": RNG.standard_normal((3, 3, 1, 1)).astype(np.float32), **bn_params(3), **bn_params(3, "bn2")}
    nodes = [
        bn_node("x", "n", "bn"),
        helper.make_node("Conv", ["n", "w"], ["c"]),
        bn_node("c", "b2", "bn2"),
        helper.make_node("Add", ["b2", "c"], ["y"]),
    ]
    model = make_model(nodes, {"x": ["N", 3, 4, 4]}, {"y": ["N", 3, 4, 4]}, inits)
    graph = folded(model)
    assert "BatchNormalization" not in [n.op for n in graph.nodes]
    assert graph.nodes[0].inputs[0] is graph.inputs[0]  # the input BN is a Mul + Add on x
    assert_same(graph, model, RNG.standard_normal((2, 3, 4, 4)).astype(np.float32), ort_run)


def test_training_mode_bn_is_refused(make_model):
    nodes = [bn_node("x", "y", training_mode=1)]
    model = make_model(nodes, {"x": ["N", 3]}, {"y": ["N", 3]}, bn_params(3))
    with pytest.raises(SnnError) as caught:
        folded(model)
    assert (caught.value.node, caught.value.op) == ("bn", "BatchNormalization") and "training" in str(caught.value)
