"""The standard vision families at small width, for the coverage suite (issue 15).

Each net is written from its paper's layer list (not copied from torchvision or timm), scaled
down to a few hundred thousand parameters at most: input [N, 3, 32, 32], 10 logits. The idioms
that matter to an ONNX compiler are kept as the papers' reference code writes them: BatchNorm
after each conv, pre-activation BN on a concat (DenseNet), channel shuffle by reshape/transpose
(ShuffleNet), `cls.expand(x.shape[0], -1, -1)` (ViT, DeiT), window partition by reshape/permute
and torch.roll (Swin), channels-last LayerNorm by permute (ConvNeXt), LRN (AlexNet, GoogLeNet),
MaxPool with ceil_mode (SqueezeNet, GoogLeNet).

`FAMILIES` maps each name to a builder: a freshly initialised net, the same for every call (torch
seeded with SEED, the global RNG state restored): convs and linears He-normal (std sqrt(2/fan_in)),
biases zero, layer scales 0.1 (the papers start them at 1e-5 or 1e-6, which would leave an
untrained block's branch invisible). `prepare_family(name)` then adapts every BatchNorm's running
statistics to real images (Fashion-MNIST resized to 32x32, three channels, normalized by the
training set's mean and std) and returns the net in
eval mode: untrained, but with activations at the scale a trained net has, so that a conversion's
fidelity means something.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import TypeVar

import numpy as np
import torch
from torch import nn

from onnx_snn.models.light_models import fashion_rgb
from onnx_snn.models.signgd_nets import Affine

#: the seed of every builder's initial weights
SEED = 0
IMAGE_SIZE = 32
CLASSES = 10
#: families whose only nonlinearity is ReLU (with BatchNorm, pooling, residual sums and concats):
#: the ones IF neurons should convert near exactly (issue 15: relative logit error <= 0.02)
RELU_ONLY = frozenset({"resnet18", "vgg11_bn", "densenet", "squeezenet1_1", "shufflenet_v2"})
#: Fashion-MNIST's training-set pixel mean and std (pixels in [0, 1]). Raw pixels would leave the
#: black background at exactly 0: a patch embedding without bias (as initialised here) maps it to
#: an all-zero token, and LayerNorm (eps 1e-6) of the nearly black tokens at the garment's edge
#: (token variance 1e-7 to 1e-4) multiplies rounding-level differences by up to 1000. The ANN
#: itself is then chaotic: ±0.5/255 pixel noise moves the untrained ConvNeXt's logits by 166%
#: (MLP-Mixer 97%, ViT 19%) against 0.7% (0.7%, 0.9%) on normalized pixels.
FASHION_MEAN = 0.2860
FASHION_STD = 0.3530
#: images of the BatchNorm adaptation (training split), and its batch
ADAPT_IMAGES = 512
ADAPT_BATCH = 128
#: the initial value of every layer scale
LAYER_SCALE = 0.1

BuilderT = TypeVar("BuilderT", bound=Callable[[], nn.Module])


def conv_bn(
    cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act: nn.Module | None = None
) -> nn.Module:
    """Conv (no bias, 'same' padding for odd kernels) -> BatchNorm -> `act` (none if None)."""
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if act is not None:
        layers.append(act)
    return nn.Sequential(*layers)


def _divisible(value: float, divisor: int = 4) -> int:
    """`value` rounded to a multiple of `divisor`, not below it and not more than 10% under
    `value` (MobileNetV2's _make_divisible)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


# --- ResNet -------------------------------------------------------------------------------------


class PooledClassifier(nn.Module):
    """A net computing head(flatten(global average pool(features(x)))): subclasses set
    `features`, `pool` and `head`, in that order."""

    features: nn.Module
    pool: nn.Module
    head: nn.Module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.pool(self.features(x)), 1))


class BasicBlock(nn.Module):
    """relu(bn(conv3x3(relu(bn(conv3x3(x))))) + shortcut(x)); the shortcut is a strided 1x1
    conv + BN where the shape changes (He et al. 2016, option B)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = conv_bn(cin, cout, 3, stride, act=nn.ReLU())
        self.conv2 = conv_bn(cout, cout, 3)
        self.shortcut = conv_bn(cin, cout, 1, stride) if stride != 1 or cin != cout else nn.Identity()
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv2(self.conv1(x)) + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18 (He, Zhang, Ren, Sun: Deep Residual Learning for Image Recognition, CVPR 2016):
    7x7/2 conv stem + BN + ReLU + MaxPool(3, 2, 1), BasicBlocks [2, 2, 2, 2], global average
    pool, fully connected; widths (8, 16, 32, 64) instead of (64, 128, 256, 512)."""

    def __init__(self, widths: tuple[int, ...] = (8, 16, 32, 64), blocks: tuple[int, ...] = (2, 2, 2, 2)) -> None:
        super().__init__()
        self.stem = nn.Sequential(conv_bn(3, widths[0], 7, 2, act=nn.ReLU()), nn.MaxPool2d(3, 2, 1))
        layers: list[nn.Module] = []
        cin = widths[0]
        for stage, (width, count) in enumerate(zip(widths, blocks)):
            for i in range(count):
                layers.append(BasicBlock(cin, width, 2 if stage > 0 and i == 0 else 1))
                cin = width
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.layers(self.stem(x))), 1))


# --- VGG ----------------------------------------------------------------------------------------


class VGG11BN(nn.Module):
    """VGG-11 with BatchNorm (Simonyan, Zisserman: Very Deep Convolutional Networks for
    Large-Scale Image Recognition, ICLR 2015, configuration A; BN after each conv): eight 3x3
    convs with five 2x2 MaxPools, then three fully connected layers with dropout; widths 1/8."""

    CONFIG: tuple[int | str, ...] = (8, "M", 16, "M", 32, 32, "M", 64, 64, "M", 64, 64, "M")

    def __init__(self, hidden: int = 64) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for item in self.CONFIG:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                assert isinstance(item, int)
                layers += [nn.Conv2d(cin, item, 3, padding=1), nn.BatchNorm2d(item), nn.ReLU()]
                cin = item
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Linear(cin, hidden),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(hidden, CLASSES),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


