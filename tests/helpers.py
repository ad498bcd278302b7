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
    extra = {domain: 1} if domain else {}
    return float_model(nodes, "tiny", {"x": ["N", 4]}, {"y": ["N", 3]}, inits, opsets={"": 17} | extra)


def onnx_nodes(*lines: str) -> list[onnx.NodeProto]:
    """Nodes written in ONNX's text syntax, one per line, e.g. "y = Add(x, b)" or
    "z = Gemm <transB = 1> (x, w)" (onnx.parser.parse_node)."""
    return [onnx.parser.parse_node(line) for line in lines]


def float_model(
    nodes: list[onnx.NodeProto],
    name: str,
    inputs: dict[str, list],
    outputs: dict[str, list],
    initializers: list[onnx.TensorProto],
    opsets: dict[str, int] | None = None,
    ir_version: int | None = 8,
) -> onnx.ModelProto:
    """A model of `nodes` with float inputs and outputs (names mapped to shapes), opset imports
    `opsets` (domain to version; default {"": 17}) and `ir_version` (None: onnx's default)."""

    def info(names: dict[str, list]) -> list[onnx.ValueInfoProto]:
        return [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape) for n, shape in names.items()]

    graph = helper.make_graph(nodes, name, info(inputs), info(outputs), initializers)
    imports = [helper.make_opsetid(d, v) for d, v in (opsets or {"": 17}).items()]
    kwargs = {} if ir_version is None else {"ir_version": ir_version}
    return helper.make_model(graph, opset_imports=imports, **kwargs)


def randomize_batchnorm(net: nn.Module, mean: float = 0.3, var_max: float = 1.5, bias: float = 0.2) -> nn.Module:
    """Every BatchNorm of `net` given random statistics and affine terms from torch's current RNG,
    so that folding it is not the identity: running mean in ±`mean`, running var in [0.5,
    `var_max`], weight in [0.5, 1.5], bias in ±`bias`. Returns `net`, in eval mode."""
    from torch import nn

    for module in net.modules():
        if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            module.running_mean.uniform_(-mean, mean)
            module.running_var.uniform_(0.5, var_max)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-bias, bias)
    return net.eval()


def seeded_net(build: Callable[[], nn.Module], seed: int = 0) -> nn.Module:
    """`build()` untrained, in eval mode: its initial weights drawn with torch seeded by `seed` (the
    global RNG state is restored) and every BatchNorm given random statistics and affine terms, so
    that folding it is not the identity. The fast suite's stand-in for a trained net wherever a test
    checks an export or compile path rather than accuracy (the `slow` tests train)."""
    import torch

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return randomize_batchnorm(build())


def digits_net(
    build: Callable[[], nn.Module], x_train: np.ndarray, y_train: np.ndarray, epochs: int, seed: int = 0
) -> nn.Module:
    """`build()` trained `epochs` epochs on (x_train, y_train) with Adam at lr 1e-2 from initial weights
    seeded by `seed`, in eval mode; with `epochs` 0, `seeded_net(build, seed)`: untrained, for the
    fast suite."""
    if epochs == 0:
        return seeded_net(build, seed)
    import torch

    from onnx_snn.models.architecture import TrainSettings
    from onnx_snn.models.train import train

    torch.manual_seed(seed)  # the initial weights, whatever ran before
    return train(build(), x_train, y_train, TrainSettings(epochs, lr=1e-2, seed=seed))


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
