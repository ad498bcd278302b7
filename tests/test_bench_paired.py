"""benchmarks/paired.py: the default compile against spikingjelly, image by image."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from benchmarks.paired import _clipped_ann_predictions, compare, mcnemar_p, section


@pytest.mark.parametrize(
    ("only_first", "only_second", "p"),
    [(0, 0, 1.0), (3, 3, 1.0), (0, 5, 2 / 32), (1, 4, 2 * 6 / 32), (4, 1, 2 * 6 / 32), (0, 1, 1.0)],
)
def test_mcnemar_exact_p(only_first, only_second, p):
    """Two-sided exact binomial p on the discordant pairs (by hand: n = 5, P(X <= 1) = 6/32)."""
    assert mcnemar_p(only_first, only_second) == pytest.approx(p)


def test_mcnemar_p_for_thousands_of_discordant_images():
    assert mcnemar_p(1703, 254) < 1e-200 and mcnemar_p(1000, 1000) == 1.0


def test_compare_counts_discordant_images_and_deviations_from_the_ann():
    labels = np.array([0, 1, 2, 3, 4])
    ann = np.array([0, 1, 2, 3, 0])
    ours = np.array([0, 1, 2, 3, 0])  # the ANN exactly
    theirs = np.array([0, 1, 0, 3, 4])  # wrong on image 2, right on image 4
    row = compare(ann, ours, theirs, labels)
    assert (row["ours"], row["spikingjelly"]) == (80.0, 80.0)
    assert (row["only_ours"], row["only_spikingjelly"], row["p"]) == (1, 1, 1.0)
    assert (row["ours_differs_from_ann"], row["spikingjelly_differs_from_ann"]) == (0, 2)


def test_clipped_ann_clips_each_relu_at_its_999th_percentile():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3)).eval()
    calibration = torch.randn(2000, 4).numpy()
    x = (3 * torch.randn(300, 4)).numpy()  # wider than the calibration data, so clipping bites
    with torch.no_grad():
        hidden = net[1](net[0](torch.from_numpy(calibration)))
        cap = torch.quantile(hidden.flatten(), 0.999)
        expected = net[2](net[1](net[0](torch.from_numpy(x))).clamp(max=cap)).argmax(1).numpy()
        unclipped = net(torch.from_numpy(x)).argmax(1).numpy()
    clipped = _clipped_ann_predictions(net, calibration, x)
    np.testing.assert_array_equal(clipped, expected)
    assert (clipped != unclipped).any()
    np.testing.assert_array_equal(net(torch.from_numpy(x)).argmax(1).numpy(), unclipped)  # hooks removed


def test_section_has_a_row_per_step():
    row = compare(np.zeros(4), np.zeros(4), np.ones(4), np.zeros(4))
    result = {"model": "net", "samples": 4, "machine": "m", "ann": 100.0, "ann_clipped": 99.0, "steps": {"8": row}}
    text = section([result], "cmd")
    assert text.splitlines()[-1] == "| net (100.00, 99.00, 4) | 8 | 100.00 | 0.00 | 4 | 0 | 0.125 | 0 | 4 |"