# --- DenseNet -----------------------------------------------------------------------------------


class DenseLayer(nn.Module):
    """BN-ReLU-Conv1x1 (bottleneck to bn_size*growth) -> BN-ReLU-Conv3x3 (growth channels),
    concatenated to its input."""

    def __init__(self, cin: int, growth: int, bn_size: int = 4) -> None:
        super().__init__()
        self.branch = nn.Sequential(
            nn.BatchNorm2d(cin),
            nn.ReLU(),
            nn.Conv2d(cin, bn_size * growth, 1, bias=False),
            nn.BatchNorm2d(bn_size * growth),
            nn.ReLU(),
            nn.Conv2d(bn_size * growth, growth, 3, padding=1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.branch(x)], 1)


class DenseNet(PooledClassifier):
    """DenseNet-BC (Huang, Liu, van der Maaten, Weinberger: Densely Connected Convolutional
    Networks, CVPR 2017): conv + BN + ReLU + MaxPool stem, dense blocks of pre-activation
    BN-ReLU-Conv layers whose outputs are concatenated, transitions BN-ReLU-Conv1x1 (compression
    0.5) + AvgPool(2), final BN-ReLU, global average pool, fully connected; growth 8, three
    blocks of three layers."""

    def __init__(self, growth: int = 8, blocks: tuple[int, ...] = (3, 3, 3), stem: int = 16) -> None:
        super().__init__()
        layers: list[nn.Module] = [conv_bn(3, stem, 3, act=nn.ReLU()), nn.MaxPool2d(3, 2, 1)]
        channels = stem
        for i, count in enumerate(blocks):
            for _ in range(count):
                layers.append(DenseLayer(channels, growth))
                channels += growth
            if i < len(blocks) - 1:
                out = channels // 2
                layers += [
                    nn.BatchNorm2d(channels),
                    nn.ReLU(),
                    nn.Conv2d(channels, out, 1, bias=False),
                    nn.AvgPool2d(2, 2),
                ]
                channels = out
        layers += [nn.BatchNorm2d(channels), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(channels, CLASSES)


# --- MobileNetV2 --------------------------------------------------------------------------------


class InvertedResidual(nn.Module):
    """MobileNetV2's block: 1x1 expand + BN + ReLU6 (skipped at expansion 1), 3x3 depthwise
    (stride) + BN + ReLU6, 1x1 linear projection + BN; a residual add where the shape is kept."""

    def __init__(self, cin: int, cout: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = cin * expansion
        layers: list[nn.Module] = [] if expansion == 1 else [conv_bn(cin, hidden, 1, act=nn.ReLU6())]
        layers += [conv_bn(hidden, hidden, 3, stride, groups=hidden, act=nn.ReLU6()), conv_bn(hidden, cout, 1)]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x) if self.residual else self.block(x)


class MobileNetV2(PooledClassifier):
    """MobileNetV2 (Sandler, Howard, Zhu, Zhmoginov, Chen: MobileNetV2: Inverted Residuals and
    Linear Bottlenecks, CVPR 2018): 3x3/2 conv stem + BN + ReLU6, the paper's (t, c, n, s) table
    at width 0.25 with fewer repeats, 1x1 conv + BN + ReLU6 head, global pool, dropout, linear."""

    #: (expansion t, channels c, repeats n, stride s)
    CONFIG = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 2, 2), (6, 64, 2, 2), (6, 96, 1, 1), (6, 160, 1, 2), (6, 320, 1, 1))

    def __init__(self, width: float = 0.25, last: int = 128) -> None:
        super().__init__()
        cin = _divisible(32 * width)
        layers: list[nn.Module] = [conv_bn(3, cin, 3, 2, act=nn.ReLU6())]
        for t, c, n, s in self.CONFIG:
            cout = _divisible(c * width)
            for i in range(n):
                layers.append(InvertedResidual(cin, cout, s if i == 0 else 1, t))
                cin = cout
        layers.append(conv_bn(cin, last, 1, act=nn.ReLU6()))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(last, CLASSES))


# --- squeeze-excite, MobileNetV3, EfficientNet --------------------------------------------------


class SqueezeExcite(nn.Module):
    """x * gate(fc2(act(fc1(avgpool(x))))) with 1x1 convs as the fully connected layers (Hu, Shen,
    Sun: Squeeze-and-Excitation Networks, CVPR 2018)."""

    def __init__(self, channels: int, reduced: int, act: nn.Module, gate: nn.Module) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, reduced, 1)
        self.act = act
        self.fc2 = nn.Conv2d(reduced, channels, 1)
        self.gate = gate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.fc2(self.act(self.fc1(self.pool(x)))))


class MobileNetV3Block(nn.Module):
    """MobileNetV3's bneck: 1x1 expand + BN + act (skipped when exp == in), k x k depthwise +
    BN + act, squeeze-excite (ReLU, HardSigmoid gate) if set, 1x1 projection + BN; residual when
    the shape is kept."""

    def __init__(self, cin: int, kernel: int, exp: int, cout: int, se: bool, act: type[nn.Module], stride: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [] if exp == cin else [conv_bn(cin, exp, 1, act=act())]
        layers.append(conv_bn(exp, exp, kernel, stride, groups=exp, act=act()))
        if se:
            layers.append(SqueezeExcite(exp, _divisible(exp / 4), nn.ReLU(), nn.Hardsigmoid()))
        layers.append(conv_bn(exp, cout, 1))
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x) if self.residual else self.block(x)


