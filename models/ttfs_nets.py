"""PyTorch reference ReLU nets for the exact-mapping TTFS conversion (issue 4).

Each net is built from its layer stack in architecture.TTFS_NETS (shared with the Keras twins in
keras_nets), takes NCHW float32 input [N, 1, 28, 28] and ends in nn.Softmax(dim=1), so it returns
class probabilities and its ONNX export keeps the final Softmax. Train them on the probabilities
(train.train with TrainSettings(..., from_logits=False)).
"""

from __future__ import annotations

from collections.abc import Sequence
from math import prod

from torch import nn

from onnx_snn.models import architecture as arch

Shape = tuple[int, ...]


def _torch_layer(layer: arch.Layer, shape: Shape) -> tuple[list[nn.Module], Shape]:
    """The modules of `layer` for an input of per-sample `shape` ((C, H, W) or (features,)), and
    the per-sample output shape."""
    match layer:
        case arch.Conv(filters=filters, kernel=k, padding=padding):
            pad = k // 2 if padding == "same" else 0
            side = [s + 2 * pad - k + 1 for s in shape[1:]]
            return [nn.Conv2d(shape[0], filters, k, padding=pad)], (filters, *side)
        case arch.Dense(units=units, activation=activation):
            head = {None: [], "relu": [nn.ReLU()], "softmax": [nn.Softmax(dim=1)]}[activation]
            return [nn.Linear(shape[0], units), *head], (units,)
        case arch.BatchNorm(momentum=momentum, eps=eps):
            norm = nn.BatchNorm2d if len(shape) == 3 else nn.BatchNorm1d
            return [norm(shape[0], eps=eps, momentum=momentum)], shape
        case arch.ReLU():
            return [nn.ReLU()], shape
        case arch.MaxPool(size=size):
            return [nn.MaxPool2d(size)], (shape[0], *(s // size for s in shape[1:]))
        case arch.Flatten():
            return [nn.Flatten()], (prod(shape),)
        case arch.Dropout(rate=rate):
            return [nn.Dropout(rate)], shape
    raise TypeError(f"unknown layer {layer!r}")


class LayerStack(nn.Sequential):
    """nn.Sequential of `layers` (architecture.Layer descriptions) for per-sample input `in_shape`."""

    def __init__(self, layers: Sequence[arch.Layer], in_shape: Shape) -> None:
        modules: list[nn.Module] = []
        shape = tuple(in_shape)
        for layer in layers:
            added, shape = _torch_layer(layer, shape)
            modules += added
        super().__init__(*modules)


class TTFSDense(LayerStack):
    """Flatten -> Linear 600 -> ReLU -> Dropout(0.08) -> Linear 10 -> Softmax."""

    def __init__(self) -> None:
        super().__init__(arch.TTFS_NETS["dense"], arch.TTFS_IMAGE_SHAPE)


class TTFSLeNet(LayerStack):
    """LeNet-5 (conv 6 same, 16 valid, 120 valid; Linear 84) with BatchNorm before each ReLU,
    2x2 max pooling, and a Linear 10 -> Softmax head."""

    def __init__(self) -> None:
        super().__init__(arch.TTFS_NETS["lenet"], arch.TTFS_IMAGE_SHAPE)


class TTFSVGG(LayerStack):
    """Small VGG (3x3 convs 32, 32, 64; Linear 128) with BatchNorm after each ReLU, 2x2 max
    pooling, and a Linear 10 -> Softmax head."""

    def __init__(self) -> None:
        super().__init__(arch.TTFS_NETS["vgg"], arch.TTFS_IMAGE_SHAPE)
