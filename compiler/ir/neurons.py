"""Neuron ops of the `snn` domain, each defined as a model-local ONNX function of standard ops.

Every neuron op takes its input with time folded into the batch, `x: [T*B, ...]`, the number of
timesteps `timesteps: int64 scalar`, and an explicit initial state; it returns its spikes in the
same [T*B, ...] layout and its final state [B, ...]. The IF neuron's body scans over T with
`Scan`; ops whose state is a running sum (the max pool of spike counts `snn.IFMaxPool`, the
rate decoder) compute every step at once with `CumSum`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Callable

import onnx
from onnx import TensorProto, helper

from onnx_snn.ir import if_maxpool, leaky, poisson, rate_decoder, signgd, ttfs
from onnx_snn.ir.function_parts import (
    SNN_DOMAIN,
    SNN_DOMAIN_VERSION,
    constant,
    constant_from_attr,
    floor_flag_nodes,
    fresh_state_nodes,
    membrane_floor_nodes,
    snn_function,
    time_sequence_nodes,
)

#: the int64 input of the ops whose dynamics depend on the absolute step: the steps already done
STEP_OFFSET = "t0"


@dataclass(frozen=True)
class NeuronOp:
    """A neuron op: its name, input names and the builder of its body (the ONNX function, which
    declares the attributes and their defaults).

    `role` is "neuron", "encoder" (analog input to spikes), "pool" (spikes to spikes, pooled:
    `snn.IFMaxPool`), "decoder" (spikes to the output after every step: its first output is
    [T, B, ...], its second [B, ...]) or "integrator" (a neuron whose output is its membrane, not
    spikes: `snn.LINeuron`) for the rate-coded ops over T timesteps, and "ttfs" for the one-spike
    ops of compiler/ir/ttfs.py (no time axis).
    `states` pairs each state input (NaN: fresh) with the output that carries it after the last
    step, and names the data inputs whose per-step shape it has (the broadcast of them). An op
    whose dynamics depend on the absolute step has the int64 input STEP_OFFSET, the steps already
    done (its `step_offset`). Feeding a run's final states and step count into the next run
    continues the simulation exactly (runtime.stateful).
    """

    name: str
    inputs: tuple[str, ...]
    build: Callable[[int], onnx.FunctionProto]
    role: str = "neuron"
    states: tuple[tuple[str, str, tuple[str, ...]], ...] = ()
    #: the op that is this neuron for a current that is the same at every step (read once, not
    #: tiled over T); time_batch swaps to it where the current does not depend on time
    constant_input_op: str | None = None

    def input_index(self, name: str) -> int:
        """Position of the input called `name`."""
        return self.inputs.index(name)

    @property
    def step_offset(self) -> str | None:
        """The input counting the steps already done (STEP_OFFSET), None for an op without it."""
        return STEP_OFFSET if STEP_OFFSET in self.inputs else None


def _scan_body(
    name: str,
    nodes: list[onnx.NodeProto],
    state_in: str,
    x_in: str,
    state_out: str,
    spikes_out: str,
    x_type: int = TensorProto.FLOAT,
) -> onnx.GraphProto:
    return helper.make_graph(
        nodes,
        name,
        [
            helper.make_tensor_value_info(state_in, TensorProto.FLOAT, None),
            helper.make_tensor_value_info(x_in, x_type, None),
        ],
        [
            helper.make_tensor_value_info(state_out, TensorProto.FLOAT, None),
            helper.make_tensor_value_info(spikes_out, TensorProto.FLOAT, None),
        ],
    )


#: HardSigmoid(u) = clip(2^24·u − (2^24 − 1), 0, 1) is exactly [u ≥ 1] in float32: 2^24·u is exact,
#: the affine value is ≥ 1 for u ≥ 1 and ≤ 0 for u ≤ 1 − 2^−24 (the float below 1), and rounding
#: (fused or not) is monotone. One float op instead of GreaterOrEqual + Cast (runtime/PERFORMANCE.md)
STEP_GAIN = float(2**24)


def if_step(hard: bool, constant_input: bool) -> onnx.GraphProto:
    """One IF step in units of the threshold: u += x; s = [u >= 1]; then u -= s (soft reset, by
    subtraction) or u -= s*u (hard reset, to zero). With `constant_input` the current is the outer
    `u_in` [B, ...], the same every step, and the scanned element (the step index) is unused."""
    current = "u_in" if constant_input else "x_t"
    reset = (
        [helper.make_node("Mul", ["s", "u1"], ["spent"]), helper.make_node("Sub", ["u1", "spent"], ["u2"])]
        if hard
        else [helper.make_node("Sub", ["u1", "s"], ["u2"])]
    )
    return _scan_body(
        f"if_{'hard' if hard else 'soft'}_step",
        [
            helper.make_node("Add", ["u", current], ["u1"]),
            helper.make_node("HardSigmoid", ["u1"], ["s"], alpha=STEP_GAIN, beta=1.0 - STEP_GAIN),
            *reset,
        ],
        "u",
        "step" if constant_input else "x_t",
        "u2",
        "s",
        x_type=TensorProto.INT64 if constant_input else TensorProto.FLOAT,
    )


def _signed_if_step(constant_input: bool) -> onnx.GraphProto:
    """One signed IF step in units of the threshold, with the net spike count c as a second state:
    u += x; s = [u >= 1] − [u < 0 and c > 0]; u -= s; c += s. A neuron that has fired takes a spike
    back (−1) when its membrane falls below 0, so c stays the rounded ReLU of its summed input."""
    current = "u_in" if constant_input else "x_t"
    x_type = TensorProto.INT64 if constant_input else TensorProto.FLOAT
    nodes = [
        constant("origin", 0.0),
        helper.make_node("Add", ["u", current], ["u1"]),
        helper.make_node("HardSigmoid", ["u1"], ["up"], alpha=STEP_GAIN, beta=1.0 - STEP_GAIN),
        helper.make_node("Less", ["u1", "origin"], ["below"]),
        helper.make_node("Greater", ["c", "origin"], ["fired"]),
        helper.make_node("And", ["below", "fired"], ["back"]),
        helper.make_node("Cast", ["back"], ["down"], to=TensorProto.FLOAT),
        helper.make_node("Sub", ["up", "down"], ["s"]),
        helper.make_node("Sub", ["u1", "s"], ["u2"]),
        helper.make_node("Add", ["c", "s"], ["c2"]),
    ]
    value = partial(helper.make_tensor_value_info, elem_type=TensorProto.FLOAT, shape=None)
    return helper.make_graph(
        nodes,
        "signed_if_step",
        [value("u"), value("c"), helper.make_tensor_value_info("step" if constant_input else "x_t", x_type, None)],
        [value("u2"), value("c2"), value("s")],
    )


def build_signed_if_neuron(opset: int, constant_input: bool = False) -> onnx.FunctionProto:
    """`snn.SignedIFNeuron(x, timesteps, v0, n0) -> (spikes, v_T, n_T)`: rate-coded IF neurons with
    signed spikes (a signed neuron with memory, Wang et al. 2022), soft reset.

    Attributes: `threshold` (float), `v_init` (initial membrane as a fraction of the threshold,
    used where v0 is NaN). Inputs as snn.IFNeuron's, plus n0, the net spikes sent so far,
    broadcastable to [B, ...] (NaN: fresh, 0). Outputs: spikes [T*B, ...] in {−1, 0, 1}; v_T and
    n_T [B, ...] after step T. Per step (in units of the threshold): u += x_t; a spike +1 where
    u >= 1, −1 where u < 0 and c > 0; u -= s; c += s. So after t steps c_t = max(0, round(v_init +
    Σ x)) up to one step of lag per unit of change: an unsigned neuron keeps the spikes that an
    early positive current caused although later currents cancel it, and overshoots its ReLU.

    `snn.SignedIFNeuronConstantInput` (constant_input=True) reads a current that is the same at
    every step as [B, ...], like snn.IFNeuronConstantInput.
    """
    prologue, n, scanned = _if_prologue(constant_input)
    nodes = [
        *prologue,
        *fresh_state_nodes("n0", n["step_shape"], "n0_full"),
        helper.make_node(
            "Scan",
            ["u0", "n0_full", scanned],
            ["u_T", "n_T", "spike_seq"],
            num_scan_inputs=1,
            body=_signed_if_step(constant_input),
        ),
        *_if_epilogue(n),
    ]
    name = "SignedIFNeuronConstantInput" if constant_input else "SignedIFNeuron"
    return snn_function(
        name,
        SIGNED_IF_NEURON_INPUTS,
        ["spikes", "v_T", "n_T"],
        nodes,
        opset,
        build_signed_if_neuron.__doc__,
        defaults=SIGNED_IF_NEURON_DEFAULTS,
    )


def _if_prologue(constant_input: bool) -> tuple[list[onnx.NodeProto], dict[str, str], str]:
    """The nodes every IF neuron op starts with: its `threshold` and `v_init` attributes, the
    current it scans (_scanned_current: their names, the scanned sequence) and the membrane `u0`
    before the first step (_start_membrane)."""
    seq_nodes, n, scanned = _scanned_current(constant_input)
    nodes = [
        constant_from_attr("threshold", "threshold", "float"),
        constant_from_attr("v_init", "v_init", "float"),
        *seq_nodes,
        *_start_membrane(n["step_shape"]),
    ]
    return nodes, n, scanned


def _if_epilogue(n: dict[str, str]) -> list[onnx.NodeProto]:
    """The nodes every IF neuron op ends with: the Scan's `spike_seq` [T, B, ...] as `spikes`
    [T*B, ...], and the final membrane `u_T` in units of the threshold as `v_T`."""
    return [
        helper.make_node("Reshape", ["spike_seq", n["flat_shape"]], ["spikes"]),
        helper.make_node("Mul", ["u_T", "threshold"], ["v_T"]),
    ]


def _start_membrane(step_shape: str) -> list[onnx.NodeProto]:
    """Nodes making `u0` [B, ...], the membrane before the first step in units of the threshold:
    v0 / threshold, or `v_init` where v0 is NaN (fresh)."""
    return [
        helper.make_node("Div", ["v0", "threshold"], ["u0_given"]),
        helper.make_node("IsNaN", ["u0_given"], ["fresh"]),
        helper.make_node("Where", ["fresh", "v_init", "u0_given"], ["u0_partial"]),
        helper.make_node("Expand", ["u0_partial", step_shape], ["u0"]),
    ]


def _scanned_current(constant_input: bool) -> tuple[list[onnx.NodeProto], dict[str, str], str]:
    """The nodes that prepare an IF neuron's Scan over T, their names (time_sequence_nodes'), and
    the sequence the Scan reads: the current in threshold units [T, B, ...], or with
    `constant_input` the step indices (the current `u_in` [B, ...] is read by every step)."""
    if constant_input:
        seq_nodes, n = _constant_input_nodes()
        return seq_nodes, n, n["seq"]
    seq_nodes, n = time_sequence_nodes("x", "timesteps")
    return [*seq_nodes, helper.make_node("Div", [n["seq"], "threshold"], ["u_seq"])], n, "u_seq"


def _constant_input_nodes() -> tuple[list[onnx.NodeProto], dict[str, str]]:
    """For x [B, ...] the same every step: its current in threshold units `u_in`, a [T] step index
    sequence `steps` to scan over, the state shape `step_shape` and the spikes' `flat_shape` [T*B, ...]."""
    return [
        constant("one", [1]),
        constant("first", 0),
        constant("stride", 1),
        helper.make_node("Div", ["x", "threshold"], ["u_in"]),
        helper.make_node("Range", ["first", "timesteps", "stride"], ["steps"]),
        helper.make_node("Shape", ["x"], ["step_shape"]),
        helper.make_node("Shape", ["x"], ["batch"], end=1),
        helper.make_node("Shape", ["x"], ["rest"], start=1),
        helper.make_node("Reshape", ["timesteps", "one"], ["t1"]),
        helper.make_node("Mul", ["t1", "batch"], ["tb"]),
        helper.make_node("Concat", ["tb", "rest"], ["flat_shape"], axis=0),
    ], {"seq": "steps", "step_shape": "step_shape", "flat_shape": "flat_shape"}