class MobileNetV3Small(PooledClassifier):
    """MobileNetV3-Small (Howard et al.: Searching for MobileNetV3, ICCV 2019, table 2): 3x3/2
    conv + BN + HardSwish stem, eleven bneck blocks (ReLU or HardSwish, squeeze-excite with a
    HardSigmoid gate), 1x1 conv + BN + HardSwish, global pool, linear + HardSwish, dropout,
    linear; widths 0.25."""

    #: (kernel, expansion size, out channels, squeeze-excite, HardSwish (else ReLU), stride)
    CONFIG = (
        (3, 16, 16, True, False, 2),
        (3, 72, 24, False, False, 2),
        (3, 88, 24, False, False, 1),
        (5, 96, 40, True, True, 2),
        (5, 240, 40, True, True, 1),
        (5, 240, 40, True, True, 1),
        (5, 120, 48, True, True, 1),
        (5, 144, 48, True, True, 1),
        (5, 288, 96, True, True, 2),
        (5, 576, 96, True, True, 1),
        (5, 576, 96, True, True, 1),
    )

    def __init__(self, width: float = 0.25, hidden: int = 128) -> None:
        super().__init__()
        cin = _divisible(16 * width)
        layers: list[nn.Module] = [conv_bn(3, cin, 3, 2, act=nn.Hardswish())]
        for kernel, exp, out, se, hswish, stride in self.CONFIG:
            cout = _divisible(out * width)
            layers.append(
                MobileNetV3Block(
                    cin, kernel, _divisible(exp * width), cout, se, nn.Hardswish if hswish else nn.ReLU, stride
                )
            )
            cin = cout
        last = _divisible(576 * width)
        layers.append(conv_bn(cin, last, 1, act=nn.Hardswish()))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Sequential(nn.Linear(last, hidden), nn.Hardswish(), nn.Dropout(0.2), nn.Linear(hidden, CLASSES))


