"""export-nir: a compiled rate-coded SNN (binary or multi-spike IF neurons) as a NIR graph for one reader's dialect.

The graph: nir.Input (the input x, read as an analog current at every step) → Conv2d, Affine or
Linear, AvgPool2d or SumPool2d, Flatten, Scale (where the reader has it) and one neuron node per
IF layer → nir.Output (the output layer's current at every step; the model's output is its mean
over the T steps). Residual sums are several edges into one node. Scalings are folded into
weights (fold.py); a grouped conv is written with its block-diagonal weight and groups = 1. Each
onnx-snn IF neuron (per step u += x; a spike where u ≥ θ; reset by θ (soft) or to 0 (hard); u
starts at v_init·θ) becomes, per dialect (dialects.py):

- `nir`: nir.IF(r = 1, v_threshold, v_reset), NIR's hard reset. A fresh membrane v_init·θ is
  folded exactly: with v' = v − v_init·θ the neuron starts at 0, fires at v' ≥ (1 − v_init)·θ and
  resets to −v_init·θ. Soft reset has no NIR form: refused (compile with --reset hard).
- `snntorch`: the IF limit of a nir.LIF (τ = 2^60·dt, r = τ/dt, v_leak = 0), which its importer
  makes a Leaky with β = 1 exactly and hard reset to 0; needs --reset hard and --v-init 0.
- `sinabs`: nir.IF, which its importer makes an IAF with soft reset, ⌊v/θ⌋ spikes a step and a
  membrane floor of −θ; needs --reset soft and --v-init 0, and is exact with --spikes multi
  --v-min -1 (a binary neuron is written too, and the difference noted). Its executor runs the
  nodes in depth-first order of the edges as written: the edges are written so that each node's
  single-input consumers come before its joins, which makes that order topological for residual
  blocks whose shortcut is an edge (identity); a net where it is not (a shortcut with a layer on
  it) is refused, naming the join.
- `norse`: nir.IF, which its importer makes an IAF that adds the input, fires where v > θ and
  resets to 0; needs --reset hard and --v-init 0; SumPool2d and no Scale, as for sinabs, and the
  same depth-first executor.

Multi-spike neurons (--spikes multi) are refused for the readers whose neurons send one spike a step.

NIR's v > θ is written for onnx-snn's v ≥ θ as the float32 just below θ (the same test exactly).
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx

from onnx_snn import __version__
from onnx_snn.errors import SnnError
from onnx_snn.ir.contract import TIMESTEPS_INPUT
from onnx_snn.modelio import load_model
from onnx_snn.nir_io.dialects import DIALECTS, IF_LIMIT_SCALE, Dialect, if_limit_tau, strict_threshold
from onnx_snn.nir_io.fold import fit
from onnx_snn.nir_io.lower import lower
from onnx_snn.nir_io.net import Layer, Net
from onnx_snn.nir_io.nirfile import nir_module, write_graph


@dataclass
class ExportResult:
    """What export wrote: the dialect, the NIR node types and their counts, and remarks."""

    dialect: str
    nodes: dict[str, int]
    notes: list[str] = field(default_factory=list)


def export_nir(model_path: str | os.PathLike, output: str | os.PathLike, dialect: str = "nir") -> ExportResult:
    """Write the compiled SNN at `model_path` as a NIR graph for `dialect` to `output` (atomically).
    SnnError, before anything is written, for what the dialect cannot hold (named, with the option
    to compile with)."""
    source = str(model_path)
    model = load_model(model_path)
    net = fit(lower(model, source), DIALECTS[dialect])
    graph = to_nir_graph(model, DIALECTS[dialect], source, net)
    write_graph(graph, output)
    counts = Counter(type(node).__name__ for node in graph.nodes.values())
    notes = differences(net, DIALECTS[dialect])
    return ExportResult(dialect, dict(counts), notes)


def to_nir_graph(model: onnx.ModelProto, dialect: Dialect, source: str = "<model>", net: Net | None = None) -> Any:
    """The nir.NIRGraph of the compiled SNN `model` (lowered and fitted to `net` where not given)
    in `dialect` (module docstring)."""
    nir = nir_module()
    net = fit(lower(model, source), dialect) if net is None else net
    edges = net.edges if dialect.joins else depth_first_edges(net, dialect, source)
    built = {name: _node(nir, net, name, layer, dialect, source) for name, layer in net.layers.items()}
    names = _names(built)
    nodes = {names[name]: node for name, node in built.items()}
    metadata = {
        "producer": f"onnx-snn {__version__}",
        "dialect": dialect.name,
        "timesteps": _timesteps(model),
        "input": "the model's input, the same analog current at every step",
        "output": "the output layer's current every step; the model's output is its mean over the steps",
    }
    return nir.NIRGraph(nodes=nodes, edges=[(names[a], names[b]) for a, b in edges], metadata=metadata)


def depth_first_edges(net: Net, dialect: Dialect, source: str) -> list[tuple[str, str]]:
    """`net`'s edges in the order that makes a depth-first executor (one that runs the nodes in
    preorder from the input, each node's consumers in the order of the edges) run every node after
    all its inputs and the output last: each node's single-input consumers before its joins.
    SnnError, naming the first join run too early, where no such order exists."""
    edges = sorted(net.edges, key=lambda edge: len(net.inputs_of(edge[1])) > 1)
    ran: list[str] = []
    pending = ["input"]
    while pending:
        name = pending.pop()
        if name in ran:
            continue
        early = [s for s in net.inputs_of(name) if s not in ran]
        if early:
            layer = net.layers[name]
            raise SnnError(
                f"a residual join with a layer on its shortcut cannot be written for {dialect.label}, whose "
                f"executor (depth-first) would run it before its input {early[0]} exists",
                path=source,
                node=layer.attrs.get("source", name),
                op=layer.attrs.get("op", layer.kind),
                hint=f"export it --for {' or '.join(d.name for d in DIALECTS.values() if d.joins)}",
            )
        ran.append(name)
        pending += reversed([d for s, d in edges if s == name])
    assert ran[-1] == "output", "the output is the last layer of a topological order of one chain"
    return edges


def differences(net: Net, dialect: Dialect) -> list[str]:
    """What `dialect`'s reader does differently from the neurons of `net` (export writes them
    anyway; README, NIR): one spike a step against several, and its membrane floor."""
    neurons = [layer.attrs for layer in net.layers.values() if layer.kind == "neuron"]
    notes = []
    if any(attrs["spikes"] != dialect.spikes for attrs in neurons):
        notes.append(
            f"{dialect.label} emits ⌊v/θ⌋ spikes a step where these neurons emit one and keep the rest in the "
            "membrane (compile with --spikes multi for its dynamics)"
        )
    if dialect.if_floor and any(attrs["v_min"] != -1.0 for attrs in neurons):
        notes.append(f"{dialect.label} clamps IF membranes at −θ (compile with --spikes multi --v-min -1)")
    if not dialect.batched:
        notes.append(f"{dialect.label} flattens the batch axis too: run the imported net one sample at a time")
    return notes


def _names(nodes: dict[str, Any]) -> dict[str, str]:
    """Each node's name in the NIR file: its NIR type and a count (`conv2d_0`, `if_1`), `input`, `output`."""
    counts: Counter[str] = Counter()
    names = {}
    for name, node in nodes.items():
        kind = type(node).__name__.lower()
        names[name] = kind if kind in ("input", "output") else f"{kind}_{counts[kind]}"
        counts[kind] += 1
    return names


