"""Scaling of every signGD neuron into the reachable range, and the pieces it relies on.

normalize with signGD neurons (GELU, LayerNorm pieces, MaxPool's Max, LeakyReLU, products) keeps
the graph's function and puts each calibrated output at its statistic / --signgd-range; spikify
then folds GELU's Mul(λ) → Gelu → Mul(1/λ) into the neuron's gate. Also: the exact encoder lands
on its input, and MaxPool's decomposition never compares two pad values.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from graph_builders import export_legacy, prepared, randomized, run_graph, run_model
from signgd_ops import NAN, int64, runner, snn
from torch import nn

from onnx_snn.ir.signgd import GATES
from onnx_snn.options import CompileOptions
from onnx_snn.passes.common import calibrate, normalize
from onnx_snn.passes.signgd import decompose
from onnx_snn.passes.signgd import spikify as spikify_signgd


class LayerNormGelu(nn.Module):
    """conv → channel LayerNorm → exact GELU → conv → MaxPool(3, 2, 1) → LeakyReLU(0.2) → tanh GELU
    → linear."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 6, 3, padding=1)
        self.norm = nn.LayerNorm(6)
        self.mix = nn.Conv2d(6, 6, 1)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.leaky = nn.LeakyReLU(0.2)
        self.head = nn.Linear(6 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(self.conv(x).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        h = self.pool(self.mix(nn.functional.gelu(h)))
        h = nn.functional.gelu(self.leaky(h), approximate="tanh")
        return self.head(h.flatten(1))


class GatedMlp(nn.Module):
    """linear → SiLU (the canonical Mul(u, Sigmoid(u))) → linear → HardSwish → linear."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(64, 32), nn.SiLU(), nn.Linear(32, 16), nn.Hardswish(), nn.Linear(16, 10)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Product(nn.Module):
    """Two linear branches multiplied elementwise, then a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.head = nn.Linear(64, 16), nn.Linear(64, 16), nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        return self.head(self.a(x) * self.b(x))


@pytest.fixture(scope="module")
def inputs() -> np.ndarray:
    return np.random.default_rng(0).uniform(0, 1, size=(64, 1, 8, 8)).astype(np.float32)


def _normalized(net: nn.Module, x: np.ndarray, signgd_range: float):
    ann = export_legacy(randomized(net), x[:2])
    graph, ctx = prepared(ann, CompileOptions(neuron="signgd", norm="max", signgd_range=signgd_range))
    ctx.state.neuron = "signgd"
    ctx.calibration = [{"x": x}]
    graph = decompose.run(graph, ctx)
    return ann, normalize.run(calibrate.run(graph, ctx), ctx), ctx


@pytest.mark.parametrize("net", [LayerNormGelu, Product, GatedMlp])
@pytest.mark.parametrize("signgd_range", [1.0, 2.0])
def test_normalize_keeps_the_function(net, signgd_range, inputs):
    ann, graph, ctx = _normalized(net(), inputs, signgd_range)
    (expected,) = run_model(ann, {"x": inputs})
    (got,) = run_graph(graph, ctx, {"x": inputs})
    assert np.abs(got - expected).max() < 1e-5 * np.abs(expected).max()


@pytest.mark.parametrize("signgd_range", [1.0, 2.0])
def test_every_neuron_output_is_at_its_range(signgd_range, inputs):
    """Recalibrated after normalize (--norm max), every neuron output's max |y| equals the range;
    a GELU, wrapped as Mul(λ) → Gelu → Mul(1/λ), computes in ANN units between its Muls."""
    _, graph, ctx = _normalized(LayerNormGelu(), inputs, signgd_range)
    ctx.activation_stats.clear()
    ctx.calibration = [{"x": inputs}]
    calibrate.run(graph, ctx)
    checked = {n.op for n in graph.nodes if n.name in ctx.activation_stats and n.op != "Gelu"}
    assert checked == {"Mul", "Div", "LeakyRelu"}  # square, p/sqrt(q), LeakyReLU
    for node in graph.nodes:
        if node.name in ctx.activation_stats and node.op != "Gelu":
            assert float(ctx.activation_stats[node.name].max) == pytest.approx(signgd_range, rel=1e-4), node.name


def test_spikify_folds_the_gelu_scaling_into_the_gate(inputs):
    _, graph, ctx = _normalized(LayerNormGelu(), inputs, 2.0)
    scales = {
        n.name: float(n.inputs[1].values)
        for n in graph.nodes
        if n.op == "Mul" and n.outputs[0].outputs and n.outputs[0].outputs[0].op == "Gelu"
    }
    forms = {n.name: n.attrs.get("approximate", "none") for n in graph.nodes if n.op == "Gelu"}
    graph = spikify_signgd.run(graph, ctx)
    neurons = {n.name: n for n in graph.nodes if n.op == "SignGDNeuron" and n.attrs["function"].startswith("gelu")}
    assert len(neurons) == 2 and not any(n.op == "Gelu" for n in graph.nodes)
    for name, neuron in neurons.items():
        function = "gelu_tanh" if forms[name] == "tanh" else "gelu_erf"
        assert neuron.attrs["function"] == function
        lam = next(v for k, v in scales.items() if k.startswith(name))
        assert neuron.attrs["gate"] == pytest.approx(GATES[function] * lam, rel=1e-6)
    leaky = [n for n in graph.nodes if n.op == "SignGDNeuron" and n.attrs["function"] == "leaky_relu"]
    assert [n.attrs["slope"] for n in leaky] == [pytest.approx(0.2)]


def test_silu_and_hardswish_become_neurons_with_their_gates_scaled(inputs):
    """A SiLU (Sigmoid + Mul) becomes one `silu` neuron and a HardSwish one `hard_swish` neuron,
    each with its gate times λ; no Sigmoid is left."""
    _, graph, ctx = _normalized(GatedMlp(), inputs, 2.0)
    lambdas = {
        n.name: float(n.inputs[1].values)
        for n in graph.nodes
        if n.op == "Mul" and any(reader.op in ("Sigmoid", "HardSwish") for reader in n.outputs[0].outputs)
    }
    graph = spikify_signgd.run(graph, ctx)
    neurons = [n for n in graph.nodes if n.op == "SignGDNeuron"]
    assert [n.attrs["function"] for n in neurons] == ["silu", "hard_swish"]
    assert not any(n.op in ("Sigmoid", "HardSwish") for n in graph.nodes)
    for neuron in neurons:
        lam = next(v for k, v in lambdas.items() if k.startswith(neuron.name))
        assert neuron.attrs["gate"] == pytest.approx(GATES[neuron.attrs["function"]] * lam, rel=1e-6)
        assert lam != 1.0


def test_maxpool_never_compares_two_pads(inputs):
    """Padding one axis at a time: no Max output ever holds the pad value (−200), and the
    decomposition equals MaxPool."""
    ann = export_legacy(randomized(LayerNormGelu()), inputs[:2])
    graph, ctx = prepared(ann, CompileOptions(neuron="signgd"))
    graph = decompose.run(graph, ctx)
    assert sum(n.op == "Pad" for n in graph.nodes) == 2  # one per axis, each right before its Max chain
    (expected,) = run_model(ann, {"x": inputs})
    (got,) = run_graph(graph, ctx, {"x": inputs})
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    probe = graph.copy()
    probe.outputs = [n.outputs[0] for n in probe.nodes if n.op == "Max"]
    for out in probe.outputs:
        out.dtype = np.float32
    maxima = run_graph(probe, ctx, {"x": inputs})
    assert len(maxima) == 4 and min(float(m.min()) for m in maxima) > decompose.MAXPOOL_PAD_VALUE / 2


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exact_encoder_lands_on_its_input(dtype):
    """f_t = x once Σ η ≥ |x| (default schedule: |x| ≤ 1 by t = 8), with no gain error; the float
    encoder holds 0.956·x."""
    x = np.linspace(-2.5, 2.5, 41, dtype=dtype)[None, :]
    feeds = {"x": x, "timesteps": int64(64), "f0": np.asarray(NAN, dtype), "t0": int64(0)}
    finals = {}
    for codec in ("exact", "float"):
        out = runner([snn("SignGDEncoder", list(feeds), ["e", "f_T"], codec=codec)], feeds, {"e": 2, "f_T": 2})(feeds)
        finals[codec] = out["f_T"]
        if codec == "exact":
            e = out["e"].reshape(64, -1)
            assert np.all(e >= 0) and np.all(e <= 1)  # 2e − 1 = g ∈ [−1, 1], unlike float's unbounded g
    np.testing.assert_allclose(finals["exact"], x, rtol=0, atol=1e-6)
    assert np.abs(finals["float"] - x).max() > 0.1
    short = {k: v for k, v in feeds.items()} | {"timesteps": int64(8), "x": x[:, np.abs(x[0]) <= 1]}
    out = runner([snn("SignGDEncoder", list(short), ["e", "f_T"], codec="exact")], short, {"e": 2, "f_T": 2})(short)
    np.testing.assert_allclose(out["f_T"], short["x"], rtol=0, atol=1e-6)
