"""Tests of the Keras twins: training on digits, export through tf2onnx, signGD conversion.

Export and conversion run on the nets untrained (seeded) in the fast suite and trained on digits in the
slow one, which also checks the accuracy the training reaches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import onnxruntime as ort
import pytest

from onnx_snn import CompileOptions, compile_model
from onnx_snn.passes.base import PassContext
from onnx_snn.passes.canonicalize import erfc
from onnx_snn.runtime import Session

pytest.importorskip("tensorflow")
pytest.importorskip("tf2onnx")

from onnx_snn.models.architecture import TrainSettings
from onnx_snn.models.data import load_digits_split
from onnx_snn.models.keras_nets import (
    evaluate_keras_accuracy,
    export_keras,
    keras_gelu_layernorm_mlp,
    keras_lenet,
    keras_mlp,
    to_nhwc,
    train_keras,
)

pytestmark = pytest.mark.tf


@pytest.fixture(scope="module")
def digits_nhwc():
    x_train, y_train, x_test, y_test = load_digits_split()
    return to_nhwc(x_train), y_train, to_nhwc(x_test), y_test


#: whether the test's net is trained: untrained (seeded) in the fast suite, trained in the slow one
TRAINED = [pytest.param(False, id="untrained"), pytest.param(True, id="trained", marks=pytest.mark.slow)]


def seeded_keras(build):
    """`build()` with its initial weights drawn after seeding Python, NumPy and TensorFlow with 0."""
    import keras

    keras.utils.set_random_seed(0)
    return build()


@pytest.mark.parametrize("trained", TRAINED)
@pytest.mark.parametrize(
    "build", [lambda: keras_mlp((8, 8, 1)), lambda: keras_lenet(1, 10, image_size=8)], ids=["mlp", "lenet"]
)
def test_keras_twin_trains_and_exports(build, trained, digits_nhwc, tmp_path):
    x_train, y_train, x_test, y_test = digits_nhwc
    model = seeded_keras(build)
    if trained:
        model = train_keras(model, x_train, y_train, TrainSettings(20, batch_size=64))
        assert evaluate_keras_accuracy(model, x_test, y_test) > 0.9

    path = export_keras(model, tmp_path / "m.onnx", input_shape=(8, 8, 1))
    exported = onnx.load(path)
    assert [i.name for i in exported.graph.input] == ["x"]
    assert [o.name for o in exported.graph.output] == ["logits"]
    assert exported.graph.input[0].type.tensor_type.shape.dim[0].dim_param
    assert next(o.version for o in exported.opset_import if o.domain in ("", "ai.onnx")) == 17
    x = x_test[:7]
    logits = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(["logits"], {"x": x})[0]
    np.testing.assert_allclose(logits, model.predict(x, verbose=0), atol=1e-4)


def valid_ann(raw: onnx.ModelProto, path: Path) -> str:
    """`raw` with tf2onnx's invalid Erfc repaired (as canonicalize does) saved at `path`, for onnxruntime."""
    graph = gs.import_onnx(raw)
    erfc.apply(graph, PassContext(options=CompileOptions(), show_progress=False))
    onnx.save(gs.export_onnx(graph.toposort()), path)
    return str(path)


@pytest.mark.parametrize("trained", TRAINED)
def test_keras_gelu_layernorm_mlp_compiles_to_signgd(trained, digits_nhwc, tmp_path):
    """tf2onnx writes both GELU forms and LayerNormalization decomposed; canonicalize fuses them, so
    signGD gets its gelu_erf, gelu_tanh and p/√q neurons and tracks the ANN by T = 64."""
    x_train, y_train, x_test, y_test = digits_nhwc
    model = seeded_keras(lambda: keras_gelu_layernorm_mlp((8, 8, 1)))
    if trained:
        model = train_keras(model, x_train, y_train, TrainSettings(8, batch_size=64, lr=3e-3))
    raw = export_keras(model, tmp_path / "ann.raw.onnx", input_shape=(8, 8, 1))
    exported_ops = {n.op_type for n in onnx.load(raw).graph.node}
    assert {"Erfc", "Tanh", "Pow", "ReduceMean", "Sqrt", "Reciprocal"} <= exported_ops
    assert not {"Gelu", "LayerNormalization"} & exported_ops

    out = tmp_path / "snn.onnx"
    compile_model(raw, out, CompileOptions(neuron="signgd", timesteps=64), calibration=x_train[:512])
    compiled = onnx.load(out)
    onnx.checker.check_model(compiled, full_check=True)
    functions = {(n.op_type, a.s.decode()) for n in compiled.graph.node for a in n.attribute if a.name == "function"}
    assert {
        ("SignGDNeuron", "gelu_erf"),
        ("SignGDNeuron", "gelu_tanh"),
        ("SignGDBinaryNeuron", "p_rsqrt_q"),
    } <= functions
    assert not {"Erf", "Tanh", "Pow", "Sqrt", "Reciprocal"} & {n.op_type for n in compiled.graph.node}

    ann = valid_ann(onnx.load(raw), tmp_path / "ann.onnx")
    report = Session(out).evaluate(x_test, y_test, ann=ann, progress=False)
    if trained:
        assert report.ann_accuracy > 0.9, report.table()
    assert abs(report.ann_accuracy - report.accuracy[63]) <= 0.015, report.table()
    assert report.agreement[63] >= 0.97, report.table()
    assert report.logit_error[63] < report.logit_error[15], report.table()


def test_to_nhwc_moves_channels_last():
    x = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    y = to_nhwc(x)
    assert y.shape == (2, 4, 5, 3) and y.flags.c_contiguous and y[1, 2, 3, 0] == x[1, 0, 2, 3]