def build_if_neuron(opset: int, constant_input: bool = False) -> onnx.FunctionProto:
    """`snn.IFNeuron(x, timesteps, v0) -> (spikes, v_T)`: rate-coded integrate-and-fire neurons.

    Attributes: `threshold` (float), `reset` ("soft": subtract the threshold; "hard": to zero),
    `v_init` (initial membrane as a fraction of the threshold, used where v0 is NaN).
    Inputs: x [T*B, ...] input current per step; timesteps int64 scalar T; v0 initial membrane
    potential, broadcastable to [B, ...] (a scalar NaN means "fresh": v_init * threshold).
    Outputs: spikes [T*B, ...] in {0, 1}; v_T [B, ...] the membrane after step T.
    Dynamics, per step t: v += x_t; s_t = [v >= threshold]; v -= s_t * threshold (soft) or
    v -= s_t * v (hard). The body runs in units of the threshold (u = v / threshold), so the
    input is divided once for all steps, not once per step.

    `snn.IFNeuronConstantInput` (constant_input=True) is the same neuron for a current that is the
    same at every step (the first layer under a static input): x is [B, ...], read by every step
    without being tiled to [T*B, ...].
    """
    prologue, n, scanned = _if_prologue(constant_input)

    def branch(hard: bool) -> onnx.GraphProto:
        kind = "hard" if hard else "soft"
        return helper.make_graph(
            [
                helper.make_node(
                    "Scan",
                    ["u0", scanned],
                    [f"u_T_{kind}", f"s_{kind}"],
                    num_scan_inputs=1,
                    body=if_step(hard, constant_input),
                )
            ],
            f"{kind}_reset",
            [],
            [
                helper.make_tensor_value_info(f"u_T_{kind}", TensorProto.FLOAT, None),
                helper.make_tensor_value_info(f"s_{kind}", TensorProto.FLOAT, None),
            ],
        )

    nodes = [
        *prologue,
        constant_from_attr("reset", "reset", "string"),
        helper.make_node("Constant", [], ["hard"], value_string="hard"),
        helper.make_node("Equal", ["reset", "hard"], ["is_hard"]),
        helper.make_node("If", ["is_hard"], ["u_T", "spike_seq"], then_branch=branch(True), else_branch=branch(False)),
        *_if_epilogue(n),
    ]
    name = "IFNeuronConstantInput" if constant_input else "IFNeuron"
    return snn_function(
        name, IF_NEURON_INPUTS, ["spikes", "v_T"], nodes, opset, build_if_neuron.__doc__, defaults=IF_NEURON_DEFAULTS
    )


