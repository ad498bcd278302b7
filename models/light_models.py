"""The `onnx` package's light model-zoo files, made into measurable nets (numpy and onnx only).

`onnx` ships, under onnx/backend/test/data/light/, nine classic ImageNet nets as another
exporter wrote them (onnx-caffe2, opset 9, IR version 3: every initializer is also a graph
input; input [1, 3, 224, 224], a fixed batch of 1; 1000 classes, most ending in Softmax). Their
weights are not stored: each is a ConstantOfShape(0.02) node fed a shape initializer, or a
leftover constant. `load_light_model(name)` materialises them as seeded random initializers, by
the role of the tensor (followed through Unsqueeze and Reshape to the op that reads it):

- Conv and Gemm weights He-normal, std sqrt(2 / fan_in); their biases normal with std 0.01;
- BatchNormalization scale 1 and bias 0, and the Mul/Add pairs the exporter writes after a BN
  (densenet121, inception_v2) 1 and 0;
- then each BatchNormalization's mean and variance set to the per-channel statistics of its input
  on real images (Fashion-MNIST resized to 224x224, gray repeated to three channels), in
  topological order, probing with onnxruntime: every BN normalises what it really receives.

Everything else (the graph, the IR version, the initializers listed as inputs, the Reshape shape
constants with their batch of 1) stays as the exporter wrote it. Also here: `fashion_rgb`, the
numpy resize of Fashion-MNIST to three-channel images that the coverage suite feeds every net.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from onnx_snn.models.data import load_fashion_mnist
from onnx_snn.models.files import atomic_path

#: the light models, in the order of the coverage table
LIGHT_MODELS: tuple[str, ...] = (
    "light_resnet50",
    "light_vgg19",
    "light_densenet121",
    "light_inception_v1",
    "light_inception_v2",
    "light_shufflenet",
    "light_squeezenet",
    "light_bvlc_alexnet",
    "light_zfnet512",
)
LIGHT_IMAGE_SIZE = 224
#: images whose statistics the BatchNorms take (training split), and the seed of the weights
STAT_IMAGES = 16
SEED = 0
BIAS_STD = 0.01
#: ops a parameter passes through on its way to the op that reads it
_PASS_THROUGH = ("Unsqueeze", "Reshape")
#: environment variable naming the cache of materialised models (as models.zoo's cache)
CACHE_ENV = "ONNX_SNN_CACHE"
DEFAULT_CACHE_DIR = Path("~/.cache/onnx-snn")


def light_dir() -> Path:
    """The folder of the light model-zoo files in the installed `onnx` package."""
    return Path(onnx.__file__).resolve().parent / "backend" / "test" / "data" / "light"


def light_path(name: str) -> Path:
    """The file of the light model `name` (e.g. light_resnet50)."""
    return light_dir() / f"{name}.onnx"


def available_light_models() -> list[str]:
    """The LIGHT_MODELS whose file this `onnx` installation ships."""
    return [name for name in LIGHT_MODELS if light_path(name).is_file()]


def data_input(model: onnx.ModelProto) -> onnx.ValueInfoProto:
    """The one graph input that is not an initializer (the image)."""
    initializers = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise ValueError(f"expected one data input, found {[i.name for i in inputs]}")
    return inputs[0]


def input_size(model: onnx.ModelProto) -> int:
    """The image side of the model's data input [N, 3, S, S]."""
    return data_input(model).type.tensor_type.shape.dim[-1].dim_value


# --- images -------------------------------------------------------------------------------------


def _resize_matrix(source: int, target: int) -> np.ndarray:
    """[target, source] weights of bilinear interpolation with half-pixel centres (torch's
    align_corners=False, without antialiasing)."""
    position = np.clip((np.arange(target) + 0.5) * source / target - 0.5, 0, source - 1)
    low = np.floor(position).astype(int)
    high = np.minimum(low + 1, source - 1)
    frac = position - low
    matrix = np.zeros((target, source))
    matrix[np.arange(target), low] += 1 - frac
    matrix[np.arange(target), high] += frac
    return matrix


def resize_rgb(images: np.ndarray, size: int) -> np.ndarray:
    """Gray images [N, 1, H, W] resized bilinearly to [N, 3, size, size] float32 (the gray channel
    repeated)."""
    rows = _resize_matrix(images.shape[2], size)
    cols = _resize_matrix(images.shape[3], size)
    resized = np.einsum("ih,nhw,jw->nij", rows, images[:, 0].astype(np.float64), cols).astype(np.float32)
    return np.ascontiguousarray(np.repeat(resized[:, None], 3, axis=1))


def fashion_rgb(split: str, count: int, size: int, start: int = 0) -> np.ndarray:
    """Fashion-MNIST images `start` .. `start + count` of `split` ("train" or "test") as float32
    [count, 3, size, size] in [0, 1]. SnnError when the IDX files are missing."""
    x, _ = load_fashion_mnist("train" if split == "train" else "test")
    return resize_rgb(x[start : start + count], size)


