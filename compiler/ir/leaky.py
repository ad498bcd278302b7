"""Leaky neurons read from NIR graphs (`onnx-snn import-nir`): `snn.LIFNeuron`, `snn.CubaLIFNeuron`
and `snn.LINeuron`, each a model-local ONNX function that scans over T.

They are discrete-time neurons whose parameters are tensor inputs (one value per neuron, or one
for the layer, broadcast against a step [B, ...]), so that one function serves every discretization
of NIR's continuous-time nodes (compiler/nir_io/dialects.py computes β, gains and biases from τ, r,
v_leak and the step dt). An IF neuron is an `snn.LIFNeuron` with β = 1.

Per step t, in the order the frameworks use (snnTorch's `Leaky`/`Synaptic`, sinabs's `LIF`):

- `snn.LIFNeuron`: v ← β·v + g·x_t + b; spikes s (see below); reset; v ← relu(v − v_min) + v_min.
- `snn.CubaLIFNeuron`: i ← α·i + g_syn·x_t; v ← β·v + g_mem·i + b; spikes s; reset (the new
  synaptic current drives the membrane in the same step).
- `snn.LINeuron`: v ← β·v + g·x_t + b; its output is v itself (no spikes, no reset).

Spikes (attribute `spikes`): "single": s = [v > θ_fire], one spike at most (θ_fire is the
threshold for `v > θ` and the float below it for `v ≥ θ`, which is the same test exactly);
"multi": s = max(0, ⌊v / θ⌋), as many spikes as whole thresholds (sinabs's MultiSpike).
Reset (attribute `reset`): "hard": v ← v_reset where s > 0; "soft": v ← v − s·θ.
"""

from __future__ import annotations

from functools import partial

import onnx
from onnx import TensorProto, helper

from onnx_snn.ir.function_parts import (
    constant,
    constant_from_attr,
    floor_flag_nodes,
    fresh_state_nodes,
    membrane_floor_nodes,
    snn_function,
    time_sequence_nodes,
)

LIF_INPUTS = ("x", "timesteps", "v0", "beta", "gain", "bias", "threshold", "fire_threshold", "v_reset", "v_min")
CUBA_LIF_INPUTS = (
    "x",
    "timesteps",
    "i0",
    "v0",
    "alpha",
    "gain_syn",
    "beta",
    "gain_mem",
    "bias",
    "threshold",
    "fire_threshold",
    "v_reset",
)
LI_INPUTS = ("x", "timesteps", "v0", "beta", "gain", "bias")
LIF_DEFAULTS: dict[str, str] = {"reset": "hard", "spikes": "single"}
CUBA_LIF_DEFAULTS: dict[str, str] = {"reset": "hard"}
#: the reset modes and spike modes the attributes take
RESETS = ("hard", "soft")
SPIKE_MODES = ("single", "multi")

#: the [T, B, ...] view of x that time_sequence_nodes names (no prefix)
_SEQ = "seq"
_value = partial(helper.make_tensor_value_info, elem_type=TensorProto.FLOAT, shape=None)


def _spike_nodes(multi: bool, v: str, out: str) -> list[onnx.NodeProto]:
    """Nodes computing the spikes `out` of the membrane `v` (after integration)."""
    if multi:
        return [
            helper.make_node("Div", [v, "threshold"], [f"{out}_ratio"]),
            helper.make_node("Floor", [f"{out}_ratio"], [f"{out}_whole"]),
            helper.make_node("Relu", [f"{out}_whole"], [out]),
        ]
    return [
        helper.make_node("Greater", [v, "fire_threshold"], [f"{out}_above"]),
        helper.make_node("Cast", [f"{out}_above"], [out], to=TensorProto.FLOAT),
    ]


def _reset_nodes(hard: bool, v: str, s: str, out: str) -> list[onnx.NodeProto]:
    """Nodes resetting the membrane `v` after the spikes `s`: to v_reset (hard) or by s·θ (soft)."""
    if hard:
        return [
            constant(f"{out}_none", 0.0),
            helper.make_node("Greater", [s, f"{out}_none"], [f"{out}_fired"]),
            helper.make_node("Where", [f"{out}_fired", "v_reset", v], [out]),
        ]
    return [
        helper.make_node("Mul", [s, "threshold"], [f"{out}_spent"]),
        helper.make_node("Sub", [v, f"{out}_spent"], [out]),
    ]


