"""signGD reference nets (models/signgd_nets.py): shapes, size, and conversion on the 8x8 digits."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from onnx_snn import CompileOptions, compile_model
from onnx_snn.models.data import load_digits_split
from onnx_snn.models.export import export_torch
from onnx_snn.models.signgd_nets import ConvNeXtNet, MaxPoolCNN, MixerNet, ResMLPNet
from onnx_snn.models.train import train
from onnx_snn.runtime import Session

NETS: dict[str, type[nn.Module]] = {"convnext": ConvNeXtNet, "mixer": MixerNet, "resmlp": ResMLPNet,
                                    "maxpool_cnn": MaxPoolCNN}


@pytest.mark.parametrize("image_size", [8, 28])
@pytest.mark.parametrize("name", sorted(NETS))
def test_shapes_and_size(name: str, image_size: int) -> None:
    net = NETS[name](image_size=image_size).eval()
    assert net(torch.zeros(3, 1, image_size, image_size)).shape == (3, 10)
    assert sum(p.numel() for p in net.parameters()) < 200_000


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    return load_digits_split(seed=0)


class _TrainedNets(dict):
    """name -> net trained once on the digits (on first use), shared by both exporters' tests."""

    def __init__(self, x_train: np.ndarray, y_train: np.ndarray) -> None:
        super().__init__()
        self.x_train, self.y_train = x_train, y_train

    def __missing__(self, name: str) -> nn.Module:
        torch.manual_seed(0)
        self[name] = train(NETS[name](image_size=8), self.x_train, self.y_train, epochs=15, lr=1e-2, seed=0)
        return self[name]


@pytest.fixture(scope="module")
def trained(digits) -> _TrainedNets:
    return _TrainedNets(digits[0], digits[1])


@pytest.mark.parametrize("dynamo", [False, True], ids=["legacy", "dynamo"])
@pytest.mark.parametrize("name", sorted(NETS))
def test_net_converts_with_auto_signgd(name: str, dynamo: bool, digits, trained, tmp_path) -> None:
    x_train, _, x_test, y_test = digits
    ann = tmp_path / "ann.onnx"
    export_torch(trained[name], torch.from_numpy(x_train[:2]), ann, dynamo=dynamo)
    out = tmp_path / "snn.onnx"
    compile_model(ann, out, CompileOptions(timesteps=128, neuron="auto", norm="max", schedule="exp_inverse"),
                  calibration=x_train[:256])
    onnx.checker.check_model(str(out), full_check=True)
    ops = {n.op_type for n in onnx.load(out).graph.node}
    assert {"SignGDEncoder", "SignGDDecoder", "SignGDNeuron"} <= ops, ops
    report = Session(out).evaluate(x_test, y_test, ann=ann, progress=False)
    assert report.ann_accuracy > 0.85, report.table()
    assert report.ann_accuracy - report.accuracy[127] <= 0.03, report.table()
