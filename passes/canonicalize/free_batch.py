"""Rewriter: give every graph input a symbolic batch axis 0.

Idiom: an exporter that traced with a fixed batch (torch's dynamo exporter without dynamic
shapes) writes inputs such as [2, 3, 32, 32]. The SNN runtime folds time into the batch, so
axis 0 must accept any size. Dim 0 of every input of rank >= 1 becomes one symbol: the first
input's own symbol when it has one, else "batch". Graph output shapes are dropped so that shape
inference recomputes them. The batch the model was traced with is recorded in
ctx.state.export_batch_size (None when the batch was already symbolic), so that later
rewriters can recognise constants that encode it. Run before constant folding, so that shape
computations on the batch stay dynamic instead of being folded into constants.
"""

from __future__ import annotations

import onnx_graphsurgeon as gs

from onnx_snn.passes.base import PassContext

DEFAULT_SYMBOL = "batch"


def batch_symbol(graph: gs.Graph) -> str | None:
    """The symbolic batch dim of the graph's inputs after `apply`, or None if no input is batched."""
    for tensor in graph.inputs:
        if tensor.shape and isinstance(tensor.shape[0], str):
            return tensor.shape[0]
    return None


def apply(graph: gs.Graph, ctx: PassContext) -> int:
    """Make dim 0 of every batched graph input symbolic; return how many inputs changed."""
    batched = [t for t in graph.inputs if t.shape]
    symbol = next((t.shape[0] for t in batched if isinstance(t.shape[0], str)), DEFAULT_SYMBOL)
    fixed = sorted({t.shape[0] for t in batched if isinstance(t.shape[0], int)})
    changed = 0
    for tensor in batched:
        if tensor.shape[0] != symbol:
            tensor.shape = [symbol, *tensor.shape[1:]]
            changed += 1
    for tensor in graph.outputs:
        tensor.shape = None
    ctx.state.export_batch_size = fixed[0] if len(fixed) == 1 else None
    if fixed:
        ctx.note(f"input batch axis was fixed to {fixed[0]} at export; made it symbolic ('{symbol}')")
    return changed
