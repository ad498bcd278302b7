"""onnx-snn: compile ANNs exported to ONNX into spiking neural networks that stock onnxruntime runs."""
from __future__ import annotations

__version__ = "0.1.0"

from onnx_snn.errors import SnnError
from onnx_snn.options import CompileOptions

__all__ = ["__version__", "SnnError", "CompileOptions", "compile_model"]


def compile_model(*args, **kwargs):
    """Compile an ANN into an SNN; see onnx_snn.api.compile_model."""
    from onnx_snn.api import compile_model as _compile

    return _compile(*args, **kwargs)
