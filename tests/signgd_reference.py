"""Plain numpy reference of the signGD dynamics, written from spec/signgd-dynamics.md §§1-3, 5.

Everything runs step by step, exactly in the order of spec §2, in the floating type of the
inputs (float32 or float64): per step t the neuron charges x_t = x_{t-1} - η_t·(2z_t - o), fires
s_t = rule(v_{t-1}, x_t) and resets v_t = v_{t-1} - η_t·(2s_t - 1). Time is the first axis of
every sequence ([T, B, ...]); states are one step's shape [B, ...].

Beyond the spec, as the compiler's ops have them: the rules take parameters (unary_rule: the
GELU gate and cubic, which also give the exact-erf and tanh GELU forms, and the LeakyReLU slope),
the bounded unary neurons clip and sigmoid and the two-operand p_div_q_pow (binary_rule) are
derived by the spec's method (a neuron fires iff its output estimate lies above the target), and
the encoder has the codec "exact" (g_t = clip((f − x)/η_t, −b, b)), and a neuron may count its
spikes (spikes "signed" or "burst", compiler/ir/signgd.py): instead of firing by its rule it sends
g_t = clip(round((v_{t-1} − f(x_t))/η_t), −b, b) (0 where f(x_t) is NaN), v_t = v_{t-1} − η_t·g_t,
and emits (1 + g_t)/2, with b = 1 (signed) or 2^24 (burst; also the exact codec's b, else 1).
The single steps (charge, fire_reset, count_reset, encode_step) are public for the network
reference (tests/signgd_network_reference.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

Rule = Callable[[np.ndarray, list[np.ndarray]], np.ndarray]


@dataclass(frozen=True)
class NeuronInputs:
    """What one run of a unary (one current) or two-operand neuron takes, the same for this
    reference (signgd_neuron) and the op (signgd_ops.run_neuron).

    currents: [T, B, ...] each; offsets and biases: o and β per operand; x0 (one per operand) and
    v0: the state to continue from, None or NaN for a fresh one (x0 = β, v0 = 0); t0: the steps
    already run.
    """

    currents: list[np.ndarray]
    offsets: list
    biases: list
    x0: list | None = None
    v0: Any = None
    t0: int = 0


def eta_schedule(
    t0: int,
    timesteps: int,
    eta0: float = 0.15,
    gamma: float = 0.95,
    schedule: str = "exponential",
    dtype=np.float64,
    tail: float = 0.25,
) -> np.ndarray:
    """η_t for t = t0+1 .. t0+T (spec §1), computed in float64 and rounded once to `dtype`.

    "exp_inverse": η0·γ^(t−1), floored at tail/t once t > 1/ln(1/γ) (tail used only there)."""
    t = np.arange(t0 + 1, t0 + timesteps + 1, dtype=np.float64)
    eta = {
        "exponential": lambda: eta0 * gamma ** (t - 1),
        "constant": lambda: np.full_like(t, eta0),
        "inverse": lambda: eta0 / t,
        "exp_inverse": lambda: np.where(
            t * np.log(gamma) < -1, np.maximum(eta0 * gamma ** (t - 1), tail / t), eta0 * gamma ** (t - 1)
        ),
    }[schedule]()
    return eta.astype(dtype)


#: defaults of the neuron attributes that parametrise a rule (the ops' documented defaults):
#: gate 1.702 (the spec §5 sigmoid GELU, used by every GELU form when absent), cubic 0.044715
#: (the tanh GELU's x³ coefficient), slope 0.1 (spec §5 LeakyReLU); beyond the spec, the bounded
#: functions' input map alpha·x + beta and output range [low, high] (clip, sigmoid) and the
#: p_div_q_pow exponent (½: the p/√q rule)
RULE_DEFAULTS: dict[str, float] = {
    "gate": 1.702,
    "cubic": 0.044715,
    "slope": 0.1,
    "alpha": 1.0,
    "beta": 0.0,
    "low": 0.0,
    "high": 1.0,
    "exponent": 0.5,
}


def _const(x: np.ndarray, value: float):
    """`value` as a scalar of x's floating type (the ops cast their float constants like the data)."""
    return x.dtype.type(value)


