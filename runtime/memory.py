"""Memory budgets: the default budget, sizes, how much one sample-step of a compiled SNN needs,
how to chunk a run, and the declared sizes of a model checked before it is loaded.

One source of truth: `default_budget()` (half of MemAvailable) is the budget of every Session,
`eval` and data file read that is not given one explicitly (`resolve_budget`).
"""
from __future__ import annotations

import math
import re
from collections.abc import Iterator

import numpy as np
import onnx
from onnx import helper

from onnx_snn.errors import SnnError

from .contract import FOLDED_BATCH, PER_STEP_SUFFIX

_UNITS = {"": 1, "K": 10 ** 3, "M": 10 ** 6, "G": 10 ** 9, "T": 10 ** 12,
          "KI": 2 ** 10, "MI": 2 ** 20, "GI": 2 ** 30, "TI": 2 ** 40}
#: keep at least this many samples in a batch chunk before splitting the time axis instead
MIN_BATCH_CHUNK = 32
#: cuDNN's pooling fails (CUDNN_STATUS_NOT_SUPPORTED) on a batch above this (onnxruntime-gpu
#: 1.31.1 on an H200: 65535 runs, 131072 fails; microsoft/onnxruntime#29819)
CUDNN_MAX_BATCH = 65535
#: the largest size accepted anywhere (1 EiB): far above any machine, so larger ones are typos
MAX_SIZE = 2 ** 60
#: the default budget's share of MemAvailable
AVAILABLE_SHARE = 0.5
#: the default budget where /proc/meminfo cannot be read (not Linux, or a restricted /proc)
FALLBACK_BUDGET = 2 * 10 ** 9
#: copies of a step's read-out the host holds per sample-step while a chunk is consumed: the
#: session's output, and evaluate's argmax, comparison and |logit error| temporaries
HOST_READOUT_COPIES = 4
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


def readout_bytes(model: onnx.ModelProto) -> int:
    """Bytes of one sample's per-step read-out at one step: the `<output>_per_step` outputs
    [T, batch, ...] per (step, sample)."""
    return sum(_bytes_after(info, 2) for info in model.graph.output if info.name.endswith(PER_STEP_SUFFIX))


def bytes_per_sample_step(model: onnx.ModelProto) -> int:
    """An upper bound on the working memory of one sample for one step: the bytes of every
    time-folded tensor [T*batch, ...] of the graph as if all were alive at once (onnxruntime
    reuses buffers, so the real peak is lower), plus HOST_READOUT_COPIES of the per-step read-out
    that the host holds while it consumes a chunk."""
    folded = sum(_bytes_after(info, 1) for info in [*model.graph.value_info, *model.graph.output]
                 if info.type.tensor_type.shape.dim and info.type.tensor_type.shape.dim[0].dim_param == FOLDED_BATCH)
    return max(folded + HOST_READOUT_COPIES * readout_bytes(model), 1)


def _bytes_after(info: onnx.ValueInfoProto, leading: int) -> int:
    """Bytes of the dims of `info` after its first `leading` ones; 0 if one of them is unknown."""
    rest = [d.dim_value for d in info.type.tensor_type.shape.dim[leading:]]
    return _itemsize(info.type.tensor_type.elem_type) * math.prod(rest) if all(rest) else 0


def largest_sample_step_elements(model: onnx.ModelProto) -> int:
    """Elements of the largest time-folded tensor [T*batch, ...] of the graph per sample-step (1
    if none is known): with the folded batch N, that tensor holds N times this many."""
    sizes = [math.prod(d.dim_value for d in info.type.tensor_type.shape.dim[1:])
             for info in [*model.graph.value_info, *model.graph.output]
             if info.type.tensor_type.shape.dim and info.type.tensor_type.shape.dim[0].dim_param == FOLDED_BATCH
             and all(d.dim_value for d in info.type.tensor_type.shape.dim[1:])]
    return max(sizes, default=1)


