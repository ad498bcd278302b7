"""Tests of the Keras twins: training on digits and export through tf2onnx."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("tf2onnx")

from onnx_snn.models.data import load_digits_split  # noqa: E402
from onnx_snn.models.keras_nets import (evaluate_keras_accuracy, export_keras, keras_lenet,  # noqa: E402
                                        keras_mlp, to_nhwc, train_keras)

pytestmark = pytest.mark.tf


@pytest.fixture(scope="module")
def digits_nhwc():
    x_train, y_train, x_test, y_test = load_digits_split()
    return to_nhwc(x_train), y_train, to_nhwc(x_test), y_test


@pytest.mark.parametrize("build", [lambda: keras_mlp((8, 8, 1)), lambda: keras_lenet(1, 10, image_size=8)],
                         ids=["mlp", "lenet"])
def test_keras_twin_trains_and_exports(build, digits_nhwc, tmp_path):
    x_train, y_train, x_test, y_test = digits_nhwc
    model = train_keras(build(), x_train, y_train, epochs=20, batch_size=64)
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


def test_to_nhwc_moves_channels_last():
    x = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    y = to_nhwc(x)
    assert y.shape == (2, 4, 5, 3) and y.flags.c_contiguous and y[1, 2, 3, 0] == x[1, 0, 2, 3]
