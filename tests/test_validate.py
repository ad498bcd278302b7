"""Model and data validation: each class of bad input exits 2 with one line naming the file, node
and op; the models real exporters write, and the models onnx-snn compiles, pass."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import pytest
from graph_builders import Residual, cnn, export_legacy, randomized
from helpers import float_model
from onnx import TensorProto, helper, numpy_helper

from onnx_snn import CompileOptions, compile_model
from onnx_snn.cli import main
from onnx_snn.errors import SnnError
from onnx_snn.validate import validate_model

DATA = Path(__file__).resolve().parents[1] / "compiler" / "data"


def mlp(transB: int = 1, alpha: float = 1.0, weight: np.ndarray | None = None, name: str = "fc1") -> onnx.ModelProto:
    """x [N, 4] -> Gemm fc1 -> Relu -> Gemm fc2 -> y [N, 3]."""
    rng = np.random.default_rng(0)
    w1 = rng.normal(size=(8, 4)).astype(np.float32) if weight is None else weight
    inits = [
        numpy_helper.from_array(w1, "w1"),
        numpy_helper.from_array(np.zeros(8, np.float32), "b1"),
        numpy_helper.from_array(rng.normal(size=(3, 8)).astype(np.float32), "w2"),
        numpy_helper.from_array(np.zeros(3, np.float32), "b2"),
    ]
    nodes = [
        helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], name=name, transB=transB, alpha=alpha),
        helper.make_node("Relu", ["h"], ["a"], name="act"),
        helper.make_node("Gemm", ["a", "w2", "b2"], ["y"], name="fc2", transB=1),
    ]
    return float_model(nodes, "mlp", {"x": ["N", 4]}, {"y": ["N", 3]}, inits)


def convnet(
    conv: dict | None = None,
    pool: dict | None = None,
    bn: dict | None = None,
    var: np.ndarray | None = None,
    x_shape: list | None = None,
) -> onnx.ModelProto:
    """x [N, 4, 8, 8] -> Conv 'conv' (group 2) -> BatchNormalization 'bn' -> Relu -> MaxPool 'pool'
    -> Flatten -> Gemm 'fc' -> y [N, 3]; `conv`, `pool`, `bn` override attributes."""
    rng = np.random.default_rng(0)
    conv_attrs = {
        "kernel_shape": [3, 3],
        "pads": [1, 1, 1, 1],
        "strides": [1, 1],
        "dilations": [1, 1],
        "group": 2,
        **(conv or {}),
    }
    pool_attrs = {"kernel_shape": [2, 2], "strides": [2, 2], **(pool or {})}
    inits = {
        "w": rng.normal(size=(4, 2, 3, 3)),
        "b": np.zeros(4),
        "s": np.ones(4),
        "o": np.zeros(4),
        "m": np.zeros(4),
        "v": np.ones(4) if var is None else var,
        "wf": rng.normal(size=(3, 64)),
        "bf": np.zeros(3),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", **conv_attrs),
        helper.make_node("BatchNormalization", ["c", "s", "o", "m", "v"], ["n"], name="bn", **(bn or {})),
        helper.make_node("Relu", ["n"], ["r"], name="act"),
        helper.make_node("MaxPool", ["r"], ["p"], name="pool", **pool_attrs),
        helper.make_node("Flatten", ["p"], ["f"], name="flat", axis=1),
        helper.make_node("Gemm", ["f", "wf", "bf"], ["y"], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "convnet",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape or ["N", 4, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
        [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in inits.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def layernorm(axis: int = -1, stash_type: int = 1) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8])
    node = helper.make_node("LayerNormalization", ["x", "s", "b"], ["y"], name="ln", axis=axis, stash_type=stash_type)
    graph = helper.make_graph(
        [node],
        "ln",
        [x],
        [y],
        [numpy_helper.from_array(np.ones(8, np.float32), "s"), numpy_helper.from_array(np.zeros(8, np.float32), "b")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def edited(model: onnx.ModelProto, edit: Callable[[onnx.ModelProto], None]) -> onnx.ModelProto:
    edit(model)
    return model


def w1_with(value: float) -> onnx.ModelProto:
    weight = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)
    weight[2, 3] = value
    return mlp(weight=weight)


def with_constant(value: float) -> onnx.ModelProto:
    """mlp() whose output gets a Constant of `value` added by node 'bias_add'."""
    model = mlp()
    model.graph.node[2].output[0] = "y0"
    model.graph.node.extend(
        [
            helper.make_node(
                "Constant", [], ["k"], name="k", value=numpy_helper.from_array(np.full(3, value, np.float32))
            ),
            helper.make_node("Add", ["y0", "k"], ["y"], name="bias_add"),
        ]
    )
    return model


def unnamed(model: onnx.ModelProto) -> onnx.ModelProto:
    for node in model.graph.node:
        node.name = ""
    return model


def input_dim(model: onnx.ModelProto, index: int, value: int) -> onnx.ModelProto:
    model.graph.input[0].type.tensor_type.shape.dim[index].dim_value = value
    return model


#: (case id, model, fragments the one stderr line must hold besides the file name)
MODEL_CASES = [
    ("layernorm-axis", lambda: layernorm(axis=5), ["node 'ln' (LayerNormalization)", "axis 5"]),
    ("layernorm-stash-type", lambda: layernorm(stash_type=7), ["node 'ln' (LayerNormalization)", "stash_type"]),
    ("gemm-transB", lambda: mlp(transB=5), ["node 'fc1' (Gemm)", "transB"]),
    ("gemm-alpha-nan", lambda: mlp(alpha=math.nan), ["node 'fc1' (Gemm)", "alpha is nan"]),
    ("ir-version-1", lambda: edited(mlp(), lambda m: setattr(m, "ir_version", 1)), ["IR version 1"]),
    ("ir-version-2", lambda: edited(mlp(), lambda m: setattr(m, "ir_version", 2)), ["IR version 2"]),
    (
        "ir-version-newer",
        lambda: edited(mlp(), lambda m: setattr(m, "ir_version", onnx.IR_VERSION + 1)),
        [f"IR version {onnx.IR_VERSION + 1}", "upgrade"],
    ),
    (
        "duplicate-initializer",
        lambda: edited(mlp(), lambda m: m.graph.initializer.append(m.graph.initializer[0])),
        ["w1 initializer name is not unique"],
    ),
    ("nul-node-name", lambda: mlp(name="fc\x001"), ["node name 'fc\\x001'", "NUL"]),
    (
        "nul-tensor-name",
        lambda: edited(mlp(), lambda m: m.graph.node[1].output.__setitem__(0, "a\x00")),
        ["'a\\x00'", "NUL"],
    ),
    (
        "duplicate-node-name",
        lambda: edited(mlp(), lambda m: setattr(m.graph.node[2], "name", "fc1")),
        ["node 'fc1' (Gemm)", "also the name of node #0"],
    ),
    (
        "undefined-output-type",
        lambda: edited(mlp(), lambda m: setattr(m.graph.output[0].type.tensor_type, "elem_type", 0)),
        ["graph output 'y'", "element type 0"],
    ),
    ("no-outputs", lambda: edited(mlp(), lambda m: m.graph.ClearField("output")), ["no outputs"]),
    ("input-dim-negative", lambda: input_dim(mlp(), 1, -4), ["graph input 'x'", "dim -4"]),
    ("input-dim-zero", lambda: input_dim(mlp(), 1, 0), ["graph input 'x'", "dim 0"]),
    ("weight-int64", lambda: mlp(weight=np.ones((8, 4), np.int64)), ["node 'fc1' (Gemm)", "'w1' is int64"]),
    ("weight-float16", lambda: mlp(weight=np.ones((8, 4), np.float16)), ["node 'fc1' (Gemm)", "'w1' is float16"]),
    ("weight-nan", lambda: w1_with(math.nan), ["node 'fc1' (Gemm)", "'w1' holds nan at [2, 3]"]),
    ("weight-inf", lambda: w1_with(-math.inf), ["node 'fc1' (Gemm)", "'w1' holds -inf at [2, 3]"]),
    ("weight-absurd", lambda: w1_with(3e31), ["node 'fc1' (Gemm)", "'w1' holds 3e+31"]),
    ("constant-nan", lambda: with_constant(math.nan), ["node 'bias_add' (Add)", "'k' holds nan"]),
    ("unnamed-node", lambda: unnamed(mlp(transB=5)), ["node 'Gemm#0 (x -> h)' (Gemm)", "transB"]),
    (
        "conv-missing-weight",
        lambda: edited(convnet(), lambda m: m.graph.node[0].input.__setitem__(1, "")),
        ["node 'conv' (Conv)"],
    ),
    ("conv-group-zero", lambda: convnet(conv={"group": 0}), ["node 'conv' (Conv)", "group is 0"]),
    ("conv-group-mismatch", lambda: convnet(conv={"group": 4}), ["node 'conv' (Conv)", "group 4"]),
    ("conv-strides", lambda: convnet(conv={"strides": [0, 1]}), ["node 'conv' (Conv)", "strides"]),
    ("conv-dilations", lambda: convnet(conv={"dilations": [1, -1]}), ["node 'conv' (Conv)", "dilations"]),
    ("conv-kernel-zero", lambda: convnet(conv={"kernel_shape": [0, 3]}), ["node 'conv' (Conv)", "kernel_shape"]),
    ("conv-kernel-weight", lambda: convnet(conv={"kernel_shape": [5, 5]}), ["node 'conv' (Conv)", "kernel_shape"]),
    ("conv-pads-negative", lambda: convnet(conv={"pads": [-1, 0, 0, 0]}), ["node 'conv' (Conv)", "pads"]),
    ("conv-auto-pad", lambda: convnet(conv={"auto_pad": "BOGUS"}), ["node 'conv' (Conv)", "auto_pad"]),
    ("pool-strides", lambda: convnet(pool={"strides": [0, 2]}), ["node 'pool' (MaxPool)", "strides"]),
    ("pool-dilations", lambda: convnet(pool={"dilations": [0, 1]}), ["node 'pool' (MaxPool)", "dilations"]),
    ("pool-pads-kernel", lambda: convnet(pool={"pads": [2, 0, 0, 0]}), ["node 'pool' (MaxPool)", "pads"]),
    ("pool-kernel-input", lambda: convnet(pool={"kernel_shape": [9, 9]}), ["node 'pool' (MaxPool)", "kernel [9, 9]"]),
    ("pool-storage-order", lambda: convnet(pool={"storage_order": 7}), ["node 'pool' (MaxPool)", "storage_order"]),
    ("bn-epsilon-nan", lambda: convnet(bn={"epsilon": math.nan}), ["node 'bn' (BatchNormalization)", "epsilon"]),
    ("bn-variance", lambda: convnet(var=-np.ones(4)), ["node 'bn' (BatchNormalization)", "variance + epsilon"]),
    ("flatten-batch", lambda: flatten_batch(), ["node 'merge' (Flatten)", "batch"]),
    ("float16-model", lambda: float16(mlp()), ["graph input 'x' is float16", "float32"]),
]


def flatten_batch() -> onnx.ModelProto:
    """x [N, 1, 4] -> Flatten(axis=0) 'merge' -> Gemm ...: the batch merged into the features."""
    model = mlp()
    model.graph.input[0].CopyFrom(helper.make_tensor_value_info("x0", TensorProto.FLOAT, ["N", 1, 4]))
    model.graph.node.insert(0, helper.make_node("Flatten", ["x0"], ["x"], name="merge", axis=0))
    return model


def float16(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model` in float16 throughout: valid ONNX, but onnx-snn computes in float32."""
    for init in model.graph.initializer:
        init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), init.name))
    for value in [*model.graph.input, *model.graph.output]:
        value.type.tensor_type.elem_type = TensorProto.FLOAT16
    return model


