"""export-nir, step 1: a compiled rate-coded SNN (binary IF neurons) as a `Net` of NIR-shaped layers.

What the compiled graph holds and what it becomes (README, "NIR"):

- the ANN's input x [B, ...] → the `input` layer: NIR's Input, fed x at every step (an analog
  current every step); the time-invariant prefix that the compiled model runs once (the first
  Conv on x) is a layer like any other, run every step on the same x with the same result;
- `Tile` (x repeated over T), Identity, Dropout → nothing (the layer reads what they read);
- `snn.IFNeuron`, `snn.IFNeuronConstantInput` → a `neuron` layer (threshold, reset, v_init);
- Conv (2-D) → `conv`; Gemm, MatMul by a constant → `affine`; a constant Add onto the output of
  one of them → its bias; Mul by a constant → `scale` (folded into weights later, fold.py);
- Add of two activations (a residual join) → no layer: both operands' edges go into the reader;
- AveragePool, GlobalAveragePool, ReduceMean over H and W → `avgpool`; Flatten (axis 1), Reshape to [B, -1] → `flatten`;
- `snn.RateDecoder` → the `output` layer: NIR's Output carries the output layer's current every
  step, whose mean over the T steps is the model's output (its rate decoding).

Anything else is refused with one line naming the node, op and what to compile with instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from onnx_snn.errors import SnnError
from onnx_snn.ir.contract import TIMESTEPS_INPUT
from onnx_snn.ir.function_parts import SNN_DOMAIN
from onnx_snn.ir.neurons import IF_NEURON_DEFAULTS, IF_NEURON_OP, NEURON_OPS
from onnx_snn.nir_io.net import Net, channel_factors
from onnx_snn.passes.graph_utils import constant_value

_BINARY = "--spikes binary"
_TO_IF = "compile with --neuron if --spikes binary"
_BURST = f"signed burst spikes and a net-spike count have no NIR neuron; compile with {_BINARY}"
#: snn ops that export-nir refuses, and why (README, "NIR")
REFUSED: dict[str, str] = {
    "SignedIFNeuron": f"signed spikes (±1) and a net-spike count have no NIR neuron; compile with {_BINARY}",
    "BurstIFNeuron": _BURST,
    "CappedBurstIFNeuron": _BURST,
    "IFMaxPool": "a max pool of spike counts has no NIR node; build the ANN with average pooling",
    "PoissonEncoder": "NIR's Input reads the analog input every step; compile with --encoding analog",
    "SignGD": "signGD neurons track a target by sign-gradient steps whose size η_t changes with the "
    f"step; no NIR neuron (a time-invariant ODE) does that; {_TO_IF}",
    "TTFS": "TTFS neurons fire once at a time computed within per-layer windows, with no clocked "
    f"dynamics for NIR's neurons to express; {_TO_IF}",
}


#: the IF neuron ops export-nir writes (binary and multi-spike, and their constant-input forms), by spike kind
_IF_KINDS = {
    name: kind
    for kind in ("binary", "multi")
    for name in (IF_NEURON_OP[kind], NEURON_OPS[IF_NEURON_OP[kind]].constant_input_op)
    if name is not None
}
_IF_OPS = tuple(_IF_KINDS)


@dataclass
class Flow:
    """What an ONNX tensor is in the Net: the sum of the layers `sources`, of per-sample `shape`."""

    sources: list[str]
    shape: tuple[int, ...]


Handler = Callable[[Net, gs.Node, list, str], "Flow | None"]


def lower(model: onnx.ModelProto, source: str) -> Net:
    """The Net of a compiled binary-IF SNN `model` (read from `source`, named in errors)."""
    graph = gs.import_onnx(model)
    _refuse_snn_ops(graph, source)
    inputs = [t for t in graph.inputs if t.name != TIMESTEPS_INPUT]
    if len(inputs) != 1 or not inputs[0].shape or not all(isinstance(d, int) for d in inputs[0].shape[1:]):
        raise SnnError("export-nir takes a model with one input of fixed per-sample shape", path=source)
    net = Net()
    x = inputs[0]
    flows: dict[str, Flow] = {x.name: Flow([net.add("input", tuple(x.shape[1:]), [])], tuple(x.shape[1:]))}
    needed = _feeding_the_decoders(graph)
    for node in graph.toposort().nodes:
        read = [flows.get(t.name) for t in node.inputs]
        if id(node) not in needed or not any(f is not None for f in read):
            continue  # --stats counters; shapes, constants, the time tiling's repeat counts
        handler = _HANDLERS.get(node.op)
        if handler is None:
            raise SnnError("has no NIR counterpart that export-nir writes", path=source, node=node.name, op=node.op)
        flow = handler(net, node, read, source)
        if flow is not None:
            flows[node.outputs[0].name] = flow
    outputs = [name for name, layer in net.layers.items() if layer.kind == "output"]
    if len(outputs) != 1:
        raise SnnError(f"export-nir takes a model with one decoded output, not {len(outputs)}", path=source)
    return net


def _feeding_the_decoders(graph: gs.Graph) -> set[int]:
    """The ids of the nodes that the rate decoders' inputs depend on (not the --stats counters)."""
    needed: set[int] = set()
    stack = [n for n in graph.nodes if n.domain == SNN_DOMAIN and n.op == "RateDecoder"]
    while stack:
        node = stack.pop()
        if id(node) in needed:
            continue
        needed.add(id(node))
        stack += [t.inputs[0] for t in node.inputs if t.inputs]
    return needed


