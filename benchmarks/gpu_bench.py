#!/usr/bin/env python3
"""GPU benchmark of compiled SNNs: prepare the models here, time them on a CUDA machine.

    python benchmarks/gpu_bench.py prepare --out DIR [--models fashion-cnn fashion-resnet]
    python benchmarks/gpu_bench.py run --in DIR --json OUT.json --markdown OUT.md [--providers cuda|cpu]
                                       [--dry-run] [--rounds 5] [--budget-s 270] [--tf32]

`prepare` (needs onnx_snn, onnx, and torch for the reference models) writes into DIR, per model:
the ANN; the compiled SNN at each T (IF neurons as Scan-based local functions, as the compiler
writes them); per T and batch an *unrolled* SNN: the snn functions inlined, the batch fixed,
constant subgraphs folded (shapes are static, so Shape, Gather and int64 arithmetic on shapes
become constants), each If on a constant condition replaced by its branch and each Scan by T
copies of its body (its Splits and Concats at most MAX_FAN wide), so that onnxruntime's CUDA EP
can capture it in a CUDA graph (static shapes, no control flow, no CPU nodes); the ANN with the
same fixed batches; the test inputs,
the CPU reference outputs (ANN and every SNN output on the first REFERENCE_SAMPLES images) and
manifest.json. Each unrolled model is checked on the CPU against its Scan model first.

`run` needs only the standard library, numpy and onnxruntime(-gpu); torch and spikingjelly are
optional (the spikingjelly baseline, with `models/torch_nets.py` of this repository). It times
every model x T x batch: the ANN (and T x ANN for the ratio), the Scan SNN, the unrolled SNN with
and without CUDA graphs, and the ANN in a CUDA graph, each bound to fixed device buffers through
IOBinding, in alternating rounds; checks the outputs against the CPU reference; writes JSON and
a markdown table. A variant that fails is recorded with its error. `--dry-run` runs the same
path on the CPU EP at batch DRY_RUN_BATCH and T = DRY_RUN_T, one round.

On CUDA, `run` ends with a probe of the cuDNN pooling limits (POOL_PROBE_CASES: AveragePool,
MaxPool and GlobalAveragePool on either side of a batch of 65536, and at N < 65536 with more than
2^31 bytes and more than 2^31 elements), in a child process (`probe`) so that a crash there cannot
lose the timings; `prepare` writes its three one-node models.
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from math import prod
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

import numpy as np
import onnxruntime as ort

if TYPE_CHECKING:
    import onnx

REFERENCE_MODELS = ("fashion-cnn", "fashion-resnet")
TIMESTEPS = (32, 128)
BATCHES = (256, 1024)
DRY_RUN_BATCH, DRY_RUN_T = 16, 32
TEST_SAMPLES = 1024
REFERENCE_SAMPLES = 64
#: A folded constant may hold at most this many elements; larger ones stay computed on the device
#: instead of bloating the file. Ops that broadcast a constant to a shape are never folded to a
#: float tensor (a fresh membrane [B, ...], say): so which nodes fold does not depend on the
#: batch, and the unrolled models of one T differ between batches only in int64 shape constants.
FOLD_LIMIT = 4096
MATERIALIZING = frozenset({"Expand", "ConstantOfShape", "Tile"})
#: Unrolled models whose largest tensor exceeds this are not run on the CPU here; they are
#: checked to be the same graph as a checked model of the same T but another batch.
CHECK_TENSOR_BYTES = 2 * 10**9
CHECK_RTOL = 1e-5
CONTROL_FLOW = frozenset({"If", "Loop", "Scan"})
#: The most inputs of a Concat and outputs of a Split that the unroller writes. onnxruntime's CUDA
#: Concat and Split pass up to 32 tensor addresses to their kernel by value; beyond that they stage
#: them through a pinned host buffer, which CUDA graph capture rejects (Concat, onnxruntime 1.31:
#: "CUDA Concat supports at most 32 inputs during CUDA Graph capture") or records as a copy from a
#: host address that a replay re-reads after the buffer went back to the allocator (Split). Wider
#: ones become trees of such nodes: Concat and Split only move data, so the result is bit-identical.
MAX_FAN = 32
NONDETERMINISTIC = frozenset(
    {"RandomUniform", "RandomNormal", "RandomUniformLike", "RandomNormalLike", "Multinomial", "Bernoulli"}
)
#: Classes of models/torch_nets.py, which imports nothing of onnx_snn (only torch).
TORCH_NETS = ("MLP", "LeNet", "SmallResNet")
REPO_ROOT = Path(__file__).resolve().parents[1]
#: The pooling ops of the reference models (the folded batch N = T x batch reaches them).
POOL_PROBE_OPS = ("AveragePool", "MaxPool", "GlobalAveragePool")
#: (op, input shape) run on CUDA with uninitialized device buffers, smallest first (a crash in
#: a late case keeps the earlier ones): whether cuDNN's pooling limit is the batch dim N (issue
#: microsoft/onnxruntime#29819: N = 65535 passes, 65536 fails) or the bytes or elements. H200,
#: onnxruntime-gpu 1.31.1: N = 65536 ran at these tiny shapes, 131072 failed, 65535 ran at 3 GiB,
#: and 2^31 elements or more failed in the tensor descriptor (runtime/PERFORMANCE.md, "GPU").
POOL_PROBE_CASES = tuple((op, (n, 1, 2, 2)) for op in POOL_PROBE_OPS for n in (65535, 65536)) + (
    ("AveragePool", (32768, 6, 28, 28)),  # the benchmark's largest passing pooling input (fashion-cnn)
    ("AveragePool", (65535, 16, 28, 28)),  # N < 65536, 3.1 GiB: over 2^31 bytes, under 2^31 elements
    ("AveragePool", (40000, 64, 32, 32)),  # N < 65536, over 2^31 elements (9.8 GiB)
    ("AveragePool", (131072, 6, 28, 28)),
)  # fashion-cnn's first pooling input at T=128, batch 1024
POOL_PROBE_SMALL = tuple((op, (n, 1, 2, 2)) for op in POOL_PROBE_OPS for n in (3, 4))
POOL_PROBE_TIMEOUT_S = 180
CUDA, CPU = "CUDAExecutionProvider", "CPUExecutionProvider"
_STARTED = time.perf_counter()


def _log(message: str) -> None:
    """A progress line on stderr, with the seconds since the process started."""
    print(f"[{time.perf_counter() - _STARTED:7.1f}s] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# prepare: static, control-flow-free models
# --------------------------------------------------------------------------------------------


def make_static(model: onnx.ModelProto, batch: int) -> onnx.ModelProto:
    """A copy of `model` that runs one fixed batch with no control flow.

    Every graph input's first dim becomes `batch` (its other dims must be static); initializers
    that are also graph inputs (overridable, like `timesteps`) are frozen at their value; local
    functions are inlined; nodes whose inputs are constants or static shapes are folded (outputs
    of at most FOLD_LIMIT elements); an If on a constant condition becomes its branch and a
    Scan whose scan inputs have a static length becomes that many copies of its body. Raises
    ValueError if a control-flow node, a non-standard op or a dynamic shape is left."""
    import onnx
    from onnx import inliner

    static = onnx.ModelProto()
    static.CopyFrom(model)
    _fix_inputs(static.graph, batch)
    static = inliner.inline_local_functions(static)
    expansions = itertools.count()
    while _simplify(static, expansions):
        pass
    inferred = _infer(static)
    del static.graph.output[:]
    static.graph.output.extend(inferred.graph.output)
    used = {n.domain for n in static.graph.node}
    kept = [o for o in static.opset_import if o.domain in used | {""}]
    del static.opset_import[:]
    static.opset_import.extend(kept)
    problems = static_problems(inferred)
    if problems:
        raise ValueError("not static after unrolling: " + "; ".join(problems[:5]))
    return static


def _fix_inputs(graph: onnx.GraphProto, batch: int) -> None:
    """Fix every real input's first dim to `batch` (a static first dim must already equal it),
    drop overridable initializers from the inputs, and clear the stale value_info and output
    shapes (re-inferred later)."""
    frozen = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in frozen]
    for value in inputs:
        dims = value.type.tensor_type.shape.dim
        if not dims:
            raise ValueError(f"input {value.name} has no shape")
        if dims[0].HasField("dim_value") and dims[0].dim_value != batch:
            raise ValueError(f"input {value.name} has a static batch {dims[0].dim_value}, not {batch}")
        dims[0].Clear()
        dims[0].dim_value = batch
        if any(not d.HasField("dim_value") for d in dims):
            raise ValueError(f"input {value.name} has a dynamic dim besides the batch")
    del graph.input[:]
    graph.input.extend(inputs)
    del graph.value_info[:]
    for value in graph.output:
        value.type.tensor_type.ClearField("shape")


def _infer(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model` with shapes inferred (data propagation on, so shape arithmetic resolves)."""
    from onnx import shape_inference

    return shape_inference.infer_shapes(model, data_prop=True)