def fashion_labels(split: str, count: int, start: int = 0) -> np.ndarray:
    """The labels of fashion_rgb's images (int64)."""
    _, y = load_fashion_mnist("train" if split == "train" else "test")
    return y[start : start + count]


# --- materialising the weights ------------------------------------------------------------------


def _readers(graph: onnx.GraphProto) -> dict[str, list[tuple[onnx.NodeProto, int]]]:
    """tensor name -> the (node, input index) pairs that read it."""
    readers: dict[str, list[tuple[onnx.NodeProto, int]]] = {}
    for node in graph.node:
        for index, name in enumerate(node.input):
            readers.setdefault(name, []).append((node, index))
    return readers


def _role(name: str, readers: dict[str, list[tuple[onnx.NodeProto, int]]]) -> tuple[str, int, onnx.NodeProto] | None:
    """(op type, input index, node) of the op that finally reads parameter `name`, following
    Unsqueeze and Reshape; None if nothing reads it."""
    seen = 0
    while seen < 8:
        found = readers.get(name, [])
        if not found:
            return None
        node, index = found[0]
        if node.op_type in _PASS_THROUGH and index == 0:
            name, seen = node.output[0], seen + 1
            continue
        return node.op_type, index, node
    return None


def _attribute(node: onnx.NodeProto, name: str, default: int) -> int:
    for attribute in node.attribute:
        if attribute.name == name:
            return int(helper.get_attribute_value(attribute))
    return default


def _parameter(
    shape: tuple[int, ...], role: tuple[str, int, onnx.NodeProto] | None, rng: np.random.Generator
) -> np.ndarray:
    """A float32 array of `shape` for a parameter read in `role` (see the module doc)."""
    if role is None:
        return np.full(shape, 0.0, np.float32)
    op, index, node = role
    if (op == "Conv" and index == 1) or (op == "Gemm" and index == 1):
        if op == "Gemm" and not _attribute(node, "transB", 0):
            fan_in = shape[0]
        else:
            fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        return rng.normal(0.0, np.sqrt(2.0 / max(1, fan_in)), shape).astype(np.float32)
    if op in ("Conv", "Gemm") and index == 2:
        return rng.normal(0.0, BIAS_STD, shape).astype(np.float32)
    if op == "BatchNormalization":
        return np.full(shape, 1.0 if index in (1, 4) else 0.0, np.float32)
    if op == "Mul":
        return np.ones(shape, np.float32)
    if op in ("Add", "Sum", "Sub"):
        return np.zeros(shape, np.float32)
    raise ValueError(f"no initialisation for a parameter read as input {index} of {op} (node {node.name})")


