"""decompose alone: MaxPool, LayerNorm and Softmax rewritten into signGD pieces, same function."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from onnx_snn.passes import decompose
from graph_builders import export_legacy, prepared, run_graph, run_model


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
    np.testing.assert_allclose(run_graph(graph, ctx, {"x": x})[0], run_model(ann, {"x": x})[0], rtol=1e-5,
                               atol=1e-6)
