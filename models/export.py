"""Export a PyTorch model to a single self-contained ONNX file (input "x", output "logits")."""

from __future__ import annotations

import os
from pathlib import Path

import onnx
import torch
from torch import nn

from onnx_snn.models.files import atomic_path

INPUT_NAME = "x"
OUTPUT_NAME = "logits"
#: Opsets accepted by export_torch, and the defaults of each exporter.
OPSET_RANGE = range(17, 22)
DEFAULT_OPSET = {"legacy": 17, "dynamo": 18}


def export_torch(
    model: nn.Module,
    sample_input: torch.Tensor,
    path: str | os.PathLike,
    dynamo: bool,
    dynamic_batch: bool = True,
    opset: int | None = None,
) -> Path:
    """Export `model` (put in eval mode) to `path` and return the path; weights are embedded.

    dynamo=False uses the TorchScript exporter (dynamic_axes for the batch when dynamic_batch).
    dynamo=True uses torch.export; with dynamic_batch it declares the batch dim dynamic, without it
    the batch is fixed to sample_input's, so e.g. Flatten becomes a Reshape to [batch, -1].
    With a dynamic batch, a 1-sample input is repeated to 2 rows, as torch.export specialises size 1.
    `opset` defaults to 17 (legacy) or 18 (dynamo) and must lie in 17..21.
    The file is written atomically.
    """
    opset = DEFAULT_OPSET["dynamo" if dynamo else "legacy"] if opset is None else opset
    if opset not in OPSET_RANGE:
        raise ValueError(f"opset must be in {OPSET_RANGE.start}..{OPSET_RANGE.stop - 1}, got {opset}")
    model.eval()
    if dynamic_batch and sample_input.shape[0] == 1:
        sample_input = sample_input.repeat(2, *([1] * (sample_input.dim() - 1)))
    path = Path(path)
    with atomic_path(path) as tmp:
        if dynamo:
            _export_dynamo(model, sample_input, tmp, dynamic_batch, opset)
        else:
            _export_legacy(model, sample_input, tmp, dynamic_batch, opset)
    return path


def _export_legacy(model: nn.Module, sample: torch.Tensor, path: Path, dynamic_batch: bool, opset: int) -> None:
    axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None
    torch.onnx.export(
        model,
        (sample,),
        str(path),
        dynamo=False,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_axes=axes,
        opset_version=opset,
    )


def _export_dynamo(model: nn.Module, sample: torch.Tensor, path: Path, dynamic_batch: bool, opset: int) -> None:
    shapes = ({0: torch.export.Dim("batch")},) if dynamic_batch else None
    program = torch.onnx.export(
        model,
        (sample,),
        dynamo=True,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_shapes=shapes,
        opset_version=opset,
        verbose=False,
    )
    onnx.save_model(program.model_proto, str(path))
