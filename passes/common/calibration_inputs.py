"""What the passes read from the calibration inputs themselves (not from the ANN's activations):
the range of the input values, which ttfs_input_range encodes and encode_input checks."""

from __future__ import annotations

import numpy as np

from onnx_snn.passes.base import PassContext


def calibration_extremes(ctx: PassContext) -> tuple[float, float] | None:
    """(min, max) over every calibration input value (within --calib-batches), None without data."""
    if ctx.calibration is None:
        return None
    low, high = np.inf, -np.inf
    for index, feed in enumerate(ctx.calibration):
        if ctx.options.calib_batches is not None and index >= ctx.options.calib_batches:
            break
        for value in feed.values():
            value = np.asarray(value)
            if value.size:
                low, high = min(low, float(value.min())), max(high, float(value.max()))
    return (low, high) if low <= high else None
