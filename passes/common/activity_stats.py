"""activity_stats: per-layer spike counts and synaptic operations as outputs (--stats), and the
dense ANN's multiply-accumulates in the metadata, for the energy report (runtime.energy).

A synaptic operation is one accumulate: a spike reaching one non-zero synapse. Spikes travel to
the weights of the next Conv, Gemm or MatMul through layout ops (Flatten, Reshape, Transpose,
Squeeze, Unsqueeze), average pooling (each input cell carries its pooled cell's fan-out), sums
(residual Adds: each operand's spikes are events of their own) and scalings by a constant; a
neuron that reads spikes directly (an identity shortcut) takes one accumulate per spike. A max
pool of spikes (`snn.IFMaxPool`) is a spiking layer of its own: each spike it reads is one
accumulate (into the spike count of its input cell), and its output spikes, one per rise of a
window's largest count, have the fan-out of whatever reads them. So a layer's synaptic
operations are Σ_t Σ_i s_{t,i}·fan_out_i with `fan_out` fixed at compile time.
A linear op that reads analog values (the encoded input, or a time-invariant prefix computed
once) does multiply-accumulates instead, counted densely.
"""

from __future__ import annotations

import math
from typing import Any, cast

import numpy as np
import onnx_graphsurgeon as gs

from onnx_snn.ir.contract import SPIKES_PREFIX, SYNOPS_PREFIX, TIMESTEPS_INPUT, is_folded
from onnx_snn.ir.function_parts import SNN_DOMAIN
from onnx_snn.ir.neurons import NEURON_OPS
from onnx_snn.ir.signgd import SPIKES_DEFAULT
from onnx_snn.options import SIGNGD_SPIKE_KINDS
from onnx_snn.passes.base import PassContext, declare, require
from onnx_snn.passes.common.fanout import fan_out
from onnx_snn.passes.graph_utils import constant_value, fresh_name, static_shape

SPEC = declare("activity_stats", needs={"time_batched"}, provides={"activity"})

LINEAR_OPS = frozenset({"Conv", "Gemm", "MatMul"})
LAYOUT_OPS = frozenset({"Flatten", "Reshape", "Squeeze", "Unsqueeze", "Identity"})
SUM_OPS = frozenset({"Add", "Sub", "Sum"})
#: the signGD spike kinds whose neurons count their spikes (all but the spec's one-bit "binary")
COUNTED_SIGNGD_KINDS = frozenset(SIGNGD_SPIKE_KINDS) - {"binary"}


def postcondition(graph: gs.Graph, ctx: PassContext) -> None:
    """The activity statistics are recorded for every neuron layer."""
    require(ctx.state.activity is not None, "no activity recorded")


def run(graph: gs.Graph, ctx: PassContext) -> gs.Graph:
    """Pre: time-batched rate-coded graph. Post: with --stats, outputs spikes/<layer> and
    synops/<layer> [B] (spikes and synaptic operations over all steps per sample); metadata
    `activity` always."""
    spiking = [n for n in graph.nodes if _emits_spikes(n)]
    approximated: set[str] = set()
    fan_outs = {n.name: _tensor_fan_out(n.outputs[0], approximated) for n in spiking} if ctx.options.stats else {}
    spike_fed = _spike_fed_linear_ops(spiking)
    linear = [n for n in graph.nodes if n.op in LINEAR_OPS and constant_value(n.inputs[1]) is not None]
    shapes = {n.name: static_shape(n.outputs[0]) for n in spiking}
    ctx.state.activity = {
        # graph order; 0 where the per-sample shape is not known at compile time
        "neurons": [[n.name, math.prod(shape) if (shape := shapes[n.name]) else 0] for n in spiking],
        "ann_macs": {n.name: _dense_macs(n) for n in linear},
        "analog_macs": {n.name: _dense_macs(n) for n in linear if n.name not in spike_fed},
        "analog_per_step": sorted(n.name for n in linear if n.name not in spike_fed and _time_variant(n)),
        "fan_out_approximated": sorted(approximated),
    }
    unknown = sorted(name for name, shape in shapes.items() if shape is None)
    if unknown:
        ctx.note(f"neuron counts (and firing rates) are unknown at {', '.join(unknown)} (shape not static)")
    if approximated:
        ctx.note(f"synaptic operations count one per spike at {', '.join(sorted(approximated))} (fan-out unknown)")
    if ctx.options.stats:
        steps = next(t for t in graph.inputs if t.name == TIMESTEPS_INPUT)
        for node in spiking:
            graph.outputs += _layer_outputs(graph, node, fan_outs[node.name], steps)
    return graph.cleanup().toposort()


