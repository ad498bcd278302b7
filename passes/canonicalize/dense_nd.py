"""Rewriter: tf2onnx's Dense on N-D input, Reshape → MatMul → Reshape, → one N-D MatMul.

Idiom: tf2onnx writes Keras Dense on x[B, ..., K] as Reshape(x, [-1, K]) → MatMul(W[K, N]) →
Reshape(·, [-1, ..., N]) (then the bias Add), while torch writes it as a MatMul on x itself.
When the first Reshape only merges the leading axes, the second restores them
(x.shape[1:-1] + [N], axis 0 inferred), and each node is the only reader of the one before,
both Reshapes are dropped: MatMul(x, W) broadcasts over the leading axes with the same result,
and the batch stays on axis 0. Runs after batch_reshape, which makes both shapes constant.
"""

from __future__ import annotations

import onnx_graphsurgeon as gs

from onnx_snn.passes.base import PassContext
from onnx_snn.passes.graph_utils import constant_value, replace_uses, sole_reader


def apply(graph: gs.Graph, ctx: PassContext) -> int:
    """Collapse every Reshape → MatMul → Reshape Dense; return how many."""
    count = 0
    for matmul in [n for n in graph.nodes if n.op == "MatMul"]:
        before = matmul.inputs[0].inputs[0] if matmul.inputs[0].inputs else None
        after = sole_reader(graph, matmul.outputs[0])
        weight = constant_value(matmul.inputs[1])
        if (
            before is None
            or before.op != "Reshape"
            or after is None
            or after.op != "Reshape"
            or weight is None
            or weight.ndim != 2
            or sole_reader(graph, before.outputs[0]) is not matmul
        ):
            continue
        assert matmul is not None  # mypy took `is not matmul` above as narrowing it to Node | None (gs.Node is Any)
        x = before.inputs[0]
        merged, restored = constant_value(before.inputs[1]), constant_value(after.inputs[1])
        if (
            not x.shape
            or len(x.shape) < 3
            or not all(isinstance(d, int) for d in x.shape[1:])
            or merged is None
            or restored is None
        ):
            continue
        if list(merged) != [-1, x.shape[-1]] or list(restored) != [-1, *x.shape[1:-1], weight.shape[1]]:
            continue
        matmul.inputs[0] = x
        result = after.outputs[0]
        after.outputs.clear()
        after.inputs.clear()
        replace_uses(graph, result, matmul.outputs[0])
        count += 1
    return count
