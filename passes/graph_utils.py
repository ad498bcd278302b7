"""Small helpers over onnx-graphsurgeon graphs shared by the passes."""

from __future__ import annotations

import itertools
from typing import Sequence

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from onnx_snn.errors import SnnError
from onnx_snn.ir.function_parts import SNN_DOMAIN
from onnx_snn.passes.base import PassContext

#: the ONNX opset of every compiled model (functions must import the model's version).
TARGET_OPSET = 21
#: ops that only move elements (reshape or permute them): they carry spike times unchanged (TTFS)
#: and commute with a per-layer scale (normalize)
LAYOUT_OPS = ("Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze")

_counter = itertools.count()


def fresh_name(base: str) -> str:
    """A tensor or node name that no importer produces."""
    return f"{base}__snn{next(_counter)}"


def producer(tensor: gs.Tensor) -> gs.Node | None:
    """The node that writes `tensor`, or None for graph inputs and constants."""
    return tensor.inputs[0] if tensor.inputs else None


def consumers(tensor: gs.Tensor) -> list[gs.Node]:
    """The nodes that read `tensor`."""
    return list(tensor.outputs)


def constant_value(tensor: gs.Tensor | None) -> np.ndarray | None:
    """The value of a constant tensor (an initializer or a Constant node's output), else None."""
    if tensor is None:
        return None
    if isinstance(tensor, gs.Constant):
        return np.asarray(tensor.values)
    node = producer(tensor)
    if node is not None and node.op == "Constant" and "value" in node.attrs:
        value = node.attrs["value"]
        return np.asarray(value.values if isinstance(value, gs.Constant) else value)
    return None


def node_axes(node: gs.Node, index: int) -> frozenset[int] | None:
    """The axes `node` works along, as non-negative indices of its first input: its `axes`
    attribute, else its constant input `index` (ReduceMean from opset 18, Slice); None when
    neither is known, or the input's rank is unknown."""
    shape = node.inputs[0].shape if node.inputs else None
    axes = node.attrs.get("axes")
    if axes is None and len(node.inputs) > index:
        axes = constant_value(node.inputs[index])
    if shape is None or axes is None:
        return None
    return frozenset(int(a) % len(shape) for a in np.ravel(axes))


def const(name: str, value: np.ndarray | float | int | Sequence, dtype=None) -> gs.Constant:
    """A new initializer holding `value`."""
    return gs.Constant(fresh_name(name), np.asarray(value, dtype=dtype))


def replace_uses(graph: gs.Graph, old: gs.Tensor, new: gs.Tensor) -> None:
    """Make every reader of `old` (nodes and graph outputs) read `new` instead."""
    for node in consumers(old):
        for i, tensor in enumerate(node.inputs):  # gs lists do not support slice assignment
            if tensor is old:
                node.inputs[i] = new
    if old in graph.outputs:
        if isinstance(new, gs.Variable) and producer(new) is not None and new not in graph.outputs:
            index = graph.outputs.index(old)
            new.name, old.name = old.name, fresh_name(old.name)
            if new.dtype is None:
                new.dtype = old.dtype
            graph.outputs[index] = new
        else:
            ident = graph.layer(
                op="Identity", inputs=[new], outputs=[gs.Variable(old.name, dtype=old.dtype, shape=old.shape)]
            )[0]
            old.name = fresh_name(old.name)
            graph.outputs[graph.outputs.index(old)] = ident


def bypass(graph: gs.Graph, node: gs.Node) -> None:
    """Remove a node whose first output equals its first input (Identity, Dropout at inference)."""
    src, dst = node.inputs[0], node.outputs[0]
    node.outputs.clear()
    replace_uses(graph, dst, src)
    node.inputs.clear()


def string_attr(node: gs.Node, name: str, default: str) -> str:
    """The string attribute `name` of `node` (onnx-graphsurgeon may hold it as bytes), else `default`."""
    value = node.attrs.get(name, default)
    return value.decode() if isinstance(value, bytes) else value


def is_activation(tensor: gs.Tensor) -> bool:
    """True for a named, non-constant, non-integer tensor: data that flows between layers
    (not a weight, a shape or an index)."""
    return (
        isinstance(tensor, gs.Variable)
        and bool(tensor.name)
        and constant_value(tensor) is None
        and tensor.dtype not in (np.int64, np.int32, np.bool_)
    )


def static_shape(tensor: gs.Tensor) -> tuple[int, ...] | None:
    """The tensor's non-batch dims when all are known integers, else None."""
    shape = tensor.shape
    if shape is None or len(shape) == 0:
        return None
    rest = shape[1:]
    if all(isinstance(d, int) and d >= 0 for d in rest):
        return tuple(rest)
    return None


def node_label(node: gs.Node) -> str:
    """The node's name, or a description of it when the exporter left it unnamed."""
    return node.name or f"<unnamed {node.op} writing {node.outputs[0].name if node.outputs else '?'}>"


