"""Small torch ANNs with random weights, exported to ONNX, and running them: shared by pass tests."""

from __future__ import annotations

import io

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import onnxruntime as ort
import torch
from torch import nn

from onnx_snn.options import CompileOptions
from onnx_snn.passes.base import PassContext
from onnx_snn.passes.canonicalize import canonicalize, node_names
from onnx_snn.passes.common import fold_bn
from onnx_snn.pipeline import emit


class Residual(nn.Module):
    """conv-bn-relu-conv-bn + identity shortcut, then ReLU; GAP; linear."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU())
        self.body = nn.Sequential(
            nn.Conv2d(6, 6, 3, padding=1),
            nn.BatchNorm2d(6),
            nn.ReLU(),
            nn.Conv2d(6, 6, 3, padding=1),
            nn.BatchNorm2d(6),
        )
        self.head = nn.Linear(6, 10)

    def forward(self, x):
        h = self.stem(x)
        h = torch.relu(self.body(h) + h)
        return self.head(h.mean(dim=(2, 3)))


class Branches(nn.Module):
    """Two conv-ReLU branches joined by a channel Concat, then a conv, GAP and linear."""

    def __init__(self) -> None:
        super().__init__()
        self.left = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU())
        self.right = nn.Sequential(nn.Conv2d(1, 5, 1), nn.BatchNorm2d(5), nn.ReLU())
        self.mix = nn.Conv2d(8, 6, 3, padding=1)
        self.head = nn.Linear(6, 10)

    def forward(self, x):
        h = torch.relu(self.mix(torch.cat([self.left(x), self.right(x)], dim=1)))
        return self.head(h.mean(dim=(2, 3)))


def mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 10))


def cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Conv2d(4, 8, 3, padding=1, groups=2),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(128, 10),
    )


def conv_relu_maxpool(channels: int) -> list[nn.Module]:
    """3x3 conv (1 -> `channels`, padding 1) -> ReLU -> 2x2 MaxPool -> Flatten: the front of the small
    MaxPool nets, taking one-channel 8x8 images to `channels` * 16 features."""
    return [nn.Conv2d(1, channels, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten()]


def randomized(net: nn.Module, seed: int = 0) -> nn.Module:
    """`net` with non-trivial BN statistics, in eval mode."""
    torch.manual_seed(seed)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.3, 0.3)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return net.eval()


def export_legacy(net: nn.Module, sample: np.ndarray) -> onnx.ModelProto:
    buffer = io.BytesIO()
    torch.onnx.export(
        net,
        (torch.from_numpy(sample),),
        buffer,
        input_names=["x"],
        output_names=["logits"],
        dynamic_axes={"x": {0: "N"}, "logits": {0: "N"}},
        dynamo=False,
        opset_version=17,
    )
    return onnx.load_from_string(buffer.getvalue())


def prepared(model: onnx.ModelProto, options: CompileOptions | None = None) -> tuple[gs.Graph, PassContext]:
    """The graph after canonicalize and fold_bn, with a context to run later passes."""
    ctx = PassContext(options=options or CompileOptions(), show_progress=False)
    graph = gs.import_onnx(model)
    node_names.apply(graph, ctx)
    return fold_bn.run(canonicalize.run(graph, ctx), ctx), ctx


def run_graph(graph: gs.Graph, ctx: PassContext, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
    model = emit(graph.copy(), ctx)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feed)


def run_model(model: onnx.ModelProto, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feed)
