"""The source ANN on onnxruntime, as compile sees it: the reference that verify, eval --ann,
quantize-weights and the benchmarks compare the SNN with."""

from __future__ import annotations

import os
from typing import Mapping

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from onnx_snn.errors import SnnError
from onnx_snn.modelio import load_model
from onnx_snn.options import CompileOptions
from onnx_snn.passes.base import PassContext
from onnx_snn.passes.canonicalize import erfc, final_softmax
from onnx_snn.providers import CPU, make_session


def _runnable_ann(path: str | os.PathLike | onnx.ModelProto) -> str | bytes:
    """The ANN (a path or a loaded model) for onnxruntime, as compile sees it: its path, or the bytes
    of the model with tf2onnx's invalid Erfc nodes (exact Keras GELU) repaired and a final
    Softmax/LogSoftmax dropped, so that its output is in the SNN's units (logits)."""
    in_memory = isinstance(path, onnx.ModelProto)
    model = path if isinstance(path, onnx.ModelProto) else load_model(path)
    finals = {o.name for o in model.graph.output}
    if not any(
        n.op_type == "Erfc" or (n.op_type in final_softmax.FINAL_OPS and set(n.output) & finals)
        for n in model.graph.node
    ):
        return model.SerializeToString() if in_memory else str(path)
    graph = gs.import_onnx(model)
    ctx = PassContext(options=CompileOptions(), source="<model>" if in_memory else str(path))
    erfc.apply(graph, ctx)
    final_softmax.apply(graph, ctx)
    return gs.export_onnx(graph.cleanup().toposort()).SerializeToString()


class AnnRunner:
    """The source ANN on onnxruntime's CPU, fed any batch size even if it was exported for one."""

    def __init__(self, path: str | os.PathLike | onnx.ModelProto) -> None:
        try:
            self._session = make_session(_runnable_ann(path), [CPU])
        except SnnError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise SnnError(
                f"onnxruntime cannot load the ANN ({str(exc).splitlines()[0][:200]})",
                path="<model>" if isinstance(path, onnx.ModelProto) else str(path),
            ) from None
        first = self._session.get_inputs()[0].shape[0]
        self.fixed_batch = first if isinstance(first, int) and first > 0 else None

    def run(self, feed: Mapping[str, np.ndarray]) -> np.ndarray:
        """The ANN's first output for `feed`, run in slices of its fixed batch size if it has one."""
        total = len(next(iter(feed.values())))
        step = self.fixed_batch or total
        parts = []
        for start in range(0, total, step):
            part = {k: v[start : start + step] for k, v in feed.items()}
            short = step - len(next(iter(part.values())))
            if short:
                part = {k: np.concatenate([v, np.repeat(v[-1:], short, axis=0)]) for k, v in part.items()}
            parts.append(self._session.run(None, part)[0][: step - short])
        return np.concatenate(parts)
