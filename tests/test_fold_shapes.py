"""Shape computations folded (canonicalize's fold_shapes), constants fixed to the export batch freed
(batch_reshape with batch_constants) and constant masks made affine (masked_fill): ViT-, masked-
attention- and Swin-style torch nets exported by the legacy exporter (dynamic batch, and batch 1
fixed) and by dynamo (batch 2 baked, external data), then each rewriter on a hand-built graph."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import onnxruntime as ort
import pytest
import torch
from helpers import assert_user_error, onnx_nodes, run_cli, seeded_net
from onnx import helper
from torch import nn

from onnx_snn.api import compile_model
from onnx_snn.errors import SnnError
from onnx_snn.options import CompileOptions
from onnx_snn.passes.base import PassContext, run_passes
from onnx_snn.passes.canonicalize import canonicalize, fold_shapes, shape_samples
from onnx_snn.pipeline import build_pipeline
from onnx_snn.runtime.session import Session

BATCHES = (1, 2, 5)
TOL = {"rtol": 1e-5, "atol": 1e-5}
#: ops of a shape computation that folding leaves none of
FOLDED_OPS = {"Equal", "Where", "ConstantOfShape", "Range", "Size", "Unsqueeze", "Cast", "Trilu"}
#: the ops of the batch-generic expressions fold_shapes and batch_constants write, and the
#: Expand of a constant to the batch (the class token) that reads one
EXPRESSION_OPS = {"Shape", "Concat", "Mul", "Div", "Add", "Expand"}


# --- the nets ------------------------------------------------------------------------------------


class VitStyle(nn.Module):
    """Patch embedding, `cls.expand(x.shape[0], -1, -1)` prepended, one attention block whose qkv
    is `reshape(x.shape[0], n, 3, heads, d)` and whose heads merge by `reshape(x.shape[0], n, dim)`,
    the class token's head."""

    def __init__(self, dim: int = 16, heads: int = 2) -> None:
        super().__init__()
        self.heads = heads
        self.embed = nn.Conv2d(3, dim, 4, 4)
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.5)
        self.pos = nn.Parameter(torch.randn(1, 5, dim) * 0.1)
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.head = nn.Linear(dim, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
        tokens, dim = x.shape[1], x.shape[2]
        qkv = self.qkv(self.norm(x)).reshape(x.shape[0], tokens, 3, self.heads, dim // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        attn = (q @ k.transpose(-2, -1) * (dim // self.heads) ** -0.5).softmax(-1)
        x = x + self.proj((attn @ v).transpose(1, 2).reshape(x.shape[0], tokens, dim))
        return self.head(x[:, 0])


class MaskedStyle(nn.Module):
    """Attention masked from shapes: a causal mask `torch.ones(B, n, n).tril()` applied by
    `masked_fill(mask == 0, -100)`, then torch.where over an arange of the token count."""

    def __init__(self, dim: int = 8) -> None:
        super().__init__()
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.head = nn.Linear(dim, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, _ = x.shape
        scores = self.q(x) @ self.k(x).transpose(1, 2)
        mask = torch.ones(batch, tokens, tokens).tril()
        scores = scores.masked_fill(mask == 0, -100.0)
        index = torch.arange(tokens)
        near = index[None, :, None] >= index[None, None, :] - 1
        scores = torch.where(near, scores, torch.full_like(scores, -50.0))
        return self.head((scores.softmax(-1) @ x).mean(1))


def _partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """[B, H, W, C] -> [B * windows, window * window, C]."""
    batch, height, width, channels = x.shape
    x = x.view(batch, height // window, window, width // window, window, channels)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window * window, channels)


def _reverse(windows: torch.Tensor, window: int, side: int) -> torch.Tensor:
    """[B * windows, window * window, C] -> [B, side, side, C], B = windows.shape[0] // windows."""
    batch = windows.shape[0] // ((side // window) ** 2)
    x = windows.view(batch, side // window, side // window, window, window, -1)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(batch, side, side, -1)


class SwinStyle(nn.Module):
    """One shifted-window block: torch.roll, window partition by view/permute/reshape, window
    attention plus the shift mask through `attn.view(B_ // nW, nW, n, n)`, reverse, roll back."""

    def __init__(self, dim: int = 8, side: int = 4, window: int = 2) -> None:
        super().__init__()
        self.side, self.window, self.shift = side, window, window // 2
        self.embed = nn.Conv2d(3, dim, 2, 2)
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.head = nn.Linear(dim, 5)
        regions = torch.zeros(1, side, side, 1)
        cuts = (slice(0, -window), slice(-window, -self.shift), slice(-self.shift, None))
        for label, (rows, cols) in enumerate((r, c) for r in cuts for c in cuts):
            regions[:, rows, cols, :] = label
        labels = _partition(regions, window).squeeze(-1)
        mask = labels.unsqueeze(1) - labels.unsqueeze(2)
        self.register_buffer("mask", mask.masked_fill(mask != 0, -100.0), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x).flatten(2).transpose(1, 2)
        batch, tokens, channels = x.shape
        y = torch.roll(self.norm(x).view(batch, self.side, self.side, channels), (-self.shift, -self.shift), (1, 2))
        windows = _partition(y, self.window)
        batch_windows, n, _ = windows.shape
        q, k, v = self.qkv(windows).reshape(batch_windows, n, 3, channels).permute(2, 0, 1, 3)
        attn = q @ k.transpose(-2, -1) * channels**-0.5
        count = self.mask.shape[0]
        attn = (attn.view(batch_windows // count, count, n, n) + self.mask.unsqueeze(0)).view(-1, n, n)
        y = torch.roll(
            _reverse(self.proj(attn.softmax(-1) @ v), self.window, self.side), (self.shift, self.shift), (1, 2)
        )
        return self.head((x + y.reshape(batch, tokens, channels)).mean(1))


#: name -> (net, input shape without the batch)
NETS = {"vit": (VitStyle, (3, 8, 8)), "masked": (MaskedStyle, (6, 8)), "swin": (SwinStyle, (3, 8, 8))}
#: exporter -> the batch it traces with
EXPORTERS = {"legacy_dynamic": 1, "legacy_fixed": 1, "dynamo": 2}
CASES = [(name, exporter) for name in NETS for exporter in EXPORTERS]


def _export(net: nn.Module, shape: tuple[int, ...], exporter: str, path: Path) -> None:
    sample = (torch.randn(EXPORTERS[exporter], *shape),)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "dynamo":  # the batch is baked in; the weights go to path.data
            torch.onnx.export(net, sample, str(path), dynamo=True, input_names=["x"], output_names=["y"], verbose=False)
            return
        dynamic = {"dynamic_axes": {"x": {0: "batch"}, "y": {0: "batch"}}} if exporter == "legacy_dynamic" else {}
        torch.onnx.export(
            net, sample, str(path), dynamo=False, opset_version=17, input_names=["x"], output_names=["y"], **dynamic
        )


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """`exported(name, exporter)`: (path, net, input shape) of that net's export, made once."""
    folder = tmp_path_factory.mktemp("fold_shapes")
    made: dict[tuple[str, str], tuple[Path, nn.Module, tuple[int, ...]]] = {}

    def get(name: str, exporter: str) -> tuple[Path, nn.Module, tuple[int, ...]]:
        if (name, exporter) not in made:
            build, shape = NETS[name]
            net = seeded_net(build)
            path = folder / f"{name}_{exporter}.onnx"
            _export(net, shape, exporter, path)
            made[name, exporter] = (path, net, shape)
        return made[name, exporter]

    return get


def canonical(model: onnx.ModelProto, source: str = "model.onnx") -> tuple[gs.Graph, PassContext]:
    ctx = PassContext(options=CompileOptions(), source=source, show_progress=False)
    return canonicalize.run(gs.import_onnx(model), ctx), ctx


def ops(graph: gs.Graph) -> list[str]:
    return [node.op for node in graph.nodes]


def run(model: gs.Graph | onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    if isinstance(model, gs.Graph):
        model = gs.export_onnx(model)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def per_sample(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    """A batch-1 model run on each sample of `x` in turn (what it computes at any batch)."""
    return np.concatenate([run(model, x[i : i + 1]) for i in range(len(x))])


def folded(model: onnx.ModelProto) -> gs.Graph:
    """canonical() of `model` (one input x [N, ...]), checked to compute what `model` does at every batch size."""
    graph, _ = canonical(model)
    dims = model.graph.input[0].type.tensor_type.shape.dim[1:]
    assert_same_at_every_batch(graph, model, tuple(d.dim_value for d in dims))
    return graph


def assert_same_at_every_batch(graph: gs.Graph, model: onnx.ModelProto, shape: tuple[int, ...]) -> None:
    """The rewritten `graph` computes what `model` does on inputs of per-sample `shape` at every batch size."""
    for batch in BATCHES:
        x = sample_input(shape, batch)
        np.testing.assert_array_equal(run(graph, x), run(model, x))


def sample_input(shape: tuple[int, ...], batch: int) -> np.ndarray:
    return np.random.default_rng(batch).standard_normal((batch, *shape)).astype(np.float32)


def shape_computations(graph: gs.Graph) -> list[gs.Node]:
    """The nodes of `graph` that compute a shape-only tensor (shape_samples)."""
    static = shape_samples.shape_only_tensors(graph)
    return [n for n in graph.nodes if n.outputs and n.outputs[0].name in static]


def assert_batch_generic_expressions_only(graph: gs.Graph) -> None:
    """No shape op left but the batch-generic expressions: Shape of one dim, concatenated and scaled."""
    assert not FOLDED_OPS & {n.op for n in shape_computations(graph)}
    for node in shape_computations(graph):
        assert node.op in EXPRESSION_OPS, node
        if node.op == "Shape":
            assert node.attrs.get("end", 0) - node.attrs.get("start", 0) == 1, node


# --- torch exports -------------------------------------------------------------------------------


@pytest.mark.parametrize("name,exporter", CASES)
def test_export_folds_and_runs_at_any_batch(name, exporter, exported):
    path, net, shape = exported(name, exporter)
    original = onnx.load(str(path))
    graph, _ = canonical(original, str(path))
    assert_batch_generic_expressions_only(graph)
    assert not {"Equal", "ConstantOfShape", "Range"} & set(ops(graph))
    if name != "vit":  # the class token's Expand reads the batch: the only shape op left
        assert not shape_computations(graph)
    assert "Where" not in ops(graph)  # the masks are constants, and masked_fill made them Mul/Add
    assert "Reshape" not in ops(graph) or all(
        isinstance(n.inputs[1], gs.Constant) for n in graph.nodes if n.op == "Reshape"
    )
    for batch in BATCHES:
        x = sample_input(shape, batch)
        with torch.no_grad():
            expected = net(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(run(graph, x), expected, **TOL)
        if exporter == "legacy_dynamic" or batch == EXPORTERS[exporter]:
            np.testing.assert_allclose(run(graph, x), run(original, x), **TOL)


@pytest.mark.parametrize("name,exporter", [c for c in CASES if c[0] != "swin"])
def test_export_compiles_and_runs_at_any_batch(name, exporter, exported, tmp_path):
    path, net, shape = exported(name, exporter)
    out = tmp_path / "snn.onnx"
    options = CompileOptions(neuron="signgd", timesteps=8)
    compile_model(path, out, options, calibration=sample_input(shape, 16))
    session = Session(out)
    for batch in BATCHES:
        result = session.run(sample_input(shape, batch))
        assert result.logits.shape == (batch, net.head.out_features)
        assert np.all(np.isfinite(result.logits))


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_swin_style_converts_every_op(exporter, exported):
    path, _, shape = exported("swin", exporter)
    options = CompileOptions(neuron="signgd")
    ctx = PassContext(options=options, source=str(path), show_progress=False)
    passes = build_pipeline(options, "signgd")
    until = [p.SPEC.name for p in passes].index("check_ops") + 1
    graph = run_passes(gs.import_onnx(onnx.load(str(path))), ctx, passes[:until])  # check_ops refuses nothing
    assert not shape_computations(graph)


def test_swin_style_compiles_and_runs_at_any_batch(exported, tmp_path):
    path, _, shape = exported("swin", "legacy_dynamic")
    snn = tmp_path / "snn.onnx"
    compile_model(path, snn, CompileOptions(neuron="signgd"), calibration=sample_input(shape, 16))
    session, x = Session(snn), sample_input(shape, 3)
    alone = session.run(x[:1], 4).logits
    np.testing.assert_allclose(session.run(x, 4).logits[:1], alone, rtol=1e-5, atol=1e-5)


# --- fold_shapes on hand-built graphs ------------------------------------------------------------


def test_reshape_to_computed_batch_shape_becomes_constant(make_model):
    nodes = onnx_nodes(
        "s = Shape(x)",
        "b = Gather <axis = 0> (s, zero)",
        "bb = Unsqueeze(b, axes)",
        "target = Concat <axis = 0> (bb, rest)",
        "y = Reshape(x, target)",
    )
    inits = {"zero": np.array(0), "axes": np.array([0]), "rest": np.array([3, 8])}
    graph = folded(make_model(nodes, {"x": ["N", 6, 4]}, {"y": ["N", 3, 8]}, inits))
    assert ops(graph) == ["Reshape"]
    assert graph.nodes[0].inputs[1].values.tolist() == [0, 3, 8]


def test_expand_to_the_batch_reads_the_batch_off_the_data(make_model):
    nodes = onnx_nodes(
        "s = Shape(x)",
        "b = Gather <axis = 0> (s, zero)",
        "bb = Unsqueeze(b, axes)",
        "sizes = Concat <axis = 0> (bb, minus, minus)",
        "ones = ConstantOfShape <value = int64[1] {1}> (three)",
        "neg = Mul(ones, minus)",
        "free = Equal(sizes, neg)",
        "target = Where(free, ones, sizes)",
        "tokens = Expand(cls, target)",
        "y = Concat <axis = 1> (tokens, x)",
    )
    inits = {
        "zero": np.array(0),
        "axes": np.array([0]),
        "minus": np.array([-1]),
        "three": np.array([3]),
        "cls": np.arange(4, dtype=np.float32).reshape(1, 1, 4),
    }
    graph = folded(make_model(nodes, {"x": ["N", 3, 4]}, {"y": ["N", 4, 4]}, inits))
    assert sorted(ops(graph)) == ["Concat", "Concat", "Expand", "Shape"]
    shape = next(n for n in graph.nodes if n.op == "Shape")
    assert shape.inputs[0] is graph.inputs[0] and (shape.attrs["start"], shape.attrs["end"]) == (0, 1)


#: Swin's merged windows [B·4, 2, 2] and the batch read off them: bb = [shape(r)[0] / 4]
WINDOW_BATCH = onnx_nodes(
    "windows = Reshape(x, split)",
    "r = Relu(windows)",
    "s = Shape(r)",
    "count = Gather <axis = 0> (s, zero)",
    "b = Div(count, four)",
    "bb = Unsqueeze(b, axes)",
)
WINDOW_BATCH_CONSTANTS = {
    "split": np.array([-1, 2, 2]),
    "zero": np.array(0),
    "four": np.array(4),
    "axes": np.array([0]),
}


def test_window_count_division_becomes_minus_one(make_model):
    """Swin's window_reverse: B = windows.shape[0] // nW, Reshape(windows, [B, 2, -1])."""
    nodes = WINDOW_BATCH + onnx_nodes(
        "target = Concat <axis = 0> (bb, two, minus)",
        "y = Reshape(r, target)",
    )
    inits = WINDOW_BATCH_CONSTANTS | {
        "two": np.array([2]),
        "minus": np.array([-1]),
    }
    graph = folded(make_model(nodes, {"x": ["N", 4, 2, 2]}, {"y": ["N", 2, 8]}, inits))
    assert ops(graph) == ["Reshape", "Relu", "Reshape"]
    assert graph.nodes[2].inputs[1].values.tolist() == [-1, 2, 8]


def test_batch_read_off_merged_windows_is_divided_back(make_model):
    """B = windows.shape[0] // 4 feeding an Expand: Shape(windows, 0, 1) / 4, read where the model read it."""
    nodes = WINDOW_BATCH + onnx_nodes(
        "target = Concat <axis = 0> (bb, three)",
        "tokens = Expand(token, target)",
        "flat = Flatten(r)",
        "rows = Reshape(flat, per_sample)",
        "y = Concat <axis = 1> (tokens, rows)",
    )
    inits = WINDOW_BATCH_CONSTANTS | {
        "three": np.array([3]),
        "token": np.arange(3, dtype=np.float32).reshape(1, 3),
        "per_sample": np.array([-1, 16]),
    }
    graph = folded(make_model(nodes, {"x": ["N", 4, 2, 2]}, {"y": ["N", 19]}, inits))
    shape = next(n for n in graph.nodes if n.op == "Shape")
    assert shape.inputs[0].name == "r" and (shape.attrs["start"], shape.attrs["end"]) == (0, 1)
    assert {n.op for n in shape_computations(graph)} == {"Shape", "Div", "Concat", "Expand"}


def test_mask_from_shapes_becomes_mul_and_add(make_model):
    nodes = onnx_nodes(
        "s = Shape(x)",
        "ones = ConstantOfShape <value = float[1] {1}> (s)",
        "mask = Trilu <upper = 0> (ones)",
        "hidden = Equal(mask, zero)",
        "y = Where(hidden, fill, x)",
    )
    inits = {"zero": np.array(0, np.float32), "fill": np.array(-100, np.float32)}
    graph = folded(make_model(nodes, {"x": ["N", 3, 3]}, {"y": ["N", 3, 3]}, inits))
    assert ops(graph) == ["Mul", "Add"]


def test_range_over_a_static_dim_becomes_constant(make_model):
    nodes = onnx_nodes(
        "s = Shape(x)",
        "n = Gather <axis = 0> (s, one)",
        "index = Range(zero, n, one)",
        "position = Cast <to = 1> (index)",
        "y = Add(x, position)",
    )
    inits = {"zero": np.array(0), "one": np.array(1)}
    model = make_model(nodes, {"x": ["N", 4]}, {"y": ["N", 4]}, inits)
    graph, _ = canonical(model)
    assert ops(graph) == ["BatchNormalization"]  # x + constant per channel
    x = sample_input((4,), 5)
    np.testing.assert_allclose(run(graph, x), x + np.arange(4, dtype=np.float32))


def test_fit_affine_and_broadcast_core():
    batches = (1, 2, 3)
    fit = fold_shapes.fit_affine([np.array([b, 3, 16 * b + 1]) for b in batches], batches)
    assert fit is not None and (fit.a, fit.c) == ((1, 0, 16), (0, 3, 1))
    assert fold_shapes.fit_affine([np.array(b * b) for b in batches], batches) is None
    assert fold_shapes.fit_affine([np.ones(b) for b in batches], batches) is None
    core = fold_shapes.broadcast_core([np.ones((b, 2)) for b in batches])
    assert core is not None and core.shape == (1, 2)
    assert fold_shapes.broadcast_core([np.arange(2 * b).reshape(b, 2) for b in batches]) is None


def test_reshape_entries_choose_copy_or_infer():
    batches = (1, 2)
    entries = fold_shapes.reshape_entries
    keep = fold_shapes.Affine((1, 0, 0), (0, 3, -1), False)  # [B, 3, -1] of [B, 12]: copy the batch
    assert entries(keep, [(b, 12) for b in batches], [(b, 3, 4) for b in batches], batches) == [0, 3, -1]
    merge = fold_shapes.Affine((4, 0), (0, 2), False)  # [4B, 2] of [B, 4, 2]: infer it
    assert entries(merge, [(b, 4, 2) for b in batches], [(4 * b, 2) for b in batches], batches) == [-1, 2]
    both = fold_shapes.Affine((4, 0, 0), (0, 1, -1), False)  # [4B, 1, -1] of [B, 4, 2]: the -1 is 2
    assert entries(both, [(b, 4, 2) for b in batches], [(4 * b, 1, 2) for b in batches], batches) == [-1, 1, 2]
    twice = fold_shapes.Affine((1, 1), (0, 0), False)  # [B, B]: no constant gives it
    assert entries(twice, [(b * b,) for b in batches], [(b, b) for b in batches], batches) is None


# --- constants fixed to the export batch ---------------------------------------------------------


def test_batch_one_constant_concatenated_with_the_batch_is_expanded(make_model):
    nodes = [helper.make_node("Concat", ["cls", "x"], ["y"], axis=1)]
    inits = {"cls": np.arange(4, dtype=np.float32).reshape(1, 1, 4)}  # dynamo's cls.expand(1, -1, -1)
    model = make_model(nodes, {"x": [1, 3, 4]}, {"y": [1, 4, 4]}, inits)
    graph, ctx = canonical(model)
    assert sorted(ops(graph)) == ["Concat", "Concat", "Expand", "Shape"]
    assert ctx.state.export_batch_size == 1
    for batch in BATCHES:
        x = sample_input((3, 4), batch)
        np.testing.assert_array_equal(run(graph, x), per_sample(model, x))


def test_batch_two_constants_become_one_slice(make_model):
    nodes = onnx_nodes("a = Add(x, bias)", "y = Expand(a, target)")
    bias = np.broadcast_to(np.arange(4, dtype=np.float32), (2, 1, 4)).copy()  # the same for both samples
    model = make_model(nodes, {"x": [2, 1, 4]}, {"y": [2, 3, 4]}, {"bias": bias, "target": np.array([2, 3, 4])})
    graph, _ = canonical(model)
    assert not [t for t in graph.tensors().values() if isinstance(t, gs.Constant) and t.values.shape[:1] == (2,)]
    assert next(n for n in graph.nodes if n.op == "Expand").inputs[1].values.tolist() == [1, 3, 4]
    for batch in BATCHES:
        x = sample_input((1, 4), batch)
        np.testing.assert_array_equal(run(graph, x), np.broadcast_to(x + bias[:1], (batch, 3, 4)))


def test_reshape_with_minus_one_after_the_export_batch_is_freed(make_model):
    """dynamo's window_reverse: Reshape(windows [4E, 4, 2], [E, 2, 2, -1])."""
    nodes = onnx_nodes("windows = Reshape(x, split)", "r = Relu(windows)", "y = Reshape(r, target)")
    inits = {"split": np.array([-1, 4, 2]), "target": np.array([1, 2, 2, -1])}
    model = make_model(nodes, {"x": [1, 16, 2]}, {"y": [1, 2, 2, 8]}, inits)
    graph, _ = canonical(model)
    assert graph.nodes[-1].inputs[1].values.tolist() == [-1, 2, 2, 8]
    for batch in BATCHES:
        x = sample_input((16, 2), batch)
        np.testing.assert_array_equal(run(graph, x), per_sample(model, x))


def test_per_sample_constant_of_the_export_batch_is_refused(make_model, tmp_path):
    nodes = [helper.make_node("Concat", ["cls", "x"], ["y"], axis=1, name="prepend")]
    inits = {"cls": np.arange(8, dtype=np.float32).reshape(2, 1, 4)}  # one token per sample
    model = make_model(nodes, {"x": [2, 3, 4]}, {"y": [2, 4, 4]}, inits)
    with pytest.raises(SnnError, match="prepend.*Concat.*exported with.*samples differ"):
        canonical(model)
    path = tmp_path / "fixed.onnx"
    onnx.save(model, str(path))
    result = run_cli("compile", str(path), "-o", str(tmp_path / "out.onnx"))
    assert_user_error(result, "fixed.onnx", "prepend", "Concat", "dynamic batch axis")


# --- masked_fill ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fill,rewritten", [(-100.0, True), (-np.inf, False)])
def test_where_of_a_constant_mask_is_affine_when_the_fill_is_finite(fill, rewritten, make_model):
    nodes = onnx_nodes("y = Where(keep, x, fill)")
    keep = np.tril(np.ones((3, 3), bool))[None]
    model = make_model(nodes, {"x": ["N", 3, 3]}, {"y": ["N", 3, 3]}, {"keep": keep, "fill": np.float32(fill)})
    graph, _ = canonical(model)
    assert ops(graph) == (["Mul", "Add"] if rewritten else ["Where"])
    x = sample_input((3, 3), 5)
    np.testing.assert_array_equal(run(graph, x), run(model, x))
