"""passes/op_support.py: one op table per neuron family, the single source of each family's
refusals (refuse_unconvertible, hence check_ops and `--neuron auto`) and of the README's op list."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx_graphsurgeon as gs
import pytest
from helpers import float_model
from onnx import helper

from onnx_snn import compile_model
from onnx_snn.errors import SnnError
from onnx_snn.options import CompileOptions
from onnx_snn.passes import op_support
from onnx_snn.passes.base import PassContext
from onnx_snn.passes.op_support import FORMS, LINEAR, NEURON, RATE, SIGNGD, TTFS, Support
from onnx_snn.passes.rate import spikify as spikify_if
from onnx_snn.passes.signgd import spikify as spikify_signgd
from onnx_snn.passes.ttfs import graph as ttfs_graph
from onnx_snn.passes.ttfs import spikify as spikify_ttfs

README = Path(__file__).resolve().parents[1] / "README.md"
#: each family's table and its refusal, as the pipeline calls it
REFUSERS = {
    "if": (RATE, spikify_if.refuse_unconvertible),
    "signgd": (SIGNGD, spikify_signgd.refuse_unconvertible),
    "ttfs": (TTFS, spikify_ttfs.refuse_unconvertible),
}


def _graph(*specs: tuple) -> gs.Graph:
    """A graph from (op, input names, output name[, attrs]) specs, built in code: "x" is the input
    ([N, 4, 4, 4]), "w" and "c" are constants, the last output is the graph output; each node is
    named after its output."""
    tensors: dict[str, gs.Tensor] = {
        "x": gs.Variable("x", np.float32, ["N", 4, 4, 4]),
        "w": gs.Constant("w", np.ones((4, 4, 1, 1), np.float32)),
        "c": gs.Constant("c", np.asarray(2.0, np.float32)),
    }
    nodes = []
    for op, inputs, output, *attrs in specs:
        tensors.setdefault(output, gs.Variable(output, np.float32))
        nodes.append(
            gs.Node(
                op,
                name=output,
                inputs=[tensors[name] for name in inputs],
                outputs=[tensors[output]],
                attrs=attrs[0] if attrs else {},
            )
        )
    return gs.Graph(nodes=nodes, inputs=[tensors["x"]], outputs=[tensors[specs[-1][2]]])


def _conv_act_conv(op: str, **attrs) -> gs.Graph:
    """x -> Conv -> op -> Conv: one activation op between two linear layers."""
    return _graph(("Conv", ["x", "w"], "h"), (op, ["h"], "act", attrs), ("Conv", ["act", "w"], "y"))


def _refusal(family: str, graph: gs.Graph) -> SnnError | None:
    try:
        REFUSERS[family][1](graph, PassContext(CompileOptions(), source="net.onnx"))
    except SnnError as error:
        return error
    return None


# --- the README ---------------------------------------------------------------------------------


def test_readme_op_list_is_the_rendered_tables():
    """README.md's op-support section is render_markdown() (regenerate it with
    `python -m onnx_snn.passes.op_support README.md`)."""
    assert op_support.readme_section(README.read_text()) == op_support.render_markdown()


def test_rendered_section_lists_every_op_of_every_family():
    text = op_support.render_markdown()
    for family in op_support.FAMILIES.values():
        section = text.split(f"`--neuron {family.neuron}`", 1)[1].split("\n### ", 1)[0]
        for op in family.ops:
            assert f"`{op}`" in section, (family.neuron, op)


def test_with_section_rewrites_only_between_the_markers():
    text = f"# title\n\n{op_support.README_BEGIN}\nold list\n{op_support.README_END}\n\nafter\n"
    rewritten = op_support.with_section(text)
    assert op_support.readme_section(rewritten) == op_support.render_markdown()
    assert rewritten.startswith("# title\n\n") and rewritten.endswith(f"{op_support.README_END}\n\nafter\n")


# --- one unsupported op per family: the message and hint come from its table ----------------------


@pytest.mark.parametrize("family", ["if", "signgd", "ttfs"])
def test_an_op_no_family_converts_is_refused_with_the_tables_message(family):
    table = REFUSERS[family][0]
    error = _refusal(family, _conv_act_conv("Tanh"))
    assert error is not None and (error.path, error.node, error.op) == ("net.onnx", "act", "Tanh")
    assert str(error) == f"net.onnx: node 'act' (Tanh): {table.unsupported}; {table.unsupported_hint}"
    assert "--neuron signgd" not in str(error)


@pytest.mark.parametrize("family", ["if", "ttfs"])
def test_an_op_signgd_converts_points_to_signgd(family):
    error = _refusal(family, _conv_act_conv("LeakyRelu", alpha=0.1))
    assert error is not None
    assert str(error) == (f"net.onnx: node 'act' (LeakyRelu): {REFUSERS[family][0].other_family}; use --neuron signgd")


@pytest.mark.parametrize("family", ["if", "ttfs"])
def test_a_bare_sigmoid_is_a_signgd_neuron_only(family):
    """signGD converts any Sigmoid (a `sigmoid` neuron, or inside a SiLU's): the others point to it."""
    graph = _conv_act_conv("Sigmoid")
    assert SIGNGD.converts(graph, graph.nodes[1]) and _refusal("signgd", graph) is None
    error = _refusal(family, graph)
    assert error is not None and error.op == "Sigmoid" and error.hint == "use --neuron signgd"


def test_a_silu_gate_is_converted_by_signgd_only():
    silu = _graph(
        ("Conv", ["x", "w"], "h"),
        ("Sigmoid", ["h"], "gate"),
        ("Mul", ["h", "gate"], "silu"),
        ("Conv", ["silu", "w"], "y"),
    )
    assert _refusal("signgd", silu) is None
    for family in ("if", "ttfs"):
        error = _refusal(family, silu)
        assert error is not None and error.op == "Sigmoid" and error.hint == "use --neuron signgd"


@pytest.mark.parametrize("family", ["if", "signgd", "ttfs"])
def test_an_op_of_another_domain_is_refused_with_its_domain(family):
    graph = _conv_act_conv("Relu")
    graph.nodes[1].domain = "com.example"
    error = _refusal(family, graph)
    assert error is not None and error.op == "com.example::Relu"
    assert error.hint == REFUSERS[family][0].unsupported_hint


# --- supported ops pass ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "family, op, attrs",
    [
        ("if", "Relu", {}),
        ("signgd", "Relu", {}),
        ("ttfs", "Relu", {}),
        ("signgd", "LeakyRelu", {"alpha": 0.1}),
        ("signgd", "Gelu", {}),
        ("signgd", "Exp", {}),
        ("if", "Flatten", {"axis": 1}),
        ("ttfs", "Flatten", {"axis": 1}),
    ],
)
def test_a_supported_op_passes(family, op, attrs):
    assert _refusal(family, _conv_act_conv(op, **attrs)) is None


