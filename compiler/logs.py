"""What the libraries we drive may print: by default only their errors reach the user's terminal.

onnxruntime warns on every load of a compiled model (the `timesteps` initializer that is also an
input is by design, and so are nodes its optimizers leave alone), and onnx-graphsurgeon warns
that its optional `colored` module is missing and about constants it does not fold. None of it
is for the user. `configure_logging(verbose=True)` (the CLI's --verbose) shows them again.
"""

from __future__ import annotations

#: onnxruntime severities: 0 verbose, 1 info, 2 warning, 3 error, 4 fatal
ORT_WARNING, ORT_ERROR = 2, 3

_ort_severity = ORT_ERROR


def ort_severity() -> int:
    """The log severity our onnxruntime sessions use (SessionOptions.log_severity_level)."""
    return _ort_severity


def configure_logging(verbose: bool = False) -> None:
    """Errors only (default) or warnings too, for onnxruntime and onnx-graphsurgeon."""
    global _ort_severity
    import onnxruntime as ort
    from onnx_graphsurgeon.logger import G_LOGGER

    _ort_severity = ORT_WARNING if verbose else ORT_ERROR
    ort.set_default_logger_severity(_ort_severity)
    G_LOGGER.colors = False  # else its first message warns that `colored` is not installed
    G_LOGGER.severity = G_LOGGER.WARNING if verbose else G_LOGGER.ERROR
