"""Building blocks of the signGD ops' function bodies (spec signgd-dynamics §§1-3).

The bodies are typed generically: every float tensor of one op shares the type of its data input
(float32 or float64), and constants are made in float64 and cast like it (`CastLike`). One
timestep runs inside a `Scan` over T; its per-step inputs are always η_t and 2η_t first, then the
op's own sequences.

Exactness: the step formulas below are rearranged only where IEEE arithmetic gives the same bits
as spec §2 (barring overflow and subnormals), so an op equals a step-by-step evaluation of the spec
in the same floating type, and a run split into chunks (state and t0 carried) equals one run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper

from onnx_snn.ir.function_parts import constant_from_attr as attribute_constant
from onnx_snn.ir.function_parts import snn_function

#: builds one case of a `switch`: given a name prefix, its nodes and the names of its outputs
Branch = Callable[[str], tuple[list[onnx.NodeProto], list[str]]]

#: the per-step slices of η and 2η that every step body reads
ETA_T, TWO_ETA_T = "eta_t", "two_eta_t"


def node(op_type: str, inputs: list[str], output: str, **attrs) -> onnx.NodeProto:
    """A one-output node of the standard domain."""
    return helper.make_node(op_type, inputs, [output], **attrs)


def _untyped(name: str) -> onnx.ValueInfoProto:
    info = onnx.ValueInfoProto()
    info.name = name
    return info


def typed_constant(output: str, value: float, like: str) -> list[onnx.NodeProto]:
    """Nodes making `output`, the scalar `value` in the floating type of the tensor `like`."""
    wide = onnx.numpy_helper.from_array(np.asarray(value, np.float64), f"{output}_f64")
    return [
        helper.make_node("Constant", [], [f"{output}_f64"], value=wide),
        node("CastLike", [f"{output}_f64", like], output),
    ]


def make_op(
    name: str,
    inputs: list[str],
    outputs: list[str],
    nodes: list[onnx.NodeProto],
    opset: int,
    defaults: dict[str, float | str],
    required: list[str],
    doc: str | None,
) -> onnx.FunctionProto:
    """The `snn` function `name`; `required` attributes have no default."""
    return snn_function(name, inputs, outputs, nodes, opset, doc, required=required, defaults=defaults)


def switch(selector: str, cases: dict[str, Branch], outputs: list[str]) -> list[onnx.NodeProto]:
    """Nodes setting `outputs` from the case whose key equals the string scalar `selector`.

    A chain If(selector == key₁, case₁, If(selector == key₂, case₂, … case_n)) over two or more
    cases: a selector matching no key runs the last case. (A failing node for unknown values would
    be constant-folded by onnxruntime, with a warning at every model load.)
    """
    return _switch_nodes(selector, list(cases.items()), outputs)


def _switch_nodes(selector: str, cases: list[tuple[str, Branch]], outputs: list[str]) -> list[onnx.NodeProto]:
    (key, build), rest = cases[0], cases[1:]
    if len(rest) == 1:
        last_key, last_build = rest[0]
        otherwise = _graph(last_key, *last_build(f"{last_key}_"))
    else:
        else_outputs = [f"{out}_not_{key}" for out in outputs]
        otherwise = _graph(f"not_{key}", _switch_nodes(selector, rest, else_outputs), else_outputs)
    return [
        helper.make_node("Constant", [], [f"{selector}_{key}"], value_string=key),
        node("Equal", [selector, f"{selector}_{key}"], f"{selector}_is_{key}"),
        helper.make_node(
            "If", [f"{selector}_is_{key}"], outputs, then_branch=_graph(key, *build(f"{key}_")), else_branch=otherwise
        ),
    ]


def _graph(name: str, nodes: list[onnx.NodeProto], outputs: list[str]) -> onnx.GraphProto:
    return helper.make_graph(nodes, name, [], [_untyped(n) for n in outputs])


def decimal_attribute(output: str, attribute: str) -> list[onnx.NodeProto]:
    """Nodes reading the float attribute `attribute` as a float64 `output`.

    ONNX float attributes are float32, so eta0 = 0.15 arrives as 0.15000000596…, enough to flip a
    spike at the ties of spec §10.1 in a float64 run. Any decimal of at most 6 significant digits
    survives a float32 round trip (FLT_DIG = 6), so the value is rounded to 6 significant digits
    and that decimal is used if it rounds back to the same float32; otherwise the float32 value
    itself. All inputs are constants: onnxruntime folds these nodes at load.
    """
    p = f"{output}_"
    return [
        attribute_constant(f"{p}f32", attribute, "float"),
        node("Cast", [f"{p}f32"], f"{p}wide", to=TensorProto.DOUBLE),
        *typed_constant(f"{p}ln10", float(np.log(10.0)), f"{p}wide"),
        *typed_constant(f"{p}ten", 10.0, f"{p}wide"),
        *typed_constant(f"{p}five", 5.0, f"{p}wide"),
        node("Abs", [f"{p}wide"], f"{p}abs"),
        node("Log", [f"{p}abs"], f"{p}ln"),
        node("Div", [f"{p}ln", f"{p}ln10"], f"{p}log10"),
        node("Floor", [f"{p}log10"], f"{p}exponent"),
        node("Sub", [f"{p}five", f"{p}exponent"], f"{p}places"),
        node("Pow", [f"{p}ten", f"{p}places"], f"{p}scale"),  # 10^(5 - exponent): 6 significant digits
        node("Mul", [f"{p}wide", f"{p}scale"], f"{p}scaled"),
        node("Round", [f"{p}scaled"], f"{p}digits"),
        node("Div", [f"{p}digits", f"{p}scale"], f"{p}decimal"),
        node("Cast", [f"{p}decimal"], f"{p}decimal_f32", to=TensorProto.FLOAT),
        node("Equal", [f"{p}decimal_f32", f"{p}f32"], f"{p}round_trips"),  # false for 0 (NaN decimal)
        node("Where", [f"{p}round_trips", f"{p}decimal", f"{p}wide"], output),
    ]


def schedule_nodes(t0: str, timesteps: str, like: str) -> list[onnx.NodeProto]:
    """Nodes making `eta` and `two_eta` [T]: η_t and 2η_t for t = t0+1 .. t0+T (spec §1).

    Reads the attributes eta0, gamma (float, see `decimal_attribute`) and schedule
    ("exponential": η0·γ^(t−1), "constant": η0, "inverse": η0/t, "exp_inverse": max(η0·γ^(t−1), tail/t)
    once t > 1/ln(1/γ), where t·η0·γ^(t−1) peaks, and η0·γ^(t−1) before; the float attribute tail is
    read only by that case).
    η is computed in float64 and rounded once to the type of `like`; 2η is exact.
    """
    cases: dict[str, Branch] = {
        "exponential": lambda p: (
            [node("Pow", ["gamma", "k"], f"{p}decay"), node("Mul", ["eta0", f"{p}decay"], f"{p}eta")],
            [f"{p}eta"],
        ),
        "constant": lambda p: (
            [node("Shape", ["k"], f"{p}count"), node("Expand", ["eta0", f"{p}count"], f"{p}eta")],
            [f"{p}eta"],
        ),
        "inverse": lambda p: (
            [
                *typed_constant(f"{p}one", 1.0, "k"),
                node("Add", ["k", f"{p}one"], f"{p}t"),
                node("Div", ["eta0", f"{p}t"], f"{p}eta"),
            ],
            [f"{p}eta"],
        ),
        "exp_inverse": lambda p: (
            [
                *decimal_attribute(f"{p}tail", "tail"),
                *typed_constant(f"{p}one", 1.0, "k"),
                *typed_constant(f"{p}minus_one", -1.0, "k"),
                node("Add", ["k", f"{p}one"], f"{p}t"),
                node("Pow", ["gamma", "k"], f"{p}decay"),
                node("Mul", ["eta0", f"{p}decay"], f"{p}head"),
                node("Div", [f"{p}tail", f"{p}t"], f"{p}inverse"),
                node("Max", [f"{p}head", f"{p}inverse"], f"{p}floored"),
                node("Log", ["gamma"], f"{p}log_gamma"),
                node("Mul", [f"{p}t", f"{p}log_gamma"], f"{p}minus_t_rate"),
                node("Less", [f"{p}minus_t_rate", f"{p}minus_one"], f"{p}past_peak"),
                node("Where", [f"{p}past_peak", f"{p}floored", f"{p}head"], f"{p}eta"),
            ],
            [f"{p}eta"],
        ),
    }
    return [
        *decimal_attribute("eta0", "eta0"),
        *decimal_attribute("gamma", "gamma"),
        attribute_constant("schedule", "schedule", "string"),
        helper.make_node("Constant", [], ["step_one"], value_int=1),
        node("Add", [t0, timesteps], "t_end"),
        node("Range", [t0, "t_end", "step_one"], "k_int"),  # k = t - 1
        node("Cast", ["k_int"], "k", to=TensorProto.DOUBLE),
        *switch("schedule", cases, ["eta_f64"]),
        node("CastLike", ["eta_f64", like], "eta"),
        node("Add", ["eta", "eta"], "two_eta"),
    ]


def initial_state(given: str, fresh: str, shapes: list[str], output: str) -> list[onnx.NodeProto]:
    """`given` where it is not NaN, else `fresh`, broadcast over every shape in `shapes`."""
    stages = [f"{output}_{i}" for i in range(len(shapes))] + [output]
    return [
        node("IsNaN", [given], f"{output}_fresh"),
        node("Where", [f"{output}_fresh", fresh, given], stages[0]),
        *(node("Expand", [stages[i], shape], stages[i + 1]) for i, shape in enumerate(shapes)),
    ]


def cover_batch(value: str, step_shape: str, output: str) -> list[onnx.NodeProto]:
    """Nodes repeating `value` along axis 0 so that it covers a step of shape `step_shape`.

    A calibration measured on one sample is [k, ...]: k = 1 broadcasts over any batch and is
    left as it is, but k > 1 is a batch axis that merges the sample with k positions (Swin's
    windows, [B·k, ...] at batch B), so it is tiled B times, sample-major as such a reshape
    orders them. `value` may have a lower rank than the step (it is aligned to the right, as
    broadcasting does); its axis 0 must then be 1 or divide the step's."""
    p = f"{output}_cover"
    return [
        helper.make_node("Constant", [], [f"{p}_from0"], value_ints=[0]),
        helper.make_node("Constant", [], [f"{p}_to1"], value_ints=[1]),
        helper.make_node("Constant", [], [f"{p}_to_end"], value_ints=[2**63 - 1]),
        helper.make_node("Shape", [step_shape], [f"{p}_rank"]),
        helper.make_node(
            "ConstantOfShape",
            [f"{p}_rank"],
            [f"{p}_ones"],
            value=helper.make_tensor("one", TensorProto.INT64, [1], [1]),
        ),
        node("Expand", [value, f"{p}_ones"], f"{p}_ranked"),
        helper.make_node("Shape", [f"{p}_ranked"], [f"{p}_k"], start=0, end=1),
        helper.make_node("Slice", [step_shape, f"{p}_from0", f"{p}_to1"], [f"{p}_b"]),
        helper.make_node("Equal", [f"{p}_k", f"{p}_to1"], [f"{p}_single"]),
        node("Div", [f"{p}_b", f"{p}_k"], f"{p}_samples"),
        node("Where", [f"{p}_single", f"{p}_to1", f"{p}_samples"], f"{p}_repeat0"),
        helper.make_node("Slice", [f"{p}_ones", f"{p}_to1", f"{p}_to_end"], [f"{p}_rest"]),
        helper.make_node("Concat", [f"{p}_repeat0", f"{p}_rest"], [f"{p}_repeats"], axis=0),
        node("Tile", [f"{p}_ranked", f"{p}_repeats"], output),
    ]


