"""Reading user arrays (.npy/.npz) for calibration and evaluation, and batching them."""

from __future__ import annotations

import math
import os
import zipfile
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence

import numpy as np

from onnx_snn.budget import resolve_budget
from onnx_snn.errors import SnnError
from onnx_snn.validate import first_bad_value

LABEL_KEYS = ("y", "labels", "label")
#: dtype kinds of arrays that hold real numbers: bool, signed and unsigned integers, floats
NUMERIC_KINDS = "biuf"


def load_arrays(path: str | os.PathLike, max_bytes: int | None = None) -> dict[str, np.ndarray]:
    """The arrays in an .npy (key "x") or .npz file, or SnnError naming the file. Refuses a file
    whose arrays declare (in their .npy headers: shape and dtype, read before any data) more
    than `max_bytes` together (None: runtime.memory.default_budget())."""
    path = Path(path)
    if not path.is_file():
        raise SnnError("data file not found; check the path", path=str(path))
    budget = resolve_budget(max_bytes)
    try:
        declared = _declared_bytes(path)
        if sum(declared.values()) > budget:
            largest = max(declared, key=declared.__getitem__)
            raise SnnError(
                f"its arrays declare {sum(declared.values())} B ('{largest}': {declared[largest]} B), "
                f"above the memory budget of {budget} B; raise --max-memory or pass fewer samples",
                path=str(path),
            )
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            return {"x": loaded}
        with loaded:
            return {key: loaded[key] for key in loaded.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise SnnError(
            f"is not a readable .npy/.npz file ({exc}); save arrays with numpy.save or numpy.savez", path=str(path)
        ) from None


def _declared_bytes(path: Path) -> dict[str, int]:
    """Bytes each array of an .npy ("x") or .npz declares in its header, read without its data."""
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as stream:
            return {"x": _npy_header_bytes(stream)}
    with zipfile.ZipFile(path) as archive:
        members = [info for info in archive.infolist() if info.filename.endswith(".npy")]
        declared = {}
        for info in members:
            with archive.open(info) as stream:
                declared[info.filename[: -len(".npy")]] = _npy_header_bytes(stream)
        return declared


def _npy_header_bytes(stream) -> int:
    """shape x itemsize from the .npy header at the start of `stream` (ValueError if malformed)."""
    version = np.lib.format.read_magic(stream)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, _, dtype = read(stream)
    return math.prod(shape) * dtype.itemsize


def model_inputs(arrays: Mapping[str, np.ndarray], input_names: list[str], path: str) -> dict[str, np.ndarray]:
    """Pick the arrays that feed the model: one per input name, or key "x" for a single input.

    Each must be a non-empty numeric array of rank >= 1 (samples on axis 0, shared by all), with
    no NaN, ±inf or magnitude above validate.ABSURD; else SnnError naming `path` and the key.
    Float arrays come back as float32, the type onnx-snn computes in (canonicalize refuses other
    float model inputs). Integer and bool arrays come back as they are, for the consumer to cast
    or refuse (calibrate.check_input wants floats: integers are often unscaled pixels); shapes are
    checked against the model's by the consumer.
    """
    if all(name in arrays for name in input_names):
        chosen = {name: (name, arrays[name]) for name in input_names}
    elif len(input_names) == 1 and "x" in arrays:
        chosen = {input_names[0]: ("x", arrays["x"])}
    else:
        raise SnnError(f"has keys {sorted(arrays)} but the model needs {input_names} (or 'x' for one input)", path=path)
    checked = {name: _checked_samples(key, np.asarray(value), path) for name, (key, value) in chosen.items()}
    sizes = {len(a) for a in checked.values()}
    if len(sizes) != 1:
        raise SnnError(f"input arrays must share their first (batch) dimension, got sizes {sorted(sizes)}", path=path)
    return checked


def _checked_samples(key: str, array: np.ndarray, path: str) -> np.ndarray:
    """`array` (float32 if it is float) if it holds at least one sample of finite, sensible numbers,
    else SnnError."""
    if array.dtype.kind not in NUMERIC_KINDS:
        raise SnnError(
            f"array '{key}' has dtype {array.dtype}, not real numbers",
            path=path,
            hint="save the inputs as a float32 array, preprocessed as for the ANN",
        )
    if array.ndim == 0 or len(array) == 0:
        raise SnnError(
            f"array '{key}' holds no samples (shape {list(array.shape)})",
            path=path,
            hint="save at least one sample, with the samples on axis 0",
        )
    if array.dtype.kind != "f":
        return array
    bad = first_bad_value(array)
    if bad is not None:
        raise SnnError(
            f"array '{key}' holds {bad}",
            path=path,
            hint="remove or repair the samples with NaN, infinite or huge values",
        )
    return array.astype(np.float32, copy=False)


def check_input_shape(
    name: str, array: np.ndarray, shape: Sequence | None, what: str = "input", path: str | None = None
) -> None:
    """SnnError unless `array` has the rank of the model input `shape` and its fixed dims (positive
    ints) after the first, the batch, which is never checked; None: nothing is known to check."""
    if shape is None:
        return
    fixed = [d if isinstance(d, int) and d > 0 else None for d in shape]
    if array.ndim != len(fixed) or any(f is not None and f != v for f, v in zip(fixed[1:], array.shape[1:])):
        expected = ", ".join(str(d) if f is not None else "?" for d, f in zip(shape, fixed))
        raise SnnError(f"{what} '{name}' has shape {list(array.shape)}, the model expects [{expected}]", path=path)


def labels_of(arrays: Mapping[str, np.ndarray], path: str) -> np.ndarray:
    """The labels stored under y/labels/label as int64: a non-empty 1-D array of non-negative
    integers (class indices), else SnnError naming `path`. Float, bool and string labels are
    refused, not rounded; uint64 labels must fit int64. Their count against the samples and the
    model's classes is checked by Session.evaluate."""
    key = next((k for k in LABEL_KEYS if k in arrays), None)
    if key is None:
        raise SnnError(f"has no labels; store them under one of {list(LABEL_KEYS)}", path=path)
    labels = np.asarray(arrays[key])
    if labels.ndim != 1 or labels.dtype.kind not in "iu" or len(labels) == 0:
        raise SnnError(
            f"labels '{key}' must be a non-empty 1-D integer array, got {labels.dtype} {list(labels.shape)}",
            path=path,
            hint="store class indices, e.g. y.astype(np.int64)",
        )
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high > np.iinfo(np.int64).max:
        raise SnnError(f"labels '{key}' must be class indices 0, 1, ..., got values in [{low}, {high}]", path=path)
    return labels.astype(np.int64)


class Batches:
    """Consecutive slices of `batch_size` samples of every array; iterable any number of times."""

    def __init__(self, arrays: Mapping[str, np.ndarray], batch_size: int) -> None:
        self.arrays, self.batch_size = dict(arrays), batch_size

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        total = len(next(iter(self.arrays.values())))
        for start in range(0, total, self.batch_size):
            yield {name: a[start : start + self.batch_size] for name, a in self.arrays.items()}


def calibration_feeds(
    source: str | os.PathLike | Iterable | np.ndarray, input_names: list[str], batch_size: int
) -> Iterable[dict[str, np.ndarray]]:
    """Normalize a calibration source into a re-iterable collection of feed dicts.

    `source` is a path to .npy/.npz (key = input name, or x), an array (single-input models), a
    dict of arrays, or an iterable yielding arrays or dicts (one batch each; read once, kept).
    Every array is checked by model_inputs.
    """
    if isinstance(source, (str, os.PathLike)):
        return Batches(model_inputs(load_arrays(source), input_names, str(source)), batch_size)
    if isinstance(source, np.ndarray):
        return Batches(model_inputs({"x": source}, input_names, "<calibration array>"), batch_size)
    if isinstance(source, Mapping):
        return Batches(model_inputs(source, input_names, "<calibration dict>"), batch_size)
    return [
        model_inputs(item if isinstance(item, Mapping) else {"x": item}, input_names, f"<calibration batch {i}>")
        for i, item in enumerate(source)
    ]
