"""ttfs_column_scale: bound every hidden neuron's fan-in weight sum to l ≤ S_i ≤ u < 1 (spec P4; model A).

Model A's neurons have slope 1/(1 − S_i) after their window start, so S_i < 1 is required. For each
hidden layer in order: its fan-in weights from neuron j of the layer before are divided by g_j
(compensation), then row i and b_i are scaled by g_i = u/S_i if S_i > u, l/S_i if S_i < l, else 1.
The read-out layer gets the compensation only. All g > 0 and ReLU is positively homogeneous, so
the network function is unchanged. The pass manager runs it for model A only (B1 needs no such bound).
"""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from onnx_snn.passes.base import PassContext, declare, require
from onnx_snn.passes.ttfs.graph import gemm_weights, set_gemm_weights
from onnx_snn.passes.ttfs.model_a import chain_weights, dense_chain

SPEC = declare("ttfs_column_scale", needs={"ttfs_affine"}, provides={"ttfs_columns"})

UPPER_BOUND = 0.99  # u of the reference code
LOWER_BOUND = -10.0  # l of the reference code


def postcondition(graph: gs.Graph, ctx: PassContext) -> None:
    """Every hidden neuron's fan-in sum S_i (row sum of its Gemm) lies in [LOWER_BOUND, UPPER_BOUND]
    to float32 rounding."""
    for gemm in dense_chain(graph, ctx)[:-1]:
        weights = gemm_weights(gemm)
        require(weights is not None, f"{gemm.name} lost its constant weights")
        sums = weights[0].astype(np.float64).sum(axis=1) if weights is not None else np.zeros(0)
        slack = 1e-5 * max(1.0, float(np.abs(weights[0]).sum(axis=1).max(initial=0))) if weights is not None else 0
        require(
            bool(np.all((sums <= UPPER_BOUND + slack) & (sums >= LOWER_BOUND - slack))),
            f"{gemm.name} has a fan-in sum outside [{LOWER_BOUND}, {UPPER_BOUND}]",
        )


def run(graph: gs.Graph, ctx: PassContext) -> gs.Graph:
    """Pre: TTFS-ready dense ReLU chain (model A). Post: same function (float64 maths, rounded
    once); every hidden neuron has l ≤ S_i ≤ u."""
    chain = dense_chain(graph, ctx)
    scaled = bounded_fan_in_sums([chain_weights(gemm) for gemm in chain], UPPER_BOUND, LOWER_BOUND)
    for gemm, (w, b) in zip(chain, scaled):
        set_gemm_weights(gemm, w, b, np.asarray(gemm.inputs[1].values).dtype)
    return graph


def bounded_fan_in_sums(
    layers: list[tuple[np.ndarray, np.ndarray]], upper: float, lower: float
) -> list[tuple[np.ndarray, np.ndarray]]:
    """P4 on a dense chain [(W [out, in], b)], read-out last: each layer's fan-in from neuron j is
    divided by the gain g_j of the layer before; then, for hidden layers, row i and b_i are scaled
    by g_i = upper/S_i if S_i > upper, lower/S_i if S_i < lower, else 1 (S_i the row sum)."""
    scaled, previous_gain = [], None
    for index, (w, b) in enumerate(layers):
        if previous_gain is not None:
            w = w / previous_gain[None, :]
        if index < len(layers) - 1:
            sums = w.sum(axis=1)
            gain = np.ones_like(sums)
            gain[sums > upper] = upper / sums[sums > upper]
            gain[sums < lower] = lower / sums[sums < lower]
            w, b, previous_gain = w * gain[:, None], b * gain, gain
        scaled.append((w, b))
    return scaled
