"""The compile pipeline: an ordered list of passes over an onnx-graphsurgeon graph."""
from __future__ import annotations

import json
from typing import Callable

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from onnx_snn import __version__
from onnx_snn.passes import (calibrate, canonicalize, decompose, fold_bn, normalize, signgd_offsets, spikify,
                             spikify_signgd, time_batch)
from onnx_snn.passes.base import Pass, PassContext
from onnx_snn.passes.graph_utils import TARGET_OPSET, fresh_name
from onnx_snn.runtime.neurons import attach_functions

#: the passes of each neuron type, in order
PIPELINES: dict[str, list[Pass]] = {
    "if": [canonicalize, fold_bn, calibrate, normalize, spikify, time_batch],
    "signgd": [canonicalize, fold_bn, decompose, calibrate, normalize, spikify_signgd, signgd_offsets, time_batch],
}
#: the pass after which unconvertible ops are refused, before the costly calibration
REFUSE_AFTER = {"if": (fold_bn, spikify), "signgd": (decompose, spikify_signgd)}
PASS_NAMES = list(dict.fromkeys(p.NAME for passes in PIPELINES.values() for p in passes))
IR_VERSION = 10  # the IR of opset 21

DumpHook = Callable[[str, onnx.ModelProto], None]


def run_pipeline(model: onnx.ModelProto, ctx: PassContext, dump: DumpHook | None = None) -> onnx.ModelProto:
    """Run every pass on `model` and return the compiled SNN; `dump(name, model)` after each pass
    named in ctx.options.dump_after."""
    graph = gs.import_onnx(model)
    name_unnamed_nodes(graph)
    refuse_after, refuser = REFUSE_AFTER[ctx.options.neuron]
    for stage in PIPELINES[ctx.options.neuron]:
        graph = stage.run(graph, ctx)
        if stage is refuse_after:
            refuser.refuse_unconvertible(graph, ctx)  # fail before calibration, not after
        if dump is not None and stage.NAME in ctx.options.dump_after:
            dump(stage.NAME, emit(graph, ctx))
    return emit(graph, ctx)


def name_unnamed_nodes(graph: gs.Graph) -> None:
    """Give every node a unique name: the passes and their errors refer to nodes by name."""
    seen: set[str] = set()
    for index, node in enumerate(graph.nodes):
        if not node.name or node.name in seen:
            node.name = f"{node.op}_{index}" if f"{node.op}_{index}" not in seen else fresh_name(node.op)
        seen.add(node.name)


def emit(graph: gs.Graph, ctx: PassContext) -> onnx.ModelProto:
    """Export `graph` as a standalone model: input defaults, neuron functions and metadata."""
    model = gs.export_onnx(graph, do_type_check=False)
    for name, value in ctx.input_defaults.items():
        if any(i.name == name for i in model.graph.input):
            model.graph.initializer.append(onnx.numpy_helper.from_array(np.asarray(value), name))
    default_opset = next((o for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if default_opset is not None and default_opset.version >= TARGET_OPSET:
        model.ir_version = max(model.ir_version, IR_VERSION)
    attach_functions(model)
    model.producer_name, model.producer_version = "onnx-snn", __version__
    metadata = {
        "onnx_snn.version": __version__,
        "onnx_snn.options": json.dumps(ctx.options.as_metadata(), sort_keys=True),
        "onnx_snn.notes": json.dumps(ctx.notes),
        **{f"onnx_snn.{k}": json.dumps(v, sort_keys=True) for k, v in ctx.metadata.items()},
    }
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, metadata)
    return model
