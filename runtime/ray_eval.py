"""`onnx-snn eval --ray`: an evaluation split into shards that Ray tasks run, merged bit for bit.

The driver checks the data set as `Session.evaluate` does, cuts it into contiguous shards of whole
batches (`shard_ranges`) and puts each in Ray's object store (the data file is read once, by the
driver). One task per shard (`evaluate_shard`) opens a Session of its own (CUDA where its worker
has a GPU, else the CPU: providers.default_providers) and returns the EvalCounts of each of its
batches; the driver folds them in batch order, as `Session.evaluate` folds its own, so the report
equals evaluate's bit for bit (runtime.session.EvalCounts). A worker that dies is started again
(MAX_RETRIES) and recomputes the same counts.

Ray (the `ray` extra) is imported on first use, so that the rest of the package works without it.
"""

from __future__ import annotations

import logging
import math
import os
import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
import onnx
from tqdm import tqdm

from onnx_snn.budget import default_budget
from onnx_snn.errors import SnnError
from onnx_snn.modelio import load_model
from onnx_snn.runtime.ann import AnnRunner
from onnx_snn.runtime.session import EvalCounts, EvalReport, Session

#: `address` that starts a Ray instance on this machine (ray.init's own name for it)
LOCAL = "local"
#: times Ray starts a shard's task again after its worker died (a crash, a lost node)
MAX_RETRIES = 3
#: CPUs each task reserves, and its onnxruntime intra-op threads
CPUS_PER_WORKER = 1
INSTALL = 'pip install "onnx-snn[ray]"'
#: seconds `_check_listening` waits for a cluster's head to accept a connection
CONNECT_TIMEOUT_S = 10


@dataclass(frozen=True)
class ShardSettings:
    """What every shard's task needs besides its data: T, the batch size, and the memory budget of
    its Session (None: _worker_budget's default)."""

    timesteps: int
    batch_size: int
    max_memory: int | None


@dataclass
class ShardResult:
    """A shard's EvalCounts, one per batch in order, and the execution provider its Session used."""

    provider: str
    counts: list[EvalCounts]


def require_ray() -> ModuleType:
    """The `ray` module; a one-line SnnError with the install command when Ray is not installed."""
    try:
        import ray
    except ImportError:
        raise SnnError(f"--ray needs Ray, which is not installed; {INSTALL}") from None
    return ray


