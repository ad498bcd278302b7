"""The signGD ops (runtime/signgd.py) against the spec's test vectors and the numpy reference.

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
from typing import Callable

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from onnx_snn.runtime.neurons import attach_functions
from signgd_reference import BINARY_RULES, UNARY_RULES, decoder, encoder, eta_schedule, signgd_neuron

#: env var naming the `shared/` folder when it is not beside the repository (as in conftest)
SHARED_ENV = "ONNX_SNN_SHARED"
TYPES = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.float64): TensorProto.DOUBLE,
         np.dtype(np.int64): TensorProto.INT64}
#: spec §9 inputs of the vector scenarios
XS = np.array([-1.5, -0.3, 0.0, 0.2, 0.7, 1.0, 2.5])
NAN = np.float64(np.nan)

Runner = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]

#: ulps one float64 step may add to a state: η_t's Pow (onnxruntime) and power (numpy) are each
#: within 1 ulp of γ^(t−1), so they differ by up to 2 ulps, and the addition that applies η_t
#: rounds once more. Over T steps a state drifts by at most ULPS_PER_STEP·T ulps of its largest
#: magnitude. Seen: up to 4.4e-16 with numpy 2.4 and onnxruntime 1.32.
ULPS_PER_STEP = 3


def assert_within_ulps(actual, desired, steps: int) -> None:
    """|actual − desired| ≤ ULPS_PER_STEP·steps ulps of the largest |desired| (float64 states after
    `steps` steps); float32 arrays must match bit for bit."""
    actual, desired = np.asarray(actual), np.asarray(desired)
    if desired.dtype != np.float64:
        np.testing.assert_array_equal(actual, desired)
        return
    scale = np.max(np.abs(desired[np.isfinite(desired)]), initial=1.0)
    np.testing.assert_allclose(actual, desired, rtol=0, atol=ULPS_PER_STEP * max(steps, 1) * np.spacing(scale))


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


def snn(op: str, inputs: list[str], outputs: list[str], **attrs) -> onnx.NodeProto:
    return helper.make_node(op, inputs, outputs, domain="snn", **attrs)


def runner(nodes: list[onnx.NodeProto], example: dict[str, np.ndarray], outputs: dict[str, int]) -> Runner:
    """A checked model of `nodes` with inputs typed like `example` (all dims symbolic) and
    `outputs` (name → rank) in the floating type of the inputs; returns a function of the feeds."""
    dtype = next(a.dtype for a in example.values() if a.dtype.kind == "f")

    def info(name: str, elem: int, rank: int) -> onnx.ValueInfoProto:
        return helper.make_tensor_value_info(name, elem, [f"{name}_{i}" for i in range(rank)])

    graph = helper.make_graph(nodes, "signgd_test", [info(k, TYPES[a.dtype], a.ndim) for k, a in example.items()],
                              [info(k, TYPES[dtype], rank) for k, rank in outputs.items()])
    model = attach_functions(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)], ir_version=10))
    onnx.checker.check_model(model, full_check=True)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return lambda feeds: dict(zip(outputs, session.run(list(outputs), feeds)))


def _fold(seq: np.ndarray) -> np.ndarray:
    return seq.reshape((-1,) + seq.shape[2:])


def _int(value: int) -> np.ndarray:
    return np.asarray(value, np.int64)


def run_neuron(currents: list[np.ndarray], offsets: list, biases: list, function: str, x0: list | None = None,
               v0=NAN, t0: int = 0, **attrs) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """SignGDNeuron (one current) or SignGDBinaryNeuron (two) on currents [T, B, ...];
    returns spikes [T, B, ...], the x_T per operand and v_T."""
    dtype = currents[0].dtype
    tags = [""] if len(currents) == 1 else ["p", "q"]
    op = "SignGDNeuron" if len(currents) == 1 else "SignGDBinaryNeuron"
    x0 = x0 if x0 is not None else [NAN] * len(currents)
    feeds = {f"z{t}": _fold(z) for t, z in zip(tags, currents)} | {"timesteps": _int(currents[0].shape[0])}
    for t, o, b in zip(tags, offsets, biases):
        suffix = f"_{t}" if t else ""
        feeds |= {f"offset{suffix}": np.asarray(o, dtype), f"bias{suffix}": np.asarray(b, dtype)}
    feeds |= {f"x{t}0": np.asarray(x, dtype) for t, x in zip(tags, x0)} | {"v0": np.asarray(v0, dtype), "t0": _int(t0)}
    rank = currents[0].ndim - 1
    outputs = {"spikes": rank} | {f"x{t}_T": rank for t in tags} | {"v_T": rank}
    out = runner([snn(op, list(feeds), list(outputs), function=function, **attrs)], feeds, outputs)(feeds)
    spikes = out["spikes"].reshape((currents[0].shape[0], -1) + out["spikes"].shape[1:])
    return spikes, [out[f"x{t}_T"] for t in tags], out["v_T"]


def run_encoder(x: np.ndarray, timesteps: int, codec: str = "float", f0=NAN,
                t0: int = 0) -> tuple[np.ndarray, np.ndarray]:
    feeds = {"x": x, "timesteps": _int(timesteps), "f0": np.asarray(f0, x.dtype), "t0": _int(t0)}
    out = runner([snn("SignGDEncoder", list(feeds), ["e", "f_T"], codec=codec)], feeds,
                 {"e": x.ndim, "f_T": x.ndim})(feeds)
    return out["e"].reshape((timesteps,) + x.shape), out["f_T"]


def run_decoder(z: np.ndarray, offset, bias, y0=NAN, t0: int = 0) -> tuple[np.ndarray, np.ndarray]:
    feeds = {"z": _fold(z), "timesteps": _int(z.shape[0]), "offset": np.asarray(offset, z.dtype),
             "bias": np.asarray(bias, z.dtype), "y0": np.asarray(y0, z.dtype), "t0": _int(t0)}
    out = runner([snn("SignGDDecoder", list(feeds), ["y_per_step", "y_T"])], feeds,
                 {"y_per_step": z.ndim, "y_T": z.ndim - 1})(feeds)
    return out["y_per_step"], out["y_T"]


def _field(rows: list[dict], key: str) -> np.ndarray:
    """Stack the per-input trajectories of a vector scenario as [T, len(rows)]."""
    return np.array([row[key] for row in rows], np.float64).T


# ---------------------------------------------------------------- spec vectors (float64) ----

def test_eta_table(vectors):
    """η_t from one-step decoder runs continued by t0: y_1 = 0 − η_t·(2·0 − 1) = η_t."""
    feeds = {"z": np.zeros((1, 1)), "timesteps": _int(1), "offset": np.ones(1), "bias": np.zeros(1),
             "y0": np.zeros(1), "t0": _int(0)}
    run = runner([snn("SignGDDecoder", list(feeds), ["y_per_step", "y_T"])], feeds, {"y_per_step": 3, "y_T": 2})
    eta = [run(feeds | {"t0": _int(t)})["y_T"].item() for t in range(64)]
    np.testing.assert_allclose(eta, vectors["eta"], rtol=0, atol=1e-5)
    assert_within_ulps(eta, eta_schedule(0, 64), steps=1)


def _per_step_v(function: str, currents: np.ndarray, offset, bias, feeds: dict, extra_nodes: list) -> Runner:
    """neuron(function) on `currents`, with decoders (o = 1, β = 0) of its spikes and of its input."""
    nodes = [*extra_nodes,
             snn("SignGDNeuron", [currents, "T", offset, bias, "nan", "nan", "t0"], ["s", "x_T", "v_T"],
                 function=function),
             snn("SignGDDecoder", ["s", "T", "one", "zero", "nan", "t0"], ["v_seq", "v_end"]),
             snn("SignGDDecoder", [currents, "T", "one", "zero", "nan", "t0"], ["in_seq", "in_end"])]
    return runner(nodes, feeds, {"s": 2, "v_seq": 3, "in_seq": 3})


def _constants(timesteps: int) -> dict[str, np.ndarray]:
    return {"T": _int(timesteps), "t0": _int(0), "nan": np.asarray(np.nan), "one": np.ones(1), "zero": np.zeros(1)}


@pytest.mark.parametrize("function", ["relu", "gelu"])
def test_scenario_a(vectors, function):
    """Exact constant input estimate (β = x, o = 2x, z_t = x); decoding the spikes gives v_t."""
    feeds = _constants(64) | {"z": np.tile(XS, (64, 1)), "o": 2 * XS, "b": XS}
    out = _per_step_v(function, "z", "o", "b", feeds, [])(feeds)
    rows = vectors[function]["A"]
    np.testing.assert_array_equal(out["s"], _field(rows, "spikes"))
    np.testing.assert_allclose(out["v_seq"][:, 0], _field(rows, "v"), rtol=0, atol=1e-5)


@pytest.mark.parametrize("function, codec, key", [("relu", "float", "B"), ("gelu", "float", "B"),
                                                  ("relu", "spike", "B_spike")])
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
    nodes = [helper.make_node("Constant", [], ["last"], value_ints=[-1]),
             snn("SignGDEncoder", ["x", "T", "nan", "t0"], ["e", "f_T"]),
             helper.make_node("ReduceMean", ["e", "last"], ["mean"]),
             helper.make_node("Sub", ["e", "mean"], ["u"]),
             snn("SignGDNeuron", ["u", "T", "zero", "zero", "nan", "nan", "t0"], ["h", "h_x", "h_v"],
                 function="square"),
             helper.make_node("ReduceMean", ["h", "last"], ["mean_h"]),
             helper.make_node("Add", ["mean_h", "eps"], ["var"]),
             snn("SignGDBinaryNeuron", ["u", "var", "T", "zero", "zero", "o_var", "eps", "nan", "nan", "nan", "t0"],
                 ["n", "n_p", "n_q", "n_v"], function="p_rsqrt_q"),
             snn("SignGDDecoder", ["n", "T", "one", "zero", "nan", "t0"], ["y", "y_T"]),
             snn("SignGDDecoder", ["var", "T", "o_var", "eps", "nan", "t0"], ["var_seq", "var_T"])]
    out = runner(nodes, feeds, {"y": 3, "var_seq": 3})(feeds)
    for t, expected in ln["y_at"].items():
        np.testing.assert_allclose(out["y"][int(t) - 1, 0], expected, rtol=0, atol=1e-5)
        np.testing.assert_allclose(out["var_seq"][int(t) - 1, 0, 0], ln["variance_estimate_at"][t], rtol=0, atol=1e-5)


@pytest.mark.parametrize("codec, emitted, estimate", [
    ("float", [0.15, 0.2025, 0.24489, 0.27943, 0.30780, 0.33128, 0.35086, 0.36731],
     [0.105, 0.18979, 0.25886, 0.31559, 0.36256, 0.40172, 0.43461, 0.46241]),
    ("spike", [0, 0, 0, 0, 0, 0, 1, 0], [0.15, 0.2925, 0.42788, 0.55648, 0.67866, 0.79472, 0.68446, 0.78921]),
])
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
    _, _, v = run_neuron([np.tile(a, (64, 1, 1)) for a in operands], [2 * a for a in operands], operands, function)
    np.testing.assert_allclose(v[0], V64_TABLE[function], rtol=0, atol=5e-5 + 1e-6)


# ------------------------------------------------------- against the numpy reference ----

OPS = [*(("neuron", f) for f in UNARY_RULES), *(("binary", f) for f in BINARY_RULES),
       ("encoder", "float"), ("encoder", "spike"), ("decoder", "")]
SHAPE = (3, 4, 5)  # [B, ...] of one step; the second operand of a two-operand neuron is [3, 4, 1]


def _random_case(kind: str, function: str, timesteps: int, dtype, rng: np.random.Generator, fresh: bool) -> dict:
    """Inputs of one op: currents [T, B, ...] (an encoder's `analog` [B, ...]), calibration and
    states (fresh: NaN; else random, some entries NaN)."""
    def state(shape):
        values = rng.uniform(-1, 1, shape).astype(dtype)
        return np.asarray(np.nan, dtype) if fresh else np.where(rng.random(shape) < 0.2, np.nan, values).astype(dtype)

    shapes = [SHAPE] if kind != "binary" else [SHAPE, SHAPE[:-1] + (1,)]
    positive = function in ("p_rsqrt_q", "div")  # mostly positive q: exercises √q and p/q (and q < 0 sometimes)
    currents = [rng.uniform(-0.3 if positive and i else -1, 1.5, (timesteps,) + s).astype(dtype)
                for i, s in enumerate(shapes)]
    return {"currents": currents, "analog": rng.uniform(-1, 1.5, SHAPE).astype(dtype),
            "offsets": [rng.uniform(0, 2, s[1:]).astype(dtype) for s in shapes],
            "biases": [rng.uniform(0 if positive and i else -1, 1, s[1:]).astype(dtype) for i, s in enumerate(shapes)],
            "x0": [state(s) for s in shapes], "v0": state(np.broadcast_shapes(*shapes)), "t0": int(rng.integers(0, 5))}


def _run(kind: str, function: str, case: dict, onnx_op: bool) -> list[np.ndarray]:
    """Outputs of the op (onnx_op) or of the reference: the per-step output, then the final states."""
    z, t0 = case["currents"], case["t0"]
    if kind in ("neuron", "binary"):
        if onnx_op:
            spikes, x, v = run_neuron(z, case["offsets"], case["biases"], function, case["x0"], case["v0"], t0)
        else:
            rules = UNARY_RULES if kind == "neuron" else BINARY_RULES
            spikes, x, v = signgd_neuron(z, case["offsets"], case["biases"], rules[function], case["x0"],
                                         case["v0"], t0)
        return [spikes, *x, v]
    if kind == "encoder":
        args = (case["analog"], z[0].shape[0], function, case["x0"][0], t0)
        return list(run_encoder(*args) if onnx_op else encoder(*args))
    args = (z[0], case["offsets"][0], case["biases"][0], case["x0"][0], t0)
    return list(run_decoder(*args) if onnx_op else decoder(*args))


#: float32 targets that onnxruntime (MLAS Exp; x·σ(1.702x) fused into QuickGelu) and numpy round differently
UNROUNDED_F32 = {"exp", "gelu"}
#: steps after which η_t < 3e-4 and v sits on its target to within ulps (0.15·0.95^127)
SETTLED = 128


@pytest.mark.parametrize("fresh", [True, False], ids=["fresh", "given_state"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("timesteps", [1, 7, 256])
@pytest.mark.parametrize("kind, function", OPS)
def test_matches_reference(kind, function, timesteps, dtype, fresh):
    """Bit for bit in float32 (float64 states within `assert_within_ulps`, spikes identical), except
    float32 exp/gelu neurons past step 128: there ulp differences of the target may flip spikes at
    near-ties, and v_T moves by at most 2·Σ_{t>128} η_t."""
    case = _random_case(kind, function, timesteps, dtype, np.random.default_rng(timesteps), fresh)
    got, expected = _run(kind, function, case, onnx_op=True), _run(kind, function, case, onnx_op=False)
    exact = dtype == np.float64 or function not in UNROUNDED_F32
    steps = timesteps if exact else min(timesteps, SETTLED)
    slack = 2 * eta_schedule(steps, timesteps - steps).sum()
    assert all(a.dtype == dtype for a in got)
    assert_within_ulps(got[0][:steps], expected[0][:steps], timesteps)  # spikes (0/1) stay identical
    for a, b in zip(got[1:-1], expected[1:-1]):
        assert_within_ulps(a, b, timesteps)
    np.testing.assert_allclose(got[-1], expected[-1], rtol=0,
                               atol=slack + ULPS_PER_STEP * timesteps * np.spacing(np.max(np.abs(expected[-1]))))
    if kind != "decoder" and function != "float":
        assert set(np.unique(got[0])) <= {0.0, 1.0}


@pytest.mark.parametrize("kind, function", OPS)
def test_chunked_run_equals_single_run(kind, function):
    """T = 16 + 16 with every state and t0 carried equals one T = 32 run, bit for bit."""
    case = _random_case(kind, function, 32, np.float32, np.random.default_rng(3), fresh=True)
    whole = _run(kind, function, case, onnx_op=True)
    first = _run(kind, function, case | {"currents": [z[:16] for z in case["currents"]]}, onnx_op=True)
    states = first[1:]
    second = _run(kind, function, case | {"currents": [z[16:] for z in case["currents"]], "t0": case["t0"] + 16,
                                          "x0": states[:len(case["x0"])],
                                          "v0": states[-1]}, onnx_op=True)
    np.testing.assert_array_equal(np.concatenate([first[0], second[0]]), whole[0])
    for a, b in zip(second[1:], whole[1:]):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("schedule", ["exponential", "constant", "inverse"])
def test_schedule_attributes(schedule):
    rng = np.random.default_rng(5)
    z = rng.uniform(0, 1, (40, 2, 3))
    attrs = {"eta0": 0.3, "gamma": 0.9, "schedule": schedule}
    spikes, x, v = run_neuron([z], [np.ones(3)], [np.zeros(3)], "relu", t0=3, **attrs)
    ref_spikes, ref_x, ref_v = signgd_neuron([z], [np.ones(3)], [np.zeros(3)], UNARY_RULES["relu"], t0=3, **attrs)
    np.testing.assert_array_equal(spikes, ref_spikes)
    assert_within_ulps(v, ref_v, len(z))
    assert_within_ulps(x[0], ref_x[0], len(z))


def test_p_rsqrt_q_never_fires_on_negative_q():
    """√ of a negative σ² estimate is NaN: no spike (spec §10.4), so v climbs by η_t every step."""
    p, q = np.full((10, 1, 4), 0.5), np.full((10, 1, 4), -1.0)  # z = β, o = 2β: the estimates stay put
    spikes, _, v = run_neuron([p, q], [2 * p[0], 2 * q[0]], [p[0], q[0]], "p_rsqrt_q")
    assert not spikes.any()
    np.testing.assert_allclose(v, eta_schedule(0, 10).sum() * np.ones((1, 4)), rtol=1e-15)
