"""The zoo benchmark's labels and reproduce commands for signGD results from before and after
signGD took --spikes (2026-12-07)."""

from __future__ import annotations

from dataclasses import asdict

from benchmarks.zoo import _command, _neurons
from onnx_snn.options import CompileOptions


def _result(**options) -> dict:
    return {"model": "fashion-mixer", "neuron": "signgd", "options": asdict(CompileOptions(**options))}


def test_a_signgd_result_names_its_spike_kind_and_steps():
    burst = _result(neuron="signgd")
    assert "burst spikes, inverse η0 0.0625" in _neurons(burst)
    assert "--spikes" not in _command(burst) and "--schedule" not in _command(burst)
    old = _result(neuron="signgd", schedule="exp_inverse", eta0=0.3)  # recorded so before 2026-12-07
    assert "binary spikes, exp_inverse η0 0.3" in _neurons(old)
    assert "--spikes binary --schedule exp_inverse" in _command(old)
