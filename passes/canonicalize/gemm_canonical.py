"""Rewriter: every Gemm with a constant weight → `Gemm(x, W[out, in], b[out], transB=1)`.

Idiom: exporters write Gemm with any transB, alpha, beta and a C that is absent, a scalar or
[1, N] (torch legacy: transB=1 without transA; other converters: transB=0, alpha≠1). With B
constant (and C constant or absent), Y = alpha·x·op(B) + beta·C is rewritten exactly as
Gemm(x, alpha·op(B)ᵀ, beta·C broadcast to [N], transB=1, alpha=1, beta=1, transA=0), where a
missing C becomes zeros. A Gemm with a non-constant B or C is left as it is. transA=1 on a
non-constant A (the batch would sit on axis 1) and a C with a batch axis are SnnErrors.
"""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from onnx_snn.passes.base import PassContext
from onnx_snn.passes.graph_utils import const, constant_value, node_error, set_input


def is_canonical(node: gs.Node) -> bool:
    """Whether a Gemm already has the canonical form this rewriter produces."""
    a = node.attrs
    if (a.get("transA", 0), a.get("transB", 0), a.get("alpha", 1.0), a.get("beta", 1.0)) != (0, 1, 1.0, 1.0):
        return False
    if len(node.inputs) != 3:
        return False
    weight, bias = constant_value(node.inputs[1]), constant_value(node.inputs[2])
    return weight is not None and bias is not None and weight.ndim == 2 and bias.shape == (weight.shape[0],)


def apply(graph: gs.Graph, ctx: PassContext) -> int:
    """Canonicalize every Gemm with constant B (and C); return how many changed."""
    count = 0
    for node in [n for n in graph.nodes if n.op == "Gemm"]:
        b = constant_value(node.inputs[1])
        c_tensor = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2].name else None
        c = constant_value(c_tensor) if c_tensor is not None else None
        if b is None or (c_tensor is not None and c is None) or is_canonical(node):
            continue
        attrs = node.attrs
        if attrs.get("transA", 0):
            raise node_error(
                ctx,
                node,
                "Gemm with transA=1 puts the batch on axis 1 of its input, which the SNN cannot fold time into",
                hint="re-export with the input transposed before the Gemm (x @ W.T)",
            )
        weight = b if attrs.get("transB", 0) else b.T
        out_features = weight.shape[0]
        bias = np.zeros(out_features, dtype=b.dtype) if c is None else c
        if bias.size not in (1, out_features) or bias.ndim > 2 or (bias.ndim == 2 and bias.shape[0] != 1):
            raise node_error(
                ctx,
                node,
                f"Gemm bias C of shape {list(bias.shape)} depends on the batch row",
                hint="use a bias of shape [N] (one value per output feature)",
            )
        alpha, beta = attrs.get("alpha", 1.0), attrs.get("beta", 1.0)
        weight = (np.float64(alpha) * weight.astype(np.float64)).astype(b.dtype)
        bias = np.broadcast_to(np.float64(beta) * bias.astype(np.float64).reshape(-1), (out_features,)).astype(b.dtype)
        node.inputs[1] = const(f"{node.name}_weight", np.ascontiguousarray(weight))
        set_input(node, 2, const(f"{node.name}_bias", bias))
        node.attrs = {"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 1}
        count += 1
    return count
