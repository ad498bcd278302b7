"""The Python API: compile an ANN file or ModelProto into an SNN."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import onnx

from .arrays import calibration_feeds
from .errors import SnnError
from .modelio import check_output_path, load_model, save_model
from .options import CompileOptions
from .pipeline import run_pipeline
from onnx_snn.passes.base import PassContext


@dataclass
class CompileResult:
    """The compiled model and what the compiler has to say about it."""

    model: onnx.ModelProto
    notes: list[str]
    metadata: dict


def compile_model(model: str | os.PathLike | onnx.ModelProto, output: str | os.PathLike | None = None,
                  options: CompileOptions | None = None,
                  calibration: str | os.PathLike | np.ndarray | Iterable | None = None,
                  show_progress: bool = False) -> CompileResult:
    """Compile an ANN (path or ModelProto) into an SNN; write it to `output` if given.

    `calibration` is an .npy/.npz path (key = input name, or x), an array, a dict of arrays or an
    iterable of feed dicts. The input file is never modified; the output is written atomically.
    """
    options = (options or CompileOptions()).validate()
    source = str(model) if not isinstance(model, onnx.ModelProto) else "<model>"
    if output is not None:
        check_output_path(output, [model] if source != "<model>" else [])
    proto = load_model(model) if source != "<model>" else model
    if options.dump_after and output is None:
        raise SnnError("--dump-after needs an output path to write beside")
    input_names = [i.name for i in proto.graph.input if i.name not in {t.name for t in proto.graph.initializer}]
    feeds = calibration_feeds(calibration, input_names, options.calib_batch_size) if calibration is not None else None
    ctx = PassContext(options=options, source=source, calibration=feeds, show_progress=show_progress)

    def dump(stage: str, intermediate: onnx.ModelProto) -> None:
        out = Path(output)
        save_model(intermediate, out.with_name(f"{out.stem}.after-{stage}{out.suffix}"))

    compiled = run_pipeline(proto, ctx, dump if options.dump_after else None)
    if output is not None:
        save_model(compiled, output)
    return CompileResult(model=compiled, notes=ctx.notes, metadata=ctx.metadata)
