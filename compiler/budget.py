"""The memory budget: its default (half of MemAvailable), sizes written by users, and the sizes a
model declares, checked before it is loaded.

One source of truth: `default_budget()` is the budget of every Session, `eval`, calibration and
data file read that is not given one explicitly (`resolve_budget`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator

import numpy as np
import onnx
from onnx import helper

from onnx_snn.errors import SnnError

_UNITS = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "KI": 2**10, "MI": 2**20, "GI": 2**30, "TI": 2**40}
#: the largest size accepted anywhere (1 EiB): far above any machine, so larger ones are typos
MAX_SIZE = 2**60
#: the default budget's share of MemAvailable
AVAILABLE_SHARE = 0.5
#: the default budget where /proc/meminfo cannot be read (not Linux, or a restricted /proc)
FALLBACK_BUDGET = 2 * 10**9
#: shape tensors longer than this are not read when checking declared sizes
_MAX_SHAPE_RANK = 64
#: the ops whose output size a constant input declares, and that input's index
_SHAPE_INPUT = {"ConstantOfShape": 0, "Expand": 1, "Tile": 1}


def available_memory() -> int | None:
    """MemAvailable of /proc/meminfo in bytes (memory the kernel can give without swapping), or
    None where it cannot be read."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def default_budget() -> int:
    """The memory budget of a run that is not given one: AVAILABLE_SHARE (half) of the memory
    available now, or FALLBACK_BUDGET where that cannot be read. Half leaves room for the loaded
    model, the data, the interpreter and other processes."""
    available = available_memory()
    return FALLBACK_BUDGET if available is None else max(1, int(available * AVAILABLE_SHARE))


def resolve_budget(max_memory: int | float | str | None) -> int:
    """The budget in bytes: `max_memory` if given (a positive, finite number of bytes up to
    MAX_SIZE, or a size text for parse_size), else default_budget(). Raises SnnError otherwise."""
    if max_memory is None:
        return default_budget()
    if isinstance(max_memory, str):
        return parse_size(max_memory)
    if isinstance(max_memory, (bool, np.bool_)) or not isinstance(max_memory, (int, float, np.integer, np.floating)):
        raise SnnError(f"max_memory must be a number of bytes or a size like '2GB', got {max_memory!r}")
    return _checked_size(float(max_memory), f"max_memory {max_memory!r}")


def parse_size(text: str) -> int:
    """Bytes in a size like "2GB", "1.5G", "512MiB" or "1000000" (K, M, G, T are powers of 1000,
    Ki, Mi, Gi, Ti powers of 1024; a trailing B is optional), from 1 B to MAX_SIZE."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]i?)?B?\s*", text, flags=re.IGNORECASE)
    if not match:
        raise SnnError(f"cannot read the size {text!r}; write it like 2GB, 1.5G or 512MiB")
    return _checked_size(float(match.group(1)) * _UNITS[(match.group(2) or "").upper()], f"the size {text!r}")


def _checked_size(value: float, what: str) -> int:
    """`value` as whole bytes if it is finite and in [1, MAX_SIZE], else SnnError about `what`."""
    if not math.isfinite(value) or value > MAX_SIZE:
        raise SnnError(f"{what} is not a usable size; give at most {MAX_SIZE} B (1 EiB), e.g. 2GB")
    if value < 1:
        raise SnnError(f"{what} must be positive (at least 1 byte)")
    return int(value)


def check_declared_sizes(model: onnx.ModelProto, budget: int, source: str) -> None:
    """Raise SnnError if `model` declares more data than `budget` bytes: its initializers and
    Constant values together (external data included, counted from their dims, not read), or
    the output of one ConstantOfShape, Expand or Tile whose shape input is a constant.

    Reads only dims and small shape tensors, so it is safe on a model whose data would not fit."""
    stored = 0
    for graph in _graphs(model):
        constants = _small_int_constants(graph)
        known = _known_shapes(graph)
        for _, tensor in _named_constants(graph):
            stored += itemsize(tensor.data_type) * math.prod(tensor.dims)
        for node in graph.node:
            size = _declared_output_bytes(node, constants, known)
            if size > budget:
                raise SnnError(
                    f"declares an output of {size} B, above the memory budget of {budget} B; "
                    "check the model, or raise --max-memory",
                    path=source,
                    node=node.name or node.output[0],
                    op=node.op_type,
                )
    if stored > budget:
        raise SnnError(
            f"its weights and constants declare {stored} B, above the memory budget of {budget} B; raise --max-memory",
            path=source,
        )


def _graphs(model: onnx.ModelProto) -> Iterator[onnx.GraphProto]:
    """The main graph, every subgraph of a node attribute (If, Loop, Scan), and each local
    function's body as a graph of its nodes."""
    pending = [model.graph] + [helper.make_graph(list(f.node), f.name, [], []) for f in model.functions]
    while pending:
        graph = pending.pop()
        yield graph
        for node in graph.node:
            for attribute in node.attribute:
                pending.extend([attribute.g] if attribute.type == onnx.AttributeProto.GRAPH else attribute.graphs)


