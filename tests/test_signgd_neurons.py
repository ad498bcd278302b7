"""The signGD ops (compiler/ir/signgd.py) against the spec's test vectors and the numpy reference.

Every model passes onnx.checker.check_model(full_check=True) and runs in a plain onnxruntime CPU
session. The spec's vectors (float64) are met to 1e-5 with identical spike trains, ties included;
against the step-by-step reference the ops are compared bit for bit in float32, and in float64 to
a tolerance in ulps (see `assert_within_ulps`): the float64 η_t = η0·γ^(t−1) comes from
onnxruntime's Pow and numpy's power, neither of which is correctly rounded.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from onnx import helper
from signgd_ops import (
    NAN,
    SETTLED,
    ULPS_PER_STEP,
    Runner,
    assert_within_ulps,
    eta_onnx,
    int64,
    random_case,
    run_decoder,
    run_encoder,
    run_neuron,
    runner,
    snn,
)
from signgd_reference import (
    BINARY_RULES,
    SPIKE_BOUNDS,
    UNARY_RULES,
    NeuronInputs,
    binary_target,
    counted_neuron,
    decoder,
    encode_step,
    encoder,
    eta_schedule,
    signgd_neuron,
    unary_target,
)

#: env var naming the `shared/` folder when it is not beside the repository (as in conftest)
SHARED_ENV = "ONNX_SNN_SHARED"
XS = np.array([-1.5, -0.3, 0.0, 0.2, 0.7, 1.0, 2.5])


def _spec_dir() -> Path:
    beside = Path(__file__).resolve().parents[2] / "shared" / "spec"
    return beside if beside.is_dir() or not os.environ.get(SHARED_ENV) else Path(os.environ[SHARED_ENV]) / "spec"


@pytest.fixture(scope="module")
def vectors() -> dict:
    """spec/signgd-dynamics.vectors.json; skips when the shared folder is absent."""
    path = _spec_dir() / "signgd-dynamics.vectors.json"
    if not path.is_file():
        pytest.skip(f"signGD test vectors not found at {path}; set {SHARED_ENV} to the shared/ folder")
    return json.loads(path.read_text())


def _field(rows: list[dict], key: str) -> np.ndarray:
    """Stack the per-input trajectories of a vector scenario as [T, len(rows)]."""
    return np.array([row[key] for row in rows], np.float64).T


# ---------------------------------------------------------------- spec vectors (float64) ----


def test_eta_table(vectors):
    """η_t from one-step decoder runs continued by t0 (signgd_ops.eta_onnx)."""
    eta = eta_onnx(64)
    np.testing.assert_allclose(eta, vectors["eta"], rtol=0, atol=1e-5)
    assert_within_ulps(eta, eta_schedule(0, 64), steps=1)


def _per_step_v(function: str, currents: np.ndarray, offset, bias, feeds: dict, extra_nodes: list) -> Runner:
    """neuron(function) on `currents`, with decoders (o = 1, β = 0) of its spikes and of its input."""
    nodes = [
        *extra_nodes,
        snn("SignGDNeuron", [currents, "T", offset, bias, "nan", "nan", "t0"], ["s", "x_T", "v_T"], function=function),
        snn("SignGDDecoder", ["s", "T", "one", "zero", "nan", "t0"], ["v_seq", "v_end"]),
        snn("SignGDDecoder", [currents, "T", "one", "zero", "nan", "t0"], ["in_seq", "in_end"]),
    ]
    return runner(nodes, feeds, {"s": 2, "v_seq": 3, "in_seq": 3})


def _constants(timesteps: int) -> dict[str, np.ndarray]:
    return {"T": int64(timesteps), "t0": int64(0), "nan": np.asarray(np.nan), "one": np.ones(1), "zero": np.zeros(1)}


@pytest.mark.parametrize("function", ["relu", "gelu"])
def test_scenario_a(vectors, function):
    """Exact constant input estimate (β = x, o = 2x, z_t = x); decoding the spikes gives v_t."""
    feeds = _constants(64) | {"z": np.tile(XS, (64, 1)), "o": 2 * XS, "b": XS}
    out = _per_step_v(function, "z", "o", "b", feeds, [])(feeds)
    rows = vectors[function]["A"]
    np.testing.assert_array_equal(out["s"], _field(rows, "spikes"))
    np.testing.assert_allclose(out["v_seq"][:, 0], _field(rows, "v"), rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    "function, codec, key", [("relu", "float", "B"), ("gelu", "float", "B"), ("relu", "spike", "B_spike")]
)
def test_scenario_b(vectors, function, codec, key):
    """Encoder → neuron (o = 1, β = 0) → decoder (o = 1, β = 0): y_t = v_t, input estimate = f_t."""
    feeds = _constants(64) | {"x": XS[None, :]}
    encode = snn("SignGDEncoder", ["x", "T", "nan", "t0"], ["e", "f_T"], codec=codec)
    out = _per_step_v(function, "e", "one", "zero", feeds, [encode])(feeds)
    rows = vectors[function][key]
    np.testing.assert_array_equal(out["s"], _field(rows, "spikes"))
    np.testing.assert_allclose(out["v_seq"][:, 0], _field(rows, "y"), rtol=0, atol=1e-5)
    np.testing.assert_allclose(out["in_seq"][:, 0], _field(rows, "input_estimate"), rtol=0, atol=1e-5)


def test_layernorm_scenario_b(vectors):
    """Spec §5 LayerNorm decomposition: float encoder, centring, square neurons, σ² = mean + ε,
    p/√q neurons, decoder; the σ² tracker is read by a decoder with its own offset and bias."""
    ln = vectors["layernorm"]
    eps = ln["eps"]
    feeds = _constants(64) | {"x": np.array([ln["x"]]), "eps": np.array([eps]), "o_var": np.array([1 + 2 * eps])}
    nodes = [
        helper.make_node("Constant", [], ["last"], value_ints=[-1]),
        snn("SignGDEncoder", ["x", "T", "nan", "t0"], ["e", "f_T"]),
        helper.make_node("ReduceMean", ["e", "last"], ["mean"]),
        helper.make_node("Sub", ["e", "mean"], ["u"]),
        snn("SignGDNeuron", ["u", "T", "zero", "zero", "nan", "nan", "t0"], ["h", "h_x", "h_v"], function="square"),
        helper.make_node("ReduceMean", ["h", "last"], ["mean_h"]),
        helper.make_node("Add", ["mean_h", "eps"], ["var"]),
        snn(
            "SignGDBinaryNeuron",
            ["u", "var", "T", "zero", "zero", "o_var", "eps", "nan", "nan", "nan", "t0"],
            ["n", "n_p", "n_q", "n_v"],
            function="p_rsqrt_q",
        ),
        snn("SignGDDecoder", ["n", "T", "one", "zero", "nan", "t0"], ["y", "y_T"]),
        snn("SignGDDecoder", ["var", "T", "o_var", "eps", "nan", "t0"], ["var_seq", "var_T"]),
    ]
    out = runner(nodes, feeds, {"y": 3, "var_seq": 3})(feeds)
    for t, expected in ln["y_at"].items():
        np.testing.assert_allclose(out["y"][int(t) - 1, 0], expected, rtol=0, atol=1e-5)
        np.testing.assert_allclose(out["var_seq"][int(t) - 1, 0, 0], ln["variance_estimate_at"][t], rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    "codec, emitted, estimate",
    [
        (
            "float",
            [0.15, 0.2025, 0.24489, 0.27943, 0.30780, 0.33128, 0.35086, 0.36731],
            [0.105, 0.18979, 0.25886, 0.31559, 0.36256, 0.40172, 0.43461, 0.46241],
        ),
        ("spike", [0, 0, 0, 0, 0, 0, 1, 0], [0.15, 0.2925, 0.42788, 0.55648, 0.67866, 0.79472, 0.68446, 0.78921]),
    ],
)
def test_encoder_table(codec, emitted, estimate):
    """Spec §9 encoders for x = 0.7, steps 1-8, run one step at a time with f and t0 carried."""
    f, trajectory, emits = NAN, [], []
    for t in range(8):
        e, f = run_encoder(np.array([0.7]), 1, codec, f0=f, t0=t)
        emits.append(e.item())
        trajectory.append(f.item())
    np.testing.assert_allclose(emits, emitted, rtol=0, atol=1e-5)
    np.testing.assert_allclose(trajectory, estimate, rtol=0, atol=1e-5)


Q = np.array([0.5, 0.4, 2.0, -0.1, 0.9, 4.0, 1.5])
#: spec §9 "other neurons, scenario A, v₆₄" (4 decimals; div and p/√q use q = |q| + 0.25)
V64_TABLE = {
    "leaky_relu": [-0.1444, -0.0303, 0.0, 0.2059, 0.6944, 1.0, 2.5057],
    "abs": [1.5023, 0.3, 0.0, 0.2059, 0.6944, 1.0, 2.5057],
    "square": [2.2557, 0.0841, 0.0, 0.0403, 0.4841, 1.0, 2.8874],
    "exp": [0.2260, 0.7411, 1.0, 1.2214, 2.0140, 2.7184, 2.8874],
    "maximum": [0.5002, 0.4056, 1.9941, 0.2059, 0.9056, 2.8874, 2.5057],
    "div": [-1.9941, -0.4559, 0.0, 0.5712, 0.6089, 0.2353, 1.4228],
    "p_rsqrt_q": [-1.7262, -0.3662, 0.0, 0.3384, 0.6584, 0.4791, 1.8839],
    "product": [-0.75, -0.1259, 0.0, -0.0197, 0.6358, 2.8874, 2.8874],
}


@pytest.mark.parametrize("function", list(V64_TABLE))
def test_other_neurons_v64(function):
    operands = [XS] if function in UNARY_RULES else [XS, np.abs(Q) + 0.25 if function in ("div", "p_rsqrt_q") else Q]
    inputs = NeuronInputs([np.tile(a, (64, 1, 1)) for a in operands], [2 * a for a in operands], operands)
    _, _, v = run_neuron(inputs, function)
    np.testing.assert_allclose(v[0], V64_TABLE[function], rtol=0, atol=5e-5 + 1e-6)


# ------------------------------------------------------- against the numpy reference ----

OPS = [
    *(("neuron", f) for f in UNARY_RULES),
    *(("binary", f) for f in BINARY_RULES),
    ("encoder", "float"),
    ("encoder", "spike"),
    ("decoder", ""),
]


def _run(kind: str, function: str, case: dict, onnx_op: bool) -> list[np.ndarray]:
    """Outputs of the op (onnx_op) or of the reference: the per-step output, then the final states."""
    z, t0 = case["currents"], case["t0"]
    if kind in ("neuron", "binary"):
        inputs = NeuronInputs(z, case["offsets"], case["biases"], case["x0"], case["v0"], t0)
        if onnx_op:
            spikes, x, v = run_neuron(inputs, function)
        else:
            rules = UNARY_RULES if kind == "neuron" else BINARY_RULES
            spikes, x, v = signgd_neuron(inputs, rules[function])
        return [spikes, *x, v]
    if kind == "encoder":
        args = (case["analog"], z[0].shape[0], function, case["x0"][0], t0)
        return list(run_encoder(*args) if onnx_op else encoder(*args))
    args = (z[0], case["offsets"][0], case["biases"][0], case["x0"][0], t0)
    return list(run_decoder(*args) if onnx_op else decoder(*args))


#: float32 targets that onnxruntime (MLAS Exp; x·σ(1.702x) fused into QuickGelu) and numpy round differently
UNROUNDED_F32 = {"exp", "gelu"}


@pytest.mark.parametrize("fresh", [True, False], ids=["fresh", "given_state"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("timesteps", [1, 7, 256])
@pytest.mark.parametrize("kind, function", OPS)
def test_matches_reference(kind, function, timesteps, dtype, fresh):
    """Bit for bit in float32 (float64 states within `assert_within_ulps`, spikes identical), except
    float32 exp/gelu neurons past step 128: there ulp differences of the target may flip spikes at
    near-ties, and v_T moves by at most 2·Σ_{t>128} η_t."""
    case = random_case(kind, function, timesteps, dtype, np.random.default_rng(timesteps), fresh)
    got, expected = _run(kind, function, case, onnx_op=True), _run(kind, function, case, onnx_op=False)
    exact = dtype == np.float64 or function not in UNROUNDED_F32
    steps = timesteps if exact else min(timesteps, SETTLED)
    slack = 2 * eta_schedule(steps, timesteps - steps).sum()
    assert all(a.dtype == dtype for a in got)
    assert_within_ulps(got[0][:steps], expected[0][:steps], timesteps)  # spikes (0/1) stay identical
    for a, b in zip(got[1:-1], expected[1:-1]):
        assert_within_ulps(a, b, timesteps)
    np.testing.assert_allclose(
        got[-1], expected[-1], rtol=0, atol=slack + ULPS_PER_STEP * timesteps * np.spacing(np.max(np.abs(expected[-1])))
    )
    if kind != "decoder" and function != "float":
        assert set(np.unique(got[0])) <= {0.0, 1.0}


#: the step sizes of the counted tests: the burst default's η0/t
COUNTED_SCHEDULE = {"schedule": "inverse", "eta0": 0.0625}


@pytest.mark.parametrize("spikes", list(SPIKE_BOUNDS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind, function", [op for op in OPS if op[0] in ("neuron", "binary")])
def test_counted_neuron_matches_reference(kind, function, dtype, spikes):
    """A counted neuron (spikes "signed", "burst") against the reference's counted_neuron at every
    step of T = 64 from a given state: emitted values identical and float64 states within ulps
    (float32 exp/gelu: an ulp of the target flips a count where (v − f)/η_t sits on a rounding
    boundary, which a settled neuron's residual approaches, so up to 1% of the counts may differ
    and v_T by one η_T); the counts are integers, within the bound, and not all 0 or ±1 for burst."""
    case = random_case(kind, function, 64, dtype, np.random.default_rng(7), fresh=False)
    inputs = NeuronInputs(case["currents"], case["offsets"], case["biases"], case["x0"], case["v0"], case["t0"])
    got = run_neuron(inputs, function, spikes=spikes, **COUNTED_SCHEDULE)
    target = unary_target(function)[0] if kind == "neuron" else binary_target(function)
    expected = counted_neuron(inputs, target, spikes, **COUNTED_SCHEDULE)
    if dtype == np.float32 and function in UNROUNDED_F32:
        assert np.mean(got[0] != expected[0]) <= 0.01
        last_eta = eta_schedule(case["t0"] + 63, 1, **COUNTED_SCHEDULE)[0]
        np.testing.assert_allclose(got[2], expected[2], rtol=0, atol=1.001 * last_eta)
    else:
        np.testing.assert_array_equal(got[0], expected[0])
        for a, b in zip([*got[1], got[2]], [*expected[1], expected[2]]):
            assert_within_ulps(a, b, 64)
    counts = 2 * got[0] - 1
    assert np.array_equal(counts, np.round(counts)) and np.abs(counts).max() <= SPIKE_BOUNDS[spikes]
    assert (counts == 0).any()  # silence: a count of 0 sends nothing
    if spikes == "burst":
        assert np.abs(counts).max() > 1


@pytest.mark.parametrize("spikes", ["binary", "burst"])
def test_exact_codec_bound(spikes):
    """The exact codec moves at most one η_t a step, except under burst spikes, where it lands on
    its input at the first step."""
    x = np.array([[-1.5, 0.0, 0.7, 2.5]])
    e, f = run_encoder(x, 3, "exact", spikes=spikes, **COUNTED_SCHEDULE)
    reference = [np.zeros_like(x)]
    eta = eta_schedule(0, 3, **COUNTED_SCHEDULE)
    for t in range(3):
        emitted, f_next = encode_step(reference[-1], x, eta[t], "exact", spikes)
        np.testing.assert_allclose(e[t], emitted)
        reference.append(f_next)
    np.testing.assert_allclose(f, reference[-1])
    if spikes == "burst":
        np.testing.assert_allclose(reference[1], x)
    else:
        assert np.abs(reference[1]).max() == pytest.approx(eta[0])


@pytest.mark.parametrize("kind, function", OPS)
def test_chunked_run_equals_single_run(kind, function):
    """T = 16 + 16 with every state and t0 carried equals one T = 32 run, bit for bit."""
    case = random_case(kind, function, 32, np.float32, np.random.default_rng(3), fresh=True)
    whole = _run(kind, function, case, onnx_op=True)
    first = _run(kind, function, case | {"currents": [z[:16] for z in case["currents"]]}, onnx_op=True)
    states = first[1:]
    second = _run(
        kind,
        function,
        case
        | {
            "currents": [z[16:] for z in case["currents"]],
            "t0": case["t0"] + 16,
            "x0": states[: len(case["x0"])],
            "v0": states[-1],
        },
        onnx_op=True,
    )
    np.testing.assert_array_equal(np.concatenate([first[0], second[0]]), whole[0])
    for a, b in zip(second[1:], whole[1:]):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("schedule", ["exponential", "constant", "inverse"])
def test_schedule_attributes(schedule):
    rng = np.random.default_rng(5)
    z = rng.uniform(0, 1, (40, 2, 3))
    attrs = {"eta0": 0.3, "gamma": 0.9, "schedule": schedule}
    inputs = NeuronInputs([z], [np.ones(3)], [np.zeros(3)], t0=3)
    spikes, x, v = run_neuron(inputs, "relu", **attrs)
    ref_spikes, ref_x, ref_v = signgd_neuron(inputs, UNARY_RULES["relu"], **attrs)
    np.testing.assert_array_equal(spikes, ref_spikes)
    assert_within_ulps(v, ref_v, len(z))
    assert_within_ulps(x[0], ref_x[0], len(z))


def test_p_rsqrt_q_never_fires_on_negative_q():
    """√ of a negative σ² estimate is NaN: no spike (spec §10.4), so v climbs by η_t every step."""
    p, q = np.full((10, 1, 4), 0.5), np.full((10, 1, 4), -1.0)  # z = β, o = 2β: the estimates stay put
    spikes, _, v = run_neuron(NeuronInputs([p, q], [2 * p[0], 2 * q[0]], [p[0], q[0]]), "p_rsqrt_q")
    assert not spikes.any()
    np.testing.assert_allclose(v, eta_schedule(0, 10).sum() * np.ones((1, 4)), rtol=1e-15)
