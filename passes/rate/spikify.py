"""spikify: replace every ReLU, and every capped ReLU Clip(x, 0, c) (normalized to Min(Relu(x/λ),
c/λ) where the kind's capped op reads a per-channel cap k = c/λ, its count capped at k spikes a
step on average; else to Clip(x/λ, 0, 1), λ = c where it binds, else the statistic, capped at one
spike a step), with a stateful IF neuron of the --spikes kind (IF_NEURON_OP; a capped ReLU
CAPPED_IF_NEURON_OP's); refuse what IF neurons cannot convert. A MaxPool (which IF nets convert)
is left for spikify_maxpool, which runs once the input is encoded."""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from onnx_snn.ir.function_parts import SNN_DOMAIN
from onnx_snn.ir.neurons import CAPPED_IF_NEURON_OP, IF_NEURON_OP, NEURON_OPS, takes_cap
from onnx_snn.passes import op_support
from onnx_snn.passes.base import PassContext, declare, require_neuron_layers
from onnx_snn.passes.graph_utils import fresh_name, node_error

SPEC = declare("spikify", needs={"normalized", "supported"}, provides={"spiking"})


def postcondition(graph: gs.Graph, ctx: PassContext) -> None:
    """No Relu left; each neuron layer is the --spikes kind's IF op (IF_NEURON_OP), or its capped op
    (CAPPED_IF_NEURON_OP) for a capped ReLU."""
    spikes = ctx.options.spikes
    require_neuron_layers(
        graph, ctx, IF_NEURON_OP[spikes], *([CAPPED_IF_NEURON_OP[spikes]] if spikes in CAPPED_IF_NEURON_OP else [])
    )


def run(graph: gs.Graph, ctx: PassContext) -> gs.Graph:
    """Pre: normalized graph (each Relu sees units of its λ; a capped ReLU is Clip(0, 1)). Post: no
    Relu or Clip left; each is an IF neuron op (threshold 1; _neuron_op) run for one timestep; MaxPools are
    unchanged (spikify_maxpool converts them); any other nonlinearity is refused."""
    caps = _fuse_caps(graph) if takes_cap(ctx.options.spikes) else {}
    refuse_unconvertible(graph, ctx)
    one_step = gs.Constant(fresh_name("one_timestep"), np.asarray(1, dtype=np.int64))
    fresh = gs.Constant(fresh_name("fresh_membrane"), np.asarray(np.nan, dtype=np.float32))
    layers = []
    for node in graph.nodes:
        if node.op != "Relu" and op_support.relu_cap(node) != 1.0:  # normalize made a capped ReLU Clip(0, 1)
            continue
        op, attrs = _neuron_op(node, node.name in caps, ctx)
        states = [final for _, final, _ in NEURON_OPS[op].states]
        node.op, node.domain = op, SNN_DOMAIN
        node.inputs = (
            [node.inputs[0], one_step] + [fresh] * len(states) + ([caps[node.name]] if node.name in caps else [])
        )
        node.outputs = [node.outputs[0]] + [
            gs.Variable(fresh_name(f"{node.name}_{s}"), dtype=np.float32) for s in states
        ]
        node.attrs = {"threshold": 1.0, "v_init": float(ctx.options.v_init), **attrs}
        layers.append(node.name)
    ctx.state.neuron_layers = layers
    return graph


def _fuse_caps(graph: gs.Graph) -> dict[str, gs.Constant]:
    """Fold each Min(Relu(u), k) with a constant k (normalize's capped ReLU for a kind whose capped
    op reads a cap, takes_cap) into its Relu: the Relu writes the Min's output. Returns k by Relu name."""
    caps = {}
    for node in list(graph.nodes):
        readers = node.outputs[0].outputs if node.op == "Relu" else []
        if len(readers) != 1 or readers[0].op != "Min" or len(readers[0].inputs) != 2:
            continue
        cap_min = readers[0]
        k = cap_min.inputs[1] if cap_min.inputs[0] is node.outputs[0] else cap_min.inputs[0]
        if not isinstance(k, gs.Constant) or node.outputs[0] in graph.outputs:
            continue
        caps[node.name] = k
        node.outputs = list(cap_min.outputs)
        cap_min.inputs, cap_min.outputs = [], []
    graph.cleanup()
    return caps


def _neuron_op(node: gs.Node, capped: bool, ctx: PassContext) -> tuple[str, dict[str, float | str]]:
    """The snn op for the ReLU (`capped`: one whose count a cap input bounds, _fuse_caps) or capped
    ReLU Clip(0, 1) `node` under --spikes (IF_NEURON_OP, CAPPED_IF_NEURON_OP) and its attributes
    beyond threshold and v_init (binary's reset, multi's floor). SnnError for a capped ReLU under
    multi, whose neurons have no cap of one spike a step."""
    spikes = ctx.options.spikes
    op = IF_NEURON_OP[spikes] if node.op == "Relu" and not capped else CAPPED_IF_NEURON_OP.get(spikes)
    if op is None:
        raise node_error(
            ctx,
            node,
            f"a capped ReLU converts by capping an IF neuron's rate at one spike a step, which --spikes {spikes} "
            "neurons do not do",
            hint=f"compile with --spikes {', '.join(CAPPED_IF_NEURON_OP)}",
        )
    if spikes == "binary":
        return op, {"reset": ctx.options.reset}
    floor = ctx.options.v_min if spikes == "multi" else None
    return op, {} if floor is None else {"v_min": float(floor)}


def refuse_unconvertible(graph: gs.Graph, ctx: PassContext) -> None:
    """Raise SnnError for the first node IF neurons cannot convert (op_support.RATE), naming it and
    the way out (`use --neuron signgd` where signGD converts it)."""
    op_support.refuse_unconvertible(op_support.RATE, graph, ctx)
