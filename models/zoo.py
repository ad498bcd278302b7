"""Named reference models: trained on first use, exported to ONNX, and cached on disk.

Cache layout, one directory per name under the cache dir:
    meta.json         recipe fingerprint, ANN test accuracy, training time (written last)
    weights.pt        the trained state_dict (lets another exporter re-export without retraining)
    test.npz          x_test float32 NCHW, y_test int64
    calib.npz         x: CALIBRATION_SIZE training images, float32 NCHW
    <exporter>.onnx   the exported model, input "x" [N, C, H, W], output "logits" [N, classes]
Every file is written atomically. An entry whose recipe fingerprint differs is retrained.
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import torch
from torch import nn

from .data import load_digits_split, load_fashion_mnist
from .export import export_torch
from .files import atomic_path, save_npz
from .signgd_nets import ConvNeXtNet, MaxPoolCNN, MixerNet, ResMLPNet
from .torch_nets import MLP, LeNet, SmallResNet
from .train import evaluate_accuracy, train

#: Environment variable naming the cache directory; default DEFAULT_CACHE_DIR.
CACHE_ENV = "ONNX_SNN_CACHE"
DEFAULT_CACHE_DIR = Path("~/.cache/onnx-snn")
CALIBRATION_SIZE = 1000
SEED = 0
Exporter = Literal["legacy", "dynamo"]
EXPORTERS: tuple[str, ...] = get_args(Exporter)

Split = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _fashion_split() -> Split:
    return (*load_fashion_mnist("train"), *load_fashion_mnist("test"))


_DATASETS: dict[str, Callable[[], Split]] = {"digits": load_digits_split, "fashion": _fashion_split}
_NETS: dict[str, Callable[..., nn.Module]] = {
    "MLP": MLP, "LeNet": LeNet, "SmallResNet": SmallResNet,
    "ConvNeXtNet": ConvNeXtNet, "MixerNet": MixerNet, "ResMLPNet": ResMLPNet, "MaxPoolCNN": MaxPoolCNN,
}


@dataclass(frozen=True)
class Recipe:
    """How to build and train one reference model; its JSON form is the cache fingerprint."""

    dataset: str
    net: str
    net_kwargs: dict[str, Any] = field(default_factory=dict)
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3

    def fingerprint(self) -> dict[str, Any]:
        """A JSON-comparable description of everything that determines the trained weights."""
        return json.loads(json.dumps({**asdict(self), "seed": SEED, "torch": torch.__version__}))

    def build(self) -> nn.Module:
        """A freshly initialised net, seeded with SEED (the global RNG state is restored)."""
        with torch.random.fork_rng():
            torch.manual_seed(SEED)
            return _NETS[self.net](**self.net_kwargs)


RECIPES: dict[str, Recipe] = {
    "digits-mlp": Recipe("digits", "MLP", {"in_shape": (1, 8, 8), "hidden": (64,)}, epochs=30, batch_size=64),
    "digits-cnn": Recipe("digits", "LeNet", {"image_size": 8}, epochs=30, batch_size=64),
    "fashion-cnn": Recipe("fashion", "LeNet", {"image_size": 28}, epochs=8),
    "fashion-resnet": Recipe("fashion", "SmallResNet", {"widths": (16, 32, 64), "stem_pool": True}, epochs=3),
    # signGD references (issue 3): GELU, LayerNorm, Affine and MaxPool nets
    "fashion-convnext": Recipe("fashion", "ConvNeXtNet", {"image_size": 28}, epochs=4),
    "fashion-mixer": Recipe("fashion", "MixerNet", {"image_size": 28}, epochs=4),
    "fashion-resmlp": Recipe("fashion", "ResMLPNet", {"image_size": 28}, epochs=4),
    "fashion-maxpool": Recipe("fashion", "MaxPoolCNN", {"image_size": 28}, epochs=4),
}


@dataclass(frozen=True)
class Reference:
    """A trained reference model exported to ONNX, with its evaluation and calibration data.

    torch_model is the trained module when this call trained or re-exported it, else None.
    """

    name: str
    onnx_path: Path
    test_data_path: Path
    calibration_path: Path
    ann_test_accuracy: float
    train_seconds: float
    torch_model: nn.Module | None = None

    def load_test(self) -> tuple[np.ndarray, np.ndarray]:
        """(x_test float32 NCHW, y_test int64)."""
        with np.load(self.test_data_path) as f:
            return f["x_test"], f["y_test"]

    def load_calibration(self) -> np.ndarray:
        """Training images for calibration, float32 NCHW."""
        with np.load(self.calibration_path) as f:
            return f["x"]


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """`cache_dir`, else $ONNX_SNN_CACHE, else ~/.cache/onnx-snn (user-expanded, not created)."""
    chosen = cache_dir if cache_dir is not None else os.environ.get(CACHE_ENV) or DEFAULT_CACHE_DIR
    return Path(chosen).expanduser()


def get_reference(name: str, cache_dir: str | os.PathLike | None = None,
                  exporter: Exporter = "legacy") -> Reference:
    """Return reference model `name` (see RECIPES), training and exporting it on first use.

    The ONNX file has a dynamic batch. Training is seeded: a retrain on the same machine and
    torch version gives the same weights. Fashion-MNIST models need dataset-fashion-mnist.
    """
    if name not in RECIPES:
        raise ValueError(f"unknown reference {name!r}; choose one of {', '.join(RECIPES)}")
    if exporter not in EXPORTERS:
        raise ValueError(f"exporter must be one of {EXPORTERS}, got {exporter!r}")
    recipe = RECIPES[name]
    entry = cache_root(cache_dir) / name
    entry.mkdir(parents=True, exist_ok=True)
    paths = {"meta": entry / "meta.json", "weights": entry / "weights.pt", "test": entry / "test.npz",
             "calib": entry / "calib.npz", "onnx": entry / f"{exporter}.onnx"}

    meta = _read_meta(paths["meta"], recipe)
    model = None
    if meta is None or not all(p.exists() for k, p in paths.items() if k != "onnx"):
        model, meta = _train_entry(recipe, paths)
    if model is not None or not paths["onnx"].exists():
        if model is None:
            model = recipe.build()
            model.load_state_dict(torch.load(paths["weights"], weights_only=True))
        with np.load(paths["test"]) as f:
            sample = torch.from_numpy(f["x_test"][:2])
        export_torch(model.eval(), sample, paths["onnx"], dynamo=exporter == "dynamo")
    return Reference(name=name, onnx_path=paths["onnx"], test_data_path=paths["test"],
                     calibration_path=paths["calib"], ann_test_accuracy=meta["ann_test_accuracy"],
                     train_seconds=meta["train_seconds"], torch_model=model)


def _read_meta(path: Path, recipe: Recipe) -> dict[str, Any] | None:
    """The cached metadata if it exists, parses, and matches `recipe`; else None."""
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and meta.get("recipe") == recipe.fingerprint() else None


def _train_entry(recipe: Recipe, paths: dict[str, Path]) -> tuple[nn.Module, dict[str, Any]]:
    """Train `recipe`, drop stale ONNX exports, write weights, test and calibration data, then
    meta.json; return the model and the metadata."""
    x_train, y_train, x_test, y_test = _DATASETS[recipe.dataset]()
    model = recipe.build()
    start = time.perf_counter()
    train(model, x_train, y_train, recipe.epochs, batch_size=recipe.batch_size, lr=recipe.lr, seed=SEED)
    seconds = time.perf_counter() - start
    meta = {"recipe": recipe.fingerprint(), "ann_test_accuracy": evaluate_accuracy(model, x_test, y_test),
            "train_seconds": round(seconds, 2)}
    for stale in paths["meta"].parent.glob("*.onnx"):
        stale.unlink()
    calib = np.random.default_rng(SEED).choice(len(x_train), min(CALIBRATION_SIZE, len(x_train)), replace=False)
    with atomic_path(paths["weights"]) as tmp:
        torch.save(model.state_dict(), tmp)
    save_npz(paths["test"], x_test=x_test, y_test=y_test)
    save_npz(paths["calib"], x=x_train[np.sort(calib)])
    with atomic_path(paths["meta"]) as tmp:
        tmp.write_text(json.dumps(meta, indent=2) + "\n")
    return model, meta
