"""`python -m benchmarks floor MODEL ...`: what a compiled SNN costs with free neurons, into BENCHMARKS.md.

The compiled SNN's neuron ops are swapped for one standard op each with the same output
(`neuron_free`): IF and unary signGD neurons for Relu of their current, binary signGD neurons for
Max of their two currents, the constant-input IF neuron for Relu of its current repeated over T.
Everything else stays: the time-folded convolutions and matmuls over T·B, layout changes,
pooling, the encoder and the decoder. onnxruntime fuses such a Relu into the Conv or MatMul
before it, so the twin's time bounds from below what any neuron body could reach.

It times, on one batch and in alternating rounds: the ANN (T x ANN), the SNN, the twin and, with
`--spikingjelly`, spikingjelly's ann2snn SNN of the same PyTorch model (IF-convertible models
only). spikingjelly time / twin time is then the largest speed-up over spikingjelly that this
runtime could reach on the model with neuron dynamics of zero cost.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from benchmarks.spikingjelly_ref import convert, simulate
from benchmarks.timing import time_call
from benchmarks.zoo import ANN_TIMED, ANN_WARMUP, _machine, add_output_arguments, publish
from onnx_snn.api import compile_model
from onnx_snn.errors import SnnError
from onnx_snn.ir.function_parts import SNN_DOMAIN
from onnx_snn.ir.neurons import CAPPED_IF_NEURON_OP, IF_NEURON_OP, IF_NEURON_OPS
from onnx_snn.models.zoo import get_reference, load_torch_model
from onnx_snn.options import SPIKE_KINDS, CompileOptions
from onnx_snn.providers import CPU, make_session
from onnx_snn.runtime import Session

#: neuron op → the standard op computing its ANN counterpart from its first input(s)
UNARY_STAND_INS = {
    **{op: "Relu" for op in (*IF_NEURON_OP.values(), *CAPPED_IF_NEURON_OP.values())},
    "SignGDNeuron": "Relu",
}
BINARY_STAND_INS = {"SignGDBinaryNeuron": "Max"}
KEY = "neuron-free-floor"
CONSTANT_INPUT_NEURONS = tuple(op for op in IF_NEURON_OPS if op not in UNARY_STAND_INS)


def neuron_free(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of the compiled `model` whose neurons are stand-ins (module docstring); the neurons'
    state outputs are dropped, so the model must be the plain compiled form, not the stateful one.
    SnnError if a dropped state output is still read."""
    twin = onnx.ModelProto()
    twin.CopyFrom(model)
    nodes: list[onnx.NodeProto] = []
    dropped: set[str] = set()
    for node in model.graph.node:
        if node.domain != SNN_DOMAIN or node.op_type not in {
            **UNARY_STAND_INS,
            **BINARY_STAND_INS,
            **dict.fromkeys(CONSTANT_INPUT_NEURONS, ""),
        }:
            nodes.append(node)
            continue
        dropped.update(node.output[1:])
        if node.op_type in UNARY_STAND_INS:
            nodes.append(helper.make_node(UNARY_STAND_INS[node.op_type], [node.input[0]], [node.output[0]]))
        elif node.op_type in BINARY_STAND_INS:
            nodes.append(helper.make_node(BINARY_STAND_INS[node.op_type], list(node.input[:2]), [node.output[0]]))
        else:
            nodes += _repeated_relu(node.input[0], node.input[1], node.output[0])
    still_read = dropped & ({i for n in nodes for i in n.input} | {o.name for o in model.graph.output})
    if still_read:
        raise SnnError(f"the neuron-free twin drops neuron state that the graph still reads: {sorted(still_read)[:3]}")
    del twin.graph.node[:]
    twin.graph.node.extend(nodes)
    twin.graph.initializer.extend(
        [
            numpy_helper.from_array(np.array([0], np.int64), "floor__axis0"),
            numpy_helper.from_array(np.array([1], np.int64), "floor__one"),
            numpy_helper.from_array(np.array([-1], np.int64), "floor__rest"),
        ]
    )
    return twin


def _repeated_relu(current: str, timesteps: str, output: str) -> list[onnx.NodeProto]:
    """Nodes making `output` [T*B, ...] = Relu(current [B, ...]) repeated T times."""
    p = f"{output}__floor_"
    return [
        helper.make_node("Relu", [current], [f"{p}relu"]),
        helper.make_node("Unsqueeze", [f"{p}relu", "floor__axis0"], [f"{p}lead"]),
        helper.make_node("Reshape", [timesteps, "floor__one"], [f"{p}steps"]),
        helper.make_node("Shape", [current], [f"{p}sample_shape"]),
        helper.make_node("Concat", [f"{p}steps", f"{p}sample_shape"], [f"{p}full_shape"], axis=0),
        helper.make_node("Expand", [f"{p}lead", f"{p}full_shape"], [f"{p}repeated"]),
        helper.make_node("Shape", [current], [f"{p}neuron_shape"], start=1),
        helper.make_node("Concat", ["floor__rest", f"{p}neuron_shape"], [f"{p}flat_shape"], axis=0),
        helper.make_node("Reshape", [f"{p}repeated", f"{p}flat_shape"], [output]),
    ]


