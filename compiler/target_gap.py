"""Choosing T for the user: `compile --target-gap PCT` and `eval --find-t PCT`.

The gap at step t is the share of samples, in percentage points, whose SNN argmax after t steps
differs from the ANN's argmax: 100·(1 − agreement). The chosen T is the smallest t whose gap is
at most the target; where none up to the last step evaluated is, it is that last step (the
target is then not reached, which is reported, not refused). Every neuron op is causal (a run of
T steps reads out at each t what a run of t steps would), so one evaluation over the largest T
gives the gap at every smaller one.

`compile --target-gap` evaluates the compiled SNN, in memory and before it is verified and
written, on the first SEARCH_SAMPLES calibration samples (within --calib-batches) up to
--max-timesteps, and stores the chosen T as the model's default T (`set_default_timesteps`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterable, Mapping

import numpy as np
import onnx

from onnx_snn import metadata as model_metadata
from onnx_snn.errors import SnnError
from onnx_snn.ir.contract import TIMESTEPS_INPUT
from onnx_snn.runtime import Session
from onnx_snn.verify import ann_outputs

#: the calibration samples `compile --target-gap` evaluates, at most: the first ones, in order
SEARCH_SAMPLES = 512


@dataclass(frozen=True)
class TimestepChoice:
    """The outcome of a search for T: the chosen T and its gap (percentage points of `samples`),
    whether that meets `target`, and the largest T evaluated (`searched`)."""

    target: float
    timesteps: int
    gap: float
    reached: bool
    samples: int
    searched: int

    def describe(self) -> str:
        """One line: the chosen T and the gap it reaches, or that no T up to `searched` reaches the target."""
        gap = f"gap {self.gap:.4g}% of {self.samples} samples (SNN argmax != ANN argmax)"
        if self.reached:
            return f"T = {self.timesteps} is the smallest T with gap <= {self.target:g}%: {gap}"
        return f"no T up to {self.searched} reaches gap <= {self.target:g}%: at T = {self.timesteps}, {gap}"


def gaps(agreement: np.ndarray, samples: int) -> np.ndarray:
    """The gap at every t = 1..T from the per-step agreement (a share of `samples`): 100·k/samples
    for the k samples that disagree, so that a gap equal to a target compares equal to it."""
    disagreeing = np.rint((1.0 - np.asarray(agreement, dtype=np.float64)) * samples)
    return 100.0 * disagreeing / samples


def choose_timesteps(agreement: np.ndarray, samples: int, target: float) -> TimestepChoice:
    """The smallest T (1-based) whose gap is at most `target`, else the last T of `agreement`
    (an EvalReport's per-step agreement over `samples` samples), with reached False."""
    per_step = gaps(agreement, samples)
    within = np.flatnonzero(per_step <= target)
    index = int(within[0]) if within.size else len(per_step) - 1
    return TimestepChoice(
        target=float(target),
        timesteps=index + 1,
        gap=float(per_step[index]),
        reached=bool(within.size),
        samples=samples,
        searched=len(per_step),
    )


def search_samples(batches: Iterable[Mapping[str, np.ndarray]], limit: int = SEARCH_SAMPLES) -> dict[str, np.ndarray]:
    """The first `limit` samples of calibration `batches` (feed dicts), as one feed; reads no
    batch past them."""
    parts: list[Mapping[str, np.ndarray]] = []
    count = 0
    for feed in batches:
        parts.append(feed)
        count += len(next(iter(feed.values())))
        if count >= limit:
            break
    if not parts:
        raise SnnError("--target-gap needs calibration samples to measure the gap; the calibration data holds none")
    return {name: np.concatenate([np.asarray(p[name]) for p in parts])[:limit] for name in parts[0]}


def search_timesteps(
    snn: onnx.ModelProto,
    ann: onnx.ModelProto,
    inputs: dict[str, np.ndarray],
    target: float,
    max_timesteps: int,
    source: str = "<model>",
    progress: bool = False,
) -> TimestepChoice:
    """Evaluate the rate-coded `snn` on `inputs` for `max_timesteps` steps against `ann` (a
    classifier: its output [N, classes]) and choose T for `target` (choose_timesteps). SnnError
    if the ANN fails on `inputs` or is not a classifier."""
    logits = ann_outputs(ann, inputs, source)[0]
    if logits.ndim != 2:
        raise SnnError(
            f"--target-gap compares the SNN's argmax over classes with the ANN's, but the ANN's output has "
            f"shape {list(logits.shape)}, not [samples, classes]",
            path=source,
        )
    labels = logits.argmax(axis=-1)
    report = Session(snn).evaluate(inputs, labels, timesteps=max_timesteps, progress=progress)
    return choose_timesteps(report.accuracy, report.samples, target)  # accuracy against the ANN's argmax


def set_default_timesteps(model: onnx.ModelProto, choice: TimestepChoice) -> None:
    """Make `choice.timesteps` the default T of the compiled `model`, in place: its `timesteps`
    initializer (what a run that feeds no T uses) and its metadata's options.timesteps (what
    Session and inspect read), with the search under `timestep_search`, which also keeps the
    --timesteps that the passes tuning for T (--norm spikenorm) tuned for."""
    stored = next(i for i, t in enumerate(model.graph.initializer) if t.name == TIMESTEPS_INPUT)
    default = onnx.numpy_helper.from_array(np.asarray(choice.timesteps, dtype=np.int64), TIMESTEPS_INPUT)
    model.graph.initializer[stored].CopyFrom(default)
    options = model_metadata.read(model_metadata.props_of(model), "<model>")["options"]
    record = {**asdict(choice), "compiled_timesteps": options["timesteps"]}
    model_metadata.write(
        model, {"options": {**options, "timesteps": choice.timesteps}, "timestep_search": record}, keep_others=True
    )


def describe_record(record: Mapping) -> str:
    """`describe` of a `timestep_search` metadata record (set_default_timesteps)."""
    fields = {name: record[name] for name in TimestepChoice.__dataclass_fields__}
    return TimestepChoice(**fields).describe()
