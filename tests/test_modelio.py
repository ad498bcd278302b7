"""Model files: external data in and out, atomic writes, --dump-after, inspect."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from helpers import run_cli, tiny_relu_model

from onnx_snn import CompileOptions, compile_model
from onnx_snn.modelio import load_model, save_model
from onnx_snn.runtime import Session


def test_external_data_model_compiles_and_large_output_is_external(tmp_path):
    ann = tmp_path / "ann.onnx"
    onnx.save(
        tiny_relu_model(hidden=256),
        ann,
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="ann.onnx.data",
        size_threshold=0,
    )
    assert (tmp_path / "ann.onnx.data").exists()
    calib = np.random.default_rng(0).normal(size=(32, 4)).astype(np.float32)
    result = compile_model(ann, None, CompileOptions(timesteps=8), calibration=calib)
    out = tmp_path / "snn.onnx"
    save_model(result.model, out, external_threshold=0)  # as a >2 GB model would be written
    assert (tmp_path / "snn.onnx.data").stat().st_size > 0
    onnx.checker.check_model(str(out), full_check=True)
    logits = Session(out).run(calib[:3]).logits
    reference = ort.InferenceSession(str(ann)).run(None, {"x": calib[:3]})[0]
    assert logits.shape == reference.shape
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ann.onnx", "ann.onnx.data", "snn.onnx", "snn.onnx.data"]


def test_load_keeps_the_input_file_unchanged(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(tiny_relu_model(), path)
    before = path.read_bytes()
    compile_model(path, tmp_path / "o.onnx", CompileOptions(timesteps=4), calibration=np.ones((4, 4), np.float32))
    assert path.read_bytes() == before
    assert load_model(path).graph.node[0].op_type == "Gemm"


def test_dump_after_and_inspect(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(tiny_relu_model(), path)
    calib = tmp_path / "c.npy"
    np.save(calib, np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32))
    out = tmp_path / "o.onnx"
    run = run_cli(
        "compile",
        str(path),
        "-o",
        str(out),
        "--calib",
        str(calib),
        "--dump-after",
        "fold_bn",
        "--dump-after",
        "normalize",
        "-q",
    )
    assert run.returncode == 0, run.stderr
    for stage in ("fold_bn", "normalize"):
        dumped = tmp_path / f"o.after-{stage}.onnx"
        onnx.checker.check_model(str(dumped), full_check=True)
        ort.InferenceSession(str(dumped))
    shown = run_cli("inspect", str(out))
    assert shown.returncode == 0, shown.stderr
    # the only neuron layer reads the static input's current: the constant-input IF neuron
    assert "BurstIFNeuronConstantInput act" in shown.stdout and "λ = " in shown.stdout
    assert "snn.BurstIFNeuronConstantInput" in shown.stdout
