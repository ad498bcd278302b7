"""Real data sets as float32 NCHW images in [0, 1] with int64 labels.

Two sources: scikit-learn's bundled 8x8 digits, and Fashion-MNIST read from the IDX files that
Debian's `dataset-fashion-mnist` package installs (or any directory named by ONNX_SNN_FASHION_DIR).
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import Literal

import numpy as np

from onnx_snn.errors import SnnError

#: Where Debian's dataset-fashion-mnist package puts the IDX files.
DEFAULT_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
#: Environment variable that overrides DEFAULT_FASHION_DIR.
FASHION_DIR_ENV = "ONNX_SNN_FASHION_DIR"

_FASHION_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
_IDX_UBYTE = 0x08


def load_digits_split(
    test_fraction: float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return (x_train, y_train, x_test, y_test) from scikit-learn's digits (1797 images).

    x: float32 [N, 1, 8, 8] in [0, 1] (pixel counts 0..16 divided by 16); y: int64 in 0..9.
    The split is stratified by class and depends only on `test_fraction` and `seed`.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images.astype(np.float32) / 16.0)[:, None, :, :]
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=test_fraction, random_state=seed, stratify=y)
    return x_train, y_train, x_test, y_test


def fashion_mnist_dir() -> Path:
    """The directory read by load_fashion_mnist: $ONNX_SNN_FASHION_DIR, else the Debian path."""
    override = os.environ.get(FASHION_DIR_ENV)
    return Path(override) if override else DEFAULT_FASHION_DIR


def load_fashion_mnist(split: Literal["train", "test"]) -> tuple[np.ndarray, np.ndarray]:
    """Return (x, y) of a Fashion-MNIST split: x float32 [N, 1, 28, 28] in [0, 1], y int64.

    Raises SnnError when the IDX files are missing or malformed.
    """
    if split not in _FASHION_FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    directory = fashion_mnist_dir()
    image_file, label_file = (directory / name for name in _FASHION_FILES[split])
    missing = [p.name for p in (image_file, label_file) if not p.is_file()]
    if missing:
        raise SnnError(
            f"Fashion-MNIST files {', '.join(missing)} not found in {directory}",
            hint=f"run `apt-get install -y dataset-fashion-mnist` or set {FASHION_DIR_ENV}",
        )
    images = read_idx(image_file)
    labels = read_idx(label_file)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise SnnError(
            f"images {images.shape} and labels {labels.shape} do not match",
            path=str(image_file),
            hint="reinstall dataset-fashion-mnist",
        )
    x = (images.astype(np.float32) / 255.0)[:, None, :, :]
    return x, labels.astype(np.int64)


def read_idx(path: Path) -> np.ndarray:
    """Parse a gzip-compressed IDX file of unsigned bytes into a uint8 array of its stated shape.

    Raises SnnError if the file is not a well-formed ubyte IDX file.
    """
    with gzip.open(path, "rb") as f:
        try:
            raw = f.read()
        except (OSError, EOFError) as exc:
            raise SnnError(
                f"cannot be decompressed ({exc})", path=str(path), hint="reinstall dataset-fashion-mnist"
            ) from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != _IDX_UBYTE:
        raise SnnError("is not an IDX file of unsigned bytes", path=str(path), hint="reinstall dataset-fashion-mnist")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise SnnError("is truncated inside its IDX header", path=str(path), hint="reinstall dataset-fashion-mnist")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    if len(raw) != header + int(np.prod(shape)):
        raise SnnError(
            f"holds {len(raw) - header} bytes of data, header says shape {shape}",
            path=str(path),
            hint="reinstall dataset-fashion-mnist",
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)
