"""Streaming (state carried between calls), reset, and memory-budgeted runs in chunks: each equals
one fresh full run bit for bit, for IF and signGD models."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from graph_builders import Residual, conv_relu_maxpool, export_legacy, randomized
from torch import nn

from onnx_snn import CompileOptions, SnnError, budget, compile_model
from onnx_snn.budget import parse_size
from onnx_snn.ir.contract import STATE_IN_PREFIX, STATE_OUT_PREFIX, STEP_OFFSET_INPUT
from onnx_snn.runtime import EvalReport, RunResult, Session
from onnx_snn.runtime import session as session_module
from onnx_snn.runtime.memory import MIN_BATCH_CHUNK, bytes_per_sample_step, plan_chunks, readout_bytes
from onnx_snn.runtime.stateful import expose_state

STEPS = 24


def signgd_net() -> nn.Module:
    """Conv-ReLU-MaxPool, then LayerNorm and GELU: unary and two-operand signGD neurons, the
    encoder and decoder, all of which depend on the absolute step."""
    torch.manual_seed(0)
    return nn.Sequential(*conv_relu_maxpool(4), nn.Linear(64, 16), nn.LayerNorm(16), nn.GELU(), nn.Linear(16, 5)).eval()


@pytest.fixture(scope="module", params=["if", "signgd"])
def ann(request) -> tuple[onnx.ModelProto, np.ndarray, str]:
    """(the ANN, 40 inputs, its neuron type)."""
    x = np.random.default_rng(1).uniform(0, 1, size=(40, 1, 8, 8)).astype(np.float32)
    net = randomized(Residual()) if request.param == "if" else signgd_net()
    return export_legacy(net, x[:2]), x, request.param


@pytest.fixture(scope="module")
def compiled(ann) -> tuple[onnx.ModelProto, np.ndarray]:
    source, x, neuron = ann
    options = CompileOptions(timesteps=STEPS, stats=True, neuron=neuron)
    return compile_model(source, None, options, calibration=x).model, x


@pytest.fixture(scope="module")
def full_run(compiled):
    model, x = compiled
    return Session(model).run(x, STEPS)


def assert_same_run(got, expected) -> None:
    np.testing.assert_array_equal(got.per_step, expected.per_step)
    np.testing.assert_array_equal(got.logits, expected.logits)
    assert got.spikes.keys() == expected.spikes.keys() and got.spikes
    for name in expected.spikes:
        np.testing.assert_array_equal(got.spikes[name], expected.spikes[name])


@pytest.mark.parametrize("chunks", [[1] * STEPS, [5, 1, 11, 7], [STEPS]])
def test_stream_equals_the_full_run(compiled, full_run, chunks):
    model, x = compiled
    session = Session(model)
    parts = [session.stream(x, steps) for steps in chunks]
    assert session.steps_streamed == STEPS
    assert [p.per_step.shape[0] for p in parts] == chunks
    np.testing.assert_array_equal(np.concatenate([p.per_step for p in parts]), full_run.per_step)
    np.testing.assert_array_equal(parts[-1].logits, full_run.logits)
    for name, counts in full_run.spikes.items():
        np.testing.assert_array_equal(sum(p.spikes[name] for p in parts), counts)


def test_stream_in_time_chunks_under_a_budget_equals_the_full_run(compiled, full_run):
    model, x = compiled
    unit, held = bytes_per_sample_step(model), readout_bytes(model) * len(x) * 10  # the 10 steps returned
    session = Session(model, max_memory=held + unit * len(x) * 3)
    assert session.stream_plan(len(x), 10) == (len(x), 3)
    parts = [session.stream(x, 10), session.stream(x, STEPS - 10)]
    np.testing.assert_array_equal(np.concatenate([p.per_step for p in parts]), full_run.per_step)
    np.testing.assert_array_equal(parts[-1].logits, full_run.logits)
    for name, counts in full_run.spikes.items():
        np.testing.assert_array_equal(parts[0].spikes[name] + parts[1].spikes[name], counts)
    with pytest.raises(SnnError, match="one step of a stream of 40 samples"):
        Session(model, max_memory=held + unit * (len(x) - 1)).stream(x, 10)


def test_reset_restarts_the_state(compiled, full_run):
    model, x = compiled
    session = Session(model)
    first = session.stream(x, 7)
    session.stream(x, 3)
    with pytest.raises(SnnError, match="call reset"):
        session.stream(x[:5], 1)
    session.reset()
    assert session.steps_streamed == 0
    again = session.stream(x, 7)
    np.testing.assert_array_equal(again.per_step, first.per_step)
    np.testing.assert_array_equal(again.per_step, full_run.per_step[:7])
    session.reset()
    np.testing.assert_array_equal(session.stream(x[:5], 2).per_step, Session(model).run(x[:5], 2).per_step)


def test_state_stays_on_the_session_device(compiled):
    model, x = compiled
    session = Session(model)
    session.stream(x, 2)
    values = session._stream.values
    assert values and all(isinstance(v, ort.OrtValue) for v in values.values())
    device = "cuda" if "CUDAExecutionProvider" in session.providers else "cpu"
    assert {v.device_name().lower() for v in values.values()} == {device}


@pytest.mark.parametrize("samples, steps", [(10, STEPS), (3, 5), (1, 1)])
def test_budgeted_run_in_chunks_equals_the_whole_run(compiled, full_run, samples, steps):
    model, x = compiled
    unit, result = bytes_per_sample_step(model), readout_bytes(model) * len(x) * STEPS  # run() holds its result
    session = Session(model, max_memory=result + unit * samples * steps)
    batch_chunk, time_chunk = session.run_plan(len(x), STEPS)
    assert (batch_chunk, time_chunk) == plan_chunks(len(x), STEPS, unit * samples * steps, unit)
    assert batch_chunk < len(x) and batch_chunk * time_chunk <= samples * steps
    assert_same_run(session.run(x, STEPS), full_run)


def test_the_default_budget_chunks_a_run_bit_for_bit(compiled, full_run, monkeypatch):
    model, x = compiled
    unit, result = bytes_per_sample_step(model), readout_bytes(model) * len(x) * STEPS
    available = 2 * (result + unit * 3 * 5)  # the default budget is half of it: 3 samples x 5 steps
    monkeypatch.setattr(budget, "available_memory", lambda: available)
    session = Session(model)
    assert session.max_memory == available // 2 == budget.default_budget()
    batch_chunk, time_chunk = session.run_plan(len(x), STEPS)
    assert (batch_chunk, time_chunk) == plan_chunks(len(x), STEPS, unit * 3 * 5, unit)
    assert batch_chunk < len(x) and time_chunk < STEPS
    assert_same_run(session.run(x, STEPS), full_run)
    assert Session(model, max_memory=10**9).max_memory == 10**9  # an explicit budget wins


def evaluations(
    model: onnx.ModelProto, x: np.ndarray, budget: int | None, batch_size: int, ann: onnx.ModelProto | None = None
) -> EvalReport:
    """Session.evaluate of `x` (labels i % 5) over STEPS steps under `budget` in batches of `batch_size`."""
    labels = np.arange(len(x)) % 5
    return Session(model, max_memory=budget).evaluate(x, labels, STEPS, ann=ann, batch_size=batch_size, progress=False)


def test_evaluate_in_chunks_equals_evaluate_in_small_batches(compiled, ann):
    model, x = compiled
    unit, held = bytes_per_sample_step(model), 4 * 8 * STEPS + len(x) * readout_bytes(model)  # counters, ANN
    batch_chunk, time_chunk = Session(model, max_memory=held + unit * 2 * 7).evaluation_plan(len(x), STEPS, True)
    assert batch_chunk * time_chunk <= 2 * 7 and time_chunk < STEPS  # batch and time chunks
    chunked = evaluations(model, x, held + unit * 2 * 7, batch_size=len(x), ann=ann[0])
    small = evaluations(model, x, None, batch_size=3, ann=ann[0])
    assert Session(model).evaluation_plan(3, STEPS, True) == (3, STEPS)  # whole runs
    for counted in ("accuracy", "agreement", "max_logit_error"):  # counts and maxima: exact
        np.testing.assert_array_equal(getattr(chunked, counted), getattr(small, counted))
    np.testing.assert_allclose(chunked.logit_error, small.logit_error, rtol=1e-12)  # float sums in another order
    assert chunked.ann_accuracy == small.ann_accuracy and chunked.spikes_per_sample == small.spikes_per_sample


def test_evaluate_folds_chunks_into_per_step_counters(compiled, monkeypatch):
    """evaluate never assembles a RunResult and never sees more than one chunk's read-out."""
    model, x = compiled
    unit = bytes_per_sample_step(model)
    seen = []
    fold = session_module._BatchTally.add

    def spy(self, samples, steps, part):
        seen.append(part.per_step.shape[:2])
        fold(self, samples, steps, part)

    monkeypatch.setattr(session_module._BatchTally, "add", spy)
    monkeypatch.setattr(RunResult, "allocate", None)  # assembling a whole run would fail
    report = evaluations(model, x, 8 * STEPS + unit * 20, batch_size=len(x))
    assert seen and max(t * b for t, b in seen) <= 20 < STEPS and sum(t * b for t, b in seen) == STEPS * len(x)
    assert report.accuracy.shape == (STEPS,)


