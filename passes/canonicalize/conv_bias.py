"""Rewriter: a Conv without bias gets an explicit zero bias initializer.

Idiom: torch writes `Conv2d(bias=False)` (and the dynamo exporter writes a Conv whose BN it
could not fold) as a two-input Conv. Afterwards every Conv with a constant weight has three
inputs, so folding and normalizing passes can always update a bias.
"""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from onnx_snn.passes.base import PassContext
from onnx_snn.passes.graph_utils import const, constant_value, set_input


def apply(graph: gs.Graph, ctx: PassContext) -> int:
    """Add a zero bias [C_out] to every bias-less Conv with a constant weight; return how many."""
    count = 0
    for node in [n for n in graph.nodes if n.op == "Conv"]:
        weight = constant_value(node.inputs[1])
        has_bias = len(node.inputs) > 2 and node.inputs[2].name
        if weight is None or has_bias:
            continue
        set_input(node, 2, const(f"{node.name}_bias", np.zeros(weight.shape[0], dtype=weight.dtype)))
        count += 1
    return count
