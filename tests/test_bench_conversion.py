"""benchmarks.conversion's JSON merge: one model's runs of different configurations add up."""

from __future__ import annotations

from benchmarks.conversion import merged


def test_a_spikingjelly_only_run_keeps_the_rows_and_the_ann_accuracy_before_it():
    before = [{"model": "fashion-vgg", "ann_accuracy": 90.4, "test_samples": 10000, "rows": {"default": {"a": 1}}}]
    jelly = {"model": "fashion-vgg", "ann_accuracy": None, "test_samples": 10000, "rows": {"spikingjelly": {"b": 2}}}
    (result,) = merged(before, jelly)
    assert result["ann_accuracy"] == 90.4
    assert set(result["rows"]) == {"default", "spikingjelly"}
    other_size = {**jelly, "ann_accuracy": 91.0, "test_samples": 2000}
    (replaced,) = merged(before, other_size)
    assert replaced["ann_accuracy"] == 91.0 and set(replaced["rows"]) == {"spikingjelly"}