def _static_shapes(graph: onnx.GraphProto) -> dict[str, tuple[int, ...]]:
    """Fully static shapes of the graph's initializers, inputs, outputs and inferred values, by name."""
    shapes = {t.name: tuple(t.dims) for t in graph.initializer}
    for value in [*graph.input, *graph.value_info, *graph.output]:
        tensor = value.type.tensor_type
        if tensor.HasField("shape") and all(d.HasField("dim_value") for d in tensor.shape.dim):
            shapes[value.name] = tuple(d.dim_value for d in tensor.shape.dim)
    return shapes


def static_problems(inferred: onnx.ModelProto) -> list[str]:
    """What keeps an inferred model from being captured in a CUDA graph: control-flow or
    non-standard nodes, and values (inputs, outputs, intermediates) without a static shape."""
    graph = inferred.graph
    problems = [f"{n.op_type} node {n.name!r}" for n in graph.node if n.op_type in CONTROL_FLOW or n.domain]
    shapes = _static_shapes(graph)
    produced = [o for n in graph.node for o in n.output if o]
    problems += [
        f"value {name!r} has no static shape"
        for name in produced + [o.name for o in graph.output]
        if name not in shapes
    ]
    return problems


def _simplify(model: onnx.ModelProto, expansions: Iterator[int]) -> bool:
    """One sweep over the main graph: fold constant nodes into initializers, splice constant Ifs
    and unroll Scans (their values renamed under a prefix numbered by `expansions`, unique over
    all sweeps), then drop what no output needs. True if anything changed."""
    from onnx import numpy_helper

    graph = model.graph
    shapes = _static_shapes(_infer(model).graph)
    consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    nodes, changed = [], False
    for node in graph.node:
        folded = _fold(node, consts, shapes, model.opset_import)
        if folded is not None:
            consts.update(zip(node.output, folded))
            changed = True
            continue
        expanded = _expand(node, consts, shapes, expansions)
        nodes.extend([node] if expanded is None else expanded)
        changed |= expanded is not None
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.initializer[:]
    graph.initializer.extend(numpy_helper.from_array(np.asarray(v), k) for k, v in consts.items())
    _prune(graph)
    return changed


def _fold(
    node: onnx.NodeProto, consts: dict[str, np.ndarray], shapes: dict[str, tuple[int, ...]], opsets: Iterable
) -> list[np.ndarray] | None:
    """The outputs of `node` if they are constants of at most FOLD_LIMIT elements (a Constant
    node's at any size): Shape and Size of a static shape, or a deterministic op without
    subgraphs whose inputs are all constants, unless it broadcasts to a float tensor
    (MATERIALIZING). None otherwise."""
    from onnx import helper
    from onnx.reference import ReferenceEvaluator

    if node.op_type in ("Shape", "Size") and node.input[0] in shapes:
        dims = shapes[node.input[0]]
        if node.op_type == "Size":
            return [np.asarray(prod(dims), dtype=np.int64)]
        attrs = {a.name: a.i for a in node.attribute}
        return [np.asarray(dims[attrs.get("start", 0) : attrs.get("end", len(dims))], dtype=np.int64)]
    inputs = [i for i in node.input if i]
    if node.op_type in NONDETERMINISTIC or _subgraphs(node) or not all(i in consts for i in inputs):
        return None
    limit = None if node.op_type == "Constant" else FOLD_LIMIT
    if limit is not None and any(o in shapes and prod(shapes[o]) > limit for o in node.output):
        return None
    function = helper.make_function("fold", "node", inputs, list(node.output), [node], list(opsets))
    try:
        values = [
            np.asarray(v) for v in ReferenceEvaluator(function).run(None, {i: consts[i] for i in inputs}, attributes={})
        ]
    except (NotImplementedError, RuntimeError):
        return None
    if node.op_type in MATERIALIZING and any(np.issubdtype(v.dtype, np.floating) for v in values):
        return None
    return values if limit is None or all(v.size <= limit for v in values) else None


def _expand(
    node: onnx.NodeProto, consts: dict[str, np.ndarray], shapes: dict[str, tuple[int, ...]], expansions: Iterator[int]
) -> list[onnx.NodeProto] | None:
    """The nodes that replace an If on a constant condition (its branch) or a Scan whose scan
    inputs have static lengths (its body, once per step); None for any other node."""
    if node.op_type == "If" and node.input[0] in consts:
        attrs = {a.name: a.g for a in node.attribute}
        branch = attrs["then_branch"] if bool(consts[node.input[0]]) else attrs["else_branch"]
        return splice_graph(branch, list(node.output), f"If{next(expansions)}")
    if node.op_type == "Scan" and all(x in shapes for x in ScanForm.of(node).scans):
        return unroll_scan(node, shapes, f"Scan{next(expansions)}")
    return None


def _subgraphs(node: onnx.NodeProto) -> list[onnx.GraphProto]:
    """The graphs held by `node`'s attributes."""
    graphs = []
    for attr in node.attribute:
        if attr.HasField("g"):
            graphs.append(attr.g)
        graphs.extend(attr.graphs)
    return graphs


def _renamed(node: onnx.NodeProto, rename: dict[str, str], prefix: str) -> onnx.NodeProto:
    """A copy of `node` named `prefix`+name, with its inputs and outputs, and the references in
    its subgraphs, renamed by `rename` (names absent from it are kept)."""
    import onnx

    copy = onnx.NodeProto()
    copy.CopyFrom(node)
    copy.name = prefix + node.name if node.name else ""
    copy.input[:] = [rename.get(i, i) for i in node.input]
    copy.output[:] = [rename.get(o, o) for o in node.output]
    for graph in _subgraphs(copy):
        _rename_references(graph, rename)
    return copy


