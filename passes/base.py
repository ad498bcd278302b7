"""What every pass shares: the context it reads and writes, and the pass protocol.

A pass is a module with `NAME` (its CLI name), `CONTRACT` (one line: pre- and post-condition)
and `run(graph, ctx) -> graph`. Passes may mutate the graph they are given.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Protocol

import numpy as np
import onnx_graphsurgeon as gs

from onnx_snn.options import CompileOptions


class Pass(Protocol):
    NAME: str
    CONTRACT: str

    def run(self, graph: gs.Graph, ctx: "PassContext") -> gs.Graph: ...


@dataclass
class LayerStats:
    """Activation statistics of one ReLU output, from the calibrate pass.

    `max` and `percentile` are per channel (axis 1) when `per_channel`, else shape ().
    """

    max: np.ndarray
    percentile: np.ndarray
    percentile_q: float
    count: int


@dataclass
class PassContext:
    """State shared along one compile: options, calibration inputs, notes and metadata."""

    options: CompileOptions
    source: str = "<model>"
    calibration: Iterable[dict[str, np.ndarray]] | None = None
    notes: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    activation_stats: dict[str, LayerStats] = field(default_factory=dict)
    input_defaults: dict[str, np.ndarray] = field(default_factory=dict)
    show_progress: bool = True

    def note(self, message: str) -> None:
        """Record a remark that compile prints and stores in metadata."""
        self.notes.append(message)
