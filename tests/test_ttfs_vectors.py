"""The exact-mapping spec's test vectors (../shared/spec/exact-mapping-ttfs.vectors.json), reproduced.

The vectors' 8-16-4 net is rebuilt as an ONNX ANN (MatMul + Add, Keras layout) from its stored
weights; its calibration and test inputs are regenerated from the stated seed (numpy
default_rng(0): weights, biases, then 2,000 calibration and 500 test inputs in U(p, q)).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from helpers import float_model
from onnx import TensorProto, helper, numpy_helper

from onnx_snn.api import compile_model
from onnx_snn.ir.neurons import attach_functions
from onnx_snn.options import CompileOptions
from onnx_snn.passes.ttfs.audit import early_spike_margin
from onnx_snn.passes.ttfs.column_scale import bounded_fan_in_sums
from onnx_snn.passes.ttfs.model_a import hardware_parameters
from onnx_snn.runtime import Session

VECTORS = Path(__file__).resolve().parents[2] / "shared" / "spec" / "exact-mapping-ttfs.vectors.json"
pytestmark = pytest.mark.skipif(not VECTORS.is_file(), reason="spec vectors not present")


@pytest.fixture(scope="module")
def vectors() -> dict:
    return json.loads(VECTORS.read_text())


@pytest.fixture(scope="module")
def data(vectors) -> tuple[np.ndarray, np.ndarray]:
    """(calibration [2000, 8], test [500, 8]) float64, regenerated from the seed."""
    sizes = vectors["sizes"]
    rng = np.random.default_rng(vectors["seed"])
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        rng.normal(size=fan_in * fan_out)
    rng.uniform(size=sum(sizes[1:]))
    calibration = rng.uniform(vectors["p"], vectors["q"], (2000, sizes[0]))
    test = rng.uniform(vectors["p"], vectors["q"], (500, sizes[0]))
    np.testing.assert_array_equal(test[:5], np.asarray(vectors["samples"]["x"]))  # the seed story holds
    return calibration, test


def _ann(vectors: dict) -> onnx.ModelProto:
    weights = [np.asarray(w, dtype=np.float32) for w in vectors["original"]["W"]]
    biases = [np.asarray(b, dtype=np.float32) for b in vectors["original"]["b"]]
    nodes, x = [], "x"
    for i, (w, b) in enumerate(zip(weights, biases)):
        nodes += [
            helper.make_node("MatMul", [x, f"W{i}"], [f"h{i}"]),
            helper.make_node("Add", [f"h{i}", f"b{i}"], [f"a{i}" if i < len(weights) - 1 else "logits"]),
        ]
        if i < len(weights) - 1:
            nodes.append(helper.make_node("Relu", [f"a{i}"], [f"r{i}"]))
            x = f"r{i}"
    inits = [
        numpy_helper.from_array(a, n)
        for i, (w, b) in enumerate(zip(weights, biases))
        for a, n in ((w, f"W{i}"), (b, f"b{i}"))
    ]
    return float_model(nodes, "vectors", {"x": ["N", 8]}, {"logits": ["N", 4]}, inits, ir_version=None)


def _ann_logits(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"x": x.astype(np.float32)}
    )[0]


def test_b1_relative_form_float32_logits_within_2e6_of_the_ann(vectors, data, tmp_path):
    calibration, test = data
    ann = _ann(vectors)
    out = tmp_path / "b1.onnx"
    compile_model(
        ann,
        out,
        CompileOptions(neuron="ttfs", input_range=(vectors["p"], vectors["q"])),
        calibration=calibration.astype(np.float32),
    )
    logits = Session(out).run(test).logits
    assert np.abs(logits - _ann_logits(ann, test)).max() <= 2e-6
    assert np.array_equal(logits.argmax(1), _ann_logits(ann, test).argmax(1))


def test_column_scaling_reproduces_the_preprocessed_weights(vectors):
    layers = [(np.asarray(w).T, np.asarray(b)) for w, b in zip(vectors["original"]["W"], vectors["original"]["b"])]
    low, high = vectors["p"], vectors["q"]
    first_w, first_b = layers[0]
    layers[0] = ((high - low) * first_w, first_b + low * first_w.sum(axis=1))  # P2, the input-range fold
    scaled = bounded_fan_in_sums(layers, vectors["u_bound"], vectors["l_bound"])
    for (w, b), w_ref, b_ref in zip(scaled, vectors["preprocessed"]["W"], vectors["preprocessed"]["b"]):
        np.testing.assert_allclose(w, np.asarray(w_ref).T, rtol=0, atol=1e-13)
        np.testing.assert_allclose(b, np.asarray(b_ref), rtol=0, atol=1e-13)
    assert scaled[0][0].sum(axis=1).max() <= vectors["u_bound"] + 1e-15


def test_hardware_parameters_match_the_vectors(vectors):
    hidden = vectors["snn"]["hidden"][0]
    w = np.asarray(vectors["preprocessed"]["W"][0]).T
    b = np.asarray(vectors["preprocessed"]["b"][0])
    width = (1 + vectors["zeta"]) * vectors["preprocessed"]["X_n"][0]
    synapses, thresholds = hardware_parameters(w, b, width, hidden["t_min_prev"], hidden["t_max"])
    np.testing.assert_allclose(synapses, np.asarray(hidden["J"]), rtol=1e-13, atol=1e-12)
    np.testing.assert_allclose(thresholds, np.asarray(hidden["theta"]), rtol=1e-13, atol=1e-12)


def _dense_a_session(hidden: dict) -> ort.InferenceSession:
    inits = [
        numpy_helper.from_array(np.asarray(hidden["J"], dtype=np.float64), "J"),
        numpy_helper.from_array(np.asarray(hidden["theta"], dtype=np.float64), "theta"),
        numpy_helper.from_array(np.asarray(hidden["t_min_prev"], dtype=np.float64), "t_min_prev"),
        numpy_helper.from_array(np.asarray(hidden["t_max"], dtype=np.float64), "t_max"),
    ]
    fan_in, fan_out = np.asarray(hidden["J"]).shape
    graph = helper.make_graph(
        [helper.make_node("TTFSDenseA", ["t", "J", "theta", "t_min_prev", "t_max"], ["t_out"], domain="snn")],
        "a",
        [helper.make_tensor_value_info("t", TensorProto.DOUBLE, ["B", fan_in])],
        [helper.make_tensor_value_info("t_out", TensorProto.DOUBLE, ["B", fan_out])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    attach_functions(model)
    onnx.checker.check_model(model, full_check=True)
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def test_model_a_sorted_solver_float64_within_1e12(vectors):
    hidden, samples = vectors["snn"]["hidden"][0], vectors["samples"]
    times = _dense_a_session(hidden).run(None, {"t": np.asarray(samples["t_input"])})[0]
    assert np.abs(times - np.asarray(samples["t_hidden"])).max() <= 1e-12
    readout = vectors["snn"]["readout"]
    potential = np.asarray(readout["b"]) + (readout["t_read"] - times) @ np.asarray(readout["W"])
    assert np.abs(potential - np.asarray(samples["readout_potential"])).max() <= 1e-12
    assert np.abs(potential - np.asarray(samples["ann_logits_original"])).max() <= 1e-12


def test_early_spike_counterexample_is_detected(vectors):
    case = vectors["early_spike_counterexample"]
    w, b, x = np.asarray(case["W"]).reshape(-1), np.asarray(case["b"]).reshape(-1), np.asarray(case["x"])
    before = case["t_min"] - case["t_min_prev"]
    margin = early_spike_margin(x[None], w[None, :], b, before)[0, 0]
    assert margin == pytest.approx(0.24, abs=1e-12) and margin >= case["B_n"]
    assert max(0.0, b[0] + w @ x) == case["relu"]  # the ReLU is zero, yet ...
    t_max = case["t_min"] + case["B_n"]
    synapses, thresholds = hardware_parameters(w[None, :], b, case["B_n"], case["t_min_prev"], t_max)
    hidden = {"J": synapses, "theta": thresholds, "t_min_prev": case["t_min_prev"], "t_max": t_max}
    fired = _dense_a_session(hidden).run(None, {"t": (case["t_min"] - x)[None]})[0][0, 0]
    assert fired == pytest.approx(case["event_exact_spike_time"], abs=1e-12)  # ... it fires before t_min
    assert fired < case["t_min"] and case["closed_form_spike_time"] == pytest.approx(t_max)


def test_model_a_compiles_the_vector_net_with_one_spike_per_hidden_neuron(vectors, data, tmp_path):
    calibration, test = data
    ann = _ann(vectors)
    out = tmp_path / "a.onnx"
    result = compile_model(
        ann,
        out,
        CompileOptions(neuron="ttfs", ttfs_model="a", stats=True, input_range=(vectors["p"], vectors["q"])),
        calibration=calibration.astype(np.float32),
    )
    layer = next(iter(result.metadata["ttfs"]["layers"].values()))
    assert layer["X"] == pytest.approx(vectors["preprocessed"]["X_n"][0], rel=1e-6)
    assert result.metadata["ttfs"]["audit"][next(iter(result.metadata["ttfs"]["layers"]))]["early_spikes"] == 0
    run = Session(out).run(test)
    ann_logits = _ann_logits(ann, test)
    assert np.abs(run.logits - ann_logits).max() <= 1e-5
    assert np.array_equal(run.logits.argmax(1), ann_logits.argmax(1))
    ((name, times),) = run.spike_times.items()
    assert np.all((times >= layer["t_min"] - 1e-6) & (times <= layer["t_max"] + 1e-6))  # no early spike
    assert np.all(run.spikes[name.replace("spike_times/", "spikes/")] == times.shape[1])  # one per neuron
    np.testing.assert_allclose(times[:5], np.asarray(vectors["samples"]["t_hidden"]), atol=2e-6)
