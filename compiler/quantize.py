"""The quantize-weights command: an ANN whose weights a memristive crossbar can hold, and its accuracy.

Runs the quantize_weights pass alone on the model as exported (no canonicalization: the output is
the same ANN, same graph, with constrained Conv/Gemm/MatMul weights) and records the per-layer
statistics in the output's metadata under `onnx_snn.weight_quantization`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from onnx_snn import metadata as model_metadata
from onnx_snn.arrays import Batches, labels_of, load_arrays, model_inputs
from onnx_snn.errors import SnnError
from onnx_snn.modelio import load_model, model_proto, save_model
from onnx_snn.options import CompileOptions
from onnx_snn.outputs import check_io, external_data_path, model_roles
from onnx_snn.passes.base import PassContext
from onnx_snn.passes.canonicalize.canonicalize import IR_INITIALIZERS_NOT_INPUTS
from onnx_snn.passes.hardware import quantize_weights
from onnx_snn.runtime.ann import AnnRunner

EVAL_BATCH = 256


@dataclass
class QuantizeResult:
    """The constrained ANN, the pass's notes and its statistics (the metadata entry weight_quantization)."""

    model: onnx.ModelProto
    notes: list[str]
    stats: dict


def quantize_model(
    model: str | os.PathLike | onnx.ModelProto,
    output: str | os.PathLike | None = None,
    levels: int = 16,
    on_off_ratio: float = 10.0,
    per_channel: bool = False,
) -> QuantizeResult:
    """Constrain the weights of an ANN (path or ModelProto) to `levels` levels per sign and ON/OFF ratio
    `on_off_ratio`; write it atomically to `output` if given (never over the input).

    SnnError for invalid levels or ratio, an unreadable model or an output path equal to the input.
    """
    options = CompileOptions(
        weight_levels=levels, on_off_ratio=on_off_ratio, per_channel_weights=per_channel
    ).validate()
    source = str(model) if not isinstance(model, onnx.ModelProto) else "<model>"
    check_io(
        reads=model_roles("the model", model if source != "<model>" else None),
        writes={"-o": output, "the external data of -o": external_data_path(output) if output else None},
    )
    proto = model_proto(model)
    ctx = PassContext(options=options, source=source, show_progress=False)
    graph = quantize_weights.run(gs.import_onnx(proto), ctx)
    constrained = onnx.ModelProto()
    constrained.CopyFrom(proto)  # keeps opsets, functions, producer and metadata
    constrained.graph.CopyFrom(gs.export_onnx(graph, do_type_check=False).graph)
    constrained.ir_version = max(constrained.ir_version, IR_INITIALIZERS_NOT_INPUTS)
    stats = ctx.state.weight_quantization
    assert stats is not None  # quantize_weights.run records it
    model_metadata.write(constrained, {"weight_quantization": stats}, keep_others=True)
    if output is not None:
        save_model(constrained, output)
    return QuantizeResult(model=constrained, notes=ctx.notes, stats=stats)


def ann_accuracy(model: str | os.PathLike, data: str | os.PathLike) -> tuple[float, int]:
    """(accuracy, samples) of the ANN at `model` on the .npz at `data` (inputs: input name or x; labels: y),
    run with onnxruntime on the CPU."""
    proto = load_model(model)
    initializers = {t.name for t in proto.graph.initializer}
    input_names = [i.name for i in proto.graph.input if i.name not in initializers]
    arrays = load_arrays(data)
    inputs = model_inputs(arrays, input_names, str(data))
    labels = labels_of(arrays, str(data))
    runner = AnnRunner(model)
    try:
        predictions = np.concatenate([runner.run(feed).argmax(axis=-1) for feed in Batches(inputs, EVAL_BATCH)])
    except Exception as exc:  # noqa: BLE001 - onnxruntime's errors for inputs of the wrong shape or dtype
        raise SnnError(
            f"onnxruntime cannot run {model} on these inputs ({str(exc).splitlines()[0][:200]})", path=str(data)
        ) from None
    if len(predictions) != len(labels):
        raise SnnError(f"holds {len(predictions)} inputs but {len(labels)} labels", path=str(data))
    return float(np.mean(predictions == labels)), len(labels)


def summary(result: QuantizeResult) -> list[str]:
    """One line per constrained layer: distinct magnitudes per sign and the largest relative change."""
    stats = result.stats
    lines = [
        f"{len(stats['layers'])} weight tensors, {stats['levels']} levels per sign, ON/OFF ratio "
        f"{stats['on_off_ratio']:g}, max magnitude per {'output channel' if stats['per_channel'] else 'layer'}"
    ]
    for name, layer in stats["layers"].items():
        levels = layer["levels"]
        lines.append(
            f"  {name}: {levels['positive']} positive / {levels['negative']} negative magnitudes, "
            f"max change {layer['max_relative_change']:.3g} of max |w|"
        )
    return lines
