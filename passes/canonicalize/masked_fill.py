"""Rewriter: Where with a constant condition and a constant fill → Mul and Add by constants.

Idiom: an attention mask, `scores.masked_fill(mask == 0, -100)` or `torch.where(keep, scores,
fill)`, is Where(cond, fill, x) or Where(cond, x, fill); once fold_shapes has folded the mask
(built from shapes: ones, tril, arange comparisons) the condition is a constant. Then, with
keep = 1 where x is taken and 0 where the fill is,

    Where(...) = x * keep + fill * (1 - keep),

an affine map of x by constants that the families convert (Where is not one of their ops). It
is exact for finite x and a finite fill (x * 0 = 0 and x * 1 + 0 = x); a non-finite fill
(-inf) is left as Where. The constant is broadcast so that the output keeps its shape.
"""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from onnx_snn.passes.base import PassContext
from onnx_snn.passes.graph_utils import const, constant_value, fresh_name, is_float


def apply(graph: gs.Graph, ctx: PassContext) -> int:
    """Rewrite every Where of a constant condition, a float tensor and a finite constant; return how many."""
    count = 0
    for node in [n for n in graph.nodes if n.op == "Where"]:
        cond = constant_value(node.inputs[0])
        when_true, when_false = constant_value(node.inputs[1]), constant_value(node.inputs[2])
        if cond is None or (when_true is None) == (when_false is None):
            continue  # a condition that varies, or not exactly one constant branch
        data = node.inputs[2] if when_true is not None else node.inputs[1]
        fill = when_true if when_true is not None else when_false
        assert fill is not None
        if not is_float(data) or not np.issubdtype(fill.dtype, np.floating) or not np.all(np.isfinite(fill)):
            continue
        keep = cond.astype(bool) if when_false is not None else ~cond.astype(bool)  # where x is taken
        dtype = fill.dtype
        scale = keep.astype(dtype)
        offset = np.where(keep, np.zeros((), dtype), fill).astype(dtype)
        scaled = gs.Variable(fresh_name(f"{node.name}_kept"), dtype=data.dtype)
        graph.nodes.append(
            gs.Node(
                "Mul",
                fresh_name(f"{node.name}_keep"),
                inputs=[data, const(f"{node.name}_keep", scale)],
                outputs=[scaled],
            )
        )
        node.op = "Add"
        node.attrs = {}
        node.inputs.clear()
        node.inputs.extend([scaled, const(f"{node.name}_fill", offset)])
        count += 1
    return count
