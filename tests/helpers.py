"""Helpers shared by the test modules: a tiny model built in code and the CLI run in-process."""
from __future__ import annotations

import contextlib
import hashlib
import io
import subprocess
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from onnx_snn import cli


def tiny_relu_model(op: str = "Relu", domain: str = "", hidden: int = 8) -> onnx.ModelProto:
    """x[N,4] -> Gemm -> op -> Gemm -> y[N,3]."""
    rng = np.random.default_rng(0)
    inits = [onnx.numpy_helper.from_array(rng.normal(size=s).astype(np.float32), n)
             for n, s in (("w1", (hidden, 4)), ("b1", (hidden,)), ("w2", (3, hidden)), ("b2", (3,)))]
    nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], name="fc1", transB=1),
             helper.make_node(op, ["h"], ["a"], name="act", domain=domain),
             helper.make_node("Gemm", ["a", "w2", "b2"], ["y"], name="fc2", transB=1)]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])], inits)
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    return helper.make_model(graph, opset_imports=opsets, ir_version=8)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """`onnx-snn ARGS` run in this process (`cli.main`), its exit code and captured stdout and stderr
    in a CompletedProcess (the installed entry point has its own test in test_cli_errors)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(list(args))
    return subprocess.CompletedProcess(["onnx-snn", *args], code, out.getvalue(), err.getvalue())


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_user_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    """Exit code 2 and one stderr line holding every fragment, no traceback."""
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
