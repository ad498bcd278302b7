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
from .providers import CPU, CUDA, make_session



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
                "synops_per_sample": self.synops_per_sample, "neurons": self.neurons, "latency": self.latency}


class Session:
    """A compiled SNN loaded into onnxruntime (CUDA when available, else CPU)."""

    def __init__(self, model: str | os.PathLike | onnx.ModelProto, providers: list[str] | None = None,
                 intra_op_threads: int | None = None) -> None:
        source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
        if not isinstance(model, onnx.ModelProto) and not os.path.isfile(source):
            raise SnnError("model file not found; check the path", path=source)
        try:
            self._session = make_session(source, providers, intra_op_threads)
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises several unrelated types
            raise SnnError(f"onnxruntime cannot load it ({str(exc).splitlines()[0][:200]})",
                           path=source if isinstance(source, str) else "<model>") from None
        outputs = [o.name for o in self._session.get_outputs()]
        meta = self._session.get_modelmeta().custom_metadata_map
        self.options = json.loads(meta.get("onnx_snn.options", "{}"))
        self.ttfs = json.loads(meta["onnx_snn.ttfs"]) if "onnx_snn.ttfs" in meta else None
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

    @property
    def providers(self) -> list[str]:
        """The execution providers the session really uses."""
        return self._session.get_providers()

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

    def run(self, inputs: np.ndarray | Mapping[str, np.ndarray], timesteps: int | None = None) -> RunResult:
        """Simulate `timesteps` steps (default: the compiled T; TTFS models: one read-out) on one batch."""
        stats = self.spike_names + self.synops_names + self.spike_time_names
        names = [self.output_name] + ([self.per_step_name] if self.per_step_name else []) + stats
        feed = self._feed(inputs, timesteps)
        if CUDA in self.providers:
            binding = self._session.io_binding()
            for name, value in feed.items():
                binding.bind_cpu_input(name, value)
            for name in names:
                binding.bind_output(name, "cpu")
            self._session.run_with_iobinding(binding)
            values = binding.copy_outputs_to_cpu()
        else:
            values = self._session.run(names, feed)
        by_name = dict(zip(names, values))
        per_step = by_name[self.per_step_name] if self.per_step_name else by_name[self.output_name][None]
        return RunResult(by_name[self.output_name], per_step, {n: by_name[n] for n in self.spike_names},
                         {n: by_name[n] for n in self.synops_names}, {n: by_name[n] for n in self.spike_time_names})

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
        return EvalReport(timesteps=t, samples=total, accuracy=correct / total,
                          ann_accuracy=ann_correct / total if ann_session else None,
                          agreement=agree / total if ann_session else None,
                          logit_error=error / total if ann_session else None,
                          spikes_per_sample={k: v / total for k, v in spikes.items()},
                          max_logit_error=worst, synops_per_sample={k: v / total for k, v in synops.items()},
                          neurons=neurons, latency=self.ttfs["t_read"] if self.ttfs is not None else None)


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
