"""Time-to-first-spike ops of the `snn` domain (spec: ../shared/spec/exact-mapping-ttfs.md).

One spike per neuron codes an activation as the distance of its spike time to the end of the
layer's window: x = t_max - t. The B1 ops carry every spike as that lead over its window end,
L = t_max - t (spec §6.4 rule a: relative times, "or directly as x"), so that no arithmetic on
large absolute times loses precision; L = 0 means no spike. Model A works on absolute times in
float64. Every op is dtype-generic (its constants take the dtype of its first input) and
stateless: a TTFS layer fires at most once per input.

* `TTFSEncoder(v, p, q) -> lead`: input feature v in [p, q] spikes at t = 1 - (v - p)/(q - p) in
  the input window [0, 1]; its lead is (v - p)/(q - p).
* `TTFSNeuron(a) -> lead`: model B1 (the follow-up's constant-slope neuron, spec §2.2). `a` is the
  membrane potential that phase I accumulated by the window start t_min (the layer's linear op on
  its inputs' leads, which are their PSPs at t_min, plus the bias); phase II ramps it with slope 1
  to the threshold B_n, so the neuron fires at t = t_max - a when a > 0: lead max(a, 0).
* `TTFSDenseA(t, J, theta, t_min_prev, t_max) -> t_out`: model A of arXiv 2212.12522 (spec
  §2.1), a dense layer of non-leaky IF neurons with ramp PSPs, a unit integration bias switched
  on at t_min_prev and infinite refractoriness, solved event-exactly (spec §6.2) on absolute
  times; a neuron that has not crossed by t_max is forced to spike there.
"""

from __future__ import annotations

import onnx
from onnx import TensorProto, helper

from onnx_snn.ir.function_parts import constant, snn_function

ENCODER_INPUTS = ("v", "p", "q")
NEURON_INPUTS = ("a",)
DENSE_A_INPUTS = ("t", "J", "theta", "t_min_prev", "t_max")


def _function(
    name: str, inputs: tuple[str, ...], outputs: list[str], nodes: list[onnx.NodeProto], opset: int, doc: str | None
) -> onnx.FunctionProto:
    return snn_function(name, inputs, outputs, nodes, opset, doc)


def _on_flat_view(x: str, y: str, nodes: list[onnx.NodeProto]) -> list[onnx.NodeProto]:
    """`nodes` computing `flat_y` from `flat_x`, run on x viewed as 1-D and reshaped back to y.

    Elementwise ops in onnxruntime's CPU provider take a slow broadcasting path, up to 50x
    slower, on tensors whose last axis is 1 (NHWC images with one channel); reshapes are free."""
    return [
        constant("flat", [-1]),
        helper.make_node("Shape", [x], ["x_shape"]),
        helper.make_node("Reshape", [x, "flat"], ["flat_x"]),
        *nodes,
        helper.make_node("Reshape", ["flat_y", "x_shape"], [y]),
    ]


def build_ttfs_encoder(opset: int) -> onnx.FunctionProto:
    """`snn.TTFSEncoder(v, p, q) -> lead`: lead = (v - p)/(q - p), the lead over the input window's
    end of feature v's spike at t = 1 - lead (v = q fires at 0, v = p at 1); p, q scalars of v's dtype."""
    nodes = _on_flat_view(
        "v",
        "lead",
        [
            helper.make_node("Sub", ["flat_x", "p"], ["above"]),
            helper.make_node("Sub", ["q", "p"], ["span"]),
            helper.make_node("Div", ["above", "span"], ["flat_y"]),
        ],
    )
    return _function("TTFSEncoder", ENCODER_INPUTS, ["lead"], nodes, opset, build_ttfs_encoder.__doc__)


def build_ttfs_neuron(opset: int) -> onnx.FunctionProto:
    """`snn.TTFSNeuron(a) -> lead`: B1 neurons, lead = max(a, 0) over the window end (no spike: 0).

    A plain elementwise body, so that onnxruntime fuses it into the Conv or Gemm before it."""
    nodes = [helper.make_node("Relu", ["a"], ["lead"])]
    return _function("TTFSNeuron", NEURON_INPUTS, ["lead"], nodes, opset, build_ttfs_neuron.__doc__)


def _dense_a_sample_body() -> onnx.GraphProto:
    """Scan body: one sample's input times t_k [K] to its N output times (spec §6.2).

    With the inputs sorted, tau_1 <= ... <= tau_K and J's rows permuted alike, the potential is
    linear between inputs; the crossing in segment k (after input k) would be
    c_k = (theta + t_min_prev + E_k) / C_k with C_k = 1 + sum_{m<=k} J_m, E_k = sum_{m<=k} J_m tau_m,
    valid iff C_k > 0 and tau_k <= c_k <= tau_{k+1} (tau_0 = t_min_prev, tau_{K+1} = inf).
    The first valid segment gives the spike, capped at t_max; none valid: forced spike at t_max.
    """
    nodes = [*_sorted_inputs(), *_segment_crossings(), *_valid_segments(), *_spike_time()]
    return helper.make_graph(
        nodes, "ttfs_dense_a_sample", [onnx.ValueInfoProto(name="t_k")], [onnx.ValueInfoProto(name="t_out_k")]
    )


def _sorted_inputs() -> list[onnx.NodeProto]:
    """The input times sorted, `arrival` [K] and `arrival_col` [K, 1], and J's rows permuted
    alike, `J_sorted` [K, N]."""
    return [
        helper.make_node("Shape", ["t_k"], ["fan_in"]),
        helper.make_node("TopK", ["t_k", "fan_in"], ["arrival", "order"], axis=0, largest=0, sorted=1),
        helper.make_node("Gather", ["J", "order"], ["J_sorted"], axis=0),
        helper.make_node("Unsqueeze", ["arrival", "axes1"], ["arrival_col"]),
    ]


