"""normalize: rescale weights and biases so that every neuron sees activations in units of its λ.

Every tensor t gets a scale σ(t): the normalized graph holds t / σ(t). Graph inputs and outputs
have σ = 1, a calibrated node's output has σ = λ (from calibrate), linear ops convert the scale
of their input into the scale their consumers demand by rescaling weights and biases, and
scale-equivariant ops (pooling, Flatten, Reshape, Transpose, Concat, Mul by a constant) pass it
through. Where two scales meet and differ (a residual Add of a spiking shortcut, say), a Mul by
their ratio is inserted on that edge. σ is a numpy array broadcastable to the tensor's non-batch
dims: shape () per layer, (C, 1, ..., 1) per channel (axis 1).

Neurons (spec signgd-dynamics §6.7, extended past ReLU): ReLU, LeakyReLU and Abs commute with
scaling, so input and output share λ (per channel allowed). GELU, HardSwish and SiLU do not: the input
arrives at σ = λ and the op becomes Mul(λ) → f → Mul(1/λ), which spikify_signgd fuses into one
neuron with a scaled gate. A square Mul(u, u) takes u at √λ; a product p·q and a quotient p/q get p rescaled so
that the result lands at λ; Sqrt halves the exponent of its input's σ. These non-ReLU scales are
per layer, except a square whose readers reduce other axes than axis 1 (a LayerNorm's variance:
calibrate.square_per_position), which is scaled per position along axis 1 (per token), its u met
by a Mul and its output brought back to ANN units before the reduction. The function of the graph
is unchanged. For signGD neurons λ is the calibrated
statistic divided by --signgd-range ρ, so that activations fill [−ρ, ρ] (spec: ReLU only, ρ = 1).
"""

from __future__ import annotations

from typing import cast

import numpy as np
import onnx_graphsurgeon as gs

from onnx_snn.ir.neurons import takes_cap
from onnx_snn.options import norm_statistic
from onnx_snn.passes.base import LayerStats, PassContext, declare, recorded, require
from onnx_snn.passes.common.calibrate import is_calibrated, square_per_position
from onnx_snn.passes.graph_utils import (
    LAYOUT_OPS,
    constant_value,
    fresh_name,
    is_activation,
    node_axes,
    node_error,
    silu_gate,
    static_shape,
    string_attr,
)
from onnx_snn.passes.op_support import relu_cap

SPEC = declare("normalize", needs={"calibrated"}, provides={"normalized"})

LINEAR_OPS = ("Conv", "Gemm", "MatMul")
#: neuron ops with f(x / s) = f(x) / s for s > 0: their input and output share λ
HOMOGENEOUS = ("Relu", "LeakyRelu", "Abs")
#: ops with f(x / s) = f(x) / s for any s > 0 that is constant along the axes they mix
CHANNEL_PRESERVING = ("AveragePool", "GlobalAveragePool", "MaxPool", "Identity", "Dropout")
#: ops that pass a per-layer (scalar) σ through, whatever axes they move, slice or reduce linearly
LAYER_PRESERVING = LAYOUT_OPS + ("Concat", "Slice", "ReduceMean", "ReduceSum")
#: ops whose activation inputs must share one σ, which their output keeps
SHARED_SCALE = ("Add", "Sub", "Max")
ONE = np.ones(())


def layer_scale(stats: LayerStats, norm: str) -> np.ndarray:
    """λ of one layer for --norm `norm`: the max, a percentile, or a fraction of the max (>0)."""
    kind, value = norm_statistic(norm)
    raw = {"max": stats.max, "percentile": stats.percentile, "fraction": stats.max * value}[kind]
    raw = np.asarray(raw, dtype=np.float64)
    return np.where(raw > 0, raw, 1.0)  # a silent layer or channel keeps unit scale


