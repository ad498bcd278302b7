"""--int8-synapses: the dense layers that read spikes run on com.microsoft.MatMulIntegerToFloat.

Each rewritten layer's currents, read from a real onnxruntime session, equal a float64 reference
that multiplies its spike input by the dequantized 8-bit weights (to float32 rounding: the integer
sums are exact); default compiles have no integer layer; the option is recorded; the embedded
digits MLP compiles and evaluates end to end with it; combinations without IF spikes are refused.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from graph_builders import conv_relu_maxpool, export_legacy, randomized
from helpers import assert_user_error, run_cli, tiny_relu_model
from onnx import numpy_helper
from torch import nn

from onnx_snn import CompileOptions, compile_model, metadata
from onnx_snn.errors import SnnError
from onnx_snn.passes.rate.int8_synapses import MS_DOMAIN, WEIGHT_MAX, quantize_channels
from onnx_snn.runtime import Session

DATA = Path(__file__).resolve().parents[1] / "compiler" / "data"
INTEGER_OP = "MatMulIntegerToFloat"


def avgpool_net() -> nn.Module:
    """A 2x2 average pool of spikes into a dense layer (grain 4), then a layer that reads spikes directly."""
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(64, 16),
        nn.ReLU(),
        nn.Linear(16, 10),
    )


def maxpool_net() -> nn.Module:
    """A max pool of spikes (snn.IFMaxPool, spikes again) into a dense layer."""
    return nn.Sequential(*conv_relu_maxpool(4), nn.Linear(64, 10))


def gap_net() -> nn.Module:
    """A global average pool of 8x8 spikes into a dense layer: grain 64, the largest that signed
    spikes take (A = n + 64 ≤ 128)."""
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10)
    )


class TokenMlp(nn.Module):
    """Dense layers over the last axis of [B, 4, 8] (MatMul), then a Gemm over the flattened tokens."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.c = nn.Linear(8, 16), nn.Linear(16, 6), nn.Linear(24, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.b(torch.relu(self.a(x))))
        return self.c(h.flatten(1))


#: net -> (builder, sample shape, compile options, {integer layer: its grain})
NETS = {
    "avgpool": (avgpool_net, (1, 8, 8), {}, {"/4/Gemm": 4, "/6/Gemm": 1}),
    "maxpool": (maxpool_net, (1, 8, 8), {}, {"/4/Gemm": 1}),
    "gap": (gap_net, (1, 8, 8), {}, {"/4/Gemm": 64}),
    # per-layer scales: per-channel ones put a Mul on the tokens' channel axis before the MatMul
    "matmul": (TokenMlp, (4, 8), {"per_channel": False}, {"/b/MatMul": 1, "/c/Gemm": 1}),
}


def samples(count: int, shape: tuple[int, ...] = (1, 8, 8), seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1, (count, *shape)).astype(np.float32)


def compiled(net: nn.Module, options: CompileOptions, shape: tuple[int, ...] = (1, 8, 8)):
    calibration = samples(64, shape)
    return compile_model(export_legacy(randomized(net), calibration[:2]), None, options, calibration=calibration)


def integer_layers(model: onnx.ModelProto) -> list[tuple[onnx.NodeProto, str]]:
    """Each MatMulIntegerToFloat node and the float tensor its QuantizeLinear reads."""
    writer = {out: node for node in model.graph.node for out in node.output}
    layers = [n for n in model.graph.node if n.op_type == INTEGER_OP and n.domain == MS_DOMAIN]
    return [(node, writer[node.input[0]].input[0]) for node in layers]


def with_outputs(model: onnx.ModelProto, names: list[str]) -> ort.InferenceSession:
    """A CPU session of `model` that also outputs the float tensors `names`."""
    probed = onnx.ModelProto()
    probed.CopyFrom(model)
    probed.graph.output.extend(onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in names)
    return ort.InferenceSession(probed.SerializeToString(), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("spikes", ["signed", "binary"])
@pytest.mark.parametrize("net", sorted(NETS))
def test_currents_equal_the_dequantized_float64_reference(net, spikes):
    build, shape, options, grains = NETS[net]
    result = compiled(build(), CompileOptions(timesteps=8, spikes=spikes, int8_synapses=True, **options), shape)
    assert result.metadata["int8_synapses"] == grains
    layers = integer_layers(result.model)
    assert len(layers) == len(grains)
    values = {i.name: numpy_helper.to_array(i) for i in result.model.graph.initializer}
    session = with_outputs(result.model, [name for node, source in layers for name in (source, node.output[0])])
    outputs = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"x": samples(16, shape, 1)})))
    lowest = -1 if spikes == "signed" else 0
    for node, source in layers:
        q, a_scale, b_scale, zero_point = (values[node.input[i]] for i in range(1, 5))
        bias = values[node.input[6]] if len(node.input) > 6 else 0.0
        grain = grains[node.name]
        assert np.float32(a_scale) == np.float32(1 / grain) and zero_point == -lowest * grain
        pooled = outputs[source].astype(np.float64) * grain  # spike values n/grain, n integer
        n = np.rint(pooled)
        assert np.abs(pooled - n).max() < 1e-4 and lowest * grain <= n.min() and n.max() <= grain
        weights = q.astype(np.float64) * b_scale.astype(np.float64)  # dequantized, [K, N]
        reference = (n / grain) @ weights + bias
        magnitude = np.abs(n / grain) @ np.abs(weights) + np.abs(bias)
        current = outputs[node.output[0]]
        assert np.all(np.abs(current - reference) <= 1e-6 * magnitude), node.name


