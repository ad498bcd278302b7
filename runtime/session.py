"""Executing compiled SNNs: one run gives the decoded output after every timestep."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
import onnx
from tqdm import tqdm

from onnx_snn.errors import SnnError

from .contract import PER_STEP_SUFFIX, SPIKE_TIMES_PREFIX, SPIKES_PREFIX, SYNOPS_PREFIX, TIMESTEPS_INPUT
from .energy import EnergyReport, energy_report
from .memory import bytes_per_sample_step, plan_chunks
from .providers import CPU, CUDA, make_session
from .stepper import SimulationState, Stepper


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

    @staticmethod
    def over_time(parts: list[RunResult]) -> RunResult:
        """The run made of consecutive time chunks of one batch (rate-coded models)."""
        spikes = {name: sum(p.spikes[name] for p in parts) for name in parts[0].spikes}
        return RunResult(parts[-1].logits, np.concatenate([p.per_step for p in parts]), spikes)

    @staticmethod
    def over_batch(parts: list[RunResult]) -> RunResult:
        """The run made of consecutive batch chunks, each over all steps."""
        def joined(field_name: str) -> dict[str, np.ndarray]:
            first = getattr(parts[0], field_name)
            return {name: np.concatenate([getattr(p, field_name)[name] for p in parts]) for name in first}
        return RunResult(np.concatenate([p.logits for p in parts]),
                         np.concatenate([p.per_step for p in parts], axis=1),
                         joined("spikes"), joined("synops"), joined("spike_times"))


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
        lines = [f"accuracy {100 * self.accuracy[-1]:.2f}%"
                 + (f" (ANN {100 * self.ann_accuracy:.2f}%)" if self.ann_accuracy is not None else "")]
        if self.agreement is not None:
            lines.append(f"argmax agreement with the ANN {100 * self.agreement[-1]:.2f}%, max |logit error| "
                         f"{self.max_logit_error[-1]:.3g}, mean {self.logit_error[-1]:.3g}")
        if self.spikes_per_neuron is not None:
            lines.append(f"spikes per neuron {self.spikes_per_neuron:.4f}, synaptic events per sample "
                         f"{sum(self.synops_per_sample.values()):.6g}")
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
        head = f"{'T':>5}  {'accuracy':>9}"
        if self.agreement is not None:
            head += f"  {'agreement':>9}  {'|logit err|':>11}"
        lines = [head]
        for t in self.reported_steps():
            row = f"{t:>5}  {100 * self.accuracy[t - 1]:>8.2f}%"
            if self.agreement is not None:
                row += f"  {100 * self.agreement[t - 1]:>8.2f}%  {self.logit_error[t - 1]:>11.4f}"
            lines.append(row)
        if self.ann_accuracy is not None:
            lines.append(f"  ANN  {100 * self.ann_accuracy:>8.2f}%")
        return "\n".join(lines)

    def to_json(self) -> dict:
        """The report as plain JSON types, every t included."""
        def listed(a):
            return None if a is None else [float(v) for v in a]
        return {"timesteps": self.timesteps, "samples": self.samples, "accuracy": listed(self.accuracy),
                "ann_accuracy": self.ann_accuracy, "agreement": listed(self.agreement),
                "logit_error": listed(self.logit_error), "max_logit_error": listed(self.max_logit_error),
                "spikes_per_sample": self.spikes_per_sample, "spikes_per_neuron": self.spikes_per_neuron,
                "synops_per_sample": self.synops_per_sample, "neurons": self.neurons, "latency": self.latency,
                "energy": self.energy.to_json() if self.energy is not None else None}


class Session:
    """A compiled SNN loaded into onnxruntime (CUDA when available, else CPU).

    `max_memory` (bytes) bounds the working memory of `run`: a batch whose time-folded tensors
    would need more is run in batch chunks and, below MIN_BATCH_CHUNK samples, time chunks that
    carry every neuron's state, with the same result bit for bit (runtime.memory). It does not
    count the loaded model, the interpreter or the caller's arrays. `stream` advances a
    simulation that persists between calls; `reset` starts it afresh.
    """

    def __init__(self, model: str | os.PathLike | onnx.ModelProto, providers: list[str] | None = None,
                 intra_op_threads: int | None = None, max_memory: int | None = None) -> None:
        source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
        if not isinstance(model, onnx.ModelProto) and not os.path.isfile(source):
            raise SnnError("model file not found; check the path", path=source)
        if max_memory is not None and max_memory <= 0:
            raise SnnError(f"max_memory must be a positive number of bytes, got {max_memory}")
        self._source, self._providers, self._threads = model, providers, intra_op_threads
        self.max_memory = max_memory
        self._stepper: Stepper | None = None
        self._stream: SimulationState | None = None
        self._unit_bytes: int | None = None
        try:
            self._session = self._make(source)
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises several unrelated types
            raise SnnError(f"onnxruntime cannot load it ({str(exc).splitlines()[0][:200]})",
                           path=source if isinstance(source, str) else "<model>") from None
        outputs = [o.name for o in self._session.get_outputs()]
        meta = self._session.get_modelmeta().custom_metadata_map
        self.options = json.loads(meta.get("onnx_snn.options", "{}"))
        self.ttfs = json.loads(meta["onnx_snn.ttfs"]) if "onnx_snn.ttfs" in meta else None
        self.activity = json.loads(meta["onnx_snn.activity"]) if "onnx_snn.activity" in meta else None
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
            raise SnnError("is not a model compiled by onnx-snn (no timesteps input or per-step output); "
                           "compile it first", path=source if isinstance(source, str) else "<model>")
        self.spike_names = [o for o in outputs if o.startswith(SPIKES_PREFIX)]
        self.synops_names = [o for o in outputs if o.startswith(SYNOPS_PREFIX)]
        self.spike_time_names = [o for o in outputs if o.startswith(SPIKE_TIMES_PREFIX)]
        self.input_names = [i.name for i in self._session.get_inputs() if i.name != TIMESTEPS_INPUT]
        self.default_timesteps = 1 if self.ttfs is not None else int(self.options.get("timesteps", 32))
        if max_memory is not None and self.ttfs is None:
            self._unit_bytes = bytes_per_sample_step(self._model())
            plan_chunks(1, 1, max_memory, self._unit_bytes)  # refuses a budget below one sample-step

    @property
    def providers(self) -> list[str]:
        """The execution providers the session really uses."""
        return self._session.get_providers()

    def _make(self, model: str | bytes):
        """An onnxruntime session with this Session's providers and threads; under a memory budget
        without a memory pattern, which would hold every intermediate tensor of a run at once."""
        return make_session(model, self._providers, self._threads, memory_pattern=self.max_memory is None)

    def _model(self) -> onnx.ModelProto:
        if isinstance(self._source, onnx.ModelProto):
            return self._source
        from onnx_snn.modelio import load_model
        return load_model(self._source)

    @property
    def stepper(self) -> Stepper:
        """The stateful form of the model (runtime.stepper), loaded at first use."""
        if self._stepper is None:
            self._stepper = Stepper(self._model(), self._make)
        return self._stepper

    def _feed(self, inputs: np.ndarray | Mapping[str, np.ndarray], timesteps: int | None) -> dict:
        if not isinstance(inputs, Mapping):
            if len(self.input_names) != 1:
                raise SnnError(f"the model has inputs {self.input_names}; pass a dict of arrays")
            inputs = {self.input_names[0]: inputs}
        feed = {name: np.ascontiguousarray(value, dtype=np.float32) for name, value in inputs.items()}
        t = self.default_timesteps if timesteps is None else int(timesteps)
        if t < 1:
            raise SnnError(f"timesteps must be at least 1, got {t}")
        if self.ttfs is not None:
            if t != 1:
                raise SnnError(f"a TTFS model has no timesteps (one read-out at t_read); got timesteps {t}")
        else:
            feed[TIMESTEPS_INPUT] = np.asarray(t, dtype=np.int64)
        return feed

    @property
    def _result_names(self) -> list[str]:
        stats = self.spike_names + self.synops_names + self.spike_time_names
        return [self.output_name] + ([self.per_step_name] if self.per_step_name else []) + stats

    def _result(self, by_name: dict[str, np.ndarray]) -> RunResult:
        per_step = by_name[self.per_step_name] if self.per_step_name else by_name[self.output_name][None]
        return RunResult(by_name[self.output_name], per_step, {n: by_name[n] for n in self.spike_names},
                         {n: by_name[n] for n in self.synops_names}, {n: by_name[n] for n in self.spike_time_names})

    def run(self, inputs: np.ndarray | Mapping[str, np.ndarray], timesteps: int | None = None) -> RunResult:
        """Simulate `timesteps` steps (default: the compiled T; TTFS models: one read-out) on one
        batch, fresh; in chunks if the session has a memory budget that the whole run exceeds."""
        feed = self._feed(inputs, timesteps)
        batch = len(next(v for k, v in feed.items() if k != TIMESTEPS_INPUT))
        steps = int(feed.get(TIMESTEPS_INPUT, 1))
        batch_chunk, time_chunk = batch, steps
        if self._unit_bytes is not None:
            batch_chunk, time_chunk = plan_chunks(batch, steps, self.max_memory, self._unit_bytes)
        if (batch_chunk, time_chunk) == (batch, steps):
            return self._run_whole(feed)
        parts = []
        for start in range(0, batch, batch_chunk):
            part = {k: (v if k == TIMESTEPS_INPUT else v[start:start + batch_chunk]) for k, v in feed.items()}
            parts.append(self._run_whole(part) if time_chunk == steps else self._run_in_time_chunks(part, time_chunk))
        return RunResult.over_batch(parts)

    def _run_in_time_chunks(self, feed: dict[str, np.ndarray], chunk: int) -> RunResult:
        steps = int(feed[TIMESTEPS_INPUT])
        state = SimulationState(batch=len(next(v for k, v in feed.items() if k != TIMESTEPS_INPUT)))
        parts = []
        for start in range(0, steps, chunk):
            part = {**feed, TIMESTEPS_INPUT: np.asarray(min(chunk, steps - start), dtype=np.int64)}
            parts.append(self._result(self.stepper.advance(part, self._result_names, state)))
        return RunResult.over_time(parts)

    def stream(self, inputs: np.ndarray | Mapping[str, np.ndarray], steps: int = 1) -> RunResult:
        """Advance the persistent simulation by `steps` steps with `inputs` applied at each of them,
        and return those steps: `per_step` [steps, B, ...] (the read-out after steps t0+1 ..
        t0+steps), `logits` after the last, and the spikes in these steps. Inputs that change
        every step (events) are fed with steps=1 per call. The neuron state stays in the
        session's device memory between calls. The batch size is fixed until `reset`."""
        if self.ttfs is not None:
            raise SnnError("a TTFS model has no timesteps to stream; use run()")
        feed = self._feed(inputs, steps)
        batch = len(next(v for k, v in feed.items() if k != TIMESTEPS_INPUT))
        if self._stream is None:
            self._stream = SimulationState(batch=batch)
        elif self._stream.batch != batch:
            raise SnnError(f"the stream runs a batch of {self._stream.batch}, got {batch}; call reset() first")
        return self._result(self.stepper.advance(feed, self._result_names, self._stream))

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
            state = SimulationState(batch=len(next(v for k, v in feed.items() if k != TIMESTEPS_INPUT)))
            return self._result(self.stepper.advance(feed, self._result_names, state))
        return self._result(dict(zip(self._result_names, self._session.run(self._result_names, feed))))

    def evaluate(self, data: np.ndarray | Mapping[str, np.ndarray], labels: np.ndarray,
                 timesteps: int | None = None, ann: str | os.PathLike | None = None, batch_size: int = 256,
                 progress: bool = True) -> EvalReport:
        """Accuracy for every t = 1..T over `data`, and agreement and logit error against `ann`."""
        data = dict(data) if isinstance(data, Mapping) else {self.input_names[0]: data}
        labels = np.asarray(labels)
        total = len(labels)
        t = self.default_timesteps if timesteps is None else int(timesteps)
        ann_session = AnnRunner(ann) if ann is not None else None
        correct = np.zeros(t)
        agree = np.zeros(t) if ann_session else None
        error = np.zeros(t) if ann_session else None
        worst = np.zeros(t) if ann_session else None
        ann_correct = 0
        spikes: dict[str, float] = {}
        synops: dict[str, float] = {}
        neurons: dict[str, int] = {}
        with tqdm(total=total, desc="evaluate", unit="sample", disable=not progress, leave=False) as bar:
            for start in range(0, total, batch_size):
                batch = {k: v[start:start + batch_size] for k, v in data.items()}
                y = labels[start:start + batch_size]
                result = self.run(batch, t)
                predictions = result.per_step.argmax(axis=-1)
                correct += (predictions == y[None, :]).sum(axis=1)
                if ann_session is not None:
                    ann_logits = ann_session.run(batch)
                    ann_pred = ann_logits.argmax(axis=-1)
                    ann_correct += int((ann_pred == y).sum())
                    agree += (predictions == ann_pred[None, :]).sum(axis=1)
                    deviation = np.abs(result.per_step - ann_logits[None]).reshape(t, len(y), -1)
                    error += deviation.mean(axis=2).sum(axis=1)
                    worst = np.maximum(worst, deviation.max(axis=(1, 2)))
                for name, counts in result.spikes.items():
                    spikes[name] = spikes.get(name, 0.0) + float(counts.sum())
                for name, counts in result.synops.items():
                    synops[name] = synops.get(name, 0.0) + float(counts.sum())
                for name, times in result.spike_times.items():
                    neurons[SPIKES_PREFIX + name[len(SPIKE_TIMES_PREFIX):]] = int(times[0].size)
                bar.update(len(y))
        spikes_per_sample = {k: v / total for k, v in spikes.items()}
        synops_per_sample = {k: v / total for k, v in synops.items()}
        energy = None
        if self.activity is not None and self.spike_names:
            energy = energy_report(t, spikes_per_sample, synops_per_sample, self.activity)
            neurons = {SPIKES_PREFIX + k: v for k, v in self.activity["neurons"]}
        return EvalReport(timesteps=t, samples=total, accuracy=correct / total,
                          ann_accuracy=ann_correct / total if ann_session else None,
                          agreement=agree / total if ann_session else None,
                          logit_error=error / total if ann_session else None,
                          spikes_per_sample=spikes_per_sample, max_logit_error=worst,
                          synops_per_sample=synops_per_sample, neurons=neurons,
                          latency=self.ttfs["t_read"] if self.ttfs is not None else None, energy=energy)


