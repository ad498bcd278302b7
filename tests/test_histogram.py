"""The streaming histogram behind calibrate: bounded memory, percentiles within bin resolution."""

from __future__ import annotations

import numpy as np

from onnx_snn.passes.common.histogram import StreamingHistogram


def test_percentile_matches_numpy_within_a_bin():
    rng = np.random.default_rng(0)
    chunks = [np.maximum(rng.normal(0, s, size=(5000, 3)), 0) for s in (0.1, 1.0, 4.0)]  # range grows
    hist = StreamingHistogram(channels=3, bins=2048)
    for chunk in chunks:
        hist.update(chunk)
    values = np.concatenate(chunks)
    ordered = np.sort(values, axis=0)
    width = hist.range / hist.bins
    for q in (50.0, 99.0, 99.9, 99.99):
        rank = q / 100 * (len(values) - 1)  # any value between the neighbouring order statistics is right
        low, high = ordered[int(np.floor(rank))], ordered[int(np.ceil(rank))]
        got = hist.percentile(q)
        assert np.all(got >= low - width) and np.all(got <= high + width), (q, got, low, high)
    np.testing.assert_array_equal(hist.max, values.max(axis=0))
    assert hist.counts.shape == (3, 2048)
    assert hist.total.tolist() == [15000] * 3


def test_all_zero_then_positive():
    hist = StreamingHistogram(bins=16)
    hist.update(np.zeros((10, 1)))
    hist.update(np.full((10, 1), 2.0))
    assert hist.percentile(40.0)[0] <= hist.range[0] / hist.bins
    assert hist.percentile(100.0)[0] == 2.0


def test_counts_do_not_depend_on_how_the_values_are_split():
    """Power-of-two ranges: any split into updates (batches, slices) gives the same counts."""
    rng = np.random.default_rng(1)
    values = np.abs(rng.standard_cauchy(size=(6000, 2))) * np.array([1e-3, 10.0])  # heavy tails: many doublings
    whole = StreamingHistogram(channels=2, bins=64)
    whole.update(values)
    for cuts in ([1, 2, 5000], [3000], list(range(7, 6000, 997))):
        split = StreamingHistogram(channels=2, bins=64)
        for part in np.split(values, cuts):
            split.update(part)
        np.testing.assert_array_equal(split.counts, whole.counts)
        np.testing.assert_array_equal(split.range, whole.range)
    assert np.all(whole.range > whole.max) and np.all(np.log2(whole.range) % 1 == 0)
