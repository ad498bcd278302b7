"""normalize alone: with ReLUs kept, the normalized graph computes the ANN's function."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from graph_builders import Branches, Residual, cnn, export_legacy, mlp, prepared, randomized, run_graph, run_model
from torch import nn

from onnx_snn.options import CompileOptions
from onnx_snn.passes.common import calibrate, normalize
from onnx_snn.passes.signgd import decompose

NETS = {"mlp": mlp, "cnn": cnn, "residual": Residual, "concat": Branches}


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("norm", ["max", "99.9", "0.5"])
@pytest.mark.parametrize("net", sorted(NETS))
def test_normalized_graph_equals_ann(net, norm, per_channel):
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, size=(64, 1, 8, 8)).astype(np.float32)
    ann = export_legacy(randomized(NETS[net]()), x[:2])
    graph, ctx = prepared(ann, CompileOptions(norm=norm, per_channel=per_channel))
    ctx.calibration = [{"x": x[:32]}, {"x": x[32:]}]
    graph = normalize.run(calibrate.run(graph, ctx), ctx)
    (expected,) = run_model(ann, {"x": x})
    (got,) = run_graph(graph, ctx, {"x": x})
    assert relative_error(got, expected) < 1e-5


def test_relu_inputs_are_in_units_of_lambda():
    """After normalize, each ReLU's calibrated max becomes max/λ: 1 with --norm max."""
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 1, size=(64, 1, 8, 8)).astype(np.float32)
    graph, ctx = prepared(export_legacy(randomized(Residual()), x[:2]), CompileOptions(norm="max", per_channel=True))
    ctx.calibration = [{"x": x}]
    graph = normalize.run(calibrate.run(graph, ctx), ctx)
    before = dict(ctx.activation_stats)
    ctx.activation_stats.clear()
    ctx.calibration = [{"x": x}]
    calibrate.run(graph, ctx)
    assert set(before) == set(ctx.activation_stats)
    for name, stats in ctx.activation_stats.items():
        alive = before[name].max > 0  # a channel that never fired keeps unit scale and stays at 0
        np.testing.assert_allclose(stats.max[alive], 1.0, rtol=1e-5)
        assert np.all(stats.max[~alive] == 0)


def test_residual_shortcut_gets_a_rescaling_mul():
    rng = np.random.default_rng(2)
    x = rng.uniform(0, 1, size=(16, 1, 8, 8)).astype(np.float32)
    graph, ctx = prepared(export_legacy(randomized(Residual()), x[:2]), CompileOptions(norm="max"))
    ctx.calibration = [{"x": x}]
    graph = normalize.run(calibrate.run(graph, ctx), ctx)
    adds = [n for n in graph.nodes if n.op == "Add" and all(not hasattr(t, "values") for t in n.inputs)]
    assert adds, "the residual Add survives"
    assert any(t.inputs and t.inputs[0].op == "Mul" for t in adds[0].inputs)


class TokenNorm(nn.Module):
    """[B, 8, 8] rows embedded as tokens [B, 8, 16], a small token in front, LayerNorm over the
    features (rank 3), or the same values as [B, 1, 9, 16] (rank 4) with `image`."""

    def __init__(self, image: bool) -> None:
        super().__init__()
        self.embed, self.norm, self.head, self.image = nn.Linear(8, 16), nn.LayerNorm(16), nn.Linear(144, 3), image

    def forward(self, x):
        tokens = self.embed(x.view(-1, 8, 8))
        tokens = torch.cat([0.02 * tokens.mean(1, keepdim=True), tokens], dim=1)
        return self.head(self.norm(tokens.unsqueeze(1) if self.image else tokens).flatten(1))


@pytest.mark.parametrize("image", [False, True])
def test_layernorm_square_of_a_sequence_is_scaled_per_token(image):
    """A LayerNorm's square on [B, tokens, D] gets one λ per token (the small first token its own),
    on [B, 1, H, W]-shaped rows one for the layer; either way the graph computes the ANN's function."""
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 1, size=(64, 1, 8, 8)).astype(np.float32)
    torch.manual_seed(0)
    ann = export_legacy(TokenNorm(image).eval(), x[:2])
    graph, ctx = prepared(ann, CompileOptions(neuron="signgd"))
    ctx.state.neuron = "signgd"
    graph = decompose.run(graph, ctx)
    ctx.calibration = [{"x": x}]
    graph = normalize.run(calibrate.run(graph, ctx), ctx)
    (square,) = [n for n in graph.nodes if n.op == "Mul" and n.inputs[0] is n.inputs[1]]
    lam = np.asarray(ctx.state.lambdas[square.name])
    if image:
        assert lam.size == 1
    else:
        assert lam.shape == (9,) and lam[0] < lam[1:].min() / 100
    np.testing.assert_allclose(run_graph(graph, ctx, {"x": x})[0], run_model(ann, {"x": x})[0], rtol=1e-4, atol=1e-5)
