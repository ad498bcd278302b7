"""canonicalize: bring any exporter's graph (torch legacy/dynamo, tf2onnx, ...) into canonical form.

Each exporter idiom is rewritten by its own module in `passes/canonicalize/`; this module orders
them and does the model-level steps (validation, opset upgrade, folding). Canonical form, which
later passes may rely on:

  * one default-domain opset, TARGET_OPSET, no local functions; the model passes
    onnx.checker and shape inference (every tensor has a dtype; shapes as far as inferable);
    every node has a unique non-empty name; graph input and output names are unchanged;
  * axis 0 of every graph input and output is one symbolic batch dim, and nothing encodes the
    export batch: flattens are Flatten(axis=1), other Reshapes copy (0) or infer (-1) axis 0
    or compute their shape at run time;
  * no Identity, Dropout, Constant node, foldable subgraph, or final Softmax/LogSoftmax;
    shape computations are folded (fold_shapes): what does not depend on the batch is a
    constant, what does is read off the data by Shape(t, start=i, end=i+1) (or a Reshape's 0
    or -1), and a Where of a constant mask with a finite fill is Mul/Add by constants;
    no pair of mutually inverse Transposes around elementwise ops, and no Transpose feeding
    a Flatten(axis=1) → Gemm (it is folded into the Gemm's weight);
  * every Gemm with constant B and C is Gemm(x, W[out, in], b[out], transB=1, alpha=1,
    beta=1); rank-2 MatMul with a constant weight has become such a Gemm (MatMul remains only
    on rank > 2 inputs, with a constant first operand, or between two activations);
    every Conv with a constant weight has a
    bias; Sub/Div by a float constant are Add/Mul;
  * decomposed GELU, LayerNorm and hard-swish are one Gelu / LayerNormalization / HardSwish
    (a LayerNorm over non-trailing axes is wrapped in Transposes); SiLU is Mul(u, Sigmoid(u));
  * every per-channel (axis 1) affine chain of Mul/Add by constants is one
    BatchNormalization(scale, B, mean=0, var=1, epsilon=0), ready for fold_bn.
"""

from __future__ import annotations

from types import ModuleType

import onnx
import onnx_graphsurgeon as gs
from onnx import inliner, version_converter

from onnx_snn.errors import CompilerBug, SnnError
from onnx_snn.passes.base import PassContext, declare, require
from onnx_snn.passes.canonicalize import (
    affine_to_bn,
    batch_reshape,
    castlike,
    conv_bias,
    dense_nd,
    erfc,
    final_softmax,
    fold_shapes,
    free_batch,
    gelu,
    gemm_canonical,
    hardswish,
    layernorm,
    masked_fill,
    matmul_to_gemm,
    node_names,
    passthrough,
    silu,
    sub_div,
    transpose_into_gemm,
    transpose_pairs,
)
from onnx_snn.passes.graph_utils import TARGET_OPSET, node_error, node_label, refresh_shapes
from onnx_snn.validate import checker_error

SPEC = declare("canonicalize", provides={"canonical"})

MIN_OPSET = 7
#: the first IR version in which an initializer need not also be a graph input
IR_INITIALIZERS_NOT_INPUTS = 4
ONNX_DOMAINS = ("", "ai.onnx", "ai.onnx.ml")
#: float input types that onnx-snn does not compile (it computes in float32)
OTHER_FLOATS = frozenset({onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE, onnx.TensorProto.BFLOAT16})

#: the graph-level rewriters, in order (each sees shapes refreshed after the one before changed the graph)
REWRITERS: tuple[ModuleType, ...] = (
    passthrough,  # 5. Identity, Dropout
    fold_shapes,  # 5b. shape computations: constants, or batch-generic
    batch_reshape,  # 5c. batch-free Reshapes, constants fixed to the export batch freed
    masked_fill,  # 5d. Where of a constant mask as Mul/Add
    dense_nd,  # 6. batch-free Reshape, Flatten
    gelu,
    layernorm,
    hardswish,
    silu,  # 6b. decomposed activations/norms as one op
    transpose_pairs,  # 7. NHWC Transpose pairs
    sub_div,
    matmul_to_gemm,
    gemm_canonical,
    transpose_into_gemm,
    conv_bias,  # 8. linear form
    affine_to_bn,  # 9. per-channel affine → BN
    final_softmax,  # 10. logits out
    node_names,
)


