"""spikify_ttfs: turn a windowed ReLU net into a time-to-first-spike SNN in closed form (spec §6.1).

Model B1 (default): every graph input v becomes `snn.TTFSEncoder` spike times in [0, 1]; every
ReLU becomes `snn.TTFSNeuron`, whose output is the spike time relative to the layer's window
start, tau = B_n − max(a, 0) (spec rule §6.4a: offsets, not absolute times, in float32). Layout
ops act on spike times unchanged. Every other reader gets the synaptic read x = B_n − tau, the
PSP that a spike has integrated by the reader's window start (with the window correction of a
skip input included). MaxPool reads it too: the largest read, B_n − min(tau), is the earliest
spike's (spec §4), and the sign-aware pool s·MaxPool(s·x) takes the latest spike where s = −1;
one subtraction per layer thus serves pooling and synapses alike. The outputs stay the ANN's logits (the read-out
potential at t_read). `--ttfs-model a` builds model A instead (see ttfs_model_a).

With --stats the model also outputs, per layer, `spike_times/<layer>` (absolute times),
`spikes/<layer>` (spikes per sample: tau < B_n) and `synops/<layer>` (synaptic events per
sample: every spike times the number of non-zero weights it reaches).
"""
from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from onnx_snn.errors import SnnError
from onnx_snn.runtime.contract import SPIKE_TIMES_PREFIX, SPIKES_PREFIX, SYNOPS_PREFIX

from . import ttfs_model_a
from .base import PassContext
from .graph_utils import SNN_DOMAIN, const, constant_value, fresh_name, node_label
from .spikify import RATE_COMPATIBLE_OPS, SIGNGD_NONLINEARITIES
from .ttfs_fanout import fan_out
from .ttfs_graph import SPIKE_LAYOUT_OPS, SPIKE_POOL_OPS

NAME = "spikify_ttfs"
CONTRACT = ("Pre: windowed TTFS-ready graph (ttfs_windows). Post: inputs are TTFSEncoder spike times, every "
            "Relu a TTFSNeuron, MaxPools earliest-spike pools, linear ops read x = B − tau; outputs unchanged "
            "(logits in ANN units), plus per-layer spike statistics with --stats.")

#: ops a TTFS net may hold besides Relu: linear maps of the decoded activations, and spike-time ops
TTFS_OPS = RATE_COMPATIBLE_OPS | SPIKE_POOL_OPS


def run(graph: gs.Graph, ctx: PassContext) -> gs.Graph:
    if ctx.options.ttfs_model == "a":
        return ttfs_model_a.build(graph, ctx)
    windows = ctx.metadata["ttfs"]
    spikes: dict[str, tuple[gs.Tensor, float, float]] = {}  # layer -> (tau, B, t_min)
    for name, entry in ctx.metadata["ttfs_inputs"].items():
        spikes[name] = (_encode(graph, name, entry), 1.0, 0.0)
    for node in [n for n in graph.nodes if n.op == "Relu"]:
        layer = windows["layers"][node.name]
        node.op, node.domain = "TTFSNeuron", SNN_DOMAIN
        node.inputs.append(const(f"{node.name}_window", np.asarray(layer["B"], dtype=np.float32)))
        spikes[node.name] = (node.outputs[0], layer["B"], layer["t_min"])
    stats = []
    for layer, (tau, width, start) in spikes.items():
        reads = _SpikeRegion(graph, width).convert(tau)
        if ctx.options.stats and layer in windows["layers"]:
            stats += _statistics(graph, layer, tau, width, start, reads)
    graph.outputs.extend(stats)
    ctx.metadata["neuron_layers"] = list(windows["layers"])
    return graph.cleanup().toposort()


