"""Named reference models: trained on first use, exported to ONNX, and cached on disk.

Cache layout of a PyTorch model, one directory per name under the cache dir (keras_zoo keeps its
Keras models beside them in the same layout, with model.keras and tf2onnx.onnx, see there):
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
from typing import Any, Literal, TypeVar, get_args

import numpy as np
import torch
from torch import nn

from onnx_snn.models.architecture import TrainSettings
from onnx_snn.models.data import load_digits_split, load_fashion_mnist
from onnx_snn.models.export import export_torch
from onnx_snn.models.files import atomic_path, save_npz
from onnx_snn.models.signgd_nets import ConvNeXtNet, MaxPoolCNN, MixerNet, ResMLPNet, ViTNet
from onnx_snn.models.torch_nets import MLP, LeNet, SmallResNet
from onnx_snn.models.train import ends_in_softmax, evaluate_accuracy, train
from onnx_snn.models.transfer_nets import MaxPoolResNet, MobileNetV2Net, StemResNet, VGGNet
from onnx_snn.models.ttfs_nets import TTFSVGG, TTFSDense, TTFSLeNet

#: Environment variable naming the cache directory; default DEFAULT_CACHE_DIR.
CACHE_ENV = "ONNX_SNN_CACHE"
DEFAULT_CACHE_DIR = Path("~/.cache/onnx-snn")
CALIBRATION_SIZE = 1000
SEED = 0
#: The trained state_dict's file in a PyTorch entry.
WEIGHTS_FILE = "weights.pt"
Exporter = Literal["legacy", "dynamo"]
EXPORTERS: tuple[str, ...] = get_args(Exporter)

Split = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
ModelT = TypeVar("ModelT")


def _fashion_split() -> Split:
    return (*load_fashion_mnist("train"), *load_fashion_mnist("test"))


def _fashion32_split() -> Split:
    """Fashion-MNIST zero-padded to 32x32 (the input size of CIFAR-style ResNets)."""
    x_train, y_train, x_test, y_test = _fashion_split()
    pad = ((0, 0), (0, 0), (2, 2), (2, 2))
    return np.pad(x_train, pad), y_train, np.pad(x_test, pad), y_test


_DATASETS: dict[str, Callable[[], Split]] = {
    "digits": load_digits_split,
    "fashion": _fashion_split,
    "fashion32": _fashion32_split,
}
_NETS: dict[str, Callable[..., nn.Module]] = {
    "MLP": MLP,
    "LeNet": LeNet,
    "SmallResNet": SmallResNet,
    "ConvNeXtNet": ConvNeXtNet,
    "MixerNet": MixerNet,
    "ResMLPNet": ResMLPNet,
    "MaxPoolCNN": MaxPoolCNN,
    "ViTNet": ViTNet,
    "TTFSDense": TTFSDense,
    "TTFSLeNet": TTFSLeNet,
    "TTFSVGG": TTFSVGG,
    "StemResNet": StemResNet,
    "MaxPoolResNet": MaxPoolResNet,
    "VGGNet": VGGNet,
    "MobileNetV2Net": MobileNetV2Net,
}


def load_split(dataset: str) -> Split:
    """(x_train, y_train, x_test, y_test) of a recipe's `dataset` (a key of _DATASETS), NCHW."""
    return _DATASETS[dataset]()


@dataclass(frozen=True)
class Recipe:
    """How to build and train one reference model; its JSON form is the cache fingerprint."""

    dataset: str
    net: str
    net_kwargs: dict[str, Any] = field(default_factory=dict)
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3

    def fingerprint(self, versions: dict[str, str] | None = None) -> dict[str, Any]:
        """A JSON-comparable description of everything that determines the trained weights.

        `versions` maps the training framework's packages to their versions; default torch's.
        """
        versions = {"torch": torch.__version__} if versions is None else versions
        return json.loads(json.dumps({**asdict(self), "seed": SEED, **versions}))

    def train_settings(self, from_logits: bool) -> TrainSettings:
        """The training run of this recipe: its epochs, batch size and learning rate, seeded by SEED."""
        return TrainSettings(self.epochs, self.batch_size, self.lr, SEED, from_logits=from_logits)

    def build(self) -> nn.Module:
        """A freshly initialised net, seeded with SEED (the global RNG state is restored)."""
        with torch.random.fork_rng():
            torch.manual_seed(SEED)
            return _NETS[self.net](**self.net_kwargs)