def burst_if_step(constant_input: bool, capped: bool) -> onnx.GraphProto:
    """One burst IF step in units of the threshold, with m = −c (minus the net spikes sent) as the
    second state: u += x; s = max(⌊u⌋, m); u -= s; m -= s. `capped` adds the headroom h (k·steps
    done minus c, k the outer-scope `cap`) as a third state and caps the count at k spikes a step
    on average: h += k; s = min(s, ⌊h⌋); h -= s."""
    current = "u_in" if constant_input else "x_t"
    x_type = TensorProto.INT64 if constant_input else TensorProto.FLOAT
    bound = "s_low" if capped else "s"
    nodes = [
        helper.make_node("Add", ["u", current], ["u1"]),
        helper.make_node("Floor", ["u1"], ["whole"]),
        helper.make_node("Max", ["whole", "m"], [bound]),
    ]
    if capped:
        nodes += [
            helper.make_node("Add", ["h", "cap"], ["h1"]),
            helper.make_node("Floor", ["h1"], ["room"]),
            helper.make_node("Min", ["s_low", "room"], ["s"]),
            helper.make_node("Sub", ["h1", "s"], ["h2"]),
        ]
    nodes += [helper.make_node("Sub", ["u1", "s"], ["u2"]), helper.make_node("Sub", ["m", "s"], ["m2"])]
    value = partial(helper.make_tensor_value_info, elem_type=TensorProto.FLOAT, shape=None)
    states = ["u", "m", "h"] if capped else ["u", "m"]
    return helper.make_graph(
        nodes,
        f"{'capped_' if capped else ''}burst_if_step",
        [*map(value, states), helper.make_tensor_value_info("step" if constant_input else "x_t", x_type, None)],
        [*(value(f"{name}2") for name in states), value("s")],
    )


