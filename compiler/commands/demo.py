"""`onnx-snn demo`: compile and evaluate the shipped digits MLP (compiler/data)."""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np

from onnx_snn.api import compile_model
from onnx_snn.options import CompileOptions
from onnx_snn.runtime import Session

#: the package's data folder: the shipped model and its test digits
DATA_DIR = Path(__file__).parent.parent / "data"


def run(args: argparse.Namespace) -> int:
    ann = DATA_DIR / "digits_mlp.onnx"
    data = np.load(DATA_DIR / "digits_test.npz")
    with tempfile.TemporaryDirectory() as tmp:
        out = args.output or os.path.join(tmp, "digits_mlp.snn.onnx")
        compile_model(ann, out, CompileOptions(timesteps=args.timesteps), calibration=data["x_calib"])
        report = Session(out).evaluate(data["x"], data["y"], ann=ann, progress=False)
        print(
            f"onnx-snn demo: the shipped digits MLP ({ann.name}) compiled to IF neurons, {report.samples} test digits"
        )
        print(report.table())
    return 0
