"""Issue 13's memory limits: the default budget, evaluate's bounded memory, declared sizes refused
before loading (data files and models), and the Session API's checks of its arguments."""

from __future__ import annotations

import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from helpers import tiny_relu_model
from onnx import TensorProto, helper

from onnx_snn import CompileOptions, SnnError, budget, compile_model
from onnx_snn.arrays import load_arrays
from onnx_snn.budget import FALLBACK_BUDGET, MAX_SIZE, check_declared_sizes, default_budget, parse_size, resolve_budget
from onnx_snn.cli import main as cli_main
from onnx_snn.modelio import load_model
from onnx_snn.options import MAX_TIMESTEPS
from onnx_snn.passes.common import calibrate
from onnx_snn.runtime import Session

MB = 10**6


@pytest.fixture(scope="module")
def snn() -> tuple[onnx.ModelProto, np.ndarray]:
    """The tiny ReLU net (4 inputs, 3 classes) compiled for T = 16, and 200 inputs."""
    x = np.random.default_rng(0).normal(size=(200, 4)).astype(np.float32)
    return compile_model(tiny_relu_model(), None, CompileOptions(timesteps=16), calibration=x).model, x


def test_default_budget_is_half_of_the_available_memory(monkeypatch):
    monkeypatch.setattr(budget, "available_memory", lambda: 8 * 10**9)
    assert default_budget() == resolve_budget(None) == 4 * 10**9
    monkeypatch.setattr(budget, "available_memory", lambda: None)  # /proc/meminfo unreadable
    assert default_budget() == FALLBACK_BUDGET


def test_memavailable_is_read_from_proc():
    available = budget.available_memory()
    assert available is None or available > 0


