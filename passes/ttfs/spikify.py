"""spikify_ttfs: turn a windowed ReLU net into a time-to-first-spike SNN in closed form (spec §6.1).

Model B1 (default). Every spike tensor holds each spike's lead over its window's end,
L = t_max − t (spec §6.4 rule a), so L is the activation x and L = 0 is "no spike". Every graph
input v becomes an `snn.TTFSEncoder` (spike at t = 1 − (v − p)/(q − p)); every ReLU becomes an
`snn.TTFSNeuron`, whose input is its membrane potential at the window start and whose spike
comes B_n − a after it. A synapse reads at its layer's window start t_min the PSP
t_min − t_j = L_j (plus Δ for a skip input from a window that ended Δ earlier, which a bias −W·Δ
corrects), so the linear ops read the leads unchanged; layout ops move spikes; MaxPool takes
the largest lead, the earliest spike (the sign-aware pool s·MaxPool(s·L) the latest where
s = −1). The outputs stay the ANN's logits: the read-out potential at t_read.
`--ttfs-model a` builds model A instead (see ttfs_model_a).

With --stats the model also outputs, per layer, `spike_times/<layer>` (absolute times),
`spikes/<layer>` (spikes per sample: L > 0) and `synops/<layer>` (synaptic events per sample: every
spike that reaches a linear op, after pooling, times the number of non-zero weights it meets).
"""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from onnx_snn.ir.contract import SPIKE_TIMES_PREFIX, SPIKES_PREFIX, SYNOPS_PREFIX
from onnx_snn.ir.function_parts import SNN_DOMAIN
from onnx_snn.passes import op_support
from onnx_snn.passes.base import PassContext, declare, require_neuron_layers
from onnx_snn.passes.common.fanout import fan_out
from onnx_snn.passes.graph_utils import add_encoder, const, constant_value, fresh_name
from onnx_snn.passes.ttfs.graph import SPIKE_LAYOUT_OPS, SPIKE_POOL_OPS

SPEC = declare("spikify_ttfs", needs={"ttfs_windows"}, provides={"spiking"})


def postcondition(graph: gs.Graph, ctx: PassContext) -> None:
    """No Relu left; each neuron layer is an snn.TTFSNeuron."""
    require_neuron_layers(graph, ctx, "TTFSNeuron")


def run(graph: gs.Graph, ctx: PassContext) -> gs.Graph:
    """Pre: windowed TTFS-ready graph (ttfs_windows). Post: inputs are TTFSEncoder spike times,
    every Relu a TTFSNeuron, MaxPools earliest-spike pools, linear ops read x = B − tau; outputs
    unchanged (logits in ANN units), plus per-layer spike statistics with --stats."""
    windows = ctx.state.ttfs.windows
    assert windows is not None  # NEEDS ttfs_windows
    for name, entry in ctx.state.ttfs.inputs.items():
        _encode(graph, name, entry)
    stats = []
    for node in [n for n in graph.nodes if n.op == "Relu"]:
        node.op, node.domain = "TTFSNeuron", SNN_DOMAIN
        if ctx.options.stats:
            stats += _statistics(graph, node.name, node.outputs[0], windows["layers"][node.name]["t_max"])
    graph.outputs.extend(stats)
    ctx.state.neuron_layers = list(windows["layers"])
    return graph.cleanup().toposort()


def _encode(graph: gs.Graph, name: str, entry: dict) -> None:
    """Replace the input's x̃ = (v − p)/(q − p) by a TTFSEncoder on v, which writes the same leads."""
    v = next(t for t in graph.inputs if t.name == name)
    x_tilde = graph.tensors()[entry["encoded"]]
    low, high = entry["range"]
    bounds = [const("p", np.asarray(low, dtype=np.float32)), const("q", np.asarray(high, dtype=np.float32))]
    leads = add_encoder(graph, "TTFSEncoder", [v, *bounds], f"{name}_spike_leads", v.dtype)
    for reader in list(x_tilde.outputs):
        for i, tensor in enumerate(reader.inputs):
            if tensor is x_tilde:
                reader.inputs[i] = leads


def _synaptic_targets(leads: gs.Tensor) -> list[tuple[gs.Node, gs.Tensor]]:
    """The (linear op, tensor it reads) pairs that spikes reach through pooling (MaxPool and the sign
    Muls of a sign-aware pool) and layout ops: where they meet synapses."""
    targets = []
    for node in leads.outputs:
        if node.op == "Shape":
            continue
        if node.op in SPIKE_LAYOUT_OPS | SPIKE_POOL_OPS or _is_sign(node):
            targets += _synaptic_targets(node.outputs[0])
        else:
            targets.append((node, leads))
    return targets


def _is_sign(node: gs.Node) -> bool:
    """A Mul by a constant of ±1 entries (one side of a sign-aware pool)."""
    signs = [constant_value(t) for t in node.inputs] if node.op == "Mul" else []
    return any(v is not None and v.size and np.all(np.abs(v) == 1.0) for v in signs)


def _statistics(graph: gs.Graph, layer: str, leads: gs.Tensor, t_max: float) -> list[gs.Variable]:
    """Per-sample outputs of one layer: absolute spike times, spike count, and synaptic events (each
    spike that reaches a linear op, after pooling, times its non-zero fan-out there)."""
    per_sample = list(leads.shape[:1]) if leads.shape else None
    zero = const("zero", np.asarray(0.0, dtype=np.float32))
    targets = _synaptic_targets(leads)  # before the statistics add readers of their own

    def emit(op: str, inputs: list, name: str | None = None, shape: list | None = None, **attrs) -> gs.Variable:
        out = gs.Variable(
            name or fresh_name(op.lower()), dtype=np.bool_ if op == "Greater" else np.float32, shape=shape
        )
        graph.nodes.append(gs.Node(op, name=fresh_name(f"stats_{op}"), inputs=inputs, outputs=[out], attrs=attrs))
        return out

    def per_sample_sum(values: gs.Tensor, name: str) -> gs.Variable:
        flat = emit("Flatten", [values], axis=1)
        return emit(
            "ReduceSum", [flat, const("axes", np.asarray([1], dtype=np.int64))], name=name, shape=per_sample, keepdims=0
        )

    def spiked(tensor: gs.Tensor) -> gs.Variable:
        return emit("Cast", [emit("Greater", [tensor, zero])], to=1)

    times = emit(
        "Sub",
        [const("t_max", np.asarray(t_max, dtype=np.float32)), leads],
        name=f"{SPIKE_TIMES_PREFIX}{layer}",
        shape=leads.shape,
    )
    outputs = [times, per_sample_sum(spiked(leads), f"{SPIKES_PREFIX}{layer}")]
    events = []
    for reader, read in targets:
        fan = fan_out(reader, read)
        reached = spiked(read)
        events.append(
            per_sample_sum(
                emit("Mul", [reached, const("fan_out", fan)]) if fan is not None else reached, fresh_name("synops_part")
            )
        )
    if events:
        outputs.append(emit("Sum", events, name=f"{SYNOPS_PREFIX}{layer}", shape=per_sample))
    return outputs


def refuse_unconvertible(graph: gs.Graph, ctx: PassContext) -> None:
    """Raise SnnError for the first node a TTFS net cannot hold (op_support.TTFS): a non-ReLU
    nonlinearity (`use --neuron signgd` where signGD converts it), an op outside the table, a
    product of activations, or a MaxPool that does not read one layer's spikes (such as the sum of
    a residual: no single spike to take)."""
    op_support.refuse_unconvertible(op_support.TTFS, graph, ctx)
