"""snn.IFMaxPool, the rate-coded MaxPool of IF nets: the op against a numpy reference at every step
(attributes, ties, carried counts, time chunks), and ReLU + MaxPool nets compiled to IF neurons
end to end (the SNN converges to the ANN, streaming, activity, and what `--neuron auto` picks)."""

from __future__ import annotations

import math

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from graph_builders import export_legacy
from helpers import seeded_net
from onnx import TensorProto, helper
from sklearn.datasets import load_digits
from torch import nn

from onnx_snn import CompileOptions, compile_model
from onnx_snn.errors import SnnError
from onnx_snn.ir.contract import SPIKES_PREFIX, SYNOPS_PREFIX
from onnx_snn.ir.neurons import IF_NEURON_OPS, NEURON_OPS, attach_functions
from onnx_snn.runtime import Session
from onnx_snn.runtime.ann import AnnRunner
from onnx_snn.runtime.memory import bytes_per_sample_step, readout_bytes

# --- the op against numpy ----------------------------------------------------------------------


def max_pool(x: np.ndarray, kernel, strides=(1, 1), pads=(0, 0, 0, 0), dilations=(1, 1), ceil_mode=False):
    """Numpy 2-D max pool of x [N, C, H, W] as ONNX MaxPool defines it (pads: begin h, begin w,
    end h, end w; in ceil mode a last window that starts in the end padding is dropped)."""
    n, c, *size = x.shape
    out, padded_to = [], []
    for a in range(2):
        span = (kernel[a] - 1) * dilations[a] + 1
        room = size[a] + pads[a] + pads[a + 2] - span
        count = (math.ceil if ceil_mode else math.floor)(room / strides[a]) + 1
        if ceil_mode and (count - 1) * strides[a] >= size[a] + pads[a]:
            count -= 1
        out.append(count)
        padded_to.append(max(size[a] + pads[a] + pads[a + 2], (count - 1) * strides[a] + span))
    grid = np.full((n, c, *padded_to), -np.inf, dtype=x.dtype)
    grid[:, :, pads[0] : pads[0] + size[0], pads[1] : pads[1] + size[1]] = x
    y = np.full((n, c, *out), -np.inf, dtype=x.dtype)
    for i in range(out[0]):
        for j in range(out[1]):
            rows = i * strides[0] + dilations[0] * np.arange(kernel[0])
            cols = j * strides[1] + dilations[1] * np.arange(kernel[1])
            y[:, :, i, j] = grid[:, :, rows][:, :, :, cols].max(axis=(2, 3))
    return y


def if_maxpool_reference(x: np.ndarray, c0: np.ndarray, **pool) -> tuple[np.ndarray, np.ndarray]:
    """x [T, B, C, H, W], c0 [B, C, H, W]: y_t = MaxPool(C_t) - MaxPool(C_{t-1}), C_t = C_{t-1} + x_t,
    one step at a time. Returns y [T, B, ...] and C_T."""
    counts, ys = c0.astype(np.float32), []
    for step in x:
        before = max_pool(counts, **pool)
        counts = counts + step
        ys.append(max_pool(counts, **pool) - before)
    return np.stack(ys), counts


def pool_session(**attrs) -> ort.InferenceSession:
    node = helper.make_node("IFMaxPool", ["x", "timesteps", "c0"], ["y", "c_T"], domain="snn", **attrs)
    graph = helper.make_graph(
        [node],
        "if_maxpool",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["TB", 2, "H", "W"]),
            helper.make_tensor_value_info("timesteps", TensorProto.INT64, []),
            helper.make_tensor_value_info("c0", TensorProto.FLOAT, ["B", 2, "H", "W"]),
        ],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["TB", 2, "H2", "W2"]),
            helper.make_tensor_value_info("c_T", TensorProto.FLOAT, ["B", 2, "H", "W"]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)], ir_version=10)
    attach_functions(model)
    onnx.checker.check_model(model, full_check=True)
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def run_pool(session: ort.InferenceSession, x: np.ndarray, c0) -> tuple[np.ndarray, np.ndarray]:
    """x [T, B, ...] through the op from counts c0 (NaN: fresh); y [T, B, ...] and c_T."""
    t, b = x.shape[:2]
    c0 = np.ascontiguousarray(np.broadcast_to(np.asarray(c0, np.float32), x.shape[1:]))
    feed = {"x": x.reshape((t * b,) + x.shape[2:]), "timesteps": np.asarray(t, np.int64), "c0": c0}
    y, c_t = session.run(None, feed)
    return y.reshape((t, b) + y.shape[1:]), c_t


