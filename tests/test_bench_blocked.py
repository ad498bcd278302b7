"""benchmarks/blocked.py: an IF conv layer kept in onnxruntime's blocked layout (issue 18, item 1)."""

from __future__ import annotations

import json

import numpy as np

from benchmarks import blocked
from benchmarks.int8 import runner

TIMESTEPS, BATCH = 4, 3


def _outputs() -> dict[str, np.ndarray]:
    feed = {"spikes_in": blocked.input_spikes(TIMESTEPS, BATCH)}
    return {name: runner(model, feed)()[0] for name, model in blocked.forms(TIMESTEPS, BATCH).items()}


def test_unrolled_form_sends_the_scans_spikes():
    """The unrolled Conv/Clip/Add form is the binary Scan neuron up to a rare one-ulp flip (none at
    this size), and the layer is alive: some but not all neurons fire."""
    outputs = _outputs()
    binary = outputs["scan binary"]
    assert 0.0 < binary.mean() < 1.0
    np.testing.assert_array_equal(outputs["unrolled blocked binary"], binary)
    assert not np.array_equal(outputs["scan burst"], binary)  # burst neurons send more than one spike a step
    np.testing.assert_array_equal(outputs["scan burst, pool in the step"], outputs["scan burst"])


def test_only_the_unrolled_form_stays_blocked():
    """onnxruntime reorders around every Scan neuron; the unrolled form keeps the layer blocked and
    reorders only each step's pooled output (one ReorderOutput a step, no ReorderInput)."""
    scan = blocked.optimized_ops(blocked.scan_form("binary", TIMESTEPS, BATCH))
    unrolled = blocked.optimized_ops(blocked.unrolled_blocked_form(TIMESTEPS, BATCH))
    assert scan.get("com.microsoft.nchwc:ReorderInput", 0) >= 1 and "Scan" in {k.split(":")[1] for k in scan}
    assert "com.microsoft.nchwc:ReorderInput" not in unrolled
    assert unrolled["com.microsoft.nchwc:ReorderOutput"] == TIMESTEPS
    assert unrolled["com.microsoft.nchwc:Conv"] == 3 * TIMESTEPS  # the layer's conv and two 1x1 neuron convs a step


def test_main_writes_the_section_and_json(tmp_path):
    out = tmp_path / "BENCHMARKS.md"
    out.write_text("# Benchmarks\n")
    argv = ["--timesteps", "2", "--batches", "2", "--rounds", "1", "--repeats", "1"]
    assert blocked.main([*argv, "--out", str(out), "--json", str(tmp_path)]) == 0
    result = json.loads((tmp_path / f"{blocked.KEY}.json").read_text())
    (row,) = result["rows"]
    assert set(row["seconds"]) == set(blocked.FORMS) and row["differing_outputs"] == 0.0
    assert "| 2 |" in out.read_text() and "blocked layout" in out.read_text()
