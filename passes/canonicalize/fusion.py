"""Shared by the rewriters that recognise a decomposed function (gelu, hardswish, layernorm, silu).

Not a rewriter itself. Exporters spell one function in many op sequences (Div by √2, or Neg
then Mul by 1/√2; x³ as Pow(x, 3) or x·(x·x); the 0.5 of GELU first or last), so those
rewriters compare what a subgraph computes rather than its ops: a `Poly` maps each monomial
(a sorted tuple of symbol names, a name repeated once per power) to a float64 coefficient
array, and `node_poly` gives the polynomial that an Add, Sub, Mul, Neg, Div by a constant or
Pow by a small integer constant computes from the polynomials of its inputs. Constants are
compared with the relative tolerance RTOL, enough for float32 spellings of √2, 0.044715, ....
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping
from typing import cast

import numpy as np
import onnx_graphsurgeon as gs

from onnx_snn.passes.graph_utils import constant_value, fresh_name, producer, sole_reader

Monomial = tuple[str, ...]
Poly = dict[Monomial, np.ndarray]
#: what `matches` compares: a Poly, or a pattern written with float coefficients
Coefficients = Mapping[Monomial, "np.ndarray | float"]

#: relative tolerance when matching exporters' constants
RTOL = 1e-4
#: the symbol of the one tensor that `in_one_tensor` expresses a tensor in
X = "x"
#: the symbol of the gate in scaled_product (sorts before X)
_GATE = "g"
#: the ops node_poly knows
POLY_OPS = frozenset({"Add", "Sub", "Mul", "Neg", "Div", "Pow"})
#: the largest exponent of Pow that node_poly expands
MAX_POWER = 4


def constant(value: np.ndarray | float) -> Poly:
    """The constant polynomial `value`."""
    return {(): np.asarray(value, dtype=np.float64)}


def symbol(name: str) -> Poly:
    """The polynomial `name`."""
    return {(name,): np.ones((), dtype=np.float64)}


def add(p: Poly, q: Poly, sign: float = 1.0) -> Poly:
    """p + sign·q."""
    total = dict(p)
    for monomial, coefficient in q.items():
        total[monomial] = total[monomial] + sign * coefficient if monomial in total else sign * coefficient
    return total


def mul(p: Poly, q: Poly) -> Poly:
    """p·q."""
    product: Poly = {}
    for (m1, c1), (m2, c2) in itertools.product(p.items(), q.items()):
        product = add(product, {tuple(sorted(m1 + m2)): c1 * c2})
    return product


def scalar(p: Poly, monomial: Monomial) -> float | None:
    """The coefficient of `monomial` when p is a scalar multiple of that monomial alone, else None."""
    if set(p) != {monomial} or p[monomial].size != 1:
        return None
    return float(p[monomial].reshape(()))


def close(a: float, b: float) -> bool:
    """Whether a equals b within RTOL."""
    return bool(np.isclose(a, b, rtol=RTOL, atol=0.0))


def matches(p: Coefficients, q: Coefficients) -> bool:
    """Whether p and q have the same monomials with coefficients equal within RTOL (after broadcasting)."""
    if set(p) != set(q):
        return False
    try:
        return all(np.allclose(p[m], q[m], rtol=RTOL, atol=0.0) for m in p)
    except ValueError:  # coefficients that do not broadcast
        return False


def node_poly(node: gs.Node, args: list[Poly]) -> Poly | None:
    """What `node` computes from its inputs' polynomials `args`, or None when that is no polynomial.

    Div needs a constant non-zero divisor and Pow a constant integer exponent in 1..MAX_POWER.
    """
    if node.op not in POLY_OPS or len(node.outputs) != 1 or len(args) != (1 if node.op == "Neg" else 2):
        return None
    if node.op == "Neg":
        return {m: -c for m, c in args[0].items()}
    a, b = args
    if node.op in ("Add", "Sub"):
        return add(a, b, 1.0 if node.op == "Add" else -1.0)
    if node.op == "Mul":
        return mul(a, b)
    if set(b) != {()}:
        return None
    if node.op == "Div":
        return mul(a, constant(1.0 / b[()])) if np.all(b[()] != 0) else None
    power = float(b[()].reshape(-1)[0]) if b[()].size == 1 else None
    if power is None or power not in range(1, MAX_POWER + 1):
        return None
    result = a
    for _ in range(int(power) - 1):
        result = mul(result, a)
    return result


def tensor_poly(tensor: gs.Tensor, known: dict[str, Poly]) -> Poly | None:
    """The constant polynomial of a constant tensor, else `known[tensor.name]` (None when absent)."""
    value = constant_value(tensor)
    return constant(value) if value is not None else known.get(tensor.name)


def evaluate(node: gs.Node, known: dict[str, Poly]) -> Poly | None:
    """node_poly of `node`, its inputs' polynomials given by tensor_poly, or None when one is unknown."""
    args = [tensor_poly(t, known) for t in node.inputs]
    return None if any(a is None for a in args) else node_poly(node, cast("list[Poly]", args))


