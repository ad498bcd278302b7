"""The pass manager: the pipeline lists are the whole truth (what runs, what the model records,
what ARCHITECTURE.md shows), NEEDS/PROVIDES are checked, and --verify-each catches a pass that
breaks the checker or its own post-condition."""

from __future__ import annotations

import dataclasses
import inspect
import re
from pathlib import Path

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import pytest
from helpers import run_cli, tiny_relu_model

from onnx_snn import metadata as model_metadata
from onnx_snn.api import compile_model
from onnx_snn.errors import CompilerBug, SnnError
from onnx_snn.options import CompileOptions
from onnx_snn.passes.base import PassContext, PostconditionError
from onnx_snn.passes.common import fold_bn
from onnx_snn.passes.rate import spikify
from onnx_snn.pipeline import COMMON, FAMILIES, build_pipeline, check_order, describe_pipelines, pass_names
from onnx_snn.runtime import Session

ROOT = Path(__file__).resolve().parents[1]
CALIB = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32)


#: The passes both TTFS pipelines (model B1 and model A) start with.
TTFS_FRONT = ["canonicalize", "fold_bn", "check_ops", "ttfs_input_range", "ttfs_fold_affine"]
#: The passes both TTFS pipelines run just before their last one (model A's column scale comes before them).
TTFS_WINDOWS = ["calibrate", "ttfs_windows", "ttfs_audit"]


def _names(options: CompileOptions, neuron: str) -> list[str]:
    return [step.SPEC.name for step in build_pipeline(options, neuron)]


@pytest.mark.parametrize("document", ["ARCHITECTURE.md", "README.md"])
def test_the_docs_show_the_pipelines_as_they_are(document):
    text = (ROOT / document).read_text()
    block = re.search(r"<!-- pipelines:begin -->\n(.*?)<!-- pipelines:end -->", text, re.S)
    assert block is not None and block.group(1) == describe_pipelines()


@pytest.mark.parametrize(
    "options, neuron, expected",
    [
        (
            CompileOptions(),
            "if",
            [
                "canonicalize",
                "fold_bn",
                "check_ops",
                "calibrate",
                "normalize",
                "spikify",
                "spikify_maxpool",
                "time_batch",
                "activity_stats",
            ],
        ),
        (
            CompileOptions(norm="spikenorm", encoding="poisson", weight_levels=4),
            "if",
            [
                "canonicalize",
                "fold_bn",
                "quantize_weights",
                "check_ops",
                "calibrate",
                "spikenorm",
                "normalize",
                "spikify",
                "encode_input",
                "spikify_maxpool",
                "time_batch",
                "activity_stats",
            ],
        ),
        (
            CompileOptions(),
            "signgd",
            [
                "canonicalize",
                "fold_bn",
                "decompose",
                "check_ops",
                "calibrate",
                "normalize",
                "spikify_signgd",
                "signgd_offsets",
                "time_batch",
                "activity_stats",
            ],
        ),
        (CompileOptions(), "ttfs", [*TTFS_FRONT, *TTFS_WINDOWS, "spikify_ttfs"]),
        (CompileOptions(ttfs_model="a"), "ttfs", [*TTFS_FRONT, "ttfs_column_scale", *TTFS_WINDOWS, "ttfs_model_a"]),
    ],
)
def test_build_pipeline_lists_exactly_the_passes_for_the_options(options, neuron, expected):
    assert _names(options, neuron) == expected


def test_every_pass_states_its_contract_as_code():
    for steps in (COMMON, *FAMILIES.values()):
        for entry in steps:
            step = entry.step
            contract = inspect.getdoc(step.run) or ""
            assert step.SPEC.name and "Pre:" in contract and "Post:" in contract
            assert isinstance(step.SPEC.needs, frozenset) and isinstance(step.SPEC.provides, frozenset)
            assert step.SPEC.provides and callable(step.run) and callable(step.postcondition)
    assert len(pass_names()) == len(set(pass_names()))


def test_check_order_refuses_a_pass_before_what_it_needs():
    with pytest.raises(ValueError, match="spikify needs"):
        check_order([spikify])
    with pytest.raises(ValueError, match="fold_bn needs"):
        check_order(list(reversed(build_pipeline(CompileOptions(), "if")))[-2:])


