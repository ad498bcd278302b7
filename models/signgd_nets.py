"""Reference ANNs in PyTorch for the signGD converter: GELU, LayerNorm, attention and MaxPool nets.

Every net takes NCHW float32 input [N, 1, H, W] with H = W = `image_size` (8 for the digits,
28 for Fashion-MNIST) and returns 10-class logits. Each path between two nonlinearities is
affine (convs, linears, transposes, per-channel scales, residual adds), as signGD requires.
"""

from __future__ import annotations

import torch
from torch import nn


def _patch_size(image_size: int) -> int:
    """Patch side for a square input: 2 for small images (8x8), 4 otherwise (28x28)."""
    patch = 2 if image_size <= 16 else 4
    if image_size % patch:
        raise ValueError(f"image_size {image_size} is not a multiple of the patch size {patch}")
    return patch


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel axis of NCHW: permute to NHWC, nn.LayerNorm, permute back."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ConvNeXtBlock(nn.Module):
    """x + pw2(GELU(pw1(LN_c(dwconv7x7(x))))): depthwise 7x7, channel LN, 4x inverted bottleneck."""

    def __init__(self, dim: int, expansion: int = 4) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = ChannelLayerNorm(dim)
        self.pw1 = nn.Conv2d(dim, expansion * dim, 1)
        self.act = nn.GELU()
        self.pw2 = nn.Conv2d(expansion * dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pw2(self.act(self.pw1(self.norm(self.dwconv(x)))))


class ConvNeXtNet(nn.Module):
    """Patchify stem -> `depth` ConvNeXt blocks -> global average pool -> LayerNorm -> Linear."""

    def __init__(self, image_size: int = 28, dim: int = 32, depth: int = 2, num_classes: int = 10) -> None:
        super().__init__()
        patch = _patch_size(image_size)
        self.stem = nn.Conv2d(1, dim, patch, stride=patch)
        self.stem_norm = ChannelLayerNorm(dim)
        self.blocks = nn.Sequential(*(ConvNeXtBlock(dim) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem_norm(self.stem(x)))
        return self.head(self.norm(x.mean(dim=(2, 3))))


class PatchEmbed(nn.Module):
    """Non-overlapping patch embedding: conv with kernel = stride = patch, then [N, C, h, w] -> [N, S, C]."""

    def __init__(self, image_size: int, dim: int) -> None:
        super().__init__()
        patch = _patch_size(image_size)
        self.proj = nn.Conv2d(1, dim, patch, stride=patch)
        self.num_tokens = (image_size // patch) ** 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class MlpBlock(nn.Sequential):
    """Linear -> GELU -> Linear over the last axis."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))


class PreNormBlock(nn.Module):
    """x + mix_tokens(LN(x)), then x + mix_channels(LN(x)), on tokens [N, S, C]: the shape of the
    Mixer and transformer blocks, whose subclasses hold the two mixing parts."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)

    def mix_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """The part that mixes across tokens, on normalized tokens [N, S, C]."""
        raise NotImplementedError

    def mix_channels(self, x: torch.Tensor) -> torch.Tensor:
        """The part that mixes across channels, token by token, on normalized tokens [N, S, C]."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.mix_tokens(self.norm1(x))
        return x + self.mix_channels(self.norm2(x))


class MixerBlock(PreNormBlock):
    """x + token_mlp(LN(x)^T)^T, then x + channel_mlp(LN(x)), on tokens [N, S, C]."""

    def __init__(self, num_tokens: int, dim: int, token_hidden: int, channel_hidden: int) -> None:
        super().__init__(dim)
        self.token_mlp = MlpBlock(num_tokens, token_hidden)
        self.channel_mlp = MlpBlock(dim, channel_hidden)

    def mix_tokens(self, x: torch.Tensor) -> torch.Tensor:
        return self.token_mlp(x.transpose(1, 2)).transpose(1, 2)

    def mix_channels(self, x: torch.Tensor) -> torch.Tensor:
        return self.channel_mlp(x)


class PatchTokenNet(nn.Module):
    """Patch embedding -> `depth` blocks -> mean over tokens -> LayerNorm -> Linear; a subclass
    builds its blocks by `block`."""

    def __init__(self, image_size: int = 28, dim: int = 32, depth: int = 2, num_classes: int = 10) -> None:
        super().__init__()
        self.embed = PatchEmbed(image_size, dim)
        self.blocks = nn.Sequential(*(self.block(self.embed.num_tokens, dim) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def block(self, num_tokens: int, dim: int) -> PreNormBlock:
        """A new block on tokens [N, `num_tokens`, `dim`]. __init__ calls it `depth` times while the
        net is half built: it may read class attributes, not instance state."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.embed(x))
        return self.head(self.norm(x.mean(dim=1)))


class MixerNet(PatchTokenNet):
    """MLP-Mixer: patch embedding -> `depth` mixer blocks (token MLPs of TOKEN_HIDDEN, channel MLPs
    of CHANNEL_HIDDEN units) -> mean over tokens -> LayerNorm -> Linear."""

    TOKEN_HIDDEN = 32
    CHANNEL_HIDDEN = 64

    def block(self, num_tokens: int, dim: int) -> PreNormBlock:
        return MixerBlock(num_tokens, dim, self.TOKEN_HIDDEN, self.CHANNEL_HIDDEN)


class Attention(nn.Module):
    """Multi-head softmax self-attention over tokens [N, S, C]: two products of activations
    (queries x keys, weights x values) and a softmax, as in a ViT or Swin block."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not a multiple of heads {heads}")
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.heads = heads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, s, c = x.shape
        q, k, v = self.qkv(x).reshape(n, s, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        weights = torch.softmax(q @ k.transpose(-1, -2) * (c // self.heads) ** -0.5, dim=-1)
        return self.proj((weights @ v).transpose(1, 2).reshape(n, s, c))


class ViTBlock(PreNormBlock):
    """Pre-norm transformer block: x + attention(LN(x)), then x + MLP(LN(x)) with GELU."""

    def __init__(self, dim: int, heads: int, hidden: int) -> None:
        super().__init__(dim)
        self.attention = Attention(dim, heads)
        self.mlp = MlpBlock(dim, hidden)

    def mix_tokens(self, x: torch.Tensor) -> torch.Tensor:
        return self.attention(x)

    def mix_channels(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x)


class ViTNet(PatchTokenNet):
    """A small ViT: patch embedding -> `depth` transformer blocks (HEADS heads, MLPs of HIDDEN
    units) -> mean over tokens -> LayerNorm -> Linear. Its attention products give many wide
    activation outputs (calibration's probe)."""

    HEADS = 2
    HIDDEN = 64

    def block(self, num_tokens: int, dim: int) -> PreNormBlock:
        return ViTBlock(dim, self.HEADS, self.HIDDEN)


class Affine(nn.Module):
    """Per-channel alpha * x + beta over the last axis (ResMLP's replacement for LayerNorm)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(dim))
        self.beta = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.alpha * x + self.beta


class ResMLPBlock(nn.Module):
    """x + ls1 * token_linear(Affine(x))^T, then x + ls2 * channel_mlp(Affine(x)), on [N, S, C]."""

    def __init__(self, num_tokens: int, dim: int, hidden: int, layer_scale: float = 0.1) -> None:
        super().__init__()
        self.affine1 = Affine(dim)
        self.token_linear = nn.Linear(num_tokens, num_tokens)
        self.scale1 = nn.Parameter(torch.full((dim,), layer_scale))
        self.affine2 = Affine(dim)
        self.channel_mlp = MlpBlock(dim, hidden)
        self.scale2 = nn.Parameter(torch.full((dim,), layer_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.scale1 * self.token_linear(self.affine1(x).transpose(1, 2)).transpose(1, 2)
        return x + self.scale2 * self.channel_mlp(self.affine2(x))


class ResMLPNet(nn.Module):
    """ResMLP: patch embedding -> `depth` ResMLP blocks -> Affine -> mean over tokens -> Linear."""

    def __init__(
        self, image_size: int = 28, dim: int = 32, depth: int = 2, hidden: int = 128, num_classes: int = 10
    ) -> None:
        super().__init__()
        self.embed = PatchEmbed(image_size, dim)
        tokens = self.embed.num_tokens
        self.blocks = nn.Sequential(*(ResMLPBlock(tokens, dim, hidden) for _ in range(depth)))
        self.affine = Affine(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.affine(self.blocks(self.embed(x)))
        return self.head(x.mean(dim=1))


class MaxPoolCNN(nn.Sequential):
    """(Conv-BN-ReLU-MaxPool2d(2)) -> (Conv-BN-ReLU-MaxPool2d(3, 2, 1)) -> Linear-ReLU-Linear."""

    def __init__(
        self, image_size: int = 28, channels: tuple[int, int] = (8, 16), hidden: int = 32, num_classes: int = 10
    ) -> None:
        c1, c2 = channels
        side = (image_size // 2 - 1) // 2 + 1  # floor pool 2, then ceil-like pool 3/2/1
        super().__init__(
            nn.Conv2d(1, c1, 3, padding=1, bias=False),
            nn.BatchNorm2d(c1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1, bias=False),
            nn.BatchNorm2d(c2),
            nn.ReLU(),
            nn.MaxPool2d(3, stride=2, padding=1),
            nn.Flatten(),
            nn.Linear(c2 * side * side, hidden),
            nn.ReLU(),
            nn.Linear(hidden, num_classes),
        )