def build_burst_if_neuron(opset: int, constant_input: bool = False, capped: bool = False) -> onnx.FunctionProto:
    """`snn.BurstIFNeuron(x, timesteps, v0, n0) -> (spikes, v_T, n_T)`: signed IF neurons that send
    as many spikes a step as their membrane holds whole thresholds (burst spikes), soft reset.

    Attributes and inputs as snn.SignedIFNeuron's. Per step (in units of the threshold): u += x_t;
    s = max(⌊u⌋, −c) (⌊u⌋ spikes up where u ≥ 1, down to at most the c sent where u < 0); u -= s;
    c += s. With S_t = u_0 + c_0 + Σ_{k≤t} x_k, u = S − c holds throughout, so c_t = max(0, ⌊S_t⌋)
    (up to float rounding): the count is the rounded ReLU of the summed input at every step, with
    no cap of one spike a step, so nothing above the calibrated scale is clipped and no input
    waits in the membrane. Outputs: spikes [T*B, ...] (whole numbers), v_T and n_T [B, ...].

    `snn.CappedBurstIFNeuron(x, timesteps, v0, n0, h0, cap) -> (spikes, v_T, n_T, h_T)`
    (capped=True) is the clipped ReLU min(max(x, 0), k) of a capped ReLU normalized to
    Min(Relu(x/λ), k), k = c/λ ≥ 1 per channel (`cap`, broadcast against one step's [B, ...]; ReLU6
    at λ = 6 has k = 1): the count also stays at most k times the steps done, c_t = min(max(0,
    ⌊S_t⌋), ⌊k·t⌋), through the headroom h = k·t − c (h0, h_T; NaN: fresh, 0): s = min(max(⌊u⌋,
    −c), ⌊h + k⌋).

    The `...ConstantInput` forms (constant_input=True) read a current that is the same at every
    step as [B, ...], like snn.IFNeuronConstantInput.
    """
    prologue, n, scanned = _if_prologue(constant_input)
    states = ["u0", "m0", "h0_full"] if capped else ["u0", "m0"]
    finals = ["u_T", "m_T", "h_T"] if capped else ["u_T", "m_T"]
    nodes = [
        *prologue,
        *fresh_state_nodes("n0", n["step_shape"], "c0"),
        helper.make_node("Neg", ["c0"], ["m0"]),
        *(fresh_state_nodes("h0", n["step_shape"], "h0_full") if capped else []),
        helper.make_node(
            "Scan",
            [*states, scanned],
            [*finals, "spike_seq"],
            num_scan_inputs=1,
            body=burst_if_step(constant_input, capped),
        ),
        *_if_epilogue(n),
        helper.make_node("Neg", ["m_T"], ["n_T"]),
    ]
    name = f"{'Capped' if capped else ''}BurstIFNeuron{'ConstantInput' if constant_input else ''}"
    return snn_function(
        name,
        CAPPED_BURST_IF_NEURON_INPUTS if capped else SIGNED_IF_NEURON_INPUTS,
        ["spikes", "v_T", "n_T", *(["h_T"] if capped else [])],
        nodes,
        opset,
        build_burst_if_neuron.__doc__,
        defaults=SIGNED_IF_NEURON_DEFAULTS,
    )


