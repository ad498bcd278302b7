"""PNG plots of evaluations: accuracy over timesteps, firing rate per layer, accuracy over input rate.

matplotlib (the `plot` extra) is imported on first use and drawn with its non-interactive Agg
canvas, without pyplot or a global backend switch, so that the rest of the package works
without it. Every plot is written atomically (a temporary file beside it, then a rename) and
its path returned.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from onnx_snn.errors import SnnError
from onnx_snn.outputs import atomic_write

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from onnx_snn.runtime.energy import EnergyReport
    from onnx_snn.runtime.session import EvalReport

DPI = 150
ACCURACY_PNG = "accuracy.png"
FIRING_RATE_PNG = "firing_rate.png"
MAX_LABEL = 32  # longer layer names keep their end after an ellipsis


def require_matplotlib() -> None:
    """Return when matplotlib can be imported; else raise a one-line SnnError with the install command."""
    _figure_classes()


def plot_accuracy(report: EvalReport, path: str | os.PathLike) -> Path:
    """Accuracy (%) of a rate-coded report at t = 1..T on a log-2 axis, with the ANN's accuracy as a
    horizontal line and the argmax agreement with it (%) as a second curve when the report has them."""
    steps = list(range(1, report.timesteps + 1))
    figure, axes = _new_figure(7.0, 4.5)
    axes.plot(
        steps,
        [100 * a for a in report.accuracy],
        color="tab:blue",
        lw=2,
        marker="o" if len(steps) <= 16 else None,
        ms=4,
        label="SNN accuracy",
    )
    curves = [100 * min(report.accuracy)]
    if report.agreement is not None:
        axes.plot(
            steps,
            [100 * a for a in report.agreement],
            color="tab:orange",
            lw=1.5,
            ls="--",
            label="SNN–ANN argmax agreement",
        )
        curves.append(100 * min(report.agreement))
    if report.ann_accuracy is not None:
        axes.axhline(
            100 * report.ann_accuracy,
            color="tab:gray",
            lw=1.2,
            ls=":",
            label=f"ANN accuracy ({100 * report.ann_accuracy:.2f}%)",
        )
        curves.append(100 * report.ann_accuracy)
    if report.timesteps > 2:
        axes.set_xscale("log", base=2)
        axes.set_xlim(0.9, 1.1 * report.timesteps)
    else:
        axes.set_xlim(0.5, report.timesteps + 0.5)
    ticks = report.reported_steps()
    _x_ticks(axes, ticks, [str(t) for t in ticks])
    axes.set_ylim(_floor_to(min(curves), 10), 100)
    axes.set_xlabel("timesteps T")
    axes.set_ylabel("accuracy / agreement (%)" if report.agreement is not None else "accuracy (%)")
    axes.set_title(f"Accuracy over timesteps ({report.samples} samples, final {100 * report.accuracy[-1]:.2f}%)")
    axes.grid(True, which="major", alpha=0.3)
    figure.legend(loc="outside lower center", ncols=2, fontsize=9, frameon=False)  # below the axes: never over a curve
    return _save(figure, path)


def plot_firing_rates(energy: EnergyReport, path: str | os.PathLike) -> Path:
    """Firing rate (spikes per neuron per step) of every neuron layer as horizontal bars, top to bottom
    in graph order, with the neuron-weighted mean over all layers as a dashed line."""
    if not energy.layers:
        raise SnnError("the energy report has no neuron layers to plot")
    prefix, names = _layer_labels([layer.name for layer in energy.layers])
    names = [f"{name} ({layer.neurons})" for name, layer in zip(names, energy.layers)]
    rates = [layer.firing_rate for layer in energy.layers]
    figure, axes = _new_figure(7.5, max(3.6, 1.6 + 0.32 * len(names)))
    positions = range(len(names))
    axes.barh(positions, rates, color="tab:blue", height=0.7)
    axes.set_yticks(list(positions), names, fontsize=8 if len(names) > 12 else 9)
    axes.invert_yaxis()  # graph order reads top to bottom
    top = max(rates + [energy.firing_rate]) or 1.0
    for y, rate in zip(positions, rates):
        axes.text(
            rate + 0.01 * top,
            y,
            f"{rate:.3g}",
            va="center",
            fontsize=7 if len(names) > 12 else 8,
            bbox={"facecolor": "white", "edgecolor": "none", "pad": 1},
        )  # readable over the mean line
    axes.axvline(
        energy.firing_rate, color="tab:red", ls="--", lw=1.2, label=f"mean over all neurons ({energy.firing_rate:.3g})"
    )
    axes.set_xlim(0, 1.15 * top)
    axes.set_xlabel("firing rate (spikes per neuron per step)")
    axes.set_ylabel(f"layer{f' in {prefix}' if prefix else ''} (neurons)")
    axes.set_title(f"Firing rate per layer at T = {energy.timesteps}")
    axes.grid(True, axis="x", alpha=0.3)
    figure.legend(loc="outside lower center", frameon=False)  # below the axes: never over a bar
    return _save(figure, path)


def plot_rate_sweep(
    max_rates: Sequence[float],
    accuracies_by_label: Mapping[str, Sequence[float]],
    path: str | os.PathLike,
    timesteps: int,
    ann_accuracy: float | None = None,
) -> Path:
    """Accuracy of Poisson-coded SNNs over the maximum input firing rate, one curve per label.

    `max_rates` are the spike probabilities per step of an input of 1 (in (0, 1], plotted on a log
    axis, typically 0.02..1); `accuracies_by_label` maps a curve's label (e.g. "max norm",
    "spikenorm") to its accuracies as fractions in [0, 1], one per rate in `max_rates` order;
    `timesteps` is the T they were evaluated at (shown in the title); `ann_accuracy` (a fraction),
    when given, is drawn as a horizontal reference line. SnnError on mismatched lengths or rates
    outside (0, 1].
    """
    rates = [float(r) for r in max_rates]
    if not rates or not accuracies_by_label:
        raise SnnError("plot_rate_sweep needs at least one rate and one curve")
    if not all(0 < r <= 1 for r in rates):
        raise SnnError(f"maximum input rates must lie in (0, 1], got {rates}")
    for label, accuracies in accuracies_by_label.items():
        if len(accuracies) != len(rates):
            raise SnnError(f"curve '{label}' has {len(accuracies)} accuracies for {len(rates)} rates")
    figure, axes = _new_figure(7.0, 4.5 + 0.2 * len(accuracies_by_label))
    lowest = 100.0
    for label, accuracies in accuracies_by_label.items():
        percent = [100 * float(a) for a in accuracies]
        axes.plot(rates, percent, marker="o", ms=4, lw=1.8, label=label)
        lowest = min([lowest] + [p for p in percent if math.isfinite(p)])
    if ann_accuracy is not None:
        axes.axhline(100 * ann_accuracy, color="tab:gray", lw=1.2, ls=":", label=f"ANN ({100 * ann_accuracy:.2f}%)")
        lowest = min(lowest, 100 * ann_accuracy)
    axes.set_xscale("log")
    ticks = sorted(set(rates))
    _x_ticks(axes, ticks, [f"{r:g}" for r in ticks])
    axes.set_xlim(min(rates) / 1.2, max(rates) * 1.2)
    axes.set_ylim(_floor_to(lowest, 10), 100)
    axes.set_xlabel("maximum input firing rate (spikes per step for an input of 1)")
    axes.set_ylabel("accuracy (%)")
    axes.set_title(f"Accuracy over maximum input rate (Poisson coding, T = {timesteps})")
    axes.grid(True, which="major", alpha=0.3)
    figure.legend(loc="outside lower center", ncols=2, fontsize=9, frameon=False)  # below the axes: never over a curve
    return _save(figure, path)


def write_eval_plots(report: EvalReport, directory: str | os.PathLike, firing_rates: bool) -> list[Path]:
    """Create `directory` if needed and write accuracy.png there, and firing_rate.png when
    `firing_rates` is set and the report has an energy report; the paths written."""
    require_matplotlib()
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SnnError(f"cannot create the plot folder ({exc.strerror or exc})", path=str(directory)) from None
    written = [plot_accuracy(report, directory / ACCURACY_PNG)]
    if firing_rates and report.energy is not None:
        written.append(plot_firing_rates(report.energy, directory / FIRING_RATE_PNG))
    return written


def _figure_classes() -> tuple[type, type]:
    """matplotlib's Figure and Agg canvas classes; SnnError when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401 - first, so that a missing package fails here and not on a submodule
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise SnnError('plotting needs matplotlib, which is not installed; pip install "onnx-snn[plot]"') from None
    return Figure, FigureCanvasAgg


