"""Helpers shared by the test modules: tiny models built in code and the CLI run in-process."""

from __future__ import annotations

import contextlib
import hashlib
import io
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx
from onnx import TensorProto, helper

from onnx_snn import cli

if TYPE_CHECKING:
    from torch import nn


def tiny_relu_model(op: str = "Relu", domain: str = "", hidden: int = 8) -> onnx.ModelProto:
    """x[N,4] -> Gemm -> op -> Gemm -> y[N,3]."""
    rng = np.random.default_rng(0)
    inits = [
        onnx.numpy_helper.from_array(rng.normal(size=s).astype(np.float32), n)
        for n, s in (("w1", (hidden, 4)), ("b1", (hidden,)), ("w2", (3, hidden)), ("b2", (3,)))
    ]
    nodes = [
        helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], name="fc1", transB=1),
        helper.make_node(op, ["h"], ["a"], name="act", domain=domain),
        helper.make_node("Gemm", ["a", "w2", "b2"], ["y"], name="fc2", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
        inits,
    )
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    return helper.make_model(graph, opset_imports=opsets, ir_version=8)


def seeded_net(build: Callable[[], nn.Module], seed: int = 0) -> nn.Module:
    """`build()` untrained, in eval mode: its initial weights drawn with torch seeded by `seed` (the
    global RNG state is restored) and every BatchNorm given random statistics and affine terms, so
    that folding it is not the identity. The fast suite's stand-in for a trained net wherever a test
    checks an export or compile path rather than accuracy (the `slow` tests train)."""
    import torch
    from torch import nn

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = build()
        for module in net.modules():
            if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
                module.running_mean.uniform_(-0.3, 0.3)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.data.uniform_(0.5, 1.5)
                module.bias.data.uniform_(-0.2, 0.2)
    return net.eval()


def digits_net(
    build: Callable[[], nn.Module], x_train: np.ndarray, y_train: np.ndarray, epochs: int, seed: int = 0
) -> nn.Module:
    """`build()` trained `epochs` epochs on (x_train, y_train) with Adam at lr 1e-2 from initial weights
    seeded by `seed`, in eval mode; with `epochs` 0, `seeded_net(build, seed)`: untrained, for the
    fast suite."""
    if epochs == 0:
        return seeded_net(build, seed)
    import torch

    from onnx_snn.models.train import train

    torch.manual_seed(seed)  # the initial weights, whatever ran before
    return train(build(), x_train, y_train, epochs=epochs, lr=1e-2, seed=seed)


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