def shard_ranges(total: int, batch_size: int, shards: int) -> list[range]:
    """At most `shards` contiguous sample ranges covering 0..total in order, each made of whole
    batches of `batch_size` (the last batch may be short), their batch counts differing by at
    most one; never an empty one."""
    batches = math.ceil(total / batch_size)
    count = max(1, min(shards, batches))
    bounds = [batches * i // count for i in range(count + 1)]
    return [range(b * batch_size, min(e * batch_size, total)) for b, e in zip(bounds, bounds[1:])]


def evaluate_on_ray(
    session: Session,
    data: np.ndarray | Mapping[str, np.ndarray],
    labels: np.ndarray,
    timesteps: int | None = None,
    ann: str | os.PathLike | onnx.ModelProto | None = None,
    batch_size: int = 256,
    progress: bool = True,
    *,
    max_memory: int | None = None,
    address: str = LOCAL,
    workers: int | None = None,
) -> tuple[EvalReport, list[str]]:
    """`session.evaluate(data, labels, timesteps, ann, batch_size)` on a Ray cluster: the same
    report bit for bit, and the execution provider of each shard's worker.

    `address`: LOCAL starts Ray on this machine with its CPUs (shut down at the end); "auto" joins
    the cluster that `ray start` runs here, "HOST:PORT" the one whose head listens there. A process
    that has called ray.init already uses that connection. `workers`: shards, one task each
    (default: one per GPU of the cluster, else one per CPU); a task takes one CPU, runs one
    onnxruntime thread, and a GPU (or its share) where the cluster has them. `max_memory`: each
    worker's budget (None: its node's default budget divided by the node's CPUs). SnnError for
    bad arguments, a cluster that cannot be reached or a shard that Ray cannot finish; the
    workers' own SnnErrors are raised as they are."""
    inputs, labels, t, batch_size = session.checked_evaluation(data, labels, timesteps, batch_size)
    ray = require_ray()
    ann_bytes = _model_bytes(ann) if ann is not None else None
    total = EvalCounts.zeros(t, with_ann=ann is not None)
    providers = []
    with _connected(ray, address):
        count, options = _task_options(ray, workers)
        shards = shard_ranges(len(labels), batch_size, count)
        model_ref = ray.put(session.model().SerializeToString())
        ann_ref = ray.put(ann_bytes) if ann_bytes is not None else None
        task = ray.remote(evaluate_shard).options(**options)  # looked up now: tests wrap it
        settings = ShardSettings(t, batch_size, max_memory)
        refs = [
            task.remote(model_ref, ann_ref, *_shard_data(ray, inputs, labels, shard), shard.start, settings)
            for shard in shards
        ]
        with (
            _cancelled_on_error(ray, refs),
            tqdm(total=len(labels), desc="evaluate", unit="sample", disable=not progress, leave=False) as bar,
        ):
            for shard, ref in zip(shards, refs):
                result = _gathered(ray, ref, shard)
                providers.append(result.provider)
                for counts in result.counts:
                    total.fold(counts)
                bar.update(len(shard))
    return session.report(total), providers


def evaluate_shard(
    model: bytes,
    ann: bytes | None,
    inputs: dict[str, np.ndarray],
    labels: np.ndarray,
    first: int,
    settings: ShardSettings,
) -> ShardResult:
    """Run by a Ray task: the EvalCounts of each batch of one shard, samples `first`.. of the data
    set (`first` a multiple of the batch size, so that its batches are the data set's), from a
    Session of its own (CUDA if this worker sees a GPU, else the CPU; CPUS_PER_WORKER threads)
    under `settings.max_memory` (None: _worker_budget)."""
    session = Session(
        onnx.load_from_string(model),
        intra_op_threads=CPUS_PER_WORKER,
        max_memory=_worker_budget(require_ray(), settings.max_memory),
    )
    runner = AnnRunner(onnx.load_from_string(ann)) if ann is not None else None
    counts = session.batch_counts(inputs, labels, settings.timesteps, runner, settings.batch_size, first)
    return ShardResult(session.providers[0], list(counts))


def _model_bytes(model: str | os.PathLike | onnx.ModelProto) -> bytes:
    """The serialized model, read from its file (and external data) by the driver, for the workers."""
    return (model if isinstance(model, onnx.ModelProto) else load_model(model)).SerializeToString()


def _shard_data(ray: ModuleType, inputs: dict[str, np.ndarray], labels: np.ndarray, shard: range) -> tuple[Any, Any]:
    """Object refs of `shard`'s inputs and labels, put in Ray's object store as numpy arrays."""
    part = slice(shard.start, shard.stop)
    return ray.put({name: array[part] for name, array in inputs.items()}), ray.put(labels[part])


@contextmanager
def _connected(ray: ModuleType, address: str) -> Iterator[None]:
    """Ray connected for the block: the connection this process has, else a fresh Ray instance on
    this machine (`address` LOCAL) or the cluster at `address`; disconnected after (a fresh
    instance stopped) if connected here. SnnError when no cluster answers at `address`."""
    if ray.is_initialized():
        yield
        return
    _check_listening(address)
    local = {"include_dashboard": False} if address == LOCAL else {}
    try:
        ray.init(address=address, logging_level=logging.WARNING, **local)
    except (ConnectionError, TimeoutError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise SnnError(
            f"cannot connect to a Ray cluster at {address} ({first}); start one with `ray start --head`, "
            "or leave out the address for a local one"
        ) from None
    try:
        yield
    finally:
        ray.shutdown()


def _check_listening(address: str) -> None:
    """SnnError at once when `address` is HOST:PORT and nothing there accepts a connection within
    CONNECT_TIMEOUT_S (ray.init would retry for minutes); other addresses pass."""
    host, colon, port = address.rpartition(":")
    if not colon or not port.isdigit() or "://" in address:
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise SnnError(
            f"nothing accepts connections at {address} ({exc.strerror or exc}); check the Ray head's address "
            "(`ray status` on it), or leave out the address for a local Ray"
        ) from None


def _task_options(ray: ModuleType, workers: int | None) -> tuple[int, dict[str, Any]]:
    """(shards, Ray options of their tasks): `workers` tasks (default: one per GPU of the cluster,
    else one per CPU), each with CPUS_PER_WORKER CPUs, an equal share of the GPUs where the cluster
    has them (at most one each, in Ray's steps of 1/10000) and MAX_RETRIES retries."""
    resources = ray.cluster_resources()
    gpus = resources.get("GPU", 0.0)
    count = workers or int(gpus) or max(1, int(resources.get("CPU", 1)))
    share = min(1.0, math.floor(10**4 * gpus / count) / 10**4) if gpus else 0
    return count, {"num_cpus": CPUS_PER_WORKER, "num_gpus": share, "max_retries": MAX_RETRIES}


def _worker_budget(ray: ModuleType, max_memory: int | None) -> int:
    """`max_memory`, else this worker's share of its node: the default budget (half of the memory
    available now) divided by the node's CPUs, as many one-CPU workers as Ray may place there."""
    if max_memory is not None:
        return max_memory
    node = ray.get_runtime_context().get_node_id()
    cpus = next((n["Resources"].get("CPU", 1) for n in ray.nodes() if n["NodeID"] == node), 1)
    return max(1, default_budget() // max(1, int(cpus)))


def _gathered(ray: ModuleType, ref: Any, shard: range) -> ShardResult:
    """The result of the task of `shard`. A worker's exception is raised as itself (SnnError: bad
    input; anything else: a bug of ours); a failure of Ray's (a worker that died on every retry, a
    lost node) as SnnError."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        raise exc.cause from None
    except ray.exceptions.RayError as exc:
        text = str(exc).strip().splitlines()
        raise SnnError(
            f"Ray could not evaluate samples {shard.start}..{shard.stop - 1} after {MAX_RETRIES} retries "
            f"({type(exc).__name__}: {text[0][:200] if text else ''}); if its workers ran out of memory, "
            "lower --max-memory or --batch-size"
        ) from None


@contextmanager
def _cancelled_on_error(ray: ModuleType, refs: list[Any]) -> Iterator[None]:
    """Cancel the tasks of `refs` if the block raises (an error, Ctrl-C), so that none runs on."""
    try:
        yield
    except BaseException:
        for ref in refs:
            ray.cancel(ref, force=True)
        raise