RECIPES: dict[str, Recipe] = {
    "digits-mlp": Recipe("digits", "MLP", {"in_shape": (1, 8, 8), "hidden": (64,)}, epochs=30, batch_size=64),
    "digits-cnn": Recipe("digits", "LeNet", {"image_size": 8}, epochs=30, batch_size=64),
    "fashion-cnn": Recipe("fashion", "LeNet", {"image_size": 28}, epochs=8),
    # the course project's design (issue 6): MLP 784-100-10 without biases, and its 64-input twin on digits
    "fashion-mlp100": Recipe("fashion", "MLP", {"in_shape": (1, 28, 28), "hidden": (100,), "bias": False}, epochs=10),
    "digits-mlp100": Recipe(
        "digits", "MLP", {"in_shape": (1, 8, 8), "hidden": (100,), "bias": False}, epochs=40, batch_size=64
    ),
    "fashion-resnet": Recipe("fashion", "SmallResNet", {"widths": (16, 32, 64), "stem_pool": True}, epochs=3),
    # issue 13's memory probe: 24 channels at full 28x28 resolution through 5 convs (stem, two identity blocks)
    "fashion-resnet24": Recipe("fashion", "SmallResNet", {"widths": (24,), "identity_blocks": 2}, epochs=1),
    # signGD references (issue 3): GELU, LayerNorm, Affine and MaxPool nets
    "fashion-convnext": Recipe("fashion", "ConvNeXtNet", {"image_size": 28}, epochs=4),
    "fashion-mixer": Recipe("fashion", "MixerNet", {"image_size": 28}, epochs=4),
    "fashion-resmlp": Recipe("fashion", "ResMLPNet", {"image_size": 28}, epochs=4),
    "fashion-maxpool": Recipe("fashion", "MaxPoolCNN", {"image_size": 28}, epochs=4),
    # issue 13's calibration-memory probe: softmax attention, GELU and LayerNorm (many wide calibrated outputs)
    "fashion-vit": Recipe("fashion", "ViTNet", {"image_size": 28}, epochs=2),
    # exact-mapping TTFS references (issue 4): ReLU nets ending in Softmax, trained on its output
    "fashion-ttfs-dense": Recipe("fashion", "TTFSDense", epochs=5),
    "fashion-ttfs-lenet": Recipe("fashion", "TTFSLeNet", epochs=5),
    "fashion-ttfs-vgg": Recipe("fashion", "TTFSVGG", epochs=3),
    # nets built as others build them (issue 16), recipes fixed before any SNN was measured on them:
    # plain Adam at 1e-3, batch 128, no conversion-friendly tricks
    "fashion-stem-resnet": Recipe("fashion", "StemResNet", epochs=2),
    "fashion32-resnet18": Recipe("fashion32", "MaxPoolResNet", epochs=2),
    "fashion-vgg": Recipe("fashion", "VGGNet", epochs=2),
    "fashion-mobilenetv2": Recipe("fashion", "MobileNetV2Net", epochs=2),
}