def spikes(shape, rate: float, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).random(shape) < rate).astype(np.float32)


ATTRIBUTES = {
    "2x2/2": {"kernel_shape": [2, 2], "strides": [2, 2]},
    "3x3/2 pad 1": {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]},
    "3x3/2 ceil": {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1},
    "3x2/1 uneven pads ceil": {"kernel_shape": [3, 2], "strides": [2, 1], "pads": [1, 0, 0, 1], "ceil_mode": 1},
    "2x2 dilation 2": {"kernel_shape": [2, 2], "dilations": [2, 2]},
    "3x3/1 dilation 2 pad 2": {"kernel_shape": [3, 3], "dilations": [2, 2], "pads": [2, 2, 2, 2]},
}


def _reference_pool(attrs: dict) -> dict:
    return {
        "kernel": attrs["kernel_shape"],
        "strides": attrs.get("strides", (1, 1)),
        "pads": attrs.get("pads", (0, 0, 0, 0)),
        "dilations": attrs.get("dilations", (1, 1)),
        "ceil_mode": bool(attrs.get("ceil_mode", 0)),
    }


@pytest.mark.parametrize("timesteps", [1, 7, 40])
@pytest.mark.parametrize("name", sorted(ATTRIBUTES))
def test_matches_the_numpy_reference_at_every_step(name, timesteps):
    attrs = ATTRIBUTES[name]
    x = spikes((timesteps, 3, 2, 8, 8), 0.35, seed=timesteps)
    y, c_t = run_pool(pool_session(**attrs), x, np.nan)
    ref_y, ref_c = if_maxpool_reference(x, np.zeros(x.shape[1:], np.float32), **_reference_pool(attrs))
    np.testing.assert_array_equal(y, ref_y)
    np.testing.assert_array_equal(c_t, ref_c)
    assert set(np.unique(y)) <= {0.0, 1.0}  # spikes in, spikes out
    # each output's spike count is the largest input spike count of its window
    np.testing.assert_array_equal(y.sum(axis=0), max_pool(x.sum(axis=0), **_reference_pool(attrs)))


def test_auto_pad_passes_through():
    """SAME_UPPER on 7x7, kernel 3, stride 2: 4 outputs a side, one row and column of padding at each end."""
    x = spikes((5, 2, 2, 7, 7), 0.5, seed=3)
    y, _ = run_pool(pool_session(kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER"), x, np.nan)
    assert y.shape == (5, 2, 2, 4, 4)
    np.testing.assert_array_equal(y.sum(axis=0), max_pool(x.sum(axis=0), [3, 3], (2, 2), (1, 1, 1, 1)))


def test_ties_give_one_spike_per_rise_of_the_maximum():
    """Every input of a window spiking at the same steps: the output spikes exactly then, once."""
    train = spikes((12, 1, 1, 1, 1), 0.5, seed=4)
    x = np.broadcast_to(train, (12, 1, 2, 4, 4)).copy()
    y, c_t = run_pool(pool_session(kernel_shape=[2, 2], strides=[2, 2]), x, np.nan)
    np.testing.assert_array_equal(y, np.broadcast_to(train, y.shape))
    np.testing.assert_array_equal(c_t, x.sum(axis=0))


def test_a_given_count_is_used_and_time_chunks_equal_one_run():
    attrs = {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}
    session = pool_session(**attrs)
    x = spikes((24, 3, 2, 8, 8), 0.3, seed=5)
    c0 = np.random.default_rng(6).integers(0, 5, size=x.shape[1:]).astype(np.float32)
    whole, whole_c = run_pool(session, x, c0)
    ref_y, ref_c = if_maxpool_reference(x, c0, **_reference_pool(attrs))
    np.testing.assert_array_equal(whole, ref_y)
    np.testing.assert_array_equal(whole_c, ref_c)
    parts, carried, first = [], c0, 0
    for steps in (5, 1, 11, 7):
        y, carried = run_pool(session, x[first : first + steps], carried)
        parts.append(y)
        first += steps
    np.testing.assert_array_equal(np.concatenate(parts), whole)
    np.testing.assert_array_equal(carried, whole_c)


def test_any_input_keeps_the_max_of_its_sums():
    """Currents instead of spikes (a MaxPool before its ReLU): the output sums, over the steps, to
    the max of the input's sums; it is not binary."""
    x = np.random.default_rng(7).normal(0.1, 1.0, size=(16, 2, 2, 6, 6)).astype(np.float32)
    y, _ = run_pool(pool_session(kernel_shape=[2, 2], strides=[2, 2]), x, np.nan)
    totals = max_pool(np.cumsum(x, axis=0)[-1], [2, 2], (2, 2))
    np.testing.assert_allclose(y.sum(axis=0), totals, rtol=1e-5, atol=1e-5)


def test_the_registry_carries_its_counts_as_state():
    op = NEURON_OPS["IFMaxPool"]
    assert op.role == "pool" and op.states == (("c0", "c_T", ("x",)),) and op.step_offset is None


# --- compiled nets -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits_x() -> np.ndarray:
    return (load_digits().data / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)


def relu_maxpool_cnn() -> nn.Module:
    """Conv-ReLU-MaxPool(2) -> Conv-ReLU-MaxPool(3, 2, 1, ceil) -> Linear: pools of spikes only."""
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True),  # 4x4 -> 3x3
        nn.Flatten(),
        nn.Linear(144, 10),
    )