def _refuse_snn_ops(graph: gs.Graph, source: str) -> None:
    """SnnError for an SNN that NIR cannot hold (REFUSED), and for a model without IF neurons."""
    snn = [n for n in graph.nodes if n.domain == SNN_DOMAIN]
    for node in snn:
        reason = next((why for prefix, why in REFUSED.items() if node.op.startswith(prefix)), None)
        if reason is None and node.op not in (*_IF_OPS, "RateDecoder"):
            reason = "export-nir writes rate-coded IF nets compiled by onnx-snn (binary spikes) only"
        if reason is not None:
            raise SnnError(reason, path=source, node=node.name, op=f"snn.{node.op}")
    if not any(n.op in _IF_OPS for n in snn):
        raise SnnError(f"is not a compiled IF SNN (no snn.IFNeuron); compile it with {_BINARY}", path=source)


def _refuse(node: gs.Node, source: str, message: str) -> SnnError:
    return SnnError(message, path=source, node=node.name, op=node.op)


def _ints(node: gs.Node, name: str, default: list[int]) -> list[int]:
    return [int(v) for v in node.attrs.get(name, default)]


def _symmetric_pads(node: gs.Node, source: str) -> tuple[int, int]:
    """(pad_h, pad_w) of a 2-D op's pads [top, left, bottom, right]; SnnError if asymmetric or auto."""
    auto = node.attrs.get("auto_pad", "NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    pads = _ints(node, "pads", [0, 0, 0, 0])
    if auto not in ("NOTSET", "VALID") or pads[:2] != pads[2:]:
        raise _refuse(node, source, f"asymmetric padding {pads} ({auto}) has no NIR counterpart")
    return pads[0], pads[1]


def _out_size(size: int, kernel: int, stride: int, pad: int, dilation: int = 1) -> int:
    return (size + 2 * pad - dilation * (kernel - 1) - 1) // stride + 1


def _conv(net: Net, node: gs.Node, read: list, source: str) -> Flow:
    x = read[0]
    weight = constant_value(node.inputs[1])
    if x is None or weight is None or weight.ndim != 4 or any(f is not None for f in read[1:]):
        raise _refuse(node, source, "export-nir writes 2-D convolutions of activations by constant weights")
    bias = constant_value(node.inputs[2]) if len(node.inputs) > 2 else None
    groups = int(node.attrs.get("group", 1))
    stride, dilation = _ints(node, "strides", [1, 1]), _ints(node, "dilations", [1, 1])
    padding = _symmetric_pads(node, source)
    if len(x.shape) != 3 or x.shape[0] != weight.shape[1] * groups:
        raise _refuse(node, source, f"its input {x.shape} does not fit its weight {list(weight.shape)}")
    shape = (weight.shape[0],) + tuple(
        _out_size(x.shape[1 + i], weight.shape[2 + i], stride[i], padding[i], dilation[i]) for i in range(2)
    )
    name = net.add(
        "conv",
        shape,
        x.sources,
        weight=weight.astype(np.float64),
        bias=(np.zeros(weight.shape[0]) if bias is None else bias.astype(np.float64)),
        attrs={"stride": tuple(stride), "padding": padding, "dilation": tuple(dilation), "groups": groups},
    )
    return Flow([name], shape)


def _affine(net: Net, node: gs.Node, x: Flow, weight: np.ndarray, bias: np.ndarray, source: str) -> Flow:
    """An affine layer y = W·x + b, W [out, in], for a 1-D per-sample input."""
    if x.shape != (weight.shape[1],):
        raise _refuse(node, source, f"its input {x.shape} is not the vector of {weight.shape[1]} its weight reads")
    name = net.add("affine", (weight.shape[0],), x.sources, weight=weight, bias=np.broadcast_to(bias, weight.shape[:1]))
    return Flow([name], (weight.shape[0],))


def _gemm(net: Net, node: gs.Node, read: list, source: str) -> Flow:
    matrix = constant_value(node.inputs[1])
    if read[0] is None or matrix is None or node.attrs.get("transA", 0) or any(f is not None for f in read[1:]):
        raise _refuse(node, source, "export-nir writes Gemm of an activation by a constant weight")
    weight = float(node.attrs.get("alpha", 1.0)) * (matrix if node.attrs.get("transB", 0) else matrix.T)
    bias = constant_value(node.inputs[2]) if len(node.inputs) > 2 else None
    bias = np.zeros(weight.shape[0]) if bias is None else float(node.attrs.get("beta", 1.0)) * bias.reshape(-1)
    return _affine(net, node, read[0], weight.astype(np.float64), bias.astype(np.float64), source)


def _matmul(net: Net, node: gs.Node, read: list, source: str) -> Flow:
    matrix = constant_value(node.inputs[1])
    if read[0] is None or matrix is None or matrix.ndim != 2:
        raise _refuse(node, source, "export-nir writes MatMul of an activation by a constant matrix")
    return _affine(net, node, read[0], matrix.T.astype(np.float64), np.zeros(matrix.shape[1]), source)


def _add(net: Net, node: gs.Node, read: list, source: str) -> Flow:
    a, b = read
    if a is not None and b is not None:
        if a.shape != b.shape:
            raise _refuse(node, source, f"a broadcast sum ({a.shape} + {b.shape}) has no NIR counterpart")
        return Flow(a.sources + b.sources, a.shape)
    flow, const_index = (a, 1) if a is not None else (b, 0)
    value = constant_value(node.inputs[const_index])
    producer = net.layers[flow.sources[0]] if len(flow.sources) == 1 else None
    read_once = len(node.inputs[1 - const_index].outputs) == 1
    if value is None or producer is None or producer.kind not in ("conv", "affine") or not read_once:
        raise _refuse(node, source, "a constant added to activations is written only as the bias of the layer before")
    per_sample = np.broadcast_to(value, (1, *flow.shape))[0].astype(np.float64)
    factors = channel_factors(per_sample)
    if factors is None or producer.bias is None:
        raise _refuse(node, source, "a constant that varies within a channel is not a bias")
    producer.bias = producer.bias + factors
    return flow


def _mul(net: Net, node: gs.Node, read: list, source: str) -> Flow:
    a, b = read
    flow, const_index = (a, 1) if a is not None else (b, 0)
    value = constant_value(node.inputs[const_index])
    if (a is not None and b is not None) or value is None:
        raise _refuse(node, source, "a product of two activations has no NIR counterpart")
    scale = np.asarray(value, dtype=np.float64)
    if scale.ndim > len(flow.shape):  # a leading batch axis of 1
        scale = scale.reshape(scale.shape[scale.ndim - len(flow.shape) :])
    name = net.add("scale", flow.shape, flow.sources, scale=scale)
    return Flow([name], flow.shape)


def _pool(net: Net, x: Flow, kernel: list[int], stride: list[int], padding: tuple[int, int]) -> Flow:
    shape = (x.shape[0],) + tuple(_out_size(x.shape[1 + i], kernel[i], stride[i], padding[i]) for i in range(2))
    attrs = {"kernel": tuple(kernel), "stride": tuple(stride), "padding": padding}
    return Flow([net.add("avgpool", shape, x.sources, attrs=attrs)], shape)


def _average_pool(net: Net, node: gs.Node, read: list, source: str) -> Flow:
    x, kernel = read[0], _ints(node, "kernel_shape", [])
    if len(kernel) != 2 or len(x.shape) != 3 or _ints(node, "dilations", [1, 1]) != [1, 1]:
        raise _refuse(node, source, "export-nir writes 2-D average pools without dilation")
    stride, padding = _ints(node, "strides", [1, 1]), _symmetric_pads(node, source)
    if any(padding) and not node.attrs.get("count_include_pad", 0):
        raise _refuse(node, source, "a padded average pool that does not count the padding has no NIR counterpart")
    floor = _pool(net, x, kernel, stride, padding)
    if node.attrs.get("ceil_mode", 0):
        ceil = [-(-(x.shape[1 + i] + 2 * padding[i] - kernel[i]) // stride[i]) + 1 for i in range(2)]
        if list(floor.shape[1:]) != ceil:
            raise _refuse(node, source, "ceil_mode changes this pool's output; NIR pools round down")
    return floor


def _global_average_pool(net: Net, node: gs.Node, read: list, source: str) -> Flow:
    x = read[0]
    if len(x.shape) != 3:
        raise _refuse(node, source, "export-nir writes 2-D global average pools")
    window = list(x.shape[1:])
    return _pool(net, x, window, window, (0, 0))


def _reduce_mean(net: Net, node: gs.Node, read: list, source: str) -> Flow:
    """The mean over H and W of [C, H, W]: a global average pool (then a flatten without keepdims)."""
    x = read[0]
    given = constant_value(node.inputs[1]) if len(node.inputs) > 1 else node.attrs.get("axes")
    axes = sorted(int(a) % (len(x.shape) + 1) for a in np.asarray(given).reshape(-1)) if given is not None else []
    if len(x.shape) != 3 or axes != [2, 3]:
        raise _refuse(node, source, "export-nir writes a ReduceMean only over the spatial axes of [B, C, H, W]")
    pooled = _pool(net, x, list(x.shape[1:]), list(x.shape[1:]), (0, 0))
    if node.attrs.get("keepdims", 1):
        return pooled
    shape = (x.shape[0],)
    return Flow([net.add("flatten", shape, pooled.sources, attrs={"input_shape": pooled.shape})], shape)


def _flatten(net: Net, node: gs.Node, read: list, source: str) -> Flow:
    x = read[0]
    if node.op == "Flatten":
        axis = int(node.attrs.get("axis", 1))
        if axis not in (1, 1 - len(x.shape) - 1):
            raise _refuse(node, source, "export-nir writes Flatten at axis 1 (the batch kept) only")
    else:
        target = constant_value(node.inputs[1])
        rest = None if target is None else [int(d) for d in np.asarray(target).reshape(-1)[1:]]
        if rest is not None and rest in ([-1], [math.prod(x.shape)]):
            pass
        elif rest is not None and tuple(rest) == x.shape:
            return x
        else:
            raise _refuse(node, source, "export-nir writes a Reshape only as a flatten to [batch, -1]")
    shape = (math.prod(x.shape),)
    if len(x.shape) == 1:
        return x
    return Flow([net.add("flatten", shape, x.sources, attrs={"input_shape": x.shape})], shape)


def _alias(net: Net, node: gs.Node, read: list, source: str) -> Flow:
    return read[0]


def _neuron(net: Net, node: gs.Node, read: list, source: str) -> Flow:
    x = read[0]
    attrs = {**IF_NEURON_DEFAULTS, **{k: v.decode() if isinstance(v, bytes) else v for k, v in node.attrs.items()}}
    name = net.add(
        "neuron",
        x.shape,
        x.sources,
        attrs={
            "threshold": float(attrs["threshold"]),
            "reset": str(attrs["reset"]),
            "v_init": float(attrs["v_init"]),
            "spikes": "multi" if _IF_KINDS[node.op] == "multi" else "single",
            "op": f"snn.{node.op}",
            "v_min": float(attrs.get("v_min", -math.inf)),
            "source": node.name,
        },
    )
    return Flow([name], x.shape)


def _decoder(net: Net, node: gs.Node, read: list, source: str) -> None:
    x = read[0]
    net.add("output", x.shape, x.sources, attrs={"source": node.outputs[1].name})


_HANDLERS: dict[str, Handler] = {
    "Conv": _conv,
    "Gemm": _gemm,
    "MatMul": _matmul,
    "Add": _add,
    "Mul": _mul,
    "AveragePool": _average_pool,
    "GlobalAveragePool": _global_average_pool,
    "ReduceMean": _reduce_mean,
    "Flatten": _flatten,
    "Reshape": _flatten,
    "Tile": _alias,
    "Identity": _alias,
    "Dropout": _alias,
    **{op: _neuron for op in _IF_OPS if op is not None},
    "RateDecoder": _decoder,
}
