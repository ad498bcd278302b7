"""Rewriter: make every Reshape free in the batch axis; flatten idioms become Flatten(axis=1).

Idioms:
  (a) torch dynamo's fixed-batch Reshape, e.g. Reshape(x, [2, 128]) or [2, -1];
  (b) tf2onnx's flatten, Reshape(x, Cast(Concat(Slice(Cast(Gather(Shape(y)))), [-1]))), and
      torch legacy's view(x.size(0), -1), Reshape(x, Concat(Unsqueeze(Gather(Shape(y), 0)), [-1]));
  (c) tf2onnx's Dense on 3-D input, Reshape(x, [-1, K]) → MatMul → Reshape(·, Concat(Gather(Shape(x)), [N]));
  (d) a fixed-batch export's Reshape with a -1 after the export batch, e.g. Swin's window_reverse
      Reshape(windows [nW*B, w*w, C], [1, 4, 4, w, w, -1]): when the shape is otherwise refused,
      the -1 stands for the dim it has at the export batch (shape_samples at that batch).
The shape operand is evaluated symbolically (Shape, Gather, Slice, Concat, Cast, Unsqueeze,
Squeeze over constants), with each entry a static int, the runtime batch, or unknown (fold_shapes,
which runs before, has made most of them constants already).
The same loop frees the other constants fixed to the export batch where they meet the batch
(batch_constants: a Concat with a batch-sized constant, and for an export batch of 2 or more,
broadcasting ops and Expand), so that one rewrite can free the batch of the next.

Post-condition, for a Reshape whose input's axis 0 is symbolic (batch-dependent):
  * it is Flatten(axis=1) when its input has the graph's batch on axis 0 and static other
    dims, and it keeps the batch and flattens everything else;
  * else its shape is a constant whose entry 0 is 0 (copy the batch; allowzero=0) when it
    keeps the batch, or -1 when the batch is merged into axis 0 and the other entries are
    static;
  * or its shape is still computed at run time from Shape (when an entry is unknown).
A Reshape to a fixed shape that cannot be made batch-free this way is an SnnError naming it,
as is a node that combines the batch with a tensor fixed to the batch the model was exported with
and that batch_constants could not free (batch_constants.refuse).
"""

from __future__ import annotations

import math

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from onnx_snn.passes.base import PassContext
from onnx_snn.passes.canonicalize import batch_constants, shape_samples
from onnx_snn.passes.canonicalize.free_batch import batch_symbol
from onnx_snn.passes.graph_utils import const, constant_value, node_error, producer, refresh_shapes

#: entries of a symbolically evaluated shape besides static ints
BATCH = "<batch>"
UNKNOWN = "<unknown>"

_INT_TYPES = {
    onnx.TensorProto.INT64,
    onnx.TensorProto.INT32,
    onnx.TensorProto.INT16,
    onnx.TensorProto.INT8,
    onnx.TensorProto.UINT64,
    onnx.TensorProto.UINT32,
    onnx.TensorProto.UINT16,
    onnx.TensorProto.UINT8,
}


def apply(graph: gs.Graph, ctx: PassContext) -> int:
    """Rewrite Reshapes, and free the constants fixed to the export batch (batch_constants), until
    none changes (one rewrite can free the batch of a later one); then refuse what is left."""
    symbol = batch_symbol(graph)
    if symbol is None:
        return 0
    export_batch = ctx.state.export_batch_size
    at_export = _shapes_at(graph, export_batch)
    total = 0
    while True:
        refresh_shapes(graph)
        count = sum(
            _rewrite(node, symbol, export_batch, ctx, at_export) for node in graph.nodes if node.op == "Reshape"
        )
        count += batch_constants.free(graph, export_batch, ctx)
        total += count
        if not count:
            break
        graph.cleanup().toposort()
    batch_constants.refuse(graph, symbol, export_batch, ctx)
    return total


def _shapes_at(graph: gs.Graph, export_batch: int | None) -> dict[str, tuple[int, ...]]:
    """The static shape of every Reshape output at the export batch (the graph runs at that batch)."""
    if not export_batch:
        return {}
    walk = shape_samples.sample(graph, (export_batch,)).walks[0]
    shapes = {}
    for node in graph.nodes:
        shape = walk.shape(node.outputs[0].name) if node.op == "Reshape" else None
        if shape is not None:
            shapes[node.outputs[0].name] = shape
    return shapes


