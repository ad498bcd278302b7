"""A streaming histogram of non-negative activations: bounded memory, growing range."""
from __future__ import annotations

import numpy as np


class StreamingHistogram:
    """Counts of non-negative values in `bins` equal bins over [0, range), per channel.

    Memory is channels x bins whatever the number of values seen. When a value exceeds the
    range, the range doubles (as often as needed) and adjacent bins merge pairwise, so the
    counts stay exact up to bin resolution. Tracks the exact maximum per channel.
    """

    def __init__(self, channels: int = 1, bins: int = 2048) -> None:
        if bins % 2:
            raise ValueError("bins must be even")
        self.bins = bins
        self.counts = np.zeros((channels, bins), dtype=np.int64)
        self.range = np.zeros(channels, dtype=np.float64)
        self.max = np.zeros(channels, dtype=np.float64)

    @property
    def total(self) -> np.ndarray:
        """Number of values seen, per channel."""
        return self.counts.sum(axis=1)

    def update(self, values: np.ndarray) -> None:
        """Add `values` of shape [N, channels] (non-negative; negatives count as zero)."""
        values = np.maximum(np.asarray(values, dtype=np.float64), 0.0)
        batch_max = values.max(axis=0) if values.shape[0] else np.zeros(self.counts.shape[0])
        self.max = np.maximum(self.max, batch_max)
        for channel in np.nonzero(batch_max >= self.range)[0]:
            self._grow(channel, batch_max[channel])
        scaled = values / self.range
        index = np.minimum((scaled * self.bins).astype(np.int64), self.bins - 1)
        index += np.arange(self.counts.shape[0], dtype=np.int64) * self.bins
        self.counts += np.bincount(index.ravel(), minlength=self.counts.size).reshape(self.counts.shape)

    def _grow(self, channel: int, needed: float) -> None:
        if self.range[channel] == 0.0:
            self.range[channel] = max(needed, np.finfo(np.float32).tiny) * 1.0001
            if self.counts[channel].any():  # earlier values were all zero: they stay in bin 0
                zeros = self.counts[channel].sum()
                self.counts[channel] = 0
                self.counts[channel, 0] = zeros
            return
        while needed >= self.range[channel]:
            merged = self.counts[channel].reshape(-1, 2).sum(axis=1)
            self.counts[channel] = 0
            self.counts[channel, : self.bins // 2] = merged
            self.range[channel] *= 2.0

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
