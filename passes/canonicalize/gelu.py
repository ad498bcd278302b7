"""Rewriter: a decomposed GELU → one `Gelu` node (approximate="none" or "tanh"; ONNX opset 20+).

GELU(x) = 0.5·x·(1 + erf(x/√2)); the tanh approximation puts tanh(√(2/π)·(x + 0.044715·x³))
in place of the erf. The op sequences seen at this point of canonicalize (opset 21, constants
folded, Sub/Div by constants not yet Add/Mul):
  * torch legacy nn.GELU(): Div(x, √2) → Erf → Add(1) → Mul(x, ·) → Mul(0.5);
  * torch dynamo, opset 18: Div(x, √2) → Erf → Add(1) → Mul(0.5, ·) → Mul(x, ·) (from opset 20
    dynamo writes Gelu itself);
  * tf2onnx, Keras exact gelu after the erfc repair: Mul(0.5, x); Neg(x) → Mul(1/√2) → Erf →
    Sub(1, ·) → Mul(0.5·x, ·), i.e. 0.5·x·(1 − erf(−x/√2));
  * tanh approximation: x³ as Mul(x, Mul(x, x)) (torch legacy) or Pow(x, 3) (dynamo, tf2onnx),
    then Mul(0.044715) → Add(x, ·) → Mul(√(2/π)) → Tanh → Add(1), and the x and 0.5 factors in
    either order as above.
The match is algebraic (see fusion): an Erf or Tanh node whose argument is the polynomial
above in one tensor x (or its negation), whose only reader computes 1 ± its output, and whose
result is multiplied by 0.5·x; constants match within fusion.RTOL, and every tensor of the
match but its output is read only inside it.
"""

from __future__ import annotations

import math

import onnx_graphsurgeon as gs

from onnx_snn.passes.base import PassContext
from onnx_snn.passes.canonicalize.fusion import (
    Monomial,
    X,
    evaluate,
    fuse,
    in_one_tensor,
    matches,
    scaled_product,
    symbol,
)
from onnx_snn.passes.graph_utils import sole_reader

_ERF_ARGUMENT: dict[Monomial, float] = {(X,): 1 / math.sqrt(2)}
_TANH_SCALE = math.sqrt(2 / math.pi)
_TANH_ARGUMENT: dict[Monomial, float] = {(X,): _TANH_SCALE, (X, X, X): 0.044715 * _TANH_SCALE}
#: op of the odd function → (Gelu's approximate attribute, its argument as a polynomial in x)
_FORMS: dict[str, tuple[str, dict[Monomial, float]]] = {
    "Erf": ("none", _ERF_ARGUMENT),
    "Tanh": ("tanh", _TANH_ARGUMENT),
}
_T = "t"  # the symbol of the Erf/Tanh output


def apply(graph: gs.Graph, ctx: PassContext) -> int:
    """Fuse every decomposed GELU; return how many Gelu nodes were made."""
    count = 0
    for node in [n for n in graph.nodes if n.op in _FORMS]:
        match = _match(graph, node)
        if match is not None:
            x, y, nodes = match
            fuse(graph, nodes, "Gelu", [x], y, {"approximate": _FORMS[node.op][0]})
            count += 1
    return count


def _match(graph: gs.Graph, odd: gs.Node) -> tuple[gs.Tensor, gs.Tensor, list[gs.Node]] | None:
    """(x, y, nodes) when `odd` (Erf or Tanh) is the core of a GELU computing y from x."""
    gate = sole_reader(graph, odd.outputs[0])
    one_plus = evaluate(gate, {odd.outputs[0].name: symbol(_T)}) if gate is not None else None
    sign = next((s for s in (1.0, -1.0) if one_plus is not None and matches(one_plus, {(): 1.0, (_T,): s})), None)
    argument = in_one_tensor(graph, odd.inputs[0])
    if gate is None or sign is None or argument is None or argument[0] is None:
        return None
    x, poly, argument_nodes = argument
    if not matches({m: sign * c for m, c in poly.items()}, _FORMS[odd.op][1]):  # 1 - erf(-z) = 1 + erf(z)
        return None
    product = scaled_product(graph, gate.outputs[0], 0.5)
    if product is None or product[0] is not x:
        return None
    return x, product[1], [*argument_nodes, odd, gate, *product[2]]
