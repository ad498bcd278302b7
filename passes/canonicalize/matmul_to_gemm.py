"""Rewriter: rank-2 `MatMul(x, W)` (+ `Add(b)`) with constant W → `Gemm(x, W, b)`.

Idiom: tf2onnx writes Keras Dense as MatMul + Add (never Gemm), and torch writes
`x @ W (+ b)` as MatMul. When x has rank 2, W is a constant matrix, and the MatMul's only
reader is an Add of a constant that broadcasts along the output features (shape [], [1],
[N] or [1, N]), the pair becomes one Gemm with that constant as C; a MatMul without such an
Add becomes a Gemm without C. The Gemm is left with transB=0 for gemm_canonical to finish.
MatMul on inputs of rank > 2 (tf2onnx's Dense on 3-D input) stays MatMul(+Add).
"""

from __future__ import annotations

import onnx_graphsurgeon as gs

from onnx_snn.passes.base import PassContext
from onnx_snn.passes.graph_utils import constant_value, replace_uses, sole_reader


def apply(graph: gs.Graph, ctx: PassContext) -> int:
    """Turn every rank-2 MatMul with a constant weight (and its bias Add) into Gemm."""
    count = 0
    for node in [n for n in graph.nodes if n.op == "MatMul"]:
        x, weight = node.inputs
        w = constant_value(weight)
        if w is None or w.ndim != 2 or x.shape is None or len(x.shape) != 2:
            continue
        out = node.outputs[0]
        add = sole_reader(graph, out)
        bias = _bias_operand(add, out, w.shape[1]) if add is not None and add.op == "Add" else None
        node.op = "Gemm"
        if add is not None and bias is not None:
            node.inputs.append(bias)
            result = add.outputs[0]
            add.outputs.clear()
            add.inputs.clear()
            replace_uses(graph, result, out)
        count += 1
    return count


def _bias_operand(add: gs.Node, operand: gs.Tensor, features: int) -> gs.Tensor | None:
    """The Add's other input if it is a constant that adds one value per output feature."""
    others = [t for t in add.inputs if t is not operand]
    if len(others) != 1:
        return None
    value = constant_value(others[0])
    if value is None or value.shape not in ((), (1,), (features,), (1, features), (1, 1)):
        return None
    return others[0]
