"""Validation of every model onnx-snn loads: bad input is refused up front, on one line.

`validate_model(model, path)` returns None for a model that onnx-snn can read, else raises a
SnnError naming the file, the node and op where there is one, and what to do. In order:

1. in Python, before any of onnx's C++ code sees the model (some bad input aborts it): the IR
   version (MIN_IR_VERSION to onnx.IR_VERSION), NUL bytes in names, two nodes of one name, a
   graph without outputs, undefined element types, declared dims that are negative or absurd
   (or zero, on a graph input); then what attributes say on their own, which the checker leaves
   out: NaN, infinite or absurd (|v| > ABSURD) float attributes, flags that are not 0 or 1,
   auto_pad, a pool's pads against its kernel, a Conv's group and kernel_shape against its
   weight, LayerNormalization's stash_type, BatchNormalization's epsilon;
2. onnx.checker: the structural check, then shape inference in strict mode with type checks
   (together, `check_model(full_check=True)`; a model over 2 GiB is checked from its file), its
   message cut to one line naming the node it names. On an inference error a more telling cause
   is looked for first: weights that are not float or not in the inputs' precision, and the
   checks of 3. on leniently inferred shapes (the node blamed may just receive a bad shape);
3. on the inferred shapes and the values: no negative or absurd inferred dim; no NaN in a float
   initializer or Constant (nor ±inf or |v| > ABSURD, except as a bound, mask or fill value:
   BOUND_OPS); a window's kernel within its padded input; a Conv's input channels and bias
   against its weight; a Gemm's C broadcasting to its output without fixing the batch;
   LayerNormalization's axis within its input's rank; BatchNormalization's variance + epsilon > 0.

Constants read only by custom-domain nodes (such as the NaN "fresh state" inputs of onnx-snn's
own neurons) and the bodies of local functions are not checked for values. Nodes without a name
are named by op, index and first input and output tensors (`_node_label`).
"""

from __future__ import annotations

import math
import re
from typing import Iterator, cast

import numpy as np
import onnx
from onnx import TensorProto

from onnx_snn.errors import SnnError, shown, unnamed_node_label

#: the first IR version with opset imports (ONNX 1.0); onnx.IR_VERSION is the newest onnx reads
MIN_IR_VERSION = 3
#: magnitudes above this in a weight, Constant or float attribute are taken for corrupt data
ABSURD = 1e30
#: tensor dims above this, inferred or declared, are taken for corrupt attributes or shapes
MAX_DIM = 2**31 - 1
#: consumers for which ±inf and huge finite constants are meaningful bounds, masks or fill values
BOUND_OPS = frozenset(
    {
        "Clip",
        "Pad",
        "Where",
        "Max",
        "Min",
        "Less",
        "LessOrEqual",
        "Greater",
        "GreaterOrEqual",
        "Equal",
        "ConstantOfShape",
        "Constant",
    }
)
#: per op, the inputs that hold weights (their types explain a failed type inference)
WEIGHT_INPUTS: dict[str, tuple[int, ...]] = {
    "Conv": (1, 2),
    "ConvTranspose": (1, 2),
    "Gemm": (0, 1, 2),
    "MatMul": (0, 1),
    "BatchNormalization": (1, 2, 3, 4),
    "LayerNormalization": (1, 2),
    "InstanceNormalization": (1, 2),
}
FLOAT_TYPES = frozenset({TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.BFLOAT16})
#: integer attributes that are flags (0 or 1), per op
FLAGS: dict[str, tuple[str, ...]] = {
    "Gemm": ("transA", "transB"),
    "MaxPool": ("ceil_mode", "storage_order"),
    "AveragePool": ("ceil_mode", "count_include_pad"),
    "BatchNormalization": ("training_mode",),
}
AUTO_PAD = frozenset({"NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"})
WINDOW_OPS = frozenset({"Conv", "ConvTranspose", "MaxPool", "AveragePool", "LpPool"})
POOL_OPS = frozenset({"MaxPool", "AveragePool", "LpPool"})
#: stash_type values of LayerNormalization: the float element types
STASH_TYPES = frozenset(FLOAT_TYPES)
#: elements checked at a time for non-finite values (bounds the temporary arrays)
CHUNK = 1 << 22
#: characters of the checker's message kept
MESSAGE_LIMIT = 300

