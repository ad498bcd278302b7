"""What every pass shares: the context it reads and writes, the typed compile state, and the
pass protocol.

A pass is a module (or object) with `SPEC` (its PassSpec, from `declare`: its CLI name and the
facts about the graph it needs from the passes before it and provides for the ones after it;
compiler/pipeline.py checks every pipeline against them), `run(graph, ctx) -> graph`, whose
docstring is the pass's contract (pre- and post-condition in words: "Pre: ... Post: ..."), and
`postcondition(graph, ctx)`, which raises PostconditionError when that post-condition does not
hold (the pass manager calls it after the pass under --verify-each and in the tests). Passes may
mutate the graph.

Facts (the vocabulary of needs / provides): "canonical", "bn_folded", "crossbar_weights",
"supported" (every op converts with the family), "signgd_ops", "calibrated", "normalized",
"spiking" (neurons in place, one step), "spiking_pools" (IF: max pools of spikes in place),
"encoded_input", "time_batched", "activity", "int8_synapses", "offsets", "ttfs_inputs", "ttfs_affine",
"ttfs_columns", "ttfs_windows", "ttfs_audit".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Protocol, TypeVar

import numpy as np
import onnx_graphsurgeon as gs

from onnx_snn.errors import CompilerBug
from onnx_snn.ir.function_parts import SNN_DOMAIN
from onnx_snn.options import CompileOptions

T = TypeVar("T")


@dataclass(frozen=True)
class PassSpec:
    """What the pass manager checks a pipeline against: the pass's CLI name, the facts it needs
    from the passes before it and the facts it provides for the ones after it."""

    name: str
    needs: frozenset[str]
    provides: frozenset[str]


def declare(name: str, *, needs: Iterable[str] = (), provides: Iterable[str]) -> PassSpec:
    """A pass's SPEC: its CLI `name` and the facts (see the module docstring) it `needs` and `provides`."""
    return PassSpec(name, frozenset(needs), frozenset(provides))


class Pass(Protocol):
    # a read-only member: a module's constant, or a (frozen) object's field or property
    @property
    def SPEC(self) -> PassSpec: ...  # noqa: N802 - the pass protocol's name

    def run(self, graph: gs.Graph, ctx: "PassContext") -> gs.Graph: ...

    def postcondition(self, graph: gs.Graph, ctx: "PassContext") -> None: ...


class PostconditionError(CompilerBug):
    """A pass left a graph that breaks its stated post-condition (a bug in that pass)."""


def require(condition: bool, message: str) -> None:
    """Raise PostconditionError(`message`) unless `condition`: the post-conditions' assertion."""
    if not condition:
        raise PostconditionError(message)


def recorded(value: T | None, message: str) -> T:
    """`value`, a record a pass left in the compile state; PostconditionError(`message`) when it is None."""
    if value is None:
        raise PostconditionError(message)
    return value


def require_neuron_layers(graph: gs.Graph, ctx: "PassContext", *ops: str) -> None:
    """The post-condition of the passes that put neurons in place of the ReLUs: no Relu left, and
    the snn nodes of the `ops` are exactly the recorded neuron layers (ctx.state.neuron_layers)."""
    require(not any(n.op == "Relu" for n in graph.nodes), "a Relu is left")
    neurons = {n.name for n in graph.nodes if n.op in ops and n.domain == SNN_DOMAIN}
    require(neurons == set(ctx.state.neuron_layers), f"the {'/'.join(ops)} nodes are not the recorded neuron layers")


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
class RateState:
    """What the IF passes establish: spikenorm's balanced layers and the T they were balanced for."""

    spikenorm: dict[str, Any] | None = None


@dataclass
class TtfsState:
    """What the TTFS passes establish: per encoded input its range [p, q] and the name of x̃
    (ttfs_input_range), and ζ, t_read, the per-layer windows and the audit (ttfs_windows,
    ttfs_audit)."""

    inputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    windows: dict[str, Any] | None = None


@dataclass
class CompileState:
    """Everything the passes establish for the ones after them and for the model's metadata,
    typed; compiler/pipeline.py's emit step writes the part that the compiled model carries
    (compiler/metadata.py, a versioned schema)."""

    neuron: str | None = None
    passes: list[str] = field(default_factory=list)
    export_batch_size: int | None = None
    calibration_samples: int | None = None
    lambdas: dict[str, list[float]] | None = None
    neuron_layers: list[str] = field(default_factory=list)
    activity: dict[str, Any] | None = None
    weight_quantization: dict[str, Any] | None = None
    #: --int8-synapses: each layer run on the integer kernel → the grain k of its input (values n/k)
    int8_layers: dict[str, int] | None = None
    rate: RateState = field(default_factory=RateState)
    ttfs: TtfsState = field(default_factory=TtfsState)


@dataclass
class PassContext:
    """State shared along one compile: options, calibration inputs, notes and the compile state."""

    options: CompileOptions
    source: str = "<model>"
    calibration: Iterable[dict[str, np.ndarray]] | None = None
    notes: list[str] = field(default_factory=list)
    state: CompileState = field(default_factory=CompileState)
    activation_stats: dict[str, LayerStats] = field(default_factory=dict)
    input_defaults: dict[str, np.ndarray] = field(default_factory=dict)
    show_progress: bool = True
    #: how errors name a node that the input left unnamed or named like another (canonicalize
    #: renames it): `unnamed_node_label`'s op, index and first input and output in the input graph
    node_labels: dict[str, str] = field(default_factory=dict)
    #: the passes after the running one in its pipeline, set by the pass manager (spikenorm runs
    #: the ones that build the SNN on a trial copy)
    pending: list[Pass] = field(default_factory=list)

    def note(self, message: str) -> None:
        """Record a remark that compile prints and stores in metadata."""
        self.notes.append(message)


def run_passes(graph: gs.Graph, ctx: PassContext, passes: Iterable[Pass]) -> gs.Graph:
    """Run `passes` in order on `graph` with `ctx`: the pass manager's loop, without its checks,
    for a sub-pipeline (spikenorm's trial SNN)."""
    for step in passes:
        graph = step.run(graph, ctx)
    return graph