def _multi_spike_if_step(constant_input: bool) -> onnx.GraphProto:
    """One multi-spike IF step in units of the threshold: u += x; s = max(0, ⌊u⌋) (as many spikes
    as whole thresholds); u -= s; u = relu(u − v_min) + v_min where a floor is set."""
    current = "u_in" if constant_input else "x_t"
    return _scan_body(
        "multi_spike_if_step",
        [
            helper.make_node("Add", ["u", current], ["u1"]),
            helper.make_node("Floor", ["u1"], ["whole"]),
            helper.make_node("Relu", ["whole"], ["s"]),
            helper.make_node("Sub", ["u1", "s"], ["u2"]),
            *membrane_floor_nodes("u2", "v_min", "floored", "u3"),
        ],
        "u",
        "step" if constant_input else "x_t",
        "u3",
        "s",
        x_type=TensorProto.INT64 if constant_input else TensorProto.FLOAT,
    )


def build_multi_spike_if_neuron(opset: int, constant_input: bool = False) -> onnx.FunctionProto:
    """`snn.MultiSpikeIFNeuron(x, timesteps, v0) -> (spikes, v_T)`: rate-coded IF neurons that emit
    ⌊v/θ⌋ spikes a step where v ≥ θ (burst spikes; sinabs's IAF with MultiSpike), soft reset, and a
    membrane floor.

    Attributes: `threshold` (float), `v_init` (initial membrane as a fraction of the threshold,
    used where v0 is NaN), `v_min` (the membrane's floor as a multiple of the threshold, −inf: none;
    sinabs's min_v_mem = −θ is −1). Inputs and outputs as snn.IFNeuron's; spikes [T*B, ...] are
    whole numbers ≥ 0. Per step (in units of the threshold): u += x_t; s = max(0, ⌊u⌋); u -= s;
    u = relu(u − v_min) + v_min where v_min > −inf (max(u, v_min), rounded as sinabs rounds it). A
    neuron's rate is not capped at one spike a step, so an activation above the calibrated scale is
    passed on, not clipped.

    `snn.MultiSpikeIFNeuronConstantInput` (constant_input=True) reads a current that is the same at
    every step as [B, ...], like snn.IFNeuronConstantInput.
    """
    prologue, n, scanned = _if_prologue(constant_input)
    nodes = [
        *prologue,
        constant_from_attr("v_min", "v_min", "float"),
        *floor_flag_nodes("v_min", "floored"),
        helper.make_node(
            "Scan", ["u0", scanned], ["u_T", "spike_seq"], num_scan_inputs=1, body=_multi_spike_if_step(constant_input)
        ),
        *_if_epilogue(n),
    ]
    name = "MultiSpikeIFNeuronConstantInput" if constant_input else "MultiSpikeIFNeuron"
    return snn_function(
        name,
        IF_NEURON_INPUTS,
        ["spikes", "v_T"],
        nodes,
        opset,
        build_multi_spike_if_neuron.__doc__,
        defaults=MULTI_SPIKE_IF_NEURON_DEFAULTS,
    )


