"""`python -m benchmarks coverage [NAMES...]`: what the compiler does on the world's architectures.

The matrix (issue 15): every standard vision family of onnx_snn.models.families (small widths,
seeded random weights, BatchNorm statistics adapted to Fashion-MNIST, heads centred), exported by
each of `--exporters` (legacy: `torch.onnx.export(dynamo=False, opset_version=17)` with a dynamic
batch axis; dynamo: `torch.onnx.export(dynamo=True)` with its defaults on a 1-image sample, which
bakes the batch), and every light model-zoo file that `onnx` ships (onnx_snn.models.light_models:
onnx-caffe2, opset 9, batch fixed to 1, 224x224), each in its own process (a crash, a hang or a
memory blow-up ends that case only):

1. compile with the defaults (`CompileOptions()`) through the Python API on `--calib` training
   images: status ok, refused (the SnnError) or internal error (any other exception), the neuron
   family chosen, compile seconds, peak RSS of the compile;
2. run the SNN at batch 1, 2 and 16 (BATCH_STEPS steps) with Session, and check that the first
   image's logits do not depend on the batch;
3. fidelity on `--samples` test images at each T: argmax agreement with the ANN (onnxruntime on the
   exported ANN, its final Softmax dropped as compile drops it) and the relative logit error
   ||snn - ann||_F / ||ann||_F over the samples x classes logits.

Results merge into benchmarks/coverage.json (one entry per model and exporter, each stamped with
its settings, so that parts of the matrix can be rerun), and the whole table is rewritten into
BENCHMARKS.md between `<!-- bench:coverage:begin -->` and `<!-- bench:coverage:end -->`.
NAMES are families, light models, or the groups `families` and `light` (default: both).
"""

from __future__ import annotations

import argparse
import functools
import json
import multiprocessing
import re
import sys
import tempfile
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import onnx
import torch

from benchmarks.peak_memory import peak_rss
from benchmarks.zoo import _machine, update_benchmarks_file
from onnx_snn import __version__
from onnx_snn.api import compile_model
from onnx_snn.errors import SnnError
from onnx_snn.models.export import export_torch
from onnx_snn.models.families import (
    FAMILIES,
    IMAGE_SIZE,
    RELU_ONLY,
    family_images,
    logits,
    parameter_count,
    prepare_family,
)
from onnx_snn.models.light_models import (
    LIGHT_MODELS,
    available_light_models,
    data_input,
    fashion_rgb,
    input_size,
    load_light_model,
)
from onnx_snn.options import CompileOptions
from onnx_snn.outputs import write_text_atomic
from onnx_snn.providers import CPU
from onnx_snn.runtime import Session
from onnx_snn.runtime.ann import AnnRunner

KEY = "coverage"
EXPORTERS = ("legacy", "dynamo")
#: the exporter column of the light models
LIGHT_EXPORTER = "onnx-caffe2"
DEFAULT_TIMESTEPS = (16, 64, 256)
BATCHES = (1, 2, 16)
#: steps of the batch runs (what they check, that a sample's logits do not depend on the batch,
#: shows at any T; the light models' 224x224 runs are slow)
BATCH_STEPS = 4
#: the light models' defaults: 224x224 at a fixed batch of 1 makes every image-step cost as much as
#: the full ANN (up to 20 GFLOP for light_vgg19), so fewer images and steps than the families'
LIGHT_SAMPLES = 4
LIGHT_TIMESTEPS = (16, 64)
#: issue 15's targets: relative logit error at T = TARGET_T (ReLU-only families: the tighter one)
TARGET_T = 256
TARGET_ERROR = 0.05
TARGET_ERROR_RELU = 0.02
#: the first image's logits at batch 2 and 16 may differ from batch 1 by this (relative to its norm)
BATCH_TOLERANCE = 1e-4
#: calibration images start after the images the BatchNorms were adapted on
CALIBRATION_START = 512
CATEGORIES = (
    "export failed",
    "op refused",
    "shape-subgraph/Equal",
    "crash/internal error",
    "runs only at batch 1",
    "wrong result",
    "OK",
)
#: ops of the shape arithmetic that exporters write around Reshape/Expand (a refusal naming one
#: is a shape subgraph the compiler did not fold)
SHAPE_OPS = ("Shape", "Equal", "Where", "ConstantOfShape", "Expand", "Size", "Range")
#: phrases of a refusal because the export fixed the batch (the model runs at its export batch only)
BATCH_PHRASES = ("encodes the batch size", "does not follow the batch", "batch axis cannot be freed")


