"""Keras twins of the PyTorch MLP, LeNet and TTFS nets (NHWC input), a GELU/LayerNorm MLP for signGD
neurons, their training, and ONNX export.

Needs the `tf` extra (tensorflow-cpu, tf2onnx). TensorFlow is imported inside the functions, so
importing onnx_snn.models never needs it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from onnx_snn.models.architecture import (
    TTFS_IMAGE_SHAPE,
    TTFS_NETS,
    BatchNorm,
    Conv,
    Dense,
    Dropout,
    Flatten,
    Layer,
    LeNetShape,
    MaxPool,
    ReLU,
    TrainSettings,
)
from onnx_snn.models.export import INPUT_NAME, OUTPUT_NAME
from onnx_snn.models.files import atomic_path

if TYPE_CHECKING:
    import keras

#: ONNX opset of export_keras.
KERAS_OPSET = 17


def to_nhwc(x: np.ndarray) -> np.ndarray:
    """NCHW images -> contiguous NHWC images (the layout the Keras nets take)."""
    return np.ascontiguousarray(np.transpose(x, (0, 2, 3, 1)))


def keras_mlp(
    in_shape: Sequence[int], hidden: Sequence[int] = (64,), num_classes: int = 10, bias: bool = True
) -> keras.Model:
    """Twin of torch_nets.MLP: Flatten -> (Dense -> ReLU) per hidden width -> Dense(num_classes).

    `in_shape` is one sample's shape without the batch dim, e.g. (8, 8, 1).
    """
    import keras

    x = inputs = keras.Input(shape=tuple(in_shape), name=INPUT_NAME)
    x = keras.layers.Flatten()(x)
    for h in hidden:
        x = keras.layers.Dense(h, activation="relu", use_bias=bias)(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes, use_bias=bias)(x), name="mlp")


def keras_lenet(in_channels: int = 1, num_classes: int = 10, image_size: int = 28) -> keras.Model:
    """Twin of torch_nets.LeNet on NHWC input [N, image_size, image_size, in_channels]."""
    import keras

    shape = LeNetShape(image_size)
    x = inputs = keras.Input(shape=(image_size, image_size, in_channels), name=INPUT_NAME)
    for channels in shape.channels:
        x = keras.layers.Conv2D(channels, shape.kernel_size, padding="same", use_bias=False)(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.ReLU()(x)
        x = keras.layers.AveragePooling2D(2)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(shape.hidden, activation="relu")(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes)(x), name="lenet")


def keras_gelu_layernorm_mlp(
    in_shape: Sequence[int], hidden: Sequence[int] = (64, 32), num_classes: int = 10
) -> keras.Model:
    """Flatten -> Dense -> LayerNormalization -> exact GELU -> Dense with tanh-approximated GELU ->
    LayerNormalization -> Dense(num_classes).

    A net for the `--neuron signgd` path (IF neurons cannot convert it) holding both of Keras' GELU
    forms and its LayerNormalization, which tf2onnx writes decomposed: exact GELU as an Erfc chain
    (an op invalid in ONNX, repaired by canonicalize), the tanh form as a Pow/Tanh chain, the
    LayerNormalization as ReduceMean/Sqrt/Reciprocal. `in_shape` is one sample's shape without the
    batch dim, e.g. (8, 8, 1); `hidden` is the two Dense widths.
    """
    import keras

    first, second = hidden
    x = inputs = keras.Input(shape=tuple(in_shape), name=INPUT_NAME)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(first)(x)
    x = keras.layers.LayerNormalization()(x)
    x = keras.layers.Activation("gelu")(x)  # approximate=False: 0.5·x·(1 + erf(x/√2))
    x = keras.layers.Dense(second, activation=lambda t: keras.activations.gelu(t, approximate=True))(x)
    x = keras.layers.LayerNormalization()(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes)(x), name="gelu_layernorm_mlp")


def _keras_layer(layer: Layer) -> keras.layers.Layer:
    """The Keras layer described by `layer` (convolutions and dense layers with bias, as Keras' default)."""
    import keras

    match layer:
        case Conv(filters=filters, kernel=kernel, padding=padding):
            return keras.layers.Conv2D(filters, kernel, padding=padding)
        case Dense(units=units, activation=activation):
            return keras.layers.Dense(units, activation=activation)
        case BatchNorm(momentum=momentum, eps=eps):
            return keras.layers.BatchNormalization(momentum=1.0 - momentum, epsilon=eps)
        case ReLU():
            return keras.layers.ReLU()
        case MaxPool(size=size):
            return keras.layers.MaxPooling2D(size)
        case Flatten():
            return keras.layers.Flatten()
        case Dropout(rate=rate):
            return keras.layers.Dropout(rate)
    raise TypeError(f"unknown layer {layer!r}")


def keras_layer_stack(layers: Sequence[Layer], in_shape: Sequence[int], name: str) -> keras.Model:
    """A functional model applying `layers` (architecture.Layer descriptions) in order.

    `in_shape` is one sample's shape without the batch dim, NHWC for images; the input is named "x".
    Weights are initialised from Keras' global RNG (seed it with keras.utils.set_random_seed).
    """
    import keras

    x = inputs = keras.Input(shape=tuple(in_shape), name=INPUT_NAME)
    for layer in layers:
        x = _keras_layer(layer)(x)
    return keras.Model(inputs, x, name=name)


#: One Fashion-MNIST image as the Keras TTFS nets take it (NHWC without the batch dim).
TTFS_KERAS_INPUT_SHAPE = (*TTFS_IMAGE_SHAPE[1:], TTFS_IMAGE_SHAPE[0])


def keras_ttfs_dense() -> keras.Model:
    """Twin of ttfs_nets.TTFSDense on [N, 28, 28, 1]: Flatten -> Dense 600 ReLU -> Dropout(0.08) ->
    Dense 10 softmax (returns probabilities)."""
    return keras_layer_stack(TTFS_NETS["dense"], TTFS_KERAS_INPUT_SHAPE, "ttfs_dense")


def keras_ttfs_lenet() -> keras.Model:
    """Twin of ttfs_nets.TTFSLeNet on [N, 28, 28, 1]: LeNet-5 with BatchNorm before each ReLU, 2x2
    max pooling and a Dense 10 softmax head (returns probabilities)."""
    return keras_layer_stack(TTFS_NETS["lenet"], TTFS_KERAS_INPUT_SHAPE, "ttfs_lenet")


def keras_ttfs_vgg() -> keras.Model:
    """Twin of ttfs_nets.TTFSVGG on [N, 28, 28, 1]: a small VGG with BatchNorm after each ReLU, 2x2
    max pooling and a Dense 10 softmax head (returns probabilities)."""
    return keras_layer_stack(TTFS_NETS["vgg"], TTFS_KERAS_INPUT_SHAPE, "ttfs_vgg")


def keras_ends_in_softmax(model: keras.Model) -> bool:
    """Whether `model`'s last layer is a Softmax layer or has a softmax activation, i.e. it returns
    probabilities (train it with from_logits=False)."""
    import keras

    last = model.layers[-1]
    return isinstance(last, keras.layers.Softmax) or getattr(last, "activation", None) is keras.activations.softmax


def train_keras(model: keras.Model, x: np.ndarray, y: np.ndarray, settings: TrainSettings) -> keras.Model:
    """Train `model` in place as `settings` say (Adam on cross-entropy, Keras' shuffle) and return it.

    x: float32 NHWC inputs, y: integer labels. Seeds Python, NumPy and TensorFlow with
    `settings.seed` and turns on TensorFlow's op determinism (a process-wide switch that stays on).
    """
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(settings.seed)
    tf.config.experimental.enable_op_determinism()
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=settings.lr),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=settings.from_logits),
    )
    verbose = 2 if settings.progress else 0
    model.fit(x, y, epochs=settings.epochs, batch_size=settings.batch_size, shuffle=True, verbose=verbose)
    return model


def evaluate_keras_accuracy(model: keras.Model, x: np.ndarray, y: np.ndarray) -> float:
    """Fraction of samples whose arg-max output equals the label (inference mode)."""
    logits = model.predict(x, batch_size=1024, verbose=0)
    return float(np.mean(np.argmax(logits, axis=1) == np.asarray(y)))


def export_keras(model: keras.Model, path: str | os.PathLike, input_shape: Sequence[int]) -> Path:
    """Export `model` to ONNX opset 17 at `path` via tf2onnx and return the path.

    `input_shape` is one sample's shape without the batch dim (NHWC for images). The ONNX model
    takes input "x" of shape [N, *input_shape] (dynamic N) and returns "logits". Written atomically.
    """
    import tensorflow as tf
    import tf2onnx

    signature = (tf.TensorSpec((None, *input_shape), tf.float32, name=INPUT_NAME),)

    @tf.function(input_signature=signature)
    def inference(x: tf.Tensor) -> dict[str, tf.Tensor]:
        return {OUTPUT_NAME: model(x, training=False)}

    path = Path(path)
    with atomic_path(path) as tmp:
        tf2onnx.convert.from_function(inference, input_signature=signature, opset=KERAS_OPSET, output_path=str(tmp))
    return path
