"""NIR interoperability, measured (`python -m benchmarks nir`): our exports run by snnTorch's,
sinabs's and Norse's own importers (Norse where it is installed: it is in no extra, its sdist
builds with `pip install --no-deps norse`) against onnx-snn's Session, nets built in snnTorch and sinabs read by
import-nir against their own simulation, and the export-nir -> import-nir round trip.

For each reference model (fashion-cnn, fashion-resnet, fashion-stem-resnet), compiled with the
flags that make each reader's dynamics ours (READER_FLAGS: snnTorch's Leaky with hard reset and
one spike a step; sinabs's IAF with ⌊v/θ⌋ spikes a step and a floor at −θ, identity shortcuts
unscaled), on the first N test images for T steps: the rate-decoded output (the mean of the NIR
Output over the steps) and each IF layer's spike count, reader against Session. "max rel. Δ
output" is max |Δ| / max |Session output|; "spikes" is the largest relative difference of a
layer's total spike count. `import-nir --from <reader>` of the same file is run too: it shows
what the reader's conventions do not explain.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.zoo import add_output_arguments, publish
from onnx_snn import CompileOptions, compile_model
from onnx_snn.errors import SnnError
from onnx_snn.modelio import load_model
from onnx_snn.models.nir_frameworks import (
    FrameworkRun,
    norse_run,
    running_mean,
    sinabs_conv_net,
    sinabs_export,
    sinabs_run,
    sinabs_steps,
    snntorch_conv_net,
    snntorch_export,
    snntorch_run,
    snntorch_steps,
)
from onnx_snn.models.zoo import get_reference
from onnx_snn.nir_io.dialects import DIALECTS
from onnx_snn.nir_io.export import export_nir, to_nir_graph
from onnx_snn.nir_io.importer import import_nir
from onnx_snn.runtime import Session

MODELS = ("fashion-cnn", "fashion-resnet", "fashion-stem-resnet")
#: the compile options that make each reader's neurons ours (CompileOptions fields)
READER_FLAGS: dict[str, dict[str, Any]] = {
    "snntorch": {"spikes": "binary", "reset": "hard", "v_init": 0.0},
    "sinabs": {"spikes": "multi", "v_min": -1.0, "v_init": 0.0, "tie_residual_scales": True},
    "norse": {"spikes": "binary", "reset": "hard", "v_init": 0.0, "tie_residual_scales": True},
}
RUNNERS = {"snntorch": snntorch_run, "sinabs": sinabs_run, "norse": norse_run}
#: the readers whose imported modules the benchmark can run itself in a topological order
TOPOLOGICAL = ("sinabs",)


def _flags(reader: str) -> str:
    """READER_FLAGS[reader] as `compile` flags."""
    flags = []
    for field, value in READER_FLAGS[reader].items():
        flag = "--" + field.replace("_", "-")
        flags.append(flag if value is True else f"{flag} {value:g}" if isinstance(value, float) else f"{flag} {value}")
    return " ".join(flags)


def _compare(ours: Any, theirs: FrameworkRun, graph: Any, labels: np.ndarray) -> dict[str, Any]:
    """Output and per-layer spike differences of a reader's run against the Session's."""
    scale = float(np.abs(ours.logits).max())
    layers = {
        name: (float(ours.spikes[f"spikes/{node.metadata['onnx_node']}"].sum()), float(theirs.spikes[name].sum()))
        for name, node in graph.nodes.items()
        if "onnx_node" in node.metadata and name in theirs.spikes
    }
    return {
        "max_rel_output": float(np.abs(theirs.logits - ours.logits).max()) / scale,
        "samples_off": _samples_off(ours.per_step, theirs.per_step, scale),
        "agreement": float((theirs.logits.argmax(1) == ours.logits.argmax(1)).mean()),
        "accuracy_ours": float((ours.logits.argmax(1) == labels).mean()),
        "accuracy_theirs": float((theirs.logits.argmax(1) == labels).mean()),
        "spikes": layers,
        "max_rel_spikes": max(abs(t - o) / max(o, 1.0) for o, t in layers.values()),
    }


def _samples_off(a: np.ndarray, b: np.ndarray, scale: float) -> int:
    """Samples whose per-step outputs [T, B, ...] differ anywhere by more than 1e-5 of `scale`."""
    difference = np.abs(np.asarray(a, np.float64) - b).reshape(a.shape[0], a.shape[1], -1).max(axis=(0, 2))
    return int((difference > 1e-5 * scale).sum())


def measure_model(name: str, images: int, timesteps: int, cache_dir: str | None, folder: Path) -> list[dict]:
    """One row per reader for reference model `name`."""
    import nir

    reference = get_reference(name, cache_dir)
    x, labels = reference.load_test()
    x, labels = x[:images].astype(np.float32), labels[:images]
    rows = []
    for reader, flags in READER_FLAGS.items():
        if importlib.util.find_spec(reader) is None:
            print(f"{name} {reader}: not installed, skipped")
            continue
        options = CompileOptions(stats=True, timesteps=timesteps, **flags)
        snn_path, nir_path = folder / f"{name}-{reader}.snn.onnx", folder / f"{name}-{reader}.nir"
        compile_model(reference.onnx_path, snn_path, options, calibration=reference.calibration_path)
        ours = Session(snn_path).run(x, timesteps=timesteps)
        row: dict[str, Any] = {"model": name, "reader": reader, "flags": _flags(reader), "how": "its importer"}
        try:
            export_nir(snn_path, nir_path, reader)
        except SnnError as exc:  # a shortcut with a layer on it, which a depth-first executor runs too late
            row["refused"] = str(exc).split(": ", 2)[-1]
            if reader not in TOPOLOGICAL:
                rows.append(row)
                print(f"{name} {reader}: {row}")
                continue
            row["how"] = "its modules in topological order, run by us: its executor cannot run this net's joins"
            graph = to_nir_graph(load_model(snn_path), dataclasses.replace(DIALECTS[reader], joins=True))
            nir.write(str(nir_path), graph)
        graph = nir.read(str(nir_path))
        runner = RUNNERS[reader]
        theirs = runner(graph, x, timesteps, topological=True) if "refused" in row else runner(graph, x, timesteps)
        row.update(_compare(ours, theirs, graph, labels))
        predicted_path = folder / f"{name}-{reader}.imported.snn.onnx"
        import_nir(nir_path, predicted_path, reader, timesteps)
        predicted = Session(predicted_path).run(x, timesteps=timesteps)
        row["import_samples_off"] = _samples_off(predicted.per_step, theirs.per_step, float(np.abs(ours.logits).max()))
        if reader == "snntorch":  # the same hard-reset model through NIR and back
            round_trip = folder / f"{name}.nir"
            export_nir(snn_path, round_trip, "nir")
            import_nir(round_trip, folder / f"{name}.back.snn.onnx", "nir", timesteps)
            back = Session(folder / f"{name}.back.snn.onnx").run(x, timesteps=timesteps)
            row["round_trip"] = float(np.abs(back.per_step - ours.per_step).max()) / float(np.abs(ours.logits).max())
        rows.append(row)
        print(f"{name} {reader}: {row}")
    return rows


def measure_framework_nets(timesteps: int, folder: Path) -> list[dict]:
    """The conv nets built in snnTorch and sinabs (models/nir_frameworks.py), exported by their
    exporters, read by import-nir, against the framework's own simulation step by step."""
    import nir

    batch = 256
    x = np.random.default_rng(0).uniform(0, 1, size=(batch, 1, 8, 8)).astype(np.float32)
    rows = []
    for reader in ("snntorch", "sinabs"):
        if reader == "snntorch":
            net = snntorch_conv_net()
            graph, steps = snntorch_export(net), lambda: snntorch_steps(net, x, timesteps)
            layers = "Conv2d, Leaky (LIF), AvgPool2d, Flatten, Linear, Synaptic (CubaLIF)"
        else:
            net = sinabs_conv_net(batch)
            graph, steps = sinabs_export(net, batch), lambda: sinabs_steps(net, x, timesteps)
            layers = "Conv2d, IAF (IF), SumPool2d, Flatten, Linear, LIF, Linear, ExpLeak (LI)"
        path = folder / f"{reader}-net.nir"
        nir.write(str(path), graph)
        import_nir(path, folder / f"{reader}-net.snn.onnx", reader, timesteps)
        ours = Session(folder / f"{reader}-net.snn.onnx").run(x, timesteps=timesteps).per_step
        reference = running_mean(steps())
        difference = np.abs(ours - reference).reshape(timesteps, batch, -1).max(axis=(0, 2))
        rows.append(
            {
                "reader": reader,
                "layers": layers,
                "max_abs": float(difference.max()),
                "samples_over_1e-5": int((difference > 1e-5).sum()),
                "samples": batch,
            }
        )
        print(f"{reader} net: {rows[-1]}")
    return rows


