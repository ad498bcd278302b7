"""Rewriter: give every node a unique, non-empty name.

Idiom: some exporters leave nodes unnamed or reuse names; later passes key their state
(activation statistics) by node name, and errors name nodes. An unnamed or duplicate-named node
becomes `<op>_<index in the graph>`, or a fresh name when that is taken; errors then name it as
the input did, by op, index and first input and output tensors (ctx.node_labels). The pass manager
applies it before the first pass and canonicalize after its rewriters.
"""

from __future__ import annotations

import onnx_graphsurgeon as gs

from onnx_snn.errors import unnamed_node_label
from onnx_snn.passes.base import PassContext
from onnx_snn.passes.graph_utils import fresh_name


def apply(graph: gs.Graph, ctx: PassContext) -> int:
    """Rename unnamed and duplicate-named nodes, recording in ctx.node_labels how errors name them
    (the first description of a name is kept: the input graph's); return how many were renamed."""
    seen: set[str] = set()
    renamed = 0
    for index, node in enumerate(graph.nodes):
        if not node.name or node.name in seen:
            ctx.node_labels.setdefault(_new_name(node, index, seen), _input_label(node, index))
            renamed += 1
        seen.add(node.name)
    return renamed


def _new_name(node: gs.Node, index: int, taken: set[str]) -> str:
    """Give `node` the name `<op>_<index>`, or a fresh one when that is taken; return it."""
    by_index = f"{node.op}_{index}"
    node.name = by_index if by_index not in taken else fresh_name(node.op)
    return node.name


def _input_label(node: gs.Node, index: int) -> str:
    """How the input graph shows `node` (before _new_name renames it)."""
    first_in = node.inputs[0].name if node.inputs else None
    first_out = node.outputs[0].name if node.outputs else None
    return unnamed_node_label(node.op, index, first_in, first_out)
