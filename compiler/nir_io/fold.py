"""export-nir, step 2: fit a `Net` to what a dialect's reader has, folding scales into weights.

`fold_scales` removes every `scale` layer it can, exactly (a product of factors, no other change):
into the weights and bias of the conv or affine layer that is its only input and reads nothing
else, into the weights of a conv or affine layer that reads it alone (per input channel), into
the next scale, or past a flatten or pool (a per-channel factor commutes with both), so that it
reaches weights further on. A residual shortcut scaled on its way into a neuron, which other
edges feed too, keeps its scale.

`fit` then rewrites what the dialect's reader lacks (dialects.Dialect.layers): an average pool
as a sum pool and a scale of 1/(kh·kw) (folded), a scale that is left as a diagonal 1×1 conv
(or a diagonal affine layer on vectors), a bias-free affine layer as a Linear where it has one.
"""

from __future__ import annotations

import math

import numpy as np

from onnx_snn.errors import SnnError
from onnx_snn.nir_io.dialects import Dialect
from onnx_snn.nir_io.net import Layer, Net, channel_factors, full_scale

_WEIGHTED = ("conv", "affine")


def fit(net: Net, dialect: Dialect) -> Net:
    """`net` in the layers `dialect` reads (see the module docstring); mutates and returns `net`."""
    if "AvgPool2d" not in dialect.layers:
        for name in [n for n, layer in net.layers.items() if layer.kind == "avgpool"]:
            pool = net.layers[name]
            pool.kind = "sumpool"
            net.insert_after(name, "scale", scale=np.asarray(1.0 / math.prod(pool.attrs["kernel"])))
    fold_scales(net)
    if "Scale" not in dialect.layers:
        for name in [n for n, layer in net.layers.items() if layer.kind == "scale"]:
            _as_weighted(net.layers[name])
    return net


def fold_scales(net: Net) -> Net:
    """Fold every scale layer that can be folded exactly (module docstring); mutates and returns `net`."""
    changed = True
    while changed:
        changed = False
        for name in [n for n, layer in net.layers.items() if layer.kind == "scale"]:
            if name in net.layers and (_into_producer(net, name) or _into_consumers(net, name)):
                changed = True
    return net


def _into_producer(net: Net, name: str) -> bool:
    """Fold scale `name` into the conv or affine layer that is its only input and feeds it alone."""
    inputs = net.inputs_of(name)
    if len(inputs) != 1 or net.layers[inputs[0]].kind not in _WEIGHTED or net.consumers_of(inputs[0]) != [name]:
        return False
    producer, factors = net.layers[inputs[0]], channel_factors(full_scale(net.layers[name]))
    if factors is None or producer.weight is None or producer.bias is None:
        return False
    producer.weight = producer.weight * factors.reshape((-1,) + (1,) * (producer.weight.ndim - 1))
    producer.bias = producer.bias * factors
    _bypass(net, name)
    return True


def _into_consumers(net: Net, name: str) -> bool:
    """Fold scale `name` into each consumer that reads it alone: weights, the next scale, or past a
    flatten or pool. Consumers it cannot fold into keep reading it. True if any was folded."""
    scale, sources, folded = net.layers[name], net.inputs_of(name), False
    for consumer in net.consumers_of(name):
        layer = net.layers[consumer]
        if net.inputs_of(consumer) != [name] or not _absorb(net, consumer, layer, scale):
            continue
        net.edges = [e for e in net.edges if e != (name, consumer)] + [(s, consumer) for s in sources]
        folded = True
    if not net.consumers_of(name):
        net.remove(name)
    return folded


def _absorb(net: Net, name: str, layer: Layer, scale: Layer) -> bool:
    """Take `scale` into `layer`, which reads it alone; False (nothing changed) where it cannot."""
    values = full_scale(scale)
    if layer.kind == "scale":
        layer.scale = full_scale(layer) * values
        return True
    if layer.kind == "affine" and layer.weight is not None:
        layer.weight = layer.weight * values.reshape(1, -1)
        return True
    factors = channel_factors(values) if values.ndim == 3 else None
    if factors is None:
        return False
    if layer.kind == "conv" and layer.weight is not None:
        groups = layer.attrs["groups"]
        per_group_in, per_group_out = layer.weight.shape[1], layer.weight.shape[0] // groups
        rows = np.arange(layer.weight.shape[0]) // per_group_out
        columns = factors.reshape(groups, per_group_in)[rows]  # [out, in/groups]
        layer.weight = layer.weight * columns[:, :, None, None]
        return True
    if layer.kind in ("avgpool", "sumpool"):
        net.insert_after(name, "scale", scale=factors.reshape(-1, 1, 1))
        return True
    if layer.kind == "flatten":
        net.insert_after(name, "scale", scale=values.reshape(layer.shape))
        return True
    return False


def _bypass(net: Net, name: str) -> None:
    """Remove the single-input layer `name`, its consumers reading its input instead."""
    (source,) = net.inputs_of(name)
    consumers = net.consumers_of(name)
    net.remove(name)
    net.edges += [(source, c) for c in consumers]


def _as_weighted(layer: Layer) -> None:
    """A scale layer as the weighted layer that does the same: a 1×1 conv with a diagonal weight on
    [C, H, W] when its factors are per channel, else (vectors) a diagonal affine layer."""
    values = full_scale(layer)
    factors = channel_factors(values) if values.ndim == 3 else None
    if factors is not None:  # groups = 1: nir types a Conv2d's input as weight.shape[1] channels, ignoring groups
        layer.kind, layer.weight, layer.bias = "conv", np.diag(factors)[:, :, None, None], np.zeros(len(factors))
        layer.attrs = {"stride": (1, 1), "padding": (0, 0), "dilation": (1, 1), "groups": 1}
    elif values.ndim == 1:
        layer.kind, layer.weight, layer.bias = "affine", np.diag(values), np.zeros(len(values))
    else:
        raise SnnError(f"a scale that varies within the channels of a {layer.shape} tensor has no NIR counterpart")
    layer.scale = None