def markdown_section(result: dict) -> str:
    """The BENCHMARKS.md section of a run."""
    n, t = result["images"], result["timesteps"]
    lines = [
        "## NIR interoperability",
        "",
        f"`python -m benchmarks nir --images {n} --timesteps {t}` ({n} test images, T = {t}; the output is the mean "
        "of the NIR Output over the T steps; each model compiled with the flags that make the reader's neurons "
        "ours). Relative differences are max |Δ| over max |onnx-snn output|; samples off: samples whose "
        "per-step output differs anywhere by more than 1e-5 of that; spikes: the largest relative difference of "
        "one layer's total spike count. Last column: `import-nir --from <reader>` of the same file against the "
        "reader's run, i.e. what the reader's conventions do not explain.",
        "",
        "| model | compiled with | reader (run by) | accuracy onnx-snn / reader | argmax agreement "
        "| max rel. Δ output | samples off | max rel. Δ spikes | samples off, import-nir --from reader |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["models"]:
        if "agreement" not in row:
            lines.append(f"| {row['model']} | `{row['flags']}` | {row['reader']} | refused (below) |" + " — |" * 5)
            continue
        lines.append(
            f"| {row['model']} | `{row['flags']}` | {row['reader']} ({row['how']}) "
            f"| {100 * row['accuracy_ours']:.2f} / {100 * row['accuracy_theirs']:.2f} % "
            f"| {100 * row['agreement']:.2f} % "
            f"| {row['max_rel_output']:.1e} | {row['samples_off']} | {row['max_rel_spikes']:.1e} "
            f"| {row['import_samples_off']} |"
        )
    lines += ["", "Spike totals per layer, onnx-snn → reader:", ""]
    for row in (row for row in result["models"] if "spikes" in row):
        totals = ", ".join(f"{name} {o:.0f} → {t:.0f}" for name, (o, t) in row["spikes"].items())
        lines.append(f"- {row['model']}, {row['reader']}: {totals}")
    lines += [""]
    for row in result["models"]:
        if "refused" in row:
            lines.append(f"- {row['model']} for {row['reader']}: export-nir refuses: {row['refused']}")
    lines += [
        "- snnTorch: no difference beyond float rounding: export writes the IF neuron as a LIF with τ = 2^60·dt "
        "(β = 1 exactly) and hard reset, and NIR's v > θ as the float below θ.",
        "- sinabs: `--spikes multi --v-min -1` gives onnx-snn's neurons its IAF's dynamics (⌊v/θ⌋ spikes a step, "
        "soft reset, membrane floor −θ), `--tie-residual-scales` leaves identity shortcuts unscaled (it has no "
        "Scale node, and its executor runs the nodes depth-first in the order of the edges, which export writes "
        "so that a join runs after both its inputs). A shortcut with a layer on it (fashion-resnet's) cannot be "
        "ordered so: export-nir refuses it, and the row shows sinabs's modules run in topological order by us.",
        "- Norse: its IAF (v ← v + x, a spike where v > θ, reset to 0) is onnx-snn's binary neuron with `--reset "
        "hard --v-init 0`; it has no AvgPool2d or Scale (SumPool2d with 1/k² folded into the next weights, "
        "identity shortcuts unscaled) and runs nirtorch's depth-first executor, so a shortcut with a layer on it "
        "is refused as for sinabs. Norse 1.1.0 is in no extra (its sdist builds with `pip install --no-deps "
        "norse`); the rows are measured where it is installed.",
        "- fashion-resnet with `--reset hard` (what snnTorch's importer and the NIR spec have) collapses, as "
        "measured before (BENCHMARKS.md, normalization and reset): the charge above threshold that a hard reset "
        "drops is most of the signal where residual sums drive neurons several thresholds a step.",
        "",
        "Round trip, `export-nir` then `import-nir` (hard reset, `--v-init 0`): max relative difference of the "
        "per-step outputs "
        + ", ".join(f"{row['model']} {row['round_trip']:.1e}" for row in result["models"] if "round_trip" in row)
        + " (0: the same bits; otherwise a residual scale folded into weights rounds differently).",
        "",
        f"Nets built in the frameworks, exported by their own exporters, read by `import-nir --from <framework>` "
        f"and compared with the framework's own simulation at every step (256 random 1×8×8 inputs, T = {t}):",
        "",
        "| framework | layers | max abs Δ per-step output | samples off by > 1e-5 |",
        "|---|---|---|---|",
    ]
    for row in result["frameworks"]:
        lines.append(
            f"| {row['reader']} | {row['layers']} | {row['max_abs']:.1e} "
            f"| {row['samples_over_1e-5']} of {row['samples']} |"
        )
    lines += [
        "",
        "A sample off by more than 1e-5 is a spike that flipped where a membrane landed on a threshold within "
        "the last bit of a current: torch and onnxruntime add a conv's bias at different points of its sum (a "
        "3×3 conv of 24 → 48 channels on spike counts differs in the last bit on 35 % of its outputs with a bias, "
        "on none without), so the same model's currents differ by an ulp here and there.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks nir", description=__doc__)
    parser.add_argument("models", nargs="*", default=list(MODELS))
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--timesteps", type=int, default=32)
    add_output_arguments(parser)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        rows = [
            row
            for name in args.models
            for row in measure_model(name, args.images, args.timesteps, args.cache_dir, folder)
        ]
        frameworks = measure_framework_nets(args.timesteps, folder)
    result = {"images": args.images, "timesteps": args.timesteps, "models": rows, "frameworks": frameworks}
    publish(markdown_section(result), result, "nir", args.out, args.json_dir)
    return 0
