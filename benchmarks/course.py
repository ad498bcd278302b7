"""`python -m benchmarks course`: the ECE course project's design, measured, into BENCHMARKS.md.

An MLP without biases (784-100-10 on Fashion-MNIST, 64-100-10 on sklearn digits), converted to IF
SNNs with analog and with Poisson input coding, each with max norm and with spikenorm:
- accuracy and ANN agreement at every T = 1..128;
- Poisson accuracy at T = 128 over the maximum input firing rate 0.02..1;
- the same four conversions with crossbar weights (16 levels per sign, ON/OFF ratio 10), before
  and after fine-tuning under the constraint ("apply, retrain, re-apply", models.crossbar_train).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from benchmarks.zoo import _machine, add_output_arguments, publish
from onnx_snn.api import compile_model
from onnx_snn.errors import SnnError
from onnx_snn.models.crossbar_train import finetune_constrained
from onnx_snn.models.export import export_torch
from onnx_snn.models.zoo import get_reference, load_split, load_torch_model
from onnx_snn.options import CompileOptions
from onnx_snn.plots import plot_rate_sweep
from onnx_snn.providers import CPU
from onnx_snn.quantize import quantize_model
from onnx_snn.runtime import Session
from onnx_snn.runtime.ann import AnnRunner

CONFIGS = (("analog", "max"), ("analog", "spikenorm"), ("poisson", "max"), ("poisson", "spikenorm"))
#: with float weights also: reset to zero instead of by subtraction (Han et al. 2020 study the difference)
HARD_RESET_CONFIGS = (("analog", "max"), ("poisson", "max"))
RATES = (0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
SHOWN_STEPS = (1, 2, 4, 8, 16, 32, 64, 128)
LEVELS, ON_OFF = 16, 10.0


def _ann_accuracy(path: Path, x: np.ndarray, y: np.ndarray) -> float:
    return float((AnnRunner(path).run({"x": x}).argmax(axis=1) == y).mean())


def _snn(
    ann: Path,
    calibration: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    steps: int,
    encoding: str,
    norm: str,
    max_rate: float = 1.0,
    levels: int | None = None,
    reset: str = "soft",
) -> dict:
    """Accuracy and agreement with `ann` at every t = 1..steps of one conversion."""
    options = CompileOptions(
        timesteps=steps,
        norm=norm,
        encoding=encoding,
        max_rate=max_rate,
        neuron="if",
        weight_levels=levels,
        on_off_ratio=ON_OFF,
        reset=reset,
        spikes="binary",  # the course's design: 0/1 spikes, soft or hard reset
    )
    compiled = compile_model(ann, None, options, calibration=calibration, show_progress=False)
    report = Session(compiled.model, providers=[CPU]).evaluate(x, y, timesteps=steps, ann=ann, progress=False)
    return {"accuracy": report.accuracy.tolist(), "agreement": report.agreement.tolist()}


def _conversions(ann: Path, calibration, x, y, steps: int, levels: int | None) -> dict:
    """The four conversions of CONFIGS (max rate 1 for Poisson)."""
    return {
        f"{encoding}/{norm}": _snn(ann, calibration, x, y, steps, encoding, norm, levels=levels)
        for encoding, norm in CONFIGS
    }


def _rate_sweep(ann: Path, calibration, x, y, steps: int, levels: int | None) -> dict[str, list[float]]:
    """Poisson accuracy after `steps` at each of RATES, with max norm and with spikenorm."""
    return {
        norm: [
            _snn(ann, calibration, x, y, steps, "poisson", norm, max_rate=rate, levels=levels)["accuracy"][-1]
            for rate in RATES
        ]
        for norm in ("max", "spikenorm")
    }


def run_course_benchmark(
    dataset: str, steps: int, finetune_epochs: int, plot_dir: Path, cache_dir: str | None = None
) -> dict:
    """Every measurement of the module docstring for `dataset` ("fashion" or "digits")."""

    reference = get_reference(f"{dataset}-mlp100", cache_dir=cache_dir)
    x, y = reference.load_test()
    calibration = reference.load_calibration()
    result = {
        "dataset": dataset,
        "model": reference.name,
        "steps": steps,
        "machine": _machine(),
        "test_samples": len(y),
        "ann_accuracy": _ann_accuracy(reference.onnx_path, x, y),
    }
    result["float"] = _conversions(reference.onnx_path, calibration, x, y, steps, None)
    result["float"].update(
        {
            f"{encoding}/{norm}, hard reset": _snn(
                reference.onnx_path, calibration, x, y, steps, encoding, norm, reset="hard"
            )
            for encoding, norm in HARD_RESET_CONFIGS
        }
    )
    result["rate_sweep"] = {"float": _rate_sweep(reference.onnx_path, calibration, x, y, steps, None)}
    with tempfile.TemporaryDirectory() as tmp:
        constrained = Path(tmp) / "constrained.onnx"
        quantize_model(reference.onnx_path, constrained, LEVELS, ON_OFF)
        result["constrained_ann_accuracy"] = _ann_accuracy(constrained, x, y)
        result["constrained"] = _conversions(constrained, calibration, x, y, steps, LEVELS)
        result["rate_sweep"]["constrained"] = _rate_sweep(constrained, calibration, x, y, steps, LEVELS)
        x_train, y_train, _, _ = load_split(dataset)
        net = finetune_constrained(
            load_torch_model(reference), x_train, y_train, LEVELS, ON_OFF, epochs=finetune_epochs
        )
        tuned = export_torch(net, torch.from_numpy(x[:2]), Path(tmp) / "finetuned.onnx", dynamo=False)
        result["finetune_epochs"] = finetune_epochs
        result["finetuned_ann_accuracy"] = _ann_accuracy(tuned, x, y)
        result["finetuned"] = _conversions(tuned, calibration, x, y, steps, LEVELS)
        result["rate_sweep"]["finetuned"] = _rate_sweep(tuned, calibration, x, y, steps, LEVELS)
    plot_dir.mkdir(parents=True, exist_ok=True)
    curves = {
        f"{weights} weights, {norm}": accuracies
        for weights, sweep in result["rate_sweep"].items()
        for norm, accuracies in sweep.items()
    }
    result["rate_plot"] = str(
        plot_rate_sweep(
            RATES, curves, plot_dir / f"course-{dataset}-rate.png", steps, ann_accuracy=result["ann_accuracy"]
        )
    )
    return result


def _curve_rows(conversions: dict, steps: list[int]) -> list[str]:
    return [
        f"| {name} | "
        + " | ".join(f"{100 * c['accuracy'][t - 1]:.2f}" for t in steps)
        + f" | {100 * c['agreement'][-1]:.2f} |"
        for name, c in conversions.items()
    ]


def markdown_section(result: dict) -> str:
    """The BENCHMARKS.md section of one dataset."""
    steps = [t for t in SHOWN_STEPS if t <= result["steps"]]
    head = "| conversion (encoding/norm) | " + " | ".join(f"T={t}" for t in steps) + " | agreement at T (%) |"
    rule = "|---|" + "---|" * (len(steps) + 1)
    t_max = result["steps"]
    lines = [
        f"## Course project design on {result['dataset']}: {result['model']} (no biases), IF neurons",
        "",
        f"Measured with `python -m benchmarks course --dataset {result['dataset']}` (CPU: {result['machine']}), "
        f"on {result['test_samples']} test images. ANN accuracy {100 * result['ann_accuracy']:.2f}%. Poisson: "
        "max rate 1, seed 0, counter-based generator (compiler/ir/poisson.py). Spikenorm: thresholds from the input "
        f"currents under spiking input over T = {t_max}, layer by layer (passes/rate/spikenorm.py). "
        f"Every T = 1..{t_max} "
        f"is in `benchmarks/course-{result['dataset']}.json`.",
        "",
        "With analog input the hidden layer's current is the ANN's pre-activation at every step, so spikenorm "
        "gives the same threshold as max norm in this one-hidden-layer net; they differ under Poisson input.",
        "",
        "Accuracy (%) with float weights (soft reset, by subtraction, unless marked):",
        "",
        head,
        rule,
        *_curve_rows(result["float"], steps),
        "",
        f"Poisson accuracy (%) at T = {t_max} over the maximum input firing rate (spikes per step of an input of 1; "
        f"plot `{Path(result['rate_plot']).name}` in benchmarks/), with float weights and with the crossbar weights "
        "below (constrained: before fine-tuning; finetuned: after):",
        "",
        "| weights | norm | " + " | ".join(str(r) for r in RATES) + " |",
        "|---|---|" + "---|" * len(RATES),
        *(
            f"| {weights} | {norm} | " + " | ".join(f"{100 * a:.2f}" for a in accs) + " |"
            for weights, sweep in result["rate_sweep"].items()
            for norm, accs in sweep.items()
        ),
        "",
        f"Crossbar weights, {LEVELS} levels per sign and ON/OFF ratio {ON_OFF:g} (compile --weight-levels {LEVELS} "
        f"--on-off-ratio {ON_OFF:g}): ANN accuracy {100 * result['constrained_ann_accuracy']:.2f}% before "
        f"fine-tuning, {100 * result['finetuned_ann_accuracy']:.2f}% after {result['finetune_epochs']} epochs of "
        "fine-tuning under the constraint (float ANN "
        f"{100 * result['ann_accuracy']:.2f}%). SNN accuracy (%), before fine-tuning:",
        "",
        head,
        rule,
        *_curve_rows(result["constrained"], steps),
        "",
        "after fine-tuning:",
        "",
        head,
        rule,
        *_curve_rows(result["finetuned"], steps),
        "",
        *_every_step_table(result),
        "",
    ]
    return "\n".join(lines)


def _every_step_table(result: dict) -> list[str]:
    """A collapsed table of the accuracy (%) of every conversion at every T = 1..steps."""
    columns = [
        (weights, name, conversion["accuracy"])
        for weights in ("float", "constrained", "finetuned")
        for name, conversion in result[weights].items()
    ]
    return [
        "<details><summary>Accuracy (%) at every T</summary>",
        "",
        "| T | " + " | ".join(f"{weights}: {name}" for weights, name, _ in columns) + " |",
        "|---|" + "---|" * len(columns),
        *(
            f"| {t} | " + " | ".join(f"{100 * accuracy[t - 1]:.2f}" for _, _, accuracy in columns) + " |"
            for t in range(1, result["steps"] + 1)
        ),
        "",
        "</details>",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks course", description=__doc__)
    parser.add_argument(
        "--dataset",
        choices=("fashion", "digits"),
        action="append",
        help="fashion, digits or both (repeat the flag; default both)",
    )
    parser.add_argument("--timesteps", type=int, default=128)
    parser.add_argument("--finetune-epochs", type=int, default=3)
    add_output_arguments(parser)
    args = parser.parse_args(argv)
    for dataset in args.dataset or ["fashion", "digits"]:
        try:
            result = run_course_benchmark(
                dataset, args.timesteps, args.finetune_epochs, Path(args.json_dir), args.cache_dir
            )
        except SnnError as exc:
            print(f"python -m benchmarks course: error: {exc}", file=sys.stderr)
            return 2
        publish(markdown_section(result), result, f"course-{dataset}", args.out, args.json_dir)
    return 0
