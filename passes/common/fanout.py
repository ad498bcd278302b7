"""Fan-out of spikes into a linear op: how many non-zero synapses each input element reaches.

Synaptic events of a layer = Σ over its spikes of the spike's fan-out (TTFS spec §6.1; rate-coded
layers sum over the steps too). A Conv's fan-out depends on the channel and, through padding and
stride, on the position.
"""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from onnx_snn.passes.graph_utils import constant_value


def fan_out(reader: gs.Node, data: gs.Tensor) -> np.ndarray | None:
    """[1, ...] float32 fan-out of each element of `data` (an input of `reader`), for Gemm, Conv and
    MatMul with constant weights; None for other readers (one synapse per element: Add, pooling, ...)."""
    weight = constant_value(reader.inputs[1]) if len(reader.inputs) > 1 else None
    if weight is None or reader.inputs[0] is not data:
        return None
    if reader.op == "Gemm" and not reader.attrs.get("transA", 0):
        reached = weight != 0
        counts = reached.sum(axis=0 if reader.attrs.get("transB", 0) else 1)
        return counts.astype(np.float32)[None, :]
    if reader.op == "MatMul" and weight.ndim == 2 and data.shape is not None:
        rows = (weight != 0).sum(axis=1).astype(np.float32)
        return np.broadcast_to(rows, (1, *data.shape[1:-1], rows.size)).copy()
    if reader.op == "Conv" and data.shape is not None and len(data.shape) == 4:
        return _conv_fan_out(reader, weight, tuple(data.shape[2:]))[None].astype(np.float32)
    return None


def _conv_fan_out(conv: gs.Node, weight: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """[C_in, H, W]: Σ over the taps (kh, kw) that put input (h, w) on an output position of the
    non-zero weights of channel c at that tap, over the output channels that read c."""
    group = int(conv.attrs.get("group", 1))
    c_out, per_group, kh, kw = weight.shape
    nonzero = (weight != 0).reshape(group, c_out // group, per_group, kh, kw).sum(axis=1)  # [g, Cg, kh, kw]
    nonzero = nonzero.reshape(group * per_group, kh, kw)
    strides = conv.attrs.get("strides", [1, 1])
    dilations = conv.attrs.get("dilations", [1, 1])
    pads = conv.attrs.get("pads", [0, 0, 0, 0])
    valid = [
        _taps_landing(size[a], weight.shape[2 + a], strides[a], dilations[a], pads[a], pads[a + 2]) for a in range(2)
    ]
    return np.einsum("hk,ckl,wl->chw", valid[0], nonzero, valid[1])


def _taps_landing(length: int, kernel: int, stride: int, dilation: int, pad_begin: int, pad_end: int) -> np.ndarray:
    """[length, kernel]: 1 where input index i under tap k lands on an output position."""
    outputs = (length + pad_begin + pad_end - dilation * (kernel - 1) - 1) // stride + 1
    i = np.arange(length)[:, None]
    k = np.arange(kernel)[None, :]
    offset = i + pad_begin - k * dilation
    return ((offset % stride == 0) & (offset >= 0) & (offset // stride < outputs)).astype(np.float64)
