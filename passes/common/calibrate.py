"""calibrate: run the folded ANN with onnxruntime on calibration inputs; record the magnitude
statistics (max and a percentile of |y|) of every output a neuron will replace."""
from __future__ import annotations

from typing import Iterator

import numpy as np
import onnx_graphsurgeon as gs
import onnxruntime as ort
from tqdm import tqdm

from onnx_snn.arrays import check_input_shape
from onnx_snn.budget import default_budget
from onnx_snn.errors import SnnError
from onnx_snn.options import norm_statistic
from onnx_snn.passes.base import LayerStats, PassContext
from onnx_snn.passes.common.histogram import StreamingHistogram
from onnx_snn.passes.graph_utils import is_activation, node_label
from onnx_snn.providers import CPU, make_session

NAME = "calibrate"
CONTRACT = ("Pre: canonical, BN-folded graph. Post: graph unchanged; ctx.activation_stats maps every "
            "calibrated node's name to the max and percentile of |output| over the calibration inputs.")

#: unary ops whose outputs are calibrated (the ones a neuron will replace and normalize scales)
CALIBRATED_OPS = ("Relu", "LeakyRelu", "Abs", "Gelu", "HardSwish")
#: ops calibrated when two of their inputs are activations (the signGD product and quotient)
CALIBRATED_BINARY_OPS = ("Mul", "Div")
#: the share of the memory budget (runtime.memory.default_budget) that one probe run's outputs may
#: take: onnxruntime's intermediates, the histograms and their slices need the rest
OUTPUT_SHARE = 0.25
#: values per histogram update, which makes a few float64 copies of them (about 40 MB)
SLICE_VALUES = 2 ** 20


def is_calibrated(node: gs.Node) -> bool:
    """True for a node whose output gets a scale λ: a ReLU-like, GELU or HardSwish, or an activation
    product/quotient (a SiLU is one)."""
    if node.op in CALIBRATED_OPS:
        return True
    return node.op in CALIBRATED_BINARY_OPS and sum(is_activation(t) for t in node.inputs) == 2


def calibrated_nodes(graph: gs.Graph) -> list[gs.Node]:
    """The nodes whose outputs calibrate measures, in topological order."""
    return [n for n in graph.nodes if is_calibrated(n)]


def run(graph: gs.Graph, ctx: PassContext) -> gs.Graph:
    nodes = calibrated_nodes(graph)
    if not nodes:
        return graph
    if ctx.calibration is None:
        raise SnnError("calibration data is required to normalize the network; pass --calib FILE.npz",
                       path=ctx.source)
    q = _calibrated_percentile(ctx)
    session, output_names = _probe_session(graph, nodes)
    statistics = _Statistics(len(nodes), ctx.options.per_channel)
    seen, rows = 0, None
    progress = tqdm(desc="calibrate", unit="sample", disable=not ctx.show_progress, leave=False)
    for feed in _checked_feeds(graph, ctx):
        rows = rows or _samples_per_run(session, output_names, feed)
        batch = len(next(iter(feed.values())))
        for start in range(0, batch, rows):
            statistics.add(session.run(output_names, {name: value[start:start + rows] for name, value in feed.items()}))
        seen += batch
        progress.update(batch)
    progress.close()
    if seen == 0:
        raise SnnError("calibration data is empty; give at least one sample", path=ctx.source)
    for i, node in enumerate(nodes):
        ctx.activation_stats[node.name] = statistics.layer_stats(i, q)
    ctx.metadata["calibration_samples"] = seen
    return graph


def _checked_feeds(graph: gs.Graph, ctx: PassContext) -> Iterator[dict[str, np.ndarray]]:
    """The calibration batches (at most --calib-batches), each with one checked array per model input."""
    inputs = {i.name: i for i in graph.inputs}
    for batch_index, feed in enumerate(ctx.calibration):
        if ctx.options.calib_batches is not None and batch_index >= ctx.options.calib_batches:
            return
        feed = {name: check_input(name, value, inputs, ctx.source) for name, value in feed.items()}
        missing = set(inputs) - set(feed)
        if missing:
            raise SnnError(f"calibration data lacks input(s) {sorted(missing)}; give one array per model input",
                           path=ctx.source)
        yield feed


