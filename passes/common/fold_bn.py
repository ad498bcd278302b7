"""fold_bn: fold every BatchNormalization into the linear op before it, or make it a Mul + Add.

With k = scale / sqrt(var + epsilon) and d = B - mean·k, BN(y) = k·y + d per channel (axis 1).
A BN whose input is written by a Conv (any group count: output channels are axis 0 of the
weight), a Gemm with constant B (and C) and transA=0, or a rank-2 MatMul with a constant
weight, and that is the only reader of that output, is folded into the op's constants:
W' = W·k along the output channels, b' = b·k + d (a MatMul becomes a canonical Gemm). Folding
is computed in float64 and rounded once to the weights' dtype. Any other BN becomes
Mul(x, k) then Add(·, d) with constants of shape [C, 1, ..., 1] (broadcasting over axis 1);
a factor of all ones or an offset of all zeros is left out.
"""

from __future__ import annotations

from typing import cast

import numpy as np
import onnx_graphsurgeon as gs

from onnx_snn.passes.base import PassContext, declare, require
from onnx_snn.passes.graph_utils import (
    bias_vector,
    const,
    constant_value,
    fresh_name,
    node_error,
    refresh_shapes,
    replace_uses,
    set_input,
    sole_reader,
)

SPEC = declare("fold_bn", needs={"canonical"}, provides={"bn_folded"})

DEFAULT_EPSILON = 1e-5


def postcondition(graph: gs.Graph, ctx: PassContext) -> None:
    """No BatchNormalization left."""
    require(not any(n.op == "BatchNormalization" for n in graph.nodes), "a BatchNormalization is left")


def run(graph: gs.Graph, ctx: PassContext) -> gs.Graph:
    """Pre: canonical graph (inference-mode BN with constant parameters). Post: no
    BatchNormalization; each is folded into the Conv/Gemm/MatMul before it or is a per-channel
    Mul + Add."""
    norms = [n for n in graph.nodes if n.op == "BatchNormalization"]
    if any(n.inputs[0].shape is None for n in norms):
        refresh_shapes(graph)
    for bn in norms:
        factor, offset = _affine(graph, bn, ctx)
        linear = _foldable_producer(graph, bn)
        folder = _FOLDERS.get(linear.op) if linear is not None else None
        if folder is not None and folder(linear, factor, offset):
            assert linear is not None  # a folder is only looked up for a producer
            _replace_output(graph, bn, linear.outputs[0])
        else:
            _to_mul_add(graph, bn, factor, offset, ctx)
    graph.cleanup().toposort()
    return graph


def _affine(graph: gs.Graph, bn: gs.Node, ctx: PassContext) -> tuple[np.ndarray, np.ndarray]:
    """(k, d) in float64 with BN(y) = k·y + d per channel.

    SnnError for training mode (training_mode=1, or its running statistics are read) and for
    parameters that are not constants.
    """
    statistics_read = any(t.outputs or t in graph.outputs for t in bn.outputs[1:])
    if bn.attrs.get("training_mode", 0) or statistics_read:
        raise node_error(
            ctx,
            bn,
            "BatchNormalization is in training mode (it updates running statistics)",
            hint="export the model in eval mode (model.eval() / training=False)",
        )
    params = [constant_value(t) for t in bn.inputs[1:5]]
    if len(params) != 4 or any(p is None for p in params):
        raise node_error(
            ctx,
            bn,
            "BatchNormalization scale, B, mean and var must be constants",
            hint="export the model in eval mode with constant folding enabled",
        )
    scale, bias, mean, var = (p.astype(np.float64).reshape(-1) for p in cast("list[np.ndarray]", params))
    factor = scale / np.sqrt(var + float(bn.attrs.get("epsilon", DEFAULT_EPSILON)))
    return factor, bias - mean * factor


def _foldable_producer(graph: gs.Graph, bn: gs.Node) -> gs.Node | None:
    """The node writing the BN's input if the BN is its output's only reader, else None."""
    data = bn.inputs[0]
    node = data.inputs[0] if data.inputs else None
    if node is None or sole_reader(graph, data) is not bn or len(node.outputs) != 1:
        return None
    return node


