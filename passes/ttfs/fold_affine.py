"""ttfs_fold_affine: fold every affine map that follows a spike tensor into the linear op that reads it.

A spike tensor (a ReLU output, or an encoded input x̃) must reach its linear readers through
layout ops and MaxPool only: its spikes code x itself, not κ·x + β. A BatchNorm after the ReLU
(fold_bn leaves it as a per-channel Mul + Add, spec P3b) and the input-range affine of
ttfs_input_range (P2) are folded into the reader L:

    L(P(κ ⊙ z + β)) = L_κ(P_s(z)) + BiasMap,   BiasMap = L_nobias(P(β))

where P is the chain of layout ops and MaxPools, L_κ scales L's weights along its input by κ,
and BiasMap runs L without bias on the constant β (with L's own zero padding, so a Conv gets a
position-dependent map, written as an Add after it when it is not uniform per channel). A
MaxPool commutes with a per-channel κ > 0; where κ_c < 0 it becomes the sign-aware pool
s·MaxPool(s·z), s = sign(κ), written as Mul(s) → MaxPool → Mul(s). Arithmetic in float64.
"""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from onnx_snn.errors import SnnError
from onnx_snn.passes.base import PassContext, declare
from onnx_snn.passes.graph_utils import (
    bias_vector,
    bypass,
    const,
    constant_value,
    fresh_name,
    node_error,
    set_input,
    static_shape,
)
from onnx_snn.passes.ttfs.graph import (
    SPIKE_LAYOUT_OPS,
    SPIKE_POOL_OPS,
    apply_layout,
    encoded_inputs,
    gemm_weights,
    relu_outputs,
    require_encoded_inputs,
    set_gemm_weights,
)

SPEC = declare("ttfs_fold_affine", needs={"ttfs_inputs"}, provides={"ttfs_affine"})