def _first_line(text: str, limit: int = 300) -> str:
    line = str(text).strip().splitlines()[0] if str(text).strip() else ""
    return line[:limit]


def export_family(name: str, exporter: str, path: Path) -> dict:
    """Prepare family `name` and export it with `exporter` to `path`; the torch logits of the
    test images ride along for the export check."""
    model = prepare_family(name)
    info: dict = {"parameters": parameter_count(model)}
    start = time.perf_counter()
    if exporter == "legacy":
        export_torch(model, torch.zeros(2, 3, IMAGE_SIZE, IMAGE_SIZE), path, dynamo=False, dynamic_batch=True, opset=17)
        info.update(opset=17, sample_batch=2, dynamic_batch=True)
    else:
        program = torch.onnx.export(
            model, (torch.zeros(1, 3, IMAGE_SIZE, IMAGE_SIZE),), dynamo=True, input_names=["x"], output_names=["logits"]
        )
        program.save(str(path))
        info.update(sample_batch=1, dynamic_batch=False)
    info["export_seconds"] = time.perf_counter() - start
    info["torch_model"] = model
    return info


def agreement_and_error(snn: np.ndarray, ann: np.ndarray) -> dict[str, float]:
    """Argmax agreement and relative logit error ||snn - ann||_F / ||ann||_F of two [N, ...] logit
    arrays (flattened per sample)."""
    snn, ann = snn.reshape(len(snn), -1), ann.reshape(len(ann), -1)
    return {
        "agreement": float(np.mean(snn.argmax(1) == ann.argmax(1))),
        "rel_error": float(np.linalg.norm(snn - ann) / max(float(np.linalg.norm(ann)), 1e-12)),
    }


def measure_case(name: str, exporter: str, timesteps: list[int], samples: int, calib: int, out: str) -> None:
    """In a child process: the coverage case (`name`, `exporter`), written as JSON to `out`."""
    result: dict = {"name": name, "exporter": exporter, "kind": "light" if name in LIGHT_MODELS else "family"}
    Path(out).write_text(json.dumps({**result, "status": "crash", "error": "the case died before it finished"}))
    try:
        _measure(result, name, exporter, timesteps, samples, calib, Path(out).parent)
    except Exception as exc:  # noqa: BLE001 - every failure is a result of the matrix
        result.setdefault("status", "internal error")
        result["harness_error"] = f"{type(exc).__name__}: {_first_line(str(exc))}"
        result["traceback"] = traceback.format_exc()[-3000:]
    Path(out).write_text(json.dumps(result, indent=1, default=str))


