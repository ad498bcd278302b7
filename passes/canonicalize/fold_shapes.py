"""Rewriter: fold the shape computations, keeping what depends on the batch batch-generic.

Idiom: torch's legacy exporter (and tf2onnx) compute shapes at run time: `x.shape[0]` is
Shape → Gather, `cls.expand(B, -1, -1)` is Concat → Equal/Where against -1 → Expand,
`x.reshape(B, N, heads, d)` is Concat(Unsqueeze(Gather(Shape(x), 0)), ...) → Reshape, masks
come from ConstantOfShape, Range, Equal and Where over shapes, and Swin's window
partition divides Shape(x)[0] by the window count. Later passes need constants (check_ops
refuses Equal and Where; calibration and the neurons need static shapes).

Every shape-only tensor (shape_samples: its value depends on the data's shapes, not on its
values) is evaluated at the sample batch sizes SAMPLE_BATCHES (the batch a symbol, every other
dim concrete) and then, where a node that computes on data reads it:
  * the same value at every batch: a constant initializer;
  * an integer vector (or scalar) whose entries are each `a * batch + c`: a Reshape's shape
    becomes a constant whose batch-dependent entry is 0 (copy the input's dim) or -1 (infer it),
    when that gives the same shape at every sample batch; any other reader gets the batch read
    back from the data where the model read it, Shape(t, start=i, end=i+1) (times or divided by
    a constant), concatenated with constants;
  * a tensor that is a constant broadcast along its batch-dependent axes (a mask of ones
    [B, N, N], say), read by an op that broadcasts and whose output keeps its shape: that
    constant, with size 1 on those axes;
  * anything else keeps the node that computes it, and the same choice is made for that node's
    shape-only inputs.
The shape ops left are the batch-generic expressions of the second case (and the batch-sized
tensors of the last, such as the Expand of a class token), a shape-only graph output, and what
could not be evaluated (a shape after an op this evaluation does not know, or a graph that runs
only at the batch it was exported with: batch_reshape and batch_constants free those).

The batch enters through Shape and Size only, and exported shape arithmetic is products, sums
and exact divisions of dims, comparisons and selections of them: a value found constant, or
affine, at every sample batch (1 among them) is taken to be so at every batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import onnx_graphsurgeon as gs
from onnx import helper

from onnx_snn.passes.base import PassContext
from onnx_snn.passes.canonicalize import shape_samples
from onnx_snn.passes.canonicalize.free_batch import batch_symbol
from onnx_snn.passes.graph_utils import const, fresh_name, producer

#: the batch sizes the shape computations are evaluated at; a value is taken as a function of the
#: batch only where it is constant, or affine in the batch, at all of them
SAMPLE_BATCHES = (1, 2, 3, 5, 7)
#: ops that broadcast their inputs (numpy-style) elementwise
BROADCASTING = frozenset(
    {
        "Add", "Sub", "Mul", "Div", "Pow", "Mod", "Max", "Min", "Mean", "Sum", "Where", "Equal", "Less",
        "LessOrEqual", "Greater", "GreaterOrEqual", "And", "Or", "Xor", "BitShift", "PRelu",
    }
)  # fmt: skip


@dataclass(frozen=True)
class Affine:
    """An integer vector (or scalar, `scalar`) whose entry i is a[i] * batch + c[i]."""

    a: tuple[int, ...]
    c: tuple[int, ...]
    scalar: bool


def apply(graph: gs.Graph, ctx: PassContext) -> int:
    """Fold every shape computation read by a data op (see the module docstring); return how many
    inputs of such ops were replaced."""
    static = shape_samples.shape_only_tensors(graph)
    if not static:
        return 0
    samples = shape_samples.sample(graph, SAMPLE_BATCHES, static)
    return _Folder(graph, samples).run()


def fit_affine(values: list[np.ndarray], batches: tuple[int, ...]) -> Affine | None:
    """The entries of `values` (the same integer vector or scalar at each of `batches`) as
    a * batch + c with integer a and c, when that holds at every batch; else None."""
    first = values[0]
    if first.ndim > 1 or not np.issubdtype(first.dtype, np.integer):
        return None
    if any(v.shape != first.shape or v.dtype != first.dtype for v in values):
        return None
    rows = np.stack([np.atleast_1d(v).astype(np.int64) for v in values])  # [samples, entries]
    span = batches[1] - batches[0]
    slope = rows[1] - rows[0]
    if np.any(slope % span):
        return None
    a = slope // span
    c = rows[0] - a * batches[0]
    expected = np.outer(np.asarray(batches, dtype=np.int64), a) + c
    if not np.array_equal(expected, rows):
        return None
    return Affine(tuple(int(x) for x in a), tuple(int(x) for x in c), first.ndim == 0)


def broadcast_core(values: list[np.ndarray]) -> np.ndarray | None:
    """The constant that every value of `values` broadcasts (size 1 on each axis whose size
    changes with the batch), or None when there is none."""
    first = values[0]
    if any(v.ndim != first.ndim or v.dtype != first.dtype for v in values):
        return None
    varying = [axis for axis in range(first.ndim) if len({v.shape[axis] for v in values}) > 1]
    if not varying:
        return None
    core = first[tuple(slice(0, 1) if axis in varying else slice(None) for axis in range(first.ndim))]
    if not all(np.array_equal(np.broadcast_to(core, v.shape), v) for v in values):
        return None
    return core


def reshape_entries(
    target: Affine, in_shapes: list[tuple[int, ...]], out_shapes: list[tuple[int, ...]], batches: tuple[int, ...]
) -> list[int] | None:
    """A constant shape for a Reshape (allowzero=0) whose shape input is `target`, reading inputs of
    `in_shapes` and giving `out_shapes` at `batches`: the batch-free entries kept, a batch-dependent
    one 0 where the input's dim is the same, the other (at most one) -1; None when no such constant
    gives `out_shapes` at every batch."""
    rank = len(target.a)
    entries: list[int | None] = [c if a == 0 else None for a, c in zip(target.a, target.c)]
    for i in range(rank):
        if entries[i] is None and all(i < len(s) and s[i] == o[i] for s, o in zip(in_shapes, out_shapes)):
            entries[i] = 0
    free = [i for i, e in enumerate(entries) if e is None]
    if len(free) > 1:
        return None
    if free:
        for i, e in enumerate(entries):  # a -1 the model wrote becomes the dim it stood for, if constant
            if e == -1:
                dims = {o[i] for o in out_shapes}
                if len(dims) != 1:
                    return None
                entries[i] = dims.pop()
        entries[free[0]] = -1
    result = [e for e in entries if e is not None]
    if all(_reshaped(s, result) == o for s, o in zip(in_shapes, out_shapes)):
        return result
    return None


def _reshaped(shape: tuple[int, ...], target: list[int]) -> tuple[int, ...] | None:
    """The output shape of Reshape(allowzero=0) of `shape` to `target`, or None if invalid."""
    dims = [shape[i] if t == 0 and i < len(shape) else t for i, t in enumerate(target)]
    if any(t == 0 and i >= len(shape) for i, t in enumerate(target)):
        return None
    total = int(np.prod(shape))
    if dims.count(-1) == 1:
        rest = int(np.prod([d for d in dims if d != -1]))
        if rest == 0 or total % rest:
            return None
        dims[dims.index(-1)] = total // rest
    return tuple(dims) if int(np.prod(dims)) == total else None


class _Folder:
    """One folding of a graph from its samples."""

    def __init__(self, graph: gs.Graph, samples: shape_samples.Samples) -> None:
        self.graph = graph
        self.samples = samples
        self.kept: set[int] = set()
        self.constants: dict[str, gs.Constant] = {}
        self.expressions: dict[str, gs.Variable] = {}
        self.batch_dims: dict[tuple[str, int], gs.Variable] = {}
        self.changed = 0

    def run(self) -> int:
        static = self.samples.static
        for node in list(self.graph.nodes):
            if node.outputs and node.outputs[0].name in static:
                continue
            for index, tensor in enumerate(list(node.inputs)):
                if tensor.name in static:
                    self._fold_input(node, index)
        return self.changed

    def _fold_input(self, node: gs.Node, index: int) -> None:
        """Replace shape-only input `index` of `node` by a constant or batch-generic expression, or
        keep the node that computes it (and fold that node's inputs)."""
        tensor = node.inputs[index]
        constant = self._constant(tensor.name)
        if constant is not None:
            node.inputs[index] = constant
            self.changed += 1
            return
        values = self.samples.values(tensor.name)
        affine = fit_affine(values, self.samples.batches) if values is not None else None
        if affine is not None:
            if node.op == "Reshape" and index == 1 and not node.attrs.get("allowzero", 0):
                entries = self._reshape_constant(node, affine)
                if entries is not None:
                    node.inputs[index] = const(f"{node.name}_shape", np.array(entries, dtype=np.int64))
                    self.changed += 1
                    return
            expression = self._expression(tensor, affine)
            if expression is not None:
                node.inputs[index] = expression
                self.changed += 1
                return
        if values is not None and self._broadcasts_as_core(node, index, values):
            core = broadcast_core(values)
            assert core is not None
            node.inputs[index] = const(f"{tensor.name}_core", core)
            self.changed += 1
            return
        self._keep(tensor)

    def _keep(self, tensor: gs.Tensor) -> None:
        writer = producer(tensor)
        if writer is None or id(writer) in self.kept:
            return
        self.kept.add(id(writer))
        for index, source in enumerate(list(writer.inputs)):
            if source.name in self.samples.static:
                self._fold_input(writer, index)

    def _constant(self, name: str) -> gs.Constant | None:
        """The tensor as one constant when its value is the same at every sample batch."""
        if name in self.constants:
            return self.constants[name]
        values = self.samples.values(name)
        if values is None:
            return None
        first = values[0]
        if not all(v.dtype == first.dtype and v.shape == first.shape and np.array_equal(v, first) for v in values):
            return None
        self.constants[name] = const(name, first)
        return self.constants[name]

    def _reshape_constant(self, node: gs.Node, target: Affine) -> list[int] | None:
        in_shapes = self.samples.shapes(node.inputs[0].name)
        out_shapes = self.samples.shapes(node.outputs[0].name)
        if in_shapes is None or out_shapes is None:
            return None
        return reshape_entries(target, in_shapes, out_shapes, self.samples.batches)

    def _broadcasts_as_core(self, node: gs.Node, index: int, values: list[np.ndarray]) -> bool:
        """Whether `node` gives the same output shapes with input `index` replaced by its broadcast core."""
        core = broadcast_core(values) if node.op in BROADCASTING else None
        if core is None:
            return False
        for walk in self.samples.walks:
            shapes = [walk.shape(t.name) for t in node.inputs]
            shapes[index] = core.shape
            known = [s for s in shapes if s is not None]
            out = walk.shape(node.outputs[0].name)
            if out is None or len(known) != len(shapes):
                return False
            try:
                if tuple(np.broadcast_shapes(*known)) != out:
                    return False
            except ValueError:
                return False
        return True

    def _expression(self, tensor: gs.Tensor, affine: Affine) -> gs.Variable | None:
        """`affine` computed from the batch read off the data: Shape(t, start=i, end=i+1), scaled."""
        if tensor.name in self.expressions:
            return self.expressions[tensor.name]
        source = self._batch_source(tensor)
        if source is None:
            return None
        data, axis, factor = source
        dim = self._batch_dim(data, axis)  # factor * batch, int64 [1]
        pieces: list[gs.Tensor] = []
        run: list[int] = []
        for a, c in zip(affine.a, affine.c):
            if a == 0:
                run.append(c)
                continue
            if run:
                pieces.append(const(f"{tensor.name}_part", np.array(run, dtype=np.int64)))
                run = []
            pieces.append(self._scaled(dim, a, c, factor, tensor.name))
        if run:
            pieces.append(const(f"{tensor.name}_part", np.array(run, dtype=np.int64)))
        value = pieces[0] if len(pieces) == 1 else self._op("Concat", pieces, tensor.name, axis=0)
        if affine.scalar:
            value = self._op("Reshape", [value, const(f"{tensor.name}_scalar", np.zeros(0, np.int64))], tensor.name)
        if tensor.dtype is not None and np.dtype(tensor.dtype) != np.int64:
            value = self._op("Cast", [value], tensor.name, to=helper.np_dtype_to_tensor_dtype(np.dtype(tensor.dtype)))
        value.dtype = tensor.dtype
        self.expressions[tensor.name] = value
        return value

    def _scaled(self, dim: gs.Variable, a: int, c: int, factor: int, name: str) -> gs.Variable:
        """a * batch + c from dim = factor * batch: dim * (a / g) / (factor / g) + c, g = gcd(a, factor)
        (the division is exact)."""
        common = math.gcd(a, factor)
        term = dim
        if a // common != 1:
            term = self._op("Mul", [term, const(f"{name}_scale", np.array([a // common], np.int64))], name)
        if factor // common != 1:
            term = self._op("Div", [term, const(f"{name}_per", np.array([factor // common], np.int64))], name)
        if c:
            term = self._op("Add", [term, const(f"{name}_offset", np.array([c], np.int64))], name)
        return term

    def _batch_dim(self, data: gs.Tensor, axis: int) -> gs.Variable:
        key = (data.name, axis)
        if key not in self.batch_dims:
            out = gs.Variable(fresh_name(f"{data.name}_dim{axis}"), dtype=np.int64, shape=[1])
            self.graph.nodes.append(
                gs.Node("Shape", fresh_name(f"{data.name}_dim{axis}"), {"start": axis, "end": axis + 1}, [data], [out])
            )
            self.batch_dims[key] = out
        return self.batch_dims[key]

    def _batch_source(self, tensor: gs.Tensor) -> tuple[gs.Tensor, int, int] | None:
        """(data, axis, factor): a tensor the model reads a shape of, in the shape-only computation of
        `tensor`, whose dim `axis` is factor * batch (factor 1 preferred); else the batched graph
        input's axis 0."""
        found: list[tuple[gs.Tensor, int, int]] = []
        seen: set[str] = set()
        stack = [tensor]
        while stack:
            current = stack.pop()
            if current.name in seen or current.name not in self.samples.static:
                continue
            seen.add(current.name)
            writer = producer(current)
            if writer is None:
                continue
            if writer.op == "Shape" and writer.inputs[0].name not in self.samples.static:
                found.extend(self._proportional_dims(writer.inputs[0]))
                continue
            stack.extend(writer.inputs)  # (the shape of a shape-only tensor: look at what it is made of)
        if not found:  # the batch came in another way (Size, say): read it off the batched input
            symbol = batch_symbol(self.graph)
            found = [(t, 0, 1) for t in self.graph.inputs if t.shape and t.shape[0] == symbol]
        return min(found, key=lambda source: source[2]) if found else None

    def _proportional_dims(self, data: gs.Tensor) -> list[tuple[gs.Tensor, int, int]]:
        shapes = self.samples.shapes(data.name)
        if shapes is None:
            return []
        found = []
        for axis in range(len(shapes[0])):
            fit = fit_affine([np.array(s[axis], dtype=np.int64) for s in shapes], self.samples.batches)
            if fit is not None and fit.a[0] > 0 and fit.c[0] == 0:
                found.append((data, axis, fit.a[0]))
        return found

    def _op(self, op: str, inputs: list[gs.Tensor], base: str, **attrs) -> gs.Variable:
        out = gs.Variable(fresh_name(f"{base}_{op.lower()}"), dtype=np.int64)
        self.graph.nodes.append(gs.Node(op, fresh_name(f"{base}_{op.lower()}"), attrs, inputs, [out]))
        return out
