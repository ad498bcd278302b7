"""Rewriter: fold a layout Transpose before Flatten into the next canonical Gemm's weight.

Idiom: tf2onnx flattens Keras' NHWC feature maps, so a CNN ends in
Transpose(0,2,3,1) → Flatten(axis=1) → Gemm. Flatten(Transpose(y)) only reorders the features
that the Gemm reads, so permuting the Gemm's weight columns gives the same result from
Flatten(y) and the Transpose disappears. Applies when the Transpose keeps axis 0, y has static
non-batch dims, and each node is the only reader of the one before (Gemm canonical: W[out, in]).
"""

from __future__ import annotations

import math

import numpy as np
import onnx_graphsurgeon as gs

from onnx_snn.passes.base import PassContext
from onnx_snn.passes.canonicalize.gemm_canonical import is_canonical
from onnx_snn.passes.graph_utils import const, constant_value, sole_reader


def apply(graph: gs.Graph, ctx: PassContext) -> int:
    """Remove every Transpose → Flatten(axis=1) → canonical Gemm transpose; return how many."""
    count = 0
    for flatten in [n for n in graph.nodes if n.op == "Flatten" and n.attrs.get("axis", 1) == 1]:
        transpose = flatten.inputs[0].inputs[0] if flatten.inputs[0].inputs else None
        gemm = sole_reader(graph, flatten.outputs[0])
        if transpose is None or transpose.op != "Transpose" or gemm is None or gemm.op != "Gemm":
            continue
        perm, dims = transpose.attrs.get("perm"), transpose.inputs[0].shape
        if (
            perm is None
            or perm[0] != 0
            or sole_reader(graph, transpose.outputs[0]) is not flatten
            or not is_canonical(gemm)
            or not dims
            or not all(isinstance(d, int) for d in dims[1:])
        ):
            continue
        assert flatten is not None  # mypy took `is not flatten` above as narrowing it to Node | None (gs.Node is Any)
        source_index = np.transpose(np.arange(math.prod(dims[1:])).reshape(dims[1:]), [p - 1 for p in perm[1:]])
        weight = constant_value(gemm.inputs[1])
        permuted = np.empty_like(weight)
        permuted[:, source_index.reshape(-1)] = weight
        gemm.inputs[1] = const(f"{gemm.inputs[1].name}_untransposed", permuted)
        flatten.inputs[0] = transpose.inputs[0]
        transpose.outputs.clear()
        transpose.inputs.clear()
        count += 1
    return count
