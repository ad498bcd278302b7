"""Fuzzing the command line: every bad input exits 2 with one line on stderr, never a traceback.

Cases come from a fixed seed: mutated models (attributes, initializer dtypes, shapes and values,
node inputs, graph inputs and outputs, names, op types, opsets, external data) of the shipped
digits MLP and of a small CNN with BatchNormalization, MaxPool and a residual Add built here with
onnx.helper; byte-level truncations, bit flips and random bytes; bad calibration and evaluation
data files; bad options. Each case runs `onnx_snn.cli.main` in-process, in a folder of its own,
and must end in one of two ways:

* exit 0, and a model it writes passes onnx.checker's full check; or
* exit 2 with exactly one line on stderr, and no new file in the folder;

and either way every file the case wrote beforehand is unchanged. The default suite runs
FAST_MODEL_CASES mutated models and the fixed cases; the `slow` test, SLOW_MODEL_CASES.
"""

from __future__ import annotations

import copy
import hashlib
import io
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import pytest
from helpers import float_model
from onnx import TensorProto, helper, numpy_helper

from onnx_snn.cli import main

SEED = 20240613
FAST_MODEL_CASES = 300
SLOW_MODEL_CASES = 3000
DATA = Path(__file__).resolve().parents[1] / "compiler" / "data"
#: the flags of a compile that stays cheap: two timesteps, four calibration samples
COMPILE = ["--timesteps", "2", "-q"]
#: (name, argv) placeholders, replaced by paths in the case's folder
MODEL, OUT, CALIB, EVAL_DATA, SNN, ANN = "model.onnx", "out.onnx", "calib.npy", "data.npz", "snn.onnx", "ann.onnx"

OUTCOMES = ("exit 0", "exit 2", "exit 1", "other")


@dataclass
class Case:
    """One run of the CLI: `argv` names files of `files` (written into a fresh folder) by name."""

    name: str
    argv: list[str]
    files: dict[str, bytes] = field(default_factory=dict)
    #: a model that a successful run writes, checked with onnx.checker
    output: str | None = None


# --------------------------------------------------------------------------- source models and data


def digits_mlp() -> onnx.ModelProto:
    """The shipped digits MLP: x [N, 1, 8, 8] -> Flatten -> Gemm -> Relu -> Gemm -> logits [N, 10]."""
    return onnx.load(str(DATA / "digits_mlp.onnx"))


