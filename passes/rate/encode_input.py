"""encode_input: with --encoding poisson, every graph input passes an `snn.PoissonEncoder`.

The encoder turns x ∈ [0, 1] into spikes of rate max_rate·x (compiler/ir/poisson.py); a Mul by
1/max_rate after it (left out for max_rate 1) gives the network spikes whose mean is x, the
analog value it was normalized for. Input k gets the seed `seed + k·2^32` (the generator's key is
64 bits): the inputs of one model draw different streams, and no two --seed values share one.
Poisson needs the inputs in [0, 1]: negative calibration data is refused, and data above
1/max_rate, whose rate saturates, is noted.
"""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from onnx_snn.errors import SnnError
from onnx_snn.passes.base import PassContext, declare, require
from onnx_snn.passes.common.calibration_inputs import calibration_extremes
from onnx_snn.passes.graph_utils import add_encoder, fresh_name

SPEC = declare("encode_input", needs={"spiking"}, provides={"encoded_input"})


def postcondition(graph: gs.Graph, ctx: PassContext) -> None:
    """Every float input is read only by snn.PoissonEncoder nodes."""
    for x in graph.inputs:
        if x.dtype == np.float32:
            require(all(r.op == "PoissonEncoder" for r in x.outputs), f"input {x.name} is read by another op")


def run(graph: gs.Graph, ctx: PassContext) -> gs.Graph:
    """Pre: spikified IF graph. Post: with --encoding poisson, each graph input feeds only an
    snn.PoissonEncoder (one step, t0 = 0; time_batch sets T) whose spikes, scaled by 1/max_rate,
    replace it everywhere; with analog, the graph is unchanged."""
    options = ctx.options
    _check_range(ctx)
    one_step = gs.Constant(fresh_name("one_timestep"), np.asarray(1, dtype=np.int64))
    no_steps_done = gs.Constant(fresh_name("no_steps_done"), np.asarray(0, dtype=np.int64))
    for k, x in enumerate(graph.inputs):
        if x.dtype != np.float32:
            continue
        readers = list(x.outputs)
        spikes = add_encoder(
            graph,
            "PoissonEncoder",
            [x, one_step, no_steps_done],
            f"{x.name}_spikes",
            np.float32,
            max_rate=float(options.max_rate),
            seed=options.seed + k * 2**32,
        )
        encoded = spikes
        if options.max_rate != 1.0:
            encoded = gs.Variable(fresh_name(f"{x.name}_encoded"), dtype=np.float32, shape=x.shape)
            unit = gs.Constant(fresh_name("per_rate"), np.asarray(1.0 / options.max_rate, dtype=np.float32))
            graph.nodes.append(
                gs.Node("Mul", name=fresh_name(f"{x.name}_rate_scale"), inputs=[spikes, unit], outputs=[encoded])
            )
        for node in readers:
            node.inputs = [encoded if t is x else t for t in node.inputs]
    return graph.toposort()


def _check_range(ctx: PassContext) -> None:
    """Refuse negative calibration inputs; note those whose rate saturates."""
    seen = calibration_extremes(ctx)
    if seen is None:
        return
    low, high = seen
    if low < 0.0:
        raise SnnError(
            f"--encoding poisson needs inputs in [0, 1], but the calibration data reach {low:.6g}",
            path=ctx.source,
            hint="scale the inputs into [0, 1]",
        )
    if high * ctx.options.max_rate > 1.0:
        ctx.note(
            f"calibration inputs reach {high:.6g}: at --max-rate {ctx.options.max_rate:g} inputs above "
            f"{1.0 / ctx.options.max_rate:.6g} spike at every step (rate saturated)"
        )
