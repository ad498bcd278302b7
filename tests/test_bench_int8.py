"""`python -m benchmarks int8` times equivalent computations: each cut-out layer's float32, uint8
and int8 forms, and the conv's three forms, compute the same currents up to their 8-bit rounding."""

from __future__ import annotations

import numpy as np
from test_int8_synapses import avgpool_net, compiled

from benchmarks.int8 import conv_pair, layer_pairs, section
from onnx_snn import CompileOptions


def test_the_cut_out_layers_compute_the_same_currents():
    net = avgpool_net()
    models = tuple(compiled(net, CompileOptions(spikes="signed", int8_synapses=flag)).model for flag in (False, True))
    pairs = layer_pairs("avgpool", models, (1,), np.random.default_rng(0))
    assert [(row["layer"], row["k"], row["n"], row["grain"]) for row, _ in pairs] == [
        ("avgpool /4/Gemm", 64, 16, 4),
        ("avgpool /6/Gemm", 16, 10, 1),
    ]
    for _, pair in pairs:
        (base,), (uint8,), (int8,) = pair.base(), *(run() for run in pair.variants.values())
        np.testing.assert_array_equal(uint8, int8)
        assert np.abs(uint8 - base).max() <= 0.02 * np.abs(base).max()


def test_the_conv_forms_agree_and_the_section_reports_them():
    pair = conv_pair(np.random.default_rng(0))
    (base,), (integer,), (linear,) = pair.base(), *(run() for run in pair.variants.values())
    assert np.abs(integer - base).max() <= 0.02 * np.abs(base).max()
    assert np.abs(linear - base).max() <= 0.02 * np.abs(base).max()  # 8-bit weights and outputs
    timing = {"seconds": 1e-3, "speedup": 2.0, "spread": [1.5, 2.5], "error": 0.007}
    result = {
        "machine": "test",
        "timesteps": 32,
        "rounds": 3,
        "layers": [
            {"layer": "m /9/Gemm", "batch": 64, "k": 784, "n": 120, "grain": 4, "base_seconds": 2e-3}
            | {"uint8": timing, "int8": timing}
        ],
        "models": [{"model": "m", "batch": 64, "base_seconds": 0.1, "int8 synapses": timing}],
        "conv": {"shape": [256, 32, 64, 14, 3], "base_seconds": 0.01, "ConvInteger": timing, "QLinearConv": timing},
    }
    text = section(result, "python -m benchmarks int8")
    assert "| m /9/Gemm | 784 → 120 | 4 | 64 (2048) | 2.000 | 1.000 | 2.00 (1.50–2.50) | 0.70 % |" in text
    assert "| m | 64 | 100.0 | 1.0 | 2.00 (1.50–2.50) |" in text
