"""Memory budgets: how much one sample-step of a compiled SNN needs, and how to chunk a run."""
from __future__ import annotations

import math
import re

import onnx
from onnx import helper

from onnx_snn.errors import SnnError

from .contract import FOLDED_BATCH

_UNITS = {"": 1, "K": 10 ** 3, "M": 10 ** 6, "G": 10 ** 9, "T": 10 ** 12,
          "KI": 2 ** 10, "MI": 2 ** 20, "GI": 2 ** 30, "TI": 2 ** 40}
#: keep at least this many samples in a batch chunk before splitting the time axis instead
MIN_BATCH_CHUNK = 32


def parse_size(text: str) -> int:
    """Bytes in a size like "2GB", "1.5G", "512MiB" or "1000000" (K, M, G, T are powers of 1000,
    Ki, Mi, Gi, Ti powers of 1024; a trailing B is optional)."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]i?)?B?\s*", text, flags=re.IGNORECASE)
    if not match:
        raise SnnError(f"cannot read the size {text!r}; write it like 2GB, 1.5G or 512MiB")
    value = float(match.group(1)) * _UNITS[(match.group(2) or "").upper()]
    if value < 1:
        raise SnnError(f"the size {text!r} must be positive")
    return int(value)


def bytes_per_sample_step(model: onnx.ModelProto) -> int:
    """An upper bound on the working memory of one sample for one step: the bytes of every
    time-folded tensor [T*batch, ...] of the graph as if all were alive at once (onnxruntime
    reuses buffers, so the real peak is lower)."""
    total = 0
    for info in [*model.graph.value_info, *model.graph.output]:
        dims = info.type.tensor_type.shape.dim
        if not dims or dims[0].dim_param != FOLDED_BATCH:
            continue
        rest = [d.dim_value for d in dims[1:]]
        if all(rest):
            itemsize = helper.tensor_dtype_to_np_dtype(info.type.tensor_type.elem_type).itemsize
            total += itemsize * math.prod(rest)
    return max(total, 1)


def plan_chunks(batch: int, timesteps: int, budget: int, unit_bytes: int) -> tuple[int, int]:
    """(batch chunk, time chunk) whose sample-steps fit `budget` bytes at `unit_bytes` each.

    Whole runs when they fit; else the batch is split first (no state to carry) down to
    MIN_BATCH_CHUNK samples, and below that the time axis too. Raises SnnError if one sample
    for one step does not fit."""
    units = budget // unit_bytes
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
