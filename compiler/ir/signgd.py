"""signGD ops of the `snn` domain (spec signgd-dynamics §§1-5): neurons, encoder and decoder.

Each op is a model-local function of standard ops (see runtime.neurons): time is folded into the
batch (t-major), `timesteps` is an int64 scalar T, `t0` an int64 scalar counting the steps
already done (so η continues across chunks), and every state is explicit (a NaN entry means
"fresh"). The float inputs of one op share one type (float32 or float64): the outputs come back
in it and the dynamics run in it. Every tracker follows spec §2 step by step, in a Scan over T
whose body carries the input estimate x and the output estimate v:

    x_t = x_{t-1} - η_t·(2z_t - o);   s_t = rule(v_{t-1}, x_t);   v_t = v_{t-1} - η_t·(2s_t - 1).

Counted spikes (beyond the spec, attribute spikes = "burst" or "signed"). The spec's neuron sends
one bit a step, so its estimate moves by exactly ±η_t every step: it can reach at most Σ η_k, and
it never rests on its target. A counted neuron sends an integer g_t, the signed number of η_t-steps
that brings its estimate nearest its target:

    g_t = clip(round((v_{t-1} − f(x_t)) / η_t), −bound, bound);   v_t = v_{t-1} − η_t·g_t,

with bound ∞ (burst) or 1 (signed: g ∈ {−1, 0, 1}); a NaN target (q < 0 under a root) gives
g = 0. It emits (1 + g_t)/2, which is the spec's s_t where g = ±1, so the 2z − o charge of every
reader still adds A·g: the estimates x_t = A·v^up_t + b hold exactly as in spec §2. A burst neuron
is therefore within η_t/2 of its target at every step, and the network after step t is the ANN
with every neuron's output rounded to the η_t grid: its error falls as η_t does (η_0/t under the
inverse schedule), with no reach limit. A spike count is |g| (+1 and −1 alike).

Formulation. The charge is a linear recurrence, so it could run for all T at once outside the
Scan (η·(o − 2z) for every t, CumSum over time, the target f(x) for every t), leaving only fire
and reset in the body. Measured in onnxruntime on 2 CPU cores, [T=64, B=256, 6272] float32, best
of 3×7 runs: everything in the body 215 ms (ReLU) / 274 ms (GELU); CumSum outside 296 / 317 ms,
and 323 / 330 ms with x_0 scattered into the first increment so that the sum stays sequential
(x_0 + CumSum reassociates: not the spec's bits, and a chunked run differs from a whole one). The
body also needs no [T, B, ...] temporaries. So the body carries x, and every op equals the spec's
step-by-step recurrence in its floating type bit for bit (given the same f), chunked or not.
The float attributes eta0 and gamma are read as the short decimals they were written as
(see signgd_graph.decimal_attribute), so float64 runs use η0 = 0.15 exactly.

Ops are dispatched on their string attributes (`function`, `schedule`, `codec`) once per call by
an If chain (onnxruntime folds it at load); the values are not checked: an unknown one runs the
last case of the chain.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np
import onnx
from onnx import helper

from onnx_snn.ir.function_parts import time_sequence_nodes as time_view
from onnx_snn.ir.signgd_graph import (
    ETA_T,
    Branch,
    StepBody,
    attribute_constant,
    charge_nodes,
    cover_batch,
    decimal_attribute,
    fire_reset_nodes,
    fold_time,
    initial_state,
    make_op,
    node,
    scan_node,
    schedule_nodes,
    switch,
    typed_constant,
)

#: spec §1 default schedule (η_t = 0.15·0.95^(t−1)); `tail` is read only by schedule="exp_inverse":
#: η_t = eta0·gamma^(t−1) floored at tail/t once t > 1/ln(1/gamma) (Σ η_t = ∞, so the reachable
#: range is unbounded and the float encoder's gain 1 − Π(1 − η_k) tends to 1)
SCHEDULE_DEFAULTS: dict[str, float | str] = {"eta0": 0.15, "gamma": 0.95, "schedule": "exponential", "tail": 0.25}
#: SignGDNeuron's own attributes, read by its gated functions x·g(x) (GELU forms, SiLU, HardSwish;
#: see build_signgd_neuron): gate by function, and cubic. Such an f on inputs held as x/λ, f(λx)/λ,
#: is the same form with gate·λ and cubic·λ²
GATES = {"gelu": 1.702, "gelu_erf": 0.5**0.5, "gelu_tanh": 2 * (2 / np.pi) ** 0.5, "silu": 1.0, "hard_swish": 1 / 6}
GELU_CUBIC = 0.044715
#: the LeakyReLU slope attribute's default: the spec's fixed 0.1 (the compiler passes the model's alpha)
LEAKY_SLOPE = 0.1
#: defaults of the bounded functions' attributes (clip, sigmoid: an input map alpha·x + beta and an
#: output range [low, high]; the compiler always writes them) and of the p_div_q_pow exponent (½:
#: the spec's p/√q rule; LRN writes its beta)
BOUNDED_DEFAULTS: dict[str, float] = {"alpha": 1.0, "beta": 0.0, "low": 0.0, "high": 1.0}
POWER_EXPONENT = 0.5
#: the `spikes` attribute of neurons and encoders: "binary" (the spec's one bit a step), "signed" or
#: "burst" (counted, see the module doc). Unset: the spec's
SPIKES_DEFAULT: dict[str, float | str] = {"spikes": "binary"}
#: the most spikes a burst neuron sends in one step: 2^24, every count exact in float32; finite, so
#: an infinite target (exp overflowing) moves the estimate a long way rather than to ±inf
BURST_BOUND = float(2**24)
ENCODER_DEFAULTS: dict[str, float | str] = {"codec": "float", **SCHEDULE_DEFAULTS, **SPIKES_DEFAULT}

NEURON_INPUTS = ("z", "timesteps", "offset", "bias", "x0", "v0", "t0")
BINARY_NEURON_INPUTS = ("zp", "zq", "timesteps", "offset_p", "bias_p", "offset_q", "bias_q", "xp0", "xq0", "v0", "t0")
ENCODER_INPUTS = ("x", "timesteps", "f0", "t0")
DECODER_INPUTS = ("z", "timesteps", "offset", "bias", "y0", "t0")


@dataclass(frozen=True)
class FireRule:
    """When a neuron fires (spec §5). `nodes(v, estimates, out)` build, in the step body, the bool
    `out` from the output estimate v and the step's input estimates; `target(estimates, out)` builds
    the value f(x) the rule compares v with (what a counted neuron rounds towards). Both may read
    `constants` (name → value, names unique across rules), made in the data type outside the Scan."""

    nodes: Callable[[str, list[str], str], list[onnx.NodeProto]]
    target: Callable[[list[str], str], list[onnx.NodeProto]]
    constants: dict[str, float] = field(default_factory=dict)
    #: whether the target can be NaN for finite estimates (a quotient: 0/0, √ or a power of q < 0)
    undefined_somewhere: bool = False


def _above(
    target: Callable[[list[str], str], list[onnx.NodeProto]], ties: bool, constants: dict[str, float] | None = None
) -> FireRule:
    """Fires iff v ≥ target (ties, H⁺) or v > target (H); `target(estimates, out)` builds the target."""
    compare = "GreaterOrEqual" if ties else "Greater"
    return FireRule(
        lambda v, xs, out: [*target(xs, f"{out}_target"), node(compare, [v, f"{out}_target"], out)],
        target,
        constants or {},
    )


def _op(op_type: str) -> Callable[[list[str], str], list[onnx.NodeProto]]:
    return lambda xs, out: [node(op_type, xs, out)]


def _leaky_relu(xs: list[str], out: str) -> list[onnx.NodeProto]:
    """max(x, slope·x): x where x ≥ 0, slope·x below (for slope ≤ 1; the spec fixes 0.1)."""
    return [node("Mul", [xs[0], "leak_slope"], f"{out}_leak"), node("Max", [xs[0], f"{out}_leak"], out)]


def _sigmoid_gelu(xs: list[str], out: str) -> list[onnx.NodeProto]:
    """x·σ(gate·x) (spec §5 with gate 1.702)."""
    return [
        node("Mul", [xs[0], "gelu_gate"], f"{out}_scaled"),
        node("Sigmoid", [f"{out}_scaled"], f"{out}_gate"),
        node("Mul", [xs[0], f"{out}_gate"], out),
    ]


def _erf_gelu(xs: list[str], out: str) -> list[onnx.NodeProto]:
    """x·(½ + ½·erf(gate·x)): the exact GELU x·Φ(x) with gate 1/√2."""
    return [
        node("Mul", [xs[0], "gelu_gate"], f"{out}_scaled"),
        node("Erf", [f"{out}_scaled"], f"{out}_erf"),
        node("Mul", [f"{out}_erf", "half"], f"{out}_half_erf"),
        node("Add", [f"{out}_half_erf", "half"], f"{out}_cdf"),
        node("Mul", [xs[0], f"{out}_cdf"], out),
    ]


def _tanh_gelu(xs: list[str], out: str) -> list[onnx.NodeProto]:
    """x·σ(gate·x·(1 + cubic·x²)): the tanh GELU ½x(1 + tanh(√(2/π)(x + 0.044715x³))) with gate
    2√(2/π), cubic 0.044715 (½(1 + tanh u) = σ(2u))."""
    x = xs[0]
    return [
        node("Mul", [x, x], f"{out}_square"),
        node("Mul", [f"{out}_square", "gelu_cubic"], f"{out}_cubic"),
        node("Add", [f"{out}_cubic", "gelu_one"], f"{out}_poly"),
        node("Mul", [x, f"{out}_poly"], f"{out}_arg"),
        node("Mul", [f"{out}_arg", "gelu_gate"], f"{out}_scaled"),
        node("Sigmoid", [f"{out}_scaled"], f"{out}_gate"),
        node("Mul", [x, f"{out}_gate"], out),
    ]


def _divided(divisor: Callable[[str, str], onnx.NodeProto]) -> Callable[[list[str], str], list[onnx.NodeProto]]:
    """The target p / divisor(q) (NaN where the divisor is)."""
    return lambda xs, out: [divisor(xs[1], f"{out}_divisor"), node("Div", [xs[0], f"{out}_divisor"], out)]


def _p_rsqrt_q(v: str, xs: list[str], out: str) -> list[onnx.NodeProto]:
    """√q·v > p; where q < 0, √q is NaN and the neuron does not fire (spec §10.4)."""
    p, q = xs
    return [
        node("Sqrt", [q], f"{out}_root"),
        node("Mul", [f"{out}_root", v], f"{out}_scaled"),
        node("Greater", [f"{out}_scaled", p], out),
    ]


def _hard_swish(xs: list[str], out: str) -> list[onnx.NodeProto]:
    """x·clip(gate·x + ½, 0, 1): HardSwish x·relu6(x + 3)/6 with gate 1/6."""
    return [
        node("Mul", [xs[0], "gelu_gate"], f"{out}_scaled"),
        node("Add", [f"{out}_scaled", "half"], f"{out}_shifted"),
        node("Clip", [f"{out}_shifted", "zero", "swish_one"], f"{out}_gate"),
        node("Mul", [xs[0], f"{out}_gate"], out),
    ]


def _affine_input(xs: list[str], out: str) -> list[onnx.NodeProto]:
    """`out` = alpha·x + beta (the bounded functions' input map)."""
    return [node("Mul", [xs[0], "in_gain"], f"{out}_gained"), node("Add", [f"{out}_gained", "in_shift"], out)]


def _clip(xs: list[str], out: str) -> list[onnx.NodeProto]:
    """clip(alpha·x + beta, low, high): HardSigmoid is (alpha, beta, 0, 1), Clip(min, max) is
    (1, 0, min, max) (an absent bound ±inf); an output held as f/s takes (alpha/s, beta/s, low/s, high/s)."""
    return [*_affine_input(xs, f"{out}_u"), node("Clip", [f"{out}_u", "out_low", "out_high"], out)]


def _sigmoid(xs: list[str], out: str) -> list[onnx.NodeProto]:
    """low + (high − low)·σ(alpha·x + beta): the logistic from low to high (Sigmoid: (1, 0, 0, 1);
    an output held as σ/s: high 1/s)."""
    return [
        *_affine_input(xs, f"{out}_u"),
        node("Sigmoid", [f"{out}_u"], f"{out}_logistic"),
        node("Sub", ["out_high", "out_low"], f"{out}_span"),
        node("Mul", [f"{out}_logistic", f"{out}_span"], f"{out}_rise"),
        node("Add", [f"{out}_rise", "out_low"], out),
    ]


def _p_div_q_pow(v: str, xs: list[str], out: str) -> list[onnx.NodeProto]:
    """q^exponent·v > p (p/q^exponent, e.g. LRN's x/(k + α/n·Σx²)^β); where q < 0 a fractional
    power is NaN and the neuron does not fire, as p_rsqrt_q."""
    p, q = xs
    return [
        node("Pow", [q, "q_exponent"], f"{out}_power"),
        node("Mul", [f"{out}_power", v], f"{out}_scaled"),
        node("Greater", [f"{out}_scaled", p], out),
    ]


UNARY_RULES: dict[str, FireRule] = {
    "relu": _above(_op("Relu"), ties=True),
    "leaky_relu": _above(_leaky_relu, ties=False),
    "gelu": _above(_sigmoid_gelu, ties=False),
    "silu": _above(_sigmoid_gelu, ties=False),  # x·σ(gate·x) is SiLU at gate 1: the spec's GELU rule
    "gelu_erf": _above(_erf_gelu, ties=False),
    "gelu_tanh": _above(_tanh_gelu, ties=False, constants={"gelu_one": 1.0}),
    "hard_swish": _above(_hard_swish, ties=False, constants={"swish_one": 1.0}),
    "abs": _above(_op("Abs"), ties=False),
    "square": _above(lambda xs, out: [node("Mul", [xs[0], xs[0]], out)], ties=True),
    "exp": _above(_op("Exp"), ties=True),
    # beyond the spec, by its method (fire iff v lies above the target): ties fire as ReLU's for
    # the piecewise-linear clip (clip(x, 0, inf) is the relu rule bit for bit), not for the
    # smooth sigmoid (as GELU's)
    "clip": _above(_clip, ties=True),
    "sigmoid": _above(_sigmoid, ties=False),
}

BINARY_RULES: dict[str, FireRule] = {
    "maximum": _above(_op("Max"), ties=False),
    "div": replace(_above(_op("Div"), ties=False), undefined_somewhere=True),
    "product": _above(_op("Mul"), ties=True),
    "p_rsqrt_q": FireRule(_p_rsqrt_q, _divided(lambda q, out: node("Sqrt", [q], out)), undefined_somewhere=True),
    "p_div_q_pow": FireRule(
        _p_div_q_pow, _divided(lambda q, out: node("Pow", [q, "q_exponent"], out)), undefined_somewhere=True
    ),
}


@dataclass(frozen=True)
class _Tracker:
    """Names of one input tracker's values (spec §2): its current z, its calibration and its
    estimate; tag "" for a unary neuron or the decoder, "p" or "q" for an operand."""

    tag: str
    estimate: str = "x"

    def name(self, stem: str) -> str:
        """offset, bias, half_offset: `stem` (no tag) or `stem_<tag>`."""
        return f"{stem}_{self.tag}" if self.tag else stem

    def x(self, suffix: str) -> str:
        """The estimate `x<tag><suffix>`: x0, x_init, x_T; x_prev, x_next in the step body."""
        return f"{self.estimate}{self.tag}{suffix}"

    def z(self, suffix: str = "") -> str:
        """The current `z<tag><suffix>`: the input z, z_seq, z_step_shape; z_t in the step body."""
        return f"z{self.tag}{suffix}"

    def setup(self) -> list[onnx.NodeProto]:
        """Nodes viewing the current as [T, B, ...], halving the offset, and making the initial
        estimate (NaN entries: the bias). Reads `half`."""
        view, _ = time_view(self.z(), "timesteps", self.z("_"))  # makes z<tag>_seq and z<tag>_step_shape
        step = self.z("_step_shape")
        return [
            *view,
            *cover_batch(self.name("offset"), step, self.name("offset_covering")),
            *cover_batch(self.name("bias"), step, self.name("bias_covering")),
            node("Mul", [self.name("offset_covering"), "half"], self.name("half_offset")),
            *initial_state(self.x("0"), self.name("bias_covering"), [step], self.x("_init")),
        ]

    def charge(self) -> list[onnx.NodeProto]:
        """Step nodes: x_next = x_prev − η_t·(2z_t − o)."""
        return charge_nodes(self.x("_prev"), self.z("_t"), self.name("half_offset"), self.x("_next"))


def spike_bound_nodes(like: str) -> list[onnx.NodeProto]:
    """Nodes making the string `spike_kind` (the attribute `spikes`), and `spike_bound` and
    `minus_spike_bound` (typed like `like`) from it: BURST_BOUND for "burst", else 1 (the most a
    counted neuron, or the exact codec, moves in η_t-steps at once)."""
    return [
        attribute_constant("spike_kind", "spikes", "string"),
        helper.make_node("Constant", [], ["burst_kind"], value_string="burst"),
        node("Equal", ["spike_kind", "burst_kind"], "is_burst"),
        *typed_constant("burst_bound", BURST_BOUND, like),
        *typed_constant("one_step_bound", 1.0, like),
        node("Where", ["is_burst", "burst_bound", "one_step_bound"], "spike_bound"),
        node("Neg", ["spike_bound"], "minus_spike_bound"),
    ]


def _fire_nodes(rule: FireRule, estimates: list[str]) -> list[onnx.NodeProto]:
    """The spec's fire and reset (spikes = "binary"): s_t = rule(v, x_t), v − η_t·(2s_t − 1)."""
    return [*rule.nodes("v_prev", estimates, "fire"), *fire_reset_nodes("fire", "v_prev", "v_next", "spike")]


def _count_nodes(rule: FireRule, estimates: list[str]) -> list[onnx.NodeProto]:
    """A counted neuron's step (module doc): g = clip(round((v − f(x_t))/η_t), ±spike_bound), 0 where
    the target is NaN (guarded only for rules whose target can be); v − η_t·g; emits (1 + g)/2."""
    rounded = "rounded_steps" if rule.undefined_somewhere else "steps"
    nodes = [
        *rule.target(estimates, "target"),
        node("Sub", ["v_prev", "target"], "gap"),
        node("Div", ["gap", ETA_T], "gap_in_steps"),
        node("Round", ["gap_in_steps"], rounded),
    ]
    if rule.undefined_somewhere:
        nodes += [node("IsNaN", [rounded], "undefined"), node("Where", ["undefined", "zero", rounded], "steps")]
    return nodes + [
        node("Clip", ["steps", "minus_spike_bound", "spike_bound"], "count"),
        node("Mul", ["count", ETA_T], "v_move"),
        node("Sub", ["v_prev", "v_move"], "v_next"),
        node("Add", ["count", "one"], "count_plus_one"),
        node("Mul", ["count_plus_one", "half"], "spike"),
    ]


#: builds a neuron's fire-or-count and reset nodes from its rule and its input estimates
Step = Callable[[FireRule, list[str]], list[onnx.NodeProto]]
#: the step of each `spikes` attribute value (an unknown value runs the last)
STEPS: dict[str, Step] = {
    "binary": _fire_nodes,
    "counted": _count_nodes,
}


def _scan_branch(rule: FireRule, trackers: list[_Tracker], step: Step) -> Branch:
    """A switch case: the Scan of the neuron's steps, each the trackers' charge and then `step`."""

    def build(prefix: str) -> tuple[list[onnx.NodeProto], list[str]]:
        estimates = [t.x("_next") for t in trackers]
        body = StepBody(
            states=[t.x("_prev") for t in trackers] + ["v_prev"],
            inputs=[t.z("_t") for t in trackers],
            nodes=[*(n for t in trackers for n in t.charge()), *step(rule, estimates)],
            next_states=estimates + ["v_next"],
            emits=["spike"],
        )
        finals = [prefix + t.x("_T") for t in trackers] + [f"{prefix}v_T"]
        initial = [t.x("_init") for t in trackers] + ["v_init"]
        sequences = [t.z("_seq") for t in trackers]
        scan = scan_node(body, initial, sequences, finals, [f"{prefix}spike_seq"], f"{prefix}step")
        return [scan], finals + [f"{prefix}spike_seq"]

    return build


def _neuron_branch(rule: FireRule, trackers: list[_Tracker], like: str) -> Branch:
    """A switch case: the constants of `rule` (typed like `like`) and the Scan of the neuron's
    steps, binary (spikes = "binary") or counted (any other value)."""

    def build(prefix: str) -> tuple[list[onnx.NodeProto], list[str]]:
        constants = [n for name, value in rule.constants.items() for n in typed_constant(name, value, like)]
        outputs = [prefix + t.x("_T") for t in trackers] + [f"{prefix}v_T", f"{prefix}spike_seq"]
        cases = {kind: _scan_branch(rule, trackers, step) for kind, step in STEPS.items()}
        return constants + switch("spike_kind", cases, outputs), outputs

    return build


def _build_neuron(
    name: str,
    rules: dict[str, FireRule],
    trackers: list[_Tracker],
    inputs: tuple[str, ...],
    opset: int,
    doc: str | None,
    float_attributes: dict[str, tuple[str, float]],
) -> onnx.FunctionProto:
    """The function of a neuron with one input tracker per entry of `trackers`; `float_attributes`
    maps a constant the rules read to (its attribute, default)."""
    like = trackers[0].z()
    nodes = [
        attribute_constant("function", "function", "string"),
        *schedule_nodes("t0", "timesteps", like),
        *typed_constant("half", 0.5, like),
        *typed_constant("zero", 0.0, like),
        *typed_constant("one", 1.0, like),
        *spike_bound_nodes(like),
    ]
    for constant, (attribute, _) in float_attributes.items():
        nodes += [
            *decimal_attribute(f"{constant}_f64", attribute),
            node("CastLike", [f"{constant}_f64", like], constant),
        ]
    nodes += [n for t in trackers for n in t.setup()]
    nodes += initial_state("v0", "zero", [t.z("_step_shape") for t in trackers], "v_init")
    cases = {function: _neuron_branch(rule, trackers, like) for function, rule in rules.items()}
    nodes += switch("function", cases, [t.x("_T") for t in trackers] + ["v_T", "spike_seq"])
    nodes += fold_time("spike_seq", "spikes")
    defaults = {**SCHEDULE_DEFAULTS, **SPIKES_DEFAULT, **dict(float_attributes.values())}
    return make_op(
        name, list(inputs), ["spikes", *(t.x("_T") for t in trackers), "v_T"], nodes, opset, defaults, ["function"], doc
    )


def build_signgd_neuron(opset: int) -> onnx.FunctionProto:
    """`snn.SignGDNeuron(z, timesteps, offset, bias, x0, v0, t0) -> (spikes, x_T, v_T)`.

    Inputs: z [T*B, ...] input current per step; timesteps int64 scalar T; offset o and bias β
    (calibrated on one sample: broadcastable to [B, ...], or [k, ...] for a batch axis that merges
    each sample with k positions, as Swin's windows, which is tiled B times); x0, v0 the input and
    output estimates, broadcastable to [B, ...] (NaN entries: fresh, x0 = β, v0 = 0); t0 int64
    scalar, steps already done.
    Outputs: spikes [T*B, ...] in {0, 1}; x_T and v_T [B, ...] after step t0 + T.
    Attributes: function (required) with its firing rule (spec §5):
      relu v ≥ max(x, 0); leaky_relu v > max(x, slope·x) (slope attribute, default 0.1 as the spec);
      gelu v > x·σ(gate·x) (the spec's sigmoid GELU with gate 1.702);
      gelu_erf v > x·(½ + ½erf(gate·x)) (exact GELU with gate 1/√2);
      gelu_tanh v > x·σ(gate·x·(1 + cubic·x²)) (tanh GELU with gate 2√(2/π), cubic 0.044715);
      silu v > x·σ(gate·x) (SiLU with gate 1: the gelu rule);
      hard_swish v > x·clip(gate·x + ½, 0, 1) (HardSwish with gate 1/6);
      abs v > |x|; square v ≥ x²; exp v ≥ eˣ;
      clip v ≥ clip(alpha·x + beta, low, high) (HardSigmoid, Clip; a bound may be ±inf);
      sigmoid v > low + (high − low)·σ(alpha·x + beta).
    gate (default 1.702, the compiler always writes it) and cubic (default 0.044715): the gated
    functions' parameters; on inputs held as x/λ they take gate·λ and cubic·λ².
    alpha, beta, low, high (defaults 1, 0, 0, 1; the compiler always writes them): the bounded
    functions' input map and output range; an output held as f/s takes alpha/s, beta/s, low/s, high/s.
    eta0, gamma, schedule: the step sizes (spec §1, default 0.15·0.95^(t−1)).
    spikes: "binary" (default, the spec's: spikes in {0, 1}, v moves ±η_t every step), "signed" or
    "burst" (counted, module doc: spikes (1 + g)/2 for an integer g, |g| ≤ 1 or ≤ BURST_BOUND).
    """
    return _build_neuron(
        "SignGDNeuron",
        UNARY_RULES,
        [_Tracker("")],
        NEURON_INPUTS,
        opset,
        build_signgd_neuron.__doc__,
        {
            "gelu_gate": ("gate", GATES["gelu"]),
            "gelu_cubic": ("cubic", GELU_CUBIC),
            "leak_slope": ("slope", LEAKY_SLOPE),
            "in_gain": ("alpha", BOUNDED_DEFAULTS["alpha"]),
            "in_shift": ("beta", BOUNDED_DEFAULTS["beta"]),
            "out_low": ("low", BOUNDED_DEFAULTS["low"]),
            "out_high": ("high", BOUNDED_DEFAULTS["high"]),
        },
    )


def build_signgd_binary_neuron(opset: int) -> onnx.FunctionProto:
    """`snn.SignGDBinaryNeuron(zp, zq, timesteps, offset_p, bias_p, offset_q, bias_q, xp0, xq0, v0, t0)
    -> (spikes, xp_T, xq_T, v_T)`: a two-operand neuron, one input tracker per operand.

    Inputs as SignGDNeuron's, per operand: zp [T*B, ...] and zq [T*B, ...] (broadcastable to each
    other), their offsets and biases, estimates xp0, xq0 (NaN: fresh, β_p and β_q); v0 is
    broadcastable to the broadcast step shape (NaN: 0). Outputs: spikes [T*B, ...] of the broadcast
    shape; xp_T, xq_T in their operands' shapes; v_T in the broadcast shape.
    Attributes: function (required): maximum v > max(p, q); div v > p/q; product v ≥ p·q;
    p_rsqrt_q √q·v > p (q < 0 gives NaN: no spike); p_div_q_pow q^exponent·v > p (beyond the spec:
    the p/√q rule with the power `exponent`, default ½; LRN's x/q^β; q < 0 with a fractional
    exponent gives NaN: no spike). eta0, gamma, schedule, spikes as SignGDNeuron's (a counted
    neuron's target is max(p, q), p/q, p·q, p/√q or p/q^exponent; NaN: no step).
    """
    return _build_neuron(
        "SignGDBinaryNeuron",
        BINARY_RULES,
        [_Tracker("p"), _Tracker("q")],
        BINARY_NEURON_INPUTS,
        opset,
        build_signgd_binary_neuron.__doc__,
        {"q_exponent": ("exponent", POWER_EXPONENT)},
    )


def _encoder_scan(step: list[onnx.NodeProto]) -> Branch:
    """A codec case: the Scan of `step`, which reads the estimate f_prev (and x) and writes f_next and e."""

    def build(prefix: str) -> tuple[list[onnx.NodeProto], list[str]]:
        body = StepBody(["f_prev"], [], step, ["f_next"], ["e"])
        outputs = [f"{prefix}f_T", f"{prefix}e_seq"]
        return [scan_node(body, ["f_init"], [], outputs[:1], outputs[1:], f"{prefix}step")], outputs

    return build


def _analog_step(gradient: list[onnx.NodeProto]) -> list[onnx.NodeProto]:
    """An analog codec step: `gradient` turns gap = f − x into g; then f ← f − η_t·g, e = (1 + g)/2."""
    return [
        node("Sub", ["f_prev", "x"], "gap"),
        *gradient,
        node("Mul", ["g", ETA_T], "f_step"),
        node("Sub", ["f_prev", "f_step"], "f_next"),
        node("Add", ["g", "one"], "e_twice"),
        node("Mul", ["e_twice", "half"], "e"),
    ]


#: spec §3 codecs. float: g_t = f − x, e_t = (1 + g_t)/2, f ← f − η_t·g_t;
#: spike: e_t = [f > x], f ← f − η_t·(2e_t − 1);
#: exact (beyond the spec): g_t = clip((f − x)/η_t, −b, b), the float codec's step cut short where
#: it would overshoot, so f reaches x as soon as b·Σ η_k ≥ |x| and then stays on it: no gain error
#: (b = spike_bound: 1, or BURST_BOUND for spikes = "burst", where f lands on x at the first step)
CODECS: dict[str, Branch] = {
    "float": _encoder_scan(_analog_step([node("Identity", ["gap"], "g")])),
    "exact": _encoder_scan(
        _analog_step(
            [
                node("Div", ["gap", ETA_T], "gap_in_steps"),
                node("Clip", ["gap_in_steps", "minus_spike_bound", "spike_bound"], "g"),
            ]
        )
    ),
    "spike": _encoder_scan(
        [node("Greater", ["f_prev", "x"], "fire"), *fire_reset_nodes("fire", "f_prev", "f_next", "e")]
    ),
}


def build_signgd_encoder(opset: int) -> onnx.FunctionProto:
    """`snn.SignGDEncoder(x, timesteps, f0, t0) -> (e, f_T)`: spec §3 input encoder.

    Inputs: x [B, ...] the analog input; timesteps int64 scalar T; f0 the encoder's estimate,
    broadcastable to [B, ...] (NaN entries: fresh, 0); t0 int64 scalar, steps already done.
    Outputs: e [T*B, ...] with 2e_t − 1 = g_t; f_T [B, ...] = f after step t0 + T.
    Attributes: codec "float" (g_t = f − x, e real-valued), "exact" (g_t = clip((f − x)/η_t, −1, 1),
    e real-valued, f lands on x; spikes = "burst" lifts the bound 1, so f lands at the first step)
    or "spike" (e_t = [f > x] in {0, 1}); eta0, gamma, schedule, spikes as SignGDNeuron's.
    """
    nodes = [
        attribute_constant("codec", "codec", "string"),
        *schedule_nodes("t0", "timesteps", "x"),
        *typed_constant("one", 1.0, "x"),
        *spike_bound_nodes("x"),
        *typed_constant("half", 0.5, "x"),
        *typed_constant("zero", 0.0, "x"),
        node("Shape", ["x"], "x_shape"),
        *initial_state("f0", "zero", ["x_shape"], "f_init"),
        *switch("codec", CODECS, ["f_T", "e_seq"]),
        *fold_time("e_seq", "e"),
    ]
    return make_op(
        "SignGDEncoder",
        list(ENCODER_INPUTS),
        ["e", "f_T"],
        nodes,
        opset,
        ENCODER_DEFAULTS,
        [],
        build_signgd_encoder.__doc__,
    )


def build_signgd_decoder(opset: int) -> onnx.FunctionProto:
    """`snn.SignGDDecoder(z, timesteps, offset, bias, y0, t0) -> (y_per_step, y_T)`: spec §3 decoder.

    Inputs: z [T*B, ...] the network's raw output per step; timesteps int64 scalar T; offset and
    bias (calibrated on one sample, as SignGDNeuron's); y0 broadcastable to [B, ...] (NaN entries: fresh,
    β); t0 int64 scalar, steps already done. Outputs: y_per_step [T, B, ...], y after every step
    (y_t = y_{t−1} − η_t·(2z_t − o)); y_T [B, ...]. Attributes: eta0, gamma, schedule.
    """
    y = _Tracker("", estimate="y")
    body = StepBody(
        [y.x("_prev")], [y.z("_t")], [*y.charge(), node("Identity", [y.x("_next")], "y")], [y.x("_next")], ["y"]
    )
    nodes = [
        *schedule_nodes("t0", "timesteps", "z"),
        *typed_constant("half", 0.5, "z"),
        *y.setup(),
        scan_node(body, [y.x("_init")], [y.z("_seq")], ["y_T"], ["y_per_step"], "decode_step"),
    ]
    return make_op(
        "SignGDDecoder",
        list(DECODER_INPUTS),
        ["y_per_step", "y_T"],
        nodes,
        opset,
        SCHEDULE_DEFAULTS,
        [],
        build_signgd_decoder.__doc__,
    )