def _rename_references(graph: onnx.GraphProto, rename: dict[str, str]) -> None:
    """Rename, in place, the outer-scope names that `graph` and its subgraphs read."""
    for node in graph.node:
        node.input[:] = [rename.get(i, i) for i in node.input]
        for inner in _subgraphs(node):
            _rename_references(inner, rename)
    for value in graph.output:
        value.name = rename.get(value.name, value.name)


def _constant(name: str, value: np.ndarray) -> onnx.NodeProto:
    from onnx import helper, numpy_helper

    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(value), name))


def _local_constants(graph: onnx.GraphProto, rename: dict[str, str]) -> list[onnx.NodeProto]:
    """Constant nodes for the initializers of a subgraph, under their names in `rename`."""
    from onnx import numpy_helper

    return [_constant(rename[t.name], numpy_helper.to_array(t)) for t in graph.initializer]


def splice_graph(graph: onnx.GraphProto, outputs: list[str], prefix: str) -> list[onnx.NodeProto]:
    """The nodes of a graph without inputs (an If branch) for the enclosing graph: its own values
    renamed under `prefix`, and an Identity from each of its outputs to `outputs`."""
    from onnx import helper

    local = {o for n in graph.node for o in n.output if o} | {t.name for t in graph.initializer}
    rename = {name: f"{prefix}/{name}" for name in local}
    nodes = _local_constants(graph, rename) + [_renamed(n, rename, f"{prefix}/") for n in graph.node]
    return nodes + [
        helper.make_node("Identity", [rename.get(v.name, v.name)], [out]) for v, out in zip(graph.output, outputs)
    ]


@dataclass(frozen=True)
class ScanForm:
    """The attributes of a Scan node (opset 9+), with the defaults filled in."""

    body: onnx.GraphProto
    states: list[str]
    scans: list[str]
    in_axes: list[int]
    in_reversed: list[bool]
    out_axes: list[int]
    out_reversed: list[bool]

    @classmethod
    def of(cls, node: onnx.NodeProto) -> ScanForm:
        """The form of Scan `node`."""
        attrs = {a.name: a for a in node.attribute}
        body = attrs["body"].g
        scans = attrs["num_scan_inputs"].i
        states = list(node.input[: len(node.input) - scans])
        outputs = len(body.output) - len(states)

        def ints(name: str, count: int) -> list[int]:
            return list(attrs[name].ints) if name in attrs else [0] * count

        return cls(
            body,
            states,
            list(node.input[len(states) :]),
            ints("scan_input_axes", scans),
            [bool(d) for d in ints("scan_input_directions", scans)],
            ints("scan_output_axes", outputs),
            [bool(d) for d in ints("scan_output_directions", outputs)],
        )


def unroll_scan(node: onnx.NodeProto, shapes: dict[str, tuple[int, ...]], prefix: str) -> list[onnx.NodeProto]:
    """The Scan `node` as straight-line nodes; `shapes` must hold every scan input's shape.

    Each scan input is split along its axis into slices (Split + Squeeze, in reverse for a
    reversed input); the body is copied once per step with its state inputs wired to the previous
    step's state outputs (the Scan's initial states at the first step) and its values renamed
    under `prefix`/t<step>; the final states go to the Scan's state outputs through Identity and
    each scan output is the Concat of its per-step values, Unsqueezed along its axis (in reverse
    for a reversed output). Splits and Concats wider than MAX_FAN are trees of narrower ones.
    Raises ValueError for a zero trip count."""
    from onnx import helper

    form = ScanForm.of(node)
    lengths = {shapes[x][axis % len(shapes[x])] for x, axis in zip(form.scans, form.in_axes)}
    if len(lengths) != 1:
        raise ValueError(f"Scan {node.name!r}: scan inputs of different lengths {sorted(lengths)}")
    steps = lengths.pop()
    if steps == 0:
        raise ValueError(f"Scan {node.name!r} has a zero trip count")
    nodes, slices = [], []
    for j, (x, axis, backwards) in enumerate(zip(form.scans, form.in_axes, form.in_reversed)):
        parts = [f"{prefix}/in{j}/part{t}" for t in range(steps)]
        squeezed = [f"{prefix}/in{j}/t{t}" for t in range(steps)]
        nodes.append(_constant(f"{prefix}/in{j}/axis", np.asarray([axis], dtype=np.int64)))
        nodes += split_tree(x, parts, axis, f"{prefix}/in{j}/split")
        nodes += [helper.make_node("Squeeze", [p, f"{prefix}/in{j}/axis"], [s]) for p, s in zip(parts, squeezed)]
        slices.append(squeezed[::-1] if backwards else squeezed)
    body_locals = {o for n in form.body.node for o in n.output if o}
    shared = {t.name: f"{prefix}/{t.name}" for t in form.body.initializer}
    nodes += _local_constants(form.body, shared)
    state, per_step = list(form.states), [[] for _ in form.out_axes]
    for t in range(steps):
        rename = {**shared, **{name: f"{prefix}/t{t}/{name}" for name in body_locals}}
        rename.update(zip([v.name for v in form.body.input], state + [s[t] for s in slices]))
        nodes += [_renamed(n, rename, f"{prefix}/t{t}/") for n in form.body.node]
        results = [rename.get(v.name, v.name) for v in form.body.output]
        state = results[: len(state)]
        for k, value in enumerate(results[len(state) :]):
            per_step[k].append(value)
    nodes += [helper.make_node("Identity", [s], [out]) for s, out in zip(state, node.output)]
    outputs = node.output[len(form.states) :]
    for k, (values, axis, backwards, out) in enumerate(zip(per_step, form.out_axes, form.out_reversed, outputs)):
        expanded = [f"{prefix}/out{k}/t{t}" for t in range(steps)]
        nodes.append(_constant(f"{prefix}/out{k}/axis", np.asarray([axis], dtype=np.int64)))
        nodes += [helper.make_node("Unsqueeze", [v, f"{prefix}/out{k}/axis"], [e]) for v, e in zip(values, expanded)]
        nodes += concat_tree(expanded[::-1] if backwards else expanded, out, axis, f"{prefix}/out{k}/concat")
    return nodes


def _fan_groups(count: int) -> list[tuple[int, int]]:
    """[start, stop) ranges that cut `count` leaves into at most MAX_FAN groups of MAX_FAN**k leaves
    (the last may be shorter), k the least that fits: single leaves when count <= MAX_FAN."""
    size = 1
    while size * MAX_FAN < count:
        size *= MAX_FAN
    return [(start, min(start + size, count)) for start in range(0, count, size)]


def split_tree(x: str, outputs: list[str], axis: int, name: str) -> list[onnx.NodeProto]:
    """Nodes that split `x` along `axis` into `outputs`, one slice of length 1 each, in order, by
    Splits of at most MAX_FAN outputs (a tree when there are more; its inner values are named
    under `name`)."""
    from onnx import helper

    groups = _fan_groups(len(outputs))
    parts = [outputs[a] if b - a == 1 else f"{name}/{a}-{b}" for a, b in groups]
    nodes = [
        _constant(f"{name}/sizes", np.asarray([b - a for a, b in groups], dtype=np.int64)),
        helper.make_node("Split", [x, f"{name}/sizes"], parts, axis=axis),
    ]
    for (a, b), part in zip(groups, parts):
        if b - a > 1:
            nodes += split_tree(part, outputs[a:b], axis, part)
    return nodes


