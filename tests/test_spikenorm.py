"""--norm spikenorm: thresholds from the input currents under spiking input, layer by layer."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from helpers import float_model
from onnx import helper

from onnx_snn import CompileOptions, SnnError, compile_model

STEPS = 12


def two_layer_mlp(rng: np.random.Generator) -> tuple[onnx.ModelProto, list[np.ndarray]]:
    """x[N,6] → Gemm → ReLU → Gemm → ReLU → Gemm → y[N,3]."""
    weights = [rng.normal(size=s).astype(np.float32) for s in ((8, 6), (8,), (5, 8), (5,), (3, 5), (3,))]
    names = ["w1", "b1", "w2", "b2", "w3", "b3"]
    nodes = [
        helper.make_node("Gemm", ["x", "w1", "b1"], ["h1"], name="fc1", transB=1),
        helper.make_node("Relu", ["h1"], ["a1"], name="relu1"),
        helper.make_node("Gemm", ["a1", "w2", "b2"], ["h2"], name="fc2", transB=1),
        helper.make_node("Relu", ["h2"], ["a2"], name="relu2"),
        helper.make_node("Gemm", ["a2", "w3", "b3"], ["y"], name="fc3", transB=1),
    ]
    inits = [onnx.numpy_helper.from_array(w, n) for n, w in zip(names, weights)]
    return float_model(nodes, "mlp", {"x": ["N", 6]}, {"y": ["N", 3]}, inits), weights


def reference_thresholds(x: np.ndarray, weights: list[np.ndarray]) -> tuple[float, float]:
    """Sengupta's procedure in numpy (float64): λ1 = max current of layer 1 (analog input, the same
    every step); then IF layer 1 (threshold λ1, soft reset, v0 = λ1/2) runs T steps and λ2 is the
    max of W2·(λ1·s_t) + b2, the current layer 2 receives."""
    w1, b1, w2, b2 = (w.astype(np.float64) for w in weights[:4])
    current1 = x.astype(np.float64) @ w1.T + b1
    lam1 = current1.max()
    u = np.full_like(current1, 0.5)
    lam2 = -np.inf
    for _ in range(STEPS):
        u += current1 / lam1
        s = (u >= 1.0).astype(np.float64)
        u -= s
        lam2 = max(lam2, ((lam1 * s) @ w2.T + b2).max())
    return lam1, lam2


def test_thresholds_equal_a_numpy_simulation_of_the_procedure():
    rng = np.random.default_rng(0)
    ann, weights = two_layer_mlp(rng)
    x = rng.uniform(0, 1, size=(64, 6)).astype(np.float32)
    spiking = compile_model(ann, None, CompileOptions(timesteps=STEPS, norm="spikenorm", neuron="if"), calibration=x)
    analog = compile_model(
        ann,
        None,
        CompileOptions(timesteps=STEPS, norm="max", neuron="if", per_channel=False, rate_range=1.0),
        calibration=x,
    )
    lam1, lam2 = reference_thresholds(x, weights)
    got = spiking.metadata["lambda"]
    assert got["relu1"] == pytest.approx([lam1], rel=1e-5)  # analog input: the ANN's max, as max norm
    assert got["relu1"] == pytest.approx(analog.metadata["lambda"]["relu1"], rel=1e-6)
    assert got["relu2"] == pytest.approx([lam2], rel=1e-5)
    assert got["relu2"][0] > analog.metadata["lambda"]["relu2"][0]  # instantaneous currents exceed the rates
    assert spiking.metadata["spikenorm"]["layers"] == ["relu1", "relu2"]


def test_percentile_spikenorm_sits_below_the_max():
    rng = np.random.default_rng(1)
    ann, _ = two_layer_mlp(rng)
    x = rng.uniform(0, 1, size=(64, 6)).astype(np.float32)
    top = compile_model(ann, None, CompileOptions(timesteps=STEPS, norm="spikenorm"), calibration=x).metadata
    p90 = compile_model(ann, None, CompileOptions(timesteps=STEPS, norm="spikenorm:90"), calibration=x).metadata
    assert p90["lambda"]["relu2"][0] < top["lambda"]["relu2"][0]


@pytest.mark.parametrize(
    "options, fragment",
    [
        (dict(norm="spikenorm", per_channel=True), "no --per-channel"),
        (dict(norm="spikenorm", neuron="signgd"), "needs IF neurons"),
        (dict(norm="spikenorm:0.5"), "percentile"),
        (dict(norm="spikenorm:abc"), "spikenorm[:P]"),
    ],
)
def test_bad_spikenorm_options_are_refused(options, fragment):
    with pytest.raises(SnnError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        CompileOptions(**options).validate()


def test_signgd_encoding_selects_the_spike_codec():
    """--encoding signgd is the signGD spec's spike encoder (codec spike); IF nets refuse it."""
    rng = np.random.default_rng(2)
    ann, _ = two_layer_mlp(rng)
    x = rng.uniform(0, 1, size=(32, 6)).astype(np.float32)
    model = compile_model(
        ann, None, CompileOptions(timesteps=8, encoding="signgd", neuron="signgd"), calibration=x
    ).model
    encoders = [n for n in model.graph.node if n.op_type == "SignGDEncoder"]
    assert [a.s for n in encoders for a in n.attribute if a.name == "codec"] == [b"spike"]
    with pytest.raises(SnnError, match="signgd"):
        compile_model(ann, None, CompileOptions(timesteps=8, encoding="signgd"), calibration=x)  # auto: IF
    with pytest.raises(SnnError, match="works with"):
        CompileOptions(encoding="signgd", neuron="if").validate()
