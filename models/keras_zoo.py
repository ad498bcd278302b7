"""Named Keras reference models: trained on first use, exported with tf2onnx, and cached on disk.

The entries lie beside zoo's under the same cache root (zoo.cache_root), one directory per name,
in zoo's layout but for the model's files and the image layout:
    meta.json      recipe fingerprint (with the TensorFlow and Keras versions), Keras test accuracy,
                   training time (written last)
    model.keras    the trained model in Keras' format (lets the ONNX be re-exported without retraining)
    test.npz       x_test float32 NHWC, y_test int64
    calib.npz      x: zoo.CALIBRATION_SIZE training images, float32 NHWC (the images zoo's entries hold)
    tf2onnx.onnx   the export_keras model, input "x" [N, H, W, C], output "logits" [N, classes]
Needs the `tf` extra; TensorFlow is imported inside the functions.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from onnx_snn.models.keras_nets import (
    evaluate_keras_accuracy,
    export_keras,
    keras_ends_in_softmax,
    keras_ttfs_dense,
    keras_ttfs_lenet,
    keras_ttfs_vgg,
    to_nhwc,
    train_keras,
)
from onnx_snn.models.zoo import SEED, CacheEntry, Recipe, Reference, cache_root, load_split, train_and_write

if TYPE_CHECKING:
    import keras

MODEL_FILE = "model.keras"
ONNX_FILE = "tf2onnx.onnx"

_KERAS_NETS: dict[str, Callable[[], keras.Model]] = {
    "keras_ttfs_dense": keras_ttfs_dense,
    "keras_ttfs_lenet": keras_ttfs_lenet,
    "keras_ttfs_vgg": keras_ttfs_vgg,
}

#: The Keras references by name; Recipe.net names a builder of keras_nets.
KERAS_RECIPES: dict[str, Recipe] = {
    # exact-mapping TTFS references (issue 4): ReLU nets ending in a softmax Dense layer
    "keras-fashion-ttfs-dense": Recipe("fashion", "keras_ttfs_dense", epochs=5),
    "keras-fashion-ttfs-lenet": Recipe("fashion", "keras_ttfs_lenet", epochs=5),
    "keras-fashion-ttfs-vgg": Recipe("fashion", "keras_ttfs_vgg", epochs=3),
}


def get_keras_reference(name: str, cache_dir: str | os.PathLike | None = None) -> Reference:
    """Return Keras reference model `name` (see KERAS_RECIPES), training and exporting it on first use.

    `cache_dir` as for zoo.get_reference. The ONNX file has a dynamic batch; the Reference's
    torch_model is None (load_keras_model gives the Keras model). Training is seeded: a retrain on
    the same machine and TensorFlow version gives the same weights. Needs dataset-fashion-mnist.
    """
    if name not in KERAS_RECIPES:
        raise ValueError(f"unknown Keras reference {name!r}; choose one of {', '.join(KERAS_RECIPES)}")
    recipe = KERAS_RECIPES[name]
    entry = CacheEntry.open(cache_root(cache_dir) / name, MODEL_FILE, ONNX_FILE)
    meta = entry.read_meta(_fingerprint(recipe))
    model = None
    if meta is None:
        model, meta = _train_entry(recipe, entry)
    if model is not None or not entry.onnx.exists():
        model = _load(entry.model) if model is None else model
        export_keras(model, entry.onnx, input_shape=model.input_shape[1:])
    return entry.reference(meta)


def load_keras_model(reference: Reference) -> keras.Model:
    """The trained Keras model of a reference returned by get_keras_reference."""
    return _load(reference.onnx_path.with_name(MODEL_FILE))


def _load(path: os.PathLike) -> keras.Model:
    import keras

    return keras.saving.load_model(path)


def _fingerprint(recipe: Recipe) -> dict[str, Any]:
    """`recipe`'s fingerprint with the TensorFlow and Keras versions in place of torch's."""
    import keras
    import tensorflow as tf

    return recipe.fingerprint({"tensorflow": tf.__version__, "keras": keras.__version__})


def _train_entry(recipe: Recipe, entry: CacheEntry) -> tuple[keras.Model, dict[str, Any]]:
    """Build `recipe`'s net with Keras' RNG seeded by SEED, train it (on the probabilities if it
    ends in softmax) on NHWC images, fill `entry` and return the model and the metadata."""
    import keras

    x_train, y_train, x_test, y_test = load_split(recipe.dataset)
    split = (to_nhwc(x_train), y_train, to_nhwc(x_test), y_test)
    keras.utils.set_random_seed(SEED)
    model = _KERAS_NETS[recipe.net](**recipe.net_kwargs)
    meta = train_and_write(
        recipe,
        entry,
        model,
        split,
        train_keras,
        not keras_ends_in_softmax(model),
        model.save,
        _fingerprint(recipe),
        evaluate_keras_accuracy,
    )
    return model, meta
