"""`python -m onnx_snn.bench_memory MODEL`: a large run under a memory budget, into BENCHMARKS.md.

Compiles the reference model, runs one batch for T steps with `Session(max_memory=...)` in a fresh
process (so that its peak resident memory is the run's own: interpreter, onnxruntime, model and
data included), then runs the same inputs in small batches without a budget here and checks that
every per-step output is bit-for-bit the same.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .api import compile_model
from .bench import _machine, update_benchmarks_file
from .errors import SnnError
from .modelio import write_text_atomic
from .options import CompileOptions
from .peak_memory import peak_rss
from onnx_snn.runtime import Session
from onnx_snn.runtime.memory import bytes_per_sample_step, parse_size, plan_chunks
from onnx_snn.runtime.providers import CPU


def _budgeted_run(model: str, inputs: str, timesteps: int, budget: int, out: str) -> None:
    """In a child process: the budgeted run; writes per_step and the measurements beside `out`."""
    x = np.load(inputs)
    session = Session(model, providers=[CPU], max_memory=budget)
    with peak_rss() as memory:
        start = time.perf_counter()
        result = session.run(x, timesteps)
        seconds = time.perf_counter() - start
    np.save(out, result.per_step)
    Path(out).with_suffix(".json").write_text(json.dumps({"seconds": seconds, "peak_rss": memory.peak,
                                                          "rss_before": memory.before, "exact": memory.exact}))


def run_memory_benchmark(name: str, timesteps: int, batch: int, budget: int, reference_batch: int,
                         cache_dir: str | None) -> dict:
    """The budgeted run's peak RSS and time, its chunk plan, and its equality with small batches."""
    from onnx_snn.models.zoo import get_reference

    reference = get_reference(name, cache_dir=cache_dir)
    x = reference.load_test()[0][:batch]
    with tempfile.TemporaryDirectory() as tmp:
        snn_path = Path(tmp) / f"{name}.snn.onnx"
        compiled = compile_model(reference.onnx_path, snn_path, CompileOptions(timesteps=timesteps),
                                 calibration=reference.load_calibration())
        inputs, out = Path(tmp) / "x.npy", Path(tmp) / "per_step.npy"
        np.save(inputs, x)
        child = multiprocessing.get_context("spawn").Process(
            target=_budgeted_run, args=(str(snn_path), str(inputs), timesteps, budget, str(out)))
        child.start()
        child.join()
        if child.exitcode != 0:
            raise SnnError(f"the budgeted run failed in its process (exit code {child.exitcode})")
        measured = json.loads(out.with_suffix(".json").read_text())
        budgeted = np.load(out)
        unit = bytes_per_sample_step(compiled.model)
        small = Session(snn_path, providers=[CPU])
        reference_steps = np.concatenate([small.run(x[i:i + reference_batch], timesteps).per_step
                                          for i in range(0, batch, reference_batch)], axis=1)
    return {"model": name, "timesteps": timesteps, "batch": batch, "budget": budget, "machine": _machine(),
            "bytes_per_sample_step": unit, "chunks": list(plan_chunks(batch, timesteps, budget, unit)),
            "seconds": measured["seconds"], "peak_rss": measured["peak_rss"], "rss_before": measured["rss_before"],
            "peak_exact": measured["exact"], "reference_batch": reference_batch,
            "bit_identical": bool(np.array_equal(budgeted, reference_steps)),
            "max_abs_difference": float(np.abs(budgeted - reference_steps).max())}


def markdown_section(result: dict) -> str:
    """The BENCHMARKS.md section of one memory result."""
    gb = 1e9
    batch_chunk, time_chunk = result["chunks"]
    return "\n".join([
        f"## {result['model']}: T = {result['timesteps']}, batch {result['batch']} under a "
        f"{result['budget'] / gb:g} GB budget",
        "",
        f"Measured with `python -m onnx_snn.bench_memory {result['model']} --timesteps {result['timesteps']} "
        f"--batch {result['batch']} --max-memory {result['budget'] / gb:g}GB` (CPU: {result['machine']}).",
        "",
        "| bound per sample-step | chunks (batch × steps) | peak RSS of the process | RSS before the run | time | "
        f"equal to batches of {result['reference_batch']} without a budget |",
        "|---|---|---|---|---|---|",
        f"| {result['bytes_per_sample_step'] / 1e3:.1f} kB | {batch_chunk} × {time_chunk} | "
        f"{result['peak_rss'] / gb:.2f} GB | {result['rss_before'] / gb:.2f} GB | {result['seconds']:.1f} s | "
        f"{'bit for bit' if result['bit_identical'] else 'max abs difference %.3g' % result['max_abs_difference']} |",
        "",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m onnx_snn.bench_memory", description=__doc__)
    parser.add_argument("model", help="reference model name, e.g. fashion-resnet")
    parser.add_argument("--timesteps", type=int, default=256)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--max-memory", default="2GB", help="the budget, e.g. 2GB")
    parser.add_argument("--reference-batch", type=int, default=16, help="batch of the unbudgeted runs compared")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--out", default="BENCHMARKS.md")
    parser.add_argument("--json", dest="json_dir", default="benchmarks")
    args = parser.parse_args(argv)
    try:
        result = run_memory_benchmark(args.model, args.timesteps, args.batch, parse_size(args.max_memory),
                                      args.reference_batch, args.cache_dir)
    except SnnError as exc:
        print(f"onnx-snn bench_memory: error: {exc}", file=sys.stderr)
        return 2
    section = markdown_section(result)
    print(section)
    key = f"{args.model}-memory-T{args.timesteps}-b{args.batch}"
    update_benchmarks_file(Path(args.out), key, section)
    Path(args.json_dir).mkdir(parents=True, exist_ok=True)
    write_text_atomic(Path(args.json_dir) / f"{key}.json", json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
