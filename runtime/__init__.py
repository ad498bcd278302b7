"""Neuron op definitions (model-local ONNX functions) and the runtime that executes compiled SNNs."""

from onnx_snn.runtime.session import EvalReport, RunResult, Session

__all__ = ["Session", "RunResult", "EvalReport"]