def _measure(result: dict, name: str, exporter: str, timesteps: list[int], samples: int, calib: int, tmp: Path) -> None:
    """Fill `result` with the case's measurements (measure_case); `tmp` holds its files."""
    ann_path = tmp / f"{name}-{exporter}.onnx"
    torch_logits = None
    if result["kind"] == "light":
        model = load_light_model(name)
        onnx.save(model, str(ann_path))
        size, input_name = input_size(model), data_input(model).name
        result.update(parameters=int(sum(np.prod(t.dims) for t in model.graph.initializer if t.data_type == 1)))
    else:
        try:
            info = export_family(name, exporter, ann_path)
        except Exception as exc:  # noqa: BLE001
            result.update(status="export failed", error=f"{type(exc).__name__}: {_first_line(str(exc))}")
            result["traceback"] = traceback.format_exc()[-3000:]
            return
        torch_model = info.pop("torch_model")
        result.update(info)
        size, input_name = 32, "x"
    ann_model = onnx.load(str(ann_path))
    result["ann_ops"] = sorted({n.op_type for n in ann_model.graph.node})
    result["opset"] = next((o.version for o in ann_model.opset_import if o.domain in ("", "ai.onnx")), None)
    images = family_images if result["kind"] == "family" else functools.partial(fashion_rgb, size=size)
    x_test = images("test", samples)
    x_calib = images("train", calib, start=CALIBRATION_START)
    ann = AnnRunner(ann_path).run({input_name: x_test})
    result["classes"] = int(ann.reshape(len(x_test), -1).shape[1])
    if result["kind"] == "family":
        torch_logits = logits(torch_model, x_test)
        result["export_max_abs_error"] = float(np.abs(torch_logits - ann.reshape(torch_logits.shape)).max())
    snn_path = tmp / f"{name}-{exporter}.snn.onnx"
    start = time.perf_counter()
    try:
        with peak_rss() as memory:
            compiled = compile_model(ann_path, snn_path, CompileOptions(), calibration=x_calib)
    except SnnError as exc:
        result.update(status="refused", error=_first_line(str(exc)), compile_seconds=time.perf_counter() - start)
        return
    except Exception as exc:  # noqa: BLE001
        result.update(
            status="internal error",
            error=f"{type(exc).__name__}: {_first_line(str(exc))}",
            traceback=traceback.format_exc()[-3000:],
            compile_seconds=time.perf_counter() - start,
        )
        return
    result.update(
        status="ok",
        compile_seconds=time.perf_counter() - start,
        compile_peak_rss=memory.peak,
        neuron=compiled.metadata.get("neuron"),
        notes=compiled.notes,
    )
    session = Session(snn_path, providers=[CPU])
    runs: dict[str, str] = {}
    first: dict[str, np.ndarray] = {}
    for batch in BATCHES:
        try:
            first[str(batch)] = session.run(x_test[:batch], BATCH_STEPS).logits[0]
            runs[str(batch)] = "ok"
        except Exception as exc:  # noqa: BLE001
            runs[str(batch)] = f"{type(exc).__name__}: {_first_line(str(exc))}"
    result["runs"] = runs
    if "1" in first:
        base = first["1"]
        scale = max(float(np.linalg.norm(base)), 1e-12)
        result["batch_deviation"] = {
            b: float(np.linalg.norm(first[b].reshape(base.shape) - base) / scale) for b in first if b != "1"
        }
    batched = runs.get("16") == "ok"
    fidelity: dict[str, dict] = {}
    for t in timesteps:
        start = time.perf_counter()
        try:
            if batched:
                snn = session.run(x_test, t).logits
            else:
                snn = np.concatenate([session.run(x_test[i : i + 1], t).logits for i in range(len(x_test))])
        except Exception as exc:  # noqa: BLE001
            fidelity[str(t)] = {"error": f"{type(exc).__name__}: {_first_line(str(exc))}"}
            continue
        fidelity[str(t)] = {
            **agreement_and_error(snn, ann),
            "finite": bool(np.isfinite(snn).all()),
            "batched": batched,
            "seconds": time.perf_counter() - start,
        }
    result["fidelity"] = fidelity


def run_case(name: str, exporter: str, timesteps: list[int], samples: int, calib: int, timeout: float) -> dict:
    """measure_case in a spawned process under `timeout` seconds; the case's result (a crash or
    timeout is a result too), with its settings, wall time and the process's peak RSS."""
    context = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        child = context.Process(target=measure_case, args=(name, exporter, timesteps, samples, calib, str(out)))
        start = time.perf_counter()
        child.start()
        child.join(timeout)
        if child.is_alive():
            child.kill()
            child.join()
            result = {"status": "timeout", "error": f"no result after {timeout:.0f} s"}
            if out.exists():
                result = {**json.loads(out.read_text()), **result}
        elif out.exists():
            result = json.loads(out.read_text())
            if child.exitcode != 0 and result.get("status") == "crash":
                result["error"] = f"the case's process died (exit code {child.exitcode})"
        else:
            result = {"status": "crash", "error": f"the case's process died (exit code {child.exitcode})"}
    kind = "light" if name in LIGHT_MODELS else "family"
    result.update(
        name=name,
        exporter=exporter,
        kind=kind,
        wall_seconds=time.perf_counter() - start,
        timesteps=timesteps,
        samples=samples,
        calibration=calib,
        date=datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        onnx_snn=__version__,
        machine=_machine(),
    )
    return result


def target_error(case: dict) -> float:
    """The relative logit error the case must reach at T = TARGET_T."""
    return TARGET_ERROR_RELU if case["name"] in RELU_ONLY else TARGET_ERROR


def _is_shape_error(text: str) -> bool:
    return any(f"({op})" in text or f"op {op}" in text for op in SHAPE_OPS)