def _lif_step(hard: bool, multi: bool) -> onnx.GraphProto:
    """One snn.LIFNeuron step: state v, scanned x_t; outputs the new v and the spikes."""
    nodes = [
        helper.make_node("Mul", ["beta", "v"], ["leaked"]),
        helper.make_node("Mul", ["gain", "x_t"], ["drive"]),
        helper.make_node("Add", ["leaked", "drive"], ["charged"]),
        helper.make_node("Add", ["charged", "bias"], ["v1"]),
        *_spike_nodes(multi, "v1", "s"),
        *_reset_nodes(hard, "v1", "s", "v2"),
        *membrane_floor_nodes("v2", "v_min", "floored", "v3"),
    ]
    name = f"lif_{'hard' if hard else 'soft'}_{'multi' if multi else 'single'}_step"
    return helper.make_graph(nodes, name, [_value("v"), _value("x_t")], [_value("v3"), _value("s")])


def _cuba_lif_step(hard: bool) -> onnx.GraphProto:
    """One snn.CubaLIFNeuron step: states i and v, scanned x_t; outputs the new i, v and the spikes."""
    nodes = [
        helper.make_node("Mul", ["alpha", "i"], ["i_leaked"]),
        helper.make_node("Mul", ["gain_syn", "x_t"], ["i_drive"]),
        helper.make_node("Add", ["i_leaked", "i_drive"], ["i1"]),
        helper.make_node("Mul", ["beta", "v"], ["v_leaked"]),
        helper.make_node("Mul", ["gain_mem", "i1"], ["v_drive"]),
        helper.make_node("Add", ["v_leaked", "v_drive"], ["charged"]),
        helper.make_node("Add", ["charged", "bias"], ["v1"]),
        *_spike_nodes(False, "v1", "s"),
        *_reset_nodes(hard, "v1", "s", "v2"),
    ]
    name = f"cuba_lif_{'hard' if hard else 'soft'}_step"
    return helper.make_graph(
        nodes, name, [_value("i"), _value("v"), _value("x_t")], [_value("i1"), _value("v2"), _value("s")]
    )


def _li_step() -> onnx.GraphProto:
    """One snn.LINeuron step: state v, scanned x_t; outputs the new v twice (state and output)."""
    nodes = [
        helper.make_node("Mul", ["beta", "v"], ["leaked"]),
        helper.make_node("Mul", ["gain", "x_t"], ["drive"]),
        helper.make_node("Add", ["leaked", "drive"], ["charged"]),
        helper.make_node("Add", ["charged", "bias"], ["v1"]),
        helper.make_node("Identity", ["v1"], ["out"]),
    ]
    return helper.make_graph(nodes, "li_step", [_value("v"), _value("x_t")], [_value("v1"), _value("out")])


def _scan_branch(name: str, states: list[str], body: onnx.GraphProto, outputs: list[str]) -> onnx.GraphProto:
    """An If branch holding one Scan over `seq` with initial `states` and the step `body`."""
    node = helper.make_node("Scan", [*states, _SEQ], outputs, num_scan_inputs=1, body=body)
    return helper.make_graph([node], name, [], [_value(o) for o in outputs])


def _choice(attribute: str, value: str, flag: str) -> list[onnx.NodeProto]:
    """Nodes setting the boolean `flag` to whether the string attribute `attribute` equals `value`."""
    return [
        constant_from_attr(f"{flag}_attr", attribute, "string"),
        helper.make_node("Constant", [], [f"{flag}_value"], value_string=value),
        helper.make_node("Equal", [f"{flag}_attr", f"{flag}_value"], [flag]),
    ]


