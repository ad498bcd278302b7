"""Rewriter: chains of per-channel `Mul`/`Add` by constants → one `BatchNormalization`.

Idiom: tf2onnx writes Keras BatchNormalization as Mul([1,C,1,1]) then Add([1,C,1,1]); input
normalization and biases give lone per-channel Mul or Add. A constant is per-channel when,
right-aligned to the rank r >= 2 of the data x, it is 1 on every axis but axis 1, where it is
1 or C = x.shape[1] (so [C] for r = 2, [1,C,1,1] or [C,1,1] for r = 4; scalars count too).
A maximal chain of such nodes, each the only reader of the previous one's output, becomes
BatchNormalization(x, scale=s, B=b, mean=0, var=1, epsilon=0) with y = s·x + b composed in
float64, so that fold_bn has one node to fold. Requires float x with static C (shapes
inferred).
"""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from onnx_snn.passes.base import PassContext
from onnx_snn.passes.graph_utils import const, constant_value, fresh_name, is_float, replace_uses, sole_reader


def apply(graph: gs.Graph, ctx: PassContext) -> int:
    """Replace every maximal per-channel affine chain; return how many BatchNormalizations were made."""
    count = 0
    for node in list(graph.nodes):
        if node.outputs and _affine_step(node, None) is not None:
            _replace_chain(graph, node)
            count += 1
    return count


def _affine_step(node: gs.Node, data: gs.Tensor | None) -> tuple[gs.Tensor, np.ndarray] | None:
    """(data input, per-channel constant as [C]) if `node` is a per-channel Mul/Add (reading `data` if given)."""
    if node.op not in ("Mul", "Add") or len(node.inputs) != 2:
        return None
    for x, c in (node.inputs, node.inputs[::-1]):
        value = constant_value(c)
        if value is None or constant_value(x) is not None or (data is not None and x is not data):
            continue
        vector = per_channel(value, x)
        if vector is not None:
            return x, vector
    return None


def per_channel(value: np.ndarray, x: gs.Tensor) -> np.ndarray | None:
    """`value` as a float64 [C] vector if it broadcasts over float `x` along axis 1 only, else None."""
    shape = x.shape
    if not is_float(x) or not shape or len(shape) < 2 or not isinstance(shape[1], int) or value.ndim > len(shape):
        return None
    channels = shape[1]
    aligned: np.ndarray = value.reshape((1,) * (len(shape) - value.ndim) + value.shape)
    if any(d != 1 for i, d in enumerate(aligned.shape) if i != 1) or aligned.shape[1] not in (1, channels):
        return None
    return np.broadcast_to(aligned.reshape(-1).astype(np.float64), (channels,))


def _replace_chain(graph: gs.Graph, head: gs.Node) -> None:
    first = _affine_step(head, None)
    assert first is not None  # apply calls this for chain heads only
    x, _ = first
    scale, shift = np.ones(x.shape[1]), np.zeros(x.shape[1])
    node, data, chain = head, x, []
    while node is not None:
        step = _affine_step(node, data)
        if step is None:
            break
        vector = step[1]
        if node.op == "Mul":
            scale, shift = scale * vector, shift * vector
        else:
            shift = shift + vector
        chain.append(node)
        data = node.outputs[0]
        node = sole_reader(graph, data)
    dtype = np.dtype(x.dtype)
    out = gs.Variable(fresh_name(f"{head.name or 'affine'}_bn"), dtype=x.dtype, shape=x.shape)
    params = [scale, shift, np.zeros_like(scale), np.ones_like(scale)]
    graph.nodes.append(
        gs.Node(
            "BatchNormalization",
            name=head.name or fresh_name("affine"),
            attrs={"epsilon": 0.0},
            inputs=[
                x,
                *(const(f"{head.name}_{p}", v.astype(dtype)) for p, v in zip(("scale", "bias", "mean", "var"), params)),
            ],
            outputs=[out],
        )
    )
    result = chain[-1].outputs[0]
    for node in chain:
        node.outputs.clear()
        node.inputs.clear()
    replace_uses(graph, result, out)
