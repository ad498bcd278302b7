"""`snn.RateDecoder`: the rate-coded read-out, the running mean of the output layer over steps.

Its running sum is explicit state, like every neuron's membrane, so a run split into time chunks
(the sum and the step count carried) gives the same bits as one run.
"""

from __future__ import annotations

import onnx
from onnx import TensorProto, helper

from onnx_snn.ir.function_parts import constant, running_sum_nodes, snn_function, time_sequence_nodes

DECODER_INPUTS = ("z", "timesteps", "s0", "t0")


def build_rate_decoder(opset: int) -> onnx.FunctionProto:
    """`snn.RateDecoder(z, timesteps, s0, t0) -> (y_per_step, y_T, s_T)`.

    Inputs: z [T*B, ...] the output layer's value at each step; timesteps int64 scalar T; s0 the
    running sum so far, broadcastable to [B, ...] (a scalar NaN means "fresh": 0); t0 int64
    scalar, the steps already done. Outputs: y_per_step [T, B, ...], the mean of z over steps
    1..t0+t after each step t; y_T [B, ...] the last of them; s_T [B, ...] the running sum.
    The sum is sequential, s0 + z_1 + z_2 + ... left to right (s0 enters the CumSum as its first
    row), so chunked runs equal one run bit for bit.
    """
    view, n = time_sequence_nodes("z", "timesteps")
    nodes = [
        *view,
        *running_sum_nodes(n["seq"], "s0", n["step_shape"], "sums"),
        constant("first_step", 1),
        constant("last", -1),
        constant("last_1d", [-1]),
        helper.make_node("Add", ["t0", "first_step"], ["count_from"]),
        helper.make_node("Add", ["count_from", "timesteps"], ["count_to"]),
        helper.make_node("Range", ["count_from", "count_to", "first_step"], ["count_int"]),
        helper.make_node("Cast", ["count_int"], ["count_flat"], to=TensorProto.FLOAT),
        helper.make_node("Shape", [n["step_shape"]], ["step_rank"]),
        helper.make_node(
            "ConstantOfShape", ["step_rank"], ["ones"], value=helper.make_tensor("one", TensorProto.INT64, [1], [1])
        ),
        helper.make_node("Concat", ["last_1d", "ones"], ["count_shape"], axis=0),
        helper.make_node("Reshape", ["count_flat", "count_shape"], ["count"]),
        helper.make_node("Div", ["sums", "count"], ["y_per_step"]),
        helper.make_node("Gather", ["y_per_step", "last"], ["y_T"], axis=0),
        helper.make_node("Gather", ["sums", "last"], ["s_T"], axis=0),
    ]
    return snn_function(
        "RateDecoder", DECODER_INPUTS, ["y_per_step", "y_T", "s_T"], nodes, opset, build_rate_decoder.__doc__
    )
