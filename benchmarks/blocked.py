"""`python -m benchmarks blocked`: can an IF layer stay in onnxruntime's blocked (NCHWc) layout?

Issue 18, items 1 and 3. onnxruntime's CPU provider runs Conv, pooling, Add and Concat in a blocked
layout and reorders to NCHW before any other op, so every compiled IF layer pays a ReorderOutput
after its Conv and a ReorderInput before the next one (runtime/PERFORMANCE.md). This benchmark
times one spike-fed conv layer as fashion-cnn's second layer has it (AvgPool 2 → Conv 6 → 16, 5x5
→ IF → AvgPool 2, 28x28 spikes in) over T steps of a batch B, in four forms, on the same random
spikes and weights, in alternating rounds in one process:

- `scan binary`: time folded into the batch, one Conv over T·B, the binary IF neuron as a Scan of
  the compiler's own step body (ir/neurons.py if_step: Add, HardSigmoid, Sub; soft reset, v_init
  0.5), without the op's prologue and epilogue;
- `scan burst`: the same with the compiler's burst step (burst_if_step: Add, Floor, Max, Sub, Sub),
  the default;
- `scan burst, pool in the step` (item 3): the burst Scan whose step pools its own spikes, so the
  full-size spikes are neither stacked over T by the Scan nor read back by a separate pool; its
  output equals `scan burst`'s bit for bit;
- `unrolled blocked binary`: the T steps unrolled, each step's IF in ops that the NCHWc
  transformer keeps blocked: u_t = Conv(p_t) + z_{t−1} (the Add fused into the Conv as its Sum
  input; z_0 = v_init folded into the first step's bias), s_t = Clip(DWConv1x1(u_t; 2^24,
  1 − 2^24), 0, 1) (the compiler's HardSigmoid step as a depthwise 1x1 Conv with a fused Clip),
  z_t = DWConv1x1(s_t; −1) + u_t. onnxruntime's optimized graph of it holds no reorder inside the
  layer (counted from the optimized model), one ReorderOutput per step's output. Its spikes are
  `scan binary`'s up to float rounding: the fused Conv adds its bias and Sum input in its own
  order, and v_init is in the first step's bias, so a membrane within an ulp of the threshold can
  fire one step apart (a few outputs in a million, reported; tests/test_bench_blocked.py).

The burst step has no such form: it needs Floor and Max, which the transformer does not carry.
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from benchmarks.int8 import Pair, paired, runner
from benchmarks.zoo import _machine, add_output_arguments, publish
from onnx_snn.ir.neurons import STEP_GAIN, burst_if_step, if_step
from onnx_snn.passes.graph_utils import TARGET_OPSET
from onnx_snn.providers import CPU

KEY = "blocked-if-layer"
#: fashion-cnn's second layer: input channels, output channels, input side, kernel
LAYER = (6, 16, 28, 5)
V_INIT = 0.5
TIMESTEPS = 32
BATCHES = (64, 256)
FORMS = ("scan binary", "scan burst", "scan burst, pool in the step", "unrolled blocked binary")


def _value(name: str, shape: list | None) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def _weights(seed: int = 0) -> list[onnx.TensorProto]:
    """The layer's Conv weight W and bias b, scaled so that about a tenth of the neurons fire a step."""
    c_in, c_out, _, k = LAYER
    rng = np.random.default_rng(seed)
    weight = (rng.standard_normal((c_out, c_in, k, k)) * 0.12).astype(np.float32)
    bias = (rng.standard_normal(c_out) * 0.05).astype(np.float32)
    return [numpy_helper.from_array(weight, "W"), numpy_helper.from_array(bias, "b")]


def _pool(x: str, y: str) -> onnx.NodeProto:
    return helper.make_node("AveragePool", [x], [y], kernel_shape=[2, 2], strides=[2, 2])


def _conv(x: str, bias: str, y: str) -> onnx.NodeProto:
    pad = LAYER[3] // 2
    return helper.make_node("Conv", [x, "W", bias], [y], pads=[pad] * 4)


