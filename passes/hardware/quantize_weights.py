"""quantize_weights: constrain every linear weight as a memristive crossbar stores it.

The constant weight operand of each Conv (W, output channels on axis 0), Gemm (B, output
channels on axis 0 with transB=1, else axis 1; A when only A is constant) and MatMul (the
constant operand: output channels on its last axis as the second operand, on its next-to-last as
the first) is replaced by `onnx_snn.passes.hardware.crossbar.project(W, N, R, axis)`: per sign, magnitudes clipped
into [m/R, m] and rounded to N evenly spaced levels, m the max magnitude of the layer or, with
per_channel_weights, of each output channel. Biases are left alone. A tensor read by several
nodes is constrained once and the new tensor replaces it in every such reader (per layer when
the readers disagree on the output-channel axis). In compile this runs after fold_bn, so BN
scales are part of the constrained weights; a BatchNormalization still in the graph earns a note.
Records per layer, in ctx.state.weight_quantization, the weight, its readers, the distinct
magnitudes used per sign (per channel: the most in any channel) and the largest change relative
to the layer's max magnitude.
"""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from onnx_snn.options import check_constraint
from onnx_snn.passes.base import PassContext, declare, recorded, require
from onnx_snn.passes.graph_utils import const, constant_value, node_label
from onnx_snn.passes.hardware.crossbar import levels_used, project

SPEC = declare("quantize_weights", needs={"bn_folded"}, provides={"crossbar_weights"})


def postcondition(graph: gs.Graph, ctx: PassContext) -> None:
    """Every constrained weight has at most N distinct magnitudes per sign and group."""
    stats = recorded(ctx.state.weight_quantization, "no weight_quantization statistics")
    for name, layer in stats["layers"].items():
        require(max(layer["levels"].values()) <= ctx.options.weight_levels, f"{name} has more than N levels")


def run(graph: gs.Graph, ctx: PassContext) -> gs.Graph:
    """Pre: any graph (BN-folded in compile). Post: when options.weight_levels = N is set, every
    constant Conv/Gemm/MatMul weight has at most N distinct magnitudes per sign (per layer or
    output channel), each non- zero one at least that group's max / on_off_ratio; else the graph
    is unchanged."""
    options = ctx.options
    check_constraint(options.weight_levels, options.on_off_ratio)
    levels = options.weight_levels
    assert levels is not None  # check_constraint refuses None
    layers: dict[str, dict] = {}
    for tensor, readers, axis in _weights(graph, options.per_channel_weights, ctx):
        value = constant_value(tensor)
        assert value is not None  # _weights yields constant weights only
        constrained = project(value, levels, options.on_off_ratio, axis)
        replacement = const(f"{tensor.name or 'weight'}_crossbar", constrained)
        for node, index in readers:
            node.inputs[index] = replacement
        scale = float(np.abs(value).max()) or 1.0
        positive, negative = levels_used(constrained, axis)
        layers[node_label(readers[0][0])] = {
            "weight": tensor.name,
            "readers": [node_label(node) for node, _ in readers],
            "levels": {"positive": positive, "negative": negative},
            "max_relative_change": float(np.abs(constrained.astype(np.float64) - value).max()) / scale,
        }
    ctx.state.weight_quantization = {
        "levels": options.weight_levels,
        "on_off_ratio": options.on_off_ratio,
        "per_channel": options.per_channel_weights,
        "layers": layers,
    }
    worst = max(layers.items(), key=lambda item: item[1]["max_relative_change"], default=None)
    if worst is not None:
        ctx.note(
            f"quantize_weights: {len(layers)} weight tensors to {options.weight_levels} levels per sign, "
            f"ON/OFF ratio {options.on_off_ratio:g}; largest change {worst[1]['max_relative_change']:.3g} "
            f"of the layer's max |w| ({worst[0]})"
        )
    unfolded = sum(node.op == "BatchNormalization" for node in graph.nodes)
    if unfolded:
        ctx.note(
            f"quantize_weights: {unfolded} BatchNormalization node(s) not folded into the weights; their "
            "scales change the effective weights (compile --weight-levels folds BN first)"
        )
    graph.cleanup()
    return graph


def _weights(
    graph: gs.Graph, per_channel: bool, ctx: PassContext
) -> list[tuple[gs.Tensor, list[tuple[gs.Node, int]], int | None]]:
    """(weight tensor, its (reader, input index) pairs, grouping axis or None) per distinct float weight."""
    found: dict[int, tuple[gs.Tensor, list[tuple[gs.Node, int]], set[int | None]]] = {}
    for node in graph.nodes:
        operand = _weight_operand(node)
        if operand is None:
            continue
        index, axis = operand
        tensor = node.inputs[index]
        entry = found.setdefault(id(tensor), (tensor, [], set()))
        entry[1].append((node, index))
        entry[2].add(axis if per_channel else None)
    result = []
    for tensor, readers, axes in found.values():
        if len(axes) > 1:
            ctx.note(
                f"quantize_weights: weight '{tensor.name}' is read along different output axes; constrained per layer"
            )
        result.append((tensor, readers, axes.pop() if len(axes) == 1 else None))
    return result


def _weight_operand(node: gs.Node) -> tuple[int, int | None] | None:
    """(input index, non-negative output-channel axis or None) of `node`'s constant float weight, or None."""
    if node.op == "Conv":
        candidates = [(1, 0)]
    elif node.op == "Gemm":
        candidates = [(1, 0 if node.attrs.get("transB", 0) else 1), (0, 1 if node.attrs.get("transA", 0) else 0)]
    elif node.op == "MatMul":
        candidates = [(1, -1), (0, -2)]
    else:
        return None
    for index, axis in candidates:
        value = constant_value(node.inputs[index]) if index < len(node.inputs) else None
        if value is not None and value.size and np.issubdtype(value.dtype, np.floating):
            return index, axis % value.ndim if value.ndim >= 2 else None
    return None
