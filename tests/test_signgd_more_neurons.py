"""The signGD neurons beyond the spec's catalogue (compiler/ir/signgd.py), derived by its method (a
unary neuron fires iff its output estimate v lies above the target f(x); a two-operand neuron keeps
one input tracker per operand), against the numpy reference (tests/signgd_reference.py) at every
step:

* `clip` (SignGDNeuron): v ≥ clip(alpha·x + beta, low, high): HardSigmoid, Clip (ReLU6), each
  held scaled to the range as the compiler writes them;
* `sigmoid` (SignGDNeuron): v > low + (high − low)·σ(alpha·x + beta);
* `p_div_q_pow` (SignGDBinaryNeuron): q^exponent·v > p, LRN's x/q^β (the spec's p/√q at ½).

The criteria are test_signgd_neurons.py's: every spike of every step identical and the final
states within ulps (float64) or bit for bit (float32), except that float32 targets onnxruntime and
numpy round differently (the sigmoid, and Pow at an exponent other than ½) are compared bit for
bit only while η_t is large enough that no near-tie arises (SETTLED steps).
"""

from __future__ import annotations

import numpy as np
import pytest
from signgd_network_reference import decimal_attribute
from signgd_ops import SETTLED, ULPS_PER_STEP, assert_within_ulps, random_case, run_neuron
from signgd_reference import (
    BINARY_RULES,
    NeuronInputs,
    binary_rule,
    eta_schedule,
    signgd_neuron,
    unary_rule,
    unary_target,
)

#: id -> (kind, function, attributes): the forms the compiler writes (see passes/signgd/spikify.py:
#: an output held as f/s, s = max(|low|, |high|)/2 at the default --signgd-range 2), and others
CASES = {
    "hard_sigmoid": ("neuron", "clip", {"alpha": 1 / 6 / 0.5, "beta": 0.5 / 0.5, "low": 0.0, "high": 2.0}),
    "relu6": ("neuron", "clip", {"alpha": 1 / 3, "beta": 0.0, "low": 0.0, "high": 2.0}),
    "clip_min_only": ("neuron", "clip", {"alpha": 1.0, "beta": 0.0, "low": -0.25, "high": float("inf")}),
    "clip_max_only": ("neuron", "clip", {"alpha": 1.0, "beta": 0.0, "low": -float("inf"), "high": 0.6}),
    "clip_defaults": ("neuron", "clip", {}),
    "sigmoid": ("neuron", "sigmoid", {"alpha": 1.0, "beta": 0.0, "low": 0.0, "high": 2.0}),
    "sigmoid_general": ("neuron", "sigmoid", {"alpha": 1.5, "beta": -0.2, "low": -0.5, "high": 1.5}),
    "lrn_power": ("binary", "p_div_q_pow", {"exponent": 0.75}),
    "square_root_power": ("binary", "p_div_q_pow", {}),
    "cube_power": ("binary", "p_div_q_pow", {"exponent": 3.0}),
}


def _unrounded_f32(function: str, attrs: dict) -> bool:
    """Targets onnxruntime's float32 kernels and numpy round differently: MLAS's logistic, and Pow
    (at ½ both take the correctly rounded √; onnxruntime's q³ is q·q·q, rounded twice)."""
    return function == "sigmoid" or (function == "p_div_q_pow" and attrs.get("exponent", 0.5) != 0.5)


def _as_the_op_reads(attrs: dict) -> dict:
    """The float attributes as the op reads them: ONNX stores float32, which the op takes as the
    decimal it was written as when that round-trips (1/3 does not: it stays float32's 0.33333334)."""
    return {k: decimal_attribute(v) for k, v in attrs.items()}


def _rule(kind: str, function: str, attrs: dict):
    attrs = _as_the_op_reads(attrs)
    return unary_rule(function, **attrs) if kind == "neuron" else binary_rule(function, **attrs)


def _run(kind: str, function: str, attrs: dict, case: dict, onnx_op: bool) -> list[np.ndarray]:
    """The spikes [T, B, ...], then the final input estimates and v, of the op or the reference."""
    inputs = NeuronInputs(case["currents"], case["offsets"], case["biases"], case["x0"], case["v0"], case["t0"])
    if onnx_op:
        spikes, x, v = run_neuron(inputs, function, **attrs)
    else:
        spikes, x, v = signgd_neuron(inputs, _rule(kind, function, attrs))
    return [spikes, *x, v]