def test_quantize_channels_rounds_each_output_channel_symmetrically():
    weight = np.array([[0.5, -1.0, 0.25], [0.0, 0.0, 0.0], [3.0, 1e-4, -2.0]], dtype=np.float32)
    q, scale = quantize_channels(weight)
    assert q.dtype == np.int8 and scale.dtype == np.float32
    np.testing.assert_array_equal(np.abs(q).max(axis=1), [WEIGHT_MAX, 0, WEIGHT_MAX])
    np.testing.assert_allclose(scale, [1.0 / WEIGHT_MAX, 1.0, 3.0 / WEIGHT_MAX], rtol=1e-7)
    assert np.all(np.abs(q * scale[:, None] - weight) <= scale[:, None] / 2)


def test_average_windows_beyond_128_levels_stay_float():
    """Binary spikes averaged over 12x12 = 144 cells would need A up to 144."""
    result = compiled(gap_net(), CompileOptions(timesteps=8, spikes="binary", int8_synapses=True), (1, 12, 12))
    assert not integer_layers(result.model) and result.metadata["int8_synapses"] == {}
    assert any("/4/Gemm (averages 144 spikes) stay float" in note for note in result.notes)


def test_poisson_spikes_feed_integer_layers_too():
    result = compiled(
        avgpool_net(), CompileOptions(timesteps=8, encoding="poisson", spikes="signed", int8_synapses=True)
    )
    assert result.metadata["int8_synapses"] == {"/4/Gemm": 4, "/6/Gemm": 1}


def digits_data() -> tuple[np.ndarray, np.ndarray]:
    with np.load(DATA / "digits_test.npz") as data:
        return data["x"], data["y"]


def test_default_compiles_have_no_integer_layer():
    x, _ = digits_data()
    result = compile_model(DATA / "digits_mlp.onnx", None, CompileOptions(timesteps=8), calibration=x[:64])
    assert not any(n.domain == MS_DOMAIN for n in result.model.graph.node)
    assert MS_DOMAIN not in {o.domain for o in result.model.opset_import}
    assert result.metadata["options"]["int8_synapses"] is False and "int8_synapses" not in result.metadata
    assert "int8_synapses" not in result.metadata["passes"]


def test_digits_mlp_compiles_and_evaluates_with_int8_synapses(tmp_path):
    x, y = digits_data()
    out = tmp_path / "mlp.int8.onnx"
    compiled_run = run_cli(
        "compile", str(DATA / "digits_mlp.onnx"), "-o", str(out), "--calib", str(DATA / "digits_test.npz"),
        "--int8-synapses", "--spikes", "signed", "--timesteps", "16",
    )  # fmt: skip
    assert compiled_run.returncode == 0, compiled_run.stderr
    recorded = metadata.read({p.key: p.value for p in onnx.load(str(out)).metadata_props}, str(out))
    assert recorded["options"]["int8_synapses"] is True and recorded["int8_synapses"] == {"/3/Gemm": 1}
    assert recorded["passes"][-1] == "int8_synapses"
    report = Session(out, providers=["CPUExecutionProvider"]).evaluate(
        x, y, ann=DATA / "digits_mlp.onnx", progress=False
    )
    assert report.accuracy[-1] >= report.ann_accuracy - 0.03, report.table()
    evaluated = run_cli("eval", str(out), "--data", str(DATA / "digits_test.npz"), "-q")
    assert evaluated.returncode == 0, evaluated.stderr


@pytest.mark.parametrize(
    "flags, fragments",
    [
        (["--neuron", "signgd"], ["--int8-synapses", "--neuron signgd"]),
        (["--neuron", "ttfs"], ["--int8-synapses", "--neuron ttfs"]),
        (["--spikes", "signed", "--weight-levels", "8"], ["--int8-synapses", "--weight-levels"]),
        ([], ["--int8-synapses", "--spikes burst", "add --spikes signed or binary"]),
        (["--spikes", "multi"], ["--int8-synapses", "--spikes multi"]),
    ],
)
def test_combinations_without_if_spikes_are_refused(flags, fragments, tmp_path):
    argv = ["compile", str(DATA / "digits_mlp.onnx"), "-o", str(tmp_path / "o.onnx")]
    result = run_cli(*argv, "--calib", str(DATA / "digits_test.npz"), "--int8-synapses", *flags)
    assert_user_error(result, *fragments)
    assert not (tmp_path / "o.onnx").exists()


def test_auto_resolving_to_signgd_is_refused():
    calibration = np.random.default_rng(0).normal(size=(32, 4)).astype(np.float32)
    with pytest.raises(SnnError, match="--int8-synapses .* converts with signgd neurons"):
        compile_model(
            tiny_relu_model("LeakyRelu"),
            None,
            CompileOptions(spikes="signed", int8_synapses=True),
            calibration=calibration,
        )