class MBConv(nn.Module):
    """EfficientNet's MBConv: 1x1 expand + BN + SiLU (skipped at expansion 1), k x k depthwise +
    BN + SiLU, squeeze-excite (reduced to a quarter of the block's input channels, SiLU, Sigmoid
    gate), 1x1 projection + BN; residual when the shape is kept (stochastic depth is identity at
    inference)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = cin * expansion
        layers: list[nn.Module] = [] if expansion == 1 else [conv_bn(cin, hidden, 1, act=nn.SiLU())]
        layers += [
            conv_bn(hidden, hidden, kernel, stride, groups=hidden, act=nn.SiLU()),
            SqueezeExcite(hidden, max(1, cin // 4), nn.SiLU(), nn.Sigmoid()),
            conv_bn(hidden, cout, 1),
        ]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x) if self.residual else self.block(x)


class EfficientNetB0(PooledClassifier):
    """EfficientNet-B0 (Tan, Le: EfficientNet: Rethinking Model Scaling for Convolutional Neural
    Networks, ICML 2019, table 1): 3x3/2 conv + BN + SiLU stem, seven MBConv stages, 1x1 conv +
    BN + SiLU head, global pool, dropout, linear; widths 0.25 and one or two blocks per stage."""

    #: (expansion, kernel, stride, out channels, repeats)
    CONFIG = (
        (1, 3, 1, 16, 1),
        (6, 3, 2, 24, 2),
        (6, 5, 2, 40, 1),
        (6, 3, 2, 80, 2),
        (6, 5, 1, 112, 1),
        (6, 5, 2, 192, 1),
        (6, 3, 1, 320, 1),
    )

    def __init__(self, width: float = 0.25, last: int = 160) -> None:
        super().__init__()
        cin = _divisible(32 * width)
        layers: list[nn.Module] = [conv_bn(3, cin, 3, 2, act=nn.SiLU())]
        for expansion, kernel, stride, out, repeats in self.CONFIG:
            cout = _divisible(out * width)
            for i in range(repeats):
                layers.append(MBConv(cin, cout, kernel, stride if i == 0 else 1, expansion))
                cin = cout
        layers.append(conv_bn(cin, last, 1, act=nn.SiLU()))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(last, CLASSES))


# --- ShuffleNetV2 -------------------------------------------------------------------------------


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave the channels of `groups` groups: reshape to [N, g, C/g, H, W], swap the group
    axes, reshape back (the batch read from the tensor's shape, as the reference code does)."""
    batch, channels, height, width = x.shape
    x = x.view(batch, groups, channels // groups, height, width).transpose(1, 2).contiguous()
    return x.view(batch, channels, height, width)


class ShuffleUnit(nn.Module):
    """ShuffleNetV2's unit: stride 1 splits the channels in two halves, passes one through
    1x1-BN-ReLU, 3x3 depthwise-BN, 1x1-BN-ReLU and concatenates it back to the other; stride 2
    runs both halves' branches (the left one depthwise 3x3/2-BN, 1x1-BN-ReLU) on the whole input.
    Then a channel shuffle of two groups."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        half = cout // 2
        if stride > 1:
            self.left = nn.Sequential(conv_bn(cin, cin, 3, stride, groups=cin), conv_bn(cin, half, 1, act=nn.ReLU()))
        branch_in = cin if stride > 1 else half
        self.right = nn.Sequential(
            conv_bn(branch_in, half, 1, act=nn.ReLU()),
            conv_bn(half, half, 3, stride, groups=half),
            conv_bn(half, half, 1, act=nn.ReLU()),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            a, b = x.chunk(2, dim=1)
            out = torch.cat((a, self.right(b)), 1)
        else:
            out = torch.cat((self.left(x), self.right(x)), 1)
        return channel_shuffle(out, 2)


class ShuffleNetV2(nn.Module):
    """ShuffleNet V2 (Ma, Zhang, Zheng, Sun: ShuffleNet V2: Practical Guidelines for Efficient
    CNN Architecture Design, ECCV 2018): 3x3/2 conv + BN + ReLU + MaxPool(3, 2, 1) stem, three
    stages of units (the first strided), 1x1 conv + BN + ReLU, global pool, linear; stage widths
    (24, 48, 96), two units each."""

    def __init__(
        self,
        widths: tuple[int, ...] = (24, 48, 96),
        units: tuple[int, ...] = (2, 2, 2),
        stem: int = 12,
        last: int = 128,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [conv_bn(3, stem, 3, 2, act=nn.ReLU()), nn.MaxPool2d(3, 2, 1)]
        cin = stem
        for width, count in zip(widths, units):
            for i in range(count):
                layers.append(ShuffleUnit(cin, width, 2 if i == 0 else 1))
                cin = width
        layers.append(conv_bn(cin, last, 1, act=nn.ReLU()))
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(last, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean([2, 3]))


# --- SqueezeNet ---------------------------------------------------------------------------------


class Fire(nn.Module):
    """squeeze 1x1 + ReLU, then expand 1x1 + ReLU and expand 3x3 + ReLU concatenated."""

    def __init__(self, cin: int, squeeze: int, expand: int) -> None:
        super().__init__()
        self.squeeze = nn.Sequential(nn.Conv2d(cin, squeeze, 1), nn.ReLU())
        self.expand1 = nn.Sequential(nn.Conv2d(squeeze, expand, 1), nn.ReLU())
        self.expand3 = nn.Sequential(nn.Conv2d(squeeze, expand, 3, padding=1), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.squeeze(x)
        return torch.cat([self.expand1(s), self.expand3(s)], 1)


class SqueezeNet11(nn.Module):
    """SqueezeNet 1.1 (Iandola et al.: SqueezeNet: AlexNet-level accuracy with 50x fewer
    parameters and <0.5MB model size, 2016; v1.1 from the authors' repository): 3x3/2 conv +
    ReLU, MaxPool(3, 2, ceil_mode) after it and after fire3 and fire5, eight fire modules,
    dropout, a 1x1 conv classifier + ReLU, global average pool; widths 1/4."""

    def __init__(self) -> None:
        super().__init__()
        pool = functools.partial(nn.MaxPool2d, 3, 2, ceil_mode=True)
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, 2),
            nn.ReLU(),
            pool(),
            Fire(16, 4, 16),
            Fire(32, 4, 16),
            pool(),
            Fire(32, 8, 32),
            Fire(64, 8, 32),
            pool(),
            Fire(64, 12, 48),
            Fire(96, 12, 48),
            Fire(96, 16, 64),
            Fire(128, 16, 64),
        )
        self.classifier = nn.Sequential(nn.Dropout(0.5), nn.Conv2d(128, CLASSES, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.classifier(self.features(x)), 1)


# --- RegNetY ------------------------------------------------------------------------------------


class YBlock(nn.Module):
    """RegNetY's block (X block + SE): 1x1 conv-BN-ReLU, 3x3 group conv (group width g, stride)
    -BN-ReLU, squeeze-excite (a quarter of the block's input width, ReLU, Sigmoid), 1x1 conv-BN;
    shortcut (1x1/stride conv + BN where the shape changes) added, then ReLU."""

    def __init__(self, cin: int, cout: int, stride: int, group_width: int) -> None:
        super().__init__()
        self.branch = nn.Sequential(
            conv_bn(cin, cout, 1, act=nn.ReLU()),
            conv_bn(cout, cout, 3, stride, groups=cout // group_width, act=nn.ReLU()),
            SqueezeExcite(cout, max(1, cin // 4), nn.ReLU(), nn.Sigmoid()),
            conv_bn(cout, cout, 1),
        )
        self.shortcut = conv_bn(cin, cout, 1, stride) if stride != 1 or cin != cout else nn.Identity()
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.branch(x) + self.shortcut(x))


class RegNetY(PooledClassifier):
    """RegNetY (Radosavovic, Kosaraju, Girshick, He, Dollar: Designing Network Design Spaces, CVPR
    2020): 3x3/2 conv + BN + ReLU stem, stages of Y blocks (group convs, SE), global pool, linear;
    widths (16, 32, 64), depths (1, 1, 2), group width 8."""

    def __init__(
        self, widths: tuple[int, ...] = (16, 32, 64), depths: tuple[int, ...] = (1, 1, 2), group_width: int = 8
    ) -> None:
        super().__init__()
        cin = 16
        layers: list[nn.Module] = [conv_bn(3, cin, 3, 2, act=nn.ReLU())]
        for width, depth in zip(widths, depths):
            for i in range(depth):
                layers.append(YBlock(cin, width, 2 if i == 0 else 1, group_width))
                cin = width
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(cin, CLASSES)


# --- ConvNeXt -----------------------------------------------------------------------------------


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of NCHW, channels-last through permutes."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ConvNeXtBlock(nn.Module):
    """dwconv 7x7 -> permute to NHWC -> LayerNorm -> Linear 4x -> GELU -> Linear -> layer scale
    -> permute back, added to the input."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pw1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pw2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), LAYER_SCALE))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x).permute(0, 2, 3, 1)
        y = self.gamma * self.pw2(self.act(self.pw1(self.norm(y))))
        return x + y.permute(0, 3, 1, 2)


class ConvNeXt(nn.Module):
    """ConvNeXt (Liu, Mao, Wu, Feichtenhofer, Darrell, Xie: A ConvNet for the 2020s, CVPR 2022):
    patchify stem (2x2/2 here, 4x4/4 in the paper) + LN, four stages of ConvNeXt blocks with
    LN + 2x2/2 conv downsampling between them, global pool, LN, linear; dims (16, 32, 48, 64),
    depths (1, 1, 2, 1)."""

    def __init__(self, dims: tuple[int, ...] = (16, 32, 48, 64), depths: tuple[int, ...] = (1, 1, 2, 1)) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, dims[0], 2, 2), LayerNorm2d(dims[0])]
        for i, (dim, depth) in enumerate(zip(dims, depths)):
            if i > 0:
                layers += [LayerNorm2d(dims[i - 1]), nn.Conv2d(dims[i - 1], dim, 2, 2)]
            layers += [ConvNeXtBlock(dim) for _ in range(depth)]
        self.features = nn.Sequential(*layers)
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        self.head = nn.Linear(dims[-1], CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.features(x).mean([2, 3])))


