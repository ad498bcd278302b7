"""The shape computations of a graph evaluated at sample batch sizes (a helper of fold_shapes and
batch_reshape, not a rewriter).

A tensor is *shape-only* when its value depends on the shapes of the data and never on its values:
the output of Shape or Size, or of a deterministic op whose inputs are all constants or shape-only
(Gather, Concat, Unsqueeze, Equal, Where, ConstantOfShape, Range, Mul, Cast, ... over them).
`sample(graph, batches)` walks the graph once per batch size b, with axis 0 of every input that
carries the batch symbol set to b: it evaluates each shape-only node with onnx's reference
evaluator, and gives every other node the output shapes that onnx's per-node shape inference
infers from the concrete input shapes and the shape-only values it reads (so a Reshape to a
computed shape gets a concrete output shape, which a later Shape reads). No data is computed.

A value or shape is missing (None) where it cannot be had at that batch: an op with a subgraph,
an op of another domain, a shape the inference cannot give, a graph that is invalid at that batch
(one fixed to the batch it was exported with), or a value over MAX_ELEMENTS.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
import onnx_graphsurgeon as gs
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from onnx_snn.passes.canonicalize.free_batch import batch_symbol

#: ops whose output is not a function of their inputs
NONDETERMINISTIC = frozenset(
    {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli"}
)
#: the largest shape-only value evaluated (elements); a bigger one (a mask of a large batch, say) is missing
MAX_ELEMENTS = 1 << 20
#: the largest shape-only input handed to shape inference as data (only shape-like inputs matter)
MAX_DATA_ELEMENTS = 4096

Shape = tuple[int | None, ...]


@dataclass
class Sample:
    """One walk of the graph at `batch`: tensor name -> shape (None if unknown; dims None if
    unknown) and, for constants read by shape-only nodes and shape-only tensors, value."""

    batch: int
    shapes: dict[str, Shape | None] = field(default_factory=dict)
    values: dict[str, np.ndarray] = field(default_factory=dict)

    def shape(self, name: str) -> tuple[int, ...] | None:
        """The tensor's shape when every dim is known, else None."""
        return known(self.shapes.get(name))


@dataclass
class Samples:
    """The walks at each sample batch, and the names of the shape-only tensors."""

    static: frozenset[str]
    walks: list[Sample]

    @property
    def batches(self) -> tuple[int, ...]:
        return tuple(walk.batch for walk in self.walks)

    def values(self, name: str) -> list[np.ndarray] | None:
        """The tensor's value at every sample batch, or None when one is missing."""
        found = [value for walk in self.walks if (value := walk.values.get(name)) is not None]
        return found if len(found) == len(self.walks) else None

    def shapes(self, name: str) -> list[tuple[int, ...]] | None:
        """The tensor's full shape at every sample batch, or None when one is missing."""
        found = [shape for walk in self.walks if (shape := walk.shape(name)) is not None]
        return found if len(found) == len(self.walks) else None


def shape_only_tensors(graph: gs.Graph) -> frozenset[str]:
    """The names of the shape-only tensors of `graph` (toposorted): see the module docstring."""
    static: set[str] = set()
    for node in graph.nodes:
        if not _may_be_static(node):
            continue
        inputs = [t for t in node.inputs if t.name]
        if node.op in ("Shape", "Size") or (
            (inputs or node.op == "Constant") and all(isinstance(t, gs.Constant) or t.name in static for t in inputs)
        ):
            static.update(t.name for t in node.outputs if t.name)
    return frozenset(static)


def sample(graph: gs.Graph, batches: tuple[int, ...], static: frozenset[str] | None = None) -> Samples:
    """`graph` (toposorted) walked at each batch size of `batches` (see the module docstring)."""
    static = shape_only_tensors(graph) if static is None else static
    walker = _Walker(graph, static)
    return Samples(static, [walker.walk(b) for b in batches])


def known(shape: Shape | None) -> tuple[int, ...] | None:
    """`shape` when it and every dim of it are known, else None."""
    if shape is None:
        return None
    dims = tuple(d for d in shape if d is not None)
    return dims if len(dims) == len(shape) else None


def _may_be_static(node: gs.Node) -> bool:
    return (
        (node.domain or "") in ("", "ai.onnx")
        and node.op not in NONDETERMINISTIC
        and not any(isinstance(v, gs.Graph) for v in node.attrs.values())
    )


