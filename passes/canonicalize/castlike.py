"""Rewriter: `CastLike(x, like)` → `Cast(x, to=dtype of like)` when that dtype is known.

Idiom: torch's dynamo exporter without its optimizer (optimize=False) types constants with
CastLike against an activation, e.g. the zero bias of a bias-less Conv is
Expand(CastLike(0, x), Shape(W)). Reading the activation only for its dtype keeps the
constant from being folded; as a Cast it folds. Run before constant folding (needs dtypes).
"""

from __future__ import annotations

import onnx
import onnx_graphsurgeon as gs

from onnx_snn.passes.base import PassContext


def apply(graph: gs.Graph, ctx: PassContext) -> int:
    """Turn every CastLike whose target dtype is known into Cast; return how many."""
    count = 0
    for node in [n for n in graph.nodes if n.op == "CastLike" and n.inputs[1].dtype is not None]:
        like = node.inputs.pop()
        node.op = "Cast"
        node.attrs = {"to": onnx.helper.np_dtype_to_tensor_dtype(like.dtype)}
        count += 1
    return count
