"""signGD reference nets (models/signgd_nets.py): shapes, size, and conversion on the 8x8 digits.

The conversion runs on each net untrained (seeded: helpers.seeded_net) in the fast suite, where the SNN
must agree with its ANN, and trained on digits in the slow one, where it must also keep the ANN's accuracy."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from helpers import digits_net
from torch import nn

from onnx_snn import CompileOptions, compile_model
from onnx_snn.models.data import load_digits_split
from onnx_snn.models.export import export_torch
from onnx_snn.models.signgd_nets import ConvNeXtNet, MaxPoolCNN, MixerNet, ResMLPNet
from onnx_snn.runtime import Session

NETS: dict[str, type[nn.Module]] = {
    "convnext": ConvNeXtNet,
    "mixer": MixerNet,
    "resmlp": ResMLPNet,
    "maxpool_cnn": MaxPoolCNN,
}
#: the neuron ops `--neuron auto` puts in each net: signGD's, but IF's for the ReLU + MaxPool net
#: (with signed spikes IF neurons are the more accurate there, op_support's MaxPool row)
AUTO_OPS = {"maxpool_cnn": {"BurstIFNeuron", "IFMaxPool"}}
SIGNGD_OPS = {"SignGDEncoder", "SignGDDecoder", "SignGDNeuron"}


@pytest.mark.parametrize("image_size", [8, 28])
@pytest.mark.parametrize("name", sorted(NETS))
def test_shapes_and_size(name: str, image_size: int) -> None:
    net = NETS[name](image_size=image_size).eval()
    assert net(torch.zeros(3, 1, image_size, image_size)).shape == (3, 10)
    assert sum(p.numel() for p in net.parameters()) < 200_000


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    return load_digits_split(seed=0)


class _Nets(dict):
    """name -> net trained `epochs` epochs on the digits (0: untrained, seeded), built on first use and
    shared by both exporters' tests."""

    def __init__(self, x_train: np.ndarray, y_train: np.ndarray, epochs: int) -> None:
        super().__init__()
        self.x_train, self.y_train, self.epochs = x_train, y_train, epochs

    def __missing__(self, name: str) -> nn.Module:
        self[name] = digits_net(lambda: NETS[name](image_size=8), self.x_train, self.y_train, self.epochs)
        return self[name]


@pytest.fixture(scope="module")
def untrained(digits) -> _Nets:
    return _Nets(digits[0], digits[1], epochs=0)


@pytest.fixture(scope="module")
def trained(digits) -> _Nets:
    return _Nets(digits[0], digits[1], epochs=15)


@pytest.mark.parametrize("weights", ["untrained", pytest.param("trained", marks=pytest.mark.slow)])
@pytest.mark.parametrize("dynamo", [False, True], ids=["legacy", "dynamo"])
@pytest.mark.parametrize("name", sorted(NETS))
def test_net_converts_with_auto(name: str, dynamo: bool, weights: str, digits, request, tmp_path) -> None:
    """`--neuron auto` picks signGD neurons for each net from either exporter (IF neurons for the
    ReLU + MaxPool one: AUTO_OPS); untrained, the SNN agrees
    with the ANN on all 64 samples at T = 32 and its logit error falls with T (measured)."""
    x_train, _, x_test, y_test = digits
    if weights == "untrained":
        x_test, y_test = x_test[:64], y_test[:64]
    ann = tmp_path / "ann.onnx"
    export_torch(request.getfixturevalue(weights)[name], torch.from_numpy(x_train[:2]), ann, dynamo=dynamo)
    out = tmp_path / "snn.onnx"
    compile_model(
        ann,
        out,
        CompileOptions(timesteps=128, neuron="auto", norm="max", schedule="exp_inverse"),
        calibration=x_train[:256],
    )
    onnx.checker.check_model(str(out), full_check=True)
    ops = {n.op_type for n in onnx.load(out).graph.node}
    assert AUTO_OPS.get(name, SIGNGD_OPS) <= ops, ops
    report = Session(out).evaluate(x_test, y_test, ann=ann, progress=False)
    if weights == "trained":
        assert report.ann_accuracy > 0.85, report.table()
        assert report.ann_accuracy - report.accuracy[127] <= 0.03, report.table()
    else:
        assert report.agreement[127] >= 0.95, report.table()
        assert report.logit_error[127] < report.logit_error[31] < report.logit_error[7], report.table()
