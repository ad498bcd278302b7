"""The small graph export-nir works on between the ONNX model and NIR: layers and the edges between
them, where several edges into one layer add up (NIR's convention), shapes per sample (no batch).

Layer kinds: "input", "output", "affine" (weight [out, in], bias [out]), "conv" (weight [out,
in/groups, kh, kw], bias, attrs stride, padding, dilation, groups), "avgpool" and "sumpool" (attrs
kernel, stride, padding), "scale" (`scale`, broadcastable to the shape), "flatten", "neuron"
(attrs threshold, reset, v_init, spikes "single" or "multi", v_min, `op`, the snn op, and
`source`, the ONNX node it came from).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Layer:
    """One layer: its kind, its output shape per sample, and its parameters."""

    kind: str
    shape: tuple[int, ...]
    weight: np.ndarray | None = None
    bias: np.ndarray | None = None
    scale: np.ndarray | None = None
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass
class Net:
    """Layers by name (insertion order is a topological order) and edges (source, destination)."""

    layers: dict[str, Layer] = field(default_factory=dict)
    edges: list[tuple[str, str]] = field(default_factory=list)

    def add(self, kind: str, shape: tuple[int, ...], sources: list[str], **fields: Any) -> str:
        """Add a layer named after its kind, fed by `sources`; return its name."""
        count = sum(1 for name in self.layers if name.startswith(f"{kind}_"))
        name = kind if kind in ("input", "output") else f"{kind}_{count}"
        while name in self.layers:
            count += 1
            name = f"{kind}_{count}"
        self.layers[name] = Layer(kind, tuple(int(d) for d in shape), **fields)
        self.edges += [(source, name) for source in sources]
        return name

    def inputs_of(self, name: str) -> list[str]:
        return [s for s, d in self.edges if d == name]

    def consumers_of(self, name: str) -> list[str]:
        return [d for s, d in self.edges if s == name]

    def remove(self, name: str) -> None:
        """Drop a layer and every edge touching it."""
        del self.layers[name]
        self.edges = [(s, d) for s, d in self.edges if name not in (s, d)]

    def insert_after(self, name: str, kind: str, **fields: Any) -> str:
        """A new layer of `kind` fed by `name` alone and feeding what `name` fed, placed right after it."""
        consumers = self.consumers_of(name)
        self.edges = [(s, d) for s, d in self.edges if s != name]
        new = self.add(kind, self.layers[name].shape, [name], **fields)
        self.edges += [(new, d) for d in consumers]
        self._reorder(new, after=name)
        return new

    def _reorder(self, name: str, after: str) -> None:
        """Move `name` right after `after` in the layer order (keeps the order topological)."""
        layer = self.layers.pop(name)
        items = list(self.layers.items())
        at = next(i for i, (key, _) in enumerate(items) if key == after) + 1
        self.layers = dict(items[:at] + [(name, layer)] + items[at:])


def full_scale(layer: Layer) -> np.ndarray:
    """A scale layer's factors broadcast to its whole shape (float64)."""
    assert layer.scale is not None
    return np.broadcast_to(np.asarray(layer.scale, dtype=np.float64), layer.shape).copy()


def channel_factors(values: np.ndarray) -> np.ndarray | None:
    """The per-channel factors [C] of `values` [C, ...] when they do not vary within a channel, else None."""
    per_channel = values.reshape(values.shape[0], -1)[:, 0]
    same = np.all(values == per_channel.reshape((-1,) + (1,) * (values.ndim - 1)))
    return per_channel if same else None