IF_NEURON_DEFAULTS: dict[str, float | str] = {"threshold": 1.0, "reset": "soft", "v_init": 0.5}
IF_NEURON_INPUTS = ("x", "timesteps", "v0")
SIGNED_IF_NEURON_DEFAULTS: dict[str, float | str] = {"threshold": 1.0, "v_init": 0.5}
SIGNED_IF_NEURON_INPUTS = ("x", "timesteps", "v0", "n0")
CAPPED_BURST_IF_NEURON_INPUTS = (*SIGNED_IF_NEURON_INPUTS, "h0", "cap")
MULTI_SPIKE_IF_NEURON_DEFAULTS: dict[str, float | str] = {"threshold": 1.0, "v_init": 0.5, "v_min": -math.inf}

_IF_STATE = (("v0", "v_T", ("x",)),)
_SIGNED_IF_STATE = (("v0", "v_T", ("x",)), ("n0", "n_T", ("x",)))
_CAPPED_BURST_IF_STATE = (*_SIGNED_IF_STATE, ("h0", "h_T", ("x",)))
_SIGNGD_STATE = (("x0", "x_T", ("z",)), ("v0", "v_T", ("z",)))
_SIGNGD_BINARY_STATE = (("xp0", "xp_T", ("zp",)), ("xq0", "xq_T", ("zq",)), ("v0", "v_T", ("zp", "zq")))
_IF_MAXPOOL_STATE = (("c0", "c_T", ("x",)),)
_RATE_DECODER_STATE = (("s0", "s_T", ("z",)),)
_SIGNGD_ENCODER_STATE = (("f0", "f_T", ("x",)),)
_SIGNGD_DECODER_STATE = (("y0", "y_T", ("z",)),)
_LEAKY_STATE = (("v0", "v_T", ("x",)),)
_CUBA_STATE = (("i0", "i_T", ("x",)), ("v0", "v_T", ("x",)))

