"""The snn.IFNeuron local function against the numpy reference, run in a plain onnxruntime session."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from neuron_reference import (
    burst_if_neuron,
    capped_burst_if_neuron,
    if_neuron,
    multi_spike_if_neuron,
    signed_if_neuron,
)
from onnx import TensorProto, helper

from onnx_snn.ir.neurons import attach_functions


def neuron_session(
    threshold: float, reset: str | None, v_init: float = 0.5, op: str = "IFNeuron", **attrs: float
) -> ort.InferenceSession:
    """A session of one IF neuron op of inputs x, timesteps, v0 and outputs s, v_T (reset None: no
    reset attribute, for the multi-spike op; `attrs`: further attributes)."""
    if reset is not None:
        attrs["reset"] = reset
    node = helper.make_node(
        op, ["x", "timesteps", "v0"], ["s", "v_T"], domain="snn", threshold=threshold, v_init=v_init, **attrs
    )
    graph = helper.make_graph(
        [node],
        "if_neuron",
        [
            helper.make_tensor_value_info(
                "x", TensorProto.FLOAT, ["B" if op.endswith("ConstantInput") else "TB", 3, 4]
            ),
            helper.make_tensor_value_info("timesteps", TensorProto.INT64, []),
            helper.make_tensor_value_info("v0", TensorProto.FLOAT, ["B", 3, 4]),
        ],
        [
            helper.make_tensor_value_info("s", TensorProto.FLOAT, ["TB", 3, 4]),
            helper.make_tensor_value_info("v_T", TensorProto.FLOAT, ["B", 3, 4]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)], ir_version=10)
    attach_functions(model)
    onnx.checker.check_model(model, full_check=True)
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def simulate(session, x: np.ndarray, v0) -> tuple[np.ndarray, np.ndarray]:
    t, b = x.shape[:2]
    v0 = np.broadcast_to(np.asarray(v0, np.float32), x.shape[1:])  # NaN entries: a fresh membrane
    s, v = session.run(
        None,
        {"x": x.reshape((t * b,) + x.shape[2:]), "timesteps": np.asarray(t, np.int64), "v0": np.ascontiguousarray(v0)},
    )
    return s.reshape(x.shape), v


@pytest.mark.parametrize("reset", ["soft", "hard"])
@pytest.mark.parametrize("timesteps", [1, 7, 64, 256])
@pytest.mark.parametrize("threshold", [1.0, 0.37])
def test_matches_numpy_reference(reset, timesteps, threshold):
    rng = np.random.default_rng(timesteps)
    x = rng.normal(0.3, 0.6, size=(timesteps, 5, 3, 4)).astype(np.float32)
    session = neuron_session(threshold, reset)
    spikes, v_t = simulate(session, x, np.nan)
    ref_spikes, ref_v = if_neuron(x, threshold, reset, np.float32(0.5 * threshold))
    np.testing.assert_array_equal(spikes, ref_spikes)
    np.testing.assert_array_equal(v_t, ref_v)
    assert set(np.unique(spikes)) <= {0.0, 1.0}


@pytest.mark.parametrize("reset", ["soft", "hard"])
@pytest.mark.parametrize("timesteps", [1, 9, 64])
def test_constant_input_neuron_equals_the_tiled_one(reset, timesteps):
    """IFNeuronConstantInput reads x [B, ...] once for all steps; IFNeuron reads it tiled to [T*B, ...]."""
    x = np.random.default_rng(timesteps).normal(0.3, 0.6, size=(5, 3, 4)).astype(np.float32)
    v0 = np.full(x.shape, np.nan, np.float32)
    v0[0] = 0.25  # one sample starts from a given state
    tiled, tiled_v = simulate(neuron_session(0.37, reset), np.broadcast_to(x, (timesteps,) + x.shape).copy(), v0)
    once = neuron_session(0.37, reset, op="IFNeuronConstantInput")
    spikes, v_t = once.run(None, {"x": x, "timesteps": np.asarray(timesteps, np.int64), "v0": v0})
    np.testing.assert_array_equal(spikes.reshape(tiled.shape), tiled)
    np.testing.assert_array_equal(v_t, tiled_v)


@pytest.mark.parametrize("reset", ["soft", "hard"])
def test_given_state_is_used(reset):
    rng = np.random.default_rng(1)
    x = rng.uniform(-0.2, 0.9, size=(16, 2, 3, 4)).astype(np.float32)
    v0 = rng.uniform(-1, 1, size=(2, 3, 4)).astype(np.float32)
    spikes, v_t = simulate(neuron_session(1.0, reset), x, v0)
    ref_spikes, ref_v = if_neuron(x, 1.0, reset, v0)
    np.testing.assert_array_equal(spikes, ref_spikes)
    np.testing.assert_array_equal(v_t, ref_v)


@pytest.mark.parametrize("reset", ["soft", "hard"])
def test_chunked_run_equals_single_run(reset):
    rng = np.random.default_rng(2)
    x = rng.uniform(0.0, 0.8, size=(32, 4, 3, 4)).astype(np.float32)
    session = neuron_session(0.8, reset)
    whole, v_whole = simulate(session, x, np.nan)
    first, v_mid = simulate(session, x[:16], np.nan)
    second, v_end = simulate(session, x[16:], v_mid)
    np.testing.assert_array_equal(np.concatenate([first, second]), whole)
    np.testing.assert_array_equal(v_end, v_whole)


def test_v_init_attribute_sets_fresh_membrane():
    x = np.zeros((3, 1, 3, 4), np.float32)
    _, v_t = simulate(neuron_session(2.0, "soft", v_init=0.25), x, np.nan)
    np.testing.assert_array_equal(v_t, np.full((1, 3, 4), 0.5, np.float32))


def test_rate_approximates_clipped_input():
    x = np.broadcast_to(np.linspace(-0.5, 1.5, 12, dtype=np.float32).reshape(1, 1, 3, 4), (256, 1, 3, 4)).copy()
    spikes, _ = simulate(neuron_session(1.0, "soft"), x, np.nan)
    rate = spikes.mean(axis=0)
    np.testing.assert_allclose(rate, np.clip(x[0], 0, 1), atol=1.0 / 256 + 1e-6)


def signed_session(threshold: float, op: str = "SignedIFNeuron") -> ort.InferenceSession:
    """A session of one snn.SignedIFNeuron (or its constant-input form) with graph inputs x,
    timesteps, v0 and n0 and outputs s, v_T, n_T."""
    node = helper.make_node(
        op, ["x", "timesteps", "v0", "n0"], ["s", "v_T", "n_T"], domain="snn", threshold=threshold, v_init=0.5
    )
    step = ["B" if op.endswith("ConstantInput") else "TB", 3, 4]
    value = helper.make_tensor_value_info
    graph = helper.make_graph(
        [node],
        "signed_if_neuron",
        [
            value("x", TensorProto.FLOAT, step),
            value("timesteps", TensorProto.INT64, []),
            value("v0", TensorProto.FLOAT, ["B", 3, 4]),
            value("n0", TensorProto.FLOAT, ["B", 3, 4]),
        ],
        [
            value("s", TensorProto.FLOAT, ["TB", 3, 4]),
            value("v_T", TensorProto.FLOAT, ["B", 3, 4]),
            value("n_T", TensorProto.FLOAT, ["B", 3, 4]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)], ir_version=10)
    attach_functions(model)
    onnx.checker.check_model(model, full_check=True)
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def simulate_signed(session, x: np.ndarray, v0, n0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    t, b = x.shape[:2]
    state = [np.ascontiguousarray(np.broadcast_to(np.asarray(v, np.float32), x.shape[1:])) for v in (v0, n0)]
    feed = {
        "x": x.reshape((t * b,) + x.shape[2:]),
        "timesteps": np.asarray(t, np.int64),
        "v0": state[0],
        "n0": state[1],
    }
    s, v, n = session.run(None, feed)
    return s.reshape(x.shape), v, n


@pytest.mark.parametrize("timesteps", [1, 7, 64, 256])
@pytest.mark.parametrize("threshold", [1.0, 0.37])
def test_signed_matches_numpy_reference(timesteps, threshold):
    """Currents of either sign around a small mean: the neuron fires, takes spikes back, and its
    net count is the rounded ReLU of its summed input at every step (up to one step of lag)."""
    x = np.random.default_rng(timesteps).normal(0.05, 0.6, size=(timesteps, 5, 3, 4)).astype(np.float32)
    spikes, v_t, n_t = simulate_signed(signed_session(threshold), x, np.nan, np.nan)
    ref_spikes, ref_v, ref_n = signed_if_neuron(x, threshold, np.float32(0.5 * threshold))
    np.testing.assert_array_equal(spikes, ref_spikes)
    np.testing.assert_array_equal(v_t, ref_v)
    np.testing.assert_array_equal(n_t, ref_n)
    np.testing.assert_array_equal(n_t, spikes.sum(axis=0))
    if timesteps > 1:
        assert set(np.unique(spikes)) == {-1.0, 0.0, 1.0}
    counts = np.cumsum(spikes, axis=0)
    assert counts.min() >= 0  # never below zero: a ReLU
    summed = np.float32(0.5) + np.cumsum(x / np.float32(threshold), axis=0)
    # where the summed input moves by at most one threshold a step, the count is its rounded ReLU
    calm = np.all(np.abs(x / np.float32(threshold)) < 1, axis=0)
    np.testing.assert_array_equal(counts[-1][calm], np.maximum(0, np.floor(summed[-1]))[calm])


def test_signed_takes_back_what_a_binary_neuron_keeps():
    """+0.8 then −0.8: the binary neuron keeps the spike its first current caused, the signed one
    takes it back, so only its count is the ReLU of the summed input (0)."""
    x = np.asarray([0.8, -0.8, 0.0, 0.0], np.float32).reshape(4, 1, 1, 1) * np.ones((1, 1, 3, 4), np.float32)
    binary, _ = simulate(neuron_session(1.0, "soft"), x, np.nan)
    signed, _, n_t = simulate_signed(signed_session(1.0), x, np.nan, np.nan)
    assert binary.sum(axis=0).max() == 1.0
    np.testing.assert_array_equal(signed[:, 0, 0, 0], [1.0, -1.0, 0.0, 0.0])
    np.testing.assert_array_equal(n_t, np.zeros_like(n_t))


@pytest.mark.parametrize("op", ["SignedIFNeuron", "BurstIFNeuron"])
@pytest.mark.parametrize("timesteps", [1, 9, 64])
def test_signed_constant_input_equals_the_tiled_one_and_chunks_equal_one_run(op, timesteps):
    x = np.random.default_rng(timesteps).normal(0.1, 0.6, size=(5, 3, 4)).astype(np.float32)
    tiled = np.broadcast_to(x, (timesteps,) + x.shape).copy()
    whole, v_whole, n_whole = simulate_signed(signed_session(0.37, op), tiled, np.nan, np.nan)
    once = signed_session(0.37, op=f"{op}ConstantInput")
    fresh = np.full(x.shape, np.nan, np.float32)
    spikes, v_t, n_t = once.run(None, {"x": x, "timesteps": np.asarray(timesteps, np.int64), "v0": fresh, "n0": fresh})
    np.testing.assert_array_equal(spikes.reshape(whole.shape), whole)
    np.testing.assert_array_equal(v_t, v_whole)
    np.testing.assert_array_equal(n_t, n_whole)
    rng = np.random.default_rng(5)
    currents = rng.normal(0.0, 0.7, size=(2 * timesteps, 5, 3, 4)).astype(np.float32)
    session = signed_session(1.0, op)
    full, v_full, n_full = simulate_signed(session, currents, np.nan, np.nan)
    first, v_mid, n_mid = simulate_signed(session, currents[:timesteps], np.nan, np.nan)
    second, v_end, n_end = simulate_signed(session, currents[timesteps:], v_mid, n_mid)
    np.testing.assert_array_equal(np.concatenate([first, second]), full)
    np.testing.assert_array_equal(v_end, v_full)
    np.testing.assert_array_equal(n_end, n_full)


@pytest.mark.parametrize("timesteps", [1, 7, 64, 256])
@pytest.mark.parametrize("threshold", [1.0, 0.37])
def test_burst_matches_numpy_reference_and_its_count_is_the_rounded_relu(timesteps, threshold):
    """Currents of either sign, often above the threshold: ⌊u⌋ spikes up, spikes back down to at
    most the count sent, and the count is max(0, ⌊v_init + Σ x⌋) at every step (no cap)."""
    x = np.random.default_rng(timesteps).normal(0.05, 1.5, size=(timesteps, 5, 3, 4)).astype(np.float32)
    spikes, v_t, n_t = simulate_signed(signed_session(threshold, "BurstIFNeuron"), x, np.nan, np.nan)
    ref_spikes, ref_v, ref_n = burst_if_neuron(x, threshold, np.float32(0.5 * threshold))
    np.testing.assert_array_equal(spikes, ref_spikes)
    np.testing.assert_array_equal(v_t, ref_v)
    np.testing.assert_array_equal(n_t, ref_n)
    counts = np.cumsum(spikes, axis=0)
    summed = 0.5 + np.cumsum((x / np.float32(threshold)).astype(np.float64), axis=0)
    clear = np.abs(summed - np.round(summed)) > 1e-4  # away from an integer by more than float rounding
    np.testing.assert_array_equal(counts[clear], np.maximum(0, np.floor(summed))[clear])
    if timesteps > 1:
        assert spikes.max() >= 2 and spikes.min() <= -1


@pytest.mark.parametrize("v_min", [None, -1.0, -0.25])
@pytest.mark.parametrize("timesteps", [1, 7, 64])
@pytest.mark.parametrize("threshold", [1.0, 0.37])
def test_multi_spike_matches_numpy_reference(v_min, timesteps, threshold):
    """⌊u⌋ spikes a step (several where the input exceeds the threshold), soft reset, floor v_min."""
    x = np.random.default_rng(timesteps).normal(0.3, 1.5, size=(timesteps, 5, 3, 4)).astype(np.float32)
    floor = {} if v_min is None else {"v_min": v_min}
    spikes, v_t = simulate(neuron_session(threshold, None, op="MultiSpikeIFNeuron", **floor), x, np.nan)
    ref_spikes, ref_v = multi_spike_if_neuron(x, threshold, np.float32(0.5 * threshold), **floor)
    np.testing.assert_array_equal(spikes, ref_spikes)
    np.testing.assert_array_equal(v_t, ref_v)
    if timesteps > 1:
        assert spikes.max() >= 2 and spikes.min() == 0.0  # bursts happen, and no spike is negative


@pytest.mark.parametrize("timesteps", [1, 9, 64])
def test_multi_spike_constant_input_equals_the_tiled_one_and_chunks_equal_one_run(timesteps):
    x = np.random.default_rng(timesteps).normal(0.3, 1.5, size=(5, 3, 4)).astype(np.float32)
    tiled = np.broadcast_to(x, (timesteps,) + x.shape).copy()
    session = neuron_session(0.37, None, op="MultiSpikeIFNeuron", v_min=-1.0)
    whole, v_whole = simulate(session, tiled, np.nan)
    once = neuron_session(0.37, None, op="MultiSpikeIFNeuronConstantInput", v_min=-1.0)
    v0 = np.full(x.shape, np.nan, np.float32)
    spikes, v_t = once.run(None, {"x": x, "timesteps": np.asarray(timesteps, np.int64), "v0": v0})
    np.testing.assert_array_equal(spikes.reshape(whole.shape), whole)
    np.testing.assert_array_equal(v_t, v_whole)
    half = timesteps // 2
    first, v_mid = simulate(session, tiled[:half], np.nan) if half else (whole[:0], v0)
    second, v_end = simulate(session, tiled[half:], v_mid)
    np.testing.assert_array_equal(np.concatenate([first, second]), whole)
    np.testing.assert_allclose(v_end, v_whole, rtol=1e-6)  # v_T = u·θ, read back as v_T / θ: one rounding


def capped_session(op: str = "CappedBurstIFNeuron") -> ort.InferenceSession:
    """A session of one snn.CappedBurstIFNeuron (or its constant-input form), threshold 1, inputs
    x, timesteps, states v0, n0, h0 and the cap [3, 1] per channel, outputs s, v_T, n_T, h_T."""
    node = helper.make_node(
        op,
        ["x", "timesteps", "v0", "n0", "h0", "cap"],
        ["s", "v_T", "n_T", "h_T"],
        domain="snn",
        threshold=1.0,
        v_init=0.5,
    )
    value = helper.make_tensor_value_info
    state = ["B", 3, 4]
    graph = helper.make_graph(
        [node],
        "capped_burst_if_neuron",
        [
            value("x", TensorProto.FLOAT, ["B" if op.endswith("ConstantInput") else "TB", 3, 4]),
            value("timesteps", TensorProto.INT64, []),
            *(value(name, TensorProto.FLOAT, state) for name in ("v0", "n0", "h0")),
            value("cap", TensorProto.FLOAT, [3, 1]),
        ],
        [
            value("s", TensorProto.FLOAT, ["TB", 3, 4]),
            *(value(n, TensorProto.FLOAT, state) for n in ("v_T", "n_T", "h_T")),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)], ir_version=10)
    attach_functions(model)
    onnx.checker.check_model(model, full_check=True)
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("timesteps", [1, 7, 64, 256])
@pytest.mark.parametrize("caps", [(1.0, 1.0, 1.0), (1.0, 2.5, 7.0)], ids=["one", "per-channel"])
def test_capped_burst_matches_numpy_reference_and_its_count_is_the_clipped_relu(timesteps, caps):
    """The count is min(max(0, ⌊v_init + Σ x⌋), ⌊k·t⌋) at every step: a ReLU capped at k spikes a
    step on average (k per channel), what a capped ReLU normalized to Min(Relu(x/λ), k) needs;
    bursts catch up below the cap."""
    cap = np.asarray(caps, np.float32).reshape(3, 1)
    x = (np.random.default_rng(timesteps).normal(0.6, 1.5, size=(timesteps, 5, 3, 4)) * cap).astype(np.float32)
    fresh = np.full((5, 3, 4), np.nan, np.float32)
    feed = {"x": x.reshape(-1, 3, 4), "timesteps": np.asarray(timesteps, np.int64), "v0": fresh, "n0": fresh}
    feed["cap"] = cap
    spikes, v_t, n_t, h_t = capped_session().run(None, {**feed, "h0": fresh})
    ref = capped_burst_if_neuron(x, 1.0, np.float32(0.5), cap)
    for got, expected in zip((spikes.reshape(x.shape), v_t, n_t, h_t), ref):
        np.testing.assert_array_equal(got, expected)
    counts = np.cumsum(spikes.reshape(x.shape), axis=0)
    steps = np.arange(1, timesteps + 1, dtype=np.float64).reshape(-1, 1, 1, 1)
    summed = 0.5 + np.cumsum(x.astype(np.float64), axis=0)
    clear = np.abs(summed - np.round(summed)) > 1e-4
    expected_counts = np.minimum(np.maximum(0, np.floor(summed)), np.floor(steps * cap.astype(np.float64)))
    np.testing.assert_array_equal(counts[clear], expected_counts[clear])
    once = capped_session("CappedBurstIFNeuronConstantInput").run(None, {**feed, "x": x[0], "h0": fresh})
    tiled = capped_session().run(
        None, {**feed, "x": np.broadcast_to(x[0], x.shape).reshape(-1, 3, 4).copy(), "h0": fresh}
    )
    for a, b in zip(once, tiled):
        np.testing.assert_array_equal(a.reshape(b.shape), b)