# --- ViT, DeiT ----------------------------------------------------------------------------------


class Attention(nn.Module):
    """Multi-head self-attention written out: one qkv linear, reshape to heads, softmax(q k^T /
    sqrt(d)) v, heads merged, output projection."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(batch, tokens, dim))


class Mlp(nn.Module):
    """Linear -> GELU -> Linear."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class TransformerBlock(nn.Module):
    """Pre-norm encoder block: x + attn(LN(x)), then x + mlp(LN(x))."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int = 2) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, mlp_ratio * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    """Vision Transformer (Dosovitskiy et al.: An Image is Worth 16x16 Words: Transformers for
    Image Recognition at Scale, ICLR 2021): 4x4 patch embedding conv, a class token expanded to
    the batch and prepended, learned position embedding, pre-norm encoder blocks, final LN, the
    class token's linear head; ViT-Tiny's 3 heads at dim 48, depth 3, MLP ratio 2 (ViT-Tiny: 192, 12, 4).

    `distilled` adds DeiT's distillation token and second head (the two heads' mean at inference)."""

    def __init__(self, dim: int = 48, depth: int = 3, heads: int = 3, patch: int = 4, distilled: bool = False) -> None:
        super().__init__()
        self.patch_embed = nn.Conv2d(3, dim, patch, patch)
        tokens = (IMAGE_SIZE // patch) ** 2
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.dist_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02) if distilled else None
        self.pos_embed = nn.Parameter(torch.randn(1, tokens + 1 + distilled, dim) * 0.02)
        self.blocks = nn.Sequential(*(TransformerBlock(dim, heads) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, CLASSES)
        self.head_dist = nn.Linear(dim, CLASSES) if distilled else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        tokens = [self.cls_token.expand(x.shape[0], -1, -1)]
        if self.dist_token is not None:
            tokens.append(self.dist_token.expand(x.shape[0], -1, -1))
        x = self.norm(self.blocks(torch.cat([*tokens, x], dim=1) + self.pos_embed))
        if self.head_dist is None:
            return self.head(x[:, 0])
        return (self.head(x[:, 0]) + self.head_dist(x[:, 1])) / 2


class DeiT(ViT):
    """DeiT (Touvron et al.: Training data-efficient image transformers & distillation through
    attention, ICML 2021): the ViT above with a distillation token and head, dim 48."""

    def __init__(self) -> None:
        super().__init__(distilled=True)


# --- Swin ---------------------------------------------------------------------------------------


def window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """[B, H, W, C] -> [B * windows, window * window, C]."""
    batch, height, width, channels = x.shape
    x = x.view(batch, height // window, window, width // window, window, channels)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window * window, channels)


def window_reverse(windows: torch.Tensor, window: int, height: int, width: int) -> torch.Tensor:
    """[B * windows, window * window, C] -> [B, H, W, C]."""
    batch = windows.shape[0] // ((height // window) * (width // window))
    x = windows.view(batch, height // window, width // window, window, window, -1)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(batch, height, width, -1)


class WindowAttention(nn.Module):
    """Multi-head attention inside each window, plus a relative position bias (a learned table of
    (2w-1)^2 x heads, indexed by a buffer) and, for shifted windows, the attention mask."""

    def __init__(self, dim: int, window: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.table = nn.Parameter(torch.randn((2 * window - 1) ** 2, heads) * 0.02)
        coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
        relative = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
        self.register_buffer("relative_position_index", relative[..., 0] * (2 * window - 1) + relative[..., 1])
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        batch_windows, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch_windows, tokens, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1)) * self.scale
        bias = self.table[self.relative_position_index.view(-1)].view(tokens, tokens, -1).permute(2, 0, 1)
        attn = attn + bias.unsqueeze(0)
        if mask is not None:
            windows = mask.shape[0]
            attn = attn.view(batch_windows // windows, windows, self.heads, tokens, tokens)
            attn = (attn + mask.unsqueeze(1).unsqueeze(0)).view(-1, self.heads, tokens, tokens)
        attn = attn.softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(batch_windows, tokens, dim))


def _shift_mask(resolution: int, window: int, shift: int) -> torch.Tensor:
    """The shifted-window attention mask [windows, w*w, w*w]: -100 between tokens that come from
    different regions of the cyclically shifted image, else 0."""
    regions = torch.zeros(1, resolution, resolution, 1)
    cuts = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    label = 0
    for rows in cuts:
        for cols in cuts:
            regions[:, rows, cols, :] = label
            label += 1
    windows = window_partition(regions, window).squeeze(-1)
    mask = windows.unsqueeze(1) - windows.unsqueeze(2)
    return mask.masked_fill(mask != 0, -100.0).masked_fill(mask == 0, 0.0)


class SwinBlock(nn.Module):
    """x + W-MSA(LN(x)) (windows shifted by torch.roll when `shift`), then x + MLP(LN(x))."""

    def __init__(self, dim: int, resolution: int, heads: int, window: int, shift: bool) -> None:
        super().__init__()
        self.resolution = resolution
        self.window = min(window, resolution)
        self.shift = self.window // 2 if shift and resolution > window else 0
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, self.window, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, 4 * dim)
        self.attn_mask: torch.Tensor | None
        self.register_buffer(
            "attn_mask", _shift_mask(resolution, self.window, self.shift) if self.shift else None, persistent=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, channels = x.shape
        side = self.resolution
        y = self.norm1(x).view(batch, side, side, channels)
        if self.shift:
            y = torch.roll(y, shifts=(-self.shift, -self.shift), dims=(1, 2))
        y = window_reverse(self.attn(window_partition(y, self.window), self.attn_mask), self.window, side, side)
        if self.shift:
            y = torch.roll(y, shifts=(self.shift, self.shift), dims=(1, 2))
        x = x + y.reshape(batch, side * side, channels)
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    """[B, H*W, C] -> [B, H/2*W/2, 2C]: the four pixels of each 2x2 patch concatenated, LN, linear."""

    def __init__(self, dim: int, resolution: int) -> None:
        super().__init__()
        self.resolution = resolution
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, channels = x.shape
        x = x.view(batch, self.resolution, self.resolution, channels)
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
        return self.reduction(self.norm(x.view(batch, -1, 4 * channels)))


class SwinT(nn.Module):
    """Swin Transformer (Liu et al.: Swin Transformer: Hierarchical Vision Transformer using
    Shifted Windows, ICCV 2021): 2x2 patch embedding conv + LN, stages of (regular, shifted)
    window-attention block pairs with relative position bias, patch merging between stages,
    final LN, mean over tokens, linear; dims (16, 32, 64), heads (1, 2, 4), window 4."""

    def __init__(
        self, dim: int = 16, depths: tuple[int, ...] = (2, 2, 2), heads: tuple[int, ...] = (1, 2, 4), window: int = 4
    ) -> None:
        super().__init__()
        patch = 2
        resolution = IMAGE_SIZE // patch
        self.patch_embed = nn.Conv2d(3, dim, patch, patch)
        self.embed_norm = nn.LayerNorm(dim)
        layers: list[nn.Module] = []
        for i, (depth, head_count) in enumerate(zip(depths, heads)):
            if i > 0:
                layers.append(PatchMerging(dim, resolution))
                dim, resolution = 2 * dim, resolution // 2
            layers += [SwinBlock(dim, resolution, head_count, window, shift=j % 2 == 1) for j in range(depth)]
        self.layers = nn.Sequential(*layers)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed_norm(self.patch_embed(x).flatten(2).transpose(1, 2))
        return self.head(self.norm(self.layers(x)).mean(1))


# --- MLP-Mixer, ResMLP --------------------------------------------------------------------------


class MixerBlock(nn.Module):
    """x + token-MLP(LN(x)^T)^T, then x + channel-MLP(LN(x))."""

    def __init__(self, tokens: int, dim: int, token_hidden: int, channel_hidden: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.token_mlp = Mlp(tokens, token_hidden)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.channel_mlp = Mlp(dim, channel_hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.token_mlp(self.norm1(x).transpose(1, 2)).transpose(1, 2)
        return x + self.channel_mlp(self.norm2(x))


class MlpMixer(nn.Module):
    """MLP-Mixer (Tolstikhin et al.: MLP-Mixer: An all-MLP Architecture for Vision, NeurIPS
    2021): 4x4 per-patch linear embedding (a strided conv), Mixer blocks, LN, mean over tokens,
    linear; dim 48, token MLP 32, channel MLP 96, depth 3."""

    def __init__(
        self, dim: int = 48, depth: int = 3, patch: int = 4, token_hidden: int = 32, channel_hidden: int = 96
    ) -> None:
        super().__init__()
        tokens = (IMAGE_SIZE // patch) ** 2
        self.stem = nn.Conv2d(3, dim, patch, patch)
        self.blocks = nn.Sequential(*(MixerBlock(tokens, dim, token_hidden, channel_hidden) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x).flatten(2).transpose(1, 2))
        return self.head(self.norm(x).mean(1))


class ResMLPBlock(nn.Module):
    """x + ls1 * linear over tokens(Aff(x)), then x + ls2 * MLP(Aff(x)) (GELU)."""

    def __init__(self, tokens: int, dim: int) -> None:
        super().__init__()
        self.norm1 = Affine(dim)
        self.token_mix = nn.Linear(tokens, tokens)
        self.norm2 = Affine(dim)
        self.mlp = Mlp(dim, 4 * dim)
        self.ls1 = nn.Parameter(torch.full((dim,), LAYER_SCALE))
        self.ls2 = nn.Parameter(torch.full((dim,), LAYER_SCALE))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1 * self.token_mix(self.norm1(x).transpose(1, 2)).transpose(1, 2)
        return x + self.ls2 * self.mlp(self.norm2(x))


class ResMLP(nn.Module):
    """ResMLP (Touvron et al.: ResMLP: Feedforward networks for image classification with
    data-efficient training, TPAMI 2022): 4x4 patch embedding, residual blocks of a token-mixing
    linear and a GELU channel MLP, each behind an Affine and with a layer scale, final Affine,
    mean over tokens, linear; dim 48, depth 3."""

    def __init__(self, dim: int = 48, depth: int = 3, patch: int = 4) -> None:
        super().__init__()
        tokens = (IMAGE_SIZE // patch) ** 2
        self.stem = nn.Conv2d(3, dim, patch, patch)
        self.blocks = nn.Sequential(*(ResMLPBlock(tokens, dim) for _ in range(depth)))
        self.norm = Affine(dim)
        self.head = nn.Linear(dim, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x).flatten(2).transpose(1, 2))
        return self.head(self.norm(x).mean(1))


# --- PoolFormer ---------------------------------------------------------------------------------


class PoolFormerBlock(nn.Module):
    """x + ls1 * (AvgPool3x3(GN(x)) - GN(x)), then x + ls2 * (1x1 conv, GELU, 1x1 conv)(GN(x)),
    GN = GroupNorm(1, C)."""

    def __init__(self, dim: int, mlp_ratio: int = 4) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(1, dim)
        self.pool = nn.AvgPool2d(3, 1, 1, count_include_pad=False)
        self.norm2 = nn.GroupNorm(1, dim)
        self.mlp = nn.Sequential(nn.Conv2d(dim, mlp_ratio * dim, 1), nn.GELU(), nn.Conv2d(mlp_ratio * dim, dim, 1))
        self.ls1 = nn.Parameter(torch.full((dim, 1, 1), LAYER_SCALE))
        self.ls2 = nn.Parameter(torch.full((dim, 1, 1), LAYER_SCALE))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm1(x)
        x = x + self.ls1 * (self.pool(y) - y)
        return x + self.ls2 * self.mlp(self.norm2(x))


class PoolFormerS12(nn.Module):
    """PoolFormer-S12 (Yu et al.: MetaFormer Is Actually What You Need for Vision, CVPR 2022):
    7x7/4 conv stem (padding 2), four stages of PoolFormer blocks with 3x3/2 conv downsampling,
    GroupNorm(1, C), mean over space, linear; dims (16, 32, 48, 64) and depths (2, 2, 2, 2)
    instead of S12's (64, 128, 320, 512) and (2, 2, 6, 2)."""

    def __init__(self, dims: tuple[int, ...] = (16, 32, 48, 64), depths: tuple[int, ...] = (2, 2, 2, 2)) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, dims[0], 7, 4, 2)]
        for i, (dim, depth) in enumerate(zip(dims, depths)):
            if i > 0:
                layers.append(nn.Conv2d(dims[i - 1], dim, 3, 2, 1))
            layers += [PoolFormerBlock(dim) for _ in range(depth)]
        self.features = nn.Sequential(*layers)
        self.norm = nn.GroupNorm(1, dims[-1])
        self.head = nn.Linear(dims[-1], CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.features(x)).mean([2, 3]))


