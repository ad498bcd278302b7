"""op_support: which ONNX ops each neuron family converts, and how; the one source of the refusals
(each family's `refuse_unconvertible`, hence check_ops and `--neuron auto`) and of the README's
op list (`render_markdown`).

A family's table maps every op it converts, as its refusal sees the graph (after canonicalize,
fold_bn and quantize_weights; for signGD also after decompose), to a Support: how the op is
converted (a kind and a phrase) and, for an op converted only in some forms, the test of the
form (`when`) and the refusal of the others. An op outside the table, or of a domain other than
ONNX's, is refused. A refusal names another family (`use --neuron signgd`) only when that
family's table converts the node.

`python -m onnx_snn.passes.op_support [README.md]` prints the README section, or rewrites it in
place between the markers.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import onnx_graphsurgeon as gs

from onnx_snn.errors import SnnError
from onnx_snn.ir.function_parts import SNN_DOMAIN
from onnx_snn.passes.base import PassContext
from onnx_snn.passes.graph_utils import (
    LAYOUT_OPS,
    constant_value,
    in_default_domain,
    is_activation,
    node_error,
    producer,
    silu_gate,
)

#: kinds of support, in the order the README lists them
NEURON = "neuron"  # replaced by one of the family's neurons
REWRITTEN = "rewritten"  # rewritten before the refusal into ops of the table; one the refusal sees is refused
FORMS = "forms"  # converted in the forms its phrase names (`when` tells them apart), the others refused
POOL = "pool"  # TTFS: selects one input spike per output (the earliest)
LAYOUT = "layout"  # TTFS: only moves elements, so it acts on spike times unchanged
LINEAR = "linear"  # carried as it is: linear in the activations, or it moves, copies or shapes data
KINDS = (NEURON, REWRITTEN, FORMS, POOL, LAYOUT, LINEAR)

#: a test of a node's form: (graph, node) -> whether the family converts that form
Predicate = Callable[[gs.Graph, gs.Node], bool]

README_BEGIN = "<!-- op-support:begin -->"
README_END = "<!-- op-support:end -->"


@dataclass(frozen=True)
class Support:
    """How a family converts one op."""

    kind: str
    how: str  # the phrase the README shows
    when: Predicate | None = None  # the forms converted; None: every form
    refusal: str = ""  # the message for a form `when` rejects
    advice: str = ""  # what to do about such a form (a family that converts it is added)
    neuron: str = ""  # signGD: the `function` of the unary neuron that replaces the op


@dataclass(frozen=True)
class Family:
    """One neuron family's op table and the wording of its refusals."""

    neuron: str  # the --neuron value
    title: str
    ops: Mapping[str, Support]
    unsupported: str  # the refusal of an op that no family converts
    unsupported_hint: str
    other_family: str = ""  # the refusal of an op that a family in `alternatives` converts
    alternatives: tuple[str, ...] = ()  # the families (--neuron values) a refusal may point to

    def support(self, node: gs.Node) -> Support | None:
        """The table's entry for `node`'s op; None for an op it lacks or a non-ONNX domain."""
        return self.ops.get(node.op) if in_default_domain(node) else None

    def accepts(self, graph: gs.Graph, node: gs.Node) -> bool:
        """Whether the family's refusal lets `node` pass: a table op, in a form the table converts,
        and not one that an earlier pass of the family should have rewritten."""
        support = self.support(node)
        return support is not None and support.kind != REWRITTEN and (support.when is None or support.when(graph, node))

    def converts(self, graph: gs.Graph, node: gs.Node) -> bool:
        """Whether the family converts `node` as it stands before the family's own passes (what
        another family's refusal asks before pointing to this one)."""
        support = self.support(node)
        return support is not None and (support.kind == REWRITTEN or support.when is None or support.when(graph, node))

    def ops_of(self, *kinds: str) -> frozenset[str]:
        """The ops of the table with one of `kinds`."""
        return frozenset(op for op, support in self.ops.items() if support.kind in kinds)