class _Walker:
    """Walks one exported copy of the graph; the reference evaluators are shared between walks."""

    def __init__(self, graph: gs.Graph, static: frozenset[str]) -> None:
        self.static = static
        self.symbol = batch_symbol(graph)
        self.model = gs.export_onnx(graph, do_type_check=False)
        self.opset = next(
            (imp.version for imp in self.model.opset_import if imp.domain in ("", "ai.onnx")), graph.opset
        )
        self.opsets = [helper.make_opsetid("", self.opset)]
        self.initializers = {init.name: init for init in self.model.graph.initializer}
        self.elem: dict[str, int] = {}
        for info in [*self.model.graph.value_info, *self.model.graph.input, *self.model.graph.output]:
            if info.type.HasField("tensor_type") and info.type.tensor_type.elem_type:
                self.elem[info.name] = info.type.tensor_type.elem_type
        for init in self.model.graph.initializer:
            self.elem[init.name] = init.data_type
        self.evaluators: dict[int, Any] = {}
        self.constants: dict[str, np.ndarray] = {}

    def walk(self, batch: int) -> Sample:
        result = Sample(batch)
        for init in self.model.graph.initializer:
            result.shapes[init.name] = tuple(init.dims)
        for value in self.model.graph.input:
            if value.name in self.initializers or not value.type.HasField("tensor_type"):
                continue
            tensor_type = value.type.tensor_type
            if not tensor_type.HasField("shape"):
                result.shapes[value.name] = None
                continue
            dims: list[int | None] = []
            for i, dim in enumerate(tensor_type.shape.dim):
                if dim.HasField("dim_value"):
                    dims.append(dim.dim_value)
                else:
                    dims.append(batch if i == 0 and dim.dim_param == self.symbol else None)
            result.shapes[value.name] = tuple(dims)
        for index, node in enumerate(self.model.graph.node):
            outputs = [o for o in node.output if o]
            try:
                if outputs and outputs[0] in self.static:
                    self._evaluate(index, node, result)
                else:
                    self._infer(node, result)
            except Exception:  # noqa: BLE001 - an op the evaluator or inference cannot take at this batch
                for name in outputs:
                    result.shapes.setdefault(name, None)
                    result.values.pop(name, None)
        return result

    def _value(self, name: str, sample: Sample) -> np.ndarray | None:
        if name in sample.values:
            return sample.values[name]
        if name in self.initializers:
            if name not in self.constants:
                self.constants[name] = numpy_helper.to_array(self.initializers[name])
            return self.constants[name]
        return None

    def _evaluate(self, index: int, node: onnx.NodeProto, sample: Sample) -> None:
        if node.op_type in ("Shape", "Size"):
            shape = sample.shapes.get(node.input[0])
            if shape is None:
                raise ValueError("unknown input shape")
            if node.op_type == "Size":
                full = known(shape)
                if full is None:
                    raise ValueError("unknown input shape")
                value = np.array(math.prod(full), dtype=np.int64)
            else:
                attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
                start, end = _clamp(attrs.get("start", 0), len(shape)), _clamp(attrs.get("end", len(shape)), len(shape))
                dims = shape[start:end]
                if any(d is None for d in dims):
                    raise ValueError("unknown dims")
                value = np.array(dims, dtype=np.int64)
            self._store(node.output[0], value, sample)
            return
        self._infer(node, sample)
        for name in node.output:
            full = known(sample.shapes.get(name))
            if name and (full is None or math.prod(full) > MAX_ELEMENTS):
                raise ValueError("output too large or of unknown shape")
        feeds = {}
        for name in node.input:
            if not name:
                continue
            given = self._value(name, sample)
            if given is None:
                raise ValueError("input value missing")
            feeds[name] = given
        if index not in self.evaluators:
            graph = helper.make_graph(
                [node], "node", [], [helper.make_empty_tensor_value_info(o) for o in node.output if o]
            )
            self.evaluators[index] = ReferenceEvaluator(graph, opsets={"": self.opset})
        values = self.evaluators[index].run(None, feeds)
        for name, value in zip([o for o in node.output if o], values):
            self._store(name, np.asarray(value), sample)

    def _store(self, name: str, value: np.ndarray, sample: Sample) -> None:
        sample.values[name] = value
        sample.shapes[name] = tuple(int(d) for d in value.shape)
        self.elem.setdefault(name, helper.np_dtype_to_tensor_dtype(value.dtype))

    def _infer(self, node: onnx.NodeProto, sample: Sample) -> None:
        """The node's output shapes (and element types) by onnx's per-node shape inference."""
        types, data = {}, {}
        for name in node.input:
            if not name or name in types:
                continue
            elem = self.elem.get(name)
            if elem is None:
                raise ValueError("unknown input type")
            shape = sample.shapes.get(name)
            types[name] = helper.make_tensor_type_proto(elem, None if shape is None else list(shape))
            small = name in self.initializers and math.prod(self.initializers[name].dims) <= MAX_DATA_ELEMENTS
            value = self._value(name, sample) if name in sample.values or small else None
            if value is not None and value.size <= MAX_DATA_ELEMENTS:
                data[name] = numpy_helper.from_array(value, name)
        schema = onnx.defs.get_schema(node.op_type, self.opset, node.domain or "")
        inferred = onnx.shape_inference.infer_node_outputs(schema, node, types, data, opset_imports=self.opsets)
        for name in node.output:
            if not name:
                continue
            type_proto = inferred.get(name)
            if type_proto is None or not type_proto.HasField("tensor_type"):
                sample.shapes[name] = None
                continue
            tensor_type = type_proto.tensor_type
            if tensor_type.elem_type:
                self.elem[name] = tensor_type.elem_type
            sample.shapes[name] = (
                tuple(d.dim_value if d.HasField("dim_value") else None for d in tensor_type.shape.dim)
                if tensor_type.HasField("shape")
                else None
            )


def _clamp(index: int, rank: int) -> int:
    """A Shape start/end attribute as a Python slice bound (negative from the end, clamped)."""
    index = index + rank if index < 0 else index
    return min(max(index, 0), rank)
