"""Executing compiled SNNs: one run gives the decoded output after every timestep."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Iterator, Mapping

import numpy as np
import onnx
from tqdm import tqdm

from onnx_snn import metadata as model_metadata
from onnx_snn.arrays import check_input_shape
from onnx_snn.budget import check_declared_sizes, resolve_budget
from onnx_snn.errors import SnnError
from onnx_snn.ir.contract import PER_STEP_SUFFIX, SPIKE_TIMES_PREFIX, SPIKES_PREFIX, SYNOPS_PREFIX, TIMESTEPS_INPUT
from onnx_snn.modelio import load_model
from onnx_snn.options import checked_count
from onnx_snn.providers import CUDA, make_session
from onnx_snn.runtime.ann import AnnRunner
from onnx_snn.runtime.energy import EnergyReport, energy_report
from onnx_snn.runtime.memory import bytes_per_sample_step, cuda_sample_step_limit, plan_chunks, readout_bytes
from onnx_snn.runtime.stepper import SimulationState, Stepper


@dataclass
class RunResult:
    """Output of one SNN run: logits after T steps [B, C], after each step [T, B, C] (TTFS: [1, B, C],
    the read-out at t_read), spike counts per sample [B] by layer, and for TTFS models with --stats
    the synaptic events per sample [B] and the absolute spike times [B, ...] by layer."""

    logits: np.ndarray
    per_step: np.ndarray
    spikes: dict[str, np.ndarray] = field(default_factory=dict)
    synops: dict[str, np.ndarray] = field(default_factory=dict)
    spike_times: dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def allocate(cls, like: RunResult, batch: int, steps: int) -> RunResult:
        """A zeroed result of `batch` samples over `steps` steps with the outputs of `like` (a chunk
        of a rate-coded run), for `place` to fill."""

        def zeros(a: np.ndarray, *leading: int) -> np.ndarray:
            return np.zeros(leading + a.shape[len(leading) :], dtype=a.dtype)

        return cls(
            zeros(like.logits, batch),
            zeros(like.per_step, steps, batch),
            {name: zeros(counts, batch) for name, counts in like.spikes.items()},
        )

    def place(self, samples: slice, steps: slice, part: RunResult) -> None:
        """Write `part`, the run of `samples` over `steps` (from the state its earlier steps left),
        into this result: its read-outs in place, its logits if it ends the run, its spikes added.
        Rate-coded runs only (TTFS runs have no time axis and are never chunked)."""
        self.per_step[steps, samples] = part.per_step
        if steps.stop == len(self.per_step):
            self.logits[samples] = part.logits
        for name, counts in part.spikes.items():
            self.spikes[name][samples] += counts


@dataclass
class EvalReport:
    """Accuracy at every t = 1..T, and against an ANN: argmax agreement, mean and max |logit error|.

    TTFS models have one read-out (timesteps 1, at `latency` = t_read) and report spikes per
    neuron and synaptic events per sample."""

    timesteps: int
    samples: int
    accuracy: np.ndarray
    ann_accuracy: float | None = None
    agreement: np.ndarray | None = None
    logit_error: np.ndarray | None = None
    spikes_per_sample: dict[str, float] = field(default_factory=dict)
    max_logit_error: np.ndarray | None = None
    synops_per_sample: dict[str, float] = field(default_factory=dict)
    neurons: dict[str, int] = field(default_factory=dict)
    latency: float | None = None
    energy: EnergyReport | None = None

    @property
    def spikes_per_neuron(self) -> float | None:
        """Spikes per sample over all neuron layers divided by their neuron count (when known)."""
        total = sum(self.neurons.get(k, 0) for k in self.spikes_per_sample)
        return sum(self.spikes_per_sample.values()) / total if total else None

    def ttfs_summary(self) -> str:
        """The TTFS report: accuracy, agreement, max |logit error|, spikes per neuron, synaptic
        events and t_read."""
        lines = [
            f"accuracy {100 * self.accuracy[-1]:.2f}%"
            + (f" (ANN {100 * self.ann_accuracy:.2f}%)" if self.ann_accuracy is not None else "")
        ]
        if self.agreement is not None:
            assert self.max_logit_error is not None and self.logit_error is not None  # set with agreement
            lines.append(
                f"argmax agreement with the ANN {100 * self.agreement[-1]:.2f}%, max |logit error| "
                f"{self.max_logit_error[-1]:.3g}, mean {self.logit_error[-1]:.3g}"
            )
        if self.spikes_per_neuron is not None:
            lines.append(
                f"spikes per neuron {self.spikes_per_neuron:.4f}, synaptic events per sample "
                f"{sum(self.synops_per_sample.values()):.6g}"
            )
        else:
            lines.append("spikes per neuron and synaptic events: compile with --stats to count them")
        if self.latency is not None:
            lines.append(f"latency t_read {self.latency:.6g} (units of tau_c)")
        return "\n".join(lines)

    def reported_steps(self) -> list[int]:
        """t = 1, 2, 4, ..., and T."""
        steps, t = [], 1
        while t < self.timesteps:
            steps.append(t)
            t *= 2
        return steps + [self.timesteps]

    def table(self) -> str:
        """A plain-text table of the reported steps."""
        width = max(5, len(str(self.timesteps)))
        head = f"{'T':>{width}}  {'accuracy':>9}"
        if self.agreement is not None:
            head += f"  {'agreement':>9}  {'|logit err|':>11}"
        lines = [head]
        for t in self.reported_steps():
            row = f"{t:>{width}}  {100 * self.accuracy[t - 1]:>8.2f}%"
            if self.agreement is not None:
                assert self.logit_error is not None  # set with agreement
                row += f"  {100 * self.agreement[t - 1]:>8.2f}%  {self.logit_error[t - 1]:>11.4f}"
            lines.append(row)
        if self.ann_accuracy is not None:
            lines.append(f"{'ANN':>{width}}  {100 * self.ann_accuracy:>8.2f}%")
        return "\n".join(lines)

    def to_json(self) -> dict:
        """The report as plain JSON types, every t included."""

        def listed(a):
            return None if a is None else [float(v) for v in a]

        return {
            "timesteps": self.timesteps,
            "samples": self.samples,
            "accuracy": listed(self.accuracy),
            "ann_accuracy": self.ann_accuracy,
            "agreement": listed(self.agreement),
            "logit_error": listed(self.logit_error),
            "max_logit_error": listed(self.max_logit_error),
            "spikes_per_sample": self.spikes_per_sample,
            "spikes_per_neuron": self.spikes_per_neuron,
            "synops_per_sample": self.synops_per_sample,
            "neurons": self.neurons,
            "latency": self.latency,
            "energy": self.energy.to_json() if self.energy is not None else None,
        }


class Session:
    """A compiled SNN loaded into onnxruntime (CUDA when available, else CPU).

    `max_memory` (bytes, or a size such as "2GB"; default: runtime.memory.default_budget(), half
    of the memory available when the session is made) bounds a run's working memory: its
    time-folded tensors (by an upper bound per sample and step) and the per-step results it
    holds. A run that exceeds it goes in batch chunks and, below MIN_BATCH_CHUNK samples, time
    chunks that carry every neuron's state, with the same result bit for bit (runtime.memory).
    `run` returns the whole batch's per-step read-out [T, B, ...], so that must fit the budget
    too; `evaluate` accumulates per-step counts chunk by chunk and never holds it. The budget
    does not count the loaded model, the interpreter or the caller's arrays, but a model that
    declares more data than the budget is refused before it is loaded. `stream` advances a
    simulation that persists between calls; `reset` starts it afresh.
    """

    def __init__(
        self,
        model: str | os.PathLike | onnx.ModelProto,
        providers: list[str] | None = None,
        intra_op_threads: int | None = None,
        max_memory: int | float | str | None = None,
    ) -> None:
        source: str | bytes = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
        label = "<model>" if isinstance(model, onnx.ModelProto) else str(model)
        self.max_memory = resolve_budget(max_memory)
        if isinstance(model, onnx.ModelProto):
            check_declared_sizes(model, self.max_memory, label)
            structure = model
        else:
            structure = load_model(str(model), self.max_memory)
        self._source, self._providers, self._threads = model, providers, intra_op_threads
        self._label = label
        self._stepper: Stepper | None = None
        self._stream: SimulationState | None = None
        try:
            self._session = self._make(source)
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises several unrelated types
            raise SnnError(f"onnxruntime cannot load it ({str(exc).splitlines()[0][:200]})", path=label) from None
        outputs = [o.name for o in self._session.get_outputs()]
        meta = model_metadata.read(self._session.get_modelmeta().custom_metadata_map, label)
        self.options = meta.get("options", {})
        self.ttfs = meta.get("ttfs")
        self.activity = meta.get("activity")
        stats_prefixes = (SPIKES_PREFIX, SYNOPS_PREFIX, SPIKE_TIMES_PREFIX)
        per_step = [o for o in outputs if o.endswith(PER_STEP_SUFFIX)]
        overridable = {i.name for i in self._session.get_overridable_initializers()}
        if self.ttfs is not None:  # one spike per neuron: no time axis, the read-out is the output
            self.output_name = next(o for o in outputs if not o.startswith(stats_prefixes))
            self.per_step_name = None
        elif per_step and TIMESTEPS_INPUT in overridable | {i.name for i in self._session.get_inputs()}:
            self.per_step_name = per_step[0]
            self.output_name = self.per_step_name[: -len(PER_STEP_SUFFIX)]
        else:
            raise SnnError(
                "is not a model compiled by onnx-snn (no timesteps input or per-step output); compile it first",
                path=label,
            )
        self.spike_names = [o for o in outputs if o.startswith(SPIKES_PREFIX)]
        self.synops_names = [o for o in outputs if o.startswith(SYNOPS_PREFIX)]
        self.spike_time_names = [o for o in outputs if o.startswith(SPIKE_TIMES_PREFIX)]
        self._input_shapes = {i.name: i.shape for i in self._session.get_inputs() if i.name != TIMESTEPS_INPUT}
        self.input_names = list(self._input_shapes)
        self.default_timesteps = 1 if self.ttfs is not None else int(self.options.get("timesteps", 32))
        self._unit_bytes = None if self.ttfs is not None else bytes_per_sample_step(structure)
        self._cuda_limit = cuda_sample_step_limit(structure)
        self._readout_bytes = readout_bytes(structure)
        if self._unit_bytes is not None:
            plan_chunks(1, 1, self.max_memory, self._unit_bytes)  # refuses a budget below one sample-step

    @property
    def providers(self) -> list[str]:
        """The execution providers the session really uses."""
        return self._session.get_providers()

    def _make(self, model: str | bytes):
        """An onnxruntime session with this Session's providers and threads whose memory follows
        the budget's bound (providers.make_session, budgeted)."""
        return make_session(model, self._providers, self._threads, budgeted=True)

    def model(self) -> onnx.ModelProto:
        """The compiled model this session runs: the one it was given, or read again from its file
        (under the budget)."""
        return self._source if isinstance(self._source, onnx.ModelProto) else load_model(self._source, self.max_memory)

    @property
    def stepper(self) -> Stepper:
        """The stateful form of the model (runtime.stepper), loaded at first use."""
        if self._stepper is None:
            self._stepper = Stepper(self.model(), self._make)
        return self._stepper

    @property
    def classes(self) -> int | None:
        """The size of the output's last axis (the classes of a classifier), None if not fixed."""
        last = next(o for o in self._session.get_outputs() if o.name == self.output_name).shape[-1]
        return last if isinstance(last, int) and last > 0 else None

    def _feed(self, inputs: np.ndarray | Mapping[str, np.ndarray], timesteps: object) -> dict[str, np.ndarray]:
        """The onnxruntime feed of one run: the checked inputs (_inputs) and `timesteps` (_timesteps)."""
        return self._batch_feed(self._inputs(inputs), slice(None), self._timesteps(timesteps))

    def _batch_feed(self, inputs: dict[str, np.ndarray], samples: slice, timesteps: int) -> dict[str, np.ndarray]:
        """The onnxruntime feed of `samples` of checked `inputs`: contiguous float32 arrays and, for
        rate-coded models, `timesteps`."""
        feed = {name: np.ascontiguousarray(value[samples], dtype=np.float32) for name, value in inputs.items()}
        if self.ttfs is None:
            feed[TIMESTEPS_INPUT] = np.asarray(timesteps, dtype=np.int64)
        return feed

    def _inputs(self, inputs: np.ndarray | Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One numeric array per model input, all with the same non-zero batch; SnnError for a
        missing or unknown input name, a non-numeric array, or a rank or fixed dim that differs
        from the model's."""
        if not isinstance(inputs, Mapping):
            if len(self.input_names) != 1:
                raise SnnError(f"the model has inputs {self.input_names}; pass a dict of arrays")
            inputs = {self.input_names[0]: inputs}
        if set(inputs) != set(self.input_names):
            raise SnnError(f"got inputs {sorted(map(str, inputs))} but the model's inputs are {self.input_names}")
        feed = {name: _input_array(name, inputs[name], self._input_shapes[name]) for name in self.input_names}
        batches = {len(a) for a in feed.values()}
        if len(batches) != 1:
            raise SnnError(f"the inputs must share their first (batch) dimension, got {sorted(batches)}")
        if 0 in batches:
            raise SnnError("the inputs hold no samples (batch of 0); pass at least one")
        return feed

    def _timesteps(self, timesteps: object) -> int:
        """`timesteps` (None: the compiled T) as an int in [1, MAX_TIMESTEPS]; TTFS models take only 1."""
        if timesteps is None:
            return self.default_timesteps
        t = checked_count("timesteps", timesteps)
        if self.ttfs is not None and t != 1:
            raise SnnError(f"a TTFS model has no timesteps (one read-out at t_read); got timesteps {t}")
        return t

    @property
    def _result_names(self) -> list[str]:
        stats = self.spike_names + self.synops_names + self.spike_time_names
        return [self.output_name] + ([self.per_step_name] if self.per_step_name else []) + stats

    def _result(self, outputs: dict[str, np.ndarray]) -> RunResult:
        """The RunResult of onnxruntime's `outputs`, copied: its numpy outputs share the buffers of
        its arena, and one kept alive (a chunk's read-out while the next chunk runs) would split
        the arena's free space, so that the next run could not reuse it (runtime.stepper._kept)."""
        by_name = {name: np.array(value) for name, value in outputs.items()}
        per_step = by_name[self.per_step_name] if self.per_step_name else by_name[self.output_name][None]
        return RunResult(
            by_name[self.output_name],
            per_step,
            {n: by_name[n] for n in self.spike_names},
            {n: by_name[n] for n in self.synops_names},
            {n: by_name[n] for n in self.spike_time_names},
        )

    def plan(self, batch: int, timesteps: int, held: int = 0, held_what: str = "results") -> tuple[int, int]:
        """(batch chunk, time chunk) of a fresh run of `batch` samples for `timesteps` steps while
        `held` bytes of the budget are taken by `held_what`; whole for TTFS models (no time axis).
        SnnError if what remains does not fit one sample for one step."""
        if self._unit_bytes is None:
            return batch, timesteps
        room = self.max_memory - held
        if room < self._unit_bytes:
            raise SnnError(
                f"{held_what} need {held} B of the memory budget of {self.max_memory} B, leaving less "
                f"than one sample-step ({self._unit_bytes} B); raise max_memory (--max-memory) or lower "
                "timesteps"
            )
        limit = self._cuda_limit if CUDA in self.providers else None
        return plan_chunks(batch, timesteps, room, self._unit_bytes, limit)

    def run(self, inputs: np.ndarray | Mapping[str, np.ndarray], timesteps: int | None = None) -> RunResult:
        """Simulate `timesteps` steps (default: the compiled T; TTFS models: one read-out) on one
        batch, fresh, and return all of it; in chunks (`plan`) if the run exceeds the budget, with
        the whole batch's per-step read-out, which must fit the budget, held throughout."""
        feed = self._feed(inputs, timesteps)
        batch, steps = _batch_of(feed), int(feed.get(TIMESTEPS_INPUT, 1))
        plan = self.run_plan(batch, steps)
        if plan == (batch, steps):
            return self._run_whole(feed)
        return _assembled(self._chunks(feed, plan), batch, steps)

    def _chunks(
        self, feed: dict[str, np.ndarray], plan: tuple[int, int], state: SimulationState | None = None
    ) -> Iterator[tuple[slice, slice, RunResult]]:
        """The run of `feed` in `plan`'s (batch, time) chunks, in order, as (samples, steps, the run
        of those samples over those steps); a batch chunk's time chunks carry its state. Fresh, or
        from `state` (one batch chunk: the stream's), which it advances."""
        batch, steps = _batch_of(feed), int(feed.get(TIMESTEPS_INPUT, 1))
        batch_chunk, time_chunk = plan
        for start in range(0, batch, batch_chunk):
            samples = slice(start, min(start + batch_chunk, batch))
            part = {k: (v if k == TIMESTEPS_INPUT else v[samples]) for k, v in feed.items()}
            if state is None and time_chunk == steps:
                yield samples, slice(0, steps), self._run_whole(part)
                continue
            carried = state or SimulationState(batch=samples.stop - samples.start)
            for first in range(0, steps, time_chunk):
                span = slice(first, min(first + time_chunk, steps))
                step_feed = {**part, TIMESTEPS_INPUT: np.asarray(span.stop - span.start, dtype=np.int64)}
                yield samples, span, self._result(self.stepper.advance(step_feed, self._result_names, carried))

    def stream(self, inputs: np.ndarray | Mapping[str, np.ndarray], steps: int = 1) -> RunResult:
        """Advance the persistent simulation by `steps` steps with `inputs` applied at each of them,
        and return those steps: `per_step` [steps, B, ...] (the read-out after steps t0+1 ..
        t0+steps), `logits` after the last, and the spikes in these steps. Inputs that change
        every step (events) are fed with steps=1 per call. The neuron state stays in the
        session's device memory between calls. The batch size is fixed until `reset`. A call
        that exceeds the budget goes in time chunks (`stream_plan`), with the same result."""
        if self.ttfs is not None:
            raise SnnError("a TTFS model has no timesteps to stream; use run()")
        feed = self._feed(inputs, steps)
        batch, steps = _batch_of(feed), int(feed[TIMESTEPS_INPUT])
        if self._stream is None:
            self._stream = SimulationState(batch=batch)
        elif self._stream.batch != batch:
            raise SnnError(f"the stream runs a batch of {self._stream.batch}, got {batch}; call reset() first")
        return _assembled(self._chunks(feed, self.stream_plan(batch, steps), self._stream), batch, steps)

    def stream_plan(self, batch: int, steps: int) -> tuple[int, int]:
        """(batch, time chunk) of a `stream` call: its batch is one state, so only its steps are
        split, to fit the budget beside the per-step read-out it returns; SnnError if not even one
        step of the batch fits."""
        assert self._unit_bytes is not None  # rate-coded models only (stream refuses TTFS ones)
        held = batch * steps * self._readout_bytes
        steps_that_fit = (self.max_memory - held) // (batch * self._unit_bytes)
        if steps_that_fit < 1:
            raise SnnError(
                f"one step of a stream of {batch} samples over {steps} steps (and its per-step output) "
                f"exceeds the memory budget of {self.max_memory} B; stream fewer samples or steps per "
                "call, or raise max_memory"
            )
        return batch, min(steps, steps_that_fit)

    @property
    def steps_streamed(self) -> int:
        """Steps the stream has run since the last reset."""
        return 0 if self._stream is None else self._stream.steps_done

    def reset(self) -> None:
        """Start the stream afresh: every neuron at its initial state, step 0, any batch size."""
        self._stream = None

    def _run_whole(self, feed: dict[str, np.ndarray]) -> RunResult:
        """One fresh run of `feed`; on CUDA through the stateful form (IOBinding: no host copies of
        state, and `timesteps` bindable)."""
        if CUDA in self.providers and self.ttfs is None:
            state = SimulationState(batch=_batch_of(feed))
            return self._result(self.stepper.advance(feed, self._result_names, state))
        return self._result(dict(zip(self._result_names, self._session.run(self._result_names, feed))))

    def evaluate(
        self,
        data: np.ndarray | Mapping[str, np.ndarray],
        labels: np.ndarray,
        timesteps: int | None = None,
        ann: str | os.PathLike | onnx.ModelProto | None = None,
        batch_size: int = 256,
        progress: bool = True,
    ) -> EvalReport:
        """Accuracy for every t = 1..T over `data`, and agreement and logit error against `ann`.

        Runs `batch_size` samples at a time (`batch_counts`, each batch in the chunks its plan
        allows beside the [T] per-step counters) and folds each batch's counts into the run's in
        batch order (EvalCounts.fold): memory is bounded by the budget whatever the number of
        samples or T (never [T, N, C] for all N), and the report depends on the batch size but
        not on the budget (_BatchTally says the one exception). `eval --ray` (runtime.ray_eval)
        folds the same batches' counts from its shards, so its report equals this one bit for
        bit. Labels must be class indices in [0, classes), one per sample."""
        inputs, labels, t, batch_size = self.checked_evaluation(data, labels, timesteps, batch_size)
        runner = AnnRunner(ann) if ann is not None else None
        total = EvalCounts.zeros(t, with_ann=runner is not None)
        with tqdm(total=len(labels), desc="evaluate", unit="sample", disable=not progress, leave=False) as bar:
            for counts in self.batch_counts(inputs, labels, t, runner, batch_size):
                total.fold(counts)
                bar.update(counts.samples)
        return self.report(total)

    def checked_evaluation(
        self,
        data: np.ndarray | Mapping[str, np.ndarray],
        labels: object,
        timesteps: object,
        batch_size: object,
    ) -> tuple[dict[str, np.ndarray], np.ndarray, int, int]:
        """`evaluate`'s arguments checked: (one array per model input, the labels as class indices,
        T, the batch size); SnnError for anything `evaluate` refuses."""
        inputs, t = self._inputs(data), self._timesteps(timesteps)
        batch_size = checked_count("batch_size", batch_size)
        return inputs, _checked_labels(labels, _batch_of(inputs), self.classes), t, batch_size

    def batch_counts(
        self,
        inputs: dict[str, np.ndarray],
        labels: np.ndarray,
        timesteps: int,
        ann: AnnRunner | None,
        batch_size: int,
        first: int = 0,
    ) -> Iterator[EvalCounts]:
        """The EvalCounts of each batch of `batch_size` samples of `inputs` and `labels` (as
        `checked_evaluation` returns them), in order: what `evaluate` folds. A batch runs in the
        chunks its `evaluation_plan` allows, and its counts do not depend on them (_BatchTally).
        `first` is the index of the first sample in the whole data set (a Ray shard's start), for
        the message of the SnnError raised on a non-finite output."""
        for start in range(0, len(labels), batch_size):
            batch = self._batch_feed(inputs, slice(start, start + batch_size), timesteps)
            y = labels[start : start + batch_size]
            ann_logits = ann.run({k: batch[k] for k in inputs}) if ann is not None else None
            tally = _BatchTally(timesteps, y, ann_logits)
            for samples, span, part in self._chunks(batch, self.evaluation_plan(len(y), timesteps, ann is not None)):
                self._check_finite(part, first + start + samples.start, first + start + samples.stop)
                tally.add(samples, span, part)
            yield tally.counts()

    def _check_finite(self, part: RunResult, first: int, stop: int) -> None:
        """SnnError unless `part`, the run of samples first..stop-1, has finite read-outs."""
        if not np.all(np.isfinite(part.per_step)):
            raise SnnError(
                f"the SNN's outputs are not finite (NaN or Inf) on samples {first}..{stop - 1}; recompile "
                "from an ANN with finite weights, or check the data",
                path=self._label,
            )

    def run_plan(self, batch: int, timesteps: int) -> tuple[int, int]:
        """The (batch chunk, time chunk) plan of `run` on `batch` samples: `plan` beside the per-step
        read-out [T, batch, ...] that it returns."""
        return self.plan(
            batch,
            timesteps,
            batch * timesteps * self._readout_bytes,
            f"the per-step output of {batch} samples over {timesteps} steps (evaluate and stream hold less)",
        )

    def evaluation_plan(self, batch: int, timesteps: int, with_ann: bool = False) -> tuple[int, int]:
        """The (batch chunk, time chunk) plan of one evaluation batch of `batch` samples: `plan`
        beside the run's per-step counters, the batch's (_BatchTally) and, `with_ann`, the ANN's
        outputs of the batch."""
        layers = len(self.spike_names) + len(self.synops_names)
        held = (
            EvalCounts.bytes_for(timesteps, with_ann)
            + _BatchTally.bytes_for(timesteps, batch, with_ann, layers)
            + (batch * self._readout_bytes if with_ann else 0)
        )
        return self.plan(batch, timesteps, held, f"the per-step counters of T = {timesteps} steps")

    def report(self, counts: EvalCounts) -> EvalReport:
        """The EvalReport of `counts`, the fold of every batch of an evaluation."""
        total = counts.samples
        spikes_per_sample = {k: v / total for k, v in counts.spikes.items()}
        synops_per_sample = {k: v / total for k, v in counts.synops.items()}
        t, neurons, energy = len(counts.correct), counts.neurons, None
        if self.activity is not None and self.spike_names:
            energy = energy_report(t, spikes_per_sample, synops_per_sample, self.activity)
            neurons = {SPIKES_PREFIX + k: v for k, v in self.activity["neurons"]}
        with_ann = counts.agree is not None
        return EvalReport(
            timesteps=t,
            samples=total,
            accuracy=counts.correct / total,
            ann_accuracy=counts.ann_correct / total if with_ann else None,
            agreement=counts.agree / total if counts.agree is not None else None,
            logit_error=counts.error / total if counts.error is not None else None,
            spikes_per_sample=spikes_per_sample,
            max_logit_error=counts.worst,
            synops_per_sample=synops_per_sample,
            neurons=neurons,
            latency=self.ttfs["t_read"] if self.ttfs is not None else None,
            energy=energy,
        )


@dataclass
class EvalCounts:
    """Per-step counts and sums over evaluated samples: one batch's (_BatchTally), or the fold of
    the batches of an evaluation in order (`fold`), which `Session.report` turns into an EvalReport.

    samples: how many; correct / agree: samples whose argmax equals the label / the ANN's at each
    step; error: the sum over samples of the mean |SNN - ANN| over outputs at each step; worst: its
    max; ann_correct: samples the ANN gets right; spikes / synops: totals by output name; neurons:
    neurons by spike layer (TTFS spike-time outputs). agree, error and worst exist with an ANN."""

    correct: np.ndarray
    agree: np.ndarray | None = None
    error: np.ndarray | None = None
    worst: np.ndarray | None = None
    samples: int = 0
    ann_correct: int = 0
    spikes: dict[str, float] = field(default_factory=dict)
    synops: dict[str, float] = field(default_factory=dict)
    neurons: dict[str, int] = field(default_factory=dict)

    @classmethod
    def zeros(cls, steps: int, with_ann: bool) -> EvalCounts:
        """Counts of no samples over `steps` steps, with the ANN's arrays if `with_ann`."""

        def zeros(dtype: type) -> np.ndarray | None:
            return np.zeros(steps, dtype=dtype) if with_ann else None

        return cls(np.zeros(steps, dtype=np.int64), zeros(np.int64), zeros(np.float64), zeros(np.float64))

    @staticmethod
    def bytes_for(steps: int, with_ann: bool) -> int:
        """Bytes of the per-step arrays of counts over `steps` steps (8 per step and array)."""
        return 8 * steps * (4 if with_ann else 1)

    def fold(self, batch: EvalCounts) -> None:
        """Add `batch`, the counts of the next batch, in place: counts and maxima exactly, and each
        float sum by one addition per step or layer, so that folding the same batches in the same
        order gives the same sums bit for bit wherever they were counted (one process or shards)."""
        self.samples += batch.samples
        self.ann_correct += batch.ann_correct
        self.correct += batch.correct
        if self.agree is not None and self.error is not None and self.worst is not None:
            assert batch.agree is not None and batch.error is not None and batch.worst is not None  # same ANN
            self.agree += batch.agree
            self.error += batch.error
            np.maximum(self.worst, batch.worst, out=self.worst)
        for totals, values in ((self.spikes, batch.spikes), (self.synops, batch.synops)):
            for name, value in values.items():
                totals[name] = totals.get(name, 0.0) + value
        self.neurons.update(batch.neurons)


class _BatchTally:
    """The EvalCounts of one evaluation batch, gathered from its chunks (Session._chunks, in its
    order) so that any plan gives the same counts bit for bit: counts and maxima are exact in any
    order; the error at each step is a left fold over the batch's samples in sample order
    (_left_sum), which each chunk continues; spikes and synaptic events gather in per-sample
    buffers, summed once at the end. Holds O(T) plus 8 bytes per sample and stats layer.

    The exception: a time chunk's spike and synaptic-event counts are the model's float32 sums
    over its steps, so where they are not whole numbers (synaptic events through fractional
    fan-outs) a plan that splits time (runtime.memory.plan_chunks) may round them otherwise."""

    def __init__(self, steps: int, labels: np.ndarray, ann_logits: np.ndarray | None) -> None:
        self._labels, self._ann_logits = labels, ann_logits
        self._counts = EvalCounts.zeros(steps, with_ann=ann_logits is not None)
        self._counts.samples = len(labels)
        if ann_logits is not None:
            self._counts.ann_correct = int((ann_logits.argmax(axis=-1) == labels).sum())
        self._spikes: dict[str, np.ndarray] = {}
        self._synops: dict[str, np.ndarray] = {}

    @staticmethod
    def bytes_for(steps: int, batch: int, with_ann: bool, layers: int) -> int:
        """Bytes a tally of `batch` samples over `steps` steps holds, with `layers` stats outputs."""
        return EvalCounts.bytes_for(steps, with_ann) + 8 * batch * layers

    def add(self, samples: slice, steps: slice, part: RunResult) -> None:
        """Fold in `part`, the run of the batch's `samples` over `steps`."""
        predictions = part.per_step.argmax(axis=-1)
        self._counts.correct[steps] += (predictions == self._labels[samples][None, :]).sum(axis=1)
        if self._ann_logits is not None:
            self._add_ann(samples, steps, part.per_step, predictions)
        for buffers, values in ((self._spikes, part.spikes), (self._synops, part.synops)):
            for name, per_sample in values.items():
                buffers.setdefault(name, np.zeros(len(self._labels)))[samples] += per_sample
        for name, times in part.spike_times.items():
            self._counts.neurons[SPIKES_PREFIX + name[len(SPIKE_TIMES_PREFIX) :]] = int(times[0].size)

    def _add_ann(self, samples: slice, steps: slice, per_step: np.ndarray, predictions: np.ndarray) -> None:
        """Fold in the agreement with the ANN and the |logit error| of a part's read-out `per_step`."""
        counts, ann_logits = self._counts, self._ann_logits
        assert counts.agree is not None and counts.error is not None and counts.worst is not None
        assert ann_logits is not None  # with_ann
        ann_logits = ann_logits[samples]
        counts.agree[steps] += (predictions == ann_logits.argmax(axis=-1)[None, :]).sum(axis=1)
        deviation = (per_step - ann_logits[None]).reshape(len(predictions), len(ann_logits), -1)
        np.abs(deviation, out=deviation)
        counts.error[steps] = _left_sum(counts.error[steps], deviation.mean(axis=2, dtype=np.float64))
        counts.worst[steps] = np.maximum(counts.worst[steps], deviation.max(axis=(1, 2)))

    def counts(self) -> EvalCounts:
        """The batch's counts, once every chunk is in."""
        for totals, buffers in ((self._counts.spikes, self._spikes), (self._counts.synops, self._synops)):
            totals.update({name: float(values.sum()) for name, values in buffers.items()})
        return self._counts


def _left_sum(start: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """start + columns[:, 0] + columns[:, 1] + ... for each row, added left to right
    (np.add.accumulate), where np.sum's pairwise order would depend on the number of columns: so
    summing consecutive column ranges, each sum starting from the last, gives the sum of all the
    columns at once bit for bit."""
    running = np.concatenate([start[:, None], columns], axis=1)
    return np.add.accumulate(running, axis=1, out=running)[:, -1]


def _assembled(chunks: Iterator[tuple[slice, slice, RunResult]], batch: int, steps: int) -> RunResult:
    """The RunResult of `batch` samples over `steps` steps from Session._chunks' parts: the part
    itself when it is the whole, else the parts placed into one result (RunResult.allocate)."""
    result: RunResult | None = None
    for samples, span, part in chunks:
        if (samples, span) == (slice(0, batch), slice(0, steps)):
            return part
        if result is None:
            result = RunResult.allocate(part, batch, steps)
        result.place(samples, span, part)
    assert result is not None  # a run has at least one chunk
    return result


def _batch_of(feed: Mapping[str, np.ndarray]) -> int:
    """The batch size of a feed (the first input's first dim)."""
    return len(next(v for k, v in feed.items() if k != TIMESTEPS_INPUT))


def _input_array(name: str, value: object, shape: list) -> np.ndarray:
    """`value` as a numeric array for the model input `name` of `shape` (ints fixed, anything else
    free), or SnnError saying what differs. The batch dim (first) is not checked."""
    array = np.asarray(value)
    if array.dtype.kind not in "biuf":
        raise SnnError(f"input '{name}' has dtype {array.dtype}; pass numbers (float32)")
    check_input_shape(name, array, shape)
    return array


def _checked_labels(labels: object, samples: int, classes: int | None) -> np.ndarray:
    """`labels` as a 1-D integer array of one class index in [0, classes) per sample (no upper
    bound where the model's class count is not fixed), else SnnError."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise SnnError(f"labels must be a 1-D integer array, got {labels.dtype} {list(labels.shape)}")
    if len(labels) != samples:
        raise SnnError(f"got {len(labels)} labels for {samples} inputs; give one label per input")
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or (classes is not None and high >= classes):
        raise SnnError(
            f"labels must be class indices in [0, {classes if classes is not None else 'classes'}), "
            f"got values in [{low}, {high}]"
        )
    return labels