def refusal(family: Family, graph: gs.Graph, node: gs.Node, ctx: PassContext) -> SnnError | None:
    """The SnnError `family` raises for `node` (one line: path, node, op, hint), None when it converts it."""
    if node.domain == SNN_DOMAIN or family.accepts(graph, node):
        return None
    support = family.support(node)
    others = [name for name in family.alternatives if FAMILIES[name].converts(graph, node)]
    way_out = "use " + " or ".join(f"--neuron {name}" for name in others) if others else ""
    if support is not None and support.refusal:  # a form the family does not convert, of an op it does
        hint = " or ".join(part for part in (support.advice, way_out) if part) or family.unsupported_hint
        return node_error(ctx, node, support.refusal, hint=hint)
    if others:
        return node_error(ctx, node, family.other_family, hint=way_out)
    return node_error(ctx, node, family.unsupported, hint=family.unsupported_hint)


def refuse_unconvertible(family: Family, graph: gs.Graph, ctx: PassContext) -> None:
    """Raise the refusal of the first node (in graph order) that `family` does not convert; when
    nodes of several ops are refused, its one line ends with every refused op, its count and its
    first node."""
    refused = [(node, error) for node in graph.nodes if (error := refusal(family, graph, node, ctx)) is not None]
    if not refused:
        return
    first = refused[0][1]
    by_op: dict[str, list[SnnError]] = {}
    for _, error in refused:
        by_op.setdefault(str(error.op), []).append(error)
    if len(by_op) == 1:
        raise first
    listing = ", ".join(f"{op}: {len(errors)} (first '{errors[0].node}')" for op, errors in by_op.items())
    message = f"{first.message} ({len(refused)} nodes of {len(by_op)} ops do not convert: {listing})"
    raise SnnError(message, path=first.path, node=first.node, op=first.op, hint=first.hint)


# --- the tests of forms ------------------------------------------------------------------------


def at_most_one_variable(graph: gs.Graph, node: gs.Node) -> bool:
    """At most one input is not a constant (Mul/Div by a constant: a scale)."""
    return sum(constant_value(t) is None for t in node.inputs) <= 1


def two_activations(graph: gs.Graph, node: gs.Node) -> bool:
    """Exactly two inputs are activations (graph_utils.is_activation)."""
    return _activations(node) == 2


def _activations(node: gs.Node) -> int:
    return sum(is_activation(t) for t in node.inputs)


def not_two_activations(graph: gs.Graph, node: gs.Node) -> bool:
    return not two_activations(graph, node)


def rsqrt_divisor(node: gs.Node) -> gs.Node | None:
    """The Sqrt of a Div(p, Sqrt(q)) that reads two activations and is the Sqrt's only reader
    (signGD's p/sqrt(q) neuron takes q itself), else None."""
    if node.op != "Div" or len(node.inputs) != 2 or _activations(node) != 2:
        return None
    root = producer(node.inputs[1])
    return root if root is not None and root.op == "Sqrt" and len(node.inputs[1].outputs) == 1 else None


def feeds_rsqrt_neurons(graph: gs.Graph, node: gs.Node) -> bool:
    """This Sqrt is read, not as a graph output, and only by Div(p, Sqrt(q)) nodes that signGD's
    p/sqrt(q) neuron replaces."""
    readers = node.outputs[0].outputs
    return bool(readers) and node.outputs[0] not in graph.outputs and all(rsqrt_divisor(r) is node for r in readers)


def power_divisor(node: gs.Node) -> gs.Node | None:
    """The Pow of a Div(p, Pow(q, c)) that reads two activations, with a constant scalar exponent c,
    and is the Pow's only reader (signGD's p_div_q_pow neuron takes q and c), else None."""
    if node.op != "Div" or len(node.inputs) != 2 or _activations(node) != 2:
        return None
    power = producer(node.inputs[1])
    if power is None or power.op != "Pow" or len(node.inputs[1].outputs) != 1 or len(power.inputs) != 2:
        return None
    exponent = constant_value(power.inputs[1])
    return power if exponent is not None and exponent.size == 1 and is_activation(power.inputs[0]) else None


def feeds_power_neurons(graph: gs.Graph, node: gs.Node) -> bool:
    """This Pow is read, not as a graph output, and only by Div(p, Pow(q, c)) nodes that signGD's
    p_div_q_pow neuron replaces."""
    readers = node.outputs[0].outputs
    return bool(readers) and node.outputs[0] not in graph.outputs and all(power_divisor(r) is node for r in readers)


def clip_bounds(node: gs.Node) -> tuple[float, float] | None:
    """(min, max) of a Clip whose bounds are absent (±inf) or constant scalars, else None."""
    bounds = []
    for index, absent in ((1, -float("inf")), (2, float("inf"))):
        if index >= len(node.inputs) or not node.inputs[index].name:
            bounds.append(absent)
            continue
        value = constant_value(node.inputs[index])
        if value is None or value.size != 1:
            return None
        bounds.append(float(value.reshape(())))
    return bounds[0], bounds[1]


