"""decompose: rewrite MaxPool, LayerNormalization, InstanceNormalization, GroupNormalization, LRN,
Softmax and MatMul of two activations into the elementary nonlinearities that signGD neurons
implement (spec signgd-dynamics §5), as plain ONNX ops.

* MaxPool (2-D, any kernel, stride, padding and dilation, floor or ceil mode, explicit or SAME
  padding) becomes, per axis (rows, then columns), a Pad of that axis with the constant -200 and a
  chain of pairwise `Max` over strided slices (kernel - 1 of them): rows {i·r + j·d} for j = 0 ..
  k - 1 (dilation d, stride r). Ceil mode pads the end of the axis with the same constant, so the
  last partial window is computed (its size as onnxruntime's and torch's: a window that would
  start in the end padding is dropped). Padding one axis at a time keeps the corners, where row
  and column padding meet, out, and each chain starts from a kernel row that is real in every
  window (the centre row under torch's padding <= kernel/2), so no Max compares two pad values (a
  target of -200 no neuron could reach); the spec pads both axes up front and starts at row 0.
  A window of padding only is refused.
* LayerNormalization over trailing axes becomes u = x - mean(x); h = u * u (square);
  q = mean(h) + eps; n = u / Sqrt(q) (the p/sqrt(q) neuron); out = n * scale + bias.
* InstanceNormalization (beyond the spec, as LayerNormalization): the same over the spatial axes
  2.. of [N, C, ...], then the per-channel scale and bias. torch's GroupNorm exports (legacy and
  dynamo) as Reshape to [N, G, -1], InstanceNormalization, Reshape back and a per-channel
  Mul/Add, so it decomposes here too; ONNX's GroupNormalization is rewritten to that form.
* LRN (beyond the spec): h = x * x (square); the window sum over channels of h, scaled by
  alpha/size and offset by bias, is one Conv with a constant banded [C, C, 1, ...] weight:
  q = bias + alpha/size · Σ_window h; out = x / Pow(q, beta) (the p/q^beta neuron, which the
  spec's p/sqrt(q) neuron is at beta = 1/2). torch's LocalResponseNorm exports as the same
  pieces (Mul(x, x), Pad, AveragePool, Mul/Add, Pow, Div) and needs no rewrite.
* Softmax(axis) becomes Exp(x − max), ReduceSum over the axis, and Div, the max a tree of pairwise
  `Max` along the axis (beyond the spec, which subtracts nothing: see _softmax).
* MatMul of two activations X (…×N×K) · Y (…×K×M) (attention scores Q·Kᵀ, say) becomes
  Unsqueeze(X) […, N, K, 1] · Unsqueeze(Y) […, 1, K, M], an elementwise `Mul` that broadcasts to
  the N·K·M products (neuron (n, k, m) multiplies X[n, k] and Y[k, m]), then ReduceSum over K.
  Both inputs need rank >= 2 and a known rank. A MatMul with a constant operand stays as it is.

First, constants are folded once more: canonicalize folds before its rewriters, which may make
more foldable (torch's legacy LocalResponseNorm squeezes under an If on a shape that is static
only once its Reshapes are rewritten).

The result computes the same function (up to float rounding) with standard ops; spikify_signgd
then maps `Max`, `Mul(u, u)`, `Div(p, Sqrt(q))`, `Div(p, Pow(q, c))`, `Exp`, `Div(a, b)` and
`Mul(a, b)` onto neurons.
"""

from __future__ import annotations

from typing import cast

import numpy as np
import onnx_graphsurgeon as gs

from onnx_snn.passes.base import PassContext, declare, require
from onnx_snn.passes.graph_utils import (
    constant_value,
    fresh_name,
    is_activation,
    node_error,
    refresh_shapes,
    string_attr,
)

SPEC = declare("decompose", needs={"bn_folded"}, provides={"signgd_ops"})

#: the value MaxPool pads with: low enough never to win a max of scaled activations
MAXPOOL_PAD_VALUE = -200.0


#: the ops this pass rewrites away (a MatMul of two activations too)
DECOMPOSED = ("MaxPool", "LayerNormalization", "InstanceNormalization", "GroupNormalization", "LRN", "Softmax")


def postcondition(graph: gs.Graph, ctx: PassContext) -> None:
    """No op of DECOMPOSED left."""
    left = sorted({n.op for n in graph.nodes if n.op in DECOMPOSED})
    require(not left, f"{left} left in the graph")


