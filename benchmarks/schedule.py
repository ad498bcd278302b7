"""`python -m benchmarks schedule`: signGD spike kinds and step-size schedules side by side (issue 16,
item 3).

Two measures, each with every configuration of SCHEDULES compiled from the same ANN and calibration:

1. the trained signGD zoo (onnx_snn.models.zoo references, Fashion-MNIST, `--samples` test
   images): accuracy at T = 8..128, from one run of the largest T (the schedule does not depend
   on T, so step t of a run of T steps is the run of t steps);
2. deep untrained nets of onnx_snn.models.families (seeded weights, BatchNorm adapted, legacy
   export, as benchmarks.coverage builds them): relative logit error and argmax agreement against
   the ANN on 64 test images at T = 16, 64, 256, 1024.

Results go to benchmarks/schedule.json and the `schedule` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from benchmarks.coverage import CALIBRATION_START, agreement_and_error, export_family
from benchmarks.zoo import _machine, update_benchmarks_file
from onnx_snn.api import compile_model
from onnx_snn.models.families import family_images
from onnx_snn.models.zoo import get_reference
from onnx_snn.options import CompileOptions
from onnx_snn.outputs import write_text_atomic
from onnx_snn.runtime import Session
from onnx_snn.runtime.ann import AnnRunner

KEY = "schedule"
#: label -> the options that differ from the defaults ("default" is CompileOptions() itself)
SCHEDULES: dict[str, dict] = {"binary (the default before 2026-12-07)": {"spikes": "binary"}, "default": {}}
ZOO = ("fashion-maxpool", "fashion-convnext", "fashion-mixer", "fashion-resmlp")
ZOO_T = (8, 16, 32, 64, 128)
FAMILIES = ("resnet18", "densenet", "vgg11_bn", "regnet_y", "shufflenet_v2", "inception_v1", "mlp_mixer")
FAMILY_T = (16, 64, 256, 1024)
FAMILY_SAMPLES = 64
FAMILY_CALIBRATION = 256


def _label(name: str) -> str:
    options = CompileOptions(neuron="signgd", **SCHEDULES[name])
    schedule, eta0 = options.signgd_schedule, options.signgd_eta0
    steps = {
        "inverse": f"{eta0:g}/t",
        "constant": f"{eta0:g}",
        "exponential": f"{eta0:g}·{options.gamma:g}^(t−1)",
        "exp_inverse": f"{eta0:g}·{options.gamma:g}^(t−1), floor {options.tail:g}/t",
    }[schedule]
    return f"{name} ({options.spikes} spikes, {schedule}: {steps})"


def zoo_rows(names: list[str], samples: int) -> list[dict]:
    """Accuracy (%) at ZOO_T per zoo reference and schedule, with the ANN's."""
    rows = []
    for name in names:
        reference = get_reference(name)
        x_test, y_test = reference.load_test()
        x_test, y_test = x_test[:samples], y_test[:samples]
        for schedule, changes in SCHEDULES.items():
            start = time.perf_counter()
            options = CompileOptions(neuron="signgd", **changes)  # the zoo's MaxPool net is IF under auto
            compiled = compile_model(reference.onnx_path, None, options, calibration=reference.load_calibration())
            report = Session(compiled.model).evaluate(
                x_test, y_test, max(ZOO_T), ann=reference.onnx_path, progress=False
            )
            rows.append(
                {
                    "model": name,
                    "schedule": schedule,
                    "ann_accuracy": 100 * float(report.ann_accuracy),
                    "accuracy": {str(t): 100 * float(report.accuracy[t - 1]) for t in ZOO_T},
                    "seconds": time.perf_counter() - start,
                }
            )
            print(name, schedule, rows[-1]["accuracy"], flush=True)
    return rows


def family_rows(names: list[str]) -> list[dict]:
    """Relative logit error and agreement at FAMILY_T per untrained family and schedule."""
    x_test = family_images("test", FAMILY_SAMPLES)
    x_calib = family_images("train", FAMILY_CALIBRATION, start=CALIBRATION_START)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            path = Path(tmp) / f"{name}.onnx"
            export_family(name, "legacy", path)
            ann = AnnRunner(path).run({"x": x_test})
            for schedule, changes in SCHEDULES.items():
                options = CompileOptions(neuron="signgd", **changes)  # ReLU nets are IF under auto
                compiled = compile_model(path, None, options, calibration=x_calib)
                per_step = Session(compiled.model).run(x_test, max(FAMILY_T)).per_step
                rows.append(
                    {
                        "model": name,
                        "schedule": schedule,
                        "neuron": compiled.metadata.get("neuron"),
                        "fidelity": {str(t): agreement_and_error(per_step[t - 1], ann) for t in FAMILY_T},
                    }
                )
                errors = {t: round(f["rel_error"], 4) for t, f in rows[-1]["fidelity"].items()}
                print(name, schedule, errors, flush=True)
    return rows


def markdown_section(zoo: list[dict], families: list[dict], samples: int) -> str:
    """The BENCHMARKS.md section of both measures."""
    lines = [
        "## signGD spike kinds and step sizes: the trained zoo and deep untrained nets",
        "",
        f"Measured with `python -m benchmarks schedule` (CPU: {_machine()}). Configurations: "
        + "; ".join(_label(name) for name in SCHEDULES)
        + f". Trained signGD zoo, accuracy (%) on {samples} Fashion-MNIST test images, same weights "
        "and calibration for every configuration:",
        "",
        "| model | configuration | ANN | " + " | ".join(f"T={t}" for t in ZOO_T) + " |",
        "|---|---|---|" + "---|" * len(ZOO_T),
    ]
    for row in zoo:
        cells = " | ".join(f"{row['accuracy'][str(t)]:.2f}" for t in ZOO_T)
        lines.append(f"| {row['model']} | {row['schedule']} | {row['ann_accuracy']:.2f} | {cells} |")
    lines += [
        "",
        f"Deep untrained nets (benchmarks.coverage's families, legacy export, {FAMILY_SAMPLES} test "
        "images): relative logit error ||snn − ann|| / ||ann|| (argmax agreement):",
        "",
        "| model | neuron | configuration | " + " | ".join(f"T={t}" for t in FAMILY_T) + " |",
        "|---|---|---|" + "---|" * len(FAMILY_T),
    ]
    for row in families:
        cells = " | ".join(
            f"{row['fidelity'][str(t)]['rel_error']:.3f} ({row['fidelity'][str(t)]['agreement']:.2f})" for t in FAMILY_T
        )
        lines.append(f"| {row['model']} | {row['neuron']} | {row['schedule']} | {cells} |")
    return "\n".join(lines + [""])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks schedule", description=__doc__)
    parser.add_argument("--zoo", nargs="*", default=list(ZOO), help="trained signGD references")
    parser.add_argument("--families", nargs="*", default=list(FAMILIES), help="untrained deep nets")
    parser.add_argument("--samples", type=int, default=10000, help="zoo test images")
    parser.add_argument("--out", default="BENCHMARKS.md")
    parser.add_argument("--json", dest="json_dir", default="benchmarks")
    args = parser.parse_args(argv)
    zoo, families = zoo_rows(args.zoo, args.samples), family_rows(args.families)
    Path(args.json_dir).mkdir(parents=True, exist_ok=True)
    result = {"machine": _machine(), "samples": args.samples, "zoo": zoo, "families": families}
    write_text_atomic(Path(args.json_dir) / f"{KEY}.json", json.dumps(result, indent=1))
    update_benchmarks_file(Path(args.out), KEY, markdown_section(zoo, families, args.samples))
    return 0