class _Affine:
    """κ ⊙ z + β on a [1, ...] view of the current tensor (batch axis 1), float64."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.scale, self.shift = np.ones(shape), np.zeros(shape)

    @property
    def trivial(self) -> bool:
        return bool(np.all(self.scale == 1.0) and np.all(self.shift == 0.0))

    def copy(self) -> "_Affine":
        twin = _Affine(self.scale.shape)
        twin.scale, twin.shift = self.scale.copy(), self.shift.copy()
        return twin


def postcondition(graph: gs.Graph, ctx: PassContext) -> None:
    """The encoded inputs are still in the graph (the folding keeps x̃ and rewrites what reads it)."""
    require_encoded_inputs(graph, ctx)


def run(graph: gs.Graph, ctx: PassContext) -> gs.Graph:
    """Pre: BN-folded graph with encoded inputs (ttfs_input_range). Post: same function (to float32
    rounding); between each spike tensor and its readers only layout ops, MaxPools and sign-aware
    Mul(±1) pairs around MaxPools remain."""
    folded: list[gs.Node] = []
    for source in encoded_inputs(graph, ctx) + relu_outputs(graph):
        shape = static_shape(source)
        if shape is None:
            raise SnnError(
                "spike tensor has no static shape beyond the batch axis",
                path=ctx.source,
                node=source.name,
                op="Relu",
                hint="export the model with fixed image sizes",
            )
        for reader in list(source.outputs):
            _walk(graph, reader, source, _Affine((1,) + shape), folded, ctx)
    for node in {id(n): n for n in folded}.values():
        bypass(graph, node)
    return graph.cleanup().toposort()


def _walk(
    graph: gs.Graph, node: gs.Node, tensor: gs.Tensor, affine: _Affine, folded: list[gs.Node], ctx: PassContext
) -> None:
    """Carry `affine` (applied to `tensor`, which `node` reads) forward to the linear readers."""
    step = _constant_operand(node, tensor)
    if node.op == "Shape":  # reads the shape only, which the affine map keeps
        return
    if node.op in ("Mul", "Add") and step is not None:
        try:
            value = np.broadcast_to(step.astype(np.float64), affine.scale.shape)
        except ValueError:
            raise node_error(ctx, node, "constant does not broadcast over one sample of the spike tensor") from None
        if node.inputs[0] is not tensor:  # bypass keeps input 0
            node.inputs[0], node.inputs[1] = tensor, node.inputs[0]
        if node.op == "Mul":
            affine.scale, affine.shift = affine.scale * value, affine.shift * value
        else:
            affine.shift = affine.shift + value
        folded.append(node)
        _walk_readers(graph, node.outputs[0], affine, folded, ctx)
    elif node.op in SPIKE_LAYOUT_OPS:
        affine.scale, affine.shift = apply_layout(node, affine.scale), apply_layout(node, affine.shift)
        _walk_readers(graph, node.outputs[0], affine, folded, ctx)
    elif node.op in SPIKE_POOL_OPS:
        _walk_readers(graph, _through_max_pool(graph, node, affine, ctx), affine, folded, ctx)
    elif not affine.trivial:
        folder = _FOLDERS.get(node.op)
        if folder is None:
            raise node_error(
                ctx,
                node,
                "an affine map (BatchNorm or input range) after a spike tensor must reach a Conv or "
                "Gemm through layout ops and MaxPool only",
                hint="move the BatchNorm before the ReLU or export without it",
            )
        folder(graph, node, tensor, affine, ctx)


def _walk_readers(graph: gs.Graph, tensor: gs.Tensor, affine: _Affine, folded: list[gs.Node], ctx: PassContext) -> None:
    readers = list(tensor.outputs)
    if tensor in graph.outputs and not affine.trivial:
        raise SnnError(
            "an affine map after a ReLU writes a graph output; the TTFS read-out needs a linear layer",
            path=ctx.source,
            node=tensor.name,
            op="Add",
        )
    for reader in readers:
        _walk(graph, reader, tensor, affine.copy() if len(readers) > 1 else affine, folded, ctx)


def _constant_operand(node: gs.Node, data: gs.Tensor) -> np.ndarray | None:
    """The constant operand of a binary node whose other operand is `data`, else None."""
    if len(node.inputs) != 2:
        return None
    other = node.inputs[1] if node.inputs[0] is data else node.inputs[0]
    return constant_value(other) if other is not data else None


def _per_channel(array: np.ndarray) -> np.ndarray | None:
    """[1, C, ...] values that are constant over every axis after 1, as [C]; else None."""
    flat = array.reshape(array.shape[0], array.shape[1], -1) if array.ndim > 2 else array[..., None]
    return flat[0, :, 0] if np.all(flat == flat[:, :, :1]) else None


def _through_max_pool(graph: gs.Graph, pool: gs.Node, affine: _Affine, ctx: PassContext) -> gs.Tensor:
    """Commute the affine through `pool`: MaxPool(κz + β) = κ·P_s(z) + β per channel; return the
    pooled tensor (after the closing Mul(s) of a sign-aware pool)."""
    result = pool.outputs[0]
    shape = static_shape(result)
    assert shape is not None  # canonicalize inferred the shapes
    full = (1,) + shape
    if affine.trivial:
        affine.scale, affine.shift = np.ones(full), np.zeros(full)
        return result
    scale, shift = _per_channel(affine.scale), _per_channel(affine.shift)
    if scale is None or shift is None:
        raise node_error(ctx, pool, "an affine map before MaxPool must be per channel")
    signs = np.where(scale < 0, -1.0, 1.0)
    if np.any(signs < 0):
        _wrap_in_signs(graph, pool, signs)
    out_shape = (1, scale.size) + (1,) * (len(pool.outputs[0].shape) - 2)
    affine.scale = np.broadcast_to(np.abs(scale).reshape(out_shape) * signs.reshape(out_shape), full).copy()
    affine.shift = np.broadcast_to(shift.reshape(out_shape), full).copy()
    return result


def _wrap_in_signs(graph: gs.Graph, pool: gs.Node, signs: np.ndarray) -> None:
    """Make `pool` the sign-aware pool s·MaxPool(s·z) with Mul nodes by s ([C, 1, ...])."""
    x, y = pool.inputs[0], pool.outputs[0]
    shape = (signs.size,) + (1,) * (len(x.shape) - 2)
    s = const(f"{pool.name}_channel_sign", signs.reshape(shape).astype(np.dtype(x.dtype)))
    flipped_in = gs.Variable(fresh_name(f"{pool.name}_signed_in"), dtype=x.dtype, shape=x.shape)
    flipped_out = gs.Variable(fresh_name(f"{pool.name}_signed_out"), dtype=y.dtype, shape=y.shape)
    graph.nodes.append(gs.Node("Mul", name=fresh_name(f"{pool.name}_sign_in"), inputs=[x, s], outputs=[flipped_in]))
    pool.inputs[0] = flipped_in
    pool.outputs[0] = flipped_out
    graph.nodes.append(gs.Node("Mul", name=fresh_name(f"{pool.name}_sign_out"), inputs=[flipped_out, s], outputs=[y]))


def _fold_gemm(graph: gs.Graph, gemm: gs.Node, data: gs.Tensor, affine: _Affine, ctx: PassContext) -> None:
    weights = gemm_weights(gemm)
    if gemm.inputs[0] is not data or weights is None:
        raise node_error(
            ctx, gemm, "cannot fold an affine map into this Gemm (expected the canonical Gemm(x, W, b, transB=1))"
        )
    w, b = weights
    weight = constant_value(gemm.inputs[1])
    assert weight is not None  # gemm_weights read it
    set_gemm_weights(gemm, w * affine.scale.reshape(1, -1), b + w @ affine.shift.reshape(-1), weight.dtype)


def _fold_conv(graph: gs.Graph, conv: gs.Node, data: gs.Tensor, affine: _Affine, ctx: PassContext) -> None:
    weight = constant_value(conv.inputs[1])
    bias = bias_vector(conv, weight.shape[0]) if weight is not None else None
    scale, shift = _per_channel(affine.scale), _per_channel(affine.shift)
    if (
        conv.inputs[0] is not data
        or weight is None
        or bias is None
        or scale is None
        or shift is None
        or weight.ndim != 4
        or conv.attrs.get("auto_pad", "NOTSET") not in ("NOTSET", b"NOTSET")
    ):
        raise node_error(
            ctx,
            conv,
            "cannot fold an affine map into this Conv (needs a 2-D Conv with constant weights, explicit "
            "pads and a per-channel affine)",
        )
    group = int(conv.attrs.get("group", 1))
    per_group = weight.shape[1]
    grouped = weight.astype(np.float64).reshape(group, -1, per_group, *weight.shape[2:])
    scale_by_group = scale.reshape(group, 1, per_group, *([1] * (weight.ndim - 2)))
    new_weight = (grouped * scale_by_group).reshape(weight.shape)
    bias_map = _bias_map(conv, weight, affine.shift)
    uniform = bias_map.reshape(bias_map.shape[1], -1)
    conv.inputs[1] = const(f"{conv.name}_ttfs_weight", new_weight.astype(weight.dtype))
    if np.allclose(uniform, uniform[:, :1], rtol=0.0, atol=1e-12 * max(1.0, float(np.abs(uniform).max()))):
        set_input(conv, 2, const(f"{conv.name}_ttfs_bias", (bias + uniform[:, 0]).astype(weight.dtype)))
        return
    result = conv.outputs[0]
    raw = gs.Variable(fresh_name(f"{conv.name}_before_bias_map"), dtype=result.dtype, shape=result.shape)
    conv.outputs[0] = raw
    graph.nodes.append(
        gs.Node(
            "Add",
            name=fresh_name(f"{conv.name}_bias_map"),
            inputs=[raw, const(f"{conv.name}_bias_map", bias_map.astype(weight.dtype))],
            outputs=[result],
        )
    )


def _bias_map(conv: gs.Node, weight: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """The Conv without bias applied to `shift` ([1, C, H, W], constant per channel) with the Conv's
    own zero padding, strides, dilations and groups, in float64: [1, C_out, H', W']."""
    group = int(conv.attrs.get("group", 1))
    c_out, per_group, kh, kw = weight.shape
    dense = np.zeros((c_out, per_group * group, kh, kw))
    for g in range(group):  # block-diagonal weight over all input channels
        rows = slice(g * c_out // group, (g + 1) * c_out // group)
        dense[rows, g * per_group : (g + 1) * per_group] = weight[rows]
    strides = conv.attrs.get("strides", [1, 1])
    dilations = conv.attrs.get("dilations", [1, 1])
    pads = conv.attrs.get("pads", [0, 0, 0, 0])
    inside = [
        _taps_inside(shift.shape[2 + a], weight.shape[2 + a], strides[a], dilations[a], pads[a], pads[a + 2])
        for a in range(2)
    ]
    per_channel = shift[0].reshape(shift.shape[1], -1)[:, 0]
    return np.einsum("c,ocij,yi,xj->oyx", per_channel, dense, inside[0], inside[1])[None]


def _taps_inside(length: int, kernel: int, stride: int, dilation: int, pad_begin: int, pad_end: int) -> np.ndarray:
    """[outputs, kernel]: 1 where tap k of output position y reads inside the input (not padding)."""
    outputs = (length + pad_begin + pad_end - dilation * (kernel - 1) - 1) // stride + 1
    position = np.arange(outputs)[:, None] * stride + np.arange(kernel)[None, :] * dilation - pad_begin
    return ((position >= 0) & (position < length)).astype(np.float64)


_FOLDERS = {"Gemm": _fold_gemm, "Conv": _fold_conv}