@pytest.mark.parametrize("fresh", [True, False], ids=["fresh", "given_state"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("timesteps", [1, 7, 256])
@pytest.mark.parametrize("case_id", list(CASES))
def test_matches_reference_at_every_step(case_id, timesteps, dtype, fresh):
    kind, function, attrs = CASES[case_id]
    case = random_case(kind, function, timesteps, dtype, np.random.default_rng(timesteps), fresh)
    got, expected = _run(kind, function, attrs, case, True), _run(kind, function, attrs, case, False)
    exact = dtype == np.float64 or not _unrounded_f32(function, attrs)
    steps = timesteps if exact else min(timesteps, SETTLED)
    slack = 2 * eta_schedule(steps, timesteps - steps).sum()
    assert all(a.dtype == dtype for a in got)
    assert set(np.unique(got[0])) <= {0.0, 1.0}
    np.testing.assert_array_equal(got[0][:steps], expected[0][:steps])  # every spike of every step
    for a, b in zip(got[1:-1], expected[1:-1]):  # input estimates: the same currents, no rule involved
        assert_within_ulps(a, b, timesteps)
    np.testing.assert_allclose(
        got[-1], expected[-1], rtol=0, atol=slack + ULPS_PER_STEP * timesteps * np.spacing(np.max(np.abs(expected[-1])))
    )


@pytest.mark.parametrize("case_id", list(CASES))
def test_chunked_run_equals_single_run(case_id):
    """T = 16 + 16 with every state and t0 carried equals one T = 32 run, bit for bit."""
    kind, function, attrs = CASES[case_id]
    case = random_case(kind, function, 32, np.float32, np.random.default_rng(3), fresh=True)
    whole = _run(kind, function, attrs, case, True)
    first = _run(kind, function, attrs, case | {"currents": [z[:16] for z in case["currents"]]}, True)
    states = first[1:]
    rest = {
        "currents": [z[16:] for z in case["currents"]],
        "t0": case["t0"] + 16,
        "x0": states[: len(case["x0"])],
        "v0": states[-1],
    }
    second = _run(kind, function, attrs, case | rest, True)
    np.testing.assert_array_equal(np.concatenate([first[0], second[0]]), whole[0])
    for a, b in zip(second[1:], whole[1:]):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_clip_from_zero_to_infinity_is_the_relu_neuron(dtype):
    """clip(x, 0, inf) with relu's tie rule (≥): the spec's ReLU neuron, bit for bit."""
    case = random_case("neuron", "relu", 64, dtype, np.random.default_rng(7), fresh=False)
    inputs = NeuronInputs(case["currents"], case["offsets"], case["biases"], case["x0"], case["v0"], case["t0"])
    clipped = run_neuron(inputs, "clip", alpha=1.0, beta=0.0, low=0.0, high=float("inf"))
    relu = run_neuron(inputs, "relu")
    np.testing.assert_array_equal(clipped[0], relu[0])
    np.testing.assert_array_equal(clipped[2], relu[2])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_power_one_half_is_the_p_rsqrt_q_neuron(dtype):
    """p_div_q_pow at exponent ½ is the spec's p/√q neuron: Pow(q, ½) and Sqrt(q) agree here."""
    case = random_case("binary", "p_rsqrt_q", 128, dtype, np.random.default_rng(8), fresh=True)
    inputs = NeuronInputs(case["currents"], case["offsets"], case["biases"])
    power = run_neuron(inputs, "p_div_q_pow", exponent=0.5)
    root = run_neuron(inputs, "p_rsqrt_q")
    np.testing.assert_array_equal(power[0], root[0])
    reference = signgd_neuron(inputs, BINARY_RULES["p_rsqrt_q"])
    np.testing.assert_array_equal(power[0], reference[0])


def test_fractional_power_of_a_negative_q_never_fires():
    """q^0.75 of a negative estimate is NaN: no spike (as p_rsqrt_q, spec §10.4), v climbs by η_t."""
    p, q = np.full((10, 1, 4), 0.5), np.full((10, 1, 4), -1.0)  # z = β, o = 2β: the estimates stay put
    spikes, _, v = run_neuron(NeuronInputs([p, q], [2 * p[0], 2 * q[0]], [p[0], q[0]]), "p_div_q_pow", exponent=0.75)
    assert not spikes.any()
    np.testing.assert_allclose(v, eta_schedule(0, 10).sum() * np.ones((1, 4)), rtol=1e-15)


XS = np.array([-3.0, -1.5, -0.3, 0.0, 0.2, 0.7, 1.0, 2.5, 5.0])
Q = np.array([0.5, 0.4, 2.0, 1.0, 0.9, 4.0, 1.5, 0.3, 2.5])


@pytest.mark.parametrize("case_id", list(CASES))
def test_converges_to_the_target_from_an_exact_input(case_id):
    """Spec §9 scenario A (β = x, o = 2x, z_t = x: the input estimate is exact), float64, the spec's
    schedule: v reaches f(x) within η_t and stays there (every target here lies inside R_∞ = 3)."""
    kind, function, attrs = CASES[case_id]
    operands = [XS] if kind == "neuron" else [XS, Q]
    if kind == "neuron":
        target = unary_target(function, **attrs)[0](XS)
    else:
        target = XS / Q ** attrs.get("exponent", 0.5)
    reachable = np.abs(target) < 2.9
    inputs = NeuronInputs([np.tile(a, (256, 1, 1)) for a in operands], [2 * a for a in operands], operands)
    spikes, _, v = run_neuron(inputs, function, **attrs)
    eta = eta_schedule(0, 256)
    v_t = np.cumsum(eta[:, None] * (1 - 2 * spikes[:, 0]), axis=0)  # the output estimate after every step
    np.testing.assert_allclose(v_t[-1], v[0], rtol=0, atol=1e-12)
    errors = np.abs(v_t - target)[:, reachable]
    assert errors[63].max() < 0.01 and errors[-1].max() < 1e-5, errors[[15, 63, 255]].max(axis=1)
