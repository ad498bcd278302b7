"""Rewriter: give every node a unique, non-empty name.

Idiom: some exporters leave nodes unnamed or reuse names; later passes key their state
(activation statistics) by node name, and errors name nodes. An unnamed or duplicate-named node
becomes `<op>_<index in the graph>` (a name the user can find), or a fresh name when that is
taken. The pass manager applies it before the first pass and canonicalize after its rewriters.
"""

from __future__ import annotations

import onnx_graphsurgeon as gs

from onnx_snn.passes.base import PassContext
from onnx_snn.passes.graph_utils import fresh_name


def apply(graph: gs.Graph, ctx: PassContext) -> int:
    """Rename unnamed and duplicate-named nodes; return how many were renamed."""
    seen: set[str] = set()
    renamed = 0
    for index, node in enumerate(graph.nodes):
        if not node.name or node.name in seen:
            by_index = f"{node.op}_{index}"
            node.name = by_index if by_index not in seen else fresh_name(node.op)
            renamed += 1
        seen.add(node.name)
    return renamed
