"""TTFS exact mapping of the Fashion-MNIST reference nets (issue 4): the Keras nets exported by
tf2onnx (dense 784-600-10, LeNet with BN before ReLU, small VGG with BN after ReLU) and their
PyTorch twins, each keeping its final Softmax. The SNN must agree with the ANN on every test
image but logit near-ties, and model A on the dense net must spike exactly once per neuron.

Slow: the first run trains the six nets (cached under ~/.cache/onnx-snn). The whole-test-set
figures are in BENCHMARKS.md (`python -m benchmarks zoo NAME --neuron ttfs`).
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import needs_reference_cache

from benchmarks.ttfs import load_reference
from onnx_snn.api import compile_model
from onnx_snn.options import CompileOptions
from onnx_snn.runtime import Session
from onnx_snn.runtime.ann import AnnRunner

pytestmark = [pytest.mark.slow, needs_reference_cache]

TEST_IMAGES = 2000
NEAR_TIE = 1e-5
KERAS = ("keras-fashion-ttfs-dense", "keras-fashion-ttfs-lenet", "keras-fashion-ttfs-vgg")
TORCH = ("fashion-ttfs-dense", "fashion-ttfs-lenet", "fashion-ttfs-vgg")


def _reference(name: str):
    if name.startswith("keras-"):
        pytest.importorskip("tf2onnx")
    return load_reference(name)[0]


def _disagreements_beyond_ties(snn: np.ndarray, ann: np.ndarray) -> int:
    """Samples whose arg-max differs although the ANN's top two logits are more than NEAR_TIE apart."""
    top_two = np.sort(ann, axis=1)[:, -2:]
    clear = top_two[:, 1] - top_two[:, 0] > NEAR_TIE
    return int(np.count_nonzero((snn.argmax(1) != ann.argmax(1)) & clear))


@pytest.mark.parametrize("name", KERAS + TORCH)
def test_b1_agrees_with_the_ann_on_every_test_image(name, tmp_path):
    reference = _reference(name)
    x, y = reference.load_test()
    x, y = x[:TEST_IMAGES], y[:TEST_IMAGES]
    out = tmp_path / "snn.onnx"
    result = compile_model(
        reference.onnx_path, out, CompileOptions(neuron="ttfs", stats=True), calibration=reference.load_calibration()
    )
    assert any("dropped final Softmax" in note for note in result.notes)
    run = Session(out).run(x)
    ann = AnnRunner(reference.onnx_path).run({"x": x})
    assert _disagreements_beyond_ties(run.logits, ann) == 0
    assert np.mean(run.logits.argmax(1) == y) == pytest.approx(np.mean(ann.argmax(1) == y), abs=1 / TEST_IMAGES)
    assert np.abs(run.logits - ann).max() <= 1e-4
    audit = result.metadata["ttfs"]["audit"]
    assert all(entry["above_window"] == 0 for entry in audit.values())


@pytest.mark.parametrize("name", ("keras-fashion-ttfs-dense", "fashion-ttfs-dense"))
def test_model_a_spikes_once_per_hidden_neuron_and_agrees(name, tmp_path):
    reference = _reference(name)
    x, _ = reference.load_test()
    x = x[:200]
    out = tmp_path / "a.onnx"
    result = compile_model(
        reference.onnx_path,
        out,
        CompileOptions(neuron="ttfs", ttfs_model="a", stats=True),
        calibration=reference.load_calibration(),
    )
    ((layer_name, layer),) = result.metadata["ttfs"]["layers"].items()
    assert result.metadata["ttfs"]["audit"][layer_name]["early_spikes"] == 0
    run = Session(out).run(x)
    times = run.spike_times[f"spike_times/{layer_name}"]
    assert np.all((times >= layer["t_min"] - 1e-6) & (times <= layer["t_max"] + 1e-6))
    assert np.all(run.spikes[f"spikes/{layer_name}"] == times.shape[1])
    ann = AnnRunner(reference.onnx_path).run({"x": x})
    assert _disagreements_beyond_ties(run.logits, ann) == 0
