"""decompose alone: MaxPool, LayerNorm, Softmax and MatMul of two activations rewritten into signGD
pieces, same function."""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs
import pytest
import torch
from graph_builders import export_legacy, prepared, run_graph, run_model
from torch import nn

from onnx_snn import CompileOptions, SnnError
from onnx_snn.passes.base import PassContext
from onnx_snn.passes.graph_utils import is_activation
from onnx_snn.passes.signgd import decompose


class Pooled(nn.Module):
    def __init__(self, kernel: int, stride: int, padding: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3)
        self.pool = nn.MaxPool2d(kernel, stride, padding)

    def forward(self, x):
        return self.pool(self.conv(x)).flatten(1)


class Normed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(64, 12)
        self.norm = nn.LayerNorm(12)
        self.head = nn.Linear(12, 5)

    def forward(self, x):
        h = self.norm(self.fc(x.flatten(1)))
        return torch.softmax(self.head(h), dim=-1) * 2.0  # keeps the Softmax off the graph output


class Scores(nn.Module):
    """Attention-like scores: q = x·Wq, k = x·Wk as [B, heads, d]; q·kᵀ; a second product, a row
    [B, 1, 3] of activations times k [B, 3, 4]; then a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.q, self.k, self.v = nn.Linear(64, 12), nn.Linear(64, 12), nn.Linear(64, 3)
        self.head = nn.Linear(9 + 4, 5)

    def forward(self, x):
        x = x.flatten(1)
        q, k = self.q(x).view(-1, 3, 4), self.k(x).view(-1, 3, 4)
        scores = q @ k.transpose(-1, -2)  # [B, 3, 3]
        mixed = self.v(x).unsqueeze(1) @ k  # [B, 1, 3] · [B, 3, 4] → [B, 1, 4]
        return self.head(torch.cat([scores.flatten(1), mixed.flatten(1)], dim=1))


def _matmuls_of_activations(graph: gs.Graph) -> list[gs.Node]:
    return [n for n in graph.nodes if n.op == "MatMul" and all(is_activation(t) for t in n.inputs)]


@pytest.mark.parametrize("kernel, stride, padding", [(2, 2, 0), (3, 2, 1), (3, 1, 1), (2, 1, 0)])
def test_maxpool_becomes_max_chains(kernel, stride, padding):
    torch.manual_seed(0)
    x = np.random.default_rng(0).normal(size=(4, 1, 8, 8)).astype(np.float32)
    ann = export_legacy(Pooled(kernel, stride, padding).eval(), x[:2])
    graph, ctx = prepared(ann)
    graph = decompose.run(graph, ctx)
    ops = [n.op for n in graph.nodes]
    assert "MaxPool" not in ops and ops.count("Max") == 2 * (kernel - 1)
    np.testing.assert_allclose(run_graph(graph, ctx, {"x": x})[0], run_model(ann, {"x": x})[0], atol=1e-6)


def test_layernorm_and_softmax_become_pieces():
    torch.manual_seed(0)
    x = np.random.default_rng(1).normal(size=(6, 1, 8, 8)).astype(np.float32)
    ann = export_legacy(Normed().eval(), x[:2])
    graph, ctx = prepared(ann)
    graph = decompose.run(graph, ctx)
    ops = [n.op for n in graph.nodes]
    assert "LayerNormalization" not in ops and "Softmax" not in ops
    assert {"Sqrt", "Exp", "ReduceSum", "Div"} <= set(ops)
    np.testing.assert_allclose(run_graph(graph, ctx, {"x": x})[0], run_model(ann, {"x": x})[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("batch", [1, 3])
def test_matmul_of_activations_becomes_products(batch):
    torch.manual_seed(0)
    x = np.random.default_rng(2).normal(size=(3, 1, 8, 8)).astype(np.float32)
    ann = export_legacy(Scores().eval(), x[:2])
    x = x[:batch]
    graph, ctx = prepared(ann)
    assert len(_matmuls_of_activations(graph)) == 2
    graph = decompose.run(graph, ctx)
    ops = [n.op for n in graph.nodes]
    assert not _matmuls_of_activations(graph)
    assert ops.count("Unsqueeze") >= 4 and ops.count("ReduceSum") == 2
    assert sum(n.op == "Mul" and sum(map(is_activation, n.inputs)) == 2 for n in graph.nodes) == 2
    np.testing.assert_allclose(run_graph(graph, ctx, {"x": x})[0], run_model(ann, {"x": x})[0], rtol=1e-5, atol=1e-5)


def test_matmul_of_a_vector_activation_is_refused():
    a = gs.Variable("a", dtype=np.float32, shape=[4])
    b = gs.Variable("b", dtype=np.float32, shape=[4, 3])
    out = gs.Variable("out", dtype=np.float32, shape=[3])
    graph = gs.Graph(
        nodes=[gs.Node("MatMul", name="vec_mat", inputs=[a, b], outputs=[out])], inputs=[a, b], outputs=[out], opset=21
    )
    with pytest.raises(SnnError, match="rank >= 2") as raised:
        decompose.run(graph, PassContext(options=CompileOptions(), show_progress=False))
    assert "vec_mat" in str(raised.value) and "MatMul" in str(raised.value)


class WideSoftmax(nn.Module):
    """Softmax of logits spread over ±60 along an axis of `size` entries (exp(60) overflows no
    float32, but its neuron could never reach it)."""

    def __init__(self, size: int, dim: int) -> None:
        super().__init__()
        self.fc, self.size, self.dim = nn.Linear(64, 4 * size), size, dim

    def forward(self, x):
        logits = self.fc(x.flatten(1)).view(-1, 4, self.size) * 30.0
        return torch.softmax(logits, dim=self.dim) * 2.0  # keeps the Softmax off the graph output


@pytest.mark.parametrize("size, dim", [(1, -1), (5, -1), (8, -1), (7, 1)])
def test_softmax_subtracts_its_max_along_the_axis(size, dim):
    """Exp sees x − max(x) along the axis (≤ 0, so every exp lies in (0, 1]); the max is a tree of
    ⌈log2 n⌉ pairwise Max over halves, which overlap by one where n is odd."""
    torch.manual_seed(0)
    x = np.random.default_rng(3).normal(size=(5, 1, 8, 8)).astype(np.float32)
    ann = export_legacy(WideSoftmax(size, dim).eval(), x[:2])
    graph, ctx = prepared(ann)
    graph = decompose.run(graph, ctx)
    ops = [n.op for n in graph.nodes]
    n = 4 if dim == 1 else size
    assert "Softmax" not in ops and ops.count("Max") == int(np.ceil(np.log2(n)))
    (exp,) = [node for node in graph.nodes if node.op == "Exp"]
    exp.outputs[0].dtype = np.float32
    graph.outputs.append(exp.inputs[0])
    got = run_graph(graph, ctx, {"x": x})
    assert got[-1].max() <= 0.0 and np.allclose(got[-1].max(axis=dim), 0.0)
    np.testing.assert_allclose(got[0], run_model(ann, {"x": x})[0], rtol=1e-5, atol=1e-6)