def materialise_weights(model: onnx.ModelProto, seed: int = SEED) -> onnx.ModelProto:
    """A copy of `model` whose ConstantOfShape parameters and float constants are seeded random
    initializers by role (module doc); BatchNorm statistics mean 0, variance 1 (set them with
    set_batchnorm_statistics). Initializers stay listed as graph inputs where the IR version
    needs it (below 4)."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    initializers = {t.name: t for t in graph.initializer}
    readers = _readers(graph)
    rng = np.random.default_rng(seed)
    parameters: dict[str, np.ndarray] = {}
    keep_nodes = []
    for node in graph.node:
        if node.op_type == "ConstantOfShape" and node.input[0] in initializers:
            shape = tuple(int(d) for d in numpy_helper.to_array(initializers[node.input[0]]))
            parameters[node.output[0]] = _parameter(shape, _role(node.output[0], readers), rng)
        else:
            keep_nodes.append(node)
    shape_inputs = {n.input[0] for n in graph.node if n.op_type == "ConstantOfShape" and n.input[0] in initializers}
    still_read = {name for node in keep_nodes for name in node.input}
    new_initializers = []
    for tensor in graph.initializer:
        if tensor.name in shape_inputs and tensor.name not in still_read:
            continue
        if tensor.data_type == onnx.TensorProto.FLOAT and tensor.name in still_read:
            role = _role(tensor.name, readers)
            shape = tuple(tensor.dims)
            tensor = numpy_helper.from_array(_parameter(shape, role, rng), tensor.name)
        new_initializers.append(tensor)
    new_initializers += [numpy_helper.from_array(value, name) for name, value in parameters.items()]
    del graph.node[:]
    graph.node.extend(keep_nodes)
    del graph.initializer[:]
    graph.initializer.extend(new_initializers)
    kept = {t.name for t in new_initializers}
    listed = [i for i in graph.input if i.name in kept or i.name not in initializers]
    if model.ir_version < 4:
        listed_names = {i.name for i in listed}
        listed += [
            helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
            for t in new_initializers
            if t.name not in listed_names
        ]
    del graph.input[:]
    graph.input.extend(listed)
    return model


def _pruned(model: onnx.ModelProto, outputs: list[str]) -> onnx.ModelProto:
    """`model` reduced to the nodes that `outputs` need, with those as its outputs."""
    graph = model.graph
    producer = {name: node for node in graph.node for name in node.output}
    needed, stack, names = set(), list(outputs), set(outputs)
    while stack:
        node = producer.get(stack.pop())
        if node is None or id(node) in needed:
            continue
        needed.add(id(node))
        for name in node.input:
            if name not in names:
                names.add(name)
                stack.append(name)
    nodes = [n for n in graph.node if id(n) in needed]
    initializers = [t for t in graph.initializer if t.name in names]
    inputs = [i for i in graph.input if i.name in names]
    probe = helper.make_graph(
        nodes,
        "probe",
        inputs,
        [helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None) for name in outputs],
        initializers,
    )
    return helper.make_model(probe, opset_imports=model.opset_import, ir_version=model.ir_version)


def set_batchnorm_statistics(model: onnx.ModelProto, images: np.ndarray) -> onnx.ModelProto:
    """Each BatchNormalization's mean and variance set, in topological order, to the per-channel
    statistics (over samples and space) of its input on `images`, probed with onnxruntime (one
    image at a time: the batch may be fixed to 1); BNs with no unset BN upstream are probed
    together. Changes `model` in place and returns it."""
    import onnxruntime as ort

    graph = model.graph
    initializers = {t.name: t for t in graph.initializer}
    producer = {name: node for node in graph.node for name in node.output}
    norms = [n for n in graph.node if n.op_type == "BatchNormalization"]
    upstream: dict[int, set[int]] = {}

    def ancestors(node: onnx.NodeProto) -> set[int]:
        """ids of the BatchNormalization nodes upstream of `node`'s data input."""
        found: set[int] = set()
        seen: set[int] = set()
        stack = [node.input[0]]
        while stack:
            parent = producer.get(stack.pop())
            if parent is None or id(parent) in seen:
                continue
            seen.add(id(parent))
            if parent.op_type == "BatchNormalization":
                found.add(id(parent))
            stack.extend(parent.input)
        return found

    for norm in norms:
        upstream[id(norm)] = ancestors(norm)
    name = data_input(model).name
    options = ort.SessionOptions()
    options.log_severity_level = 3
    pending = {id(n) for n in norms}
    while pending:
        ready = [n for n in norms if id(n) in pending and not (upstream[id(n)] & pending)]
        probe = _pruned(model, [n.input[0] for n in ready])
        session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
        sums = [np.zeros(0)] * len(ready)
        squares = [np.zeros(0)] * len(ready)
        values = [0] * len(ready)
        for image in images:
            outputs = session.run(None, {name: image[None].astype(np.float32)})
            for i, value in enumerate(outputs):
                flat = np.moveaxis(value.astype(np.float64), 1, 0).reshape(value.shape[1], -1)
                sums[i] = flat.sum(1) + (sums[i] if values[i] else 0.0)
                squares[i] = (flat**2).sum(1) + (squares[i] if values[i] else 0.0)
                values[i] += flat.shape[1]
        for i, norm in enumerate(ready):
            mean = sums[i] / values[i]
            var = np.maximum(squares[i] / values[i] - mean**2, 0.0)
            for index, stat in ((3, mean), (4, var)):
                tensor = initializers[norm.input[index]]
                tensor.CopyFrom(numpy_helper.from_array(stat.astype(np.float32), tensor.name))
            pending.discard(id(norm))
    return model


def _cache_dir() -> Path:
    chosen = os.environ.get(CACHE_ENV) or DEFAULT_CACHE_DIR
    return Path(chosen).expanduser() / "light"


def load_light_model(
    name: str, seed: int = SEED, stat_images: int = STAT_IMAGES, cache: bool = True
) -> onnx.ModelProto:
    """The light model `name` with seeded random weights and BatchNorm statistics from the first
    `stat_images` Fashion-MNIST training images at the model's input size (module doc). Cached
    under $ONNX_SNN_CACHE/light (default ~/.cache/onnx-snn/light) with `cache`. FileNotFoundError
    when this `onnx` does not ship the file; SnnError when Fashion-MNIST is needed and missing."""
    source = light_path(name)
    if not source.is_file():
        raise FileNotFoundError(f"{source} is not in this onnx installation ({onnx.__version__})")
    raw = source.read_bytes()
    key = hashlib.sha256(raw + f"{seed}:{stat_images}:{BIAS_STD}".encode()).hexdigest()[:16]
    cached = _cache_dir() / f"{name}-{key}.onnx"
    if cache and cached.is_file():
        return onnx.load(str(cached))
    model = materialise_weights(onnx.ModelProto.FromString(raw), seed)
    if any(n.op_type == "BatchNormalization" for n in model.graph.node):
        set_batchnorm_statistics(model, fashion_rgb("train", stat_images, input_size(model)))
    if cache:
        cached.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(cached) as tmp:
            onnx.save(model, str(tmp))
    return model