def test_the_model_records_the_pipeline_that_ran(tmp_path):
    out = tmp_path / "snn.onnx"
    result = compile_model(tiny_relu_model(), out, CompileOptions(norm="spikenorm", timesteps=4), CALIB)
    meta = model_metadata.read(model_metadata.props_of(onnx.load(out)), str(out))
    assert meta["passes"] == _names(CompileOptions(norm="spikenorm"), "if") == result.metadata["passes"]
    assert meta["schema"] == model_metadata.SCHEMA_VERSION
    inspected = run_cli("inspect", str(out))
    assert inspected.returncode == 0 and " → ".join(meta["passes"]) in inspected.stdout


def test_a_postcondition_fails_on_a_graph_that_breaks_it():
    graph = gs.Graph(nodes=[gs.Node("BatchNormalization", name="bn")])
    with pytest.raises(PostconditionError, match="BatchNormalization"):
        fold_bn.postcondition(graph, PassContext(options=CompileOptions()))


def _keep_one_relu(graph: gs.Graph) -> None:
    neuron = next(n for n in graph.nodes if n.op == "BurstIFNeuron")
    neuron.op, neuron.domain, neuron.attrs = "Relu", None, {}
    neuron.inputs, neuron.outputs = neuron.inputs[:1], neuron.outputs[:1]


def _bad_attribute(graph: gs.Graph) -> None:
    graph.nodes[0].attrs["not_an_attribute"] = 1


@pytest.mark.parametrize(
    ("module", "breakage", "message"),
    [
        (spikify, _keep_one_relu, "after pass spikify its postcondition fails: a Relu is left"),
        (fold_bn, _bad_attribute, "after pass fold_bn the model fails onnx.checker"),
    ],
    ids=["postcondition", "checker"],
)
def test_verify_each_names_the_pass_that_breaks_the_model(monkeypatch, module, breakage, message):
    """A pass whose output `breakage` spoils (a Relu left after spikify; an attribute the checker
    rejects after fold_bn) is named by --verify-each."""
    real_run = module.run

    def broken_run(graph: gs.Graph, ctx: PassContext) -> gs.Graph:
        graph = real_run(graph, ctx)
        breakage(graph)
        return graph

    monkeypatch.setattr(module, "run", broken_run)
    with pytest.raises(CompilerBug, match=message):
        compile_model(tiny_relu_model(), options=CompileOptions(verify_each=True, timesteps=2), calibration=CALIB)


def test_verify_each_is_a_cli_flag_that_leaves_the_model_unchanged(tmp_path):
    plain, checked = tmp_path / "plain.onnx", tmp_path / "checked.onnx"
    model = tmp_path / "ann.onnx"
    onnx.save(tiny_relu_model(), model)
    np.save(tmp_path / "calib.npy", CALIB)
    common = ["--calib", str(tmp_path / "calib.npy"), "-q"]
    assert run_cli("compile", str(model), "-o", str(plain), *common).returncode == 0
    assert run_cli("compile", str(model), "-o", str(checked), "--verify-each", *common).returncode == 0
    first, second = onnx.load(plain), onnx.load(checked)  # node names carry a per-process counter
    assert [n.op_type for n in first.graph.node] == [n.op_type for n in second.graph.node]
    assert model_metadata.props_of(first) == model_metadata.props_of(second)
    x = CALIB[:5]
    np.testing.assert_array_equal(Session(plain).run(x).logits, Session(checked).run(x).logits)


def test_a_model_from_a_newer_schema_is_refused(tmp_path):
    out = tmp_path / "snn.onnx"
    compile_model(tiny_relu_model(), out, CompileOptions(timesteps=2), CALIB)
    model = onnx.load(out)
    model_metadata.write(model, {"version": "9.9"}, keep_others=True)
    for prop in model.metadata_props:
        if prop.key == model_metadata.PREFIX + "schema":
            prop.value = str(model_metadata.SCHEMA_VERSION + 1)
    onnx.save(model, out)
    with pytest.raises(SnnError, match="schema 2, newer"):
        Session(out)


def test_options_metadata_leaves_out_what_does_not_change_the_model():
    data = CompileOptions(verify_each=True, dump_after=["fold_bn"]).as_metadata()
    assert "verify_each" not in data and "dump_after" not in data
    assert set(data) == {f.name for f in dataclasses.fields(CompileOptions)} - {"verify_each", "dump_after"}
    assert np.isfinite(data["timesteps"])
