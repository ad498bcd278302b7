"""Loading and saving ONNX models: clear errors for bad files, atomic writes, external data."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError

from .errors import SnnError

#: protobuf cannot serialise a message of 2 GiB or more; above this, weights go to a data file.
EXTERNAL_DATA_THRESHOLD = 1_800_000_000


def load_model(path: str | os.PathLike) -> onnx.ModelProto:
    """Read an ONNX model and any external data beside it, or raise SnnError naming the file."""
    path = Path(path)
    if not path.exists():
        raise SnnError("file not found; check the path", path=str(path))
    if not path.is_file():
        raise SnnError("is not a file; pass an .onnx model file", path=str(path))
    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise SnnError(f"is not a readable ONNX protobuf (truncated or another format: {_first_line(exc)}); "
                       "re-export the model", path=str(path)) from None
    if model.ir_version <= 0 or not model.HasField("graph") or not model.graph.node:
        raise SnnError("is not an ONNX model (no graph or no nodes); pass a model exported to ONNX",
                       path=str(path))
    try:
        onnx.external_data_helper.load_external_data_for_model(model, str(path.parent))
    except (OSError, ValueError) as exc:
        raise SnnError(f"its external weight data could not be read ({_first_line(exc)}); "
                       "keep the .onnx.data file beside the model", path=str(path)) from None
    return model


def check_output_path(out_path: str | os.PathLike, input_paths: list[str | os.PathLike]) -> None:
    """Refuse an output path that would overwrite an input (model or its external data)."""
    out = Path(out_path).resolve()
    for inp in input_paths:
        inp = Path(inp).resolve()
        if out == inp or out == inp.with_name(inp.name + ".data"):
            raise SnnError("output path equals the input; choose another -o path", path=str(out_path))
    if not out.parent.exists():
        raise SnnError("output directory does not exist; create it first", path=str(out_path))


def weights_nbytes(model: onnx.ModelProto) -> int:
    """Bytes held in initializers, counted without serialising the model."""
    total = 0
    for init in model.graph.initializer:
        total += len(init.raw_data) if init.raw_data else init.ByteSize()
    return total


def save_model(model: onnx.ModelProto, path: str | os.PathLike,
               external_threshold: int = EXTERNAL_DATA_THRESHOLD) -> None:
    """Write `model` atomically: to a temporary file beside `path`, then rename.

    Models whose weights exceed `external_threshold` bytes are written with external data
    in `<name>.data` next to the model, also renamed into place only once complete.
    """
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    with tempfile.TemporaryDirectory(dir=directory, prefix=f".{path.name}.") as tmp:
        tmp_model = Path(tmp) / path.name
        if weights_nbytes(model) > external_threshold:
            data_name = path.name + ".data"
            onnx.save_model(model, str(tmp_model), save_as_external_data=True, all_tensors_to_one_file=True,
                            location=data_name, size_threshold=1024)
            if (Path(tmp) / data_name).exists():  # absent when every tensor is small enough to stay inline
                os.replace(Path(tmp) / data_name, directory / data_name)
        else:
            onnx.save_model(model, str(tmp_model))
        os.replace(tmp_model, path)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write a text file atomically (temporary file beside it, then rename)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent if str(path.parent) else ".", prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
