"""The runtime session: provider choice, run, and the CUDA path where a GPU exists."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from helpers import tiny_relu_model

from onnx_snn import CompileOptions, compile_model
from onnx_snn.providers import CPU, CUDA, default_providers
from onnx_snn.runtime import Session


@pytest.fixture(scope="module")
def snn_model():
    calib = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
    return compile_model(tiny_relu_model(), None, CompileOptions(timesteps=16), calibration=calib).model, calib


def test_default_providers_prefer_cuda_where_offered(monkeypatch):
    monkeypatch.setattr(ort, "get_available_providers", lambda: [CUDA, CPU])
    assert default_providers() == [CUDA, CPU]
    monkeypatch.setattr(ort, "get_available_providers", lambda: [CPU])
    assert default_providers() == [CPU]


def test_a_cuda_provider_that_cannot_start_falls_back_to_the_cpu(snn_model, monkeypatch):
    model, x = snn_model
    real = ort.InferenceSession

    def no_gpu(source, options=None, providers=None):
        if CUDA in (providers or []):
            raise RuntimeError("CUDA_ERROR_NO_DEVICE")
        return real(source, options, providers=providers)

    monkeypatch.setattr(ort, "InferenceSession", no_gpu)
    session = Session(model, providers=[CUDA, CPU])
    assert session.providers == [CPU]
    np.testing.assert_array_equal(session.run(x[:3]).per_step, Session(model, providers=[CPU]).run(x[:3]).per_step)


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
    cpu = Session(model, providers=[CPU]).run(x)
    np.testing.assert_allclose(gpu.run(x).per_step, cpu.per_step, atol=1e-5)
    streamed = np.concatenate([gpu.stream(x, steps).per_step for steps in (3, 13)])
    np.testing.assert_array_equal(streamed, gpu.run(x).per_step)
    assert {v.device_name().lower() for v in gpu._stream.values.values()} == {"cuda"}
    chunked = Session(model, max_memory=1 << 12).run(x)
    np.testing.assert_allclose(chunked.per_step, cpu.per_step, atol=1e-5)


def test_ann_reference_with_tf2onnx_erfc_loads(tf_fixtures):
    """eval --ann accepts tf2onnx's raw exact-GELU export (invalid Erfc, repaired as compile does)."""
    from onnx_snn.runtime.ann import AnnRunner

    raw = tf_fixtures / "keras_dense_gelu_layernorm.raw_tf2onnx_erfc.onnx"
    x = np.load(tf_fixtures / "keras_dense_gelu_layernorm.input.npy")
    expected = np.load(tf_fixtures / "keras_dense_gelu_layernorm.expected.npy")
    with pytest.raises(Exception):
        ort.InferenceSession(str(raw), providers=["CPUExecutionProvider"])
    name = onnx.load(raw).graph.input[0].name
    got = AnnRunner(raw).run({name: x})
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