def concat_tree(inputs: list[str], output: str, axis: int, name: str) -> list[onnx.NodeProto]:
    """Nodes that concatenate `inputs` along `axis` into `output`, in order, by Concats of at most
    MAX_FAN inputs (a tree when there are more; its inner values are named under `name`)."""
    from onnx import helper

    groups = _fan_groups(len(inputs))
    parts = [inputs[a] if b - a == 1 else f"{name}/{a}-{b}" for a, b in groups]
    nodes = []
    for (a, b), part in zip(groups, parts):
        if b - a > 1:
            nodes += concat_tree(inputs[a:b], part, axis, part)
    return nodes + [helper.make_node("Concat", parts, [output], axis=axis)]


def _references(node: onnx.NodeProto) -> set[str]:
    """Every name `node` reads, its subgraphs' outer references included (a superset of them)."""
    names = {i for i in node.input if i}
    for graph in _subgraphs(node):
        for inner in graph.node:
            names |= _references(inner)
        names |= {v.name for v in graph.output}
    return names


def _prune(graph: onnx.GraphProto) -> None:
    """Drop, in place, the nodes and initializers that no graph output depends on."""
    needed = {v.name for v in graph.output}
    kept = []
    for node in reversed(graph.node):
        if any(o in needed for o in node.output):
            kept.append(node)
            needed |= _references(node)
    del graph.node[:]
    graph.node.extend(reversed(kept))
    initializers = [t for t in graph.initializer if t.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(initializers)


def same_graph(a: onnx.ModelProto, b: onnx.ModelProto) -> bool:
    """Whether two models have the same nodes (ops, attributes, wiring) and the same float
    initializers: the unrolled models of one T at two batch sizes differ only in int64 shapes."""
    from onnx import TensorProto, numpy_helper

    def strip(node: onnx.NodeProto) -> tuple:
        return node.op_type, tuple(node.input), tuple(node.output), tuple(x.SerializeToString() for x in node.attribute)

    def floats(model: onnx.ModelProto) -> dict[str, bytes]:
        return {
            t.name: numpy_helper.to_array(t).tobytes()
            for t in model.graph.initializer
            if t.data_type != TensorProto.INT64
        }

    return [strip(n) for n in a.graph.node] == [strip(n) for n in b.graph.node] and floats(a) == floats(b)


# --------------------------------------------------------------------------------------------
# prepare: models, data and reference outputs
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TorchForm:
    """A model's PyTorch twin: a class of models/torch_nets.py, its kwargs and its state_dict file."""

    weights: Path
    class_name: str
    kwargs: dict[str, Any]


@dataclass(frozen=True)
class ModelSource:
    """One model to prepare: its ANN (.onnx, one input), calibration data and test set
    preprocessed as the ANN expects, and optionally its PyTorch twin (the spikingjelly baseline)."""

    name: str
    ann: Path
    calibration: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    torch: TorchForm | None = None


def reference_source(name: str, cache_dir: str | None = None) -> ModelSource:
    """Reference model `name` of onnx_snn.models.zoo (trained and cached on first use)."""
    from onnx_snn.models.zoo import RECIPES, WEIGHTS_FILE, get_reference

    reference = get_reference(name, cache_dir=cache_dir)
    x_test, y_test = reference.load_test()
    recipe = RECIPES[name]
    twin = (
        TorchForm(reference.onnx_path.with_name(WEIGHTS_FILE), recipe.net, dict(recipe.net_kwargs))
        if recipe.net in TORCH_NETS
        else None
    )
    return ModelSource(name, reference.onnx_path, reference.load_calibration(), x_test, y_test, twin)


def _cpu_session(model: str | Path | bytes) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(model if isinstance(model, bytes) else str(model), options, providers=[CPU])


def _run_cpu(model: str | Path | bytes, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every output of `model` on the CPU EP, by name."""
    session = _cpu_session(model)
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, feed)))


def relative_error(result: np.ndarray, reference: np.ndarray) -> float:
    """max |result - reference| / max |reference| (0 for two all-zero arrays)."""
    scale = float(np.abs(reference).max(initial=0.0))
    error = float(np.abs(result.astype(np.float64) - reference).max(initial=0.0))
    return error / scale if scale else error


def largest_tensor_bytes(model: onnx.ModelProto) -> int:
    """Bytes of the largest value of a static model at 4 bytes per element (from shape inference)."""
    return 4 * max((prod(s) for s in _static_shapes(_infer(model).graph).values()), default=0)


def check_unrolled(scan_path: Path, unrolled: onnx.ModelProto, x: np.ndarray) -> dict[str, Any]:
    """Run the unrolled model and its Scan model on the CPU on `x` (the static batch) and return
    the largest relative error over their outputs; raises ValueError above CHECK_RTOL."""
    input_name = unrolled.graph.input[0].name
    expected = _run_cpu(scan_path, {input_name: x})
    got = _run_cpu(unrolled.SerializeToString(), {input_name: x})
    error = max(relative_error(got[name], value) for name, value in expected.items())
    if error > CHECK_RTOL:
        raise ValueError(
            f"unrolled {scan_path.name} at batch {len(x)} differs from the Scan model: relative error {error:.3g}"
        )
    return {"checked": "cpu run", "max_rel_err": error}


def ops_summary(model: onnx.ModelProto) -> dict[str, Any]:
    """Node count, op histogram and the int64 values computed at run time (shape arithmetic that
    onnxruntime would place on the CPU EP; 0 after folding)."""
    from onnx import TensorProto

    inferred = _infer(model).graph
    int64 = [v.name for v in inferred.value_info if v.type.tensor_type.elem_type == TensorProto.INT64]
    return {
        "nodes": len(model.graph.node),
        "ops": dict(Counter(n.op_type for n in model.graph.node)),
        "int64_values": len(int64),
    }


def _save(model: onnx.ModelProto, path: Path) -> None:
    import onnx

    onnx.save(model, str(path))


def _compile(source: ModelSource, timesteps: int, path: Path) -> None:
    """Compile the ANN with default options at `timesteps` into `path`."""
    from onnx_snn import CompileOptions, compile_model

    compile_model(str(source.ann), str(path), CompileOptions(timesteps=timesteps), calibration=source.calibration)


def prepare_unrolled(
    source: ModelSource, out: Path, scan_path: Path, timesteps: int, batches: list[int]
) -> dict[str, dict[str, Any]]:
    """Write the unrolled SNN of `scan_path` at each batch, each checked against the Scan model:
    run on the CPU if its largest tensor is at most CHECK_TENSOR_BYTES, else compared with a
    checked batch's graph (same_graph). Returns the manifest entries by batch."""
    import onnx

    scan = onnx.load(str(scan_path))
    entries: dict[str, dict[str, Any]] = {}
    checked: tuple[int, onnx.ModelProto] | None = None
    for batch in sorted(batches):
        _log(f"{source.name} T={timesteps}: unrolling at batch {batch}")
        unrolled = make_static(scan, batch)
        file = f"{source.name}.snn.T{timesteps}.unrolled.b{batch}.onnx"
        _save(unrolled, out / file)
        largest = largest_tensor_bytes(unrolled)
        if largest <= CHECK_TENSOR_BYTES:
            check = check_unrolled(scan_path, unrolled, _batch_of(source.x_test, batch))
            checked = batch, unrolled
        elif checked is not None and same_graph(checked[1], unrolled):
            check = {"checked": f"same graph as batch {checked[0]}, which ran on the CPU"}
        else:
            raise ValueError(f"{file}: too large to run on the CPU and unlike every smaller batch's graph")
        entries[str(batch)] = {"file": file, "largest_tensor_bytes": largest, **check, **ops_summary(unrolled)}
    return entries


def _batch_of(x: np.ndarray, batch: int) -> np.ndarray:
    """The first `batch` samples of x, repeated cyclically if x has fewer."""
    return np.ascontiguousarray(np.resize(x, (batch, *x.shape[1:])).astype(np.float32))


def prepare_model(
    source: ModelSource,
    out: Path,
    timesteps: Iterable[int],
    batches: Iterable[int],
    reference: dict[str, np.ndarray],
    inputs: dict[str, np.ndarray],
) -> dict[str, Any]:
    """Write one model's files into `out`, add its test data to `inputs` and its CPU reference
    outputs to `reference` (keys `<model>/...`), and return its manifest entry."""
    import onnx

    name = source.name
    ann_file = f"{name}.ann.onnx"
    shutil.copyfile(source.ann, out / ann_file)
    ann = onnx.load(str(source.ann))
    input_name = next(i.name for i in ann.graph.input if i.name not in {t.name for t in ann.graph.initializer})
    x = np.ascontiguousarray(source.x_test[:TEST_SAMPLES], dtype=np.float32)
    inputs[f"{name}/x"], inputs[f"{name}/y"] = x, np.asarray(source.y_test[:TEST_SAMPLES], dtype=np.int64)
    head = {input_name: x[:REFERENCE_SAMPLES]}
    reference[f"{name}/ann"] = _run_cpu(out / ann_file, head)[ann.graph.output[0].name]
    timesteps, batches = list(timesteps), list(batches)
    all_batches = sorted(set(batches) | ({DRY_RUN_BATCH} if DRY_RUN_T in timesteps else set()))
    ann_static = {}
    for batch in all_batches:
        ann_static[str(batch)] = f"{name}.ann.b{batch}.onnx"
        _save(make_static(ann, batch), out / ann_static[str(batch)])
    snn: dict[str, Any] = {}
    for t in timesteps:
        scan_file = f"{name}.snn.T{t}.onnx"
        _log(f"{name}: compiling at T={t}")
        _compile(source, t, out / scan_file)
        outputs = _run_cpu(out / scan_file, head)
        reference.update({f"{name}/T{t}/{k}": v for k, v in outputs.items()})
        t_batches = batches + ([DRY_RUN_BATCH] if t == DRY_RUN_T else [])
        snn[str(t)] = {
            "scan": scan_file,
            "outputs": list(outputs),
            "unrolled": prepare_unrolled(source, out, out / scan_file, t, t_batches),
        }
    entry: dict[str, Any] = {
        "input": input_name,
        "ann": ann_file,
        "ann_output": ann.graph.output[0].name,
        "ann_static": ann_static,
        "snn": snn,
        "torch": None,
    }
    if source.torch is not None:
        weights = f"{name}.weights.pt"
        shutil.copyfile(source.torch.weights, out / weights)
        inputs[f"{name}/x_calib"] = np.asarray(source.calibration, dtype=np.float32)
        entry["torch"] = {
            "weights": weights,
            "module": "models/torch_nets.py",
            "class": source.torch.class_name,
            "kwargs": source.torch.kwargs,
            "calibration": f"{name}/x_calib",
        }
    return entry


def prepare(
    out: Path, sources: Iterable[ModelSource], timesteps: Iterable[int] = TIMESTEPS, batches: Iterable[int] = BATCHES
) -> dict[str, Any]:
    """Write every model's files, inputs.npz, reference.npz and (last) manifest.json into `out`;
    return the manifest. The dry-run batch is added at T = DRY_RUN_T when that T is prepared."""
    out.mkdir(parents=True, exist_ok=True)
    timesteps, batches = list(timesteps), list(batches)
    reference: dict[str, np.ndarray] = {}
    inputs: dict[str, np.ndarray] = {}
    models = {s.name: prepare_model(s, out, timesteps, batches, reference, inputs) for s in sources}
    np.savez_compressed(out / "inputs.npz", **inputs)
    np.savez_compressed(out / "reference.npz", **reference)
    probes = {}
    for op in POOL_PROBE_OPS:
        probes[op] = f"probe.{op}.onnx"
        _save(pool_model(op), out / probes[op])
    manifest = {
        "format": 1,
        "timesteps": timesteps,
        "batches": batches,
        "dry_run": {"batch": DRY_RUN_BATCH, "timesteps": DRY_RUN_T},
        "inputs": "inputs.npz",
        "reference": "reference.npz",
        "reference_samples": REFERENCE_SAMPLES,
        "onnxruntime_prepare": ort.__version__,
        "models": models,
        "pool_probes": probes,
    }
    files = sorted(p for p in out.iterdir() if p.is_file() and p.name != "manifest.json")
    manifest["files"] = {p.name: p.stat().st_size for p in files}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def pool_model(op: str) -> onnx.ModelProto:
    """One `op` node (AveragePool and MaxPool: 2x2, stride 2) on a float input [n, c, h, w] with
    every dim dynamic."""
    from onnx import TensorProto, helper

    attrs = {} if op.startswith("Global") else {"kernel_shape": [2, 2], "strides": [2, 2]}
    graph = helper.make_graph(
        [helper.make_node(op, ["x"], ["y"], **attrs)],
        f"probe_{op}",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", "c", "h", "w"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


# --------------------------------------------------------------------------------------------
# run: timing on the device
# --------------------------------------------------------------------------------------------

_NUMPY_TYPES = {"tensor(float)": np.float32, "tensor(int64)": np.int64, "tensor(double)": np.float64}


@dataclass(frozen=True)
class Device:
    """Where the run happens: onnxruntime's device name, and the CUDA EP's options."""

    name: str  # "cuda" or "cpu"
    tf32: bool = False

    def session(self, path: Path, cuda_graph: bool) -> ort.InferenceSession:
        """An InferenceSession of `path`; on CUDA with `enable_cuda_graph` if `cuda_graph`.
        Raises RuntimeError if the CUDA EP did not start."""
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if self.name == "cpu":
            return ort.InferenceSession(str(path), options, providers=[CPU])
        cuda = {
            "enable_cuda_graph": "1" if cuda_graph else "0",
            "use_tf32": "1" if self.tf32 else "0",
            "arena_extend_strategy": "kSameAsRequested",
        }
        session = ort.InferenceSession(str(path), options, providers=[(CUDA, cuda), CPU])
        if session.get_providers()[0] != CUDA:
            raise RuntimeError(f"the CUDA EP did not start (providers {session.get_providers()})")
        return session


class BoundRunner:
    """One session whose inputs and outputs are bound to fixed OrtValues on the device: each call
    runs it once and waits for the outputs. Fixed bindings are what a CUDA-graph session needs
    (it captures on its first runs, then replays); the other variants get the same, so no
    variant pays host copies. Outputs with dynamic dims are sized by one probe run."""

    def __init__(self, session: ort.InferenceSession, feeds: dict[str, np.ndarray], device: str) -> None:
        self.session, self.device = session, device
        self.binding = session.io_binding()
        self._inputs = {
            k: ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(v), device, 0) for k, v in feeds.items()
        }
        for name, value in self._inputs.items():
            self.binding.bind_ortvalue_input(name, value)
        self._outputs = {
            name: ort.OrtValue.ortvalue_from_shape_and_type(shape, dtype, device, 0)
            for name, (shape, dtype) in self._output_specs().items()
        }
        for name, value in self._outputs.items():
            self.binding.bind_ortvalue_output(name, value)

    def _output_specs(self) -> dict[str, tuple[list[int], type]]:
        outputs = self.session.get_outputs()
        shapes = [o.shape for o in outputs]
        if not all(isinstance(d, int) for s in shapes for d in s):
            for o in outputs:
                self.binding.bind_output(o.name, self.device)
            self()
            shapes = [v.shape() for v in self.binding.get_outputs()]
            self.binding.clear_binding_outputs()
        return {o.name: (list(s), _NUMPY_TYPES[o.type]) for o, s in zip(outputs, shapes)}

    def __call__(self) -> None:
        self.session.run_with_iobinding(self.binding)
        self.binding.synchronize_outputs()

    def outputs(self) -> dict[str, np.ndarray]:
        return {name: value.numpy() for name, value in self._outputs.items()}


class JellyRunner:
    """spikingjelly's converted SNN simulated single-step for T steps on one batch (fresh state);
    its output is the mean of the per-step outputs, in ANN units like ours."""

    def __init__(self, snn: Any, x: np.ndarray, timesteps: int, device: str) -> None:
        import torch

        self.snn, self.timesteps, self.device = snn, timesteps, device
        self.x = torch.from_numpy(x).to(device)
        self._mean = None

    def __call__(self) -> None:
        import torch
        from spikingjelly.activation_based import functional

        functional.reset_net(self.snn)
        with torch.no_grad():
            total = sum(self.snn(self.x) for _ in range(self.timesteps))
        if self.device == "cuda":
            torch.cuda.synchronize()
        self._mean = total / self.timesteps

    def outputs(self) -> dict[str, np.ndarray]:
        return {"logits": self._mean.cpu().numpy()}


def load_spikingjelly(root: Path, entry: dict[str, Any], inputs: Any, device: Device) -> tuple[Any, str | None]:
    """(spikingjelly's 99.9%-mode ann2snn conversion of the model's PyTorch twin, None), or
    (None, why not): no twin; torch, spikingjelly or models/torch_nets.py does not import; or
    the conversion fails (a CPU-only torch asked for CUDA, say)."""
    twin = entry.get("torch")
    if twin is None:
        return None, "no PyTorch twin"
    try:
        import torch
        from spikingjelly.activation_based.ann2snn import Converter
        from spikingjelly.activation_based.ann2snn.recipes.rate_coding import RateCodingRecipe

        sys.path.insert(0, str(REPO_ROOT))
        from models import torch_nets
    except ImportError as exc:
        return None, f"not importable ({exc})"
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = device.tf32
    try:
        net = getattr(torch_nets, twin["class"])(**twin["kwargs"])
        net.load_state_dict(torch.load(root / twin["weights"], map_location="cpu", weights_only=True))
        net = net.eval().to(device.name)
        calibration = inputs[twin["calibration"]]
        loader = [torch.from_numpy(calibration[i : i + 256]) for i in range(0, len(calibration), 256)]
        return Converter(RateCodingRecipe(dataloader=loader, mode="99.9%")).convert(net).eval(), None
    except Exception as exc:  # noqa: BLE001 - the baseline is optional: any failure only skips it
        return None, f"conversion failed ({type(exc).__name__}: {str(exc)[:200]})"


@dataclass
class Variant:
    """One timed thing of a cell: how to build its runner, what its outputs are compared with,
    and what happened (its times, check, or the one-line error that stopped it)."""

    name: str
    build: Callable[[], Any]
    reference: dict[str, np.ndarray]
    compared_with: str
    is_ann: bool = False
    runner: Any = None
    times: list[float] = field(default_factory=list)
    error: str | None = None

    def attempt(self, action: Callable[[], None]) -> None:
        """Run `action`; on any failure (onnxruntime raises several unrelated types, CUDA graph
        capture or memory among them) record its first line and drop the runner."""
        if self.error is not None:
            return
        try:
            action()
        except Exception as exc:  # noqa: BLE001 - every failure is recorded, none is fatal
            self.error = f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:240]}"
            self.runner = None

    def untimed(self, calls: int) -> None:
        """`calls` calls of the runner, not timed."""

        def action() -> None:
            for _ in range(calls):
                self.runner()

        self.attempt(action)

    def timed(self, calls: int) -> None:
        """`calls` timed calls of the runner, appended to `times`."""

        def action() -> None:
            for _ in range(calls):
                start = time.perf_counter()
                self.runner()
                self.times.append(time.perf_counter() - start)

        self.attempt(action)


