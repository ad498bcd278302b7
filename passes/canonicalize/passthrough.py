"""Rewriter: remove Identity and inference-mode Dropout nodes.

Idiom: exporters leave `Identity` nodes (torch's legacy exporter for shared parameters, tf2onnx
for TF Identity ops) and `Dropout`, which is the identity at inference. Readers of their output
read their input instead. An Identity that is the only thing linking a graph input or constant
to a graph output is kept (a graph output must be written by a node).
"""

from __future__ import annotations

import onnx_graphsurgeon as gs

from onnx_snn.passes.base import PassContext
from onnx_snn.passes.graph_utils import bypass, constant_value, node_error, producer


def apply(graph: gs.Graph, ctx: PassContext) -> int:
    """Bypass every removable Identity/Dropout; return how many were removed.

    Raises SnnError for a Dropout that is not in inference mode (its mask is read, or its
    training_mode input is not the constant false).
    """
    removed = 0
    for node in [n for n in graph.nodes if n.op in ("Identity", "Dropout")]:
        if node.op == "Dropout":
            _require_inference(graph, node, ctx)
        src, dst = node.inputs[0], node.outputs[0]
        if dst in graph.outputs and (producer(src) is None or src in graph.outputs):
            continue
        bypass(graph, node)
        removed += 1
    return removed


def _require_inference(graph: gs.Graph, node: gs.Node, ctx: PassContext) -> None:
    mask = node.outputs[1] if len(node.outputs) > 1 else None
    mask_used = mask is not None and (bool(mask.outputs) or mask in graph.outputs)
    training = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2].name else None
    training_value = constant_value(training) if training is not None else None
    if mask_used or (training is not None and (training_value is None or bool(training_value))):
        raise node_error(
            ctx,
            node,
            "Dropout runs in training mode (its mask is used or training_mode is not false)",
            hint="export the model in eval mode (model.eval() / training=False)",
        )
