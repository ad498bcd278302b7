"""A streaming histogram of non-negative activations: bounded memory, growing range."""

from __future__ import annotations

import numpy as np


class StreamingHistogram:
    """Counts of non-negative values in `bins` equal bins over [0, range), per channel.

    Memory is channels x bins whatever the number of values seen. The range is the smallest
    power of two above every value seen; when a value reaches it, the range doubles (as often as
    needed) and adjacent bins merge pairwise. Because bins is a power of two too, a value's bin
    at the final range is the same whether it was counted before or after a doubling: the
    counts, and so the percentiles, do not depend on how the values were split into updates
    (calibration batches, or slices of them). Tracks the exact maximum per channel.
    """

    def __init__(self, channels: int = 1, bins: int = 2048) -> None:
        if bins < 2 or bins & (bins - 1):
            raise ValueError("bins must be a power of two")
        self.bins = bins
        self.counts = np.zeros((channels, bins), dtype=np.int64)
        self.range = np.zeros(channels, dtype=np.float64)
        self.max = np.zeros(channels, dtype=np.float64)

    @property
    def total(self) -> np.ndarray:
        """Number of values seen, per channel."""
        return self.counts.sum(axis=1)

    def update(self, values: np.ndarray) -> None:
        """Add `values` of shape [N, channels] (non-negative; negatives count as zero). Temporaries
        are a few float64 copies of `values`: pass large arrays in slices (the result is the same)."""
        values = np.maximum(np.asarray(values, dtype=np.float64), 0.0)
        if not values.shape[0]:
            return
        batch_max = values.max(axis=0)
        self.max = np.maximum(self.max, batch_max)
        for channel in np.nonzero(batch_max >= self.range)[0]:
            self._grow(channel, batch_max[channel])
        scale = np.divide(self.bins, self.range, out=np.zeros_like(self.range), where=self.range > 0)
        index = (values * scale).astype(np.int64)  # exact: scale is a power of two; all-zero channels: bin 0
        index += np.arange(self.counts.shape[0], dtype=np.int64) * self.bins
        self.counts += np.bincount(index.ravel(), minlength=self.counts.size).reshape(self.counts.shape)

    def _grow(self, channel: int | np.integer, needed: float) -> None:
        """Raise the range of `channel` to the smallest power of two above `needed` (> 0), merging
        bins pairwise per doubling (values seen so far were all zero: they stay in bin 0)."""
        if needed <= 0.0:
            return
        _, exponent = np.frexp(needed)  # needed = mantissa * 2**exponent, mantissa in [0.5, 1)
        target = np.ldexp(1.0, int(exponent))
        if self.range[channel] > 0.0:
            doublings = min(int(np.log2(target / self.range[channel])), int(np.log2(self.bins)))
            merged = self.counts[channel].reshape(-1, 2**doublings).sum(axis=1)
            self.counts[channel] = 0
            self.counts[channel, : len(merged)] = merged
        self.range[channel] = target

    def percentile(self, q: float) -> np.ndarray:
        """The q-th percentile (0..100) per channel, linear within a bin, never above the max."""
        cumulative = np.cumsum(self.counts, axis=1)
        target = cumulative[:, -1] * (q / 100.0)
        result = np.zeros(self.counts.shape[0])
        width = self.range / self.bins
        for channel in range(self.counts.shape[0]):
            if cumulative[channel, -1] == 0:
                continue
            b = int(np.searchsorted(cumulative[channel], target[channel], side="left"))
            b = min(b, self.bins - 1)
            before = cumulative[channel, b - 1] if b > 0 else 0
            inside = self.counts[channel, b]
            frac = (target[channel] - before) / inside if inside else 1.0
            result[channel] = min((b + frac) * width[channel], self.max[channel])
        return result
