"""Reference ANNs in PyTorch, built only from ops the IF converter handles.

Layers: Conv2d, BatchNorm2d, ReLU, AvgPool2d, global average pooling, Linear, Flatten and residual
Add. No MaxPool and no activation other than ReLU. Inputs are NCHW float32.
"""

from __future__ import annotations

from collections.abc import Sequence
from math import prod

import torch
from torch import nn

from onnx_snn.models.architecture import LeNetShape


class MLP(nn.Sequential):
    """Flatten -> (Linear -> ReLU) per hidden width -> Linear(num_classes)."""

    def __init__(
        self, in_shape: Sequence[int], hidden: Sequence[int] = (64,), num_classes: int = 10, bias: bool = True
    ) -> None:
        """`in_shape` is one sample's shape without the batch dim, e.g. (1, 8, 8)."""
        layers: list[nn.Module] = [nn.Flatten()]
        width = prod(in_shape)
        for h in hidden:
            layers += [nn.Linear(width, h, bias=bias), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, num_classes, bias=bias))
        super().__init__(*layers)


def conv_bn_relu(in_ch: int, out_ch: int, kernel_size: int, padding: int, stride: int = 1) -> list[nn.Module]:
    """Conv (no bias: the BN's shift is the bias) -> BatchNorm2d -> ReLU, as a list of layers."""
    return [
        nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=padding, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(),
    ]


class LeNet(nn.Sequential):
    """LeNet with BatchNorm and average pooling; see LeNetShape for the layer sizes."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, image_size: int = 28) -> None:
        """`image_size` is the (square) input side; a multiple of 4, e.g. 28 or 8."""
        shape = LeNetShape(image_size)
        k, p = shape.kernel_size, shape.padding
        c1, c2 = shape.channels
        super().__init__(
            *conv_bn_relu(in_channels, c1, k, p),
            nn.AvgPool2d(2),
            *conv_bn_relu(c1, c2, k, p),
            nn.AvgPool2d(2),
            nn.Flatten(),
            nn.Linear(shape.flat_features, shape.hidden),
            nn.ReLU(),
            nn.Linear(shape.hidden, num_classes),
        )


class BasicBlock(nn.Module):
    """ReLU(conv3x3-BN-ReLU-conv3x3-BN(x) + shortcut(x)).

    The shortcut is the identity when shape is kept, else a strided 1x1 conv-BN downsample.
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(
            *conv_bn_relu(in_ch, out_ch, 3, 1, stride),
            nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_ch),
        )
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch)
            )
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


class SmallResNet(nn.Sequential):
    """Stem conv-BN-ReLU, then `identity_blocks` BasicBlocks at the stem's width, one BasicBlock per
    further width, then global average pool and Linear.

    The first blocks keep the stem's width and resolution (identity shortcut); each later block
    changes width and halves the resolution (downsample shortcut). With `stem_pool`, a 2x2 AvgPool
    after the stem quarters the cost of everything after it (worth it on 28x28 images).
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        widths: Sequence[int] = (16, 32),
        stem_pool: bool = False,
        identity_blocks: int = 1,
    ) -> None:
        if not widths or identity_blocks < 1:
            raise ValueError("SmallResNet needs at least one width and one identity block")
        stem = conv_bn_relu(in_channels, widths[0], 3, 1) + ([nn.AvgPool2d(2)] if stem_pool else [])
        blocks = [BasicBlock(widths[0], widths[0]) for _ in range(identity_blocks)]
        blocks += [BasicBlock(w_in, w_out, stride=2) for w_in, w_out in zip(widths, widths[1:])]
        super().__init__(
            *stem,
            *blocks,
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(widths[-1], num_classes),
        )
