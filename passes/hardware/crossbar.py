"""The weight constraint of a memristive crossbar, as plain numpy math shared by the compiler pass
(`passes/quantize_weights`) and constrained fine-tuning (`models/crossbar_finetune`).

A crossbar stores positive and negative weights on separate devices whose conductance spans
[g_max / R, g_max] (R the ON/OFF ratio) in N programmable levels. `project` maps a weight tensor
onto that set, per sign and per group (the whole tensor, or each output channel):

  * m = the group's largest magnitude of that sign; every non-zero magnitude is clipped into
    [m / R, m] (exact zeros stay zero: no device is programmed);
  * each clipped magnitude is rounded to the nearest of N levels m/R + k·(m − m/R)/(N − 1),
    k = 0..N−1 (ties to even k); level N−1 is m itself, level 0 is m / R as computed in the
    working dtype, so the result holds at most N distinct magnitudes per sign and group, and
    its smallest non-zero magnitude is at least its largest divided by R.

The math runs in the weight's float dtype (float32 at least) and returns that dtype.
"""

from __future__ import annotations

import numpy as np

from onnx_snn.options import check_constraint


def project(weights: np.ndarray, levels: int, on_off_ratio: float, channel_axis: int | None = None) -> np.ndarray:
    """`weights` constrained to the crossbar set (see the module docstring).

    channel_axis: None for one group (per layer), else the axis whose every index is its own group
    (per output channel). Raises SnnError for invalid `levels` / `on_off_ratio`.
    """
    check_constraint(levels, on_off_ratio)
    w = np.asarray(weights)
    dtype = np.result_type(w.dtype, np.float32)
    rows = _rows(w, channel_axis).astype(dtype)
    out = np.zeros_like(rows)
    for sign in (1, -1):
        magnitude = np.where(np.sign(rows) == sign, np.abs(rows), 0).astype(dtype)
        top = magnitude.max(axis=1, keepdims=True)
        low = top / dtype.type(on_off_ratio)
        step = (top - low) / dtype.type(levels - 1)
        index = np.rint((np.clip(magnitude, low, top) - low) / np.where(step > 0, step, 1))
        level = np.where(index >= levels - 1, top, low + index * step)
        out += np.where(magnitude > 0, sign * level, 0).astype(dtype)
    return _unrows(out, w.shape, channel_axis).astype(w.dtype if np.issubdtype(w.dtype, np.floating) else dtype)


def levels_used(weights: np.ndarray, channel_axis: int | None = None) -> tuple[int, int]:
    """(positive, negative): the most distinct non-zero magnitudes of each sign in any group."""
    rows = _rows(np.asarray(weights), channel_axis)
    positive, negative = (max(len(np.unique(np.abs(row[row * sign > 0]))) for row in rows) for sign in (1, -1))
    return positive, negative


def _rows(w: np.ndarray, channel_axis: int | None) -> np.ndarray:
    """`w` as a 2-D array with one group per row."""
    if channel_axis is None or w.ndim == 0:
        return w.reshape(1, -1)
    return np.moveaxis(w, channel_axis, 0).reshape(w.shape[channel_axis], -1)


def _unrows(rows: np.ndarray, shape: tuple[int, ...], channel_axis: int | None) -> np.ndarray:
    """Inverse of _rows."""
    if channel_axis is None or len(shape) == 0:
        return rows.reshape(shape)
    moved = np.moveaxis(np.empty(shape, dtype=bool), channel_axis, 0).shape
    return np.moveaxis(rows.reshape(moved), 0, channel_axis)
