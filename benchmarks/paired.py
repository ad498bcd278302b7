"""`python -m benchmarks paired`: the default compile against spikingjelly 2.0, image by image (issue 16).

Per zoo model, on the first `--samples` test images: the ANN's predictions, the default compile's
after T = 8..128 steps and spikingjelly ann2snn's (99.9% mode, the same weights and calibration
images). Per T: both accuracies; the discordant images (right in one SNN only) and McNemar's exact
two-sided p on them (is the difference in accuracy more than chance?); and how many images each
SNN classifies differently from the ANN it converts. Beside them, the ANN with every ReLU's output
clipped at its 99.9th percentile on the calibration images: the scale spikingjelly's 99.9% mode
normalizes each layer to, so that clipped ANN is the limit of its SNN apart from quantization.
A spikingjelly SNN that beats its ANN by more than the clipped ANN does is ahead by its own
deviations from the ANN, not by converting more faithfully.
"""

from __future__ import annotations

import argparse
import math
import sys

import numpy as np

from benchmarks.conversion import STEPS
from benchmarks.spikingjelly_ref import convert, simulate
from benchmarks.zoo import _machine, add_output_arguments, publish
from onnx_snn.api import compile_model
from onnx_snn.models.zoo import get_reference, load_torch_model
from onnx_snn.options import CompileOptions
from onnx_snn.providers import CPU, make_session
from onnx_snn.runtime import Session

KEY = "paired-spikingjelly"
CHUNK = 500
#: torch.quantile's input limit; larger activation sets are subsampled (seeded) to it
QUANTILE_LIMIT = 16_000_000


def mcnemar_p(only_first: int, only_second: int) -> float:
    """McNemar's exact two-sided p: the chance, under a fair coin for each of the n discordant
    pairs, of a split at least as uneven as (only_first, only_second)."""
    n = only_first + only_second
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(only_first, only_second) + 1))
    return min(1.0, 2 * tail / 2**n)  # exact integers: 2.0**n overflows above n = 1023


def compare(ann: np.ndarray, ours: np.ndarray, theirs: np.ndarray, labels: np.ndarray) -> dict:
    """One T's row from predicted classes of the ANN, our SNN and spikingjelly's SNN on `labels`."""
    right_ours, right_theirs = ours == labels, theirs == labels
    only_ours, only_theirs = int(np.sum(right_ours & ~right_theirs)), int(np.sum(~right_ours & right_theirs))
    return {
        "ours": 100.0 * float(right_ours.mean()),
        "spikingjelly": 100.0 * float(right_theirs.mean()),
        "only_ours": only_ours,
        "only_spikingjelly": only_theirs,
        "p": mcnemar_p(only_ours, only_theirs),
        "ours_differs_from_ann": int(np.sum(ours != ann)),
        "spikingjelly_differs_from_ann": int(np.sum(theirs != ann)),
    }


