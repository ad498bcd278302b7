"""`snn.IFMaxPool`: a rate-coded MaxPool for IF nets, exact in spike counts.

Every input element keeps its running sum C (the spike count of a spiking input), explicit state
like a membrane: C_t = C_{t-1} + x_t, C_0 = 0 when fresh. The output at step t is the rise of the
window maximum of the counts, y_t = MaxPool(C_t) − MaxPool(C_{t-1}). The sum telescopes: after T
steps an output has Σ_t y_t = MaxPool(C_T) − MaxPool(C_0), the largest spike count of its window,
so its rate is exactly the max of its window's input rates (what the ANN's MaxPool gives the
rates that IF neurons code). For binary spikes a count rises by at most 1 a step, so the window
maximum rises by 0 or 1: y_t ∈ {0, 1}, spikes that the next layer consumes like any others. Ties
need no rule (a max of equal counts is that count). For any other input (currents, say) y is
still the rise of the window maximum of the running sums: its sum over the steps is the max of
the input's sums, but y is not binary.

Why counts, not a gate: Rueckauer et al. 2017 ("Conversion of continuous-valued deep networks to
efficient event-driven networks for image classification") let through, at each step, the spike
of the input neuron whose running rate is highest; a spike count of such a gate equals the max
of the counts only when the leading neuron does not change, and it can pass two spikes in one
step. The count difference above is exact at every T, binary, and as cheap: no Scan, only a
CumSum over time, two MaxPools and a difference on the time-folded batch.

Every MaxPool attribute (kernel_shape, strides, pads, dilations, ceil_mode, auto_pad,
storage_order) passes through to the pooling of the counts, for any number of spatial axes.
Counts are integers exactly in float32 up to 2^24 spikes; the running sum is sequential,
C_0 + x_1 + x_2 + ... left to right (C_0 enters the CumSum as its first row), so a run split
into time chunks, the counts carried, gives the same bits as one run.
"""

from __future__ import annotations

import onnx
from onnx import AttributeProto, helper

from onnx_snn.ir.function_parts import (
    attr_ref,
    constant,
    running_sum_nodes,
    snn_function,
    time_sequence_nodes,
)

MAXPOOL_INPUTS = ("x", "timesteps", "c0")
#: the MaxPool attributes the op takes, by type: each passes through to its MaxPool when given
MAXPOOL_ATTRIBUTES: dict[str, AttributeProto.AttributeType] = {
    "kernel_shape": AttributeProto.INTS,
    "strides": AttributeProto.INTS,
    "pads": AttributeProto.INTS,
    "dilations": AttributeProto.INTS,
    "ceil_mode": AttributeProto.INT,
    "auto_pad": AttributeProto.STRING,
    "storage_order": AttributeProto.INT,
}


def _max_pool(x: str, y: str) -> onnx.NodeProto:
    node = helper.make_node("MaxPool", [x], [y])
    node.attribute.extend(attr_ref(name, kind, name) for name, kind in MAXPOOL_ATTRIBUTES.items())
    return node


def build_if_maxpool(opset: int) -> onnx.FunctionProto:
    """`snn.IFMaxPool(x, timesteps, c0) -> (y, c_T)`: rate-coded max pooling by spike counts.

    Attributes: those of ONNX MaxPool (kernel_shape required), passed through.
    Inputs: x [T*B, C, ...] the input at each step (spikes); timesteps int64 scalar T; c0 the
    running sum of x so far, broadcastable to [B, C, ...] (a scalar NaN means "fresh": 0).
    Outputs: y [T*B, C, ...pooled] with y_t = MaxPool(C_t) − MaxPool(C_{t-1}), C_t = C_{t-1} + x_t
    (in {0, 1} for spikes: the output's spike count after t steps is the largest count of its
    window); c_T [B, C, ...] the running sum after step T.
    """
    view, n = time_sequence_nodes("x", "timesteps")
    nodes = [
        *view,
        *running_sum_nodes(n["seq"], "c0", n["step_shape"], "counts"),
        constant("axis0", [0]),
        constant("from1", [1]),
        constant("last", -1),
        helper.make_node("Gather", ["counts", "last"], ["c_T"], axis=0),
        helper.make_node("Reshape", ["counts", n["flat_shape"]], ["counts_flat"]),
        # the pooled counts after each step [T*B, ...] and before the first [B, ...]
        _max_pool("counts_flat", "pooled"),
        _max_pool("counts_init", "pooled_before"),
        # the pooled counts before each step: the first step's, then all but the last step's
        helper.make_node("Slice", [n["step_shape"], "axis0", "from1"], ["batch"]),
        helper.make_node("Neg", ["batch"], ["all_but_last_step"]),
        helper.make_node("Slice", ["pooled", "axis0", "all_but_last_step", "axis0"], ["pooled_head"]),
        helper.make_node("Concat", ["pooled_before", "pooled_head"], ["pooled_previous"], axis=0),
        helper.make_node("Sub", ["pooled", "pooled_previous"], ["y"]),
    ]
    return snn_function(
        "IFMaxPool",
        MAXPOOL_INPUTS,
        ["y", "c_T"],
        nodes,
        opset,
        build_if_maxpool.__doc__,
        required=list(MAXPOOL_ATTRIBUTES),
    )