@dataclass(frozen=True)
class Reference:
    """A trained reference model exported to ONNX, with its evaluation and calibration data.

    torch_model is the trained module when this call trained or re-exported it, else None (always
    None for keras_zoo's references: see keras_zoo.load_keras_model).
    """

    name: str
    onnx_path: Path
    test_data_path: Path
    calibration_path: Path
    ann_test_accuracy: float
    train_seconds: float
    torch_model: nn.Module | None = None

    def load_test(self) -> tuple[np.ndarray, np.ndarray]:
        """(x_test float32 images, y_test int64); images are NCHW, or NHWC for a Keras reference."""
        with np.load(self.test_data_path) as f:
            return f["x_test"], f["y_test"]

    def load_calibration(self) -> np.ndarray:
        """Training images for calibration, float32, in the layout of load_test."""
        with np.load(self.calibration_path) as f:
            return f["x"]


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """`cache_dir`, else $ONNX_SNN_CACHE, else ~/.cache/onnx-snn (user-expanded, not created)."""
    chosen = cache_dir if cache_dir is not None else os.environ.get(CACHE_ENV) or DEFAULT_CACHE_DIR
    return Path(chosen).expanduser()


class _EntryFile:
    """A read-only CacheEntry attribute: the path, in the entry's directory, of the file that
    `name(entry)` names."""

    def __init__(self, name: Callable[[CacheEntry], str]) -> None:
        self._name = name

    def __get__(self, entry: CacheEntry, owner: type[CacheEntry]) -> Path:
        return entry.directory / self._name(entry)


@dataclass(frozen=True)
class CacheEntry:
    """The files of one cache entry (see the module doc): `directory` holds meta.json, test.npz,
    calib.npz, the trained model `model_file` and the ONNX export `onnx_file`."""

    directory: Path
    model_file: str
    onnx_file: str

    @classmethod
    def open(cls, directory: Path, model_file: str, onnx_file: str) -> CacheEntry:
        """The entry in `directory`, which is created if missing."""
        directory.mkdir(parents=True, exist_ok=True)
        return cls(directory, model_file, onnx_file)

    meta = _EntryFile(lambda _: "meta.json")
    model = _EntryFile(lambda entry: entry.model_file)
    test = _EntryFile(lambda _: "test.npz")
    calib = _EntryFile(lambda _: "calib.npz")
    onnx = _EntryFile(lambda entry: entry.onnx_file)

    def read_meta(self, fingerprint: dict[str, Any]) -> dict[str, Any] | None:
        """meta.json if it parses, its recipe equals `fingerprint`, and the model, test and
        calibration files exist; else None (the entry must be retrained)."""
        try:
            meta = json.loads(self.meta.read_text())
        except (OSError, ValueError):
            return None
        if not (isinstance(meta, dict) and meta.get("recipe") == fingerprint):
            return None
        return meta if all(p.exists() for p in (self.model, self.test, self.calib)) else None

    def write(
        self,
        save_model: Callable[[Path], object],
        x_train: np.ndarray,
        x_test: np.ndarray,
        y_test: np.ndarray,
        fingerprint: dict[str, Any],
        accuracy: float,
        seconds: float,
    ) -> dict[str, Any]:
        """Fill the entry after training and return its metadata.

        Drops every ONNX export (now stale), then writes the model by `save_model(path)`, the test
        data, CALIBRATION_SIZE training images drawn with SEED (kept in order), and meta.json last,
        each atomically.
        """
        meta = {"recipe": fingerprint, "ann_test_accuracy": accuracy, "train_seconds": round(seconds, 2)}
        for stale in self.directory.glob("*.onnx"):
            stale.unlink()
        calib = np.random.default_rng(SEED).choice(len(x_train), min(CALIBRATION_SIZE, len(x_train)), replace=False)
        with atomic_path(self.model) as tmp:
            save_model(tmp)
        save_npz(self.test, x_test=x_test, y_test=y_test)
        save_npz(self.calib, x=x_train[np.sort(calib)])
        with atomic_path(self.meta) as tmp:
            tmp.write_text(json.dumps(meta, indent=2) + "\n")
        return meta

    def reference(self, meta: dict[str, Any], torch_model: nn.Module | None = None) -> Reference:
        """The Reference of this entry, named after its directory, with `meta`'s evaluation."""
        return Reference(
            name=self.directory.name,
            onnx_path=self.onnx,
            test_data_path=self.test,
            calibration_path=self.calib,
            ann_test_accuracy=meta["ann_test_accuracy"],
            train_seconds=meta["train_seconds"],
            torch_model=torch_model,
        )