def _timesteps(model: onnx.ModelProto) -> int:
    default = next((t for t in model.graph.initializer if t.name == TIMESTEPS_INPUT), None)
    return int(onnx.numpy_helper.to_array(default)) if default is not None else 0


def _f32(values: Any) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


def _input_shape(net: Net, name: str) -> tuple[int, ...]:
    return net.layers[net.inputs_of(name)[0]].shape


def _ungrouped(weight: Any, groups: int) -> np.ndarray:
    """A grouped conv's weight [out, in/groups, kh, kw] as the block-diagonal weight [out, in, kh, kw]
    of the same conv with groups = 1 (nir types a Conv2d's input as weight.shape[1] channels)."""
    weight = np.asarray(weight)
    if groups == 1:
        return weight
    out, per_group = weight.shape[0] // groups, weight.shape[1]
    dense = np.zeros((weight.shape[0], per_group * groups, *weight.shape[2:]), dtype=weight.dtype)
    for g in range(groups):
        dense[g * out : (g + 1) * out, g * per_group : (g + 1) * per_group] = weight[g * out : (g + 1) * out]
    return dense


def _node(nir: Any, net: Net, name: str, layer: Layer, dialect: Dialect, source: str) -> Any:
    """The NIR node of one layer."""
    kind, shape = layer.kind, np.asarray(layer.shape)
    if kind == "input":
        return nir.Input(input_type=shape)
    if kind == "output":
        return nir.Output(output_type=shape)
    if kind == "conv":
        attrs = layer.attrs
        return nir.Conv2d(
            input_shape=_input_shape(net, name)[1:],
            weight=_f32(_ungrouped(layer.weight, attrs["groups"])),
            stride=attrs["stride"],
            padding=attrs["padding"],
            dilation=attrs["dilation"],
            groups=1,
            bias=_f32(layer.bias),
        )
    if kind == "affine":
        if "Linear" in dialect.layers and not np.any(layer.bias):
            return nir.Linear(weight=_f32(layer.weight))
        return nir.Affine(weight=_f32(layer.weight), bias=_f32(layer.bias))
    if kind in ("avgpool", "sumpool"):
        pool = nir.AvgPool2d if kind == "avgpool" else nir.SumPool2d
        return pool(
            kernel_size=np.asarray(layer.attrs["kernel"]),
            stride=np.asarray(layer.attrs["stride"]),
            padding=np.asarray(layer.attrs["padding"]),
        )
    if kind == "scale":
        return nir.Scale(scale=_f32(np.broadcast_to(np.asarray(layer.scale), layer.shape)))
    if kind == "flatten":
        return nir.Flatten(input_type={"input": np.asarray(_input_shape(net, name))}, start_dim=0, end_dim=-1)
    if kind == "neuron":
        return _neuron(nir, layer, dialect, source)
    raise AssertionError(f"no NIR node for layer kind {kind}")