def test_evaluate_holds_one_chunk_not_every_logit(snn):
    """At T = 3000 the read-out of all 200 samples is 7.2 MB; under a 1 MB budget the Python-side
    peak stays below the budget (onnxruntime's own arena is not traced, and is bounded by the plan)."""
    model, x = snn
    steps, labels = 3000, np.arange(len(x)) % 3
    whole = steps * len(x) * 3 * 4
    session = Session(model, max_memory=MB)
    tracemalloc.start()
    try:
        report = session.evaluate(x, labels, steps, progress=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < MB < whole
    reference = Session(model).evaluate(x, labels, steps, batch_size=50, progress=False)
    np.testing.assert_array_equal(report.accuracy, reference.accuracy)


def test_evaluate_refuses_counters_beyond_the_budget(snn):
    model, x = snn
    with pytest.raises(SnnError, match="per-step counters"):
        Session(model, max_memory=MB).evaluate(x, np.zeros(len(x), dtype=int), timesteps=10**6, progress=False)


def test_run_refuses_a_per_step_output_beyond_the_budget(snn):
    model, x = snn
    with pytest.raises(SnnError, match="per-step output"):
        Session(model, max_memory=MB).run(x, 10**4)


def npy_header_only(path: Path, shape: tuple[int, ...], compressed: bool) -> Path:
    """An .npz whose member x.npy declares `shape` float32 but holds no data (a decompression bomb's
    header: numpy would allocate it all before finding the data short)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED if compressed else zipfile.ZIP_STORED) as archive:
        with archive.open("x.npy", "w") as member:
            np.lib.format.write_array_header_1_0(member, {"descr": "<f4", "fortran_order": False, "shape": shape})
    return path


def test_data_declaring_more_than_the_budget_is_refused_before_loading(tmp_path, monkeypatch):
    bomb = npy_header_only(tmp_path / "bomb.npz", (2**29,), compressed=True)  # declares 2 GiB
    with pytest.raises(SnnError, match="declare 2147483648 B .* above the memory budget of 1000000 B"):
        load_arrays(bomb, MB)
    monkeypatch.setattr(budget, "available_memory", lambda: 2 * MB)
    with pytest.raises(SnnError, match="above the memory budget of 1000000 B"):
        load_arrays(bomb)  # the default budget
    np.save(tmp_path / "big.npy", np.zeros(MB // 4 + 1, dtype=np.float32))
    with pytest.raises(SnnError, match="above the memory budget"):
        load_arrays(tmp_path / "big.npy")
    np.savez(tmp_path / "fits.npz", x=np.zeros((10, 4), dtype=np.float32), y=np.zeros(10, dtype=np.int64))
    assert {k: v.shape for k, v in load_arrays(tmp_path / "fits.npz").items()} == {"x": (10, 4), "y": (10,)}


def test_cli_eval_refuses_a_bomb_in_one_line(snn, tmp_path, capsys):
    model, _ = snn
    onnx.save(model, tmp_path / "snn.onnx")
    bomb = npy_header_only(tmp_path / "bomb.npz", (2**28,), compressed=False)
    code = cli_main(["eval", str(tmp_path / "snn.onnx"), "--data", str(bomb), "--max-memory", "256MB", "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "above the memory budget" in err[0]


def model_with(node: onnx.NodeProto, inits: list[onnx.TensorProto], value_info: list | None = None) -> onnx.ModelProto:
    """A one-node model: `node` reads graph inputs or `inits` and writes "out"."""
    graph = helper.make_graph(
        [node],
        "declared",
        [],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)],
        inits,
        value_info=value_info or [],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def int64s(name: str, values: list[int]) -> onnx.TensorProto:
    return helper.make_tensor(name, TensorProto.INT64, [len(values)], values)


@pytest.mark.parametrize(
    "model, declared",
    [
        (
            model_with(
                helper.make_node("ConstantOfShape", ["shape"], ["out"], name="zeros"), [int64s("shape", [2**28])]
            ),
            2**30,
        ),
        (
            model_with(
                helper.make_node("Expand", ["one", "shape"], ["out"], name="expand"),
                [helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0]), int64s("shape", [2**14, 2**14])],
            ),
            2**30,
        ),
        (
            model_with(
                helper.make_node("Tile", ["row", "reps"], ["out"], name="tile"),
                [helper.make_tensor("row", TensorProto.FLOAT, [1, 4], [1.0] * 4), int64s("reps", [2**26, 1])],
            ),
            2**30,
        ),
    ],
)
def test_models_declaring_large_constant_outputs_are_refused(model, declared, tmp_path, monkeypatch):
    check_declared_sizes(model, declared, "<model>")  # exactly the budget: fits
    with pytest.raises(SnnError, match=f"declares an output of {declared} B"):
        check_declared_sizes(model, declared - 1, "<model>")
    onnx.save(model, tmp_path / "m.onnx")
    monkeypatch.setattr(budget, "available_memory", lambda: 2 * MB)
    with pytest.raises(SnnError, match="above the memory budget of 1000000 B"):
        load_model(tmp_path / "m.onnx")  # compile, inspect and --ann read models through it


def test_external_weights_beyond_the_budget_are_refused_unread(tmp_path):
    weights = TensorProto(
        name="w",
        data_type=TensorProto.FLOAT,
        dims=[2**20, 64],  # 256 MiB, none stored
        data_location=TensorProto.EXTERNAL,
    )
    weights.external_data.add(key="location", value="missing.bin")
    model = model_with(helper.make_node("Identity", ["w"], ["out"]), [weights])
    with pytest.raises(SnnError, match="weights and constants declare 268435456 B"):
        check_declared_sizes(model, 100 * MB, "<model>")


def test_session_refuses_a_model_beyond_its_budget(snn):
    model, _ = snn
    with pytest.raises(SnnError, match="above the memory budget of 100 B"):
        Session(model, max_memory=100)


@pytest.mark.parametrize("timesteps", [1.5, True, "4", 0, -3, MAX_TIMESTEPS + 1, np.float64(4)])
def test_run_refuses_bad_timesteps(snn, timesteps):
    model, x = snn
    with pytest.raises(SnnError, match="timesteps must be"):
        Session(model).run(x[:2], timesteps=timesteps)


@pytest.mark.parametrize("budget", [float("nan"), float("inf"), -1, 0, 0.5, True, "lots", "1" * 400, [2]])
def test_session_refuses_bad_budgets(snn, budget):
    with pytest.raises(SnnError, match="max_memory|size"):
        Session(snn[0], max_memory=budget)


def test_session_accepts_a_budget_as_text(snn):
    assert Session(snn[0], max_memory="2GB").max_memory == 2 * 10**9


@pytest.mark.parametrize(
    "inputs, message",
    [
        (np.zeros((0, 4), dtype=np.float32), "no samples"),
        ({"image": np.zeros((2, 4), dtype=np.float32)}, r"inputs \['image'\] but the model's inputs are \['x'\]"),
        (np.zeros((2, 5), dtype=np.float32), r"shape \[2, 5\], the model expects \[\?, 4\]"),
        (np.zeros(4, dtype=np.float32), "shape"),
        (np.array([["a"] * 4] * 2), "dtype"),
    ],
)
def test_run_refuses_bad_inputs(snn, inputs, message):
    with pytest.raises(SnnError, match=message):
        Session(snn[0]).run(inputs)


@pytest.mark.parametrize(
    "labels, message",
    [
        (np.array([0, 1, 3]), r"class indices in \[0, 3\)"),
        (np.array([0, -1, 2]), r"class indices in \[0, 3\)"),
        (np.array([0, 1]), "2 labels for 3 inputs"),
        (np.array([0.0, 1.0, 2.0]), "integer"),
    ],
)
def test_evaluate_refuses_bad_labels(snn, labels, message):
    model, x = snn
    with pytest.raises(SnnError, match=message):
        Session(model).evaluate(x[:3], labels, progress=False)


@pytest.mark.parametrize("batch_size", [0, -1, 2.0, True])
def test_evaluate_refuses_bad_batch_sizes(snn, batch_size):
    model, x = snn
    with pytest.raises(SnnError, match="batch_size must be"):
        Session(model).evaluate(x[:3], np.zeros(3, dtype=int), batch_size=batch_size, progress=False)


@pytest.mark.parametrize("text", ["1" * 400, "inf", "nan", "1e3", f"{2 * MAX_SIZE}", "2000000TB"])
def test_absurd_sizes_are_refused(text):
    with pytest.raises(SnnError):
        parse_size(text)


def compiled_values(x: np.ndarray, per_channel: bool) -> tuple[dict[str, str], list[bytes]]:
    """The metadata (every λ among it) and the initializers' bytes of the tiny net compiled on `x`
    (node and tensor names carry a counter that differs from compile to compile)."""
    options = CompileOptions(timesteps=8, per_channel=per_channel)
    model = compile_model(tiny_relu_model(), None, options, calibration=x).model
    return {p.key: p.value for p in model.metadata_props}, [t.raw_data for t in model.graph.initializer]


@pytest.mark.parametrize("per_channel", [False, True])
def test_calibration_in_small_runs_and_slices_compiles_the_same_model(monkeypatch, per_channel):
    """Runs of 7 samples (the budget's share for the probe's outputs: 32 B a sample) and histogram
    slices of 5 values give the same statistics, so the same model, as whole batches."""
    x = np.random.default_rng(3).normal(size=(300, 4)).astype(np.float32)
    whole = compiled_values(x, per_channel)
    runs = []
    measure = calibrate._samples_per_run
    monkeypatch.setattr(calibrate, "default_budget", lambda: int(32 * 7 / calibrate.OUTPUT_SHARE))
    monkeypatch.setattr(calibrate, "_samples_per_run", lambda *args: runs.append(measure(*args)) or runs[-1])
    monkeypatch.setattr(calibrate, "SLICE_VALUES", 5)
    assert compiled_values(x, per_channel) == whole and runs == [7]
