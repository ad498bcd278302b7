"""Rewriter: drop a Softmax or LogSoftmax that writes a graph output.

Idiom: classifiers exported with their probability head (torch `softmax(logits)`, Keras
`Dense(activation="softmax")`). The SNN's outputs are logits (rates of the last linear layer),
and the argmax is unchanged. The graph output keeps its name: the tensor that fed the
Softmax is renamed to it. Each drop is noted in ctx.
"""

from __future__ import annotations

import onnx_graphsurgeon as gs

from onnx_snn.passes.base import PassContext
from onnx_snn.passes.graph_utils import bypass, node_label, producer

FINAL_OPS = ("Softmax", "LogSoftmax")


def apply(graph: gs.Graph, ctx: PassContext) -> int:
    """Bypass every Softmax/LogSoftmax whose output is a graph output read by no node."""
    count = 0
    for output in list(graph.outputs):
        node = producer(output)
        if node is not None and node.op in FINAL_OPS and not output.outputs:
            ctx.note(
                f"dropped final {node.op} {node_label(node)} before output '{output.name}'; the SNN outputs logits"
            )
            bypass(graph, node)
            count += 1
    return count
