"""The runtime session: provider choice, run, and the CUDA path where a GPU exists."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from onnx_snn import CompileOptions, compile_model
from onnx_snn.runtime import Session
from onnx_snn.runtime.providers import CPU, CUDA, default_providers
from test_cli_errors import tiny_relu_model


@pytest.fixture(scope="module")
def snn_model():
    calib = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
    return compile_model(tiny_relu_model(), None, CompileOptions(timesteps=16), calibration=calib).model, calib


def test_default_providers_follow_the_installed_build():
    expected = [CUDA, CPU] if CUDA in ort.get_available_providers() else [CPU]
    assert default_providers() == expected


def test_cpu_session_runs_every_step(snn_model):
    model, x = snn_model
    session = Session(model, providers=[CPU])
    assert session.providers == [CPU]
    result = session.run(x[:5])
    assert result.per_step.shape == (16, 5, 3)
    np.testing.assert_array_equal(result.logits, result.per_step[-1])
    assert session.run(x[:5], timesteps=4).per_step.shape == (4, 5, 3)


@pytest.mark.cuda
@pytest.mark.skipif(CUDA not in ort.get_available_providers(), reason="needs onnxruntime-gpu with a CUDA device")
def test_cuda_session_matches_cpu(snn_model):
    model, x = snn_model
    gpu = Session(model)
    if CUDA not in gpu.providers:
        pytest.skip("onnxruntime-gpu is installed but no CUDA device answered")
    np.testing.assert_allclose(gpu.run(x).per_step, Session(model, providers=[CPU]).run(x).per_step, atol=1e-5)


def test_ann_reference_with_tf2onnx_erfc_loads(tf_fixtures):
    """eval --ann accepts tf2onnx's raw exact-GELU export (invalid Erfc, repaired as compile does)."""
    from onnx_snn.runtime.session import AnnRunner

    raw = tf_fixtures / "keras_dense_gelu_layernorm.raw_tf2onnx_erfc.onnx"
    x = np.load(tf_fixtures / "keras_dense_gelu_layernorm.input.npy")
    expected = np.load(tf_fixtures / "keras_dense_gelu_layernorm.expected.npy")
    with pytest.raises(Exception):
        ort.InferenceSession(str(raw), providers=["CPUExecutionProvider"])
    name = onnx.load(raw).graph.input[0].name
    got = AnnRunner(raw).run({name: x})
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
