"""int8_synapses (--int8-synapses): every dense layer that reads spikes runs on onnxruntime's
integer kernel `com.microsoft.MatMulIntegerToFloat`.

A spike-fed layer is a Gemm or MatMul with a constant 2-D weight whose input comes from the
spikes of an IF neuron (or of a Poisson encoder) through ops that keep them integer multiples of
1/k with k small: layout ops, max pools of spikes (`snn.IFMaxPool`, whose outputs are spikes
again) and average pools that divide every window by its full size (k multiplies by the window).
Each input value is then n/k with n an integer in [lowest·k, k], lowest = −1 for signed spikes
and 0 for binary (and Poisson) ones. Layers that read analog values (the first layer reading
the image, a time-invariant prefix) and every Conv stay float (runtime/PERFORMANCE.md says why).

The rewrite of a layer Y = X·Wᵀ + b (W [N, K], Gemm's canonical form; a MatMul's [K, N] weight
is its transpose, without a bias):
- A = QuantizeLinear(X, 1/k, zp) as uint8: n + zp, with zp = −lowest·k. QuantizeLinear rounds,
  so A is exact even where the float pool left n/k a rounding off. One per spike tensor, shared
  by the layers that read it.
- B = Wᵀ rounded per output channel j, symmetrically: s_j = max_i |W_ji| / 127 (1 for a zero
  channel), B_ij = round(W_ji / s_j) in int8, [−127, 127].
- Y = MatMulIntegerToFloat(A, B, 1/k, s, zp, –, b) = (Σ_i (A_i − zp)·B_ij)·(s_j / k) + b_j: the
  integer sum is exact (int32), so Y is the layer with weights B_ij·s_j, to float32 rounding of
  the scaling and the bias.

Why uint8 with a zero point, also for signed spikes: on the zoo's layers onnxruntime's int8 ×
int8 kernel runs 2 to 7x slower than the float32 Gemm, uint8 × int8 2 to 3x faster on the large
ones (BENCHMARKS.md, "int8 synapses: speed on the CPU"; runtime/PERFORMANCE.md).
Why A ≤ 128: x86 CPUs without VNNI multiply uint8 × int8 pairs into saturating int16
(vpmaddubsw); 2·128·127 < 2^15 keeps the sums exact there too. A layer whose input would need a
larger A (average windows of more than 128 binary or 64 signed spikes) stays float, noted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import onnx_graphsurgeon as gs

from onnx_snn.ir.function_parts import SNN_DOMAIN
from onnx_snn.ir.neurons import IF_NEURON_OP, NEURON_OPS
from onnx_snn.options import SINGLE_SPIKE_KINDS
from onnx_snn.passes.base import PassContext, declare, recorded, require
from onnx_snn.passes.canonicalize.gemm_canonical import is_canonical
from onnx_snn.passes.graph_utils import (
    LAYOUT_OPS,
    const,
    constant_value,
    fresh_name,
    in_default_domain,
    producer,
    static_shape,
    string_attr,
)

#: the activity statistics read the float weights of the layers (fan-out), so they come first
SPEC = declare("int8_synapses", needs={"time_batched", "activity"}, provides={"int8_synapses"})

#: the domain of onnxruntime's contrib ops
MS_DOMAIN = "com.microsoft"
#: the largest uint8 input A of an exact sum on every x86 kernel (module docstring)
A_MAX = 128
#: int8 weights are symmetric: [−WEIGHT_MAX, WEIGHT_MAX]
WEIGHT_MAX = 127
#: the --spikes kinds whose spikes the integer layers read → the lowest spike (the highest is 1: at
#: most one spike a step); the neurons of any other kind are no spike source here, their layers stay float
LOWEST_SPIKE_OF_KIND = {"signed": -1, "binary": 0}
assert tuple(LOWEST_SPIKE_OF_KIND) == SINGLE_SPIKE_KINDS, "one lowest spike per single-spike kind (options)"
#: the op that emits such spikes → its lowest spike
LOWEST_SPIKE = {
    op: lowest
    for kind, lowest in LOWEST_SPIKE_OF_KIND.items()
    for op in (IF_NEURON_OP[kind], NEURON_OPS[IF_NEURON_OP[kind]].constant_input_op)
    if op is not None
} | {"PoissonEncoder": 0}


@dataclass(frozen=True)
class SpikeInput:
    """What a spike-fed layer reads: values n/grain, n an integer in [lowest·grain, grain]."""

    grain: int
    lowest: int

    @property
    def zero_point(self) -> int:
        """The uint8 that stands for n = 0."""
        return -self.lowest * self.grain

    @property
    def a_max(self) -> int:
        """The largest uint8 input A = n + zero_point."""
        return (1 - self.lowest) * self.grain


@dataclass(frozen=True)
class QuantizedInput:
    """A spike tensor as the integer kernel reads it: uint8 `values` n + zero_point, and the
    quantization's `scale` (1/grain) and `zero_point`, shared by the layers that read it."""

    values: gs.Variable
    scale: gs.Constant
    zero_point: gs.Constant


