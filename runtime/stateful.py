"""The stateful form of a compiled SNN: its neuron state as graph inputs and outputs.

A compiled model starts every run fresh: each `snn` op reads a NaN constant as its initial state
and step offset 0. `expose_state` rewires those inputs to graph inputs and adds each op's final
state as a graph output, so that a caller can continue a simulation where the last run stopped
(streaming) or split one run into time chunks. Feeding back every final state and the number of
steps done gives the same bits as one long run (see runtime.neurons.NeuronOp).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper

from onnx_snn.ir.contract import STATE_IN_PREFIX, STATE_OUT_PREFIX, STEP_OFFSET_INPUT, TIMESTEPS_INPUT
from onnx_snn.ir.function_parts import SNN_DOMAIN
from onnx_snn.ir.neurons import NEURON_OPS


@dataclass(frozen=True)
class StatePort:
    """One carried state: read from graph input `input`, written to graph output `output` after
    the run's last step, in the numpy type `dtype`, with `rank` axes ([B, ...])."""

    input: str
    output: str
    dtype: np.dtype
    rank: int

    def fresh(self) -> np.ndarray:
        """The value meaning "fresh": NaN of the port's type, shape [1] * rank (it broadcasts)."""
        return np.full((1,) * self.rank, np.nan, dtype=self.dtype)


def expose_state(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[StatePort]]:
    """A copy of `model` whose `snn` ops read their state from graph inputs `state_in/<node>/<input>`,
    write it to graph outputs `state_out/<node>/<input>`, and read the steps already done from the
    int64 scalar graph input `t0`. `timesteps` loses its default and becomes a plain input: an
    input with an initializer cannot be bound by onnxruntime's IOBinding. Returns the model and
    its state ports (empty for a model without stateful ops, e.g. TTFS)."""
    stateful = onnx.ModelProto()
    stateful.CopyFrom(model)
    graph = stateful.graph
    kept = [t for t in graph.initializer if t.name != TIMESTEPS_INPUT]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    outputs_of = {f.name: list(f.output) for f in stateful.functions if f.domain == SNN_DOMAIN}
    types, ranks = _element_types(graph), _ranks(graph)
    read = {name for n in graph.node for name in n.input} | {o.name for o in graph.output}
    ports: list[StatePort] = []
    offsets = False
    for index, node in enumerate(graph.node):
        op = NEURON_OPS.get(node.op_type) if node.domain == SNN_DOMAIN else None
        if op is None or not (op.states or op.step_offset):  # an encoder may only count steps
            continue
        label = node.name or f"{node.op_type}_{index}"
        for state_in, state_out, like in op.states:
            slot, out_slot = op.input_index(state_in), outputs_of[node.op_type].index(state_out)
            elem = types.get(node.input[slot], TensorProto.FLOAT)
            rank = max(ranks.get(node.input[op.input_index(name)], 0) for name in like)
            if rank == 0:
                raise ValueError(f"{label}: the rank of its input {like[0]!r} is unknown; cannot expose its state")
            port = StatePort(
                f"{STATE_IN_PREFIX}{label}/{state_in}",
                f"{STATE_OUT_PREFIX}{label}/{state_in}",
                helper.tensor_dtype_to_np_dtype(elem),
                rank,
            )
            node.input[slot] = port.input
            while len(node.output) <= out_slot:
                node.output.append("")
            current = node.output[out_slot]
            if current and current in read:  # another node reads it: copy it out
                graph.node.append(helper.make_node("Identity", [current], [port.output]))
            else:
                node.output[out_slot] = port.output
            # a known rank lets onnxruntime type the neuron's Scan body (it refuses unshaped outputs)
            for values, name in ((graph.input, port.input), (graph.output, port.output)):
                values.append(helper.make_tensor_value_info(name, elem, [f"{name}:{axis}" for axis in range(rank)]))
            ports.append(port)
        if op.step_offset:
            node.input[op.input_index(op.step_offset)] = STEP_OFFSET_INPUT
            offsets = True
    if offsets:
        graph.input.append(helper.make_tensor_value_info(STEP_OFFSET_INPUT, TensorProto.INT64, []))
    return stateful, ports


def _element_types(graph: onnx.GraphProto) -> dict[str, int]:
    """The element type of every initializer, Constant output and typed value in `graph`."""
    types = {t.name: t.data_type for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            value = next((a.t for a in node.attribute if a.name == "value"), None)
            if value is not None:
                types[node.output[0]] = value.data_type
    for info in [*graph.value_info, *graph.input, *graph.output]:
        if info.type.tensor_type.elem_type:
            types.setdefault(info.name, info.type.tensor_type.elem_type)
    return types


def _ranks(graph: onnx.GraphProto) -> dict[str, int]:
    """The rank of every tensor of `graph` whose shape is declared."""
    ranks = {t.name: len(t.dims) for t in graph.initializer}
    for info in [*graph.value_info, *graph.input, *graph.output]:
        if info.type.tensor_type.HasField("shape"):
            ranks[info.name] = len(info.type.tensor_type.shape.dim)
    return ranks
