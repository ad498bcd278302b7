"""calibrate: run the folded ANN with onnxruntime on calibration inputs; record the magnitude
statistics (max and a percentile of |y|) of every output a neuron will replace."""

from __future__ import annotations

import math
from itertools import islice
from typing import Iterator

import numpy as np
import onnx_graphsurgeon as gs
from tqdm import tqdm

from onnx_snn.arrays import check_input_shape
from onnx_snn.budget import default_budget
from onnx_snn.errors import SnnError
from onnx_snn.options import norm_statistic
from onnx_snn.passes.base import LayerStats, PassContext, declare, require
from onnx_snn.passes.common.histogram import StreamingHistogram
from onnx_snn.passes.graph_utils import is_activation, node_axes, node_error
from onnx_snn.passes.op_support import relu_cap
from onnx_snn.probe import observe

SPEC = declare("calibrate", needs={"bn_folded"}, provides={"calibrated"})

#: unary ops whose outputs are calibrated (the ones a neuron will replace and normalize scales)
CALIBRATED_OPS = ("Relu", "LeakyRelu", "Abs", "Gelu", "HardSwish")
#: ops calibrated when two of their inputs are activations (the signGD product and quotient)
CALIBRATED_BINARY_OPS = ("Mul", "Div")
#: the share of the memory budget (runtime.memory.default_budget) that one probe run's outputs may
#: take: onnxruntime's intermediates, the histograms and their slices need the rest
OUTPUT_SHARE = 0.25
#: values per histogram update, which makes a few float64 copies of them (about 40 MB)
SLICE_VALUES = 2**20
#: per-channel statistics need many values per channel: an output gets them per channel only with
#: at least this many values per sample and channel (a feature map of 4x4 and up). A Gemm's
#: channel sees one value a sample, and its max over a few hundred calibration samples is
#: exceeded by unseen inputs, which its neurons then clip (a relu6 MLP on digits, 256 samples:
#: relative logit error 0.038 at T = 256 per channel, 0.003 per layer)
MIN_VALUES_PER_SAMPLE = 16


def is_calibrated(node: gs.Node) -> bool:
    """True for a node whose output gets a scale λ: a ReLU-like, GELU or HardSwish, a capped ReLU
    Clip(x, 0, c) (IF neurons scale it by c where it binds), or an activation product/quotient
    (a SiLU is one)."""
    if node.op in CALIBRATED_OPS or relu_cap(node) is not None:
        return True
    return node.op in CALIBRATED_BINARY_OPS and sum(is_activation(t) for t in node.inputs) == 2


def square_per_position(node: gs.Node) -> bool:
    """True for a signGD `square` neuron Mul(u, u) on a sequence u [N, tokens, D] whose every
    reader is a ReduceMean or ReduceSum that leaves axis 1 alone (a LayerNorm's variance over the
    features, decompose._normalized; GroupNorm's [N, groups, -1] view): its scale may then differ
    from token to token, which the reduction carries through. Tokens differ in scale where image
    rows do not: an untrained ViT's constant class token is 30x smaller than its image tokens, so
    at one scale for the layer its square's target sits below the neuron's resolution (its
    LayerNorm's relative error at T = 256: 0.51 per layer, 0.005 per token). Rank-4 inputs (a
    ConvNeXt's channels-last LayerNorm, [N, H, W, C]) stay per layer: per image row, the trained
    fashion-convnext lost 4 points at T = 8 (its rows' targets grow out of early reach)."""
    u = node.inputs[0] if node.op == "Mul" and len(node.inputs) == 2 else None
    if u is None or node.inputs[1] is not u or not is_activation(u) or u.shape is None or len(u.shape) != 3:
        return False
    readers = node.outputs[0].outputs
    return bool(readers) and all(_reduces_other_than_axis_1(reader) for reader in readers)


def _reduces_other_than_axis_1(node: gs.Node) -> bool:
    """True for a ReduceMean/ReduceSum (keepdims) over known axes that do not include axis 1."""
    if node.op not in ("ReduceMean", "ReduceSum") or not node.attrs.get("keepdims", 1):
        return False
    axes = node_axes(node, 1)
    return axes is not None and bool(axes) and 1 not in axes


def calibrated_nodes(graph: gs.Graph) -> list[gs.Node]:
    """The nodes whose outputs calibrate measures, in topological order."""
    return [n for n in graph.nodes if is_calibrated(n)]


def postcondition(graph: gs.Graph, ctx: PassContext) -> None:
    """Every calibrated node has its statistics."""
    missing = [n.name for n in calibrated_nodes(graph) if n.name not in ctx.activation_stats]
    require(not missing, f"no statistics for {missing[:3]}")


def run(graph: gs.Graph, ctx: PassContext) -> gs.Graph:
    """Pre: canonical, BN-folded graph. Post: graph unchanged; ctx.activation_stats maps every
    calibrated node's name to the max and percentile of |output| over the calibration inputs."""
    nodes = calibrated_nodes(graph)
    if not nodes:
        return graph
    if ctx.calibration is None:
        raise SnnError("calibration data is required to normalize the network; pass --calib FILE.npz", path=ctx.source)
    q = _calibrated_percentile(ctx)
    per_channel = ctx.options.channel_scales(ctx.state.neuron or ctx.options.neuron)
    statistics = _Statistics([per_channel or square_per_position(node) for node in nodes])
    seen = 0
    progress = tqdm(desc="calibrate", unit="sample", disable=not ctx.show_progress, leave=False)
    for samples, activations in observe(
        graph, [n.outputs[0] for n in nodes], _checked_feeds(graph, ctx), samples_per_run=_samples_per_run
    ):
        _refuse_non_finite(nodes, activations, ctx)
        statistics.add(activations)
        del activations  # before the next run: one run's outputs at a time
        seen += samples
        progress.update(samples)
    progress.close()
    if seen == 0:
        raise SnnError("calibration data is empty; give at least one sample", path=ctx.source)
    for i, node in enumerate(nodes):
        ctx.activation_stats[node.name] = statistics.layer_stats(i, q)
    ctx.state.calibration_samples = seen
    return graph