def _model(nodes: list[onnx.NodeProto], initializers: list[onnx.TensorProto], timesteps: int, batch: int):
    c_in, c_out, side, _ = LAYER
    graph = helper.make_graph(
        nodes,
        "layer",
        [_value("spikes_in", [timesteps * batch, c_in, side, side])],
        [_value("spikes_out", [timesteps * batch, c_out, side // 4, side // 4])],
        initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", TARGET_OPSET)])


def _pooled_step(step: onnx.GraphProto) -> onnx.GraphProto:
    """`step` (a Scan body whose last output is the spikes) emitting its spikes average-pooled."""
    pooled = onnx.GraphProto()
    pooled.CopyFrom(step)
    spikes = pooled.output[-1].name
    pooled.node.append(_pool(spikes, f"{spikes}_pooled"))
    pooled.output[-1].CopyFrom(_value(f"{spikes}_pooled", None))
    return pooled


def scan_form(kind: str, timesteps: int, batch: int, pool_in_body: bool = False) -> onnx.ModelProto:
    """The layer with time folded into the batch and its IF neuron (`kind` binary or burst) a Scan;
    with `pool_in_body` the Scan's step pools its own spikes (issue 18, item 3), so the full-size
    spikes are never stacked over T nor read back by a separate pool."""
    _, c_out, side, _ = LAYER
    step = [batch, c_out, side // 2, side // 2]
    states = ["u0"] if kind == "binary" else ["u0", "m0"]
    body = if_step(hard=False, constant_input=False) if kind == "binary" else burst_if_step(False, False)
    out_side = side // 4 if pool_in_body else side // 2
    nodes = [
        _pool("spikes_in", "pooled"),
        _conv("pooled", "b", "current"),
        helper.make_node("Reshape", ["current", "per_step_shape"], ["current_per_step"]),
        helper.make_node(
            "Scan",
            [*states, "current_per_step"],
            [*(f"{s}_T" for s in states), "spikes_per_step"],
            body=_pooled_step(body) if pool_in_body else body,
            num_scan_inputs=1,
        ),
        helper.make_node("Reshape", ["spikes_per_step", "folded_shape"], ["spikes_out" if pool_in_body else "spikes"]),
        *([] if pool_in_body else [_pool("spikes", "spikes_out")]),
    ]
    initializers = [
        *_weights(),
        numpy_helper.from_array(np.array([timesteps, *step], np.int64), "per_step_shape"),
        numpy_helper.from_array(np.array([timesteps * batch, c_out, out_side, out_side], np.int64), "folded_shape"),
        numpy_helper.from_array(np.full(step, V_INIT, np.float32), "u0"),
        numpy_helper.from_array(np.zeros(step, np.float32), "m0"),
    ]
    return _model(nodes, initializers, timesteps, batch)


def unrolled_blocked_form(timesteps: int, batch: int) -> onnx.ModelProto:
    """The layer unrolled over `timesteps`, its binary IF step in Conv, Clip and Add only (module doc)."""
    c_out = LAYER[1]
    weights = _weights()
    bias = numpy_helper.to_array(weights[1])
    nodes = [helper.make_node("Split", ["spikes_in", "step_sizes"], [f"in_{t}" for t in range(timesteps)], axis=0)]
    initializers = [
        *weights,
        numpy_helper.from_array(bias + np.float32(V_INIT), "b_first"),
        numpy_helper.from_array(np.full(timesteps, batch, np.int64), "step_sizes"),
        numpy_helper.from_array(np.full((c_out, 1, 1, 1), STEP_GAIN, np.float32), "fire_gain"),
        numpy_helper.from_array(np.full(c_out, 1.0 - STEP_GAIN, np.float32), "fire_offset"),
        numpy_helper.from_array(np.full((c_out, 1, 1, 1), -1.0, np.float32), "minus_one"),
        numpy_helper.from_array(np.zeros(c_out, np.float32), "no_offset"),
        numpy_helper.from_array(np.float32(0.0), "zero"),
        numpy_helper.from_array(np.float32(1.0), "one"),
    ]
    for t in range(timesteps):
        nodes.append(_pool(f"in_{t}", f"p_{t}"))
        if t == 0:
            nodes.append(_conv(f"p_{t}", "b_first", f"u_{t}"))
        else:
            nodes += [_conv(f"p_{t}", "b", f"c_{t}"), helper.make_node("Add", [f"c_{t}", f"z_{t - 1}"], [f"u_{t}"])]
        nodes += [
            helper.make_node("Conv", [f"u_{t}", "fire_gain", "fire_offset"], [f"a_{t}"], group=c_out),
            helper.make_node("Clip", [f"a_{t}", "zero", "one"], [f"s_{t}"]),
            helper.make_node("Conv", [f"s_{t}", "minus_one", "no_offset"], [f"r_{t}"], group=c_out),
            helper.make_node("Add", [f"r_{t}", f"u_{t}"], [f"z_{t}"]),
            _pool(f"s_{t}", f"out_{t}"),
        ]
    nodes.append(helper.make_node("Concat", [f"out_{t}" for t in range(timesteps)], ["spikes_out"], axis=0))
    return _model(nodes, initializers, timesteps, batch)


def forms(timesteps: int, batch: int) -> dict[str, onnx.ModelProto]:
    """Every form, by its name in FORMS."""
    built = (
        scan_form("binary", timesteps, batch),
        scan_form("burst", timesteps, batch),
        scan_form("burst", timesteps, batch, pool_in_body=True),
        unrolled_blocked_form(timesteps, batch),
    )
    return dict(zip(FORMS, built, strict=True))


def optimized_ops(model: onnx.ModelProto) -> dict[str, int]:
    """The op counts ("domain:op") of onnxruntime's CPU-optimized graph of `model` (what it runs)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "optimized.onnx"
        options = ort.SessionOptions()
        options.log_severity_level = 3  # its warning that the saved graph is for this machine only
        options.optimized_model_filepath = str(path)
        ort.InferenceSession(model.SerializeToString(), options, providers=[CPU])
        graph = onnx.load(str(path)).graph
    return dict(collections.Counter(f"{node.domain}:{node.op_type}" for node in graph.node))


def input_spikes(timesteps: int, batch: int, rate: float = 0.2, seed: int = 1) -> np.ndarray:
    """Random 0/1 spikes [T·B, c_in, side, side] at `rate`."""
    c_in, _, side, _ = LAYER
    rng = np.random.default_rng(seed)
    return (rng.random((timesteps * batch, c_in, side, side)) < rate).astype(np.float32)


def measure(timesteps: int, batches: tuple[int, ...], rounds: int, repeats: int) -> dict:
    """Per batch: each form's median time, the speed-up of the others over `scan binary` (median
    and range of the per-round ratios), the fraction of the unrolled form's outputs that differ from
    the Scan's, and the reorders in onnxruntime's optimized graph of each form."""
    rows = []
    for batch in batches:
        models = forms(timesteps, batch)
        feed = {"spikes_in": input_spikes(timesteps, batch)}
        calls = {name: runner(model, feed) for name, model in models.items()}
        outputs = {name: call()[0] for name, call in calls.items()}
        base = FORMS[0]
        timing = paired(Pair(calls[base], {name: calls[name] for name in FORMS[1:]}), rounds, repeats)
        rows.append(
            {
                "batch": batch,
                "seconds": {base: timing["base_seconds"], **{n: timing[n]["seconds"] for n in FORMS[1:]}},
                "speedup": {n: {"median": timing[n]["speedup"], "spread": timing[n]["spread"]} for n in FORMS[1:]},
                "differing_outputs": float(np.mean(outputs[base] != outputs["unrolled blocked binary"])),
                "reorders": {
                    name: {op: n for op, n in optimized_ops(model).items() if "Reorder" in op}
                    for name, model in models.items()
                },
            }
        )
    return {"machine": _machine(), "timesteps": timesteps, "rounds": rounds, "repeats": repeats, "rows": rows}


def section(result: dict, command: str) -> str:
    """The BENCHMARKS.md section of `measure`'s result."""
    c_in, c_out, side, k = LAYER
    lines = [
        "## One IF conv layer in onnxruntime's blocked layout (issue 18, items 1 and 3)",
        "",
        f"Measured with `{command}` (CPU: {result['machine']}): AvgPool 2 → Conv {c_in} → {c_out}, {k}x{k} → IF → "
        f"AvgPool 2 on {side}x{side} spikes (fashion-cnn's second layer), T = {result['timesteps']}, medians of "
        f"{result['rounds']} alternating rounds of {result['repeats']} calls; speed-up over `scan binary`, with "
        "the range of the per-round ratios. The forms are in benchmarks/blocked.py.",
        "",
        "| batch | "
        + " | ".join(f"{n} (ms)" for n in FORMS)
        + " | "
        + " | ".join(f"{n}: speed-up" for n in FORMS[1:])
        + " | outputs that differ (unrolled vs scan binary) | reorders in onnxruntime's graph |",
        "|" + "---|" * (2 * len(FORMS) + 2),
    ]
    for row in result["rows"]:
        times = " | ".join(f"{1e3 * row['seconds'][n]:.1f}" for n in FORMS)
        speedups = " | ".join(_ratio(row["speedup"][n]) for n in FORMS[1:])
        reorders = "; ".join(
            f"{n}: " + (", ".join(f"{op.split(':')[1]} {c}" for op, c in sorted(r.items())) or "none")
            for n, r in row["reorders"].items()
        )
        lines.append(f"| {row['batch']} | {times} | {speedups} | {row['differing_outputs']:.1e} | {reorders} |")
    return "\n".join(lines) + "\n"


def _ratio(speedup: dict) -> str:
    low, high = speedup["spread"]
    return f"{speedup['median']:.2f} ({low:.2f}–{high:.2f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks blocked", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--timesteps", type=int, default=TIMESTEPS)
    parser.add_argument("--batches", type=int, nargs="+", default=list(BATCHES))
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=3, help="timed calls of each form per round (their median)")
    add_output_arguments(parser)
    args = parser.parse_args(argv)
    result = measure(args.timesteps, tuple(args.batches), args.rounds, args.repeats)
    command = " ".join(["python -m benchmarks blocked", *(argv if argv is not None else sys.argv[1:])])
    publish(section(result, command), result, KEY, args.out, args.json_dir)
    return 0
