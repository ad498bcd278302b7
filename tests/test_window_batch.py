"""A batch axis merged with positions, as Swin's windows ([B, C, H, W] -> [B·k, ...]): the compiled
SNN runs at any batch, and each sample's read-out does not depend on the batch around it.

Two things broke this (issue 15, swin_t): a calibration measured on one sample is [k, ...] there,
which broadcasts at batch 1 only (signGD offsets and biases are now tiled over the batch,
ir.signgd_graph.cover_batch); and time_batch labelled every folded axis 0 `T*batch`, so
onnxruntime, which takes equal dim names for equal sizes, reused a [T·B, ...] buffer for a
[T·B·k, ...] tensor (now `T*<s>` for an axis 0 of another size s, ir.contract.folded_dim).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from sklearn.datasets import load_digits

from onnx_snn import CompileOptions, compile_model
from onnx_snn.ir.contract import FOLDED_BATCH, is_folded
from onnx_snn.runtime import Session

#: windows per sample: [B, 4, 4, 4] -> [B·4, 4, 4] (four windows of four tokens, four features)
WINDOWS = 4


def windowed_model(activation: str) -> onnx.ModelProto:
    """digits [B, 64] -> [B, 4, 4, 4] -> windows [B·4, 4, 4] -> MatMul (a token mixer per window)
    -> `activation` -> [B, 64] -> Gemm to 10 logits; seeded weights."""
    rng = np.random.default_rng(3)
    weights = {
        "to_image": np.asarray([-1, 4, 4, 4], dtype=np.int64),
        "to_windows": np.asarray([-1, 4, 4], dtype=np.int64),
        "to_rows": np.asarray([-1, 64], dtype=np.int64),
        "mix": rng.normal(0, 0.5, (4, 4)).astype(np.float32),
        "head_w": rng.normal(0, 0.2, (64, 10)).astype(np.float32),
        "head_b": rng.normal(0, 0.1, 10).astype(np.float32),
        "gamma": np.ones(4, dtype=np.float32),
        "beta": np.zeros(4, dtype=np.float32),
    }
    inner = {
        "Relu": [helper.make_node("Relu", ["mixed"], ["act"])],
        "LayerNormalization": [helper.make_node("LayerNormalization", ["mixed", "gamma", "beta"], ["act"], axis=-1)],
    }[activation]
    nodes = [
        helper.make_node("Reshape", ["x", "to_image"], ["image"]),
        helper.make_node("Reshape", ["image", "to_windows"], ["windows"]),
        helper.make_node("MatMul", ["windows", "mix"], ["mixed"]),
        *inner,
        helper.make_node("Reshape", ["act", "to_rows"], ["rows"]),
        helper.make_node("Gemm", ["rows", "head_w", "head_b"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "windows",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 64])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
        [numpy_helper.from_array(v, k) for k, v in weights.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    return (load_digits().data / 16.0).astype(np.float32)


@pytest.mark.parametrize(("activation", "neuron"), [("Relu", "if"), ("LayerNormalization", "signgd")])
def test_a_windowed_net_runs_at_any_batch_with_the_same_readout_per_sample(digits, activation, neuron):
    options = CompileOptions(timesteps=8, neuron=neuron)
    snn = compile_model(windowed_model(activation), None, options, calibration=digits[:128]).model
    session = Session(snn)
    x = digits[-16:]
    for steps in (1, 4, 8):
        alone = np.concatenate([session.run(x[i : i + 1], steps).logits for i in range(len(x))])
        for batch in (2, 5, 16):
            together = np.concatenate([session.run(x[i : i + batch], steps).logits for i in range(0, 16, batch)])
            np.testing.assert_allclose(together, alone, rtol=1e-5, atol=1e-5)


def test_the_windows_get_a_folded_dim_of_their_own(digits):
    snn = compile_model(windowed_model("Relu"), None, CompileOptions(timesteps=8, neuron="if"), calibration=digits)
    firsts = {
        info.name: info.type.tensor_type.shape.dim[0].dim_param
        for info in snn.model.graph.value_info
        if info.type.tensor_type.shape.dim and is_folded(info.type.tensor_type.shape.dim[0].dim_param)
    }
    windows = [name for name, dim in firsts.items() if dim != FOLDED_BATCH]
    assert windows, "no time-folded window tensor"
    assert FOLDED_BATCH in firsts.values()  # the head, [T·B, 10], still folds the batch itself
