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
from onnx_snn.ir.neurons import attach_functions
from onnx_snn.options import spikenorm_statistic
from onnx_snn.passes.base import LayerStats, PassContext
from onnx_snn.passes.common import normalize, time_batch
from onnx_snn.passes.common.histogram import StreamingHistogram
from onnx_snn.passes.rate import encode_input, spikify
from onnx_snn.providers import CPU, make_session

NAME = "spikenorm"
CONTRACT = ("Pre: calibrated IF graph. Post: graph unchanged; with --norm spikenorm[:P], every ReLU's "
            "statistics are those of its IF neurons' input current in the SNN whose earlier layers are balanced.")


def run(graph: gs.Graph, ctx: PassContext) -> gs.Graph:
    statistic = spikenorm_statistic(ctx.options.norm)
    if statistic is None:
        return graph
    q = statistic[1] if statistic[0] == "percentile" else 99.9
    layers = [n for n in graph.nodes if n.op == "Relu"]
    for node in tqdm(layers, desc="spikenorm", unit="layer", disable=not ctx.show_progress, leave=False):
        histogram = StreamingHistogram()
        for current in _input_currents(graph, ctx, node):
            histogram.update(current.reshape(-1, 1))
        ctx.activation_stats[node.name] = LayerStats(max=histogram.max.reshape(()),
                                                     percentile=histogram.percentile(q).reshape(()),
                                                     percentile_q=q, count=int(histogram.total[0]))
    ctx.metadata["spikenorm"] = {"timesteps": ctx.options.timesteps, "layers": [n.name for n in layers]}
    return graph


def _input_currents(graph: gs.Graph, ctx: PassContext, layer: gs.Node):
    """The input current of `layer`'s IF neurons, in ANN units, for each calibration batch over T steps."""
    trial_ctx = PassContext(options=ctx.options, source=ctx.source, calibration=ctx.calibration,
                            activation_stats=dict(ctx.activation_stats), show_progress=False,
                            metadata={"neuron": "if"})
    unit = np.ones(())
    trial_ctx.activation_stats[layer.name] = LayerStats(max=unit, percentile=unit, percentile_q=100.0, count=0)
    trial = graph.copy()
    for step in (normalize, spikify, encode_input, time_batch):
        trial = step.run(trial, trial_ctx)
    neuron = next(n for n in trial.nodes if n.name == layer.name)
    current = neuron.inputs[0]
    current.dtype = current.dtype or np.float32
    trial.outputs = [current]
    model = attach_functions(gs.export_onnx(trial.cleanup(), do_type_check=False))
    session = make_session(model.SerializeToString(), [CPU])
    steps = np.asarray(ctx.options.timesteps, dtype=np.int64)
    for index, feed in enumerate(ctx.calibration):
        if ctx.options.calib_batches is not None and index >= ctx.options.calib_batches:
            break
        yield session.run([current.name], {**feed, TIMESTEPS_INPUT: steps})[0]