def _emits_spikes(node: gs.Node) -> bool:
    """A neuron op, an encoder whose output is binary (Poisson, or signGD's spike codec), or a
    pool (snn.IFMaxPool) that reads spikes, which it passes on as spikes of its own."""
    if node.domain != SNN_DOMAIN or node.op not in NEURON_OPS:
        return False
    role = NEURON_OPS[node.op].role
    if role == "pool":
        return _reads_spikes(node.inputs[0])
    return role == "neuron" or (
        role == "encoder" and (node.op == "PoissonEncoder" or node.attrs.get("codec") == "spike")
    )


def _reads_spikes(tensor: gs.Tensor) -> bool:
    """`tensor` holds spikes: the output of a node that emits them, through layout ops only (a
    pool of currents, or of spikes scaled by a constant, passes on values that are not spikes)."""
    node = tensor.inputs[0] if tensor.inputs else None
    while node is not None and node.domain != SNN_DOMAIN and (node.op in LAYOUT_OPS or node.op == "Transpose"):
        node = node.inputs[0].inputs[0] if node.inputs[0].inputs else None
    return node is not None and _emits_spikes(node)


def _time_variant(node: gs.Node) -> bool:
    shape = node.inputs[0].shape
    return bool(shape) and isinstance(shape[0], str) and is_folded(shape[0])


def _tensor_fan_out(tensor: gs.Tensor, approximated: set[str]) -> np.ndarray | None:
    """[per-sample shape of `tensor`]: the synaptic operations one spike at each element causes;
    None when that shape is not static (a reader of it then counts one per spike)."""
    shape = static_shape(tensor)
    if shape is None:
        approximated.update(reader.name for reader in tensor.outputs)
        return None
    total = np.zeros(shape, dtype=np.float64)
    for reader in tensor.outputs:
        fan = _reader_fan_out(reader, tensor, shape, approximated)
        if fan is None:
            approximated.add(reader.name)
            fan = 1.0
        total += fan
    return total


def _reader_fan_out(
    reader: gs.Node, tensor: gs.Tensor, shape: tuple[int, ...], approximated: set[str]
) -> np.ndarray | float | None:
    """The fan-out that `reader` gives each element of `tensor` (per-sample `shape`); None when
    it is unknown."""
    if reader.op == "Shape":
        return 0.0
    if reader.op in LINEAR_OPS:
        fan = fan_out(reader, tensor)
        if fan is not None:
            return np.broadcast_to(fan[0], shape)
    elif reader.domain == SNN_DOMAIN:
        return 1.0  # one accumulate into a membrane (or the read-out) per spike
    else:
        return _onward_fan_out(reader, tensor, shape, approximated)
    return None


def _onward_fan_out(
    reader: gs.Node, tensor: gs.Tensor, shape: tuple[int, ...], approximated: set[str]
) -> np.ndarray | None:
    """The fan-out through `reader`, an op that passes spikes on (layout, sum, constant scaling,
    average pooling), from the fan-out of its output; None for any other op or an unknown one."""
    passes_on = (
        reader.op in LAYOUT_OPS
        or reader.op in SUM_OPS
        or reader.op == "GlobalAveragePool"
        or (reader.op == "AveragePool" and len(shape) == 3)
        or (reader.op in ("Mul", "Div") and _scaled_by_constant(reader, tensor))
        or (reader.op == "Transpose" and bool(reader.attrs.get("perm")) and reader.attrs["perm"][0] == 0)
    )
    onward = _tensor_fan_out(reader.outputs[0], approximated) if passes_on else None
    if onward is None:
        return None
    if reader.op in LAYOUT_OPS:
        return onward.reshape(shape)
    if reader.op == "Transpose":
        return onward.transpose(np.argsort([p - 1 for p in reader.attrs["perm"][1:]]))
    if reader.op == "GlobalAveragePool":
        return np.broadcast_to(onward, shape)
    if reader.op == "AveragePool":
        return _pool_back(reader, onward, shape)
    return _unbroadcast(onward, shape)


def _scaled_by_constant(node: gs.Node, tensor: gs.Tensor) -> bool:
    return node.inputs[0] is tensor and constant_value(node.inputs[1]) is not None


