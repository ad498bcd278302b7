"""Framework-neutral compiler passes over onnx-graphsurgeon graphs, one pass per module."""
