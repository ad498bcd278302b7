"""Rewriter: give every node a unique, non-empty name.

Idiom: some exporters leave nodes unnamed or reuse names; later passes key their state
(activation statistics) by node name. Unnamed nodes are named after their op, and a name
already taken by an earlier node gets a fresh suffix.
"""
from __future__ import annotations

import onnx_graphsurgeon as gs

from onnx_snn.passes.base import PassContext
from onnx_snn.passes.graph_utils import fresh_name


def apply(graph: gs.Graph, ctx: PassContext) -> int:
    """Rename unnamed and duplicate-named nodes; return how many were renamed."""
    seen: set[str] = set()
    renamed = 0
    for node in graph.nodes:
        if not node.name or node.name in seen:
            node.name = fresh_name(node.name or node.op)
            renamed += 1
        seen.add(node.name)
    return renamed
