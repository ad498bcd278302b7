"""Reference ANNs in PyTorch and Keras, training on real data, and export to ONNX.

Modules: data (digits and Fashion-MNIST loaders), torch_nets (MLP, LeNet, SmallResNet), signgd_nets,
ttfs_nets (TTFSDense, TTFSLeNet, TTFSVGG: softmax-ended ReLU nets for the exact-mapping TTFS
conversion), architecture (layer stacks and TrainSettings, shared with the Keras twins), train,
crossbar_train (fine-tuning under the memristive-crossbar weight constraint), export (export_torch),
keras_nets (Keras twins; needs the `tf` extra), zoo (get_reference: cached, trained reference
models), keras_zoo (get_keras_reference: the same for Keras models exported with tf2onnx),
make_demo_assets (regenerates the demo shipped in onnx_snn/data).
The names below are re-exported lazily, so importing this package imports neither torch nor TF
(`train` is not among them: that name is the submodule; use onnx_snn.models.train.train).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "load_digits_split": "data",
    "load_fashion_mnist": "data",
    "MLP": "torch_nets",
    "LeNet": "torch_nets",
    "SmallResNet": "torch_nets",
    "TTFSDense": "ttfs_nets",
    "TTFSLeNet": "ttfs_nets",
    "TTFSVGG": "ttfs_nets",
    "keras_ttfs_dense": "keras_nets",
    "keras_ttfs_lenet": "keras_nets",
    "keras_ttfs_vgg": "keras_nets",
    "TrainSettings": "architecture",
    "evaluate_accuracy": "train",
    "predict_logits": "train",
    "finetune_constrained": "crossbar_train",
    "constrain_weights_": "crossbar_train",
    "export_torch": "export",
    "get_reference": "zoo",
    "Reference": "zoo",
    "RECIPES": "zoo",
    "load_torch_model": "zoo",
    "get_keras_reference": "keras_zoo",
    "load_keras_model": "keras_zoo",
    "KERAS_RECIPES": "keras_zoo",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
