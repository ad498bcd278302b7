"""The snn.PoissonEncoder local function (its counter-based stream against a numpy reference, its
rates, its reproducibility across runs, sessions, time chunks and batches) and `--encoding poisson`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from onnx_snn import CompileOptions, SnnError, compile_model
from onnx_snn.ir import poisson
from onnx_snn.ir.contract import STEP_OFFSET_INPUT
from onnx_snn.ir.neurons import attach_functions
from onnx_snn.runtime import Session
from onnx_snn.runtime.stateful import expose_state


def encoder_model(rest: list[int], opset: int = 21, fresh: bool = False, **attrs) -> onnx.ModelProto:
    """A model of one PoissonEncoder over x [B, *rest], with timesteps and t0 as graph inputs
    (`fresh`: t0 is the constant 0, as in a compiled model)."""
    t0 = "no_steps_done" if fresh else "t0"
    node = helper.make_node("PoissonEncoder", ["x", "timesteps", t0], ["spikes"], domain="snn", **attrs)
    graph = helper.make_graph(
        [node],
        "poisson_encoder",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", *rest]),
            helper.make_tensor_value_info("timesteps", TensorProto.INT64, []),
            *([] if fresh else [helper.make_tensor_value_info("t0", TensorProto.INT64, [])]),
        ],
        [helper.make_tensor_value_info("spikes", TensorProto.FLOAT, ["TB", *rest])],
        [onnx.numpy_helper.from_array(np.asarray(0, np.int64), t0)] if fresh else [],
    )
    return attach_functions(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=10))


def encoder_session(rest: list[int], **attrs) -> ort.InferenceSession:
    model = encoder_model(rest, **attrs)
    onnx.checker.check_model(model, full_check=True)
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def encode(session: ort.InferenceSession, x: np.ndarray, timesteps: int, t0: int = 0) -> np.ndarray:
    """Spikes as [T, B, ...]."""
    spikes = session.run(None, {"x": x, "timesteps": np.asarray(timesteps, np.int64), "t0": np.asarray(t0, np.int64)})[
        0
    ]
    return spikes.reshape((timesteps,) + x.shape)


def reference_hash(seed: int, steps: np.ndarray, size: int) -> np.ndarray:
    """The module's hash in numpy, [len(steps), size] uint32 (uint64 arithmetic masked to 32 bits)."""
    mask = np.uint64(0xFFFFFFFF)

    def absorb(h: np.ndarray, word: np.ndarray) -> np.ndarray:
        h = (h.astype(np.uint64) + word.astype(np.uint64) * np.uint64(poisson.WORD_MULTIPLIER)) & mask
        for shift, multiplier in poisson.MIX_ROUNDS:
            h ^= h >> np.uint64(shift)
            if multiplier is not None:
                h = (h * np.uint64(multiplier)) & mask
        return h

    seed_u64 = np.uint64(seed % 2**64)
    key = absorb(np.uint64(poisson.HASH_START), seed_u64 & mask)
    key = absorb(key, seed_u64 >> np.uint64(32))
    per_step = absorb(key, (steps.astype(np.uint64) & mask)[:, None])
    return absorb(per_step, np.arange(size, dtype=np.uint64)[None, :]).astype(np.uint32)


def reference_spikes(x: np.ndarray, timesteps: int, t0: int, seed: int, max_rate: float) -> np.ndarray:
    """[T, B, ...] spikes: u = (h >> 8)·2^-24 against max_rate·x."""
    h = reference_hash(seed, np.arange(t0, t0 + timesteps), int(np.prod(x.shape[1:])))
    u = (h >> 8).astype(np.float32) * np.float32(2.0**-24)
    rate = x * np.float32(max_rate)
    return (u.reshape((timesteps, 1) + x.shape[1:]) < rate[None]).astype(np.float32)