def _fold_conv(conv: gs.Node, factor: np.ndarray, offset: np.ndarray) -> bool:
    weight, bias = constant_value(conv.inputs[1]), bias_vector(conv, factor.size)
    if weight is None or bias is None or weight.shape[0] != factor.size:
        return False
    k = factor.reshape((-1,) + (1,) * (weight.ndim - 1))
    _set_constants(conv, weight, weight * k, bias * factor + offset)
    return True


def _fold_gemm(gemm: gs.Node, factor: np.ndarray, offset: np.ndarray) -> bool:
    weight, bias = constant_value(gemm.inputs[1]), bias_vector(gemm, factor.size)
    if weight is None or bias is None or weight.ndim != 2 or gemm.attrs.get("transA", 0):
        return False
    trans_b = gemm.attrs.get("transB", 0)
    if weight.shape[0 if trans_b else 1] != factor.size:
        return False
    new_weight = weight * (factor[:, None] if trans_b else factor[None, :])
    _set_constants(gemm, weight, new_weight, float(gemm.attrs.get("beta", 1.0)) * bias * factor + offset)
    gemm.attrs["beta"] = 1.0
    return True


def _fold_matmul(matmul: gs.Node, factor: np.ndarray, offset: np.ndarray) -> bool:
    weight, x = constant_value(matmul.inputs[1]), matmul.inputs[0]
    if weight is None or weight.ndim != 2 or weight.shape[1] != factor.size or not x.shape or len(x.shape) != 2:
        return False
    matmul.op = "Gemm"
    matmul.attrs = {"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 1}
    _set_constants(matmul, weight, (weight * factor[None, :]).T, offset)
    return True


_FOLDERS = {"Conv": _fold_conv, "Gemm": _fold_gemm, "MatMul": _fold_matmul}


def _set_constants(node: gs.Node, weight: np.ndarray, new_weight: np.ndarray, new_bias: np.ndarray) -> None:
    """Give `node` fresh weight (input 1) and bias (input 2) initializers in the weight's dtype.

    Fresh initializers leave an original that other nodes share untouched.
    """
    node.inputs[1] = const(f"{node.name}_folded_weight", np.ascontiguousarray(new_weight.astype(weight.dtype)))
    set_input(node, 2, const(f"{node.name}_folded_bias", new_bias.astype(weight.dtype)))


def _to_mul_add(graph: gs.Graph, bn: gs.Node, factor: np.ndarray, offset: np.ndarray, ctx: PassContext) -> None:
    """Replace `bn` by Mul(x, k) + Add(·, d) with constants of shape [C, 1, ...] broadcasting over axis 1."""
    x = bn.inputs[0]
    if not x.shape or len(x.shape) < 2:
        raise node_error(
            ctx,
            bn,
            "BatchNormalization input has unknown rank",
            hint="run canonicalize first so that shapes are inferred",
        )
    shape = (factor.size,) + (1,) * (len(x.shape) - 2)
    dtype = np.dtype(x.dtype) if x.dtype is not None else np.dtype(np.float32)
    current = x
    for op, value, trivial in (("Mul", factor, 1.0), ("Add", offset, 0.0)):
        if np.all(value == trivial):
            continue
        name = fresh_name(f"{bn.name or 'bn'}_{op.lower()}")
        out = gs.Variable(name, dtype=x.dtype, shape=x.shape)
        operand = const(name, value.reshape(shape).astype(dtype))
        graph.nodes.append(gs.Node(op, name=name, inputs=[current, operand], outputs=[out]))
        current = out
    _replace_output(graph, bn, current)


def _replace_output(graph: gs.Graph, bn: gs.Node, tensor: gs.Tensor) -> None:
    """Make readers of the BN's output read `tensor`, and detach the BN."""
    result = bn.outputs[0]
    bn.outputs.clear()
    bn.inputs.clear()
    replace_uses(graph, result, tensor)
