"""End to end on real data: the digits MLP and CNN exported with torch.onnx, compiled, simulated.

The fast tests use the nets untrained (seeded weights, random BatchNorm statistics: helpers.seeded_net),
since the compiled model's contract and the two exporters' compile paths need their layers, not their
accuracy; the slow one trains them on sklearn digits and checks that the SNN's accuracy tracks the ANN's."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from helpers import digits_net, seeded_net

from onnx_snn import CompileOptions, compile_model
from onnx_snn.models.data import load_digits_split
from onnx_snn.models.export import export_torch
from onnx_snn.models.torch_nets import MLP, LeNet
from onnx_snn.options import RATE_RANGE
from onnx_snn.runtime import Session

NETS = {"mlp": lambda: MLP((1, 8, 8), hidden=(64,)), "cnn": lambda: LeNet(in_channels=1, image_size=8)}
EPOCHS = {"mlp": 20, "cnn": 15}


@pytest.fixture(scope="module")
def digits():
    return load_digits_split(seed=0)


@pytest.fixture(scope="module")
def nets(digits):
    """The digits MLP and CNN, trained once per module (seeded): slow tests only."""
    x_train, y_train, _, _ = digits
    return {name: digits_net(NETS[name], x_train, y_train, EPOCHS[name]) for name in sorted(NETS)}


@pytest.fixture(scope="module")
def untrained_nets():
    """The digits MLP and CNN untrained (seeded), for the tests that need no accuracy."""
    return {name: seeded_net(NETS[name]) for name in sorted(NETS)}


@pytest.fixture(scope="module", params=sorted(NETS))
def trained(request, nets, digits, tmp_path_factory):
    path = tmp_path_factory.mktemp(request.param) / "ann.onnx"
    export_torch(nets[request.param], torch.from_numpy(digits[0][:2]), path, dynamo=False)
    return request.param, path


@pytest.fixture(scope="module", params=sorted(NETS))
def untrained(request, untrained_nets, digits, tmp_path_factory):
    path = tmp_path_factory.mktemp(request.param) / "ann.onnx"
    export_torch(untrained_nets[request.param], torch.from_numpy(digits[0][:2]), path, dynamo=False)
    return request.param, path


@pytest.mark.slow
def test_snn_accuracy_tracks_the_ann(trained, digits, tmp_path):
    name, ann = trained
    x_train, _, x_test, y_test = digits
    out = tmp_path / "snn.onnx"
    compile_model(ann, out, CompileOptions(timesteps=64), calibration=x_train[:512])
    onnx.checker.check_model(str(out), full_check=True)
    report = Session(out, providers=["CPUExecutionProvider"]).evaluate(x_test, y_test, ann=ann, progress=False)
    assert report.ann_accuracy > 0.9
    assert report.ann_accuracy - report.accuracy[63] <= 0.015, report.table()
    agreement = [report.agreement[t - 1] for t in (8, 16, 32, 64)]
    assert all(b >= a for a, b in zip(agreement, agreement[1:])), report.table()
    error = [report.logit_error[t - 1] for t in (8, 16, 32, 64)]
    assert all(b < a for a, b in zip(error, error[1:])), report.table()


def test_compiled_model_contract(untrained, digits, tmp_path):
    import onnxruntime as ort

    name, ann = untrained
    x_train, _, x_test, _ = digits
    out = tmp_path / "snn.onnx"
    compile_model(ann, out, CompileOptions(timesteps=16, stats=True), calibration=x_train[:256])
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])  # stock onnxruntime
    assert [i.name for i in session.get_inputs()] == ["x"]
    assert [i.name for i in session.get_overridable_initializers()] == ["timesteps"]  # default T, overridable
    names = [o.name for o in session.get_outputs()]
    assert names[:2] == ["logits", "logits_per_step"]
    assert all(n.startswith(("spikes/", "synops/")) for n in names[2:]) and len(names) > 2
    assert {n.split("/", 1)[1] for n in names[2:] if n.startswith("spikes/")} == {
        n.split("/", 1)[1] for n in names[2:] if n.startswith("synops/")
    }
    outputs = dict(zip(names, session.run(None, {"x": x_test[:5]})))
    assert outputs["logits"].shape == (5, 10)
    assert outputs["logits_per_step"].shape == (16, 5, 10)
    np.testing.assert_array_equal(outputs["logits"], outputs["logits_per_step"][-1])
    assert all(outputs[n].shape == (5,) for n in names[2:])
    longer = session.run(["logits_per_step"], {"x": x_test[:5], "timesteps": np.asarray(24, np.int64)})[0]
    assert longer.shape == (24, 5, 10)
    np.testing.assert_allclose(longer[:16], outputs["logits_per_step"], rtol=1e-6, atol=1e-6)
    meta = {p.key: p.value for p in onnx.load(out).metadata_props}
    assert {"onnx_snn.version", "onnx_snn.options", "onnx_snn.lambda", "onnx_snn.activity"} <= set(meta)


@pytest.mark.parametrize(
    "trained_weights", [pytest.param(False, id="untrained"), pytest.param(True, id="trained", marks=pytest.mark.slow)]
)
@pytest.mark.parametrize("dynamo", [False, True], ids=["legacy", "dynamo"])
def test_both_torch_exporters_compile(trained_weights, digits, tmp_path, dynamo, request):
    """The CNN exported at a fixed batch of 1 by either exporter compiles and runs at batch 100.
    Untrained (seeded), its SNN agrees with the ANN on all 100 samples at T = 8, 16 and 32 (measured)."""
    net = request.getfixturevalue("nets" if trained_weights else "untrained_nets")["cnn"]
    x_train, _, x_test, y_test = digits
    ann = tmp_path / "ann.onnx"
    export_torch(net, torch.from_numpy(x_train[:1]), ann, dynamo=dynamo, dynamic_batch=False)
    out = tmp_path / "snn.onnx"
    compile_model(ann, out, CompileOptions(timesteps=32), calibration=x_train[:256])
    report = Session(out).evaluate(x_test[:100], y_test[:100], ann=ann, progress=False)  # batch 100, not 1
    assert report.agreement[-1] >= 0.95, report.table()
    assert report.logit_error[31] < report.logit_error[15] < report.logit_error[7], report.table()


def test_rate_range_compresses_time(untrained, digits, tmp_path):
    """A burst neuron's count is the rounded ReLU of its summed input at every step, so an SNN whose
    λ is the statistic / K after t steps is, for analog input, the SNN of λ = the statistic after K·t
    steps: the default (--rate-range K = RATE_RANGE["burst"]) reaches in 8 steps what --rate-range 1
    reaches in 8·K. It also moves: the default's logits after 8 steps are not those of range 1 after 8."""
    _, ann = untrained
    x_train, _, x_test, _ = digits
    k = RATE_RANGE["burst"]
    assert CompileOptions().if_rate_range == k and CompileOptions(norm="spikenorm").if_rate_range == 1.0
    logits = {}
    for rate_range in (None, 1.0):
        out = tmp_path / f"snn-{rate_range}.onnx"
        compile_model(ann, out, CompileOptions(neuron="if", rate_range=rate_range), calibration=x_train[:256])
        logits[rate_range] = Session(out).run(x_test[:50], int(8 * k)).per_step
    compressed, unit = logits[None], logits[1.0]
    np.testing.assert_allclose(compressed[7], unit[int(8 * k) - 1], rtol=1e-4, atol=1e-4 * np.abs(unit).max())
    assert np.abs(compressed[7] - unit[7]).max() > 1e-2 * np.abs(unit).max()