@pytest.fixture(scope="module")
def cnn_ann(digits_x) -> onnx.ModelProto:
    return export_legacy(seeded_net(relu_maxpool_cnn), digits_x[:2])


@pytest.fixture(scope="module")
def cnn_snn(cnn_ann, digits_x) -> onnx.ModelProto:
    options = CompileOptions(timesteps=32, stats=True, neuron="if")
    return compile_model(cnn_ann, None, options, calibration=digits_x[:256]).model


def _relative_errors(ann: onnx.ModelProto, snn: onnx.ModelProto, x: np.ndarray, steps) -> dict[int, float]:
    expected = AnnRunner(ann).run({"x": x})
    session = Session(snn)
    return {t: float(np.linalg.norm(session.run(x, t).logits - expected) / np.linalg.norm(expected)) for t in steps}


def test_a_relu_maxpool_cnn_compiles_to_if_neurons_that_converge(cnn_ann, cnn_snn, digits_x):
    ops = [n.op_type for n in cnn_snn.graph.node]
    assert ops.count("IFMaxPool") == 2 and "MaxPool" not in ops and "SignGDNeuron" not in ops
    onnx.checker.check_model(cnn_snn, full_check=True)
    errors = _relative_errors(cnn_ann, cnn_snn, digits_x[-128:], (16, 64, 256))
    assert errors[256] < errors[64] < errors[16], errors
    assert errors[256] < 0.02, errors


def test_a_maxpool_of_the_analog_input_stays_a_maxpool_and_of_poisson_spikes_becomes_if(digits_x):
    """The analog input is the same at every step: its MaxPool is computed once. Poisson input
    spikes change every step: their MaxPool is an IFMaxPool."""
    net = nn.Sequential(nn.MaxPool2d(2), nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(64, 10))
    ann = export_legacy(seeded_net(lambda: net), digits_x[:2])
    analog = compile_model(ann, None, CompileOptions(timesteps=8, neuron="if"), calibration=digits_x[:128]).model
    ops = [n.op_type for n in analog.graph.node]
    assert "MaxPool" in ops and "IFMaxPool" not in ops and "BurstIFNeuronConstantInput" in ops
    x = digits_x[-32:]
    expected = AnnRunner(ann).run({"x": x})
    logits = Session(analog).run(x, 256).logits
    assert np.linalg.norm(logits - expected) / np.linalg.norm(expected) < 0.02
    options = CompileOptions(timesteps=8, encoding="poisson", neuron="if")
    poisson = compile_model(ann, None, options, calibration=digits_x[:128])
    ops = [n.op_type for n in poisson.model.graph.node]
    assert "IFMaxPool" in ops and "MaxPool" not in ops


def test_a_maxpool_of_currents_before_its_relu_converges_and_is_not_a_spiking_layer(digits_x):
    """Conv -> MaxPool -> ReLU: the pool reads time-varying currents (after the first layer); its
    output sums to their max, which the IF neurons after it integrate."""
    net = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.MaxPool2d(2),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(128, 10),
    )
    ann = export_legacy(seeded_net(lambda: net), digits_x[:2])
    result = compile_model(ann, None, CompileOptions(timesteps=8, stats=True, neuron="if"), calibration=digits_x[:256])
    pools = [n.name for n in result.model.graph.node if n.op_type == "IFMaxPool"]
    assert len(pools) == 1
    assert pools[0] not in {name for name, _ in result.metadata["activity"]["neurons"]}
    errors = _relative_errors(ann, result.model, digits_x[-64:], (16, 256))
    assert errors[256] < errors[16] and errors[256] < 0.03, errors


