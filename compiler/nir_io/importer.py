"""import-nir: a NIR graph of IF, LIF, CubaLIF and LI neurons with Affine, Linear, Conv2d, AvgPool2d,
SumPool2d, Flatten and Scale nodes as an onnx-snn SNN (the compiled model's contract, README).

Each NIR node becomes standard ops (Gemm, Conv, AveragePool, Reshape, Mul) or one of the leaky
neuron ops of compiler/ir/leaky.py with the per-step parameters of the chosen dialect
(dialects.py); several edges into a node become their sum. The graph then goes through the
compiler's own time_batch and activity_stats passes: the Input reads the model's input as the
same analog current at every step, time is folded into the batch, the Output is decoded by an
`snn.RateDecoder` (its mean over the steps), and every spiking layer gets its `spikes/<node>`
count. So `Session` runs, streams and evaluates the result like a compiled model.

Shapes are checked node by node (per sample, without the batch): a node whose input does not fit
its weights or parameters, or edges of different shapes into one node, are refused by name.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from onnx_snn.errors import SnnError
from onnx_snn.ir.function_parts import SNN_DOMAIN
from onnx_snn.ir.neurons import NEURON_OPS
from onnx_snn.modelio import save_model
from onnx_snn.nir_io.dialects import DIALECTS, Dialect, discretize
from onnx_snn.nir_io.nirfile import read_graph
from onnx_snn.options import CompileOptions
from onnx_snn.passes.base import PassContext
from onnx_snn.passes.common import activity_stats, time_batch
from onnx_snn.passes.graph_utils import TARGET_OPSET
from onnx_snn.pipeline import emit

#: the symbolic batch of the imported model's input
BATCH = "batch"
_NEURONS = ("IF", "LIF", "CubaLIF", "LI")


@dataclass
class ImportResult:
    """What import wrote: the dialect, the step, the NIR node types read and their counts, the layers."""

    dialect: str
    dt: float
    nodes: dict[str, int]
    neuron_layers: list[str] = field(default_factory=list)


def import_nir(
    path: str | os.PathLike,
    output: str | os.PathLike,
    dialect: str = "nir",
    timesteps: int = 32,
    dt: float | None = None,
) -> ImportResult:
    """Read the NIR graph at `path` as `dialect`'s reader simulates it (at step `dt`; None: the
    dialect's) and write it to `output` as an onnx-snn SNN with default T `timesteps`. SnnError for
    a graph it cannot read faithfully (named), before anything is written."""
    graph = read_graph(path)
    chosen = DIALECTS[dialect]
    model, layers = to_onnx(graph, chosen, timesteps, dt, str(path))
    save_model(model, output, check=lambda tmp: onnx.checker.check_model(str(tmp), full_check=True))
    counts = Counter(type(node).__name__ for node in graph.nodes.values())
    return ImportResult(chosen.name, chosen.dt if dt is None else dt, dict(counts), layers)


def to_onnx(
    graph: Any, dialect: Dialect, timesteps: int = 32, dt: float | None = None, source: str = "<graph>"
) -> tuple[onnx.ModelProto, list[str]]:
    """The onnx-snn model of the nir.NIRGraph `graph` (module docstring) and its neuron layers."""
    builder = _Builder(graph, dialect, dt, source)
    order = _topological_order(graph, source)
    for name in order:
        builder.add(name)
    options = CompileOptions(timesteps=timesteps, stats=True, spikes="binary", neuron="if").validate()
    ctx = PassContext(options, source=source, show_progress=False)
    ctx.state.neuron_layers = builder.layers  # no neuron family: the layers are NIR's neurons
    ctx.note(f"imported from NIR, read as {dialect.name} ({dialect.reads}), dt = {builder.dt:g}")
    out = builder.finish()
    for step in (time_batch, activity_stats):
        out = step.run(out, ctx)
        ctx.state.passes.append(step.SPEC.name)
    return emit(out, ctx), builder.layers


def _topological_order(graph: Any, source: str) -> list[str]:
    """The node names in an order where each comes after its sources; SnnError for an edge to a
    missing node, a cycle (recurrence), or not exactly one Input and one Output."""
    names = list(graph.nodes)
    kinds = {name: type(node).__name__ for name, node in graph.nodes.items()}
    for kind in ("Input", "Output"):
        found = [n for n in names if kinds[n] == kind]
        if len(found) != 1:
            raise SnnError(f"import-nir reads graphs with one {kind} node, this one has {len(found)}", path=source)
    for src, dst in graph.edges:
        for end in (src, dst):
            if end not in graph.nodes:
                raise SnnError(f"an edge {src} -> {dst} names a node that is not in the graph", path=source)
    pending = {n: sum(1 for _, d in graph.edges if d == n) for n in names}
    ready, order = [n for n in names if pending[n] == 0], []
    while ready:
        name = ready.pop(0)
        order.append(name)
        for src, dst in graph.edges:
            if src == name:
                pending[dst] -= 1
                if pending[dst] == 0:
                    ready.append(dst)
    if len(order) != len(names):
        stuck = next(n for n in names if n not in order)
        raise SnnError("has a cycle (a recurrent connection), which import-nir does not read", path=source, node=stuck)
    fed = {d for _, d in graph.edges}
    orphan = next((n for n in names if kinds[n] != "Input" and n not in fed), None)
    if orphan is not None:
        raise SnnError("no edge leads into it", path=source, node=orphan, op=kinds[orphan])
    return order


def _ints(value: Any, count: int) -> tuple[int, ...]:
    """An int or a sequence of ints as `count` ints (NIR stores 2, or 1 for both axes)."""
    array = np.asarray(value).reshape(-1).astype(np.int64)
    values = np.broadcast_to(array, (count,)) if array.size == 1 else array
    return tuple(int(v) for v in values)


class _Builder:
    """Builds the one-step graph (standard ops, neuron ops over one step) node by node."""

    def __init__(self, graph: Any, dialect: Dialect, dt: float | None, source: str) -> None:
        self.nir, self.dialect, self.source = graph, dialect, source
        self.dt = dialect.dt if dt is None else float(dt)
        self.graph = gs.Graph(opset=TARGET_OPSET)
        self.values: dict[str, tuple[gs.Variable, tuple[int, ...]]] = {}
        self.layers: list[str] = []
        self.one_step = gs.Constant("one_step", np.asarray(1, dtype=np.int64))
        self.fresh = gs.Constant("fresh_state", np.asarray(np.nan, dtype=np.float32))

    # -- helpers --------------------------------------------------------------------------------
    def _error(self, name: str, message: str) -> SnnError:
        return SnnError(message, path=self.source, node=name, op=type(self.nir.nodes[name]).__name__)

    def _emit(self, op: str, inputs: list, name: str, shape: tuple[int, ...], **attrs: Any) -> gs.Variable:
        out = gs.Variable(f"{name}:{op}", dtype=np.float32, shape=[BATCH, *shape])
        self.graph.nodes.append(gs.Node(op, name=f"{name}/{op}", inputs=inputs, outputs=[out], attrs=attrs))
        return out

    def _const(self, name: str, value: Any, dtype: Any = np.float32) -> gs.Constant:
        return gs.Constant(name, np.ascontiguousarray(np.asarray(value, dtype=dtype)))

    def _input(self, name: str) -> tuple[gs.Variable, tuple[int, ...]]:
        """The sum of what the edges into `name` carry, and its shape."""
        sources = [s for s, d in self.nir.edges if d == name]
        tensors = [self.values[s] for s in sources]
        shapes = {shape for _, shape in tensors}
        if len(shapes) != 1:
            raise self._error(name, f"its input edges carry different shapes {sorted(shapes)}")
        (shape,) = shapes
        total = tensors[0][0]
        for index, (tensor, _) in enumerate(tensors[1:]):
            total = self._emit("Add", [total, tensor], f"{name}/sum{index}", shape)
        return total, shape

    def _expect(self, name: str, shape: tuple[int, ...], wanted: tuple[int, ...], what: str) -> None:
        if shape != wanted:
            raise self._error(name, f"its input has shape {list(shape)} but {what} {list(wanted)}")

    # -- nodes ----------------------------------------------------------------------------------
    def add(self, name: str) -> None:
        """Add NIR node `name` (its sources already added)."""
        node = self.nir.nodes[name]
        kind = type(node).__name__
        if kind == "Input":
            shape = tuple(int(d) for d in np.asarray(node.input_type["input"]).reshape(-1))
            if not shape or min(shape) < 1:
                raise self._error(name, f"its shape {list(shape)} is not a fixed shape")
            tensor = gs.Variable(name, dtype=np.float32, shape=[BATCH, *shape])
            self.graph.inputs.append(tensor)
            self.values[name] = (tensor, shape)
            return
        x, shape = self._input(name)
        handler = _HANDLERS.get(kind)
        if handler is None and kind in _NEURONS:
            handler = _Builder._neuron
        if handler is None:
            raise self._error(name, "is a node type import-nir does not read")
        try:
            self.values[name] = handler(self, name, node, x, shape)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise self._error(name, f"has malformed parameters ({exc})") from None

    def _affine(self, name: str, node: Any, x: gs.Variable, shape: tuple[int, ...]):
        weight = np.asarray(node.weight, dtype=np.float32)
        if weight.ndim != 2:
            raise self._error(name, f"its weight has shape {list(weight.shape)}; import-nir reads 2-D weights")
        self._expect(name, shape, (weight.shape[1],), "its weight reads")
        inputs = [x, self._const(f"{name}.weight", weight)]
        if hasattr(node, "bias"):
            bias = np.asarray(node.bias, dtype=np.float32).reshape(-1)
            if bias.shape != (weight.shape[0],):
                raise self._error(name, f"its bias has shape {list(bias.shape)}, its weight {list(weight.shape)}")
            inputs.append(self._const(f"{name}.bias", bias))
        out = (weight.shape[0],)
        return self._emit("Gemm", inputs, name, out, transB=1), out

    def _conv(self, name: str, node: Any, x: gs.Variable, shape: tuple[int, ...]):
        weight = np.asarray(node.weight, dtype=np.float32)
        groups = int(np.asarray(node.groups))
        if weight.ndim != 4 or len(shape) != 3:
            raise self._error(name, f"import-nir reads 2-D convolutions of [C, H, W], not {list(shape)}")
        self._expect(name, shape[:1], (weight.shape[1] * groups,), "its weight reads channels")
        declared = getattr(node, "input_shape", None)
        if declared is not None and tuple(_ints(declared, 2)) != shape[1:]:
            self._expect(name, shape[1:], _ints(declared, 2), "its input_shape is")
        stride, dilation = _ints(node.stride, 2), _ints(node.dilation, 2)
        kernel = weight.shape[2:]
        if isinstance(node.padding, str):
            padding = tuple(d * (k - 1) // 2 for d, k in zip(dilation, kernel)) if node.padding == "same" else (0, 0)
        else:
            padding = _ints(node.padding, 2)
        out = (weight.shape[0],) + tuple(
            (shape[1 + i] + 2 * padding[i] - dilation[i] * (kernel[i] - 1) - 1) // stride[i] + 1 for i in range(2)
        )
        bias = np.asarray(node.bias, dtype=np.float32).reshape(-1)
        inputs = [x, self._const(f"{name}.weight", weight), self._const(f"{name}.bias", bias)]
        attrs = {"strides": list(stride), "pads": [*padding, *padding], "dilations": list(dilation), "group": groups}
        return self._emit("Conv", inputs, name, out, kernel_shape=list(kernel), **attrs), out

    def _pool(self, name: str, node: Any, x: gs.Variable, shape: tuple[int, ...]):
        if len(shape) != 3:
            raise self._error(name, f"import-nir reads 2-D pools of [C, H, W], not {list(shape)}")
        kernel, stride, padding = _ints(node.kernel_size, 2), _ints(node.stride, 2), _ints(node.padding, 2)
        out = (shape[0],) + tuple((shape[1 + i] + 2 * padding[i] - kernel[i]) // stride[i] + 1 for i in range(2))
        attrs = {"kernel_shape": list(kernel), "strides": list(stride), "pads": [*padding, *padding]}
        mean = self._emit("AveragePool", [x], name, out, count_include_pad=1, **attrs)
        if type(node).__name__ == "AvgPool2d":
            return mean, out
        # SumPool2d: the window mean times its size, as torch's LPPool2d(1) computes it (nirtorch, sinabs)
        return self._emit("Mul", [mean, self._const(f"{name}.size", math.prod(kernel))], f"{name}/sum", out), out

    def _flatten(self, name: str, node: Any, x: gs.Variable, shape: tuple[int, ...]):
        start, end = (int(np.asarray(v)) for v in (node.start_dim, node.end_dim))
        start, end = start % len(shape), end % len(shape)
        if start > end:
            raise self._error(name, f"start_dim {start} is after end_dim {end}")
        out = shape[:start] + (math.prod(shape[start : end + 1]),) + shape[end + 1 :]
        target = self._const(f"{name}.shape", [0, *out], np.int64)
        return self._emit("Reshape", [x, target], name, out), out

    def _scale(self, name: str, node: Any, x: gs.Variable, shape: tuple[int, ...]):
        scale = np.asarray(node.scale, dtype=np.float32)
        self._broadcastable(name, scale, shape, "its scale")
        return self._emit("Mul", [x, self._const(f"{name}.scale", scale)], name, shape), shape

    def _output(self, name: str, node: Any, x: gs.Variable, shape: tuple[int, ...]):
        declared = np.asarray(node.output_type["output"]).reshape(-1)
        if declared.size and tuple(int(d) for d in declared) != shape:
            raise self._error(name, f"it declares shape {declared.tolist()} but receives {list(shape)}")
        out = self._emit("Identity", [x], name, shape)
        out.name = name
        self.graph.outputs.append(out)
        return out, shape

    def _broadcastable(self, name: str, value: np.ndarray, shape: tuple[int, ...], what: str) -> None:
        try:
            fits = np.broadcast_shapes(value.shape, shape) == shape
        except ValueError:
            fits = False
        if not fits:
            raise self._error(name, f"{what} has shape {list(value.shape)}, which does not fit its input {list(shape)}")

    def _neuron(self, name: str, node: Any, x: gs.Variable, shape: tuple[int, ...]):
        kind = type(node).__name__
        discrete = discretize(name, kind, node, self.dialect, self.dt, self.source)
        discrete.params = {k: _compact(np.asarray(v, dtype=np.float32)) for k, v in discrete.params.items()}
        for key, value in discrete.params.items():
            self._broadcastable(name, value, shape, f"its {key}")
        op = NEURON_OPS[discrete.op]
        states = [s for s, _, _ in op.states]
        inputs: list[gs.Tensor] = []
        for slot in op.inputs:
            if slot == "x":
                inputs.append(x)
            elif slot == "timesteps":
                inputs.append(self.one_step)
            elif slot in states:
                inputs.append(self.fresh)
            else:
                inputs.append(self._const(f"{name}.{slot}", discrete.params[slot]))
        output = gs.Variable(f"{name}:out", dtype=np.float32, shape=[BATCH, *shape])
        finals = [gs.Variable(f"{name}:{out}", dtype=np.float32) for _, out, _ in op.states]
        self.graph.nodes.append(
            gs.Node(
                discrete.op,
                name=name,
                domain=SNN_DOMAIN,
                inputs=inputs,
                outputs=[output, *finals],
                attrs=discrete.attrs,
            )
        )
        if op.role == "neuron":
            self.layers.append(name)
        return output, shape

    def finish(self) -> gs.Graph:
        return self.graph.cleanup().toposort()


def _compact(value: np.ndarray) -> np.ndarray:
    """A parameter with one value for every neuron as that scalar, else as it is."""
    flat = value.reshape(-1)
    if flat.size and np.all(flat == flat[0]) | np.all(np.isnan(flat)):
        return np.asarray(flat[0])
    return value


_HANDLERS: dict[str, Callable[..., tuple[gs.Variable, tuple[int, ...]]]] = {
    "Affine": _Builder._affine,
    "Linear": _Builder._affine,
    "Conv2d": _Builder._conv,
    "AvgPool2d": _Builder._pool,
    "SumPool2d": _Builder._pool,
    "Flatten": _Builder._flatten,
    "Scale": _Builder._scale,
    "Output": _Builder._output,
}