def postcondition(graph: gs.Graph, ctx: PassContext) -> None:
    """The MatMulIntegerToFloat nodes are the recorded layers, and no float layer is left that
    reads spikes within A_MAX."""
    layers = recorded(ctx.state.int8_layers, "no int8 layers recorded")
    integer = {n.name for n in graph.nodes if n.op == "MatMulIntegerToFloat" and n.domain == MS_DOMAIN}
    require(integer == set(layers), "the MatMulIntegerToFloat nodes are not the recorded int8 layers")
    left = [n.name for n in graph.nodes if (s := _spike_fed(n)) is not None and s.a_max <= A_MAX]
    require(not left, f"spike-fed float layers left: {left}")


def run(graph: gs.Graph, ctx: PassContext) -> gs.Graph:
    """Pre: time-batched IF graph, activity statistics taken. Post: every canonical Gemm and
    every MatMul with a constant 2-D weight whose input is spikes (module docstring) with A ≤
    A_MAX is a MatMulIntegerToFloat of the quantized input and 8-bit weights, its outputs
    unchanged; ctx.state.int8_layers maps each such layer to its grain k. Everything else is
    unchanged."""
    quantized: dict[str, QuantizedInput] = {}
    layers: dict[str, int] = {}
    coarse: list[str] = []
    for node in list(graph.nodes):
        spikes = _spike_fed(node)
        if spikes is None:
            continue
        if spikes.a_max > A_MAX:
            coarse.append(f"{node.name} (averages {spikes.grain} spikes)")
            continue
        source = node.inputs[0]
        if source.name not in quantized:
            quantized[source.name] = _quantize_input(graph, source, spikes)
        _to_integer(node, quantized[source.name])
        layers[node.name] = spikes.grain
    ctx.state.int8_layers = layers
    if layers:
        ctx.note(f"int8 synapses: {', '.join(layers)} run on 8-bit weights (MatMulIntegerToFloat)")
    if coarse:
        ctx.note(f"int8 synapses: {', '.join(coarse)} stay float: their inputs need more than {A_MAX} levels")
    if not layers and not coarse:
        ctx.note("int8 synapses: no dense layer reads spikes; --int8-synapses changed nothing")
    return graph.cleanup().toposort()


