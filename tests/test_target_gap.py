"""`compile --target-gap PCT` and `eval --find-t PCT`: the smallest T at which the SNN's argmax
differs from the ANN's on at most PCT percent of the calibration samples, stored as the default T.

A seeded, untrained 64-32-10 ReLU MLP built in code on sklearn's digits: its SNN's gap falls over
the first steps, which is all a search for T needs (no accuracy is checked)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from helpers import assert_user_error, float_model, run_cli
from onnx import helper
from sklearn.datasets import load_digits

from onnx_snn import CompileOptions, compile_model
from onnx_snn import metadata as model_metadata
from onnx_snn.ir.contract import TIMESTEPS_INPUT
from onnx_snn.runtime import Session
from onnx_snn.target_gap import SEARCH_SAMPLES, choose_timesteps, gaps

MAX_T = 48
SAMPLES = 200  # fewer than SEARCH_SAMPLES: the search sees them all


def _mlp() -> onnx.ModelProto:
    """x[N,64] -> Gemm -> Relu -> Gemm -> y[N,10], weights seeded."""
    rng = np.random.default_rng(3)
    shapes = {"w1": (32, 64), "b1": (32,), "w2": (10, 32), "b2": (10,)}
    inits = [
        onnx.numpy_helper.from_array((rng.normal(size=s) / np.sqrt(s[-1])).astype(np.float32), n)
        for n, s in shapes.items()
    ]
    nodes = [
        helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], name="fc1", transB=1),
        helper.make_node("Relu", ["h"], ["a"], name="relu"),
        helper.make_node("Gemm", ["a", "w2", "b2"], ["y"], name="fc2", transB=1),
    ]
    return float_model(nodes, "mlp", {"x": ["N", 64]}, {"y": ["N", 10]}, inits)


def _gap(snn: Path | onnx.ModelProto, ann: Path, x: np.ndarray, timesteps: int) -> float:
    """The gap at `timesteps`, from a run of that many steps (not the per-step read-out of a longer one)."""
    ann_classes = ort.InferenceSession(str(ann), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0].argmax(-1)
    logits = Session(snn, providers=["CPUExecutionProvider"]).run(x, timesteps=timesteps).logits
    return 100.0 * float(np.mean(logits.argmax(-1) != ann_classes))


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> tuple[Path, Path, Path]:
    """The ANN, its calibration inputs (.npy) and a data file of the same inputs with labels (.npz)."""
    folder = tmp_path_factory.mktemp("target_gap")
    digits = load_digits()
    x = (digits.data[:SAMPLES] / 16.0).astype(np.float32)
    onnx.save(_mlp(), folder / "ann.onnx")
    np.save(folder / "calib.npy", x)
    np.savez(folder / "data.npz", x=x, y=digits.target[:SAMPLES].astype(np.int64))
    return folder / "ann.onnx", folder / "calib.npy", folder / "data.npz"


@pytest.fixture(scope="module")
def target(files) -> float:
    """A target that the SNN compiled without --target-gap meets at some T in (1, MAX_T]: its gap
    at MAX_T // 2, where the gap at T = 1 is larger."""
    ann, calib, _ = files
    snn = compile_model(ann, None, CompileOptions(), calibration=calib).model
    per_step = Session(snn, providers=["CPUExecutionProvider"]).run(np.load(calib), timesteps=MAX_T).per_step
    ann_classes = ort.InferenceSession(str(ann), providers=["CPUExecutionProvider"]).run(None, {"x": np.load(calib)})
    per_step_gaps = 100.0 * np.mean(per_step.argmax(-1) != ann_classes[0].argmax(-1), axis=1)
    assert per_step_gaps[0] > per_step_gaps[MAX_T // 2 - 1], per_step_gaps  # the search has something to do
    return float(per_step_gaps[MAX_T // 2 - 1])


@pytest.fixture(scope="module")
def searched(files, target, tmp_path_factory):
    """The ANN compiled with --target-gap `target` to a file, and its CompileResult."""
    ann, calib, _ = files
    out = tmp_path_factory.mktemp("searched") / "snn.onnx"
    options = CompileOptions(target_gap=target, max_timesteps=MAX_T)
    return out, compile_model(ann, out, options, calibration=calib)


def test_the_chosen_t_is_the_smallest_whose_gap_meets_the_target(files, target, searched):
    ann, calib, _ = files
    out, result = searched
    choice = result.timestep_choice
    assert choice is not None and choice.reached
    assert (choice.target, choice.samples, choice.searched) == (target, SAMPLES, MAX_T)
    t = choice.timesteps
    assert 1 < t <= MAX_T // 2
    x = np.load(calib)
    assert _gap(out, ann, x, t) == pytest.approx(choice.gap) and choice.gap <= target
    assert _gap(out, ann, x, t - 1) > target


def test_the_chosen_t_is_the_default_of_a_plain_run(files, searched):
    _, calib, _ = files
    out, result = searched
    t = result.timestep_choice.timesteps
    session = Session(out, providers=["CPUExecutionProvider"])
    assert session.default_timesteps == t
    assert session.run(np.load(calib)[:3]).per_step.shape[0] == t
    model = onnx.load(out)
    stored = next(i for i in model.graph.initializer if i.name == TIMESTEPS_INPUT)
    assert int(onnx.numpy_helper.to_array(stored)) == t  # what stock onnxruntime runs without a T
    meta = model_metadata.read(model_metadata.props_of(model), str(out))
    assert meta["options"]["timesteps"] == t
    assert meta["timestep_search"]["timesteps"] == t and meta["timestep_search"]["reached"] is True
    assert meta["timestep_search"]["compiled_timesteps"] == CompileOptions().timesteps


def test_cli_prints_the_chosen_t_and_eval_find_t_agrees(files, target, searched, tmp_path):
    ann, calib, data = files
    t = searched[1].timestep_choice.timesteps
    out = tmp_path / "snn.onnx"
    args = ("compile", str(ann), "-o", str(out), "--calib", str(calib), "--max-timesteps", str(MAX_T))
    result = run_cli(*args, "--target-gap", repr(target))
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("--target-gap:")]
    assert len(lines) == 1 and f"T = {t} is the smallest T" in lines[0], result.stdout
    assert f"T = {t}" in next(line for line in result.stdout.splitlines() if line.startswith("compiled"))
    assert result.stderr == ""
    quiet = run_cli(*args, "--target-gap", repr(target), "-q")
    assert quiet.returncode == 0 and "--target-gap:" not in quiet.stdout
    report = run_cli("eval", str(out), "--data", str(data), "--ann", str(ann), "-q", "--find-t", repr(target))
    assert report.returncode == 0, report.stderr
    assert f"--find-t: T = {t} is the smallest T" in report.stdout  # the same samples, the same choice


def test_an_unreachable_target_keeps_the_max_t_and_warns(files, tmp_path):
    ann, calib, _ = files
    out = tmp_path / "snn.onnx"
    args = ("compile", str(ann), "-o", str(out), "--calib", str(calib), "--target-gap", "0", "--max-timesteps", "2")
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    warning = result.stderr.strip().splitlines()
    assert len(warning) == 1 and warning[0].startswith("warning: --target-gap: no T up to 2 reaches gap <= 0%")
    assert "T = 2" in warning[0]
    assert Session(out, providers=["CPUExecutionProvider"]).default_timesteps == 2
    meta = model_metadata.read(model_metadata.props_of(onnx.load(out)), str(out))
    assert meta["timestep_search"]["reached"] is False and meta["timestep_search"]["gap"] > 0


@pytest.mark.parametrize(
    "extra, fragment",
    [
        (("--neuron", "ttfs", "--target-gap", "1"), "--target-gap"),
        (("--target-gap", "101"), "--target-gap must be a percentage in [0, 100]"),
        (("--target-gap", "nan"), "--target-gap must be a percentage"),
    ],
)
def test_refused_options_exit_2_and_write_nothing(files, tmp_path, extra, fragment):
    ann, calib, _ = files
    out = tmp_path / "snn.onnx"
    assert_user_error(run_cli("compile", str(ann), "-o", str(out), "--calib", str(calib), *extra), fragment)
    assert list(tmp_path.iterdir()) == []


def test_target_gap_needs_calibration_and_find_t_an_ann(files, searched, tmp_path):
    ann, _, data = files
    out = tmp_path / "snn.onnx"
    assert_user_error(run_cli("compile", str(ann), "-o", str(out), "--target-gap", "1"), "--target-gap", "--calib")
    assert not out.exists()
    assert_user_error(run_cli("eval", str(searched[0]), "--data", str(data), "--find-t", "1"), "--find-t", "--ann")


def test_choose_timesteps_counts_disagreeing_samples_exactly():
    agreement = np.array([0.5, 0.9, 0.99, 0.98, 1.0])  # 100 samples: a gap of 1 sample is 1% exactly
    choice = choose_timesteps(agreement, 100, 1.0)
    assert (choice.timesteps, choice.gap, choice.reached, choice.searched) == (3, 1.0, True, 5)
    assert choose_timesteps(agreement, 100, 0.5).timesteps == 5
    missed = choose_timesteps(agreement[:2], 100, 1.0)
    assert (missed.timesteps, missed.gap, missed.reached) == (2, 10.0, False)
    assert list(gaps(agreement, 100)) == [50.0, 10.0, 1.0, 2.0, 0.0]
    assert SEARCH_SAMPLES == 512  # the cap the README and --help state
