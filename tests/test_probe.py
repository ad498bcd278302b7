"""onnx_snn.probe.observe alone, on tiny graphs built here: the observed tensors against numpy,
a batch run in slices against the whole batch, constant feeds, an snn-domain graph."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import pytest
from neuron_reference import if_neuron

from onnx_snn import probe
from onnx_snn.errors import CompilerBug
from onnx_snn.probe import observe

W = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
B = np.random.default_rng(1).normal(size=3).astype(np.float32)


def dense_graph() -> tuple[gs.Graph, dict[str, gs.Variable]]:
    """x [N, 4] -> MatMul W -> Add b (z) -> Relu (y) -> Mul scale (out), scale a second input."""
    x = gs.Variable("x", np.float32, ["N", 4])
    scale = gs.Variable("scale", np.float32, [])
    product, z, y, out = (gs.Variable(name) for name in ("product", "z", "y", "out"))
    out.dtype = np.float32
    nodes = [
        gs.Node("MatMul", "matmul", inputs=[x, gs.Constant("W", W)], outputs=[product]),
        gs.Node("Add", "add", inputs=[product, gs.Constant("b", B)], outputs=[z]),
        gs.Node("Relu", "relu", inputs=[z], outputs=[y]),
        gs.Node("Mul", "mul", inputs=[y, scale], outputs=[out]),
    ]
    graph = gs.Graph(nodes=nodes, inputs=[x, scale], outputs=[out], opset=17, ir_version=8)
    return graph, {"z": z, "y": y}


def reference(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    z = x @ W + B
    return z, np.maximum(z, 0.0)


def samples(n: int, seed: int = 2) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 4)).astype(np.float32)


SCALE = {"scale": np.asarray(2.0, np.float32)}


def test_observed_tensors_equal_numpy_and_the_graph_is_unchanged():
    graph, t = dense_graph()
    before = [n.name for n in graph.nodes], [o.name for o in graph.outputs], t["z"].dtype
    feeds = [{"x": samples(5)}, {"x": samples(3, seed=4)}]
    runs = list(observe(graph, [t["z"], "y", t["z"]], feeds, SCALE))
    assert [r.samples for r in runs] == [5, 3]
    for run, feed in zip(runs, feeds):
        z, y = reference(feed["x"])
        assert len(run.arrays) == 3
        np.testing.assert_allclose(run.arrays[0], z, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(run.arrays[1], y, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(run.arrays[2], run.arrays[0])
        assert (run.arrays[1] >= 0).all()
    assert ([n.name for n in graph.nodes], [o.name for o in graph.outputs], t["z"].dtype) == before


def test_slices_under_a_tiny_budget_give_the_same_arrays():
    graph, t = dense_graph()
    feeds = [{"x": samples(10)}, {"x": samples(0)}, {"x": samples(7, seed=5)}]
    whole = list(observe(graph, [t["z"], t["y"]], feeds, SCALE))
    measured = []

    def two_samples(sample_bytes: int) -> int:  # a budget of 64 bytes a run
        measured.append(sample_bytes)
        return 64 // sample_bytes

    sliced = list(observe(graph, [t["z"], t["y"]], feeds, SCALE, samples_per_run=two_samples))
    assert measured == [2 * 3 * 4]  # one sample of z and y, measured once
    assert [r.samples for r in sliced] == [2] * 5 + [2, 2, 2, 1]  # the empty feed: no run
    for i, first, last in ((0, 0, 5), (2, 5, 9)):
        for k in range(2):
            np.testing.assert_array_equal(np.concatenate([r.arrays[k] for r in sliced[first:last]]), whole[i].arrays[k])


def test_at_least_one_sample_per_run():
    graph, t = dense_graph()
    runs = list(observe(graph, [t["y"]], [{"x": samples(3)}], SCALE, samples_per_run=lambda sample_bytes: 0))
    assert [r.samples for r in runs] == [1, 1, 1]


@pytest.mark.parametrize("prune", [False, True])
def test_prune_drops_what_no_observed_tensor_needs(monkeypatch, prune):
    graph, t = dense_graph()
    models = []
    make_session = probe.make_session
    monkeypatch.setattr(
        probe, "make_session", lambda model, *args, **kw: models.append(model) or make_session(model, *args, **kw)
    )
    (run,) = observe(graph, [t["y"]], [{"x": samples(2)}], SCALE, prune=prune)
    np.testing.assert_allclose(run.arrays[0], reference(samples(2))[1], rtol=1e-5, atol=1e-6)
    ops = [node.op_type for node in onnx.load_from_string(models[0]).graph.node]
    assert ops == ["MatMul", "Add", "Relu"] + ([] if prune else ["Mul"])


def test_a_tensor_not_in_the_graph_is_a_compiler_bug():
    graph, _ = dense_graph()
    with pytest.raises(CompilerBug, match="nowhere"):
        next(observe(graph, ["nowhere"], [{"x": samples(1)}], SCALE))


def snn_graph(threshold: float) -> tuple[gs.Graph, dict[str, gs.Variable]]:
    """x [B, 4] -> Mul 2 (current) -> snn.IFNeuronConstantInput over `timesteps` steps -> spikes, v_T."""
    x = gs.Variable("x", np.float32, ["B", 4])
    timesteps = gs.Variable("timesteps", np.int64, [])
    current, spikes, v_t = gs.Variable("current"), gs.Variable("spikes", np.float32), gs.Variable("v_T")
    nodes = [
        gs.Node("Mul", "double", inputs=[x, gs.Constant("two", np.asarray(2.0, np.float32))], outputs=[current]),
        gs.Node(
            "IFNeuronConstantInput",
            "if",
            domain="snn",
            attrs={"threshold": threshold, "reset": "soft", "v_init": 0.5},
            inputs=[current, timesteps, gs.Constant("v0", np.asarray(np.nan, np.float32))],
            outputs=[spikes, v_t],
        ),
    ]
    graph = gs.Graph(nodes=nodes, inputs=[x, timesteps], outputs=[spikes], opset=21, ir_version=10)
    return graph, {"current": current, "spikes": spikes, "v_T": v_t}


def test_an_snn_graph_runs_with_its_functions_and_a_timesteps_feed():
    threshold, steps = 0.7, 6
    graph, t = snn_graph(threshold)
    x = samples(5)
    feeds = [{"x": x}]
    timesteps = {"timesteps": np.asarray(steps, np.int64)}
    (run,) = observe(graph, [t["current"], t["spikes"], t["v_T"]], feeds, timesteps)
    ref_spikes, ref_v = if_neuron(
        np.broadcast_to(2 * x, (steps, *x.shape)), threshold, "soft", np.float32(0.5 * threshold)
    )
    np.testing.assert_array_equal(run.arrays[0], 2 * x)
    np.testing.assert_array_equal(run.arrays[1], ref_spikes.reshape(steps * len(x), 4))
    np.testing.assert_array_equal(run.arrays[2], ref_v)
    sliced = list(observe(graph, [t["v_T"]], feeds, timesteps, samples_per_run=lambda sample_bytes: 2))
    assert [r.samples for r in sliced] == [2, 2, 1]
    np.testing.assert_array_equal(np.concatenate([r.arrays[0] for r in sliced]), ref_v)
