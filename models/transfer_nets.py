"""Reference nets built the way other people build them, for conversion tests we did not tune for
(issue 16): a ResNet with a full-resolution, bias-free stem; a ResNet-18-style net with a MaxPool
stem on 32x32 inputs; a VGG-style net with MaxPool; a MobileNet-v2-style net with ReLU6 and
depthwise convolutions. Their recipes (models/zoo.py) are plain Adam, a few epochs, fixed before
any SNN was measured on them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from onnx_snn.models.torch_nets import BasicBlock, conv_bn_relu


class StemResNet(nn.Sequential):
    """Full-resolution stem Conv-BN-ReLU (no conv bias), then per width: a basic residual block,
    and between widths a strided 3x3 Conv-BN-ReLU; global average pool, Linear."""

    def __init__(self, widths: Sequence[int] = (24, 48), num_classes: int = 10) -> None:
        layers: list[nn.Module] = [*conv_bn_relu(1, widths[0], 3, 1), BasicBlock(widths[0], widths[0])]
        for w_in, w_out in zip(widths, widths[1:]):
            layers += [*conv_bn_relu(w_in, w_out, 3, 1, stride=2), BasicBlock(w_out, w_out)]
        super().__init__(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(widths[-1], num_classes))


class MaxPoolResNet(nn.Sequential):
    """ResNet-18's layout scaled down: 3x3 stem Conv-BN-ReLU, MaxPool(3, 2, 1), `blocks` basic blocks
    per width (the first of each later width strided, with a 1x1 downsample shortcut), global
    average pool, Linear."""

    def __init__(self, widths: Sequence[int] = (16, 32, 64, 128), blocks: int = 2, num_classes: int = 10) -> None:
        layers: list[nn.Module] = [*conv_bn_relu(1, widths[0], 3, 1), nn.MaxPool2d(3, stride=2, padding=1)]
        w_in = widths[0]
        for i, width in enumerate(widths):
            for b in range(blocks):
                layers.append(BasicBlock(w_in, width, stride=2 if i > 0 and b == 0 else 1))
                w_in = width
        super().__init__(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(w_in, num_classes))


class VGGNet(nn.Sequential):
    """Per stage two 3x3 Conv-BN-ReLU then MaxPool2d(2); Flatten, Linear-ReLU, Linear."""

    def __init__(
        self, image_size: int = 28, widths: Sequence[int] = (16, 32), hidden: int = 128, num_classes: int = 10
    ) -> None:
        layers: list[nn.Module] = []
        w_in, side = 1, image_size
        for width in widths:
            layers += [*conv_bn_relu(w_in, width, 3, 1), *conv_bn_relu(width, width, 3, 1), nn.MaxPool2d(2)]
            w_in, side = width, side // 2
        super().__init__(
            *layers, nn.Flatten(), nn.Linear(w_in * side * side, hidden), nn.ReLU(), nn.Linear(hidden, num_classes)
        )


def _conv_bn(in_ch: int, out_ch: int, kernel_size: int, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(in_ch, out_ch, kernel_size, stride, kernel_size // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_ch),
    ]


class InvertedResidual(nn.Module):
    """MobileNet-v2's block: 1x1 expand-BN-ReLU6, 3x3 depthwise-BN-ReLU6, 1x1 project-BN (linear),
    plus the input when the shape is kept."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = in_ch * expand
        self.body = nn.Sequential(
            *_conv_bn(in_ch, hidden, 1),
            nn.ReLU6(),
            *_conv_bn(hidden, hidden, 3, stride, groups=hidden),
            nn.ReLU6(),
            *_conv_bn(hidden, out_ch, 1),
        )
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.residual else y


class MobileNetV2Net(nn.Sequential):
    """3x3 stride-2 stem Conv-BN-ReLU6, inverted residual blocks given as (out channels, stride) at expansion
    `expand`, 1x1 Conv-BN-ReLU6 to `last`, global average pool, Linear."""

    def __init__(
        self,
        blocks: Sequence[tuple[int, int]] = ((16, 1), (24, 2), (24, 1), (32, 1), (32, 1)),
        stem: int = 16,
        expand: int = 4,
        last: int = 64,
        num_classes: int = 10,
    ) -> None:
        layers: list[nn.Module] = [*_conv_bn(1, stem, 3, stride=2), nn.ReLU6()]
        w_in = stem
        for width, stride in blocks:
            layers.append(InvertedResidual(w_in, width, stride, expand))
            w_in = width
        layers += [*_conv_bn(w_in, last, 1), nn.ReLU6()]
        super().__init__(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(last, num_classes))
