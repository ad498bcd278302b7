"""Framework-neutral hyperparameters shared by the PyTorch nets and their Keras twins."""
from __future__ import annotations

from dataclasses import dataclass


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