def postcondition(graph: gs.Graph, ctx: PassContext) -> None:
    """Every scaled layer's λ is recorded, finite and positive."""
    lambdas = recorded(ctx.state.lambdas, "no λ recorded")
    bad = [name for name, lam in lambdas.items() if not np.all(np.isfinite(lam)) or np.any(np.asarray(lam) <= 0)]
    require(not bad, f"λ not finite and positive for {bad[:3]}")


def run(graph: gs.Graph, ctx: PassContext) -> gs.Graph:
    """Pre: BN-folded graph with ctx.activation_stats for every calibrated node. Post: same
    function; each neuron's output is held divided by its λ (so spikes of threshold 1 encode it),
    outputs in ANN units."""
    lambdas = _neuron_scales(graph, ctx)
    demand = _demanded_scales(graph, lambdas)
    scale: dict[str, np.ndarray] = {t.name: ONE for t in graph.inputs}
    for node in list(graph.nodes):
        _normalize_node(graph, node, scale, demand, lambdas, takes_cap(ctx.options.spikes))
    for i, out in enumerate(graph.outputs):
        graph.outputs[i] = _output_in_ann_units(graph, out, scale.get(out.name, ONE))
    ctx.state.lambdas = {name: np.asarray(lam).ravel().tolist() for name, lam in lambdas.items()}
    return graph.cleanup().toposort()


def _neuron_scales(graph: gs.Graph, ctx: PassContext) -> dict[str, np.ndarray]:
    """λ per calibrated node name, shaped to broadcast over its output's non-batch dims
    (per layer, shape (), for all but the homogeneous neurons)."""
    lambdas = {}
    for node in graph.nodes:
        cap = relu_cap(node)
        if not is_calibrated(node) or (cap is not None and ctx.state.neuron != "if"):
            continue  # signGD computes a Clip in ANN units
        if node.name not in ctx.activation_stats:
            raise node_error(ctx, node, "no calibration statistics for this node; run calibrate first")
        lam = layer_scale(ctx.activation_stats[node.name], ctx.options.norm)
        if ctx.state.neuron == "signgd":
            lam = lam / ctx.options.signgd_range
        elif ctx.state.neuron == "if":
            lam = lam / ctx.options.if_rate_range
        if cap is not None and takes_cap(ctx.options.spikes):  # IF, cap k = c/λ ≥ 1 a step: exact at any λ ≤ c
            lam = np.minimum(lam, cap)
        elif cap is not None:  # IF: the rate cap (one spike a step) lands on c where the Clip binds
            lam = np.where(np.asarray(ctx.activation_stats[node.name].max) >= cap, cap, np.minimum(lam, cap))
        elif node.op not in HOMOGENEOUS and not square_per_position(node):
            lam = np.asarray(lam.max())
        rank = len(node.inputs[0].shape) if node.inputs[0].shape is not None else 2
        if lam.ndim == 1:
            lam = lam.reshape((-1,) + (1,) * max(rank - 2, 0))
        lambdas[node.name] = lam
    if ctx.options.tie_residual_scales:
        _tie_residual_scales(graph, lambdas)
    return lambdas


def _tie_residual_scales(graph: gs.Graph, lambdas: dict[str, np.ndarray]) -> None:
    """Give every ReLU-like neuron whose output enters a residual Add directly (an identity
    shortcut) and the ReLU-like neuron that reads that Add's sum one λ, the larger of theirs per
    channel (transitively along a chain of blocks), so that no rescaling Mul lands on the shortcut."""
    group = {name: name for name in lambdas}

    def root(name: str) -> str:
        while group[name] != name:
            name = group[name]
        return name

    for node in graph.nodes:
        if node.op != "Add" or len(_data_inputs(node)) != 2 or len(node.outputs[0].outputs) != 1:
            continue
        after = node.outputs[0].outputs[0]
        for operand in node.inputs:
            before = operand.inputs[0] if operand.inputs else None
            if (
                before is not None
                and {before.op, after.op} <= set(HOMOGENEOUS)
                and {before.name, after.name} <= lambdas.keys()
                and np.shape(lambdas[before.name]) == np.shape(lambdas[after.name])
            ):
                group[root(before.name)] = root(after.name)
    members: dict[str, list[str]] = {}
    for name in lambdas:
        members.setdefault(root(name), []).append(name)
    for names in members.values():
        shared = np.maximum.reduce([lambdas[name] for name in names])
        for name in names:
            lambdas[name] = shared