def run_cli(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, list[str]]:
    """Exit code and stderr lines of the CLI run in-process."""
    code = main(argv)
    return code, capsys.readouterr().err.splitlines()


def assert_refused(code: int, lines: list[str], *fragments: str) -> None:
    assert code == 2, lines
    assert len(lines) == 1, lines
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.mark.parametrize("build, fragments", [(b, f) for _, b, f in MODEL_CASES], ids=[c for c, _, _ in MODEL_CASES])
def test_bad_model_is_refused_on_one_line(tmp_path, capsys, build, fragments):
    model = build()
    path = tmp_path / "bad.onnx"
    path.write_bytes(model.SerializeToString())
    shape = (
        [4, 1, 4]
        if model.graph.input[0].name == "x0"
        else [4, 4, 8, 8]
        if model.graph.name == "convnet"
        else [4, 8]
        if model.graph.name == "ln"
        else [4, 4]
    )
    calib = tmp_path / "calib.npy"
    np.save(calib, np.random.default_rng(1).normal(size=shape).astype(np.float32))
    before = path.read_bytes()
    code, lines = run_cli(["compile", str(path), "-o", str(tmp_path / "out.onnx"), "--calib", str(calib), "-q"], capsys)
    assert_refused(code, lines, str(path), *fragments)
    assert path.read_bytes() == before
    assert not (tmp_path / "out.onnx").exists()


