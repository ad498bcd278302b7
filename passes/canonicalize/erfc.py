"""Rewriter: tf2onnx's invalid `Erfc` node → `Sub(1, Erf(z))`.

Idiom: Keras 3 builds exact GELU from TF's `Erfc`, for which tf2onnx 1.17 has no handler; it
writes an `Erfc` node in the default domain anyway, where no such op exists, so the file fails
onnx.checker and onnxruntime refuses it. erfc(z) = 1 - erf(z) exactly, so the node becomes
`Sub(1, Erf(z))` writing the same output tensor. Runs on the raw graph, before any checker.
"""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from onnx_snn.passes.base import PassContext
from onnx_snn.passes.graph_utils import const, fresh_name, in_default_domain


def apply(graph: gs.Graph, ctx: PassContext) -> int:
    """Replace every default-domain `Erfc` node; return how many were replaced."""
    nodes = [n for n in graph.nodes if n.op == "Erfc" and in_default_domain(n)]
    for node in nodes:
        z = node.inputs[0]
        dtype = np.dtype(z.dtype) if z.dtype is not None else np.dtype(np.float32)
        erf = gs.Variable(fresh_name(f"{z.name}_erf"), dtype=z.dtype)
        graph.nodes.append(gs.Node("Erf", name=fresh_name(f"{node.name or 'Erfc'}_erf"), inputs=[z], outputs=[erf]))
        node.op = "Sub"
        node.attrs.clear()
        node.inputs.insert(0, const("erfc_one", 1, dtype=dtype))
        node.inputs[1] = erf
    if nodes:
        ctx.note(f"repaired {len(nodes)} invalid Erfc node(s) (written by tf2onnx for exact GELU) as Sub(1, Erf(z))")
    return len(nodes)
