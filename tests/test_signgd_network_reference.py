"""Compiled signGD models against the step-by-step numpy reference (tests/signgd_network_reference.py).

The reference runs the spec's dynamics in numpy and only the affine regions between neurons in
onnxruntime, one timestep and one neuron at a time; the compiled model runs everything as one ONNX
graph with time folded into the batch. Criterion: the decoded outputs after every step agree to
max |Δ| ≤ 1e-4 · max |compiled output|.

Two findings shape the comparison (spec §10.1: float32 ties flip spikes, and a flip early on
moves the output far more than 1e-4):
* Currents. The reference's affine graphs keep the compiled graph's declared shapes, so
  onnxruntime picks the same kernels (its NCHWc convolutions among them) and the currents round
  identically. Without the shapes they differed in the last bit (2.4e-7) and a LayerNorm neuron
  of a digits Mixer flipped at step 51 of 64 on a near-tie, 3.5e-4 of the output scale.
* Targets. numpy and onnxruntime's kernels both evaluate the GELU and exp targets within 2.5
  float32 ulps (of max(|f(x)|, |x|)) of the float64 value but round differently, so where v sits
  that close to f(x) either verdict is right.
  Example, the tanh-GELU MLP below with the default options: at step 46, sample 0, unit 11 of its
  GELU, x = −0.410279 and v = −0.17633633 while f(x) = −0.176336337 in float64, 3.8e-9 below v
  (one ulp of v is 1.5e-8); numpy's float32 f(x) rounds onto v, so no spike (the rule is ">"),
  onnxruntime's stays below, so a spike; from there the outputs part by up to 1.2e-3 of their
  scale. The reference therefore takes the compiled model's spike at such ties only
  (|v − f(x)| ≤ 4 ulps, see signgd_network_reference.TIE_ULPS), counts the ones where that differs
  from its own verdict (at most 3 in ~4M decisions here) and decides everything else itself.
With both, every case here agrees bit for bit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import needs_reference_cache
from signgd_network_reference import RTOL, compare
from torch import nn

from onnx_snn import CompileOptions, compile_model
from onnx_snn.models.architecture import TrainSettings
from onnx_snn.models.data import load_digits_split
from onnx_snn.models.export import export_torch
from onnx_snn.models.signgd_nets import ConvNeXtNet, MaxPoolCNN, MixerNet, ResMLPNet
from onnx_snn.models.train import train


def gelu_tanh_leaky_mlp() -> nn.Module:
    """The tanh GELU and a LeakyReLU of slope 0.2 (neuron attributes gate, cubic, slope)."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(64, 32),
        nn.GELU(approximate="tanh"),
        nn.Linear(32, 32),
        nn.LeakyReLU(0.2),
        nn.Linear(32, 10),
    )


def silu_hardswish_mlp() -> nn.Module:
    """SiLU (the canonical Mul(u, Sigmoid(u)) becomes one `silu` neuron) and HardSwish."""
    return nn.Sequential(
        nn.Flatten(), nn.Linear(64, 32), nn.SiLU(), nn.Linear(32, 32), nn.Hardswish(), nn.Linear(32, 10)
    )


def relu_pool_cnn() -> nn.Module:
    """Conv, BatchNorm, ReLU and a padded 3x3 stride-2 max-pool (spec §5 decomposition)."""
    return nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.MaxPool2d(3, 2, 1),
        nn.Flatten(),
        nn.Linear(6 * 16, 10),
    )


NETS = {
    "convnext": lambda: ConvNeXtNet(image_size=8),
    "mixer": lambda: MixerNet(image_size=8),
    "resmlp": lambda: ResMLPNet(image_size=8),
    "maxpool_cnn": lambda: MaxPoolCNN(image_size=8),
    "gelu_tanh_leaky_mlp": gelu_tanh_leaky_mlp,
    "relu_pool_cnn": relu_pool_cnn,
    "silu_hardswish_mlp": silu_hardswish_mlp,
}

#: the spec's own configuration (spec §1, §3): one-bit spikes, η = 0.15·0.95^(t−1), float encoder,
#: ReLU range 1
SPEC = dict(spikes="binary", schedule="exponential", eta0=0.15, gamma=0.95, codec="float", signgd_range=1.0)
#: id -> (net, compile options): every net with the defaults (burst spikes), one-bit spikes with
#: their default schedule, then other codecs, schedules and spike kinds
CASES = {
    **{name: (name, {}) for name in NETS},
    **{f"{name}-binary": (name, {"spikes": "binary"}) for name in NETS},
    "gelu_tanh_leaky_mlp-spec": ("gelu_tanh_leaky_mlp", SPEC),
    "gelu_tanh_leaky_mlp-spike_codec": ("gelu_tanh_leaky_mlp", {"codec": "spike"}),
    "mixer-exp_inverse": ("mixer", {"schedule": "exp_inverse", "tail": 0.25}),
    "relu_pool_cnn-spec-spike_codec": ("relu_pool_cnn", SPEC | {"codec": "spike"}),
    "convnext-signed": ("convnext", {"spikes": "signed"}),
    "silu_hardswish_mlp-burst-float_codec": ("silu_hardswish_mlp", {"codec": "float"}),
}


@pytest.fixture(scope="module")
def digits():
    return load_digits_split(seed=0)


@pytest.fixture(scope="module")
def ann_paths(digits, tmp_path_factory):
    """A function: name -> ONNX of the net trained one epoch on 512 digits (accuracy is beside the point)."""
    x_train, y_train = digits[0], digits[1]
    folder = tmp_path_factory.mktemp("anns")
    paths = {}

    def get(name: str) -> Path:
        if name not in paths:
            torch.manual_seed(0)
            net = train(NETS[name](), x_train[:512], y_train[:512], TrainSettings(1, lr=1e-2, seed=0))
            paths[name] = folder / f"{name}.onnx"
            export_torch(net, torch.from_numpy(x_train[:2]), paths[name], dynamo=False)
        return paths[name]

    return get


def _first_difference(got: np.ndarray, expected: np.ndarray) -> str:
    steps = np.flatnonzero((got != expected).reshape(len(got), -1).any(axis=1))
    return f"first differing step {steps[0] + 1}" if len(steps) else "identical"


@pytest.mark.parametrize("name, options", list(CASES.values()), ids=list(CASES))
def test_reference_reproduces_compiled_model(name, options, digits, ann_paths, tmp_path):
    x_train, x_test = digits[0], digits[2]
    out = tmp_path / "snn.onnx"
    compile_model(ann_paths(name), out, CompileOptions(neuron="signgd", **options), calibration=x_train[:256])
    diff, scale, got, expected = compare(out, x_test[:8], 64)
    assert scale > 0
    assert diff <= RTOL * scale, (
        f"max |Δ| {diff:.3g} = {diff / scale:.3g} of the output scale {scale:.3g}; {_first_difference(got, expected)}"
    )


FASHION = ["fashion-convnext", "fashion-mixer", "fashion-resmlp", "fashion-maxpool"]


@pytest.mark.slow
@needs_reference_cache
@pytest.mark.parametrize("name", FASHION)
def test_reference_reproduces_fashion_zoo_models(name, tmp_path):
    from onnx_snn.models.zoo import get_reference

    ref = get_reference(name)
    x_test, _ = ref.load_test()
    out = tmp_path / "snn.onnx"
    compile_model(ref.onnx_path, out, CompileOptions(neuron="signgd"), calibration=ref.load_calibration()[:512])
    diff, scale, got, expected = compare(out, x_test[:4], 32)
    assert diff <= RTOL * scale, f"{diff / scale:.3g} of the output scale; {_first_difference(got, expected)}"
