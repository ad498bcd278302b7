"""The signGD ops in small checked models: build and run one snn node on given currents, and
random cases for comparing them with the numpy reference (tests/signgd_reference.py)."""

from __future__ import annotations

from typing import Callable

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper
from signgd_reference import NeuronInputs

from onnx_snn.ir.neurons import attach_functions

TYPES = {
    np.dtype(np.float32): TensorProto.FLOAT,
    np.dtype(np.float64): TensorProto.DOUBLE,
    np.dtype(np.int64): TensorProto.INT64,
}
#: spec §9 inputs of the vector scenarios
NAN = np.float64(np.nan)

Runner = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


def snn(op: str, inputs: list[str], outputs: list[str], **attrs) -> onnx.NodeProto:
    return helper.make_node(op, inputs, outputs, domain="snn", **attrs)


def runner(nodes: list[onnx.NodeProto], example: dict[str, np.ndarray], outputs: dict[str, int]) -> Runner:
    """A checked model of `nodes` with inputs typed like `example` (all dims symbolic) and
    `outputs` (name → rank) in the floating type of the inputs; returns a function of the feeds."""
    dtype = next(a.dtype for a in example.values() if a.dtype.kind == "f")

    def info(name: str, elem: int, rank: int) -> onnx.ValueInfoProto:
        return helper.make_tensor_value_info(name, elem, [f"{name}_{i}" for i in range(rank)])

    graph = helper.make_graph(
        nodes,
        "signgd_test",
        [info(k, TYPES[a.dtype], a.ndim) for k, a in example.items()],
        [info(k, TYPES[dtype], rank) for k, rank in outputs.items()],
    )
    model = attach_functions(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)], ir_version=10))
    onnx.checker.check_model(model, full_check=True)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return lambda feeds: dict(zip(outputs, session.run(list(outputs), feeds)))


def fold_time(seq: np.ndarray) -> np.ndarray:
    return seq.reshape((-1,) + seq.shape[2:])


def int64(value: int) -> np.ndarray:
    return np.asarray(value, np.int64)


def run_neuron(inputs: NeuronInputs, function: str, **attrs) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """SignGDNeuron (one current) or SignGDBinaryNeuron (two) with `function` (and further attributes
    `attrs`) on `inputs`; returns spikes [T, B, ...], the x_T per operand and v_T."""
    currents = inputs.currents
    dtype = currents[0].dtype
    tags = [""] if len(currents) == 1 else ["p", "q"]
    op = "SignGDNeuron" if len(currents) == 1 else "SignGDBinaryNeuron"
    x0 = inputs.x0 if inputs.x0 is not None else [NAN] * len(currents)
    v0 = inputs.v0 if inputs.v0 is not None else NAN
    feeds = {f"z{t}": fold_time(z) for t, z in zip(tags, currents)} | {"timesteps": int64(currents[0].shape[0])}
    for t, o, b in zip(tags, inputs.offsets, inputs.biases):
        suffix = f"_{t}" if t else ""
        feeds |= {f"offset{suffix}": np.asarray(o, dtype), f"bias{suffix}": np.asarray(b, dtype)}
    feeds |= {f"x{t}0": np.asarray(x, dtype) for t, x in zip(tags, x0)}
    feeds |= {"v0": np.asarray(v0, dtype), "t0": int64(inputs.t0)}
    rank = currents[0].ndim - 1
    outputs = {"spikes": rank} | {f"x{t}_T": rank for t in tags} | {"v_T": rank}
    out = runner([snn(op, list(feeds), list(outputs), function=function, **attrs)], feeds, outputs)(feeds)
    spikes = out["spikes"].reshape((currents[0].shape[0], -1) + out["spikes"].shape[1:])
    return spikes, [out[f"x{t}_T"] for t in tags], out["v_T"]