def _refuse_non_finite(nodes: list[gs.Node], activations: list[np.ndarray], ctx: PassContext) -> None:
    """Raise SnnError naming the first node whose output holds inf or NaN on the calibration data."""
    for node, activation in zip(nodes, activations):
        if not np.isfinite(activation).all():
            raise node_error(
                ctx,
                node,
                "the ANN's activation is not finite (inf or NaN) on the calibration data",
                hint="the ANN itself overflows here: check its weights and that the calibration data is scaled "
                "as in training",
            )


def _checked_feeds(graph: gs.Graph, ctx: PassContext) -> Iterator[dict[str, np.ndarray]]:
    """The calibration batches (at most --calib-batches), each with one checked array per model input."""
    inputs = {i.name: i for i in graph.inputs}
    for feed in calibration_batches(ctx):
        feed = {name: check_input(name, value, inputs, ctx.source) for name, value in feed.items()}
        missing = set(inputs) - set(feed)
        if missing:
            raise SnnError(
                f"calibration data lacks input(s) {sorted(missing)}; give one array per model input", path=ctx.source
            )
        yield feed


def calibration_batches(ctx: PassContext) -> Iterator[dict[str, np.ndarray]]:
    """The calibration batches as given, at most --calib-batches of them (no later one is read)."""
    assert ctx.calibration is not None  # callers refuse a run without calibration data first
    return islice(ctx.calibration, ctx.options.calib_batches)


def _samples_per_run(sample_bytes: int) -> int:
    """Samples per probe run: as many as keep its outputs (`sample_bytes` a sample, as the probe
    measures them) within OUTPUT_SHARE of the default memory budget, at least one. The
    statistics do not depend on it (StreamingHistogram)."""
    return max(1, int(default_budget() * OUTPUT_SHARE) // max(sample_bytes, 1))


class _Statistics:
    """One StreamingHistogram of |y| per calibrated output, made at its first batch: per channel
    (axis 1) where `per_channel` asks it for that output and the output has
    MIN_VALUES_PER_SAMPLE values per sample and channel, else one for the layer."""

    def __init__(self, per_channel: list[bool]) -> None:
        self.per_channel = per_channel
        self.histograms: list[StreamingHistogram | None] = [None] * len(per_channel)
        self.by_channel = [False] * len(per_channel)

    def add(self, activations: list[np.ndarray]) -> None:
        """Count one probe run's outputs, SLICE_VALUES values at a time."""
        for i, activation in enumerate(activations):
            hist = self.histograms[i]
            if hist is None:
                per_sample = math.prod(activation.shape[2:])  # values per sample and channel
                self.by_channel[i] = (
                    self.per_channel[i] and activation.ndim >= 3 and per_sample >= MIN_VALUES_PER_SAMPLE
                )
                channels = activation.shape[1] if self.by_channel[i] else 1
                hist = self.histograms[i] = StreamingHistogram(channels=channels)
            for rows in _magnitude_rows(activation, self.by_channel[i]):
                hist.update(rows)

    def layer_stats(self, i: int, q: float) -> LayerStats:
        """The max and q-th percentile of output `i` (per channel, or scalars)."""
        hist = self.histograms[i]
        assert hist is not None  # made by add at the first batch
        shape = hist.max.shape if self.by_channel[i] else ()
        return LayerStats(
            max=hist.max.reshape(shape),
            percentile=hist.percentile(q).reshape(shape),
            percentile_q=q,
            count=int(hist.total[0]),
        )


def _calibrated_percentile(ctx: PassContext) -> float:
    """The percentile to record: the one --norm asks for, else 99.9 (for the metadata and reports)."""
    kind, value = norm_statistic(ctx.options.norm)
    return value if kind == "percentile" else 99.9


def _magnitude_rows(activation: np.ndarray, by_channel: bool) -> Iterator[np.ndarray]:
    """|activation| as [values, channels] rows of about SLICE_VALUES values each: one column per
    channel (axis 1), or one column for the layer."""
    if by_channel:
        moved = np.moveaxis(activation, 1, -1)
        step = max(1, SLICE_VALUES // max(moved[0].size, 1))
        for start in range(0, len(moved), step):
            yield np.abs(moved[start : start + step]).reshape(-1, activation.shape[1])
    else:
        flat = activation.reshape(-1, 1)
        for start in range(0, len(flat), SLICE_VALUES):
            yield np.abs(flat[start : start + SLICE_VALUES])


_DTYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64}


def check_input(name: str, value: np.ndarray, inputs: dict[str, gs.Variable], source: str) -> np.ndarray:
    """Return `value` as float32 if it fits the model input `name`, else raise SnnError saying why."""
    if name not in inputs:
        raise SnnError(f"calibration data has key '{name}' but the model's inputs are {sorted(inputs)}", path=source)
    spec = inputs[name]
    value = np.asarray(value)
    if value.dtype.kind != "f":
        raise SnnError(
            f"calibration input '{name}' has dtype {value.dtype}, expected float32; "
            "convert and scale it as for the ANN",
            path=source,
        )
    check_input_shape(name, value, list(spec.shape) if spec.shape is not None else None, "calibration input", source)
    return value.astype(np.float32, copy=False)