def measure_floor(
    name: str,
    steps: tuple[int, ...],
    batch_size: int,
    repeats: int,
    cache_dir: str | None,
    spikingjelly: bool,
    spikes: str | None = None,
) -> dict:
    """Median times at each T in `steps` of the SNN (compiled with --spikes `spikes`, else the
    default), its neuron-free twin and (optionally) spikingjelly, and the ANN's steady-state time,
    on the first `batch_size` test images of `name`."""

    reference = get_reference(name, cache_dir=cache_dir)
    batch = reference.load_test()[0][:batch_size]
    options = CompileOptions(timesteps=max(steps), **({"spikes": spikes} if spikes else {}))
    with tempfile.TemporaryDirectory() as tmp:
        snn_path, twin_path = Path(tmp) / "snn.onnx", Path(tmp) / "twin.onnx"
        compiled = compile_model(
            reference.onnx_path,
            snn_path,
            options,
            calibration=reference.load_calibration(),
            show_progress=False,
        )
        onnx.save(neuron_free(compiled.model), str(twin_path))
        engines = {"snn": Session(snn_path, providers=[CPU]), "twin": Session(twin_path, providers=[CPU])}
        ann = make_session(str(reference.onnx_path), [CPU])
        jelly = None
        if spikingjelly:
            import torch

            jelly = (
                convert(load_torch_model(reference), reference.load_calibration(), batch_size),
                torch.from_numpy(batch),
            )
        feed = {ann.get_inputs()[0].name: batch}
        ann_times: list[float] = []
        times: dict[str, dict[int, list[float]]] = {
            k: {t: [] for t in steps} for k in [*engines, *(["spikingjelly"] if jelly else [])]
        }
        for _ in range(repeats):
            ann_times += time_call(lambda: ann.run(None, feed), ANN_TIMED, warmup=ANN_WARMUP)
            for t in steps:
                for key, engine in engines.items():
                    times[key][t] += time_call(lambda: engine.run(batch, t), 1)
                if jelly:
                    times["spikingjelly"][t] += time_call(lambda: simulate(jelly[0], jelly[1], t), 1)
    ann_seconds = statistics.median(ann_times)
    return {
        "model": name,
        "neuron": compiled.metadata["neuron"],
        "spikes": options.spikes,
        "machine": _machine(),
        "batch": batch_size,
        "repeats": repeats,
        "ann_seconds": ann_seconds,
        "per_T": {t: {key: statistics.median(per_t[t]) for key, per_t in times.items()} for t in steps},
    }


def markdown_section(results: list[dict], command: str) -> str:
    """The BENCHMARKS.md section of the neuron-free floors in `results`."""
    lines = [
        f"## Neuron-free floor: each SNN with its neuron dynamics at zero cost, batch {results[0]['batch']}"
        + "".join(sorted({f", {r['spikes']} spikes" for r in results if "spikes" in r})),
        "",
        f"Measured with `{command}` (CPU: {results[0]['machine']}), one batch of {results[0]['batch']} test "
        f"images, medians of {results[0]['repeats']} alternating rounds. The twin is the compiled SNN with every "
        "neuron op swapped for Relu (Max for binary signGD neurons) of its current (benchmarks/floor.py): "
        "it keeps the time-folded layers, layouts, pooling, encoder and decoder, so no neuron body can make "
        "the SNN faster than it. Ratios are to T x ANN time; the last column is spikingjelly's time over the "
        "twin's, the largest speed-up over spikingjelly reachable with free neurons.",
        "",
        "| model (neurons, spikes) | T | T x ANN (ms) | SNN (ms) | SNN / (T x ANN) | twin (ms) | twin / (T x ANN) "
        "| spikingjelly (ms) | spikingjelly / SNN | spikingjelly / twin |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for result in results:
        label = f"{result['model']} ({result['neuron']}, {result.get('spikes', 'default')})"
        for t, row in result["per_T"].items():
            base = int(t) * result["ann_seconds"]
            jelly = row.get("spikingjelly")
            lines.append(
                f"| {label} | {t} | {1e3 * base:.1f} | {1e3 * row['snn']:.1f} | {row['snn'] / base:.2f} "
                f"| {1e3 * row['twin']:.1f} | {row['twin'] / base:.2f} | "
                + (
                    f"{1e3 * jelly:.1f} | {jelly / row['snn']:.2f} | {jelly / row['twin']:.2f} |"
                    if jelly
                    else "— | — | — |"
                )
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks floor", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("models", nargs="+", help="reference model names, e.g. fashion-cnn fashion-convnext")
    parser.add_argument("--timesteps", type=int, nargs="+", default=[32])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--spikingjelly",
        nargs="*",
        default=[],
        metavar="MODEL",
        help="models (among MODELS) to also time with spikingjelly's ann2snn",
    )
    parser.add_argument("--spikes", choices=SPIKE_KINDS, default=None, help="the SNN's --spikes (default: compile's)")
    parser.add_argument(
        "--key",
        default=KEY,
        help=f"the JSON file's and BENCHMARKS.md section's name (default {KEY}; name another "
        "to keep a second batch size beside it)",
    )
    add_output_arguments(parser)
    args = parser.parse_args(argv)
    strangers = sorted(set(args.spikingjelly) - set(args.models))
    if strangers:
        print(
            f"python -m benchmarks floor: error: --spikingjelly names {', '.join(strangers)}, not among the models "
            f"timed; list them as models too",
            file=sys.stderr,
        )
        return 2
    try:
        results = [
            measure_floor(
                name,
                tuple(args.timesteps),
                args.batch_size,
                args.repeats,
                args.cache_dir,
                name in args.spikingjelly,
                args.spikes,
            )
            for name in args.models
        ]
    except SnnError as exc:
        print(f"python -m benchmarks floor: error: {exc}", file=sys.stderr)
        return 2
    command = "python -m benchmarks floor " + " ".join(sys.argv[1:] if argv is None else argv)
    publish(markdown_section(results, command), results, args.key, args.out, args.json_dir)
    return 0
