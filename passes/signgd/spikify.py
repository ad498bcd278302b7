"""spikify_signgd: replace every nonlinearity with a signGD neuron; add the codec's encoder and decoder.

Mapping (spec signgd-dynamics §5): Relu, LeakyRelu, Gelu (its own exact or tanh form, not the
spec's sigmoid approximation), the canonical SiLU Mul(u, Sigmoid(u)) (the spec's GELU rule
x·σ(gate·x) with gate 1), HardSwish, Abs, Exp and Mul(u, u)
become `snn.SignGDNeuron` with that `function`; Max, Div(p, Sqrt(q)), Div(a, b) and Mul(a, b) of
two activations become `snn.SignGDBinaryNeuron`. Beyond the spec, by its method: HardSigmoid and
Clip become `clip` neurons, any other Sigmoid a `sigmoid` neuron, and Div(p, Pow(q, c)) a
`p_div_q_pow` binary neuron (exponent c). Each graph input gets an `snn.SignGDEncoder`
and each graph output an `snn.SignGDDecoder`. Offsets and biases are placeholders here; the
signgd_offsets pass measures them. Any other op between neurons must be affine, or it is refused.

Bounded outputs. normalize leaves HardSigmoid, Clip and Sigmoid in ANN units (σ = 1 in and out).
Their outputs are bounded, so the neuron holds f(x)/s with s = max(|low|, |high|)/--signgd-range
(the static bounds play the role of the calibrated max, as λ does for a ReLU) and a Mul(s) after
the neuron gives its readers f(x) again; s = 1 for a Clip with an absent bound (unbounded output).
"""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from onnx_snn.errors import SnnError
from onnx_snn.ir.function_parts import SNN_DOMAIN
from onnx_snn.ir.signgd import GATES, GELU_CUBIC
from onnx_snn.options import SIGNGD_SPIKE_KINDS, CompileOptions
from onnx_snn.passes import op_support
from onnx_snn.passes.base import PassContext, declare, require
from onnx_snn.passes.graph_utils import (
    constant_value,
    fresh_name,
    is_activation,
    producer,
    silu_gate,
    sole_reader,
    string_attr,
)

SPEC = declare("spikify_signgd", needs={"normalized", "supported"}, provides={"spiking"})

#: op -> the `function` of the unary neuron that replaces it in every form (op_support.SIGNGD)
UNARY = {op: support.neuron for op, support in op_support.SIGNGD.ops.items() if support.neuron}


def _activations(node: gs.Node) -> list[gs.Tensor]:
    return [t for t in node.inputs if is_activation(t)]


def neuron_function(graph: gs.Graph, node: gs.Node) -> tuple[str, str] | None:
    """("unary"|"binary", function) for a node a signGD neuron replaces, else None."""
    acts = _activations(node)
    if silu_gate(graph, node) is not None:
        return "unary", "silu"
    if node.op == "Gelu":
        return "unary", "gelu_tanh" if string_attr(node, "approximate", "none") == "tanh" else "gelu_erf"
    if node.op == "Sigmoid" and op_support.is_silu_gate(graph, node):
        return None  # its SiLU Mul becomes the `silu` neuron and drops it
    if node.op in UNARY:
        return "unary", UNARY[node.op]
    if node.op == "Mul" and len(node.inputs) == 2 and node.inputs[0] is node.inputs[1]:
        return "unary", "square"
    if node.op == "Max" and len(acts) == 2:
        return "binary", "maximum"
    if node.op == "Div" and len(acts) == 2:
        if op_support.rsqrt_divisor(node) is not None:
            return "binary", "p_rsqrt_q"
        return "binary", "p_div_q_pow" if op_support.power_divisor(node) is not None else "div"
    if node.op == "Mul" and len(acts) == 2:
        return "binary", "product"
    return None


def refuse_unconvertible(graph: gs.Graph, ctx: PassContext) -> None:
    """Raise SnnError for the first op that is neither affine nor a signGD neuron (op_support.SIGNGD,
    after decompose: a MaxPool, LayerNormalization or Softmax left is refused)."""
    op_support.refuse_unconvertible(op_support.SIGNGD, graph, ctx)


def postcondition(graph: gs.Graph, ctx: PassContext) -> None:
    """Each recorded neuron layer is an snn-domain node."""
    snn = {n.name for n in graph.nodes if n.domain == SNN_DOMAIN}
    require(set(ctx.state.neuron_layers) <= snn, "a neuron layer is not an snn node")


