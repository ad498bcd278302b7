"""Rewriter: drop a Softmax or LogSoftmax that writes a graph output, directly or through
layout ops only.

Idiom: classifiers exported with their probability head (torch `softmax(logits)`, Keras
`Dense(activation="softmax")`, Caffe2's `Softmax` on [N, 1000, 1, 1], which the upgrade from
opset < 13 writes as Flatten → Softmax → Reshape). The SNN's outputs are logits (rates of the
last linear layer), and the argmax is unchanged. The graph output keeps its name: the tensor
that fed the Softmax is renamed to it when the Softmax wrote the output. Each drop is noted in ctx.
"""

from __future__ import annotations

import onnx_graphsurgeon as gs

from onnx_snn.passes.base import PassContext
from onnx_snn.passes.graph_utils import LAYOUT_OPS, bypass, node_label, producer

FINAL_OPS = ("Softmax", "LogSoftmax")


def apply(graph: gs.Graph, ctx: PassContext) -> int:
    """Bypass every Softmax/LogSoftmax whose only reader chain is layout ops ending in a graph
    output that no node reads."""
    count = 0
    for output in list(graph.outputs):
        node = _final_softmax(graph, output)
        if node is not None:
            ctx.note(
                f"dropped final {node.op} {node_label(node)} before output '{output.name}'; the SNN outputs logits"
            )
            bypass(graph, node)
            count += 1
    return count


def _final_softmax(graph: gs.Graph, output: gs.Tensor) -> gs.Node | None:
    """The Softmax/LogSoftmax that `output` is computed from through single-reader layout ops,
    if `output` is read by no node; else None."""
    if output.outputs:
        return None
    node = producer(output)
    while node is not None and node.op in LAYOUT_OPS and node.inputs and len(node.inputs[0].outputs) == 1:
        if node.inputs[0] in graph.outputs:
            return None
        node = producer(node.inputs[0])
    if node is None or node.op not in FINAL_OPS or len(node.outputs[0].outputs) > 1:
        return None
    return node
