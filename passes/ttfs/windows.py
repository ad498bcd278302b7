"""ttfs_windows: give every ReLU layer its TTFS window from its calibrated maximum (spec §1).

The input window is [0, 1]. A ReLU layer n reads spikes of earlier layers through its linear
region; its window starts when the last of them has ended and lasts B_n = (1 + ζ)·X_n, with X_n
the largest ReLU output on the calibration data:

    t_min(n) = max over its source layers s of t_max(s),   t_max(n) = t_min(n) + B_n
    t_read   = max over the sources of the graph outputs of t_max(s)

In a chain this is the spec's t_min⁽ⁿ⁾ = t_max⁽ⁿ⁻¹⁾. A source that ended earlier (a residual
skip) is read at t_min(n) as x + Δ, Δ = t_min(n) − t_max(s); a bias of −W·Δ corrects it, which
the closed form does by decoding every source in its own window. Δ is recorded per input.
"""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from onnx_snn.passes.base import PassContext, declare, require
from onnx_snn.passes.graph_utils import constant_value, node_error, node_label
from onnx_snn.passes.ttfs.graph import encoded_inputs, relu_outputs

SPEC = declare("ttfs_windows", needs={"ttfs_affine", "calibrated"}, provides={"ttfs_windows"})

INPUT_WINDOW = (0.0, 1.0)


def postcondition(graph: gs.Graph, ctx: PassContext) -> None:
    """Every Relu has its window [t_min, t_max] with t_min < t_max."""
    layers = (ctx.state.ttfs.windows or {}).get("layers", {})
    relus = [n.name for n in graph.nodes if n.op == "Relu"]
    require(all(name in layers for name in relus), "a Relu has no window")
    require(all(layers[n]["t_min"] < layers[n]["t_max"] for n in relus), "a window is empty")


def run(graph: gs.Graph, ctx: PassContext) -> gs.Graph:
    """Pre: calibrated TTFS-ready graph (ctx.activation_stats holds each Relu's max). Post: graph
    unchanged; ctx.state.ttfs.windows holds ζ, t_read and, per layer, X, B, t_min, t_max and the
    window corrections Δ of its inputs."""
    zeta = float(ctx.options.zeta)
    sources = {t.name: name for name, t in _named_sources(graph, ctx).items()}
    windows: dict[str, tuple[float, float]] = {name: INPUT_WINDOW for name in ctx.state.ttfs.inputs}
    layers = {}
    for relu in (n for n in graph.nodes if n.op == "Relu"):
        stats = ctx.activation_stats.get(relu.name)
        if stats is None:
            raise node_error(ctx, relu, "ReLU was not calibrated")
        feeding = source_layers(relu.inputs[0], sources)
        start = max((windows[s][1] for s in feeding), default=0.0)
        peak = float(np.max(stats.max))
        width = (1.0 + zeta) * peak
        windows[relu.name] = (start, start + width)
        layers[relu.name] = {
            "X": peak,
            "B": width,
            "t_min": start,
            "t_max": start + width,
            "inputs": {s: start - windows[s][1] for s in feeding},
        }
        if peak == 0.0:
            ctx.note(f"ReLU {node_label(relu)} is zero on every calibration input; its neurons never spike")
    read_sources = set().union(*(source_layers(out, sources) for out in graph.outputs)) if graph.outputs else set()
    t_read = max((windows[s][1] for s in read_sources), default=1.0)
    ctx.state.ttfs.windows = {
        "model": ctx.options.ttfs_model,
        "zeta": zeta,
        "t_read": t_read,
        "inputs": {name: {"t_min": 0.0, "t_max": 1.0, **entry} for name, entry in ctx.state.ttfs.inputs.items()},
        "layers": layers,
    }
    ctx.state.neuron_layers = list(layers)
    return graph


def _named_sources(graph: gs.Graph, ctx: PassContext) -> dict[str, gs.Tensor]:
    """Spike tensors by layer name: each graph input's x̃ under the input's name, each Relu output
    under the Relu's name."""
    by_tensor = {entry["encoded"]: name for name, entry in ctx.state.ttfs.inputs.items()}
    named = {by_tensor[t.name]: t for t in encoded_inputs(graph, ctx)}
    named.update({t.inputs[0].name: t for t in relu_outputs(graph)})
    return named


def source_layers(tensor: gs.Tensor, sources: dict[str, str]) -> set[str]:
    """The layers whose spikes `tensor` depends on (searching back to the nearest spike tensors);
    `sources` maps spike tensor names to layer names."""
    found: set[str] = set()
    stack, seen = [tensor], set()
    while stack:
        t = stack.pop()
        if t.name in seen or constant_value(t) is not None or t.dtype in (np.int64, np.int32):
            continue
        seen.add(t.name)
        if t.name in sources:
            found.add(sources[t.name])
        elif t.inputs:
            stack.extend(t.inputs[0].inputs)
    return found