def _unbroadcast(values: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """`values` summed over the axes along which a tensor of `shape` was broadcast."""
    lead = values.ndim - len(shape)
    values = values.sum(axis=tuple(range(lead))) if lead > 0 else values
    axes = tuple(a for a, n in enumerate(shape) if n == 1 and values.shape[a] != 1)
    return values.sum(axis=axes, keepdims=True) if axes else values


def _pool_back(pool: gs.Node, pooled: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """[C, H, W]: the sum of the fan-outs of the pooled cells whose window holds each input cell."""
    kernel = pool.attrs["kernel_shape"]
    strides = pool.attrs.get("strides", [1, 1])
    pads = pool.attrs.get("pads", [0, 0, 0, 0])
    result = np.zeros(shape, dtype=np.float64)
    _, out_h, out_w = pooled.shape
    for a in range(kernel[0]):
        for b in range(kernel[1]):
            rows = np.arange(out_h) * strides[0] + a - pads[0]
            cols = np.arange(out_w) * strides[1] + b - pads[1]
            r_ok, c_ok = (rows >= 0) & (rows < shape[1]), (cols >= 0) & (cols < shape[2])
            # numpy's stub takes integer arrays only for `indices`; a tuple index is valid
            cells = cast(Any, (slice(None), rows[r_ok][:, None], cols[c_ok][None, :]))
            np.add.at(result, cells, pooled[:, r_ok][:, :, c_ok])
    return result


def _spike_fed_linear_ops(spiking: list[gs.Node]) -> set[str]:
    """Names of the linear ops that spikes reach (through the ops _reader_fan_out follows)."""
    fed: set[str] = set()
    frontier = [n.outputs[0] for n in spiking]
    while frontier:
        tensor = frontier.pop()
        for reader in tensor.outputs:
            if reader.op in LINEAR_OPS:
                fed.add(reader.name)
            elif reader.domain != SNN_DOMAIN and reader.op != "Shape":
                frontier += reader.outputs[:1]
    return fed


def _dense_macs(node: gs.Node) -> int:
    """Multiply-accumulates of `node` per sample in the dense ANN (0 where shapes are unknown)."""
    weight = constant_value(node.inputs[1])
    assert weight is not None  # callers pass linear ops whose weight is a constant
    out = static_shape(node.outputs[0]) or (None,) + tuple(node.outputs[0].shape[1:] if node.outputs[0].shape else ())
    try:
        if node.op == "Conv":
            return int(math.prod(int(d) for d in out[1:]) * math.prod(weight.shape[1:]))
        if node.op == "Gemm":
            return int(weight.size)
        rows = math.prod(int(d) for d in node.inputs[0].shape[1:-1])
        return int(rows * weight.size)
    except (TypeError, ValueError):
        return 0


def _counts_spikes(node: gs.Node) -> bool:
    """Whether `node` is a counted signGD neuron (compiler/ir/signgd.py), which emits (1 + g)/2 for
    its signed spike count g, rather than its spikes themselves."""
    neuron = node.op.startswith("SignGD") and NEURON_OPS[node.op].role == "neuron"
    return neuron and node.attrs.get("spikes", SPIKES_DEFAULT["spikes"]) in COUNTED_SIGNGD_KINDS


def _layer_outputs(graph: gs.Graph, node: gs.Node, fan: np.ndarray | None, steps: gs.Tensor) -> list[gs.Variable]:
    """spikes/<layer> and synops/<layer> [B]: the layer's spikes (+1 and −1 alike) over all steps, and Σ spikes·fan_out
    (with `fan` None, the per-sample shape is not static: one synaptic operation per spike)."""

    def emit(op: str, inputs: list, name: str | None = None, dtype=np.float32, **attrs) -> gs.Variable:
        out = gs.Variable(name or fresh_name(op.lower()), dtype=dtype, shape=["batch"] if name else None)
        graph.nodes.append(gs.Node(op, name=fresh_name(f"stats_{op}"), inputs=inputs, outputs=[out], attrs=attrs))
        return out

    i64 = lambda values: gs.Constant(fresh_name("c"), np.asarray(values, dtype=np.int64))  # noqa: E731
    f32 = lambda value: gs.Constant(fresh_name("c"), np.asarray(value, dtype=np.float32))  # noqa: E731
    t1 = emit("Reshape", [steps, i64([1])], dtype=np.int64)
    spikes_name, synops_name = f"{SPIKES_PREFIX}{node.name}", f"{SYNOPS_PREFIX}{node.name}"
    sent = node.outputs[0]
    if _counts_spikes(node):  # g = 2·output − 1
        sent = emit("Sub", [emit("Mul", [sent, f32(2)]), f32(1)])
    events = emit("Abs", [sent])  # a signed spike (−1) is one event like a +1
    if fan is None:
        per_row = emit("ReduceSum", [emit("Flatten", [events], axis=1), i64([1])], keepdims=0)  # [T·B]
        per_step = emit("Reshape", [per_row, emit("Concat", [t1, i64([-1])], dtype=np.int64, axis=0)])  # [T, B]
        spikes = emit("ReduceSum", [per_step, i64([0])], name=spikes_name, keepdims=0)
        return [spikes, emit("Identity", [spikes], name=synops_name)]
    seq_shape = emit("Concat", [t1, i64([-1, fan.size])], dtype=np.int64, axis=0)
    per_neuron = emit("Reshape", [events, seq_shape])
    counts = emit("ReduceSum", [per_neuron, i64([0])], keepdims=0)  # [B, N]: spikes of each neuron over T
    spikes = emit("ReduceSum", [counts, i64([1])], name=spikes_name, keepdims=0)
    weights = gs.Constant(fresh_name("fan_out"), fan.reshape(-1).astype(np.float32))
    return [spikes, emit("MatMul", [counts, weights], name=synops_name)]
