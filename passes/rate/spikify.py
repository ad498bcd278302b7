"""spikify: replace every ReLU with a stateful `snn.IFNeuron`; refuse what IF neurons cannot convert."""
from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from onnx_snn.errors import SnnError
from onnx_snn.ir.function_parts import SNN_DOMAIN
from onnx_snn.passes.base import PassContext
from onnx_snn.passes.graph_utils import constant_value, fresh_name, node_label

NAME = "spikify"
CONTRACT = ("Pre: normalized graph (each Relu sees units of its λ). Post: no Relu left; each is an "
            "snn.IFNeuron (threshold 1) run for one timestep; any other nonlinearity is refused.")

#: ops that are linear in their data inputs (or only move data), which rate coding carries through
RATE_COMPATIBLE_OPS = frozenset({
    "Conv", "Gemm", "MatMul", "Add", "Sub", "Mul", "Div", "Neg", "AveragePool", "GlobalAveragePool",
    "Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Concat", "Pad", "Identity", "Dropout",
    "Shape", "Gather", "Slice", "Cast", "Constant", "ConstantOfShape", "Expand", "Split", "ReduceMean",
    "ReduceSum", "Sum", "Mean", "Tile", "Range",
})
#: nonlinearities that the signGD neuron converts (delivered with `--neuron signgd`)
SIGNGD_NONLINEARITIES = frozenset({
    "Gelu", "Erf", "Tanh", "Sigmoid", "HardSigmoid", "HardSwish", "LeakyRelu", "PRelu", "Elu", "Selu", "Celu",
    "Softmax", "LogSoftmax", "LayerNormalization", "MaxPool", "Abs", "Sqrt", "Reciprocal", "Pow", "Exp", "Log",
    "Clip", "Max", "Min", "Softplus", "Softsign", "Mish", "GlobalMaxPool", "ReduceMax", "ReduceMin",
    "InstanceNormalization", "GroupNormalization",
})


def run(graph: gs.Graph, ctx: PassContext) -> gs.Graph:
    refuse_unconvertible(graph, ctx)
    one_step = gs.Constant(fresh_name("one_timestep"), np.asarray(1, dtype=np.int64))
    fresh = gs.Constant(fresh_name("fresh_membrane"), np.asarray(np.nan, dtype=np.float32))
    layers = []
    for node in graph.nodes:
        if node.op != "Relu":
            continue
        final_state = gs.Variable(fresh_name(f"{node.name}_v_T"), dtype=np.float32)
        node.op, node.domain = "IFNeuron", SNN_DOMAIN
        node.inputs = [node.inputs[0], one_step, fresh]
        node.outputs = [node.outputs[0], final_state]
        node.attrs = {"threshold": 1.0, "reset": ctx.options.reset, "v_init": float(ctx.options.v_init)}
        layers.append(node.name)
    ctx.metadata["neuron_layers"] = layers
    return graph


def refuse_unconvertible(graph: gs.Graph, ctx: PassContext) -> None:
    """Raise SnnError for the first node IF neurons cannot convert, naming it and the way out."""
    for node in graph.nodes:
        if node.op == "Relu" or node.domain == SNN_DOMAIN:
            continue
        if node.op in SIGNGD_NONLINEARITIES:
            raise SnnError("IF neurons convert only ReLU nonlinearities", path=ctx.source, node=node_label(node),
                           op=node.op, hint="use --neuron signgd")
        if node.op not in RATE_COMPATIBLE_OPS or (node.domain or "") not in ("", "ai.onnx"):
            op = f"{node.domain}::{node.op}" if (node.domain or "") not in ("", "ai.onnx") else node.op
            raise SnnError("op is not supported by the SNN compiler", path=ctx.source, node=node_label(node),
                           op=op, hint="replace it in the ANN or file an issue with the model")
        if node.op == "Mul" and sum(constant_value(t) is None for t in node.inputs) > 1:
            raise SnnError("a product of two activations is not rate-codable by IF neurons", path=ctx.source,
                           node=node_label(node), op=node.op, hint="use --neuron signgd")

