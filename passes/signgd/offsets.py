"""signgd_offsets: measure each signGD tracker's offset o and bias β (spec signgd-dynamics §4).

Excite and depress passes: every encoder and neuron is replaced by a source that emits all ones
(then all zeros), and onnxruntime records the current z at every neuron operand and decoder.
Then o = z(1) + z(0) = A·1 + 2b and β = z(0) = b, so that 2z_t − o = A·(2s_t − 1): each tracker
follows A·v^up + b, the affine map of its upstream output estimates.
"""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from onnx_snn.errors import SnnError
from onnx_snn.ir.function_parts import SNN_DOMAIN
from onnx_snn.passes.base import PassContext, declare, require
from onnx_snn.passes.graph_utils import fresh_name
from onnx_snn.probe import observe

SPEC = declare("signgd_offsets", needs={"spiking"}, provides={"offsets"})

#: per op: the input positions of its currents, and where each current's (offset, bias) pair starts
CURRENTS = {"SignGDNeuron": ((0,), (2,)), "SignGDBinaryNeuron": ((0, 1), (3, 5)), "SignGDDecoder": ((0,), (2,))}


def postcondition(graph: gs.Graph, ctx: PassContext) -> None:
    """Every signGD neuron's and decoder's offset and bias inputs are constants."""
    for node in graph.nodes:
        if node.domain == SNN_DOMAIN and node.op in CURRENTS:
            for position in CURRENTS[node.op][1]:
                require(
                    all(isinstance(t, gs.Constant) for t in node.inputs[position : position + 2]),
                    f"{node.name} has a non-constant offset or bias",
                )


def run(graph: gs.Graph, ctx: PassContext) -> gs.Graph:
    """Pre: spikify_signgd output. Post: same graph with every SignGD neuron's and decoder's offset
    and bias inputs set from the excite (all ones) and depress (all zeros) passes."""
    targets = [n for n in graph.nodes if n.domain == SNN_DOMAIN and n.op in CURRENTS]
    currents = [n.inputs[i] for n in targets for i in CURRENTS[n.op][0]]
    excited = _probe(graph, currents, 1.0, ctx)
    depressed = _probe(graph, currents, 0.0, ctx)
    index = 0
    for node in targets:
        for position in CURRENTS[node.op][1]:
            z1, z0 = excited[index], depressed[index]
            node.inputs[position] = gs.Constant(fresh_name(f"{node.name}_offset"), (z1 + z0).astype(np.float32))
            node.inputs[position + 1] = gs.Constant(fresh_name(f"{node.name}_bias"), z0.astype(np.float32))
            index += 1
    return graph


def _probe(graph: gs.Graph, currents: list[gs.Tensor], level: float, ctx: PassContext) -> list[np.ndarray]:
    """The currents with every encoder and neuron emitting `level`, for one sample (batch 1)."""
    probe = graph.copy()
    for node in [n for n in probe.nodes if n.domain == SNN_DOMAIN]:
        if node.op == "SignGDDecoder":
            node.outputs.clear()
            node.inputs.clear()
            continue
        sources = [t for t in node.inputs[: len(CURRENTS.get(node.op, ((0,),))[0])]]
        zeroed = [_new(probe, "Mul", [t, gs.Constant(fresh_name("zero"), np.zeros((), np.float32))]) for t in sources]
        shape_of = zeroed[0] if len(zeroed) == 1 else _new(probe, "Add", zeroed)
        spikes = node.outputs[0]
        node.outputs.clear()
        node.inputs.clear()
        probe.nodes.append(
            gs.Node(
                "Add",
                name=fresh_name("probe_source"),
                outputs=[spikes],
                inputs=[shape_of, gs.Constant(fresh_name("level"), np.asarray(level, np.float32))],
            )
        )
    probe.toposort()
    feed = {}
    for graph_input in probe.inputs:
        dims = list(graph_input.shape or [])
        if not all(isinstance(d, int) for d in dims[1:]):
            raise SnnError(
                f"signGD calibration needs static non-batch dims of input '{graph_input.name}'", path=ctx.source
            )
        feed[graph_input.name] = np.zeros([1] + dims[1:], dtype=np.float32)
    return next(observe(probe, currents, [feed], prune=True)).arrays


def _new(graph: gs.Graph, op: str, inputs: list) -> gs.Variable:
    out = gs.Variable(fresh_name(op.lower()), dtype=np.float32)
    graph.nodes.append(gs.Node(op, name=fresh_name(op), inputs=inputs, outputs=[out]))
    return out