def _encode(graph: gs.Graph, name: str, entry: dict) -> gs.Tensor:
    """Replace the input's x̃ = (v − p)/(q − p) by a TTFSEncoder on v; return its spike times."""
    v = next(t for t in graph.inputs if t.name == name)
    x_tilde = graph.tensors()[entry["encoded"]]
    low, high = entry["range"]
    times = gs.Variable(fresh_name(f"{name}_spike_times"), dtype=v.dtype, shape=v.shape)
    graph.nodes.append(gs.Node("TTFSEncoder", name=fresh_name(f"{name}_encoder"), domain=SNN_DOMAIN,
                               inputs=[v, const("p", np.asarray(low, dtype=np.float32)),
                                       const("q", np.asarray(high, dtype=np.float32))], outputs=[times]))
    for reader in list(x_tilde.outputs):
        for i, tensor in enumerate(reader.inputs):
            if tensor is x_tilde:
                reader.inputs[i] = times
    return times


class _SpikeRegion:
    """Converts the ops between one layer's spike tensor and its readers: layout ops act on the spike
    times; every other reader gets the synaptic read x = B − tau."""

    def __init__(self, graph: gs.Graph, width: float) -> None:
        self.graph, self.width = graph, width
        self.reads: list[gs.Tensor] = []

    def convert(self, tau: gs.Tensor) -> list[gs.Tensor]:
        """Convert everything downstream of `tau` up to its readers; return the synaptic reads."""
        readers = [n for n in tau.outputs if n.op not in SPIKE_LAYOUT_OPS | {"Shape"}]
        for node in [n for n in tau.outputs if n.op in SPIKE_LAYOUT_OPS]:
            self.convert(node.outputs[0])
        if readers or tau in self.graph.outputs:
            self._decode(tau, readers)
        return self.reads

    def _decode(self, tau: gs.Tensor, readers: list[gs.Node]) -> None:
        """x = B − tau for the `readers` of `tau` (and for a graph output holding it)."""
        x = gs.Variable(fresh_name(f"{tau.name}_x"), dtype=tau.dtype, shape=tau.shape)
        self.graph.nodes.append(gs.Node("Sub", name=fresh_name("synaptic_read"),
                                        inputs=[const("window", np.asarray(self.width, dtype=np.float32)), tau],
                                        outputs=[x]))
        self.reads.append(x)
        for node in readers:
            for i, tensor in enumerate(node.inputs):
                if tensor is tau:
                    node.inputs[i] = x
        if tau in self.graph.outputs:
            index = self.graph.outputs.index(tau)
            x.name, tau.name = tau.name, fresh_name(tau.name)
            self.graph.outputs[index] = x


def _synaptic_targets(x: gs.Tensor) -> list[tuple[gs.Node, gs.Tensor]]:
    """The (linear op, tensor it reads) pairs that a synaptic read reaches through pooling (MaxPool
    and the sign Muls of a sign-aware pool) and layout ops: where its spikes meet synapses."""
    targets = []
    for node in x.outputs:
        if node.op == "Shape":
            continue
        if node.op in SPIKE_LAYOUT_OPS | SPIKE_POOL_OPS or _is_sign(node):
            targets += _synaptic_targets(node.outputs[0])
        else:
            targets.append((node, x))
    return targets


def _is_sign(node: gs.Node) -> bool:
    """A Mul by a constant of ±1 entries (one side of a sign-aware pool)."""
    signs = [constant_value(t) for t in node.inputs] if node.op == "Mul" else []
    return any(v is not None and v.size and np.all(np.abs(v) == 1.0) for v in signs)