def npz(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _x(*, nan: bool = False, inf: bool = False) -> np.ndarray:
    x = np.random.default_rng(2).normal(size=(6, 4)).astype(np.float32)
    if nan:
        x[3, 1] = np.nan
    if inf:
        x[0, 2] = np.inf
    return x


Y = np.array([0, 1, 2, 0, 1, 2])
#: (case id, data file content, fragments of the one stderr line) for calibration (x only) and eval (x and y)
CALIBRATION_CASES = [
    ("nan", npz(x=_x(nan=True)), ["'x' holds nan at [3, 1]"]),
    ("inf", npz(x=_x(inf=True)), ["'x' holds inf at [0, 2]"]),
    ("absurd", npz(x=_x() * 1e32), ["'x' holds"]),
    ("strings", npz(x=_x().astype(str)), ["not real numbers"]),
    ("complex", npz(x=_x().astype(np.complex64)), ["not real numbers"]),
    ("empty", npz(x=_x()[:0]), ["no samples"]),
    ("scalar", npz(x=np.float32(1)), ["no samples"]),
    ("wrong-key", npz(images=_x()), ["has keys ['images']"]),
]
EVAL_CASES = [
    ("float-labels", npz(x=_x(), y=Y.astype(np.float32)), ["labels 'y'", "float32"]),
    ("labels-2d", npz(x=_x(), y=Y[:, None]), ["labels 'y'", "[6, 1]"]),
    ("labels-empty", npz(x=_x(), y=Y[:0]), ["labels 'y'"]),
    ("negative-labels", npz(x=_x(), y=Y - 1), ["labels 'y'", "[-1, 1]"]),
    ("uint64-overflow", npz(x=_x(), y=np.full(6, 2**63 + 1, np.uint64)), ["labels 'y'", str(2**63 + 1)]),
    ("no-labels", npz(x=_x()), ["has no labels"]),
    ("nan-inputs", npz(x=_x(nan=True), y=Y), ["'x' holds nan"]),
]


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """mlp() compiled to IF neurons at T = 2."""
    folder = tmp_path_factory.mktemp("compiled")
    ann = folder / "ann.onnx"
    onnx.save(mlp(), ann)
    compile_model(ann, folder / "snn.onnx", CompileOptions(timesteps=2), calibration=_x())
    return folder / "snn.onnx"


@pytest.mark.parametrize(
    "content, fragments", [(c, f) for _, c, f in CALIBRATION_CASES], ids=[c for c, _, _ in CALIBRATION_CASES]
)
def test_bad_calibration_data_is_refused(tmp_path, capsys, content, fragments):
    model, data = tmp_path / "ann.onnx", tmp_path / "calib.npz"
    onnx.save(mlp(), model)
    data.write_bytes(content)
    code, lines = run_cli(["compile", str(model), "-o", str(tmp_path / "out.onnx"), "--calib", str(data), "-q"], capsys)
    assert_refused(code, lines, str(data), *fragments)
    assert not (tmp_path / "out.onnx").exists()


@pytest.mark.parametrize("content, fragments", [(c, f) for _, c, f in EVAL_CASES], ids=[c for c, _, _ in EVAL_CASES])
def test_bad_eval_data_is_refused(tmp_path, capsys, compiled, content, fragments):
    data = tmp_path / "data.npz"
    data.write_bytes(content)
    code, lines = run_cli(["eval", str(compiled), "--data", str(data), "-q"], capsys)
    assert_refused(code, lines, str(data), *fragments)


def _exporter_models() -> list[tuple[str, Callable[[], onnx.ModelProto]]]:
    """The shipped model, the tf2onnx fixtures (when present) and onnx's backend test models, as
    (id, loader)."""
    import onnx.backend.test

    light = Path(onnx.backend.test.__file__).parent / "data" / "light"
    shared = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "tf"
    paths = [DATA / "digits_mlp.onnx", *sorted(shared.glob("*.onnx")), *sorted(light.glob("*.onnx"))]
    return [(p.name, lambda p=p: onnx.load(str(p))) for p in paths]


def _torch_models() -> list[tuple[str, Callable[[], onnx.ModelProto]]]:
    sample = np.random.default_rng(0).normal(size=(2, 1, 8, 8)).astype(np.float32)

    def dynamo(net) -> onnx.ModelProto:
        import torch

        batch = torch.export.Dim("batch")
        return torch.onnx.export(
            net, (torch.from_numpy(sample),), input_names=["x"], dynamo=True, dynamic_shapes=({0: batch},)
        ).model_proto

    return [
        (f"torch-{kind}-{name}", lambda net=net, exporter=exporter: exporter(randomized(net())))
        for name, net in (("cnn", cnn), ("residual", Residual))
        for kind, exporter in (("legacy", lambda n: export_legacy(n, sample)), ("dynamo", dynamo))
    ]


@pytest.mark.parametrize(
    "load",
    [load for _, load in _exporter_models() + _torch_models()],
    ids=[name for name, _ in _exporter_models() + _torch_models()],
)
def test_models_from_real_exporters_pass(load):
    validate_model(load(), "<model>")


@pytest.mark.parametrize(
    "options",
    [
        CompileOptions(timesteps=3),
        CompileOptions(timesteps=3, stats=True),
        CompileOptions(timesteps=3, encoding="poisson"),
        CompileOptions(timesteps=3, neuron="signgd"),
        CompileOptions(neuron="ttfs"),
        CompileOptions(neuron="ttfs", ttfs_model="a", stats=True),
    ],
    ids=["if", "if-stats", "poisson", "signgd", "ttfs", "ttfs-a"],
)
def test_compiled_models_pass(options):
    x = np.abs(_x())
    result = compile_model(mlp(), None, options, calibration=x / x.max())
    validate_model(result.model, "<compiled>")


def test_a_model_too_large_for_one_protobuf_is_checked_from_its_file(tmp_path, monkeypatch):
    path = tmp_path / "big.onnx"
    onnx.save(mlp(), path, save_as_external_data=True, location="big.onnx.data", size_threshold=0)
    monkeypatch.setattr(onnx.checker, "MAXIMUM_PROTOBUF", 64)  # as if the loaded weights were over 2 GiB
    from onnx_snn.modelio import load_model

    assert load_model(path).graph.node[0].name == "fc1"
    onnx.save(mlp(transB=5), path, save_as_external_data=True, location="big.onnx.data", size_threshold=0)
    with pytest.raises(SnnError, match="transB"):
        load_model(path)
    bad = mlp()
    bad.graph.node[1].input[0] = "nowhere"
    onnx.save(bad, path, save_as_external_data=True, location="big.onnx.data", size_threshold=0)
    with pytest.raises(SnnError, match="node 'act' \\(Relu\\)"):
        load_model(path)


def test_signgd_spike_kinds_and_their_step_sizes():
    """signGD takes burst (η0/t from 0.0625), signed and binary (exp_inverse from 0.3) spikes;
    --schedule and --eta0 override either; multi has no signGD form."""
    from onnx_snn.errors import SnnError
    from onnx_snn.options import CompileOptions

    burst, binary = CompileOptions(neuron="signgd"), CompileOptions(neuron="signgd", spikes="binary")
    assert (burst.signgd_schedule, burst.signgd_eta0) == ("inverse", 0.0625)
    assert (binary.signgd_schedule, binary.signgd_eta0) == ("exp_inverse", 0.3)
    chosen = CompileOptions(neuron="signgd", schedule="exponential", eta0=0.15)
    assert (chosen.signgd_schedule, chosen.signgd_eta0) == ("exponential", 0.15)
    with pytest.raises(SnnError, match="no signGD form"):
        CompileOptions(neuron="signgd", spikes="multi").validate()
