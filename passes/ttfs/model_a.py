"""Model A of arXiv 2212.12522 (spec §2.1): the exact-mapping network with hardware parameters.

Model A runs on absolute times in float64: the input spikes of TTFSEncoder, then per hidden
layer a `snn.TTFSDenseA` (non-leaky IF neurons with ramp PSPs, event-exact solver) with

    J = W / (1 − S_i)   (α = 1, S_i the fan-in sum of the preprocessed weights, S_i < 1 by P4)
    ϑ_i = (t_max⁽ⁿ⁾ − t_min⁽ⁿ⁻¹⁾) + (B_n·S_i − b_i) / (1 − S_i),

and the read-out potential V(t_read) = b + W·(t_read − t). It covers dense ReLU chains, the
networks of the paper's event solver: Flatten/Reshape → (Gemm → Relu)* → Gemm.
"""

from __future__ import annotations

from typing import NoReturn

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from onnx_snn.errors import SnnError
from onnx_snn.ir.contract import SPIKE_TIMES_PREFIX, SPIKES_PREFIX, SYNOPS_PREFIX
from onnx_snn.ir.function_parts import SNN_DOMAIN
from onnx_snn.passes.base import PassContext, declare, require_neuron_layers
from onnx_snn.passes.graph_utils import const, fresh_name, node_error
from onnx_snn.passes.ttfs.graph import SPIKE_LAYOUT_OPS, gemm_weights

SPEC = declare("ttfs_model_a", needs={"ttfs_windows", "ttfs_columns"}, provides={"spiking"})


def postcondition(graph: gs.Graph, ctx: PassContext) -> None:
    """No Relu left; each neuron layer (each hidden Gemm + Relu of the chain) is an snn.TTFSDenseA."""
    require_neuron_layers(graph, ctx, "TTFSDenseA")


def dense_chain(graph: gs.Graph, ctx: PassContext) -> list[gs.Node]:
    """The Gemms of a dense ReLU chain in order (the last is the read-out), read from the one
    encoded input x̃; SnnError naming the first node that does not fit."""
    inputs = ctx.state.ttfs.inputs
    if len(inputs) != 1:
        raise SnnError("--ttfs-model a needs a model with one input", path=ctx.source)
    tensor = graph.tensors()[next(iter(inputs.values()))["encoded"]]
    gemms: list[gs.Node] = []
    while True:
        readers = tensor.outputs
        if len(readers) != 1:
            break
        node = readers[0]
        if node.op in SPIKE_LAYOUT_OPS and not gemms:
            tensor = node.outputs[0]
            continue
        if node.op != "Gemm" or gemm_weights(node) is None:
            _refuse(node, ctx)
        gemms.append(node)
        after = node.outputs[0].outputs
        if node.outputs[0] in graph.outputs and not after:
            return gemms
        if len(after) != 1 or after[0].op != "Relu":
            _refuse(after[0] if after else node, ctx)
        tensor = after[0].outputs[0]
    _refuse(readers[0] if readers else tensor.inputs[0], ctx)


def chain_weights(gemm: gs.Node) -> tuple[np.ndarray, np.ndarray]:
    """gemm_weights of a Gemm of dense_chain (which takes only Gemms that have them)."""
    weights = gemm_weights(gemm)
    assert weights is not None, f"{gemm.name} is not a Gemm of dense_chain"
    return weights


def _refuse(node: gs.Node, ctx: PassContext) -> NoReturn:
    raise node_error(
        ctx,
        node,
        "--ttfs-model a converts dense ReLU chains only (Flatten → Gemm → Relu → … → Gemm)",
        hint="use the default --ttfs-model b1",
    )


