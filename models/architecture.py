"""Framework-neutral hyperparameters shared by the PyTorch nets and their Keras twins, and by their training."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class LeNetShape:
    """Layer sizes of the LeNet variant used here.

    Two blocks of "same"-padded Conv -> BatchNorm -> ReLU -> 2x2 AvgPool, then
    Flatten -> Linear(hidden) -> ReLU -> Linear(num_classes). The image side must be a multiple of 4.
    """

    image_size: int
    channels: tuple[int, int] = (6, 16)
    hidden: int = 120

    def __post_init__(self) -> None:
        if self.image_size < 4 or self.image_size % 4:
            raise ValueError(f"LeNet needs an image side that is a multiple of 4, got {self.image_size}")

    @property
    def kernel_size(self) -> int:
        """5x5 kernels for MNIST-sized images, 3x3 for small ones such as 8x8 digits."""
        return 5 if self.image_size >= 16 else 3

    @property
    def padding(self) -> int:
        """Padding that keeps the spatial size through each convolution ("same")."""
        return self.kernel_size // 2

    @property
    def flat_features(self) -> int:
        """Number of features entering the first Linear layer (two 2x2 pools halve the side twice)."""
        side = self.image_size // 4
        return self.channels[1] * side * side


@dataclass(frozen=True)
class TrainSettings:
    """One seeded training run, as train.train and keras_nets.train_keras take it.

    Adam at learning rate `lr` on the cross-entropy, `epochs` passes over the shuffled samples in
    batches of `batch_size`, seeded by `seed`. The model returns logits, or with `from_logits=False`
    class probabilities (a net ending in softmax). With `progress`, each epoch's loss is reported.
    """

    epochs: int
    batch_size: int = 128
    lr: float = 1e-3
    seed: int = 0
    progress: bool = False
    from_logits: bool = True


# Layer stacks of the exact-mapping TTFS references (issue 4), one description for both frameworks.
# Every convolution and dense layer has a bias; each net ends in a softmax over 10 classes.


@dataclass(frozen=True)
class Conv:
    """2-D convolution with bias: `filters` output channels, a square `kernel`, stride 1."""

    filters: int
    kernel: int
    padding: Literal["same", "valid"]


@dataclass(frozen=True)
class Dense:
    """Fully connected layer with bias, optionally followed by `activation`."""

    units: int
    activation: Literal["relu", "softmax"] | None = None


@dataclass(frozen=True)
class BatchNorm:
    """Batch normalisation over the channel (or feature) axis, PyTorch's defaults for both frameworks.

    Each training step moves the running statistics `momentum` of the way to the batch's (PyTorch's
    convention; Keras' momentum is 1 - momentum); `eps` is added to the variance.
    """

    momentum: float = 0.1
    eps: float = 1e-5


@dataclass(frozen=True)
class ReLU:
    """Rectified linear unit."""


@dataclass(frozen=True)
class MaxPool:
    """Max pooling over non-overlapping `size` x `size` windows."""

    size: int = 2


@dataclass(frozen=True)
class Flatten:
    """Flatten every axis but the batch."""


@dataclass(frozen=True)
class Dropout:
    """Dropout of `rate` while training; the identity at inference."""

    rate: float


Layer = Conv | Dense | BatchNorm | ReLU | MaxPool | Flatten | Dropout

#: The TTFS nets take one-channel 28x28 images (Fashion-MNIST): (channels, height, width).
TTFS_IMAGE_SHAPE = (1, 28, 28)


def _norm_before_relu(layer: Conv | Dense) -> tuple[Layer, ...]:
    """`layer` -> BatchNorm -> ReLU (the TTFS LeNet's order)."""
    return (layer, BatchNorm(), ReLU())


def _norm_after_relu(layer: Conv | Dense) -> tuple[Layer, ...]:
    """`layer` -> ReLU -> BatchNorm (the TTFS VGG's order)."""
    return (layer, ReLU(), BatchNorm())


#: The TTFS layer stacks by net name.
TTFS_NETS: dict[str, tuple[Layer, ...]] = {
    # Flatten -> Dense 600 ReLU -> Dropout -> Dense 10 softmax
    "dense": (Flatten(), Dense(600, "relu"), Dropout(0.08), Dense(10, "softmax")),
    # LeNet-5 with BatchNorm before each ReLU
    "lenet": (
        *_norm_before_relu(Conv(6, 5, "same")),
        MaxPool(2),
        *_norm_before_relu(Conv(16, 5, "valid")),
        MaxPool(2),
        *_norm_before_relu(Conv(120, 5, "valid")),
        Flatten(),
        *_norm_before_relu(Dense(84)),
        Dense(10, "softmax"),
    ),
    # a small VGG with BatchNorm after each ReLU
    "vgg": (
        *_norm_after_relu(Conv(32, 3, "same")),
        *_norm_after_relu(Conv(32, 3, "same")),
        MaxPool(2),
        *_norm_after_relu(Conv(64, 3, "same")),
        MaxPool(2),
        Flatten(),
        *_norm_after_relu(Dense(128)),
        Dense(10, "softmax"),
    ),
}