@pytest.mark.parametrize("seed", [0, 7, 2**40 + 3, -5])
@pytest.mark.parametrize("t0", [0, 13, 2**32 + 1])
def test_matches_the_numpy_reference(seed, t0):
    x = np.random.default_rng(3).uniform(0, 1, size=(4, 3, 5)).astype(np.float32)
    spikes = encode(encoder_session([3, 5], seed=seed, max_rate=0.8), x, 9, t0)
    np.testing.assert_array_equal(spikes, reference_spikes(x, 9, t0, seed, 0.8))


def test_the_stream_is_frozen():
    """The first hashes of seed 0 at steps 0 and 1: a change of the generator changes every
    compiled model's spikes, and must be deliberate."""
    np.testing.assert_array_equal(reference_hash(0, np.arange(2), 3), np.array(FROZEN_HASHES, np.uint32))


FROZEN_HASHES = [[1935939301, 476964993, 4094961829], [369731783, 3226564961, 3153922356]]


@pytest.mark.parametrize(
    "x_value,max_rate",
    [(0.01, 1.0), (0.1, 1.0), (0.37, 1.0), (0.5, 1.0), (0.9, 1.0), (0.99, 1.0), (0.6, 0.5), (0.3, 2.0)],
)
def test_rate_is_within_3_sigma(x_value, max_rate):
    x = np.full((1, 1000), x_value, np.float32)
    spikes = encode(encoder_session([1000], seed=11, max_rate=max_rate), x, 100)  # 10^5 draws
    p = x_value * max_rate
    assert abs(spikes.mean() - p) < 3 * np.sqrt(p * (1 - p) / spikes.size)


@pytest.mark.parametrize("lag", ["step", "element"])
def test_neighbouring_draws_are_independent(lag):
    """Spikes at consecutive steps, or at neighbouring elements, coincide with probability p²."""
    p = 0.3
    spikes = encode(encoder_session([1000], seed=5), np.full((1, 1000), p, np.float32), 101)[:, 0]
    a, b = (spikes[:-1], spikes[1:]) if lag == "step" else (spikes[:, :-1], spikes[:, 1:])
    both = (a * b).mean()
    assert abs(both - p * p) < 3 * np.sqrt(p * p * (1 - p * p) / a.size)


def test_same_seed_same_spikes_in_every_run_and_session():
    x = np.random.default_rng(0).uniform(0, 1, size=(6, 2, 7)).astype(np.float32)
    first = encoder_session([2, 7], seed=42)
    runs = [encode(first, x, 16), encode(first, x, 16), encode(encoder_session([2, 7], seed=42), x, 16)]
    for run in runs[1:]:
        np.testing.assert_array_equal(run, runs[0])


@pytest.mark.parametrize("other", [43, 42 + 2**32])
def test_different_seeds_differ(other):
    x = np.full((4, 50), 0.5, np.float32)
    same = encode(encoder_session([50], seed=42), x, 16)
    assert (encode(encoder_session([50], seed=other), x, 16) != same).mean() > 0.3


@pytest.mark.parametrize("chunks", [[5, 11], [1] * 16, [3, 1, 12]])
def test_time_chunks_equal_one_run(chunks):
    x = np.random.default_rng(1).uniform(0, 1, size=(3, 4, 5)).astype(np.float32)
    session = encoder_session([4, 5], seed=9)
    starts = np.cumsum([0] + chunks[:-1])
    parts = [encode(session, x, steps, int(t0)) for steps, t0 in zip(chunks, starts)]
    np.testing.assert_array_equal(np.concatenate(parts), encode(session, x, sum(chunks)))


def test_a_sample_spikes_the_same_in_any_batch():
    x = np.random.default_rng(2).uniform(0, 1, size=(8, 30)).astype(np.float32)
    session = encoder_session([30], seed=3)
    whole = encode(session, x, 12)
    np.testing.assert_array_equal(encode(session, x[5:6], 12)[:, 0], whole[:, 5])
    np.testing.assert_array_equal(encode(session, x[::-1].copy(), 12)[:, ::-1], whole)


