"""onnx-snn: compile ANNs exported to ONNX into spiking neural networks that stock onnxruntime runs."""

from __future__ import annotations

__version__ = "0.1.0"

# imported after __version__, which the modules below read (pipeline records it in every compiled model)
from onnx_snn.api import compile_model
from onnx_snn.errors import SnnError
from onnx_snn.options import CompileOptions

__all__ = ["__version__", "SnnError", "CompileOptions", "compile_model"]
