"""Spike counts, synaptic operations and the energy report (compile --stats, eval --stats)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import onnxruntime as ort
import pytest
from helpers import float_model, run_cli
from onnx import TensorProto, helper

from onnx_snn import CompileOptions, compile_model
from onnx_snn.ir.function_parts import SNN_DOMAIN
from onnx_snn.ir.neurons import IF_NEURON_OPS
from onnx_snn.passes.base import PassContext
from onnx_snn.passes.common import activity_stats
from onnx_snn.runtime import Session
from onnx_snn.runtime.energy import ACCUMULATE_PJ, COMPUTE_ONLY, MULTIPLY_ACCUMULATE_PJ, energy_report

#: hidden activations 1, 0.5 and 0 for the input below, read out by W2
W2 = np.array([[1.0, 0.0, 2.0], [3.0, 0.0, 0.0]], dtype=np.float32)
X = np.array([[1.0, 0.5, 0.0]], dtype=np.float32)


def gemm_relu_gemm(w1: np.ndarray, w2: np.ndarray) -> onnx.ModelProto:
    inits = [onnx.numpy_helper.from_array(w, n) for n, w in (("w1", w1), ("w2", w2))]
    nodes = [
        helper.make_node("Gemm", ["x", "w1"], ["h"], name="fc1", transB=1),
        helper.make_node("Relu", ["h"], ["a"], name="hidden"),
        helper.make_node("Gemm", ["a", "w2"], ["y"], name="fc2", transB=1),
    ]
    return float_model(nodes, "g", {"x": ["N", w1.shape[1]]}, {"y": ["N", w2.shape[0]]}, inits)


def test_synaptic_operations_equal_the_hand_count():
    """Identity first layer, max norm on this one input (λ = 1): the hidden IF neurons get currents
    1, 0.5 and 0 in threshold units and, from v = 0.5, fire 4, 2 and 0 times in T = 4 steps. W2's
    columns have 2, 0 and 1 non-zero weights: 4·2 + 2·0 + 0·1 = 8 accumulates."""
    options = CompileOptions(timesteps=4, norm="max", per_channel=False, spikes="binary", stats=True, neuron="if")
    model = compile_model(
        gemm_relu_gemm(np.eye(3, dtype=np.float32), W2), None, options, calibration=np.repeat(X, 8, axis=0)
    ).model
    result = Session(model).run(X, 4)
    assert result.spikes == {"spikes/hidden": pytest.approx([6.0])}
    assert result.synops == {"synops/hidden": pytest.approx([8.0])}
    activity = json.loads({p.key: p.value for p in model.metadata_props}["onnx_snn.activity"])
    assert activity["neurons"] == [["hidden", 3]]
    assert activity["ann_macs"] == {"fc1": 9, "fc2": 6}
    assert activity["analog_macs"] == {"fc1": 9} and activity["analog_per_step"] == []
    report = energy_report(4, {"spikes/hidden": 6.0}, {"synops/hidden": 8.0}, activity)
    assert report.layers[0].firing_rate == pytest.approx(6 / 12)
    assert report.energy_pj[COMPUTE_ONLY] == pytest.approx(
        {"snn": 8 * ACCUMULATE_PJ + 9 * MULTIPLY_ACCUMULATE_PJ, "ann": 15 * MULTIPLY_ACCUMULATE_PJ}
    )


def conv_pool_net() -> onnx.ModelProto:
    """x [N,1,4,4] → Conv 3x3 pad 1 (2 channels) → ReLU → AvgPool 2x2 → Flatten → Gemm 8→3 (some
    zero weights) → ReLU → Gemm 3→2."""
    rng = np.random.default_rng(0)
    conv = rng.uniform(0.2, 1.0, size=(2, 1, 3, 3)).astype(np.float32)
    fc = rng.uniform(-1, 1, size=(3, 8)).astype(np.float32)
    fc[0, :4] = 0.0
    fc[2, [1, 6]] = 0.0
    head = np.array([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]], dtype=np.float32)
    inits = [onnx.numpy_helper.from_array(w, n) for n, w in (("conv", conv), ("fc", fc), ("head", head))]
    nodes = [
        helper.make_node("Conv", ["x", "conv"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r1"], name="relu1"),
        helper.make_node("AveragePool", ["r1"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "fc"], ["h"], name="fc", transB=1),
        helper.make_node("Relu", ["h"], ["r2"], name="relu2"),
        helper.make_node("Gemm", ["r2", "head"], ["y"], name="head", transB=1),
    ]
    return float_model(nodes, "g", {"x": ["N", 1, 4, 4]}, {"y": ["N", 2]}, inits), fc, head


def test_spikes_through_pooling_count_their_pooled_cells_fan_out():
    ann, fc, head = conv_pool_net()
    x = np.random.default_rng(1).uniform(0, 1, size=(16, 1, 4, 4)).astype(np.float32)
    model = compile_model(ann, None, CompileOptions(timesteps=6, stats=True, neuron="if"), calibration=x).model
    spike_outputs = {n.name: n.output[0] for n in model.graph.node if n.op_type in IF_NEURON_OPS}
    for name in spike_outputs.values():
        model.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    result = Session(model).run(x, 6)
    trains = dict(
        zip(
            spike_outputs,
            Session(model)._session.run(
                list(spike_outputs.values()), {"x": x, "timesteps": np.asarray(6, dtype=np.int64)}
            ),
        )
    )
    counts1 = np.abs(trains["relu1"]).reshape(6, 16, 2, 4, 4).sum(axis=0)  # a −1 spike is an event too
    counts2 = np.abs(trains["relu2"]).reshape(6, 16, 3).sum(axis=0)
    # by hand: neuron (c, h, w) feeds pooled cell (c, h//2, w//2), flattened as c·4 + (h//2)·2 + w//2
    fan1 = np.zeros((2, 4, 4))
    for c in range(2):
        for h in range(4):
            for w in range(4):
                fan1[c, h, w] = np.count_nonzero(fc[:, c * 4 + (h // 2) * 2 + w // 2])
    fan2 = np.count_nonzero(head, axis=0)
    np.testing.assert_array_equal(result.synops["synops/relu1"], (counts1 * fan1).sum(axis=(1, 2, 3)))
    np.testing.assert_array_equal(result.synops["synops/relu2"], counts2 @ fan2)
    np.testing.assert_array_equal(result.spikes["spikes/relu1"], counts1.sum(axis=(1, 2, 3)))


def test_eval_stats_prints_the_report_and_needs_stats(tmp_path):
    ann, _, _ = conv_pool_net()
    x = np.random.default_rng(1).uniform(0, 1, size=(16, 1, 4, 4)).astype(np.float32)
    data = tmp_path / "d.npz"
    np.savez(data, x=x, y=np.zeros(16, np.int64))
    for stats in (True, False):
        path = tmp_path / f"snn{stats}.onnx"
        onnx.save(
            compile_model(ann, None, CompileOptions(timesteps=6, stats=stats, neuron="if"), calibration=x).model, path
        )
        run = run_cli("eval", str(path), "--data", str(data), "--stats", "-q", "--json", str(tmp_path / "r.json"))
        if stats:
            assert run.returncode == 0, run.stderr
            assert "firing rate" in run.stdout and COMPUTE_ONLY in run.stdout and "SRAM" in run.stdout
            energy = json.loads((tmp_path / "r.json").read_text())["energy"]
            assert [layer["name"] for layer in energy["layers"]] == ["relu1", "relu2"]
        else:
            assert run.returncode == 2 and "compile it with --stats" in run.stderr
            assert len(run.stderr.strip().splitlines()) == 1


def test_a_layer_whose_shape_is_not_static_counts_its_spikes_and_one_synop_each():
    """A spiking layer whose per-sample shape shape inference could not resolve (a dim is a
    symbol) gets neuron count 0 and a note instead of a crash, and --stats outputs that still
    count its spikes per sample over T, with one synaptic operation per spike."""
    x = gs.Variable("x", dtype=np.float32, shape=["T*batch", 3])
    steps = gs.Variable("timesteps", dtype=np.int64, shape=[])
    spikes = gs.Variable("s", dtype=np.float32, shape=["T*batch", "d"])
    out = gs.Variable("y", dtype=np.float32, shape=["T*batch", 2])
    weight = gs.Constant("w", W2.T.copy())
    nodes = [
        gs.Node("IFNeuron", "hidden", domain=SNN_DOMAIN, inputs=[x], outputs=[spikes]),
        gs.Node("MatMul", "fc2", inputs=[spikes, weight], outputs=[out]),
    ]
    graph = gs.Graph(nodes=nodes, inputs=[x, steps], outputs=[out], opset=17)
    ctx = PassContext(options=CompileOptions(stats=True), show_progress=False)
    graph = activity_stats.run(graph, ctx)
    assert ctx.state.activity["neurons"] == [["hidden", 0]]
    assert ctx.state.activity["fan_out_approximated"] == ["fc2"]
    assert any("hidden" in note and "not static" in note for note in ctx.notes)
    neuron = next(n for n in graph.nodes if n.op == "IFNeuron")  # stand in for the neuron: spikes = input
    neuron.op, neuron.domain = "Identity", ""
    session = ort.InferenceSession(gs.export_onnx(graph).SerializeToString(), providers=["CPUExecutionProvider"])
    trains = np.random.default_rng(0).integers(0, 2, size=(4, 2, 3)).astype(np.float32)  # [T, B, 3]
    feed = {"x": trains.reshape(8, 3), "timesteps": np.asarray(4, dtype=np.int64)}
    counts = dict(zip([o.name for o in session.get_outputs()], session.run(None, feed)))
    np.testing.assert_array_equal(counts["spikes/hidden"], trains.sum(axis=(0, 2)))
    np.testing.assert_array_equal(counts["synops/hidden"], trains.sum(axis=(0, 2)))


@pytest.mark.parametrize("spikes", ["binary", "signed", "burst"])
def test_signgd_spike_counts_are_the_spikes_sent(spikes):
    """A one-bit signGD neuron's spikes are its 1s; a counted one (compiler/ir/signgd.py) emits
    (1 + g)/2 and sends |g| spikes, +1 and −1 alike: spikes/<layer> is that sum over steps, read
    here from the neuron's own output."""
    rng = np.random.default_rng(0)
    w1 = rng.uniform(-1, 1, (3, 3)).astype(np.float32)
    x = rng.uniform(0, 1, (4, 3)).astype(np.float32)
    options = CompileOptions(timesteps=6, neuron="signgd", spikes=spikes, stats=True)
    model = compile_model(gemm_relu_gemm(w1, W2), None, options, calibration=x).model
    neuron = next(n for n in model.graph.node if n.op_type == "SignGDNeuron")
    model.graph.output.append(helper.make_tensor_value_info(neuron.output[0], TensorProto.FLOAT, None))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    emitted, counted = session.run([neuron.output[0], f"spikes/{neuron.name}"], {"x": x})
    per_step = emitted.reshape(6, len(x), 3)
    sent = np.abs(2 * per_step - 1) if spikes != "binary" else per_step
    assert np.array_equal(sent, np.round(sent)) and sent.any()
    np.testing.assert_allclose(counted, sent.sum(axis=(0, 2)))
    if spikes == "burst":
        assert sent.max() > 1  # a burst: several spikes in one step