#: Untimed calls after building each runner (allocation, cuDNN algorithm search, CUDA graph
#: capture), and the ANN's untimed and timed calls per round: one SNN run leaves caches and the
#: allocator cold, and the ANN's next calls are slower than its steady state.
WARMUP_CALLS, ANN_WARMUP, ANN_TIMED = 3, 3, 10


def compare(outputs: dict[str, np.ndarray], reference: dict[str, np.ndarray], labels: np.ndarray) -> dict[str, Any]:
    """Errors of `outputs` against the CPU `reference` (same names; each sliced to the samples
    both have), argmax agreement of the first output with the reference's first, and accuracy
    of the first output on `labels` (every sample of the batch)."""
    errors_abs, errors_rel = [], []
    for name, expected in reference.items():
        got, expected = _common(outputs[name], expected)
        errors_abs.append(float(np.abs(got.astype(np.float64) - expected).max(initial=0.0)))
        errors_rel.append(relative_error(got, expected))
    first = next(iter(outputs.values()))
    got, expected = _common(first, next(iter(reference.values())))
    return {
        "max_abs_err": max(errors_abs),
        "max_rel_err": max(errors_rel),
        "agreement": float((got.argmax(-1) == expected.argmax(-1)).mean()),
        "compared": int(len(got)),
        "accuracy": float((first.argmax(-1) == labels[: len(first)]).mean()),
    }