def run(graph: gs.Graph, ctx: PassContext) -> gs.Graph:
    """Pre: decomposed, normalized graph. Post: every nonlinearity is a one-step signGD neuron,
    inputs pass through SignGDEncoder and outputs through SignGDDecoder; only affine ops lie
    between."""
    refuse_unconvertible(graph, ctx)
    if ctx.options.spikes not in SIGNGD_SPIKE_KINDS:
        raise SnnError(
            f"this model needs signGD neurons (an op IF neurons do not convert), and --spikes {ctx.options.spikes} "
            f"has no signGD form (signGD neurons take {', '.join(SIGNGD_SPIKE_KINDS)})",
            hint="drop --spikes",
        )
    schedule = schedule_attributes(ctx.options)
    one_step = gs.Constant(fresh_name("one_timestep"), np.asarray(1, dtype=np.int64))
    step_zero = gs.Constant(fresh_name("first_step"), np.asarray(0, dtype=np.int64))
    fresh = gs.Constant(fresh_name("fresh_state"), np.asarray(np.nan, dtype=np.float32))
    layers = []
    for node in list(graph.nodes):
        kind = neuron_function(graph, node) if node.outputs else None
        if kind is None:
            continue
        if kind[1] == "silu":  # the neuron computes u·σ(u) itself: its Sigmoid goes
            _detach(silu_gate(graph, node))
        arity, function = kind
        slope = float(node.attrs.get("alpha", 0.01))  # the model's LeakyRelu slope, read before attrs are replaced
        bounded = _bounded_attributes(node, ctx.options.signgd_range) if function in ("clip", "sigmoid") else None
        exponent = _power_exponent(node) if function == "p_div_q_pow" else None
        currents = (
            [node.inputs[0]]
            if arity == "unary"
            else [
                node.inputs[0],
                _divisor_operand(node) if function in ("p_rsqrt_q", "p_div_q_pow") else node.inputs[1],
            ]
        )
        calibrated = [
            t for _ in currents for t in (_placeholder(f"{node.name}_offset"), _placeholder(f"{node.name}_bias"))
        ]
        states = [fresh] * len(currents) + [fresh, step_zero]
        outputs = [node.outputs[0]] + [
            gs.Variable(fresh_name(f"{node.name}_{s}"), dtype=np.float32) for s in ["x_T"] * len(currents) + ["v_T"]
        ]
        node.op, node.domain = ("SignGDNeuron" if arity == "unary" else "SignGDBinaryNeuron"), SNN_DOMAIN
        node.inputs = currents + [one_step] + calibrated + states
        node.outputs = outputs
        node.attrs = {"function": function, "spikes": ctx.options.spikes, **schedule}
        if function in GATES:
            scale = _absorb_scaling(graph, node)
            node.attrs.update(gate=GATES[function] * scale, cubic=GELU_CUBIC * scale**2)
        if function == "leaky_relu":
            node.attrs["slope"] = slope
        if bounded is not None:
            attributes, scale = bounded
            node.attrs.update(attributes)
            _scale_output(graph, node, scale)
        if exponent is not None:
            node.attrs["exponent"] = exponent
        layers.append(node.name)
    for graph_input in graph.inputs:
        encoder = {"codec": ctx.options.signgd_codec, "spikes": ctx.options.spikes, **schedule}
        _encode(graph, graph_input, one_step, fresh, step_zero, encoder)
    for index, out in enumerate(list(graph.outputs)):
        graph.outputs[index] = _decode(graph, out, one_step, fresh, step_zero, schedule)
    ctx.state.neuron_layers = layers
    return graph.cleanup().toposort()


def schedule_attributes(options: CompileOptions) -> dict[str, float | str]:
    """The step-size attributes of every signGD op: --schedule, --eta0, --gamma, --tail."""
    return {
        "schedule": options.signgd_schedule,
        "eta0": options.signgd_eta0,
        "gamma": options.gamma,
        "tail": options.tail,
    }


def _scalar_factor(node: gs.Node | None) -> tuple[float, gs.Tensor] | None:
    """(c, x) for a node Mul(x, c) with a scalar constant c, else None."""
    if node is None or node.op != "Mul" or len(node.inputs) != 2:
        return None
    for data, factor in (node.inputs, node.inputs[::-1]):
        value = constant_value(factor)
        if value is not None and value.size == 1 and is_activation(data):
            return float(value.reshape(())), data
    return None


def _detach(node: gs.Node) -> None:
    node.inputs.clear()
    node.outputs.clear()


def _absorb_scaling(graph: gs.Graph, neuron: gs.Node) -> float:
    """λ of a GELU or SiLU f that normalize wrapped as Mul(λ) → f → Mul(1/λ): the Muls are cut out
    and the neuron reads x/λ and emits f(λ·x/λ)/λ, its gate scaled by λ. Returns 1.0 for a bare f."""
    before = producer(neuron.inputs[0])
    after = sole_reader(graph, neuron.outputs[0])
    scale_in, scale_out = _scalar_factor(before), _scalar_factor(after)
    if (
        scale_in is None
        or scale_out is None
        or sole_reader(graph, neuron.inputs[0]) is not neuron
        or not np.isclose(scale_in[0] * scale_out[0], 1.0, rtol=1e-6)
    ):
        return 1.0
    # scale_out is set only for a node; the identity test above narrows `neuron` to Node | None
    assert after is not None and neuron is not None
    result = after.outputs[0]
    after.outputs.clear()
    neuron.inputs[0], neuron.outputs[0] = scale_in[1], result
    return scale_in[0]


