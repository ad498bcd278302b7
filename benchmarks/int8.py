"""`python -m benchmarks int8`: the speed of --int8-synapses on the CPU, into BENCHMARKS.md.

In alternating rounds in one process (medians, and the spread of the per-round ratios):
1. layers: every dense layer that --int8-synapses rewrites in the IF zoo nets, cut out of the two
   compiled models (onnx.utils.Extractor) as they are: the float32 Gemm against QuantizeLinear +
   com.microsoft.MatMulIntegerToFloat (uint8 spikes with a zero point, the pass's form), and the
   same with int8 spikes (zero point 0; why the pass takes uint8), on T·B rows of spike values
   n/grain (n uniform in the layer's range) for T = 32 and each batch;
2. models: the whole SNN compiled with and without --int8-synapses (Session.run, T = 32);
3. convs: a 3x3 Conv 32 → 64 channels at 14x14 on a batch of signed spikes, float32 against
   ConvInteger (with the Cast, scale and bias back to float32 currents) and against QLinearConv
   (whose outputs are 8-bit: the currents rounded to 256 levels), the reasons Convs stay float.

Accuracy with the option is `python -m benchmarks conversion` with the 'int8 synapses' configuration.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import onnx
import onnx.utils
from onnx import TensorProto, helper, numpy_helper

from benchmarks.timing import time_call
from benchmarks.zoo import _machine, add_output_arguments, publish
from onnx_snn.api import compile_model
from onnx_snn.models.zoo import get_reference
from onnx_snn.options import CompileOptions
from onnx_snn.passes.graph_utils import TARGET_OPSET
from onnx_snn.passes.rate.int8_synapses import MS_DOMAIN, quantize_channels
from onnx_snn.providers import CPU, make_session
from onnx_snn.runtime import Session

KEY = "int8-synapses"
#: the IF zoo nets whose dense layers read spikes
MODELS = ("fashion-cnn", "fashion-vgg", "fashion-resnet", "fashion32-resnet18", "fashion-mobilenetv2")
TIMESTEPS = 32
BATCHES = (64, 256)
#: the conv of part 3: batch, input channels, output channels, side, kernel
CONV = (256, 32, 64, 14, 3)


@dataclass
class Pair:
    """Two callables timed against each other: `base` (float32) and `variants` by label."""

    base: Callable[[], Any]
    variants: dict[str, Callable[[], Any]]


def paired(pair: Pair, rounds: int, repeats: int) -> dict:
    """Median seconds of each callable over `rounds` alternating rounds (each the median of
    `repeats` calls after a warm-up), and per variant the speed-up base / variant: the median and
    the range of the per-round ratios."""
    times: dict[str, list[float]] = {"base": [], **{label: [] for label in pair.variants}}
    calls = {"base": pair.base, **pair.variants}
    for _ in range(rounds):
        for label, call in calls.items():
            times[label].append(statistics.median(time_call(call, repeats)))
    result: dict = {"base_seconds": statistics.median(times["base"])}
    for label in pair.variants:
        ratios = [b / v for b, v in zip(times["base"], times[label])]
        result[label] = {
            "seconds": statistics.median(times[label]),
            "speedup": statistics.median(ratios),
            "spread": [min(ratios), max(ratios)],
        }
    return result


def current_errors(pair: Pair) -> dict[str, float]:
    """Per variant: the RMS of its first output minus the base's, over the RMS of the base's."""
    base = pair.base()[0]
    return {label: _rms(run()[0] - base) / _rms(base) for label, run in pair.variants.items()}


def _rms(values: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(values, dtype=np.float64))))


def compared(pair: Pair, rounds: int, repeats: int) -> dict:
    """`paired`'s timing, with each variant's current error (current_errors) beside its speed-up."""
    result = paired(pair, rounds, repeats)
    for label, error in current_errors(pair).items():
        result[label]["error"] = error
    return result


def runner(model: onnx.ModelProto, feed: dict[str, np.ndarray]) -> Callable[[], list[np.ndarray]]:
    """A call that runs `model` on `feed` in a CPU session of its own (no thread spinning)."""
    session = make_session(model.SerializeToString(), [CPU], spinning=False)
    return lambda: session.run(None, feed)


def _initializers(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}


def _with_int8_spikes(layer: onnx.ModelProto, zero_point: str) -> onnx.ModelProto:
    """`layer` (QuantizeLinear + MatMulIntegerToFloat) with int8 spikes: its zero point int8 0."""
    twin = onnx.ModelProto()
    twin.CopyFrom(layer)
    for index, init in enumerate(twin.graph.initializer):
        if init.name == zero_point:
            twin.graph.initializer[index].CopyFrom(numpy_helper.from_array(np.zeros((), np.int8), zero_point))
    del twin.graph.value_info[:]  # the quantized spikes' uint8 type
    return twin


def compiled(name: str) -> tuple[onnx.ModelProto, onnx.ModelProto]:
    """Zoo model `name` compiled with the defaults, and with --int8-synapses."""
    reference = get_reference(name)
    calibration = reference.load_calibration()
    float_model, integer = (
        compile_model(
            reference.onnx_path, None, CompileOptions(spikes="signed", int8_synapses=flag), calibration=calibration
        ).model
        for flag in (False, True)
    )
    return float_model, integer


def layer_pairs(
    name: str, models: tuple[onnx.ModelProto, onnx.ModelProto], batches: tuple[int, ...], rng: np.random.Generator
) -> list[tuple[dict, Pair]]:
    """Per layer that --int8-synapses rewrites in model `name`, compiled without and with it
    (`models`), and per batch: the layer's shape and grain, and its float32, uint8 and int8 forms
    cut out of the compiled models, on T·batch rows of spike values."""
    float_model, integer = models
    writer = {out: node for node in integer.graph.node for out in node.output}
    values = _initializers(integer)
    pairs = []
    for node in integer.graph.node:
        if node.op_type != "MatMulIntegerToFloat" or node.domain != MS_DOMAIN:
            continue
        dense = next(n for n in float_model.graph.node if n.name == node.name)
        source = writer[node.input[0]].input[0]  # the float spike tensor, named alike in both models
        cut = (
            onnx.utils.Extractor(float_model).extract_model([source], [dense.output[0]]),
            onnx.utils.Extractor(integer).extract_model([source], [node.output[0]]),
        )
        forms = (*cut, _with_int8_spikes(cut[1], node.input[4]))
        k, n = values[node.input[1]].shape
        grain, zero_point = round(1 / float(values[node.input[2]])), int(values[node.input[4]])
        for batch in batches:
            n_values = rng.integers(-zero_point, grain + 1, size=(TIMESTEPS * batch, k))
            feed = {source: n_values.astype(np.float32) / np.float32(grain)}
            base, uint8, int8 = (runner(form, feed) for form in forms)
            row = {"layer": f"{name} {node.name}", "batch": batch, "k": int(k), "n": int(n), "grain": grain}
            pairs.append((row, Pair(base, {"uint8": uint8, "int8": int8})))
    return pairs


def model_pairs(name: str, batches: tuple[int, ...]) -> dict[int, Pair]:
    """Per batch: zoo model `name`'s whole SNN at T = TIMESTEPS, without and with --int8-synapses."""
    x_test, _ = get_reference(name).load_test()
    base, integer = (Session(model, providers=[CPU]) for model in compiled(name))
    return {
        b: Pair(
            lambda b=b: base.run(x_test[:b], TIMESTEPS),
            {"int8 synapses": lambda b=b: integer.run(x_test[:b], TIMESTEPS)},
        )
        for b in batches
    }


