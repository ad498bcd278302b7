"""Pieces shared by the builders of `snn` local functions: the domain, constants, time views."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnx
from onnx import AttributeProto, helper

SNN_DOMAIN = "snn"
SNN_DOMAIN_VERSION = 1
_INT64_MAX = np.iinfo(np.int64).max


def attr_ref(name: str, attr_type: AttributeProto.AttributeType, ref: str) -> AttributeProto:
    """An attribute of a function-body node that takes the function attribute `ref`."""
    attr = AttributeProto()
    attr.name, attr.type, attr.ref_attr_name = name, attr_type, ref
    return attr


def constant_from_attr(output: str, attribute: str, kind: str) -> onnx.NodeProto:
    """A Constant node whose value is the function attribute `attribute` (kind: float, int or string;
    an int becomes an int64 scalar)."""
    node = helper.make_node("Constant", [], [output])
    attr_type = {"float": AttributeProto.FLOAT, "int": AttributeProto.INT, "string": AttributeProto.STRING}[kind]
    node.attribute.append(attr_ref(f"value_{kind}", attr_type, attribute))
    return node


def snn_function(
    name: str,
    inputs: Sequence[str],
    outputs: Sequence[str],
    nodes: list[onnx.NodeProto],
    opset: int,
    doc: str | None,
    required: Sequence[str] = (),
    defaults: Mapping[str, Any] | None = None,
) -> onnx.FunctionProto:
    """The function `name` of the snn domain, made of standard ops at `opset`: attributes
    `required` (no default) and `defaults` (name to default value)."""
    return helper.make_function(
        SNN_DOMAIN,
        name,
        list(inputs),
        list(outputs),
        nodes,
        [helper.make_opsetid("", opset)],
        attributes=list(required),
        attribute_protos=[helper.make_attribute(k, v) for k, v in (defaults or {}).items()],
        doc_string=doc,
    )


def constant(output: str, value) -> onnx.NodeProto:
    """A Constant node holding `value` (ints become int64 1-D, floats float32 scalars)."""
    array = np.asarray(value)
    if array.dtype.kind in "iu":
        array = array.astype(np.int64)
    elif array.dtype.kind == "f":
        array = array.astype(np.float32)
    return helper.make_node("Constant", [], [output], value=onnx.numpy_helper.from_array(array, output))


def time_sequence_nodes(x: str, timesteps: str, prefix: str = "") -> tuple[list[onnx.NodeProto], dict[str, str]]:
    """Nodes that view `x: [T*B, ...]` as `[T, B, ...]` and give the shape of one step [B, ...].

    Returns the nodes and the names: `seq` ([T, B, ...]), `flat_shape` (shape of x),
    `step_shape` ([B, ...]).
    """
    p = prefix
    names = {"seq": f"{p}seq", "flat_shape": f"{p}flat_shape", "step_shape": f"{p}step_shape"}
    nodes = [
        constant(f"{p}one", [1]),
        constant(f"{p}zero", [0]),
        constant(f"{p}end", [_INT64_MAX]),
        helper.make_node("Shape", [x], [names["flat_shape"]]),
        helper.make_node("Slice", [names["flat_shape"], f"{p}one", f"{p}end"], [f"{p}rest"]),
        helper.make_node("Slice", [names["flat_shape"], f"{p}zero", f"{p}one"], [f"{p}tb"]),
        helper.make_node("Reshape", [timesteps, f"{p}one"], [f"{p}t1"]),
        helper.make_node("Div", [f"{p}tb", f"{p}t1"], [f"{p}b1"]),
        helper.make_node("Concat", [f"{p}t1", f"{p}b1", f"{p}rest"], [f"{p}seq_shape"], axis=0),
        helper.make_node("Concat", [f"{p}b1", f"{p}rest"], [names["step_shape"]], axis=0),
        helper.make_node("Reshape", [x, f"{p}seq_shape"], [names["seq"]]),
    ]
    return nodes, names


def running_sum_nodes(seq: str, state: str, step_shape: str, out: str) -> list[onnx.NodeProto]:
    """Nodes for `out` [T, B, ...], the running sum of the steps of `seq` [T, B, ...] after each
    step, from the carried sum `state` (broadcastable to [B, ...]; a scalar NaN means "fresh": 0),
    which they also give expanded to [B, ...] as `{out}_init`. The sum is sequential, the start
    entering CumSum as its first row, so chunked runs equal one run bit for bit."""
    return [
        constant(f"{out}_fresh_value", 0.0),
        constant(f"{out}_axis0", [0]),
        constant(f"{out}_from1", [1]),
        constant(f"{out}_to_end", [_INT64_MAX]),
        constant(f"{out}_time_axis", 0),
        helper.make_node("IsNaN", [state], [f"{out}_fresh"]),
        helper.make_node("Where", [f"{out}_fresh", f"{out}_fresh_value", state], [f"{out}_given"]),
        helper.make_node("Expand", [f"{out}_given", step_shape], [f"{out}_init"]),
        helper.make_node("Unsqueeze", [f"{out}_init", f"{out}_axis0"], [f"{out}_row"]),
        helper.make_node("Concat", [f"{out}_row", seq], [f"{out}_rows"], axis=0),
        helper.make_node("CumSum", [f"{out}_rows", f"{out}_time_axis"], [f"{out}_from_0"]),
        helper.make_node("Slice", [f"{out}_from_0", f"{out}_from1", f"{out}_to_end", f"{out}_axis0"], [out]),
    ]


def membrane_floor_nodes(v: str, v_min: str, floored: str, out: str) -> list[onnx.NodeProto]:
    """Nodes for `out` = the membrane `v` held at or above `v_min` where the boolean `floored`
    (computed outside a Scan body: v_min > −inf) is set, else `v`. The floor is relu(v − v_min) +
    v_min, which rounds as sinabs's does (not max(v, v_min): v − v_min + v_min drops low bits)."""
    return [
        helper.make_node("Sub", [v, v_min], [f"{out}_above"]),
        helper.make_node("Relu", [f"{out}_above"], [f"{out}_kept"]),
        helper.make_node("Add", [f"{out}_kept", v_min], [f"{out}_floored"]),
        helper.make_node("Where", [floored, f"{out}_floored", v], [out]),
    ]


def floor_flag_nodes(v_min: str, flag: str) -> list[onnx.NodeProto]:
    """Nodes setting the boolean `flag` to v_min > −inf (a membrane floor is set), elementwise."""
    return [
        helper.make_node("IsInf", [v_min], [f"{flag}_infinite"], detect_positive=0),
        helper.make_node("Not", [f"{flag}_infinite"], [flag]),
    ]


def fresh_state_nodes(state: str, step_shape: str, out: str) -> list[onnx.NodeProto]:
    """`out` [B, ...]: the state input `state` where given, 0 where NaN (fresh), expanded to `step_shape`."""
    return [
        constant(f"{out}_zero", 0.0),
        helper.make_node("IsNaN", [state], [f"{out}_fresh"]),
        helper.make_node("Where", [f"{out}_fresh", f"{out}_zero", state], [f"{out}_partial"]),
        helper.make_node("Expand", [f"{out}_partial", step_shape], [out]),
    ]
