"""`python -m benchmarks zoo MODEL`: accuracy vs T and SNN time vs T x ANN time, into BENCHMARKS.md.

Trains the reference model on first use (or reuses the cached copy), compiles it, evaluates it
on the whole test set at every t = 1..max(T), and times the SNN against the ANN on onnxruntime
in the same process, alternating runs so that machine noise hits both alike.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import statistics
import sys
import tempfile
import time
from dataclasses import fields
from pathlib import Path

import numpy as np
import onnxruntime as ort

from benchmarks.peak_memory import isolated_peak
from benchmarks.spikingjelly_ref import prepare_run as prepare_spikingjelly_run
from benchmarks.spikingjelly_ref import spikingjelly_benchmark
from benchmarks.timing import time_call
from benchmarks.ttfs import run_ttfs_benchmark, ttfs_markdown_section
from onnx_snn import __version__
from onnx_snn.api import compile_model
from onnx_snn.errors import SnnError
from onnx_snn.models.zoo import get_reference, load_torch_model
from onnx_snn.options import RESET_MODES, SCHEDULES, SPIKE_KINDS, CompileOptions
from onnx_snn.outputs import write_text_atomic
from onnx_snn.providers import CPU, make_session
from onnx_snn.runtime import Session

ACCURACY_STEPS = (1, 2, 4, 8, 16, 32, 64, 128)
TIMED_STEPS = (8, 32, 128)


#: ANN calls per round: untimed, then timed. A run of the SNN leaves the caches and the allocator
#: cold, and the ANN's next calls take up to twice its steady-state time; the warm-up keeps that
#: out of the baseline, so the ratio compares the SNN with the ANN as it runs on its own.
ANN_WARMUP, ANN_TIMED = 5, 10


def timing(snn: Session, ann: ort.InferenceSession, batch: np.ndarray, steps: tuple[int, ...], repeats: int) -> dict:
    """Median SNN time at each T (and its range over the rounds) and steady-state ANN time on the
    same batch, in alternating rounds so that machine noise hits both alike."""
    feed = {ann.get_inputs()[0].name: batch}
    ann_times: list[float] = []
    snn_times: dict[int, list[float]] = {t: [] for t in steps}
    for _ in range(repeats):
        ann_times += time_call(lambda: ann.run(None, feed), ANN_TIMED, warmup=ANN_WARMUP)
        for t in steps:
            snn_times[t] += time_call(lambda: snn.run(batch, t), 1)
    ann_median = statistics.median(ann_times)
    rows = {}
    for t in steps:
        median = statistics.median(snn_times[t])
        rows[t] = {
            "snn_seconds": median,
            "snn_range_seconds": [min(snn_times[t]), max(snn_times[t])],
            "t_x_ann_seconds": t * ann_median,
            "ratio": median / (t * ann_median),
        }
    return {"batch": len(batch), "ann_seconds": ann_median, "per_T": rows}


def prepare_snn_run(model: str, batch_path: str, timesteps: int):
    """For peak_memory.isolated_peak: the compiled SNN loaded, and a call that runs the batch."""
    session, batch = Session(model, providers=[CPU]), np.load(batch_path)
    return lambda: session.run(batch, timesteps)


def prepare_ann_run(model: str, batch_path: str):
    """For peak_memory.isolated_peak: the ANN loaded, and a call that runs the batch."""
    session, batch = make_session(model, [CPU]), np.load(batch_path)
    return lambda: session.run(None, {session.get_inputs()[0].name: batch})


def run_benchmark(
    name: str,
    timesteps: int,
    norm: str,
    per_channel: bool | None,
    batch_size: int,
    repeats: int,
    cache_dir: str | None,
    neuron: str = "auto",
    exporter: str = "legacy",
    spikingjelly_samples: int = 0,
    reset: str = "soft",
    spikes: str = CompileOptions.spikes,
    schedule: str | None = None,
    rate_range: float | None = None,
) -> dict:
    """Accuracy at every T and timing; with `spikingjelly_samples` > 0 also spikingjelly's converter
    on the same PyTorch model (its accuracy on that many test images, its time on the same batch)."""

    reference = get_reference(name, cache_dir=cache_dir, exporter=exporter)
    x_test, y_test = reference.load_test()
    options = CompileOptions(
        timesteps=timesteps,
        norm=norm,
        per_channel=per_channel,
        neuron=neuron,
        reset=reset,
        spikes=spikes,
        rate_range=rate_range,
        **({"schedule": schedule} if schedule is not None else {}),
    )
    with tempfile.TemporaryDirectory() as tmp:
        snn_path = Path(tmp) / f"{name}.snn.onnx"
        start = time.perf_counter()
        compiled = compile_model(reference.onnx_path, snn_path, options, calibration=reference.load_calibration())
        compile_seconds = time.perf_counter() - start
        snn = Session(snn_path, providers=[CPU])
        report = snn.evaluate(x_test, y_test, timesteps=timesteps, ann=reference.onnx_path, batch_size=batch_size)
        ann = make_session(str(reference.onnx_path), [CPU])
        steps = tuple(t for t in TIMED_STEPS if t <= timesteps)
        speed = timing(snn, ann, x_test[:batch_size], steps, repeats)
        batch_path = str(Path(tmp) / "batch.npy")
        np.save(batch_path, x_test[:batch_size])
        for t in steps:  # each in a fresh process: its own peak, not the evaluation's
            speed["per_T"][t].update(isolated_peak(prepare_snn_run, str(snn_path), batch_path, t))
        speed["ann"] = isolated_peak(prepare_ann_run, str(reference.onnx_path), batch_path)
        baseline = None
        if spikingjelly_samples:
            baseline = spikingjelly_benchmark(
                load_torch_model(reference),
                reference.load_calibration(),
                x_test[:spikingjelly_samples],
                y_test[:spikingjelly_samples],
                steps,
                batch_size,
                repeats,
            )
            baseline["memory"] = {
                t: isolated_peak(prepare_spikingjelly_run, name, cache_dir, batch_path, t) for t in steps
            }
    return {
        "spikingjelly": baseline,
        "model": name,
        "exporter": exporter,
        "neuron": compiled.metadata["neuron"],
        "onnx_snn": __version__,
        "onnxruntime": ort.__version__,
        "machine": _machine(),
        "options": options.as_metadata(),
        "test_samples": report.samples,
        "compile_seconds": compile_seconds,
        "ann_accuracy": report.ann_accuracy,
        "accuracy": report.to_json()["accuracy"],
        "agreement": report.to_json()["agreement"],
        "timing": speed,
    }


def _machine() -> str:
    import os

    return (
        f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}"
    )


def _neurons(result: dict) -> str:
    opts = result["options"]
    known = {f.name for f in fields(CompileOptions)}
    options = CompileOptions(**{k: v for k, v in opts.items() if k in known})
    if result["neuron"] == "signgd":
        return (
            f"signGD neurons, {_signgd_spikes(opts)} spikes, {options.signgd_schedule} η0 {options.signgd_eta0:g} "
            f"γ {opts['gamma']}, codec {opts['codec']}, range {opts['signgd_range']}, norm {opts['norm']}"
        )
    scales = ", per channel" if options.channel_scales("if") else ""
    rate = options.if_rate_range if "rate_range" in opts else 1.0  # a result from before --rate-range: 1
    return (
        f"IF neurons, {opts.get('spikes', 'binary')} spikes, norm {opts['norm']}, rate range {rate:g}{scales}, "
        f"reset {opts['reset']}"
    )


def _signgd_spikes(opts: dict) -> str:
    """The signGD spike kind of a result's options. Before 2026-12-07 signGD neurons sent one bit a
    step whatever --spikes said, and the options recorded the schedule (unset since, by default)."""
    return "binary" if opts.get("schedule") is not None and opts.get("eta0") is not None else opts["spikes"]


def _command(result: dict) -> str:
    """The `python -m benchmarks zoo` command line that reproduces `result`."""
    opts, exporter, jelly = result["options"], result.get("exporter", "legacy"), result.get("spikingjelly")
    flags = [f"--norm {opts['norm']}"]
    defaults = CompileOptions()
    if result["neuron"] == "if":  # a result from before --spikes had binary spikes
        flags += {True: ["--per-channel"], False: ["--no-per-channel"], None: []}[opts["per_channel"]]
        spikes = opts.get("spikes", "binary")
        flags += [] if spikes == defaults.spikes else [f"--spikes {spikes}"]
        flags += [] if opts.get("rate_range") is None else [f"--rate-range {opts['rate_range']:g}"]
    if result["neuron"] == "signgd":
        spikes = _signgd_spikes(opts)
        flags += [] if spikes == defaults.spikes else [f"--spikes {spikes}"]
        flags += [] if opts["schedule"] is None else [f"--schedule {opts['schedule']}"]
    flags += [] if opts.get("reset", "soft") == "soft" else [f"--reset {opts['reset']}"]
    flags += [f"--neuron {result['neuron']}"]  # what auto picked may change with the defaults
    flags += [] if exporter == "legacy" else [f"--exporter {exporter}"]
    flags += [f"--spikingjelly {jelly['test_samples']}"] if jelly else []
    return f"python -m benchmarks zoo {result['model']} {' '.join(flags)}"


def markdown_section(result: dict) -> str:
    """The BENCHMARKS.md section of one result."""
    ann = 100 * result["ann_accuracy"]
    steps = [t for t in ACCURACY_STEPS if t <= len(result["accuracy"])]
    exporter = result.get("exporter", "legacy")
    lines = [
        f"## {result['model']} ({exporter} export): {_neurons(result)}",
        "",
        f"Measured with `{_command(result)}` (onnx-snn {result['onnx_snn']}, onnxruntime "
        f"{result['onnxruntime']}, CPU: {result['machine']}), on {result['test_samples']} test images. "
        f"ANN accuracy {ann:.2f}%.",
        "",
        "| T | " + " | ".join(str(t) for t in steps) + " |",
        "|---|" + "---|" * len(steps),
        "| SNN accuracy (%) | " + " | ".join(f"{100 * result['accuracy'][t - 1]:.2f}" for t in steps) + " |",
        "| ANN − SNN (points) | " + " | ".join(f"{ann - 100 * result['accuracy'][t - 1]:+.2f}" for t in steps) + " |",
        "| agreement with ANN (%) | " + " | ".join(f"{100 * result['agreement'][t - 1]:.2f}" for t in steps) + " |",
        "",
        f"Time on one batch of {result['timing']['batch']}, medians (range over the rounds); ANN on onnxruntime "
        f"{1e3 * result['timing']['ann_seconds']:.2f} ms:",
        "",
        "| T | SNN (ms) | T x ANN (ms) | SNN / (T x ANN) | SNN peak RSS (MB) | growth during the run (MB) |",
        "|---|---|---|---|---|---|",
    ]
    for t, row in result["timing"]["per_T"].items():
        lines.append(
            f"| {t} | {_ms(row['snn_seconds'], row.get('snn_range_seconds'))} | {1e3 * row['t_x_ann_seconds']:.1f} | "
            f"{row['ratio']:.2f} | {_mb(row.get('peak_rss'))} | {_mb(row.get('rss_growth'))} |"
        )
    if "ann" in result["timing"]:
        ann_memory = result["timing"]["ann"]
        lines += [
            "",
            f"ANN peak RSS {_mb(ann_memory['peak_rss'])} MB, growth during one call "
            f"{_mb(ann_memory['rss_growth'])} MB. Each peak RSS is that of a fresh process that loads one "
            "engine and runs the batch once (interpreter and libraries included); the growth is the run's "
            "own working memory above the loaded process.",
        ]
    if result.get("spikingjelly"):
        lines += ["", *_spikingjelly_lines(result)]
    lines += [
        "",
        f"<details><summary>Every T = 1..{len(result['accuracy'])}</summary>",
        "",
        "| T | SNN accuracy (%) | agreement with ANN (%) |",
        "|---|---|---|",
    ]
    lines += [
        f"| {t} | {100 * a:.2f} | {100 * g:.2f} |"
        for t, (a, g) in enumerate(zip(result["accuracy"], result["agreement"]), start=1)
    ]
    lines += ["", "</details>"]
    return "\n".join(lines) + "\n"


def _spikingjelly_lines(result: dict) -> list[str]:
    """The comparison with spikingjelly: time, throughput and accuracy at each timed T."""
    jelly, batch = result["spikingjelly"], result["timing"]["batch"]
    lines = [
        f"spikingjelly {jelly['version']} ann2snn ({jelly['mode']} mode, single-step, {jelly['threads']} torch "
        f"threads) on the same PyTorch model and batch; its accuracy on the first {jelly['test_samples']} test "
        "images:",
        "",
        "| T | ours (ms) | spikingjelly (ms) | ours / spikingjelly speed-up (worst–best pair of rounds) | "
        "ours (samples·T/s) | spikingjelly (samples·T/s) | ours: peak RSS / growth (MB) | "
        "spikingjelly: peak RSS / growth (MB) | spikingjelly accuracy (%) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for t, row in result["timing"]["per_T"].items():
        theirs, ours = jelly["seconds"][t], row["snn_seconds"]
        their_range, our_range = jelly.get("seconds_range", {}).get(t), row.get("snn_range_seconds")
        speed_up = f"{theirs / ours:.2f}"
        if their_range and our_range:
            speed_up += f" ({their_range[0] / our_range[1]:.2f}–{their_range[1] / our_range[0]:.2f})"
        lines.append(
            f"| {t} | {_ms(ours, our_range)} | {_ms(theirs, their_range)} | {speed_up} | "
            f"{batch * int(t) / row['snn_seconds']:.0f} | {batch * int(t) / theirs:.0f} | "
            f"{_memory_pair(row)} | {_memory_pair(jelly.get('memory', {}).get(t, {}))} | "
            f"{100 * jelly['accuracy'][t]:.2f} |"
        )
    return lines


def _ms(seconds: float, spread: list[float] | None) -> str:
    """A median time in ms, with its range over the rounds where one was measured."""
    text = f"{1e3 * seconds:.1f}"
    return text if not spread else f"{text} ({1e3 * spread[0]:.0f}–{1e3 * spread[1]:.0f})"


def _mb(value: int | None) -> str:
    return "–" if value is None else f"{value / 1e6:.0f}"


def _memory_pair(row: dict) -> str:
    return f"{_mb(row.get('peak_rss'))} / {_mb(row.get('rss_growth'))}"


def update_benchmarks_file(path: Path, key: str, section: str) -> None:
    """Replace (or append) the section between this key's markers in BENCHMARKS.md."""
    begin, end = f"<!-- bench:{key}:begin -->", f"<!-- bench:{key}:end -->"
    text = (
        path.read_text()
        if path.exists()
        else "# Benchmarks\n\nEvery number here was measured by the command shown with it.\n"
    )
    block = f"{begin}\n{section}{end}"
    pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip("\n") + f"\n\n{block}\n"
    write_text_atomic(path, text)


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options every benchmark command takes last: --cache-dir (the reference models'
    cache), --out (the markdown file to update) and --json (the folder of the JSON results)."""
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--out", default="BENCHMARKS.md", help="markdown file to update")
    parser.add_argument("--json", dest="json_dir", default="benchmarks", help="folder for the JSON results")


def publish(section: str, result: object, key: str, out: str, json_dir: str) -> None:
    """Print `section`, put it under `key` in the markdown file `out` (update_benchmarks_file), and
    write `result` as JSON to `json_dir`/`key`.json, creating the folder if it is missing."""
    print(section)
    update_benchmarks_file(Path(out), key, section)
    Path(json_dir).mkdir(parents=True, exist_ok=True)
    write_text_atomic(Path(json_dir) / f"{key}.json", json.dumps(result, indent=2))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks zoo", description=__doc__)
    parser.add_argument("model", help="reference model name, e.g. fashion-cnn, fashion-resnet, digits-cnn")
    parser.add_argument("--timesteps", type=int, default=128)
    parser.add_argument("--norm", default="99.9")
    parser.add_argument("--per-channel", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--spikes", default=CompileOptions.spikes, choices=SPIKE_KINDS, help="IF spikes")
    parser.add_argument("--rate-range", type=float, default=None, help="IF spikes a step at the statistic")
    parser.add_argument("--schedule", default=None, choices=SCHEDULES, help="signGD step sizes (default: compile's)")
    parser.add_argument("--reset", default=CompileOptions.reset, choices=RESET_MODES, help="IF membrane reset")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--neuron", default="auto", choices=("auto", "if", "signgd", "ttfs"))
    parser.add_argument("--ttfs-model", default="b1", choices=("b1", "a"))
    parser.add_argument("--exporter", default="legacy", choices=("legacy", "dynamo"))
    parser.add_argument(
        "--spikingjelly",
        type=int,
        default=0,
        metavar="N",
        help="also run spikingjelly's ann2snn on the same PyTorch model, its accuracy on N test images",
    )
    add_output_arguments(parser)
    args = parser.parse_args(argv)
    try:
        if args.neuron == "ttfs":
            result = run_ttfs_benchmark(
                args.model, args.ttfs_model, args.batch_size, args.repeats, args.cache_dir, args.exporter
            )
        else:
            result = run_benchmark(
                args.model,
                args.timesteps,
                args.norm,
                args.per_channel,
                args.batch_size,
                args.repeats,
                args.cache_dir,
                args.neuron,
                args.exporter,
                args.spikingjelly,
                args.reset,
                args.spikes,
                args.schedule,
                args.rate_range,
            )
    except SnnError as exc:
        print(f"onnx-snn bench: error: {exc}", file=sys.stderr)
        return 2
    if args.neuron == "ttfs":
        key = f"{args.model}-ttfs-{args.ttfs_model}{'' if args.exporter == 'legacy' else '-' + args.exporter}"
        section = ttfs_markdown_section(result, _machine())
    else:
        key = (
            f"{args.model}-{args.norm}{'-pc' if args.per_channel else ''}{'-hard' if args.reset == 'hard' else ''}"
            f"{'' if args.reset == 'hard' else '-' + args.spikes}"
            f"{'' if args.rate_range is None else f'-rr{args.rate_range:g}'}"
            f"{'' if args.neuron == 'auto' else '-' + args.neuron}"
            f"{'' if args.exporter == 'legacy' else '-' + args.exporter}"
            f"{'' if args.batch_size == 256 else f'-b{args.batch_size}'}"
        )
        section = markdown_section(result)
    publish(section, result, key, args.out, args.json_dir)
    return 0