def _named_constants(graph: onnx.GraphProto) -> Iterator[tuple[str, onnx.TensorProto]]:
    """(name, tensor) of every initializer and Constant value (inline or external) of `graph`."""
    for tensor in graph.initializer:
        yield tensor.name, tensor
    for node in graph.node:
        if node.op_type != "Constant" or node.domain not in ("", "ai.onnx"):
            continue
        for attribute in node.attribute:
            if attribute.name == "value":
                yield node.output[0], attribute.t
            elif attribute.name == "value_ints":
                yield (
                    node.output[0],
                    helper.make_tensor("", onnx.TensorProto.INT64, [len(attribute.ints)], list(attribute.ints)),
                )


def _small_int_constants(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    """Inline integer constants of at most _MAX_SHAPE_RANK elements: the shape and repeat inputs
    of ConstantOfShape, Expand and Tile."""
    return {
        name: onnx.numpy_helper.to_array(tensor).reshape(-1)
        for name, tensor in _named_constants(graph)
        if tensor.data_type in (onnx.TensorProto.INT64, onnx.TensorProto.INT32)
        and math.prod(tensor.dims) <= _MAX_SHAPE_RANK
        and tensor.data_location != onnx.TensorProto.EXTERNAL
    }


def _known_shapes(graph: onnx.GraphProto) -> dict[str, tuple[list[int], int]]:
    """(dims with 0 for unknown, element type) of the typed values of `graph`."""
    known = {t.name: (list(t.dims), t.data_type) for t in graph.initializer}
    for info in [*graph.input, *graph.value_info, *graph.output]:
        tensor = info.type.tensor_type
        known.setdefault(info.name, ([d.dim_value for d in tensor.shape.dim], tensor.elem_type))
    return known


def _declared_output_bytes(
    node: onnx.NodeProto, constants: dict[str, np.ndarray], known: dict[str, tuple[list[int], int]]
) -> int:
    """A lower bound on the bytes of the output of a ConstantOfShape, Expand or Tile whose shape
    (repeats) input is a constant; 0 for any other node."""
    where = _SHAPE_INPUT.get(node.op_type) if node.domain in ("", "ai.onnx") else None
    if where is None or len(node.input) <= where or node.input[where] not in constants:
        return 0
    elements = math.prod(max(int(v), 0) for v in constants[node.input[where]])
    if node.op_type == "ConstantOfShape":
        value = next((a.t for a in node.attribute if a.name == "value"), None)
        return elements * itemsize(value.data_type if value is not None else onnx.TensorProto.FLOAT)
    dims, elem_type = known.get(node.input[0], ([], 0))
    if node.op_type == "Tile":
        elements *= math.prod(max(d, 1) for d in dims)
    return elements * itemsize(elem_type)


def itemsize(elem_type: int) -> int:
    """Bytes per element of an ONNX element type; 1 (a lower bound) when unknown."""
    try:
        return max(1, helper.tensor_dtype_to_np_dtype(elem_type).itemsize)
    except (KeyError, TypeError, ValueError):
        return 1