def _runnable_ann(path: str | os.PathLike) -> str | bytes:
    """The ANN for onnxruntime, as compile sees it: its path, or the bytes of the model with tf2onnx's
    invalid Erfc nodes (exact Keras GELU) repaired and a final Softmax/LogSoftmax dropped, so that
    its output is in the SNN's units (logits)."""
    import onnx_graphsurgeon as gs

    from onnx_snn.modelio import load_model
    from onnx_snn.options import CompileOptions
    from onnx_snn.passes.base import PassContext
    from onnx_snn.passes.rewrites import erfc, final_softmax

    model = load_model(path)
    finals = {o.name for o in model.graph.output}
    if not any(n.op_type == "Erfc" or (n.op_type in final_softmax.FINAL_OPS and set(n.output) & finals)
               for n in model.graph.node):
        return str(path)
    graph = gs.import_onnx(model)
    ctx = PassContext(options=CompileOptions(), source=str(path))
    erfc.apply(graph, ctx)
    final_softmax.apply(graph, ctx)
    return gs.export_onnx(graph.cleanup().toposort()).SerializeToString()


class AnnRunner:
    """The source ANN on onnxruntime's CPU, fed any batch size even if it was exported for one."""

    def __init__(self, path: str | os.PathLike) -> None:
        try:
            self._session = make_session(_runnable_ann(path), [CPU])
        except SnnError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise SnnError(f"onnxruntime cannot load the ANN ({str(exc).splitlines()[0][:200]})",
                           path=str(path)) from None
        first = self._session.get_inputs()[0].shape[0]
        self.fixed_batch = first if isinstance(first, int) and first > 0 else None

    def run(self, feed: Mapping[str, np.ndarray]) -> np.ndarray:
        """The ANN's first output for `feed`, run in slices of its fixed batch size if it has one."""
        total = len(next(iter(feed.values())))
        step = self.fixed_batch or total
        parts = []
        for start in range(0, total, step):
            part = {k: v[start:start + step] for k, v in feed.items()}
            short = step - len(next(iter(part.values())))
            if short:
                part = {k: np.concatenate([v, np.repeat(v[-1:], short, axis=0)]) for k, v in part.items()}
            parts.append(self._session.run(None, part)[0][: step - short])
        return np.concatenate(parts)
