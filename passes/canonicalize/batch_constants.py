"""Constants fixed to the export batch, freed or refused (a part of batch_reshape, which runs it).

Idiom: an exporter that traced with a fixed batch E folds batch-sized tensors into constants:
torch dynamo writes `cls.expand(x.shape[0], -1, -1)` as the [E, 1, D] constant (the [1, 1, D]
parameter itself when E = 1), torch legacy without dynamic axes as Expand(cls, [E, 1, 1]) (folded
to a constant), `x.expand(E, n, d)` keeps E in the Expand's shape, and a mask built with
`torch.zeros(E, ...)` is an [E, ...] constant. Once free_batch makes the inputs' batch symbolic,
such a constant meets the batch at a node that only runs at batch E:
  * a Concat (not along axis 0) of batched data and a constant whose axis 0 is E: the constant
    becomes Expand(its first slice, Concat(Shape(data, start=0, end=1), the other dims));
  * for E >= 2, a broadcasting op (Add, Mul, Where, ...) of batched data and a constant of the
    same rank whose axis 0 is E: the constant becomes its first slice (size 1 broadcasts);
  * for E >= 2, an Expand of batched data to a constant shape whose entry for axis 0 is E: that
    entry becomes 1 (the data's batch broadcasts).
Each is exact at batch E when the constant's slices along axis 0 are all equal (a tensor expanded
to the batch); a constant whose slices differ encodes per-sample values, and `refuse` names the
node that meets it. An export batch of 1 cannot be told from broadcasting in the other ops, so
it is looked for only in Concat.
"""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from onnx_snn.passes.base import PassContext
from onnx_snn.passes.canonicalize.fold_shapes import BROADCASTING
from onnx_snn.passes.graph_utils import const, constant_value, fresh_name, is_float, node_error

HINT = "export the model with a dynamic batch axis (torch: dynamic_axes= or dynamic_shapes=)"


def free(graph: gs.Graph, export_batch: int | None, ctx: PassContext) -> int:
    """Free every constant fixed to the export batch that meets the batch (see the module
    docstring); return how many; SnnError for one whose slices along axis 0 differ."""
    if not export_batch:
        return 0
    count = 0
    for node in list(graph.nodes):
        if node.op == "Concat":
            count += _free_concat(graph, node, export_batch, ctx)
        elif export_batch >= 2 and node.op in BROADCASTING:
            count += _free_broadcast(node, export_batch, ctx)
        elif export_batch >= 2 and node.op == "Expand":
            count += _free_expand(node, export_batch)
    return count


def refuse(graph: gs.Graph, symbol: str, export_batch: int | None, ctx: PassContext) -> None:
    """Raise SnnError for a node that meets the batch with a tensor fixed to the export batch size
    and was not freed: it reads a tensor whose axis 0 is the batch symbol, yet shape inference gives
    its float output the export batch on axis 0. An export batch of 1 cannot be told from
    broadcasting, so is not checked."""
    if not export_batch or export_batch < 2:
        return
    for node in graph.nodes:
        out_shape = node.outputs[0].shape if node.outputs else None
        reads_batch = any(t.shape and t.shape[0] == symbol for t in node.inputs)
        if reads_batch and out_shape and out_shape[0] == export_batch and is_float(node.outputs[0]):
            raise node_error(
                ctx,
                node,
                f"{node.op} meets the batch with a tensor whose axis 0 is fixed to the batch size "
                f"{export_batch} the model was exported with",
                hint=HINT,
            )


def _batched(tensor: gs.Tensor, rank: int) -> bool:
    """Data of `rank` whose axis 0 is not a fixed size (the batch, or a dim merged with it)."""
    return (
        not isinstance(tensor, gs.Constant)
        and tensor.shape is not None
        and len(tensor.shape) == rank
        and not isinstance(tensor.shape[0], int)
    )


def _first_slice(node: gs.Node, value: np.ndarray, export_batch: int, ctx: PassContext) -> np.ndarray:
    """value[:1] when every slice along axis 0 equals it; else SnnError naming `node`."""
    core = value[:1]
    if not np.array_equal(np.broadcast_to(core, value.shape), value):
        raise node_error(
            ctx,
            node,
            f"{node.op} meets the batch with a constant whose axis 0 is the batch size {export_batch} "
            "the model was exported with and whose samples differ",
            hint=HINT,
        )
    return core


def _batch_sized_constants(node: gs.Node, rank: int, export_batch: int) -> list[tuple[int, gs.Tensor, np.ndarray]]:
    """(input index, tensor, value) of each constant input of `node` of rank `rank` whose first
    axis has the export batch size."""
    found = []
    for index, tensor in enumerate(node.inputs):
        value = constant_value(tensor)
        if value is not None and value.ndim == rank and value.shape[0] == export_batch:
            found.append((index, tensor, value))
    return found


def _free_concat(graph: gs.Graph, node: gs.Node, export_batch: int, ctx: PassContext) -> int:
    rank = next((len(t.shape) for t in node.inputs if t.shape is not None), None)
    if rank is None or rank < 2 or int(node.attrs.get("axis", 0)) % rank == 0:
        return 0
    data = next((t for t in node.inputs if _batched(t, rank)), None)
    if data is None:
        return 0
    count = 0
    for index, tensor, value in _batch_sized_constants(node, rank, export_batch):
        core = _first_slice(node, value, export_batch, ctx)
        dim = gs.Variable(fresh_name(f"{data.name}_batch"), dtype=np.int64, shape=[1])
        graph.nodes.append(gs.Node("Shape", fresh_name(f"{node.name}_batch"), {"start": 0, "end": 1}, [data], [dim]))
        target = gs.Variable(fresh_name(f"{node.name}_expand_shape"), dtype=np.int64, shape=[rank])
        rest = const(f"{node.name}_expand_rest", np.array(core.shape[1:], dtype=np.int64))
        graph.nodes.append(
            gs.Node("Concat", fresh_name(f"{node.name}_expand_shape"), {"axis": 0}, [dim, rest], [target])
        )
        expanded = gs.Variable(fresh_name(f"{tensor.name}_expanded"), dtype=core.dtype)
        graph.nodes.append(
            gs.Node(
                "Expand",
                fresh_name(f"{node.name}_expand"),
                inputs=[const(tensor.name, core), target],
                outputs=[expanded],
            )
        )
        node.inputs[index] = expanded
        count += 1
    return count


def _free_broadcast(node: gs.Node, export_batch: int, ctx: PassContext) -> int:
    out_shape = node.outputs[0].shape if node.outputs else None
    if not out_shape:
        return 0
    rank = len(out_shape)
    if not any(_batched(t, rank) for t in node.inputs):
        return 0
    count = 0
    for index, tensor, value in _batch_sized_constants(node, rank, export_batch):
        node.inputs[index] = const(tensor.name, _first_slice(node, value, export_batch, ctx))
        count += 1
    return count


def _free_expand(node: gs.Node, export_batch: int) -> int:
    data, shape = node.inputs[0], constant_value(node.inputs[1])
    if shape is None or shape.ndim != 1 or not _batched(data, len(shape)) or int(shape[0]) != export_batch:
        return 0
    node.inputs[1] = const(f"{node.name}_shape", np.concatenate([[1], shape[1:]]).astype(np.int64))
    return 1