def _running_sum(values: str, out: str) -> list[onnx.NodeProto]:
    """`out` [K+1, N]: row k the sum of the first k rows of `values` [K, N] (row 0 the empty sum)."""
    return [
        helper.make_node("CumSum", [values, "axis0"], [f"{values}_cum"]),
        helper.make_node("Concat", ["zero_row", f"{values}_cum"], [out], axis=0),
    ]


def _segment_crossings() -> list[onnx.NodeProto]:
    """`C` and `E` [K+1, N] (alpha = 1) and the crossing time c_k of every segment, `crossing`."""
    return [
        helper.make_node("Mul", ["theta", "zero"], ["zero_row_1d"]),
        helper.make_node("Unsqueeze", ["zero_row_1d", "axes0"], ["zero_row"]),  # [1, N]
        *_running_sum("J_sorted", "J_running"),
        helper.make_node("Add", ["J_running", "one"], ["C"]),
        helper.make_node("Mul", ["J_sorted", "arrival_col"], ["J_tau"]),
        *_running_sum("J_tau", "E"),
        helper.make_node("Add", ["theta", "t_min_prev"], ["reach"]),
        helper.make_node("Add", ["E", "reach"], ["numerator"]),
        helper.make_node("Div", ["numerator", "C"], ["crossing"]),
    ]


def _valid_segments() -> list[onnx.NodeProto]:
    """`valid` [K+1, N]: C_k > 0 and tau_k <= c_k <= tau_{k+1}, with the segments' bounds as
    columns [K+1, 1], `lower` (tau_0 = t_min_prev) and `upper` (tau_{K+1} = inf)."""
    return [
        helper.make_node("Reshape", ["t_min_prev", "column"], ["start_col"]),
        helper.make_node("Div", ["one", "zero"], ["infinity"]),
        helper.make_node("Reshape", ["infinity", "column"], ["end_col"]),
        helper.make_node("Concat", ["start_col", "arrival_col"], ["lower"], axis=0),
        helper.make_node("Concat", ["arrival_col", "end_col"], ["upper"], axis=0),
        helper.make_node("Greater", ["C", "zero"], ["rising"]),
        *_between("crossing", "lower", "upper", "in_segment"),
        helper.make_node("And", ["rising", "in_segment"], ["valid"]),
    ]


def _between(x: str, lower: str, upper: str, out: str) -> list[onnx.NodeProto]:
    """`out` = (lower <= x) and (x <= upper), elementwise with broadcasting."""
    return [
        helper.make_node("GreaterOrEqual", [x, lower], [f"{out}_after_lower"]),
        helper.make_node("LessOrEqual", [x, upper], [f"{out}_before_upper"]),
        helper.make_node("And", [f"{out}_after_lower", f"{out}_before_upper"], [out]),
    ]


def _spike_time() -> list[onnx.NodeProto]:
    """`t_out_k` [N]: the crossing of the first valid segment capped at t_max, else t_max (forced)."""
    return [
        helper.make_node("Cast", ["valid"], ["valid_i32"], to=TensorProto.INT32),
        helper.make_node("ArgMax", ["valid_i32"], ["first"], axis=0, keepdims=1),  # [1, N]
        helper.make_node("ReduceMax", ["valid_i32", "axes0"], ["any_valid_i32"], keepdims=0),
        helper.make_node("Cast", ["any_valid_i32"], ["any_valid"], to=TensorProto.BOOL),
        helper.make_node("GatherElements", ["crossing", "first"], ["first_crossing_row"], axis=0),
        helper.make_node("Squeeze", ["first_crossing_row", "axes0"], ["first_crossing"]),
        helper.make_node("Min", ["first_crossing", "t_max"], ["capped"]),
        helper.make_node("Shape", ["theta"], ["fan_out"]),
        helper.make_node("Expand", ["t_max", "fan_out"], ["forced"]),
        helper.make_node("Where", ["any_valid", "capped", "forced"], ["t_out_k"]),
    ]


def build_ttfs_dense_a(opset: int) -> onnx.FunctionProto:
    """`snn.TTFSDenseA(t, J, theta, t_min_prev, t_max) -> t_out`: model A dense layer, event-exact.

    t [B, K] absolute input spike times; J [K, N] synaptic weights; theta [N] thresholds;
    t_min_prev, t_max scalars (the integration bias switches on at t_min_prev; forced spikes at
    t_max). Returns t_out [B, N]. Samples run one at a time (a Scan over the batch), so memory
    stays O(K·N) whatever the batch. Use float64: J is amplified by up to 1/(1 - S) (spec §6.4).
    """
    nodes = [
        constant("one_f", 1.0),
        constant("zero_f", 0.0),
        helper.make_node("CastLike", ["one_f", "theta"], ["one"]),
        helper.make_node("CastLike", ["zero_f", "theta"], ["zero"]),
        constant("axis0", 0),
        constant("axes0", [0]),
        constant("axes1", [1]),
        constant("column", [1, 1]),
        helper.make_node("Scan", ["t"], ["t_out"], num_scan_inputs=1, body=_dense_a_sample_body()),
    ]
    return _function("TTFSDenseA", DENSE_A_INPUTS, ["t_out"], nodes, opset, build_ttfs_dense_a.__doc__)
