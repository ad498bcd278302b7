"""spikify_maxpool: every MaxPool whose input changes over time (IF spikes, Poisson input spikes, or
anything computed from them) becomes a stateful `snn.IFMaxPool` (compiler/ir/if_maxpool.py), the
rise of the window maximum of the running spike counts: an output's spike count is the largest
count of its window, so its rate is the max of their rates, as the ANN's MaxPool of the rates that
the IF neurons code. normalize has carried each MaxPool's scale through unchanged (a max commutes
with a positive per-channel scale), so the counts need no rescaling.

A MaxPool of a tensor that does not depend on time (the analog input, or the time-invariant prefix
that time_batch computes once) is kept as it is: its input is the same at every step, so its
ordinary max is already the max of the rates. The pass runs after encode_input, whose Poisson
spikes make the input time-variant.
"""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from onnx_snn.ir.function_parts import SNN_DOMAIN
from onnx_snn.passes.base import PassContext, declare, require
from onnx_snn.passes.graph_utils import fresh_name, in_default_domain, time_variant_tensors

SPEC = declare("spikify_maxpool", needs={"spiking"}, provides={"spiking_pools"})


def postcondition(graph: gs.Graph, ctx: PassContext) -> None:
    """Each MaxPool left reads a time-invariant tensor; each snn.IFMaxPool a time-variant one."""
    variant = time_variant_tensors(graph)
    for node in graph.nodes:
        if node.op == "MaxPool" and in_default_domain(node):
            require(node.inputs[0].name not in variant, f"MaxPool {node.name} reads spikes")
        if node.op == "IFMaxPool" and node.domain == SNN_DOMAIN:
            require(node.inputs[0].name in variant, f"IFMaxPool {node.name} reads a time-invariant tensor")


def run(graph: gs.Graph, ctx: PassContext) -> gs.Graph:
    """Pre: spikified IF graph (one-step neurons, the input encoded). Post: every MaxPool whose
    input depends on an snn op is an snn.IFMaxPool (same attributes, run for one timestep, fresh
    counts; time_batch sets T); a MaxPool of a time-invariant tensor is unchanged."""
    variant = time_variant_tensors(graph.toposort())
    one_step = gs.Constant(fresh_name("one_timestep"), np.asarray(1, dtype=np.int64))
    fresh = gs.Constant(fresh_name("fresh_counts"), np.asarray(np.nan, dtype=np.float32))
    for node in graph.nodes:
        if node.op != "MaxPool" or not in_default_domain(node) or node.inputs[0].name not in variant:
            continue
        counts = gs.Variable(fresh_name(f"{node.name}_c_T"), dtype=np.float32)
        node.op, node.domain = "IFMaxPool", SNN_DOMAIN
        node.inputs = [node.inputs[0], one_step, fresh]
        node.outputs = [node.outputs[0], counts]  # its Indices are unread (op_support.RATE)
    return graph.cleanup()