def relu_cap(node: gs.Node) -> float | None:
    """c for a Clip(x, 0, c) with a constant c > 0 (a capped ReLU, ReLU6 at c = 6), else None."""
    bounds = clip_bounds(node) if node.op == "Clip" and in_default_domain(node) else None
    return bounds[1] if bounds is not None and bounds[0] == 0.0 and 0.0 < bounds[1] < float("inf") else None


def is_capped_relu(graph: gs.Graph, node: gs.Node) -> bool:
    """This Clip is Clip(x, 0, c) with a constant c > 0."""
    return relu_cap(node) is not None


def constant_clip_bounds(graph: gs.Graph, node: gs.Node) -> bool:
    """This Clip's bounds are constants (or absent)."""
    return clip_bounds(node) is not None


def is_silu_gate(graph: gs.Graph, node: gs.Node) -> bool:
    """This Sigmoid is the gate of a canonical SiLU Mul(u, Sigmoid(u)), read by nothing else."""
    readers = node.outputs[0].outputs
    return len(readers) == 1 and silu_gate(graph, readers[0]) is node


def indices_unread(graph: gs.Graph, node: gs.Node) -> bool:
    """This MaxPool's Indices output (its second) is absent or read by nothing."""
    return not any(o.outputs or o in graph.outputs for o in node.outputs[1:])


def reads_one_layer(graph: gs.Graph, pool: gs.Node) -> bool:
    """Whether a TTFS `pool` reads, through layout ops, pools and per-channel affine constants, one
    ReLU output or a graph input (one layer's spikes, whose earliest spike it can take)."""
    movable = TTFS.ops_of(LAYOUT, POOL) | {"Mul", "Add", "Sub", "Div"}
    tensor = pool.inputs[0]
    while tensor not in graph.inputs:
        node = tensor.inputs[0] if tensor.inputs else None
        if node is None:
            return False
        if node.op == "Relu":
            return True
        data = [t for t in node.inputs if constant_value(t) is None]
        if node.op not in movable or len(data) != 1:
            return False
        tensor = data[0]
    return True


# --- the tables --------------------------------------------------------------------------------

#: linear maps of the activations (MatMul and Div, whose forms differ by family, are apart)
_LINEAR_MAPS = (
    "Conv",
    "Gemm",
    "Add",
    "Sub",
    "Neg",
    "Sum",
    "Mean",
    "AveragePool",
    "GlobalAveragePool",
    "ReduceMean",
    "ReduceSum",
    "Pad",
)
#: ops that move, copy, select or shape data, or make constants and shapes
_DATA_OPS = (
    "Concat",
    "Split",
    "Slice",
    "Gather",
    "Expand",
    "Tile",
    "Identity",
    "Cast",
    "Shape",
    "Constant",
    "ConstantOfShape",
    "Range",
)


#: ops of a table that share one Support
_Group = tuple[tuple[str, ...], Support]
#: how every family carries the ops that move, copy or shape data
_DATA = Support(LINEAR, "carried as is: moves, copies or shapes data")


def _table(*groups: _Group) -> dict[str, Support]:
    table: dict[str, Support] = {}
    for ops, support in groups:
        for op in ops:
            assert op not in table, f"{op} is listed twice"
            table[op] = support
    return table


_PRODUCT_OF_ACTIVATIONS = "a product of two activations"


def _scales_only(how: str, refusal: str) -> Support:
    """Support of a Mul or Div converted as a scale (at most one operand not a constant), `how`;
    a product of two activations is refused with "a product of two activations `refusal`"."""
    return Support(
        FORMS,
        f"{how}; {_PRODUCT_OF_ACTIVATIONS} is refused",
        when=at_most_one_variable,
        refusal=f"{_PRODUCT_OF_ACTIVATIONS} {refusal}",
    )


_RATE_LINEAR = Support(LINEAR, "carried as is: linear in the activations, so the rates pass through")


