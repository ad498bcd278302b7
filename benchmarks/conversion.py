"""`python -m benchmarks conversion`: rate conversion on nets the project did not tune for (issue 16).

Per reference model (onnx_snn.models.zoo, Fashion-MNIST, the first `--samples` test images): the
ANN's accuracy, and the gap ANN − SNN in points at T = 8..128 for every configuration in
CONFIGURATIONS (compile options that differ from the defaults; "default" is CompileOptions() as
`onnx-snn compile` runs it), and for spikingjelly 2.0's ann2snn in its 99.9% mode on the same
weights and calibration images when it is installed. A configuration a model cannot compile
under (an op IF neurons do not convert) is reported as such. spikingjelly converts nn.ReLU only:
a MaxPool2d stays in its SNN as the analog op (noted in its row), a ReLU6 net is refused.
Each model's rows are merged into the JSON (by model and configuration, each row with the command
that measured it) as soon as they are measured. Results go to
benchmarks/conversion.json and the `conversion` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

from benchmarks.spikingjelly_ref import MODE, accuracy_per_step, convert, spikingjelly_available
from benchmarks.zoo import _machine, update_benchmarks_file
from onnx_snn.api import compile_model
from onnx_snn.errors import SnnError
from onnx_snn.models.zoo import get_reference, load_torch_model
from onnx_snn.options import CompileOptions
from onnx_snn.outputs import write_text_atomic
from onnx_snn.runtime import Session

KEY = "conversion"
STEPS = (8, 16, 32, 64, 128)
#: label -> the options that differ from the defaults
CONFIGURATIONS: dict[str, dict] = {
    "default": {},
    "binary spikes, per layer (the default before issue 16)": {
        "neuron": "if",
        "spikes": "binary",
        "per_channel": False,
    },
    "binary spikes, per channel": {"neuron": "if", "spikes": "binary", "per_channel": True},
    "binary spikes, per channel, v_init 0": {"neuron": "if", "spikes": "binary", "per_channel": True, "v_init": 0.0},
    "signed spikes, per layer": {"neuron": "if", "per_channel": False},
    "signed spikes, per channel": {"neuron": "if", "spikes": "signed", "per_channel": True},
    "burst spikes, per channel, rate range 1 (the default before 2026-12-06)": {
        "neuron": "if",
        "spikes": "burst",
        "per_channel": True,
        "rate_range": 1.0,
    },
    "signGD neurons": {"neuron": "signgd"},
    "int8 synapses": {"spikes": "signed", "int8_synapses": True},
}
#: the nets of issue 16 first, then the earlier IF references
MODELS = (
    "fashion-stem-resnet",
    "fashion-mobilenetv2",
    "fashion32-resnet18",
    "fashion-vgg",
    "fashion-cnn",
    "fashion-resnet",
)
BATCH = 256


def measure(name: str, configurations: dict[str, dict], samples: int, spikingjelly: bool) -> dict:
    """One model's ANN accuracy and, per configuration (and spikingjelly), accuracy (%) at STEPS."""
    reference = get_reference(name)
    x_test, y_test = (a[:samples] for a in reference.load_test())
    calibration = reference.load_calibration()
    rows, ann_accuracy = {}, None
    for label, changes in configurations.items():
        start = time.perf_counter()
        try:
            compiled = compile_model(reference.onnx_path, None, CompileOptions(**changes), calibration=calibration)
        except SnnError as error:
            rows[label] = {"refused": str(error).splitlines()[0]}
            continue
        report = Session(compiled.model).evaluate(x_test, y_test, max(STEPS), ann=reference.onnx_path, progress=False)
        ann_accuracy = 100 * float(report.ann_accuracy)
        rows[label] = {
            "neuron": compiled.metadata["neuron"],
            "accuracy": {str(t): 100 * float(report.accuracy[t - 1]) for t in STEPS},
            "seconds": time.perf_counter() - start,
        }
        print(name, label, rows[label]["accuracy"], flush=True)
    if spikingjelly and spikingjelly_available():
        torch_model = load_torch_model(reference)
        analog = sorted({type(m).__name__ for m in torch_model.modules() if type(m).__name__ == "MaxPool2d"})
        label = f"spikingjelly ann2snn {MODE}" + (f" ({', '.join(analog)} left as is)" if analog else "")
        try:
            snn = convert(torch_model, calibration, BATCH)
        except ValueError as error:  # e.g. "... does not support module node '2' of type ReLU6"
            rows[label] = {"refused": str(error).splitlines()[0]}
        else:
            accuracy = accuracy_per_step(snn, x_test, y_test, max(STEPS), BATCH)
            rows[label] = {"accuracy": {str(t): 100 * float(accuracy[t - 1]) for t in STEPS}}
    return {"model": name, "ann_accuracy": ann_accuracy, "test_samples": len(y_test), "rows": rows}


