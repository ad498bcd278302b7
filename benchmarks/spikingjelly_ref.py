"""The spikingjelly baseline of the benchmark: its ann2snn converter on the same PyTorch model.

spikingjelly (PyPI `spikingjelly`, 2.0) converts with RateCodingRecipe in its 99.9% mode
(percentile normalization, IF neurons with soft reset) and simulates single-step, T forward
passes summed, on the CPU with torch's threads set to the machine's cores. Install it without
its dependencies, which would replace the pinned CPU torch with a CUDA build:

    pip install -e ".[bench]" && pip install --no-deps spikingjelly==2.0.0
"""

from __future__ import annotations

import os
import statistics

import numpy as np

from benchmarks.timing import time_call
from onnx_snn.errors import SnnError
from onnx_snn.models.zoo import get_reference, load_torch_model

MODE = "99.9%"


def spikingjelly_available() -> bool:
    """Whether spikingjelly's ann2snn converter imports (with its small dependency loguru)."""
    try:
        from spikingjelly.activation_based.ann2snn import Converter  # noqa: F401
    except ImportError:
        return False
    return True


def convert(model, calibration: np.ndarray, batch_size: int):
    """spikingjelly's ann2snn conversion of the PyTorch `model` (RateCodingRecipe, MODE), with
    torch's threads set to the machine's cores."""
    if not spikingjelly_available():
        raise SnnError(
            'spikingjelly is not installed; run pip install -e ".[bench]" && pip install --no-deps spikingjelly==2.0.0'
        )
    import torch
    from spikingjelly.activation_based.ann2snn import Converter
    from spikingjelly.activation_based.ann2snn.recipes.rate_coding import RateCodingRecipe

    torch.set_num_threads(os.cpu_count() or 1)
    loader = [torch.from_numpy(calibration[i : i + batch_size]) for i in range(0, len(calibration), batch_size)]
    return Converter(RateCodingRecipe(dataloader=loader, mode=MODE)).convert(model.eval()).eval()


def simulate(snn, batch, timesteps: int) -> list:
    """The converted net's summed outputs after each step 1..timesteps (single-step mode, fresh state)."""
    import torch
    from spikingjelly.activation_based import functional

    functional.reset_net(snn)
    total, history = 0, []
    with torch.no_grad():
        for _ in range(timesteps):
            total = total + snn(batch)
            history.append(total)
    return history


def accuracy_per_step(snn, x_test: np.ndarray, y_test: np.ndarray, timesteps: int, batch_size: int) -> np.ndarray:
    """The converted net's accuracy (a fraction) after each step 1..timesteps on (x_test, y_test)."""
    import torch

    correct = np.zeros(timesteps)
    for start in range(0, len(x_test), batch_size):
        history = simulate(snn, torch.from_numpy(x_test[start : start + batch_size]), timesteps)
        labels = y_test[start : start + batch_size]
        correct += [int((h.argmax(1).numpy() == labels).sum()) for h in history]
    return correct / len(x_test)


def spikingjelly_benchmark(
    model,
    calibration: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    steps: tuple[int, ...],
    batch_size: int,
    repeats: int,
) -> dict:
    """Convert the PyTorch `model` with spikingjelly; its accuracy after each T in `steps` on
    (x_test, y_test) and the median time of one T-step run on the first `batch_size` test inputs,
    with its range over the `repeats` rounds."""
    import torch

    snn = convert(model, calibration, batch_size)
    accuracy = accuracy_per_step(snn, x_test, y_test, max(steps), batch_size)
    batch = torch.from_numpy(x_test[:batch_size])
    rounds = {t: time_call(lambda: simulate(snn, batch, t), repeats) for t in steps}
    return {
        "version": _version(),
        "mode": MODE,
        "threads": torch.get_num_threads(),
        "accuracy": {t: float(accuracy[t - 1]) for t in steps},
        "seconds": {t: statistics.median(times) for t, times in rounds.items()},
        "seconds_range": {t: [min(times), max(times)] for t, times in rounds.items()},
        "test_samples": len(x_test),
    }


def prepare_run(reference_name: str, cache_dir: str | None, batch_path: str, timesteps: int):
    """For peak_memory.isolated_peak: the reference's spikingjelly SNN converted in this process,
    and a call that simulates the batch at `batch_path` for `timesteps` steps."""
    import torch

    reference = get_reference(reference_name, cache_dir=cache_dir)
    batch = np.load(batch_path)
    snn = convert(load_torch_model(reference), reference.load_calibration(), len(batch))
    inputs = torch.from_numpy(batch)
    return lambda: simulate(snn, inputs, timesteps)


def _version() -> str:
    from importlib.metadata import version

    return version("spikingjelly")