def build_lif_neuron(opset: int) -> onnx.FunctionProto:
    """`snn.LIFNeuron(x, timesteps, v0, beta, gain, bias, threshold, fire_threshold, v_reset, v_min)
    -> (spikes, v_T)`: discrete leaky integrate-and-fire neurons (β = 1: integrate-and-fire).

    Inputs: x [T*B, ...] the input current per step; timesteps int64 scalar T; v0 the initial
    membrane, broadcastable to [B, ...] (NaN: fresh, 0); the parameters, each broadcastable to a
    step [B, ...]: beta (leak factor), gain (input weight), bias (constant drive), threshold θ,
    fire_threshold (the single-spike test v > fire_threshold), v_reset (hard reset value), v_min
    (lower bound of the membrane, −inf for none). Attributes: reset "hard" | "soft", spikes
    "single" | "multi". Outputs: spikes [T*B, ...]; v_T [B, ...] after step T. Per step: v ← β·v
    + g·x + b; s = [v > fire_threshold] (single) or max(0, ⌊v/θ⌋) (multi); v ← v_reset where s > 0
    (hard) or v − s·θ (soft); v ← relu(v − v_min) + v_min where v_min > −inf (sinabs's rounding).
    """
    view, n = time_sequence_nodes("x", "timesteps")

    def branch(hard: bool, multi: bool) -> onnx.GraphProto:
        tag = f"{'hard' if hard else 'soft'}_{'multi' if multi else 'single'}"
        return _scan_branch(tag, ["v_start"], _lif_step(hard, multi), [f"v_T_{tag}", f"s_{tag}"])

    def by_reset(multi: bool) -> onnx.GraphProto:
        kind = "multi" if multi else "single"
        node = helper.make_node(
            "If",
            ["is_hard"],
            [f"v_T_{kind}", f"s_{kind}"],
            then_branch=branch(True, multi),
            else_branch=branch(False, multi),
        )
        return helper.make_graph([node], f"{kind}_spikes", [], [_value(f"v_T_{kind}"), _value(f"s_{kind}")])

    nodes = [
        *view,
        *_choice("reset", "hard", "is_hard"),
        *_choice("spikes", "multi", "is_multi"),
        *fresh_state_nodes("v0", n["step_shape"], "v_start"),
        *floor_flag_nodes("v_min", "floored"),
        helper.make_node(
            "If", ["is_multi"], ["v_T", "spike_seq"], then_branch=by_reset(True), else_branch=by_reset(False)
        ),
        helper.make_node("Reshape", ["spike_seq", n["flat_shape"]], ["spikes"]),
    ]
    return snn_function(
        "LIFNeuron", LIF_INPUTS, ["spikes", "v_T"], nodes, opset, build_lif_neuron.__doc__, defaults=LIF_DEFAULTS
    )


def build_cuba_lif_neuron(opset: int) -> onnx.FunctionProto:
    """`snn.CubaLIFNeuron(x, timesteps, i0, v0, alpha, gain_syn, beta, gain_mem, bias, threshold,
    fire_threshold, v_reset) -> (spikes, i_T, v_T)`: current-based LIF neurons, one spike a step at
    most.

    Inputs as snn.LIFNeuron's, plus i0 the initial synaptic current (NaN: fresh, 0), alpha its
    leak factor and gain_syn its input weight; gain_mem weighs the current into the membrane.
    Attribute reset "hard" | "soft". Per step: i ← α·i + g_syn·x; v ← β·v + g_mem·i + b; s = [v >
    fire_threshold]; v ← v_reset where s (hard) or v − s·θ (soft). Outputs: spikes [T*B, ...];
    i_T and v_T [B, ...] after step T.
    """
    view, n = time_sequence_nodes("x", "timesteps")
    nodes = [
        *view,
        *_choice("reset", "hard", "is_hard"),
        *fresh_state_nodes("i0", n["step_shape"], "i_start"),
        *fresh_state_nodes("v0", n["step_shape"], "v_start"),
        helper.make_node(
            "If",
            ["is_hard"],
            ["i_T", "v_T", "spike_seq"],
            then_branch=_scan_branch("hard", ["i_start", "v_start"], _cuba_lif_step(True), ["i_h", "v_h", "s_h"]),
            else_branch=_scan_branch("soft", ["i_start", "v_start"], _cuba_lif_step(False), ["i_s", "v_s", "s_s"]),
        ),
        helper.make_node("Reshape", ["spike_seq", n["flat_shape"]], ["spikes"]),
    ]
    return snn_function(
        "CubaLIFNeuron",
        CUBA_LIF_INPUTS,
        ["spikes", "i_T", "v_T"],
        nodes,
        opset,
        build_cuba_lif_neuron.__doc__,
        defaults=CUBA_LIF_DEFAULTS,
    )


def build_li_neuron(opset: int) -> onnx.FunctionProto:
    """`snn.LINeuron(x, timesteps, v0, beta, gain, bias) -> (v_seq, v_T)`: leaky integrators, whose
    output is the membrane after every step (a read-out layer: no spikes).

    Per step: v ← β·v + g·x + b. Inputs as snn.LIFNeuron's; outputs v_seq [T*B, ...], the membrane
    after each step, and v_T [B, ...].
    """
    view, n = time_sequence_nodes("x", "timesteps")
    nodes = [
        *view,
        *fresh_state_nodes("v0", n["step_shape"], "v_start"),
        helper.make_node("Scan", ["v_start", n["seq"]], ["v_T", "v_steps"], num_scan_inputs=1, body=_li_step()),
        helper.make_node("Reshape", ["v_steps", n["flat_shape"]], ["v_seq"]),
    ]
    return snn_function("LINeuron", LI_INPUTS, ["v_seq", "v_T"], nodes, opset, build_li_neuron.__doc__)