def in_one_tensor(graph: gs.Graph, tensor: gs.Tensor) -> tuple[gs.Tensor | None, Poly, list[gs.Node]] | None:
    """`tensor` as a polynomial in symbol X standing for one tensor x: (x, polynomial, nodes walked).

    The walk goes back through the POLY_OPS producer of every tensor that has exactly one
    reader and is not a graph output; the first tensor it cannot walk through (several
    readers, a graph input, another producer) is x. x is None when `tensor` is a constant; the
    result is None when the walk ends at two different tensors. The nodes are listed inputs
    first, and each of their outputs is read only by the next node of the walk.
    """
    roots: list[gs.Tensor] = []
    nodes: list[gs.Node] = []

    def walk(t: gs.Tensor) -> Poly:
        value = constant_value(t)
        if value is not None:
            return constant(value)
        node = producer(t)
        if node is not None and node.op in POLY_OPS and sole_reader(graph, t) is not None:
            mark = len(roots), len(nodes)
            poly = node_poly(node, [walk(i) for i in node.inputs])
            if poly is not None:
                nodes.append(node)
                return poly
            del roots[mark[0] :], nodes[mark[1] :]
        roots.append(t)
        return symbol(X)

    poly = walk(tensor)
    if any(r is not roots[0] for r in roots):
        return None
    return (roots[0] if roots else None), poly, nodes


def scaled_product(graph: gs.Graph, gate: gs.Tensor, scale: float) -> tuple[gs.Tensor, gs.Tensor, list[gs.Node]] | None:
    """(x, y, nodes) when y = scale·x·gate (within RTOL) through a chain of Mul and Div nodes, else None.

    The chain starts at `gate`'s only reader; each node multiplies by, or divides by, a scalar
    constant, or multiplies by c·x once (`in_one_tensor`, which also finds x); it ends at the
    first tensor equal to scale·x·gate. Every tensor before y has one reader; `nodes` are the
    chain and the nodes that compute c·x from x.
    """
    product, x, nodes, t = symbol(_GATE), None, [], gate
    while (node := sole_reader(graph, t)) is not None and node.op in ("Mul", "Div") and len(node.inputs) == 2:
        other = node.inputs[1] if node.inputs[0] is t else node.inputs[0]
        found = in_one_tensor(graph, other)
        if found is None or (found[0] is not None and x is not None and found[0] is not x):
            return None
        x = found[0] if found[0] is not None else x
        step = node_poly(node, [product if i is t else found[1] for i in node.inputs])
        if step is None:
            return None
        product = step
        nodes += [*found[2], node]
        t = node.outputs[0]
        factor = scalar(product, (_GATE, X))
        if factor is not None and close(factor, scale):
            return x, t, nodes
    return None


def fuse(
    graph: gs.Graph,
    nodes: list[gs.Node],
    op: str,
    inputs: list[gs.Tensor],
    output: gs.Tensor,
    attrs: dict | None = None,
) -> gs.Node:
    """Replace `nodes` by one node `op`(inputs) writing `output`, and return it.

    The caller guarantees that `output` is the only tensor of `nodes` read outside them. The new
    node is named after the scope that the names of `nodes` share ("/1/" + op for torch's
    "/1/Div", "/1/Erf", ...), or fresh when they share none.
    """
    scope = os.path.commonprefix([n.name or "" for n in nodes]).rpartition("/")[0]
    for node in nodes:
        node.inputs.clear()
        node.outputs.clear()
    fused = gs.Node(
        op, name=f"{scope}/{op}" if scope else fresh_name(op), attrs=attrs or {}, inputs=inputs, outputs=[output]
    )
    graph.nodes.append(fused)
    return fused