def category(case: dict) -> str:
    """The case's row of the summary: one of CATEGORIES. A refusal because the export fixed the
    batch counts as "runs only at batch 1" (the export runs only at its batch)."""
    status, error = case.get("status"), str(case.get("error", ""))
    if status == "export failed":
        return "export failed"
    if status in ("refused", "internal error", "crash", "timeout"):
        if _is_shape_error(error):
            return "shape-subgraph/Equal"
        if status == "refused" and any(phrase in error for phrase in BATCH_PHRASES):
            return "runs only at batch 1"
        return "op refused" if status == "refused" else "crash/internal error"
    runs = case.get("runs", {})
    if runs.get("1") != "ok":
        return "crash/internal error"
    if any(runs.get(str(b)) != "ok" for b in BATCHES[1:]):
        return "runs only at batch 1"
    if any(d > BATCH_TOLERANCE for d in case.get("batch_deviation", {}).values()):
        return "wrong result"
    final = _final(case)
    if final is None or "error" in final or not final.get("finite", True):
        return "crash/internal error" if final is not None and "error" in final else "wrong result"
    limit = TARGET_ERROR if case.get("kind") == "light" else target_error(case)
    return "OK" if final["rel_error"] <= limit else "wrong result"


def _final(case: dict) -> dict | None:
    """The fidelity at the largest T measured."""
    fidelity = case.get("fidelity") or {}
    return fidelity[max(fidelity, key=int)] if fidelity else None


def _short(text: str) -> str:
    """`text` without the folders of the .onnx files it names (the cases' temporary folders)."""
    return re.sub(r"(?<![\w.])/\S*/(?=[^/\s]+\.onnx)", "", text)


def _cell(text: object, limit: int = 110) -> str:
    value = _short(str(text)).replace("|", "\\|").replace("\n", " ")
    return value if len(value) <= limit else value[: limit - 1] + "…"


def _batches(case: dict) -> str:
    runs = case.get("runs")
    if not runs:
        return "–"
    return " ".join(f"{b}{'✓' if runs.get(str(b)) == 'ok' else '✗'}" for b in BATCHES)


def markdown_section(cases: list[dict]) -> str:
    """The BENCHMARKS.md section of all coverage cases."""
    all_t = sorted({int(t) for c in cases for t in (c.get("fidelity") or {})})
    machine = cases[0]["machine"] if cases else ""
    lines = [
        "## Coverage: the standard vision families and the onnx light model zoo",
        "",
        "Measured with `python -m benchmarks coverage` (one process per case; CPU: "
        f"{machine}). Untrained nets: seeded random weights, BatchNorm statistics adapted to "
        "Fashion-MNIST (32x32 for the families, 224x224 for the light models, gray repeated to 3 "
        "channels; the families' pixels normalized by the training set's mean and std, "
        "`families.family_images`), compiled with the defaults on the calibration images; agreement (argmax) and "
        "relative logit error ||snn - ann|| / ||ann|| against onnxruntime on the exported ANN. "
        f"Target (issue 15): error at T = {TARGET_T} <= {TARGET_ERROR} ({TARGET_ERROR_RELU} for ReLU-only "
        "families); a row's category judges the error at its largest T. The light models run on "
        f"{LIGHT_SAMPLES} images at T = {', '.join(map(str, LIGHT_TIMESTEPS))} by default (224x224: slow on a CPU). "
        "`batch` says which of batch 1, 2, 16 ran.",
        "",
        "| model | exporter | status | neuron | compile | peak RSS | batch | "
        + " | ".join(f"agree T={t}" for t in all_t)
        + " | "
        + " | ".join(f"err T={t}" for t in all_t)
        + " | category | first error |",
        "|---|---|---|---|---|---|---|" + "---|" * (2 * len(all_t)) + "---|---|",
    ]
    for case in cases:
        fidelity = case.get("fidelity") or {}
        agree = [
            f"{fidelity[str(t)]['agreement']:.2f}" if "agreement" in fidelity.get(str(t), {}) else "–" for t in all_t
        ]
        error = [
            f"{fidelity[str(t)]['rel_error']:.3f}" if "rel_error" in fidelity.get(str(t), {}) else "–" for t in all_t
        ]
        failed_runs = [r for r in (case.get("runs") or {}).values() if r != "ok"]
        first_error = case.get("error") or (failed_runs[0] if failed_runs else "")
        lines.append(
            f"| {case['name']} | {case['exporter']} | {case['status']} | {case.get('neuron') or '–'} | "
            + (f"{case['compile_seconds']:.1f} s" if "compile_seconds" in case else "–")
            + " | "
            + (f"{case['compile_peak_rss'] / 1e9:.2f} GB" if "compile_peak_rss" in case else "–")
            + f" | {_batches(case)} | "
            + " | ".join(agree + error)
            + f" | {category(case)} | {_cell(first_error)} |"
        )
    lines += ["", "| category | cases |", "|---|---|"]
    for name in CATEGORIES:
        members = [f"{c['name']} ({c['exporter']})" for c in cases if category(c) == name]
        lines.append(f"| {name} | {len(members)}: {', '.join(members) if members else '–'} |")
    return "\n".join(lines + [""])