def small_cnn() -> onnx.ModelProto:
    """x [N, 1, 8, 8] -> Conv-BN-Relu -> MaxPool -> grouped Conv-BN (+ residual) -> Relu -> AveragePool
    -> Flatten -> Gemm -> logits [N, 10]."""
    rng = np.random.default_rng(0)

    def weight(name: str, *shape: int, scale: float = 0.5) -> TensorProto:
        return numpy_helper.from_array((rng.normal(size=shape) * scale).astype(np.float32), name)

    def bn_params(prefix: str, channels: int) -> list[TensorProto]:
        return [
            numpy_helper.from_array(rng.uniform(0.5, 1.5, channels).astype(np.float32), f"{prefix}_scale"),
            numpy_helper.from_array(rng.uniform(-0.2, 0.2, channels).astype(np.float32), f"{prefix}_bias"),
            numpy_helper.from_array(rng.uniform(-0.3, 0.3, channels).astype(np.float32), f"{prefix}_mean"),
            numpy_helper.from_array(rng.uniform(0.5, 1.5, channels).astype(np.float32), f"{prefix}_var"),
        ]

    def bn(prefix: str, x: str, y: str) -> onnx.NodeProto:
        return helper.make_node(
            "BatchNormalization",
            [x] + [f"{prefix}_{p}" for p in ("scale", "bias", "mean", "var")],
            [y],
            name=prefix,
            epsilon=1e-5,
        )

    nodes = [
        helper.make_node(
            "Conv",
            ["x", "w1", "b1"],
            ["c1"],
            name="conv1",
            kernel_shape=[3, 3],
            pads=[1, 1, 1, 1],
            strides=[1, 1],
            dilations=[1, 1],
            group=1,
        ),
        bn("bn1", "c1", "n1"),
        helper.make_node("Relu", ["n1"], ["r1"], name="relu1"),
        helper.make_node("MaxPool", ["r1"], ["p1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node(
            "Conv", ["p1", "w2", "b2"], ["c2"], name="conv2", kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=2
        ),
        bn("bn2", "c2", "n2"),
        helper.make_node("Add", ["n2", "p1"], ["s"], name="residual"),
        helper.make_node("Relu", ["s"], ["r2"], name="relu2"),
        helper.make_node("AveragePool", ["r2"], ["a"], name="pool2", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["a"], ["f"], name="flatten", axis=1),
        helper.make_node("Gemm", ["f", "w3", "b3"], ["logits"], name="fc", transB=1, alpha=1.0, beta=1.0),
    ]
    inits = [
        weight("w1", 4, 1, 3, 3),
        weight("b1", 4, scale=0.1),
        weight("w2", 4, 2, 3, 3),
        weight("b2", 4, scale=0.1),
        weight("w3", 10, 16),
        weight("b3", 10, scale=0.1),
        *bn_params("bn1", 4),
        *bn_params("bn2", 4),
    ]
    return float_model(nodes, "small_cnn", {"x": ["N", 1, 8, 8]}, {"logits": ["N", 10]}, inits)


BASES: dict[str, Callable[[], onnx.ModelProto]] = {"mlp": digits_mlp, "cnn": small_cnn}


def npy(array: np.ndarray) -> bytes:
    """`array` as .npy bytes (object arrays pickled, as numpy.save does by default)."""
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def npz(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def calibration() -> np.ndarray:
    """Four calibration samples of the digits data, shape [4, 1, 8, 8]."""
    with np.load(DATA / "digits_test.npz") as data:
        return data["x_calib"][:4]


def eval_arrays() -> tuple[np.ndarray, np.ndarray]:
    """Eight test digits and their labels."""
    with np.load(DATA / "digits_test.npz") as data:
        return data["x"][:8], data["y"][:8]


# --------------------------------------------------------------------------- model mutations

INT_VALUES = (0, -1, -2, 1, 2, 3, 7, 2**31 - 1, 2**62, -(2**63))
FLOAT_VALUES = (math.nan, math.inf, -math.inf, 0.0, -1.0, 1e-30, 1e38, 0.5)
STRING_VALUES = (b"", b"SAME_UPPER", b"SAME_LOWER", b"VALID", b"NOTSET", b"BOGUS", b"\x00")
A = onnx.AttributeProto
#: attributes the passes read, per op, with their types
KNOWN_ATTRS: dict[str, dict[str, int]] = {
    "Conv": {
        "group": A.INT,
        "strides": A.INTS,
        "pads": A.INTS,
        "dilations": A.INTS,
        "kernel_shape": A.INTS,
        "auto_pad": A.STRING,
    },
    "MaxPool": {
        "kernel_shape": A.INTS,
        "strides": A.INTS,
        "pads": A.INTS,
        "dilations": A.INTS,
        "ceil_mode": A.INT,
        "storage_order": A.INT,
        "auto_pad": A.STRING,
    },
    "AveragePool": {
        "kernel_shape": A.INTS,
        "strides": A.INTS,
        "pads": A.INTS,
        "ceil_mode": A.INT,
        "count_include_pad": A.INT,
        "auto_pad": A.STRING,
    },
    "BatchNormalization": {"epsilon": A.FLOAT, "momentum": A.FLOAT, "training_mode": A.INT},
    "Gemm": {"alpha": A.FLOAT, "beta": A.FLOAT, "transA": A.INT, "transB": A.INT},
    "Flatten": {"axis": A.INT},
    "Relu": {"alpha": A.FLOAT},
}
SWAPS: dict[str, tuple[str, ...]] = {
    "Relu": ("Sigmoid", "LeakyRelu", "Abs", "Softmax", "Identity", "Neg", "Tanh", "Exp", "NoSuchOp", "Gelu"),
    "Gemm": ("MatMul", "Conv", "Add", "Mul", "Sub"),
    "Conv": ("ConvTranspose", "Gemm", "MatMul", "AveragePool", "MaxPool"),
    "MaxPool": ("AveragePool", "GlobalMaxPool", "LpPool", "Conv"),
    "AveragePool": ("MaxPool", "GlobalAveragePool"),
    "BatchNormalization": ("InstanceNormalization", "LayerNormalization", "Add"),
    "Add": ("Mul", "Sub", "Div", "Max", "Sum", "Concat"),
    "Flatten": ("Reshape", "Identity", "Squeeze", "Transpose"),
}
DTYPES = (
    TensorProto.INT64,
    TensorProto.INT32,
    TensorProto.FLOAT16,
    TensorProto.DOUBLE,
    TensorProto.UINT8,
    TensorProto.BOOL,
    TensorProto.BFLOAT16,
    TensorProto.STRING,
    TensorProto.INT8,
)

Mutation = Callable[[onnx.ModelProto, np.random.Generator, dict], str]


def pick(rng: np.random.Generator, items):
    items = list(items)
    return items[int(rng.integers(len(items)))]


def _int_list(rng: np.random.Generator, current: list[int]) -> list[int]:
    value = pick(rng, INT_VALUES)
    choice = int(rng.integers(4))
    if choice == 0:
        return []
    if choice == 1:
        return [value] * max(len(current), 1)
    if choice == 2:
        return [value] * (len(current) + 1)
    changed = list(current) or [1]
    changed[int(rng.integers(len(changed)))] = value
    return changed


def _attribute(
    name: str, kind: int, rng: np.random.Generator, current: onnx.AttributeProto | None
) -> onnx.AttributeProto:
    """An attribute `name` of type `kind` with a value drawn to be odd."""
    if kind == A.INT:
        return helper.make_attribute(name, pick(rng, INT_VALUES))
    if kind == A.FLOAT:
        return helper.make_attribute(name, pick(rng, FLOAT_VALUES))
    if kind == A.INTS:
        return helper.make_attribute(
            name, _int_list(rng, list(current.ints) if current is not None else []), attr_type=A.INTS
        )
    if kind == A.FLOATS:
        return helper.make_attribute(name, [pick(rng, FLOAT_VALUES)], attr_type=A.FLOATS)
    if kind == A.STRING:
        return helper.make_attribute(name, pick(rng, STRING_VALUES))
    return helper.make_attribute(name, numpy_helper.from_array(np.asarray([pick(rng, FLOAT_VALUES)], np.float32)))


def _replace_attribute(node: onnx.NodeProto, attr: onnx.AttributeProto) -> None:
    kept = [a for a in node.attribute if a.name != attr.name]
    del node.attribute[:]
    node.attribute.extend(kept + [attr])


def set_attribute(model, rng, files) -> str:
    """An existing attribute gets an odd value of its type."""
    nodes = [n for n in model.graph.node if n.attribute]
    node = pick(rng, nodes)
    attr = pick(rng, node.attribute)
    new = _attribute(attr.name, attr.type, rng, attr)
    _replace_attribute(node, new)
    return f"{node.name}.{attr.name}={helper.get_attribute_value(new)!r}"


def add_attribute(model, rng, files) -> str:
    """A known attribute of the node's op, present or not, gets an odd value."""
    nodes = [n for n in model.graph.node if n.op_type in KNOWN_ATTRS]
    node = pick(rng, nodes)
    name, kind = pick(rng, KNOWN_ATTRS[node.op_type].items())
    current = next((a for a in node.attribute if a.name == name), None)
    new = _attribute(name, kind, rng, current)
    _replace_attribute(node, new)
    return f"{node.name}.{name}:={helper.get_attribute_value(new)!r}"


def retype_attribute(model, rng, files) -> str:
    """An existing attribute keeps its name but gets another type."""
    nodes = [n for n in model.graph.node if n.attribute]
    node = pick(rng, nodes)
    attr = pick(rng, node.attribute)
    kind = pick(rng, [k for k in (A.INT, A.FLOAT, A.INTS, A.FLOATS, A.STRING, A.TENSOR) if k != attr.type])
    _replace_attribute(node, _attribute(attr.name, kind, rng, None))
    return f"{node.name}.{attr.name} as {A.AttributeType.Name(kind)}"


def _replace_initializer(model: onnx.ModelProto, tensor: TensorProto) -> None:
    for i, init in enumerate(model.graph.initializer):
        if init.name == tensor.name:
            model.graph.initializer[i].CopyFrom(tensor)


def initializer_dtype(model, rng, files) -> str:
    """An initializer is stored in another dtype."""
    init = pick(rng, model.graph.initializer)
    values = numpy_helper.to_array(init)
    dtype = pick(rng, DTYPES)
    if dtype == TensorProto.STRING:
        tensor = helper.make_tensor(init.name, dtype, values.shape, [b"w"] * values.size)
    elif dtype == TensorProto.BFLOAT16:
        tensor = helper.make_tensor(init.name, dtype, values.shape, values.ravel().tolist())
    else:
        tensor = numpy_helper.from_array(values.astype(helper.tensor_dtype_to_np_dtype(dtype)), init.name)
    _replace_initializer(model, tensor)
    return f"{init.name} as {TensorProto.DataType.Name(dtype)}"


def initializer_shape(model, rng, files) -> str:
    """An initializer is reshaped, sliced, emptied or made a scalar."""
    init = pick(rng, model.graph.initializer)
    values = numpy_helper.to_array(init)
    kind = pick(rng, ("flat", "lead", "slice", "transpose", "empty", "scalar"))
    reshapes = {
        "flat": lambda v: v.reshape(-1),
        "lead": lambda v: v[None],
        "slice": lambda v: v[: max(len(v) - 1, 0)],
        "transpose": lambda v: v.T,
        "empty": lambda v: v[:0],
        "scalar": lambda v: np.asarray(v.ravel()[0]),
    }
    new = reshapes[kind](values)
    _replace_initializer(model, numpy_helper.from_array(np.ascontiguousarray(new), init.name))
    return f"{init.name} {kind} {list(new.shape)}"


def initializer_values(model, rng, files) -> str:
    """One element of a float initializer becomes NaN, infinite, huge or tiny, or all become zero."""
    init = pick(rng, model.graph.initializer)
    values = numpy_helper.to_array(init).astype(np.float32).copy()
    value = pick(rng, (math.nan, math.inf, -math.inf, 1e31, -1e35, 1e-40, 0.0, "zeros", "raw"))
    if value == "zeros":
        values[...] = 0
    elif value == "raw":  # raw bytes that do not fill the declared shape
        init.raw_data = init.raw_data[: len(init.raw_data) // 2]
        return f"{init.name} raw data halved"
    elif values.size:
        values.reshape(-1)[int(rng.integers(values.size))] = value
    _replace_initializer(model, numpy_helper.from_array(values, init.name))
    return f"{init.name} holds {value}"


def input_dims(model, rng, files) -> str:
    """A graph input gets an odd dim, one dim more or less, or no shape."""
    value = pick(rng, model.graph.input)
    dims = value.type.tensor_type.shape.dim
    kind = pick(rng, ("dim", "dim", "dim", "drop", "add", "none"))
    if kind == "drop" and dims:
        del dims[len(dims) - 1]
    elif kind == "add":
        dims.add().dim_value = 1
    elif kind == "none":
        value.type.tensor_type.ClearField("shape")
    elif dims:
        dim = dims[int(rng.integers(len(dims)))]
        new = pick(rng, (0, -1, -7, 2**31, 2**40, 3, 9, "M", None))
        if new is None:
            dim.Clear()
        elif isinstance(new, str):
            dim.dim_param = new
        else:
            dim.dim_value = new
        kind = f"dim={new}"
    return f"input {value.name} {kind}"


def io_type(model, rng, files) -> str:
    """A graph input or output gets another element type."""
    value = pick(rng, list(model.graph.input) + list(model.graph.output))
    elem = pick(
        rng,
        (
            TensorProto.INT64,
            TensorProto.FLOAT16,
            TensorProto.DOUBLE,
            TensorProto.STRING,
            TensorProto.BOOL,
            TensorProto.UINT8,
            0,
            999,
        ),
    )
    value.type.tensor_type.elem_type = elem
    return f"{value.name} elem_type {elem}"


def drop_node_input(model, rng, files) -> str:
    """A node loses its last input, or one input becomes the empty name (an absent optional input)."""
    node = pick(rng, [n for n in model.graph.node if n.input])
    if rng.integers(2):
        del node.input[len(node.input) - 1]
        return f"{node.name} drops its last input"
    index = int(rng.integers(len(node.input)))
    node.input[index] = ""
    return f"{node.name} input {index} empty"


def duplicate_node_input(model, rng, files) -> str:
    """A node gets one of its inputs again, appended or in place of another."""
    node = pick(rng, [n for n in model.graph.node if n.input])
    source = pick(rng, node.input)
    if rng.integers(2) or len(node.input) < 2:
        node.input.append(source)
    else:
        node.input[int(rng.integers(len(node.input)))] = source
    return f"{node.name} reads {source} twice"


def _tensor_names(model: onnx.ModelProto) -> list[str]:
    names = [v.name for v in model.graph.input] + [i.name for i in model.graph.initializer]
    return names + [o for n in model.graph.node for o in n.output]


def rename_collide(model, rng, files) -> str:
    """A node output takes the name of another tensor, with or without its readers following."""
    node = pick(rng, model.graph.node)
    old = node.output[0]
    new = pick(rng, [n for n in _tensor_names(model) if n != old])
    node.output[0] = new
    follow = bool(rng.integers(2))
    if follow:
        for other in model.graph.node:
            other.input[:] = [new if i == old else i for i in other.input]
        for out in model.graph.output:
            out.name = new if out.name == old else out.name
    return f"{node.name} writes {new} ({'readers follow' if follow else 'readers do not'})"


def rename_node(model, rng, files) -> str:
    """A node is renamed: like another node, empty, with a NUL byte, very long or non-ASCII."""
    node = pick(rng, model.graph.node)
    new = pick(rng, [pick(rng, model.graph.node).name, "", "a\x00b", "n" * 5000, "ノード", "x"])
    node.name = new
    return f"node renamed {new[:20]!r}"


def nul_tensor_name(model, rng, files) -> str:
    """A tensor name gets a NUL byte, everywhere it appears."""
    old = pick(rng, _tensor_names(model))
    new = old + "\x00evil"
    for value in list(model.graph.input) + list(model.graph.output):
        value.name = new if value.name == old else value.name
    for init in model.graph.initializer:
        init.name = new if init.name == old else init.name
    for node in model.graph.node:
        node.input[:] = [new if i == old else i for i in node.input]
        node.output[:] = [new if o == old else o for o in node.output]
    return f"{old!r} gets a NUL"


def outputs(model, rng, files) -> str:
    """Graph outputs: none, an unknown name, a duplicate, the graph input, or an extra intermediate."""
    kind = pick(rng, ("none", "unknown", "duplicate", "input", "intermediate"))
    graph = model.graph
    if kind == "none":
        del graph.output[:]
    elif kind == "unknown":
        graph.output[0].name = "no_such_tensor"
    elif kind == "duplicate":
        graph.output.append(copy.deepcopy(graph.output[0]))
    elif kind == "input":
        graph.output[0].name = graph.input[0].name
    else:
        name = pick(rng, [o for n in graph.node for o in n.output])
        graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    return f"outputs {kind}"


def swap_op(model, rng, files) -> str:
    """A node becomes another op (or the same op in a custom domain)."""
    node = pick(rng, model.graph.node)
    if rng.integers(6) == 0:
        node.domain = pick(rng, ("com.example", "snn", "ai.onnx.ml"))
        return f"{node.name} in domain {node.domain}"
    old = node.op_type
    node.op_type = pick(rng, SWAPS.get(old, ("Identity", "Relu", "NoSuchOp")))
    return f"{node.name} {old}->{node.op_type}"


def restructure(model, rng, files) -> str:
    """A node is removed or duplicated, or the node order is reversed."""
    graph = model.graph
    kind = pick(rng, ("remove", "duplicate", "reverse"))
    index = int(rng.integers(len(graph.node)))
    if kind == "remove":
        del graph.node[index]
    elif kind == "duplicate":
        graph.node.append(copy.deepcopy(graph.node[index]))
    else:
        nodes = list(graph.node)[::-1]
        del graph.node[:]
        graph.node.extend(nodes)
    return f"{kind} node {index}"


def opset(model, rng, files) -> str:
    """The default opset or IR version changes, or a custom domain is imported, or none is."""
    kind = pick(rng, ("opset", "opset", "ir", "ir", "domain", "none"))
    if kind == "opset":
        version = pick(rng, (0, 1, 6, 7, 9, 11, 13, 18, 21, 22, 23, 99, 2**40))
        model.opset_import[0].version = version
        return f"opset {version}"
    if kind == "ir":
        version = pick(rng, (1, 2, 3, 4, 7, 10, 11, 13, 99))
        model.ir_version = version
        return f"ir_version {version}"
    if kind == "domain":
        model.opset_import.append(helper.make_opsetid("com.example", 1))
        return "imports com.example"
    del model.opset_import[:]
    return "no opset"


def constant_node(model, rng, files) -> str:
    """A Constant node holding an odd value is added to the logits."""
    value = pick(rng, (math.nan, math.inf, -1e35, 0.25, 1e31))
    graph = model.graph
    final = graph.output[0].name
    producer = next(n for n in graph.node if final in n.output)
    producer.output[list(producer.output).index(final)] = "pre_logits"
    graph.node.extend(
        [
            helper.make_node(
                "Constant",
                [],
                ["odd"],
                name="odd_constant",
                value=numpy_helper.from_array(np.full((10,), value, np.float32)),
            ),
            helper.make_node("Add", ["pre_logits", "odd"], [final], name="odd_add"),
        ]
    )
    return f"Constant {value} added"


def initializer_set(model, rng, files) -> str:
    """An initializer is removed, duplicated, also listed as a graph input, or renamed onto the input."""
    graph = model.graph
    init = pick(rng, graph.initializer)
    kind = pick(rng, ("remove", "duplicate", "as_input", "input_name"))
    if kind == "remove":
        graph.initializer.remove(init)
    elif kind == "duplicate":
        graph.initializer.append(copy.deepcopy(init))
    elif kind == "as_input":
        graph.input.append(helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)))
    else:
        init.name = graph.input[0].name
    return f"{init.name} {kind}"


def value_info(model, rng, files) -> str:
    """An intermediate tensor gets a declared shape with an odd dim or the wrong rank or type."""
    name = pick(
        rng,
        [o for n in model.graph.node for o in n.output if o not in {v.name for v in model.graph.output}]
        or [model.graph.node[0].output[0]],
    )
    dims = pick(rng, ([-1, 64], [0, 64], ["N", -5], [1], ["N", 64, 1, 1], [2**40, 3]))
    elem = pick(rng, (TensorProto.FLOAT, TensorProto.INT64))
    model.graph.value_info.append(helper.make_tensor_value_info(name, elem, dims))
    return f"value_info {name} {dims}"


def external_data(model, rng, files) -> str:
    """An initializer moves to an external file that is missing, outside the folder, short or right."""
    init = pick(rng, model.graph.initializer)
    raw = numpy_helper.from_array(numpy_helper.to_array(init)).raw_data
    kind = pick(rng, ("missing", "outside", "short", "right", "offset"))
    location = {"missing": "missing.bin", "outside": "../outside.bin"}.get(kind, "weights.bin")
    if kind in ("short", "right", "offset"):
        files["weights.bin"] = raw[: len(raw) // 2] if kind == "short" else raw
    init.ClearField("raw_data")
    for f in ("float_data", "int64_data", "int32_data", "double_data"):
        init.ClearField(f)
    init.data_location = TensorProto.EXTERNAL
    entries = {"location": location, **({"offset": "4096", "length": "8"} if kind == "offset" else {})}
    for key, value in entries.items():
        entry = init.external_data.add()
        entry.key, entry.value = key, value
    return f"{init.name} external {kind}"


def precision(model, rng, files) -> str:
    """The whole model moves to float16 or float64: initializers, inputs and outputs (valid ONNX)."""
    elem = pick(rng, (TensorProto.FLOAT16, TensorProto.DOUBLE))
    dtype = helper.tensor_dtype_to_np_dtype(elem)
    with np.errstate(over="ignore"):  # a huge weight becomes inf in float16: fine, another case
        for init in model.graph.initializer:
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).astype(dtype), init.name))
    for value in list(model.graph.input) + list(model.graph.output):
        value.type.tensor_type.elem_type = elem
    return f"all {TensorProto.DataType.Name(elem)}"


