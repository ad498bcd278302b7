"""Plots: `onnx-snn eval --plot DIR` writes valid PNGs, plot_rate_sweep, and a missing matplotlib."""

from __future__ import annotations

import importlib.util
import re
import struct
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from helpers import run_cli, tiny_relu_model

from onnx_snn.cli import main
from onnx_snn.errors import SnnError
from onnx_snn.plots import plot_rate_sweep

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
INSTALL_HINT = 'pip install "onnx-snn[plot]"'
needs_matplotlib = pytest.mark.skipif(
    importlib.util.find_spec("matplotlib") is None, reason="needs matplotlib (the plot extra)"
)


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk, after checking the signature."""
    data = path.read_bytes()
    assert len(data) > 1000, path
    assert data[:8] == PNG_SIGNATURE, path
    assert data[12:16] == b"IHDR", path
    return struct.unpack(">II", data[16:24])


def assert_sensible_png(path: Path) -> None:
    width, height = png_size(path)
    assert 400 <= width <= 4000 and 300 <= height <= 4000, (path, width, height)


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> tuple[Path, Path, Path]:
    """A tiny ReLU ANN, its SNN compiled with --stats, and labelled test data: (ann, snn, data)."""
    folder = tmp_path_factory.mktemp("plots")
    ann = folder / "tiny.onnx"
    onnx.save(tiny_relu_model(), ann)
    rng = np.random.default_rng(1)
    calib = folder / "calib.npy"
    np.save(calib, rng.normal(size=(64, 4)).astype(np.float32))
    data = folder / "test.npz"
    np.savez(data, x=rng.normal(size=(40, 4)).astype(np.float32), y=rng.integers(0, 3, size=40))
    snn = folder / "tiny.snn.onnx"
    result = run_cli("compile", str(ann), "-o", str(snn), "--calib", str(calib), "--timesteps", "16", "--stats", "-q")
    assert result.returncode == 0, result.stderr
    return ann, snn, data


@needs_matplotlib
def test_eval_plot_writes_accuracy_and_firing_rate(compiled, tmp_path):
    ann, snn, data = compiled
    folder = tmp_path / "new" / "plots"  # created by eval
    result = run_cli("eval", str(snn), "--data", str(data), "--ann", str(ann), "--stats", "--plot", str(folder), "-q")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["accuracy.png", "firing_rate.png"]  # no temp files left
    for name in ("accuracy.png", "firing_rate.png"):
        assert_sensible_png(folder / name)
        assert f"wrote {folder / name}" in result.stdout


@needs_matplotlib
def test_eval_plot_without_stats_writes_accuracy_only(compiled, tmp_path):
    _, snn, data = compiled
    result = run_cli("eval", str(snn), "--data", str(data), "--plot", str(tmp_path), "-q")
    assert result.returncode == 0, result.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["accuracy.png"]
    assert_sensible_png(tmp_path / "accuracy.png")


@needs_matplotlib
def test_rate_sweep(tmp_path):
    rates = [0.02, 0.05, 0.1, 0.2, 0.5, 1.0]
    curves = {"max norm": [0.31, 0.55, 0.70, 0.82, 0.88, 0.90], "spikenorm": [0.45, 0.70, 0.82, 0.88, 0.90, 0.91]}
    path = plot_rate_sweep(rates, curves, tmp_path / "sweep.png", timesteps=64, ann_accuracy=0.913)
    assert path == tmp_path / "sweep.png"
    assert_sensible_png(path)
    assert [p.name for p in tmp_path.iterdir()] == ["sweep.png"]


@needs_matplotlib
@pytest.mark.parametrize(
    "rates, curves, fragment",
    [
        ([0.1, 1.0], {"max norm": [0.5]}, "has 1 accuracies for 2 rates"),
        ([0.0, 1.0], {"max norm": [0.1, 0.9]}, "must lie in (0, 1]"),
        ([0.1, 1.0], {}, "at least one"),
    ],
)
def test_rate_sweep_rejects_bad_input(tmp_path, rates, curves, fragment):
    with pytest.raises(SnnError, match=re.escape(fragment)):
        plot_rate_sweep(rates, curves, tmp_path / "sweep.png", timesteps=32)
    assert not list(tmp_path.iterdir())


def test_missing_matplotlib_is_a_one_line_error(compiled, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now raises ImportError
    with pytest.raises(SnnError, match=r'pip install "onnx-snn\[plot\]"'):
        plot_rate_sweep([0.5, 1.0], {"a": [0.5, 0.9]}, tmp_path / "sweep.png", timesteps=32)
    _, snn, data = compiled
    folder = tmp_path / "plots"
    assert main(["eval", str(snn), "--data", str(data), "--stats", "--plot", str(folder), "-q"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # refused before evaluating
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and INSTALL_HINT in lines[0], captured.err
    assert not folder.exists()


@needs_matplotlib
def test_plot_refuses_ttfs_models_and_a_file_as_folder(compiled, tmp_path):
    ann, snn, data = compiled
    ttfs = tmp_path / "ttfs.onnx"
    calib = tmp_path / "calib.npy"
    np.save(calib, np.random.default_rng(2).normal(size=(32, 4)).astype(np.float32))
    assert (
        run_cli("compile", str(ann), "-o", str(ttfs), "--calib", str(calib), "--neuron", "ttfs", "-q").returncode == 0
    )
    result = run_cli("eval", str(ttfs), "--data", str(data), "--plot", str(tmp_path / "plots"), "-q")
    assert result.returncode == 2 and "TTFS" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "plots").exists()
    result = run_cli("eval", str(snn), "--data", str(data), "--plot", str(calib), "-q")
    assert result.returncode == 2 and "--plot must name a folder" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
