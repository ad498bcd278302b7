"""Fine-tuning a PyTorch net under the memristive-crossbar weight constraint.

"Apply the constraint, retrain, re-apply": before every epoch the weight of each Conv and Linear
module is projected onto the crossbar set with `onnx_snn.passes.hardware.crossbar.project` (the very math of the
compiler's quantize_weights pass: N levels per sign over [max/R, max], output channels on axis 0
as in the exported Conv and Gemm(transB=1)), the net trains one epoch at a small learning rate
from there, and the final weights are projected once more, so the returned net satisfies the
constraint exactly. Biases and normalization parameters stay free.

A BatchNorm after a layer rescales each output channel when compile folds it: the per-channel
constraint survives that (a channel's level set scaled by one factor is again such a set, with
the signs swapped for a negative factor), the per-layer one holds only before folding; compile
--weight-levels re-projects the folded weights either way.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from onnx_snn.models.architecture import TrainSettings
from onnx_snn.models.train import ends_in_softmax, train
from onnx_snn.options import check_constraint
from onnx_snn.passes.hardware.crossbar import project

#: modules whose `weight` a crossbar holds (output channels on axis 0)
CROSSBAR_MODULES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


@torch.no_grad()
def constrain_weights_(model: nn.Module, levels: int, on_off_ratio: float, per_channel: bool = False) -> nn.Module:
    """Project, in place, the weight of every Linear and Conv module of `model` onto the crossbar set
    (max magnitude per layer, or per output channel with `per_channel`); return `model`."""
    for module in model.modules():
        if isinstance(module, CROSSBAR_MODULES):
            weight = module.weight
            constrained = project(weight.detach().cpu().numpy(), levels, on_off_ratio, 0 if per_channel else None)
            weight.copy_(torch.from_numpy(constrained).to(weight))
    return model


def finetune_constrained(
    model: nn.Module,
    x: np.ndarray | torch.Tensor,
    y: np.ndarray | torch.Tensor,
    levels: int,
    on_off_ratio: float = 10.0,
    per_channel: bool = False,
    epochs: int = 3,
    lr: float = 1e-4,
    batch_size: int = 128,
    seed: int = 0,
    progress: bool = False,
) -> nn.Module:
    """Fine-tune `model` in place under the crossbar constraint and return it in eval mode.

    Per epoch: constrain_weights_, then one epoch of models.train.train (Adam, cross-entropy on the
    logits or, for a net ending in softmax, on its probabilities) with learning rate `lr` and seed
    `seed + epoch`; at the end constrain_weights_ again. Raises SnnError for levels < 2 or
    on_off_ratio ≤ 1, before any training.
    """
    check_constraint(levels, on_off_ratio)
    from_logits = not ends_in_softmax(model)
    for epoch in range(epochs):
        constrain_weights_(model, levels, on_off_ratio, per_channel)
        epoch_settings = TrainSettings(1, batch_size, lr, seed + epoch, progress, from_logits)
        train(model, x, y, epoch_settings)
    return constrain_weights_(model, levels, on_off_ratio, per_channel).eval()
