"""Rewriter: cancel a Transpose and its inverse when only elementwise ops lie between them.

Idiom: tf2onnx keeps Keras' NHWC layout around NCHW-only ops, leaving chains such as
Transpose(0,2,3,1) → Relu → Add(bias[C]) → Transpose(0,3,1,2). When every op between two
mutually inverse Transposes is elementwise, with at most one non-constant input (the chain),
both Transposes are dropped and each constant operand is permuted to the untransposed layout
(right-aligned to the tensor's rank, then transposed), so the result is unchanged. A Transpose
without an inverse partner (e.g. the input-layout Transpose at a graph input) is left alone.
"""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from onnx_snn.passes.base import PassContext
from onnx_snn.passes.graph_utils import const, constant_value, replace_uses, sole_reader

UNARY = frozenset(
    {
        "Relu",
        "LeakyRelu",
        "Sigmoid",
        "HardSigmoid",
        "HardSwish",
        "Tanh",
        "Neg",
        "Abs",
        "Exp",
        "Log",
        "Sqrt",
        "Reciprocal",
        "Erf",
        "Elu",
        "Selu",
        "Celu",
        "Softplus",
        "Softsign",
        "Clip",
        "Floor",
        "Ceil",
        "Round",
        "Sign",
        "Mish",
        "Gelu",
        "ThresholdedRelu",
        "Cast",
        "Identity",
    }
)
BINARY = frozenset({"Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "PRelu"})


def apply(graph: gs.Graph, ctx: PassContext) -> int:
    """Cancel every inverse Transpose pair around an elementwise chain; return how many pairs."""
    count = 0
    for first in [n for n in graph.nodes if n.op == "Transpose"]:
        if not first.outputs:  # already cancelled as the second of a pair
            continue
        found = _inverse_partner(graph, first)
        if found is not None:
            _cancel(graph, first, *found)
            count += 1
    return count


def _inverse_partner(graph: gs.Graph, first: gs.Node) -> tuple[list[gs.Node], gs.Node] | None:
    """(elementwise chain, closing Transpose) after `first`, or None when there is none."""
    perm = first.attrs.get("perm")
    if perm is None:
        return None
    chain: list[gs.Node] = []
    tensor = first.outputs[0]
    node = sole_reader(graph, tensor)
    while node is not None:
        if node.op == "Transpose":
            second = node.attrs.get("perm")
            identity = second is not None and [perm[i] for i in second] == list(range(len(perm)))
            return (chain, node) if identity else None
        if not _elementwise_on(node, tensor, len(perm)):
            return None
        chain.append(node)
        tensor = node.outputs[0]
        node = sole_reader(graph, tensor)
    return None


def _elementwise_on(node: gs.Node, tensor: gs.Tensor, rank: int) -> bool:
    """Whether `node` is elementwise with `tensor` its only non-constant input (constants of rank <= `rank`)."""
    if node.op not in UNARY | BINARY or len(node.outputs) != 1:
        return False
    others = [t for t in node.inputs if t is not tensor and t.name]
    values = [constant_value(t) for t in others]
    if any(v is None or v.ndim > rank for v in values) or node.inputs.count(tensor) != 1:
        return False
    return node.op in BINARY or all(v is not None and v.ndim == 0 for v in values)


def _cancel(graph: gs.Graph, first: gs.Node, chain: list[gs.Node], second: gs.Node) -> None:
    inverse = second.attrs["perm"]
    rank = len(inverse)
    source = first.inputs[0]
    for node in chain:
        for i, tensor in enumerate(node.inputs):
            value = constant_value(tensor) if tensor.name else None
            if value is not None and value.ndim > 0:
                aligned = value.reshape((1,) * (rank - value.ndim) + value.shape)
                permuted = np.ascontiguousarray(np.transpose(aligned, inverse))
                node.inputs[i] = const(f"{tensor.name}_untransposed", permuted)
    last = chain[-1].outputs[0] if chain else source
    if chain:
        chain[0].inputs[chain[0].inputs.index(first.outputs[0])] = source
    result = second.outputs[0]
    second.outputs.clear()
    second.inputs.clear()
    first.outputs.clear()
    first.inputs.clear()
    replace_uses(graph, result, last)