def _common(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """a and b cut, axis by axis, to their common extent (the batch axis differs)."""
    index = tuple(slice(0, min(x, y)) for x, y in zip(a.shape, b.shape))
    return a[index], b[index]


@dataclass(frozen=True)
class Cell:
    """One measurement: model x T x batch, with its test inputs and reference outputs."""

    model: str
    timesteps: int
    batch: int
    x: np.ndarray
    y: np.ndarray


def cell_variants(
    root: Path, entry: dict[str, Any], cell: Cell, device: Device, reference: Any, jelly: Any
) -> list[Variant]:
    """The variants of a cell, unbuilt: ANN, ANN in a CUDA graph, Scan SNN, unrolled SNN without
    and with a CUDA graph, and spikingjelly when `jelly` is its converted net."""
    feeds = {entry["input"]: cell.x}
    prefix = f"{cell.model}/T{cell.timesteps}/"
    ann_ref = {entry["ann_output"]: reference[f"{cell.model}/ann"]}
    snn_ref = {name: reference[prefix + name] for name in entry["snn"][str(cell.timesteps)]["outputs"]}
    scan = entry["snn"][str(cell.timesteps)]
    unrolled = root / scan["unrolled"][str(cell.batch)]["file"]

    def bound(path: Path, cuda_graph: bool) -> Callable[[], BoundRunner]:
        return lambda: BoundRunner(device.session(path, cuda_graph), feeds, device.name)

    variants = [
        Variant("ann", bound(root / entry["ann"], False), ann_ref, "cpu ann", is_ann=True),
        Variant("ann_graph", bound(root / entry["ann_static"][str(cell.batch)], True), ann_ref, "cpu ann", is_ann=True),
        Variant("snn_scan", bound(root / scan["scan"], False), snn_ref, "cpu snn"),
        Variant("snn_unrolled", bound(unrolled, False), snn_ref, "cpu snn"),
        Variant("snn_unrolled_graph", bound(unrolled, True), snn_ref, "cpu snn"),
    ]
    if jelly is not None:
        variants.append(
            Variant(
                "spikingjelly",
                lambda: JellyRunner(jelly, cell.x, cell.timesteps, device.name),
                {"logits": reference[f"{cell.model}/ann"]},
                "cpu ann",
            )
        )
    return variants


def measure(variants: list[Variant], rounds: int) -> None:
    """Build and warm up every variant, then time them in `rounds` alternating rounds: each ANN
    variant ANN_TIMED calls after ANN_WARMUP untimed ones, each SNN variant one call."""
    for variant in variants:
        _log(f"  building {variant.name}")
        variant.attempt(lambda v=variant: setattr(v, "runner", v.build()))
        variant.untimed(WARMUP_CALLS)
        if variant.error:
            _log(f"  {variant.name} failed: {variant.error}")
    for _ in range(rounds):
        for variant in variants:
            if variant.is_ann:
                variant.untimed(ANN_WARMUP)
            variant.timed(ANN_TIMED if variant.is_ann else 1)


def cell_rows(cell: Cell, variants: list[Variant], device: Device) -> list[dict[str, Any]]:
    """One result row per variant: median seconds, samples·T/s, ratio to T x ANN (plain and in a
    CUDA graph), and the comparison with the CPU reference; or its error."""
    medians = {v.name: statistics.median(v.times) for v in variants if v.error is None and v.times}
    rows = []
    for v in variants:
        row: dict[str, Any] = {
            "model": cell.model,
            "T": cell.timesteps,
            "batch": cell.batch,
            "variant": v.name,
            "cuda_graph": v.name.endswith("_graph") and device.name == "cuda",
            "compared_with": v.compared_with,
            "error": v.error,
            "samples": len(v.times),
        }
        if v.name in medians:
            median = medians[v.name]
            steps = 1 if v.is_ann else cell.timesteps
            row.update(median_s=median, samples_T_per_s=cell.batch * steps / median)
            for key, ann in (("ratio_T_ann", "ann"), ("ratio_T_ann_graph", "ann_graph")):
                row[key] = None if v.is_ann or ann not in medians else median / (cell.timesteps * medians[ann])
            try:
                row.update(compare(v.runner.outputs(), v.reference, cell.y))
            except Exception as exc:  # noqa: BLE001 - a failed read-back is recorded like a failed run
                row["error"] = f"reading outputs: {type(exc).__name__}: {str(exc)[:200]}"
        rows.append(row)
    return rows


def environment(device: Device) -> dict[str, Any]:
    """Versions, providers and the GPU (from nvidia-smi when present)."""
    info: dict[str, Any] = {
        "onnxruntime": ort.__version__,
        "available_providers": ort.get_available_providers(),
        "numpy": np.__version__,
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {platform.node()}",
        "device": device.name,
        "tf32": device.tf32,
        "gpu": None,
    }
    if shutil.which("nvidia-smi"):
        query = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        info["gpu"] = query.stdout.strip() or query.stderr.strip()
    for package in ("torch", "spikingjelly", "onnxruntime-gpu"):
        try:
            info[package] = version(package)
        except PackageNotFoundError:
            info[package] = None
    return info


def pool_probe(root: Path, device: Device, cases: Iterable[tuple[str, tuple[int, ...]]]) -> Iterator[dict[str, Any]]:
    """Run each (op, input shape) of `cases` once with the probe models of the manifest in `root`,
    input and output on the device (the input uninitialized: only whether the op runs matters);
    yield {op, shape, N, elements, bytes, ok, error} per case."""
    manifest = json.loads((root / "manifest.json").read_text())
    sessions: dict[str, ort.InferenceSession] = {}
    for op, shape in cases:
        case = {
            "op": op,
            "shape": list(shape),
            "N": shape[0],
            "elements": prod(shape),
            "bytes": 4 * prod(shape),
            "ok": False,
            "error": None,
        }
        try:
            if op not in sessions:
                sessions[op] = device.session(root / manifest["pool_probes"][op], cuda_graph=False)
            session = sessions[op]
            binding = session.io_binding()
            x = ort.OrtValue.ortvalue_from_shape_and_type(list(shape), np.float32, device.name, 0)
            binding.bind_ortvalue_input("x", x)
            binding.bind_output("y", device.name)
            session.run_with_iobinding(binding)
            binding.synchronize_outputs()
            del binding, x
            case["ok"] = True
        except Exception as exc:  # noqa: BLE001 - the failure is the finding
            case["error"] = f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:300]}"
        yield case