# --- AlexNet, GoogLeNet -------------------------------------------------------------------------


class AlexNet(nn.Module):
    """AlexNet (Krizhevsky, Sutskever, Hinton: ImageNet Classification with Deep Convolutional
    Neural Networks, NeurIPS 2012): five convs (the 2nd, 4th and 5th in two groups, as the two
    GPUs split them), ReLU, local response normalisation (size 5, alpha 1e-4, beta 0.75, k 2)
    after the first two, overlapping MaxPool(3, 2) after conv 1, 2 and 5, three fully connected
    layers with dropout; 5x5/1 first conv for 32x32 inputs, widths 1/6 to 1/8."""

    def __init__(self, hidden: int = 128) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 5, 1, 2),
            nn.ReLU(),
            nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(16, 32, 5, 1, 2, groups=2),
            nn.ReLU(),
            nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(32, 48, 3, 1, 1),
            nn.ReLU(),
            nn.Conv2d(48, 48, 3, 1, 1, groups=2),
            nn.ReLU(),
            nn.Conv2d(48, 32, 3, 1, 1, groups=2),
            nn.ReLU(),
            nn.MaxPool2d(3, 2),
        )
        self.classifier = nn.Sequential(
            nn.Dropout(0.5),
            nn.Linear(32 * 3 * 3, hidden),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, CLASSES),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


