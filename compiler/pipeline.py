"""The compile pipeline: an ordered list of passes over an onnx-graphsurgeon graph."""
from __future__ import annotations

import json
from typing import Callable

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from onnx_snn import __version__
from onnx_snn.errors import SnnError
from onnx_snn.ir.neurons import attach_functions
from onnx_snn.options import ENCODING_NEURONS, spikenorm_statistic
from onnx_snn.passes.base import Pass, PassContext
from onnx_snn.passes.canonicalize import canonicalize
from onnx_snn.passes.common import activity, calibrate, fold_bn, normalize, time_batch
from onnx_snn.passes.graph_utils import TARGET_OPSET, fresh_name
from onnx_snn.passes.hardware import quantize_weights
from onnx_snn.passes.rate import encode_input, spikenorm, spikify
from onnx_snn.passes.signgd import decompose
from onnx_snn.passes.signgd import offsets as signgd_offsets
from onnx_snn.passes.signgd import spikify as spikify_signgd
from onnx_snn.passes.ttfs import audit as ttfs_audit
from onnx_snn.passes.ttfs import column_scale as ttfs_column_scale
from onnx_snn.passes.ttfs import fold_affine as ttfs_fold_affine
from onnx_snn.passes.ttfs import input_range as ttfs_input_range
from onnx_snn.passes.ttfs import spikify as spikify_ttfs
from onnx_snn.passes.ttfs import windows as ttfs_windows

#: the passes every neuron type starts with (quantize_weights acts only with options.weight_levels)
COMMON: list[Pass] = [canonicalize, fold_bn, quantize_weights]
#: the passes of each neuron type after COMMON, in order
PIPELINES: dict[str, list[Pass]] = {
    "if": [calibrate, spikenorm, normalize, spikify, encode_input, time_batch, activity],
    "signgd": [decompose, calibrate, normalize, spikify_signgd, signgd_offsets, time_batch, activity],
    "ttfs": [ttfs_input_range, ttfs_fold_affine, ttfs_column_scale, calibrate, ttfs_windows, ttfs_audit,
             spikify_ttfs],
}
#: per neuron type: the pass after which unconvertible ops are refused (before the costly
#: calibration; None = right after COMMON), and the module that refuses them
REFUSAL: dict[str, tuple[Pass | None, Pass]] = {"if": (None, spikify), "signgd": (decompose, spikify_signgd),
                                                 "ttfs": (None, spikify_ttfs)}
PASS_NAMES = list(dict.fromkeys(p.NAME for p in COMMON + [p for ps in PIPELINES.values() for p in ps]))
IR_VERSION = 10  # the IR of opset 21

DumpHook = Callable[[str, onnx.ModelProto], None]


def run_pipeline(model: onnx.ModelProto, ctx: PassContext, dump: DumpHook | None = None) -> onnx.ModelProto:
    """Run every pass on `model` and return the compiled SNN; `dump(name, model)` after each pass
    named in ctx.options.dump_after."""
    graph = gs.import_onnx(model)
    name_unnamed_nodes(graph)

    def stage(step: Pass, graph: gs.Graph) -> gs.Graph:
        graph = step.run(graph, ctx)
        if dump is not None and step.NAME in ctx.options.dump_after:
            dump(step.NAME, emit(graph, ctx))
        return graph

    for step in COMMON:
        graph = stage(step, graph)
    neuron = resolve_neuron(graph, ctx)
    ctx.metadata["neuron"] = neuron
    spikenorm = spikenorm_statistic(ctx.options.norm) is not None
    if neuron not in ENCODING_NEURONS[ctx.options.encoding] or (neuron != "if" and spikenorm):
        raise SnnError(f"--encoding {ctx.options.encoding} and --norm {ctx.options.norm} do not fit this graph, which "
                       f"converts with {neuron} neurons (poisson and spikenorm need IF, signgd needs signGD neurons)",
                       path=ctx.source)
    refuse_after, refuser = REFUSAL[neuron]
    if refuse_after is None:
        refuser.refuse_unconvertible(graph, ctx)
    for step in PIPELINES[neuron]:
        graph = stage(step, graph)
        if step is refuse_after:
            refuser.refuse_unconvertible(graph, ctx)
    return emit(graph, ctx)


def resolve_neuron(graph: gs.Graph, ctx: PassContext) -> str:
    """The neuron type to compile with: --neuron, or for `auto` IF neurons when they can convert
    every nonlinearity of the graph (a ReLU net) and signGD neurons otherwise."""
    if ctx.options.neuron != "auto":
        return ctx.options.neuron
    try:
        spikify.refuse_unconvertible(graph, ctx)
    except SnnError:
        return "signgd"
    return "if"


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
