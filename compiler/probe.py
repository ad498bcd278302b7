"""probe: run a graph with onnxruntime and read some of its intermediate tensors.

The one way the passes look inside a network they compile (calibrate, ttfs_audit, spikenorm,
signgd_offsets): a copy of the graph whose outputs are the observed tensors, exported (with the
`snn` function definitions when it has `snn` ops) and run in one budgeted CPU session, feed by
feed. A feed's samples (axis 0) can be run a few at a time, so that one run's outputs fit the
share of the memory budget the caller gives them; what a caller keeps of them is its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import NamedTuple

import numpy as np
import onnx_graphsurgeon as gs
import onnxruntime as ort

from onnx_snn.errors import CompilerBug
from onnx_snn.ir.function_parts import SNN_DOMAIN
from onnx_snn.ir.neurons import attach_functions
from onnx_snn.providers import CPU, make_session


class Run(NamedTuple):
    """One onnxruntime run of the probe: the samples of its feed it covered, and the observed
    arrays, one per observed tensor in the order asked (a tensor asked twice comes twice)."""

    samples: int
    arrays: list[np.ndarray]


def observe(
    graph: gs.Graph,
    tensors: Sequence[gs.Tensor | str],
    feeds: Iterable[Mapping[str, np.ndarray]],
    constants: Mapping[str, np.ndarray] | None = None,
    *,
    samples_per_run: Callable[[int], int] | None = None,
    prune: bool = False,
) -> Iterator[Run]:
    """Run `graph` on each of `feeds` and yield the values of `tensors` (tensors of `graph`, or
    their names), one Run per onnxruntime run. `graph` is not changed.

    `constants` join every run's feed whole (the timesteps of an SNN, say); the arrays of `feeds`
    hold samples on axis 0, the same number in each array of a feed.
    `samples_per_run`: None runs each feed whole (one Run per feed); else it maps the bytes of one
    sample's observed arrays (measured by one extra run of the first sample of the first feed
    that has one) to the samples per run, and each feed is run in slices of that many samples.
    `prune` drops the nodes that no observed tensor needs (gs cleanup) before the export.
    A feed without samples yields no Run when it is sliced. The session is made when the first
    Run is asked for. The generator keeps no Run's arrays: a caller that drops them before
    asking for the next Run holds at most one run's outputs.
    """
    session, names = _session(graph, tensors, prune)
    constants = dict(constants or {})
    rows = None
    for feed in feeds:
        batch = len(next(iter(feed.values()))) if feed else 0
        if samples_per_run is None or not feed:
            yield Run(batch, session.run(names, {**feed, **constants}))
            continue
        if batch and rows is None:
            first = {name: value[:1] for name, value in feed.items()}
            rows = max(1, samples_per_run(sum(a.nbytes for a in session.run(names, {**first, **constants}))))
        for start in range(0, batch, rows or 1):
            assert rows is not None  # set above for a non-empty batch
            part = {name: value[start : start + rows] for name, value in feed.items()}
            yield Run(min(rows, batch - start), session.run(names, {**part, **constants}))


def _session(
    graph: gs.Graph, tensors: Sequence[gs.Tensor | str], prune: bool
) -> tuple[ort.InferenceSession, list[str]]:
    """A budgeted CPU session of a copy of `graph` whose outputs are `tensors`, and the output
    names to ask it for (in the order of `tensors`)."""
    names = [t if isinstance(t, str) else t.name for t in tensors]
    probe = graph.copy()
    found = probe.tensors()
    missing = [name for name in names if not name or name not in found]
    if missing:
        raise CompilerBug(f"probe: tensors {missing[:3]} are not in the graph (or are unnamed)")
    probe.outputs = [found[name] for name in dict.fromkeys(names)]
    for output in probe.outputs:
        if output.dtype is None:
            output.dtype = np.float32
    if prune:
        probe.cleanup()
    model = gs.export_onnx(probe, do_type_check=False)
    if any(node.domain == SNN_DOMAIN for node in model.graph.node):
        model = attach_functions(model)
    return make_session(model.SerializeToString(), [CPU], budgeted=True), names