def test_products_follow_each_table():
    """Mul by a constant: every family; of two activations: signGD's `product` neuron only."""
    scale = _graph(("Conv", ["x", "w"], "h"), ("Mul", ["h", "c"], "m"), ("Conv", ["m", "w"], "y"))
    product = _graph(
        ("Conv", ["x", "w"], "h"), ("Conv", ["x", "w"], "k"), ("Mul", ["h", "k"], "m"), ("Conv", ["m", "w"], "y")
    )
    for family in REFUSERS:
        assert _refusal(family, scale) is None, family
    assert _refusal("signgd", product) is None
    for family, table in (("if", RATE), ("ttfs", TTFS)):
        error = _refusal(family, product)
        assert error is not None and error.node == "m"
        assert str(error) == f"net.onnx: node 'm' (Mul): {table.ops['Mul'].refusal}; use --neuron signgd"


def test_signgd_max_needs_two_activations():
    pair = _graph(
        ("Conv", ["x", "w"], "h"), ("Conv", ["x", "w"], "k"), ("Max", ["h", "k"], "m"), ("Conv", ["m", "w"], "y")
    )
    with_constant = _graph(("Conv", ["x", "w"], "h"), ("Max", ["h", "c"], "m"), ("Conv", ["m", "w"], "y"))
    assert _refusal("signgd", pair) is None
    error = _refusal("signgd", with_constant)
    assert error is not None
    assert str(error).startswith(f"net.onnx: node 'm' (Max): {SIGNGD.unsupported}")
    error = _refusal("if", with_constant)  # signGD does not convert this Max: no pointer to it
    assert error is not None and "--neuron signgd" not in str(error)
    assert "--neuron signgd" in str(_refusal("if", pair))