def quantize_channels(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`weight` [N, K] rounded symmetrically per output channel (row): (q [N, K] int8 in
    [−WEIGHT_MAX, WEIGHT_MAX], s [N] float32) with weight ≈ q·s[:, None]; s = max |row| /
    WEIGHT_MAX, 1 for a row of zeros."""
    peak = np.abs(weight.astype(np.float64)).max(axis=1)
    scale = np.where(peak > 0, peak / WEIGHT_MAX, 1.0).astype(np.float32)
    q = np.clip(np.rint(weight / scale.astype(np.float64)[:, None]), -WEIGHT_MAX, WEIGHT_MAX)
    return q.astype(np.int8), scale


def spike_input(tensor: gs.Tensor) -> SpikeInput | None:
    """What `tensor` holds when it comes from spikes through the ops the module docstring names,
    else None."""
    node = producer(tensor)
    if node is None:
        return None
    if node.domain == SNN_DOMAIN:
        if node.op in LOWEST_SPIKE and tensor is node.outputs[0]:
            return SpikeInput(1, LOWEST_SPIKE[node.op])
        pooled = spike_input(node.inputs[0]) if node.op == "IFMaxPool" and tensor is node.outputs[0] else None
        return pooled if pooled is not None and pooled.grain == 1 else None
    if node.op in LAYOUT_OPS:
        return spike_input(node.inputs[0])
    window = _window(node)
    source = spike_input(node.inputs[0]) if window is not None else None
    return None if source is None or window is None else SpikeInput(source.grain * window, source.lowest)


def _window(node: gs.Node) -> int | None:
    """The number of elements every output of `node` averages when it is an average pool that
    divides each window by its full size (no padding left out of the count, no partial window);
    None for any other node."""
    if node.op == "GlobalAveragePool":
        shape = static_shape(node.inputs[0])
        return math.prod(shape[1:]) if shape is not None else None
    if node.op != "AveragePool" or node.attrs.get("ceil_mode", 0):
        return None
    padded = any(node.attrs.get("pads", ())) or string_attr(node, "auto_pad", "NOTSET") not in ("NOTSET", "VALID")
    return None if padded and not node.attrs.get("count_include_pad", 0) else math.prod(node.attrs["kernel_shape"])


def _dense(node: gs.Node) -> tuple[np.ndarray, np.ndarray | None] | None:
    """(W [N, K], bias [N] or None) of a canonical Gemm or a MatMul with a constant 2-D weight;
    None for any other node."""
    if node.op == "Gemm" and is_canonical(node):
        weight, bias = constant_value(node.inputs[1]), constant_value(node.inputs[2])
        assert weight is not None and bias is not None  # is_canonical checked both
        return weight, bias
    weight = constant_value(node.inputs[1]) if node.op == "MatMul" else None
    return (weight.T, None) if weight is not None and weight.ndim == 2 else None


def _spike_fed(node: gs.Node) -> SpikeInput | None:
    """What a dense float layer `node` reads when it reads spikes, else None."""
    if not in_default_domain(node) or _dense(node) is None or node.inputs[0].dtype != np.float32:
        return None
    return spike_input(node.inputs[0])


def _quantize_input(graph: gs.Graph, tensor: gs.Tensor, spikes: SpikeInput) -> QuantizedInput:
    """A QuantizeLinear of the spike values n/grain in `tensor` to uint8 n + zero_point."""
    a = QuantizedInput(
        gs.Variable(fresh_name(f"{tensor.name}_uint8"), dtype=np.uint8, shape=tensor.shape),
        const("spike_scale", 1.0 / spikes.grain, np.float32),
        const("spike_zero_point", spikes.zero_point, np.uint8),
    )
    graph.nodes.append(
        gs.Node(
            "QuantizeLinear", fresh_name("QuantizeLinear"), inputs=[tensor, a.scale, a.zero_point], outputs=[a.values]
        )
    )
    return a


def _to_integer(node: gs.Node, a: QuantizedInput) -> None:
    """Make the dense layer `node` a MatMulIntegerToFloat of its quantized input `a` and its
    weights rounded per output channel (quantize_channels)."""
    dense = _dense(node)
    assert dense is not None  # _spike_fed checked it
    weight, bias = dense
    q, scale = quantize_channels(weight)
    inputs = [
        a.values,
        const(f"{node.name}_int8", q.T.copy()),
        a.scale,
        const(f"{node.name}_scale", scale),
        a.zero_point,
    ]
    if bias is not None:
        inputs += [gs.Variable.empty(), const(f"{node.name}_bias", bias.reshape(-1), np.float32)]
    node.op, node.domain, node.attrs, node.inputs = "MatMulIntegerToFloat", MS_DOMAIN, {}, inputs
