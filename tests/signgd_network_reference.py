"""Step-by-step reference simulator of a compiled signGD model (spec signgd-dynamics §§1-6).

`SignGDNetworkReference(model).run(x, timesteps)` simulates the output of
`compile_model(..., CompileOptions(neuron="signgd"))` one timestep at a time and returns the decoded
output after every step, [T, B, ...], to compare with the model's `<output>_per_step`.

Split of the work:
* the affine regions between the neurons (spec §0) are evaluated by onnxruntime on a graph made
  from the compiled one: every node of domain "snn" is removed, each snn node's spike / encoded
  output (output 0) becomes a graph input, and each snn node's currents (the encoder's analog x, a
  neuron's z or zp, zq, the decoder's z) become graph outputs. Time is folded into the batch in
  the compiled graph, so feeding `timesteps` = 1 makes it a one-step graph ([1·B, ...] = [B, ...]).
  Per snn node the graph is pruned to the part its currents need (one session each); a node may
  only need the spikes of snn nodes before it in the graph (checked when building). The pruned
  graphs keep the compiled graph's declared shapes: onnxruntime picks its kernels (e.g. NCHWc
  convolutions) from them, and only the same kernels give the compiled model's currents bit for bit.
* the encoder, neurons and decoder run in numpy (tests/signgd_reference.py), from their
  calibrated offset/bias initializers and their attributes (eta0, gamma, schedule, tail, function,
  gate, cubic, slope, alpha, beta, low, high, exponent, codec; the ops' defaults when absent). Per
  timestep, in graph order (which is topological), each node's current is computed from the
  spikes already emitted in this step (spec §2: layers are not delayed), then one step of the
  dynamics: charge x −= η_t(2z − o), fire by the node's rule, reset v −= η_t(2s − 1) (or, for a
  neuron whose attribute spikes is "signed" or "burst", count g = round((v − f(x))/η_t) and
  v −= η_t·g); the encoder emits e_t; the decoder y −= η_t(2z − o).

Float32 ties (spec §10.1): the GELU and exp targets are rounded differently by numpy and by
onnxruntime's kernels, so where v lies within TIE_ULPS of f(x) either spike is right (for a
counted neuron: where (v − f(x))/η_t lies that close to a rounding boundary, see _count_tied). `run` can
take the compiled model's spikes (model_spikes) and use them at such ties only; it lists every tie
in `ties`.

The simulation runs in the floating type of the currents (float32 for a compiled model). Nothing
here imports the runtime's op builders: the dynamics are the numpy reference's, and only the
op signatures (input positions, attribute names and defaults) are taken from their documentation.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper
from signgd_reference import (
    COUNTED,
    RULE_DEFAULTS,
    Rule,
    _initial,
    binary_rule,
    binary_target,
    charge,
    count_reset,
    encode_step,
    eta_schedule,
    fire_reset,
    unary_rule,
    unary_target,
)

from onnx_snn.runtime.session import Session

SNN_DOMAIN = "snn"
TIMESTEPS = "timesteps"

#: the ops' inputs in order (compiler/ir/signgd.py docstrings)
OP_INPUTS: dict[str, tuple[str, ...]] = {
    "SignGDEncoder": ("x", "timesteps", "f0", "t0"),
    "SignGDNeuron": ("z", "timesteps", "offset", "bias", "x0", "v0", "t0"),
    "SignGDBinaryNeuron": (
        "zp",
        "zq",
        "timesteps",
        "offset_p",
        "bias_p",
        "offset_q",
        "bias_q",
        "xp0",
        "xq0",
        "v0",
        "t0",
    ),
    "SignGDDecoder": ("z", "timesteps", "offset", "bias", "y0", "t0"),
}
#: the inputs that vary per step (computed by the affine graph); the others are constants
CURRENTS: dict[str, tuple[str, ...]] = {
    "SignGDEncoder": ("x",),
    "SignGDNeuron": ("z",),
    "SignGDBinaryNeuron": ("zp", "zq"),
    "SignGDDecoder": ("z",),
}
#: attribute defaults of the ops (compiler/ir/signgd.py docstrings; spec §1 schedule, §3 codec, §5 rules)
ATTRIBUTE_DEFAULTS: dict[str, float | str] = {
    "eta0": 0.15,
    "gamma": 0.95,
    "schedule": "exponential",
    "tail": 0.25,
    "codec": "float",
    "spikes": "binary",
}
#: float attributes of the unary rules; absent ones take unary_rule's defaults
RULE_ATTRIBUTES = ("gate", "cubic", "slope", "alpha", "beta", "low", "high")
#: neurons whose targets use exp, sigmoid or erf: numpy and onnxruntime (MLAS kernels, fused
#: QuickGelu) evaluate them in float32 differently, within 2.5 ulps of max(|f(x)|, |x|) (of |eˣ| for
#: exp) of the float64 value, measured over 400k inputs in [−8, 8]. Where v lies that close to the
#: target both verdicts are right in float32 (spec §10.1): a tie
APPROXIMATE_TARGETS = frozenset({"gelu", "silu", "gelu_erf", "gelu_tanh", "exp", "sigmoid"})
#: two-operand neurons whose targets use Pow (p/q^exponent), which neither side rounds correctly:
#: a tie as for APPROXIMATE_TARGETS, on the scale max(|f|, |p|)
APPROXIMATE_BINARY_TARGETS = frozenset({"p_div_q_pow"})
#: the half-width of a tie, in float32 ulps of that scale
TIE_ULPS = 4


def decimal_attribute(value: float) -> float:
    """A float attribute as the decimal it was written as (compiler/ir/signgd.py: "the float attributes
    are read as the short decimals they were written as"): ONNX stores float32, so the value rounded
    to 6 significant digits is taken when it rounds back to the same float32, else the float32."""
    f32 = np.float32(value)
    wide = np.float64(f32)
    if wide == 0 or not np.isfinite(wide):
        return float(wide)
    scale = 10.0 ** (5 - np.floor(np.log(abs(wide)) / np.log(10.0)))
    decimal = np.round(wide * scale) / scale
    return float(decimal) if np.float32(decimal) == f32 else float(wide)


@dataclass
class SnnNode:
    """One snn node of the compiled graph: its op, named inputs, attributes and sub-session."""

    op: str
    name: str
    inputs: dict[str, str]  # input name in OP_INPUTS -> tensor name ("" when omitted)
    output: str  # spikes / encoded / per-step decoded tensor
    attributes: dict[str, float | str]
    session: ort.InferenceSession | None = None
    feeds: list[str] = field(default_factory=list)  # the session's inputs

    def schedule(self) -> dict[str, float | str]:
        keys = ("eta0", "gamma", "schedule", "tail")
        return {k: self.attributes.get(k, ATTRIBUTE_DEFAULTS[k]) for k in keys}

    def rule(self) -> Rule:
        function = self.attributes["function"]
        if self.op == "SignGDBinaryNeuron":
            exponent = self.attributes.get("exponent")
            return binary_rule(function, None if exponent is None else float(exponent))
        return unary_rule(function, **{k: self.attributes[k] for k in RULE_ATTRIBUTES if k in self.attributes})

    @property
    def spikes(self) -> str:
        """The attribute spikes: "binary" (the spec's), or a counted kind (COUNTED)."""
        return str(self.attributes.get("spikes", ATTRIBUTE_DEFAULTS["spikes"]))

    def target(self) -> Callable[..., np.ndarray]:
        """The neuron's target f(x) or f(p, q), what its rule compares v with."""
        function = self.attributes["function"]
        if self.op == "SignGDBinaryNeuron":
            exponent = self.attributes.get("exponent")
            return binary_target(function, None if exponent is None else float(exponent))
        return unary_target(function, **{k: self.attributes[k] for k in RULE_ATTRIBUTES if k in self.attributes})[0]

    @property
    def approximate(self) -> bool:
        """Whether the neuron's target is not correctly rounded (APPROXIMATE_TARGETS and
        APPROXIMATE_BINARY_TARGETS): where v is that close to it, either verdict is right."""
        function = self.attributes.get("function")
        if self.op == "SignGDBinaryNeuron":
            return function in APPROXIMATE_BINARY_TARGETS
        return self.op == "SignGDNeuron" and function in APPROXIMATE_TARGETS

    def exact_target(self, dtype) -> Callable[..., np.ndarray] | None:
        """For an `approximate` neuron, its target f(x) or f(p, q) to evaluate in float64, with the
        attributes rounded to `dtype` as the op has them; else None."""
        if not self.approximate:
            return None
        if self.op == "SignGDBinaryNeuron":
            exponent = float(np.dtype(dtype).type(self.attributes.get("exponent", RULE_DEFAULTS["exponent"])))
            return binary_target(self.attributes["function"], exponent)
        rounded = {k: float(np.dtype(dtype).type(self.attributes.get(k, RULE_DEFAULTS[k]))) for k in RULE_ATTRIBUTES}
        return unary_target(self.attributes["function"], **rounded)[0]


def _attributes(node: onnx.NodeProto) -> dict[str, float | str]:
    out: dict[str, float | str] = {}
    for attribute in node.attribute:
        value = helper.get_attribute_value(attribute)
        if attribute.type == onnx.AttributeProto.FLOAT:
            value = decimal_attribute(value)
        elif isinstance(value, bytes):
            value = value.decode()
        out[attribute.name] = value
    return out


def _node_inputs(node: onnx.NodeProto) -> set[str]:
    """Every tensor a node reads, including the outer-scope names its subgraphs read."""
    names = {n for n in node.input if n}
    for attribute in node.attribute:
        graphs = list(attribute.graphs) + ([attribute.g] if attribute.HasField("g") else [])
        for graph in graphs:
            local = {i.name for i in graph.input} | {i.name for i in graph.initializer}
            for inner in graph.node:
                local.update(inner.output)
            for inner in graph.node:
                names.update(n for n in _node_inputs(inner) if n not in local)
            names.update(o.name for o in graph.output if o.name not in local)
    return names


class SignGDNetworkReference:
    """Reference simulation of a compiled signGD model (path or ModelProto); see the module doc."""

    def __init__(self, model: str | os.PathLike | onnx.ModelProto) -> None:
        model = model if isinstance(model, onnx.ModelProto) else onnx.load(str(model))
        graph = model.graph
        self.constants: dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
        for node in graph.node:
            if node.op_type == "Constant" and node.domain in ("", "ai.onnx") and node.attribute[0].name == "value":
                self.constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
        self.snn: list[SnnNode] = []
        for node in graph.node:
            if node.domain != SNN_DOMAIN:
                continue
            if node.op_type not in OP_INPUTS:
                raise ValueError(f"snn node {node.name} is {node.op_type}, not a signGD op")
            names = dict(zip(OP_INPUTS[node.op_type], list(node.input) + [""] * len(OP_INPUTS[node.op_type])))
            self.snn.append(SnnNode(node.op_type, node.name, names, node.output[0], _attributes(node)))
        decoders = [n for n in self.snn if n.op == "SignGDDecoder"]
        if len(decoders) != 1:
            raise ValueError(f"expected one SignGDDecoder, found {len(decoders)}")
        self.decoder = decoders[0]
        self.graph_inputs = [i.name for i in graph.input if i.name not in self.constants or i.name == TIMESTEPS]
        self._build_sessions(model)

    # ------------------------------------------------------------------ the affine graph ----

    def _build_sessions(self, model: onnx.ModelProto) -> None:
        graph = model.graph
        affine = [n for n in graph.node if n.domain != SNN_DOMAIN]
        snn_outputs = {o: n for n in graph.node if n.domain == SNN_DOMAIN for o in n.output}
        spike_names = [n.output for n in self.snn]
        for node in affine:
            stray = [i for i in _node_inputs(node) if i in snn_outputs and i not in spike_names]
            if stray:
                raise ValueError(f"{node.name} reads the snn state output(s) {stray}: not an affine region")
        producers = {o: i for i, node in enumerate(affine) for o in node.output}
        reads = [_node_inputs(node) for node in affine]
        value_info = {v.name: v for v in [*graph.input, *graph.value_info, *graph.output]}
        done: set[str] = set()
        for snn in self.snn:
            currents = [snn.inputs[c] for c in CURRENTS[snn.op]]
            needed, kept, stack = set(), set(), list(currents)
            while stack:  # the affine nodes the currents depend on, back to graph inputs and spikes
                name = stack.pop()
                if name in needed:
                    continue
                needed.add(name)
                if name in producers and producers[name] not in kept:
                    kept.add(producers[name])
                    stack.extend(reads[producers[name]])
            spikes = [s for s in spike_names if s in needed]
            late = [s for s in spikes if s not in done]
            if late:
                raise ValueError(f"the currents of {snn.name} need spikes {late} of snn nodes after it")
            inputs = [i for i in self.graph_inputs if i in needed] + spikes
            nodes = [affine[i] for i in sorted(kept)]  # graph order: topological
            if nodes:
                snn.feeds = inputs
                snn.session = self._session(model, nodes, inputs, currents, value_info)
            done.add(snn.output)

    def _session(
        self,
        model: onnx.ModelProto,
        nodes: list[onnx.NodeProto],
        inputs: list[str],
        outputs: list[str],
        value_info: dict[str, onnx.ValueInfoProto],
    ) -> ort.InferenceSession:
        def declared(name: str) -> onnx.ValueInfoProto:
            """The compiled graph's declaration (shapes matter: onnxruntime picks kernels, e.g. the
            NCHWc convolutions, and so the float rounding, from them)."""
            if name == TIMESTEPS:
                return helper.make_tensor_value_info(name, onnx.TensorProto.INT64, [])
            if name in value_info:
                return value_info[name]
            return helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None)

        used = set().union(*(_node_inputs(n) for n in nodes))
        initializers = [i for i in model.graph.initializer if i.name in used and i.name not in inputs]
        produced = {o for n in nodes for o in n.output} - set(outputs)
        graph = helper.make_graph(
            nodes,
            "affine_region",
            [declared(i) for i in inputs],
            [declared(o) for o in dict.fromkeys(outputs)],
            initializers,
            value_info=[value_info[n] for n in produced if n in value_info],
        )
        sub = helper.make_model(
            graph, opset_imports=list(model.opset_import), ir_version=model.ir_version, functions=list(model.functions)
        )
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.log_severity_level = 3
        return ort.InferenceSession(sub.SerializeToString(), options, providers=["CPUExecutionProvider"])

    def _currents(self, snn: SnnNode, values: dict[str, np.ndarray]) -> list[np.ndarray]:
        """The node's currents this step: from its session, or fed values when no op lies between."""
        names = [snn.inputs[c] for c in CURRENTS[snn.op]]
        computed = {}
        if snn.session is not None:
            outs = [o.name for o in snn.session.get_outputs()]
            computed = dict(zip(outs, snn.session.run(outs, {k: values[k] for k in snn.feeds})))
        return [computed[n] if n in computed else values[n] for n in names]

    def _constant(self, snn: SnnNode, name: str):
        """A constant input of `snn` (offset, bias, initial state, t0); None when omitted."""
        tensor = snn.inputs.get(name, "")
        if not tensor:
            return None
        if tensor not in self.constants:
            raise ValueError(f"{snn.name}: input {name} ({tensor}) is not a constant")
        return self.constants[tensor]

    # ------------------------------------------------------------------------ simulation ----

    def run(
        self,
        inputs: np.ndarray | Mapping[str, np.ndarray],
        timesteps: int,
        trace: dict[str, list] | None = None,
        tie_spikes: Mapping[str, np.ndarray] | None = None,
    ) -> np.ndarray:
        """The decoded output after every step, [T, B, ...], for the analog `inputs` (an array for
        a one-input model, else name -> array).

        `trace`, when given, collects per snn node name what it emitted at every step and its
        currents: trace[name] = [(emitted [B, ...], currents), ...].
        `tie_spikes` (node name -> the compiled model's spikes [T, B, ...], see model_spikes) settles
        the float32 ties of the GELU and exp neurons (see TIE_ULPS): where |v − f(x)| is within
        the float32 evaluation error of f, the model's spike is taken. Every tie is listed in
        `self.ties` as (node name, step, tied elements, of which the model's spike differed from
        the reference's own verdict)."""
        data = [i for i in self.graph_inputs if i != TIMESTEPS]
        if not isinstance(inputs, Mapping):
            if len(data) != 1:
                raise ValueError(f"the model has inputs {data}; pass a dict")
            inputs = {data[0]: inputs}
        values: dict[str, np.ndarray] = {k: np.ascontiguousarray(v, np.float32) for k, v in inputs.items()}
        values[TIMESTEPS] = np.asarray(1, np.int64)
        self.ties: list[tuple[str, int, int, int]] = []
        self.count_ties: list[tuple[str, int, int, int]] = []
        states: dict[str, dict] = {}
        eta: dict[str, np.ndarray] = {}
        per_step = []
        for t in range(timesteps):
            step = dict(values)
            for snn in self.snn:
                currents = self._currents(snn, step)
                if snn.name not in states:
                    states[snn.name] = self._fresh(snn, currents)
                    t0 = self._constant(snn, "t0")
                    eta[snn.name] = eta_schedule(
                        int(t0) if t0 is not None else 0, timesteps, dtype=currents[0].dtype, **snn.schedule()
                    )
                given = tie_spikes.get(snn.name) if tie_spikes is not None else None
                step[snn.output] = self._step(
                    snn, states[snn.name], currents, eta[snn.name][t], t, None if given is None else given[t]
                )
                if trace is not None:
                    trace.setdefault(snn.name, []).append((step[snn.output], currents))
            per_step.append(step[self.decoder.output])
        return np.stack(per_step)

    def _fresh(self, snn: SnnNode, currents: list[np.ndarray]) -> dict:
        """The initial state (spec §2: x₀ = β, v₀ = 0; §3: f₀ = 0, y₀ = β), or the given non-NaN one."""
        dtype = currents[0].dtype
        if snn.op == "SignGDEncoder":
            x = currents[0]
            return {"f": _initial(self._constant(snn, "f0"), 0, x.shape, dtype), "x": x}
        if snn.op == "SignGDDecoder":
            offset, bias = self._constant(snn, "offset"), self._constant(snn, "bias")
            shape = np.broadcast_shapes(currents[0].shape, np.shape(bias))
            return {"y": _initial(self._constant(snn, "y0"), bias, shape, dtype), "offsets": [offset]}
        tags = [""] if snn.op == "SignGDNeuron" else ["_p", "_q"]
        offsets = [self._constant(snn, f"offset{tag}") for tag in tags]
        biases = [self._constant(snn, f"bias{tag}") for tag in tags]
        starts = [self._constant(snn, f"x{tag.lstrip('_')}0") for tag in tags]
        xs = [
            _initial(x0, b, np.broadcast_shapes(z.shape, np.shape(b)), dtype)
            for x0, b, z in zip(starts, biases, currents)
        ]
        shape = np.broadcast_shapes(*(x.shape for x in xs))
        return {
            "x": xs,
            "v": _initial(self._constant(snn, "v0"), 0, shape, dtype),
            "offsets": offsets,
            "rule": snn.rule(),
            "target": snn.target(),
            "exact_target": snn.exact_target(dtype),
        }

    def _step(
        self, snn: SnnNode, state: dict, currents: list[np.ndarray], eta, t: int, model_spikes: np.ndarray | None
    ) -> np.ndarray:
        """One timestep of `snn` (spec §2, §3); returns what it emits (for the decoder: y_t)."""
        if snn.op == "SignGDEncoder":  # the analog input is read once, at the first step
            codec = str(snn.attributes.get("codec", ATTRIBUTE_DEFAULTS["codec"]))
            e, state["f"] = encode_step(state["f"], state["x"], eta, codec, snn.spikes)
            return e
        if snn.op == "SignGDDecoder":
            state["y"] = charge(state["y"], currents[0], state["offsets"][0], eta)
            return state["y"]
        state["x"] = [charge(x, z, o, eta) for x, z, o in zip(state["x"], currents, state["offsets"])]
        v, counted = state["v"], snn.spikes in COUNTED
        if counted:
            emitted, v_next = count_reset(v, state["target"](*state["x"]), eta, snn.spikes)
        else:
            emitted, v_next = fire_reset(v, state["rule"](v, state["x"]), eta)
        if state["exact_target"] is not None:
            exact_target = state["exact_target"]
            tied = (
                self._count_tied(snn, v, state["x"], exact_target, eta)
                if counted
                else self._tied(snn, v, state["x"], exact_target)
            )
            if tied.any():
                differ = 0
                if model_spikes is not None:
                    model = np.broadcast_to(model_spikes, emitted.shape).astype(emitted.dtype)
                    differ = int((tied & (model != emitted)).sum())
                    emitted = np.where(tied, model, emitted)
                    v_next = np.where(tied, v - (2 * emitted - 1) * eta, v_next)
                (self.count_ties if counted else self.ties).append((snn.name, t + 1, int(tied.sum()), differ))
        state["v"] = v_next
        return emitted

    @staticmethod
    def _count_tied(snn: SnnNode, v: np.ndarray, xs: list[np.ndarray], exact_target, eta) -> np.ndarray:
        """A counted neuron's float32 ties: where (v − f(x))/η_t lies within TIE_ULPS ulps of f's
        scale (over η_t) of a rounding boundary k + ½. They are common, not rare: a settled neuron's
        residual v − f grows relative to η_t = η0/t until it crosses ½ step, so it crosses close to ½."""
        exact, ulp = _exact_and_ulp(snn, xs, exact_target)
        steps = (v.astype(np.float64) - exact) / float(eta)
        return np.abs(steps - np.floor(steps) - 0.5) <= TIE_ULPS * ulp / float(eta)

    @staticmethod
    def _tied(snn: SnnNode, v: np.ndarray, xs: list[np.ndarray], exact_target) -> np.ndarray:
        """Where v is within TIE_ULPS float32 ulps of the target f(x) evaluated in float64: there
        float32 evaluations of f (numpy's, onnxruntime's) may fall on either side of v."""
        exact, ulp = _exact_and_ulp(snn, xs, exact_target)
        return np.abs(v.astype(np.float64) - exact) <= TIE_ULPS * ulp


def _exact_and_ulp(snn: SnnNode, xs: list[np.ndarray], exact_target) -> tuple[np.ndarray, np.ndarray]:
    """The float64 target of the estimates `xs` and one float32 ulp of its scale (|eˣ| for exp,
    else max(|f|, |x|) with x the first operand), as float64 arrays."""
    exact = exact_target(*(x.astype(np.float64) for x in xs))
    x = xs[0]
    scale = np.abs(exact) if snn.attributes["function"] == "exp" else np.maximum(np.abs(exact), np.abs(x))
    return exact, np.spacing(np.nan_to_num(scale).astype(x.dtype)).astype(np.float64)


def model_spikes(
    model: str | os.PathLike | onnx.ModelProto,
    inputs: np.ndarray | Mapping[str, np.ndarray],
    timesteps: int,
    names: list[str] | None = None,
) -> dict[str, np.ndarray]:
    """The spikes [T, B, ...] the compiled model's snn nodes `names` (default: the neurons whose
    ties the reference settles) emit, from one onnxruntime run with them as extra outputs."""
    model = model if isinstance(model, onnx.ModelProto) else onnx.load(str(model))
    model = onnx.ModelProto.FromString(model.SerializeToString())
    nodes = {n.name: n for n in model.graph.node if n.domain == SNN_DOMAIN}
    if names is None:
        names = [
            name for name, n in nodes.items() if SnnNode(n.op_type, name, {}, n.output[0], _attributes(n)).approximate
        ]
    present = {o.name for o in model.graph.output}
    for name in names:
        if nodes[name].output[0] not in present:
            model.graph.output.append(
                helper.make_tensor_value_info(nodes[name].output[0], onnx.TensorProto.FLOAT, None)
            )
    options = ort.SessionOptions()
    options.log_severity_level = 3  # the timesteps initializer-input warning
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    data = [i.name for i in session.get_inputs() if i.name != TIMESTEPS]
    feeds = dict(inputs) if isinstance(inputs, Mapping) else {data[0]: inputs}
    feeds = {k: np.ascontiguousarray(v, np.float32) for k, v in feeds.items()}
    feeds[TIMESTEPS] = np.asarray(timesteps, np.int64)
    outputs = session.run([nodes[name].output[0] for name in names], feeds)
    return {name: out.reshape((timesteps, -1) + out.shape[1:]) for name, out in zip(names, outputs)}


RTOL = 1e-4  # of the largest |output| over all steps and samples


def compare(model, x: np.ndarray, timesteps: int) -> tuple[float, float, np.ndarray, np.ndarray]:
    """(max |Δ|, max |compiled|, compiled per step, reference per step) over `timesteps` steps.

    Also checks that the comparison is not vacuous: every neuron emits spikes (binary ones, or
    (1 + g)/2 for an integer count g) and some neuron both fires and stays silent (g ≠ 0 and g = 0)."""
    got = Session(model).run(x, timesteps).per_step
    reference = SignGDNetworkReference(model)
    trace: dict[str, list] = {}
    expected = reference.run(x, timesteps, trace=trace, tie_spikes=model_spikes(model, x, timesteps))
    assert got.shape == expected.shape == (timesteps, len(x), 10)
    neurons = [n for n in reference.snn if "Neuron" in n.op]
    spikes = [np.stack([e for e, _ in trace[n.name]]) for n in neurons]
    counts = [2 * s - 1 if n.spikes in COUNTED else s for n, s in zip(neurons, spikes)]
    assert spikes and all(np.array_equal(c, np.round(c)) for c in counts)
    assert all(set(np.unique(s)) <= {0.0, 1.0} for n, s in zip(neurons, spikes) if n.spikes not in COUNTED)
    assert any(c.any() and not c.all() for c in counts)
    decisions = sum(s.size for s in spikes)
    settled = [tie for tie in reference.ties if tie[3]]
    print(
        f"{decisions} spike decisions, {sum(t[2] for t in reference.ties)} float32 ties, "
        f"{sum(t[3] for t in settled)} settled the other way by the model: {settled}"
    )
    assert sum(t[3] for t in settled) <= max(2, decisions // 100_000), settled  # ties are rare
    counted = sum(t[3] for t in reference.count_ties)
    print(f"counted neurons: {sum(t[2] for t in reference.count_ties)} ties, {counted} settled the other way")
    assert counted <= decisions // 100  # common (see _count_tied), but only within the ulps of a target
    diff, scale = float(np.abs(got - expected).max()), float(np.abs(got).max())
    own = float(np.abs(got - reference.run(x, timesteps)).max())
    print(f"max |Δ| / max |output| = {diff / scale:.3g} ({own / scale:.3g} with the reference's own tie verdicts)")
    return diff, scale, got, expected
