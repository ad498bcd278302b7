"""Bad input: one line on stderr, exit code 2, no traceback, the input untouched, no partial output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from helpers import assert_user_error, digest, float_model, run_cli, tiny_relu_model
from onnx import helper


@pytest.fixture
def relu_model(tmp_path: Path) -> tuple[Path, Path]:
    model_path = tmp_path / "tiny.onnx"
    onnx.save(tiny_relu_model(), model_path)
    calib = tmp_path / "calib.npy"
    np.save(calib, np.random.default_rng(1).normal(size=(64, 4)).astype(np.float32))
    return model_path, calib


def test_valid_model_compiles_and_passes(relu_model, tmp_path):
    model_path, calib = relu_model
    result = run_cli("compile", str(model_path), "-o", str(tmp_path / "out.onnx"), "--calib", str(calib), "-q")
    assert result.returncode == 0, result.stderr
    assert "PASS" in result.stdout


def test_missing_file(tmp_path):
    result = run_cli("compile", str(tmp_path / "nope.onnx"), "-o", str(tmp_path / "out.onnx"))
    assert_user_error(result, "nope.onnx", "not found")


def test_not_onnx(tmp_path):
    path = tmp_path / "notes.onnx"
    path.write_text("this is not a protobuf\n" * 10)
    before = digest(path)
    assert_user_error(run_cli("compile", str(path), "-o", str(tmp_path / "out.onnx")), "notes.onnx")
    assert digest(path) == before
    assert not (tmp_path / "out.onnx").exists()


def test_truncated_protobuf(relu_model, tmp_path):
    model_path, calib = relu_model
    data = model_path.read_bytes()
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(data[: len(data) // 2])
    assert_user_error(
        run_cli("compile", str(truncated), "-o", str(tmp_path / "out.onnx"), "--calib", str(calib)), "truncated.onnx"
    )


def test_raw_erfc_fixture_is_repaired_then_refused_for_if_neurons(tmp_path, tf_fixtures):
    raw = tf_fixtures / "keras_dense_gelu_layernorm.raw_tf2onnx_erfc.onnx"
    with pytest.raises(onnx.checker.ValidationError):
        onnx.checker.check_model(onnx.load(raw))  # invalid as tf2onnx wrote it
    calib = tmp_path / "calib.npy"
    np.save(calib, np.load(tf_fixtures / "keras_dense_gelu_layernorm.input.npy"))
    before = digest(raw)
    result = run_cli("compile", str(raw), "-o", str(tmp_path / "out.onnx"), "--calib", str(calib), "--neuron", "if")
    assert_user_error(result, "raw_tf2onnx_erfc.onnx", "use --neuron signgd")
    assert digest(raw) == before


def test_invalid_graph(tmp_path):
    model = tiny_relu_model(op="NoSuchOp")
    path = tmp_path / "invalid.onnx"
    onnx.save(model, path)
    assert_user_error(run_cli("compile", str(path), "-o", str(tmp_path / "out.onnx")), "invalid.onnx", "NoSuchOp")


@pytest.mark.parametrize(
    "op, domain, neuron, hint",
    [
        ("LeakyRelu", "", "if", "use --neuron signgd"),
        ("Tanh", "", "if", "not supported by the SNN compiler; replace it in the ANN"),
        ("Tanh", "", "auto", "no signGD neuron implements it"),
        ("Sin", "", "if", "not supported"),
        ("FancyAct", "com.example", "auto", "com.example::FancyAct"),
    ],
)
def test_unsupported_op_names_the_node(tmp_path, op, domain, neuron, hint):
    path = tmp_path / f"{op}.onnx"
    onnx.save(tiny_relu_model(op=op, domain=domain), path)
    calib = tmp_path / "calib.npy"
    np.save(calib, np.zeros((4, 4), np.float32))
    result = run_cli("compile", str(path), "-o", str(tmp_path / "out.onnx"), "--calib", str(calib), "--neuron", neuron)
    assert_user_error(result, "node 'act'", hint)


@pytest.mark.parametrize(
    "array, fragment", [(np.zeros((8, 5), np.float32), "shape"), (np.zeros((8, 4), np.int64), "dtype")]
)
def test_bad_calibration_data(relu_model, tmp_path, array, fragment):
    model_path, _ = relu_model
    calib = tmp_path / "bad.npy"
    np.save(calib, array)
    result = run_cli("compile", str(model_path), "-o", str(tmp_path / "out.onnx"), "--calib", str(calib))
    assert_user_error(result, fragment)
    assert not (tmp_path / "out.onnx").exists()


def test_output_equal_to_input(relu_model):
    model_path, calib = relu_model
    before = digest(model_path)
    result = run_cli("compile", str(model_path), "-o", str(model_path), "--calib", str(calib))
    assert_user_error(result, "would overwrite the model")
    assert digest(model_path) == before


def test_missing_calibration(relu_model, tmp_path):
    model_path, _ = relu_model
    assert_user_error(run_cli("compile", str(model_path), "-o", str(tmp_path / "o.onnx")), "--calib")


def test_eval_on_an_uncompiled_model(relu_model, tmp_path):
    model_path, _ = relu_model
    data = tmp_path / "d.npz"
    np.savez(data, x=np.zeros((4, 4), np.float32), y=np.zeros(4, np.int64))
    assert_user_error(run_cli("eval", str(model_path), "--data", str(data)), "compile it first")


def test_no_temporary_files_left(relu_model, tmp_path):
    model_path, calib = relu_model
    out = tmp_path / "out.onnx"
    assert run_cli("compile", str(model_path), "-o", str(out), "--calib", str(calib), "-q").returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["tiny.onnx", "calib.npy", "out.onnx"])


@pytest.mark.parametrize("fixture, neuron", [("keras_mlp_dense_relu", "if"), ("keras_dense_gelu_layernorm", "signgd")])
def test_auto_picks_if_for_relu_nets_and_signgd_otherwise(tmp_path, tf_fixtures, fixture, neuron):
    calib = tmp_path / "calib.npy"
    np.save(calib, np.load(tf_fixtures / f"{fixture}.input.npy"))
    out = tmp_path / "out.onnx"
    result = run_cli("compile", str(tf_fixtures / f"{fixture}.onnx"), "-o", str(out), "--calib", str(calib), "-q")
    assert result.returncode == 0, result.stderr
    assert f"{neuron} neuron layers" in result.stdout and "PASS" in result.stdout
    shown = run_cli("inspect", str(out))
    assert f"neuron type: {neuron} (chosen by --neuron auto)" in shown.stdout


def test_eval_under_a_memory_budget_reports_the_same(relu_model, tmp_path):
    model_path, calib = relu_model
    snn = tmp_path / "snn.onnx"
    assert run_cli("compile", str(model_path), "-o", str(snn), "--calib", str(calib), "-q").returncode == 0
    data = tmp_path / "d.npz"
    rng = np.random.default_rng(2)
    np.savez(data, x=rng.normal(size=(50, 4)).astype(np.float32), y=rng.integers(0, 3, 50))
    reports = []
    for extra in ([], ["--max-memory", "2KB"]):
        out = tmp_path / f"report{len(reports)}.json"
        result = run_cli("eval", str(snn), "--data", str(data), "--json", str(out), "-q", *extra)
        assert result.returncode == 0, result.stderr
        reports.append(json.loads(out.read_text()))
    assert reports[0] == reports[1]
    assert_user_error(run_cli("eval", str(snn), "--data", str(data), "--max-memory", "lots"), "2GB")
    assert_user_error(run_cli("eval", str(snn), "--data", str(data), "--max-memory", "8B"), "memory budget of 8 B")


@pytest.mark.parametrize("entry", [["onnx-snn"], [sys.executable, "-m", "onnx_snn"]])
def test_installed_entry_points_report_a_user_error_in_one_line(relu_model, tmp_path, entry):
    """The console script and `python -m onnx_snn` run the same main: exit 2, one stderr line."""
    model_path, _ = relu_model
    result = subprocess.run(
        [
            *entry,
            "compile",
            str(model_path),
            "-o",
            str(tmp_path / "out.onnx"),
            "--calib",
            str(tmp_path / "missing.npy"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert_user_error(result, "missing.npy")


def test_an_ann_that_overflows_on_the_calibration_data_is_refused_naming_the_node(tmp_path):
    """An activation that is inf on the calibration data (the ANN overflows, though no weight or
    input is absurd on its own) is the user's input, not our bug: exit 2 naming the node, no output."""
    big = np.full((4, 4), 1e20, dtype=np.float32)
    inits = [onnx.numpy_helper.from_array(big, name) for name in ("w1", "w2", "w3")]
    nodes = [
        helper.make_node("Gemm", ["x", "w1"], ["h1"], name="fc1", transB=1),
        helper.make_node("Relu", ["h1"], ["a1"], name="relu1"),
        helper.make_node("Gemm", ["a1", "w2"], ["h2"], name="fc2", transB=1),
        helper.make_node("Relu", ["h2"], ["a2"], name="relu2"),  # 4·(4e20)·1e20 > float32's max
        helper.make_node("Gemm", ["a2", "w3"], ["y"], name="fc3", transB=1),
    ]
    model_path, calib = tmp_path / "deep.onnx", tmp_path / "calib.npy"
    onnx.save(float_model(nodes, "deep", {"x": ["N", 4]}, {"y": ["N", 4]}, inits), model_path)
    np.save(calib, np.ones((8, 4), dtype=np.float32))
    result = run_cli("compile", str(model_path), "-o", str(tmp_path / "snn.onnx"), "--calib", str(calib))
    assert_user_error(result, "node 'relu2' (Relu)", "not finite", "calibration data")
    assert not (tmp_path / "snn.onnx").exists()