def test_auto_picks_if_for_a_2d_maxpool_net(cnn_ann, digits_x):
    """With burst spikes IF neurons are measured more accurate than signGD on fashion-maxpool at
    every T (op_support's MaxPool row): auto picks them for a ReLU + MaxPool net."""
    result = compile_model(cnn_ann, None, CompileOptions(timesteps=8), calibration=digits_x[:64])
    assert result.metadata["neuron"] == "if"
    assert "IFMaxPool" in [n.op_type for n in result.model.graph.node]


def test_auto_picks_if_for_a_1d_maxpool_net_which_signgd_does_not_decompose(digits_x):
    net = nn.Sequential(nn.Conv1d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool1d(2), nn.Flatten(), nn.Linear(128, 10))
    x = digits_x.reshape(-1, 1, 64)
    ann = export_legacy(seeded_net(lambda: net), x[:2])
    result = compile_model(ann, None, CompileOptions(timesteps=8), calibration=x[:64])
    assert result.metadata["neuron"] == "if"
    assert "IFMaxPool" in [n.op_type for n in result.model.graph.node]
    errors = _relative_errors(ann, result.model, x[-32:], (16, 256))
    assert errors[256] < errors[16] and errors[256] < 0.02, errors


@pytest.mark.parametrize("chunks", [[1] * 12, [5, 1, 6]])
def test_stream_and_time_chunks_equal_the_full_run(cnn_snn, digits_x, chunks):
    x = digits_x[:24]
    full = Session(cnn_snn).run(x, 12)
    session = Session(cnn_snn)
    parts = [session.stream(x, steps) for steps in chunks]
    np.testing.assert_array_equal(np.concatenate([p.per_step for p in parts]), full.per_step)
    np.testing.assert_array_equal(parts[-1].logits, full.logits)
    for name, counts in full.spikes.items():
        np.testing.assert_array_equal(sum(p.spikes[name] for p in parts), counts)
    ports = {port.input for port in session.stepper.ports}
    assert sum(name.endswith("/c0") for name in ports) == 2  # the two pools' counts are carried
    # a budget for the 12 steps' read-out and 3 steps of work: the run goes in time chunks
    budget = (readout_bytes(cnn_snn) * 12 + bytes_per_sample_step(cnn_snn) * 3) * len(x)
    budgeted = Session(cnn_snn, max_memory=budget)
    assert budgeted.run_plan(len(x), 12)[1] < 12
    np.testing.assert_array_equal(budgeted.run(x, 12).per_step, full.per_step)


def test_the_pools_are_spiking_layers_with_their_own_fan_out(cnn_snn, digits_x):
    """Each pool of spikes emits spikes (counted, one accumulate each into its counts); its input
    layer's synaptic operations are its spikes (one per spike), the pool's the next layer's fan-out."""
    activity = {name: n for name, n in Session(cnn_snn).activity["neurons"]}
    pools = [n.name for n in cnn_snn.graph.node if n.op_type == "IFMaxPool"]
    assert set(pools) <= set(activity) and activity[pools[0]] == 8 * 4 * 4
    run = Session(cnn_snn).run(digits_x[:16], 16)
    first_relu = next(n.name for n in cnn_snn.graph.node if n.op_type in IF_NEURON_OPS)
    np.testing.assert_array_equal(run.synops[SYNOPS_PREFIX + first_relu], run.spikes[SPIKES_PREFIX + first_relu])
    pooled = run.spikes[SPIKES_PREFIX + pools[0]]
    assert np.all(pooled > 0) and np.all(pooled <= run.spikes[SPIKES_PREFIX + first_relu])
    assert np.all(run.synops[SYNOPS_PREFIX + pools[0]] > pooled)  # the next Conv's fan-out


def test_a_maxpool_whose_indices_are_read_is_refused_by_if(digits_x):
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="act"),
        helper.make_node("MaxPool", ["r"], ["p", "i"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Cast", ["i"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("Add", ["p", "f"], ["y"], name="add"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1, 4, 4])],
    )
    ann = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    with pytest.raises(SnnError, match="Indices output is read"):
        compile_model(ann, None, CompileOptions(neuron="if"), calibration=digits_x[:16])
