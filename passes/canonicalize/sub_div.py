"""Rewriter: `Sub(x, c)` → `Add(x, -c)` and `Div(x, c)` → `Mul(x, 1/c)` for float constants c.

Idiom: input normalization `(x - mean) / std`, and tf2onnx's BN written with Sub. With the
constant as the second operand these are affine in x; as Add/Mul they join the per-channel
affine chains that affine_to_bn turns into BatchNormalization. A constant first operand
(`Sub(1, erf)`) or integer operands (shape arithmetic) are left alone. 1/c is computed in
float64 and rounded once, so it matches the division within one rounding.
"""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from onnx_snn.passes.base import PassContext
from onnx_snn.passes.graph_utils import const, constant_value

_REPLACEMENT = {"Sub": ("Add", np.negative), "Div": ("Mul", np.reciprocal)}


def apply(graph: gs.Graph, ctx: PassContext) -> int:
    """Rewrite every Sub/Div by a float constant second operand; return how many."""
    count = 0
    for node in [n for n in graph.nodes if n.op in _REPLACEMENT]:
        value = constant_value(node.inputs[1])
        if value is None or not np.issubdtype(value.dtype, np.floating) or constant_value(node.inputs[0]) is not None:
            continue
        op, transform = _REPLACEMENT[node.op]
        with np.errstate(divide="ignore"):
            new_value = transform(value.astype(np.float64)).astype(value.dtype)
        node.op = op
        node.inputs[1] = const(f"{node.inputs[1].name}_{op.lower()}", new_value)
        count += 1
    return count
