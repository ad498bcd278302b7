"""The pass manager: `build_pipeline(options, neuron)` is the exact list of passes a compile runs,
`run_pipeline` runs it, and `emit` writes the result with its metadata.

The list is the whole truth: no pass switches itself off by option, and no pass runs another.
Each pass declares the facts it needs and provides in its SPEC (passes/base.py); `check_order`
refuses a pipeline in which a pass runs before what it needs. With --verify-each (and in the
tests, by ONNX_SNN_VERIFY_EACH=1), after every pass the graph is exported and must pass
onnx.checker and the pass's postcondition; a failure is a CompilerBug naming the pass.

The pipelines are data: COMMON and FAMILIES below (describe_pipelines renders them for
ARCHITECTURE.md). `--neuron auto` runs the common passes, then picks IF when IF neurons convert
every op of the graph and signGD otherwise (or where the IF table holds an op back from auto).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import onnx
import onnx_graphsurgeon as gs
from tqdm import tqdm

from onnx_snn import __version__
from onnx_snn import metadata as model_metadata
from onnx_snn.errors import CompilerBug, SnnError
from onnx_snn.ir.neurons import attach_functions
from onnx_snn.options import ENCODING_NEURONS, CompileOptions, spikenorm_statistic
from onnx_snn.passes.base import Pass, PassContext, PassSpec, declare
from onnx_snn.passes.canonicalize import canonicalize, node_names
from onnx_snn.passes.common import activity_stats, calibrate, fold_bn, normalize, time_batch
from onnx_snn.passes.graph_utils import TARGET_OPSET
from onnx_snn.passes.hardware import quantize_weights
from onnx_snn.passes.rate import encode_input, int8_synapses, spikenorm
from onnx_snn.passes.rate import maxpool as spikify_maxpool
from onnx_snn.passes.rate import spikify as spikify_if
from onnx_snn.passes.signgd import decompose
from onnx_snn.passes.signgd import offsets as signgd_offsets
from onnx_snn.passes.signgd import spikify as spikify_signgd
from onnx_snn.passes.ttfs import audit as ttfs_audit
from onnx_snn.passes.ttfs import column_scale as ttfs_column_scale
from onnx_snn.passes.ttfs import fold_affine as ttfs_fold_affine
from onnx_snn.passes.ttfs import input_range as ttfs_input_range
from onnx_snn.passes.ttfs import model_a as ttfs_model_a
from onnx_snn.passes.ttfs import spikify as spikify_ttfs
from onnx_snn.passes.ttfs import windows as ttfs_windows

IR_VERSION = 10  # the IR of opset 21
VERIFY_EACH_ENV = "ONNX_SNN_VERIFY_EACH"

DumpHook = Callable[[str, onnx.ModelProto], None]


@dataclass(frozen=True)
class CheckOps:
    """The pass that refuses, before any costly pass, every op the family cannot convert (its
    refuse_unconvertible: one line naming the node and what to do)."""

    family: str
    refuse: Callable[[gs.Graph, PassContext], None]

    @property
    def SPEC(self) -> PassSpec:  # noqa: N802 - the pass protocol's name
        """It needs the family's input form: signGD's decomposed ops, the others' folded BNs."""
        needs = "signgd_ops" if self.family == "signgd" else "bn_folded"
        return declare("check_ops", needs={needs}, provides={"supported"})

    def run(self, graph: gs.Graph, ctx: PassContext) -> gs.Graph:
        """Pre: a graph of the family's input form. Post: graph unchanged; every op converts."""
        self.refuse(graph, ctx)
        return graph

    def postcondition(self, graph: gs.Graph, ctx: PassContext) -> None:
        self.refuse(graph, ctx)


CHECK_OPS = {
    "if": CheckOps("if", spikify_if.refuse_unconvertible),
    "signgd": CheckOps("signgd", spikify_signgd.refuse_unconvertible),
    "ttfs": CheckOps("ttfs", spikify_ttfs.refuse_unconvertible),
}


def _always(options: CompileOptions) -> bool:
    return True


@dataclass(frozen=True)
class Step:
    """One entry of a pipeline: the pass, when it runs, and the option that makes it run (for the
    docs; empty when it always runs)."""

    step: Pass
    when: Callable[[CompileOptions], bool] = _always
    flag: str = ""