def _statistics(graph: gs.Graph, layer: str, tau: gs.Tensor, width: float, start: float,
                reads: list[gs.Tensor]) -> list[gs.Variable]:
    """Per-sample outputs of one layer: absolute spike times, spike count, and synaptic events (each
    spike that reaches a linear op, after pooling, times its non-zero fan-out there)."""
    per_sample = list(tau.shape[:1]) if tau.shape else None

    def emit(op: str, inputs: list, name: str | None = None, shape: list | None = None, **attrs) -> gs.Variable:
        out = gs.Variable(name or fresh_name(op.lower()), dtype=np.bool_ if op in ("Less", "Greater") else np.float32,
                          shape=shape)
        graph.nodes.append(gs.Node(op, name=fresh_name(f"stats_{op}"), inputs=inputs, outputs=[out], attrs=attrs))
        return out

    def per_sample_sum(values: gs.Tensor, name: str) -> gs.Variable:
        flat = emit("Flatten", [values], axis=1)
        return emit("ReduceSum", [flat, const("axes", np.asarray([1], dtype=np.int64))], name=name,
                    shape=per_sample, keepdims=0)

    zero = const("zero", np.asarray(0.0, dtype=np.float32))
    times = emit("Add", [tau, const("t_min", np.asarray(start, dtype=np.float32))],
                 name=f"{SPIKE_TIMES_PREFIX}{layer}", shape=tau.shape)
    fired = emit("Cast", [emit("Less", [tau, const("window", np.asarray(width, dtype=np.float32))])], to=1)
    outputs = [times, per_sample_sum(fired, f"{SPIKES_PREFIX}{layer}")]
    events = []
    for reader, x in (target for read in reads for target in _synaptic_targets(read)):
        reached = emit("Cast", [emit("Greater", [x, zero])], to=1)  # x = B − tau > 0: a spike in the window
        fan = fan_out(reader, x)
        events.append(per_sample_sum(emit("Mul", [reached, const("fan_out", fan)]) if fan is not None else reached,
                                     fresh_name("synops_part")))
    if events:
        outputs.append(emit("Sum", events, name=f"{SYNOPS_PREFIX}{layer}", shape=per_sample))
    return outputs


def refuse_unconvertible(graph: gs.Graph, ctx: PassContext) -> None:
    """Raise SnnError for the first node a TTFS net cannot hold: a non-ReLU nonlinearity (signGD
    converts it), an op outside the linear/spike sets, a product of activations, or a MaxPool that
    does not read one layer's spikes (such as the sum of a residual: no single spike to take)."""
    for node in graph.nodes:
        if node.op == "Relu":
            continue
        if node.op in SIGNGD_NONLINEARITIES - SPIKE_POOL_OPS:
            raise SnnError("TTFS neurons convert only ReLU nonlinearities", path=ctx.source, node=node_label(node),
                           op=node.op, hint="use --neuron signgd")
        if node.op not in TTFS_OPS or (node.domain or "") not in ("", "ai.onnx"):
            raise SnnError("op is not supported by the TTFS conversion", path=ctx.source, node=node_label(node),
                           op=node.op, hint="replace it in the ANN, or try --neuron signgd")
        if node.op in ("Mul", "Div") and sum(constant_value(t) is None for t in node.inputs) > 1:
            raise SnnError("a product of two activations has no TTFS mapping", path=ctx.source,
                           node=node_label(node), op=node.op, hint="use --neuron signgd")
        if node.op in SPIKE_POOL_OPS and not _reads_one_layer(graph, node):
            raise SnnError("MaxPool reads a sum or mix of layers (e.g. a residual Add), which has no single "
                           "earliest spike, so its windows cannot be aligned", path=ctx.source,
                           node=node_label(node), op=node.op, hint="put a ReLU before the MaxPool or use --neuron signgd")


def _reads_one_layer(graph: gs.Graph, pool: gs.Node) -> bool:
    """Whether `pool` reads, through layout ops, MaxPools and per-channel affine constants, one ReLU
    output or a graph input."""
    tensor = pool.inputs[0]
    while tensor not in graph.inputs:
        node = tensor.inputs[0] if tensor.inputs else None
        if node is None:
            return False
        if node.op == "Relu":
            return True
        data = [t for t in node.inputs if constant_value(t) is None]
        movable = node.op in SPIKE_LAYOUT_OPS | SPIKE_POOL_OPS or node.op in ("Mul", "Add", "Sub", "Div")
        if not movable or len(data) != 1:
            return False
        tensor = data[0]
    return True