def _relu_family(neuron: str, title: str, relu: str, unsupported: str, *groups: _Group) -> Family:
    """A family whose one nonlinearity is the ReLU, which becomes its neuron (`relu`: how), and
    which carries the ops of `groups`. Its refusal of another nonlinearity names the neurons (the
    `title` before its parenthesis: "IF neurons") and points to signGD where signGD converts it."""
    neurons = title.split(" (")[0]
    return Family(
        neuron=neuron,
        title=title,
        ops=_table((("Relu",), Support(NEURON, relu)), *groups),
        other_family=f"{neurons} convert only ReLU nonlinearities",
        unsupported=unsupported,
        unsupported_hint="replace it in the ANN or file an issue with the model",
        alternatives=("signgd",),
    )


RATE = _relu_family(
    "if",
    "IF neurons (rate coding)",
    "replaced by an `snn.BurstIFNeuron` (threshold 1, signed burst spikes, the default), `snn.SignedIFNeuron` "
    "(`--spikes signed`), `snn.IFNeuron` (`--spikes binary`, soft or hard reset) or `snn.MultiSpikeIFNeuron` "
    "(`--spikes multi`)",
    "op is not supported by the SNN compiler",
    (
        ("Mul",),
        _scales_only(
            "carried as is when at most one operand is not a constant (a scale)",
            "is not rate-codable by IF neurons",
        ),
    ),
    (
        ("Clip",),
        Support(
            FORMS,
            "Clip(x, 0, c) with a constant c > 0 (ReLU6): `snn.CappedBurstIFNeuron`, λ the --norm statistic "
            "(at most c), its count at most k = c/λ spikes a step on average per channel (exact); with "
            "`--spikes signed` or `binary` the neuron of `Relu`, whose rate caps at one spike a step, so the "
            "output caps at its scale λ: λ = c where the Clip binds on the calibration data (exact), else "
            "the --norm statistic as for a ReLU",
            when=is_capped_relu,
            refusal="IF neurons convert only the Clip(x, 0, c) form of Clip (a ReLU capped at c)",
        ),
    ),
    (
        ("MaxPool",),
        Support(
            NEURON,
            "an `snn.IFMaxPool` where its input changes over time (spikes): the rise of the window "
            "maximum of the running spike counts, so that each output's spike count is the largest "
            "count of its window and its rate the max of their rates (every MaxPool attribute passes "
            "through); a MaxPool of the constant analog input, computed once, is kept as it is. "
            "`--neuron auto` picks IF neurons for a ReLU net with MaxPools: with burst spikes they are "
            "more accurate than signGD at every T on fashion-maxpool (88.80 / 88.79 / 88.83 / 88.86 % "
            "against 83.68 / 87.56 / 88.54 / 88.77 % at T = 8 / 16 / 32 / 64, 10,000 images, ANN 88.82 %)",
            when=indices_unread,
            refusal="a MaxPool whose Indices output is read has no IF conversion",
            advice="read only its first output",
        ),
    ),
    (
        ("MatMul", "Div"),
        Support(
            LINEAR,
            "carried as is, whatever its operands (canonicalize has made a "
            "Div by a float constant a Mul; a MatMul or Div of two "
            "activations is not refused, though rates do not multiply)",
        ),
    ),
    (_LINEAR_MAPS, _RATE_LINEAR),
    (LAYOUT_OPS + _DATA_OPS + ("Dropout",), _DATA),
)

_SIGNGD_AFFINE = Support(LINEAR, "carried as is: affine in the activations (the neurons' input currents)")