#: the passes every family starts with, before the neuron family is chosen
COMMON: tuple[Step, ...] = (
    Step(canonicalize),
    Step(fold_bn),
    Step(quantize_weights, lambda o: o.weight_levels is not None, "--weight-levels N"),
)
#: the passes of each neuron family after COMMON, in order
FAMILIES: dict[str, tuple[Step, ...]] = {
    "if": (
        Step(CHECK_OPS["if"]),
        Step(calibrate),
        Step(spikenorm, lambda o: spikenorm_statistic(o.norm) is not None, "--norm spikenorm[:P]"),
        Step(normalize),
        Step(spikify_if),
        Step(encode_input, lambda o: o.encoding == "poisson", "--encoding poisson"),
        Step(spikify_maxpool),
        Step(time_batch),
        Step(activity_stats),
        Step(int8_synapses, lambda o: o.int8_synapses, "--int8-synapses"),
    ),
    "signgd": (
        Step(decompose),
        Step(CHECK_OPS["signgd"]),
        Step(calibrate),
        Step(normalize),
        Step(spikify_signgd),
        Step(signgd_offsets),
        Step(time_batch),
        Step(activity_stats),
    ),
    "ttfs": (
        Step(CHECK_OPS["ttfs"]),
        Step(ttfs_input_range),
        Step(ttfs_fold_affine),
        Step(ttfs_column_scale, lambda o: o.ttfs_model == "a", "--ttfs-model a"),
        Step(calibrate),
        Step(ttfs_windows),
        Step(ttfs_audit),
        Step(spikify_ttfs, lambda o: o.ttfs_model != "a", "--ttfs-model b1 (the default)"),
        Step(ttfs_model_a, lambda o: o.ttfs_model == "a", "--ttfs-model a"),
    ),
}


def common_passes(options: CompileOptions) -> list[Pass]:
    """The passes every family starts with under `options`, before the neuron family is chosen."""
    return [s.step for s in COMMON if s.when(options)]


def family_passes(options: CompileOptions, neuron: str) -> list[Pass]:
    """The passes of neuron family `neuron` after the common ones, under `options`."""
    if neuron not in FAMILIES:
        raise ValueError(f"no pipeline for neuron {neuron!r}; one of {', '.join(FAMILIES)}")
    return [s.step for s in FAMILIES[neuron] if s.when(options)]


def describe_pipelines() -> str:
    """Markdown: each family's pipeline, a pass that only some options run shown with its option
    in brackets (ARCHITECTURE.md holds this text; a test keeps it equal)."""
    lines = []
    for family, steps in FAMILIES.items():
        names = [f"{s.step.SPEC.name} [{s.flag}]" if s.flag else s.step.SPEC.name for s in COMMON + steps]
        lines.append(f"- `{family}`: " + " → ".join(names))
    return "\n".join(lines) + "\n"


def build_pipeline(options: CompileOptions, neuron: str) -> list[Pass]:
    """The exact list of passes a compile with `options` runs for neuron family `neuron`,
    checked by check_order."""
    passes = common_passes(options) + family_passes(options, neuron)
    check_order(passes)
    return passes


def check_order(passes: Sequence[Pass]) -> None:
    """ValueError unless the facts every pass needs are provided by the passes before it (their SPECs)."""
    provided: set[str] = set()
    for step in passes:
        missing = step.SPEC.needs - provided
        if missing:
            raise ValueError(f"pass {step.SPEC.name} needs {sorted(missing)}, which no pass before it provides")
        provided |= step.SPEC.provides


def pass_names() -> list[str]:
    """Every pass name of every pipeline, for --dump-after."""
    return list(dict.fromkeys(s.step.SPEC.name for steps in (COMMON, *FAMILIES.values()) for s in steps))


#: every pass name (the choices of --dump-after)
PASS_NAMES = pass_names()


