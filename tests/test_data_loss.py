"""No run writes over a file it reads: every output path is checked against every input path (the
model, its external data, --calib, --data, --ann), after resolving symlinks and hard links; a
clash exits 2 naming both, and every input is byte-for-byte unchanged. Outputs that fail
verification are never left at the destination."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

from onnx_snn import cli
from onnx_snn.errors import CompilerBug

DATA = Path(cli.__file__).parent / "data"


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """The shipped digits MLP, its calibration and test data, and a compiled SNN, in tmp_path."""
    shutil.copy(DATA / "digits_mlp.onnx", tmp_path / "mlp.onnx")
    arrays = np.load(DATA / "digits_test.npz")
    np.save(tmp_path / "calib.npy", arrays["x_calib"][:64])
    np.savez(tmp_path / "test.npz", x=arrays["x"][:32], y=arrays["y"][:32])
    paths = {
        "model": tmp_path / "mlp.onnx",
        "calib": tmp_path / "calib.npy",
        "data": tmp_path / "test.npz",
        "snn": tmp_path / "mlp.snn.onnx",
    }
    assert (
        cli.main(
            [
                "compile",
                str(paths["model"]),
                "-o",
                str(paths["snn"]),
                "--calib",
                str(paths["calib"]),
                "--timesteps",
                "4",
                "-q",
            ]
        )
        == 0
    )
    return paths


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def refused(capsys, argv: list[str], *fragments: str) -> str:
    """Run the CLI in-process; assert exit 2 and one stderr line holding `fragments`."""
    capsys.readouterr()
    assert cli.main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("target", ["snn", "data"])
def test_eval_json_over_an_input(files, capsys, target):
    before = digests(files["model"].parent)
    refused(
        capsys,
        ["eval", str(files["snn"]), "--data", str(files["data"]), "--json", str(files[target])],
        "--json",
        "would overwrite",
    )
    assert digests(files["model"].parent) == before


def test_compile_over_calibration(files, capsys):
    before = digests(files["model"].parent)
    refused(
        capsys,
        ["compile", str(files["model"]), "-o", str(files["calib"]), "--calib", str(files["calib"])],
        "would overwrite --calib",
    )
    assert digests(files["model"].parent) == before


def _external(tmp_path: Path, files: dict[str, Path]) -> tuple[Path, Path]:
    """A model saved with external data, then renamed: it still points at its original data file."""
    original = tmp_path / "net.onnx"
    onnx.save_model(
        onnx.load(files["model"]), original, save_as_external_data=True, location="net.onnx.data", size_threshold=0
    )
    renamed = tmp_path / "renamed.onnx"
    original.rename(renamed)
    return renamed, tmp_path / "net.onnx.data"


@pytest.mark.parametrize("command", ["compile", "quantize-weights"])
def test_output_over_external_data(files, capsys, tmp_path, command):
    renamed, data = _external(tmp_path, files)
    before = digests(tmp_path)
    extra = ["--calib", str(files["calib"])] if command == "compile" else []
    refused(capsys, [command, str(renamed), "-o", str(data), *extra], "external data")
    assert digests(tmp_path) == before


def test_external_data_of_the_output_over_an_input(files, capsys, tmp_path):
    """-o X.onnx may write X.onnx.data: that path is checked too."""
    renamed, data = _external(tmp_path, files)
    refused(
        capsys,
        ["compile", str(renamed), "-o", str(tmp_path / "net.onnx"), "--calib", str(files["calib"])],
        "the external data of -o",
    )


@pytest.mark.parametrize("victim", ["model", "calib"])
def test_dump_after_over_an_input(files, capsys, tmp_path, victim):
    out = tmp_path / "x.onnx"
    dump = tmp_path / "x.after-fold_bn.onnx"
    model, calib = files["model"], files["calib"]
    if victim == "model":
        model = dump
        shutil.copy(files["model"], dump)
    else:
        calib = dump
        shutil.copy(files["calib"], dump)
    before = digests(tmp_path)
    refused(
        capsys,
        ["compile", str(model), "-o", str(out), "--calib", str(calib), "--dump-after", "fold_bn"],
        "--dump-after",
    )
    assert digests(tmp_path) == before and not out.exists()


@pytest.mark.parametrize("link", ["symlink", "hardlink"])
def test_output_through_a_link_to_the_input(files, capsys, tmp_path, link):
    alias = tmp_path / "alias.onnx"
    (os.symlink if link == "symlink" else os.link)(files["model"], alias)
    before = digests(tmp_path)
    refused(
        capsys,
        ["compile", str(files["model"]), "-o", str(alias), "--calib", str(files["calib"])],
        "would overwrite the model",
    )
    assert digests(tmp_path) == before


def test_eval_plot_file_over_the_data(files, capsys, tmp_path):
    plots = tmp_path / "plots"
    plots.mkdir()
    os.link(files["data"], plots / "accuracy.png")
    before = digests(tmp_path)
    refused(capsys, ["eval", str(files["snn"]), "--data", str(files["data"]), "--plot", str(plots)], "--plot")
    assert digests(tmp_path) == before


def test_ann_equal_to_the_snn(files, capsys):
    refused(
        capsys,
        ["eval", str(files["snn"]), "--data", str(files["data"]), "--ann", str(files["snn"])],
        "--ann names the SNN itself",
    )


@pytest.mark.parametrize("output", ["out.onnx/", "missing/out.onnx", "."])
def test_unwritable_outputs(files, capsys, tmp_path, output):
    refused(
        capsys,
        [
            "compile",
            str(files["model"]),
            "-o",
            f"{tmp_path}/{output}" if output != "." else ".",
            "--calib",
            str(files["calib"]),
        ],
        "-o",
    )
    assert not (tmp_path / "out.onnx").exists()


def test_a_model_failing_verification_is_not_left_behind(files, capsys, tmp_path, monkeypatch):
    """A compiler bug caught by verification: exit 1 (internal error), nothing at -o, no temp files."""

    def broken(*args, **kwargs):
        raise CompilerBug("planted")

    monkeypatch.setattr("onnx_snn.api.verify_snn", broken)
    out = tmp_path / "out.onnx"
    before = sorted(p.name for p in tmp_path.iterdir())
    capsys.readouterr()
    assert cli.main(["compile", str(files["model"]), "-o", str(out), "--calib", str(files["calib"]), "-q"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "internal error" in err[0] and "planted" in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_verification_runs_at_batch_two(files, capsys, tmp_path):
    capsys.readouterr()
    assert (
        cli.main(["compile", str(files["model"]), "-o", str(tmp_path / "v.onnx"), "--calib", str(files["calib"]), "-q"])
        == 0
    )
    assert "runs at batch 2" in capsys.readouterr().out


def test_eval_refuses_non_finite_snn_outputs(files, capsys, monkeypatch):
    """A read-out that is NaN at some step (the validator refuses non-finite weights at load, and
    IF neurons turn huge currents into at most one spike a step, so the run itself is made to
    return one here) is refused by eval instead of being scored as a prediction."""
    from onnx_snn.runtime.session import Session

    chunks = Session._chunks

    def poisoned(self, *args, **kwargs):
        for samples, span, part in chunks(self, *args, **kwargs):
            part.per_step[-1, 0, 0] = np.nan
            yield samples, span, part

    monkeypatch.setattr(Session, "_chunks", poisoned)
    refused(capsys, ["eval", str(files["snn"]), "--data", str(files["data"])], "not finite", "mlp.snn.onnx")