_SIGNGD_OPS = _table(
    (("Relu",), Support(NEURON, "an `snn.SignGDNeuron` (`relu`)", neuron="relu")),
    (("LeakyRelu",), Support(NEURON, "an `snn.SignGDNeuron` (`leaky_relu`, the model's slope)", neuron="leaky_relu")),
    (("Abs",), Support(NEURON, "an `snn.SignGDNeuron` (`abs`)", neuron="abs")),
    (("Exp",), Support(NEURON, "an `snn.SignGDNeuron` (`exp`)", neuron="exp")),
    (("HardSwish",), Support(NEURON, "an `snn.SignGDNeuron` (`hard_swish`)", neuron="hard_swish")),
    (("Gelu",), Support(NEURON, "an `snn.SignGDNeuron` (`gelu_erf`, or `gelu_tanh` for approximate=tanh)")),
    (
        ("HardSigmoid",),
        Support(
            NEURON,
            "an `snn.SignGDNeuron` (`clip` of alpha·x + beta to [0, 1], held scaled to the range)",
            neuron="clip",
        ),
    ),
    (
        ("Clip",),
        Support(
            NEURON,
            "with constant bounds (either may be absent; ReLU6 is Clip(0, 6)): an `snn.SignGDNeuron` "
            "(`clip`, held scaled to the range when both bounds are given)",
            when=constant_clip_bounds,
            refusal="a Clip whose bounds are not constants has no signGD neuron",
            advice="give the Clip constant bounds",
            neuron="clip",
        ),
    ),
    (
        ("Sigmoid",),
        Support(
            NEURON,
            "an `snn.SignGDNeuron` (`sigmoid`, held scaled to the range); the gate of a SiLU "
            "Mul(u, Sigmoid(u)) goes into that `silu` neuron instead",
            neuron="sigmoid",
        ),
    ),
    (
        ("MaxPool",),
        Support(
            REWRITTEN,
            "decompose: 2-D (any dilation, floor or ceil mode, explicit or SAME padding) becomes Pad, Slice and "
            "pairwise Max, each Max a `maximum` neuron",
        ),
    ),
    (
        ("LayerNormalization",),
        Support(REWRITTEN, "decompose: mean, `square` neurons, a `p_rsqrt_q` neuron and the affine scale and bias"),
    ),
    (
        ("Softmax",),
        Support(
            REWRITTEN,
            "decompose: the row max (a tree of `maximum` neurons) subtracted, an `exp` neuron, ReduceSum and a "
            "`div` neuron",
        ),
    ),
    (
        ("InstanceNormalization",),
        Support(
            REWRITTEN,
            "decompose: as LayerNormalization over the spatial axes, then the per-channel scale and bias "
            "(GroupNorm exports as Reshape, InstanceNormalization, Reshape)",
        ),
    ),
    (
        ("GroupNormalization",),
        Support(
            REWRITTEN, "decompose: Reshape to groups, as LayerNormalization, Reshape back, per-channel scale and bias"
        ),
    ),
    (
        ("LRN",),
        Support(
            REWRITTEN,
            "decompose: a `square` neuron, the window sum over channels as a banded 1x1 Conv, and a "
            "`p_div_q_pow` neuron",
        ),
    ),
    (
        ("Mul",),
        Support(
            FORMS,
            "every form: with at most one activation operand, carried as is; Mul(u, u) a "
            "`square` neuron; Mul(u, Sigmoid(u)) a `silu` neuron; of two activations a "
            "`product` `snn.SignGDBinaryNeuron`",
        ),
    ),
    (
        ("Div",),
        Support(
            FORMS,
            "every form: with at most one activation operand, carried as is; Div(p, Sqrt(q)) "
            "a `p_rsqrt_q`, Div(p, Pow(q, c)) a `p_div_q_pow` and of two activations a `div` "
            "`snn.SignGDBinaryNeuron`",
        ),
    ),
    (("Max",), Support(FORMS, "of two activations only: a `maximum` `snn.SignGDBinaryNeuron`", when=two_activations)),
    (
        ("Sqrt",),
        Support(
            FORMS,
            "only as the divisor of Div(p, Sqrt(q)), which the `p_rsqrt_q` neuron computes; any other Sqrt is refused",
            when=feeds_rsqrt_neurons,
        ),
    ),
    (
        ("Pow",),
        Support(
            FORMS,
            "only as the divisor of Div(p, Pow(q, c)) with a constant c (torch's LocalResponseNorm), which the "
            "`p_div_q_pow` neuron computes; any other Pow is refused",
            when=feeds_power_neurons,
        ),
    ),
    (
        ("MatMul",),
        Support(
            FORMS,
            "with a constant operand, carried as is; decompose makes a MatMul of two "
            "activations (ranks >= 2) `product` neurons and a ReduceSum",
            when=not_two_activations,
        ),
    ),
    (_LINEAR_MAPS, _SIGNGD_AFFINE),
    (LAYOUT_OPS + _DATA_OPS, _DATA),
)


def _convertible(table: Mapping[str, Support]) -> str:
    """'A, B and some forms of C, D': the nonlinear ops of a table, for a refusal's hint."""
    whole = sorted(op for op, support in table.items() if support.kind in (NEURON, REWRITTEN))
    forms = sorted(op for op, support in table.items() if support.kind == FORMS)
    return f"{', '.join(whole)} and some forms of {', '.join(forms)}"


SIGNGD = Family(
    neuron="signgd",
    title="signGD neurons",
    ops=_SIGNGD_OPS,
    unsupported="op is not affine and no signGD neuron implements it",
    unsupported_hint=(
        f"signGD converts {_convertible(_SIGNGD_OPS)} (see the README's supported ops); replace this op in the ANN"
    ),
)