def run_pipeline(model: onnx.ModelProto, ctx: PassContext, dump: DumpHook | None = None) -> onnx.ModelProto:
    """Run the pipeline on `model` and return the compiled SNN; `dump(name, model)` after each
    pass named in ctx.options.dump_after. ctx.state.passes records what ran."""
    graph = gs.import_onnx(model)
    node_names.apply(graph, ctx)
    verify = ctx.options.verify_each or os.environ.get(VERIFY_EACH_ENV, "") not in ("", "0")
    # which pass runs (the passes that loop over data or layers draw bars of their own below it)
    progress = tqdm(desc="compile", unit="pass", disable=not ctx.show_progress, leave=False)

    def stage(step: Pass, graph: gs.Graph, pending: list[Pass]) -> gs.Graph:
        ctx.pending = pending
        name = step.SPEC.name
        progress.set_description(f"compile: {name}")
        graph = step.run(graph, ctx)
        progress.update()
        ctx.state.passes.append(name)
        if verify:
            verify_stage(step, graph, ctx)
        if dump is not None and name in ctx.options.dump_after:
            dump(name, emit(graph, ctx))
        return graph

    common = common_passes(ctx.options)
    progress.total = len(common)
    for index, step in enumerate(common):
        graph = stage(step, graph, common[index + 1 :])
    neuron = resolve_neuron(graph, ctx)
    ctx.state.neuron = neuron
    if neuron not in ENCODING_NEURONS[ctx.options.encoding] or (
        neuron != "if" and spikenorm_statistic(ctx.options.norm) is not None
    ):
        raise SnnError(
            f"--encoding {ctx.options.encoding} and --norm {ctx.options.norm} do not fit this graph, which "
            f"converts with {neuron} neurons (poisson and spikenorm need IF, signgd needs signGD neurons)",
            path=ctx.source,
        )
    if ctx.options.int8_synapses and neuron != "if":
        raise SnnError(
            f"--int8-synapses runs the dense layers that read IF spikes on integer kernels; this graph converts "
            f"with {neuron} neurons",
            path=ctx.source,
            hint="drop --int8-synapses",
        )
    family = build_pipeline(ctx.options, neuron)[len(common) :]
    progress.total = len(common) + len(family)
    for index, step in enumerate(family):
        graph = stage(step, graph, family[index + 1 :])
    progress.close()
    return emit(graph, ctx)


def verify_stage(step: Pass, graph: gs.Graph, ctx: PassContext) -> None:
    """CompilerBug unless the graph after `step` exports, passes onnx.checker and `step`'s postcondition."""
    name = step.SPEC.name
    try:
        onnx.checker.check_model(emit(graph, ctx))
    except onnx.checker.ValidationError as exc:
        raise CompilerBug(f"after pass {name} the model fails onnx.checker: {str(exc).splitlines()[0]}") from None
    try:
        step.postcondition(graph, ctx)
    except (SnnError, CompilerBug) as exc:
        raise CompilerBug(f"after pass {name} its postcondition fails: {exc}") from None


def resolve_neuron(graph: gs.Graph, ctx: PassContext) -> str:
    """The neuron family to compile with: --neuron, or for `auto` IF neurons when they can convert
    every op of the graph (a ReLU net, MaxPools included) and signGD neurons otherwise."""
    if ctx.options.neuron != "auto":
        return ctx.options.neuron
    try:
        spikify_if.refuse_unconvertible(graph, ctx)
    except SnnError:
        return "signgd"
    return "if"


def emit(graph: gs.Graph, ctx: PassContext) -> onnx.ModelProto:
    """Export `graph` as a standalone model: input defaults, neuron functions and metadata (the
    explicit list below, compiler/metadata.py's schema)."""
    model = gs.export_onnx(graph, do_type_check=False)
    for name, value in ctx.input_defaults.items():
        if any(i.name == name for i in model.graph.input):
            model.graph.initializer.append(onnx.numpy_helper.from_array(np.asarray(value), name))
    default_opset = next((o for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if default_opset is not None and default_opset.version >= TARGET_OPSET:
        model.ir_version = max(model.ir_version, IR_VERSION)
    attach_functions(model)
    model.producer_name, model.producer_version = "onnx-snn", __version__
    state = ctx.state
    model_metadata.write(
        model,
        {
            "version": __version__,
            "options": ctx.options.as_metadata(),
            "notes": ctx.notes,
            "neuron": state.neuron,
            "passes": state.passes,
            "neuron_layers": state.neuron_layers or None,
            "lambda": state.lambdas,
            "calibration_samples": state.calibration_samples,
            "activity": state.activity,
            "spikenorm": state.rate.spikenorm,
            "weight_quantization": state.weight_quantization,
            "int8_synapses": state.int8_layers,
            "ttfs": state.ttfs.windows,
        },
    )
    return model