def _sigmoid(u: np.ndarray) -> np.ndarray:
    one = _const(u, 1)
    return one / (one + np.exp(-u))


def _erf(u: np.ndarray) -> np.ndarray:
    try:
        from scipy.special import erf
    except ImportError:  # pragma: no cover - scipy comes with scikit-learn in the test extras
        import math

        return np.vectorize(math.erf, otypes=[np.float64])(u).astype(u.dtype)
    return erf(u).astype(u.dtype)


def _gelu_targets(gate: float, cubic: float) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """The GELU targets by function (gate and cubic are free: a GELU of inputs held as x/λ,
    GELU(λx)/λ, is the same form with gate·λ and cubic·λ²):
    gelu      x·σ(gate·x)                        (spec §5, gate 1.702)
    silu      x·σ(gate·x)                        (SiLU with gate 1: the same rule)
    hard_swish x·clip(gate·x + ½, 0, 1)          (HardSwish with gate 1/6)
    gelu_erf  x·(½ + ½·erf(gate·x))              (exact GELU x·Φ(x) with gate 1/√2)
    gelu_tanh x·σ(gate·x·(1 + cubic·x²))         (tanh GELU with gate 2√(2/π), cubic 0.044715,
                                                  since ½(1 + tanh u) = σ(2u))"""

    def sigmoid_form(x):
        return x * _sigmoid(_const(x, gate) * x)

    def erf_form(x):
        half = _const(x, 0.5)
        return x * (_erf(x * _const(x, gate)) * half + half)

    def tanh_form(x):
        poly = x * x * _const(x, cubic) + _const(x, 1)
        return x * _sigmoid(x * poly * _const(x, gate))

    def hard_swish(x):
        return x * np.clip(x * _const(x, gate) + _const(x, 0.5), _const(x, 0), _const(x, 1))

    return {
        "gelu": sigmoid_form,
        "silu": sigmoid_form,
        "gelu_erf": erf_form,
        "gelu_tanh": tanh_form,
        "hard_swish": hard_swish,
    }


def _above(target: Callable[..., np.ndarray], ties: bool) -> Rule:
    """Fires iff v ≥ target (ties) or v > target (no ties)."""

    def rule(v: np.ndarray, operands: list[np.ndarray]) -> np.ndarray:
        goal = target(*operands)
        return v >= goal if ties else v > goal

    return rule


def _p_rsqrt_q(v: np.ndarray, operands: list[np.ndarray]) -> np.ndarray:
    """Fires iff √q·v > p; √ of a negative q is NaN, which never fires (spec §10.4)."""
    p, q = operands
    with np.errstate(invalid="ignore"):
        return np.sqrt(q) * v > p


def _bounded_targets(
    alpha: float, beta: float, low: float, high: float
) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """The bounded targets by function (beyond the spec, derived by its method: the neuron fires
    iff v lies above f(x)), on the input map u = alpha·x + beta:
    clip     clip(u, low, high)                  (HardSigmoid: (alpha, beta, 0, 1); Clip(a, b):
                                                  (1, 0, a, b), an absent bound ±inf)
    sigmoid  low + (high − low)·σ(u)             (Sigmoid: (1, 0, 0, 1))
    An output held as f/s is the same form with alpha/s, beta/s, low/s, high/s (clip) or high/s
    (sigmoid with low 0)."""

    def affine(x):
        return x * _const(x, alpha) + _const(x, beta)

    def clip(x):
        return np.clip(affine(x), _const(x, low), _const(x, high))

    def sigmoid(x):
        span = _const(x, high) - _const(x, low)
        return _sigmoid(affine(x)) * span + _const(x, low)

    return {"clip": clip, "sigmoid": sigmoid}