TITLE = "Conversion on nets we did not tune for (issue 16)"


def section(results: list[dict], title: str = TITLE) -> str:
    """The BENCHMARKS.md section `title`: per model, ANN − SNN in points at each T, per configuration."""
    header = "| model (ANN %) | configuration | neuron | " + " | ".join(f"T={t}" for t in STEPS) + " |"
    lines = [
        f"## {title}: {results[0]['test_samples']} test images",
        "",
        f"Measured by `python -m benchmarks conversion` ({_machine()}), each model's command below the",
        "table. ANN accuracy minus SNN accuracy in points (lower is better; negative: the SNN is ahead)",
        "on the first test images of Fashion-MNIST, the same weights and calibration images for every",
        "row; spikingjelly 2.0 converts the PyTorch model itself.",
        "",
        header,
        "|" + "---|" * (3 + len(STEPS)),
    ]
    for result in results:
        ann = result["ann_accuracy"]
        model = f"{result['model']} ({ann:.2f}, {result['test_samples']} images)"
        for label, row in result["rows"].items():
            if "refused" in row:
                lines.append(f"| {model} | {label} | refused | " + " | ".join("—" for _ in STEPS) + " |")
                continue
            gaps = " | ".join(f"{ann - row['accuracy'][str(t)]:+.2f}" for t in STEPS)
            lines.append(f"| {model} | {label} | {row.get('neuron', 'IF')} | {gaps} |")
    lines += [""]
    for result in results:
        commands = dict.fromkeys(row.get("command", result.get("command")) for row in result["rows"].values())
        lines += [f"- {result['model']}: " + "; ".join(f"`{c}`" for c in commands if c)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks conversion", description=__doc__)
    parser.add_argument("--models", nargs="*", default=list(MODELS))
    parser.add_argument("--configurations", nargs="*", default=list(CONFIGURATIONS), choices=list(CONFIGURATIONS))
    parser.add_argument("--samples", type=int, default=10000, help="test images")
    parser.add_argument("--key", default=KEY, help="the JSON file's and BENCHMARKS.md section's name")
    parser.add_argument("--title", default=TITLE, help="the BENCHMARKS.md section's heading")
    parser.add_argument("--no-spikingjelly", action="store_true")
    parser.add_argument("--out", default="BENCHMARKS.md")
    parser.add_argument("--json", dest="json_dir", default="benchmarks")
    args = parser.parse_args(argv)
    chosen = {label: CONFIGURATIONS[label] for label in args.configurations}
    command = shlex.join(["python", "-m", "benchmarks", "conversion", *(argv if argv is not None else sys.argv[1:])])
    store = Path(args.json_dir) / f"{args.key}.json"
    for name in args.models:
        result = measure(name, chosen, args.samples, not args.no_spikingjelly)
        for row in result["rows"].values():
            row["command"] = command
        results = merged(json.loads(store.read_text()) if store.exists() else [], result)
        write_text_atomic(store, json.dumps(results, indent=1) + "\n")
        update_benchmarks_file(Path(args.out), args.key, section(results, args.title))
    return 0


def merged(results: list[dict], result: dict) -> list[dict]:
    """`results` with the model of `result` updated: its rows replace the rows of the same
    configurations and keep the others (measured on as many images), and a run of spikingjelly
    alone (no ANN accuracy) keeps the ANN accuracy measured before; in MODELS order."""
    kept = next((r for r in results if r["model"] == result["model"]), None)
    if kept is not None and kept["test_samples"] == result["test_samples"]:
        ann = result["ann_accuracy"] if result["ann_accuracy"] is not None else kept["ann_accuracy"]
        result = {**result, "ann_accuracy": ann, "rows": {**kept["rows"], **result["rows"]}}
    others = [r for r in results if r["model"] != result["model"]]
    return sorted([*others, result], key=lambda r: MODELS.index(r["model"]) if r["model"] in MODELS else 99)