def postcondition(graph: gs.Graph, ctx: PassContext) -> None:
    """At TARGET_OPSET, no Identity/Dropout, every node named once."""
    require(graph.opset == TARGET_OPSET, f"opset {graph.opset}, not {TARGET_OPSET}")
    left = sorted({n.op for n in graph.nodes if n.op in ("Identity", "Dropout")})
    require(not left, f"{left} left in the graph")
    names = [n.name for n in graph.nodes]
    require(all(names) and len(set(names)) == len(names), "a node is unnamed or shares its name")


def run(graph: gs.Graph, ctx: PassContext) -> gs.Graph:
    """Canonicalize `graph` (see the module docstring); SnnError for invalid or unsupported models.

    Pre: any valid ONNX model (opset 7..TARGET_OPSET; tf2onnx's Erfc allowed). Post: same
    function (minus a final Softmax) at opset TARGET_OPSET with a free batch axis,
    Flatten/Gemm/Conv+bias linear form, per-channel affine ops as BatchNormalization, no
    Identity/Dropout/inverse Transpose pairs.

    Order: repair Erfc; validate (opset range, op schemas, onnx.checker); inline local functions
    and convert to TARGET_OPSET; free the input batch axis; infer shapes; fold constants; then
    REWRITERS, with cleanup, toposort and fresh shapes after each one that changed the graph.
    """
    if erfc.apply(graph, ctx):
        graph.toposort()
    model = gs.export_onnx(graph, do_type_check=False)
    model.ir_version = max(model.ir_version, IR_INITIALIZERS_NOT_INPUTS)  # gs drops initializers from the inputs
    model = _upgraded(_validated(model, ctx), ctx)
    graph = gs.import_onnx(model)
    free_batch.apply(graph, ctx)
    refresh_shapes(graph)
    _refuse_batch_flatten(graph, ctx)
    castlike.apply(graph, ctx)
    graph.fold_constants().cleanup().toposort()
    refresh_shapes(graph)
    for rewriter in REWRITERS:
        if rewriter.apply(graph, ctx):
            graph.cleanup().toposort()
            refresh_shapes(graph)
    _name_output_batch(graph, ctx)
    _check(graph, ctx)
    return graph


def _validated(model: onnx.ModelProto, ctx: PassContext) -> onnx.ModelProto:
    """Return `model` if it is valid ONNX at a supported opset, else raise SnnError naming the culprit."""
    versions = {(imp.domain or ""): imp.version for imp in model.opset_import}
    versions.setdefault("", versions.get("ai.onnx"))
    opset = versions[""]
    if opset is None or not MIN_OPSET <= opset <= TARGET_OPSET:
        found = "imports no default-domain ONNX opset" if opset is None else f"imports ONNX opset {opset}"
        raise SnnError(
            f"{found}; onnx-snn reads opsets {MIN_OPSET} to {TARGET_OPSET}",
            path=ctx.source,
            hint=f"re-export with an opset in that range (e.g. opset_version={TARGET_OPSET})",
        )
    _refuse_other_float_inputs(model, ctx)
    functions = {(f.domain, f.name) for f in model.functions}
    for node in model.graph.node:
        domain = node.domain or ""
        if (domain, node.op_type) in functions:
            continue
        if domain not in ONNX_DOMAINS:
            raise SnnError(
                "op of a custom domain is not supported (no local function defines it)",
                path=ctx.source,
                node=node.name,
                op=f"{domain}::{node.op_type}",
                hint="replace it with standard ONNX ops in the ANN",
            )
        if versions.get(domain) is None:
            continue
        try:
            onnx.defs.get_schema(node.op_type, versions[domain], "" if domain == "ai.onnx" else domain)
        except onnx.defs.SchemaError:
            raise SnnError(
                f"op {node.op_type} does not exist in ONNX {domain or 'ai.onnx'} opset {versions[domain]}",
                path=ctx.source,
                node=node.name,
                op=node.op_type,
                hint="replace it with standard ONNX ops, or re-export with a converter that supports it",
            ) from None
    try:
        onnx.checker.check_model(model, full_check=False)
    except onnx.checker.ValidationError as exc:
        raise checker_error(exc, list(model.graph.node), ctx.source) from None
    return model