def test_budget_below_one_sample_step_is_refused(compiled):
    model, x = compiled
    with pytest.raises(SnnError, match="memory budget of 1 B"):  # its weights come first
        Session(model, max_memory=1).run(x, 2)
    with pytest.raises(SnnError, match="one sample needs for one step"):
        plan_chunks(1, 1, bytes_per_sample_step(model) - 1, bytes_per_sample_step(model))


def test_chunk_plan_splits_the_batch_before_time():
    assert plan_chunks(512, 256, 10**9, 1000) == (512, 256)  # fits whole
    assert plan_chunks(512, 256, 256 * 100 * 1000, 1000) == (100, 256)  # batch chunks, all steps
    small = plan_chunks(512, 256, 256 * 10 * 1000, 1000)  # below MIN_BATCH_CHUNK samples: time chunks
    assert small == (MIN_BATCH_CHUNK, 2560 // MIN_BATCH_CHUNK)
    assert plan_chunks(4, 100, 10 * 1000, 1000) == (4, 2)


@pytest.mark.parametrize(
    "text, size", [("2GB", 2 * 10**9), ("1.5G", 1_500_000_000), ("512MiB", 512 * 2**20), ("1000", 1000), ("3 kb", 3000)]
)
def test_sizes_parse(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["two GB", "-1GB", "0", "5XB"])
def test_bad_sizes_are_refused(text):
    with pytest.raises(SnnError):
        parse_size(text)


def test_stateful_form_exposes_every_state(compiled):
    model, _ = compiled
    stateful, ports = expose_state(model)
    onnx.checker.check_model(stateful, full_check=True)
    inputs = {i.name for i in stateful.graph.input}
    outputs = {o.name for o in stateful.graph.output}
    assert ports and all(p.input in inputs and p.output in outputs for p in ports)
    assert all(p.input.startswith(STATE_IN_PREFIX) and p.output.startswith(STATE_OUT_PREFIX) for p in ports)
    stateful_ops = [n for n in model.graph.node if n.domain == "snn"]
    assert {p.input[len(STATE_IN_PREFIX) :].rsplit("/", 1)[0] for p in ports} == {n.name for n in stateful_ops}
    has_offset = any(n.op_type != "IFNeuron" and n.op_type != "IFNeuronConstantInput" for n in stateful_ops)
    assert (STEP_OFFSET_INPUT in inputs) == has_offset
