"""The TTFS benchmark row: `python -m benchmarks zoo MODEL --neuron ttfs [--ttfs-model a]`.

Compiles a reference model (torch zoo, or a Keras zoo name starting with "keras-") with
`--neuron ttfs`, evaluates it on the whole test set against the ANN (accuracy, argmax
agreement, max |logit error|, spikes per neuron, synaptic events, t_read) and times the SNN
against the ANN on onnxruntime in the same process, in alternating rounds, both sessions with
thread spinning off (on 2 cores an idle session's spinning threads slow the other one down by up
to 2x, erratically).
"""

from __future__ import annotations

import gc
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from benchmarks.timing import time_call
from onnx_snn import __version__
from onnx_snn.api import compile_model
from onnx_snn.models.keras_zoo import get_keras_reference
from onnx_snn.models.zoo import get_reference
from onnx_snn.options import CompileOptions
from onnx_snn.providers import CPU, make_session
from onnx_snn.runtime import Session

#: calls per round for both models: untimed, then timed (the TTFS SNN costs about one ANN call)
WARMUP, TIMED = 5, 10


def load_reference(name: str, cache_dir: str | None = None, exporter: str = "legacy"):
    """(Reference, exporter name) of a torch zoo model, or of a Keras zoo one ("keras-..." names)."""
    if name.startswith("keras-"):
        return get_keras_reference(name, cache_dir=cache_dir), "tf2onnx"

    return get_reference(name, cache_dir=cache_dir, exporter=exporter), exporter


def paired_timing(snn: ort.InferenceSession, ann: ort.InferenceSession, batch: np.ndarray, repeats: int) -> dict:
    """Median time of one call of each model on `batch`, rounds alternating between them."""
    feeds = [{m.get_inputs()[0].name: batch} for m in (snn, ann)]
    times: list[list[float]] = [[], []]
    for _ in range(repeats):
        for index, (model, feed) in enumerate(zip((snn, ann), feeds)):
            times[index] += time_call(lambda: model.run(None, feed), TIMED, warmup=WARMUP)
    snn_seconds, ann_seconds = (statistics.median(t) for t in times)
    return {
        "batch": len(batch),
        "snn_seconds": snn_seconds,
        "ann_seconds": ann_seconds,
        "ratio": snn_seconds / ann_seconds,
    }


def run_ttfs_benchmark(
    name: str, ttfs_model: str, batch_size: int, repeats: int, cache_dir: str | None, exporter: str = "legacy"
) -> dict:
    reference, exporter = load_reference(name, cache_dir, exporter)
    x_test, y_test = reference.load_test()
    options = CompileOptions(neuron="ttfs", ttfs_model=ttfs_model)
    with tempfile.TemporaryDirectory() as tmp:
        paths = {kind: Path(tmp) / f"{name}.{kind}.onnx" for kind in ("plain", "stats")}
        start = time.perf_counter()
        compiled = compile_model(reference.onnx_path, paths["plain"], options, calibration=reference.load_calibration())
        compile_seconds = time.perf_counter() - start
        options.stats = True
        compile_model(reference.onnx_path, paths["stats"], options, calibration=reference.load_calibration())
        report = Session(paths["stats"], providers=[CPU]).evaluate(
            x_test, y_test, ann=reference.onnx_path, batch_size=batch_size, progress=False
        )
        gc.collect()  # no idle session of the evaluation left to compete for the cores
        speed = paired_timing(
            *(make_session(str(p), [CPU], spinning=False) for p in (paths["plain"], reference.onnx_path)),
            x_test[:batch_size],
            repeats,
        )
    summary = report.to_json()
    return {
        "model": name,
        "exporter": exporter,
        "neuron": "ttfs",
        "onnx_snn": __version__,
        "onnxruntime": ort.__version__,
        "options": options.as_metadata(),
        "test_samples": report.samples,
        "compile_seconds": compile_seconds,
        "ann_accuracy": report.ann_accuracy,
        "accuracy": summary["accuracy"][0],
        "agreement": summary["agreement"][0],
        "max_logit_error": summary["max_logit_error"][0],
        "spikes_per_neuron": report.spikes_per_neuron,
        "synops_per_sample": sum(report.synops_per_sample.values()),
        "t_read": report.latency,
        "ttfs": compiled.metadata["ttfs"],
        "timing": speed,
    }


def ttfs_markdown_section(result: dict, machine: str) -> str:
    """The BENCHMARKS.md section of one TTFS result."""
    model = result["options"]["ttfs_model"]
    timing = result["timing"]
    flags = f" --ttfs-model {model}" if model != "b1" else ""
    exporter = f" --exporter {result['exporter']}" if result["exporter"] not in ("legacy", "tf2onnx") else ""
    return (
        "\n".join(
            [
                f"## {result['model']} ({result['exporter']} export): TTFS exact mapping, model {model.upper()}",
                "",
                f"Measured with `python -m benchmarks zoo {result['model']} --neuron ttfs{flags}{exporter}` (onnx-snn "
                f"{result['onnx_snn']}, onnxruntime {result['onnxruntime']}, CPU: {machine}), "
                f"on {result['test_samples']} "
                f"test images; ζ = {result['options']['zeta']}.",
                "",
                "| ANN accuracy | SNN accuracy | agreement | max abs logit error | spikes per neuron | "
                "synaptic events / sample | t_read | SNN (ms) | ANN (ms) | SNN / ANN |",
                "|---|---|---|---|---|---|---|---|---|---|",
                f"| {100 * result['ann_accuracy']:.2f}% | {100 * result['accuracy']:.2f}% | "
                f"{100 * result['agreement']:.2f}% | "
                f"{result['max_logit_error']:.2g} | {result['spikes_per_neuron']:.4f} | "
                f"{result['synops_per_sample']:.4g} | "
                f"{result['t_read']:.4g} | {1e3 * timing['snn_seconds']:.2f} | {1e3 * timing['ann_seconds']:.2f} | "
                f"{timing['ratio']:.2f} |",
                "",
                f"Times: medians of one call on a batch of {timing['batch']}, SNN and ANN in alternating rounds.",
            ]
        )
        + "\n"
    )
