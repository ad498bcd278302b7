"""time_batch: fold time into the batch, compute the time-invariant prefix once, decode outputs.

After this pass the graph takes the ANN's inputs plus `timesteps` (int64 scalar, default from
the options). Everything that does not depend on a neuron runs once on [B, ...]; where such a
tensor meets the time-varying part it is tiled to [T*B, ...] (t-major), except at a neuron whose
op has a constant-input form (ir/neurons.py NeuronOp.constant_input_op, e.g.
`snn.IFNeuronConstantInput`), which it becomes, reading the current once. Linear ops run over
[T*B, ...]; each neuron scans over T. Every ANN output y becomes the running mean of the output
layer over t (`snn.RateDecoder`): `<y>_per_step` [T, B, ...] and `<y>` [B, ...] after T steps.
"""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from onnx_snn.ir.contract import PER_STEP_SUFFIX, TIMESTEPS_INPUT, folded_dim
from onnx_snn.ir.function_parts import SNN_DOMAIN
from onnx_snn.ir.neurons import NEURON_OPS
from onnx_snn.passes.base import PassContext, declare, require
from onnx_snn.passes.graph_utils import fresh_name, is_activation, time_variant_tensors

SPEC = declare("time_batch", needs={"spiking"}, provides={"time_batched"})


def postcondition(graph: gs.Graph, ctx: PassContext) -> None:
    """`timesteps` is an input; each output y has its y_per_step beside it, or is a statistics output."""
    names = {o.name for o in graph.outputs}
    require(TIMESTEPS_INPUT in {i.name for i in graph.inputs}, "no timesteps input")
    decoded = [n for n in names if not n.endswith(PER_STEP_SUFFIX)]
    require(all(n + PER_STEP_SUFFIX in names for n in decoded), "an output has no per-step read-out")


def run(graph: gs.Graph, ctx: PassContext) -> gs.Graph:
    """Pre: spikified graph (one-step neurons). Post: graph over T timesteps with time folded into
    the batch; outputs <y> [B,...] and <y>_per_step [T,B,...] decoded as running means by
    snn.RateDecoder."""
    timesteps = gs.Variable(TIMESTEPS_INPUT, dtype=np.int64, shape=[])
    graph.inputs.append(timesteps)
    ctx.input_defaults[TIMESTEPS_INPUT] = np.asarray(ctx.options.timesteps, dtype=np.int64)
    first = graph.inputs[0].shape[0] if graph.inputs and graph.inputs[0].shape else None
    b = _Builder(graph, timesteps, batch=first if isinstance(first, str) else "batch")
    stateful = [n for n in graph.nodes if n.domain == SNN_DOMAIN]
    for node in stateful:
        node.inputs[NEURON_OPS[node.op].input_index(TIMESTEPS_INPUT)] = timesteps
    decoded = {o.name: n for n in stateful if _role(n) == "decoder" for o in n.outputs}
    variant = time_variant_tensors(graph)
    for tensor in graph.tensors().values():
        if tensor.name in variant and tensor.shape and tensor.name not in decoded:
            tensor.shape = [folded_dim(tensor.shape[0], b.batch)] + list(tensor.shape[1:])
    for node in list(graph.nodes):
        if not any(o.name in variant for o in node.outputs) or _role(node) == "encoder":
            continue  # an encoder reads its analog input once, as [B, ...]
        constant_op = NEURON_OPS[node.op].constant_input_op if _role(node) == "neuron" else None
        if constant_op is not None and node.inputs[0].name not in variant:
            node.op = constant_op  # the same current every step: read once, not tiled
            continue
        for i, tensor in enumerate(node.inputs):
            if _is_batched_data(tensor) and tensor.name not in variant:
                node.inputs[i] = b.tile_over_time(tensor)
    outputs = []
    for out in graph.outputs:
        if out.name in decoded:  # the decoder already gives the output after every step
            per_step = decoded[out.name].outputs[0]
            per_step.name = out.name + PER_STEP_SUFFIX
            per_step.shape = ["T", b.batch] + list(out.shape[1:]) if out.shape else None
            outputs += [out, per_step]
            continue
        source = out if out.name in variant else b.tile_over_time(out)
        outputs += list(b.rate_decoder(source, out))
    graph.outputs = outputs
    return graph.cleanup().toposort()