def unary_target(
    function: str,
    gate: float | None = None,
    cubic: float | None = None,
    slope: float | None = None,
    **bounds: float,
) -> tuple[Callable[[np.ndarray], np.ndarray], bool]:
    """(target f, fires on ties) of a unary neuron with the attributes gate, cubic (GELU forms),
    slope (leaky_relu) and `bounds` alpha, beta, low, high (clip, sigmoid); None or absent:
    RULE_DEFAULTS. Spec §5: relu v ≥ max(x, 0); leaky_relu v > x (x ≥ 0), v > slope·x (x < 0); the
    GELU forms v > target (see _gelu_targets); abs v > |x|; square v ≥ x²; exp v ≥ eˣ. Beyond the
    spec: clip v ≥ target (ties as relu's: clip(x, 0, inf) is relu), sigmoid v > target (see
    _bounded_targets)."""
    gate = RULE_DEFAULTS["gate"] if gate is None else gate
    cubic = RULE_DEFAULTS["cubic"] if cubic is None else cubic
    slope = RULE_DEFAULTS["slope"] if slope is None else slope
    unknown = set(bounds) - {"alpha", "beta", "low", "high"}
    if unknown:
        raise ValueError(f"unknown unary rule attributes {sorted(unknown)}")
    alpha, beta, low, high = (
        RULE_DEFAULTS[k] if bounds.get(k) is None else bounds[k] for k in ("alpha", "beta", "low", "high")
    )
    bounded = _bounded_targets(alpha, beta, low, high)
    targets = {
        "relu": (lambda x: np.maximum(x, _const(x, 0)), True),
        "leaky_relu": (lambda x: np.where(x >= 0, x, _const(x, slope) * x), False),
        **{name: (target, False) for name, target in _gelu_targets(gate, cubic).items()},
        "abs": (np.abs, False),
        "square": (lambda x: x * x, True),
        "exp": (np.exp, True),
        "clip": (bounded["clip"], True),
        "sigmoid": (bounded["sigmoid"], False),
    }
    if function not in targets:
        raise ValueError(f"unknown unary signGD function {function!r}")
    return targets[function]


def unary_rule(
    function: str,
    gate: float | None = None,
    cubic: float | None = None,
    slope: float | None = None,
    **bounds: float,
) -> Rule:
    """The firing rule of a unary neuron (see unary_target)."""
    return _above(*unary_target(function, gate, cubic, slope, **bounds))


#: spec §5: unary rules by `function` with the spec's parameters (the extra GELU forms, and other
#: gates, cubics or slopes, come from unary_rule)
UNARY_RULES: dict[str, Rule] = {
    function: unary_rule(function) for function in ("relu", "leaky_relu", "gelu", "abs", "square", "exp")
}

#: spec §5: two-operand rules by `function`
BINARY_RULES: dict[str, Rule] = {
    "maximum": _above(np.maximum, ties=False),
    "div": _above(np.divide, ties=False),
    "product": _above(np.multiply, ties=True),
    "p_rsqrt_q": _p_rsqrt_q,
}


def _p_div_q_pow(exponent: float) -> Rule:
    """Fires iff q^exponent·v > p (beyond the spec: the p/√q rule with another power, e.g. LRN's
    x/q^β); a negative q to a fractional power is NaN, which never fires."""

    def rule(v: np.ndarray, operands: list[np.ndarray]) -> np.ndarray:
        p, q = operands
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.power(q, _const(q, exponent)) * v > p

    return rule


