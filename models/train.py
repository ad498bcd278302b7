"""Seeded training and evaluation of the PyTorch reference nets on in-memory arrays."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from onnx_snn.models.architecture import TrainSettings

#: Intra-op threads used while training: results are reproducible for a fixed thread count.
TRAIN_THREADS = max(1, min(4, os.cpu_count() or 1))
#: Probabilities are clipped to [PROBABILITY_EPS, 1 - PROBABILITY_EPS] before their log (Keras' epsilon).
PROBABILITY_EPS = 1e-7


@contextmanager
def _deterministic_torch(seed: int, threads: int) -> Iterator[torch.Generator]:
    """Seed torch, pin the thread count and demand deterministic kernels; restore all on exit.

    Yields a generator seeded with `seed` for shuffling.
    """
    old_threads = torch.get_num_threads()
    old_deterministic = torch.are_deterministic_algorithms_enabled()
    old_rng = torch.get_rng_state()
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        yield torch.Generator().manual_seed(seed)
    finally:
        torch.use_deterministic_algorithms(old_deterministic)
        torch.set_num_threads(old_threads)
        torch.set_rng_state(old_rng)


def _as_tensor(a: np.ndarray | torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a) if not isinstance(a, torch.Tensor) else a, dtype=dtype)


def probability_cross_entropy(probabilities: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean of -log p[label] over the batch, with p clipped to [PROBABILITY_EPS, 1 - PROBABILITY_EPS]
    like Keras' cross-entropy with from_logits=False (so a vanished probability gives a finite loss
    and no NaN gradient)."""
    clipped = probabilities.clamp(PROBABILITY_EPS, 1.0 - PROBABILITY_EPS)
    return nn.functional.nll_loss(torch.log(clipped), labels)


def ends_in_softmax(model: nn.Module) -> bool:
    """Whether the last submodule of `model` is nn.Softmax, i.e. an nn.Sequential net returns
    probabilities (train it with from_logits=False)."""
    children = list(model.children())
    return bool(children) and isinstance(children[-1], nn.Softmax)


def train(
    model: nn.Module, x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor, settings: TrainSettings
) -> nn.Module:
    """Train `model` in place as `settings` say (Adam on cross-entropy) and return it in eval mode.

    x: float32 inputs [N, ...]; y: integer class labels [N]. A model returning probabilities
    (`settings.from_logits` False) has their log clipped as in Keras (see
    probability_cross_entropy). Each epoch visits the samples in a fresh seeded shuffle; a trailing
    batch of a single sample is skipped (BatchNorm needs two). The same model init, data, settings
    and torch version give bit-identical weights on one machine. With `settings.progress`, prints
    each epoch's mean loss to stderr.
    """
    xs, ys = _as_tensor(x, torch.float32), _as_tensor(y, torch.int64)
    if len(xs) != len(ys):
        raise ValueError(f"x has {len(xs)} samples but y has {len(ys)}")
    epochs, batch_size = settings.epochs, settings.batch_size
    with _deterministic_torch(settings.seed, TRAIN_THREADS) as gen:
        optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
        loss_fn = nn.CrossEntropyLoss() if settings.from_logits else probability_cross_entropy
        model.train()
        for epoch in range(epochs):
            order = torch.randperm(len(xs), generator=gen)
            total, count = 0.0, 0
            for start in range(0, len(xs), batch_size):
                idx = order[start : start + batch_size]
                if len(idx) < 2:
                    continue
                optimizer.zero_grad()
                loss = loss_fn(model(xs[idx]), ys[idx])
                loss.backward()
                optimizer.step()
                total += loss.item() * len(idx)
                count += len(idx)
            if settings.progress:
                print(f"epoch {epoch + 1}/{epochs}: loss {total / max(count, 1):.4f}", file=sys.stderr)
    return model.eval()


@torch.no_grad()
def predict_logits(model: nn.Module, x: np.ndarray | torch.Tensor, batch_size: int = 1024) -> np.ndarray:
    """Run `model` in eval mode over x in batches and return its float32 outputs (logits, or
    probabilities for a net ending in softmax); restores its mode."""
    was_training = model.training
    model.eval()
    try:
        xs = _as_tensor(x, torch.float32)
        return torch.cat([model(xs[i : i + batch_size]) for i in range(0, len(xs), batch_size)]).numpy()
    finally:
        model.train(was_training)


def evaluate_accuracy(model: nn.Module, x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor) -> float:
    """Fraction of samples whose arg-max output equals the label (model run in eval mode)."""
    labels = np.asarray(y.numpy() if isinstance(y, torch.Tensor) else y)
    return float(np.mean(predict_logits(model, x).argmax(axis=1) == labels))
