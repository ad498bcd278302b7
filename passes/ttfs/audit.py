"""ttfs_audit: check the exactness conditions of the TTFS mapping on the calibration data.

(i) An activation above its window, a_i > B_n, cannot be coded: B1 hardware saturates, model A
fires early. (ii) Model A only: neuron i fires before its window opens iff
max over u ∈ (0, D] of g_i(u) ≥ B_n, with g_i(u) = b_i − u + Σ_j W_ji·max(x_j, u), x the
layer's input activations and D the length of the window before (spec §2.1). g is piecewise
linear, so u ∈ {x_j} ∪ {D} suffice; with the x_j sorted, cumulative sums give all of them in
O(K·N) per sample. Counts go to the notes and to metadata ttfs.audit.
"""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from onnx_snn.passes.base import PassContext, declare, require
from onnx_snn.passes.common.calibrate import calibration_batches
from onnx_snn.passes.graph_utils import node_label
from onnx_snn.passes.ttfs.model_a import chain_weights, dense_chain
from onnx_snn.probe import observe

SPEC = declare("ttfs_audit", needs={"ttfs_windows"}, provides={"ttfs_audit"})


def postcondition(graph: gs.Graph, ctx: PassContext) -> None:
    """The audit covers every windowed layer."""
    windows = ctx.state.ttfs.windows or {}
    require(set(windows.get("audit", {})) == set(windows.get("layers", {})), "the audit does not cover every layer")


def run(graph: gs.Graph, ctx: PassContext) -> gs.Graph:
    """Pre: windowed TTFS-ready graph (ttfs_windows) and calibration data. Post: graph unchanged;
    ctx.state.ttfs.windows['audit'] gives per layer the activations above B_n and, for model A,
    the early spikes."""
    windows = ctx.state.ttfs.windows
    assert windows is not None  # NEEDS ttfs_windows
    relus = [n for n in graph.nodes if n.op == "Relu"]
    chain = dense_chain(graph, ctx) if ctx.options.ttfs_model == "a" else []
    gemm_inputs = [g.inputs[0].inputs[0] for g in chain[:-1]]
    if not relus:
        windows["audit"] = {}
        return graph
    audit = {r.name: {"checked": 0, "above_window": 0, "early_spikes": 0} for r in relus}
    feeds = ({k: np.asarray(v, dtype=np.float32) for k, v in feed.items()} for feed in calibration_batches(ctx))
    for _, values in observe(graph, [n.outputs[0] for n in relus + gemm_inputs], feeds):
        for relu, y in zip(relus, values[: len(relus)]):
            entry = audit[relu.name]
            entry["checked"] += int(y.size)
            entry["above_window"] += int(np.count_nonzero(y > windows["layers"][relu.name]["B"]))
        for gemm, x in zip(chain[:-1], values[len(relus) :]):
            relu = gemm.outputs[0].outputs[0]
            layer = windows["layers"][relu.name]
            previous = windows["layers"].get(_source_layer(layer))
            before = previous["B"] if previous is not None else 1.0
            w, b = chain_weights(gemm)
            audit[relu.name]["early_spikes"] += int(
                np.count_nonzero(
                    early_spike_margin(x.reshape(len(x), -1).astype(np.float64), w, b, before) >= layer["B"]
                )
            )
    windows["audit"] = audit
    for relu in relus:
        entry = audit[relu.name]
        if entry["above_window"] or entry["early_spikes"]:
            ctx.note(
                f"TTFS audit, layer {node_label(relu)}: {entry['above_window']} of {entry['checked']} calibration "
                f"activations exceed B_n and {entry['early_spikes']} neurons fire early; raise --zeta"
            )
    return graph


def _source_layer(layer: dict) -> str | None:
    """The one layer a dense-chain layer reads (None for the input)."""
    return next(iter(layer["inputs"]), None)


def early_spike_margin(x: np.ndarray, w: np.ndarray, b: np.ndarray, before: float) -> np.ndarray:
    """max over u ∈ (0, D] of g_i(u) per sample and neuron, [B, N] (−inf where no u qualifies).

    x: [B, K] input activations; w: [N, K] weights (row i = neuron i's fan-in); b: [N]; D = `before`.
    At u = x_(k) (sorted ascending), Σ_j W_ji max(x_j, u) = u·Σ_{m≤k} W_(m)i + Σ_{m>k} W_(m)i x_(m).
    """
    margins = np.empty((len(x), len(b)))
    for s, sample in enumerate(x):
        order = np.argsort(sample, kind="stable")
        u = np.append(sample[order], before)  # [K+1]
        w_sorted = w[:, order].T  # [K, N]
        below = np.vstack([np.cumsum(w_sorted, axis=0), w_sorted.sum(axis=0)])
        above_x = w_sorted * sample[order][:, None]
        above = np.vstack([above_x.sum(axis=0) - np.cumsum(above_x, axis=0), np.zeros(len(b))])
        g = b[None, :] - u[:, None] + u[:, None] * below + above
        qualifies = (u > 0.0) & (u <= before)
        margins[s] = np.where(qualifies[:, None], g, -np.inf).max(axis=0)
    return margins
