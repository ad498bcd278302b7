"""ReLU6 / Clip(x, 0, c) under IF neurons. Burst neurons (the default): λ is the --norm statistic
(at most c) and the capped burst neuron caps its count at k = c/λ spikes a step per channel, exact
at any λ. Neurons of one spike a step (--spikes signed, binary): λ = c where the Clip binds on the
calibration data, so the rate cap reproduces the cap exactly; else λ is the statistic, as for a
ReLU. `--neuron auto` keeps IF for capped-ReLU nets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from graph_builders import export_legacy
from helpers import seeded_net
from sklearn.datasets import load_digits
from torch import nn

from onnx_snn import CompileOptions, compile_model
from onnx_snn.errors import SnnError
from onnx_snn.runtime import Session
from onnx_snn.runtime.ann import AnnRunner


def relu6_mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(64, 48), nn.ReLU6(), nn.Linear(48, 32), nn.Hardtanh(0.0, 2.0), nn.Linear(32, 10))


@pytest.fixture(scope="module")
def digits_x() -> np.ndarray:
    return (load_digits().data / 16.0 * 12.0).astype(np.float32)  # pixels up to 12: both caps bind


def test_a_relu6_net_compiles_to_if_neurons_whose_rates_cap_at_c(digits_x):
    net = seeded_net(relu6_mlp)
    ann = export_legacy(net, digits_x[:2])
    result = compile_model(ann, None, CompileOptions(timesteps=64), calibration=digits_x[:256])
    ops = [n.op_type for n in result.model.graph.node]
    assert "CappedBurstIFNeuron" in ops and "Clip" not in ops and "SignGDNeuron" not in ops
    x = digits_x[-64:]
    expected = AnnRunner(ann).run({"x": x})
    readout = {t: Session(result.model).run(x, t).logits for t in (16, 256)}
    errors = {t: np.linalg.norm(y - expected) / np.linalg.norm(expected) for t, y in readout.items()}
    assert errors[256] < 0.02 and errors[256] < errors[16]
    agreement = np.mean(readout[256].argmax(1) == expected.argmax(1))
    assert agreement >= 0.95


def test_a_saturated_capped_relu_is_exact():
    """Inputs far above the cap: each IF neuron fires every step, so the read-out is c times the
    next weights exactly at every T."""
    net = nn.Sequential(nn.Linear(4, 3), nn.ReLU6(), nn.Linear(3, 2))
    with torch.no_grad():
        net[0].weight.copy_(torch.eye(3, 4) * 10.0)
        net[0].bias.zero_()
    x = np.full((8, 4), 5.0, dtype=np.float32)
    ann = export_legacy(net.eval(), x[:2])
    model = compile_model(ann, None, CompileOptions(timesteps=8, neuron="if"), calibration=x).model
    np.testing.assert_allclose(Session(model).run(x, 3).logits, AnnRunner(ann).run({"x": x}), rtol=1e-5)


def test_a_clip_with_another_lower_bound_is_refused_by_if_and_points_to_signgd(digits_x):
    net = nn.Sequential(nn.Linear(64, 8), nn.Hardtanh(-1.0, 1.0), nn.Linear(8, 10))
    ann = export_legacy(seeded_net(lambda: net), digits_x[:2])
    with pytest.raises(SnnError, match=r"Clip\(x, 0, c\).*--neuron signgd"):
        compile_model(ann, None, CompileOptions(neuron="if"), calibration=digits_x[:64])


def test_a_cap_that_never_binds_scales_like_a_relu_at_its_statistic(digits_x):
    """Pixels up to 1: neither Clip reaches its cap on the calibration data (largest activations
    about 1 and 0.45), so λ is the 99.9th percentile, not c = 6 and 2, and the SNN is as close at
    T = 16 as a ReLU net (at λ = c it was 0.26 off: a few spikes in 16 steps)."""
    x = digits_x / 12.0
    ann = export_legacy(seeded_net(relu6_mlp), x[:2])
    model = compile_model(ann, None, CompileOptions(), calibration=x[:256]).model
    expected = AnnRunner(ann).run({"x": x[-64:]})
    error = np.linalg.norm(Session(model).run(x[-64:], 16).logits - expected) / np.linalg.norm(expected)
    assert error < 0.05


def test_burst_neurons_cap_at_c_where_the_clip_never_bound_on_the_calibration_data(digits_x):
    """Calibrated on pixels up to 1 (no Clip binds, λ is the statistic, about 1 and 0.45), run on
    pixels up to 12 (both bind): the capped burst neuron's per-channel cap k = c/λ keeps the clip at
    c, so the SNN tracks the ANN; a neuron capped at one spike a step (--spikes signed) clips at λ."""
    net = seeded_net(relu6_mlp)
    ann = export_legacy(net, digits_x[:2])
    calibration = digits_x[:256] / 12.0
    x = digits_x[-64:]
    expected = AnnRunner(ann).run({"x": x})

    def error(spikes: str) -> float:
        model = compile_model(ann, None, CompileOptions(spikes=spikes), calibration=calibration).model
        return float(np.linalg.norm(Session(model).run(x, 256).logits - expected) / np.linalg.norm(expected))

    assert error("burst") < 0.01
    assert error("signed") > 0.1