MUTATIONS: tuple[Mutation, ...] = (
    set_attribute,
    add_attribute,
    add_attribute,
    retype_attribute,
    initializer_dtype,
    initializer_shape,
    initializer_values,
    initializer_values,
    input_dims,
    io_type,
    drop_node_input,
    duplicate_node_input,
    rename_collide,
    rename_node,
    nul_tensor_name,
    outputs,
    swap_op,
    swap_op,
    restructure,
    opset,
    constant_node,
    initializer_set,
    value_info,
    external_data,
    precision,
)


def model_case(index: int, rng: np.random.Generator) -> Case:
    """A model built from a base by one to three mutations, compiled (mostly), inspected or quantized."""
    base = pick(rng, BASES)
    model = BASES[base]()
    files: dict[str, bytes] = {}
    steps = []
    for _ in range(1 + int(rng.integers(3)) if rng.integers(3) else 1):
        mutation = pick(rng, MUTATIONS)
        try:
            steps.append(mutation(model, rng, files))
        except Exception as exc:  # noqa: BLE001 - nothing of that kind left to mutate (or readable)
            steps.append(f"{mutation.__name__} skipped ({type(exc).__name__})")
    try:
        files[MODEL] = model.SerializeToString()
    except Exception as exc:  # noqa: BLE001 - protobuf refuses to write it: then it is no case
        files[MODEL] = b""
        steps.append(f"unserialisable ({type(exc).__name__})")
    files[CALIB] = npy(calibration())
    command = pick(rng, ["compile"] * 8 + ["inspect", "quantize-weights"])
    name = f"model#{index} {base}: " + "; ".join(steps)
    if command == "inspect":
        return Case(f"{name} [inspect]", ["inspect", MODEL], files)
    if command == "quantize-weights":
        return Case(f"{name} [quantize]", ["quantize-weights", MODEL, "-o", OUT, "--levels", "4"], files, OUT)
    neuron = pick(rng, ["auto"] * 6 + ["if", "signgd", "ttfs"])
    return Case(
        f"{name} [--neuron {neuron}]",
        ["compile", MODEL, "-o", OUT, "--calib", CALIB, "--neuron", neuron, *COMPILE],
        files,
        OUT,
    )


