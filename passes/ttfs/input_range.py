"""ttfs_input_range: encode each graph input v ∈ [p, q] as x̃ = (v − p)/(q − p) ∈ [0, 1] (spec §1, P2).

The input layer's spikes carry x̃: t⁽⁰⁾ = 1 − x̃ in the window [0, 1]. This pass writes x̃
explicitly and then restores v = (q − p)·x̃ + p for the graph's own readers, so the function is
unchanged; ttfs_fold_affine then folds that affine into the first linear layers (W' = (q − p)W
and a bias map for p that keeps zero padding meaning x̃ = 0). [p, q] is --input-range, else the
min and max of the calibration data.
"""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from onnx_snn.errors import SnnError
from onnx_snn.passes.base import PassContext, declare, require
from onnx_snn.passes.common.calibration_inputs import calibration_extremes
from onnx_snn.passes.graph_utils import const, fresh_name, replace_uses
from onnx_snn.passes.ttfs.graph import require_encoded_inputs

SPEC = declare("ttfs_input_range", needs={"supported"}, provides={"ttfs_inputs"})


def postcondition(graph: gs.Graph, ctx: PassContext) -> None:
    """Each recorded input has its encoded tensor x̃ in the graph."""
    require(bool(ctx.state.ttfs.inputs), "no encoded input recorded")
    require_encoded_inputs(graph, ctx)


def run(graph: gs.Graph, ctx: PassContext) -> gs.Graph:
    """Pre: canonical graph with float inputs. Post: same function; each input v is read only by x̃
    = (v − p)/(q − p) followed by Mul(q − p), Add(p); ctx.state.ttfs.inputs maps each input to
    [p, q] and the name of x̃."""
    low, high = input_range(ctx)
    encoded = {}
    for v in graph.inputs:
        readers = list(v.outputs)
        x_tilde = _append(graph, "Mul", _append(graph, "Sub", v, low), 1.0 / (high - low))
        restored = _append(graph, "Add", _append(graph, "Mul", x_tilde, high - low), low)
        for node in readers:
            for i, tensor in enumerate(node.inputs):
                if tensor is v:
                    node.inputs[i] = restored
        if v in graph.outputs:
            replace_uses(graph, v, restored)
        encoded[v.name] = {"range": [low, high], "encoded": x_tilde.name}
    ctx.state.ttfs.inputs = encoded
    return graph.toposort()


def _append(graph: gs.Graph, op: str, x: gs.Tensor, value: float) -> gs.Variable:
    """Append `op(x, value)` (value a scalar constant of x's dtype) and return its output."""
    name = fresh_name(f"ttfs_input_{op.lower()}")
    out = gs.Variable(name, dtype=x.dtype, shape=x.shape)
    graph.nodes.append(gs.Node(op, name=name, inputs=[x, const(name, np.asarray(value, dtype=x.dtype))], outputs=[out]))
    return out


def input_range(ctx: PassContext) -> tuple[float, float]:
    """[p, q]: --input-range, checked against the calibration data, or the data's own min and max.

    SnnError when calibration data lie outside a given range, when there is neither a range nor
    calibration data, or when the data are constant (no range to encode).
    """
    given = ctx.options.input_range
    seen = calibration_extremes(ctx)
    if given is not None:
        low, high = float(given[0]), float(given[1])
        if seen is not None and (seen[0] < low or seen[1] > high):
            raise SnnError(
                f"calibration data span [{seen[0]:.6g}, {seen[1]:.6g}], outside --input-range [{low:.6g}, {high:.6g}]",
                path=ctx.source,
                hint="widen --input-range to cover every input value, or fix the data's scaling",
            )
        return low, high
    if seen is None:
        raise SnnError(
            "TTFS needs the input range: pass --input-range P Q or calibration data with --calib", path=ctx.source
        )
    if not seen[0] < seen[1]:
        raise SnnError(f"calibration inputs are all {seen[0]:.6g}; pass --input-range P Q", path=ctx.source)
    return seen