def _neuron(nir: Any, layer: Layer, dialect: Dialect, source: str) -> Any:
    """The NIR node of an onnx-snn IF neuron in `dialect` (module docstring), or SnnError naming the
    option to compile with."""
    theta, reset, v_init = layer.attrs["threshold"], layer.attrs["reset"], layer.attrs["v_init"]
    where = f"for {dialect.label}"

    def refusal(message: str, hint: str) -> SnnError:
        return SnnError(message, path=source, node=layer.attrs["source"], op=layer.attrs["op"], hint=hint)

    if layer.attrs["spikes"] == "multi" and dialect.spikes != "multi":
        raise refusal(
            f"multi-spike neurons (⌊v/θ⌋ spikes a step) cannot be written {where}, whose neurons send one spike a step",
            "compile with --spikes binary",
        )
    if reset != dialect.reset:
        raise refusal(
            f"{reset} reset cannot be written {where}, which resets {dialect.reset}",
            f"compile with --reset {dialect.reset}",
        )
    v_reset = 0.0
    if v_init != 0.0:
        if "v_reset" not in dialect.keeps or reset != "hard":
            raise refusal(
                f"a fresh membrane of v_init·θ = {v_init:g}·θ cannot be written {where}, whose neurons start at 0",
                "compile with --v-init 0",
            )
        theta, v_reset = (1.0 - v_init) * theta, -v_init * theta
    threshold = _f32(np.full(layer.shape, theta))
    if not dialect.inclusive:
        threshold = strict_threshold(threshold)
    metadata = {"onnx_node": layer.attrs["source"]}
    if dialect.if_node == "LIF":
        tau = if_limit_tau(dialect)
        return nir.LIF(
            tau=np.full(layer.shape, tau),
            r=np.full(layer.shape, IF_LIMIT_SCALE),
            v_leak=np.zeros(layer.shape),
            v_threshold=threshold,
            v_reset=_f32(np.full(layer.shape, v_reset)),
            metadata=metadata,
        )
    return nir.IF(
        r=_f32(np.ones(layer.shape)),
        v_threshold=threshold,
        v_reset=_f32(np.full(layer.shape, v_reset)),
        metadata=metadata,
    )