def binary_target(function: str, exponent: float | None = None) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """The target f(p, q) of a two-operand neuron (what its rule compares v with)."""
    power = RULE_DEFAULTS["exponent"] if exponent is None else exponent

    def divided(divisor: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
        def target(p: np.ndarray, q: np.ndarray) -> np.ndarray:
            with np.errstate(invalid="ignore", divide="ignore"):
                return p / divisor(q)

        return target

    targets = {
        "maximum": np.maximum,
        "div": divided(lambda q: q),
        "product": np.multiply,
        "p_rsqrt_q": divided(np.sqrt),
        "p_div_q_pow": divided(lambda q: np.power(q, _const(q, power))),
    }
    if function not in targets:
        raise ValueError(f"unknown binary signGD function {function!r}")
    return targets[function]


def binary_rule(function: str, exponent: float | None = None) -> Rule:
    """The firing rule of a two-operand neuron: BINARY_RULES, or p_div_q_pow with `exponent`
    (None: RULE_DEFAULTS)."""
    if function == "p_div_q_pow":
        return _p_div_q_pow(RULE_DEFAULTS["exponent"] if exponent is None else exponent)
    if function not in BINARY_RULES:
        raise ValueError(f"unknown binary signGD function {function!r}")
    return BINARY_RULES[function]


def _initial(state, fresh, shape: tuple[int, ...], dtype) -> np.ndarray:
    """`state` where given and not NaN, else `fresh`, as a [B, ...] array."""
    fresh = np.broadcast_to(np.asarray(fresh, dtype), shape)
    if state is None:
        return fresh.copy()
    state = np.broadcast_to(np.asarray(state, dtype), shape)
    return np.where(np.isnan(state), fresh, state)


def charge(x: np.ndarray, z: np.ndarray, offset, eta) -> np.ndarray:
    """Spec §2 step 2 (and the §3 decoder): x_t = x_{t-1} − η_t·(2z_t − o)."""
    return x - eta * (2 * z - np.asarray(offset, x.dtype))


def fire_reset(v: np.ndarray, fire: np.ndarray, eta) -> tuple[np.ndarray, np.ndarray]:
    """Spec §2 steps 3-4 given the rule's verdict: s_t = [fire], v_t = v_{t-1} − η_t·(2s_t − 1)."""
    s = fire.astype(v.dtype)
    return s, v - eta * (2 * s - 1)


#: the most η_t-steps a counted neuron (and the exact codec) moves in one step, by `spikes` (else 1)
SPIKE_BOUNDS = {"signed": 1.0, "burst": float(2**24)}
#: the `spikes` values of counted neurons
COUNTED = tuple(SPIKE_BOUNDS)


def count_reset(v: np.ndarray, target: np.ndarray, eta, spikes: str) -> tuple[np.ndarray, np.ndarray]:
    """A counted neuron's step given its target f(x_t): g = clip(round((v − f)/η_t), ±b), 0 where
    f is NaN; returns the emitted (1 + g)/2 and v − η_t·g (b: SPIKE_BOUNDS[spikes])."""
    bound = SPIKE_BOUNDS[spikes]
    with np.errstate(invalid="ignore"):
        steps = np.round((v - target) / eta)
    g = np.clip(np.where(np.isnan(steps), 0, steps), -bound, bound).astype(v.dtype)
    return (1 + g) / 2, v - g * eta


#: spec §3 codecs, plus "exact" (beyond the spec: the float step cut short where it would overshoot)
CODECS = ("float", "exact", "spike")


def encode_step(f: np.ndarray, x: np.ndarray, eta, codec: str, spikes: str = "binary") -> tuple[np.ndarray, np.ndarray]:
    """One encoder step (spec §3): the emitted e_t (2e_t − 1 = g_t) and f_t = f_{t-1} − η_t·g_t.

    float: g_t = f_{t-1} − x, e_t real; exact: g_t = clip((f_{t-1} − x)/η_t, −b, b), e_t real, so f
    lands on x once b·Σ η ≥ |x| (b = 2^24 for spikes "burst", else 1); spike: e_t = [f_{t-1} > x] ∈ {0, 1}."""
    if codec == "float":
        g = f - x
    elif codec == "exact":
        bound = SPIKE_BOUNDS["burst"] if spikes == "burst" else 1.0
        g = np.clip((f - x) / eta, -bound, bound).astype(x.dtype)
    elif codec == "spike":
        e, f_next = fire_reset(f, f > x, eta)
        return e, f_next
    else:
        raise ValueError(f"unknown codec {codec!r}; expected one of {CODECS}")
    return (1 + g) / 2, f - eta * g


#: one step of a neuron after its charge: (v, input estimates, η_t) -> (what it emits, next v)
Step = Callable[[np.ndarray, list[np.ndarray], Any], tuple[np.ndarray, np.ndarray]]


def _neuron(inputs: NeuronInputs, step: Step, **schedule) -> tuple[np.ndarray, list, np.ndarray]:
    """Run a neuron on `inputs`: per step the charge of every tracker, then `step`. Returns what it
    emitted [T, B, ...] (broadcast shape), the input estimates x_T (one per operand) and v_T."""
    currents = inputs.currents
    dtype = currents[0].dtype
    timesteps = currents[0].shape[0]
    eta = eta_schedule(inputs.t0, timesteps, dtype=dtype, **schedule)
    x0 = inputs.x0 if inputs.x0 is not None else [None] * len(currents)
    x = [_initial(x0_i, b, z.shape[1:], dtype) for x0_i, z, b in zip(x0, currents, inputs.biases)]
    shape = np.broadcast_shapes(*(z.shape[1:] for z in currents))
    v = _initial(inputs.v0, 0, shape, dtype)
    emitted = np.zeros((timesteps,) + shape, dtype)
    for t in range(timesteps):
        x = [charge(xi, z[t], o, eta[t]) for xi, z, o in zip(x, currents, inputs.offsets)]
        emitted[t], v = step(v, x, eta[t])
    return emitted, x, v


def signgd_neuron(inputs: NeuronInputs, rule: Rule, **schedule) -> tuple[np.ndarray, list, np.ndarray]:
    """A unary (one current) or two-operand neuron firing by `rule` on `inputs`.

    Returns the spikes [T, B, ...] (broadcast shape), the input estimates x_T (one per operand)
    and the output estimate v_T.
    """
    return _neuron(inputs, lambda v, x, eta: fire_reset(v, rule(v, x), eta), **schedule)


def counted_neuron(
    inputs: NeuronInputs, target: Callable[..., np.ndarray], spikes: str, **schedule
) -> tuple[np.ndarray, list, np.ndarray]:
    """As signgd_neuron, for a neuron that counts its spikes (`spikes` "signed" or "burst") towards
    `target` f(x) or f(p, q): returns the emitted (1 + g)/2 [T, B, ...], x_T and v_T."""
    return _neuron(inputs, lambda v, x, eta: count_reset(v, target(*x), eta, spikes), **schedule)


def encoder(
    x: np.ndarray, timesteps: int, codec: str = "float", f0=None, t0: int = 0, **schedule
) -> tuple[np.ndarray, np.ndarray]:
    """Spec §3 encoder of the analog x [B, ...]: returns e [T, B, ...] and f_T (f0 None/NaN: 0)."""
    eta = eta_schedule(t0, timesteps, dtype=x.dtype, **schedule)
    f = _initial(f0, 0, x.shape, x.dtype)
    emitted = np.zeros((timesteps,) + x.shape, x.dtype)
    for t in range(timesteps):
        emitted[t], f = encode_step(f, x, eta[t], codec)
    return emitted, f


def decoder(z: np.ndarray, offset, bias, y0=None, t0: int = 0, **schedule) -> tuple[np.ndarray, np.ndarray]:
    """Spec §3 decoder of z [T, B, ...]: returns y after every step [T, B, ...] and y_T (y0 None/NaN: bias)."""
    eta = eta_schedule(t0, z.shape[0], dtype=z.dtype, **schedule)
    y = _initial(y0, bias, z.shape[1:], z.dtype)
    per_step = np.zeros_like(z)
    for t in range(z.shape[0]):
        y = charge(y, z[t], offset, eta[t])
        per_step[t] = y
    return per_step, y