def _refuse_other_float_inputs(model: onnx.ModelProto, ctx: PassContext) -> None:
    """SnnError for a graph input of a float type other than float32: calibration, the neurons and
    the runtime compute in float32."""
    for value in model.graph.input:
        elem = value.type.tensor_type.elem_type
        if elem in OTHER_FLOATS:
            raise SnnError(
                f"graph input '{value.name}' is {onnx.TensorProto.DataType.Name(elem).lower()}; onnx-snn "
                "compiles float32 networks",
                path=ctx.source,
                hint="re-export the model in float32 (e.g. model.float() before torch.onnx.export)",
            )


def _upgraded(model: onnx.ModelProto, ctx: PassContext) -> onnx.ModelProto:
    """`model` with local functions inlined and the default domain converted to TARGET_OPSET."""
    if model.functions:
        model = inliner.inline_local_functions(model)
        del model.functions[:]
    opset = next(imp.version for imp in model.opset_import if imp.domain in ("", "ai.onnx"))
    if opset != TARGET_OPSET:
        try:
            model = version_converter.convert_version(model, TARGET_OPSET)
        except Exception as exc:  # the converter raises bare RuntimeErrors from C++
            raise SnnError(
                f"could not convert the model from ONNX opset {opset} to opset {TARGET_OPSET} ({_first_line(exc)})",
                path=ctx.source,
                hint=f"re-export the model with opset_version={TARGET_OPSET}",
            ) from None
        _check_converted(model, opset, ctx)
    model.ir_version = max(
        model.ir_version, onnx.helper.find_min_ir_version_for(list(model.opset_import), ignore_unknown=True)
    )
    return model


def _check_converted(model: onnx.ModelProto, opset: int, ctx: PassContext) -> None:
    """SnnError when strict shape inference fails on the model converted from `opset`: older opsets
    infer less (an old Gemm does not check its inner dims), so a mismatch may show only now."""
    try:
        onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except onnx.shape_inference.InferenceError as exc:
        raise checker_error(
            exc,
            list(model.graph.node),
            ctx.source,
            f"is not a valid model once converted from ONNX opset {opset} to {TARGET_OPSET}",
            f"re-export the model with opset_version={TARGET_OPSET}",
        ) from None


def _refuse_batch_flatten(graph: gs.Graph, ctx: PassContext) -> None:
    """SnnError for a Flatten(axis=0) of a batched tensor: it merges the samples into one row, so the
    model runs one sample at a time (and no batch of calibration data or time steps fits it)."""
    symbol = free_batch.batch_symbol(graph)
    for node in graph.nodes:
        shape = node.inputs[0].shape if node.op == "Flatten" and node.inputs else None
        if shape and shape[0] == symbol and int(node.attrs.get("axis", 1)) % len(shape) == 0:
            raise node_error(
                ctx,
                node,
                "Flatten with axis 0 merges the batch axis into the features",
                hint="flatten from axis 1 (torch.flatten(x, 1)) and re-export",
            )


def _name_output_batch(graph: gs.Graph, ctx: PassContext) -> None:
    """Give axis 0 of every graph output the graph inputs' batch symbol; SnnError for an output
    whose axis 0 is a fixed size: it does not follow the batch (it ignores the inputs, say)."""
    symbol = free_batch.batch_symbol(graph)
    for tensor in graph.outputs:
        if symbol is None or not tensor.shape:
            continue
        if isinstance(tensor.shape[0], int):
            writer = tensor.inputs[0] if tensor.inputs else None
            raise SnnError(
                f"graph output '{tensor.name}' has axis 0 of fixed size {tensor.shape[0]} while the inputs' "
                "batch axis is free: it does not follow the batch",
                path=ctx.source,
                node=node_label(writer) if writer is not None else None,
                op=writer.op if writer is not None else None,
                hint="make the output depend on the input batch (samples on axis 0) and re-export",
            )
        tensor.shape = [symbol, *tensor.shape[1:]]


def _check(graph: gs.Graph, ctx: PassContext) -> None:
    """Raise CompilerBug (exit 1, internal error) if the canonical graph fails onnx.checker: the
    input passed validation, so the rewrites broke it."""
    model = gs.export_onnx(graph)
    try:
        onnx.checker.check_model(model, full_check=False)
    except onnx.checker.ValidationError as exc:
        raise CompilerBug(
            str(checker_error(exc, list(model.graph.node), ctx.source, "canonicalized model fails onnx.checker", ""))
        ) from None


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
