"""The neuron-free twin of bench_floor: neurons swapped for their ANN counterparts, everything else kept."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from graph_builders import cnn, export_legacy, randomized
from torch import nn

from benchmarks.floor import neuron_free
from onnx_snn import CompileOptions, compile_model
from onnx_snn.errors import SnnError
from onnx_snn.ir.function_parts import SNN_DOMAIN
from onnx_snn.ir.neurons import IF_NEURON_OPS
from onnx_snn.runtime import Session
from onnx_snn.runtime.stateful import expose_state

NEURONS = IF_NEURON_OPS | {"SignGDNeuron", "SignGDBinaryNeuron"}


def _compiled(net: nn.Module, neuron: str) -> tuple[onnx.ModelProto, np.ndarray, np.ndarray]:
    x = np.random.default_rng(0).uniform(0, 1, size=(48, 1, 8, 8)).astype(np.float32)
    ann = export_legacy(randomized(net), x[:2])
    model = compile_model(ann, None, CompileOptions(timesteps=4, neuron=neuron), calibration=x[:32]).model
    with torch.no_grad():
        logits = net(torch.from_numpy(x[32:])).numpy()
    return model, x[32:], logits


def _snn_ops(model: onnx.ModelProto) -> set[str]:
    return {n.op_type for n in model.graph.node if n.domain == SNN_DOMAIN}


def test_if_twin_is_the_time_folded_ann():
    """With IF neurons as Relu (and the first, constant-input layer repeated over T), every step's
    read-out is the ANN's logits: the twin keeps the scaled layers and drops only the dynamics."""
    model, x, logits = _compiled(cnn(), "if")
    assert {"BurstIFNeuron", "BurstIFNeuronConstantInput"} <= _snn_ops(model)
    twin = neuron_free(model)
    onnx.checker.check_model(twin, full_check=True)
    assert not _snn_ops(twin) & NEURONS
    per_step = Session(twin).run(x, 3).per_step
    assert per_step.shape == (3, len(x), 10)
    np.testing.assert_allclose(per_step, np.broadcast_to(logits, per_step.shape), rtol=1e-4, atol=1e-4)


def test_signgd_twin_swaps_unary_and_binary_neurons():
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.GELU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64, 10))
    model, x, _ = _compiled(net, "signgd")
    assert {"SignGDNeuron", "SignGDBinaryNeuron"} <= _snn_ops(model)
    twin = neuron_free(model)
    onnx.checker.check_model(twin, full_check=True)
    assert not _snn_ops(twin) & NEURONS and {"SignGDEncoder", "SignGDDecoder"} <= _snn_ops(twin)
    assert np.isfinite(Session(twin).run(x, 3).per_step).all()


def test_stateful_model_is_refused():
    model, _, _ = _compiled(cnn(), "if")
    stateful, _ = expose_state(model)
    with pytest.raises(SnnError, match="drops neuron state"):
        neuron_free(stateful)


def test_section_names_the_spike_kind_and_the_speed_up_over_spikingjelly():
    from benchmarks.floor import markdown_section

    result = {
        "model": "net",
        "neuron": "if",
        "spikes": "binary",
        "machine": "m",
        "batch": 64,
        "repeats": 1,
        "ann_seconds": 0.001,
        "per_T": {"32": {"snn": 0.04, "twin": 0.032, "spikingjelly": 0.12}},
    }
    row = markdown_section([result], "cmd").splitlines()[-1]
    assert row == "| net (if, binary) | 32 | 32.0 | 40.0 | 1.25 | 32.0 | 1.00 | 120.0 | 3.00 | 3.75 |"