def node_error(ctx: PassContext, node: gs.Node, message: str, hint: str | None = None) -> SnnError:
    """The SnnError that refuses `node` of the model being compiled: one line naming ctx.source,
    the node (node_label) and its op (`domain::op` outside the default ONNX domain), then
    `message` and, when given, `hint` (what to do about it)."""
    op = node.op if in_default_domain(node) else f"{node.domain}::{node.op}"
    return SnnError(message, path=ctx.source, node=ctx.node_labels.get(node.name) or node_label(node), op=op, hint=hint)


def refresh_shapes(graph: gs.Graph) -> None:
    """Re-run ONNX shape inference (data_prop=True) and write the results onto `graph` in place.

    The shapes of all variables except the graph inputs are dropped first, so that shapes made
    stale by a rewrite never conflict with the new ones; dtypes are kept and then updated. Tensor
    objects stay the same, so callers may keep references across the call.
    """
    for tensor in graph.tensors().values():
        if isinstance(tensor, gs.Variable) and tensor not in graph.inputs:
            tensor.shape = None
    model = onnx.shape_inference.infer_shapes(gs.export_onnx(graph, do_type_check=False), data_prop=True)
    tensors = graph.tensors()
    for info in [*model.graph.value_info, *model.graph.output]:
        tensor = tensors.get(info.name)
        if not isinstance(tensor, gs.Variable) or not info.type.HasField("tensor_type"):
            continue
        tensor_type = info.type.tensor_type
        if tensor_type.elem_type:
            tensor.dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor_type.elem_type)
        if tensor_type.HasField("shape"):
            tensor.shape = [
                d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tensor_type.shape.dim
            ]


def is_float(tensor: gs.Tensor) -> bool:
    """Whether the tensor's dtype is known and a floating-point type."""
    try:
        return tensor.dtype is not None and np.issubdtype(np.dtype(tensor.dtype), np.floating)
    except TypeError:  # an ONNX-only type such as float8 that numpy does not know
        return False


def in_default_domain(node: gs.Node) -> bool:
    """Whether the node belongs to the default ONNX domain ("" or "ai.onnx")."""
    return (node.domain or "") in ("", "ai.onnx")


def bias_vector(node: gs.Node, channels: int) -> np.ndarray | None:
    """Input 2 (the bias) as a float64 [channels] vector, zeros when absent; None if variable or per-row."""
    if len(node.inputs) <= 2 or not node.inputs[2].name:
        return np.zeros(channels)
    value = constant_value(node.inputs[2])
    if value is None or value.size not in (1, channels) or (value.ndim == 2 and value.shape[0] != 1):
        return None
    return np.broadcast_to(value.astype(np.float64).reshape(-1), (channels,))


def add_encoder(graph: gs.Graph, op: str, inputs: list[gs.Tensor], output: str, dtype, **attrs) -> gs.Variable:
    """Append the snn-domain encoder `op` of the graph input inputs[0], named `<input>_encoder`
    and reading `inputs`; return its output, a new tensor named `output` of `dtype` shaped like
    the input (the caller makes the input's readers read it)."""
    x = inputs[0]
    out = gs.Variable(fresh_name(output), dtype=dtype, shape=x.shape)
    graph.nodes.append(
        gs.Node(op, name=fresh_name(f"{x.name}_encoder"), domain=SNN_DOMAIN, inputs=inputs, outputs=[out], attrs=attrs)
    )
    return out


def set_input(node: gs.Node, index: int, tensor: gs.Tensor) -> None:
    """Make `tensor` input `index` of `node`, appending it when the node has exactly `index` inputs."""
    if index < len(node.inputs):
        node.inputs[index] = tensor
    elif index == len(node.inputs):
        node.inputs.append(tensor)
    else:
        raise IndexError(f"{node.op} has {len(node.inputs)} inputs; cannot set input {index}")


def silu_gate(graph: gs.Graph, node: gs.Node) -> gs.Node | None:
    """The Sigmoid of a canonical SiLU `node` = Mul(u, Sigmoid(u)) (see rewrites/silu), read by
    nothing else; None when `node` is no such Mul."""
    if node.op != "Mul" or len(node.inputs) != 2 or not node.inputs[1].inputs:
        return None
    gate = node.inputs[1].inputs[0]
    if gate.op != "Sigmoid" or gate.inputs[0] is not node.inputs[0] or sole_reader(graph, node.inputs[1]) is not node:
        return None
    return gate


def sole_reader(graph: gs.Graph, tensor: gs.Tensor) -> gs.Node | None:
    """The only node that reads `tensor`, or None when it has no or several readers or is a graph output."""
    return tensor.outputs[0] if len(tensor.outputs) == 1 and tensor not in graph.outputs else None


def time_variant_tensors(graph: gs.Graph) -> set[str]:
    """Names of the tensors that depend on the output of an `snn` op (a neuron, encoder or pool),
    and so change from step to step; `graph` in topological order."""
    variant: set[str] = set()
    for node in graph.nodes:
        if node.domain == SNN_DOMAIN or any(t.name in variant for t in node.inputs):
            variant.update(o.name for o in node.outputs)
    return variant