# --------------------------------------------------------------------------- bytes, data and options


def byte_cases(rng: np.random.Generator, count: int) -> list[Case]:
    """Truncated, bit-flipped, padded and random model files."""
    data = digits_mlp().SerializeToString()
    calib = npy(calibration())
    cases = []
    for i in range(count):
        kind = pick(rng, ("truncate", "truncate", "flip", "append", "random", "zip"))
        if kind == "truncate":
            cut = pick(rng, (0, 1, 2, 10, 100, len(data) // 2, len(data) - 1, int(rng.integers(len(data)))))
            content, label = data[:cut], f"truncated at {cut}"
        elif kind == "flip":
            content = bytearray(data)
            positions = rng.integers(len(data), size=1 + int(rng.integers(8)))
            for p in positions:
                content[p] ^= 1 << int(rng.integers(8))
            content, label = bytes(content), f"bits flipped at {sorted(positions.tolist())}"
        elif kind == "append":
            content, label = data + rng.bytes(1 + int(rng.integers(64))), "garbage appended"
        elif kind == "random":
            size = int(rng.integers(1, 4096))
            content, label = rng.bytes(size), f"{size} random bytes"
        else:
            content, label = npz(x=np.zeros(3)), "an .npz file"
        cases.append(
            Case(
                f"bytes#{i}: {label}",
                ["compile", MODEL, "-o", OUT, "--calib", CALIB, *COMPILE],
                {MODEL: content, CALIB: calib},
                OUT,
            )
        )
    return cases


def calibration_cases() -> list[Case]:
    """compile of the digits MLP with odd calibration files."""
    good = calibration()
    with_nan, with_inf = good.copy(), good.copy()
    with_nan[0, 0, 0, 0], with_inf[1, 0, 2, 3] = np.nan, -np.inf
    objects = np.empty((4, 1, 8, 8), dtype=object)
    objects[...] = 1.0
    variants: dict[str, bytes] = {
        "nan.npy": npy(with_nan),
        "inf.npy": npy(with_inf),
        "object.npy": npy(objects),
        "strings.npy": npy(good.astype(str)),
        "complex.npy": npy(good.astype(np.complex64)),
        "bool.npy": npy(good > 0),
        "int64.npy": npy((good * 16).astype(np.int64)),
        "uint8.npy": npy((good * 16).astype(np.uint8)),
        "float16.npy": npy(good.astype(np.float16)),
        "float64.npy": npy(good.astype(np.float64)),
        "bigendian.npy": npy(good.astype(">f4")),
        "fortran.npy": npy(np.asfortranarray(good)),
        "flat.npy": npy(good.reshape(4, 64)),
        "wrong_shape.npy": npy(np.zeros((4, 1, 8, 9), np.float32)),
        "scalar.npy": npy(np.float32(1)),
        "vector.npy": npy(np.zeros(64, np.float32)),
        "empty.npy": npy(np.zeros((0, 1, 8, 8), np.float32)),
        "huge.npy": npy(np.full((4, 1, 8, 8), 1e38, np.float32)),
        "rank5.npy": npy(good[None]),
        "wrong_key.npz": npz(images=good),
        "extra_key.npz": npz(x=good, notes=np.arange(3)),
        "by_name.npz": npz(x=good),
        "truncated.npy": npy(good)[:100],
        "random.npy": b"\x93NUMPY" + bytes(range(50)),
        "empty_file.npy": b"",
        "text.npz": b"not a zip",
        "pickled.npz": npz(x=objects),
        "truncated.npz": npz(x=good)[:200],
        "empty_npz.npz": npz(),
    }
    model = digits_mlp().SerializeToString()
    cases = [
        Case(
            f"calib {name}",
            ["compile", MODEL, "-o", OUT, "--calib", name, *COMPILE],
            {MODEL: model, name: content},
            OUT,
        )
        for name, content in variants.items()
    ]
    cases.append(
        Case("calib missing", ["compile", MODEL, "-o", OUT, "--calib", "nowhere.npy", *COMPILE], {MODEL: model}, OUT)
    )
    cases.append(
        Case("calib is the model", ["compile", MODEL, "-o", OUT, "--calib", MODEL, *COMPILE], {MODEL: model}, OUT)
    )
    return cases


def eval_cases(snn: bytes) -> list[Case]:
    """eval of a compiled digits SNN with odd data files, ANNs and options."""
    x, y = eval_arrays()
    x_nan = x.copy()
    x_nan[2, 0, 4, 4] = np.nan
    variants: dict[str, bytes] = {
        "good.npz": npz(x=x, y=y),
        "float_labels.npz": npz(x=x, y=y.astype(np.float32)),
        "negative_labels.npz": npz(x=x, y=y - 5),
        "uint64_overflow.npz": npz(x=x, y=np.full(8, 2**63 + 5, np.uint64)),
        "uint64_small.npz": npz(x=x, y=y.astype(np.uint64)),
        "labels_2d.npz": npz(x=x, y=y[:, None]),
        "bool_labels.npz": npz(x=x, y=y > 4),
        "string_labels.npz": npz(x=x, y=y.astype(str)),
        "short_labels.npz": npz(x=x, y=y[:7]),
        "long_labels.npz": npz(x=x, y=np.concatenate([y, y])),
        "no_labels.npz": npz(x=x),
        "label_too_big.npz": npz(x=x, y=y + 10),
        "scalar_labels.npz": npz(x=x, y=np.int64(3)),
        "x_nan.npz": npz(x=x_nan, y=y),
        "x_int.npz": npz(x=(x * 16).astype(np.int32), y=y),
        "x_wrong_shape.npz": npz(x=x.reshape(8, 64), y=y),
        "x_empty.npz": npz(x=x[:0], y=y[:0]),
        "x_object.npz": npz(x=x.astype(object), y=y),
        "x_scalar.npz": npz(x=np.float32(1), y=y[:1]),
        "x_wrong_key.npz": npz(images=x, y=y),
        "labels_key.npz": npz(x=x, labels=y),
        "x_complex.npz": npz(x=x.astype(np.complex64), y=y),
        "x_float64.npz": npz(x=x.astype(np.float64), y=y),
        "data.npy": npy(x),
    }
    cases = [
        Case(f"eval {name}", ["eval", SNN, "--data", name, "-q"], {SNN: snn, name: content})
        for name, content in variants.items()
    ]
    good = {SNN: snn, EVAL_DATA: npz(x=x, y=y)}
    ann = digits_mlp().SerializeToString()
    options = [
        ["--batch-size", "0"],
        ["--batch-size", "-3"],
        ["--batch-size", str(2**63)],
        ["--batch-size", "1"],
        ["--timesteps", "0"],
        ["--timesteps", "-1"],
        ["--timesteps", str(2**63)],
        ["--timesteps", "3"],
        ["--max-memory", "1" + "0" * 400],
        ["--max-memory", "0"],
        ["--max-memory", "-1GB"],
        ["--max-memory", "nanGB"],
        ["--max-memory", "1e3GB"],
        ["--max-memory", "64KB"],
        ["--stats"],
        ["--ann", "nowhere.onnx"],
        ["--ann", EVAL_DATA],
        ["--ann", SNN],
    ]
    cases += [
        Case(f"eval {' '.join(o)[:60]}", ["eval", SNN, "--data", EVAL_DATA, "-q", *o], dict(good)) for o in options
    ]
    cases.append(Case("eval --ann digits", ["eval", SNN, "--data", EVAL_DATA, "-q", "--ann", ANN], {**good, ANN: ann}))
    cases.append(
        Case(
            "eval --ann truncated",
            ["eval", SNN, "--data", EVAL_DATA, "-q", "--ann", ANN],
            {**good, ANN: ann[: len(ann) // 2]},
        )
    )
    cases.append(Case("eval of the ANN", ["eval", ANN, "--data", EVAL_DATA, "-q"], {**good, ANN: ann}))
    return cases


def each_value(option: str, values: list[str], after: list[str] | None = None) -> list[list[str]]:
    """One command-line tail per value: `option value`, behind the options `after` that make the
    option apply (e.g. --encoding poisson for --max-rate)."""
    return [[*(after or []), option, value] for value in values]


def option_cases() -> list[Case]:
    """compile and quantize-weights of the digits MLP with odd options."""
    files = {MODEL: digits_mlp().SerializeToString(), CALIB: npy(calibration())}
    compile_options = [
        *each_value("--timesteps", ["0", "-1", str(2**63), str(2**31), "abc"]),
        *each_value("--norm", ["garbage", "", "-5", "nan", "inf", "0", "101", "1e400"]),
        *each_value("--norm", ["spikenorm:", "spikenorm:abc", "spikenorm:0.5"]),
        *each_value("--norm", ["99.9.9", "max", "0.5"]),
        *each_value("--v-init", ["nan", "inf", "-0.1", "1"]),
        *each_value("--rate-range", ["0", "-1", "nan", "inf", "abc", "16"]),
        ["--spikes", "signed", "--rate-range", "2"],
        *each_value("--max-rate", ["nan", "-1", "1e300"], after=["--encoding", "poisson"]),
        *each_value("--seed", ["-1", str(2**64)], after=["--encoding", "poisson"]),
        *each_value("--calib-batches", ["0", "-1"]),
        ["--neuron", "signgd", "--eta0", "0"],
        ["--neuron", "signgd", "--gamma", "1.5"],
        ["--neuron", "signgd", "--tail", "nan"],
        ["--neuron", "signgd", "--signgd-range", "0"],
        *each_value("--zeta", ["nan", "-1"], after=["--neuron", "ttfs"]),
        ["--neuron", "ttfs", "--input-range", "1", "0"],
        ["--neuron", "ttfs", "--input-range", "nan", "1"],
        ["--neuron", "ttfs", "--input-range", "-inf", "inf"],
        *each_value("--weight-levels", ["0", "-1", "1", str(2**40)]),
        *each_value("--on-off-ratio", ["0", "nan", "0.5", "inf"], after=["--weight-levels", "4"]),
        ["--neuron", "bogus"],
        ["--dump-after", "bogus"],
        ["--norm", "spikenorm", "--timesteps", "3"],
        ["--stats"],
        ["--per-channel"],
        ["--neuron", "ttfs"],
    ]
    cases = [
        Case(
            f"compile {' '.join(o)[:60]}",
            [
                "compile",
                MODEL,
                "-o",
                OUT,
                "--calib",
                CALIB,
                "-q",
                *(["--timesteps", "2"] if "--timesteps" not in o else []),
                *o,
            ],
            dict(files),
            OUT,
        )
        for o in compile_options
    ]
    cases += [
        Case("compile -o a folder", ["compile", MODEL, "-o", ".", "--calib", CALIB, *COMPILE], dict(files)),
        Case(
            "compile -o in a missing folder",
            ["compile", MODEL, "-o", "no/such/out.onnx", "--calib", CALIB, *COMPILE],
            dict(files),
        ),
        Case("compile without --calib", ["compile", MODEL, "-o", OUT, *COMPILE], dict(files), OUT),
        Case("compile of a missing model", ["compile", "nowhere.onnx", "-o", OUT, *COMPILE], dict(files), OUT),
        Case("demo --timesteps 0", ["demo", "--timesteps", "0"]),
        Case("demo --timesteps -1", ["demo", "--timesteps", "-1"]),
    ]
    quantize_options = [
        *each_value("--levels", ["0", "-1", "1", str(2**40)]),
        *each_value("--on-off-ratio", ["nan", "0", "-2"]),
        ["--levels", "4", "--data", CALIB],
        ["--levels", "4"],
    ]
    cases += [
        Case(f"quantize {' '.join(o)}", ["quantize-weights", MODEL, "-o", OUT, *o], dict(files), OUT)
        for o in quantize_options
    ]
    return cases


def fixed_cases(snn: bytes, rng: np.random.Generator, byte_count: int) -> list[Case]:
    return byte_cases(rng, byte_count) + calibration_cases() + eval_cases(snn) + option_cases()


# --------------------------------------------------------------------------- running


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _snapshot(folder: Path) -> dict[str, str]:
    """Every file under `folder` (hidden ones and those in sub-folders included) and its hash."""
    return {str(p.relative_to(folder)): _digest(p) if p.is_file() else "<dir>" for p in sorted(folder.rglob("*"))}


def run_case(case: Case, folder: Path, capfd: pytest.CaptureFixture) -> tuple[str, str | None]:
    """Run `case` in `folder`: its outcome (one of OUTCOMES) and why it breaks the rule, or None."""
    folder.mkdir()
    for name, content in case.files.items():
        (folder / name).write_bytes(content)
    before = _snapshot(folder)
    argv = [
        str(folder / a) if a in case.files or a in (OUT, "nowhere.onnx", "nowhere.npy", ".", "no/such/out.onnx") else a
        for a in case.argv
    ]
    capfd.readouterr()
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse refuses an option
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException as exc:  # noqa: BLE001 - anything escaping main is a bug
        capfd.readouterr()
        return "other", f"raised {type(exc).__name__}: {str(exc)[:200]}"
    lines = [line for line in capfd.readouterr().err.splitlines() if line.strip()]
    after = _snapshot(folder)
    changed = sorted(name for name, digest in before.items() if after.get(name) != digest)
    if changed:
        return _outcome(code), f"changed its inputs {changed}"
    if code == 0:
        return "exit 0", _check_output(folder / case.output) if case.output else None
    added = sorted(set(after) - set(before))
    if code == 2 and len(lines) == 1 and not added:
        return "exit 2", None
    problem = f"{len(lines)} stderr lines" if len(lines) != 1 else f"left {added}" if added else ""
    return _outcome(code), f"{problem}: {' | '.join(lines)[:400]}".strip(": ")


def _outcome(code: int) -> str:
    return {0: "exit 0", 2: "exit 2", 1: "exit 1"}.get(code, "other")


def _check_output(path: Path) -> str | None:
    """None when `path` is a model that passes onnx.checker's full check, else why not."""
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as exc:  # noqa: BLE001
        return f"exit 0 but {path.name} fails onnx.checker: {str(exc).splitlines()[0][:200]}"
    return None


@pytest.fixture(scope="module")
def snn_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The digits MLP compiled at T = 2, as the file eval cases read."""
    from onnx_snn import CompileOptions, compile_model

    out = tmp_path_factory.mktemp("snn") / "digits.snn.onnx"
    compile_model(DATA / "digits_mlp.onnx", out, CompileOptions(timesteps=2), calibration=calibration())
    return out.read_bytes()


def fuzz(cases: list[Case], root: Path, capfd: pytest.CaptureFixture) -> None:
    """Run every case; print the outcome counts; fail listing each case that breaks the rule."""
    counts: Counter[str] = Counter()
    failures = []
    for index, case in enumerate(cases):
        outcome, problem = run_case(case, root / f"case{index}", capfd)
        counts[outcome] += 1
        if problem is not None:
            failures.append(f"{case.name} -> {outcome}: {problem}")
    summary = ", ".join(f"{outcome}: {counts[outcome]}" for outcome in OUTCOMES)
    with capfd.disabled():
        print(f"\nfuzz: {len(cases)} cases; {summary}")
    assert not failures, f"{len(failures)} of {len(cases)} cases break the rule ({summary}):\n" + "\n".join(failures)


def test_fuzz_cli_fast(tmp_path: Path, capfd: pytest.CaptureFixture, snn_bytes: bytes) -> None:
    rng = np.random.default_rng(SEED)
    cases = fixed_cases(snn_bytes, rng, byte_count=40) + [model_case(i, rng) for i in range(FAST_MODEL_CASES)]
    fuzz(cases, tmp_path, capfd)


@pytest.mark.slow
def test_fuzz_cli_slow(tmp_path: Path, capfd: pytest.CaptureFixture, snn_bytes: bytes) -> None:
    rng = np.random.default_rng(SEED + 1)
    cases = fixed_cases(snn_bytes, rng, byte_count=400) + [model_case(i, rng) for i in range(SLOW_MODEL_CASES)]
    fuzz(cases, tmp_path, capfd)
