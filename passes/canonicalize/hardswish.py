"""Rewriter: a decomposed hard-swish → one `HardSwish` node (ONNX opset 14+).

HardSwish(x) = x·max(0, min(1, x/6 + 1/2)) = x·relu6(x + 3)/6. Both torch exporters write
nn.Hardswish as HardSwish from opset 14; the decomposed op sequences seen are
  * torch (legacy and dynamo) x * F.relu6(x + 3) / 6: Add(x, 3) → Clip(0, 6) → Mul(x, ·) → Div(6);
  * tf2onnx, Keras hard_silu / hard_swish: Add(x, 3) → Clip(0, 6) → Mul(1/6) → Mul(x, ·);
  * torch x * F.hardsigmoid(x) (and legacy nn.Hardswish below opset 14):
    HardSigmoid(alpha=1/6, beta=0.5) → Mul(x, ·).
In general (see fusion): Clip(x + 3, 0, 6) times x/6, or HardSigmoid(k·x) with alpha·k = 1/6
and beta = 1/2 times x, where the scalings may be Mul, Div or Neg in any order; constants
match within fusion.RTOL and every tensor but the output is read only inside the match.
"""

from __future__ import annotations

import onnx_graphsurgeon as gs

from onnx_snn.passes.base import PassContext
from onnx_snn.passes.canonicalize.fusion import Poly, X, close, fuse, in_one_tensor, matches, scalar, scaled_product
from onnx_snn.passes.graph_utils import constant_value

#: HardSigmoid's default attributes (ONNX)
_HARD_SIGMOID_DEFAULTS = {"alpha": 0.2, "beta": 0.5}


def apply(graph: gs.Graph, ctx: PassContext) -> int:
    """Fuse every decomposed hard-swish; return how many HardSwish nodes were made."""
    count = 0
    for node in [n for n in graph.nodes if n.op in ("Clip", "HardSigmoid")]:
        match = _match(graph, node)
        if match is not None:
            x, y, nodes = match
            fuse(graph, nodes, "HardSwish", [x], y)
            count += 1
    return count


def _match(graph: gs.Graph, gate: gs.Node) -> tuple[gs.Tensor, gs.Tensor, list[gs.Node]] | None:
    """(x, y, nodes) when `gate` (Clip or HardSigmoid) is the gate of a hard-swish computing y from x."""
    argument = in_one_tensor(graph, gate.inputs[0])
    if argument is None or argument[0] is None:
        return None
    x, poly, argument_nodes = argument
    scale = _relu6_scale(gate, poly) if gate.op == "Clip" else _hard_sigmoid_scale(gate, poly)
    product = scaled_product(graph, gate.outputs[0], scale) if scale is not None else None
    if product is None or product[0] is not x:
        return None
    return x, product[1], [*argument_nodes, gate, *product[2]]


def _relu6_scale(clip: gs.Node, argument: Poly) -> float | None:
    """1/6 when `clip` is Clip(x + 3, 0, 6) (`argument`: its input as a polynomial in x), else None."""
    bounds = [constant_value(t) for t in clip.inputs[1:3]]
    if len(bounds) != 2 or any(b is None or b.size != 1 for b in bounds):
        return None
    low, high = (float(b.reshape(-1)[0]) for b in bounds if b is not None)
    if low != 0.0 or not close(high, 6.0) or not matches(argument, {(): 3.0, (X,): 1.0}):
        return None
    return 1 / 6


def _hard_sigmoid_scale(hard_sigmoid: gs.Node, argument: Poly) -> float | None:
    """1 when `hard_sigmoid` of `argument` = k·x is hardsigmoid(x) = clip(x/6 + 1/2, 0, 1), else None."""
    k = scalar(argument, (X,))
    alpha, beta = (float(hard_sigmoid.attrs.get(a, d)) for a, d in _HARD_SIGMOID_DEFAULTS.items())
    if k is None or not close(alpha * k, 1 / 6) or not close(beta, 0.5):
        return None
    return 1.0