def test_ttfs_maxpool_must_read_one_layer():
    """The TTFS structure rule: a MaxPool takes the earliest spike of one layer, not of a sum."""
    pool = {"kernel_shape": [2, 2]}
    one_layer = _graph(("Relu", ["x"], "r"), ("MaxPool", ["r"], "p", pool), ("Conv", ["p", "w"], "y"))
    of_a_sum = _graph(
        ("Conv", ["x", "w"], "a"),
        ("Relu", ["a"], "ra"),
        ("Conv", ["x", "w"], "b"),
        ("Relu", ["b"], "rb"),
        ("Add", ["ra", "rb"], "s"),
        ("MaxPool", ["s"], "p", pool),
        ("Conv", ["p", "w"], "y"),
    )
    assert _refusal("ttfs", one_layer) is None
    error = _refusal("ttfs", of_a_sum)
    support = TTFS.ops["MaxPool"]
    assert error is not None and error.node == "p"
    assert str(error) == f"net.onnx: node 'p' (MaxPool): {support.refusal}; {support.advice} or use --neuron signgd"


def test_a_decomposed_op_left_for_signgd_is_refused():
    """signGD converts MaxPool through decompose; one its refusal still sees was not rewritten."""
    graph = _graph(("Relu", ["x"], "r"), ("MaxPool", ["r"], "p", {"kernel_shape": [2, 2]}), ("Conv", ["p", "w"], "y"))
    assert SIGNGD.converts(graph, graph.nodes[1]) and not SIGNGD.accepts(graph, graph.nodes[1])
    error = _refusal("signgd", graph)
    assert error is not None and error.op == "MaxPool"


# --- the tables are the source --------------------------------------------------------------------


@pytest.mark.parametrize("family", ["if", "signgd", "ttfs"])
def test_refusals_read_the_table(family, monkeypatch):
    """An op added to a family's table passes that family's refusal; one removed is refused."""
    table = REFUSERS[family][0]
    assert _refusal(family, _conv_act_conv("Sin")) is not None
    monkeypatch.setitem(table.ops, "Sin", Support(LINEAR, "test"))
    assert _refusal(family, _conv_act_conv("Sin")) is None
    monkeypatch.delitem(table.ops, "Relu")
    error = _refusal(family, _conv_act_conv("Relu"))
    assert error is not None and error.op == "Relu"


def test_the_families_derived_sets_come_from_the_tables():
    assert ttfs_graph.SPIKE_LAYOUT_OPS == TTFS.ops_of(op_support.LAYOUT)
    assert ttfs_graph.SPIKE_POOL_OPS == TTFS.ops_of(op_support.POOL) == {"MaxPool"}
    assert spikify_signgd.UNARY == {op: s.neuron for op, s in SIGNGD.ops.items() if s.kind == NEURON and s.neuron}
    assert set(spikify_signgd.UNARY) | {"Gelu"} == SIGNGD.ops_of(NEURON)


def test_every_support_is_well_formed():
    for family in op_support.FAMILIES.values():
        for op, support in family.ops.items():
            assert support.kind in op_support.KINDS and support.how, (family.neuron, op)
            assert "|" not in support.how, (family.neuron, op)  # a README table cell
            assert not support.refusal or support.when is not None, (family.neuron, op)
            if support.kind == FORMS and support.when is None:
                assert support.how.startswith("every form"), (family.neuron, op)


def test_one_line_lists_every_refused_op_and_names_unnamed_nodes_as_the_input_did():
    """Unnamed nodes are named by op, index in the input graph and first input and output; when
    several ops are refused, the one line counts each and names its first node."""
    nodes = [
        helper.make_node("Relu", ["x"], ["a"]),
        helper.make_node("Sin", ["a"], ["b"]),
        helper.make_node("Cos", ["b"], ["c"]),
        helper.make_node("Sin", ["c"], ["y"]),
    ]
    ann = float_model(nodes, "g", {"x": ["N", 3]}, {"y": ["N", 3]}, [])
    with pytest.raises(SnnError) as caught:
        compile_model(ann, None, CompileOptions(neuron="if"), calibration=np.ones((4, 3), np.float32))
    text = str(caught.value)
    assert "\n" not in text
    assert text.startswith("<model>: node 'Sin#1 (a -> b)' (Sin): ")
    assert "3 nodes of 2 ops do not convert: Sin: 2 (first 'Sin#1 (a -> b)'), Cos: 1 (first 'Cos#2 (b -> c)')" in text