def probe_in_child(root: Path, device: Device) -> dict[str, Any]:
    """POOL_PROBE_CASES run by `probe` in a child process (a crash or a poisoned CUDA context
    there loses only the cases after it): {cases: [...], error: None or why it stopped early}."""
    command = [sys.executable, str(Path(__file__).resolve()), "probe", "--in", str(root), "--providers", device.name]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=POOL_PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        stdout, error = exc.stdout or "", f"timed out after {POOL_PROBE_TIMEOUT_S} s"
        stdout = stdout.decode() if isinstance(stdout, bytes) else stdout
    else:
        stdout = done.stdout
        error = None if done.returncode == 0 else f"exit {done.returncode}: {done.stderr.strip()[-300:]}"
    cases = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    return {"cases": cases, "error": error}


@dataclass(frozen=True)
class RunSettings:
    """What `run` measures: the T and batch sizes, rounds, the time budget and the device."""

    timesteps: list[int]
    batches: list[int]
    rounds: int
    budget_s: float
    device: Device


def run(root: Path, settings: RunSettings) -> dict[str, Any]:
    """Measure every model x T x batch of the manifest in `root` and return the JSON result.
    Cells that start after the time budget is spent are recorded as skipped."""
    start = time.perf_counter()
    manifest = json.loads((root / "manifest.json").read_text())
    inputs, reference = np.load(root / manifest["inputs"]), np.load(root / manifest["reference"])
    device = settings.device
    if device.name == "cuda":
        if CUDA not in ort.get_available_providers():
            raise SystemExit(
                f"gpu_bench: the CUDA EP is not available (providers {ort.get_available_providers()}); "
                "install onnxruntime-gpu, or pass --providers cpu"
            )
        try:
            ort.preload_dlls()  # onnxruntime-gpu >= 1.21: CUDA and cuDNN from the nvidia-* wheels, if any
        except (AttributeError, OSError):
            pass
    rows, notes = [], {}
    for model, entry in manifest["models"].items():
        jelly, why = load_spikingjelly(root, entry, inputs, device)
        notes[model] = {"spikingjelly": why or "timed"}
        _log(f"{model}: spikingjelly {why or 'converted'}")
        for t in settings.timesteps:
            for batch in settings.batches:
                x, y = inputs[f"{model}/x"], inputs[f"{model}/y"]
                cell = Cell(model, t, batch, _batch_of(x, batch), np.resize(y, batch))
                if time.perf_counter() - start > settings.budget_s:
                    rows.append(
                        {
                            "model": model,
                            "T": t,
                            "batch": batch,
                            "variant": "*",
                            "error": f"skipped: time budget {settings.budget_s:.0f} s spent",
                        }
                    )
                    continue
                _log(f"{model} T={t} batch={batch}")
                variants = cell_variants(root, entry, cell, device, reference, jelly)
                measure(variants, settings.rounds)
                rows += cell_rows(cell, variants, device)
    probe = None
    if device.name == "cuda" and "pool_probes" in manifest:
        _log("cuDNN pooling probe")
        probe = probe_in_child(root, device)
    return {
        "environment": environment(device),
        "manifest_models": list(manifest["models"]),
        "settings": {
            "timesteps": settings.timesteps,
            "batches": settings.batches,
            "rounds": settings.rounds,
            "warmup_calls": WARMUP_CALLS,
            "ann_warmup": ANN_WARMUP,
            "ann_timed": ANN_TIMED,
            "reference_samples": manifest["reference_samples"],
        },
        "spikingjelly": notes,
        "rows": rows,
        "pool_probe": probe,
        "seconds": time.perf_counter() - start,
    }