def _role(node: gs.Node) -> str | None:
    """The NeuronOp role of an snn node ("neuron", "encoder", "pool", "decoder"), None for other nodes."""
    return NEURON_OPS[node.op].role if node.domain == SNN_DOMAIN else None


def _is_batched_data(tensor: gs.Tensor) -> bool:
    """A non-constant float tensor with a batch axis (not a shape, index or weight)."""
    return (
        is_activation(tensor)
        and tensor.dtype in (np.float32, np.float16)
        and (tensor.shape is None or len(tensor.shape) >= 1)
    )


class _Builder:
    """Emits the small standard-op subgraphs time_batch needs, sharing the T-derived tensors."""

    def __init__(self, graph: gs.Graph, timesteps: gs.Variable, batch: str) -> None:
        self.graph, self.timesteps, self.batch = graph, timesteps, batch
        self._t1: gs.Variable | None = None

    def _node(self, op: str, inputs: list, dtype=np.float32, shape=None, **attrs) -> gs.Variable:
        out = gs.Variable(fresh_name(op.lower()), dtype=dtype, shape=shape)
        self.graph.nodes.append(gs.Node(op, name=fresh_name(op), inputs=inputs, outputs=[out], attrs=attrs))
        return out

    @staticmethod
    def _i64(values) -> gs.Constant:
        return gs.Constant(fresh_name("c"), np.asarray(values, dtype=np.int64))

    @property
    def t1(self) -> gs.Variable:
        """T as a 1-element int64 tensor."""
        if self._t1 is None:
            self._t1 = self._node("Reshape", [self.timesteps, self._i64([1])], dtype=np.int64, shape=[1])
        return self._t1

    def tile_over_time(self, tensor: gs.Tensor) -> gs.Variable:
        """[B, ...] -> [T*B, ...], the whole batch repeated T times (t-major)."""
        rank = len(tensor.shape)
        repeats = (
            self._node("Concat", [self.t1, self._i64([1] * (rank - 1))], dtype=np.int64, shape=[rank], axis=0)
            if rank > 1
            else self.t1
        )
        shape = [folded_dim(tensor.shape[0], self.batch)] + list(tensor.shape[1:])
        return self._node("Tile", [tensor, repeats], dtype=tensor.dtype, shape=shape)

    def rate_decoder(self, tensor: gs.Tensor, like: gs.Tensor) -> tuple[gs.Variable, gs.Variable]:
        """An `snn.RateDecoder` of a [T*B, ...] tensor, fresh at step 0: its mean over steps 1..t,
        (after T steps [B, ...] named like `like`, per step [T, B, ...])."""
        name, batch = like.name, self.batch
        like.name = fresh_name(name)
        final = gs.Variable(name, dtype=like.dtype, shape=[batch] + list(like.shape[1:]))
        per_step = gs.Variable(name + PER_STEP_SUFFIX, dtype=like.dtype, shape=["T", batch] + list(like.shape[1:]))
        total = gs.Variable(fresh_name(f"{name}_sum_T"), dtype=like.dtype)
        fresh = gs.Constant(fresh_name("fresh_sum"), np.asarray(np.nan, dtype=np.float32))
        self.graph.nodes.append(
            gs.Node(
                "RateDecoder",
                name=fresh_name("rate_decoder"),
                domain=SNN_DOMAIN,
                inputs=[tensor, self.timesteps, fresh, self._i64(0)],
                outputs=[per_step, final, total],
            )
        )
        return final, per_step