TTFS = _relu_family(
    "ttfs",
    "TTFS neurons (time to first spike)",
    "an `snn.TTFSNeuron` (one spike at most; model A: `snn.TTFSDenseA`)",
    "op is not supported by the TTFS conversion",
    (
        ("MaxPool",),
        Support(
            POOL,
            "the earliest spike, when it reads one layer's spikes (through layout ops, "
            "pools and per-channel constants)",
            when=reads_one_layer,
            refusal="MaxPool reads a sum or mix of layers (e.g. a residual Add), which has "
            "no single earliest spike, so its windows cannot be aligned",
            advice="put a ReLU before the MaxPool",
        ),
    ),
    (
        ("Mul", "Div"),
        _scales_only("by a constant (at most one non-constant operand), carried as is", "has no TTFS mapping"),
    ),
    (LAYOUT_OPS, Support(LAYOUT, "moves the spikes, their times unchanged")),
    (
        ("MatMul",),
        Support(
            LINEAR,
            "carried as is, whatever its operands (a MatMul of two activations is not "
            "refused, though spike leads do not multiply)",
        ),
    ),
    (_LINEAR_MAPS, Support(LINEAR, "carried as is: linear in the activations (the spikes' leads)")),
    (_DATA_OPS + ("Dropout",), _DATA),
)

#: the families by --neuron value
FAMILIES: dict[str, Family] = {family.neuron: family for family in (RATE, SIGNGD, TTFS)}

#: what the passes every family starts with rewrite before any refusal (README only)
COMMON: dict[str, Support] = _table(
    (
        ("BatchNormalization",),
        Support(REWRITTEN, "fold_bn: folded into the Conv, Gemm or MatMul before it, else a per-channel Mul and Add"),
    ),
    (
        ("Softmax", "LogSoftmax"),
        Support(REWRITTEN, "canonicalize: dropped where it writes a graph output (the SNN outputs logits; noted)"),
    ),
)


# --- the README section ------------------------------------------------------------------------


def _rows(table: Mapping[str, Support]) -> list[str]:
    groups: dict[tuple[str, str], list[str]] = {}
    for op, support in table.items():
        groups.setdefault((support.kind, support.how), []).append(op)
    ordered = sorted(groups.items(), key=lambda item: (KINDS.index(item[0][0]), sorted(item[1])[0]))
    return ["| ONNX ops | how |", "| --- | --- |"] + [
        f"| {', '.join(f'`{op}`' for op in sorted(ops))} | {how} |" for (_, how), ops in ordered
    ]


def render_markdown() -> str:
    """The README's op list: per family, each op it converts and how (from the tables above)."""
    lines = [
        "Generated from the tables in `passes/op_support.py`, from which the refusals come too "
        "(`python -m onnx_snn.passes.op_support README.md` rewrites this section). Ops are named as "
        "the family's refusal sees them: after canonicalize (which also fuses exporters' GELU, "
        "LayerNorm and hard-swish decompositions into one `Gelu`, `LayerNormalization` or "
        "`HardSwish`, and writes SiLU as `Mul(u, Sigmoid(u))`) and fold_bn. Any other op, or an op "
        "of another domain, stops compilation with one line naming the node; the hint says "
        "`use --neuron signgd` only when signGD converts that node.",
        "",
        "Every family:",
        "",
        *_rows(COMMON),
    ]
    for family in FAMILIES.values():
        lines += ["", f"### {family.title}: `--neuron {family.neuron}`", "", *_rows(family.ops)]
    return "\n".join(lines) + "\n"


def readme_section(text: str) -> str:
    """What lies between the op-support markers of README text."""
    begin, end = text.index(README_BEGIN) + len(README_BEGIN), text.index(README_END)
    return text[begin:end].strip("\n") + "\n"


def with_section(text: str) -> str:
    """README text with the section between the markers replaced by `render_markdown()`."""
    begin, end = text.index(README_BEGIN) + len(README_BEGIN), text.index(README_END)
    return f"{text[:begin]}\n{render_markdown()}{text[end:]}"


if __name__ == "__main__":
    if len(sys.argv) > 1:
        readme = Path(sys.argv[1])
        readme.write_text(with_section(readme.read_text()))
    else:
        print(render_markdown(), end="")
