"""Memory of a run: how much one sample-step of a compiled SNN needs and how to chunk a run
within a budget (the budget itself: onnx_snn.budget)."""

from __future__ import annotations

import math

import onnx

from onnx_snn.budget import itemsize
from onnx_snn.errors import SnnError
from onnx_snn.ir.contract import PER_STEP_SUFFIX, is_folded

#: keep at least this many samples in a batch chunk before splitting the time axis instead
MIN_BATCH_CHUNK = 32
#: cuDNN's pooling fails (CUDNN_STATUS_NOT_SUPPORTED) on a batch above this (onnxruntime-gpu
#: 1.31.1 on an H200: 65535 runs, 131072 fails; microsoft/onnxruntime#29819)
CUDNN_MAX_BATCH = 65535
#: copies of a step's read-out the host holds per sample-step while a chunk is consumed: the
#: session's output, and evaluate's argmax, comparison and |logit error| temporaries
HOST_READOUT_COPIES = 4


def readout_bytes(model: onnx.ModelProto) -> int:
    """Bytes of one sample's per-step read-out at one step: the `<output>_per_step` outputs
    [T, batch, ...] per (step, sample)."""
    return sum(_bytes_after(info, 2) for info in model.graph.output if info.name.endswith(PER_STEP_SUFFIX))


def bytes_per_sample_step(model: onnx.ModelProto) -> int:
    """An upper bound on the working memory of one sample for one step: the bytes of every
    time-folded tensor [T*batch, ...] of the graph as if all were alive at once (onnxruntime
    reuses buffers, so the real peak is lower), plus HOST_READOUT_COPIES of the per-step read-out
    that the host holds while it consumes a chunk. A tensor folded as [T*s, ...] (a batch merged
    with k positions, ir.contract.folded_dim) counts once per sample, not k times (k is not in
    the graph), so for such graphs this may fall short of the bound."""
    folded = sum(
        _bytes_after(info, 1)
        for info in [*model.graph.value_info, *model.graph.output]
        if info.type.tensor_type.shape.dim and is_folded(info.type.tensor_type.shape.dim[0].dim_param)
    )
    return max(folded + HOST_READOUT_COPIES * readout_bytes(model), 1)


def _bytes_after(info: onnx.ValueInfoProto, leading: int) -> int:
    """Bytes of the dims of `info` after its first `leading` ones; 0 if one of them is unknown."""
    rest = [d.dim_value for d in info.type.tensor_type.shape.dim[leading:]]
    return itemsize(info.type.tensor_type.elem_type) * math.prod(rest) if all(rest) else 0


def largest_sample_step_elements(model: onnx.ModelProto) -> int:
    """Elements of the largest time-folded tensor [T*batch, ...] of the graph per sample-step (1
    if none is known): with the folded batch N, that tensor holds N times this many."""
    sizes = [
        math.prod(d.dim_value for d in info.type.tensor_type.shape.dim[1:])
        for info in [*model.graph.value_info, *model.graph.output]
        if info.type.tensor_type.shape.dim
        and is_folded(info.type.tensor_type.shape.dim[0].dim_param)
        and all(d.dim_value for d in info.type.tensor_type.shape.dim[1:])
    ]
    return max(sizes, default=1)


def cuda_sample_step_limit(model: onnx.ModelProto) -> int:
    """The most sample-steps (folded batch T·B) one CUDA run may hold: cuDNN's pooling refuses a
    batch above CUDNN_MAX_BATCH, and its tensor descriptors any tensor of 2^31 elements or more
    (both measured on an H200, runtime/PERFORMANCE.md "GPU")."""
    return max(1, min(CUDNN_MAX_BATCH, (2**31 - 1) // largest_sample_step_elements(model)))


def plan_chunks(
    batch: int, timesteps: int, budget: int, unit_bytes: int, max_sample_steps: int | None = None
) -> tuple[int, int]:
    """(batch chunk, time chunk) whose sample-steps fit `budget` bytes at `unit_bytes` each, and
    number at most `max_sample_steps` if given (the CUDA limit, cuda_sample_step_limit).

    Whole runs when they fit; else the batch is split first (no state to carry) down to
    MIN_BATCH_CHUNK samples, and below that the time axis too. Raises SnnError if one sample
    for one step does not fit."""
    units = budget // unit_bytes
    if max_sample_steps is not None:
        units = min(units, max_sample_steps)
    if units < 1:
        raise SnnError(
            f"the memory budget {budget} B is below what one sample needs for one step ({unit_bytes} B); raise it"
        )
    if batch * timesteps <= units:
        return batch, timesteps
    floor = min(batch, MIN_BATCH_CHUNK)
    if units // timesteps >= floor:
        return min(batch, units // timesteps), timesteps
    batch_chunk = min(floor, units)
    return batch_chunk, max(1, units // batch_chunk)
