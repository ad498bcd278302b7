"""Rewriter: a decomposed layer normalization → one `LayerNormalization` (ONNX opset 17+).

Over axes A of x, y = γ·(x − μ)/√(σ² + ε) + β with μ and σ² the mean and variance over A.
Both torch exporters write nn.LayerNorm as LayerNormalization from opset 17. The decomposed
op sequences seen at this point of canonicalize (opset 21, constants folded, Sub/Div by
constants not yet Add/Mul):
  * torch legacy nn.LayerNorm below opset 17, hand-written LNs (legacy and dynamo), ConvNeXt's
    channels-first LN (ReduceMean over axis 1): ReduceMean → Sub(x, μ) → Pow(2) | Mul(d, d) →
    ReduceMean → Add(ε) → Sqrt → Div(d, ·), or Div(1, ·) | Reciprocal → Mul(d, ·); then
    Mul(γ) and Add(β) when present;
  * tf2onnx, Keras LayerNormalization: μ as GlobalAveragePool on rank 3 (it averages axes 2..,
    i.e. the last axis) or ReduceMean (rank 2; rank 4, where tf2onnx has moved the channels to
    axis 1), Sub + Mul(d, d) for SquaredDifference, Sqrt + Reciprocal for Rsqrt, and the output
    as x·g + (β − μ·g) with g = γ·rsqrt: Mul(γ), Mul(x, g), Neg(μ) → Mul(·, g), Add(β), Add;
    at rank 4 μ may reach the Sub through a Reshape that keeps its shape (tf2onnx's rewrite of
    a Transpose that only moves size-1 axes), which passes μ on unchanged.
Matching is algebraic (see fusion): from a mean μ of x over contiguous non-batch axes A with
static sizes, the polynomials in x and μ that the graph computes are evaluated; a mean over
A of (x − μ)², plus a scalar constant ε, under a Sqrt s is the variance; then Div(·, s) and
Reciprocal(s) multiply by a symbol r = 1/s, and the output is the tensor equal to γ·x·r −
γ·μ·r + β (γ, β constants varying along A only) with the largest match in which no tensor but
the output is read outside the match. A variance without ε (Sqrt of the mean itself) is left.

When A is not trailing (channels-first LN over axis 1 of NCHW), ONNX's LayerNormalization,
which normalizes trailing axes, is wrapped: Transpose(A to the end) → LayerNormalization →
Transpose back. That is the form torch exports for the permute sandwich around nn.LayerNorm,
so later passes see one LayerNormalization however the ANN wrote it, the Transposes being
layout moves that rate coding carries; left decomposed, it would leave a product of two
activations and a Sqrt for the SNN passes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx_graphsurgeon as gs

from onnx_snn.passes.base import PassContext
from onnx_snn.passes.canonicalize.fusion import (
    Monomial,
    Poly,
    evaluate,
    fuse,
    matches,
    mul,
    scalar,
    symbol,
    tensor_poly,
)
from onnx_snn.passes.graph_utils import const, constant_value, fresh_name, is_float, sole_reader, static_shape

_X, _M, _S, _R, _V = "x", "m", "s", "r", "v"  # x, its mean, the Sqrt s, 1/s, the variance
_XR, _MR = tuple(sorted((_X, _R))), tuple(sorted((_M, _R)))
_SQUARE: dict[Monomial, float] = {(_X, _X): 1.0, tuple(sorted((_M, _X))): -2.0, (_M, _M): 1.0}


@dataclass
class _LayerNorm:
    x: gs.Tensor
    y: gs.Tensor
    axes: tuple[int, ...]
    epsilon: float
    scale: np.ndarray  # γ over the normalized dims
    bias: np.ndarray  # β over the normalized dims
    nodes: list[gs.Node]


def apply(graph: gs.Graph, ctx: PassContext) -> int:
    """Fuse every decomposed layer normalization; return how many were fused."""
    count = 0
    for node in list(graph.nodes):
        match = _match(graph, node)
        if match is not None:
            _replace(graph, match)
            count += 1
    return count


def _mean_axes(node: gs.Node) -> tuple[int, ...] | None:
    """The axes `node` averages its input over, keeping them, if they are contiguous, not axis 0 and static."""
    shape = node.inputs[0].shape if node.inputs and len(node.outputs) == 1 else None
    if shape is None:
        return None
    rank = len(shape)
    if node.op == "GlobalAveragePool":
        axes = tuple(range(2, rank))
    elif node.op == "ReduceMean" and node.attrs.get("keepdims", 1) == 1 and len(node.inputs) == 2:
        value = constant_value(node.inputs[1])
        axes = () if value is None else tuple(sorted(int(a) % rank for a in value.reshape(-1)))
    else:
        return None
    if not axes or axes[0] < 1 or axes != tuple(range(axes[0], axes[0] + len(axes))):
        return None
    return axes if all(isinstance(shape[a], int) for a in axes) else None


def _match(graph: gs.Graph, mean: gs.Node) -> _LayerNorm | None:
    """The layer normalization whose mean μ `mean` computes, or None."""
    axes = _mean_axes(mean)
    if axes is None or not is_float(mean.inputs[0]):
        return None
    x, mu = mean.inputs[0], mean.outputs[0]
    values: dict[str, Poly] = {x.name: symbol(_X), mu.name: symbol(_M)}
    producers: dict[str, gs.Node] = {}
    _extend(values, producers, [x, mu], None)
    variance = _variance(graph, values, producers, axes)
    if variance is None:
        return None
    stats, square, s, epsilon = variance
    values[s.name] = symbol(_S)
    _extend(values, producers, [s], s)
    best = None
    for name, node in producers.items():
        affine = _scale_and_bias(values[name], x.shape, axes)
        nodes = _closed_match(graph, node.outputs[0], [mean, *stats], square, producers) if affine else None
        if affine is not None and nodes is not None and (best is None or len(nodes) > len(best.nodes)):
            best = _LayerNorm(x, node.outputs[0], axes, epsilon, *affine, nodes)
    return best


def _extend(
    values: dict[str, Poly], producers: dict[str, gs.Node], start: list[gs.Tensor], sqrt: gs.Tensor | None
) -> None:
    """Evaluate in place (`_step`) every node downstream of `start` whose inputs are known.

    `values` maps tensor names to polynomials and `producers` output names to the nodes evaluated.
    """
    queue = list(start)
    while queue:
        for node in queue.pop().outputs:
            if len(node.outputs) != 1 or node.outputs[0].name in values:
                continue
            poly = _step(node, values, sqrt)
            if poly is not None:
                values[node.outputs[0].name], producers[node.outputs[0].name] = poly, node
                queue.append(node.outputs[0])


def _step(node: gs.Node, values: dict[str, Poly], sqrt: gs.Tensor | None) -> Poly | None:
    """What `node` computes: fusion.evaluate, except that with `sqrt` given Reciprocal(sqrt) is r
    and Div(a, sqrt) is a·r, and that a Reshape keeping the shape passes its input on.
    """
    if sqrt is not None and node.op in ("Reciprocal", "Div") and node.inputs[-1] is sqrt:
        numerator: Poly | None = tensor_poly(node.inputs[0], values) if node.op == "Div" else {(): np.ones(())}
        return None if numerator is None else mul(numerator, symbol(_R))
    if node.op == "Reshape":
        shape = static_shape(node.inputs[0])
        kept = shape is not None and shape == static_shape(node.outputs[0])
        return tensor_poly(node.inputs[0], values) if kept else None
    return evaluate(node, values)


def _variance(
    graph: gs.Graph, values: dict[str, Poly], producers: dict[str, gs.Node], axes: tuple[int, ...]
) -> tuple[list[gs.Node], gs.Tensor, gs.Tensor, float] | None:
    """([mean, Add(ε), Sqrt], (x − μ)², s, ε) for the standard deviation s over `axes`, or None."""
    for name, node in producers.items():
        square = node.outputs[0]
        mean = sole_reader(graph, square) if matches(values[name], _SQUARE) else None
        if mean is None or _mean_axes(mean) != axes:
            continue
        add = sole_reader(graph, mean.outputs[0])
        shifted = evaluate(add, {mean.outputs[0].name: symbol(_V)}) if add is not None else None
        if add is None or shifted is None:
            continue
        sqrt = sole_reader(graph, add.outputs[0])
        if sqrt is None or sqrt.op != "Sqrt" or () not in shifted:
            continue
        epsilon = scalar({(): shifted.pop(())}, ())
        if epsilon is not None and epsilon >= 0 and matches(shifted, symbol(_V)):
            return [mean, add, sqrt], square, sqrt.outputs[0], epsilon
    return None


def _scale_and_bias(poly: Poly, shape: list, axes: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray] | None:
    """(γ, β) over the dims `axes` of `shape` when poly = γ·x·r − γ·μ·r + β, else None."""
    if set(poly) - {()} != {_XR, _MR} or not matches({_MR: poly[_MR]}, {_MR: -poly[_XR]}):
        return None
    scale, bias = (_along(c, shape, axes) for c in (poly[_XR], poly.get((), np.zeros(()))))
    return None if scale is None or bias is None else (scale, bias)


def _along(coefficient: np.ndarray, shape: list, axes: tuple[int, ...]) -> np.ndarray | None:
    """`coefficient` as an array over the dims `axes` of `shape`, if it broadcasts along those axes only."""
    rank = len(shape)
    if coefficient.ndim > rank:
        return None
    aligned: np.ndarray = coefficient.reshape((1,) * (rank - coefficient.ndim) + coefficient.shape)
    if any(d != 1 and (i not in axes or d != shape[i]) for i, d in enumerate(aligned.shape)):
        return None
    return np.broadcast_to(aligned, [shape[i] if i in axes else 1 for i in range(rank)]).reshape(
        [shape[i] for i in axes]
    )


def _closed_match(
    graph: gs.Graph, y: gs.Tensor, fixed: list[gs.Node], square: gs.Tensor, producers: dict[str, gs.Node]
) -> list[gs.Node] | None:
    """The nodes computing y and the square from x, μ and s, plus `fixed`, if y is the only tensor they let out."""
    nodes = {id(n): n for n in [*fixed, *_ancestors(y, producers), *_ancestors(square, producers)]}
    for node in nodes.values():
        for out in node.outputs:
            if out is not y and (out in graph.outputs or any(id(r) not in nodes for r in out.outputs)):
                return None
    return list(nodes.values())


def _ancestors(tensor: gs.Tensor, producers: dict[str, gs.Node]) -> list[gs.Node]:
    """The evaluated nodes that `tensor` is computed by (back to the tensors evaluation started at)."""
    found: dict[int, gs.Node] = {}
    stack = [tensor]
    while stack:
        node = producers.get(stack.pop().name)
        if node is not None and id(node) not in found:
            found[id(node)] = node
            stack.extend(node.inputs)
    return list(found.values())


def _replace(graph: gs.Graph, ln: _LayerNorm) -> None:
    """Replace the match by LayerNormalization, wrapped in Transposes when its axes are not trailing."""
    rank, dtype = len(ln.x.shape), np.dtype(ln.x.dtype)
    perm = [i for i in range(rank) if i not in ln.axes] + list(ln.axes)
    params = [const("ln_scale", ln.scale.astype(dtype)), const("ln_bias", ln.bias.astype(dtype))]
    attrs = {"axis": -len(ln.axes), "epsilon": ln.epsilon}
    if perm == list(range(rank)):
        fuse(graph, ln.nodes, "LayerNormalization", [ln.x, *params], ln.y, attrs)
        return
    moved = gs.Variable(fresh_name(f"{ln.x.name}_axes_last"), dtype=ln.x.dtype)
    normalized = gs.Variable(fresh_name(f"{ln.y.name}_axes_last"), dtype=ln.y.dtype)
    node = fuse(graph, ln.nodes, "LayerNormalization", [moved, *params], normalized, attrs)
    graph.nodes += [
        gs.Node("Transpose", name=f"{node.name}_in", attrs={"perm": perm}, inputs=[ln.x], outputs=[moved]),
        gs.Node(
            "Transpose",
            name=f"{node.name}_out",
            attrs={"perm": np.argsort(perm).tolist()},
            inputs=[normalized],
            outputs=[ln.y],
        ),
    ]
