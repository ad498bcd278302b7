"""`onnx-snn compile`: compile an ANN (.onnx) into an SNN (.onnx), verified before it is written."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import cast

from onnx_snn.api import compile_model
from onnx_snn.commands.inspect import PIPELINE_ARROW
from onnx_snn.options import CompileOptions


def run(args: argparse.Namespace) -> int:
    options = CompileOptions(**{f.name: getattr(args, f.name) for f in option_fields()})
    if options.input_range is not None:
        options.input_range = cast("tuple[float, float]", tuple(options.input_range))  # nargs=2: two values
    result = compile_model(args.model, args.output, options, calibration=args.calib, show_progress=show_progress(args))
    for note in result.notes:
        print(f"note: {note}")
    layers = result.metadata.get("neuron_layers", [])
    neuron = result.metadata.get("neuron", args.neuron)
    timesteps = result.metadata["options"]["timesteps"]
    timing = f"t_read = {result.metadata['ttfs']['t_read']:.6g}" if neuron == "ttfs" else f"T = {timesteps}"
    choice = result.timestep_choice
    if choice is not None and not choice.reached:
        print(f"warning: --target-gap: {choice.describe()}; default T = {timesteps}", file=sys.stderr)
    elif choice is not None and not args.quiet:
        print(f"--target-gap: {choice.describe()}; default T = {timesteps}")
    print(f"compiled {args.model} -> {args.output}: {len(layers)} {neuron} neuron layers, {timing}")
    print("pipeline: " + PIPELINE_ARROW.join(result.metadata["passes"]))
    print(f"PASS: {args.output} {result.verification}")
    return 0


def option_fields() -> list[dataclasses.Field]:
    """The CompileOptions fields that are `compile` flags (made by options.option; the flags
    themselves by onnx_snn.cli._add_option_flags)."""
    return [f for f in dataclasses.fields(CompileOptions) if "help" in f.metadata]


def show_progress(args: argparse.Namespace) -> bool:
    """Progress bars unless --quiet, and only on a terminal (they are for people watching)."""
    return not args.quiet and sys.stderr.isatty()