_OPS = (
    NeuronOp(
        "IFNeuron", IF_NEURON_INPUTS, build_if_neuron, states=_IF_STATE, constant_input_op="IFNeuronConstantInput"
    ),
    NeuronOp(
        "IFNeuronConstantInput", IF_NEURON_INPUTS, partial(build_if_neuron, constant_input=True), states=_IF_STATE
    ),
    NeuronOp(
        "SignedIFNeuron",
        SIGNED_IF_NEURON_INPUTS,
        build_signed_if_neuron,
        states=_SIGNED_IF_STATE,
        constant_input_op="SignedIFNeuronConstantInput",
    ),
    NeuronOp(
        "SignedIFNeuronConstantInput",
        SIGNED_IF_NEURON_INPUTS,
        partial(build_signed_if_neuron, constant_input=True),
        states=_SIGNED_IF_STATE,
    ),
    NeuronOp(
        "BurstIFNeuron",
        SIGNED_IF_NEURON_INPUTS,
        build_burst_if_neuron,
        states=_SIGNED_IF_STATE,
        constant_input_op="BurstIFNeuronConstantInput",
    ),
    NeuronOp(
        "BurstIFNeuronConstantInput",
        SIGNED_IF_NEURON_INPUTS,
        partial(build_burst_if_neuron, constant_input=True),
        states=_SIGNED_IF_STATE,
    ),
    NeuronOp(
        "CappedBurstIFNeuron",
        CAPPED_BURST_IF_NEURON_INPUTS,
        partial(build_burst_if_neuron, capped=True),
        states=_CAPPED_BURST_IF_STATE,
        constant_input_op="CappedBurstIFNeuronConstantInput",
    ),
    NeuronOp(
        "CappedBurstIFNeuronConstantInput",
        CAPPED_BURST_IF_NEURON_INPUTS,
        partial(build_burst_if_neuron, constant_input=True, capped=True),
        states=_CAPPED_BURST_IF_STATE,
    ),
    NeuronOp(
        "MultiSpikeIFNeuron",
        IF_NEURON_INPUTS,
        build_multi_spike_if_neuron,
        states=_IF_STATE,
        constant_input_op="MultiSpikeIFNeuronConstantInput",
    ),
    NeuronOp(
        "MultiSpikeIFNeuronConstantInput",
        IF_NEURON_INPUTS,
        partial(build_multi_spike_if_neuron, constant_input=True),
        states=_IF_STATE,
    ),
    NeuronOp(
        "IFMaxPool", if_maxpool.MAXPOOL_INPUTS, if_maxpool.build_if_maxpool, role="pool", states=_IF_MAXPOOL_STATE
    ),
    NeuronOp("PoissonEncoder", poisson.ENCODER_INPUTS, poisson.build_poisson_encoder, role="encoder"),
    NeuronOp(
        "RateDecoder",
        rate_decoder.DECODER_INPUTS,
        rate_decoder.build_rate_decoder,
        role="decoder",
        states=_RATE_DECODER_STATE,
    ),
    NeuronOp("SignGDNeuron", signgd.NEURON_INPUTS, signgd.build_signgd_neuron, states=_SIGNGD_STATE),
    NeuronOp(
        "SignGDBinaryNeuron",
        signgd.BINARY_NEURON_INPUTS,
        signgd.build_signgd_binary_neuron,
        states=_SIGNGD_BINARY_STATE,
    ),
    NeuronOp(
        "SignGDEncoder",
        signgd.ENCODER_INPUTS,
        signgd.build_signgd_encoder,
        role="encoder",
        states=_SIGNGD_ENCODER_STATE,
    ),
    NeuronOp(
        "SignGDDecoder",
        signgd.DECODER_INPUTS,
        signgd.build_signgd_decoder,
        role="decoder",
        states=_SIGNGD_DECODER_STATE,
    ),
    NeuronOp("LIFNeuron", leaky.LIF_INPUTS, leaky.build_lif_neuron, states=_LEAKY_STATE),
    NeuronOp("CubaLIFNeuron", leaky.CUBA_LIF_INPUTS, leaky.build_cuba_lif_neuron, states=_CUBA_STATE),
    NeuronOp("LINeuron", leaky.LI_INPUTS, leaky.build_li_neuron, role="integrator", states=_LEAKY_STATE),
    NeuronOp("TTFSEncoder", ttfs.ENCODER_INPUTS, ttfs.build_ttfs_encoder, role="ttfs"),
    NeuronOp("TTFSNeuron", ttfs.NEURON_INPUTS, ttfs.build_ttfs_neuron, role="ttfs"),
    NeuronOp("TTFSDenseA", ttfs.DENSE_A_INPUTS, ttfs.build_ttfs_dense_a, role="ttfs"),
)
#: every op of the snn domain, by name
NEURON_OPS: dict[str, NeuronOp] = {op.name: op for op in _OPS}
#: the rate-coded IF neuron op per --spikes kind (time_batch swaps each for its constant-input form)
IF_NEURON_OP = {
    "signed": "SignedIFNeuron",
    "binary": "IFNeuron",
    "multi": "MultiSpikeIFNeuron",
    "burst": "BurstIFNeuron",
}
#: the op of a capped ReLU (a rate of at most one spike a step) per --spikes kind; multi has none
CAPPED_IF_NEURON_OP = {"signed": "SignedIFNeuron", "binary": "IFNeuron", "burst": "CappedBurstIFNeuron"}


