"""The Python API: compile an ANN file or ModelProto into an SNN."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import onnx

from onnx_snn import metadata as model_metadata
from onnx_snn.arrays import calibration_feeds
from onnx_snn.errors import SnnError
from onnx_snn.modelio import model_proto, save_model
from onnx_snn.options import CompileOptions
from onnx_snn.outputs import check_io, external_data_path, model_roles
from onnx_snn.passes.base import PassContext
from onnx_snn.passes.common.calibrate import calibration_batches
from onnx_snn.pipeline import run_pipeline
from onnx_snn.target_gap import TimestepChoice, search_samples, search_timesteps, set_default_timesteps
from onnx_snn.verify import synthetic_samples, verify_snn


@dataclass
class CompileResult:
    """The compiled model, what the compiler has to say about it, and what its verification passed."""

    model: onnx.ModelProto
    notes: list[str]
    #: the metadata the compiled model carries (compiler/metadata.py), decoded
    metadata: dict
    verification: str = ""
    #: with --target-gap, the T chosen and stored as the model's default T
    timestep_choice: TimestepChoice | None = None


def dump_path(output: str | os.PathLike, stage: str) -> Path:
    """Where --dump-after STAGE writes the model: `<stem>.after-STAGE<suffix>` beside `output`."""
    out = Path(output)
    return out.with_name(f"{out.stem}.after-{stage}{out.suffix}")


def compile_model(
    model: str | os.PathLike | onnx.ModelProto,
    output: str | os.PathLike | None = None,
    options: CompileOptions | None = None,
    calibration: str | os.PathLike | np.ndarray | Iterable | None = None,
    show_progress: bool = False,
) -> CompileResult:
    """Compile an ANN (path or ModelProto) into an SNN; verify it (compiler.verify) and write it to
    `output` if given.

    `calibration` is an .npy/.npz path (key = input name, or x), an array, a dict of arrays or an
    iterable of feed dicts. No file that is read (the model, its external data, the calibration
    file) is ever written; the output is written atomically, and only once verified: a model that
    fails verification is never left at `output`.

    With `options.target_gap`, the compiled SNN is evaluated on the first calibration samples
    before it is verified and written, and the T chosen (onnx_snn.target_gap) is stored as its
    default T; the result's `timestep_choice` says which, and whether it met the target.
    """
    options = (options or CompileOptions()).validate()
    in_memory = isinstance(model, onnx.ModelProto)
    source = "<model>" if in_memory else str(model)
    if options.dump_after and output is None:
        raise SnnError("--dump-after needs an output path to write beside")
    if options.target_gap is not None and calibration is None:
        raise SnnError("--target-gap measures the gap on the calibration data; pass --calib FILE")
    check_io(
        reads={
            **model_roles("the model", None if in_memory else model),
            "--calib": calibration if isinstance(calibration, (str, os.PathLike)) else None,
        },
        writes={
            "-o": output,
            "the external data of -o": external_data_path(output) if output else None,
            "--dump-after": [dump_path(output, stage) for stage in options.dump_after] if output else None,
        },
    )
    proto = model_proto(model)
    input_names = [i.name for i in proto.graph.input if i.name not in {t.name for t in proto.graph.initializer}]
    feeds = calibration_feeds(calibration, input_names, options.calib_batch_size) if calibration is not None else None
    ctx = PassContext(options=options, source=source, calibration=feeds, show_progress=show_progress)

    def dump(stage: str, intermediate: onnx.ModelProto) -> None:
        assert output is not None  # --dump-after without -o is refused above
        save_model(intermediate, dump_path(output, stage))

    compiled = run_pipeline(proto, ctx, dump if options.dump_after else None)
    choice = None
    if options.target_gap is not None:
        inputs = search_samples(calibration_batches(ctx))
        choice = search_timesteps(
            compiled, proto, inputs, options.target_gap, options.max_timesteps, source, show_progress
        )
        set_default_timesteps(compiled, choice)
    samples = next(iter(feeds), None) if feeds is not None else synthetic_samples(proto)
    verification: list[str] = []

    def check(path: Path) -> None:
        verification.append(verify_snn(path, proto, samples, source, exact=ctx.state.neuron == "ttfs"))

    if output is not None:
        save_model(compiled, output, check=check)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            save_model(compiled, Path(tmp) / "compiled.onnx", check=check)
    return CompileResult(
        model=compiled,
        notes=ctx.notes,
        metadata=model_metadata.read(model_metadata.props_of(compiled), source),
        verification=verification[0],
        timestep_choice=choice,
    )