def run(graph: gs.Graph, ctx: PassContext) -> gs.Graph:
    """Rewrite the windowed dense chain into model A on float64 absolute times (see module doc).

    Pre: windowed, column-scaled dense ReLU chain (ttfs_windows, ttfs_column_scale). Post: the
    inputs are TTFSEncoder spike times, each hidden layer an snn.TTFSDenseA on float64 absolute
    times, the read-out its potential at t_read; outputs unchanged (logits in ANN units)."""
    chain = dense_chain(graph, ctx)
    windows = ctx.state.ttfs.windows
    assert windows is not None  # NEEDS ttfs_windows
    ((name, entry),) = ctx.state.ttfs.inputs.items()
    v = next(t for t in graph.inputs if t.name == name)
    x_tilde = graph.tensors()[entry["encoded"]]
    times = _node(graph, "Cast", [v], to=onnx.TensorProto.DOUBLE)
    leads = _node(
        graph, "TTFSEncoder", [times, _f64("p", entry["range"][0]), _f64("q", entry["range"][1])], domain=SNN_DOMAIN
    )
    times = _node(graph, "Sub", [_f64("t_max_input", 1.0), leads])  # input window [0, 1]
    reader = x_tilde.outputs[0]
    reader.inputs[reader.inputs.index(x_tilde)] = times
    t_min_prev, stats = 0.0, []
    for gemm, successor in zip(chain[:-1], chain[1:]):
        relu = gemm.outputs[0].outputs[0]
        layer = windows["layers"][relu.name]
        w, b = chain_weights(gemm)
        if np.any(w.sum(axis=1) >= 1.0):
            raise node_error(ctx, gemm, "a fan-in weight sum is ≥ 1 (model A needs S_i < 1: run column scaling)")
        synapses, theta = hardware_parameters(w, b, layer["B"], t_min_prev, layer["t_max"])
        layer["J_abs_max"] = float(np.abs(synapses).max())
        source = gemm.inputs[0]
        out = relu.outputs[0]
        relu.op, relu.domain, relu.attrs = "TTFSDenseA", SNN_DOMAIN, {}
        relu.inputs = [
            source,
            const(f"{relu.name}_J", synapses),
            const(f"{relu.name}_theta", theta),
            _f64("t_min_prev", t_min_prev),
            _f64("t_max", layer["t_max"]),
        ]
        gemm.inputs.clear()
        gemm.outputs.clear()
        out.dtype = np.float64
        if ctx.options.stats:
            fan_out = (chain_weights(successor)[0] != 0).sum(axis=0).astype(np.float32)
            stats += _statistics(graph, relu.name, out, layer["t_max"], fan_out, list(out.shape or ["N", None]))
        t_min_prev = layer["t_min"]
    readout = chain[-1]
    w, b = chain_weights(readout)
    decoded = _node(graph, "Sub", [_f64("t_read", windows["t_read"]), readout.inputs[0]])
    logits = readout.outputs[0]
    readout.inputs = [decoded, const(f"{readout.name}_weight", w), const(f"{readout.name}_bias", b)]
    readout.attrs = {"alpha": 1.0, "beta": 1.0, "transB": 1}
    readout.outputs[0] = gs.Variable(fresh_name("readout_potential"), dtype=np.float64)
    graph.nodes.append(
        gs.Node(
            "Cast", name=fresh_name("logits_float32"), inputs=[readout.outputs[0]], outputs=[logits], attrs={"to": 1}
        )
    )
    graph.outputs.extend(stats)
    ctx.state.neuron_layers = list(windows["layers"])
    for tensor in graph.tensors().values():
        if isinstance(tensor, gs.Variable) and tensor not in graph.inputs and tensor not in graph.outputs:
            tensor.dtype, tensor.shape = None, None  # float64 now: let onnxruntime infer
    return graph.cleanup().toposort()


def hardware_parameters(
    w: np.ndarray, b: np.ndarray, width: float, t_min_prev: float, t_max: float
) -> tuple[np.ndarray, np.ndarray]:
    """(J [in, out], ϑ [out]) of a model A layer (α = 1) from its preprocessed W [out, in] and b,
    its window B_n = `width`, the previous window's start and its own end (spec §2.1)."""
    fan_in_sum = w.sum(axis=1)
    gain = 1.0 / (1.0 - fan_in_sum)
    theta = (t_max - t_min_prev) + (width * fan_in_sum - b) * gain
    return np.ascontiguousarray((w * gain[:, None]).T), theta


def _f64(name: str, value: float) -> gs.Constant:
    return const(name, np.asarray(value, dtype=np.float64))


def _node(graph: gs.Graph, op: str, inputs: list, domain: str | None = None, **attrs) -> gs.Variable:
    out = gs.Variable(fresh_name(op.lower()))
    graph.nodes.append(gs.Node(op, name=fresh_name(op), domain=domain, inputs=inputs, outputs=[out], attrs=attrs))
    return out


def _statistics(
    graph: gs.Graph, layer: str, times: gs.Tensor, t_max: float, fan_out: np.ndarray, shape: list
) -> list[gs.Variable]:
    """spike_times/<layer> (float32), spikes/<layer> (spikes per sample by t_max: every neuron, forced
    spikes included) and synops/<layer> (each spike times its non-zero outgoing weights)."""
    spike_times = gs.Variable(f"{SPIKE_TIMES_PREFIX}{layer}", dtype=np.float32, shape=shape)
    graph.nodes.append(
        gs.Node("Cast", name=fresh_name("stats_times"), inputs=[times], outputs=[spike_times], attrs={"to": 1})
    )
    fired = _node(graph, "Cast", [_node(graph, "LessOrEqual", [times, _f64("t_max", t_max)])], to=1)
    count = gs.Variable(f"{SPIKES_PREFIX}{layer}", dtype=np.float32, shape=shape[:1])
    graph.nodes.append(
        gs.Node(
            "ReduceSum",
            name=fresh_name("stats_spikes"),
            inputs=[fired, const("axes", np.asarray([1], dtype=np.int64))],
            outputs=[count],
            attrs={"keepdims": 0},
        )
    )
    synops = gs.Variable(f"{SYNOPS_PREFIX}{layer}", dtype=np.float32, shape=shape[:1])
    graph.nodes.append(
        gs.Node("MatMul", name=fresh_name("stats_synops"), inputs=[fired, const("fan_out", fan_out)], outputs=[synops])
    )
    return [spike_times, count, synops]