def _demanded_scales(graph: gs.Graph, lambdas: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """σ that consumers ask of each tensor, propagated backwards through scale-passing ops.

    A ReLU-like or GELU asks λ of its input, a square Mul(u, u) √λ, a graph output 1. Ops that
    pass σ through pass the demand to their data inputs; a linear op absorbs any scale, so
    demands stop there. The first demand seen for a tensor wins; a consumer whose demand was not
    met gets a rescaling Mul later.
    """
    demand: dict[str, np.ndarray] = {t.name: ONE for t in graph.outputs}
    for node in reversed(graph.nodes):
        if node.op in HOMOGENEOUS or _gated(graph, node) or _capped(node, lambdas):
            demand.setdefault(node.inputs[0].name, lambdas[node.name])
            continue
        if _is_square(node):
            if np.ndim(lambdas[node.name]) == 0:  # a per-position λ is met by a Mul on u's edge
                demand.setdefault(node.inputs[0].name, np.sqrt(lambdas[node.name]))
            continue
        wanted = demand.get(node.outputs[0].name) if node.outputs else None
        if wanted is None:
            continue
        data = _data_inputs(node)
        passes = (
            node.op in CHANNEL_PRESERVING
            or node.op == "Pad"
            or (node.op in ("Add", "Sub", "Mul") and len(data) == 1)
            or (node.op in SHARED_SCALE and len(data) == 2)
            or (node.op in LAYER_PRESERVING and wanted.ndim == 0)
        )
        if passes:
            for tensor in data if node.op in SHARED_SCALE + ("Concat",) else data[:1]:
                demand.setdefault(tensor.name, wanted)
    return demand


def _is_square(node: gs.Node) -> bool:
    return (
        node.op == "Mul"
        and len(node.inputs) == 2
        and node.inputs[0] is node.inputs[1]
        and is_activation(node.inputs[0])
    )


def _data_inputs(node: gs.Node) -> list[gs.Variable]:
    """The activation inputs of `node` (not shapes, not weights)."""
    return [t for t in node.inputs if is_activation(t)]


def _normalize_node(
    graph: gs.Graph,
    node: gs.Node,
    scale: dict[str, np.ndarray],
    demand: dict[str, np.ndarray],
    lambdas: dict[str, np.ndarray],
    caps_per_channel: bool,
) -> None:
    """Rescale `node` for its inputs' scales and record its outputs' scales (`caps_per_channel`:
    a capped ReLU becomes Min(Relu, k), _cap_in_threshold_units)."""

    def sigma(tensor: gs.Tensor) -> np.ndarray:
        return scale.get(tensor.name, ONE)

    data = _data_inputs(node)
    out, outputs = node.outputs[0], list(node.outputs)
    result: np.ndarray | None = None
    if node.op in HOMOGENEOUS or _gated(graph, node):
        result = lambdas[node.name]
        gate = silu_gate(graph, node)
        _rescale_input(graph, node, 0, sigma(node.inputs[0]), result)
        if node.op not in HOMOGENEOUS:
            _scale_around(graph, node, result, [gate] if gate is not None else [])
    elif _capped(node, lambdas):  # Clip(x, 0, c) at σ = λ <= c
        result = lambdas[node.name]
        _rescale_input(graph, node, 0, sigma(node.inputs[0]), result)
        _cap_in_threshold_units(graph, node, result, per_channel=caps_per_channel)
    elif node.op == "Sigmoid" and any(silu_gate(graph, reader) is node for reader in out.outputs):
        result = ONE  # a SiLU's gate: its Mul rescales u for both (above)
    elif _is_square(node):
        _rescale_input(graph, node, 0, sigma(node.inputs[0]), np.sqrt(lambdas[node.name]))
        node.inputs[1] = node.inputs[0]
        result = lambdas[node.name]
    elif node.op in ("Mul", "Div") and len(data) == 2:  # p·q or p/q: p rescaled so that the result is at λ
        result, s_q = lambdas[node.name], sigma(node.inputs[1])
        _rescale_input(graph, node, 0, sigma(node.inputs[0]), result / s_q if node.op == "Mul" else result * s_q)
    elif node.op == "Sqrt" and np.ndim(sigma(node.inputs[0])) == 0:
        result = np.sqrt(sigma(node.inputs[0]))
    elif node.op in LINEAR_OPS and constant_value(node.inputs[1]) is not None:
        result = _rescale_linear(graph, node, sigma(node.inputs[0]), demand.get(out.name, ONE))
    elif node.op in CHANNEL_PRESERVING or (node.op == "Pad" and _zero_pad(node)):
        result = sigma(node.inputs[0])
    elif node.op == "Pad" and (np.ndim(sigma(node.inputs[0])) == 0 or _pads_only_maxes(node, sigma(node.inputs[0]))):
        result = sigma(node.inputs[0])
        value = constant_value(node.inputs[2])
        assert value is not None  # a Pad value that is not zero (_zero_pad) is a constant here
        scaled = value / np.min(result)  # per channel: value / min σ is below every value / σ_c (value < 0)
        node.inputs[2] = gs.Constant(fresh_name(node.inputs[2].name), np.asarray(scaled, dtype=value.dtype))
    elif node.op in SHARED_SCALE and len(data) == 2:
        result = demand.get(out.name, sigma(data[0]))
        for tensor in data:
            _rescale_input(graph, node, node.inputs.index(tensor), sigma(tensor), result)
    elif node.op in ("Add", "Sub") and len(data) == 1:
        result = sigma(data[0])
        const_index = 1 - node.inputs.index(data[0])
        bias = constant_value(node.inputs[const_index])
        assert bias is not None  # the one non-activation operand of the Add/Sub is a constant here
        node.inputs[const_index] = gs.Constant(
            fresh_name(node.inputs[const_index].name), np.asarray(bias / _aligned(result, bias.ndim), dtype=bias.dtype)
        )
    elif node.op == "Mul" and len(data) == 1:
        result = sigma(data[0])
    elif node.op in ("Flatten", "Reshape", "Transpose") and data:
        result = _reshaped_scale(node, sigma(data[0]))
    elif node.op == "Concat" and data:
        result = _concat_scale(node, [sigma(t) for t in node.inputs])
    elif (
        node.op in LAYER_PRESERVING
        and data
        and (np.ndim(sigma(data[0])) == 0 or _slices_within_channels(node, sigma(data[0])))
    ):
        result = sigma(data[0])
    if result is None:  # anything else computes in ANN units: give it its inputs at σ = 1
        for tensor in data:
            _rescale_input(graph, node, node.inputs.index(tensor), sigma(tensor), ONE)
        result = ONE
    for o in outputs:
        scale[o.name] = result


def _capped(node: gs.Node, lambdas: dict[str, np.ndarray]) -> bool:
    """True for an IF family's capped ReLU Clip(x, 0, c), whose λ is c where it binds on the
    calibration data, else min(c, statistic) (_neuron_scales)."""
    return node.op == "Clip" and node.name in lambdas


def _cap_in_threshold_units(graph: gs.Graph, node: gs.Node, lam: np.ndarray, per_channel: bool) -> None:
    """Rewrite the capped ReLU Clip(x, 0, c), whose input now arrives as x/λ, for IF neurons.
    `per_channel` (the capped op reads a cap k): Min(Relu(x/λ), k) with k = c/λ ≥ 1 in λ's shape,
    exact at any λ ≤ c (spikify fuses the pair into the capped op). Else Clip(x/λ, 0, 1): exact at
    λ = c and, where the Clip never bound on the calibration data (λ < c), a ReLU clipped at λ."""
    if not per_channel:
        node.inputs[2] = gs.Constant(fresh_name(node.inputs[2].name), np.asarray(1.0, dtype=np.float32))
        return
    cap = relu_cap(node)
    assert cap is not None  # _capped: a Clip(x, 0, c)
    rectified = gs.Variable(fresh_name(f"{node.name}_rectified"), dtype=node.outputs[0].dtype)
    k = gs.Constant(fresh_name(f"{node.name}_cap"), np.asarray(cap / lam, dtype=np.float32))
    graph.nodes.append(
        gs.Node("Min", name=fresh_name(f"{node.name}_cap"), inputs=[rectified, k], outputs=[node.outputs[0]])
    )
    node.op, node.inputs, node.outputs = "Relu", [node.inputs[0]], [rectified]


def _gated(graph: gs.Graph, node: gs.Node) -> bool:
    """True for GELU, HardSwish and SiLU: x·gate(x) neurons, not homogeneous, scaled through their gate."""
    return node.op in ("Gelu", "HardSwish") or silu_gate(graph, node) is not None


def _scale_around(graph: gs.Graph, node: gs.Node, lam: np.ndarray, readers: list[gs.Node]) -> None:
    """Turn `node` = f(x) on an input held as x/λ into Mul(λ) → f → Mul(1/λ): the output is f(x)/λ.
    `readers` (a SiLU's Sigmoid) read the unscaled x too."""
    x, y = node.inputs[0], node.outputs[0]
    unscaled_in = gs.Variable(fresh_name(f"{x.name}_unscaled"), dtype=x.dtype, shape=x.shape)
    unscaled_out = gs.Variable(fresh_name(f"{y.name}_unscaled"), dtype=y.dtype, shape=y.shape)
    graph.nodes.append(
        gs.Node(
            "Mul",
            name=fresh_name(f"{node.name}_unscale"),
            outputs=[unscaled_in],
            inputs=[x, gs.Constant(fresh_name(f"{node.name}_lambda"), np.asarray(lam, np.float32))],
        )
    )
    graph.nodes.append(
        gs.Node(
            "Mul",
            name=fresh_name(f"{node.name}_rescale"),
            outputs=[y],
            inputs=[
                unscaled_out,
                gs.Constant(fresh_name(f"{node.name}_inverse_lambda"), np.asarray(1.0 / lam, np.float32)),
            ],
        )
    )
    node.inputs[0], node.outputs[0] = unscaled_in, unscaled_out
    for reader in readers:
        reader.inputs[0] = unscaled_in


def _slices_within_channels(node: gs.Node, s_in: np.ndarray) -> bool:
    """True for a Slice over known axes other than axis 1 (a MaxPool row of decompose) of a
    tensor whose σ varies along channels only: σ passes it unchanged."""
    axes = node_axes(node, 3) if node.op == "Slice" else None
    return axes is not None and bool(axes) and 1 not in axes and _per_channel_only(s_in)


def _pads_only_maxes(node: gs.Node, s_in: np.ndarray) -> bool:
    """True for a Pad whose output is read only through Slices by `Max` (decompose's MaxPool
    padding of spatial axes, whose value only has to lose every max) of a tensor whose σ varies
    along channels only: it keeps that σ, its value divided by the smallest channel σ, instead of
    sending the whole max chain to ANN units, where the `maximum` neurons' targets (activations
    of 10-50 in an untrained GoogLeNet without BatchNorm) lie far out of their reach."""
    pads = constant_value(node.inputs[1]) if len(node.inputs) > 1 else None
    rank = len(node.inputs[0].shape) if node.inputs[0].shape is not None else None
    if pads is None or rank is None or pads.size != 2 * rank or pads[1] or pads[1 + rank]:
        return False
    slices = node.outputs[0].outputs
    return (
        _per_channel_only(s_in)
        and bool(slices)
        and all(
            s.op == "Slice" and s.outputs[0].outputs and all(m.op == "Max" for m in s.outputs[0].outputs)
            for s in slices
        )
    )


def _per_channel_only(s: np.ndarray) -> bool:
    """True for a σ that is one value, or one per channel (shape (C, 1, ..., 1))."""
    return all(d == 1 for d in np.shape(s)[1:])


def _zero_pad(node: gs.Node) -> bool:
    """True for a Pad that pads with zeros (or replicates), which commutes with scaling."""
    mode = string_attr(node, "mode", "constant")
    if mode != "constant" or len(node.inputs) < 3 or not node.inputs[2].name:
        return True
    value = constant_value(node.inputs[2])
    return value is not None and not np.any(value)


def _aligned(s: np.ndarray, rank: int) -> np.ndarray:
    """σ (aligned to non-batch dims) reshaped to broadcast against a rank-`rank` array."""
    s = np.asarray(s, dtype=np.float64)
    return s.reshape((1,) * max(rank - s.ndim, 0) + s.shape) if s.ndim else s


def _channel_vector(s: np.ndarray, channels: int) -> np.ndarray:
    """σ as one value per channel (axis 1); raises ValueError when it varies within a channel."""
    s = np.asarray(s, dtype=np.float64)
    if s.ndim == 0:
        return np.full(channels, float(s))
    flat = s.reshape(s.shape[0], -1)
    if flat.shape[0] not in (1, channels) or not np.allclose(flat, flat[:, :1], rtol=1e-12, atol=0):
        raise ValueError("scale varies within a channel")
    return np.broadcast_to(flat[:, 0], (channels,)).copy()


def _rescale_linear(graph: gs.Graph, node: gs.Node, s_in: np.ndarray, s_out: np.ndarray) -> np.ndarray:
    """Fold σ_in and the demanded σ_out into a Conv/Gemm/MatMul's constants; return its output's σ.

    Conv and canonical Gemm (transB=1) take per-channel scales on both sides; MatMul (features on
    the last axis) takes per-layer scales. A scale the op cannot absorb is met by a Mul (input)
    or left for the consumer to rescale (output).
    """
    weight_value = constant_value(node.inputs[1])
    assert weight_value is not None  # the caller checks that the weight is a constant
    weight = weight_value.astype(np.float64)
    groups = int(node.attrs.get("group", 1))
    per_channel = node.op == "Conv" or (
        node.op == "Gemm" and node.attrs.get("transB", 0) == 1 and not node.attrs.get("transA", 0)
    )
    if per_channel:
        n_out, n_in = weight.shape[0], weight.shape[1] * groups
    else:
        n_out, n_in = weight.shape[-1] if node.op == "MatMul" else weight.shape[0], None
    try:
        v_in = _channel_vector(s_in, n_in) if per_channel else np.full(1, float(s_in))
    except (ValueError, TypeError):
        _rescale_input(graph, node, 0, s_in, ONE)
        v_in = np.ones(n_in if per_channel else 1)
    try:
        if not per_channel and np.ndim(s_out):
            raise ValueError("per-layer op")
        v_out, result = _channel_vector(s_out, n_out), s_out
    except ValueError:
        v_out, result = np.ones(n_out), ONE
    if node.op == "Conv":
        in_per_group = weight.shape[1]
        group_of_out = np.arange(n_out) // (n_out // groups)
        in_index = group_of_out[:, None] * in_per_group + np.arange(in_per_group)[None, :]
        factor = v_in[in_index] / v_out[:, None]
        weight = weight * factor.reshape(factor.shape + (1,) * (weight.ndim - 2))
    elif per_channel:
        weight = weight * v_in[None, :] / v_out[:, None]
    else:
        weight = weight * (v_in[0] / v_out[0])
    node.inputs[1] = gs.Constant(fresh_name(node.inputs[1].name), weight.astype(np.float32))
    bias = constant_value(node.inputs[2]) if len(node.inputs) > 2 else None
    if bias is not None:
        node.inputs[2] = gs.Constant(fresh_name(node.inputs[2].name), (bias / v_out).astype(bias.dtype))
    return result


def _reshaped_scale(node: gs.Node, s_in: np.ndarray) -> np.ndarray | None:
    """σ after Flatten/Reshape/Transpose, or None when a per-channel σ cannot follow the new layout."""
    if np.ndim(s_in) == 0:
        return s_in
    src, dst = static_shape(node.inputs[0]), static_shape(node.outputs[0])
    if src is None or dst is None:
        return None
    full = np.broadcast_to(s_in, src)
    if node.op == "Transpose":
        perm = list(node.attrs["perm"])
        return np.transpose(full, [p - 1 for p in perm[1:]]).copy() if perm[0] == 0 else None
    return full.reshape(dst).copy() if full.size == int(np.prod(dst)) else None


def _concat_scale(node: gs.Node, scales: list[np.ndarray]) -> np.ndarray | None:
    """σ after Concat: equal per-layer σ pass; along axis 1, per-channel σ are concatenated."""
    if all(np.ndim(s) == 0 for s in scales) and np.allclose(scales, scales[0], rtol=1e-12, atol=0):
        return scales[0]
    rank = len(node.outputs[0].shape) if node.outputs[0].shape is not None else 0
    shapes = [static_shape(t) for t in node.inputs]
    if rank < 2 or int(node.attrs.get("axis", 0)) % rank != 1 or any(s is None for s in shapes):
        return None
    try:
        known = cast("list[tuple[int, ...]]", shapes)  # none is None (checked above)
        vectors = [_channel_vector(s, shape[0]) for s, shape in zip(scales, known)]
    except ValueError:
        return None
    return np.concatenate(vectors).reshape((-1,) + (1,) * (rank - 2))


def _rescale_input(graph: gs.Graph, node: gs.Node, index: int, have: np.ndarray, want: np.ndarray) -> None:
    """Make input `index` of `node` arrive at scale `want` instead of `have` (a Mul on that edge)."""
    ratio = np.asarray(have, dtype=np.float64) / np.asarray(want, dtype=np.float64)
    if np.all(ratio == 1.0):
        return
    tensor = node.inputs[index]
    rank = len(tensor.shape) if tensor.shape is not None else ratio.ndim + 1
    factor = gs.Constant(fresh_name(f"{tensor.name}_rescale"), _aligned(ratio, rank).astype(np.float32))
    scaled = gs.Variable(fresh_name(f"{tensor.name}_rescaled"), dtype=tensor.dtype, shape=tensor.shape)
    graph.nodes.append(
        gs.Node("Mul", name=fresh_name(f"{node.name}_rescale"), inputs=[tensor, factor], outputs=[scaled])
    )
    node.inputs[index] = scaled


def _output_in_ann_units(graph: gs.Graph, out: gs.Tensor, s: np.ndarray) -> gs.Tensor:
    """The graph output `out` brought back to σ = 1, under its original name."""
    if np.all(np.asarray(s) == 1.0):
        return out
    name = out.name
    out.name = fresh_name(name)
    rank = len(out.shape) if out.shape is not None else np.ndim(s) + 1
    factor = gs.Constant(fresh_name(f"{name}_to_ann_units"), _aligned(s, rank).astype(np.float32))
    restored = gs.Variable(name, dtype=out.dtype, shape=out.shape)
    graph.nodes.append(
        gs.Node("Mul", name=fresh_name(f"{name}_to_ann_units"), inputs=[out, factor], outputs=[restored])
    )
    return restored