def _new_figure(width: float, height: float) -> tuple[Figure, Axes]:
    """A figure of `width` x `height` inches on an Agg canvas, with one axes."""
    figure_class, canvas_class = _figure_classes()
    figure = figure_class(figsize=(width, height), dpi=DPI, layout="constrained")
    canvas_class(figure)
    return figure, figure.add_subplot()


def _save(figure: Figure, path: str | os.PathLike) -> Path:
    """Write `figure` as a PNG at `path` atomically; SnnError if its folder cannot be written."""
    atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=DPI))
    return Path(path)


def _x_ticks(axes: Axes, ticks: Sequence[float], labels: list[str]) -> None:
    """Major x ticks exactly at `ticks` with `labels`, no minor ticks (log axes would add their own)."""
    from matplotlib.ticker import FixedFormatter, FixedLocator, NullLocator

    axes.xaxis.set_major_locator(FixedLocator(ticks))
    axes.xaxis.set_major_formatter(FixedFormatter(labels))
    axes.xaxis.set_minor_locator(NullLocator())


def _floor_to(value: float, step: float) -> float:
    """The largest multiple of `step` at least 1 below `value`, at least 0 (the lower y limit of a % axis)."""
    return max(0.0, step * math.floor((value - 1) / step)) if math.isfinite(value) else 0.0


def _layer_labels(names: list[str]) -> tuple[str, list[str]]:
    """The folder-like prefix ending in "/" that all of `names` share (kept only if every name keeps
    something), and the names without it, each cut to its last MAX_LABEL characters after an
    ellipsis (the end of an exported name is its most specific part)."""
    prefix = os.path.commonprefix(names)
    prefix = prefix[: prefix.rfind("/") + 1]
    if len(prefix) <= 1 or any(len(name) == len(prefix) for name in names):
        prefix = ""
    rest = [name[len(prefix) :] for name in names]
    return prefix, [name if len(name) <= MAX_LABEL else "…" + name[-(MAX_LABEL - 1) :] for name in rest]