def run(graph: gs.Graph, ctx: PassContext) -> gs.Graph:
    """Pre: BN-folded graph. Post: same function; no MaxPool, LayerNormalization,
    InstanceNormalization, GroupNormalization, LRN, Softmax or MatMul of two activations, only
    Max / Mul(u,u) / Div(p,Sqrt(q)) / Div(p,Pow(q,c)) / Exp / Div / Mul(a,b) pieces between
    affine ops."""
    graph.fold_constants().cleanup().toposort()
    refresh_shapes(graph)
    rewrite = {
        "MaxPool": _maxpool,
        "LayerNormalization": _layernorm,
        "InstanceNormalization": _instance_norm,
        "GroupNormalization": _group_norm,
        "LRN": _lrn,
        "Softmax": _softmax,
    }
    for node in [n for n in graph.nodes if n.op in rewrite]:
        rewrite[node.op](graph, node, ctx)
    for node in [n for n in graph.nodes if _is_matmul_of_activations(n)]:
        _matmul_of_activations(graph, node, ctx)
    graph.cleanup().toposort()
    refresh_shapes(graph)
    return graph


class _Emitter:
    """Appends nodes that replace one node, naming them after it."""

    def __init__(self, graph: gs.Graph, node: gs.Node) -> None:
        self.graph, self.base, self.dtype = graph, node.name, node.inputs[0].dtype

    def op(self, op: str, inputs: list, out: gs.Variable | None = None, **attrs) -> gs.Variable:
        out = out or gs.Variable(fresh_name(f"{self.base}_{op.lower()}"), dtype=self.dtype)
        self.graph.nodes.append(
            gs.Node(op, name=fresh_name(f"{self.base}_{op}"), inputs=inputs, outputs=[out], attrs=attrs)
        )
        return out

    @staticmethod
    def ints(values) -> gs.Constant:
        return gs.Constant(fresh_name("c"), np.asarray(values, dtype=np.int64))

    def scalar(self, value: float) -> gs.Constant:
        return gs.Constant(fresh_name("c"), np.asarray(value, dtype=self.dtype or np.float32))


def _detach(node: gs.Node) -> gs.Variable:
    """Disconnect `node` and return its (first) output, to be written by the replacement."""
    out = node.outputs[0]
    node.outputs.clear()
    node.inputs.clear()
    return out


def _maxpool(graph: gs.Graph, node: gs.Node, ctx: PassContext) -> None:
    kernel = [int(k) for k in node.attrs["kernel_shape"]]
    if len(kernel) != 2:
        raise node_error(ctx, node, "only 2-D MaxPool is supported")
    strides = [int(r) for r in node.attrs.get("strides", [1, 1])]
    dilations = [int(d) for d in node.attrs.get("dilations", [1, 1])]
    pads = [int(p) for p in node.attrs.get("pads", [0, 0, 0, 0])]
    ceil_mode = bool(node.attrs.get("ceil_mode", 0))
    auto_pad = string_attr(node, "auto_pad", "NOTSET")
    if len(node.outputs) > 1 and any(o.outputs or o in graph.outputs for o in node.outputs[1:]):
        raise node_error(ctx, node, "MaxPool indices are read; they cannot be converted")
    if (
        auto_pad not in ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER")
        or len(strides) != 2
        or len(dilations) != 2
        or len(pads) != 4
        or min(kernel + strides + dilations) < 1
        or min(pads) < 0
    ):
        raise node_error(ctx, node, "MaxPool with these attributes is not supported", hint="check its attributes")
    shape = node.inputs[0].shape
    if shape is None or len(shape) != 4 or not all(isinstance(d, int) for d in shape[2:]):
        raise node_error(ctx, node, "MaxPool needs static spatial dims")
    emit = _Emitter(graph, node)
    x = node.inputs[0]
    out = _detach(node)
    for axis, k, r, d in zip((2, 3), kernel, strides, dilations):
        size = int(shape[axis])
        window = (k - 1) * d + 1
        before, after = _pool_padding(auto_pad, size, window, r, pads[axis - 2], pads[axis])
        n_out = _pooled_size(size, before, after, window, r, ceil_mode and auto_pad in ("NOTSET", "VALID"))
        if n_out < 1:
            raise node_error(ctx, node, f"MaxPool window ({window}) longer than its padded axis {axis}")
        after += max(0, (n_out - 1) * r + window - (size + before + after))  # ceil mode: the last partial window
        real = [[before <= i * r + j * d < before + size for i in range(n_out)] for j in range(k)]
        if not all(any(column) for column in zip(*real)):
            raise node_error(ctx, node, "MaxPool has a window of padding only; it cannot be converted")
        if before or after:  # pad just this axis: no corner of row and column padding
            spec = [0] * 8
            spec[axis], spec[4 + axis] = before, after
            x = emit.op("Pad", [x, emit.ints(spec), emit.scalar(MAXPOOL_PAD_VALUE)], mode="constant")
        last = axis == 3
        rows = [
            emit.op(
                "Slice",
                [x, emit.ints([j * d]), emit.ints([j * d + (n_out - 1) * r + 1]), emit.ints([axis]), emit.ints([r])],
            )
            for j in range(k)
        ]
        first = _first_row(real)
        x = rows[first]
        chain = [row for j, row in enumerate(rows) if j != first]
        for j, row in enumerate(chain, start=1):
            x = emit.op("Max", [x, row], out=out if last and j == k - 1 else None)
        if last and k == 1:
            emit.op("Identity", [x], out=out)