def takes_cap(spikes: str) -> bool:
    """True where the --spikes kind's capped-ReLU op reads a per-channel `cap` (k spikes a step at
    most), so that a capped ReLU's λ need not be its cap c: Min(Relu(x/λ), c/λ)."""
    return spikes in CAPPED_IF_NEURON_OP and "cap" in NEURON_OPS[CAPPED_IF_NEURON_OP[spikes]].inputs


#: every IF neuron op, constant-input forms included
IF_NEURON_OPS = frozenset(
    name
    for op in (*IF_NEURON_OP.values(), *CAPPED_IF_NEURON_OP.values())
    for name in (op, NEURON_OPS[op].constant_input_op)
    if name is not None
)


def attach_functions(model: onnx.ModelProto) -> onnx.ModelProto:
    """Add the local function of every `snn` op the graph uses, and the `snn` opset import."""
    used = {node.op_type for node in model.graph.node if node.domain == SNN_DOMAIN}
    unknown = used - NEURON_OPS.keys()
    if unknown:
        raise ValueError(f"unknown snn ops: {sorted(unknown)}")
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    present = {f.name for f in model.functions if f.domain == SNN_DOMAIN}
    for name in sorted(used - present):
        model.functions.append(NEURON_OPS[name].build(opset))
    if used and not any(o.domain == SNN_DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(SNN_DOMAIN, SNN_DOMAIN_VERSION))
    return model
