"""Loading and saving ONNX models: clear errors for bad files, atomic writes, external data."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import onnx
from google.protobuf.message import DecodeError

from onnx_snn.budget import check_declared_sizes, resolve_budget
from onnx_snn.errors import SnnError
from onnx_snn.outputs import atomic_write, external_data_path
from onnx_snn.validate import validate_model

#: protobuf cannot serialise a message of 2 GiB or more; above this, weights go to a data file.
EXTERNAL_DATA_THRESHOLD = 1_800_000_000


def load_model(path: str | os.PathLike, max_bytes: int | None = None) -> onnx.ModelProto:
    """Read an ONNX model and any external data beside it, or raise SnnError naming the file; also
    if it declares more than `max_bytes` (None: the default memory budget) of weights or constant
    outputs (runtime.memory.check_declared_sizes), checked before its external data is read."""
    path = Path(path)
    if not path.exists():
        raise SnnError("file not found; check the path", path=str(path))
    if not path.is_file():
        raise SnnError("is not a file; pass an .onnx model file", path=str(path))
    try:
        model = onnx.load(str(path), load_external_data=False)
    except OSError as exc:
        raise SnnError(f"cannot be read ({exc.strerror or exc}); check its permissions", path=str(path)) from None
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise SnnError(
            f"is not a readable ONNX protobuf (truncated or another format: {_first_line(exc)}); re-export the model",
            path=str(path),
        ) from None
    if model.ir_version <= 0 or not model.HasField("graph") or not model.graph.node:
        raise SnnError("is not an ONNX model (no graph or no nodes); pass a model exported to ONNX", path=str(path))
    check_declared_sizes(model, resolve_budget(max_bytes), str(path))
    try:
        onnx.external_data_helper.load_external_data_for_model(model, str(path.parent))
    except (OSError, ValueError, onnx.checker.ValidationError) as exc:
        raise SnnError(
            f"its external weight data could not be read ({_first_line(exc)}); keep the data "
            "files the model names in its folder",
            path=str(path),
        ) from None
    validate_model(model, str(path))
    return model


def model_proto(model: str | os.PathLike | onnx.ModelProto) -> onnx.ModelProto:
    """A model given as a path (loaded) or as a ModelProto (validated as loading would), or SnnError."""
    if isinstance(model, onnx.ModelProto):
        validate_model(model, "<model>")
        return model
    return load_model(model)


def weights_nbytes(model: onnx.ModelProto) -> int:
    """Bytes held in initializers, counted without serialising the model."""
    total = 0
    for init in model.graph.initializer:
        total += len(init.raw_data) if init.raw_data else init.ByteSize()
    return total


def save_model(
    model: onnx.ModelProto,
    path: str | os.PathLike,
    external_threshold: int = EXTERNAL_DATA_THRESHOLD,
    check: Callable[[Path], None] | None = None,
) -> None:
    """Write `model` atomically (outputs.atomic_write); `check(tmp_path)` runs on the written file
    before it is moved into place, so a model that fails it is never left at `path`.

    Models whose weights exceed `external_threshold` bytes are written with external data in
    `<name>.data` next to the model (outputs.external_data_path), moved into place with it.
    """

    def write(tmp: Path) -> None:
        if weights_nbytes(model) > external_threshold:
            onnx.save_model(
                model,
                str(tmp),
                save_as_external_data=True,
                all_tensors_to_one_file=True,
                location=external_data_path(path).name,
                size_threshold=1024,
            )
        else:
            onnx.save_model(model, str(tmp))

    atomic_write(path, write, check)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
