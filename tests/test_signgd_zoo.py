"""The Fashion-MNIST signGD reference nets, from both torch exporters, through the whole compiler.

Slow (trains the nets on first use, minutes each; cached after): run with `-m slow`. The full
10,000-image tables are measured by `python -m benchmarks zoo NAME` into BENCHMARKS.md.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from conftest import needs_reference_cache

from onnx_snn.api import compile_model
from onnx_snn.models.zoo import EXPORTERS, get_reference
from onnx_snn.options import CompileOptions
from onnx_snn.runtime.session import Session

pytestmark = [pytest.mark.slow, needs_reference_cache]

SIGNGD_NETS = ("fashion-convnext", "fashion-mixer", "fashion-resmlp", "fashion-maxpool")
#: the nets that `--neuron auto` gives IF neurons, not signGD: a ReLU + MaxPool net (README)
AUTO_PICKS_IF = ("fashion-maxpool",)
SAMPLES = 1000


@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("name", SIGNGD_NETS)
def test_signgd_net_converts(name, exporter, tmp_path):
    """Compiled with signGD neurons (what auto picks but for fashion-maxpool, which auto gives IF
    neurons: tests/test_if_maxpool.py), the model passes the full checker and runs in a plain
    session; on 1,000 test images the SNN is within 1.5 points of the ANN at T = 32 and agrees
    ≥ 98 % at T = 64."""
    reference = get_reference(name, exporter=exporter)
    x, y = reference.load_test()
    x, y = x[:SAMPLES], y[:SAMPLES]
    out = tmp_path / f"{name}.snn.onnx"
    neuron = "signgd" if name in AUTO_PICKS_IF else "auto"
    result = compile_model(
        reference.onnx_path, out, CompileOptions(timesteps=64, neuron=neuron), calibration=reference.load_calibration()
    )
    assert result.metadata["neuron"] == "signgd"
    onnx.checker.check_model(onnx.load(out), full_check=True)
    plain = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (logits,) = plain.run(["logits"], {"x": x[:4]})
    assert logits.shape == (4, 10) and np.isfinite(logits).all()
    report = Session(out).evaluate(x, y, ann=reference.onnx_path, progress=False)
    assert abs(report.ann_accuracy - report.accuracy[31]) <= 0.015, report.table()
    assert report.agreement[63] >= 0.98, report.table()
