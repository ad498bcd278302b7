"""`python -m benchmarks memory MODEL`: a large run under a memory budget, into BENCHMARKS.md.

Compiles the reference model and measures, each in a fresh process (so that its peak resident
memory is the run's own: interpreter, onnxruntime, model and data included), one of

- `Session(max_memory=...).run` of one batch for T steps, checked bit for bit against the same
  inputs run in small batches here (the default);
- with `--evaluate N`, `Session(max_memory=...).evaluate` of N test images with the default batch,
  checked bit for bit (accuracy at every step) against an evaluation in small batches in another
  fresh process;
- with `--calibrate N [N ...]`, the calibrate pass on the first N training images (the passes
  before it run first, outside the measurement), to show that its memory does not grow with N.

Without `--max-memory` the session's default budget applies (runtime.memory.default_budget).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

from benchmarks.peak_memory import isolated_peak, peak_rss
from benchmarks.zoo import _machine, add_output_arguments, publish
from onnx_snn.api import compile_model
from onnx_snn.arrays import calibration_feeds
from onnx_snn.budget import available_memory, default_budget, parse_size
from onnx_snn.errors import SnnError
from onnx_snn.modelio import load_model
from onnx_snn.models.zoo import RECIPES, get_reference, load_split
from onnx_snn.options import CompileOptions
from onnx_snn.passes.base import PassContext
from onnx_snn.passes.canonicalize import node_names
from onnx_snn.passes.common import calibrate
from onnx_snn.pipeline import common_passes, family_passes, resolve_neuron
from onnx_snn.providers import CPU
from onnx_snn.runtime import Session
from onnx_snn.runtime.memory import bytes_per_sample_step

GB = 1e9
#: evaluate's default batch (Session.evaluate)
EVAL_BATCH = 256


def _measured(kind: str, model: str, data: str, timesteps: int, budget: int | None, batch: int, out: str) -> None:
    """In a child process: `kind` "run" (Session.run of all of x) or "evaluate" (Session.evaluate
    of x, y in batches of `batch`) under `budget` (None: the default); writes the result arrays
    to `out` (.npz) and the measurements, budget and chunk plan beside it (.json)."""
    arrays = np.load(data)
    x = arrays["x"]
    session = Session(model, providers=[CPU], max_memory=budget)
    with peak_rss() as memory:
        start = time.perf_counter()
        if kind == "run":
            plan = session.run_plan(len(x), timesteps)
            result = {"per_step": session.run(x, timesteps).per_step}
        else:
            plan = session.evaluation_plan(min(batch, len(x)), timesteps)
            report = session.evaluate(x, arrays["y"], timesteps, batch_size=batch, progress=False)
            result = {"accuracy": report.accuracy}
        seconds = time.perf_counter() - start
    np.savez(out, **result)
    Path(out).with_suffix(".json").write_text(
        json.dumps(
            {
                "seconds": seconds,
                "peak_rss": memory.peak,
                "rss_before": memory.before,
                "exact": memory.exact,
                "budget": session.max_memory,
                "chunks": list(plan),
            }
        )
    )


def _in_fresh_process(*args: object) -> tuple[dict, dict[str, np.ndarray]]:
    """_measured(*args) in a spawned process: (its measurements, its result arrays)."""
    child = multiprocessing.get_context("spawn").Process(target=_measured, args=args)
    child.start()
    child.join()
    if child.exitcode != 0:
        raise SnnError(f"the measured {args[0]} failed in its process (exit code {child.exitcode})")
    out = Path(args[-1])
    with np.load(out) as result:
        return json.loads(out.with_suffix(".json").read_text()), dict(result)


def run_memory_benchmark(
    name: str,
    timesteps: int,
    batch: int,
    budget: int | None,
    reference_batch: int,
    cache_dir: str | None,
    evaluate: int | None = None,
) -> dict:
    """The budgeted run's (or, with `evaluate` samples, evaluation's) peak RSS and time, its chunk
    plan, and its equality with runs in batches of `reference_batch`."""

    reference = get_reference(name, cache_dir=cache_dir)
    samples = batch if evaluate is None else evaluate
    x, y = (a[:samples] for a in reference.load_test())
    with tempfile.TemporaryDirectory() as tmp:
        snn_path = Path(tmp) / f"{name}.snn.onnx"
        compiled = compile_model(
            reference.onnx_path, snn_path, CompileOptions(timesteps=timesteps), calibration=reference.load_calibration()
        )
        data = Path(tmp) / "data.npz"
        np.savez(data, x=x, y=y)
        common = (str(snn_path), str(data), timesteps)
        if evaluate is None:
            measured, got = _in_fresh_process("run", *common, budget, batch, str(Path(tmp) / "run.npz"))
            small = Session(snn_path, providers=[CPU])
            expected = np.concatenate(
                [small.run(x[i : i + reference_batch], timesteps).per_step for i in range(0, samples, reference_batch)],
                axis=1,
            )
            got, reference_run = got["per_step"], {}
        else:
            measured, got = _in_fresh_process("evaluate", *common, budget, EVAL_BATCH, str(Path(tmp) / "eval.npz"))
            reference_run, expected = _in_fresh_process(
                "evaluate", *common, None, reference_batch, str(Path(tmp) / "reference.npz")
            )
            got, expected = got["accuracy"], expected["accuracy"]
    return {
        "model": name,
        "timesteps": timesteps,
        "samples": samples,
        "evaluate": evaluate is not None,
        "batch": batch if evaluate is None else EVAL_BATCH,
        "budget": measured["budget"],
        "budget_given": budget is not None,
        "mem_available": available_memory(),
        "machine": _machine(),
        "bytes_per_sample_step": bytes_per_sample_step(compiled.model),
        "chunks": measured["chunks"],
        "seconds": measured["seconds"],
        "peak_rss": measured["peak_rss"],
        "rss_before": measured["rss_before"],
        "peak_exact": measured["exact"],
        "reference_batch": reference_batch,
        "reference_chunks": reference_run.get("chunks"),
        "reference_peak_rss": reference_run.get("peak_rss"),
        "accuracy_at_T": float(got[-1]) if evaluate is not None else None,
        "bit_identical": bool(np.array_equal(got, expected)),
        "max_abs_difference": float(np.abs(got - expected).max()),
    }


def _calibration(name: str, samples: int, cache_dir: str | None) -> Callable[[], object]:
    """For isolated_peak: the reference `name` compiled up to calibrate on its first `samples`
    training images; the call runs calibrate."""
    import onnx_graphsurgeon as gs

    reference = get_reference(name, cache_dir=cache_dir)
    x = np.ascontiguousarray(load_split(RECIPES[name].dataset)[0][:samples])
    options = CompileOptions()
    ctx = PassContext(
        options=options,
        source=str(reference.onnx_path),
        show_progress=False,
        calibration=calibration_feeds(x, ["x"], options.calib_batch_size),
    )
    graph = gs.import_onnx(load_model(reference.onnx_path))
    node_names.apply(graph, ctx)
    for step in common_passes(options):
        graph = step.run(graph, ctx)
    ctx.state.neuron = resolve_neuron(graph, ctx)
    steps = family_passes(options, ctx.state.neuron)
    for step in steps[: steps.index(calibrate)]:
        graph = step.run(graph, ctx)
    return lambda: calibrate.run(graph, ctx)


def run_calibration_benchmark(name: str, sample_counts: list[int], cache_dir: str | None) -> dict:
    """Peak RSS of the calibrate pass (in a fresh process each) for every number of calibration images."""

    get_reference(name, cache_dir=cache_dir)  # trained here, not in the measured processes
    rows = []
    for samples in sample_counts:
        start = time.perf_counter()
        rows.append(
            {
                "samples": samples,
                **isolated_peak(_calibration, name, samples, cache_dir),
                "seconds": time.perf_counter() - start,
            }
        )
    return {"model": name, "calibration": rows, "budget": default_budget(), "machine": _machine()}


def calibration_section(result: dict) -> str:
    """The BENCHMARKS.md section of a calibration memory result."""
    counts = " ".join(str(row["samples"]) for row in result["calibration"])
    lines = [
        f"## {result['model']}: calibration memory against the number of calibration images",
        "",
        f"Measured with `python -m benchmarks memory {result['model']} --calibrate {counts}` (CPU: "
        f"{result['machine']}; default budget {result['budget'] / GB:.2f} GB): the calibrate pass alone, each "
        "in a fresh process that first loads the images and runs the passes before it.",
        "",
        "| calibration images | peak RSS of the process | growth during calibrate | time (process) |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {row['samples']} | {row['peak_rss'] / GB:.2f} GB | {row['rss_growth'] / GB:.2f} GB | "
        f"{row['seconds']:.0f} s |"
        for row in result["calibration"]
    ]
    return "\n".join(lines + [""])


def _command(result: dict) -> str:
    """The command line that measures `result`."""
    mode = f"--evaluate {result['samples']}" if result["evaluate"] else f"--batch {result['batch']}"
    budget = f" --max-memory {result['budget'] / GB:g}GB" if result["budget_given"] else ""
    return f"python -m benchmarks memory {result['model']} --timesteps {result['timesteps']} {mode}{budget}"


def markdown_section(result: dict) -> str:
    """The BENCHMARKS.md section of one memory result."""
    batch_chunk, time_chunk = result["chunks"]
    budget = (
        f"a {result['budget'] / GB:g} GB budget"
        if result["budget_given"]
        else f"the default budget ({result['budget'] / GB:.2f} GB, half of MemAvailable)"
    )
    what = (
        f"eval of {result['samples']} test images, batch {result['batch']}"
        if result["evaluate"]
        else f"batch {result['batch']}"
    )
    equal = "bit for bit" if result["bit_identical"] else "max abs difference %.3g" % result["max_abs_difference"]
    lines = [
        f"## {result['model']}: T = {result['timesteps']}, {what} under {budget}",
        "",
        f"Measured with `{_command(result)}` (CPU: {result['machine']}).",
        "",
    ]
    if result["evaluate"]:
        ref_batch, ref_time = result["reference_chunks"]
        lines += [
            f"| bound per sample-step | chunks (batch × steps) | peak RSS of the process | RSS before the run | "
            f"time | accuracy at T | accuracy at every t equal to batches of {result['reference_batch']} |",
            "|---|---|---|---|---|---|---|",
            f"| {result['bytes_per_sample_step'] / 1e3:.1f} kB | {batch_chunk} × {time_chunk} | "
            f"{result['peak_rss'] / GB:.2f} GB | {result['rss_before'] / GB:.2f} GB | "
            f"{result['seconds']:.0f} s | "
            f"{100 * result['accuracy_at_T']:.2f}% | {equal} (those: chunks {ref_batch} × {ref_time}, "
            f"peak RSS {result['reference_peak_rss'] / GB:.2f} GB) |",
            "",
        ]
    else:
        lines += [
            "| bound per sample-step | chunks (batch × steps) | peak RSS of the process | RSS before the run | "
            f"time | equal to batches of {result['reference_batch']} under the default budget |",
            "|---|---|---|---|---|---|",
            f"| {result['bytes_per_sample_step'] / 1e3:.1f} kB | {batch_chunk} × {time_chunk} | "
            f"{result['peak_rss'] / GB:.2f} GB | {result['rss_before'] / GB:.2f} GB | "
            f"{result['seconds']:.1f} s | "
            f"{equal} |",
            "",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks memory", description=__doc__)
    parser.add_argument("model", help="reference model name, e.g. fashion-resnet")
    parser.add_argument("--timesteps", type=int, default=256)
    parser.add_argument("--batch", type=int, default=512, help="samples of the one run (without --evaluate)")
    parser.add_argument(
        "--evaluate",
        type=int,
        default=None,
        metavar="N",
        help="measure Session.evaluate of the first N test images instead of one run",
    )
    parser.add_argument(
        "--calibrate",
        type=int,
        nargs="+",
        default=None,
        metavar="N",
        help="measure the calibrate pass on the first N training images instead of a run",
    )
    parser.add_argument("--max-memory", default=None, help="the budget, e.g. 2GB (default: the session's default)")
    parser.add_argument("--reference-batch", type=int, default=16, help="batch of the runs compared")
    add_output_arguments(parser)
    args = parser.parse_args(argv)
    try:
        budget = parse_size(args.max_memory) if args.max_memory is not None else None
        if args.calibrate is not None:
            result = run_calibration_benchmark(args.model, args.calibrate, args.cache_dir)
        else:
            result = run_memory_benchmark(
                args.model,
                args.timesteps,
                args.batch,
                budget,
                args.reference_batch,
                args.cache_dir,
                evaluate=args.evaluate,
            )
    except SnnError as exc:
        print(f"python -m benchmarks memory: error: {exc}", file=sys.stderr)
        return 2
    section = calibration_section(result) if args.calibrate is not None else markdown_section(result)
    if args.calibrate is not None:
        key = f"{args.model}-memory-calibration"
    elif args.evaluate is not None:
        key = f"{args.model}-memory-eval-T{args.timesteps}-n{args.evaluate}"
    else:
        key = f"{args.model}-memory-T{args.timesteps}-b{args.batch}"
    publish(section, result, key, args.out, args.json_dir)
    return 0
