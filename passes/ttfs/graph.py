"""What the TTFS passes share: which tensors carry spikes and which ops act on spike times.

A TTFS net alternates spike tensors and linear regions. Spike tensors are the encoded inputs
x̃ (ttfs_input_range) and the ReLU outputs (TTFSNeuron outputs after spikify_ttfs). Between a
spike tensor and the linear ops that read it only SPIKE_LAYOUT_OPS (index permutations, which
act on spike times unchanged) and MaxPool (the earliest spike) may sit.
"""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from onnx_snn.passes.base import PassContext, require
from onnx_snn.passes.graph_utils import bias_vector, const, constant_value, set_input
from onnx_snn.passes.op_support import LAYOUT, POOL, TTFS

#: ops that only move elements: on spike times they act unchanged (spec §4; op_support.TTFS)
SPIKE_LAYOUT_OPS = TTFS.ops_of(LAYOUT)
#: ops on spike times that select one input spike per output (spec §4: earliest spike; op_support.TTFS)
SPIKE_POOL_OPS = TTFS.ops_of(POOL)


def encoded_inputs(graph: gs.Graph, ctx: PassContext) -> list[gs.Tensor]:
    """The x̃ tensors that ttfs_input_range wrote, one per graph input."""
    names = {entry["encoded"] for entry in ctx.state.ttfs.inputs.values()}
    return [t for name, t in graph.tensors().items() if name in names]


def require_encoded_inputs(graph: gs.Graph, ctx: PassContext) -> None:
    """PostconditionError unless the x̃ of every input that ttfs_input_range recorded is in the graph."""
    tensors = graph.tensors()
    require(all(entry["encoded"] in tensors for entry in ctx.state.ttfs.inputs.values()), "an encoded input is missing")


def relu_outputs(graph: gs.Graph) -> list[gs.Tensor]:
    """The output of every Relu, in topological order."""
    return [n.outputs[0] for n in graph.nodes if n.op == "Relu"]


def apply_layout(node: gs.Node, array: np.ndarray) -> np.ndarray:
    """`array` ([1, ...], shaped like the node's input with batch 1) moved as `node` moves its input.

    Flatten, Reshape, Squeeze and Unsqueeze reshape in C order to the node's static output shape;
    Transpose permutes. Needs static shapes beyond the batch axis (canonicalize infers them).
    """
    if node.op == "Transpose":
        perm = node.attrs.get("perm", list(range(array.ndim))[::-1])
        return np.transpose(array, perm)
    shape = node.outputs[0].shape
    if shape is None or any(not isinstance(d, int) for d in shape[1:]):
        raise ValueError(f"{node.name}: output shape {shape} is not static beyond the batch axis")
    return array.reshape([1] + list(shape[1:]))


def gemm_weights(gemm: gs.Node) -> tuple[np.ndarray, np.ndarray] | None:
    """(W [out, in], b [out]) in float64, alpha and beta applied, of a canonical Gemm(x, W, b,
    transB=1) with constant W and b; None for any other Gemm."""
    weight = constant_value(gemm.inputs[1]) if len(gemm.inputs) > 1 else None
    if weight is None or weight.ndim != 2 or not gemm.attrs.get("transB", 0) or gemm.attrs.get("transA", 0):
        return None
    bias = bias_vector(gemm, weight.shape[0])
    if bias is None:
        return None
    return (weight.astype(np.float64) * float(gemm.attrs.get("alpha", 1.0)), bias * float(gemm.attrs.get("beta", 1.0)))


def set_gemm_weights(gemm: gs.Node, w: np.ndarray, b: np.ndarray, dtype) -> None:
    """Give the Gemm fresh W and b constants of `dtype`, with alpha = beta = 1."""
    gemm.attrs.update(alpha=1.0, beta=1.0)
    gemm.inputs[1] = const(f"{gemm.name}_weight", w.astype(dtype))
    set_input(gemm, 2, const(f"{gemm.name}_bias", b.astype(dtype)))
