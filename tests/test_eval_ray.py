"""`eval --ray` (runtime.ray_eval): shards on Ray workers give plain eval's report bit for bit, also
when a worker dies and Ray runs its shard again; and the arithmetic that both share (the fold of
per-batch counts, runtime.session.EvalCounts) checked against an independent numpy tally of
Session.run, and against the memory plan."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from helpers import run_cli, tiny_relu_model

from onnx_snn import CompileOptions, compile_model
from onnx_snn.runtime import Session, ray_eval

#: 5 batches (the last one short): 2 shards on 2 workers; above MIN_BATCH_CHUNK, so that a budget splits batches
STEPS, SAMPLES, BATCH = 12, 230, 50


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    """A folder with the tiny ReLU net (ann.onnx), it compiled for T = STEPS with --stats
    (snn.onnx), and SAMPLES inputs labelled i % 3 (test.npz)."""
    folder = tmp_path_factory.mktemp("eval_ray")
    x = np.random.default_rng(0).normal(size=(SAMPLES, 4)).astype(np.float32)
    ann = tiny_relu_model()
    onnx.save(ann, folder / "ann.onnx")
    compile_model(ann, str(folder / "snn.onnx"), CompileOptions(timesteps=STEPS, stats=True), calibration=x)
    np.savez(folder / "test.npz", x=x, y=np.arange(SAMPLES) % 3)
    return folder


@pytest.fixture(scope="module")
def ray_cluster():
    """A Ray instance of 2 CPUs on this machine's loopback address only, shut down at the end; `eval
    --ray` in this process uses it (ray_eval._connected)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # read at import: the node takes 127.0.0.1
        ray = pytest.importorskip("ray", reason=f"Ray is not installed ({ray_eval.INSTALL})")
        ray.init(num_cpus=2, include_dashboard=False)
    try:
        yield ray
    finally:
        ray.shutdown()


def small_budget(model: onnx.ModelProto) -> int:
    """A --max-memory under which each batch of BATCH samples runs in batch and time chunks (and that
    holds the data file)."""
    budget = 8192
    batch_chunk, time_chunk = Session(model, max_memory=budget).evaluation_plan(BATCH, STEPS, with_ann=True)
    assert batch_chunk < BATCH and time_chunk < STEPS
    return budget


def evaluated(files: Path, tmp_path: Path, name: str, *extra: str) -> tuple[dict, list[str]]:
    """The --json report of `onnx-snn eval` of the fixture's SNN against its ANN with `extra`
    arguments, and the lines it prints after the first (which says where it ran)."""
    out = tmp_path / f"{name}.json"
    result = run_cli(
        "eval",
        str(files / "snn.onnx"),
        "--data",
        str(files / "test.npz"),
        "--ann",
        str(files / "ann.onnx"),
        "--batch-size",
        str(BATCH),
        "--json",
        str(out),
        "-q",
        *extra,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(out.read_text()), result.stdout.splitlines()[1:]


@pytest.mark.parametrize("stats", [False, True])
@pytest.mark.parametrize("chunked", [False, True])
def test_ray_equals_eval_bit_for_bit(files, tmp_path, ray_cluster, stats, chunked):
    """The whole report (JSON floats round-trip exactly: equal reports are equal arrays bit for bit,
    spike and synaptic-event totals included) and the printed tables (with --stats the energy's)."""
    extra = ["--stats"] if stats else []
    if chunked:
        extra += ["--max-memory", str(small_budget(onnx.load(files / "snn.onnx")))]
    plain, printed = evaluated(files, tmp_path, "plain", *extra)
    assert evaluated(files, tmp_path, "ray", *extra, "--ray") == (plain, printed)
    assert plain["samples"] == SAMPLES and plain["agreement"] and plain["spikes_per_sample"] and plain["energy"]
    assert any("firing rate" in line for line in printed) == stats


def test_a_worker_killed_mid_run_gives_the_same_report(files, tmp_path, ray_cluster, monkeypatch):
    """The second shard's worker dies after its work, before its result reaches the driver; Ray
    starts the task again (MAX_RETRIES) and the merged report is unchanged."""
    marker = tmp_path / "killed"
    shard_task = ray_eval.evaluate_shard

    def dies_once(model, ann, inputs, labels, first, settings):
        result = shard_task(model, ann, inputs, labels, first, settings)
        if first > 0 and not marker.exists():
            marker.touch()
            os._exit(1)
        return result

    monkeypatch.setattr(ray_eval, "evaluate_shard", dies_once)
    sharded, _ = evaluated(files, tmp_path, "ray", "--stats", "--ray")  # Ray prints its retry among the lines
    assert marker.exists()
    assert sharded == evaluated(files, tmp_path, "plain", "--stats")[0]


def test_ray_missing_is_one_line_with_the_install_command(files, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    result = run_cli("eval", str(files / "snn.onnx"), "--data", str(files / "test.npz"), "--ray")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and 'pip install "onnx-snn[ray]"' in result.stderr


def test_workers_without_ray_is_refused(files):
    result = run_cli("eval", str(files / "snn.onnx"), "--data", str(files / "test.npz"), "--workers", "2")
    assert result.returncode == 2 and "pass --ray too" in result.stderr


def test_shards_are_contiguous_ranges_of_whole_batches():
    assert ray_eval.shard_ranges(150, 16, 2) == [range(0, 80), range(80, 150)]
    assert ray_eval.shard_ranges(150, 16, 3) == [range(0, 48), range(48, 96), range(96, 150)]
    assert ray_eval.shard_ranges(10, 16, 4) == [range(0, 10)]  # never more shards than batches
    for shards in range(1, 12):
        ranges = ray_eval.shard_ranges(150, 16, shards)
        assert [r.start for r in ranges[1:]] == [r.stop for r in ranges[:-1]] and ranges[-1].stop == 150
        assert all(r.start % 16 == 0 and len(r) for r in ranges)


def test_evaluate_equals_an_independent_tally_of_run(files):
    """evaluate's report against numpy's tally of Session.run's per-step read-outs, batch by batch:
    counts and maxima exactly, and the float sums exactly too in the order evaluate defines (within
    a batch the samples left to right, then the batches in order); before that order was defined,
    the error sums were pairwise, which the report still equals to rounding."""
    x, y = np.load(files / "test.npz")["x"], np.load(files / "test.npz")["y"]
    session = Session(str(files / "snn.onnx"))
    ann = ort.InferenceSession(str(files / "ann.onnx"), providers=["CPUExecutionProvider"])
    correct, agree, ann_correct = np.zeros(STEPS, int), np.zeros(STEPS, int), 0
    error, pairwise, worst, spikes = np.zeros(STEPS), np.zeros(STEPS), np.zeros(STEPS), {}
    for start in range(0, SAMPLES, BATCH):
        run, labels = session.run(x[start : start + BATCH]), y[start : start + BATCH]
        ann_logits = ann.run(None, {"x": x[start : start + BATCH]})[0]
        predictions = run.per_step.argmax(axis=-1)
        correct += (predictions == labels).sum(axis=1)
        agree += (predictions == ann_logits.argmax(axis=-1)).sum(axis=1)
        ann_correct += int((ann_logits.argmax(axis=-1) == labels).sum())
        per_sample = np.abs(run.per_step - ann_logits).mean(axis=2, dtype=np.float64)  # [T, batch]
        batch_error = np.zeros(STEPS)
        for column in per_sample.T:
            batch_error = batch_error + column
        error, pairwise = error + batch_error, pairwise + per_sample.sum(axis=1)
        worst = np.maximum(worst, np.abs(run.per_step - ann_logits).max(axis=(1, 2)))
        for name, counts in run.spikes.items():
            spikes[name] = spikes.get(name, 0.0) + float(counts.astype(np.float64).sum())
    report = session.evaluate(x, y, ann=str(files / "ann.onnx"), batch_size=BATCH, progress=False)
    np.testing.assert_array_equal(report.accuracy, correct / SAMPLES)
    np.testing.assert_array_equal(report.agreement, agree / SAMPLES)
    np.testing.assert_array_equal(report.max_logit_error, worst)
    np.testing.assert_array_equal(report.logit_error, error / SAMPLES)
    np.testing.assert_allclose(report.logit_error, pairwise / SAMPLES, rtol=1e-14, atol=0)
    assert report.ann_accuracy == ann_correct / SAMPLES
    assert report.spikes_per_sample == {name: total / SAMPLES for name, total in spikes.items()} != {}


def test_evaluate_does_not_depend_on_the_memory_plan(files):
    """Batch and time chunks give the report of whole batches bit for bit (what lets each Ray
    worker run under a budget of its own)."""
    model = onnx.load(files / "snn.onnx")
    data = np.load(files / "test.npz")
    reports = [
        Session(model, max_memory=budget)
        .evaluate(data["x"], data["y"], ann=str(files / "ann.onnx"), batch_size=BATCH, progress=False)
        .to_json()
        for budget in (None, small_budget(model))
    ]
    assert reports[0] == reports[1]