def _samples_per_run(session: ort.InferenceSession, names: list[str], feed: dict[str, np.ndarray]) -> int:
    """Samples per probe run: as many as keep its outputs (measured on the first sample of `feed`)
    within OUTPUT_SHARE of the default memory budget, at least one. The statistics do not depend
    on it (StreamingHistogram)."""
    per_sample = sum(output.nbytes for output in session.run(names, {k: v[:1] for k, v in feed.items()}))
    return max(1, int(default_budget() * OUTPUT_SHARE) // max(per_sample, 1))


class _Statistics:
    """One StreamingHistogram of |y| per calibrated output, made at its first batch: per channel
    (axis 1) where asked and the output has that axis, else one for the layer."""

    def __init__(self, outputs: int, per_channel: bool) -> None:
        self.per_channel = per_channel
        self.histograms: list[StreamingHistogram | None] = [None] * outputs
        self.by_channel = [False] * outputs

    def add(self, activations: list[np.ndarray]) -> None:
        """Count one probe run's outputs, SLICE_VALUES values at a time."""
        for i, activation in enumerate(activations):
            if self.histograms[i] is None:
                self.by_channel[i] = self.per_channel and activation.ndim >= 2
                self.histograms[i] = StreamingHistogram(channels=activation.shape[1] if self.by_channel[i] else 1)
            for rows in _magnitude_rows(activation, self.by_channel[i]):
                self.histograms[i].update(rows)

    def layer_stats(self, i: int, q: float) -> LayerStats:
        """The max and q-th percentile of output `i` (per channel, or scalars)."""
        hist = self.histograms[i]
        shape = hist.max.shape if self.by_channel[i] else ()
        return LayerStats(max=hist.max.reshape(shape), percentile=hist.percentile(q).reshape(shape),
                          percentile_q=q, count=int(hist.total[0]))


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
            yield np.abs(moved[start:start + step]).reshape(-1, activation.shape[1])
    else:
        flat = activation.reshape(-1, 1)
        for start in range(0, len(flat), SLICE_VALUES):
            yield np.abs(flat[start:start + SLICE_VALUES])


def _probe_session(graph: gs.Graph, nodes: list[gs.Node]) -> tuple[ort.InferenceSession, list[str]]:
    """An onnxruntime session of the graph whose outputs are the calibrated tensors."""
    probe = graph.copy()
    by_name = {n.name: n for n in probe.nodes}
    names = []
    for node in nodes:
        out = by_name[node.name].outputs[0] if node.name in by_name else None
        if out is None:
            raise SnnError("calibrated node is unnamed; canonicalize should name every node", node=node_label(node),
                           op=node.op)
        out.dtype = out.dtype or np.float32
        names.append(out.name)
    probe.outputs = [t for t in probe.tensors().values() if t.name in set(names)]
    probe.outputs.sort(key=lambda t: names.index(t.name))
    return make_session(gs.export_onnx(probe).SerializeToString(), [CPU], budgeted=True), names


_DTYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64}


def check_input(name: str, value: np.ndarray, inputs: dict[str, gs.Variable], source: str) -> np.ndarray:
    """Return `value` as float32 if it fits the model input `name`, else raise SnnError saying why."""
    if name not in inputs:
        raise SnnError(f"calibration data has key '{name}' but the model's inputs are {sorted(inputs)}",
                       path=source)
    spec = inputs[name]
    value = np.asarray(value)
    if value.dtype.kind != "f":
        raise SnnError(f"calibration input '{name}' has dtype {value.dtype}, expected float32; "
                       "convert and scale it as for the ANN", path=source)
    check_input_shape(name, value, list(spec.shape) if spec.shape is not None else None, "calibration input", source)
    return value.astype(np.float32, copy=False)