class Inception(nn.Module):
    """GoogLeNet's inception module: 1x1 | 1x1 -> 3x3 | 1x1 -> 5x5 | MaxPool(3, 1, 1) -> 1x1,
    each conv + ReLU, the four branches concatenated."""

    def __init__(self, cin: int, c1: int, c3r: int, c3: int, c5r: int, c5: int, pool: int) -> None:
        super().__init__()

        def conv(a: int, b: int, k: int) -> nn.Module:
            return nn.Sequential(nn.Conv2d(a, b, k, padding=k // 2), nn.ReLU())

        self.b1 = conv(cin, c1, 1)
        self.b3 = nn.Sequential(conv(cin, c3r, 1), conv(c3r, c3, 3))
        self.b5 = nn.Sequential(conv(cin, c5r, 1), conv(c5r, c5, 5))
        self.bp = nn.Sequential(nn.MaxPool2d(3, 1, 1, ceil_mode=True), conv(cin, pool, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b1(x), self.b3(x), self.b5(x), self.bp(x)], 1)


class InceptionV1(PooledClassifier):
    """GoogLeNet (Szegedy et al.: Going Deeper with Convolutions, CVPR 2015): 7x7/2 conv, MaxPool
    (3, 2, ceil_mode), LRN, 1x1 and 3x3 convs, LRN, MaxPool, inception 3a, 3b, MaxPool, 4a, 4b,
    global average pool, dropout, linear (no auxiliary heads at inference); widths 1/4."""

    def __init__(self) -> None:
        super().__init__()

        def pool() -> nn.Module:
            return nn.MaxPool2d(3, 2, ceil_mode=True)

        def lrn() -> nn.Module:
            return nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)

        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 7, 2, 3),
            nn.ReLU(),
            pool(),
            lrn(),
            nn.Conv2d(16, 16, 1),
            nn.ReLU(),
            nn.Conv2d(16, 48, 3, padding=1),
            nn.ReLU(),
            lrn(),
            pool(),
            Inception(48, 16, 24, 32, 4, 8, 8),
            Inception(64, 32, 32, 48, 8, 24, 16),
            pool(),
            Inception(120, 48, 24, 52, 4, 12, 16),
            Inception(128, 40, 28, 56, 6, 16, 16),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Sequential(nn.Dropout(0.4), nn.Linear(128, CLASSES))


# --- registry -----------------------------------------------------------------------------------


