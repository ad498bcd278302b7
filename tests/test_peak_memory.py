"""Peak resident memory of a block, here and in a fresh process (the benchmarks' memory columns)."""

from __future__ import annotations

import numpy as np

from benchmarks.peak_memory import isolated_peak, peak_rss

MB = 10**6


def allocate_and_touch(megabytes: int):
    """For isolated_peak: a call that fills `megabytes` of fresh memory, then frees it."""
    return lambda: np.ones(megabytes * MB // 8).sum()


def test_peak_rss_sees_a_freed_allocation():
    with peak_rss() as memory:
        np.ones(200 * MB // 8).sum()
    assert memory.exact
    assert 190 * MB <= memory.growth <= 260 * MB
    assert memory.peak >= memory.before + memory.growth


def test_isolated_peak_measures_only_the_call():
    small, large = isolated_peak(allocate_and_touch, 10), isolated_peak(allocate_and_touch, 300)
    assert large["rss_growth"] - small["rss_growth"] >= 250 * MB
    assert large["peak_rss"] > large["rss_growth"] > 0