def _clipped_ann_predictions(torch_model, calibration: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Classes from `torch_model` with every nn.ReLU's output clipped at its 99.9th percentile over
    `calibration` (subsampled to QUANTILE_LIMIT values where larger)."""
    import torch

    relus = [m for m in torch_model.modules() if isinstance(m, torch.nn.ReLU)]
    seen: dict[int, list] = {id(m): [] for m in relus}
    hooks = [m.register_forward_hook(lambda m, i, o: seen[id(m)].append(o.detach().flatten())) for m in relus]
    with torch.no_grad():
        for start in range(0, len(calibration), CHUNK):
            torch_model(torch.from_numpy(calibration[start : start + CHUNK]))
    for hook in hooks:
        hook.remove()
    generator = torch.Generator().manual_seed(0)
    caps = {}
    for key, parts in seen.items():
        values = torch.cat(parts)
        if values.numel() > QUANTILE_LIMIT:
            values = values[torch.randperm(values.numel(), generator=generator)[:QUANTILE_LIMIT]]
        caps[key] = float(torch.quantile(values, 0.999))
    hooks = [m.register_forward_hook(lambda m, i, o: o.clamp(max=caps[id(m)])) for m in relus]
    with torch.no_grad():
        classes = [torch_model(torch.from_numpy(x[s : s + CHUNK])).argmax(1).numpy() for s in range(0, len(x), CHUNK)]
    for hook in hooks:
        hook.remove()
    return np.concatenate(classes)


def measure(name: str, samples: int) -> dict:
    """The ANN's, the clipped ANN's and both SNNs' predictions on `name`'s first `samples` test
    images, compared at every T in STEPS (compare)."""
    import torch

    reference = get_reference(name)
    x, labels = (a[:samples] for a in reference.load_test())
    calibration = reference.load_calibration()
    ann = make_session(str(reference.onnx_path), [CPU])
    feed_name = ann.get_inputs()[0].name
    ann_classes = np.concatenate(
        [ann.run(None, {feed_name: x[s : s + CHUNK]})[0].argmax(1) for s in range(0, len(x), CHUNK)]
    )
    session = Session(compile_model(reference.onnx_path, None, CompileOptions(), calibration=calibration).model)
    ours = np.concatenate(
        [session.run(x[s : s + CHUNK], max(STEPS)).per_step.argmax(-1) for s in range(0, len(x), CHUNK)], axis=1
    )
    spiking = convert(load_torch_model(reference), calibration, CHUNK)
    theirs = np.concatenate(
        [
            np.stack([h.argmax(1).numpy() for h in simulate(spiking, torch.from_numpy(x[s : s + CHUNK]), max(STEPS))])
            for s in range(0, len(x), CHUNK)
        ],
        axis=1,
    )
    clipped = _clipped_ann_predictions(load_torch_model(reference).eval(), calibration, x)
    return {
        "model": name,
        "samples": len(labels),
        "machine": _machine(),
        "ann": 100.0 * float(np.mean(ann_classes == labels)),
        "ann_clipped": 100.0 * float(np.mean(clipped == labels)),
        "steps": {str(t): compare(ann_classes, ours[t - 1], theirs[t - 1], labels) for t in STEPS},
    }


def section(results: list[dict], command: str) -> str:
    """The BENCHMARKS.md section of `measure`'s results."""
    lines = [
        "## The default compile against spikingjelly, image by image (issue 16)",
        "",
        f"Measured with `{command}` (CPU: {results[0]['machine']}); benchmarks/paired.py. Accuracy (%) of "
        "the default compile (ours) and of spikingjelly 2.0 ann2snn 99.9% (sj) on the same weights; the images "
        "only one of them gets right; McNemar's exact two-sided p on those (below 0.05: unlikely to be chance "
        "at one T; five T are compared, so 0.01 for all five together); the images each SNN classifies "
        "differently from its ANN. Clipped ANN: every ReLU clipped at its 99.9th percentile on the calibration "
        "images, the limit of spikingjelly's SNN apart from quantization.",
        "",
        "| model (ANN %, clipped ANN %, images) | T | ours | sj | right in ours only | right in sj only | p "
        "| ours ≠ ANN | sj ≠ ANN |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for result in results:
        label = f"{result['model']} ({result['ann']:.2f}, {result['ann_clipped']:.2f}, {result['samples']})"
        for t, row in result["steps"].items():
            lines.append(
                f"| {label} | {t} | {row['ours']:.2f} | {row['spikingjelly']:.2f} | {row['only_ours']} "
                f"| {row['only_spikingjelly']} | {row['p']:.3g} | {row['ours_differs_from_ann']} "
                f"| {row['spikingjelly_differs_from_ann']} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks paired", description=__doc__)
    parser.add_argument("models", nargs="+", help="zoo models that spikingjelly converts, e.g. fashion-cnn")
    parser.add_argument("--samples", type=int, default=10000, help="test images")
    add_output_arguments(parser)
    args = parser.parse_args(argv)
    results = [measure(name, args.samples) for name in args.models]
    command = " ".join(["python -m benchmarks paired", *(argv if argv is not None else sys.argv[1:])])
    publish(section(results, command), results, KEY, args.out, args.json_dir)
    return 0