def _selected(names: list[str]) -> tuple[list[str], list[str]]:
    """(families, light models) named by `names` (default: all)."""
    names = names or ["families", "light"]
    families: list[str] = []
    light: list[str] = []
    for name in names:
        if name == "families":
            families += list(FAMILIES)
        elif name == "light":
            light += available_light_models()
        elif name in FAMILIES:
            families.append(name)
        elif name in LIGHT_MODELS:
            light.append(name)
        else:
            raise SnnError(
                f"unknown model {name!r}; choose families, light, one of {', '.join(FAMILIES)} "
                f"or one of {', '.join(LIGHT_MODELS)}"
            )
    return list(dict.fromkeys(families)), list(dict.fromkeys(light))


def _ordered(cases: dict[str, dict]) -> list[dict]:
    order = {name: i for i, name in enumerate([*FAMILIES, *LIGHT_MODELS])}
    exporters = {name: i for i, name in enumerate([*EXPORTERS, LIGHT_EXPORTER])}
    return sorted(cases.values(), key=lambda c: (order.get(c["name"], 99), exporters.get(c["exporter"], 9)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks coverage", description=__doc__)
    parser.add_argument("names", nargs="*", help="families, light models, or the groups families / light")
    parser.add_argument("--exporters", nargs="+", default=list(EXPORTERS), choices=EXPORTERS)
    parser.add_argument("--timesteps", nargs="+", type=int, default=list(DEFAULT_TIMESTEPS))
    parser.add_argument("--samples", type=int, default=64, help="test images of the fidelity measure")
    parser.add_argument("--calib", type=int, default=256, help="calibration images")
    parser.add_argument(
        "--light-samples", type=int, default=LIGHT_SAMPLES, help="test images of a light model (224x224: slow)"
    )
    parser.add_argument(
        "--light-timesteps", nargs="+", type=int, default=list(LIGHT_TIMESTEPS), help="T of the light models"
    )
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per case")
    parser.add_argument("--out", default="BENCHMARKS.md")
    parser.add_argument("--json", dest="json_dir", default="benchmarks")
    args = parser.parse_args(argv)
    try:
        families, light = _selected(args.names)
    except SnnError as exc:
        print(f"python -m benchmarks coverage: error: {exc}", file=sys.stderr)
        return 2
    store = Path(args.json_dir) / f"{KEY}.json"
    cases: dict[str, dict] = {}
    if store.exists():
        cases = {f"{c['name']}/{c['exporter']}": c for c in json.loads(store.read_text())["cases"]}
    plan = [(name, exporter) for name in families for exporter in args.exporters]
    plan += [(name, LIGHT_EXPORTER) for name in light]
    for name, exporter in plan:
        light_case = exporter == LIGHT_EXPORTER
        timesteps = args.light_timesteps if light_case else args.timesteps
        samples = args.light_samples if light_case else args.samples
        case = run_case(name, exporter, sorted(timesteps), samples, args.calib, args.timeout)
        cases[f"{name}/{exporter}"] = case
        final = _final(case) or {}
        print(
            f"{name:20s} {exporter:12s} {case['status']:15s} {case.get('neuron') or '-':7s} "
            f"{_batches(case):10s} err {final.get('rel_error', float('nan')):.4f} "
            f"agree {final.get('agreement', float('nan')):.2f} [{category(case)}] "
            f"{_short(_first_line(case.get('error', ''), 200))[:160]} ({case['wall_seconds']:.0f} s)",
            flush=True,
        )
        Path(args.json_dir).mkdir(parents=True, exist_ok=True)
        ordered = _ordered(cases)
        write_text_atomic(store, json.dumps({"cases": ordered}, indent=1, default=str))
        update_benchmarks_file(Path(args.out), KEY, markdown_section(ordered))
    return 0