def evaluate_shape(tensor: gs.Tensor, symbol: str) -> np.ndarray | None:
    """The value of an integer shape tensor as an object array of ints, BATCH or UNKNOWN.

    BATCH stands for axis 0 of a tensor whose axis 0 is `symbol`. None when the tensor is
    computed by an op this evaluator does not know.
    """
    value = constant_value(tensor)
    if value is not None:
        return value.astype(object) if np.issubdtype(value.dtype, np.integer) else None
    node = producer(tensor)
    if node is None:
        return None
    if node.op == "Shape":
        shape = node.inputs[0].shape
        if shape is None:
            return None
        dims = [
            d if isinstance(d, int) else (BATCH if i == 0 and d == symbol else UNKNOWN) for i, d in enumerate(shape)
        ]
        return np.array(dims[slice(node.attrs.get("start", 0), node.attrs.get("end"))], dtype=object)
    if node.op in ("Identity", "Cast") and node.attrs.get("to", onnx.TensorProto.INT64) in _INT_TYPES:
        return evaluate_shape(node.inputs[0], symbol)
    values = [
        evaluate_shape(t, symbol) if i == 0 or node.op == "Concat" else constant_value(t)
        for i, t in enumerate(node.inputs)
    ]
    args = [a for a in values if a is not None]
    if len(args) != len(values):
        return None
    if node.op == "Gather" and node.attrs.get("axis", 0) == 0:
        return np.array(np.take(args[0], args[1].astype(np.int64), axis=0), dtype=object)
    if node.op == "Concat" and node.attrs.get("axis") in (0, -1):
        return np.concatenate([np.atleast_1d(a) for a in args])
    if node.op == "Unsqueeze":
        return np.expand_dims(args[0], tuple(int(a) for a in args[1]))
    if node.op == "Squeeze" and args[0].size == 1:
        return args[0].reshape(())
    if node.op == "Slice" and args[0].ndim == 1:
        starts, ends, *optional = args[1:]
        axes, steps = (list(optional) + [[0], [1]][len(optional) :])[:2]
        if [int(a) for a in axes] in ([0], [-1]):
            return args[0][int(starts[0]) : int(ends[0]) : int(steps[0])]
    return None


def _rewrite(
    node: gs.Node, symbol: str, export_batch: int | None, ctx: PassContext, at_export: dict[str, tuple[int, ...]]
) -> bool:
    """Make one Reshape batch-free; return whether it changed. `at_export`: Reshape output shapes at
    the export batch, which stand in for a -1 after the head when the shape is otherwise refused."""
    data, shape_tensor = node.inputs[0], node.inputs[1]
    in_shape = data.shape
    if not in_shape or isinstance(in_shape[0], int):
        return False
    entries = _resolve(evaluate_shape(shape_tensor, symbol), in_shape, symbol, node.attrs.get("allowzero", 0))
    if entries is None or BATCH in entries[1:]:
        return False
    keeps_batch = in_shape[0] == symbol
    rest_in = in_shape[1:]
    flat = math.prod(rest_in) if all(isinstance(d, int) for d in rest_in) else None
    target = _target(entries, keeps_batch, flat, export_batch)
    exported = at_export.get(node.outputs[0].name)
    if target is None and -1 in entries[1:] and exported is not None and len(exported) == len(entries):
        entries = [entries[0], *exported[1:]]
        target = _target(entries, keeps_batch, flat, export_batch)
    if target == "keep":
        return False
    if target == "flatten":
        node.op = "Flatten"
        node.inputs.pop()  # the shape operand; Flatten reads only the data
        node.attrs = {"axis": 1}
        return True
    if target is None:
        raise node_error(
            ctx,
            node,
            f"Reshape to the fixed shape {[int(e) if e is not BATCH else 'batch' for e in entries]} "
            "encodes the batch size the model was exported with, and the batch axis cannot be freed",
            hint="export the model with a dynamic batch axis (torch: dynamic_axes= or dynamic_shapes=)",
        )
    current = constant_value(shape_tensor)
    if current is not None and list(current) == target and not node.attrs.get("allowzero", 0):
        return False
    node.inputs[1] = const(f"{node.name}_shape", np.array(target, dtype=np.int64))
    node.attrs.pop("allowzero", None)
    return True


def _resolve(entries: np.ndarray | None, in_shape: list, symbol: str, allowzero: int) -> list | None:
    """Entries with copy-zeros resolved against the input shape; None if any stays unknown."""
    if entries is None or entries.ndim != 1:
        return None
    resolved = []
    for i, entry in enumerate(entries):
        if entry is not BATCH and entry is not UNKNOWN and int(entry) == 0 and not allowzero:
            entry = in_shape[i] if i < len(in_shape) else UNKNOWN
            entry = BATCH if (i == 0 and entry == symbol) else (entry if isinstance(entry, int) else UNKNOWN)
        if entry is UNKNOWN:
            return None
        resolved.append(entry if entry is BATCH else int(entry))
    return resolved


def _target(entries: list, keeps_batch: bool, flat: int | None, export_batch: int | None) -> str | list[int] | None:
    """What a Reshape with resolved shape `entries` becomes.

    "flatten"; a batch-free constant shape; "keep" for a shape computed at run time that cannot
    be made constant (it encodes no batch size); None for a fixed shape that cannot be freed.
    `keeps_batch`: the input's axis 0 is the graph's batch; `flat`: the product of its other dims.
    """
    head, rest = entries[0], entries[1:]
    rest_static = all(e > 0 for e in rest)
    flattens = keeps_batch and len(rest) == 1 and flat is not None and rest[0] in (-1, flat)
    if head is BATCH:
        if flattens:
            return "flatten"
        if keeps_batch:
            return [0, *rest]
        return [-1, *rest] if rest_static else "keep"
    if head == -1:
        return "flatten" if flattens and rest[0] == flat else [head, *rest]
    if not keeps_batch:  # axis 0 of the input already merges the batch with other axes
        return [-1, *rest] if rest_static else None
    head_may_be_batch = export_batch is None or head == export_batch
    if flattens and (rest[0] == flat or head_may_be_batch):
        return "flatten"
    if rest_static and flat is not None and math.prod(rest) == flat:
        return [0, *rest]
    if rest_static and (export_batch is None or head % export_batch == 0):
        return [-1, *rest]  # the batch is merged into axis 0
    return [0, *rest] if export_batch is not None and head == export_batch else None