ShapeMap = dict[str, list]


def validate_model(model: onnx.ModelProto, path: str) -> None:
    """Refuse (SnnError naming `path`) a model that is invalid ONNX or that onnx-snn's passes
    cannot read safely; see the module docstring for what is checked, in which order. `path` is
    the file the model was read from: a model over 2 GiB is checked from it."""
    model = _with_known_repairs(model)
    nodes = list(model.graph.node)
    _check_ir_version(model, path)
    _check_names(model, path)
    _check_outputs(model, path)
    _check_declared_types(model, path)
    default = [(i, n) for i, n in enumerate(nodes) if (n.domain or "") in ("", "ai.onnx")]
    declared = _shapes(model)
    for index, node in default:
        _check_attributes(node, index, declared, path)
    shapes = _checked_shapes(model, nodes, path)
    _check_inferred_dims(shapes, nodes, path)
    _check_values(model, nodes, path)
    _check_all_in_context(model, nodes, shapes, path)


def _with_known_repairs(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model`, or for one with tf2onnx's invalid default-domain Erfc nodes (which canonicalize
    repairs, passes/canonicalize/erfc.py) a copy in which they read as Erf, the default-domain op
    with the same signature (one float tensor in, one of the same type and shape out): those models
    are read, not refused, and every other check still applies to them."""
    if not any(n.op_type == "Erfc" and (n.domain or "") in ("", "ai.onnx") for n in model.graph.node):
        return model
    checked = onnx.ModelProto()
    checked.CopyFrom(model)
    for node in checked.graph.node:
        if node.op_type == "Erfc" and (node.domain or "") in ("", "ai.onnx"):
            node.op_type = "Erf"
    return checked


def _node_label(node: onnx.NodeProto, index: int) -> str:
    """The node's name; for an unnamed node, its op, index in the graph and first input and output."""
    if node.name:
        return shown(node.name)
    return unnamed_node_label(
        node.op_type, index, node.input[0] if node.input else None, node.output[0] if node.output else None
    )


def _error(
    message: str, path: str, node: onnx.NodeProto | None = None, index: int = 0, hint: str | None = None
) -> SnnError:
    if node is None:
        return SnnError(message, path=path, hint=hint)
    return SnnError(message, path=path, node=_node_label(node, index), op=shown(node.op_type), hint=hint)


# --------------------------------------------------------------------------- before the checker


def _graph_names(model: onnx.ModelProto) -> Iterator[tuple[str, str]]:
    """(what, name) of every name in the main graph."""
    graph = model.graph
    for kind, values in (
        ("graph input", graph.input),
        ("graph output", graph.output),
        ("value_info", graph.value_info),
        ("initializer", graph.initializer),
    ):
        for value in values:
            yield kind, value.name
    for node in graph.node:
        yield "node", node.name
        yield "op type", node.op_type
        yield "domain", node.domain
        for name in [*node.input, *node.output]:
            yield "tensor", name


def _check_names(model: onnx.ModelProto, path: str) -> None:
    """No NUL byte in any name; no node name used twice (onnxruntime refuses such graphs)."""
    for kind, name in _graph_names(model):
        if "\x00" in name:
            raise _error(
                f"the {kind} name '{shown(name)}' holds a NUL byte",
                path,
                hint="rename it in the exporter; ONNX names are plain strings",
            )
    first: dict[str, int] = {}
    for index, node in enumerate(model.graph.node):
        if node.name and first.setdefault(node.name, index) != index:
            raise _error(
                f"its name is also the name of node #{first[node.name]}",
                path,
                node,
                index,
                hint="give every node its own name (or none) and re-export",
            )


def _check_ir_version(model: onnx.ModelProto, path: str) -> None:
    if not MIN_IR_VERSION <= model.ir_version <= onnx.IR_VERSION:
        old = model.ir_version < MIN_IR_VERSION
        raise _error(
            f"has IR version {model.ir_version}; onnx-snn reads IR versions {MIN_IR_VERSION} to {onnx.IR_VERSION}",
            path,
            hint="re-export the model with a current exporter"
            if old
            else "upgrade the onnx package (pip install -U onnx) or re-export with an older IR version",
        )


def _check_outputs(model: onnx.ModelProto, path: str) -> None:
    if not model.graph.output:
        raise _error("the graph has no outputs", path, hint="re-export the model with its output (the logits)")


def _declared_dims(value: onnx.ValueInfoProto) -> list[int | None]:
    """The dim_value of every dim of a tensor's declared shape (None where unset or symbolic)."""
    if not value.type.HasField("tensor_type") or not value.type.tensor_type.HasField("shape"):
        return []
    return [d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim]


def _check_declared_types(model: onnx.ModelProto, path: str) -> None:
    """Declared element types must be ONNX's (and defined, for graph inputs and outputs); graph
    inputs need dims >= 1; no declared dim may be negative or absurd (onnx shape inference aborts
    the process on some of them)."""
    graph = model.graph
    initializers = {t.name for t in graph.initializer}
    known_types = set(TensorProto.DataType.values())
    for kind, values in (
        ("graph input", graph.input),
        ("graph output", graph.output),
        ("value_info of", graph.value_info),
    ):
        for value in values:
            elem = value.type.tensor_type.elem_type if value.type.HasField("tensor_type") else None
            undefined = elem == TensorProto.UNDEFINED and kind != "value_info of"
            if elem is not None and (elem not in known_types or undefined):
                raise _error(
                    f"{kind} '{shown(value.name)}' has element type {elem}, which is no ONNX tensor type",
                    path,
                    hint="re-export the model",
                )
            dims = _declared_dims(value)
            lowest = 1 if kind == "graph input" and value.name not in initializers else 0
            bad = [d for d in dims if d is not None and not lowest <= d <= MAX_DIM]
            if bad:
                shape = [d if d is not None else "?" for d in dims]
                raise _error(
                    f"{kind} '{shown(value.name)}' declares shape {shape} with dim {bad[0]}",
                    path,
                    hint="give every dim a size of at least 1, or a name (dim_param) for a dynamic one, and re-export",
                )


def _constant_dtypes(model: onnx.ModelProto) -> dict[str, int]:
    """Element type of every initializer and Constant-node output of the main graph."""
    dtypes = {t.name: t.data_type for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.output:
            tensor = next((a.t for a in node.attribute if a.name == "value" and a.HasField("t")), None)
            dtypes[node.output[0]] = tensor.data_type if tensor is not None else TensorProto.FLOAT
    return dtypes


def _input_float_types(model: onnx.ModelProto) -> set[int]:
    initializers = {t.name for t in model.graph.initializer}
    return {
        v.type.tensor_type.elem_type
        for v in model.graph.input
        if v.name not in initializers and v.type.tensor_type.elem_type in FLOAT_TYPES
    }


def _check_weight_types(model: onnx.ModelProto, nodes: list[onnx.NodeProto], path: str) -> None:
    """Called when type inference fails: weights that are not float, or not in the graph inputs'
    float type, are the likely cause (a valid graph may Cast to another precision, so this is no
    rule on its own). Not converted (float16 to float32, say): the graph is invalid as it is, no
    dtype is clearly meant, and the ANN that `eval --ann` compares against must be the file given."""
    constants = _constant_dtypes(model)
    wanted = _input_float_types(model)
    for index, node in enumerate(nodes):
        for position in WEIGHT_INPUTS.get(node.op_type, ()):
            name = node.input[position] if position < len(node.input) else ""
            dtype = constants.get(name)
            if dtype is None:
                continue
            if dtype not in FLOAT_TYPES:
                raise _error(
                    f"weight '{shown(name)}' is {_type_name(dtype)}; onnx-snn converts float networks",
                    path,
                    node,
                    index,
                    hint="re-export the model with float32 weights",
                )
            if len(wanted) == 1 and dtype not in wanted:
                raise _error(
                    f"weight '{shown(name)}' is {_type_name(dtype)} but the graph's inputs are "
                    f"{_type_name(next(iter(wanted)))}",
                    path,
                    node,
                    index,
                    hint="re-export the whole model in one precision (e.g. model.float() before export)",
                )


def _type_name(dtype: int) -> str:
    try:
        return TensorProto.DataType.Name(dtype).lower()
    except ValueError:
        return f"element type {dtype}"


# --------------------------------------------------------------------------- the checker


def _checked_shapes(model: onnx.ModelProto, nodes: list[onnx.NodeProto], path: str) -> ShapeMap:
    """Run onnx.checker's full check; return every tensor's shape (inferred, else declared).

    A model too large for one protobuf (over 2 GiB with its weights loaded) is checked from its
    file (external data stays on disk), and only its declared shapes are returned. When strict
    shape inference fails, a more telling cause is looked for first: weights of the wrong type
    (the checker names only the type clash), and the nodes checked in context on leniently
    inferred shapes (a node the checker blames often only receives the bad shape of one before it)."""
    try:
        if model.ByteSize() > onnx.checker.MAXIMUM_PROTOBUF:
            onnx.checker.check_model(str(path), full_check=True)
            return _shapes(model)
        onnx.checker.check_model(model, full_check=False)
        inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except onnx.checker.ValidationError as exc:
        raise checker_error(exc, nodes, path) from None
    except onnx.shape_inference.InferenceError as exc:
        _check_weight_types(model, nodes, path)
        _check_all_in_context(model, nodes, _lenient_shapes(model), path)
        raise checker_error(exc, nodes, path) from None
    return _shapes(inferred)


def _lenient_shapes(model: onnx.ModelProto) -> ShapeMap:
    """The shapes that shape inference finds when it skips the nodes it cannot infer."""
    try:
        return _shapes(onnx.shape_inference.infer_shapes(model))
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError):
        return _shapes(model)


def _shapes(model: onnx.ModelProto) -> ShapeMap:
    """name -> dims (int, str or None) of every tensor with a known shape in the main graph."""
    graph = model.graph
    shapes: ShapeMap = {t.name: list(t.dims) for t in graph.initializer}
    for value in [*graph.input, *graph.output, *graph.value_info]:
        tensor_type = value.type.tensor_type if value.type.HasField("tensor_type") else None
        if tensor_type is not None and tensor_type.HasField("shape"):
            shapes[value.name] = [
                d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tensor_type.shape.dim
            ]
    return shapes


_NODE_PATTERNS = (
    re.compile(r"\(op_type:([^,]*), node name: ([^)]*)\)"),
    re.compile(r"name: (.*?) OpType: (\S+)", re.IGNORECASE),
)
_NOISE = re.compile(
    r"\[(?:ShapeInferenceError|TypeInferenceError)\]\s*|Inference error\(s\):\s*"
    r"|\(op_type:[^,]*, node name: [^)]*\):\s*"
)


CHECKER_HINT = (
    "fix the exporter's output or re-export the model (onnx.checker.check_model(path, full_check=True) shows the same)"
)


def checker_error(
    exc: Exception,
    nodes: list[onnx.NodeProto],
    path: str,
    what: str = "is not a valid ONNX model",
    hint: str = CHECKER_HINT,
) -> SnnError:
    """onnx.checker's (or strict shape inference's) error `exc` about a graph of `nodes`, as one
    SnnError line: `what`, the first cause, the node it names (by label), `hint` (none if empty)."""
    text = str(exc)
    node, index = _named_node(text, nodes)
    first_cause = text.split("\n(op_type:")[0]  # later causes follow from the first
    message = " ".join(_NOISE.sub("", first_cause.split("==> Context:")[0]).split())
    message = re.sub(r"\s*(?:of node:)?\s*name: .*? OpType: \S+", "", message, flags=re.IGNORECASE).rstrip(" :")
    message = re.sub(
        r"\((\d+)\) vs \((\d+)\)", lambda m: f"({_type_name(int(m[1]))}) vs ({_type_name(int(m[2]))})", message
    )
    if len(message) > MESSAGE_LIMIT:
        message = message[: MESSAGE_LIMIT - 3] + "..."
    return _error(f"{what}: {message or type(exc).__name__}", path, node, index, hint=hint or None)


def _named_node(text: str, nodes: list[onnx.NodeProto]) -> tuple[onnx.NodeProto | None, int]:
    """The node a checker message names (by name and op; an unnamed one when it is the only
    unnamed node of that op), with its index; (None, 0) when none is named or found."""
    for pattern in _NODE_PATTERNS:
        found = pattern.search(text)
        if not found:
            continue
        first, second = found.group(1).strip(), found.group(2).strip()
        op, name = (first, second) if pattern is _NODE_PATTERNS[0] else (second, first)
        matches = [(n, i) for i, n in enumerate(nodes) if n.op_type == op and n.name == name]
        if len(matches) == 1 or (matches and name):
            return matches[0]
    return None, 0


# --------------------------------------------------------------------------- after the checker


def _producers(nodes: list[onnx.NodeProto]) -> dict[str, tuple[onnx.NodeProto, int]]:
    return {out: (node, i) for i, node in enumerate(nodes) for out in node.output if out}


def _check_inferred_dims(shapes: ShapeMap, nodes: list[onnx.NodeProto], path: str) -> None:
    """Every inferred dim must be in [0, MAX_DIM]: a negative or absurd one comes from a node whose
    attributes do not fit its input (a kernel larger than the padded input, a huge pad)."""
    producers = _producers(nodes)
    for name, dims in shapes.items():
        bad = [d for d in dims if isinstance(d, int) and not 0 <= d <= MAX_DIM]
        if bad and name in producers:
            node, index = producers[name]
            raise _error(
                f"its output '{shown(name)}' would have shape {dims}",
                path,
                node,
                index,
                hint="its attributes (kernel, pads, strides, axes) do not fit its input; fix them",
            )


def _consumers(nodes: list[onnx.NodeProto]) -> dict[str, list[tuple[onnx.NodeProto, int]]]:
    readers: dict[str, list[tuple[onnx.NodeProto, int]]] = {}
    for index, node in enumerate(nodes):
        for name in node.input:
            if name:
                readers.setdefault(name, []).append((node, index))
    return readers


def _constant_tensors(model: onnx.ModelProto) -> Iterator[tuple[str, TensorProto]]:
    """(tensor name, value) of every initializer and Constant node of the main graph."""
    for tensor in model.graph.initializer:
        yield tensor.name, tensor
    for node in model.graph.node:
        if node.op_type != "Constant" or not node.output:
            continue
        for attr in node.attribute:
            if attr.name == "value" and attr.HasField("t"):
                yield node.output[0], attr.t
            elif attr.name in ("value_float", "value_floats"):
                values = onnx.helper.get_attribute_value(attr)
                yield node.output[0], onnx.numpy_helper.from_array(np.asarray(values, np.float32))


def _check_values(model: onnx.ModelProto, nodes: list[onnx.NodeProto], path: str) -> None:
    """No NaN in a float constant read by a default-domain node; no ±inf or |v| > ABSURD either,
    unless every reader is a BOUND_OPS node (a Clip bound, a mask, a pad value)."""
    readers = _consumers(nodes)
    for name, tensor in _constant_tensors(model):
        default_readers = [(n, i) for n, i in readers.get(name, []) if (n.domain or "") in ("", "ai.onnx")]
        if tensor.data_type not in FLOAT_TYPES or not default_readers:
            continue
        bounds_only = all(n.op_type in BOUND_OPS for n, _ in default_readers)
        problem = first_bad_value(onnx.numpy_helper.to_array(tensor), allow_large=bounds_only)
        if problem is not None:
            node, index = default_readers[0]
            raise _error(
                f"its input '{shown(name)}' holds {problem}",
                path,
                node,
                index,
                hint="the weights are corrupt or diverged in training; fix them and re-export",
            )


def first_bad_value(values: np.ndarray, allow_large: bool = False) -> str | None:
    """The first NaN (or, unless `allow_large`, ±inf or |v| > ABSURD) in a float array and its
    index, as text; None when there is none. Scans in chunks of CHUNK elements, so a large array
    costs no large temporary."""
    flat = values.reshape(-1)
    for start in range(0, flat.size, CHUNK):
        part = flat[start : start + CHUNK].astype(np.float64)
        bad = np.isnan(part) if allow_large else ~(np.abs(part) <= ABSURD)
        hits = np.flatnonzero(bad)
        if hits.size:
            position = np.unravel_index(start + int(hits[0]), values.shape) if values.ndim else ()
            return f"{part[hits[0]]:g} at {[int(p) for p in position]}"
    return None


def _attributes(node: onnx.NodeProto) -> dict[str, object]:
    """name -> value of the node's attributes (those of an unknown type are left to the checker)."""
    values = {}
    for attr in node.attribute:
        try:
            values[attr.name] = onnx.helper.get_attribute_value(attr)
        except ValueError:
            continue
    return values


def _int(attrs: dict, name: str, default: int) -> int:
    """Integer attribute `name`, or `default` when it is absent or of another type (which the
    checker refuses)."""
    value = attrs.get(name, default)
    return value if isinstance(value, int) else default


def _ints(attrs: dict, name: str) -> list[int] | None:
    """Integer-list attribute `name`, or None when it is absent or of another type."""
    value = attrs.get(name)
    return value if isinstance(value, list) and all(isinstance(v, int) for v in value) else None


def _check_attributes(node: onnx.NodeProto, index: int, declared: ShapeMap, path: str) -> None:
    """What one default-domain node's attributes say on their own (and against its weights'
    declared shapes): float values, flags, windows, LayerNormalization's stash_type, BN's epsilon."""
    attrs = _attributes(node)
    _check_float_attributes(node, index, attrs, path)
    for flag in FLAGS.get(node.op_type, ()):
        if _int(attrs, flag, 0) not in (0, 1):
            raise _error(
                f"attribute {flag} is {attrs[flag]!r}; it must be 0 or 1",
                path,
                node,
                index,
                hint="fix the attribute or re-export the model",
            )
    if node.op_type in WINDOW_OPS:
        _check_window(node, index, attrs, declared, path)
    if node.op_type == "LayerNormalization" and _int(attrs, "stash_type", TensorProto.FLOAT) not in STASH_TYPES:
        raise _error(
            f"stash_type is {attrs['stash_type']!r}, not a float element type",
            path,
            node,
            index,
            hint="use stash_type=1 (float32) or leave it out",
        )
    epsilon = attrs.get("epsilon")
    if node.op_type == "BatchNormalization" and isinstance(epsilon, float) and epsilon < 0:
        raise _error(
            f"epsilon is {epsilon:g}; it must not be negative", path, node, index, hint="fix epsilon and re-export"
        )


def _check_float_attributes(node: onnx.NodeProto, index: int, attrs: dict, path: str) -> None:
    if node.op_type == "Constant":
        return  # its value is checked as a constant tensor, with its readers
    for name, value in attrs.items():
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, float) and (math.isnan(v) or (node.op_type not in BOUND_OPS and not abs(v) <= ABSURD)):
                raise _error(
                    f"attribute {name} is {v:g}",
                    path,
                    node,
                    index,
                    hint="set it to a finite value of sensible size and re-export",
                )


def _check_window(node: onnx.NodeProto, index: int, attrs: dict, declared: ShapeMap, path: str) -> None:
    """Conv and pooling: auto_pad, and what the checker leaves out: a pool's pads against its
    kernel, a Conv's group and kernel_shape against its weight."""
    auto_pad = attrs.get("auto_pad", b"NOTSET")
    if isinstance(auto_pad, bytes) and auto_pad.decode(errors="replace") not in AUTO_PAD:
        raise _error(
            f"auto_pad is '{shown(auto_pad.decode(errors='replace'))}', not one of {', '.join(sorted(AUTO_PAD))}",
            path,
            node,
            index,
            hint="fix the attribute or re-export the model",
        )
    kernel, pads = _ints(attrs, "kernel_shape"), _ints(attrs, "pads")
    if node.op_type in POOL_OPS and kernel and pads:
        dilations = _ints(attrs, "dilations") or [1] * len(kernel)
        reach = [(k - 1) * d + 1 for k, d in zip(kernel, dilations)]
        if any(p >= r for p, r in zip(pads, reach + reach)):
            raise _error(
                f"pads {pads} are not all smaller than the kernel {kernel}",
                path,
                node,
                index,
                hint="a pool's padding must be smaller than its kernel; fix the pads",
            )
    if node.op_type not in ("Conv", "ConvTranspose"):
        return
    group = _int(attrs, "group", 1)
    if group < 1:
        raise _error(
            f"group is {group}; it must be a positive integer",
            path,
            node,
            index,
            hint="fix the attribute or re-export the model",
        )
    weight = _conv_weight(node, declared)
    if weight is None:
        return
    if kernel is not None and kernel != weight[2:]:
        raise _error(
            f"kernel_shape {kernel} differs from the weight's spatial shape {weight[2:]}",
            path,
            node,
            index,
            hint="fix kernel_shape or the weight and re-export",
        )
    out_channels = weight[1] * group if node.op_type == "ConvTranspose" else weight[0]
    if out_channels % group:
        raise _error(
            f"group {group} does not divide the {out_channels} output channels of the weight {weight}",
            path,
            node,
            index,
            hint="fix group or the weight and re-export",
        )


def _conv_weight(node: onnx.NodeProto, shapes: ShapeMap) -> list[int] | None:
    """The static shape of a Conv's weight (input 1), of rank >= 3; None when unknown."""
    weight = _shape_of(node, 1, shapes)
    return weight if weight and len(weight) >= 3 and all(isinstance(d, int) for d in weight) else None


def _shape_of(node: onnx.NodeProto, position: int, shapes: ShapeMap) -> list | None:
    """The known shape of input `position` of `node` (dims int, str or None), else None."""
    name = node.input[position] if position < len(node.input) else ""
    return shapes.get(name) if name else None


def _check_all_in_context(model: onnx.ModelProto, nodes: list[onnx.NodeProto], shapes: ShapeMap, path: str) -> None:
    for index, node in enumerate(nodes):
        if (node.domain or "") in ("", "ai.onnx"):
            _check_in_context(model, node, index, shapes, path)


def _check_in_context(model: onnx.ModelProto, node: onnx.NodeProto, index: int, shapes: ShapeMap, path: str) -> None:
    """What needs the model's shapes and values: a window's kernel against its padded input, a
    Conv's group against its input channels, LayerNormalization's axis against its input's rank,
    BN's variance + epsilon."""
    attrs = _attributes(node)
    x = shapes.get(node.input[0]) if node.input else None
    if node.op_type in WINDOW_OPS and x is not None:
        _check_window_fits(node, index, attrs, x, shapes, path)
    if node.op_type in ("Conv", "ConvTranspose"):
        _check_conv_in_context(node, index, _int(attrs, "group", 1), x, shapes, path)
    if node.op_type == "Gemm":
        _check_gemm_bias(node, index, shapes, path)
    if node.op_type == "LayerNormalization" and x is not None:
        axis = _int(attrs, "axis", -1)
        if not -len(x) <= axis < len(x):
            raise _error(
                f"axis {axis} is out of range for an input of rank {len(x)}",
                path,
                node,
                index,
                hint=f"use an axis in [{-len(x)}, {len(x) - 1}]",
            )
    if node.op_type == "BatchNormalization":
        _check_variance(model, node, index, float(cast(float, attrs.get("epsilon", 1e-5))), path)


def _check_conv_in_context(
    node: onnx.NodeProto, index: int, group: int, x: list | None, shapes: ShapeMap, path: str
) -> None:
    """A Conv's input channels against its weight and group; its bias: one value per output channel."""
    weight = _shape_of(node, 1, shapes)
    if not weight or len(weight) < 3:
        return
    channels = x[1] if x and len(x) > 1 and isinstance(x[1], int) else None
    per_group = weight[0] if node.op_type == "ConvTranspose" else weight[1]
    if isinstance(per_group, int) and channels is not None and channels != per_group * group:
        raise _error(
            f"group {group} with the weight {weight} needs {per_group * group} input channels, the input "
            f"has {channels}",
            path,
            node,
            index,
            hint="group must divide the input channels into the weight's; fix it or the weight",
        )
    bias = _shape_of(node, 2, shapes)
    out = weight[1] * group if node.op_type == "ConvTranspose" and isinstance(weight[1], int) else weight[0]
    if bias is not None and (len(bias) != 1 or (isinstance(out, int) and bias[0] != out)):
        raise _error(
            f"its bias has shape {bias}; it needs one value per output channel ([{out}])",
            path,
            node,
            index,
            hint="fix the bias and re-export",
        )


def _check_gemm_bias(node: onnx.NodeProto, index: int, shapes: ShapeMap, path: str) -> None:
    """A Gemm's C must broadcast to its output [M, N] without fixing the batch M: each of its dims
    is 1 or the output's (a dim > 1 against the free batch would fix it)."""
    bias = _shape_of(node, 2, shapes)
    out = shapes.get(node.output[0]) if node.output else None
    if bias is None or out is None:
        return
    aligned = list(zip(bias[::-1], out[::-1]))
    if len(bias) > len(out) or any(isinstance(b, int) and b != 1 and b != o for b, o in aligned):
        raise _error(
            f"its C (bias) has shape {bias}, which does not broadcast to its output {out} for every batch size",
            path,
            node,
            index,
            hint="give it one value per output column ([N] or [1, N])",
        )


def _check_window_fits(node: onnx.NodeProto, index: int, attrs: dict, x: list, shapes: ShapeMap, path: str) -> None:
    """The kernel (dilated) of a Conv or pool must fit its input padded by explicit pads: else the
    output has no element (ONNX shape inference rounds that to one)."""
    weight = _conv_weight(node, shapes)
    kernel = _ints(attrs, "kernel_shape") or (weight[2:] if weight is not None else None)
    spatial = x[2:]
    if (
        node.op_type == "ConvTranspose"
        or kernel is None
        or len(kernel) != len(spatial)
        or attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", b"VALID")
    ):
        return
    dilations = _ints(attrs, "dilations") or [1] * len(kernel)
    pads = _ints(attrs, "pads") or [0] * (2 * len(kernel))
    for axis, (size, k, d) in enumerate(zip(spatial, kernel, dilations)):
        if (
            isinstance(size, int)
            and len(pads) == 2 * len(kernel)
            and size + pads[axis] + pads[axis + len(kernel)] < (k - 1) * d + 1
        ):
            raise _error(
                f"its kernel {kernel} (dilations {dilations}) is larger than its input {x} padded by {pads}",
                path,
                node,
                index,
                hint="fix kernel_shape, dilations or pads, or the input size",
            )


def _check_variance(model: onnx.ModelProto, node: onnx.NodeProto, index: int, epsilon: float, path: str) -> None:
    """variance + epsilon > 0 for a constant variance: else the normalization divides by zero or
    takes the root of a negative number."""
    tensor = next((t for t in model.graph.initializer if len(node.input) > 4 and t.name == node.input[4]), None)
    var = onnx.numpy_helper.to_array(tensor).astype(np.float64) if tensor is not None else None
    if var is None or not var.size:
        return
    lowest = float(np.min(var)) + epsilon
    if not lowest > 0:
        raise _error(
            f"variance + epsilon is {lowest:g}; it must be positive",
            path,
            node,
            index,
            hint="fix the running variance or epsilon (a variance is never negative) and re-export",
        )
