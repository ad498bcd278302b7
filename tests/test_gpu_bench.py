"""benchmarks/gpu_bench.py: the Scan unroller, `prepare` on two tiny models, and `run --dry-run`
in a process that cannot import onnx or onnx_snn (as on the GPU machine)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_bench.py"
DIGITS = REPO / "compiler" / "data"


def _load_script():
    spec = importlib.util.spec_from_file_location("gpu_bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_bench"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


gpu_bench = _load_script()


def _run(model: onnx.ModelProto, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feed)


def _scan_model(steps: int) -> onnx.ModelProto:
    """A Scan with two states and two scan inputs (axis 1; axis 0 reversed), a body initializer and
    Constant, and two scan outputs (axis 1 reversed; axis 0), fed from inputs [batch, steps, 3]."""
    f = TensorProto.FLOAT
    body = helper.make_graph(
        [
            helper.make_node("Constant", [], ["two"], value=numpy_helper.from_array(np.float32(2.0), "two")),
            helper.make_node("Add", ["s1", "a_t"], ["s1_next"]),
            helper.make_node("Mul", ["s2", "half"], ["s2_half"]),
            helper.make_node("Add", ["s2_half", "b_t"], ["s2_next"]),
            helper.make_node("Mul", ["s1_next", "b_t"], ["y1"]),
            helper.make_node("Sub", ["s2_next", "a_t"], ["y2_part"]),
            helper.make_node("Mul", ["y2_part", "two"], ["y2"]),
        ],
        "body",
        [helper.make_tensor_value_info(n, f, None) for n in ("s1", "s2", "a_t", "b_t")],
        [helper.make_tensor_value_info(n, f, None) for n in ("s1_next", "s2_next", "y1", "y2")],
        initializer=[numpy_helper.from_array(np.float32(0.5), "half")],
    )
    nodes = [
        helper.make_node("ReduceSum", ["a", "axis1"], ["s1_0"], keepdims=0),
        helper.make_node("ReduceMax", ["b", "axis1"], ["s2_0"], keepdims=0),
        helper.make_node("Transpose", ["b"], ["b_time_first"], perm=[1, 0, 2]),
        helper.make_node(
            "Scan",
            ["s1_0", "s2_0", "a", "b_time_first"],
            ["s1_T", "s2_T", "y1", "y2"],
            body=body,
            num_scan_inputs=2,
            scan_input_axes=[1, 0],
            scan_input_directions=[0, 1],
            scan_output_axes=[1, 0],
            scan_output_directions=[1, 0],
        ),
    ]
    graph = helper.make_graph(
        nodes,
        "scan",
        [helper.make_tensor_value_info(n, f, ["batch", steps, 3]) for n in ("a", "b")],
        [helper.make_tensor_value_info(n, f, None) for n in ("s1_T", "s2_T", "y1", "y2")],
        initializer=[numpy_helper.from_array(np.asarray([1], dtype=np.int64), "axis1")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)], ir_version=10)


def test_unrolled_scan_equals_scan() -> None:
    model = _scan_model(steps=5)
    static = gpu_bench.make_static(model, batch=4)
    assert not {n.op_type for n in static.graph.node} & {"Scan", "If", "Loop"}
    assert [d.dim_value for d in static.graph.output[2].type.tensor_type.shape.dim] == [4, 5, 3]
    rng = np.random.default_rng(0)
    feed = {"a": rng.normal(size=(4, 5, 3)).astype(np.float32), "b": rng.normal(size=(4, 5, 3)).astype(np.float32)}
    for got, expected in zip(_run(static, feed), _run(model, feed)):
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("steps", [33, 70])
def test_unrolled_scan_splits_and_concats_at_most_max_fan(steps: int) -> None:
    """onnxruntime's CUDA Concat refuses more than 32 inputs in a CUDA graph: longer scans are split
    and concatenated by trees of at most MAX_FAN, and still equal the Scan bit for bit."""
    model = _scan_model(steps=steps)
    static = gpu_bench.make_static(model, batch=3)
    concats = [len(n.input) for n in static.graph.node if n.op_type == "Concat"]
    splits = [len(n.output) for n in static.graph.node if n.op_type == "Split"]
    assert len(concats) > 2 and len(splits) > 2  # two scan outputs and two scan inputs, each a tree
    assert max(concats + splits) <= gpu_bench.MAX_FAN
    rng = np.random.default_rng(3)
    feed = {k: rng.normal(size=(3, steps, 3)).astype(np.float32) for k in ("a", "b")}
    for got, expected in zip(_run(static, feed), _run(model, feed)):
        np.testing.assert_array_equal(got, expected)


def test_fan_groups_cover_the_leaves_in_order() -> None:
    assert gpu_bench._fan_groups(5) == [(i, i + 1) for i in range(5)]
    assert gpu_bench._fan_groups(128) == [(0, 32), (32, 64), (64, 96), (96, 128)]
    assert gpu_bench._fan_groups(33) == [(0, 32), (32, 33)]
    assert gpu_bench._fan_groups(1100) == [(0, 1024), (1024, 1100)]


def _tiny_cnn(path: Path) -> None:
    """Conv-ReLU-AvgPool-Conv-ReLU-Flatten-Gemm on [N, 1, 8, 8], random weights (two kinds of IF
    neuron after compiling: one on a constant input, one on a time-varying one)."""
    rng = np.random.default_rng(1)

    def weight(name: str, *shape: int) -> onnx.TensorProto:
        return numpy_helper.from_array(rng.normal(0, 0.5, shape).astype(np.float32), name)

    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("AveragePool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("Flatten", ["r2"], ["f"]),
        helper.make_node("Gemm", ["f", "w3", "b3"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_cnn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        initializer=[
            weight("w1", 4, 1, 3, 3),
            weight("b1", 4),
            weight("w2", 6, 4, 3, 3),
            weight("b2", 6),
            weight("w3", 10, 96),
            weight("b3", 10),
        ],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))


def _sources(tmp: Path) -> list:
    digits = np.load(DIGITS / "digits_test.npz")
    _tiny_cnn(tmp / "tiny_cnn.onnx")
    rng = np.random.default_rng(2)
    return [
        gpu_bench.ModelSource("digits-mlp", DIGITS / "digits_mlp.onnx", digits["x_calib"], digits["x"], digits["y"]),
        gpu_bench.ModelSource(
            "tiny-cnn",
            tmp / "tiny_cnn.onnx",
            rng.random((64, 1, 8, 8), dtype=np.float32),
            rng.random((100, 1, 8, 8), dtype=np.float32),
            rng.integers(0, 10, 100),
        ),
    ]


#: Run the script with onnx, onnx_snn and onnx_graphsurgeon unimportable, as on the GPU machine.
_WITHOUT_OUR_STACK = (
    "import runpy, sys; sys.modules.update(onnx=None, onnx_snn=None, onnx_graphsurgeon=None); "
    "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gpubench")
    gpu_bench.prepare(out, _sources(out), timesteps=(gpu_bench.DRY_RUN_T,), batches=(64,))
    return out


def test_prepare_writes_checked_static_models(prepared: Path) -> None:
    manifest = json.loads((prepared / "manifest.json").read_text())
    assert set(manifest["models"]) == {"digits-mlp", "tiny-cnn"}
    assert all((prepared / name).stat().st_size == size for name, size in manifest["files"].items())
    for entry in manifest["models"].values():
        unrolled = entry["snn"][str(gpu_bench.DRY_RUN_T)]["unrolled"]
        assert set(unrolled) == {"16", "64"} and set(entry["ann_static"]) == {"16", "64"}
        for info in unrolled.values():
            assert info["checked"] == "cpu run" and info["max_rel_err"] <= gpu_bench.CHECK_RTOL
            assert info["int64_values"] == 0
            assert not set(info["ops"]) & {"Scan", "If", "Loop", "Shape", "Range"}
    reference = np.load(prepared / "reference.npz")
    assert reference["tiny-cnn/T32/logits_per_step"].shape == (32, gpu_bench.REFERENCE_SAMPLES, 10)
    assert np.load(prepared / "inputs.npz")["digits-mlp/x"].shape == (360, 1, 8, 8)


def test_unrolled_at_another_batch_is_the_same_graph(prepared: Path) -> None:
    unrolled = json.loads((prepared / "manifest.json").read_text())["models"]["tiny-cnn"]["snn"]["32"]["unrolled"]
    small, large = (onnx.load(str(prepared / unrolled[b]["file"])) for b in ("16", "64"))
    assert gpu_bench.same_graph(small, large)


def test_dry_run_prints_the_table_and_writes_json(prepared: Path) -> None:
    out_json, out_md = prepared / "result.json", prepared / "result.md"
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            _WITHOUT_OUR_STACK,
            str(SCRIPT),
            "run",
            "--in",
            str(prepared),
            "--json",
            str(out_json),
            "--markdown",
            str(out_md),
            "--dry-run",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "| model | T | batch | variant |" in done.stdout and out_md.read_text() in done.stdout
    rows = json.loads(out_json.read_text())["rows"]
    variants = ["ann", "ann_graph", "snn_scan", "snn_unrolled", "snn_unrolled_graph"]
    assert [(r["model"], r["variant"]) for r in rows] == [(m, v) for m in ("digits-mlp", "tiny-cnn") for v in variants]
    for row in rows:
        assert row["error"] is None and (row["T"], row["batch"]) == (gpu_bench.DRY_RUN_T, gpu_bench.DRY_RUN_BATCH)
        assert row["max_rel_err"] <= 1e-5 and row["agreement"] == 1.0 and row["median_s"] > 0
        assert (row["ratio_T_ann"] is None) == row["variant"].startswith("ann")


def test_pool_probe_runs_in_a_child_and_renders(prepared: Path) -> None:
    manifest = json.loads((prepared / "manifest.json").read_text())
    assert set(manifest["pool_probes"]) == set(gpu_bench.POOL_PROBE_OPS)
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            _WITHOUT_OUR_STACK,
            str(SCRIPT),
            "probe",
            "--in",
            str(prepared),
            "--providers",
            "cpu",
            "--small",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    cases = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(c["op"], tuple(c["shape"])) for c in cases] == [(op, tuple(s)) for op, s in gpu_bench.POOL_PROBE_SMALL]
    assert all(c["ok"] and c["error"] is None for c in cases)
    result = {
        "environment": {"device": "cuda", "gpu": "x", "onnxruntime": ort.__version__, "tf32": False},
        "settings": {"rounds": 1, "reference_samples": 64},
        "rows": [],
        "pool_probe": {
            "cases": cases[:1] + [{**cases[1], "ok": False, "error": "CUDNN_STATUS_NOT_SUPPORTED"}],
            "error": None,
        },
    }
    text = gpu_bench.markdown(result)
    assert "| AveragePool | 3×1×2×2 | 3 | 12 | 0.00 | yes |  |" in text
    assert "| AveragePool | 4×1×2×2 | 4 | 16 | 0.00 | no | CUDNN_STATUS_NOT_SUPPORTED |" in text
