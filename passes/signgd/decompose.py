"""decompose: rewrite MaxPool, LayerNormalization, Softmax and MatMul of two activations into the
elementary nonlinearities that signGD neurons implement (spec signgd-dynamics §5), as plain ONNX ops.

* MaxPool (2-D, any kernel, stride and padding; dilation 1, floor mode) becomes, per axis (rows,
  then columns), a Pad of that axis with the constant -200 and a chain of pairwise `Max` over
  strided slices (kernel - 1 of them). Padding one axis at a time means no Max compares two pad
  values (a target of -200 no neuron could reach); the spec pads both axes up front.
* LayerNormalization over trailing axes becomes u = x - mean(x); h = u * u (square);
  q = mean(h) + eps; n = u / Sqrt(q) (the p/sqrt(q) neuron); out = n * scale + bias.
* Softmax(axis) becomes Exp, ReduceSum over the axis, and Div (no max subtraction, as the spec).
* MatMul of two activations X (…×N×K) · Y (…×K×M) (attention scores Q·Kᵀ, say) becomes
  Unsqueeze(X) […, N, K, 1] · Unsqueeze(Y) […, 1, K, M], an elementwise `Mul` that broadcasts to
  the N·K·M products (neuron (n, k, m) multiplies X[n, k] and Y[k, m]), then ReduceSum over K.
  Both inputs need rank >= 2 and a known rank. A MatMul with a constant operand stays as it is.

The result computes the same function (up to float rounding) with standard ops; spikify_signgd
then maps `Max`, `Mul(u, u)`, `Div(p, Sqrt(q))`, `Exp`, `Div(a, b)` and `Mul(a, b)` onto neurons.
"""

from __future__ import annotations

from typing import cast

import numpy as np
import onnx_graphsurgeon as gs

from onnx_snn.errors import SnnError
from onnx_snn.passes.base import PassContext, require
from onnx_snn.passes.graph_utils import (
    constant_value,
    fresh_name,
    is_activation,
    node_label,
    refresh_shapes,
    string_attr,
)

NAME = "decompose"
CONTRACT = (
    "Pre: BN-folded graph. Post: same function; no MaxPool, LayerNormalization, Softmax or MatMul of "
    "two activations, only Max / Mul(u,u) / Div(p,Sqrt(q)) / Exp / Div / Mul(a,b) pieces between affine ops."
)

#: the value MaxPool pads with: low enough never to win a max of scaled activations
MAXPOOL_PAD_VALUE = -200.0


NEEDS = frozenset({"bn_folded"})
PROVIDES = frozenset({"signgd_ops"})


def postcondition(graph: gs.Graph, ctx: PassContext) -> None:
    """No MaxPool, LayerNormalization or Softmax left."""
    left = sorted({n.op for n in graph.nodes if n.op in ("MaxPool", "LayerNormalization", "Softmax")})
    require(not left, f"{left} left in the graph")


def run(graph: gs.Graph, ctx: PassContext) -> gs.Graph:
    rewrite = {"MaxPool": _maxpool, "LayerNormalization": _layernorm, "Softmax": _softmax}
    for node in [n for n in graph.nodes if n.op in rewrite]:
        rewrite[node.op](graph, node, ctx)
    for node in [n for n in graph.nodes if _is_matmul_of_activations(n)]:
        _matmul_of_activations(graph, node, ctx)
    graph.cleanup().toposort()
    refresh_shapes(graph)
    return graph


class _Emitter:
    """Appends nodes that replace one node, naming them after it."""

    def __init__(self, graph: gs.Graph, node: gs.Node) -> None:
        self.graph, self.base, self.dtype = graph, node.name, node.inputs[0].dtype

    def op(self, op: str, inputs: list, out: gs.Variable | None = None, **attrs) -> gs.Variable:
        out = out or gs.Variable(fresh_name(f"{self.base}_{op.lower()}"), dtype=self.dtype)
        self.graph.nodes.append(
            gs.Node(op, name=fresh_name(f"{self.base}_{op}"), inputs=inputs, outputs=[out], attrs=attrs)
        )
        return out

    @staticmethod
    def ints(values) -> gs.Constant:
        return gs.Constant(fresh_name("c"), np.asarray(values, dtype=np.int64))

    def scalar(self, value: float) -> gs.Constant:
        return gs.Constant(fresh_name("c"), np.asarray(value, dtype=self.dtype or np.float32))


def _detach(node: gs.Node) -> gs.Variable:
    """Disconnect `node` and return its (first) output, to be written by the replacement."""
    out = node.outputs[0]
    node.outputs.clear()
    node.inputs.clear()
    return out


