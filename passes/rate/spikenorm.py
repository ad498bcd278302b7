"""spikenorm: threshold balancing with spiking input (Sengupta et al. 2019, "Going deeper in
spiking neural networks"), for IF nets.

Layer by layer in topological order, the partially converted SNN (every earlier layer already
balanced, the input encoded as compiled: analog or Poisson) runs on the calibration data for the
compiled T; the layer's threshold becomes the max (`--norm spikenorm`) or a percentile
(`--norm spikenorm:99.9`) of the input current its IF neurons receive over all samples, steps
and neurons. In this compiler a threshold is a scale λ (normalize divides the layer by it and
fires at 1), so the pass replaces the ANN statistics of calibrate with these and normalize
applies them: the same network as thresholds θ_l = λ_l with outputs back in ANN units.
"""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs
from tqdm import tqdm

from onnx_snn.ir.contract import TIMESTEPS_INPUT
from onnx_snn.options import spikenorm_statistic
from onnx_snn.passes.base import CompileState, LayerStats, Pass, PassContext, declare, recorded, require, run_passes
from onnx_snn.passes.common import time_batch
from onnx_snn.passes.common.calibrate import calibration_batches
from onnx_snn.passes.common.histogram import StreamingHistogram
from onnx_snn.probe import observe

SPEC = declare("spikenorm", needs={"calibrated"}, provides={"spike_balanced"})


def postcondition(graph: gs.Graph, ctx: PassContext) -> None:
    """Every ReLU has one balanced threshold, finite, from the spiking currents."""
    record = recorded(ctx.state.rate.spikenorm, "no spikenorm record")
    for name in record["layers"]:
        stats = ctx.activation_stats.get(name)
        require(stats is not None and stats.max.shape == () and np.isfinite(stats.max), f"{name} is not balanced")


def snn_builders(pending: list[Pass]) -> list[Pass]:
    """The passes of the pipeline after spikenorm that turn the balanced graph into the SNN it
    will be (normalize .. time_batch, the encoder included when the pipeline has it): spikenorm
    runs them on a trial copy, so the trial SNN is the compiled one by construction."""
    names = [step.SPEC.name for step in pending]
    return list(pending[: names.index(time_batch.SPEC.name) + 1])


def run(graph: gs.Graph, ctx: PassContext) -> gs.Graph:
    """Pre: calibrated IF graph. Post: graph unchanged; with --norm spikenorm[:P], every ReLU's
    statistics are those of its IF neurons' input current in the SNN whose earlier layers are
    balanced."""
    statistic = spikenorm_statistic(ctx.options.norm)
    assert statistic is not None, "the pass manager runs spikenorm only with --norm spikenorm[:P]"
    q = statistic[1] if statistic[0] == "percentile" else 99.9
    layers = [n for n in graph.nodes if n.op == "Relu"]
    for node in tqdm(layers, desc="spikenorm", unit="layer", disable=not ctx.show_progress, leave=False):
        histogram = StreamingHistogram()
        for current in _input_currents(graph, ctx, node):
            histogram.update(current.reshape(-1, 1))
        ctx.activation_stats[node.name] = LayerStats(
            max=histogram.max.reshape(()),
            percentile=histogram.percentile(q).reshape(()),
            percentile_q=q,
            count=int(histogram.total[0]),
        )
    ctx.state.rate.spikenorm = {"timesteps": ctx.options.timesteps, "layers": [n.name for n in layers]}
    return graph


def _input_currents(graph: gs.Graph, ctx: PassContext, layer: gs.Node):
    """The input current of `layer`'s IF neurons, in ANN units, for each calibration batch over T steps."""
    trial_ctx = PassContext(
        options=ctx.options,
        source=ctx.source,
        calibration=ctx.calibration,
        activation_stats=dict(ctx.activation_stats),
        show_progress=False,
        state=CompileState(neuron="if"),
    )
    unit = np.ones(())
    trial_ctx.activation_stats[layer.name] = LayerStats(max=unit, percentile=unit, percentile_q=100.0, count=0)
    trial = graph.copy()
    trial = run_passes(trial, trial_ctx, snn_builders(ctx.pending))
    neuron = next(n for n in trial.nodes if n.name == layer.name)
    steps = {TIMESTEPS_INPUT: np.asarray(ctx.options.timesteps, dtype=np.int64)}
    for _, (current,) in observe(trial, [neuron.inputs[0]], calibration_batches(ctx), steps, prune=True):
        yield current