def cuda_sample_step_limit(model: onnx.ModelProto) -> int:
    """The most sample-steps (folded batch T·B) one CUDA run may hold: cuDNN's pooling refuses a
    batch above CUDNN_MAX_BATCH, and its tensor descriptors any tensor of 2^31 elements or more
    (both measured on an H200, runtime/PERFORMANCE.md "GPU")."""
    return max(1, min(CUDNN_MAX_BATCH, (2 ** 31 - 1) // largest_sample_step_elements(model)))


def plan_chunks(batch: int, timesteps: int, budget: int, unit_bytes: int,
                max_sample_steps: int | None = None) -> tuple[int, int]:
    """(batch chunk, time chunk) whose sample-steps fit `budget` bytes at `unit_bytes` each, and
    number at most `max_sample_steps` if given (the CUDA limit, cuda_sample_step_limit).

    Whole runs when they fit; else the batch is split first (no state to carry) down to
    MIN_BATCH_CHUNK samples, and below that the time axis too. Raises SnnError if one sample
    for one step does not fit."""
    units = budget // unit_bytes
    if max_sample_steps is not None:
        units = min(units, max_sample_steps)
    if units < 1:
        raise SnnError(f"the memory budget {budget} B is below what one sample needs for one step "
                       f"({unit_bytes} B); raise it")
    if batch * timesteps <= units:
        return batch, timesteps
    floor = min(batch, MIN_BATCH_CHUNK)
    if units // timesteps >= floor:
        return min(batch, units // timesteps), timesteps
    batch_chunk = min(floor, units)
    return batch_chunk, max(1, units // batch_chunk)


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
            stored += _itemsize(tensor.data_type) * math.prod(tensor.dims)
        for node in graph.node:
            size = _declared_output_bytes(node, constants, known)
            if size > budget:
                raise SnnError(f"declares an output of {size} B, above the memory budget of {budget} B; "
                               "check the model, or raise --max-memory", path=source,
                               node=node.name or node.output[0], op=node.op_type)
    if stored > budget:
        raise SnnError(f"its weights and constants declare {stored} B, above the memory budget of {budget} B; "
                       "raise --max-memory", path=source)


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
                yield node.output[0], helper.make_tensor("", onnx.TensorProto.INT64, [len(attribute.ints)],
                                                         list(attribute.ints))


def _small_int_constants(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    """Inline integer constants of at most _MAX_SHAPE_RANK elements: the shape and repeat inputs
    of ConstantOfShape, Expand and Tile."""
    return {name: onnx.numpy_helper.to_array(tensor).reshape(-1) for name, tensor in _named_constants(graph)
            if tensor.data_type in (onnx.TensorProto.INT64, onnx.TensorProto.INT32)
            and math.prod(tensor.dims) <= _MAX_SHAPE_RANK and tensor.data_location != onnx.TensorProto.EXTERNAL}


def _known_shapes(graph: onnx.GraphProto) -> dict[str, tuple[list[int], int]]:
    """(dims with 0 for unknown, element type) of the typed values of `graph`."""
    known = {t.name: (list(t.dims), t.data_type) for t in graph.initializer}
    for info in [*graph.input, *graph.value_info, *graph.output]:
        tensor = info.type.tensor_type
        known.setdefault(info.name, ([d.dim_value for d in tensor.shape.dim], tensor.elem_type))
    return known


def _declared_output_bytes(node: onnx.NodeProto, constants: dict[str, np.ndarray],
                           known: dict[str, tuple[list[int], int]]) -> int:
    """A lower bound on the bytes of the output of a ConstantOfShape, Expand or Tile whose shape
    (repeats) input is a constant; 0 for any other node."""
    where = _SHAPE_INPUT.get(node.op_type) if node.domain in ("", "ai.onnx") else None
    if where is None or len(node.input) <= where or node.input[where] not in constants:
        return 0
    elements = math.prod(max(int(v), 0) for v in constants[node.input[where]])
    if node.op_type == "ConstantOfShape":
        value = next((a.t for a in node.attribute if a.name == "value"), None)
        return elements * _itemsize(value.data_type if value is not None else onnx.TensorProto.FLOAT)
    dims, elem_type = known.get(node.input[0], ([], 0))
    if node.op_type == "Tile":
        elements *= math.prod(max(d, 1) for d in dims)
    return elements * _itemsize(elem_type)


def _itemsize(elem_type: int) -> int:
    """Bytes per element of an ONNX element type; 1 (a lower bound) when unknown."""
    try:
        return max(1, helper.tensor_dtype_to_np_dtype(elem_type).itemsize)
    except (KeyError, TypeError, ValueError):
        return 1