def _maxpool(graph: gs.Graph, node: gs.Node, ctx: PassContext) -> None:
    kernel = list(node.attrs["kernel_shape"])
    if len(kernel) != 2:
        raise SnnError("only 2-D MaxPool is supported", path=ctx.source, node=node_label(node), op=node.op)
    strides = list(node.attrs.get("strides", [1, 1]))
    pads = list(node.attrs.get("pads", [0, 0, 0, 0]))
    auto_pad = string_attr(node, "auto_pad", "NOTSET")
    if (
        any(d != 1 for d in node.attrs.get("dilations", [1, 1]))
        or node.attrs.get("ceil_mode", 0)
        or auto_pad not in ("NOTSET", "VALID")
        or len(node.outputs) > 1
    ):
        raise SnnError(
            "MaxPool with dilation, ceil_mode, auto_pad SAME or indices is not supported",
            path=ctx.source,
            node=node_label(node),
            op=node.op,
            hint="export with plain kernel/stride/padding",
        )
    shape = node.inputs[0].shape
    if shape is None or not all(isinstance(d, int) for d in shape[2:]):
        raise SnnError("MaxPool needs static spatial dims", path=ctx.source, node=node_label(node), op=node.op)
    emit = _Emitter(graph, node)
    x = node.inputs[0]
    out = _detach(node)
    for axis, k, r in zip((2, 3), kernel, strides):
        before, after = pads[axis - 2], pads[axis]
        if before or after:  # pad just this axis, so that no Max ever compares two pad values
            spec = [0] * 8
            spec[axis], spec[4 + axis] = before, after
            x = emit.op("Pad", [x, emit.ints(spec), emit.scalar(MAXPOOL_PAD_VALUE)], mode="constant")
        n_out = (shape[axis] + before + after - k) // r + 1
        last = axis == 3
        rows = [
            emit.op(
                "Slice", [x, emit.ints([j]), emit.ints([j + (n_out - 1) * r + 1]), emit.ints([axis]), emit.ints([r])]
            )
            for j in range(k)
        ]
        x = rows[0]
        for j, row in enumerate(rows[1:], start=1):
            x = emit.op("Max", [x, row], out=out if last and j == k - 1 else None)
        if last and k == 1:
            emit.op("Identity", [x], out=out)


def _layernorm(graph: gs.Graph, node: gs.Node, ctx: PassContext) -> None:
    rank = len(node.inputs[0].shape) if node.inputs[0].shape is not None else None
    if rank is None:
        raise SnnError(
            "LayerNormalization needs a known input rank", path=ctx.source, node=node_label(node), op=node.op
        )
    if len(node.outputs) > 1 and any(o.outputs for o in node.outputs[1:]):
        raise SnnError(
            "LayerNormalization mean/inv-std outputs are read; they cannot be converted",
            path=ctx.source,
            node=node_label(node),
            op=node.op,
        )
    axis = int(node.attrs.get("axis", -1)) % rank
    axes = list(range(axis, rank))
    eps = float(node.attrs.get("epsilon", 1e-5))
    emit = _Emitter(graph, node)
    x, scale = node.inputs[0], node.inputs[1]
    bias = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2].name else None
    out = _detach(node)
    u = emit.op("Sub", [x, emit.op("ReduceMean", [x, emit.ints(axes)], keepdims=1)])
    square = emit.op("Mul", [u, u])
    q = emit.op("Add", [emit.op("ReduceMean", [square, emit.ints(axes)], keepdims=1), emit.scalar(eps)])
    normalized = emit.op("Div", [u, emit.op("Sqrt", [q])])
    if bias is None or (constant_value(bias) is not None and not np.any(constant_value(bias))):
        emit.op("Mul", [normalized, scale], out=out)
    else:
        emit.op("Add", [emit.op("Mul", [normalized, scale]), bias], out=out)


def _softmax(graph: gs.Graph, node: gs.Node, ctx: PassContext) -> None:
    rank = len(node.inputs[0].shape) if node.inputs[0].shape is not None else None
    axis = int(node.attrs.get("axis", -1))
    if rank is None:
        raise SnnError("Softmax needs a known input rank", path=ctx.source, node=node_label(node), op=node.op)
    emit = _Emitter(graph, node)
    x = node.inputs[0]
    out = _detach(node)
    e = emit.op("Exp", [x])
    emit.op("Div", [e, emit.op("ReduceSum", [e, emit.ints([axis % rank])], keepdims=1)], out=out)


def _is_matmul_of_activations(node: gs.Node) -> bool:
    return node.op == "MatMul" and len(node.inputs) == 2 and all(is_activation(t) for t in node.inputs)


def _matmul_of_activations(graph: gs.Graph, node: gs.Node, ctx: PassContext) -> None:
    """X (…×N×K) · Y (…×K×M) → ReduceSum_K(Unsqueeze(X, -1) · Unsqueeze(Y, -3)): N·K·M products."""
    ranks = [len(t.shape) if t.shape is not None else None for t in node.inputs]
    if any(rank is None for rank in ranks):
        raise SnnError(
            "MatMul of two activations needs known input ranks", path=ctx.source, node=node_label(node), op=node.op
        )
    if any(rank < 2 for rank in cast("list[int]", ranks)):  # none is None (refused above)
        raise SnnError(
            f"MatMul of two activations needs inputs of rank >= 2 (got ranks {ranks})",
            path=ctx.source,
            node=node_label(node),
            op=node.op,
            hint="reshape a vector operand to a matrix before the matmul",
        )
    emit = _Emitter(graph, node)
    x, y = node.inputs
    out = _detach(node)
    columns = emit.op("Unsqueeze", [x, emit.ints([-1])])  # [..., N, K, 1]
    rows = emit.op("Unsqueeze", [y, emit.ints([-3])])  # [..., 1, K, M]
    products = emit.op("Mul", [columns, rows])  # [..., N, K, M]
    emit.op("ReduceSum", [products, emit.ints([-2])], out=out, keepdims=0)
