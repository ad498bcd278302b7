"""Reading user arrays (.npy/.npz) for calibration and evaluation, and batching them."""
from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Iterable, Iterator, Mapping

import numpy as np

from .errors import SnnError

LABEL_KEYS = ("y", "labels", "label")


def load_arrays(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The arrays in an .npy (key "x") or .npz file, or SnnError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise SnnError("data file not found; check the path", path=str(path))
    try:
        loaded = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise SnnError(f"is not a readable .npy/.npz file ({exc}); save arrays with numpy.save or numpy.savez",
                       path=str(path)) from None
    if isinstance(loaded, np.ndarray):
        return {"x": loaded}
    with loaded:
        return {key: loaded[key] for key in loaded.files}


def model_inputs(arrays: Mapping[str, np.ndarray], input_names: list[str], path: str) -> dict[str, np.ndarray]:
    """Pick the arrays that feed the model: one per input name, or key "x" for a single input."""
    if all(name in arrays for name in input_names):
        chosen = {name: arrays[name] for name in input_names}
    elif len(input_names) == 1 and "x" in arrays:
        chosen = {input_names[0]: arrays["x"]}
    else:
        raise SnnError(f"has keys {sorted(arrays)} but the model needs {input_names} (or 'x' for one input)",
                       path=path)
    sizes = {len(a) if np.ndim(a) else 0 for a in chosen.values()}
    if len(sizes) != 1 or 0 in sizes:
        raise SnnError("input arrays must be non-empty and share their first (batch) dimension", path=path)
    return chosen


def labels_of(arrays: Mapping[str, np.ndarray], path: str) -> np.ndarray:
    """The integer label vector stored under y/labels/label."""
    for key in LABEL_KEYS:
        if key in arrays:
            labels = np.asarray(arrays[key])
            if labels.ndim != 1 or labels.dtype.kind not in "iu":
                raise SnnError(f"labels '{key}' must be a 1-D integer array, got {labels.dtype} {list(labels.shape)}",
                               path=path)
            return labels.astype(np.int64)
    raise SnnError(f"has no labels; store them under one of {list(LABEL_KEYS)}", path=path)


class Batches:
    """Consecutive slices of `batch_size` samples of every array; iterable any number of times."""

    def __init__(self, arrays: Mapping[str, np.ndarray], batch_size: int) -> None:
        self.arrays, self.batch_size = dict(arrays), batch_size

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        total = len(next(iter(self.arrays.values())))
        for start in range(0, total, self.batch_size):
            yield {name: a[start:start + self.batch_size] for name, a in self.arrays.items()}


def calibration_feeds(source: str | os.PathLike | Iterable | np.ndarray, input_names: list[str],
                      batch_size: int) -> Iterable[dict[str, np.ndarray]]:
    """Normalize a calibration source into a re-iterable collection of feed dicts.

    `source` is a path to .npy/.npz (key = input name, or x), an array (single-input models), a
    dict of arrays, or an iterable yielding arrays or dicts (one batch each; read once, kept).
    """
    if isinstance(source, (str, os.PathLike)):
        return Batches(model_inputs(load_arrays(source), input_names, str(source)), batch_size)
    if isinstance(source, np.ndarray):
        return Batches(model_inputs({"x": source}, input_names, "<calibration array>"), batch_size)
    if isinstance(source, Mapping):
        return Batches(model_inputs(source, input_names, "<calibration dict>"), batch_size)
    return [item if isinstance(item, Mapping) else {input_names[0]: item} for item in source]