@pytest.mark.parametrize("max_rate", [1.0, 0.5, 4.0])
def test_zero_never_spikes_and_full_rate_always_spikes(max_rate):
    """max_rate·x = 1 and above (saturated) spike at every step; x = 0 and below never."""
    x = np.array([[0.0] * 100 + [1.0 / max_rate] * 100 + [2.0 / max_rate] * 100 + [-0.3] * 100], np.float32)
    spikes = encode(encoder_session([400], seed=1, max_rate=max_rate), x, 200)[:, 0]
    assert not spikes[:, :100].any() and not spikes[:, 300:].any()
    assert spikes[:, 100:300].all()
    assert set(np.unique(spikes)) == {0.0, 1.0}


def test_rank_one_input():
    x = np.array([0.0, 0.5, 1.0], np.float32)
    spikes = encode(encoder_session([], seed=2), x, 64)
    np.testing.assert_array_equal(spikes, reference_spikes(x, 64, 0, 2, 1.0))


def test_stateful_form_reads_the_step_offset():
    model, ports = expose_state(encoder_model([3], fresh=True, seed=4))
    node = next(n for n in model.graph.node if n.op_type == "PoissonEncoder")
    assert node.input[poisson.ENCODER_INPUTS.index("t0")] == STEP_OFFSET_INPUT and ports == []
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.full((2, 3), 0.5, np.float32)
    np.testing.assert_array_equal(encode(session, x, 6, 10), reference_spikes(x, 6, 10, 4, 1.0))


def test_opset_below_18_is_refused():
    with pytest.raises(ValueError, match="opset 18"):
        encoder_model([3], opset=17)


DIGITS = Path(__file__).resolve().parents[1] / "compiler" / "data"


@pytest.fixture(scope="module")
def digits() -> dict[str, np.ndarray]:
    return dict(np.load(DIGITS / "digits_test.npz"))


@pytest.fixture(scope="module")
def poisson_snn(digits) -> onnx.ModelProto:
    options = CompileOptions(timesteps=32, encoding="poisson", max_rate=0.5, seed=3)
    return compile_model(DIGITS / "digits_mlp.onnx", None, options, calibration=digits["x_calib"]).model


def test_compile_inserts_the_encoder_at_the_input(poisson_snn):
    onnx.checker.check_model(poisson_snn, full_check=True)
    encoder = next(n for n in poisson_snn.graph.node if n.op_type == "PoissonEncoder")
    assert encoder.input[0] == poisson_snn.graph.input[0].name
    assert {a.name: helper.get_attribute_value(a) for a in encoder.attribute} == {"max_rate": 0.5, "seed": 3}


def test_compiled_poisson_runs_are_reproducible_and_chunkable(poisson_snn, digits):
    x = digits["x"][:40]
    whole = Session(poisson_snn).run(x, 32)
    np.testing.assert_array_equal(Session(poisson_snn).run(x, 32).per_step, whole.per_step)
    stream = Session(poisson_snn)
    parts = [stream.stream(x, steps) for steps in (5, 20, 7)]
    np.testing.assert_array_equal(np.concatenate([p.per_step for p in parts]), whole.per_step)
    accuracy = Session(poisson_snn).evaluate(digits["x"], digits["y"], progress=False).accuracy
    assert accuracy[-1] > 0.85


def test_compile_refuses_negative_inputs(digits):
    options = CompileOptions(timesteps=8, encoding="poisson")
    with pytest.raises(SnnError, match=r"reach -1.*scale the inputs into \[0, 1\]"):
        compile_model(DIGITS / "digits_mlp.onnx", None, options, calibration=digits["x_calib"] * 2 - 1)


@pytest.mark.parametrize(
    "fields", [{"encoding": "rate"}, {"encoding": "poisson", "neuron": "signgd"}, {"max_rate": 0.0}, {"seed": 2**32}]
)
def test_encoding_options_are_validated(fields):
    with pytest.raises(SnnError):
        CompileOptions(**fields).validate()
