"""One option table: every CompileOptions option is a `compile` flag with the dataclass's default."""

from __future__ import annotations

import dataclasses

from onnx_snn import cli
from onnx_snn.options import CompileOptions


def test_compile_flags_default_to_compile_options():
    args = cli._parser().parse_args(["compile", "m.onnx", "-o", "o.onnx"])
    fields = cli.option_fields()
    assert {f.name for f in fields} == {f.name for f in dataclasses.fields(CompileOptions)} - {"calib_batch_size"}
    assert CompileOptions(**{f.name: getattr(args, f.name) for f in fields}) == CompileOptions()


def test_every_flag_reaches_its_option():
    argv = [
        "compile",
        "m.onnx",
        "-o",
        "o.onnx",
        "--timesteps",
        "7",
        "--norm",
        "max",
        "--per-channel",
        "--reset",
        "hard",
        "--input-range",
        "0",
        "2",
        "--weight-levels",
        "8",
        "--dump-after",
        "fold_bn",
    ]
    args = cli._parser().parse_args(argv)
    options = {f.name: getattr(args, f.name) for f in cli.option_fields()}
    assert options["timesteps"] == 7 and options["norm"] == "max" and options["per_channel"] is True
    assert options["reset"] == "hard" and options["input_range"] == [0.0, 2.0] and options["weight_levels"] == 8
    assert options["dump_after"] == ["fold_bn"]