def fold_time(seq: str, output: str) -> list[onnx.NodeProto]:
    """Nodes reshaping `seq` [T, B, ...] to `output` [T*B, ...]."""
    return [
        helper.make_node("Constant", [], [f"{output}_lead"], value_ints=[-1]),
        helper.make_node("Shape", [seq], [f"{output}_rest"], start=2),
        helper.make_node("Concat", [f"{output}_lead", f"{output}_rest"], [f"{output}_shape"], axis=0),
        node("Reshape", [seq, f"{output}_shape"], output),
    ]


def charge_nodes(state: str, current: str, half_offset: str, output: str) -> list[onnx.NodeProto]:
    """Step nodes of a tracker: `output` = x − η_t·(2z_t − o) for x = `state`, z_t = `current`.

    Computed as x + (o/2 − z_t)·2η_t with `half_offset` = o/2: the same bits, since halving,
    doubling and negation are exact and fl(a·2η) = fl(2a·η).
    """
    return [
        node("Sub", [half_offset, current], f"{output}_gap"),
        node("Mul", [f"{output}_gap", TWO_ETA_T], f"{output}_step"),
        node("Add", [state, f"{output}_step"], output),
    ]


def fire_reset_nodes(fire: str, v: str, v_next: str, spikes: str) -> list[onnx.NodeProto]:
    """Step nodes turning the bool `fire` into `spikes` s and `v_next` = v − η_t·(2s − 1).

    Computed as v − (s·2η_t − η_t): the bracket is exactly ±η_t, so this is the spec's single
    rounding. Cast and Mul beat Where in onnxruntime: a fire/reset-only Scan over [64, 256, 6272]
    float32 took 112-130 ms so, 160-240 ms with Where(fire, η_t, −η_t) (2 CPU cores).
    """
    return [
        node("CastLike", [fire, v], spikes),
        node("Mul", [spikes, TWO_ETA_T], f"{v_next}_twice"),
        node("Sub", [f"{v_next}_twice", ETA_T], f"{v_next}_step"),
        node("Sub", [v, f"{v_next}_step"], v_next),
    ]


@dataclass(frozen=True)
class StepBody:
    """One timestep: `nodes` read the `states`, η_t, 2η_t and the per-step slices `inputs`, and
    write `next_states` (in the order of `states`) and `emits` (stacked over T by the Scan)."""

    states: list[str]
    inputs: list[str]
    nodes: list[onnx.NodeProto]
    next_states: list[str]
    emits: list[str]


def scan_node(
    body: StepBody, initial: list[str], sequences: list[str], finals: list[str], stacked: list[str], name: str
) -> onnx.NodeProto:
    """A Scan over T running `body` from the states `initial` on `eta`, `two_eta` and `sequences`
    ([T, ...] each); outputs the final states `finals` and the stacked emits `stacked`."""
    graph = helper.make_graph(
        body.nodes,
        name,
        [_untyped(n) for n in [*body.states, ETA_T, TWO_ETA_T, *body.inputs]],
        [_untyped(n) for n in [*body.next_states, *body.emits]],
    )
    return helper.make_node(
        "Scan",
        [*initial, "eta", "two_eta", *sequences],
        [*finals, *stacked],
        num_scan_inputs=2 + len(sequences),
        body=graph,
    )