def get_reference(name: str, cache_dir: str | os.PathLike | None = None, exporter: Exporter = "legacy") -> Reference:
    """Return reference model `name` (see RECIPES), training and exporting it on first use.

    The ONNX file has a dynamic batch. Training is seeded: a retrain on the same machine and
    torch version gives the same weights. Fashion-MNIST models need dataset-fashion-mnist.
    """
    if name not in RECIPES:
        raise ValueError(f"unknown reference {name!r}; choose one of {', '.join(RECIPES)}")
    if exporter not in EXPORTERS:
        raise ValueError(f"exporter must be one of {EXPORTERS}, got {exporter!r}")
    recipe = RECIPES[name]
    entry = CacheEntry.open(cache_root(cache_dir) / name, WEIGHTS_FILE, f"{exporter}.onnx")
    meta = entry.read_meta(recipe.fingerprint())
    model = None
    if meta is None:
        model, meta = _train_entry(recipe, entry)
    if model is not None or not entry.onnx.exists():
        model = _restore(recipe, entry.model) if model is None else model
        with np.load(entry.test) as f:
            sample = torch.from_numpy(f["x_test"][:2])
        export_torch(model.eval(), sample, entry.onnx, dynamo=exporter == "dynamo")
    return entry.reference(meta, torch_model=model)


def load_torch_model(reference: Reference) -> nn.Module:
    """The trained module of a cached reference of RECIPES, rebuilt from its weights, in eval mode."""
    return _restore(RECIPES[reference.name], reference.onnx_path.with_name(WEIGHTS_FILE))


def _restore(recipe: Recipe, weights: Path) -> nn.Module:
    """`recipe`'s net with the state_dict saved at `weights`, in eval mode."""
    model = recipe.build()
    model.load_state_dict(torch.load(weights, weights_only=True))
    return model.eval()


def _train_entry(recipe: Recipe, entry: CacheEntry) -> tuple[nn.Module, dict[str, Any]]:
    """Train `recipe` (on the probabilities if the net ends in softmax), fill `entry` and return
    the model and the metadata."""
    split = load_split(recipe.dataset)
    model = recipe.build()
    meta = train_and_write(
        recipe,
        entry,
        model,
        split,
        train,
        not ends_in_softmax(model),
        lambda path: torch.save(model.state_dict(), path),
        recipe.fingerprint(),
        evaluate_accuracy,
    )
    return model, meta


def train_and_write(
    recipe: Recipe,
    entry: CacheEntry,
    model: ModelT,
    split: Split,
    fit: Callable[[ModelT, np.ndarray, np.ndarray, TrainSettings], object],
    from_logits: bool,
    save_model: Callable[[Path], object],
    fingerprint: dict[str, Any],
    evaluate: Callable[[ModelT, np.ndarray, np.ndarray], float],
) -> dict[str, Any]:
    """Train `model` on `split` by `fit(model, x, y, recipe.train_settings(from_logits))`, timed,
    then fill `entry` (CacheEntry.write, the model saved by `save_model`, accuracy by
    `evaluate(model, x_test, y_test)`) and return the metadata. Shared by zoo's PyTorch entries and
    keras_zoo's."""
    x_train, y_train, x_test, y_test = split
    start = time.perf_counter()
    fit(model, x_train, y_train, recipe.train_settings(from_logits))
    seconds = time.perf_counter() - start
    return entry.write(save_model, x_train, x_test, y_test, fingerprint, evaluate(model, x_test, y_test), seconds)