def init_weights(model: nn.Module) -> nn.Module:
    """He-normal (std sqrt(2 / fan_in)) convs and linears with zero biases, BatchNorm, LayerNorm
    and GroupNorm at weight 1 and bias 0; in place, from torch's current RNG."""
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            fan_in = module.weight[0].numel()
            nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_in))
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, (nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm)):
            if module.weight is not None:
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
    return model


def _seeded(build: BuilderT) -> BuilderT:
    """`build` made deterministic: torch seeded with SEED around it (the global RNG state
    restored), then init_weights; the net is returned in eval mode."""

    @functools.wraps(build)
    def seeded() -> nn.Module:
        with torch.random.fork_rng():
            torch.manual_seed(SEED)
            return init_weights(build()).eval()

    return seeded  # type: ignore[return-value]


#: family name -> builder of the seeded, untrained net (input [N, 3, 32, 32], output [N, 10]); each
#: class's docstring names its paper
FAMILIES: dict[str, Callable[[], nn.Module]] = {
    "resnet18": _seeded(ResNet18),
    "vgg11_bn": _seeded(VGG11BN),
    "densenet": _seeded(DenseNet),
    "mobilenet_v2": _seeded(MobileNetV2),
    "mobilenet_v3_small": _seeded(MobileNetV3Small),
    "efficientnet_b0": _seeded(EfficientNetB0),
    "shufflenet_v2": _seeded(ShuffleNetV2),
    "squeezenet1_1": _seeded(SqueezeNet11),
    "regnet_y": _seeded(RegNetY),
    "convnext": _seeded(ConvNeXt),
    "vit_tiny": _seeded(ViT),
    "deit_tiny": _seeded(DeiT),
    "swin_t": _seeded(SwinT),
    "mlp_mixer": _seeded(MlpMixer),
    "resmlp": _seeded(ResMLP),
    "poolformer_s12": _seeded(PoolFormerS12),
    "alexnet": _seeded(AlexNet),
    "inception_v1": _seeded(InceptionV1),
}


def family_images(split: str = "train", count: int = ADAPT_IMAGES, start: int = 0) -> np.ndarray:
    """`count` Fashion-MNIST images of `split` from index `start`, as the families take them:
    float32 [count, 3, 32, 32] (bilinear resize, the gray channel repeated), normalized with the
    training set's pixel mean and std as every vision pipeline normalizes its input
    (FASHION_MEAN, FASHION_STD)."""
    return ((fashion_rgb(split, count, IMAGE_SIZE, start) - FASHION_MEAN) / FASHION_STD).astype(np.float32)


def adapt_batchnorm(model: nn.Module, images: np.ndarray, batch: int = ADAPT_BATCH) -> nn.Module:
    """Every BatchNorm's running statistics replaced by those of `images` (its statistics reset,
    momentum None: a cumulative average over train-mode forward passes in batches of `batch`,
    without gradients; dropout stays off). Returns `model` in eval mode."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    model.eval()
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
        norm.train()
    with torch.no_grad():
        x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
        for start in range(0, len(x), batch):
            model(x[start : start + batch])
    return model.eval()


def prepare_family(name: str, images: np.ndarray | None = None) -> nn.Module:
    """The family `name` ready for measurement: seeded random initial weights (FAMILIES), then its
    BatchNorm statistics adapted to `images` (default: the first ADAPT_IMAGES Fashion-MNIST
    training images, family_images()); in eval mode. KeyError for an unknown name; SnnError when
    Fashion-MNIST is needed and missing."""
    model = FAMILIES[name]()
    images = family_images() if images is None else images
    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        adapt_batchnorm(model, images)
    return center_heads(model, images)


def center_heads(model: nn.Module, images: np.ndarray, batch: int = ADAPT_BATCH) -> nn.Module:
    """Every head (a Linear or Conv2d with CLASSES outputs) has the mean of its output over
    `images` (and space) subtracted from its bias, so that the logits vary around zero from image
    to image instead of one class winning everywhere, as it does in a random net; the
    classification head's counterpart of adapt_batchnorm. In place; returns `model` in eval mode."""
    heads = [
        m
        for m in model.modules()
        if (isinstance(m, nn.Linear) and m.out_features == CLASSES)
        or (isinstance(m, nn.Conv2d) and m.out_channels == CLASSES)
    ]
    sums: dict[nn.Module, torch.Tensor] = {}
    counts: dict[nn.Module, int] = {}

    def record(module: nn.Module, _: object, output: torch.Tensor) -> None:
        axes = [0] + list(range(2, output.dim())) if isinstance(module, nn.Conv2d) else list(range(output.dim() - 1))
        sums[module] = sums.get(module, 0) + output.sum(axes)
        counts[module] = (
            counts.get(module, 0) + output.numel() // output.shape[1 if isinstance(module, nn.Conv2d) else -1]
        )

    hooks = [head.register_forward_hook(record) for head in heads]
    try:
        logits(model.eval(), images, batch)
    finally:
        for hook in hooks:
            hook.remove()
    with torch.no_grad():
        for head in heads:
            assert head.bias is not None
            head.bias -= sums[head] / counts[head]
    return model


def parameter_count(model: nn.Module) -> int:
    """The number of trainable parameters of `model`."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def logits(model: nn.Module, images: np.ndarray, batch: int = ADAPT_BATCH) -> np.ndarray:
    """`model`'s float32 output for `images`, in batches of `batch` (no gradients)."""
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
    with torch.no_grad():
        return np.concatenate([model(x[i : i + batch]).numpy() for i in range(0, len(x), batch)])


__all__ = [
    "ADAPT_IMAGES",
    "CLASSES",
    "FAMILIES",
    "IMAGE_SIZE",
    "RELU_ONLY",
    "adapt_batchnorm",
    "family_images",
    "init_weights",
    "logits",
    "parameter_count",
    "center_heads",
    "prepare_family",
]
