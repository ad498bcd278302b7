"""Rewriter: SiLU / swish variants → the canonical `Mul(u, Sigmoid(u))`, scalings outside.

ONNX has no SiLU op before opset 24 (beyond TARGET_OPSET), so the canonical SiLU is the pair
Sigmoid(u) → Mul(u, sigmoid), with the same tensor u as the Sigmoid's input and the Mul's
first operand; later passes can recognise that pair as one unit. Swish with β ≠ 1 (and
QuickGELU, β = 1.702) is x·σ(β·x) = (1/β)·u·σ(u) with u = β·x, so it becomes the canonical
pair on u followed by Mul(1/β); the linear scalings around the pair then join the affine
chains of affine_to_bn. Op sequences seen:
  * torch legacy and dynamo nn.SiLU, tf2onnx Keras silu/swish: Sigmoid(x) → Mul(x, ·) (already
    canonical);
  * torch x * sigmoid(1.702 * x) (both exporters), tf2onnx tf.nn.silu(x, beta): Mul(x, β) →
    Sigmoid → Mul(x, ·).
In general: a Sigmoid of u = k·x whose only reader multiplies it by c·x (fusion.in_one_tensor
for both, so the scalings may be Mul, Div or Neg) becomes Mul(u, Sigmoid(u)) then Mul(c/k)
when c ≠ k. Any other product with a sigmoid (a gate of another tensor) is left alone.
"""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from onnx_snn.passes.base import PassContext
from onnx_snn.passes.canonicalize.fusion import X, in_one_tensor, scalar
from onnx_snn.passes.graph_utils import const, fresh_name, is_float, sole_reader


def apply(graph: gs.Graph, ctx: PassContext) -> int:
    """Make every SiLU canonical; return how many were changed."""
    return sum(_canonicalize(graph, node) for node in [n for n in graph.nodes if n.op == "Sigmoid"])


def _canonicalize(graph: gs.Graph, sigmoid: gs.Node) -> bool:
    """Rewrite the SiLU around `sigmoid` into canonical form; False when it is none or already canonical."""
    u, gate = sigmoid.inputs[0], sigmoid.outputs[0]
    product = sole_reader(graph, gate)
    if product is None or product.op != "Mul" or len(product.inputs) != 2 or not is_float(product.outputs[0]):
        return False
    inner = in_one_tensor(graph, u)
    outer = in_one_tensor(graph, product.inputs[1] if product.inputs[0] is gate else product.inputs[0])
    if inner is None or outer is None or inner[0] is None or outer[0] is not inner[0]:
        return False
    k, c = scalar(inner[1], (X,)), scalar(outer[1], (X,))
    if k is None or c is None or k == 0:
        return False
    factor = c / k
    if product.inputs[0] is u and product.inputs[1] is gate and factor == 1.0:
        return False
    product.inputs[0], product.inputs[1] = u, gate
    if factor != 1.0:
        y = product.outputs[0]
        silu = gs.Variable(fresh_name(f"{y.name}_silu"), dtype=y.dtype)
        product.outputs[0] = silu
        graph.nodes.append(
            gs.Node(
                "Mul",
                name=fresh_name(f"{product.name or 'silu'}_scale"),
                inputs=[silu, const("silu_scale", factor, dtype=np.dtype(y.dtype))],
                outputs=[y],
            )
        )
    return True