def _divisor_operand(node: gs.Node) -> gs.Tensor:
    """q of Div(p, Sqrt(q)) or Div(p, Pow(q, c)): the p/sqrt(q) and p/q^c neurons take q itself."""
    root = producer(node.inputs[1])
    assert root is not None  # neuron_function matched Div(p, Sqrt(q)) or Div(p, Pow(q, c))
    return root.inputs[0]


def _power_exponent(node: gs.Node) -> float:
    """c of Div(p, Pow(q, c)), a constant scalar (op_support.power_divisor)."""
    power = op_support.power_divisor(node)
    assert power is not None  # neuron_function matched Div(p, Pow(q, c))
    exponent = constant_value(power.inputs[1])
    assert exponent is not None
    return float(exponent.reshape(()))


def _bounded_attributes(node: gs.Node, signgd_range: float) -> tuple[dict[str, float], float]:
    """(attributes alpha, beta, low, high of the `clip` or `sigmoid` neuron that replaces `node`, its
    output scale s): the neuron holds f(x)/s with s = max(|low|, |high|)/signgd_range, so that its
    output fills [-signgd_range, signgd_range] as a normalized ReLU's does; s = 1 for an unbounded
    output (a Clip with an absent bound)."""
    if node.op == "HardSigmoid":
        alpha, beta = float(node.attrs.get("alpha", 0.2)), float(node.attrs.get("beta", 0.5))
        low, high = 0.0, 1.0
    elif node.op == "Clip":
        bounds = op_support.clip_bounds(node)
        assert bounds is not None  # refuse_unconvertible refused a Clip with non-constant bounds
        (low, high), alpha, beta = bounds, 1.0, 0.0
    else:  # Sigmoid
        alpha, beta, low, high = 1.0, 0.0, 0.0, 1.0
    reach = max(abs(low), abs(high))
    scale = reach / signgd_range if np.isfinite(reach) and reach > 0 else 1.0
    if node.op == "Sigmoid":  # σ(u)/s: only the range scales
        return {"alpha": alpha, "beta": beta, "low": low / scale, "high": high / scale}, scale
    # clip(u, low, high)/s = clip(u/s, low/s, high/s)
    return {"alpha": alpha / scale, "beta": beta / scale, "low": low / scale, "high": high / scale}, scale


def _scale_output(graph: gs.Graph, neuron: gs.Node, scale: float) -> None:
    """Readers of `neuron`'s spikes get them times `scale` (a Mul after it, under the spikes' old
    name): the neuron holds f(x)/scale, its readers' trackers follow f(x)."""
    if scale == 1.0:
        return
    spikes = neuron.outputs[0]
    held = gs.Variable(fresh_name(f"{neuron.name}_held"), dtype=spikes.dtype, shape=spikes.shape)
    factor = gs.Constant(fresh_name(f"{neuron.name}_output_scale"), np.asarray(scale, dtype=np.float32))
    graph.nodes.append(
        gs.Node("Mul", name=fresh_name(f"{neuron.name}_unscale"), inputs=[held, factor], outputs=[spikes])
    )
    neuron.outputs[0] = held


def _placeholder(name: str) -> gs.Constant:
    return gs.Constant(fresh_name(name), np.zeros((), dtype=np.float32))


def _encode(graph: gs.Graph, graph_input: gs.Variable, one_step, fresh, step_zero, attrs: dict) -> None:
    readers = list(graph_input.outputs)
    encoded = gs.Variable(fresh_name(f"{graph_input.name}_encoded"), dtype=np.float32, shape=graph_input.shape)
    final = gs.Variable(fresh_name(f"{graph_input.name}_f_T"), dtype=np.float32)
    graph.nodes.append(
        gs.Node(
            "SignGDEncoder",
            name=fresh_name("encoder"),
            domain=SNN_DOMAIN,
            inputs=[graph_input, one_step, fresh, step_zero],
            outputs=[encoded, final],
            attrs=attrs,
        )
    )
    for reader in readers:
        reader.inputs = [encoded if t is graph_input else t for t in reader.inputs]


def _decode(graph: gs.Graph, out: gs.Variable, one_step, fresh, step_zero, schedule: dict) -> gs.Variable:
    name = out.name
    out.name = fresh_name(name)
    per_step = gs.Variable(name + "_decoded_per_step", dtype=np.float32)
    final = gs.Variable(name, dtype=out.dtype, shape=out.shape)
    graph.nodes.append(
        gs.Node(
            "SignGDDecoder",
            name=fresh_name("decoder"),
            domain=SNN_DOMAIN,
            inputs=[out, one_step, _placeholder(f"{name}_offset"), _placeholder(f"{name}_bias"), fresh, step_zero],
            outputs=[per_step, final],
            attrs=dict(schedule),
        )
    )
    return final