def _fmt(value: float | None, pattern: str) -> str:
    return "–" if value is None else format(value, pattern)


def markdown(result: dict[str, Any]) -> str:
    """The result as a markdown section: environment, legend and one row per model/T/batch/variant."""
    env = result["environment"]
    lines = [
        f"## GPU benchmark ({env['device']}: {env['gpu'] or 'no nvidia-smi'}; onnxruntime {env['onnxruntime']}, "
        f"TF32 {'on' if env['tf32'] else 'off'})",
        "",
        f"Medians over {result['settings']['rounds']} rounds after {WARMUP_CALLS} warm-up calls; every variant is "
        "bound to fixed device buffers (IOBinding). samples·T/s counts one ANN pass as one step. "
        "Errors and agreement are against the CPU EP's outputs on the first "
        f"{result['settings']['reference_samples']} images (spikingjelly: against the CPU ANN); "
        "accuracy is on the whole batch."
        + (
            " On the CPU the *_graph variants are the static models with fixed bindings: there is no CUDA graph."
            if env["device"] == "cpu"
            else ""
        ),
        "",
        "| model | T | batch | variant | median (ms) | samples·T/s | SNN / (T×ANN) | SNN / (T×ANN graph) | "
        "max rel err | agreement (%) | accuracy (%) | note |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        median = row.get("median_s")
        lines.append(
            f"| {row['model']} | {row['T']} | {row['batch']} | {row['variant']} | "
            f"{_fmt(median and 1e3 * median, '.2f')} | {_fmt(row.get('samples_T_per_s'), '.3g')} | "
            f"{_fmt(row.get('ratio_T_ann'), '.2f')} | {_fmt(row.get('ratio_T_ann_graph'), '.2f')} | "
            f"{_fmt(None if row['variant'] == 'spikingjelly' else row.get('max_rel_err'), '.1e')} | "
            f"{_fmt(row.get('agreement') and 100 * row['agreement'], '.1f')} | "
            f"{_fmt(row.get('accuracy') and 100 * row['accuracy'], '.1f')} | {row.get('error') or ''} |"
        )
    probe = result.get("pool_probe")
    if probe:
        lines += [
            "",
            "### cuDNN pooling probe",
            "",
            "One call per case, input uninitialized on the device; N is the batch dim (the folded T×batch "
            "in a compiled SNN)." + (f" Stopped early: {probe['error']}" if probe["error"] else ""),
            "",
            "| op | input shape | N | elements | GiB | runs | error |",
            "|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {c['op']} | {'×'.join(map(str, c['shape']))} | {c['N']} | {c['elements']:.3g} | "
            f"{c['bytes'] / 2**30:.2f} | {'yes' if c['ok'] else 'no'} | {c['error'] or ''} |"
            for c in probe["cases"]
        ]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    prep = commands.add_parser("prepare", help="write the models, inputs and CPU references (needs onnx_snn)")
    prep.add_argument("--out", required=True, type=Path)
    prep.add_argument("--models", nargs="+", default=list(REFERENCE_MODELS))
    prep.add_argument("--cache-dir", default=None, help="onnx_snn's reference cache (default: $ONNX_SNN_CACHE)")
    bench = commands.add_parser("run", help="time the prepared models (numpy and onnxruntime only)")
    bench.add_argument("--in", dest="inp", required=True, type=Path)
    bench.add_argument("--json", required=True, type=Path)
    bench.add_argument("--markdown", required=True, type=Path)
    bench.add_argument("--providers", choices=("cuda", "cpu"), default="cuda")
    bench.add_argument(
        "--dry-run", action="store_true", help=f"CPU EP, batch {DRY_RUN_BATCH}, T = {DRY_RUN_T}, one round"
    )
    bench.add_argument("--rounds", type=int, default=5)
    bench.add_argument("--budget-s", type=float, default=270.0, help="start no new cell after this many seconds")
    bench.add_argument("--tf32", action="store_true", help="let the CUDA EP and torch use TF32 (default off)")
    probe = commands.add_parser("probe", help="run the cuDNN pooling probe; one JSON line per case")
    probe.add_argument("--in", dest="inp", required=True, type=Path)
    probe.add_argument("--providers", choices=("cuda", "cpu"), default="cuda")
    probe.add_argument("--small", action="store_true", help="tiny shapes only (a test of the path)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "prepare":
        manifest = prepare(args.out, [reference_source(m, args.cache_dir) for m in args.models])
        for name, size in manifest["files"].items():
            print(f"{size / 1e6:8.2f} MB  {name}")
        print(f"{sum(manifest['files'].values()) / 1e6:8.2f} MB  total in {args.out}")
        return 0
    if args.command == "probe":
        for case in pool_probe(args.inp, Device(args.providers), POOL_PROBE_SMALL if args.small else POOL_PROBE_CASES):
            print(json.dumps(case), flush=True)
        return 0
    manifest = json.loads((args.inp / "manifest.json").read_text())
    if args.dry_run:
        settings = RunSettings([DRY_RUN_T], [DRY_RUN_BATCH], 1, args.budget_s, Device("cpu"))
    else:
        settings = RunSettings(
            manifest["timesteps"], manifest["batches"], args.rounds, args.budget_s, Device(args.providers, args.tf32)
        )
    result = run(args.inp, settings)
    text = markdown(result)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    args.markdown.write_text(text)
    print(text, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