def _first_row(real: list[list[bool]]) -> int:
    """The row of the kernel to start a Max chain from: one real (not padding) in every window,
    nearest the centre, so that no Max of the chain compares two pad values; else the row real in
    the most windows."""
    centre = (len(real) - 1) / 2
    return min(range(len(real)), key=lambda j: (-sum(real[j]), abs(j - centre), j))


def _pool_padding(auto_pad: str, size: int, window: int, stride: int, before: int, after: int) -> tuple[int, int]:
    """The (before, after) padding of one axis: the explicit pads, none (VALID), or SAME's."""
    if auto_pad == "VALID":
        return 0, 0
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        total = max(0, (-(-size // stride) - 1) * stride + window - size)
        small, large = total // 2, total - total // 2
        return (small, large) if auto_pad == "SAME_UPPER" else (large, small)
    return before, after


def _pooled_size(size: int, before: int, after: int, window: int, stride: int, ceil_mode: bool) -> int:
    """Output length of a pooled axis (onnxruntime's and torch's rule): in ceil mode a last window
    that would start past the input and the start padding is dropped."""
    span = size + before + after - window
    if not ceil_mode:
        return span // stride + 1
    n_out = -(-span // stride) + 1
    return n_out - 1 if n_out > 1 and (n_out - 1) * stride >= size + before else n_out


def _layernorm(graph: gs.Graph, node: gs.Node, ctx: PassContext) -> None:
    rank = len(node.inputs[0].shape) if node.inputs[0].shape is not None else None
    if rank is None:
        raise node_error(ctx, node, "LayerNormalization needs a known input rank")
    if len(node.outputs) > 1 and any(o.outputs for o in node.outputs[1:]):
        raise node_error(ctx, node, "LayerNormalization mean/inv-std outputs are read; they cannot be converted")
    axis = int(node.attrs.get("axis", -1)) % rank
    axes = list(range(axis, rank))
    eps = float(node.attrs.get("epsilon", 1e-5))
    emit = _Emitter(graph, node)
    x, scale = node.inputs[0], node.inputs[1]
    bias = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2].name else None
    out = _detach(node)
    normalized = _normalized(emit, x, axes, eps)
    if bias is None or (constant_value(bias) is not None and not np.any(constant_value(bias))):
        emit.op("Mul", [normalized, scale], out=out)
    else:
        emit.op("Add", [emit.op("Mul", [normalized, scale]), bias], out=out)


def _normalized(
    emit: _Emitter, x: gs.Tensor, axes: list[int], eps: float, out: gs.Variable | None = None
) -> gs.Variable:
    """(x − mean(x)) / √(mean((x − mean(x))²) + eps) over `axes`: u = x − μ (affine), h = u·u (a
    `square` neuron), q = mean(h) + eps (affine), u / √q (a `p_rsqrt_q` neuron)."""
    u = emit.op("Sub", [x, emit.op("ReduceMean", [x, emit.ints(axes)], keepdims=1)])
    square = emit.op("Mul", [u, u])
    q = emit.op("Add", [emit.op("ReduceMean", [square, emit.ints(axes)], keepdims=1), emit.scalar(eps)])
    return emit.op("Div", [u, emit.op("Sqrt", [q])], out=out)


def _channel_steps(scale: np.ndarray, bias: np.ndarray, rank: int, dtype) -> list[tuple[str, np.ndarray]]:
    """The per-channel (axis 1) Mul by `scale` and Add of `bias`, shaped [C, 1, ...]; an all-ones
    scale and an all-zeros bias are left out."""
    shape = (-1,) + (1,) * (rank - 2)
    steps = [("Mul", scale)] if not np.all(scale == 1) else []
    steps += [("Add", bias)] if np.any(bias) else []
    return [(op, value.reshape(shape).astype(dtype)) for op, value in steps]


def _apply(emit: _Emitter, x: gs.Variable, steps: list[tuple[str, np.ndarray]], out: gs.Variable) -> None:
    """`out` = x after the constant `steps` (at least one)."""
    for index, (op, value) in enumerate(steps):
        constant = gs.Constant(fresh_name(f"{emit.base}_{op.lower()}"), value)
        x = emit.op(op, [x, constant], out=out if index == len(steps) - 1 else None)


def _known_rank(ctx: PassContext, node: gs.Node, minimum: int) -> int:
    """The rank of `node`'s input, at least `minimum`, else a refusal."""
    shape = node.inputs[0].shape
    if shape is None or len(shape) < minimum:
        raise node_error(ctx, node, f"{node.op} needs an input of known rank >= {minimum}")
    return len(shape)


def _constants(ctx: PassContext, node: gs.Node, indices: tuple[int, ...]) -> list[np.ndarray]:
    """The constant inputs at `indices` as float64 arrays, else a refusal."""
    values = [constant_value(node.inputs[i]) if i < len(node.inputs) else None for i in indices]
    if any(value is None for value in values):
        raise node_error(ctx, node, f"{node.op} with a scale or bias that is not a constant is not supported")
    return [np.asarray(value, np.float64) for value in values]


def _instance_norm(graph: gs.Graph, node: gs.Node, ctx: PassContext) -> None:
    """InstanceNormalization(x [N, C, ...], scale [C], bias [C]): normalized over the axes 2.., then
    scale and bias per channel."""
    rank = _known_rank(ctx, node, 3)
    scale, bias = _constants(ctx, node, (1, 2))
    emit = _Emitter(graph, node)
    steps = _channel_steps(scale, bias, rank, emit.dtype or np.float32)
    x = node.inputs[0]
    out = _detach(node)
    eps = float(node.attrs.get("epsilon", 1e-5))
    normalized = _normalized(emit, x, list(range(2, rank)), eps, out=None if steps else out)
    if steps:
        _apply(emit, normalized, steps, out)


def _group_norm(graph: gs.Graph, node: gs.Node, ctx: PassContext) -> None:
    """GroupNormalization(x [N, C, ...], scale, bias; num_groups G) as torch exports GroupNorm:
    Reshape to [N, G, -1], normalized over the last axis, Reshape back, scale and bias per channel
    (scale and bias [C], or [G] as opset 18 has them, repeated over each group's channels)."""
    rank = _known_rank(ctx, node, 3)
    channels = node.inputs[0].shape[1]
    groups = int(node.attrs["num_groups"])
    if not isinstance(channels, int) or groups < 1 or channels % groups:
        raise node_error(ctx, node, "GroupNormalization needs a static channel count divisible by num_groups")
    scale, bias = _constants(ctx, node, (1, 2))
    if scale.size == groups != channels:
        scale, bias = np.repeat(scale, channels // groups), np.repeat(bias, channels // groups)
    emit = _Emitter(graph, node)
    steps = _channel_steps(scale, bias, rank, emit.dtype or np.float32)
    x = node.inputs[0]
    out = _detach(node)
    grouped = emit.op("Reshape", [x, emit.ints([0, groups, -1])])
    normalized = _normalized(emit, grouped, [2], float(node.attrs.get("epsilon", 1e-5)))
    shape = emit.op("Shape", [x], out=gs.Variable(fresh_name(f"{node.name}_shape"), dtype=np.int64))
    back = emit.op("Reshape", [normalized, shape], out=None if steps else out)
    if steps:
        _apply(emit, back, steps, out)


def _lrn(graph: gs.Graph, node: gs.Node, ctx: PassContext) -> None:
    """LRN(x [N, C, ...]; size n, alpha, beta, bias k) = x / (k + alpha/n · Σ_window x²)^beta, the
    window over channels c − ⌊(n−1)/2⌋ .. c + ⌈(n−1)/2⌉: x·x (a `square` neuron), the scaled window
    sum plus k as one Conv with a banded [C, C, 1, ...] weight and bias k (affine), and
    Div(x, Pow(q, beta)) (a `p_div_q_pow` neuron)."""
    rank = _known_rank(ctx, node, 3)
    channels = node.inputs[0].shape[1]
    if not isinstance(channels, int):
        raise node_error(ctx, node, "LRN needs a static channel count")
    size = int(node.attrs["size"])
    alpha, beta = float(node.attrs.get("alpha", 1e-4)), float(node.attrs.get("beta", 0.75))
    bias = float(node.attrs.get("bias", 1.0))
    emit = _Emitter(graph, node)
    dtype = emit.dtype or np.float32
    x = node.inputs[0]
    out = _detach(node)
    offsets = np.arange(channels)[None, :] - np.arange(channels)[:, None]  # [c, c']: c' − c
    band = (offsets >= -((size - 1) // 2)) & (offsets <= size // 2)  # ⌈(n−1)/2⌉ = ⌊n/2⌋
    weight = (band * (alpha / size)).reshape((channels, channels) + (1,) * (rank - 2)).astype(dtype)
    square = emit.op("Mul", [x, x])
    q = emit.op(
        "Conv",
        [
            square,
            gs.Constant(fresh_name(f"{node.name}_window"), weight),
            gs.Constant(fresh_name(f"{node.name}_bias"), np.full(channels, bias, dtype)),
        ],
        kernel_shape=[1] * (rank - 2),
    )
    emit.op("Div", [x, emit.op("Pow", [q, emit.scalar(beta)])], out=out)


def _softmax(graph: gs.Graph, node: gs.Node, ctx: PassContext) -> None:
    """Softmax(x) over `axis` = e / Σ_axis e with e = Exp(x − m), m the max of x along the axis
    (a tree of pairwise `Max`, see _axis_max): every e lies in (0, 1] and the sum in [1, n], so the
    `exp` neuron's target stays inside the reach of its step sizes and the `div` neuron's divisor
    is bounded away from 0. Softmax is shift-invariant, so the result does not depend on how well
    m tracks the max, only its range does; the spec's reference (no shift) has exp targets that
    grow as e^(max logit) and that no schedule reaches (attention logits of spread 2-3 put the
    row max 20x above the 99.9th percentile of Exp)."""
    shape = node.inputs[0].shape
    if shape is None:
        raise node_error(ctx, node, "Softmax needs a known input rank")
    rank = len(shape)
    axis = int(node.attrs.get("axis", -1)) % rank
    if not isinstance(shape[axis], int):
        raise node_error(ctx, node, f"Softmax needs a static size along its axis {axis}")
    emit = _Emitter(graph, node)
    x = node.inputs[0]
    out = _detach(node)
    e = emit.op("Exp", [emit.op("Sub", [x, _axis_max(emit, x, axis, int(shape[axis]))])])
    emit.op("Div", [e, emit.op("ReduceSum", [e, emit.ints([axis])], keepdims=1)], out=out)


def _axis_max(emit: _Emitter, x: gs.Tensor, axis: int, size: int) -> gs.Tensor:
    """The max of `x` along `axis` (kept, size 1) as a tree of pairwise `Max` of halves: at each
    level the first and the last ⌈n/2⌉ entries (overlapping by one when n is odd), so ⌈log2 n⌉
    levels of `maximum` neurons."""
    while size > 1:
        half = (size + 1) // 2
        first = emit.op("Slice", [x, emit.ints([0]), emit.ints([half]), emit.ints([axis])])
        last = emit.op("Slice", [x, emit.ints([size - half]), emit.ints([size]), emit.ints([axis])])
        x, size = emit.op("Max", [first, last]), half
    return x


def _is_matmul_of_activations(node: gs.Node) -> bool:
    return node.op == "MatMul" and len(node.inputs) == 2 and all(is_activation(t) for t in node.inputs)


def _matmul_of_activations(graph: gs.Graph, node: gs.Node, ctx: PassContext) -> None:
    """X (…×N×K) · Y (…×K×M) → ReduceSum_K(Unsqueeze(X, -1) · Unsqueeze(Y, -3)): N·K·M products."""
    ranks = [len(t.shape) if t.shape is not None else None for t in node.inputs]
    if any(rank is None for rank in ranks):
        raise node_error(ctx, node, "MatMul of two activations needs known input ranks")
    if any(rank < 2 for rank in cast("list[int]", ranks)):  # none is None (refused above)
        raise node_error(
            ctx,
            node,
            f"MatMul of two activations needs inputs of rank >= 2 (got ranks {ranks})",
            hint="reshape a vector operand to a matrix before the matmul",
        )
    emit = _Emitter(graph, node)
    x, y = node.inputs
    out = _detach(node)
    columns = emit.op("Unsqueeze", [x, emit.ints([-1])])  # [..., N, K, 1]
    rows = emit.op("Unsqueeze", [y, emit.ints([-3])])  # [..., 1, K, M]
    products = emit.op("Mul", [columns, rows])  # [..., N, K, M]
    emit.op("ReduceSum", [products, emit.ints([-2])], out=out, keepdims=0)