def run_encoder(
    x: np.ndarray, timesteps: int, codec: str = "float", f0=NAN, t0: int = 0, **attrs
) -> tuple[np.ndarray, np.ndarray]:
    """SignGDEncoder (further attributes `attrs`, e.g. the schedule) on x; returns e [T, ...] and f_T."""
    feeds = {"x": x, "timesteps": int64(timesteps), "f0": np.asarray(f0, x.dtype), "t0": int64(t0)}
    out = runner(
        [snn("SignGDEncoder", list(feeds), ["e", "f_T"], codec=codec, **attrs)], feeds, {"e": x.ndim, "f_T": x.ndim}
    )(feeds)
    return out["e"].reshape((timesteps,) + x.shape), out["f_T"]


def eta_onnx(count: int, **attrs) -> np.ndarray:
    """η_0 .. η_{count−1} of a SignGDDecoder with attributes `attrs`, from one-step decoder runs
    continued by t0: y_1 = 0 − η_t·(2·0 − 1) = η_t."""
    feeds = {
        "z": np.zeros((1, 1)),
        "timesteps": int64(1),
        "offset": np.ones(1),
        "bias": np.zeros(1),
        "y0": np.zeros(1),
        "t0": int64(0),
    }
    run = runner(
        [snn("SignGDDecoder", list(feeds), ["y_per_step", "y_T"], **attrs)], feeds, {"y_per_step": 3, "y_T": 2}
    )
    return np.array([run(feeds | {"t0": int64(t)})["y_T"].item() for t in range(count)])


def run_decoder(z: np.ndarray, offset, bias, y0=NAN, t0: int = 0, **attrs) -> tuple[np.ndarray, np.ndarray]:
    """SignGDDecoder (further attributes `attrs`) on z [T, B, ...]; returns y per step and y_T."""
    feeds = {
        "z": fold_time(z),
        "timesteps": int64(z.shape[0]),
        "offset": np.asarray(offset, z.dtype),
        "bias": np.asarray(bias, z.dtype),
        "y0": np.asarray(y0, z.dtype),
        "t0": int64(t0),
    }
    out = runner(
        [snn("SignGDDecoder", list(feeds), ["y_per_step", "y_T"], **attrs)],
        feeds,
        {"y_per_step": z.ndim, "y_T": z.ndim - 1},
    )(feeds)
    return out["y_per_step"], out["y_T"]


SHAPE = (3, 4, 5)  # [B, ...] of one step; the second operand of a two-operand neuron is [3, 4, 1]


def random_case(kind: str, function: str, timesteps: int, dtype, rng: np.random.Generator, fresh: bool) -> dict:
    """Inputs of one op: currents [T, B, ...] (an encoder's `analog` [B, ...]), calibration and
    states (fresh: NaN; else random, some entries NaN)."""

    def state(shape):
        values = rng.uniform(-1, 1, shape).astype(dtype)
        return np.asarray(np.nan, dtype) if fresh else np.where(rng.random(shape) < 0.2, np.nan, values).astype(dtype)

    shapes = [SHAPE] if kind != "binary" else [SHAPE, SHAPE[:-1] + (1,)]
    positive = function in (
        "p_rsqrt_q",
        "p_div_q_pow",
        "div",
    )  # mostly positive q: exercises √q and p/q (and q < 0 sometimes)
    currents = [
        rng.uniform(-0.3 if positive and i else -1, 1.5, (timesteps,) + s).astype(dtype) for i, s in enumerate(shapes)
    ]
    return {
        "currents": currents,
        "analog": rng.uniform(-1, 1.5, SHAPE).astype(dtype),
        "offsets": [rng.uniform(0, 2, s[1:]).astype(dtype) for s in shapes],
        "biases": [rng.uniform(0 if positive and i else -1, 1, s[1:]).astype(dtype) for i, s in enumerate(shapes)],
        "x0": [state(s) for s in shapes],
        "v0": state(np.broadcast_shapes(*shapes)),
        "t0": int(rng.integers(0, 5)),
    }


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


#: steps after which η_t < 3e-4 and v sits on its target to within ulps (0.15·0.95^127)
SETTLED = 128