def _model(nodes: list[onnx.NodeProto], inputs: list, outputs: list, inits: dict[str, np.ndarray]) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, [numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", TARGET_OPSET), helper.make_opsetid(MS_DOMAIN, 1)]
    )
    model.ir_version = 10
    return model


def conv_pair(rng: np.random.Generator) -> Pair:
    """The conv of part 3 on signed spikes: float32, ConvInteger (+ Cast, scale, bias), and
    QLinearConv with its 8-bit output scaled to the float32 currents' largest magnitude."""
    batch, c_in, c_out, side, kernel = CONV
    weight = rng.normal(0, 0.1, (c_out, c_in, kernel, kernel)).astype(np.float32)
    bias = rng.normal(0, 0.1, c_out).astype(np.float32)
    feed = {"x": rng.integers(-1, 2, size=(batch, c_in, side, side)).astype(np.float32)}
    q, scale = quantize_channels(weight.reshape(c_out, -1))
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, None)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    pads = {"pads": [kernel // 2] * 4}
    spikes_u8 = {"one": np.float32(1.0), "zp": np.uint8(1), "q": q.reshape(weight.shape)}
    quantize = helper.make_node("QuantizeLinear", ["x", "one", "zp"], ["xq"])
    conv = _model([helper.make_node("Conv", ["x", "w", "bias"], ["y"], **pads)], [x], [y], {"w": weight, "bias": bias})
    base = runner(conv, feed)
    (currents,) = base()
    integer = _model(
        [
            quantize,
            helper.make_node("ConvInteger", ["xq", "q", "zp"], ["acc"], **pads),
            helper.make_node("Cast", ["acc"], ["accf"], to=TensorProto.FLOAT),
            helper.make_node("Mul", ["accf", "scale"], ["scaled"]),
            helper.make_node("Add", ["scaled", "bias"], ["y"]),
        ],
        [x],
        [y],
        spikes_u8 | {"scale": scale.reshape(1, -1, 1, 1), "bias": bias.reshape(1, -1, 1, 1)},
    )
    inputs = ["xq", "one", "zp", "q", "scale", "w_zp", "y_scale", "y_zp", "bias"]
    linear = _model(
        [
            quantize,
            helper.make_node("QLinearConv", inputs, ["yq"], **pads),
            helper.make_node("DequantizeLinear", ["yq", "y_scale", "y_zp"], ["y"]),
        ],
        [x],
        [y],
        spikes_u8
        | {
            "scale": scale,
            "w_zp": np.zeros(c_out, np.int8),
            "y_scale": np.float32(np.abs(currents).max() / 127),
            "y_zp": np.uint8(128),
            "bias": np.rint(bias / scale).astype(np.int32),
        },
    )
    return Pair(base, {"ConvInteger": runner(integer, feed), "QLinearConv": runner(linear, feed)})


def measure(models: tuple[str, ...], timed_models: tuple[str, ...], rounds: int, repeats: int) -> dict:
    """The three parts of the module docstring."""
    rng = np.random.default_rng(0)
    layers = []
    for name in models:
        for row, pair in layer_pairs(name, compiled(name), BATCHES, rng):
            layers.append(row | compared(pair, rounds, repeats))
            print(layers[-1], flush=True)
    whole = []
    for name in timed_models:
        for batch, pair in model_pairs(name, BATCHES).items():
            whole.append({"model": name, "batch": batch, **paired(pair, rounds, repeats)})
            print(whole[-1], flush=True)
    return {
        "machine": _machine(),
        "timesteps": TIMESTEPS,
        "rounds": rounds,
        "layers": layers,
        "models": whole,
        "conv": {"shape": list(CONV), **compared(conv_pair(rng), rounds, repeats)},
    }


def _speedup(row: dict) -> str:
    low, high = row["spread"]
    return f"{row['speedup']:.2f} ({low:.2f}–{high:.2f})"


def section(result: dict, command: str) -> str:
    """The BENCHMARKS.md section of `result`."""
    t = result["timesteps"]
    lines = [
        "## int8 synapses: speed on the CPU",
        "",
        f"Measured with `{command}` ({result['machine']}, {result['rounds']} alternating rounds in one "
        "process; speed-up = float32 time / integer time, median over the rounds (range)). Accuracy: "
        "the next section.",
        "",
        f"Each dense layer that `--int8-synapses` rewrites, as compiled, on T·B rows (T = {t}) of random spike "
        "values n/grain, n uniform in the layer's range; "
        "the current error is the RMS of the integer layer's currents minus the float32 layer's, over the "
        "RMS of the float32 currents (the 8-bit weights; the int8-spike form computes the same currents):",
        "",
        "| layer | K → N | grain | batch (rows) | float32 Gemm (ms) | uint8 spikes: QuantizeLinear + "
        "MatMulIntegerToFloat (ms) | speed-up | current error | int8 spikes (ms) | speed-up |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["layers"]:
        lines.append(
            f"| {row['layer']} | {row['k']} → {row['n']} | {row['grain']} | {row['batch']} ({t * row['batch']}) | "
            f"{1e3 * row['base_seconds']:.3f} | {1e3 * row['uint8']['seconds']:.3f} | {_speedup(row['uint8'])} | "
            f"{100 * row['uint8']['error']:.2f} % | {1e3 * row['int8']['seconds']:.3f} | {_speedup(row['int8'])} |"
        )
    lines += [
        "",
        f"The whole SNN at T = {t} (Session.run, one batch of test images):",
        "",
        "| model | batch | float32 (ms) | --int8-synapses (ms) | speed-up |",
        "|---|---|---|---|---|",
    ]
    for row in result["models"]:
        integer = row["int8 synapses"]
        lines.append(
            f"| {row['model']} | {row['batch']} | {1e3 * row['base_seconds']:.1f} | "
            f"{1e3 * integer['seconds']:.1f} | {_speedup(integer)} |"
        )
    conv = result["conv"]
    batch, c_in, c_out, side, kernel = conv["shape"]
    lines += [
        "",
        f"Convs: a {kernel}x{kernel} Conv {c_in} → {c_out} channels at {side}x{side}, batch {batch} of signed "
        f"spikes, int8 weights per output channel; float32 Conv {1e3 * conv['base_seconds']:.1f} ms; QuantizeLinear "
        f"+ ConvInteger + Cast, scale and bias {1e3 * conv['ConvInteger']['seconds']:.1f} ms (speed-up "
        f"{_speedup(conv['ConvInteger'])}, current error {100 * conv['ConvInteger']['error']:.2f} %); "
        f"QuantizeLinear + QLinearConv + DequantizeLinear, its uint8 output scaled to the largest float32 current, "
        f"{1e3 * conv['QLinearConv']['seconds']:.1f} ms ({_speedup(conv['QLinearConv'])}, current error "
        f"{100 * conv['QLinearConv']['error']:.2f} %).",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks int8", description=__doc__)
    parser.add_argument("--models", nargs="*", default=list(MODELS), help="zoo nets whose dense layers are timed")
    parser.add_argument(
        "--timed-models", nargs="*", default=["fashion-cnn", "fashion-vgg"], help="zoo nets timed whole"
    )
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--repeats", type=int, default=3, help="timed calls of each per round (their median)")
    add_output_arguments(parser)
    args = parser.parse_args(argv)
    result = measure(tuple(args.models), tuple(args.timed_models), args.rounds, args.repeats)
    command = " ".join(["python -m benchmarks int8", *(argv if argv is not None else sys.argv[1:])])
    publish(section(result, command), result, KEY, args.out, args.json_dir)
    return 0
